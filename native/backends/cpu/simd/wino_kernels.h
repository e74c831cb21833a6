// Winograd F(4x4, 3x3) transforms (one compiled copy per ISA; see simd.h). Lanes are independent tiles (input and
// output transforms) or channels (weight transform); the code is plain C++ over lane arrays, vectorised by the
// compiler for each ISA.
//   input:  V = B^T d B   (d: 6x6 input patch)      output: Y = A^T M A (M: 6x6 -> Y: 4x4)
//   weight: U = G g G^T   (g: 3x3 kernel)
// Element xi = 6*a + b of a 6x6 transformed tile is stored at dst[xi * xs + lane].
#pragma once
#include <cstdint>

#include "backends/cpu/simd/simd.h"

// Input transform of `lanes` (<= 16) tiles: tile l's patch is p[off[l] + i * wp + j], i, j < 6. Rows of p must
// have 36 floats of readable slack past the last tile's patch.
SDN_DECLARE_ISA(void wino_input_tiles(const float* p, int64_t wp, const int32_t* off, int lanes, float* dst,
                                      int64_t xs))
// Output transform of 16 tiles: M element xi of lane l at m[xi * xs + l]; Y[i][j] + bias. Lanes come in two
// halves of 8; for half h, when dst_half[h] is not null the 8 tiles are side by side in one tile row, fully inside
// the image, and Y[i][j] of tile 8h+l goes to dst_half[h][i * ldy + 4l + j]; otherwise it goes to
// out[(4i + j) * 16 + l] (the caller places it).
SDN_DECLARE_ISA(void wino_output_tiles(const float* m, int64_t xs, float bias, float* out, float* const* dst_half,
                                       int64_t ldy))
// Weight transform of one output channel: g[c * 9 + 3i + j] for c < n; U element xi of channel c at dst[xi * xs + c].
SDN_DECLARE_ISA(void wino_weight_transform(const float* g, int64_t n, float* dst, int64_t xs))
