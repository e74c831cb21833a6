// sdnode addon: one asynchronous engine call ("task") and the JavaScript promise it settles.
//
// A task is created on the JavaScript thread (it makes the promise and a ThreadSafeFunction), runs its body on a
// Worker thread, sends events (progress, previews) back with non-blocking calls, and finally settles the promise
// on the JavaScript thread. Two halves, so that nothing touches JavaScript values off the JavaScript thread:
//   - Task (shared_ptr, used by the worker): abort flags, the ThreadSafeFunction handle, timing;
//   - TaskJs (owned by the ThreadSafeFunction, deleted on the JavaScript thread): the deferred promise and the
//     references to callbacks and to the object that must stay alive while the task runs.
//
// Shutdown: Node closes ThreadSafeFunctions in its environment clean-up hooks, which run last-registered-first.
// Each task registers its own hook right after creating its ThreadSafeFunction, so the hook runs BEFORE Node
// closes that function: it raises the environment's shutdown flag (which every task's should_abort reads) and
// waits until the task's body has returned. A worker thread thus never calls a freed ThreadSafeFunction.
#pragma once
#include <napi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "sdn/error.h"

namespace sdnaddon {

using AbortFlag = std::shared_ptr<std::atomic<bool>>;

// Per-environment data (main thread and each worker_threads Worker have their own).
struct AddonData {
  Napi::FunctionReference abort_handle_ctor;
  AbortFlag shutdown = std::make_shared<std::atomic<bool>>(false);
};
AddonData& addon_data(Napi::Env env);

// JavaScript Error with .code = the engine's ErrorCode name ("InvalidArgument", "Aborted", ...).
Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);

struct TaskJs;
class Task;

// Something a worker sends to the JavaScript thread; runs there.
using Event = std::function<void(Napi::Env, TaskJs&)>;
// Produces the promise's value on the JavaScript thread.
using ResultFn = std::function<Napi::Value(Napi::Env)>;
// Called on the JavaScript thread when the task has settled (success or not), before the promise settles.
using SettleHook = std::function<void(Napi::Env, bool ok)>;

void call_js(Napi::Env env, Napi::Function, TaskJs* ctx, Event* ev);
using Tsfn = Napi::TypedThreadSafeFunction<TaskJs, Event, call_js>;

struct TaskJs {
  std::shared_ptr<Task> task;
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference keep_alive;  // e.g. the Model wrapper, so GC cannot finalise it mid-call
  Napi::FunctionReference on_progress, on_preview;
  SettleHook on_settle;
  explicit TaskJs(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

class Task : public std::enable_shared_from_this<Task> {
 public:
  // JS thread. `abort` may be null (then the task has its own flag). `keep_alive` may be empty.
  static std::shared_ptr<Task> create(Napi::Env env, AbortFlag abort, Napi::Object keep_alive,
                                      Napi::Value on_progress, Napi::Value on_preview);
  Napi::Promise promise() const;  // JS thread
  void set_on_settle(SettleHook h);  // JS thread, before start

  // Worker thread: runs body (unless already aborted), settles the promise with its result or its error, then
  // releases the ThreadSafeFunction. Call exactly once.
  void run(const std::function<ResultFn()>& body);
  // JS thread: settles immediately with an error without running (e.g. the model was disposed).
  void reject_now(Napi::Env env, const std::string& code, const std::string& message);

  // Worker thread helpers.
  bool aborted() const { return abort_->load() || shutdown_->load(); }
  void emit(Event ev);  // non-blocking; dropped if JavaScript is gone
  double elapsed_ms() const;
  // Coalescing of frequent events: try_begin returns false while `limit` events of that kind are undelivered.
  bool try_begin(std::atomic<int>& in_flight, int limit);

  std::atomic<int> progress_in_flight{0};
  std::atomic<int> previews_in_flight{0};

 private:
  friend void on_env_teardown(void* arg);
  Task() = default;
  void finish();

  AbortFlag abort_, shutdown_;
  Tsfn tsfn_;
  TaskJs* js_ = nullptr;  // owned by the ThreadSafeFunction
  napi_env env_ = nullptr;
  bool hook_registered_ = false;  // JS thread only
  void settle(Napi::Env env, TaskJs& js, bool ok, const ResultFn& result, const std::string& code,
              const std::string& message);
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::mutex mutex_;
  std::condition_variable cv_;
  bool finished_ = false;
  bool started_ = false;
};

void on_env_teardown(void* arg);

// Helpers to read JavaScript option objects (defensive: lib/ validates first; these throw TypeError).
std::string get_string(const Napi::Object& o, const char* key, const std::string& def);
double get_number(const Napi::Object& o, const char* key, double def);
AbortFlag get_abort_flag(Napi::Env env, const Napi::Value& v);  // an AbortHandle, or undefined/null

}  // namespace sdnaddon
