// Flash attention for CPU Vulkan implementations (lavapipe/llvmpipe), same contract as attention.comp, for one
// head size HD_D known at compile time (one module per size). Each invocation keeps RQ query rows of one
// (batch, head) and their output accumulators in registers and streams the keys and values straight from memory
// (two values per 64-bit load), with an online softmax; no shared memory and no barriers (on llvmpipe every
// memory load is a scalar loop over the SIMD lanes, so loads are what costs: here one key/value load serves RQ
// rows). Invocation i of the (folded) 1-D grid takes query block i % QB of (batch, head) i / QB.
// a0 = q [B, Tq, H*D], a1 = k [B, Tk, H*D], a2 = v, a3 = out [B, Tq, H*D] (all contiguous, 8-byte aligned)
// u0 = Tq, u1 = Tk, u2 = H, u3 = D (== HD_D), u4 = causal, u5 = scale (float bits), u6 = B
#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#include "common.glsl"
layout(local_size_x = 64) in;
layout(buffer_reference, std430, buffer_reference_align = 8) buffer DBuf { uint64_t v[]; };

#ifndef HD_D
#define HD_D 40u
#endif
#define RQ 4u
#define HALF (HD_D / 2u)

float q[RQ][HD_D];
float acc[RQ][HD_D];
float kv[HD_D];

void load_row(DBuf P, uint base) {  // base: float index, even
  [[unroll]] for (uint d = 0u; d < HALF; ++d) {
    uint64_t u = P.v[(base >> 1u) + d];
    kv[2u * d] = uintBitsToFloat(uint(u));
    kv[2u * d + 1u] = uintBitsToFloat(uint(u >> 32u));
  }
}

void main() {
  uint Tq = pc.u0, Tk = pc.u1, H = pc.u2, B = pc.u6;
  bool causal = pc.u4 != 0u;
  float scale = uintBitsToFloat(pc.u5);
  uint QB = (Tq + RQ - 1u) / RQ;
  uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 64u + gl_LocalInvocationID.x;
  if (i >= QB * B * H) return;
  uint r0 = (i % QB) * RQ, bh = i / QB;
  uint b = bh / H, h = bh % H;
  uint HDs = H * HD_D;
  DBuf Q = DBuf(pc.a0), Kb = DBuf(pc.a1), Vb = DBuf(pc.a2);
  float m[RQ], l[RQ];
  [[unroll]] for (uint r = 0u; r < RQ; ++r) {
    uint row = min(r0 + r, Tq - 1u);
    load_row(Q, (b * Tq + row) * HDs + h * HD_D);
    [[unroll]] for (uint d = 0u; d < HD_D; ++d) {
      q[r][d] = kv[d] * scale;
      acc[r][d] = 0.0;
    }
    m[r] = -3.402823466e38;
    l[r] = 0.0;
  }
  uint kend = causal ? min(Tk, min(r0 + RQ, Tq)) : Tk;
  for (uint j = 0u; j < kend; ++j) {
    uint kb = (b * Tk + j) * HDs + h * HD_D;
    load_row(Kb, kb);
    float p[RQ];
    [[unroll]] for (uint r = 0u; r < RQ; ++r) {
      float s = 0.0;
      [[unroll]] for (uint d = 0u; d < HD_D; ++d) s += q[r][d] * kv[d];
      bool masked = causal && j > r0 + r;
      float mn = masked ? m[r] : max(m[r], s);
      float corr = exp(m[r] - mn);
      p[r] = masked ? 0.0 : exp(s - mn);
      l[r] = l[r] * corr + p[r];
      m[r] = mn;
      [[unroll]] for (uint d = 0u; d < HD_D; ++d) acc[r][d] *= corr;
    }
    load_row(Vb, kb);
    [[unroll]] for (uint r = 0u; r < RQ; ++r)
      [[unroll]] for (uint d = 0u; d < HD_D; ++d) acc[r][d] += p[r] * kv[d];
  }
  FBuf O = FBuf(pc.a3);
  [[unroll]] for (uint r = 0u; r < RQ; ++r) {
    uint row = r0 + r;
    if (row >= Tq) break;
    float inv = 1.0 / l[r];
    uint ob = (b * Tq + row) * HDs + h * HD_D;
    [[unroll]] for (uint d = 0u; d < HD_D; ++d) O.v[ob + d] = acc[r][d] * inv;
  }
}
