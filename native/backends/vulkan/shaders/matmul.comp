// Tiled matrix multiply for linear (y[M, N] = x[M, K] w[N, K]^T + b) and, with CONV, 2-D convolution as an
// implicit GEMM (M = B*OH*OW output pixels, N = OC, K = C*KH*KW; the input patch is gathered while loading
// the tile, never materialised). Weights are dequantized while loading the tile (dequant.glsl, one module per
// type). 64x64 output tile per workgroup of 16x16 invocations, each computing 4x4 outputs; K in steps of 16.
// a0 = x, a1 = w, a2 = bias (used when u3 != 0), a3 = y
// u0 = M, u1 = N, u2 = K, u3 = has bias
// CONV: u4 = C, u5 = H, u6 = W, u7 = OH, u8 = OW, u9 = KH, u10 = KW, u11 = stride, u12 = pad
// u13 = first output row of this dispatch (a matmul with more than 65535 row tiles is split into dispatches)
#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "dequant.glsl"
layout(local_size_x = 16, local_size_y = 16) in;

#define TM 64u
#define TN 64u
#define TK 16u
shared float As[TK][TM + 1u];
shared float Bs[TK][TN + 1u];

void main() {
  uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  uint tid = ty * 16u + tx;
  uint M = pc.u0, N = pc.u1, K = pc.u2;
  uint m0 = pc.u13 + gl_WorkGroupID.x * TM, n0 = gl_WorkGroupID.y * TN;
  FBuf X = FBuf(pc.a0);
  UBuf Wt = UBuf(pc.a1);
  uint rowb = row_bytes_for(K);
#ifdef CONV
  uint C = pc.u4, H = pc.u5, Wd = pc.u6, OH = pc.u7, OW = pc.u8, KH = pc.u9, KW = pc.u10;
  int stride = int(pc.u11), pad = int(pc.u12);
  uint KHW = KH * KW, OHW = OH * OW;
#endif
  float acc[4][4];
  [[unroll]] for (uint i = 0u; i < 4u; ++i)
    [[unroll]] for (uint j = 0u; j < 4u; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < K; k0 += TK) {
    [[unroll]] for (uint r = 0u; r < 4u; ++r) {
      uint e = tid + r * 256u;
#ifdef CONV
      uint mm = e % TM, kk = e / TM;  // consecutive invocations along output pixels
#else
      uint mm = e / TK, kk = e % TK;  // consecutive invocations along K (rows of x are contiguous)
#endif
      uint m = m0 + mm, k = k0 + kk;
      float v = 0.0;
      if (m < M && k < K) {
#ifdef CONV
        uint b = m / OHW, p = m % OHW;
        uint oh = p / OW, ow = p % OW;
        uint c = k / KHW, q = k % KHW;
        int ih = int(oh) * stride - pad + int(q / KW);
        int iw = int(ow) * stride - pad + int(q % KW);
        if (ih >= 0 && iw >= 0 && ih < int(H) && iw < int(Wd))
          v = X.v[((b * C + c) * H + uint(ih)) * Wd + uint(iw)];
#else
        v = X.v[m * K + k];
#endif
      }
      As[kk][mm] = v;
      uint nn = e / TK, kb = e % TK;
      uint n = n0 + nn, kw = k0 + kb;
      Bs[kb][nn] = (n < N && kw < K) ? wdec(Wt, n * rowb, kw) : 0.0;
    }
    barrier();
    [[unroll]] for (uint kk = 0u; kk < TK; ++kk) {
      float a[4], bv[4];
      [[unroll]] for (uint i = 0u; i < 4u; ++i) a[i] = As[kk][ty + 16u * i];
      [[unroll]] for (uint j = 0u; j < 4u; ++j) bv[j] = Bs[kk][tx + 16u * j];
      [[unroll]] for (uint i = 0u; i < 4u; ++i)
        [[unroll]] for (uint j = 0u; j < 4u; ++j) acc[i][j] += a[i] * bv[j];
    }
    barrier();
  }
  FBuf Y = FBuf(pc.a3);
  [[unroll]] for (uint i = 0u; i < 4u; ++i) {
    uint m = m0 + ty + 16u * i;
    if (m >= M) continue;
    [[unroll]] for (uint j = 0u; j < 4u; ++j) {
      uint n = n0 + tx + 16u * j;
      if (n >= N) continue;
      float v = acc[i][j] + (pc.u3 != 0u ? FBuf(pc.a2).v[n] : 0.0);
#ifdef CONV
      uint b = m / OHW, p = m % OHW;
      Y.v[(b * N + n) * OHW + p] = v;
#else
      Y.v[m * N + n] = v;
#endif
    }
  }
}
