// CpuBackend: prepare_weight, linear and conv2d (the GEMM and convolution kernels live in gemm.cpp, conv.cpp,
// winograd.cpp and simd/gemm_kernels.cpp).
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/gemm.h"
#include "sdn/error.h"

namespace sdn {

Tensor CpuBackend::prepare_weight(const Tensor& w) {
  Scope sc(*this);
  if (w.on_device()) throw_error(ErrorCode::Internal, "cpu prepare_weight: " + w.shape_str() + " lives on a device");
  // Matrices stay in their stored type (memory-mapped, dequantized panel by panel while packing); 1-D parameters
  // and non-weight types become F32.
  const DTypeTraits& tr = dtype_traits(w.dtype);
  if (w.ndim <= 1 || !tr.weight_type) {
    if (w.dtype == DType::F32 && w.is_contiguous()) return w;
    return w.to_f32();
  }
  if (!tr.quantized && !w.is_contiguous()) return w.contiguous();
  return w;
}

Tensor CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* b) {
  Scope sc(*this);
  return cpu::linear(x, w, b);
}

Tensor CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad) {
  Scope sc(*this);
  return cpu::conv2d(x, w, b, stride, pad);
}

}  // namespace sdn
