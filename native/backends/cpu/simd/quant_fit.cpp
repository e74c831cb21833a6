// Per-sub-block scale searches of the K-quant quantizers (core/quant_k.cpp), compiled per ISA.
//
// The vector versions perform exactly the float operations of the plain C++ twin, in the same order (eight
// partial sums, lane k accumulating elements k, k+8, k+16, k+24; no fused multiply-add), so every level picks the
// same scales and quantize_row writes the same bytes at every SIMD level (tested). NEON runs the AVX2 code on
// pairs of q registers.
#include <cmath>

#include "backends/cpu/simd/quant_kernels.h"

#if SDN_ISA_avx512 || SDN_ISA_avx2
#include <immintrin.h>
#elif SDN_ISA_neon
#include <arm_neon.h>
#endif

// Results must not depend on whether the compiler fuses a*b+c into one rounding (quantized bytes are compared
// across SIMD levels and platforms): no contraction in this file.
#include "core/fp_contract_off.h"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

namespace {

constexpr int kAffineCandidates = 9;

struct QSums {
  int sq, sqq;
  double sqx;
};

// Least squares for x ~ s q + b given the sums of an assignment q (n = 32), b constrained <= 0 and s >= 0.
// Returns the squared error (closed form).
inline double solve_affine(const QSums& t, double sx, double sxx, double* s, double* b) {
  constexpr int n = 32;
  const double det = (double)n * (double)t.sqq - (double)t.sq * (double)t.sq;
  double ss = 0, bb = 0;
  if (det > 0) {
    ss = ((double)n * t.sqx - (double)t.sq * sx) / det;
    bb = ((double)t.sqq * sx - (double)t.sq * t.sqx) / det;
  }
  if (det <= 0 || bb > 0 || ss < 0) {  // constrain b = 0
    bb = 0;
    ss = t.sqq > 0 ? t.sqx / (double)t.sqq : 0;
    if (ss < 0) ss = 0;
  }
  *s = ss;
  *b = bb;
  // sum (s q + b - x)^2 = s^2 Sqq + 2 s b Sq + n b^2 - 2 s Sqx - 2 b Sx + Sxx
  return ss * ss * (double)t.sqq + 2 * ss * bb * (double)t.sq + n * bb * bb - 2 * ss * t.sqx - 2 * bb * sx + sxx;
}

inline double sum8(const float* p) {
  return ((double)p[0] + p[1]) + ((double)p[2] + p[3]) + (((double)p[4] + p[5]) + ((double)p[6] + p[7]));
}

[[maybe_unused]] inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

#if SDN_ISA_avx512 || SDN_ISA_avx2

inline float hmin8(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline int hsum8i(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Sums for the assignment q (4 vectors of 8) against x.
inline QSums qsums(const __m256i q[4], const __m256 x[4]) {
  const __m256i sq = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
  const __m256i sqq = _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(q[0], q[0]), _mm256_mullo_epi32(q[1], q[1])),
                                       _mm256_add_epi32(_mm256_mullo_epi32(q[2], q[2]), _mm256_mullo_epi32(q[3], q[3])));
  __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(q[0]), x[0]);
  p = _mm256_add_ps(p, _mm256_mul_ps(_mm256_cvtepi32_ps(q[1]), x[1]));
  p = _mm256_add_ps(p, _mm256_mul_ps(_mm256_cvtepi32_ps(q[2]), x[2]));
  p = _mm256_add_ps(p, _mm256_mul_ps(_mm256_cvtepi32_ps(q[3]), x[3]));
  alignas(32) float pf[8];
  _mm256_store_ps(pf, p);
  return {hsum8i(sq), hsum8i(sqq), sum8(pf)};
}

}  // namespace

void kq_fit_affine32(const float* xp, int nmax, float* s_out, float* m_out) {
  __m256 x[4];
  for (int j = 0; j < 4; ++j) x[j] = _mm256_loadu_ps(xp + 8 * j);
  float lo = hmin8(_mm256_min_ps(_mm256_min_ps(x[0], x[1]), _mm256_min_ps(x[2], x[3])));
  const float hi = hmax8(_mm256_max_ps(_mm256_max_ps(x[0], x[1]), _mm256_max_ps(x[2], x[3])));
  if (lo > 0.f) lo = 0.f;
  if (!(hi > lo) || !std::isfinite(hi - lo)) {
    *s_out = 0.f;
    *m_out = std::isfinite(lo) ? -lo : 0.f;
    return;
  }
  alignas(32) float sxf[8], sxxf[8];
  _mm256_store_ps(sxf, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x[0], x[1]), x[2]), x[3]));
  __m256 xx = _mm256_mul_ps(x[0], x[0]);
  xx = _mm256_add_ps(xx, _mm256_mul_ps(x[1], x[1]));
  xx = _mm256_add_ps(xx, _mm256_mul_ps(x[2], x[2]));
  xx = _mm256_add_ps(xx, _mm256_mul_ps(x[3], x[3]));
  _mm256_store_ps(sxxf, xx);
  const double sx = sum8(sxf), sxx = sum8(sxxf);

  float best_s = (hi - lo) / (float)nmax, best_b = lo;
  double best_err = 1e300;
  __m256 xs[4];
  const __m256 vlo = _mm256_set1_ps(lo), half = _mm256_set1_ps(0.5f);
  const __m256i vmax = _mm256_set1_epi32(nmax), vzero = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) xs[j] = _mm256_sub_ps(x[j], vlo);
  const float range = hi - lo;
  __m256i q[4];
  for (int k = 0; k < kAffineCandidates; ++k) {
    const __m256 is = _mm256_set1_ps(((float)nmax + 0.25f * (float)(k - kAffineCandidates / 2)) / range);
    for (int j = 0; j < 4; ++j)
      q[j] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(xs[j], is), half)), vmax);
    double s, b;
    const double e = solve_affine(qsums(q, x), sx, sxx, &s, &b);
    if (e < best_err) {
      best_err = e;
      best_s = (float)s;
      best_b = (float)b;
    }
  }
  for (int it = 0; it < 2 && best_s > 0.f; ++it) {
    const __m256 inv = _mm256_set1_ps(1.f / best_s), vb = _mm256_set1_ps(best_b);
    for (int j = 0; j < 4; ++j) {
      __m256i v = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(x[j], vb), inv), half));
      q[j] = _mm256_min_epi32(_mm256_max_epi32(v, vzero), vmax);
    }
    double s, b;
    const double e = solve_affine(qsums(q, x), sx, sxx, &s, &b);
    if (!(e < best_err)) break;
    best_err = e;
    best_s = (float)s;
    best_b = (float)b;
  }
  *s_out = best_s;
  *m_out = -best_b;
}

float kq_fit_sym16(const float* xp) {
  float amax = 0.f, vmax = 0.f;
  for (int i = 0; i < 16; ++i) {
    const float a = std::fabs(xp[i]);
    if (a > amax) {
      amax = a;
      vmax = xp[i];
    }
  }
  if (!(amax > 0.f) || !std::isfinite(amax)) return 0.f;
  const __m256 x0 = _mm256_loadu_ps(xp), x1 = _mm256_loadu_ps(xp + 8);
  const __m256 magic = _mm256_set1_ps(12582912.f), lo = _mm256_set1_ps(-32.f), hi = _mm256_set1_ps(31.f);
  double best_score = -1, best_s = vmax / -32.f;
  alignas(32) float pqq[8], pqx[8];
  for (int k = 0; k < 10; ++k) {
    const float target = k < 6 ? -(32.f - 0.4f * (float)k) : (31.f - 0.4f * (float)(k - 6));
    const __m256 is = _mm256_set1_ps(target / vmax);
    __m256 r0 = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x0, is), magic), magic);
    __m256 r1 = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x1, is), magic), magic);
    r0 = _mm256_min_ps(_mm256_max_ps(r0, lo), hi);
    r1 = _mm256_min_ps(_mm256_max_ps(r1, lo), hi);
    _mm256_store_ps(pqq, _mm256_add_ps(_mm256_mul_ps(r0, r0), _mm256_mul_ps(r1, r1)));
    _mm256_store_ps(pqx, _mm256_add_ps(_mm256_mul_ps(r0, x0), _mm256_mul_ps(r1, x1)));
    double sqq = 0, sqx = 0;
    for (int j = 0; j < 8; ++j) {
      sqq += pqq[j];
      sqx += pqx[j];
    }
    if (sqq <= 0) continue;
    const double score = sqx * sqx / sqq;
    if (score > best_score) {
      best_score = score;
      best_s = sqx / sqq;
    }
  }
  return (float)best_s;
}

#elif SDN_ISA_neon

// The AVX2 code above with each 8-lane vector held as two q registers (lanes 0..3, 4..7); min/max keep the x86
// operand semantics (a < b ? a : b), so every level still computes the same numbers in the same order.
struct F8 {
  float32x4_t a, b;
};
struct I8 {
  int32x4_t a, b;
};
inline F8 ld8(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
inline void st8(float* p, F8 v) {
  vst1q_f32(p, v.a);
  vst1q_f32(p + 4, v.b);
}
inline F8 set8(float f) { return {vdupq_n_f32(f), vdupq_n_f32(f)}; }
inline F8 add8(F8 x, F8 y) { return {vaddq_f32(x.a, y.a), vaddq_f32(x.b, y.b)}; }
inline F8 sub8(F8 x, F8 y) { return {vsubq_f32(x.a, y.a), vsubq_f32(x.b, y.b)}; }
inline F8 mul8(F8 x, F8 y) { return {vmulq_f32(x.a, y.a), vmulq_f32(x.b, y.b)}; }
inline float32x4_t minx(float32x4_t a, float32x4_t b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
inline float32x4_t maxx(float32x4_t a, float32x4_t b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
inline F8 min8(F8 x, F8 y) { return {minx(x.a, y.a), minx(x.b, y.b)}; }
inline F8 max8(F8 x, F8 y) { return {maxx(x.a, y.a), maxx(x.b, y.b)}; }
inline float hmin8(F8 v) {
  float32x4_t m = minx(v.a, v.b);
  m = minx(m, vextq_f32(m, m, 2));
  const float m0 = vgetq_lane_f32(m, 0), m1 = vgetq_lane_f32(m, 1);
  return m0 < m1 ? m0 : m1;
}
inline float hmax8(F8 v) {
  float32x4_t m = maxx(v.a, v.b);
  m = maxx(m, vextq_f32(m, m, 2));
  const float m0 = vgetq_lane_f32(m, 0), m1 = vgetq_lane_f32(m, 1);
  return m0 > m1 ? m0 : m1;
}
inline I8 cvtt8(F8 v) { return {vcvtq_s32_f32(v.a), vcvtq_s32_f32(v.b)}; }
inline F8 cvt8(I8 v) { return {vcvtq_f32_s32(v.a), vcvtq_f32_s32(v.b)}; }
inline I8 clamp8(I8 v, int lo, int hi) {
  const int32x4_t l = vdupq_n_s32(lo), h = vdupq_n_s32(hi);
  return {vminq_s32(vmaxq_s32(v.a, l), h), vminq_s32(vmaxq_s32(v.b, l), h)};
}

// Sums for the assignment q (4 vectors of 8) against x.
inline QSums qsums(const I8 q[4], const F8 x[4]) {
  int32x4_t sq = vdupq_n_s32(0), sqq = sq;
  for (int j = 0; j < 4; ++j) {
    sq = vaddq_s32(sq, vaddq_s32(q[j].a, q[j].b));
    sqq = vaddq_s32(sqq, vaddq_s32(vmulq_s32(q[j].a, q[j].a), vmulq_s32(q[j].b, q[j].b)));
  }
  F8 p = mul8(cvt8(q[0]), x[0]);
  p = add8(p, mul8(cvt8(q[1]), x[1]));
  p = add8(p, mul8(cvt8(q[2]), x[2]));
  p = add8(p, mul8(cvt8(q[3]), x[3]));
  float pf[8];
  st8(pf, p);
  return {vaddvq_s32(sq), vaddvq_s32(sqq), sum8(pf)};
}

}  // namespace

void kq_fit_affine32(const float* xp, int nmax, float* s_out, float* m_out) {
  F8 x[4];
  for (int j = 0; j < 4; ++j) x[j] = ld8(xp + 8 * j);
  float lo = hmin8(min8(min8(x[0], x[1]), min8(x[2], x[3])));
  const float hi = hmax8(max8(max8(x[0], x[1]), max8(x[2], x[3])));
  if (lo > 0.f) lo = 0.f;
  if (!(hi > lo) || !std::isfinite(hi - lo)) {
    *s_out = 0.f;
    *m_out = std::isfinite(lo) ? -lo : 0.f;
    return;
  }
  float sxf[8], sxxf[8];
  st8(sxf, add8(add8(add8(x[0], x[1]), x[2]), x[3]));
  F8 xx = mul8(x[0], x[0]);
  xx = add8(xx, mul8(x[1], x[1]));
  xx = add8(xx, mul8(x[2], x[2]));
  xx = add8(xx, mul8(x[3], x[3]));
  st8(sxxf, xx);
  const double sx = sum8(sxf), sxx = sum8(sxxf);

  float best_s = (hi - lo) / (float)nmax, best_b = lo;
  double best_err = 1e300;
  F8 xs[4];
  const F8 vlo = set8(lo), half = set8(0.5f);
  for (int j = 0; j < 4; ++j) xs[j] = sub8(x[j], vlo);
  const float range = hi - lo;
  I8 q[4];
  for (int k = 0; k < kAffineCandidates; ++k) {
    const F8 is = set8(((float)nmax + 0.25f * (float)(k - kAffineCandidates / 2)) / range);
    for (int j = 0; j < 4; ++j) {
      const I8 v = cvtt8(add8(mul8(xs[j], is), half));
      q[j] = {vminq_s32(v.a, vdupq_n_s32(nmax)), vminq_s32(v.b, vdupq_n_s32(nmax))};
    }
    double s, b;
    const double e = solve_affine(qsums(q, x), sx, sxx, &s, &b);
    if (e < best_err) {
      best_err = e;
      best_s = (float)s;
      best_b = (float)b;
    }
  }
  for (int it = 0; it < 2 && best_s > 0.f; ++it) {
    const F8 inv = set8(1.f / best_s), vb = set8(best_b);
    for (int j = 0; j < 4; ++j) q[j] = clamp8(cvtt8(add8(mul8(sub8(x[j], vb), inv), half)), 0, nmax);
    double s, b;
    const double e = solve_affine(qsums(q, x), sx, sxx, &s, &b);
    if (!(e < best_err)) break;
    best_err = e;
    best_s = (float)s;
    best_b = (float)b;
  }
  *s_out = best_s;
  *m_out = -best_b;
}

float kq_fit_sym16(const float* xp) {
  float amax = 0.f, vmax = 0.f;
  for (int i = 0; i < 16; ++i) {
    const float a = std::fabs(xp[i]);
    if (a > amax) {
      amax = a;
      vmax = xp[i];
    }
  }
  if (!(amax > 0.f) || !std::isfinite(amax)) return 0.f;
  const F8 x0 = ld8(xp), x1 = ld8(xp + 8);
  const F8 magic = set8(12582912.f), lo = set8(-32.f), hi = set8(31.f);
  double best_score = -1, best_s = vmax / -32.f;
  float pqq[8], pqx[8];
  for (int k = 0; k < 10; ++k) {
    const float target = k < 6 ? -(32.f - 0.4f * (float)k) : (31.f - 0.4f * (float)(k - 6));
    const F8 is = set8(target / vmax);
    F8 r0 = sub8(add8(mul8(x0, is), magic), magic);
    F8 r1 = sub8(add8(mul8(x1, is), magic), magic);
    r0 = min8(max8(r0, lo), hi);
    r1 = min8(max8(r1, lo), hi);
    st8(pqq, add8(mul8(r0, r0), mul8(r1, r1)));
    st8(pqx, add8(mul8(r0, x0), mul8(r1, x1)));
    double sqq = 0, sqx = 0;
    for (int j = 0; j < 8; ++j) {
      sqq += pqq[j];
      sqx += pqx[j];
    }
    if (sqq <= 0) continue;
    const double score = sqx * sqx / sqq;
    if (score > best_score) {
      best_score = score;
      best_s = sqx / sqq;
    }
  }
  return (float)best_s;
}

#else  // plain C++ twin (the reference)

inline QSums qsums32(const int* q, const float* x) {
  int sq = 0, sqq = 0;
  float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 32; i += 8)
    for (int k = 0; k < 8; ++k) {
      sq += q[i + k];
      sqq += q[i + k] * q[i + k];
      p[k] += (float)q[i + k] * x[i + k];
    }
  return {sq, sqq, sum8(p)};
}

}  // namespace

// Fits the 32 values x ~ s * q - m with integer q in [0, nmax], s >= 0 and m >= 0 (the representable range always
// includes 0, as the format's unsigned mins require). Tries a few candidate grid spacings around
// (max - min) / nmax; for each, rounds x onto the grid and solves the 2-parameter least-squares problem for the
// resulting q (closed-form error); then up to two refinement passes (re-round against the best (s, m), re-solve).
// Keeps the smallest squared error.
void kq_fit_affine32(const float* x, int nmax, float* s_out, float* m_out) {
  constexpr int n = 32;
  float lo = x[0], hi = x[0];
  float sxf[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sxxf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const float v = x[i + k];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      sxf[k] += v;
      sxxf[k] += v * v;
    }
  if (lo > 0.f) lo = 0.f;
  if (!(hi > lo) || !std::isfinite(hi - lo)) {  // all values equal (and <= 0), or non-finite input
    *s_out = 0.f;
    *m_out = std::isfinite(lo) ? -lo : 0.f;
    return;
  }
  const double sx = sum8(sxf), sxx = sum8(sxxf);
  float best_s = (hi - lo) / (float)nmax, best_b = lo;
  double best_err = 1e300;
  int q[n];
  float xs[n];
  for (int i = 0; i < n; ++i) xs[i] = x[i] - lo;  // >= 0
  const float range = hi - lo;
  for (int k = 0; k < kAffineCandidates; ++k) {
    const float iscale = ((float)nmax + 0.25f * (float)(k - kAffineCandidates / 2)) / range;
    for (int i = 0; i < n; ++i) {
      const int v = (int)(xs[i] * iscale + 0.5f);  // argument >= 0.5: truncation rounds half up
      q[i] = v < nmax ? v : nmax;
    }
    double s, b;
    const double e = solve_affine(qsums32(q, x), sx, sxx, &s, &b);
    if (e < best_err) {
      best_err = e;
      best_s = (float)s;
      best_b = (float)b;
    }
  }
  for (int it = 0; it < 2 && best_s > 0.f; ++it) {
    const float inv = 1.f / best_s;
    for (int i = 0; i < n; ++i) q[i] = clampi((int)((x[i] - best_b) * inv + 0.5f), 0, nmax);
    double s, b;
    const double e = solve_affine(qsums32(q, x), sx, sxx, &s, &b);
    if (!(e < best_err)) break;
    best_err = e;
    best_s = (float)s;
    best_b = (float)b;
  }
  *s_out = best_s;
  *m_out = -best_b;
}

// Fits the 16 values x ~ s * q with integer q in [-32, 31]; returns s (may be negative). Candidates map the
// largest magnitude onto about -32 or +31 with slightly perturbed grids; for each, the least-squares s for the
// rounded q is taken and the candidate with the smallest error (Sxx - Sqx^2 / Sqq) wins.
float kq_fit_sym16(const float* x) {
  constexpr int n = 16;
  float amax = 0.f, vmax = 0.f;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      vmax = x[i];
    }
  }
  if (!(amax > 0.f) || !std::isfinite(amax)) return 0.f;
  const float magic = 12582912.f;  // 1.5 * 2^23: (v + magic) - magic rounds |v| < 2^22 to nearest even
  double best_score = -1, best_s = vmax / -32.f;
  for (int k = 0; k < 10; ++k) {
    // k < 6: vmax -> about -32 (the wider side); k >= 6: vmax -> about +31.
    const float target = k < 6 ? -(32.f - 0.4f * (float)k) : (31.f - 0.4f * (float)(k - 6));
    const float iscale = target / vmax;
    float pqq[8] = {0, 0, 0, 0, 0, 0, 0, 0}, pqx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; i += 8)
      for (int j = 0; j < 8; ++j) {
        float r = (x[i + j] * iscale + magic) - magic;  // |x * iscale| <= 32.1
        r = r > -32.f ? r : -32.f;
        r = r < 31.f ? r : 31.f;
        pqq[j] += r * r;  // exact: small integers
        pqx[j] += r * x[i + j];
      }
    double sqq = 0, sqx = 0;
    for (int j = 0; j < 8; ++j) {
      sqq += pqq[j];
      sqx += pqx[j];
    }
    if (sqq <= 0) continue;
    const double score = sqx * sqx / sqq;  // error = Sxx - score
    if (score > best_score) {
      best_score = score;
      best_s = sqx / sqq;
    }
  }
  return (float)best_s;
}

#endif

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
