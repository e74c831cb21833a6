// linear (blocked GEMM with weights of every type) against a double-precision reference.
// Tolerance: |got - ref| <= 1e-5 * sum_k |x_k w_k| + 1e-6 (f32 accumulation of up to ~1000 terms).
#include <vector>

#include "backends/cpu/gemm.h"
#include "kernel_test_util.h"
#include "sdn/error.h"

using namespace sdn;
using namespace sdntest;

namespace {

struct LinCase {
  std::vector<int64_t> lead;  // leading dims of x (product = M)
  int64_t k, n;
  bool bias;
};

void run_linear_case(DType t, const LinCase& lc, uint32_t seed) {
  int64_t m = 1;
  for (auto d : lc.lead) m *= d;
  std::vector<int64_t> xs = lc.lead;
  xs.push_back(lc.k);
  std::vector<float> xv = random_vector((size_t)(m * lc.k), seed);
  Tensor x = Tensor::from_vector(xs, xv);
  std::vector<float> wd;
  Tensor w = make_weight(t, {lc.n, lc.k}, lc.n, lc.k, seed + 1, &wd);
  std::vector<float> bv = random_vector((size_t)lc.n, seed + 2);
  Tensor b = Tensor::from_vector({lc.n}, bv);

  std::vector<double> ref((size_t)(m * lc.n)), scale((size_t)(m * lc.n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < lc.n; ++j) {
      double s = lc.bias ? bv[j] : 0.0, sa = lc.bias ? std::fabs(bv[j]) : 0.0;
      for (int64_t k = 0; k < lc.k; ++k) {
        double p = (double)xv[i * lc.k + k] * wd[j * lc.k + k];
        s += p;
        sa += std::fabs(p);
      }
      ref[i * lc.n + j] = s;
      scale[i * lc.n + j] = sa;
    }

  std::string what = std::string("linear ") + dtype_name(t) + " M=" + std::to_string(m) + " K=" +
                     std::to_string(lc.k) + " N=" + std::to_string(lc.n) + " at " + simd_name(simd_level());
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    set_default_threads(threads);
    Tensor y = cpu::linear(x, w, lc.bias ? &b : nullptr);
    EXPECT_EQ(y.ndim, (int)xs.size());
    EXPECT_EQ(y.dim(-1), lc.n);
    expect_close_scaled(y.f32(), ref, scale, 1e-5, 1e-6, what + " threads=" + std::to_string(threads));
    if (threads == 1) {
      first.assign(y.f32(), y.f32() + y.numel());
    } else if (std::memcmp(first.data(), y.f32(), first.size() * 4) != 0) {
      SDN_FAIL(what << ": 1 and " << threads << " threads differ");
    }
  }
}

}  // namespace

TEST(gemm, linear_all_types_levels_threads) {
  KernelEnvGuard guard;
  const std::vector<LinCase> cases = {
      {{1}, 1, 1, true},       {{1}, 17, 3, false},    {{3}, 5, 7, true},       {{2, 3}, 40, 33, true},
      {{9}, 64, 65, false},    {{17}, 300, 40, true},  {{77}, 768, 35, true},   {{5}, 1000, 70, false},
      {{1}, 96, 129, true},    {{70}, 64, 300, true},   {{3}, 256, 17, true},    {{33}, 512, 45, false},
      {{2}, 1024, 9, true},
      // more than 160 rows: the row-panel path (weights packed as B) instead of the few-rows path
      {{200}, 40, 33, true},   {{3, 70}, 64, 45, false}, {{170}, 512, 70, true},  {{161}, 1000, 5, true},
  };
  uint32_t seed = 100;
  for (SimdLevel level : simd_levels()) {
    EXPECT_TRUE(simd_set_level(level));
    for (DType t : kernel_weight_types())
      for (const auto& lc : cases)
        if (type_fits(t, lc.k)) run_linear_case(t, lc, seed += 7);
  }
}

TEST(gemm, linear_one_dimensional_input) {
  // x [K] -> y [N]
  std::vector<float> xv = random_vector(6, 11), wv = random_vector(12, 12), bv = random_vector(2, 13);
  Tensor y = cpu::linear(Tensor::from_vector({6}, xv), Tensor::from_vector({2, 6}, wv), nullptr);
  EXPECT_EQ(y.ndim, 1);
  EXPECT_EQ(y.shape[0], (int64_t)2);
  for (int j = 0; j < 2; ++j) {
    double s = 0;
    for (int k = 0; k < 6; ++k) s += (double)xv[k] * wv[j * 6 + k];
    EXPECT_NEAR(y.f32()[j], s, 1e-5);
  }
  (void)bv;
}

TEST(gemm, linear_rejects_bad_input) {
  Tensor x = Tensor::from_vector({2, 3}, random_vector(6, 1));
  Tensor w = Tensor::from_vector({4, 5}, random_vector(20, 2));
  EXPECT_THROWS_CODE(cpu::linear(x, w, nullptr), ErrorCode::InvalidArgument);
  Tensor w2 = Tensor::from_vector({4, 3}, random_vector(12, 3));
  Tensor b = Tensor::from_vector({3}, random_vector(3, 4));
  EXPECT_THROWS_CODE(cpu::linear(x, w2, &b), ErrorCode::InvalidArgument);
  Tensor w3 = Tensor::from_vector({4, 3, 1}, random_vector(12, 3));
  EXPECT_THROWS_CODE(cpu::linear(x, w3, nullptr), ErrorCode::InvalidArgument);
}
