// CPU implementation of the Backend interface. Ops are split over files:
//   cpu_linear.cpp  linear, conv2d, prepare_weight (GEMM + convolution kernels)
//   cpu_ops.cpp     norms, softmax, attention, activations, elementwise, layout ops, timestep embedding, get_rows
// SIMD kernels live in simd/ (compiled once per ISA) and are picked at run time via core/cpu.h.
//
// Each instance owns its host pool and (when given a thread count other than the process default) its thread
// pool; every operation makes them current for the calling thread (HostPoolScope / ThreadPoolScope), so kernels
// allocate from and parallelise over the instance's own resources.
#pragma once
#include <memory>

#include "backends/backend.h"
#include "core/threadpool.h"

namespace sdn {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options = {});
  ~CpuBackend() override;
  const char* name() const override { return "cpu"; }
  DeviceInfo device_info() const override;
  bool is_host() const override { return true; }
  bool supports(Op, DType) const override { return true; }

  Tensor empty(const std::vector<int64_t>& shape, DType dtype) override;
  Tensor upload(const Tensor& host) override;
  Tensor to_host(const Tensor& x) override;
  void write(Tensor& dst, const Tensor& src) override;
  void trim() override;
  MemoryStats memory_stats() const override;
  void reset_peak() override;
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
  Tensor combine(const Tensor& a, float wa, const Tensor& b, float wb) override;
  Tensor concat(const Tensor& a, const Tensor& b, int dim) override;
  Tensor upsample_nearest2x(const Tensor& x) override;
  Tensor nchw_to_nlc(const Tensor& x) override;
  Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) override;
  Tensor pad(const Tensor& x, int left, int right, int top, int bottom) override;
  Tensor timestep_embedding(const std::vector<float>& t, int dim, float max_period) override;
  Tensor get_rows(const Tensor& table, const std::vector<int32_t>& ids) override;

  int threads() const;

 private:
  // Makes this instance's pools current on the calling thread for one operation.
  struct Scope {
    explicit Scope(const CpuBackend& b) : host(b.pool_.get()), threads(b.threads_ ? b.threads_.get() : nullptr) {}
    HostPoolScope host;
    ThreadPoolScope threads;
  };
  std::shared_ptr<TensorPool> pool_;
  std::unique_ptr<ThreadPool> threads_;  // null: the process-wide default pool
};

}  // namespace sdn
