// Winograd F(4x4, 3x3) convolution for 3x3, stride-1 kernels (CPU backend internals).
#pragma once
#include <cstdint>

#include "backends/cpu/gemm.h"

namespace sdn {
namespace cpu {

// True when Winograd is expected to beat im2col for this shape (batch b).
bool winograd_worthwhile(int64_t b, int64_t c, int64_t oc, int64_t oh, int64_t ow);
// y [B, OC, OH, OW] (allocated) = conv3x3(x [B, C, H, W], w rows of C*9, stride 1, pad 0 or 1) + bias.
void conv3x3_winograd(const Tensor& x, const WeightMatrix& w, const float* bias, int pad, Tensor& y);

}  // namespace cpu
}  // namespace sdn
