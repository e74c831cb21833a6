// conv2d and linear entry points (argument checks) and the im2col convolution path.
//
// im2col: the output pixels are processed in tiles; for each tile the patch matrix A[pixels][C*KH*KW] is built
// in a scratch buffer (bounded, never the whole image), multiplied by the weights (rows of C*KH*KW, any type)
// with the blocked GEMM into Ct[pixels][OC], and Ct is transposed into the NCHW output.
#include <algorithm>
#include <cstring>
#include <string>

#include "backends/cpu/gemm.h"
#include "backends/cpu/winograd.h"
#include "core/threadpool.h"
#include "sdn/error.h"

namespace sdn {
namespace cpu {

namespace {

constexpr size_t kIm2colBudget = 8u << 20;  // bytes of patch matrix per tile

[[noreturn]] void bad(const std::string& what) { throw_error(ErrorCode::InvalidArgument, what); }

WeightMatrix weight_matrix(const Tensor& w, int64_t rows, int64_t k, const char* op) {
  const DTypeTraits& tr = dtype_traits(w.dtype);
  if (!tr.weight_type)
    bad(std::string(op) + ": weight type " + dtype_name(w.dtype) + " is not a weight type");
  if (!w.data && rows * k > 0) bad(std::string(op) + ": weight has no data");
  if (k % tr.block_size != 0)
    bad(std::string(op) + ": weight rows of " + std::to_string(k) + " elements are not a multiple of the " +
        dtype_name(w.dtype) + " block size " + std::to_string(tr.block_size));
  WeightMatrix m;
  m.type = w.dtype;
  m.data = w.data;
  m.row_bytes = dtype_row_bytes(w.dtype, k);
  m.n = rows;
  m.k = k;
  return m;
}

Tensor f32_bias(const Tensor* b, int64_t n, const char* op) {
  if (!b) return Tensor();
  if (b->numel() != n)
    bad(std::string(op) + ": bias has " + std::to_string(b->numel()) + " elements, expected " + std::to_string(n));
  if (b->dtype == DType::F32 && b->is_contiguous()) return *b;
  return b->to_f32();
}

}  // namespace

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor* b) {
  if (x_in.dtype != DType::F32) bad("linear: input must be f32, got " + x_in.shape_str());
  if (x_in.ndim < 1) bad("linear: input must have at least one dimension");
  if (w_in.ndim != 2) bad("linear: weight must be [out, in], got " + w_in.shape_str());
  const int64_t K = x_in.dim(-1), N = w_in.shape[0];
  if (w_in.shape[1] != K)
    bad("linear: input " + x_in.shape_str() + " does not match weight " + w_in.shape_str() +
        " (last input dimension must equal the weight's second dimension)");
  Tensor x = x_in.is_contiguous() ? x_in : x_in.contiguous();
  Tensor w = w_in.is_contiguous() ? w_in : w_in.contiguous();
  WeightMatrix wm = weight_matrix(w, N, K, "linear");
  Tensor bias = f32_bias(b, N, "linear");
  std::vector<int64_t> shape = x.sizes();
  shape.back() = N;
  Tensor y = Tensor::empty(shape);
  int64_t M = 1;
  for (int i = 0; i + 1 < x.ndim; ++i) M *= x.shape[i];
  gemm_f32_weights(M, x.f32(), K, wm, b ? bias.f32() : nullptr, y.f32(), N, default_pool());
  return y;
}

static void conv_im2col(const Tensor& x, const WeightMatrix& wm, const float* bias, int kh_, int stride, int pad,
                        Tensor& y) {
  const int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t OC = y.shape[1], OH = y.shape[2], OW = y.shape[3];
  const int64_t KS = kh_, K = C * KS * KS, P = OH * OW;
  ThreadPool& pool = default_pool();
  int64_t pt = std::max<int64_t>(64, (int64_t)(kIm2colBudget / sizeof(float)) / std::max<int64_t>(K, 1));
  pt = std::min(pt, P);
  Tensor a = Tensor::empty({pt, K});
  Tensor ct = Tensor::empty({pt, OC});
  const bool plain1x1 = KS == 1 && stride == 1 && pad == 0;
  for (int64_t bi = 0; bi < B; ++bi) {
    const float* xb = x.f32() + bi * C * H * W;
    float* yb = y.f32() + bi * OC * P;
    for (int64_t p0 = 0; p0 < P; p0 += pt) {
      const int64_t np = std::min(pt, P - p0);
      float* A = a.f32();
      if (plain1x1) {
        // A[p][c] = x[c][p0 + p]: read rows, write columns, in blocks of 64 pixels.
        pool.parallel_for(np, 64, [&](int64_t pb, int64_t pe) {
          for (int64_t c = 0; c < C; ++c) {
            const float* src = xb + c * P + p0;
            for (int64_t p = pb; p < pe; ++p) A[p * K + c] = src[p];
          }
        });
      } else {
        pool.parallel_for(np, 16, [&](int64_t pb, int64_t pe) {
          for (int64_t p = pb; p < pe; ++p) {
            const int64_t oh = (p0 + p) / OW, ow = (p0 + p) % OW;
            float* row = A + p * K;
            for (int64_t c = 0; c < C; ++c) {
              const float* xc = xb + c * H * W;
              for (int64_t kh = 0; kh < KS; ++kh) {
                const int64_t ih = oh * stride - pad + kh;
                for (int64_t kw = 0; kw < KS; ++kw) {
                  const int64_t iw = ow * stride - pad + kw;
                  *row++ = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? xc[ih * W + iw] : 0.f;
                }
              }
            }
          }
        });
      }
      float* Ct = ct.f32();
      gemm_f32_weights(np, A, K, wm, bias, Ct, OC, pool);
      pool.parallel_for(OC, 16, [&](int64_t ob, int64_t oe) {
        for (int64_t p = 0; p < np; ++p)
          for (int64_t o = ob; o < oe; ++o) yb[o * P + p0 + p] = Ct[p * OC + o];
      });
    }
  }
}

Tensor conv2d_with(const Tensor& x_in, const Tensor& w_in, const Tensor* b, int stride, int pad, ConvAlgo algo) {
  if (x_in.dtype != DType::F32) bad("conv2d: input must be f32, got " + x_in.shape_str());
  if (x_in.ndim != 4) bad("conv2d: input must be [B, C, H, W], got " + x_in.shape_str());
  if (w_in.ndim != 4) bad("conv2d: weight must be [OC, C, KH, KW], got " + w_in.shape_str());
  const int64_t B = x_in.shape[0], C = x_in.shape[1], H = x_in.shape[2], W = x_in.shape[3];
  const int64_t OC = w_in.shape[0], KH = w_in.shape[2], KW = w_in.shape[3];
  if (w_in.shape[1] != C)
    bad("conv2d: input " + x_in.shape_str() + " has " + std::to_string(C) + " channels but weight " +
        w_in.shape_str() + " expects " + std::to_string(w_in.shape[1]));
  if (KH != KW || (KH != 1 && KH != 3)) bad("conv2d: only 1x1 and 3x3 kernels are supported, got " + w_in.shape_str());
  if (stride != 1 && stride != 2) bad("conv2d: stride must be 1 or 2, got " + std::to_string(stride));
  if (pad != 0 && pad != 1) bad("conv2d: padding must be 0 or 1, got " + std::to_string(pad));
  if (H + 2 * pad < KH || W + 2 * pad < KW)
    bad("conv2d: input " + x_in.shape_str() + " is smaller than the kernel");
  const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  Tensor x = x_in.is_contiguous() ? x_in : x_in.contiguous();
  const bool quant = dtype_traits(w_in.dtype).quantized;
  Tensor w = (quant || w_in.is_contiguous()) ? w_in : w_in.contiguous();
  WeightMatrix wm = weight_matrix(w, OC, C * KH * KW, "conv2d");
  Tensor bias = f32_bias(b, OC, "conv2d");
  const float* bp = b ? bias.f32() : nullptr;
  Tensor y = Tensor::empty({B, OC, OH, OW});
  if (y.numel() == 0) return y;
  if (C == 0) {
    for (int64_t bi = 0; bi < B; ++bi)
      for (int64_t o = 0; o < OC; ++o)
        std::fill(y.f32() + (bi * OC + o) * OH * OW, y.f32() + (bi * OC + o + 1) * OH * OW, bp ? bp[o] : 0.f);
    return y;
  }
  bool wino = KH == 3 && stride == 1;
  if (algo == ConvAlgo::Im2col) wino = false;
  if (algo == ConvAlgo::Auto && wino) wino = winograd_worthwhile(C, OC, OH, OW);
  if (wino)
    conv3x3_winograd(x, wm, bp, pad, y);
  else
    conv_im2col(x, wm, bp, (int)KH, stride, pad, y);
  return y;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad) {
  return conv2d_with(x, w, b, stride, pad, ConvAlgo::Auto);
}

}  // namespace cpu
}  // namespace sdn
