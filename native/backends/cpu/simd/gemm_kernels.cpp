// GEMM microkernels, compiled once per ISA (see gemm_kernels.h for the contract).
//   avx512: 8 x 32 tile, 16 zmm accumulators (A broadcast from 8 rows, two B vectors per k)
//   avx2:   6 x 16 tile, 12 ymm accumulators
//   scalar: 4 x 8 tile in plain C++ (also the reference the others are tested against)
// No STL and no header-defined inline functions are used here: this file is compiled with different -m flags
// per ISA, and a shared inline function could otherwise be merged across the copies by the linker.
#include "backends/cpu/simd/gemm_kernels.h"

#if SDN_ISA_avx512 || SDN_ISA_avx2
#include <immintrin.h>
#endif

namespace sdn {
namespace cpu {
namespace SDN_ISA {

#if SDN_ISA_avx512

static constexpr int kMR = 8;
static constexpr int kNR = 32;

template <int R>
static void kernel_rows(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc, int ncols,
                        const float* bias, bool accumulate) {
  __mmask16 m0 = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1u);
  __mmask16 m1 = ncols >= 32 ? (__mmask16)0xffff : ncols <= 16 ? (__mmask16)0 : (__mmask16)((1u << (ncols - 16)) - 1u);
  __m512 c0[R], c1[R];
  if (accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      c1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
  } else {
    __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = b0;
      c1[r] = b1;
    }
  }
  const float* ar[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
  for (int64_t k = 0; k < kc; ++k) {
    __m512 v0 = _mm512_loadu_ps(bp + k * kNR);
    __m512 v1 = _mm512_loadu_ps(bp + k * kNR + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m512 av = _mm512_set1_ps(ar[r][k]);
      c0[r] = _mm512_fmadd_ps(av, v0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, v1, c1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

void gemm_pack_panel(const float* src, int64_t ld, int rows, int64_t count, float* dst) {
  int64_t k = 0;
  if (rows == kNR) {
    // 16 x 16 blocks transposed through gathers from L1 (the rows were just dequantized there).
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)ld));
    for (; k < count; ++k) {
      _mm512_storeu_ps(dst + k * kNR, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)0xffff, idx, src + k, 4));
      _mm512_storeu_ps(dst + k * kNR + 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)0xffff, idx, src + 16 * ld + k, 4));
    }
    return;
  }
  for (; k < count; ++k) {
    float* d = dst + k * kNR;
    for (int r = 0; r < rows; ++r) d[r] = src[r * ld + k];
    for (int r = rows; r < kNR; ++r) d[r] = 0.f;
  }
}

#elif SDN_ISA_avx2

static constexpr int kMR = 6;
static constexpr int kNR = 16;

static inline __m256i tail_mask(int n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

template <int R>
static void kernel_rows(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc, int ncols,
                        const float* bias, bool accumulate) {
  __m256i m0 = tail_mask(ncols > 8 ? 8 : ncols);
  __m256i m1 = tail_mask(ncols > 8 ? ncols - 8 : 0);
  __m256 c0[R], c1[R];
  if (accumulate) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      c0[r] = _mm256_maskload_ps(c + r * ldc, m0);
      c1[r] = _mm256_maskload_ps(c + r * ldc + 8, m1);
    }
  } else {
    __m256 b0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
    __m256 b1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      c0[r] = b0;
      c1[r] = b1;
    }
  }
  const float* ar[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
  for (int64_t k = 0; k < kc; ++k) {
    __m256 v0 = _mm256_loadu_ps(bp + k * kNR);
    __m256 v1 = _mm256_loadu_ps(bp + k * kNR + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m256 av = _mm256_broadcast_ss(ar[r] + k);
      c0[r] = _mm256_fmadd_ps(av, v0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, v1, c1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_maskstore_ps(c + r * ldc, m0, c0[r]);
    _mm256_maskstore_ps(c + r * ldc + 8, m1, c1[r]);
  }
}

void gemm_pack_panel(const float* src, int64_t ld, int rows, int64_t count, float* dst) {
  for (int64_t k = 0; k < count; ++k) {
    float* d = dst + k * kNR;
    for (int r = 0; r < rows; ++r) d[r] = src[r * ld + k];
    for (int r = rows; r < kNR; ++r) d[r] = 0.f;
  }
}

#else  // plain C++

static constexpr int kMR = 4;
static constexpr int kNR = 8;

template <int R>
static void kernel_rows(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc, int ncols,
                        const float* bias, bool accumulate) {
  float acc[R][kNR];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kNR; ++j)
      acc[r][j] = j < ncols ? (accumulate ? c[r * ldc + j] : (bias ? bias[j] : 0.f)) : 0.f;
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = bp + k * kNR;
    for (int r = 0; r < R; ++r) {
      float av = a[r * lda + k];
      for (int j = 0; j < kNR; ++j) acc[r][j] += av * b[j];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < ncols; ++j) c[r * ldc + j] = acc[r][j];
}

void gemm_pack_panel(const float* src, int64_t ld, int rows, int64_t count, float* dst) {
  for (int64_t k = 0; k < count; ++k) {
    float* d = dst + k * kNR;
    for (int r = 0; r < rows; ++r) d[r] = src[r * ld + k];
    for (int r = rows; r < kNR; ++r) d[r] = 0.f;
  }
}

#endif

int gemm_mr() { return kMR; }
int gemm_nr() { return kNR; }

void gemm_ukernel(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc, int rows,
                  int ncols, const float* bias, bool accumulate) {
  switch (rows) {
#define SDN_ROWS_CASE(R)                                                       \
  case R:                                                                      \
    if (R <= kMR) kernel_rows<(R <= kMR ? R : 1)>(kc, a, lda, bp, c, ldc, ncols, bias, accumulate); \
    return;
    SDN_ROWS_CASE(1)
    SDN_ROWS_CASE(2)
    SDN_ROWS_CASE(3)
    SDN_ROWS_CASE(4)
    SDN_ROWS_CASE(5)
    SDN_ROWS_CASE(6)
    SDN_ROWS_CASE(7)
    SDN_ROWS_CASE(8)
#undef SDN_ROWS_CASE
    default: return;
  }
}

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
