// Fused attention kernels (compiled once per ISA). See attention_kernels.h.
#include "backends/cpu/simd/attention_kernels.h"

#include <cmath>
#include <cstring>

#include "backends/cpu/simd/ops_kernels.h"
#include "backends/cpu/simd/vec.h"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

#if !SDN_VEC
// Plain C++ twin. Same algorithm as the vector path below (queries of a block side by side, keys and values read
// in place), written with the query index innermost and no calls in the hot loops, so that compilers
// auto-vectorise it for whatever the target has (SSE2 on x86-64, NEON on ARM64) without reassociating sums.
namespace {
constexpr int kPMq = 32;  // queries per block
constexpr int kPNK = 64;  // keys per tile

// 2^x for x <= 0 without library calls (branch-free: vectorisable). Same polynomial as vec::exp2_nonpos.
inline float exp2_plain(float x) {
  float xc = x < -126.f ? -126.f : x;
  int n = (int)(xc - 0.5f);  // round to nearest for xc <= 0 (truncation towards zero of xc - 1/2)
  float r = xc - (float)n;   // in [-1/2, 1/2]
  float p = 1.5403530393381606e-04f;
  p = p * r + 1.3333558146428443e-03f;
  p = p * r + 9.6181291076284772e-03f;
  p = p * r + 5.5504108664821580e-02f;
  p = p * r + 2.4022650695910071e-01f;
  p = p * r + 6.9314718055994531e-01f;
  p = p * r + 1.f;
  uint32_t bits = (uint32_t)(n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return x < -126.f ? 0.f : p * scale;
}

struct PlainLayout {
  size_t qt, ot, s, m, l, alpha, tmp, total;
};
PlainLayout plain_layout(int d) {
  PlainLayout L;
  size_t off = 0;
  auto take = [&](size_t n) {
    size_t o = off;
    off += (n + 15) / 16 * 16;
    return o;
  };
  L.qt = take((size_t)d * kPMq);
  L.ot = take((size_t)d * kPMq);
  L.s = take((size_t)kPNK * kPMq);
  L.m = take(kPMq);
  L.l = take(kPMq);
  L.alpha = take(kPMq);
  L.tmp = take(kPMq);
  L.total = off;
  return L;
}
}  // namespace

int attn_rows_per_block(int) { return kPMq; }

size_t attn_scratch_floats(int d) { return plain_layout(d).total; }

void attn_block(const AttnArgs& a, int64_t i0, int64_t i1, float* scratch) {
  const int D = a.d;
  const PlainLayout L = plain_layout(D);
  const int rows = (int)(i1 - i0);
  float* __restrict qt = scratch + L.qt;   // [D][kPMq]
  float* __restrict ot = scratch + L.ot;   // [D][kPMq]
  float* __restrict sb = scratch + L.s;    // [kPNK][kPMq]
  float* __restrict mrow = scratch + L.m;
  float* __restrict lrow = scratch + L.l;
  float* __restrict alpha = scratch + L.alpha;
  float* __restrict tmp = scratch + L.tmp;
  const float qscale = (float)((double)a.scale * 1.4426950408889634);  // softmax in base 2
  for (int d = 0; d < D; ++d)
    for (int r = 0; r < kPMq; ++r) qt[(size_t)d * kPMq + r] = r < rows ? a.q[(i0 + r) * a.q_stride + d] * qscale : 0.f;
  for (size_t i = 0; i < (size_t)D * kPMq; ++i) ot[i] = 0.f;
  for (int r = 0; r < kPMq; ++r) {
    mrow[r] = -1e30f;
    lrow[r] = 0.f;
  }
  const int64_t kend = a.causal ? (i1 < a.tk ? i1 : a.tk) : a.tk;
  for (int64_t j0 = 0; j0 < kend; j0 += kPNK) {
    const int jn = (int)(kend - j0 < kPNK ? kend - j0 : kPNK);
    // S^T[j][r] = k_j . q_r
    for (int jj = 0; jj < jn; ++jj) {
      float* __restrict sr = sb + (size_t)jj * kPMq;
      const float* kj = a.k + (j0 + jj) * a.k_stride;
      float acc[kPMq] = {};  // small enough for the compiler to keep in vector registers
      for (int d = 0; d < D; ++d) {
        const float kd = kj[d];
        const float* __restrict qd = qt + (size_t)d * kPMq;
        for (int r = 0; r < kPMq; ++r) acc[r] += kd * qd[r];
      }
      for (int r = 0; r < kPMq; ++r) sr[r] = acc[r];
      if (a.causal)
        for (int r = 0; r < kPMq; ++r)
          if (j0 + jj > i0 + r) sr[r] = -INFINITY;
    }
    // online softmax over the tile (vertical)
    for (int r = 0; r < kPMq; ++r) tmp[r] = mrow[r];
    for (int jj = 0; jj < jn; ++jj) {
      const float* __restrict sr = sb + (size_t)jj * kPMq;
      for (int r = 0; r < kPMq; ++r) tmp[r] = sr[r] > tmp[r] ? sr[r] : tmp[r];
    }
    for (int r = 0; r < kPMq; ++r) {
      alpha[r] = exp2_plain(mrow[r] - tmp[r]);
      mrow[r] = tmp[r];
      lrow[r] *= alpha[r];
    }
    for (int jj = 0; jj < jn; ++jj) {
      float* __restrict sr = sb + (size_t)jj * kPMq;
      for (int r = 0; r < kPMq; ++r) {
        float p = exp2_plain(sr[r] - mrow[r]);
        sr[r] = p;
        lrow[r] += p;
      }
    }
    // O^T[d][r] = O^T[d][r] alpha[r] + sum_j v_j[d] P^T[j][r]
    for (int d = 0; d < D; ++d) {
      float* __restrict od = ot + (size_t)d * kPMq;
      float acc[kPMq];
      for (int r = 0; r < kPMq; ++r) acc[r] = od[r] * alpha[r];
      for (int jj = 0; jj < jn; ++jj) {
        const float vd = a.v[(j0 + jj) * a.v_stride + d];
        const float* __restrict sr = sb + (size_t)jj * kPMq;
        for (int r = 0; r < kPMq; ++r) acc[r] += vd * sr[r];
      }
      for (int r = 0; r < kPMq; ++r) od[r] = acc[r];
    }
  }
  for (int r = 0; r < rows; ++r) {
    const float inv = lrow[r] > 0 ? 1.f / lrow[r] : 0.f;
    float* out = a.o + (i0 + r) * a.o_stride;
    for (int d = 0; d < D; ++d) out[d] = ot[(size_t)d * kPMq + r] * inv;
  }
}
#else
// Vector path (AVX-512: 16 lanes, AVX2: 8 lanes; see vec.h). A block of kMq queries lives in vector lanes
// throughout, and K and V rows are read in place and broadcast, so nothing but Q is ever repacked:
//
//   qt [D][kMq]   Q^T of the block, pre-multiplied by scale * log2(e) (zero for queries past the end)
//   ot [D][kMq]   output accumulator O^T
//   m, l [kMq]    running max and running sum (base 2)
// For each tile of up to kNK keys:
//   1. S^T [keys][kMq] = K Q^T: register block of R keys x kNV query vectors (broadcast k[j][d], FMA with qt[d]);
//   2. online softmax, vertical over keys (no horizontal reductions): m' = max(m, max_j S), alpha = 2^(m - m'),
//      P = 2^(S - m'), l = l alpha + sum_j P, all as vectors over the block's queries;
//   3. O^T = O^T alpha + V^T P^T: register block of R features x kNV query vectors (broadcast v[j][d], FMA with
//      P^T[j]); any D works without padding (R is picked to divide D when it can).
// Finally out[i][d] = O^T[d][i] / l[i].
using namespace vec;

namespace {
#if SDN_ISA_avx512 || SDN_ISA_neon
constexpr int kRmax = 6;  // broadcast rows per register block: 6 x 4 vectors = 24 accumulators of 32 registers
#else
constexpr int kRmax = 3;  // 3 x 4 = 12 accumulators of 16 registers
#endif
constexpr int kNV = 4;        // query vectors per block
constexpr int kMq = kNV * W;  // queries per block (64 on AVX-512, 32 on AVX2, 16 on NEON)
constexpr int kNK = 96;       // keys per tile
constexpr float kNoMax = -1e30f;  // running max before any visible key (finite, so 2^(m - m') is 0, not NaN)

// On NEON, GCC keeps the accumulator arrays on the stack unless every loop over them is unrolled, and its
// pre-register-allocation scheduler hoists the six broadcast loads of a step ahead of the FMAs (24 accumulators +
// 4 query vectors + 6 > 32 registers): both hints make the inner loops spill-free (checked with objdump).
// The x86 builds are left as they were.
#if SDN_ISA_neon && defined(__GNUC__) && !defined(__clang__)
#define SDN_ATTN_BLOCK __attribute__((optimize("no-schedule-insns"), noinline))
#define SDN_ATTN_UNROLL _Pragma("GCC unroll 8")
#elif SDN_ISA_neon
#define SDN_ATTN_BLOCK inline
#define SDN_ATTN_UNROLL _Pragma("GCC unroll 8")
#else
#define SDN_ATTN_BLOCK inline
#define SDN_ATTN_UNROLL
#endif

// s[r][0..kMq) = sum_d k[r][d] * qt[d][0..kMq) for R key rows
template <int R>
SDN_ATTN_BLOCK void qk_block(const float* k, int64_t kstride, const float* qt, int D, float* s) {
  F acc[R][kNV];
  SDN_ATTN_UNROLL for (int r = 0; r < R; ++r)
    SDN_ATTN_UNROLL for (int v = 0; v < kNV; ++v) acc[r][v] = zero();
  for (int d = 0; d < D; ++d) {
    F qv[kNV];
    SDN_ATTN_UNROLL for (int v = 0; v < kNV; ++v) qv[v] = load(qt + (size_t)d * kMq + v * W);
    SDN_ATTN_UNROLL for (int r = 0; r < R; ++r) {
      F kb = set1(k[r * kstride + d]);
      SDN_ATTN_UNROLL for (int v = 0; v < kNV; ++v) acc[r][v] = fmadd(kb, qv[v], acc[r][v]);
    }
  }
  SDN_ATTN_UNROLL for (int r = 0; r < R; ++r)
    SDN_ATTN_UNROLL for (int v = 0; v < kNV; ++v) store(s + (size_t)r * kMq + v * W, acc[r][v]);
}

// ot[r][..] = ot[r][..] * alpha + sum_j v[j][r] * p[j][..] for R feature rows (v points at feature d0 of key j0)
template <int R>
SDN_ATTN_BLOCK void pv_block(const float* p, int jn, const float* v, int64_t vstride, float* ot, const float* alpha) {
  F acc[R][kNV];
  {
    F al[kNV];
    SDN_ATTN_UNROLL for (int c = 0; c < kNV; ++c) al[c] = load(alpha + c * W);
    SDN_ATTN_UNROLL for (int r = 0; r < R; ++r)
      SDN_ATTN_UNROLL for (int c = 0; c < kNV; ++c) acc[r][c] = mul(load(ot + (size_t)r * kMq + c * W), al[c]);
  }
  for (int j = 0; j < jn; ++j) {
    F pv[kNV];
    SDN_ATTN_UNROLL for (int c = 0; c < kNV; ++c) pv[c] = load(p + (size_t)j * kMq + c * W);
    const float* vj = v + j * vstride;
    SDN_ATTN_UNROLL for (int r = 0; r < R; ++r) {
      F vb = set1(vj[r]);
      SDN_ATTN_UNROLL for (int c = 0; c < kNV; ++c) acc[r][c] = fmadd(vb, pv[c], acc[r][c]);
    }
  }
  SDN_ATTN_UNROLL for (int r = 0; r < R; ++r)
    SDN_ATTN_UNROLL for (int c = 0; c < kNV; ++c) store(ot + (size_t)r * kMq + c * W, acc[r][c]);
}

template <int R>
void qk_dispatch(int r, const float* k, int64_t kstride, const float* qt, int D, float* s) {
  if (r == R) return qk_block<R>(k, kstride, qt, D, s);
  if constexpr (R > 1) qk_dispatch<R - 1>(r, k, kstride, qt, D, s);
}

template <int R>
void pv_dispatch(int r, const float* p, int jn, const float* v, int64_t vstride, float* ot, const float* alpha) {
  if (r == R) return pv_block<R>(p, jn, v, vstride, ot, alpha);
  if constexpr (R > 1) pv_dispatch<R - 1>(r, p, jn, v, vstride, ot, alpha);
}

// Rows per PV block: the largest R in [kRmin, kRmax] dividing D (no ragged tail), else kRmax. (On AVX2 fewer
// than kRmax rows would leave too few accumulators busy, so a ragged tail is the better deal there.)
#if SDN_ISA_avx512 || SDN_ISA_neon
constexpr int kRmin = kRmax - 2;
#else
constexpr int kRmin = kRmax;
#endif
int pv_rows_for(int D) {
  for (int r = kRmax; r >= kRmin && r >= 1; --r)
    if (D % r == 0) return r;
  return kRmax;
}

struct Layout {
  size_t qt, ot, s, m, l, alpha, total;
};

Layout layout(int d) {
  Layout L;
  size_t off = 0;
  auto take = [&](size_t n) {
    size_t o = off;
    off += (n + 15) / 16 * 16;  // keep every buffer 64-byte aligned
    return o;
  };
  L.qt = take((size_t)d * kMq);
  L.ot = take((size_t)d * kMq);
  L.s = take((size_t)kNK * kMq);
  L.m = take(kMq);
  L.l = take(kMq);
  L.alpha = take(kMq);
  L.total = off;
  return L;
}
}  // namespace

int attn_rows_per_block(int) { return kMq; }

size_t attn_scratch_floats(int d) { return layout(d).total; }

void attn_block(const AttnArgs& a, int64_t i0, int64_t i1, float* scratch) {
  const int D = a.d;
  const Layout L = layout(D);
  const int rows = (int)(i1 - i0);
  float* qt = scratch + L.qt;
  float* ot = scratch + L.ot;
  float* sb = scratch + L.s;
  float* mrow = scratch + L.m;
  float* lrow = scratch + L.l;
  float* alpha = scratch + L.alpha;

  // Q^T via 8x8 register transposes, then scaled; columns past the last query are zero
  if (rows < kMq)
    for (size_t i = 0; i < (size_t)D * kMq; i += W) store(qt + i, zero());
  transpose_f32(a.q + i0 * a.q_stride, a.q_stride, qt, kMq, rows, D);
  const F qscale = set1((float)((double)a.scale * 1.4426950408889634));
  for (size_t i = 0; i < (size_t)D * kMq; i += W) store(qt + i, mul(load(qt + i), qscale));
  for (size_t i = 0; i < (size_t)D * kMq; i += W) store(ot + i, zero());
  for (int v = 0; v < kNV; ++v) {
    store(mrow + v * W, set1(kNoMax));
    store(lrow + v * W, zero());
  }

  const int rp = pv_rows_for(D);
  const int64_t kend = a.causal ? (i1 < a.tk ? i1 : a.tk) : a.tk;
  for (int64_t j0 = 0; j0 < kend; j0 += kNK) {
    const int jn = (int)(kend - j0 < kNK ? kend - j0 : kNK);
    // S^T = K Q^T
    for (int r0 = 0; r0 < jn; r0 += kRmax) {
      int rr = jn - r0 < kRmax ? jn - r0 : kRmax;
      qk_dispatch<kRmax>(rr, a.k + (j0 + r0) * a.k_stride, a.k_stride, qt, D, sb + (size_t)r0 * kMq);
    }
    if (a.causal && j0 + jn - 1 > i0) {  // key j is hidden from query i when j > i
      for (int jj = 0; jj < jn; ++jj) {
        int64_t lim = j0 + jj - i0;  // queries r < lim are masked
        float* sr = sb + (size_t)jj * kMq;
        for (int64_t r = 0; r < lim && r < kMq; ++r) sr[r] = -INFINITY;
      }
    }
    // online softmax, vertical over the tile's keys (the kNV query vectors side by side for instruction-level
    // parallelism)
    {
      F mnew[kNV], sum[kNV];
      for (int v = 0; v < kNV; ++v) mnew[v] = load(sb + v * W);
      for (int jj = 1; jj < jn; ++jj)
        for (int v = 0; v < kNV; ++v) mnew[v] = max(mnew[v], load(sb + (size_t)jj * kMq + v * W));
      for (int v = 0; v < kNV; ++v) {
        F mold = load(mrow + v * W);
        mnew[v] = max(mold, mnew[v]);
        store(alpha + v * W, exp2_nonpos(sub(mold, mnew[v])));
        store(mrow + v * W, mnew[v]);
        sum[v] = zero();
      }
      for (int jj = 0; jj < jn; ++jj) {
        float* sp = sb + (size_t)jj * kMq;
        for (int v = 0; v < kNV; ++v) {
          F p = exp2_nonpos(sub(load(sp + v * W), mnew[v]));
          store(sp + v * W, p);
          sum[v] = add(sum[v], p);
        }
      }
      for (int v = 0; v < kNV; ++v) store(lrow + v * W, fmadd(load(lrow + v * W), load(alpha + v * W), sum[v]));
    }
    // O^T = O^T alpha + V^T P^T
    const float* vt = a.v + j0 * a.v_stride;
    for (int d0 = 0; d0 < D; d0 += rp) {
      int rr = D - d0 < rp ? D - d0 : rp;
      pv_dispatch<kRmax>(rr, sb, jn, vt + d0, a.v_stride, ot + (size_t)d0 * kMq, alpha);
    }
  }
  // out = O / l: scale the columns of O^T, then transpose into the output rows
  F inv[kNV];
  for (int v = 0; v < kNV; ++v) {
    F l = load(lrow + v * W);
    store(lrow + v * W, div(set1(1.f), max(l, set1(1e-30f))));
    inv[v] = load(lrow + v * W);
  }
  for (int d = 0; d < D; ++d)
    for (int v = 0; v < kNV; ++v) store(ot + (size_t)d * kMq + v * W, mul(load(ot + (size_t)d * kMq + v * W), inv[v]));
  transpose_f32(ot, kMq, a.o + i0 * a.o_stride, a.o_stride, D, rows);
}
#endif

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
