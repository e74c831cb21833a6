// Register-blocked matrix multiply for CPU Vulkan implementations (lavapipe/llvmpipe), same contract as
// matmul.comp: linear (y[M, N] = x[M, K] w[N, K]^T + b) and, with CONV, 2-D convolution as an implicit GEMM.
//
// Why a second kernel: llvmpipe runs a workgroup on one CPU thread with the invocations in SIMD lanes, and
// (Mesa 22.x) every load from global, storage or shared memory is a scalar loop over the lanes, while arithmetic
// on registers is one vector instruction. The shared-memory tiled kernel spends most of its time in those loops
// (tile stores, tile reads) and in barriers. Here each invocation computes an RB_R x RB_C block of outputs from
// registers: per step of K it loads RB_R activations and RB_C weights and does RB_R * RB_C FMAs; no shared
// memory, no barriers. f16 weights are read two per 32-bit load (four per 64-bit load) and Q8_0 four quants per
// two loads; in the S16/S8 modules (dequant.glsl) as f16vec2/f16vec4 and i8vec2 values instead (devices with
// 16/8-bit storage; CPU devices do not use them by default: slower on lavapipe).
// Invocation i of the (folded) 1-D grid takes output block (i % MB, i / MB): lanes run along M first, so small M
// does not leave lanes idle. Rows/columns past M/N are clamped (computed twice, never stored).
// a0 = x, a1 = w, a2 = bias (used when u3 != 0), a3 = y
// u0 = M, u1 = N, u2 = K, u3 = has bias, u14 = fast paths the host checked (alignment, shape):
//   bit 0: rows of x start 8-byte aligned (two activations per 64-bit load); bit 1: f16 weight rows 8-byte
//   aligned (four weights per 64-bit load); bit 2 (CONV): 3x3, stride 1, pad 1, OW % RB_R == 0, W even, x 8-byte
//   aligned, OW % SEG == 0 and OH*OW % RB_R == 0: a block is RB_R / SEG segments of SEG pixels of output rows, each
//   input row segment is loaded once for the 3 kernel columns, and the 9 f16 weights of a (channel, input
//   channel) pair come from five 32-bit loads; bit 3 (CONV): 1x1, stride 1, pad 0, C even, OH*OW % RB_R == 0,
//   x 8-byte aligned
// CONV: u4 = C, u5 = H, u6 = W, u7 = OH, u8 = OW, u9 = KH, u10 = KW, u11 = stride, u12 = pad
#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "dequant.glsl"
layout(local_size_x = 64) in;

#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
layout(buffer_reference, std430, buffer_reference_align = 8) buffer DBuf { uint64_t v[]; };

// output block per invocation: pixels x channels for convolution, rows x features for linear
#ifdef CONV
#define RB_R 16u
#define RB_C 8u
// 3x3 path: pixels per row segment (16, or OW when OW < 16; set by the host), segments per block
layout(constant_id = 0) const uint SEG = 16u;
const uint NS = RB_R / SEG;
#else
#define RB_R 8u
#define RB_C 16u
#endif

float acc[RB_R][RB_C];
float a[RB_R];
float w[RB_C];

void fma_block() {
  [[unroll]] for (uint r = 0u; r < RB_R; ++r)
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) acc[r][j] += a[r] * w[j];
}

// four f16 weights from one 64-bit load (index in units of 8 bytes); S16: read as f16vec4 (dequant.glsl)
#ifdef S16
layout(buffer_reference, std430, buffer_reference_align = 8) buffer H4Buf { f16vec4 v[]; };
vec4 rdf16x4(uint i) { return vec4(H4Buf(pc.a1).v[i]); }
#else
vec4 rdf16x4(uint i) {
  uint64_t u = DBuf(pc.a1).v[i];
  return vec4(unpackHalf2x16(uint(u)), unpackHalf2x16(uint(u >> 32u)));
}
#endif
#ifdef S8
layout(buffer_reference, std430, buffer_reference_align = 2) buffer I2Buf { i8vec2 v[]; };
#endif

void main() {
  uint M = pc.u0, N = pc.u1, K = pc.u2;
  uint MB = (M + RB_R - 1u) / RB_R, NB = (N + RB_C - 1u) / RB_C;
  uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 64u + gl_LocalInvocationID.x;
  if (i >= MB * NB) return;
  uint m0 = (i % MB) * RB_R, n0 = (i / MB) * RB_C;
  FBuf X = FBuf(pc.a0);
  UBuf Wt = UBuf(pc.a1);
  uint rowb = row_bytes_for(K);
  uint rb[RB_C];
  [[unroll]] for (uint j = 0u; j < RB_C; ++j) rb[j] = min(n0 + j, N - 1u) * rowb;
  [[unroll]] for (uint r = 0u; r < RB_R; ++r)
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) acc[r][j] = 0.0;

#ifdef CONV
  uint C = pc.u4, H = pc.u5, Wd = pc.u6, OH = pc.u7, OW = pc.u8, KH = pc.u9, KW = pc.u10;
  int stride = int(pc.u11), pad = int(pc.u12);
  uint HW = H * Wd, OHW = OH * OW;
  uint xb[RB_R];
  int ihb[RB_R], iwb[RB_R];
  [[unroll]] for (uint r = 0u; r < RB_R; ++r) {
    uint m = min(m0 + r, M - 1u);
    uint b = m / OHW, p = m % OHW;
    xb[r] = b * C * HW;
    ihb[r] = int(p / OW) * stride - pad;
    iwb[r] = int(p % OW) * stride - pad;
  }
  if ((pc.u14 & 4u) != 0u) {
    // blocks of NS segments of SEG pixels along output rows (SEG = 16, or OW when OW < 16)
    DBuf X2 = DBuf(pc.a0);
    uint b = m0 / OHW, p0 = m0 % OHW;
    uint seg_oh[NS], seg_ow[NS];
    [[unroll]] for (uint sg = 0u; sg < NS; ++sg) {
      seg_oh[sg] = (p0 + sg * SEG) / OW;
      seg_ow[sg] = (p0 + sg * SEG) % OW;
    }
    for (uint c = 0u; c < C; ++c) {
      float w9[RB_C][9];
      [[unroll]] for (uint j = 0u; j < RB_C; ++j) {
#if defined(WT_F16)
        uint s = (rb[j] >> 1u) + c * 9u;  // half index of the first of the 9 weights
        uint w0 = s >> 1u;
        bool odd = (s & 1u) != 0u;
        float hv[10];
        [[unroll]] for (uint t = 0u; t < 5u; ++t) {
          vec2 h2 = rdf16x2(Wt, w0 + t);
          hv[2u * t] = h2.x;
          hv[2u * t + 1u] = h2.y;
        }
        [[unroll]] for (uint t = 0u; t < 9u; ++t) w9[j][t] = odd ? hv[t + 1u] : hv[t];
#else
        [[unroll]] for (uint t = 0u; t < 9u; ++t) w9[j][t] = wdec(Wt, rb[j], c * 9u + t);
#endif
      }
      [[unroll]] for (uint kh = 0u; kh < 3u; ++kh) {
        float xr[NS][SEG + 4u];  // xr[sg][t] = x[row of segment sg, ow0 - 2 + t]
        [[unroll]] for (uint sg = 0u; sg < NS; ++sg) {
          int ih = int(seg_oh[sg]) + int(kh) - 1;
          bool rowok = ih >= 0 && ih < int(H);
          uint rowbase = xb[0] + c * HW + uint(clamp(ih, 0, int(H) - 1)) * Wd;  // even
          [[unroll]] for (uint t2 = 0u; t2 < SEG / 2u + 2u; ++t2) {
            int iw = int(seg_ow[sg]) - 2 + 2 * int(t2);
            bool ok = rowok && iw >= 0 && iw < int(Wd);
            uint64_t u = X2.v[(rowbase + uint(clamp(iw, 0, int(Wd) - 2))) >> 1u];
            xr[sg][2u * t2] = ok ? uintBitsToFloat(uint(u)) : 0.0;
            xr[sg][2u * t2 + 1u] = ok ? uintBitsToFloat(uint(u >> 32u)) : 0.0;
          }
        }
        [[unroll]] for (uint kw = 0u; kw < 3u; ++kw) {
          [[unroll]] for (uint sg = 0u; sg < NS; ++sg)
            [[unroll]] for (uint r = 0u; r < SEG; ++r) a[sg * SEG + r] = xr[sg][r + kw + 1u];
          [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = w9[j][kh * 3u + kw];
          fma_block();
        }
      }
    }
  } else if ((pc.u14 & 8u) != 0u) {
    // 1x1, stride 1, no padding, the block inside one image: x rows of RB_R pixels by pairs, input channels
    // two at a time (f16 weights: one 32-bit load for two)
    DBuf X2 = DBuf(pc.a0);
    uint base = xb[0] + m0 % OHW;  // even
    for (uint c = 0u; c < C; c += 2u) {
      float a1[RB_R];
      [[unroll]] for (uint t2 = 0u; t2 < RB_R / 2u; ++t2) {
        uint64_t u = X2.v[(base + c * HW) / 2u + t2];
        uint64_t u1 = X2.v[(base + (c + 1u) * HW) / 2u + t2];
        a[2u * t2] = uintBitsToFloat(uint(u));
        a[2u * t2 + 1u] = uintBitsToFloat(uint(u >> 32u));
        a1[2u * t2] = uintBitsToFloat(uint(u1));
        a1[2u * t2 + 1u] = uintBitsToFloat(uint(u1 >> 32u));
      }
      float w1[RB_C];
      [[unroll]] for (uint j = 0u; j < RB_C; ++j) {
#if defined(WT_F16)
        vec2 h2 = rdf16x2(Wt, (rb[j] >> 2u) + (c >> 1u));
        w[j] = h2.x;
        w1[j] = h2.y;
#else
        w[j] = wdec(Wt, rb[j], c);
        w1[j] = wdec(Wt, rb[j], c + 1u);
#endif
      }
      fma_block();
      [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = a1[r];
      [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = w1[j];
      fma_block();
    }
  } else {
  uint k = 0u;
  for (uint c = 0u; c < C; ++c) {
    for (uint kh = 0u; kh < KH; ++kh) {
      for (uint kw = 0u; kw < KW; ++kw) {
        [[unroll]] for (uint r = 0u; r < RB_R; ++r) {
          int ih = ihb[r] + int(kh), iw = iwb[r] + int(kw);
          bool ok = ih >= 0 && iw >= 0 && ih < int(H) && iw < int(Wd);
          uint idx = xb[r] + c * HW + uint(clamp(ih, 0, int(H) - 1)) * Wd + uint(clamp(iw, 0, int(Wd) - 1));
          float v = X.v[idx];
          a[r] = ok ? v : 0.0;
        }
#if defined(WT_F16)
        [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = rdf16(Wt, rb[j] + 2u * k);
#else
        [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = wdec(Wt, rb[j], k);
#endif
        fma_block();
        ++k;
      }
    }
  }
  }
#else
  uint xo[RB_R];
  [[unroll]] for (uint r = 0u; r < RB_R; ++r) xo[r] = min(m0 + r, M - 1u) * K;
  DBuf X2 = DBuf(pc.a0);
  uint kq = (pc.u14 & 3u) == 3u ? (K & ~3u) : 0u;  // steps of 4: x by pairs, f16 weights by fours
#if defined(WT_F16)
  for (uint k = 0u; k < kq; k += 4u) {
    vec4 w4[RB_C];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) {
      w4[j] = rdf16x4((rb[j] >> 3u) + (k >> 2u));
    }
    [[unroll]] for (uint t2 = 0u; t2 < 2u; ++t2) {
      float a1[RB_R];
      [[unroll]] for (uint r = 0u; r < RB_R; ++r) {
        uint64_t u = X2.v[((xo[r] + k) >> 1u) + t2];
        a[r] = uintBitsToFloat(uint(u));
        a1[r] = uintBitsToFloat(uint(u >> 32u));
      }
      [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = w4[j][2u * t2];
      fma_block();
      [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = a1[r];
      [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = w4[j][2u * t2 + 1u];
      fma_block();
    }
  }
  // rows start 4-byte aligned when K is even: two weights per load
  uint kpair = kq == K ? K : ((K & 1u) == 0u ? K : 0u);
  uint kstart = kq;
  for (uint k = kstart; k < kpair; k += 2u) {
    vec2 w2[RB_C];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) w2[j] = rdf16x2(Wt, (rb[j] >> 2u) + (k >> 1u));
    [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = X.v[xo[r] + k];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = w2[j].x;
    fma_block();
    [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = X.v[xo[r] + k + 1u];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = w2[j].y;
    fma_block();
  }
  for (uint k = kpair; k < K; ++k) {
    [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = X.v[xo[r] + k];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = rdf16(Wt, rb[j] + 2u * k);
    fma_block();
  }
#elif defined(WT_Q8_0)
  // blocks of 32: f16 scale, 32 int8 quants (34 bytes, 2-byte aligned); four quants from two 32-bit loads
  for (uint k0 = 0u; k0 < K; k0 += 32u) {
    float d[RB_C];
    uint qo[RB_C];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) {
      uint off = rb[j] + (k0 >> 5u) * 34u;
      d[j] = rdf16(Wt, off);
      qo[j] = off + 2u;
    }
    for (uint q = 0u; q < 32u; q += 4u) {
      vec4 wq[RB_C];
      [[unroll]] for (uint j = 0u; j < RB_C; ++j) {
        uint o = qo[j] + q;  // even
#ifdef S8
        wq[j] = vec4(ivec2(I2Buf(Wt).v[o >> 1u]), ivec2(I2Buf(Wt).v[(o >> 1u) + 1u])) * d[j];
#else
        uint sh = (o & 3u) * 8u;
        uint lo = Wt.v[o >> 2u];
        uint hi = Wt.v[(o >> 2u) + 1u];
        uint word = sh == 0u ? lo : ((lo >> sh) | (hi << (32u - sh)));
        wq[j] = vec4(sext8(word & 0xffu), sext8((word >> 8u) & 0xffu), sext8((word >> 16u) & 0xffu),
                     sext8(word >> 24u)) * d[j];
#endif
      }
      [[unroll]] for (uint t = 0u; t < 4u; ++t) {
        [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = X.v[xo[r] + k0 + q + t];
        [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = wq[j][t];
        fma_block();
      }
    }
  }
#else
  uint kx = (pc.u14 & 1u) != 0u ? (K & ~1u) : 0u;  // x by pairs
  for (uint k = 0u; k < kx; k += 2u) {
    float a1[RB_R];
    [[unroll]] for (uint r = 0u; r < RB_R; ++r) {
      uint64_t u = X2.v[(xo[r] + k) >> 1u];
      a[r] = uintBitsToFloat(uint(u));
      a1[r] = uintBitsToFloat(uint(u >> 32u));
    }
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = wdec(Wt, rb[j], k);
    fma_block();
    [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = a1[r];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = wdec(Wt, rb[j], k + 1u);
    fma_block();
  }
  for (uint k = kx; k < K; ++k) {
    [[unroll]] for (uint r = 0u; r < RB_R; ++r) a[r] = X.v[xo[r] + k];
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) w[j] = wdec(Wt, rb[j], k);
    fma_block();
  }
#endif
#endif

  FBuf Y = FBuf(pc.a3);
  [[unroll]] for (uint r = 0u; r < RB_R; ++r) {
    uint m = m0 + r;
    if (m >= M) break;
    [[unroll]] for (uint j = 0u; j < RB_C; ++j) {
      uint n = n0 + j;
      if (n >= N) break;
      float v = acc[r][j] + (pc.u3 != 0u ? FBuf(pc.a2).v[n] : 0.0);
#ifdef CONV
      uint b = m / OHW, p = m % OHW;
      Y.v[(b * N + n) * OHW + p] = v;
#else
      Y.v[m * N + n] = v;
#endif
    }
  }
}
