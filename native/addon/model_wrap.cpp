#include "model_wrap.h"

#include "abort_handle.h"
#include "fake_model.h"
#include "marshal.h"
#include "task.h"

namespace sdnaddon {

namespace {

Napi::Value rejected(Napi::Env env, const std::string& code, const std::string& message) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(make_error(env, code, message).Value());
  return d.Promise();
}

int get_int(const Napi::Object& o, const char* key, int def) { return (int)get_number(o, key, def); }

// { data: Buffer, width, height, channels } -> an engine image (copied: the worker must not touch JS memory).
// Absent -> an empty image. lib/ validates first; this only guards against malformed objects.
sdn::Image get_image(const Napi::Object& o, const char* key) {
  sdn::Image img;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return img;
  if (!v.IsObject()) throw Napi::TypeError::New(o.Env(), std::string(key) + ": expected an object of pixels");
  Napi::Object io = v.As<Napi::Object>();
  Napi::Value d = io.Get("data");
  if (!d.IsTypedArray() || d.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(o.Env(), std::string(key) + ".data: expected a Buffer");
  Napi::Uint8Array a = d.As<Napi::Uint8Array>();
  img.width = (int)get_number(io, "width", 0);
  img.height = (int)get_number(io, "height", 0);
  img.channels = (int)get_number(io, "channels", 3);
  img.data.assign(a.Data(), a.Data() + a.ElementLength());
  return img;
}

sdn::GenerateParams parse_params(const Napi::Object& o) {
  sdn::GenerateParams p;
  p.prompt = get_string(o, "prompt", p.prompt);
  p.negative_prompt = get_string(o, "negativePrompt", p.negative_prompt);
  p.width = get_int(o, "width", p.width);
  p.height = get_int(o, "height", p.height);
  p.steps = get_int(o, "steps", p.steps);
  p.cfg_scale = (float)get_number(o, "cfgScale", p.cfg_scale);
  p.sampler = get_string(o, "sampler", p.sampler);
  p.scheduler = get_string(o, "scheduler", p.scheduler);
  p.seed = (int64_t)get_number(o, "seed", (double)p.seed);
  p.rng = get_string(o, "rng", p.rng);
  p.clip_skip = get_int(o, "clipSkip", p.clip_skip);
  p.batch_count = get_int(o, "batchCount", p.batch_count);
  p.preview_every = get_int(o, "previewEvery", p.preview_every);
  p.preview_method = get_string(o, "previewMethod", p.preview_method);
  p.strength = (float)get_number(o, "strength", p.strength);
  p.decoder = get_string(o, "decoder", p.decoder);
  p.init_image = get_image(o, "initImage");
  p.mask = get_image(o, "mask");
  // adapters
  p.lora_dir = get_string(o, "loraDir", p.lora_dir);
  p.embedding_dir = get_string(o, "embeddingDir", p.embedding_dir);
  Napi::Value lv = o.Get("loras");
  if (lv.IsArray()) {
    Napi::Array a = lv.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value e = a.Get(i);
      if (!e.IsObject()) throw Napi::TypeError::New(o.Env(), "expected objects { path, weight } in loras");
      sdn::LoraSpec l;
      l.path = get_string(e.As<Napi::Object>(), "path", "");
      l.weight = (float)get_number(e.As<Napi::Object>(), "weight", 1.0);
      p.loras.push_back(l);
    }
  }
  Napi::Value cv = o.Get("controlNet");
  if (cv.IsObject()) {
    Napi::Object c = cv.As<Napi::Object>();
    p.control_net.model = get_string(c, "model", "");
    p.control_net.strength = (float)get_number(c, "strength", 1.0);
    p.control_net.start = (float)get_number(c, "start", 0.0);
    p.control_net.end = (float)get_number(c, "end", 1.0);
    p.control_net.image_width = get_int(c, "imageWidth", 0);
    p.control_net.image_height = get_int(c, "imageHeight", 0);
    Napi::Value img = c.Get("imageRgb");
    if (img.IsBuffer()) {
      auto b = img.As<Napi::Buffer<uint8_t>>();
      p.control_net.image_rgb.assign(b.Data(), b.Data() + b.Length());
    }
  }
  return p;
}

}  // namespace

Napi::Function ModelWrap::define(Napi::Env env) {
  return DefineClass(env, "Model",
                     {InstanceMethod<&ModelWrap::load>("load"), InstanceMethod<&ModelWrap::load_fake>("loadFake"),
                      InstanceMethod<&ModelWrap::generate>("generate"), InstanceMethod<&ModelWrap::dispose>("dispose"),
                      InstanceAccessor<&ModelWrap::disposed>("disposed")});
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}

ModelWrap::~ModelWrap() {
  // Garbage-collected without dispose(). No task can be running: each holds a strong reference to this wrapper
  // until it settles (and at environment teardown the tasks' clean-up hooks have already waited for them). The
  // model is freed on its worker, then the idle thread ends.
  if (worker_) {
    auto state = state_;
    worker_->post([state] { state->model.reset(); });
    worker_->stop_and_join();
    worker_.reset();
  }
  if (external_bytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(Env(), -external_bytes_);
}

Napi::Value ModelWrap::disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

Napi::Value ModelWrap::refuse(Napi::Env env, const char* what, bool needs_loaded) {
  if (disposed_) return rejected(env, "Disposed", std::string("cannot ") + what + ": the model has been disposed");
  if (needs_loaded && !loaded_)
    return rejected(env, "InvalidArgument", std::string("cannot ") + what + ": the model is not loaded (yet)");
  if (!needs_loaded && load_started_)
    return rejected(env, "InvalidArgument", std::string("cannot ") + what + ": the model was already loaded");
  return Napi::Value();
}

Napi::Value ModelWrap::start_load(const Napi::CallbackInfo& info, Maker make, const Napi::Value& on_progress,
                                  const Napi::Value& abort) {
  Napi::Env env = info.Env();
  Napi::Value r = refuse(env, "load", false);
  if (!r.IsEmpty()) return r;
  load_started_ = true;
  auto task = Task::create(env, get_abort_flag(env, abort), Value(), on_progress, env.Undefined());
  auto bytes = std::make_shared<int64_t>(0);
  task->set_on_settle([this, bytes](Napi::Env env, bool ok) {
    if (!ok) {
      load_started_ = false;  // a failed or aborted load may be retried
      // An abort that lands just as loading finishes rejects the call; free the model it produced anyway.
      if (worker_) {
        auto state = state_;
        worker_->post([state] { state->model.reset(); });
      }
      return;
    }
    loaded_ = true;
    external_bytes_ = *bytes;
    if (external_bytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, external_bytes_);
  });
  auto state = state_;
  worker_->post([task, state, make, bytes] {
    Task* t = task.get();
    t->run([&]() -> ResultFn {
      std::unique_ptr<sdn::Model> m = make([t](float f) {
        if (t->try_begin(t->progress_in_flight, 1) || f >= 1.0f) {
          t->emit([t, f](Napi::Env env, TaskJs& js) {
            t->progress_in_flight.fetch_sub(1);
            if (!js.on_progress.IsEmpty()) js.on_progress.Call({Napi::Number::New(env, f)});
          });
        }
        return !t->aborted();
      });
      sdn::ModelInfo mi = m->info();
      std::string device = m->device();
      *bytes = mi.size_bytes;
      state->model = std::move(m);
      return [mi, device](Napi::Env env) -> Napi::Value {
        Napi::Object o = to_js(env, mi);
        o.Set("device", device);  // where the model runs (and why, for 'auto'); lib/model.ts moves it to model.device
        return o;
      };
    });
  });
  return task->promise();
}

Napi::Value ModelWrap::load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sdn::ModelParts parts;
  if (info[0].IsString()) {
    parts.file = info[0].As<Napi::String>().Utf8Value();
  } else if (info[0].IsObject()) {
    Napi::Object o = info[0].As<Napi::Object>();
    parts.file = get_string(o, "file", "");
    parts.unet = get_string(o, "unet", "");
    parts.vae = get_string(o, "vae", "");
    parts.text_encoder = get_string(o, "textEncoder", "");
    parts.tokenizer = get_string(o, "tokenizer", "");
  } else {
    throw Napi::TypeError::New(env, "load: expected a path or an object of parts");
  }
  sdn::LoadOptions base;
  if (info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    base.threads = (int)get_number(o, "threads", 0);
    base.device = get_string(o, "device", "auto");
    base.vram_budget = (uint64_t)get_number(o, "vramBudget", 0);
    base.vae_tiling = get_string(o, "vaeTiling", "auto");
    base.text_encoder_on_cpu = get_number(o, "textEncoderOnCpu", 0) != 0;
    base.vae_on_cpu = get_number(o, "vaeOnCpu", 0) != 0;
    base.weight_type = get_string(o, "weightType", "");
    base.tokenizer_path = get_string(o, "tokenizerPath", "");
    base.prediction = get_string(o, "prediction", "");
    base.fallback_merges = get_string(o, "fallbackMerges", "");
    base.taesd_path = get_string(o, "taesdPath", "");
  }
  Maker make = [parts, base](std::function<bool(float)> on_progress) {
    sdn::LoadOptions lo = base;
    lo.on_progress = std::move(on_progress);
    return sdn::Model::load(parts, lo);
  };
  return start_load(info, make, info[2], info[3]);
}

Napi::Value ModelWrap::load_fake(const Napi::CallbackInfo& info) {
  FakeModelOptions fo;
  if (info[0].IsObject()) {
    Napi::Object o = info[0].As<Napi::Object>();
    fo.load_ms = get_number(o, "loadMs", fo.load_ms);
    fo.encode_ms = get_number(o, "encodeMs", fo.encode_ms);
    fo.step_ms = get_number(o, "stepMs", fo.step_ms);
    fo.decode_ms = get_number(o, "decodeMs", fo.decode_ms);
    fo.scratch_bytes = (int64_t)get_number(o, "scratchBytes", (double)fo.scratch_bytes);
  }
  Maker make = [fo](std::function<bool(float)> on_progress) {
    sdn::LoadOptions lo;
    lo.on_progress = std::move(on_progress);
    return make_fake_model(fo, lo);
  };
  return start_load(info, make, info[1], info[2]);
}

Napi::Value ModelWrap::generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "generate: expected an object of parameters");
  sdn::GenerateParams params = parse_params(info[0].As<Napi::Object>());
  AbortFlag abort = get_abort_flag(env, info[3]);
  Napi::Value r = refuse(env, "generate", true);
  if (!r.IsEmpty()) return r;
  auto task = Task::create(env, abort, Value(), info[1], info[2]);
  auto state = state_;
  worker_->post([task, state, params] {
    Task* t = task.get();
    t->run([&]() -> ResultFn {
      if (!state->model) sdn::throw_error(sdn::ErrorCode::Disposed, "the model has been disposed");
      sdn::GenerateCallbacks cb;
      cb.should_abort = [t] { return t->aborted(); };
      cb.on_progress = [t](const sdn::Progress& p) {
        double ms = t->elapsed_ms();
        t->emit([p, ms](Napi::Env env, TaskJs& js) {
          if (js.on_progress.IsEmpty()) return;
          Napi::Object o = Napi::Object::New(env);
          o.Set("phase", phase_name(p.phase));
          o.Set("step", p.step);
          o.Set("steps", p.steps);
          o.Set("image", p.image);
          o.Set("images", p.images);
          o.Set("timeMs", ms);
          js.on_progress.Call({o});
        });
      };
      cb.on_preview = [t](int step, const sdn::Image& img) {
        // At most two previews wait for JavaScript; later ones are dropped rather than queued without bound.
        if (!t->try_begin(t->previews_in_flight, 2)) return;
        auto copy = std::make_shared<sdn::Image>(img);
        double ms = t->elapsed_ms();
        t->emit([t, step, copy, ms](Napi::Env env, TaskJs& js) {
          t->previews_in_flight.fetch_sub(1);
          if (js.on_preview.IsEmpty()) return;
          Napi::Object o = to_js(env, *copy);
          o.Set("step", step);
          o.Set("timeMs", ms);
          js.on_preview.Call({o});
        });
      };
      auto images = std::make_shared<std::vector<sdn::Image>>(state->model->generate(params, cb));
      return [images](Napi::Env env) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, images->size());
        for (size_t i = 0; i < images->size(); ++i) a.Set((uint32_t)i, to_js(env, (*images)[i]));
        images->clear();
        images->shrink_to_fit();
        return a;
      };
    });
  });
  return task->promise();
}

Napi::Value ModelWrap::dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (disposed_ || !worker_) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  disposed_ = true;
  auto task = Task::create(env, nullptr, Value(), env.Undefined(), env.Undefined());
  task->set_on_settle([this](Napi::Env env, bool) {
    if (external_bytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, -external_bytes_);
    external_bytes_ = 0;
    loaded_ = false;
    // The dispose task was the last one queued; the worker is idle or about to be, so this join is immediate.
    if (worker_) {
      worker_->stop_and_join();
      worker_.reset();
    }
  });
  auto state = state_;
  // Runs after every call queued before it: memory is never freed under a running generation.
  worker_->post([task, state] {
    task->run([&]() -> ResultFn {
      state->model.reset();
      return nullptr;
    });
  });
  return task->promise();
}

}  // namespace sdnaddon
