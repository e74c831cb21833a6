// Persistent thread pool: workers are created once; each parallel region wakes them (short spin, then sleep).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sdn {

class ThreadPool {
 public:
  // n_threads includes the calling thread; n_threads - 1 workers are started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, n_threads) on every thread of the pool (the caller is index 0) and waits for all.
  // An exception thrown by fn on any thread is rethrown here (the first one). Calls from inside a running
  // region (nested) run fn(0, 1) inline. Regions from different caller threads are serialised.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into chunks of about `grain` items handed out dynamically; fn(begin, end) per chunk.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_main(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex region_mutex_;  // one region at a time
  std::mutex mutex_;
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
  std::exception_ptr error_;
};

// Process-wide pool used by the CPU backend. Default size: physical cores (SDN_THREADS overrides).
ThreadPool& default_pool();
// Replaces the default pool with one of n threads (n <= 0: default). Not safe while a region runs.
void set_default_threads(int n);
int default_threads();

}  // namespace sdn
