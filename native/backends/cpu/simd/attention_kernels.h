// Fused scaled-dot-product attention for one head and a block of query rows (one copy per ISA; see simd.h).
// Flash-attention style: keys are visited in tiles with a running max / running sum per query row (online
// softmax), so only a (query tile x key tile) block of scores exists at a time.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backends/cpu/simd/simd.h"

namespace sdn {
namespace cpu {
struct AttnArgs {
  const float* q;  // q[i * q_stride + d], i in [0, tq)
  const float* k;  // k[j * k_stride + d], j in [0, tk)
  const float* v;  // v[j * v_stride + d]
  float* o;        // o[i * o_stride + d]
  int64_t q_stride, k_stride, v_stride, o_stride;
  int64_t tq, tk;
  int d;
  float scale;
  bool causal;  // query i sees keys j <= i
};
}  // namespace cpu
}  // namespace sdn

// Query rows per work item for head size d (the caller splits [0, tq) into blocks of this many rows).
SDN_DECLARE_ISA(int attn_rows_per_block(int d))
// Floats of scratch attn_block needs (64-byte aligned by the caller).
SDN_DECLARE_ISA(size_t attn_scratch_floats(int d))
// Computes output rows [i0, i1) (i1 - i0 <= attn_rows_per_block(d)).
SDN_DECLARE_ISA(void attn_block(const ::sdn::cpu::AttnArgs& a, int64_t i0, int64_t i1, float* scratch))
