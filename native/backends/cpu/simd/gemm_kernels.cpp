// GEMM microkernels, compiled once per ISA (see gemm_kernels.h for the contract).
//   avx512: 8 x 32 tile, 16 zmm accumulators (A broadcast from 8 rows, two B vectors per k)
//   avx2:   6 x 16 tile, 12 ymm accumulators
//   neon:   8 x 12 tile, 24 q-register accumulators (A broadcast with ld1r, three B vectors per k)
//   scalar: 4 x 8 tile in plain C++ (also the reference the others are tested against)
// No STL and no header-defined inline functions are used here: this file is compiled with different -m flags
// per ISA, and a shared inline function could otherwise be merged across the copies by the linker.
#include "backends/cpu/simd/gemm_kernels.h"

#if SDN_ISA_avx512 || SDN_ISA_avx2
#include <immintrin.h>
#elif SDN_ISA_neon
#include <arm_neon.h>
#endif
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their internal _mm512_undefined_* temporaries.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

#if SDN_ISA_avx512

static constexpr int kMR = 8;
static constexpr int kNR = 32;

template <int R, bool W2>
static void kernel_rows_w(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc, int ncols,
                        const float* bias, bool accumulate) {
  __mmask16 m0 = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1u);
  __mmask16 m1 = ncols >= 32 ? (__mmask16)0xffff : ncols <= 16 ? (__mmask16)0 : (__mmask16)((1u << (ncols - 16)) - 1u);
  __m512 c0[R], c1[R];
  if (accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      c1[r] = W2 ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
    }
  } else {
    __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = (W2 && bias) ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
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
    __m512 v1 = W2 ? _mm512_loadu_ps(bp + k * kNR + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m512 av = _mm512_set1_ps(ar[r][k]);
      c0[r] = _mm512_fmadd_ps(av, v0, c0[r]);
      if (W2) c1[r] = _mm512_fmadd_ps(av, v1, c1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    if (W2) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

template <int R>
static void kernel_rows(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc, int ncols,
                        const float* bias, bool accumulate) {
  if (ncols > 16)
    kernel_rows_w<R, true>(kc, a, lda, bp, c, ldc, ncols, bias, accumulate);
  else
    kernel_rows_w<R, false>(kc, a, lda, bp, c, ldc, ncols, bias, accumulate);
}

// 16 x 16 transpose: r[i] (row i, 16 columns) -> r[c] (column c, 16 rows).
static inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  // u[4g+q] lane L holds column 4L+q, rows 4g..4g+3: transpose the 128-bit lanes.
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    __m512 y0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x44);
    __m512 y1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xEE);
    __m512 y2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x44);
    __m512 y3 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xEE);
    r[0 + q] = _mm512_shuffle_f32x4(y0, y2, 0x88);
    r[4 + q] = _mm512_shuffle_f32x4(y0, y2, 0xDD);
    r[8 + q] = _mm512_shuffle_f32x4(y1, y3, 0x88);
    r[12 + q] = _mm512_shuffle_f32x4(y1, y3, 0xDD);
  }
}

// Loads 16 elements (masked) of a row as f32. kind: 0 f32, 1 f16, 2 bf16.
template <int kind>
static inline __m512 load_row16(const void* p, __mmask16 m) {
  if (kind == 0) return _mm512_maskz_loadu_ps(m, p);
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  if (kind == 1) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

template <int kind, typename T>
static void pack_panel_t(const T* src, int64_t ld, int rows, int64_t count, float* dst) {
  for (int64_t k = 0; k < count; k += 16) {
    const int n = count - k >= 16 ? 16 : (int)(count - k);
    const __mmask16 m = n == 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
    for (int half = 0; half < 2; ++half) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        const int row = half * 16 + i;
        r[i] = row < rows ? load_row16<kind>(src + row * ld + k, m) : _mm512_setzero_ps();
      }
      transpose16(r);
      for (int c = 0; c < n; ++c) _mm512_storeu_ps(dst + (k + c) * kNR + half * 16, r[c]);
    }
  }
}

void gemm_pack_panel(const float* src, int64_t ld, int rows, int64_t count, float* dst) {
  pack_panel_t<0>(src, ld, rows, count, dst);
}

void gemm_pack_panel_16(const uint16_t* src, int64_t ld, int rows, int64_t count, bool half, float* dst) {
  if (half)
    pack_panel_t<1>(src, ld, rows, count, dst);
  else
    pack_panel_t<2>(src, ld, rows, count, dst);
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

static float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while (!(man & 0x400u));
      u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

void gemm_pack_panel_16(const uint16_t* src, int64_t ld, int rows, int64_t count, bool half, float* dst) {
  for (int64_t k = 0; k < count; ++k) {
    float* d = dst + k * kNR;
    for (int r = 0; r < rows; ++r) {
      const uint16_t v = src[r * ld + k];
      if (half) {
        d[r] = f16_bits_to_f32(v);
      } else {
        const uint32_t u = (uint32_t)v << 16;
        __builtin_memcpy(&d[r], &u, 4);
      }
    }
    for (int r = rows; r < kNR; ++r) d[r] = 0.f;
  }
}

#elif SDN_ISA_neon

static constexpr int kMR = 8;
static constexpr int kNR = 12;

// GCC's pre-register-allocation scheduler hoists all eight A loads of a k step ahead of the FMAs, which needs
// 24 + 3 + 8 registers and spills accumulators in the inner loop; without it the loop is load, 3 FMAs, load, ...
// with no stack traffic (checked with objdump). Clang's scheduler tracks register pressure and needs no hint.
#if defined(__GNUC__) && !defined(__clang__)
#define SDN_GEMM_NO_PRESCHED __attribute__((optimize("no-schedule-insns"), noinline))
#else
#define SDN_GEMM_NO_PRESCHED
#endif

// Full-width tile: ncols == kNR (the caller routes ragged edges through a kNR-wide buffer).
template <int R>
SDN_GEMM_NO_PRESCHED static void kernel_full(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc,
                               const float* bias, bool accumulate) {
  float32x4_t c0[R], c1[R], c2[R];
  if (accumulate) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      c0[r] = vld1q_f32(c + r * ldc);
      c1[r] = vld1q_f32(c + r * ldc + 4);
      c2[r] = vld1q_f32(c + r * ldc + 8);
    }
  } else {
    const float32x4_t z = vdupq_n_f32(0.f);
    const float32x4_t b0 = bias ? vld1q_f32(bias) : z;
    const float32x4_t b1 = bias ? vld1q_f32(bias + 4) : z;
    const float32x4_t b2 = bias ? vld1q_f32(bias + 8) : z;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      c0[r] = b0;
      c1[r] = b1;
      c2[r] = b2;
    }
  }
  const float* ar[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = bp + k * kNR;
    const float32x4_t v0 = vld1q_f32(b), v1 = vld1q_f32(b + 4), v2 = vld1q_f32(b + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float32x4_t av = vld1q_dup_f32(ar[r] + k);
      c0[r] = vfmaq_f32(c0[r], av, v0);
      c1[r] = vfmaq_f32(c1[r], av, v1);
      c2[r] = vfmaq_f32(c2[r], av, v2);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    vst1q_f32(c + r * ldc, c0[r]);
    vst1q_f32(c + r * ldc + 4, c1[r]);
    vst1q_f32(c + r * ldc + 8, c2[r]);
  }
}

template <int R>
static void kernel_rows(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc, int ncols,
                        const float* bias, bool accumulate) {
  if (ncols >= kNR) {
    kernel_full<R>(kc, a, lda, bp, c, ldc, bias, accumulate);
    return;
  }
  // Ragged right edge: NEON has no masked loads/stores, so go through a kNR-wide tile (the panel's columns past
  // the edge are zero, and only the first ncols columns are copied back).
  float tile[R * kNR];
  float bt[kNR];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kNR; ++j) tile[r * kNR + j] = (accumulate && j < ncols) ? c[r * ldc + j] : 0.f;
  if (!accumulate && bias)
    for (int j = 0; j < kNR; ++j) bt[j] = j < ncols ? bias[j] : 0.f;
  kernel_full<R>(kc, a, lda, bp, tile, kNR, (!accumulate && bias) ? bt : nullptr, accumulate);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < ncols; ++j) c[r * ldc + j] = tile[r * kNR + j];
}

// dst[c][r] = src[r][c] for a 4x4 block of f32 vectors (rows a0..a3): d0..d3 are the columns.
static inline void transpose4(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3, float32x4_t d[4]) {
  const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(a0, a1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(a0, a1));
  const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(a2, a3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(a2, a3));
  d[0] = vreinterpretq_f32_f64(vtrn1q_f64(t0, t2));
  d[1] = vreinterpretq_f32_f64(vtrn1q_f64(t1, t3));
  d[2] = vreinterpretq_f32_f64(vtrn2q_f64(t0, t2));
  d[3] = vreinterpretq_f32_f64(vtrn2q_f64(t1, t3));
}

// Loads 4 elements of a row as f32. kind: 0 f32, 1 f16, 2 bf16.
template <int kind>
static inline float32x4_t load4(const void* p) {
  if (kind == 0) return vld1q_f32(static_cast<const float*>(p));
  const uint16x4_t h = vld1_u16(static_cast<const uint16_t*>(p));
  if (kind == 1) return vcvt_f32_f16(vreinterpret_f16_u16(h));
  return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

static float f16_bits_to_f32(uint16_t h) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

template <int kind>
static inline float load1(const void* p, int64_t i) {
  if (kind == 0) return static_cast<const float*>(p)[i];
  const uint16_t v = static_cast<const uint16_t*>(p)[i];
  if (kind == 1) return f16_bits_to_f32(v);
  const uint32_t u = (uint32_t)v << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// Panel packing: 4 rows x 4 k at a time through 4x4 register transposes; k tails and missing rows in plain code.
template <int kind, typename T>
static void pack_panel_t(const T* src, int64_t ld, int rows, int64_t count, float* dst) {
  const int64_t k4 = count / 4 * 4;
  const int rg = rows / 4 * 4;
  for (int64_t k = 0; k < k4; k += 4) {
    for (int r0 = 0; r0 < rg; r0 += 4) {
      float32x4_t d[4];
      transpose4(load4<kind>(src + r0 * ld + k), load4<kind>(src + (r0 + 1) * ld + k),
                 load4<kind>(src + (r0 + 2) * ld + k), load4<kind>(src + (r0 + 3) * ld + k), d);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) vst1q_f32(dst + (k + q) * kNR + r0, d[q]);
    }
    for (int q = 0; q < 4; ++q) {
      float* dd = dst + (k + q) * kNR;
      for (int r = rg; r < rows; ++r) dd[r] = load1<kind>(src + r * ld, k + q);
      for (int r = rows; r < kNR; ++r) dd[r] = 0.f;
    }
  }
  for (int64_t k = k4; k < count; ++k) {
    float* dd = dst + k * kNR;
    for (int r = 0; r < rows; ++r) dd[r] = load1<kind>(src + r * ld, k);
    for (int r = rows; r < kNR; ++r) dd[r] = 0.f;
  }
}

void gemm_pack_panel(const float* src, int64_t ld, int rows, int64_t count, float* dst) {
  pack_panel_t<0>(src, ld, rows, count, dst);
}

void gemm_pack_panel_16(const uint16_t* src, int64_t ld, int rows, int64_t count, bool half, float* dst) {
  if (half)
    pack_panel_t<1>(src, ld, rows, count, dst);
  else
    pack_panel_t<2>(src, ld, rows, count, dst);
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

static float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while (!(man & 0x400u));
      u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

void gemm_pack_panel_16(const uint16_t* src, int64_t ld, int rows, int64_t count, bool half, float* dst) {
  for (int64_t k = 0; k < count; ++k) {
    float* d = dst + k * kNR;
    for (int r = 0; r < rows; ++r) {
      const uint16_t v = src[r * ld + k];
      if (half) {
        d[r] = f16_bits_to_f32(v);
      } else {
        const uint32_t u = (uint32_t)v << 16;
        __builtin_memcpy(&d[r], &u, 4);
      }
    }
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
