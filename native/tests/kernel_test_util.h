// Helpers shared by the GEMM and convolution tests: weights of every type, f64 references, SIMD/thread sweeps.
#pragma once
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "test.h"

namespace sdntest {

// Weight types the kernels are tested with.
inline std::vector<sdn::DType> kernel_weight_types() {
  return {sdn::DType::F32,  sdn::DType::F16,  sdn::DType::BF16, sdn::DType::Q8_0, sdn::DType::Q4_0, sdn::DType::Q4_1,
          sdn::DType::Q5_0, sdn::DType::Q5_1, sdn::DType::Q4_K, sdn::DType::Q5_K, sdn::DType::Q6_K};
}

// Whether a weight of type t can have rows of k elements (block types need whole blocks).
inline bool type_fits(sdn::DType t, int64_t k) { return k % sdn::dtype_traits(t).block_size == 0; }

// rows x k weight tensor of type t (shape `shape`, rows of k elements) from random values; `deq` receives the
// exact values the kernels must use (the stored values, dequantized).
inline sdn::Tensor make_weight(sdn::DType t, const std::vector<int64_t>& shape, int64_t rows, int64_t k, uint32_t seed,
                               std::vector<float>* deq, float scale = 1.f) {
  std::vector<float> v = random_vector((size_t)(rows * k), seed, -scale, scale);
  size_t rb = sdn::dtype_row_bytes(t, k);
  auto buf = std::shared_ptr<uint8_t>(new uint8_t[rows * rb + 64], std::default_delete<uint8_t[]>());
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = buf.get() + r * rb;
    const float* src = v.data() + r * k;
    switch (t) {
      case sdn::DType::F32: std::memcpy(dst, src, (size_t)k * 4); break;
      case sdn::DType::F16:
        for (int64_t i = 0; i < k; ++i) reinterpret_cast<uint16_t*>(dst)[i] = sdn::f32_to_f16(src[i]);
        break;
      case sdn::DType::BF16:
        for (int64_t i = 0; i < k; ++i) reinterpret_cast<uint16_t*>(dst)[i] = sdn::f32_to_bf16(src[i]);
        break;
      default: sdn::quantize_row(t, src, dst, k); break;
    }
  }
  deq->assign((size_t)(rows * k), 0.f);
  for (int64_t r = 0; r < rows; ++r) sdn::dequantize_row(t, buf.get() + r * rb, deq->data() + r * k, k);
  return sdn::Tensor::wrap(buf.get(), shape, t, buf);
}

// |got - ref| <= rel * scale + abs per element (scale: the sum of |terms| of that element).
inline void expect_close_scaled(const float* got, const std::vector<double>& ref, const std::vector<double>& scale,
                                double rel, double abs, const std::string& what) {
  for (size_t i = 0; i < ref.size(); ++i) {
    double err = std::fabs((double)got[i] - ref[i]);
    double tol = rel * scale[i] + abs;
    if (!(err <= tol))
      SDN_FAIL(what << ": element " << i << " got " << got[i] << " want " << ref[i] << " (err " << err << ", tol "
                    << tol << ")");
  }
}

inline std::vector<sdn::SimdLevel> simd_levels() {
  std::vector<sdn::SimdLevel> v;
  for (auto l : {sdn::SimdLevel::Scalar, sdn::SimdLevel::AVX2, sdn::SimdLevel::AVX512, sdn::SimdLevel::NEON})
    if (sdn::simd_supported(l)) v.push_back(l);
  return v;
}

// Restores the SIMD level and thread count when a test ends (also on failure).
struct KernelEnvGuard {
  sdn::SimdLevel level = sdn::simd_level();
  ~KernelEnvGuard() {
    sdn::simd_set_level(level);
    sdn::set_default_threads(0);
  }
};

}  // namespace sdntest
