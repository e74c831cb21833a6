// PLACEHOLDER until the quantization formats land: plain float types only.
#include "core/quant.h"

#include <cstring>

#include "sdn/error.h"

namespace sdn {

void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, (size_t)n * 4); return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    default: throw_error(ErrorCode::Unsupported, std::string("dequantize: type ") + dtype_name(t));
  }
}
void dequantize_row(DType t, const void* src, float* dst, int64_t n) { dequantize_row_ref(t, src, dst, n); }

}  // namespace sdn
