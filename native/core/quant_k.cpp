// K-quants (256-element super-blocks): Q4_K, Q5_K, Q6_K (+ Q8_K, an intermediate format) — scalar block
// decoders and quantizers. Layouts: ENGINE-FACTS.md section 3.8.
//
// Quantizers (our own): every sub-block gets a least-squares fit over a handful of candidate scales
// (x ~ s*q - m for Q4_K/Q5_K with m >= 0, x ~ s*q for Q6_K; the searches live in
// backends/cpu/simd/quant_fit.cpp so they run vectorised), the per-sub-block scales/mins are then quantized
// to 6 bits (8 bits signed for Q6_K) against fp16 super-scales, and the values are re-rounded against the
// scales actually stored.
#include <cmath>
#include <cstring>

#include "core/quant_impl.h"

// Results must not depend on whether the compiler fuses a*b+c into one rounding (quantized bytes are compared
// across SIMD levels and platforms): no contraction in this file.
#include "core/fp_contract_off.h"

namespace sdn {
namespace qimpl {

// ---- decoders -----------------------------------------------------------------------------------------------

void dequant_block_q4_K(const uint8_t* b, float* y) {
  const float d = rdf16(b), dmin = rdf16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int c = 0; c < 4; ++c) {
    int sc0, mn0, sc1, mn1;
    k4_scale_min(2 * c, scales, &sc0, &mn0);
    k4_scale_min(2 * c + 1, scales, &sc1, &mn1);
    const float d0 = d * (float)sc0, m0 = dmin * (float)mn0;
    const float d1 = d * (float)sc1, m1 = dmin * (float)mn1;
    const uint8_t* q = qs + 32 * c;
    float* o = y + 64 * c;
    for (int l = 0; l < 32; ++l) {
      o[l] = d0 * (float)(q[l] & 0x0F) - m0;
      o[l + 32] = d1 * (float)(q[l] >> 4) - m1;
    }
  }
}

void dequant_block_q5_K(const uint8_t* b, float* y) {
  const float d = rdf16(b), dmin = rdf16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int c = 0; c < 4; ++c) {
    int sc0, mn0, sc1, mn1;
    k4_scale_min(2 * c, scales, &sc0, &mn0);
    k4_scale_min(2 * c + 1, scales, &sc1, &mn1);
    const float d0 = d * (float)sc0, m0 = dmin * (float)mn0;
    const float d1 = d * (float)sc1, m1 = dmin * (float)mn1;
    const uint8_t* q = qs + 32 * c;
    float* o = y + 64 * c;
    for (int l = 0; l < 32; ++l) {
      int h0 = (qh[l] >> (2 * c)) & 1, h1 = (qh[l] >> (2 * c + 1)) & 1;
      o[l] = d0 * (float)((q[l] & 0x0F) | (h0 << 4)) - m0;
      o[l + 32] = d1 * (float)((q[l] >> 4) | (h1 << 4)) - m1;
    }
  }
}

void dequant_block_q6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = rdf16(b + 208);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* l4 = ql + 64 * h;
    const uint8_t* h2 = qh + 32 * h;
    const int8_t* s = sc + 8 * h;
    float* o = y + 128 * h;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      int q0 = ((l4[l] & 0x0F) | (((h2[l] >> 0) & 3) << 4)) - 32;
      int q1 = ((l4[l + 32] & 0x0F) | (((h2[l] >> 2) & 3) << 4)) - 32;
      int q2 = ((l4[l] >> 4) | (((h2[l] >> 4) & 3) << 4)) - 32;
      int q3 = ((l4[l + 32] >> 4) | (((h2[l] >> 6) & 3) << 4)) - 32;
      o[l] = d * (float)s[is + 0] * (float)q0;
      o[l + 32] = d * (float)s[is + 2] * (float)q1;
      o[l + 64] = d * (float)s[is + 4] * (float)q2;
      o[l + 96] = d * (float)s[is + 6] * (float)q3;
    }
  }
}

void dequant_block_q8_K(const uint8_t* b, float* y) {
  float d;
  std::memcpy(&d, b, 4);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < 256; ++j) y[j] = d * (float)qs[j];
}

// ---- quantizers ---------------------------------------------------------------------------------------------

namespace {

// Round to nearest (ties to even) without a libm call; saturates at +-2^22 (callers clamp to far less).
inline int rint_small(float v) {
  if (!(v > -4194304.f)) v = -4194304.f;  // also catches NaN
  if (v > 4194304.f) v = 4194304.f;
  const float magic = 12582912.f;  // 1.5 * 2^23
  float t = (v + magic) - magic;
  return (int)t;
}
inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Q4_K / Q5_K: shared scale/min selection. Writes d, dmin, the 12 scale bytes, and the final q (0..nmax) of all
// 256 values into qv.
void k4_choose(const float* x, int nmax, uint8_t* b, uint8_t* qv, const KQuantFit& fit) {
  float s[8], m[8];
  float smax = 0.f, mmax = 0.f;
  for (int j = 0; j < 8; ++j) {
    fit.affine32(x + 32 * j, nmax, &s[j], &m[j]);
    smax = s[j] > smax ? s[j] : smax;
    mmax = m[j] > mmax ? m[j] : mmax;
  }
  const uint16_t dh = f32_to_f16(f16_cap(smax / 63.f)), mh = f32_to_f16(f16_cap(mmax / 63.f));
  const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
  uint8_t sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = (uint8_t)(d > 0.f ? clampi(rint_small(s[j] / d), 0, 63) : 0);
    mn[j] = (uint8_t)(dmin > 0.f ? clampi(rint_small(m[j] / dmin), 0, 63) : 0);
  }
  wr16(b, dh);
  wr16(b + 2, mh);
  k4_pack_scales(sc, mn, b + 4);
  for (int j = 0; j < 8; ++j) {
    const float ds = d * (float)sc[j], dm = dmin * (float)mn[j];
    const float inv = ds > 0.f ? 1.f / ds : 0.f;
    for (int i = 0; i < 32; ++i) qv[32 * j + i] = (uint8_t)clampi(rint_small((x[32 * j + i] + dm) * inv), 0, nmax);
  }
}

}  // namespace

void quantize_q4_K(const float* x, uint8_t* out, int64_t nblocks, const KQuantFit& fit) {
  uint8_t qv[256];
  for (int64_t bi = 0; bi < nblocks; ++bi, x += 256, out += kQ4_KBytes) {
    k4_choose(x, 15, out, qv, fit);
    uint8_t* qs = out + 16;
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) qs[32 * c + l] = (uint8_t)(qv[64 * c + l] | (qv[64 * c + 32 + l] << 4));
  }
}

void quantize_q5_K(const float* x, uint8_t* out, int64_t nblocks, const KQuantFit& fit) {
  uint8_t qv[256];
  for (int64_t bi = 0; bi < nblocks; ++bi, x += 256, out += kQ5_KBytes) {
    k4_choose(x, 31, out, qv, fit);
    uint8_t* qh = out + 16;
    uint8_t* qs = out + 48;
    std::memset(qh, 0, 32);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int a = qv[64 * c + l], e = qv[64 * c + 32 + l];
        qs[32 * c + l] = (uint8_t)((a & 0x0F) | ((e & 0x0F) << 4));
        qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((e >> 4) << (2 * c + 1)));
      }
  }
}

void quantize_q6_K(const float* x, uint8_t* out, int64_t nblocks, const KQuantFit& fit) {
  for (int64_t bi = 0; bi < nblocks; ++bi, x += 256, out += kQ6_KBytes) {
    float s[16];
    float amax = 0.f;
    for (int j = 0; j < 16; ++j) {
      s[j] = fit.sym16(x + 16 * j);
      amax = std::fabs(s[j]) > amax ? std::fabs(s[j]) : amax;
    }
    const uint16_t dh = f32_to_f16(f16_cap(amax / 127.f));
    const float d = f16_to_f32(dh);
    int8_t* sc = reinterpret_cast<int8_t*>(out + 192);
    uint8_t qv[256];
    for (int j = 0; j < 16; ++j) {
      sc[j] = (int8_t)(d > 0.f ? clampi(rint_small(s[j] / d), -127, 127) : 0);
      const float ds = d * (float)sc[j];
      const float inv = ds != 0.f ? 1.f / ds : 0.f;
      for (int i = 0; i < 16; ++i) qv[16 * j + i] = (uint8_t)(clampi(rint_small(x[16 * j + i] * inv), -32, 31) + 32);
    }
    wr16(out + 208, dh);
    uint8_t* ql = out;
    uint8_t* qh = out + 128;
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* q = qv + 128 * h;
        const int a = q[l], bq = q[l + 32], c = q[l + 64], e = q[l + 96];
        ql[64 * h + l] = (uint8_t)((a & 0x0F) | ((c & 0x0F) << 4));
        ql[64 * h + l + 32] = (uint8_t)((bq & 0x0F) | ((e & 0x0F) << 4));
        qh[32 * h + l] = (uint8_t)((a >> 4) | ((bq >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
  }
}

void quantize_q8_K(const float* x, uint8_t* out, int64_t nblocks) {
  for (int64_t bi = 0; bi < nblocks; ++bi, x += 256, out += kQ8_KBytes) {
    float amax = 0.f;
    for (int j = 0; j < 256; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
    const float iscale = amax > 0.f ? 127.f / amax : 0.f;
    const float d = amax > 0.f ? 1.f / iscale : 0.f;
    std::memcpy(out, &d, 4);
    int8_t* qs = reinterpret_cast<int8_t*>(out + 4);
    for (int j = 0; j < 256; ++j) qs[j] = (int8_t)clampi(rint_small(x[j] * iscale), -127, 127);
    for (int g = 0; g < 16; ++g) {
      int16_t sum = 0;
      for (int i = 0; i < 16; ++i) sum = (int16_t)(sum + qs[16 * g + i]);
      std::memcpy(out + 260 + 2 * g, &sum, 2);
    }
  }
}

}  // namespace qimpl
}  // namespace sdn
