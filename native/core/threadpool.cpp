#include "core/threadpool.h"

#include <chrono>
#include <cstdlib>
#include <memory>
#include <thread>

#include "core/cpu.h"

namespace sdn {

namespace {
thread_local bool t_in_region = false;
}

namespace {

// Spins (with pause) until pred() or about `us` microseconds have passed. Returns pred(). Every 64 pauses the
// thread also yields its core: when the process has more runnable threads than cores (other processes, or
// several pools), a spinning waiter must not hold the core the thread it waits for needs.
template <typename Pred>
bool spin_until(Pred pred, int us) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (pred()) return true;
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
    if ((i & 63) == 63) {
      if (std::chrono::steady_clock::now() - start > std::chrono::microseconds(us)) return pred();
      std::this_thread::yield();
    }
  }
}

constexpr int kWorkerSpinUs = 200;  // regions come back to back during a forward pass
constexpr int kCallerSpinUs = 100;

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stop_ = true;
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_index(int index) {
  t_in_region = true;
  try {
    (*job_)(index, n_threads_);
  } catch (...) {
    std::lock_guard<std::mutex> lk(mutex_);
    if (!error_) error_ = std::current_exception();
  }
  t_in_region = false;
}

void ThreadPool::drain(uint32_t gen) {
  for (;;) {
    uint64_t t = ticket_.load(std::memory_order_acquire);
    if ((uint32_t)(t >> 32) != gen) return;  // another region
    const uint32_t idx = (uint32_t)t;
    if (idx >= (uint32_t)n_threads_) return;  // all claimed
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    // Index idx of region gen is ours: the region cannot end before we report it done, so job_ is valid.
    run_index((int)idx);
    if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == n_threads_ - 1 &&
        caller_waiting_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lk(mutex_);
      done_cv_.notify_all();
    }
  }
}

void ThreadPool::worker_main(int) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; }, kWorkerSpinUs);
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      std::unique_lock<std::mutex> lk(mutex_);
      wake_cv_.wait(lk, [&] { return stop_ || generation_.load(std::memory_order_seq_cst) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      if (stop_) return;
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    drain(g);
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (t_in_region) {  // nested region: run inline on this thread
    fn(0, 1);
    return;
  }
  if (n_threads_ == 1) {
    struct Reset {
      ~Reset() { t_in_region = false; }
    } reset;
    t_in_region = true;
    fn(0, 1);
    return;
  }
  std::lock_guard<std::mutex> region(region_mutex_);
  job_ = &fn;
  error_ = nullptr;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
  ticket_.store(((uint64_t)gen << 32) | 1u, std::memory_order_release);  // index 0 is the caller's
  generation_.store(gen, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lk(mutex_); }
    wake_cv_.notify_all();
  }
  run_index(0);
  drain(gen);  // indices no worker has claimed yet
  // Wait for indices that workers are running.
  auto all_done = [&] { return done_.load(std::memory_order_seq_cst) == n_threads_ - 1; };
  if (!spin_until(all_done, kCallerSpinUs)) {
    caller_waiting_.store(true, std::memory_order_seq_cst);
    std::unique_lock<std::mutex> lk(mutex_);
    done_cv_.wait(lk, all_done);
    caller_waiting_.store(false, std::memory_order_relaxed);
  }
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    err = error_;
    error_ = nullptr;
    job_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n <= grain || n_threads_ == 1 || t_in_region) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  run([&](int, int) {
    for (;;) {
      int64_t b = next.fetch_add(grain, std::memory_order_relaxed);
      if (b >= n) break;
      int64_t e = b + grain < n ? b + grain : n;
      fn(b, e);
    }
  });
}

namespace {
std::mutex g_pool_mutex;
std::unique_ptr<ThreadPool> g_pool;
int g_requested = 0;

int resolve_threads(int n) {
  if (n > 0) return n;
  if (const char* env = std::getenv("SDN_THREADS")) {
    int v = std::atoi(env);
    if (v > 0) return v;
  }
  return cpu_features().physical_cores;
}
}  // namespace

static thread_local ThreadPool* t_current_threads = nullptr;

ThreadPoolScope::ThreadPoolScope(ThreadPool* pool) : saved_(t_current_threads) { t_current_threads = pool; }
ThreadPoolScope::~ThreadPoolScope() { t_current_threads = saved_; }

ThreadPool& current_pool() { return t_current_threads ? *t_current_threads : default_pool(); }

int resolve_thread_count(int n) { return resolve_threads(n); }

ThreadPool& default_pool() {
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  if (!g_pool) g_pool = std::make_unique<ThreadPool>(resolve_threads(g_requested));
  return *g_pool;
}

void set_default_threads(int n) {
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  int want = resolve_threads(n);
  g_requested = n;
  if (g_pool && g_pool->size() == want) return;
  g_pool = std::make_unique<ThreadPool>(want);
}

int default_threads() { return default_pool().size(); }

}  // namespace sdn
