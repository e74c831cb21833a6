// ThreadPool stress: indices claimed by whichever thread arrives first (the caller takes over indices a worker has
// not started), so every index of every region must run exactly once, with no lost wake-ups, under back-to-back
// regions, uneven work and more threads than cores.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/threadpool.h"
#include "sdn/error.h"
#include "test.h"

using namespace sdn;

TEST(pool, every_index_once_back_to_back) {
  for (int threads : {2, 3, 7}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits((size_t)threads);
    const int regions = 3000;
    for (int r = 0; r < regions; ++r) {
      pool.run([&](int i, int n) {
        if (n != threads) throw Error(ErrorCode::Internal, "wrong thread count");
        hits[(size_t)i].fetch_add(1, std::memory_order_relaxed);
        if ((r + i) % 97 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));  // uneven work
      });
    }
    for (int i = 0; i < threads; ++i) EXPECT_EQ(hits[(size_t)i].load(), regions);
  }
}

TEST(pool, wakes_after_idle_sleep) {
  // Workers go to sleep after their spin; the next region must still complete (and use them or not).
  ThreadPool pool(3);
  for (int r = 0; r < 3; ++r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::atomic<int> sum{0};
    pool.run([&](int i, int) { sum += i + 1; });
    EXPECT_EQ(sum.load(), 6);
  }
}

TEST(pool, per_index_scratch_is_exclusive) {
  // Two indices never run at the same time on one thread: a per-index slot is never shared concurrently.
  ThreadPool pool(4);
  std::vector<std::atomic<int>> busy(4);
  std::atomic<bool> clash{false};
  for (int r = 0; r < 500; ++r)
    pool.run([&](int i, int) {
      if (busy[(size_t)i].fetch_add(1) != 0) clash = true;
      busy[(size_t)i].fetch_sub(1);
    });
  EXPECT_TRUE(!clash.load());
}
