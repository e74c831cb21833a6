// CPU implementation of the Backend interface. Ops are split over files:
//   cpu_linear.cpp  linear, conv2d, prepare_weight (GEMM + convolution kernels)
//   cpu_ops.cpp     norms, softmax, attention, activations, elementwise, layout ops, timestep embedding
// SIMD kernels live in simd/ (compiled once per ISA) and are picked at run time via core/cpu.h.
#pragma once
#include "backends/backend.h"

namespace sdn {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  Tensor prepare_weight(const Tensor& w) override;
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* b) override;
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad) override;
  Tensor group_norm(const Tensor& x, int groups, float eps, const Tensor* gamma, const Tensor* beta,
                    bool silu) override;
  Tensor layer_norm(const Tensor& x, float eps, const Tensor* gamma, const Tensor* beta) override;
  Tensor softmax(const Tensor& x) override;
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) override;
  Tensor unary(UnaryOp op, const Tensor& x) override;
  Tensor geglu(const Tensor& x) override;
  Tensor add(const Tensor& a, const Tensor& b) override;
  Tensor mul(const Tensor& a, const Tensor& b) override;
  void add_(Tensor& a, const Tensor& b) override;
  Tensor scale(const Tensor& x, float s) override;
  Tensor concat(const Tensor& a, const Tensor& b, int dim) override;
  Tensor upsample_nearest2x(const Tensor& x) override;
  Tensor nchw_to_nlc(const Tensor& x) override;
  Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) override;
  Tensor timestep_embedding(const std::vector<float>& t, int dim, float max_period) override;
  Tensor to_host(const Tensor& x) override { return x; }
  Tensor from_host(const Tensor& x) override { return x; }
};

}  // namespace sdn
