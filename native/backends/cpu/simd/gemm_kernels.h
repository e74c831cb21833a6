// GEMM microkernels (one compiled copy per ISA; see simd.h). Shared by linear, conv2d and Winograd.
//
// Layouts:
//   A: row-major f32 rows (lda elements apart), k contiguous. Rows are broadcast.
//   Bp: a packed panel of NR columns: Bp[k * NR + j]; columns past the matrix edge are zero.
//   C: row-major f32 (ldc).
// The kernel computes one MR x NR tile (fewer rows/columns at the edges):
//   C[i][j] = (accumulate ? C[i][j] : (bias ? bias[j] : 0)) + sum_k A[i][k] * Bp[k][j]   (k in order 0..kc-1)
// Every C element is reduced in the same order whatever the tile position, so results do not depend on how the
// work is split between threads.
#pragma once
#include <cstdint>

#include "backends/cpu/simd/simd.h"

SDN_DECLARE_ISA(int gemm_mr())
SDN_DECLARE_ISA(int gemm_nr())
SDN_DECLARE_ISA(void gemm_ukernel(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc,
                                  int rows, int ncols, const float* bias, bool accumulate))
// Transposes `rows` (<= NR) rows of `count` floats (src[r * ld + k]) into a panel dst[k * NR + r], zero-filling
// rows..NR-1.
SDN_DECLARE_ISA(void gemm_pack_panel(const float* src, int64_t ld, int rows, int64_t count, float* dst))
// Same from 16-bit rows: half = true for IEEE half (F16), false for bfloat16 (BF16); ld in elements.
SDN_DECLARE_ISA(void gemm_pack_panel_16(const uint16_t* src, int64_t ld, int rows, int64_t count, bool half,
                                        float* dst))
