// Q2_K and Q3_K (256-element super-blocks of sixteen 16-element sub-blocks): scalar block decoders and
// quantizers. Layouts: ENGINE-FACTS.md section 3.8. These low-bit formats are rare in SD files; they are here so
// that GGUF files using them load. Quantizers: plain scalar least-squares scale search per sub-block (our own).
#include <cmath>
#include <cstring>

#include "core/quant_impl.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/fp_contract_off.h"

namespace sdn {
namespace qimpl {

// Element e of a Q2_K/Q3_K super-block: h = e / 128, j = (e % 128) / 32, g = (e % 32) / 16, l = e % 16.
// Its 2 low bits are bits 2j..2j+1 of qs[32h + 16g + l]; for Q3_K its high bit is bit 4h + j of hmask[16g + l].

void dequant_block_q2_K(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = rdf16(b + 80), dmin = rdf16(b + 82);
  for (int e = 0; e < 256; e += 16) {
    const int h = e / 128, j = (e % 128) / 32, g = (e % 32) / 16;
    const uint8_t sc = scales[e / 16];
    const float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
    const uint8_t* q = qs + 32 * h + 16 * g;
    for (int l = 0; l < 16; ++l) y[e + l] = dl * (float)((q[l] >> (2 * j)) & 3) - ml;
  }
}

void dequant_block_q3_K(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* scales = b + 96;
  const float d = rdf16(b + 108);
  for (int e = 0; e < 256; e += 16) {
    const int h = e / 128, j = (e % 128) / 32, g = (e % 32) / 16;
    const float dl = d * (float)k3_scale(scales, e / 16);
    const uint8_t* q = qs + 32 * h + 16 * g;
    const uint8_t* hm = hmask + 16 * g;
    for (int l = 0; l < 16; ++l) {
      const int low2 = (q[l] >> (2 * j)) & 3;
      const int hbit = (hm[l] >> (4 * h + j)) & 1;
      y[e + l] = dl * (float)(low2 - (hbit ? 0 : 4));
    }
  }
}

namespace {

// Nearest integer in [lo, hi] as a float (ties to even; NaN -> lo). Branch-free.
inline float round_clampf(float v, float lo, float hi) {
  const float magic = 12582912.f;  // 1.5 * 2^23: exact rounding for |v| < 2^22; larger v clamp anyway
  const float r = (v + magic) - magic;
#if defined(__SSE2__)
  // maxss/minss have exactly the semantics of the ternaries below; compilers tend to emit branches for those.
  return _mm_cvtss_f32(_mm_min_ss(_mm_max_ss(_mm_set_ss(r), _mm_set_ss(lo)), _mm_set_ss(hi)));
#else
  const float c = r > lo ? r : lo;
  return c < hi ? c : hi;
#endif
}
inline int round_clamp(float v, int lo, int hi) { return (int)round_clampf(v, (float)lo, (float)hi); }

// x[0..16) ~ s * q - m, q in [0, nmax], s >= 0, m >= 0: candidate grids + least squares (as for Q4_K).
void fit_affine16(const float* x, int nmax, float* s_out, float* m_out) {
  constexpr int n = 16;
  float lo = x[0], hi = x[0];
  double sx = 0, sxx = 0;
  for (int i = 0; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
    sx += x[i];
    sxx += (double)x[i] * x[i];
  }
  if (lo > 0.f) lo = 0.f;
  if (!(hi > lo) || !std::isfinite(hi - lo)) {
    *s_out = 0.f;
    *m_out = std::isfinite(lo) ? -lo : 0.f;
    return;
  }
  double best_err = 1e300, best_s = (hi - lo) / (double)nmax, best_b = lo;
  for (int k = 0; k < 9; ++k) {
    const float iscale = ((float)nmax + 0.15f * (float)(k - 4)) / (hi - lo);
    float fq = 0.f, fqq = 0.f, fqx = 0.f;
    for (int i = 0; i < n; ++i) {
      const float qi = round_clampf((x[i] - lo) * iscale, 0.f, (float)nmax);
      fq += qi;
      fqq += qi * qi;
      fqx += qi * x[i];
    }
    const long sq = (long)fq, sqq = (long)fqq;  // exact: small integers
    const double sqx = fqx;
    const double det = (double)n * (double)sqq - (double)sq * (double)sq;
    double ss = 0, bb = 0;
    if (det > 0) {
      ss = ((double)n * sqx - (double)sq * sx) / det;
      bb = ((double)sqq * sx - (double)sq * sqx) / det;
    }
    if (det <= 0 || bb > 0 || ss < 0) {
      bb = 0;
      ss = sqq > 0 ? sqx / (double)sqq : 0;
      if (ss < 0) ss = 0;
    }
    const double e = ss * ss * (double)sqq + 2 * ss * bb * (double)sq + n * bb * bb - 2 * ss * sqx - 2 * bb * sx + sxx;
    if (e < best_err) {
      best_err = e;
      best_s = ss;
      best_b = bb;
    }
  }
  *s_out = (float)best_s;
  *m_out = (float)-best_b;
}

// x[0..16) ~ s * q, q in [qmin, qmax] (qmin < 0 < qmax); returns s (may be negative).
float fit_symmetric16(const float* x, int qmin, int qmax) {
  float amax = 0.f, vmax = 0.f;
  for (int i = 0; i < 16; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      vmax = x[i];
    }
  }
  if (!(amax > 0.f) || !std::isfinite(amax)) return 0.f;
  double best_score = -1, best_s = vmax / (double)qmin;
  for (int k = 0; k < 16; ++k) {
    // k < 8: vmax -> qmin side, k >= 8: vmax -> qmax side, grids from 100% down to ~72% of the range
    const float f = 1.f - 0.04f * (float)(k % 8);
    const float iscale = (k < 8 ? (float)qmin : (float)qmax) * f / vmax;
    float fqq = 0.f, fqx = 0.f;
    for (int i = 0; i < 16; ++i) {
      const float q = round_clampf(x[i] * iscale, (float)qmin, (float)qmax);
      fqq += q * q;
      fqx += q * x[i];
    }
    const double sqq = fqq, sqx = fqx;
    if (sqq <= 0) continue;
    const double score = sqx * sqx / sqq;
    if (score > best_score) {
      best_score = score;
      best_s = sqx / sqq;
    }
  }
  return (float)best_s;
}

}  // namespace

void quantize_q2_K(const float* x, uint8_t* out, int64_t nblocks) {
  for (int64_t bi = 0; bi < nblocks; ++bi, x += 256, out += kQ2_KBytes) {
    float s[16], m[16], smax = 0.f, mmax = 0.f;
    for (int i = 0; i < 16; ++i) {
      fit_affine16(x + 16 * i, 3, &s[i], &m[i]);
      smax = s[i] > smax ? s[i] : smax;
      mmax = m[i] > mmax ? m[i] : mmax;
    }
    const uint16_t dh = f32_to_f16(f16_cap(smax / 15.f)), mh = f32_to_f16(f16_cap(mmax / 15.f));
    const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
    std::memset(out, 0, kQ2_KBytes);
    uint8_t* qs = out + 16;
    for (int i = 0; i < 16; ++i) {
      const int sc = d > 0.f ? round_clamp(s[i] / d, 0, 15) : 0;
      const int mn = dmin > 0.f ? round_clamp(m[i] / dmin, 0, 15) : 0;
      out[i] = (uint8_t)(sc | (mn << 4));
      const float dl = d * (float)sc, ml = dmin * (float)mn;
      const float inv = dl > 0.f ? 1.f / dl : 0.f;
      const int e0 = 16 * i, h = e0 / 128, j = (e0 % 128) / 32, g = (e0 % 32) / 16;
      for (int l = 0; l < 16; ++l) {
        const int q = round_clamp((x[e0 + l] + ml) * inv, 0, 3);
        qs[32 * h + 16 * g + l] |= (uint8_t)(q << (2 * j));
      }
    }
    wr16(out + 80, dh);
    wr16(out + 82, mh);
  }
}

void quantize_q3_K(const float* x, uint8_t* out, int64_t nblocks) {
  for (int64_t bi = 0; bi < nblocks; ++bi, x += 256, out += kQ3_KBytes) {
    float s[16], amax = 0.f;
    for (int i = 0; i < 16; ++i) {
      s[i] = fit_symmetric16(x + 16 * i, -4, 3);
      amax = std::fabs(s[i]) > amax ? std::fabs(s[i]) : amax;
    }
    const uint16_t dh = f32_to_f16(f16_cap(amax / 31.f));
    const float d = f16_to_f32(dh);
    std::memset(out, 0, kQ3_KBytes);
    uint8_t* hmask = out;
    uint8_t* qs = out + 32;
    uint8_t* sb = out + 96;
    for (int i = 0; i < 16; ++i) {
      const int sc = d > 0.f ? round_clamp(s[i] / d, -31, 31) : 0;
      const int u = sc + 32;  // 6-bit stored value
      if (i < 8)
        sb[i] |= (uint8_t)(u & 0x0F);
      else
        sb[i - 8] |= (uint8_t)((u & 0x0F) << 4);
      sb[8 + (i % 4)] |= (uint8_t)((u >> 4) << (2 * (i / 4)));
      const float dl = d * (float)sc;
      const float inv = dl != 0.f ? 1.f / dl : 0.f;
      const int e0 = 16 * i, h = e0 / 128, j = (e0 % 128) / 32, g = (e0 % 32) / 16;
      for (int l = 0; l < 16; ++l) {
        const int q = round_clamp(x[e0 + l] * inv, -4, 3) + 4;  // 0..7: low 2 bits + high bit
        qs[32 * h + 16 * g + l] |= (uint8_t)((q & 3) << (2 * j));
        hmask[16 * g + l] |= (uint8_t)((q >> 2) << (4 * h + j));
      }
    }
    wr16(out + 108, dh);
  }
}

}  // namespace qimpl
}  // namespace sdn
