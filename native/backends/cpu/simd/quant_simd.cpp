// SIMD kernels for quantized rows (placeholder: no kernels yet, everything falls back to the scalar reference).
#include "backends/cpu/simd/quant_kernels.h"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

bool dequant_row_simd(DType t, const void* src, float* dst, int64_t n) { return false; }
bool dot_row_simd(DType t, const void* w, const float* x, int64_t n, float* out) { return false; }

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
