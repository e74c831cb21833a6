// N-API entry point: registers the functions and classes that lib/binding.ts types (NativeBinding). The addon is
// deliberately thin: it moves values between JavaScript and the engine's public API (native/include/sdn/sdn.h),
// runs engine work off the JavaScript thread, and maps sdn::Error codes to error.code strings. No math here.
#include <napi.h>

#include <memory>

#include "abort_handle.h"
#include "marshal.h"
#include "model_wrap.h"
#include "sdn/sdn.h"
#include "task.h"
#include "worker.h"

namespace sdnaddon {
namespace {

Napi::Value GetSystemInfo(const Napi::CallbackInfo& info) { return to_js(info.Env(), sdn::system_info()); }

// compiledBackends() -> ['cpu', ...]: no device enumeration, so no GPU driver is loaded into this process.
Napi::Value CompiledBackends(const Napi::CallbackInfo& info) {
  return to_js(info.Env(), sdn::compiled_backends());
}

// probeDevice(spec) -> { ok, device, name, driver, reason }. Synchronous and possibly slow (driver start-up, shader
// compilation): lib/device.ts calls it only in a short-lived child process, never on the application's thread.
Napi::Value ProbeDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "probeDevice: expected a device string such as 'vulkan:0'");
  sdn::DeviceProbe p = sdn::probe_device(info[0].As<Napi::String>().Utf8Value());
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", p.ok);
  o.Set("device", p.device);
  o.Set("name", p.name);
  o.Set("driver", p.driver);
  if (!p.ok) o.Set("reason", p.reason);
  return o;
}

// inspect(path) -> Promise<ModelInfo>. Reads headers only (milliseconds), so a short AsyncWorker on the libuv pool
// is the right tool here, unlike generation and conversion (see worker.h).
class InspectWorker : public Napi::AsyncWorker {
 public:
  InspectWorker(Napi::Env env, std::string path)
      : Napi::AsyncWorker(env, "sdnode.inspect"), path_(std::move(path)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      info_ = sdn::inspect_model(path_);
    } catch (const sdn::Error& e) {
      code_ = sdn::error_code_name(e.code());
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "OutOfMemory";
      SetError("out of memory while reading " + path_);
    } catch (const std::exception& e) {
      code_ = "Internal";
      SetError(std::string("internal error: ") + e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(to_js(Env(), info_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(make_error(Env(), code_, e.Message()).Value()); }

 private:
  std::string path_;
  std::string code_ = "Internal";
  sdn::ModelInfo info_;
  Napi::Promise::Deferred deferred_;
};

Napi::Value Inspect(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "inspect: expected a path string");
  auto* w = new InspectWorker(info.Env(), info[0].As<Napi::String>().Utf8Value());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// convert(input, output, {type, vaeType, tokenizerPath}, onProgress(done, total) | null, abortHandle | null)
//   -> Promise<ConvertSummary>. Runs on a thread of its own (minutes of work; see worker.h).
Napi::Value Convert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "convert: expected input and output path strings");
  std::string input = info[0].As<Napi::String>().Utf8Value();
  std::string output = info[1].As<Napi::String>().Utf8Value();
  sdn::ConvertOptions opts;
  if (info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    opts.type = get_string(o, "type", opts.type);
    opts.vae_type = get_string(o, "vaeType", opts.vae_type);
    opts.tokenizer_path = get_string(o, "tokenizerPath", opts.tokenizer_path);
    opts.fallback_merges = get_string(o, "fallbackMerges", "");
  }
  AbortFlag abort = get_abort_flag(env, info[4]);
  auto task = Task::create(env, abort, Napi::Object(), info[3], env.Undefined());
  auto worker = std::make_shared<Worker>();
  // The worker is joined on the JavaScript thread once the task has settled (its thread is then idle).
  task->set_on_settle([worker](Napi::Env, bool) { worker->stop_and_join(); });
  worker->post([task, input, output, opts]() mutable {
    Task* t = task.get();
    t->run([&]() -> ResultFn {
      opts.on_progress = [t](int64_t done, int64_t total) {
        // Conversions report once per tensor (thousands, fast): keep one event in flight, always send the last.
        if (t->try_begin(t->progress_in_flight, 1)) {
          t->emit([t, done, total](Napi::Env env, TaskJs& js) {
            t->progress_in_flight.fetch_sub(1);
            if (!js.on_progress.IsEmpty())
              js.on_progress.Call({Napi::Number::New(env, (double)done), Napi::Number::New(env, (double)total)});
          });
        } else if (done == total) {
          t->emit([done, total](Napi::Env env, TaskJs& js) {
            if (!js.on_progress.IsEmpty())
              js.on_progress.Call({Napi::Number::New(env, (double)done), Napi::Number::New(env, (double)total)});
          });
        }
        return !t->aborted();
      };
      sdn::ConvertSummary s = sdn::convert_model(input, output, opts);
      return [s](Napi::Env env) -> Napi::Value { return to_js(env, s); };
    });
  });
  return task->promise();
}

// validateParams(params): the engine's own checks, synchronous (no model needed). Throws Error with .code.
Napi::Value ValidateParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "validateParams: expected an object");
  Napi::Object o = info[0].As<Napi::Object>();
  sdn::GenerateParams p;
  p.prompt = get_string(o, "prompt", p.prompt);
  p.negative_prompt = get_string(o, "negativePrompt", p.negative_prompt);
  p.width = (int)get_number(o, "width", p.width);
  p.height = (int)get_number(o, "height", p.height);
  p.steps = (int)get_number(o, "steps", p.steps);
  p.cfg_scale = (float)get_number(o, "cfgScale", p.cfg_scale);
  p.sampler = get_string(o, "sampler", p.sampler);
  p.scheduler = get_string(o, "scheduler", p.scheduler);
  p.seed = (int64_t)get_number(o, "seed", (double)p.seed);
  p.rng = get_string(o, "rng", p.rng);
  p.clip_skip = (int)get_number(o, "clipSkip", p.clip_skip);
  p.batch_count = (int)get_number(o, "batchCount", p.batch_count);
  try {
    sdn::validate_params(p);
  } catch (const sdn::Error& e) {
    throw make_error(env, sdn::error_code_name(e.code()), e.what());
  }
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function abort_ctor = AbortHandle::define(env);
  data->abort_handle_ctor = Napi::Persistent(abort_ctor);
  exports.Set("getSystemInfo", Napi::Function::New(env, GetSystemInfo));
  exports.Set("probeDevice", Napi::Function::New(env, ProbeDevice));
  exports.Set("compiledBackends", Napi::Function::New(env, CompiledBackends));
  exports.Set("inspect", Napi::Function::New(env, Inspect));
  exports.Set("convert", Napi::Function::New(env, Convert));
  exports.Set("validateParams", Napi::Function::New(env, ValidateParams));
  exports.Set("AbortHandle", abort_ctor);
  exports.Set("Model", ModelWrap::define(env));
  return exports;
}

}  // namespace
}  // namespace sdnaddon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return sdnaddon::Init(env, exports); }

NODE_API_MODULE(sdnode, InitModule)
