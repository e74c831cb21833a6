#include "task.h"

#include <new>

#include "abort_handle.h"

namespace sdnaddon {

AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, code));
  return e;
}

void call_js(Napi::Env env, Napi::Function, TaskJs* ctx, Event* ev) {
  if (env != nullptr && ctx != nullptr && ev != nullptr) {
    try {
      Napi::HandleScope scope(env);
      (*ev)(env, *ctx);
    } catch (const Napi::Error&) {
      // lib/ wraps every callback it hands us so that it never throws; an exception here is ignored rather than
      // allowed to unwind through Node's ThreadSafeFunction machinery.
    }
  }
  delete ev;
}

std::shared_ptr<Task> Task::create(Napi::Env env, AbortFlag abort, Napi::Object keep_alive, Napi::Value on_progress,
                                   Napi::Value on_preview) {
  std::shared_ptr<Task> t(new Task());
  t->abort_ = abort ? abort : std::make_shared<std::atomic<bool>>(false);
  t->shutdown_ = addon_data(env).shutdown;
  t->env_ = env;
  auto* js = new TaskJs(env);
  js->task = t;
  if (!keep_alive.IsEmpty()) js->keep_alive = Napi::Persistent(keep_alive);
  if (on_progress.IsFunction()) js->on_progress = Napi::Persistent(on_progress.As<Napi::Function>());
  if (on_preview.IsFunction()) js->on_preview = Napi::Persistent(on_preview.As<Napi::Function>());
  t->js_ = js;
  // Unlimited queue: calls never block the worker. Events that can be frequent are coalesced by the sender.
  t->tsfn_ = Tsfn::New(env, "sdnode", 0, 1, js, [](Napi::Env, void*, TaskJs* ctx) { delete ctx; });
  // Registered after the ThreadSafeFunction, so it runs before Node closes it (hooks run in reverse order).
  napi_add_env_cleanup_hook(env, on_env_teardown, t.get());
  t->hook_registered_ = true;
  return t;
}

Napi::Promise Task::promise() const { return js_->deferred.Promise(); }

void Task::set_on_settle(SettleHook h) { js_->on_settle = std::move(h); }

void on_env_teardown(void* arg) {
  auto* t = static_cast<Task*>(arg);
  t->hook_registered_ = false;
  t->shutdown_->store(true);  // every task of this environment aborts at its next poll
  std::unique_lock<std::mutex> lock(t->mutex_);
  // Every task is either run by its worker (which drains its queue) or rejected at once, so this ends.
  t->cv_.wait(lock, [t] { return t->finished_; });
}

double Task::elapsed_ms() const {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
}

bool Task::try_begin(std::atomic<int>& in_flight, int limit) {
  if (in_flight.fetch_add(1) >= limit) {
    in_flight.fetch_sub(1);
    return false;
  }
  return true;
}

void Task::emit(Event ev) {
  auto* p = new Event(std::move(ev));
  if (tsfn_.NonBlockingCall(p) != napi_ok) delete p;
}

void Task::run(const std::function<ResultFn()>& body) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = true;
  }
  start_ = std::chrono::steady_clock::now();
  ResultFn result;
  std::string code, message;
  bool ok = false;
  if (aborted()) {
    code = "Aborted";
    message = "the operation was aborted before it started";
  } else {
    try {
      result = body();
      ok = true;
    } catch (const sdn::Error& e) {
      code = sdn::error_code_name(e.code());
      message = e.what();
    } catch (const std::bad_alloc&) {
      code = "OutOfMemory";
      message = "out of memory: the engine could not allocate what this call needs; use a smaller size or batch, "
                "a quantized weight type, or close other programs";
    } catch (const std::exception& e) {
      code = "Internal";
      message = std::string("internal error: ") + e.what();
    } catch (...) {
      code = "Internal";
      message = "internal error: unknown exception";
    }
    // An abort that arrives while the last phase finishes still wins: the caller asked to stop, so the result is
    // dropped (its memory is released here, on the worker) and the promise rejects with Aborted.
    if (ok && aborted()) {
      ok = false;
      result = nullptr;
      code = "Aborted";
      message = "the operation was aborted";
    }
  }
  auto self = shared_from_this();
  emit([self, ok, result, code, message](Napi::Env env, TaskJs& js) { self->settle(env, js, ok, result, code, message); });
  finish();
}

void Task::reject_now(Napi::Env env, const std::string& code, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = true;
  }
  settle(env, *js_, false, nullptr, code, message);
  finish();
}

void Task::finish() {
  tsfn_.Release();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
  }
  cv_.notify_all();
}

void Task::settle(Napi::Env env, TaskJs& js, bool ok, const ResultFn& result, const std::string& code,
                  const std::string& message) {
  if (hook_registered_) {
    napi_remove_env_cleanup_hook(env, on_env_teardown, this);
    hook_registered_ = false;
  }
  if (js.on_settle) {
    try {
      js.on_settle(env, ok);
    } catch (const Napi::Error&) {
    }
  }
  js.on_progress.Reset();
  js.on_preview.Reset();
  if (ok) {
    Napi::Value v;
    try {
      v = result ? result(env) : env.Undefined();
    } catch (const Napi::Error& e) {
      js.keep_alive.Reset();
      js.deferred.Reject(e.Value());
      return;
    }
    js.keep_alive.Reset();
    js.deferred.Resolve(v);
  } else {
    js.keep_alive.Reset();
    js.deferred.Reject(make_error(env, code, message).Value());
  }
}

std::string get_string(const Napi::Object& o, const char* key, const std::string& def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("expected a string for ") + key);
  return v.As<Napi::String>().Utf8Value();
}

double get_number(const Napi::Object& o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

AbortFlag get_abort_flag(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (v.IsObject() && v.As<Napi::Object>().InstanceOf(addon_data(env).abort_handle_ctor.Value())) {
    return AbortHandle::Unwrap(v.As<Napi::Object>())->flag();
  }
  throw Napi::TypeError::New(env, "expected an AbortHandle");
}

}  // namespace sdnaddon
