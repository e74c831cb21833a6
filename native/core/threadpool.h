// Persistent thread pool: workers are created once; each parallel region wakes them (short timed spin, then sleep).
// The n_threads "thread indices" of a region are claimed by whichever threads arrive first: the caller runs index 0,
// then claims any index a worker has not started yet (a worker that is descheduled on a busy machine never holds
// the region up; it only runs what is left when it arrives).
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

  // Runs fn(index, n_threads) once for every index in [0, n_threads) and waits for all: index 0 on the calling
  // thread, the others on pool threads (or on the caller, when a worker has not picked its index up by the time the
  // caller is free; indices never run concurrently on one thread, so per-index scratch is safe). An exception thrown
  // by fn is rethrown here (the first one). Calls from inside a running region (nested) run fn(0, 1) inline.
  // Regions from different caller threads are serialised.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into chunks of about `grain` items handed out dynamically; fn(begin, end) per chunk.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_main(int index);
  // Claims and runs indices of region `gen` until none is left.
  void drain(uint32_t gen);
  void run_index(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex region_mutex_;  // one region at a time
  std::mutex mutex_;
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> ticket_{0};  // (generation << 32) | next unclaimed index
  std::atomic<int> done_{0};         // indices finished in the current region (index 0 excluded)
  std::atomic<int> sleepers_{0};     // workers blocked on wake_cv_
  std::atomic<bool> caller_waiting_{false};
  bool stop_ = false;
  std::exception_ptr error_;
};

// Process-wide pool (the shared CPU backend's). Default size: physical cores (SDN_THREADS overrides).
ThreadPool& default_pool();
// The pool CPU kernels use: the pool of the CPU backend instance whose operation runs on this thread (set by a
// ThreadPoolScope), else default_pool().
ThreadPool& current_pool();
// Makes `pool` this thread's current pool for the scope's lifetime (nests).
class ThreadPoolScope {
 public:
  explicit ThreadPoolScope(ThreadPool* pool);
  ~ThreadPoolScope();
  ThreadPoolScope(const ThreadPoolScope&) = delete;
  ThreadPoolScope& operator=(const ThreadPoolScope&) = delete;

 private:
  ThreadPool* saved_;
};
// n > 0: n; else SDN_THREADS when set, else the physical core count.
int resolve_thread_count(int n);
// Replaces the default pool with one of n threads (n <= 0: default). Not safe while a region runs.
void set_default_threads(int n);
int default_threads();

}  // namespace sdn
