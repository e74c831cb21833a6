// sdnode addon: the threads that run engine work off the JavaScript thread.
//
// Design choice (see docs/API.md, "Threading"): every Model owns ONE dedicated std::thread (a Worker) with a FIFO
// queue, and every convert() call gets a Worker of its own. We do not use Napi::AsyncWorker for engine work:
// AsyncWorker runs on the libuv thread pool (4 threads by default), which Node also uses for fs, dns.lookup, zlib
// and crypto. A generation or a conversion takes seconds to minutes, so two of them would starve half of that
// pool and every `fs.readFile` in the application would queue behind them. A dedicated thread costs one idle
// stack per model, serialises the calls of one model in order (the engine allows one call per Model at a time),
// and keeps the libuv pool free. The heavy math itself runs on the engine's own CPU thread pool; the Worker only
// drives it. Results, progress and previews cross back to JavaScript through a Napi::ThreadSafeFunction with
// non-blocking calls, so the engine never waits for JavaScript.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace sdnaddon {

class Worker {
 public:
  Worker();
  ~Worker();  // stop() then join
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Queues fn to run on the worker thread after everything queued before it. fn must not throw.
  void post(std::function<void()> fn);
  // Lets the queued jobs finish, then ends the thread and joins it. Safe to call twice.
  void stop_and_join();

 private:
  void main();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sdnaddon
