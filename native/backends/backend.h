// The operator interface that models are written against. A model (CLIP, U-Net, VAE) calls these operations
// and never touches kernels directly, so a GPU backend (Vulkan, CUDA, Metal) that implements this interface runs
// the same model code. Execution is eager: each call computes and returns a new tensor (allocated from the
// backend's pool, so no malloc per operation once warm).
//
// Layout conventions (see core/tensor.h): activations F32 and contiguous; images/feature maps [N, C, H, W];
// token sequences [N, T, C]. Weights may be any weight DType. Bias/affine vectors are F32 (or any weight type:
// backends convert 1-D parameters to F32 on prepare_weight()).
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sdn {

enum class UnaryOp {
  Silu,       // x * sigmoid(x)
  GeluErf,    // 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  QuickGelu,  // x * sigmoid(1.702 x)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // Makes a weight usable by this backend (upload to device memory, repack for the GEMM kernels, convert 1-D
  // F16/quantized parameters to F32). Called once per weight at model load; the result is cached by the model.
  virtual Tensor prepare_weight(const Tensor& w) = 0;

  // y[..., N] = x[..., K] @ w[N, K]^T (+ b[N]). x F32 with any leading dims; w any weight type.
  virtual Tensor linear(const Tensor& x, const Tensor& w, const Tensor* b) = 0;
  // 2-D convolution, zero padding. x [B, C, H, W]; w [OC, C, KH, KW] (any weight type; rows of C*KH*KW
  // elements); b [OC] or null. KH, KW in {1, 3}; stride in {1, 2}; pad in {0, 1}.
  virtual Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad) = 0;

  // GroupNorm over [B, C, H, W] (or [B, C, L]), per-channel affine (gamma/beta may be null), optional fused SiLU.
  virtual Tensor group_norm(const Tensor& x, int groups, float eps, const Tensor* gamma, const Tensor* beta,
                            bool silu) = 0;
  // LayerNorm over the last dimension.
  virtual Tensor layer_norm(const Tensor& x, float eps, const Tensor* gamma, const Tensor* beta) = 0;
  // Softmax over the last dimension.
  virtual Tensor softmax(const Tensor& x) = 0;

  // Multi-head scaled dot-product attention, never materialising the full score matrix.
  // q [B, Tq, H*D], k and v [B, Tk, H*D] -> [B, Tq, H*D]; head h uses features [h*D, (h+1)*D);
  // scale = 1/sqrt(D); causal: query i attends keys j <= i only.
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) = 0;

  virtual Tensor unary(UnaryOp op, const Tensor& x) = 0;
  // x [..., 2N] -> x[..., :N] * gelu_erf(x[..., N:])  (GEGLU with exact GELU)
  virtual Tensor geglu(const Tensor& x) = 0;

  // Elementwise with broadcasting (NumPy rules, right-aligned; b's dims must be 1 or equal to a's):
  virtual Tensor add(const Tensor& a, const Tensor& b) = 0;
  virtual Tensor mul(const Tensor& a, const Tensor& b) = 0;
  // a += b in place (same broadcasting); a must be contiguous and own its data.
  virtual void add_(Tensor& a, const Tensor& b) = 0;
  virtual Tensor scale(const Tensor& x, float s) = 0;

  // Concatenates along dimension 1 (channels of [B, C, H, W], or tokens of [B, T, C]).
  virtual Tensor concat(const Tensor& a, const Tensor& b, int dim) = 0;
  // Nearest-neighbour 2x upsampling of [B, C, H, W].
  virtual Tensor upsample_nearest2x(const Tensor& x) = 0;
  // [B, C, H, W] -> [B, H*W, C] and back.
  virtual Tensor nchw_to_nlc(const Tensor& x) = 0;
  virtual Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) = 0;

  // Sinusoidal timestep embedding: t [B] -> [B, dim]: [cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})],
  // f_j = exp(-ln(max_period) j / h), h = dim/2 (a zero appended if dim is odd).
  virtual Tensor timestep_embedding(const std::vector<float>& t, int dim, float max_period) = 0;

  // Host access: for the CPU backend these are the same tensors.
  virtual Tensor to_host(const Tensor& x) = 0;
  virtual Tensor from_host(const Tensor& x) = 0;
};

// The CPU backend (native/backends/cpu).
Backend& cpu_backend();

}  // namespace sdn
