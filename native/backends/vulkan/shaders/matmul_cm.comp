// Cooperative-matrix (tensor core) GEMM for linear and, with CONV, 2-D convolution as an implicit GEMM: the same
// operation, push constants and output layout as matmul.comp, for NVIDIA devices with VK_NV_cooperative_matrix.
// NEVER EXECUTED YET: no device this project has run on offers the extension (lavapipe does not, and no GPU was
// available); the backend only uses it after a self-check against matmul.comp passes on the device.
//
// Why the NV extension: the build tools we use (Debian bookworm glslc 2023.2 / glslang 12) reject
// GL_KHR_cooperative_matrix ("extension not supported") but compile GL_NV_cooperative_matrix.
//
// A 64x64 output tile per workgroup of 128 invocations = 4 subgroups of 32 (the backend selects this kernel only
// where the subgroup size is 32). Each K step of 32: x (f32, clamped to the f16 range) and the weights (any stored
// type, dequantized by dequant.glsl) are converted to f16 into shared memory; each subgroup then multiplies its
// 32x32 quarter of the tile with 16 x CM_N x 16 cooperative matrices (f16 A and B, f32 accumulator). The
// accumulators go through shared memory to the output, where the bias is added (and NCHW is written for CONV).
// CM_N (16 or 8): the N size of the matrices, one of the shapes the device lists
// (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV); M = K = 16.
// a0 = x, a1 = w, a2 = bias (used when u3 != 0), a3 = y
// u0 = M, u1 = N, u2 = K, u3 = has bias
// CONV: u4 = C, u5 = H, u6 = W, u7 = OH, u8 = OW, u9 = KH, u10 = KW, u11 = stride, u12 = pad
// u13 = first output row of this dispatch
#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_NV_cooperative_matrix : require
#include "common.glsl"
#include "dequant.glsl"
layout(local_size_x = 128) in;

layout(constant_id = 0) const uint CM_N = 16u;  // set by the backend from the device's list (16 or 8)
const uint TC = 32u / CM_N;                     // matrices per subgroup along N (2 or 4)
#define TM 64u
#define TN 64u
#define TK 32u
#define AS 40u  // row stride of the f16 tiles in elements (80 bytes: a multiple of 16, rows off the same bank)
#define CS 68u  // row stride of the f32 output tile

shared float16_t As[TM * AS];  // x tile, [m][k]
shared float16_t Bs[TN * AS];  // weight tile, [n][k] (B = w^T, loaded column-major)
shared float Cs[TM * CS];      // result tile, [m][n]

void main() {
  uint tid = gl_LocalInvocationID.x;
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
  uint sg = gl_SubgroupID;            // 0..3
  uint sm = (sg >> 1u) * 32u, sn = (sg & 1u) * 32u;  // this subgroup's quarter of the tile
  fcoopmatNV<32, gl_ScopeSubgroup, 16, CM_N> acc[2][4];  // [.][0 .. 32/CM_N - 1] used
  [[unroll]] for (uint i = 0u; i < 2u; ++i)
    [[unroll]] for (uint j = 0u; j < 4u; ++j) acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, 16, CM_N>(0.0);

  for (uint k0 = 0u; k0 < K; k0 += TK) {
    for (uint r = 0u; r < 16u; ++r) {
      uint e = tid + r * 128u;  // 0 .. TM*TK-1
#ifdef CONV
      uint mm = e % TM, kk = e / TM;  // consecutive invocations along output pixels
#else
      uint mm = e / TK, kk = e % TK;  // consecutive invocations along K
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
      As[mm * AS + kk] = float16_t(clamp(v, -65504.0, 65504.0));
      uint nn = e / TK, kb = e % TK;
      uint n = n0 + nn, kw = k0 + kb;
      float wv = (n < N && kw < K) ? wdec(Wt, n * rowb, kw) : 0.0;
      Bs[nn * AS + kb] = float16_t(clamp(wv, -65504.0, 65504.0));
    }
    barrier();
    [[unroll]] for (uint kk = 0u; kk < TK; kk += 16u) {
      fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a[2];
      [[unroll]] for (uint i = 0u; i < 2u; ++i) coopMatLoadNV(a[i], As, (sm + 16u * i) * AS + kk, AS, false);
      [[unroll]] for (uint j = 0u; j < 4u; ++j) {
        if (j >= TC) break;  // a specialization constant: folded when the pipeline is built
        fcoopmatNV<16, gl_ScopeSubgroup, 16, CM_N> b;
        coopMatLoadNV(b, Bs, (sn + CM_N * j) * AS + kk, AS, true);
        [[unroll]] for (uint i = 0u; i < 2u; ++i) acc[i][j] = coopMatMulAddNV(a[i], b, acc[i][j]);
      }
    }
    barrier();
  }
  [[unroll]] for (uint i = 0u; i < 2u; ++i)
    [[unroll]] for (uint j = 0u; j < 4u; ++j)
      if (j < TC) coopMatStoreNV(acc[i][j], Cs, (sm + 16u * i) * CS + sn + CM_N * j, CS, false);
  barrier();
  FBuf Y = FBuf(pc.a3);
  for (uint e = tid; e < TM * TN; e += 128u) {
#ifdef CONV
    uint mm = e % TM, nn = e / TM;  // consecutive invocations along output pixels (NCHW rows)
#else
    uint mm = e / TN, nn = e % TN;  // consecutive invocations along N (rows of y)
#endif
    uint m = m0 + mm, n = n0 + nn;
    if (m >= M || n >= N) continue;
    float v = Cs[mm * CS + nn] + (pc.u3 != 0u ? FBuf(pc.a2).v[n] : 0.0);
#ifdef CONV
    uint b = m / OHW, p = m % OHW;
    Y.v[(b * N + n) * OHW + p] = v;
#else
    Y.v[m * N + n] = v;
#endif
  }
}
