// PLACEHOLDER (branch ops): linear, conv2d and prepare_weight are written on the gemm branch, which replaces this
// file. It exists only so that the CPU backend links (its vtable lives with prepare_weight) until then.
// On a merge conflict here, take the gemm branch's version.
#include "backends/cpu/cpu_backend.h"
#include "sdn/error.h"

namespace sdn {

Tensor CpuBackend::prepare_weight(const Tensor& w) { return w; }
Tensor CpuBackend::linear(const Tensor&, const Tensor&, const Tensor*) {
  throw_error(ErrorCode::Unsupported, "cpu linear is not implemented yet");
}
Tensor CpuBackend::conv2d(const Tensor&, const Tensor&, const Tensor*, int, int) {
  throw_error(ErrorCode::Unsupported, "cpu conv2d is not implemented yet");
}

}  // namespace sdn
