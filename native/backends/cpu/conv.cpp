// conv2d and linear entry points (argument checks) and the im2col convolution path.
//
// im2col: see conv_im2col below (patch panels built per chunk of output pixels, never the whole image).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/cpu/scratch.h"
#include "backends/cpu/gemm.h"
#include "backends/cpu/simd/gemm_kernels.h"
#include "backends/cpu/winograd.h"
#include "core/threadpool.h"
#include "sdn/error.h"

namespace sdn {
namespace cpu {

namespace {

constexpr size_t kIm2colBudget = 8u << 20;  // bytes of patch panels per chunk of output pixels
constexpr size_t kDeqBudget = 256u * 1024u;  // bytes of dequantized weight rows per task
constexpr int64_t kKcMax = 384;              // K chunk (same rule as the GEMM driver)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

thread_local cpu::ScratchBuffer t_conv_deq("conv2d");

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
  gemm_f32_weights(M, x.f32(), K, wm, b ? bias.f32() : nullptr, y.f32(), N, current_pool());
  return y;
}

// im2col convolution without a full patch matrix: for each image, the output pixels are taken in chunks; the
// chunk's patch matrix is written directly in the microkernel's panel layout B[panel][k][NR] (k = (c, kh, kw),
// NR consecutive output pixels per panel; bounded by kIm2colBudget), and the tasks (groups of output channels x
// groups of panels) compute y[oc][pixels] = W[oc][:] . B with the weight rows broadcast from memory (F32 in place,
// other types dequantized per task into thread-local scratch). The output is written in NCHW directly.
static void conv_im2col(const Tensor& x, const WeightMatrix& wm, const float* bias, int ks, int stride, int pad,
                        Tensor& y) {
  const int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t OC = y.shape[1], OH = y.shape[2], OW = y.shape[3];
  const int64_t K = C * ks * ks, P = OH * OW;
  ThreadPool& pool = current_pool();
  const int T = pool.size();
  auto kernel = SDN_DISPATCH(gemm_ukernel);
  const int MR = SDN_DISPATCH(gemm_mr)();
  const int NR = SDN_DISPATCH(gemm_nr)();
  int64_t kc = K;
  if (K > kKcMax) kc = (ceil_div(K, ceil_div(K, kKcMax)) + 15) / 16 * 16;
  const int64_t nchunks = ceil_div(K, kc);

  const int64_t panel_floats = K * NR;
  int64_t chunk_panels = std::max<int64_t>(1, (int64_t)(kIm2colBudget / sizeof(float)) / panel_floats);
  chunk_panels = std::min(chunk_panels, ceil_div(P, NR));
  Tensor bbuf = Tensor::empty({chunk_panels * panel_floats});
  float* Bp = bbuf.f32();

  const bool in_place = wm.type == DType::F32;
  const int64_t ldw = in_place ? (int64_t)(wm.row_bytes / sizeof(float)) : K;
  int64_t gr = std::max<int64_t>(MR, (int64_t)kDeqBudget / (K * (int64_t)sizeof(float)) / MR * MR);
  gr = std::min(gr, ceil_div(OC, MR) * MR);
  const int64_t ngroups = ceil_div(OC, gr);
  const bool plain1x1 = ks == 1 && stride == 1 && pad == 0;

  for (int64_t bi = 0; bi < B; ++bi) {
    const float* xb = x.f32() + bi * C * H * W;
    float* yb = y.f32() + bi * OC * P;
    for (int64_t q0 = 0; q0 < P; q0 += chunk_panels * NR) {
      const int64_t nq = std::min(chunk_panels * NR, P - q0);
      const int64_t npan = ceil_div(nq, NR);
      // 1. Patch panels.
      pool.parallel_for(npan, 1, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
          float* dst = Bp + j * panel_floats;
          const int64_t qa = q0 + j * NR, n = std::min<int64_t>(NR, q0 + nq - qa);
          if (plain1x1) {
            for (int64_t k = 0; k < K; ++k) {
              std::memcpy(dst + k * NR, xb + k * P + qa, (size_t)n * sizeof(float));
              for (int64_t l = n; l < NR; ++l) dst[k * NR + l] = 0.f;
            }
            continue;
          }
          if (n < NR)
            for (int64_t k = 0; k < K; ++k)
              for (int64_t l = n; l < NR; ++l) dst[k * NR + l] = 0.f;
          // Runs of pixels within one output row.
          for (int64_t l0 = 0; l0 < n;) {
            const int64_t q = qa + l0, oh = q / OW, ow0 = q % OW;
            const int64_t run = std::min<int64_t>(n - l0, OW - ow0);
            for (int64_t c = 0; c < C; ++c)
              for (int64_t kh = 0; kh < ks; ++kh) {
                const int64_t ih = oh * stride - pad + kh;
                const float* xr = xb + (c * H + ih) * W;
                for (int64_t kw = 0; kw < ks; ++kw) {
                  float* d = dst + ((c * ks + kh) * ks + kw) * NR + l0;
                  if (ih < 0 || ih >= H) {
                    for (int64_t l = 0; l < run; ++l) d[l] = 0.f;
                    continue;
                  }
                  const int64_t iw0 = ow0 * stride - pad + kw;
                  for (int64_t l = 0; l < run; ++l) {
                    const int64_t iw = iw0 + l * stride;
                    d[l] = (iw >= 0 && iw < W) ? xr[iw] : 0.f;
                  }
                }
              }
            l0 += run;
          }
        }
      });
      // 2. Output-channel groups x panel groups.
      int64_t pg = std::min<int64_t>(npan, 8);
      if (ngroups * ceil_div(npan, pg) < 2 * T) pg = std::max<int64_t>(1, ceil_div(npan, ceil_div(2 * T, ngroups)));
      const int64_t npg = ceil_div(npan, pg);
      const int64_t ntasks = ngroups * npg;
      std::atomic<int64_t> next{0};
      pool.run([&](int, int) {
        for (;;) {
          const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
          if (t >= ntasks) break;
          const int64_t g = t / npg, jg = t % npg;
          const int64_t n0 = g * gr, rows = std::min(gr, OC - n0);
          const int64_t j0 = jg * pg, j1 = std::min(npan, j0 + pg);
          const float* wr;
          if (in_place) {
            wr = reinterpret_cast<const float*>(static_cast<const char*>(wm.data) + (size_t)n0 * wm.row_bytes);
          } else {
            float* deq = t_conv_deq.get((size_t)(rows * K));
            dequantize_weight_rows(wm, n0, rows, 0, K, deq, K);
            wr = deq;
          }
          for (int64_t ch = 0; ch < nchunks; ++ch) {
            const int64_t cbeg = ch * kc, clen = std::min(kc, K - cbeg);
            for (int64_t i = 0; i < rows; i += MR) {
              const int r = (int)std::min<int64_t>(MR, rows - i);
              for (int64_t j = j0; j < j1; ++j) {
                const int64_t qa = q0 + j * NR;
                kernel(clen, wr + i * ldw + cbeg, ldw, Bp + j * panel_floats + cbeg * NR, yb + (n0 + i) * P + qa, P, r,
                       (int)std::min<int64_t>(NR, q0 + nq - qa), nullptr, ch > 0);
              }
            }
          }
          if (bias) {
            const int64_t qa = q0 + j0 * NR, qe = std::min(q0 + nq, q0 + j1 * NR);
            for (int64_t o = n0; o < n0 + rows; ++o) {
              float* yr = yb + o * P;
              const float bv = bias[o];
              for (int64_t q = qa; q < qe; ++q) yr[q] += bv;
            }
          }
        }
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
  if (algo == ConvAlgo::Auto && wino) wino = winograd_worthwhile(B, C, OC, OH, OW);
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
