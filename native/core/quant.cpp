// Quantization formats: scalar reference kernels for the plain and legacy (32-element block) types, argument
// checks, and the dispatching entry points. K-quant block codecs live in quant_k.cpp; SIMD kernels in
// backends/cpu/simd/quant_*.cpp. Byte layouts: ENGINE-FACTS.md section 3 (GGUF/ggml, little-endian).
#include "core/quant.h"

#include <cmath>
#include <cstring>
#include <string>

#include "backends/cpu/simd/quant_kernels.h"
#include "core/quant_impl.h"
#include "sdn/error.h"

// Results must not depend on whether the compiler fuses a*b+c into one rounding (quantized bytes are compared
// across SIMD levels and platforms): no contraction in this file.
#include "core/fp_contract_off.h"

namespace sdn {

using namespace qimpl;

namespace {

std::string type_label(DType t) {
  const DTypeTraits& tr = dtype_traits(t);
  if (tr.block_size == 0) return "unknown type id " + std::to_string((uint32_t)t);
  return std::string("type ") + tr.name;
}

bool dequant_supported(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::F64:
    case DType::I8: case DType::I16: case DType::I32: case DType::I64:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
    case DType::Q8_0: case DType::Q8_1: case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K:
    case DType::Q6_K: case DType::Q8_K:
      return true;
    default:
      return false;
  }
}

bool quant_supported(DType t) {
  switch (t) {
    case DType::I8: case DType::I16: case DType::I32: case DType::I64:
      return false;
    default:
      return dequant_supported(t);
  }
}

}  // namespace

namespace qimpl {

void check_row(DType t, int64_t n, const char* what) {
  bool ok = std::strcmp(what, "quantize_row") == 0 ? quant_supported(t) : dequant_supported(t);
  if (!ok) throw_error(ErrorCode::Unsupported, std::string(what) + ": " + type_label(t) + " is not supported");
  int bs = dtype_traits(t).block_size;
  if (n < 0 || n % bs != 0)
    throw_error(ErrorCode::InvalidArgument, std::string(what) + ": row length " + std::to_string(n) +
                                                " is not a non-negative multiple of the block size " +
                                                std::to_string(bs) + " of " + type_label(t));
}

// ---- block decoders ----------------------------------------------------------------------------------------

void dequant_block_q4_0(const uint8_t* b, float* y) {
  const float d = rdf16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = (float)((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
  }
}

void dequant_block_q4_1(const uint8_t* b, float* y) {
  const float d = rdf16(b), m = rdf16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = (float)(qs[j] & 0x0F) * d + m;
    y[j + 16] = (float)(qs[j] >> 4) * d + m;
  }
}

void dequant_block_q5_0(const uint8_t* b, float* y) {
  const float d = rdf16(b);
  const uint32_t qh = rd32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
    y[j] = (float)(((qs[j] & 0x0F) | (h0 << 4)) - 16) * d;
    y[j + 16] = (float)(((qs[j] >> 4) | (h1 << 4)) - 16) * d;
  }
}

void dequant_block_q5_1(const uint8_t* b, float* y) {
  const float d = rdf16(b), m = rdf16(b + 2);
  const uint32_t qh = rd32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
    y[j] = (float)((qs[j] & 0x0F) | (h0 << 4)) * d + m;
    y[j + 16] = (float)((qs[j] >> 4) | (h1 << 4)) * d + m;
  }
}

void dequant_block_q8_0(const uint8_t* b, float* y) {
  const float d = rdf16(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = (float)qs[j] * d;
}

void dequant_block_q8_1(const uint8_t* b, float* y) {
  const float d = rdf16(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < 32; ++j) y[j] = (float)qs[j] * d;
}

BlockDecoder block_decoder(DType t) {
  switch (t) {
    case DType::Q4_0: return dequant_block_q4_0;
    case DType::Q4_1: return dequant_block_q4_1;
    case DType::Q5_0: return dequant_block_q5_0;
    case DType::Q5_1: return dequant_block_q5_1;
    case DType::Q8_0: return dequant_block_q8_0;
    case DType::Q8_1: return dequant_block_q8_1;
    case DType::Q2_K: return dequant_block_q2_K;
    case DType::Q3_K: return dequant_block_q3_K;
    case DType::Q4_K: return dequant_block_q4_K;
    case DType::Q5_K: return dequant_block_q5_K;
    case DType::Q6_K: return dequant_block_q6_K;
    case DType::Q8_K: return dequant_block_q8_K;
    default: return nullptr;
  }
}

}  // namespace qimpl

// ---- legacy quantizers (ggml reference rounding, so files match byte for byte) --------------------------------

namespace {

// Signed value of the element with the largest magnitude (first one on ties).
inline float signed_absmax(const float* x, int n) {
  float amax = 0.f, vmax = 0.f;
  for (int j = 0; j < n; ++j) {
    float a = std::fabs(x[j]);
    if (a > amax) {
      amax = a;
      vmax = x[j];
    }
  }
  return vmax;
}

void quantize_q4_0(const float* x, uint8_t* b) {
  const float vmax = signed_absmax(x, 32);
  const float d = vmax / -8.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  wr16(b, f32_to_f16(d));
  uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    int q0 = (int)(int8_t)(x[j] * id + 8.5f);
    int q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
    q0 = q0 < 15 ? q0 : 15;
    q1 = q1 < 15 ? q1 : 15;
    qs[j] = (uint8_t)(q0 | (q1 << 4));
  }
}

void quantize_q4_1(const float* x, uint8_t* b) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < 32; ++j) {
    lo = x[j] < lo ? x[j] : lo;
    hi = x[j] > hi ? x[j] : hi;
  }
  const float d = (hi - lo) / 15.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  wr16(b, f32_to_f16(d));
  wr16(b + 2, f32_to_f16(lo));
  uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    int q0 = (int)(int8_t)((x[j] - lo) * id + 0.5f);
    int q1 = (int)(int8_t)((x[j + 16] - lo) * id + 0.5f);
    q0 = q0 < 15 ? q0 : 15;
    q1 = q1 < 15 ? q1 : 15;
    qs[j] = (uint8_t)(q0 | (q1 << 4));
  }
}

void quantize_q5_0(const float* x, uint8_t* b) {
  const float vmax = signed_absmax(x, 32);
  const float d = vmax / -16.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  wr16(b, f32_to_f16(d));
  uint32_t qh = 0;
  uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    int q0 = (int)(int8_t)(x[j] * id + 16.5f);
    int q1 = (int)(int8_t)(x[j + 16] * id + 16.5f);
    q0 = q0 < 31 ? q0 : 31;
    q1 = q1 < 31 ? q1 : 31;
    qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    qh |= (uint32_t)((q0 >> 4) & 1) << j;
    qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
  }
  wr32(b + 2, qh);
}

void quantize_q5_1(const float* x, uint8_t* b) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < 32; ++j) {
    lo = x[j] < lo ? x[j] : lo;
    hi = x[j] > hi ? x[j] : hi;
  }
  const float d = (hi - lo) / 31.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  wr16(b, f32_to_f16(d));
  wr16(b + 2, f32_to_f16(lo));
  uint32_t qh = 0;
  uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    int q0 = (int)(int8_t)((x[j] - lo) * id + 0.5f);
    int q1 = (int)(int8_t)((x[j + 16] - lo) * id + 0.5f);
    q0 = q0 < 31 ? q0 : 31;
    q1 = q1 < 31 ? q1 : 31;
    qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    qh |= (uint32_t)((q0 >> 4) & 1) << j;
    qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
  }
  wr32(b + 4, qh);
}

void quantize_q8_0(const float* x, uint8_t* b) {
  float amax = 0.f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  wr16(b, f32_to_f16(d));
  int8_t* qs = reinterpret_cast<int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) qs[j] = (int8_t)std::round(x[j] * id);
}

void quantize_q8_1(const float* x, uint8_t* b) {
  float amax = 0.f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  int8_t* qs = reinterpret_cast<int8_t*>(b + 4);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    qs[j] = (int8_t)std::round(x[j] * id);
    sum += qs[j];
  }
  wr16(b, f32_to_f16(d));
  wr16(b + 2, f32_to_f16((float)sum * d));
}

template <typename T>
void convert_ints(const void* src, float* dst, int64_t n) {
  const T* s = static_cast<const T*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = (float)s[i];
}


// Unchecked scalar dequantization (t and n already validated).
void dequant_ref_impl(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, (size_t)n * 4); return;
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F64: convert_ints<double>(src, dst, n); return;
    case DType::I8: convert_ints<int8_t>(src, dst, n); return;
    case DType::I16: convert_ints<int16_t>(src, dst, n); return;
    case DType::I32: convert_ints<int32_t>(src, dst, n); return;
    case DType::I64: convert_ints<int64_t>(src, dst, n); return;
    default: break;
  }
  BlockDecoder dec = block_decoder(t);
  SDN_CHECK(dec != nullptr, "no decoder");
  const DTypeTraits& tr = dtype_traits(t);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / tr.block_size; ++b) dec(s + b * tr.block_bytes, dst + b * tr.block_size);
}

}  // namespace

// ---- public scalar references -------------------------------------------------------------------------------

namespace {

void quantize_impl(DType t, const float* src, void* dst, int64_t n, const KQuantFit& fit) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  const DTypeTraits& tr = dtype_traits(t);
  const int64_t nb = n / tr.block_size;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, (size_t)n * 4); return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) wr16(out + 2 * i, f32_to_f16(src[i]));
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) wr16(out + 2 * i, f32_to_bf16(src[i]));
      return;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double v = src[i];
        std::memcpy(out + 8 * i, &v, 8);
      }
      return;
    case DType::Q4_0: for (int64_t b = 0; b < nb; ++b) quantize_q4_0(src + 32 * b, out + kQ4_0Bytes * b); return;
    case DType::Q4_1: for (int64_t b = 0; b < nb; ++b) quantize_q4_1(src + 32 * b, out + kQ4_1Bytes * b); return;
    case DType::Q5_0: for (int64_t b = 0; b < nb; ++b) quantize_q5_0(src + 32 * b, out + kQ5_0Bytes * b); return;
    case DType::Q5_1: for (int64_t b = 0; b < nb; ++b) quantize_q5_1(src + 32 * b, out + kQ5_1Bytes * b); return;
    case DType::Q8_0: for (int64_t b = 0; b < nb; ++b) quantize_q8_0(src + 32 * b, out + kQ8_0Bytes * b); return;
    case DType::Q8_1: for (int64_t b = 0; b < nb; ++b) quantize_q8_1(src + 32 * b, out + kQ8_1Bytes * b); return;
    case DType::Q4_K: quantize_q4_K(src, out, nb, fit); return;
    case DType::Q5_K: quantize_q5_K(src, out, nb, fit); return;
    case DType::Q6_K: quantize_q6_K(src, out, nb, fit); return;
    case DType::Q8_K: quantize_q8_K(src, out, nb); return;
    case DType::Q2_K: quantize_q2_K(src, out, nb); return;
    case DType::Q3_K: quantize_q3_K(src, out, nb); return;
    default: break;
  }
  throw_error(ErrorCode::Unsupported, "quantize_row: " + type_label(t) + " is not supported");
}

}  // namespace

void quantize_row_ref(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n, "quantize_row");
  quantize_impl(t, src, dst, n, KQuantFit{&cpu::scalar::kq_fit_affine32, &cpu::scalar::kq_fit_sym16});
}

void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n, "dequantize_row");
  dequant_ref_impl(t, src, dst, n);
}

float dot_row_ref(DType t, const void* w, const float* x, int64_t n) {
  check_row(t, n, "dot_row");
  if (t == DType::F32) {
    const float* a = static_cast<const float*>(w);
    float s = 0.f;
    for (int64_t i = 0; i < n; ++i) s += a[i] * x[i];
    return s;
  }
  // Decode a chunk at a time, then a plain f32 dot.
  const DTypeTraits& tr = dtype_traits(t);
  const int64_t chunk = tr.block_size >= 256 ? tr.block_size : 256;
  const int64_t cb = (int64_t)tr.block_bytes * (chunk / tr.block_size);
  float buf[256];
  float s = 0.f;
  const uint8_t* p = static_cast<const uint8_t*>(w);
  for (int64_t i = 0; i < n; i += chunk) {
    int64_t m = n - i < chunk ? n - i : chunk;
    dequant_ref_impl(t, p + (i / chunk) * cb, buf, m);
    for (int64_t j = 0; j < m; ++j) s += buf[j] * x[i + j];
  }
  return s;
}

// ---- dispatching entry points ---------------------------------------------------------------------------------

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n, "quantize_row");
  if (SDN_DISPATCH(quant_row_simd)(t, src, dst, n)) return;
  quantize_impl(t, src, dst, n, KQuantFit{SDN_DISPATCH(kq_fit_affine32), SDN_DISPATCH(kq_fit_sym16)});
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n, "dequantize_row");
  if (!SDN_DISPATCH(dequant_row_simd)(t, src, dst, n)) dequant_ref_impl(t, src, dst, n);
}

float dot_row(DType t, const void* w, const float* x, int64_t n) {
  check_row(t, n, "dot_row");
  float r;
  if (SDN_DISPATCH(dot_row_simd)(t, w, x, n, &r)) return r;
  return dot_row_ref(t, w, x, n);
}

void dequantize_rows(DType t, const void* src, size_t row_bytes, int64_t rows, int64_t cols, float* dst,
                     int64_t dst_stride) {
  check_row(t, cols, "dequantize_rows");
  if (rows < 0 || (rows > 1 && dst_stride < cols))
    throw_error(ErrorCode::InvalidArgument, "dequantize_rows: rows " + std::to_string(rows) + ", dst_stride " +
                                                std::to_string(dst_stride) + " < cols " + std::to_string(cols));
  auto fn = SDN_DISPATCH(dequant_row_simd);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  for (int64_t r = 0; r < rows; ++r) {
    const void* sr = s + (size_t)r * row_bytes;
    float* dr = dst + r * dst_stride;
    if (!fn(t, sr, dr, cols)) dequant_ref_impl(t, sr, dr, cols);
  }
}

}  // namespace sdn
