// Winograd F(4x4, 3x3) convolution (placeholder: not implemented yet).
#include "backends/cpu/winograd.h"

#include "sdn/error.h"

namespace sdn {
namespace cpu {

bool winograd_worthwhile(int64_t, int64_t, int64_t, int64_t) { return false; }

void conv3x3_winograd(const Tensor&, const WeightMatrix&, const float*, int, Tensor&) {
  throw_error(ErrorCode::Unsupported, "conv2d: Winograd path not implemented yet");
}

}  // namespace cpu
}  // namespace sdn
