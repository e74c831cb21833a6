// Core: dtype conversions, tensors, pool allocator, thread pool, CPU detection.
#include <atomic>
#include <cstring>

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "sdn/error.h"
#include "test.h"

using namespace sdn;

TEST(core, f16_roundtrip_exhaustive) {
  // Every finite half converts to float and back unchanged.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint32_t exp = (h >> 10) & 0x1f;
    float f = f16_to_f32((uint16_t)h);
    if (exp == 31) {
      EXPECT_TRUE(!std::isfinite(f));
      continue;
    }
    EXPECT_EQ((uint32_t)f32_to_f16(f), h);
  }
}

TEST(core, f16_rounding_against_double) {
  auto v = sdntest::random_vector(20001, 7, -65000.f, 65000.f);
  auto small = sdntest::random_vector(20001, 8, -1e-4f, 1e-4f);
  v.insert(v.end(), small.begin(), small.end());
  for (float x : v) {
    uint16_t h = f32_to_f16(x);
    double back = f16_to_f32(h);
    // No other half is strictly closer (round to nearest).
    for (int d : {-1, 1}) {
      uint16_t n = (uint16_t)(h + d);
      if (((n >> 10) & 0x1f) == 31 || ((h ^ n) & 0x8000)) continue;
      EXPECT_TRUE(std::fabs((double)f16_to_f32(n) - x) >= std::fabs(back - x));
    }
  }
}

TEST(core, bf16_round_to_nearest_even) {
  EXPECT_EQ(f32_to_bf16(1.0f), (uint16_t)0x3f80);
  float x;
  uint32_t u = 0x3f808000u;  // exactly half-way: rounds to even (0x3f80)
  std::memcpy(&x, &u, 4);
  EXPECT_EQ(f32_to_bf16(x), (uint16_t)0x3f80);
  u = 0x3f818000u;  // half-way, odd: rounds up
  std::memcpy(&x, &u, 4);
  EXPECT_EQ(f32_to_bf16(x), (uint16_t)0x3f82);
  EXPECT_NEAR(bf16_to_f32(f32_to_bf16(3.14159f)), 3.140625, 1e-9);
}

TEST(core, dtype_traits_match_gguf) {
  EXPECT_EQ(dtype_traits(DType::Q4_0).block_bytes, 18);
  EXPECT_EQ(dtype_traits(DType::Q4_1).block_bytes, 20);
  EXPECT_EQ(dtype_traits(DType::Q5_0).block_bytes, 22);
  EXPECT_EQ(dtype_traits(DType::Q5_1).block_bytes, 24);
  EXPECT_EQ(dtype_traits(DType::Q8_0).block_bytes, 34);
  EXPECT_EQ(dtype_traits(DType::Q4_K).block_bytes, 144);
  EXPECT_EQ(dtype_traits(DType::Q5_K).block_bytes, 176);
  EXPECT_EQ(dtype_traits(DType::Q6_K).block_bytes, 210);
  EXPECT_TRUE(dtype_from_name("Q4_k") == DType::Q4_K);
  EXPECT_TRUE(dtype_from_name("nope") == DType::Invalid);
  EXPECT_TRUE(!dtype_known(4));
}

TEST(core, tensor_views_and_pool_reuse) {
  TensorPool pool;
  void* first;
  {
    Tensor t = Tensor::empty({2, 3, 5, 7}, DType::F32, &pool);
    EXPECT_EQ(t.numel(), (int64_t)210);
    EXPECT_TRUE(t.is_contiguous());
    first = t.data;
    Tensor r = t.reshape({6, 35});
    EXPECT_TRUE(r.data == t.data);
    EXPECT_EQ(pool.bytes_in_use() >= 840, true);
  }
  EXPECT_EQ(pool.bytes_in_use(), (size_t)0);
  Tensor again = Tensor::empty({210}, DType::F32, &pool);
  EXPECT_TRUE(again.data == first);  // reused, no new malloc
  EXPECT_THROWS_CODE(again.reshape({7, 7}), ErrorCode::Internal);
}

TEST(core, pool_limit_is_an_error_not_a_crash) {
  TensorPool pool;
  pool.set_limit(1 << 20);
  EXPECT_THROWS_CODE(Tensor::empty({1 << 20}, DType::F32, &pool), ErrorCode::OutOfMemory);
}

TEST(core, threadpool_covers_range_once) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 7, 1000, 12345}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, 13, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
  }
}

TEST(core, threadpool_propagates_exceptions_and_nests) {
  ThreadPool pool(3);
  bool caught = false;
  try {
    pool.run([](int i, int) {
      if (i == 1) throw sdn::Error(ErrorCode::Aborted, "stop");
    });
  } catch (const sdn::Error& e) {
    caught = e.code() == ErrorCode::Aborted;
  }
  EXPECT_TRUE(caught);
  std::atomic<int> inner{0};
  pool.run([&](int, int) { pool.run([&](int, int n) { inner += n; }); });
  EXPECT_EQ(inner.load(), 3);  // each of 3 threads ran the nested region inline once
}

TEST(core, cpu_detection_is_consistent) {
  EXPECT_TRUE(simd_supported(SimdLevel::Scalar));
  EXPECT_TRUE(simd_supported(simd_best()));
  SimdLevel before = simd_level();
  EXPECT_TRUE(simd_set_level(SimdLevel::Scalar));
  EXPECT_TRUE(simd_level() == SimdLevel::Scalar);
  simd_set_level(before);
  EXPECT_TRUE(cpu_features().physical_cores >= 1);
}

#include "backends/cpu/simd/isa_name.h"

TEST(core, dispatch_reaches_each_compiled_isa) {
  SimdLevel before = simd_level();
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512, SimdLevel::NEON}) {
    if (!simd_set_level(l)) continue;
    EXPECT_EQ(std::string(SDN_DISPATCH(isa_name)()), std::string(simd_name(l)));
  }
  simd_set_level(before);
}
