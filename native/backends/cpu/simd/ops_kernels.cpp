// Elementwise, normalisation and softmax kernels (compiled once per ISA). The vector path (AVX-512, AVX2 or NEON, via
// vec.h) and the plain C++ twin compute the same functions; the twin uses libm (std::exp, std::erfc in double).
#include <cmath>

#include "backends/cpu/simd/ops_kernels.h"
#include "backends/cpu/simd/vec.h"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

namespace {

// ---- scalar reference math (used by the plain twin and for vector tails where noted) ----
inline float s_sigmoid_mul(float x, float a) { return (float)((double)x / (1.0 + std::exp(-(double)a))); }
inline float s_silu(float x) { return s_sigmoid_mul(x, x); }
inline float s_gelu_erf(float x) { return (float)(0.5 * (double)x * std::erfc(-(double)x * 0.70710678118654752440)); }
inline float s_gelu_tanh(float x) {
  double xd = x;
  double u = 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd);
  return (float)(xd / (1.0 + std::exp(-2.0 * u)));
}
inline float s_quick_gelu(float x) { return s_sigmoid_mul(x, 1.702f * x); }

#if SDN_VEC
using namespace vec;
template <typename Fn>
inline void map_unary(const float* x, float* y, int64_t n, Fn fn) {
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    F a = fn(load(x + i)), b = fn(load(x + i + W));
    store(y + i, a);
    store(y + i + W, b);
  }
  for (; i + W <= n; i += W) store(y + i, fn(load(x + i)));
  if (i < n) store_n(y + i, fn(load_n(x + i, (int)(n - i))), (int)(n - i));
}
#endif

}  // namespace

void unary_f32(int op, const float* x, float* y, int64_t n) {
#if SDN_VEC
  switch (op) {
    case kUnarySilu: map_unary(x, y, n, [](F v) { return silu(v); }); return;
    case kUnaryGeluErf: map_unary(x, y, n, [](F v) { return gelu_erf(v); }); return;
    case kUnaryGeluTanh: map_unary(x, y, n, [](F v) { return gelu_tanh(v); }); return;
    default: map_unary(x, y, n, [](F v) { return quick_gelu(v); }); return;
  }
#else
  switch (op) {
    case kUnarySilu: for (int64_t i = 0; i < n; ++i) y[i] = s_silu(x[i]); return;
    case kUnaryGeluErf: for (int64_t i = 0; i < n; ++i) y[i] = s_gelu_erf(x[i]); return;
    case kUnaryGeluTanh: for (int64_t i = 0; i < n; ++i) y[i] = s_gelu_tanh(x[i]); return;
    default: for (int64_t i = 0; i < n; ++i) y[i] = s_quick_gelu(x[i]); return;
  }
#endif
}

void geglu_f32(const float* a, const float* g, float* y, int64_t n) {
#if SDN_VEC
  int64_t i = 0;
  for (; i + W <= n; i += W) store(y + i, mul(load(a + i), gelu_erf(load(g + i))));
  if (i < n) {
    int r = (int)(n - i);
    store_n(y + i, mul(load_n(a + i, r), gelu_erf(load_n(g + i, r))), r);
  }
#else
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * s_gelu_erf(g[i]);
#endif
}

void binary_f32(int op, const float* a, const float* b, float* y, int64_t n) {
#if SDN_VEC
  int64_t i = 0;
  if (op == kBinAdd) {
    for (; i + 2 * W <= n; i += 2 * W) {
      F r0 = add(load(a + i), load(b + i)), r1 = add(load(a + i + W), load(b + i + W));
      store(y + i, r0);
      store(y + i + W, r1);
    }
    for (; i + W <= n; i += W) store(y + i, add(load(a + i), load(b + i)));
    if (i < n) store_n(y + i, add(load_n(a + i, (int)(n - i)), load_n(b + i, (int)(n - i))), (int)(n - i));
  } else {
    for (; i + 2 * W <= n; i += 2 * W) {
      F r0 = mul(load(a + i), load(b + i)), r1 = mul(load(a + i + W), load(b + i + W));
      store(y + i, r0);
      store(y + i + W, r1);
    }
    for (; i + W <= n; i += W) store(y + i, mul(load(a + i), load(b + i)));
    if (i < n) store_n(y + i, mul(load_n(a + i, (int)(n - i)), load_n(b + i, (int)(n - i))), (int)(n - i));
  }
#else
  if (op == kBinAdd)
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
#endif
}

void binary_scalar_f32(int op, const float* a, float s, float* y, int64_t n) {
#if SDN_VEC
  F sv = set1(s);
  int64_t i = 0;
  if (op == kBinAdd) {
    for (; i + W <= n; i += W) store(y + i, add(load(a + i), sv));
    if (i < n) store_n(y + i, add(load_n(a + i, (int)(n - i)), sv), (int)(n - i));
  } else {
    for (; i + W <= n; i += W) store(y + i, mul(load(a + i), sv));
    if (i < n) store_n(y + i, mul(load_n(a + i, (int)(n - i)), sv), (int)(n - i));
  }
#else
  if (op == kBinAdd)
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + s;
  else
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] * s;
#endif
}

// Blocks of kSumBlock elements are summed in float lanes (at most kSumBlock / W additions per lane), then
// accumulated in double, so the error does not grow with n.
constexpr int64_t kSumBlock = 512;

double sum_f32(const float* x, int64_t n) {
  double total = 0;
  for (int64_t b = 0; b < n; b += kSumBlock) {
    int64_t e = b + kSumBlock < n ? b + kSumBlock : n;
#if SDN_VEC
    F acc0 = zero(), acc1 = zero();
    int64_t i = b;
    for (; i + 2 * W <= e; i += 2 * W) {
      acc0 = add(acc0, load(x + i));
      acc1 = add(acc1, load(x + i + W));
    }
    for (; i + W <= e; i += W) acc0 = add(acc0, load(x + i));
    if (i < e) acc1 = add(acc1, load_n(x + i, (int)(e - i)));
    total += (double)hsum(add(acc0, acc1));
#else
    float acc[4] = {0, 0, 0, 0};
    int64_t i = b;
    for (; i + 4 <= e; i += 4)
      for (int k = 0; k < 4; ++k) acc[k] += x[i + k];
    for (; i < e; ++i) acc[0] += x[i];
    total += (double)acc[0] + acc[1] + acc[2] + acc[3];
#endif
  }
  return total;
}

double sqdev_f32(const float* x, int64_t n, float mean) {
  double total = 0;
  for (int64_t b = 0; b < n; b += kSumBlock) {
    int64_t e = b + kSumBlock < n ? b + kSumBlock : n;
#if SDN_VEC
    F m = set1(mean);
    F acc0 = zero(), acc1 = zero();
    int64_t i = b;
    for (; i + 2 * W <= e; i += 2 * W) {
      F d0 = sub(load(x + i), m), d1 = sub(load(x + i + W), m);
      acc0 = fmadd(d0, d0, acc0);
      acc1 = fmadd(d1, d1, acc1);
    }
    for (; i + W <= e; i += W) {
      F d0 = sub(load(x + i), m);
      acc0 = fmadd(d0, d0, acc0);
    }
    if (i < e) {
      int r = (int)(e - i);
      F d = sub(load_n(x + i, r), m);
      d = load_n(reinterpret_cast<const float*>(&d), r);  // zero the lanes past the end (they hold -mean)
      acc1 = fmadd(d, d, acc1);
    }
    total += (double)hsum(add(acc0, acc1));
#else
    float acc[4] = {0, 0, 0, 0};
    int64_t i = b;
    for (; i + 4 <= e; i += 4)
      for (int k = 0; k < 4; ++k) {
        float d = x[i + k] - mean;
        acc[k] += d * d;
      }
    for (; i < e; ++i) {
      float d = x[i] - mean;
      acc[0] += d * d;
    }
    total += (double)acc[0] + acc[1] + acc[2] + acc[3];
#endif
  }
  return total;
}

void affine_f32(const float* x, float* y, int64_t n, float m, float a, float b, bool silu_after) {
#if SDN_VEC
  F mv = set1(m), av = set1(a), bv = set1(b);
  int64_t i = 0;
  if (silu_after) {
    for (; i + W <= n; i += W) store(y + i, silu(fmadd(sub(load(x + i), mv), av, bv)));
    if (i < n) store_n(y + i, silu(fmadd(sub(load_n(x + i, (int)(n - i)), mv), av, bv)), (int)(n - i));
  } else {
    for (; i + W <= n; i += W) store(y + i, fmadd(sub(load(x + i), mv), av, bv));
    if (i < n) store_n(y + i, fmadd(sub(load_n(x + i, (int)(n - i)), mv), av, bv), (int)(n - i));
  }
#else
  if (silu_after)
    for (int64_t i = 0; i < n; ++i) y[i] = s_silu((x[i] - m) * a + b);
  else
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * a + b;
#endif
}

void normalize_f32(const float* x, float* y, int64_t n, float mean, float rstd, const float* gamma,
                   const float* beta) {
#if SDN_VEC
  F m = set1(mean), r = set1(rstd);
  auto one = [&](int64_t i, int cnt) {
    F v = cnt == W ? load(x + i) : load_n(x + i, cnt);
    v = mul(sub(v, m), r);
    if (gamma) v = mul(v, cnt == W ? load(gamma + i) : load_n(gamma + i, cnt));
    if (beta) v = add(v, cnt == W ? load(beta + i) : load_n(beta + i, cnt));
    if (cnt == W)
      store(y + i, v);
    else
      store_n(y + i, v, cnt);
  };
  int64_t i = 0;
  for (; i + W <= n; i += W) one(i, W);
  if (i < n) one(i, (int)(n - i));
#else
  for (int64_t i = 0; i < n; ++i) {
    float v = (x[i] - mean) * rstd;
    if (gamma) v *= gamma[i];
    if (beta) v += beta[i];
    y[i] = v;
  }
#endif
}

void softmax_row_f32(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
#if SDN_VEC
  F mx = set1(-INFINITY);
  int64_t i = 0;
  for (; i + W <= n; i += W) mx = max(mx, load(x + i));
  float m = hmax(mx);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  F mv = set1(m);
  F s0 = zero();
  i = 0;
  for (; i + W <= n; i += W) {
    F e = exp(sub(load(x + i), mv));
    store(y + i, e);
    s0 = add(s0, e);
  }
  float s = hsum(s0);
  if (i < n) {
    int r = (int)(n - i);
    F e = exp(sub(load_n(x + i, r), mv));
    store_n(y + i, e, r);
    s += hsum(load_n(y + i, r));
  }
  binary_scalar_f32(kBinMul, y, 1.f / s, y, n);
#else
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    float e = std::exp(x[i] - m);
    y[i] = e;
    s += e;
  }
  float inv = (float)(1.0 / s);
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
#endif
}

#if SDN_VEC
namespace {
#if SDN_ISA_neon
// dst[c][r] = src[r][c] for one 4x4 block: 32-bit then 64-bit transposes of the lane pairs
inline void transpose4x4(const float* s0, int64_t ss, float* d0, int64_t ds) {
  float32x4_t a0 = vld1q_f32(s0), a1 = vld1q_f32(s0 + ss), a2 = vld1q_f32(s0 + 2 * ss), a3 = vld1q_f32(s0 + 3 * ss);
  float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(a0, a1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(a0, a1));
  float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(a2, a3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(a2, a3));
  vst1q_f32(d0, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
  vst1q_f32(d0 + ds, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
  vst1q_f32(d0 + 2 * ds, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
  vst1q_f32(d0 + 3 * ds, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
}
// dst[c][r] = src[r][c] for one 8x8 block as four 4x4 blocks
inline void transpose8x8(const float* s0, int64_t ss, float* d0, int64_t ds) {
  transpose4x4(s0, ss, d0, ds);
  transpose4x4(s0 + 4, ss, d0 + 4 * ds, ds);
  transpose4x4(s0 + 4 * ss, ss, d0 + 4, ds);
  transpose4x4(s0 + 4 * ss + 4, ss, d0 + 4 * ds + 4, ds);
}
#else
// dst[c][r] = src[r][c] for one 8x8 block through AVX registers (both the AVX2 and the AVX-512 build have them)
inline void transpose8x8(const float* s0, int64_t ss, float* d0, int64_t ds) {
  __m256 a0 = _mm256_loadu_ps(s0), a1 = _mm256_loadu_ps(s0 + ss), a2 = _mm256_loadu_ps(s0 + 2 * ss),
         a3 = _mm256_loadu_ps(s0 + 3 * ss), a4 = _mm256_loadu_ps(s0 + 4 * ss), a5 = _mm256_loadu_ps(s0 + 5 * ss),
         a6 = _mm256_loadu_ps(s0 + 6 * ss), a7 = _mm256_loadu_ps(s0 + 7 * ss);
  __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
  __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
  __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
  __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d0, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d0 + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d0 + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d0 + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d0 + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d0 + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d0 + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d0 + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif
}  // namespace
#endif

void transpose_f32(const float* src, int64_t ss, float* dst, int64_t ds, int64_t rows, int64_t cols) {
  int64_t r8 = 0, c8 = 0;
#if SDN_VEC
  r8 = rows / 8 * 8;
  c8 = cols / 8 * 8;
  // Walk along the side with the larger stride, so its 8 lines per block stay in L1 while their next 32 bytes are
  // touched (with power-of-two strides all of them map to one cache set).
  if (ds > ss) {
    for (int64_t c0 = 0; c0 < c8; c0 += 8)
      for (int64_t r0 = 0; r0 < r8; r0 += 8) transpose8x8(src + r0 * ss + c0, ss, dst + c0 * ds + r0, ds);
  } else {
    for (int64_t r0 = 0; r0 < r8; r0 += 8)
      for (int64_t c0 = 0; c0 < c8; c0 += 8) transpose8x8(src + r0 * ss + c0, ss, dst + c0 * ds + r0, ds);
  }
  // right edge (columns past c8) of the vector rows
  for (int64_t r = 0; r < r8; ++r)
    for (int64_t c = c8; c < cols; ++c) dst[c * ds + r] = src[r * ss + c];
#endif
  (void)c8;
  for (int64_t r = r8; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ds + r] = src[r * ss + c];
}

float fma_probe(int64_t iters, int* lanes) {
#if SDN_VEC
  *lanes = W;
  F acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = set1(0.001f * (float)i);
  F b = set1(0.999f), c = set1(0.0001f);
  for (int64_t n = 0; n < iters; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = fmadd(acc[i], b, c);
  F t = zero();
  for (int i = 0; i < 12; ++i) t = add(t, acc[i]);
  return hsum(t);
#else
  *lanes = 1;
  float acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = 0.001f * (float)i;
  for (int64_t n = 0; n < iters; ++n)
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * 0.999f + 0.0001f;
  float t = 0;
  for (int i = 0; i < 12; ++i) t += acc[i];
  return t;
#endif
}

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
