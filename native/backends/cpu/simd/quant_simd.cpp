// SIMD row kernels for the weight formats (compiled once per ISA, see simd.h).
//
// Dedicated kernels here: F32 (dot), F16, BF16, Q8_0, Q4_0, Q4_K; Q4_1, Q5_0, Q5_1, Q8_1, Q5_K, Q6_K, Q8_K in
// quant_simd_ext.cpp. A block type with neither falls back to its scalar block decoder (core/quant_impl.h,
// bit-identical by construction) and a vector FMA dot.
// Dequantized values are computed with exactly the float operations of the reference (q converted to float,
// multiplied by the fp16 scale, minus the min); every product involved is exact (<= 24 significant bits),
// so results are bit-identical whether or not a compiler fuses multiply and subtract.
// Each kernel has its plain C++ twin under the final #else (used by the scalar build).
#include <cstring>

#include "backends/cpu/simd/quant_kernels.h"
#include "core/quant_impl.h"

#if SDN_ISA_avx512 || SDN_ISA_avx2
// GCC 12 reports false "may be used uninitialized" warnings from inside the AVX-512 intrinsic headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#elif SDN_ISA_neon
#include <arm_neon.h>
// Like the reference, compiled without contraction (GCC would fuse Q4_K's (d * sc) * q - dmin * mn into one FMA;
// that product is exact, so values would not change, but this way they cannot depend on the compiler). The dot
// kernels' FMAs are explicit (vfmaq_f32).
#include "core/fp_contract_off.h"
#endif

namespace sdn {
namespace cpu {
namespace SDN_ISA {

using namespace ::sdn::qimpl;

namespace {

#if SDN_ISA_avx512

inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// f32 dot of n floats (any n).
float dot_f32(const float* a, const float* x, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(x + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(x + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(x + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), s0);
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, x + i), s1);
  }
  return hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

inline __m512 load_f16x16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
inline __m512 load_bf16x16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}

void deq_f16(const uint16_t* s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_f16x16(s + i));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i)));
  }
}
void deq_bf16(const uint16_t* s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_bf16x16(s + i));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s + i)), 16);
    _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(v));
  }
}
float dot_f16(const uint16_t* s, const float* x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(load_f16x16(s + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(load_f16x16(s + i + 16), _mm512_loadu_ps(x + i + 16), a1);
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(load_f16x16(s + i), _mm512_loadu_ps(x + i), a0);
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i)), _mm512_maskz_loadu_ps(m, x + i), a1);
  }
  return hsum(_mm512_add_ps(a0, a1));
}
float dot_bf16(const uint16_t* s, const float* x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(load_bf16x16(s + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(load_bf16x16(s + i + 16), _mm512_loadu_ps(x + i + 16), a1);
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(load_bf16x16(s + i), _mm512_loadu_ps(x + i), a0);
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s + i)), 16);
    a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(v), _mm512_maskz_loadu_ps(m, x + i), a1);
  }
  return hsum(_mm512_add_ps(a0, a1));
}

// 16 int8 -> 16 floats
inline __m512 i8x16_to_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }
inline __m512 u8x16_to_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }

void deq_q8_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += kQ8_0Bytes, y += 32) {
    const __m512 d = _mm512_set1_ps(rdf16(b));
    _mm512_storeu_ps(y, _mm512_mul_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i*)(b + 2))), d));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i*)(b + 18))), d));
  }
}
float dot_q8_0(const uint8_t* b, const float* x, int64_t nb) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, b += kQ8_0Bytes, x += 32) {
    const __m512 d = _mm512_set1_ps(rdf16(b));
    __m512 t = _mm512_mul_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i*)(b + 2))), _mm512_loadu_ps(x));
    t = _mm512_fmadd_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i*)(b + 18))), _mm512_loadu_ps(x + 16), t);
    if (i & 1)
      acc1 = _mm512_fmadd_ps(d, t, acc1);
    else
      acc0 = _mm512_fmadd_ps(d, t, acc0);
  }
  return hsum(_mm512_add_ps(acc0, acc1));
}

void deq_q4_0(const uint8_t* b, float* y, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m512 eight = _mm512_set1_ps(8.f);
  for (int64_t i = 0; i < nb; ++i, b += kQ4_0Bytes, y += 32) {
    const __m512 d = _mm512_set1_ps(rdf16(b));
    const __m128i q = _mm_loadu_si128((const __m128i*)(b + 2));
    const __m512 lo = _mm512_sub_ps(u8x16_to_ps(_mm_and_si128(q, m4)), eight);
    const __m512 hi = _mm512_sub_ps(u8x16_to_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m4)), eight);
    _mm512_storeu_ps(y, _mm512_mul_ps(lo, d));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(hi, d));
  }
}
float dot_q4_0(const uint8_t* b, const float* x, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m512 eight = _mm512_set1_ps(8.f);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, b += kQ4_0Bytes, x += 32) {
    const __m512 d = _mm512_set1_ps(rdf16(b));
    const __m128i q = _mm_loadu_si128((const __m128i*)(b + 2));
    const __m512 lo = _mm512_sub_ps(u8x16_to_ps(_mm_and_si128(q, m4)), eight);
    const __m512 hi = _mm512_sub_ps(u8x16_to_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m4)), eight);
    __m512 t = _mm512_mul_ps(lo, _mm512_loadu_ps(x));
    t = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), t);
    if (i & 1)
      acc1 = _mm512_fmadd_ps(d, t, acc1);
    else
      acc0 = _mm512_fmadd_ps(d, t, acc0);
  }
  return hsum(_mm512_add_ps(acc0, acc1));
}

void deq_q4_K(const uint8_t* b, float* y, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i, b += kQ4_KBytes, y += 256) {
    const float d = rdf16(b), dmin = rdf16(b + 2);
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      k4_scale_min(2 * c, b + 4, &sc0, &mn0);
      k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
      const __m512 d0 = _mm512_set1_ps(d * (float)sc0), m0 = _mm512_set1_ps(dmin * (float)mn0);
      const __m512 d1 = _mm512_set1_ps(d * (float)sc1), m1 = _mm512_set1_ps(dmin * (float)mn1);
      for (int h = 0; h < 2; ++h) {
        const __m128i q = _mm_loadu_si128((const __m128i*)(qs + 32 * c + 16 * h));
        const __m512 lo = u8x16_to_ps(_mm_and_si128(q, m4));
        const __m512 hi = u8x16_to_ps(_mm_and_si128(_mm_srli_epi16(q, 4), m4));
        _mm512_storeu_ps(y + 64 * c + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d0, lo), m0));
        _mm512_storeu_ps(y + 64 * c + 32 + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d1, hi), m1));
      }
    }
  }
}
float dot_q4_K(const uint8_t* b, const float* x, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, b += kQ4_KBytes, x += 256) {
    const float d = rdf16(b), dmin = rdf16(b + 2);
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      k4_scale_min(2 * c, b + 4, &sc0, &mn0);
      k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
      const float* xc = x + 64 * c;
      const __m128i q0 = _mm_loadu_si128((const __m128i*)(qs + 32 * c));
      const __m128i q1 = _mm_loadu_si128((const __m128i*)(qs + 32 * c + 16));
      const __m512 x0 = _mm512_loadu_ps(xc), x1 = _mm512_loadu_ps(xc + 16);
      const __m512 x2 = _mm512_loadu_ps(xc + 32), x3 = _mm512_loadu_ps(xc + 48);
      __m512 t0 = _mm512_mul_ps(u8x16_to_ps(_mm_and_si128(q0, m4)), x0);
      t0 = _mm512_fmadd_ps(u8x16_to_ps(_mm_and_si128(q1, m4)), x1, t0);
      __m512 t1 = _mm512_mul_ps(u8x16_to_ps(_mm_and_si128(_mm_srli_epi16(q0, 4), m4)), x2);
      t1 = _mm512_fmadd_ps(u8x16_to_ps(_mm_and_si128(_mm_srli_epi16(q1, 4), m4)), x3, t1);
      acc = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc0), t0, acc);
      acc = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)sc1), t1, acc);
      accm = _mm512_fmadd_ps(_mm512_set1_ps(dmin * (float)mn0), _mm512_add_ps(x0, x1), accm);
      accm = _mm512_fmadd_ps(_mm512_set1_ps(dmin * (float)mn1), _mm512_add_ps(x2, x3), accm);
    }
  }
  return hsum(_mm512_sub_ps(acc, accm));
}

#elif SDN_ISA_avx2

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float dot_f32(const float* a, const float* x, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(x + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(x + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += a[i] * x[i];
  return s;
}

inline __m256 load_f16x8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
inline __m256 load_bf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}

void deq_f16(const uint16_t* s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16x8(s + i));
  for (; i < n; ++i) y[i] = f16_to_f32(s[i]);
}
void deq_bf16(const uint16_t* s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16x8(s + i));
  for (; i < n; ++i) y[i] = bf16_to_f32(s[i]);
}
float dot_f16(const uint16_t* s, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(load_f16x8(s + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(load_f16x8(s + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(s + i), _mm256_loadu_ps(x + i), a0);
  float r = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) r += f16_to_f32(s[i]) * x[i];
  return r;
}
float dot_bf16(const uint16_t* s, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(load_bf16x8(s + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(load_bf16x8(s + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(s + i), _mm256_loadu_ps(x + i), a0);
  float r = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) r += bf16_to_f32(s[i]) * x[i];
  return r;
}

// 8 bytes (low half of v) -> 8 floats
inline __m256 i8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
inline __m256 u8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

void deq_q8_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += kQ8_0Bytes, y += 32) {
    const __m256 d = _mm256_set1_ps(rdf16(b));
    for (int k = 0; k < 4; ++k)
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(i8x8_to_ps(_mm_loadl_epi64((const __m128i*)(b + 2 + 8 * k))), d));
  }
}
float dot_q8_0(const uint8_t* b, const float* x, int64_t nb) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, b += kQ8_0Bytes, x += 32) {
    const __m256 d = _mm256_set1_ps(rdf16(b));
    __m256 t0 = _mm256_mul_ps(i8x8_to_ps(_mm_loadl_epi64((const __m128i*)(b + 2))), _mm256_loadu_ps(x));
    __m256 t1 = _mm256_mul_ps(i8x8_to_ps(_mm_loadl_epi64((const __m128i*)(b + 10))), _mm256_loadu_ps(x + 8));
    t0 = _mm256_fmadd_ps(i8x8_to_ps(_mm_loadl_epi64((const __m128i*)(b + 18))), _mm256_loadu_ps(x + 16), t0);
    t1 = _mm256_fmadd_ps(i8x8_to_ps(_mm_loadl_epi64((const __m128i*)(b + 26))), _mm256_loadu_ps(x + 24), t1);
    acc0 = _mm256_fmadd_ps(d, t0, acc0);
    acc1 = _mm256_fmadd_ps(d, t1, acc1);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

void deq_q4_0(const uint8_t* b, float* y, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m256 eight = _mm256_set1_ps(8.f);
  for (int64_t i = 0; i < nb; ++i, b += kQ4_0Bytes, y += 32) {
    const __m256 d = _mm256_set1_ps(rdf16(b));
    const __m128i q = _mm_loadu_si128((const __m128i*)(b + 2));
    const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_sub_ps(u8x8_to_ps(lo), eight), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(lo, 8)), eight), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_sub_ps(u8x8_to_ps(hi), eight), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(hi, 8)), eight), d));
  }
}
float dot_q4_0(const uint8_t* b, const float* x, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m256 eight = _mm256_set1_ps(8.f);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, b += kQ4_0Bytes, x += 32) {
    const __m256 d = _mm256_set1_ps(rdf16(b));
    const __m128i q = _mm_loadu_si128((const __m128i*)(b + 2));
    const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    __m256 t0 = _mm256_mul_ps(_mm256_sub_ps(u8x8_to_ps(lo), eight), _mm256_loadu_ps(x));
    __m256 t1 = _mm256_mul_ps(_mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(lo, 8)), eight), _mm256_loadu_ps(x + 8));
    t0 = _mm256_fmadd_ps(_mm256_sub_ps(u8x8_to_ps(hi), eight), _mm256_loadu_ps(x + 16), t0);
    t1 = _mm256_fmadd_ps(_mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(hi, 8)), eight), _mm256_loadu_ps(x + 24), t1);
    acc0 = _mm256_fmadd_ps(d, t0, acc0);
    acc1 = _mm256_fmadd_ps(d, t1, acc1);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

void deq_q4_K(const uint8_t* b, float* y, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i, b += kQ4_KBytes, y += 256) {
    const float d = rdf16(b), dmin = rdf16(b + 2);
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      k4_scale_min(2 * c, b + 4, &sc0, &mn0);
      k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
      const __m256 d0 = _mm256_set1_ps(d * (float)sc0), m0 = _mm256_set1_ps(dmin * (float)mn0);
      const __m256 d1 = _mm256_set1_ps(d * (float)sc1), m1 = _mm256_set1_ps(dmin * (float)mn1);
      for (int h = 0; h < 2; ++h) {
        const __m128i q = _mm_loadu_si128((const __m128i*)(qs + 32 * c + 16 * h));
        const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        float* o = y + 64 * c + 16 * h;
        _mm256_storeu_ps(o, _mm256_sub_ps(_mm256_mul_ps(d0, u8x8_to_ps(lo)), m0));
        _mm256_storeu_ps(o + 8, _mm256_sub_ps(_mm256_mul_ps(d0, u8x8_to_ps(_mm_srli_si128(lo, 8))), m0));
        _mm256_storeu_ps(o + 32, _mm256_sub_ps(_mm256_mul_ps(d1, u8x8_to_ps(hi)), m1));
        _mm256_storeu_ps(o + 40, _mm256_sub_ps(_mm256_mul_ps(d1, u8x8_to_ps(_mm_srli_si128(hi, 8))), m1));
      }
    }
  }
}
float dot_q4_K(const uint8_t* b, const float* x, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, b += kQ4_KBytes, x += 256) {
    const float d = rdf16(b), dmin = rdf16(b + 2);
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      k4_scale_min(2 * c, b + 4, &sc0, &mn0);
      k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
      const float* xc = x + 64 * c;
      __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
      __m256 sx0 = _mm256_setzero_ps(), sx1 = _mm256_setzero_ps();
      for (int h = 0; h < 2; ++h) {
        const __m128i q = _mm_loadu_si128((const __m128i*)(qs + 32 * c + 16 * h));
        const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        const __m256 xa = _mm256_loadu_ps(xc + 16 * h), xb = _mm256_loadu_ps(xc + 16 * h + 8);
        const __m256 xc0 = _mm256_loadu_ps(xc + 32 + 16 * h), xc1 = _mm256_loadu_ps(xc + 40 + 16 * h);
        t0 = _mm256_fmadd_ps(u8x8_to_ps(lo), xa, t0);
        t0 = _mm256_fmadd_ps(u8x8_to_ps(_mm_srli_si128(lo, 8)), xb, t0);
        t1 = _mm256_fmadd_ps(u8x8_to_ps(hi), xc0, t1);
        t1 = _mm256_fmadd_ps(u8x8_to_ps(_mm_srli_si128(hi, 8)), xc1, t1);
        sx0 = _mm256_add_ps(sx0, _mm256_add_ps(xa, xb));
        sx1 = _mm256_add_ps(sx1, _mm256_add_ps(xc0, xc1));
      }
      acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc0), t0, acc);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc1), t1, acc);
      accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin * (float)mn0), sx0, accm);
      accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin * (float)mn1), sx1, accm);
    }
  }
  return hsum(_mm256_sub_ps(acc, accm));
}

#elif SDN_ISA_neon

float dot_f32(const float* a, const float* x, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0.f), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(x + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(x + i + 4));
    s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(x + i + 8));
    s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(x + i + 12));
  }
  for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(x + i));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; i < n; ++i) s += a[i] * x[i];
  return s;
}

// 8 halves / bfloat16s -> two vectors of 4 floats (lo = elements 0..3, hi = 4..7)
inline void load_f16x8(const uint16_t* p, float32x4_t* lo, float32x4_t* hi) {
  const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
  *lo = vcvt_f32_f16(vget_low_f16(h));
  *hi = vcvt_high_f32_f16(h);
}
inline void load_bf16x8(const uint16_t* p, float32x4_t* lo, float32x4_t* hi) {
  const uint16x8_t h = vld1q_u16(p);
  *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
  *hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
}

void deq_f16(const uint16_t* s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    float32x4_t lo, hi;
    load_f16x8(s + i, &lo, &hi);
    vst1q_f32(y + i, lo);
    vst1q_f32(y + i + 4, hi);
  }
  for (; i < n; ++i) y[i] = f16_to_f32(s[i]);
}
void deq_bf16(const uint16_t* s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    float32x4_t lo, hi;
    load_bf16x8(s + i, &lo, &hi);
    vst1q_f32(y + i, lo);
    vst1q_f32(y + i + 4, hi);
  }
  for (; i < n; ++i) y[i] = bf16_to_f32(s[i]);
}
float dot_f16(const uint16_t* s, const float* x, int64_t n) {
  float32x4_t a0 = vdupq_n_f32(0.f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    float32x4_t w0, w1, w2, w3;
    load_f16x8(s + i, &w0, &w1);
    load_f16x8(s + i + 8, &w2, &w3);
    a0 = vfmaq_f32(a0, w0, vld1q_f32(x + i));
    a1 = vfmaq_f32(a1, w1, vld1q_f32(x + i + 4));
    a2 = vfmaq_f32(a2, w2, vld1q_f32(x + i + 8));
    a3 = vfmaq_f32(a3, w3, vld1q_f32(x + i + 12));
  }
  for (; i + 8 <= n; i += 8) {
    float32x4_t w0, w1;
    load_f16x8(s + i, &w0, &w1);
    a0 = vfmaq_f32(a0, w0, vld1q_f32(x + i));
    a1 = vfmaq_f32(a1, w1, vld1q_f32(x + i + 4));
  }
  float r = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; ++i) r += f16_to_f32(s[i]) * x[i];
  return r;
}
float dot_bf16(const uint16_t* s, const float* x, int64_t n) {
  float32x4_t a0 = vdupq_n_f32(0.f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    float32x4_t w0, w1, w2, w3;
    load_bf16x8(s + i, &w0, &w1);
    load_bf16x8(s + i + 8, &w2, &w3);
    a0 = vfmaq_f32(a0, w0, vld1q_f32(x + i));
    a1 = vfmaq_f32(a1, w1, vld1q_f32(x + i + 4));
    a2 = vfmaq_f32(a2, w2, vld1q_f32(x + i + 8));
    a3 = vfmaq_f32(a3, w3, vld1q_f32(x + i + 12));
  }
  for (; i + 8 <= n; i += 8) {
    float32x4_t w0, w1;
    load_bf16x8(s + i, &w0, &w1);
    a0 = vfmaq_f32(a0, w0, vld1q_f32(x + i));
    a1 = vfmaq_f32(a1, w1, vld1q_f32(x + i + 4));
  }
  float r = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; ++i) r += bf16_to_f32(s[i]) * x[i];
  return r;
}

// 16 signed bytes -> 4 vectors of 4 floats (exact)
inline void i8x16_to_f32(int8x16_t q, float32x4_t v[4]) {
  const int16x8_t l = vmovl_s8(vget_low_s8(q)), h = vmovl_high_s8(q);
  v[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(l)));
  v[1] = vcvtq_f32_s32(vmovl_high_s16(l));
  v[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(h)));
  v[3] = vcvtq_f32_s32(vmovl_high_s16(h));
}

// One Q8_0 block's 32 quants as 8 vectors of floats
inline void q8_0_values(const uint8_t* b, float32x4_t v[8]) {
  i8x16_to_f32(vld1q_s8(reinterpret_cast<const int8_t*>(b + 2)), v);
  i8x16_to_f32(vld1q_s8(reinterpret_cast<const int8_t*>(b + 18)), v + 4);
}
// One Q4_0 block's 32 values q - 8 (low nibbles are elements 0..15, high nibbles 16..31) as 8 vectors of floats
inline void q4_0_values(const uint8_t* b, float32x4_t v[8]) {
  const uint8x16_t q = vld1q_u8(b + 2);
  const int8x16_t eight = vdupq_n_s8(8);
  i8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), eight), v);
  i8x16_to_f32(vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight), v + 4);
}

// y = q * d per block (both exact to float, so bit-identical to the reference)
template <int Bytes, void (*Values)(const uint8_t*, float32x4_t*)>
inline void deq_blocks(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += Bytes, y += 32) {
    const float32x4_t d = vdupq_n_f32(rdf16(b));
    float32x4_t v[8];
    Values(b, v);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) vst1q_f32(y + 4 * k, vmulq_f32(v[k], d));
  }
}
// sum over blocks of d * sum_j q_j x_j
template <int Bytes, void (*Values)(const uint8_t*, float32x4_t*)>
inline float dot_blocks(const uint8_t* b, const float* x, int64_t nb) {
  float32x4_t acc0 = vdupq_n_f32(0.f), acc1 = acc0;
  for (int64_t i = 0; i < nb; ++i, b += Bytes, x += 32) {
    const float32x4_t d = vdupq_n_f32(rdf16(b));
    float32x4_t v[8];
    Values(b, v);
    float32x4_t t0 = vmulq_f32(v[0], vld1q_f32(x)), t1 = vmulq_f32(v[1], vld1q_f32(x + 4));
    t0 = vfmaq_f32(t0, v[2], vld1q_f32(x + 8));
    t1 = vfmaq_f32(t1, v[3], vld1q_f32(x + 12));
    t0 = vfmaq_f32(t0, v[4], vld1q_f32(x + 16));
    t1 = vfmaq_f32(t1, v[5], vld1q_f32(x + 20));
    t0 = vfmaq_f32(t0, v[6], vld1q_f32(x + 24));
    t1 = vfmaq_f32(t1, v[7], vld1q_f32(x + 28));
    acc0 = vfmaq_f32(acc0, d, t0);
    acc1 = vfmaq_f32(acc1, d, t1);
  }
  return vaddvq_f32(vaddq_f32(acc0, acc1));
}

void deq_q8_0(const uint8_t* b, float* y, int64_t nb) { deq_blocks<kQ8_0Bytes, q8_0_values>(b, y, nb); }
float dot_q8_0(const uint8_t* b, const float* x, int64_t nb) { return dot_blocks<kQ8_0Bytes, q8_0_values>(b, x, nb); }
void deq_q4_0(const uint8_t* b, float* y, int64_t nb) { deq_blocks<kQ4_0Bytes, q4_0_values>(b, y, nb); }
float dot_q4_0(const uint8_t* b, const float* x, int64_t nb) { return dot_blocks<kQ4_0Bytes, q4_0_values>(b, x, nb); }

// 16 unsigned bytes -> 4 vectors of 4 floats (exact)
inline void u8x16_to_f32(uint8x16_t q, float32x4_t v[4]) {
  const uint16x8_t l = vmovl_u8(vget_low_u8(q)), h = vmovl_high_u8(q);
  v[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(l)));
  v[1] = vcvtq_f32_u32(vmovl_high_u16(l));
  v[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(h)));
  v[3] = vcvtq_f32_u32(vmovl_high_u16(h));
}

// Q4_K: per 64-value chunk c, y = (d * sc) * q - dmin * mn with low nibbles for the first 32 values, high for the
// next 32 (products exact, so bit-identical to the reference).
void deq_q4_K(const uint8_t* b, float* y, int64_t nb) {
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int64_t i = 0; i < nb; ++i, b += kQ4_KBytes, y += 256) {
    const float d = rdf16(b), dmin = rdf16(b + 2);
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      k4_scale_min(2 * c, b + 4, &sc0, &mn0);
      k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
      const float32x4_t d0 = vdupq_n_f32(d * (float)sc0), m0 = vdupq_n_f32(dmin * (float)mn0);
      const float32x4_t d1 = vdupq_n_f32(d * (float)sc1), m1 = vdupq_n_f32(dmin * (float)mn1);
      for (int h = 0; h < 2; ++h) {
        const uint8x16_t q = vld1q_u8(qs + 32 * c + 16 * h);
        float32x4_t lo[4], hi[4];
        u8x16_to_f32(vandq_u8(q, m4), lo);
        u8x16_to_f32(vshrq_n_u8(q, 4), hi);
        float* o = y + 64 * c + 16 * h;
        for (int k = 0; k < 4; ++k) {
          vst1q_f32(o + 4 * k, vsubq_f32(vmulq_f32(d0, lo[k]), m0));
          vst1q_f32(o + 32 + 4 * k, vsubq_f32(vmulq_f32(d1, hi[k]), m1));
        }
      }
    }
  }
}
float dot_q4_K(const uint8_t* b, const float* x, int64_t nb) {
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  float32x4_t acc = vdupq_n_f32(0.f), accm = acc;
  for (int64_t i = 0; i < nb; ++i, b += kQ4_KBytes, x += 256) {
    const float d = rdf16(b), dmin = rdf16(b + 2);
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      k4_scale_min(2 * c, b + 4, &sc0, &mn0);
      k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
      const float* xc = x + 64 * c;
      float32x4_t t0 = vdupq_n_f32(0.f), t1 = t0, sx0 = t0, sx1 = t0;
      for (int h = 0; h < 2; ++h) {
        const uint8x16_t q = vld1q_u8(qs + 32 * c + 16 * h);
        float32x4_t lo[4], hi[4];
        u8x16_to_f32(vandq_u8(q, m4), lo);
        u8x16_to_f32(vshrq_n_u8(q, 4), hi);
        for (int k = 0; k < 4; ++k) {
          const float32x4_t xa = vld1q_f32(xc + 16 * h + 4 * k), xb = vld1q_f32(xc + 32 + 16 * h + 4 * k);
          t0 = vfmaq_f32(t0, lo[k], xa);
          t1 = vfmaq_f32(t1, hi[k], xb);
          sx0 = vaddq_f32(sx0, xa);
          sx1 = vaddq_f32(sx1, xb);
        }
      }
      acc = vfmaq_f32(acc, vdupq_n_f32(d * (float)sc0), t0);
      acc = vfmaq_f32(acc, vdupq_n_f32(d * (float)sc1), t1);
      accm = vfmaq_f32(accm, vdupq_n_f32(dmin * (float)mn0), sx0);
      accm = vfmaq_f32(accm, vdupq_n_f32(dmin * (float)mn1), sx1);
    }
  }
  return vaddvq_f32(vsubq_f32(acc, accm));
}

#else  // plain C++ twins

float dot_f32(const float* a, const float* x, int64_t n) {
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * x[i];
    s1 += a[i + 1] * x[i + 1];
    s2 += a[i + 2] * x[i + 2];
    s3 += a[i + 3] * x[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * x[i];
  return (s0 + s1) + (s2 + s3);
}
void deq_f16(const uint16_t* s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(s[i]);
}
void deq_bf16(const uint16_t* s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(s[i]);
}
float dot_f16(const uint16_t* s, const float* x, int64_t n) {
  float buf[256], r = 0.f;
  for (int64_t i = 0; i < n; i += 256) {
    int64_t m = n - i < 256 ? n - i : 256;
    deq_f16(s + i, buf, m);
    r += dot_f32(buf, x + i, m);
  }
  return r;
}
float dot_bf16(const uint16_t* s, const float* x, int64_t n) {
  float buf[256], r = 0.f;
  for (int64_t i = 0; i < n; i += 256) {
    int64_t m = n - i < 256 ? n - i : 256;
    deq_bf16(s + i, buf, m);
    r += dot_f32(buf, x + i, m);
  }
  return r;
}
void deq_q8_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) dequant_block_q8_0(b + i * kQ8_0Bytes, y + 32 * i);
}
float dot_q8_0(const uint8_t* b, const float* x, int64_t nb) {
  float acc = 0.f;
  for (int64_t i = 0; i < nb; ++i, b += kQ8_0Bytes, x += 32) {
    const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
    float t0 = 0.f, t1 = 0.f;
    for (int j = 0; j < 16; ++j) {
      t0 += (float)q[j] * x[j];
      t1 += (float)q[j + 16] * x[j + 16];
    }
    acc += rdf16(b) * (t0 + t1);
  }
  return acc;
}
void deq_q4_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) dequant_block_q4_0(b + i * kQ4_0Bytes, y + 32 * i);
}
float dot_q4_0(const uint8_t* b, const float* x, int64_t nb) {
  float acc = 0.f;
  for (int64_t i = 0; i < nb; ++i, b += kQ4_0Bytes, x += 32) {
    const uint8_t* q = b + 2;
    float t0 = 0.f, t1 = 0.f;
    for (int j = 0; j < 16; ++j) {
      t0 += (float)((q[j] & 0x0F) - 8) * x[j];
      t1 += (float)((q[j] >> 4) - 8) * x[j + 16];
    }
    acc += rdf16(b) * (t0 + t1);
  }
  return acc;
}
void deq_q4_K(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) dequant_block_q4_K(b + i * kQ4_KBytes, y + 256 * i);
}
float dot_q4_K(const uint8_t* b, const float* x, int64_t nb) {
  float acc = 0.f, accm = 0.f;
  for (int64_t i = 0; i < nb; ++i, b += kQ4_KBytes, x += 256) {
    const float d = rdf16(b), dmin = rdf16(b + 2);
    const uint8_t* qs = b + 16;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      k4_scale_min(2 * c, b + 4, &sc0, &mn0);
      k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
      const float* xc = x + 64 * c;
      float t0 = 0.f, t1 = 0.f, s0 = 0.f, s1 = 0.f;
      for (int l = 0; l < 32; ++l) {
        t0 += (float)(qs[32 * c + l] & 0x0F) * xc[l];
        t1 += (float)(qs[32 * c + l] >> 4) * xc[l + 32];
        s0 += xc[l];
        s1 += xc[l + 32];
      }
      acc += d * (float)sc0 * t0 + d * (float)sc1 * t1;
      accm += dmin * (float)mn0 * s0 + dmin * (float)mn1 * s1;
    }
  }
  return acc - accm;
}

#endif

// Any block type: decode with the scalar block decoder (bit-identical to the reference), vector dot.
float dot_generic(BlockDecoder dec, int bs, int bbytes, const uint8_t* w, const float* x, int64_t n) {
  float buf[256];
  float r = 0.f;
  for (int64_t i = 0; i < n; i += 256) {
    const int64_t m = n - i < 256 ? n - i : 256;
    const int64_t nbk = m / bs;
    for (int64_t k = 0; k < nbk; ++k) dec(w + ((i / bs) + k) * bbytes, buf + k * bs);
    r += dot_f32(buf, x + i, m);
  }
  return r;
}

}  // namespace

bool dequant_row_simd(DType t, const void* src, float* dst, int64_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::F32: std::memcpy(dst, src, (size_t)n * 4); return true;
    case DType::F16: deq_f16(static_cast<const uint16_t*>(src), dst, n); return true;
    case DType::BF16: deq_bf16(static_cast<const uint16_t*>(src), dst, n); return true;
    case DType::Q8_0: deq_q8_0(s, dst, n / 32); return true;
    case DType::Q4_0: deq_q4_0(s, dst, n / 32); return true;
    case DType::Q4_K: deq_q4_K(s, dst, n / 256); return true;
    default: break;
  }
  if (dequant_row_ext(t, s, dst, n)) return true;
  BlockDecoder dec = block_decoder(t);
  if (!dec) return false;
  const DTypeTraits& tr = dtype_traits(t);
  for (int64_t b = 0; b < n / tr.block_size; ++b) dec(s + b * tr.block_bytes, dst + b * tr.block_size);
  return true;
}

bool dot_row_simd(DType t, const void* w, const float* x, int64_t n, float* out) {
  const uint8_t* s = static_cast<const uint8_t*>(w);
  switch (t) {
    case DType::F32: *out = dot_f32(static_cast<const float*>(w), x, n); return true;
    case DType::F16: *out = dot_f16(static_cast<const uint16_t*>(w), x, n); return true;
    case DType::BF16: *out = dot_bf16(static_cast<const uint16_t*>(w), x, n); return true;
    case DType::Q8_0: *out = dot_q8_0(s, x, n / 32); return true;
    case DType::Q4_0: *out = dot_q4_0(s, x, n / 32); return true;
    case DType::Q4_K: *out = dot_q4_K(s, x, n / 256); return true;
    default: break;
  }
  if (dot_row_ext(t, s, x, n, out)) return true;
  BlockDecoder dec = block_decoder(t);
  if (!dec) return false;
  const DTypeTraits& tr = dtype_traits(t);
  *out = dot_generic(dec, tr.block_size, tr.block_bytes, s, x, n);
  return true;
}

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
