// The operator interface that models are written against, and the registry of backends.
//
// A model (CLIP, U-Net, VAE, ...) calls these operations and never touches kernels, host memory or a host pool
// directly, so a GPU backend (Vulkan, CUDA, Metal) that implements this interface runs the same model code.
//
// The contract every backend follows:
//  * Tensors live where the backend put them: a host backend (CPU) returns host tensors, a device backend returns
//    tensors whose `buffer` is one of its DeviceBuffers (core/tensor.h). Inputs given to an operation must live on
//    that backend (device tensors of this backend, or host tensors for a host backend); weights are made resident
//    once by prepare_weight() (under BackendOptions::vram_budget a device backend may instead keep a weight in host
//    memory and stream it to the device when an operation uses it; it is still a device tensor of that backend).
//  * Operations are enqueued in order on the backend's queue and may run asynchronously. to_host() and
//    synchronize() are the only synchronisation points; upload() copies host data in.
//  * Each backend owns its memory pools (empty(), trim(), memory_stats()) and, for the CPU, its thread pool: two
//    models on two backends (or two CPU backends with different thread counts) run at the same time.
//  * supports(op, weight type) says whether the backend implements an operation; the CPU fallback wrapper
//    (with_cpu_fallback) runs what a device lacks on the CPU, counting each fallback (SDN_DEBUG=1 prints them).
//  * Errors are sdn::Error: InvalidArgument for bad shapes, OutOfMemory (with what to do) when memory runs out.
//
// Layout conventions (see core/tensor.h): activations F32 and contiguous; images/feature maps [N, C, H, W];
// token sequences [N, T, C]. Weights may be any weight DType. Bias/affine vectors are F32 (or any weight type:
// backends convert 1-D parameters to F32 in prepare_weight()).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "sdn/sdn.h"  // DeviceInfo

namespace sdn {

// Every operation of the interface, declared once (name used in supports(), fallback counts and test reports).
#define SDN_BACKEND_OPS(X)                                                                                   \
  X(Linear, "linear") X(Conv2d, "conv2d") X(GroupNorm, "group_norm") X(LayerNorm, "layer_norm")            \
  X(Softmax, "softmax") X(Attention, "attention") X(Unary, "unary") X(Geglu, "geglu") X(Add, "add")        \
  X(Mul, "mul") X(AddInplace, "add_") X(Scale, "scale") X(Combine, "combine") X(Concat, "concat")          \
  X(Upsample2x, "upsample_nearest2x") X(NchwToNlc, "nchw_to_nlc") X(NlcToNchw, "nlc_to_nchw")              \
  X(TimestepEmbedding, "timestep_embedding") X(GetRows, "get_rows") X(Pad, "pad")

enum class Op : int {
#define SDN_OP_ENUM(id, name) id,
  SDN_BACKEND_OPS(SDN_OP_ENUM)
#undef SDN_OP_ENUM
      Count
};
constexpr int kOpCount = static_cast<int>(Op::Count);
const char* op_name(Op op);

enum class UnaryOp {
  Silu,       // x * sigmoid(x)
  GeluErf,    // 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  QuickGelu,  // x * sigmoid(1.702 x)
  Relu,       // max(x, 0)
  Tanh,       // tanh(x)
};

struct MemoryStats {
  uint64_t in_use = 0;       // bytes of live activations
  uint64_t cached = 0;       // bytes held by the pool for reuse
  uint64_t peak = 0;         // peak of in_use since the last reset_peak()
  uint64_t weights = 0;      // device memory holding weights (device backends): resident weights + stream_area
  uint64_t peak_weights = 0; // peak of `weights` over the backend's life
  // Weight streaming (a device backend under BackendOptions::vram_budget; zero otherwise):
  uint64_t stream_area = 0;    // bytes of the device-side streaming area (part of `weights`)
  uint64_t host_weights = 0;   // bytes of weights kept in host memory and streamed to the device when used
  uint64_t streamed = 0;       // bytes copied into the streaming area so far (cumulative)
  uint64_t stream_copies = 0;  // copies into the streaming area so far (cumulative) ...
  uint64_t prefetched = 0;     // ... of which were prefetches (recorded one operation ahead of their use)
};

// Options a backend is created with (one instance per loaded model).
struct BackendOptions {
  int threads = 0;           // CPU threads for this instance (<= 0: the process default, physical cores)
  uint64_t vram_budget = 0;  // device memory the weights may use (0 = no limit), streaming area included: weights
                             // beyond it stay in host memory and are streamed to the device when used (a weight
                             // too large for the streaming area is refused: the CPU fallback runs its ops)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;  // "cpu", "vulkan", ...
  virtual DeviceInfo device_info() const = 0;
  // Whether tensors of this backend are host tensors (then to_host/upload are no-ops).
  virtual bool is_host() const { return false; }
  // Whether `op` is implemented; `weight` is the weight type for Linear/Conv2d/GetRows (F32 otherwise).
  virtual bool supports(Op op, DType weight) const = 0;

  // ---- memory ----
  // Uninitialised contiguous tensor on this backend.
  virtual Tensor empty(const std::vector<int64_t>& shape, DType dtype = DType::F32) = 0;
  // Copy of a host tensor on this backend (contiguous). Host backends may return the tensor itself.
  virtual Tensor upload(const Tensor& host) = 0;
  // Host copy of a tensor of this backend (waits for the work that produces it). Host backends return it as is.
  virtual Tensor to_host(const Tensor& x) = 0;
  // Overwrites `dst` (a contiguous tensor of this backend) with the host tensor `src` of the same shape and dtype.
  virtual void write(Tensor& dst, const Tensor& src) = 0;
  // Waits until every operation enqueued so far has finished.
  virtual void synchronize() {}
  // Returns cached pool memory to the system (between stages whose activation sizes differ).
  virtual void trim() = 0;
  virtual MemoryStats memory_stats() const = 0;
  virtual void reset_peak() {}
  // Makes a weight usable by this backend (upload to device memory, repack for the GEMM kernels, convert 1-D
  // F16/quantized parameters to F32). Called once per weight; the result is cached by the WeightStore.
  virtual Tensor prepare_weight(const Tensor& w) = 0;

  // ---- operations ----
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
  // wa * a + wb * b, a and b of the same shape (CFG mixing and sampler arithmetic on the device).
  virtual Tensor combine(const Tensor& a, float wa, const Tensor& b, float wb) = 0;

  // Concatenates along dimension 0 (batch) or 1 (channels of [B, C, H, W], or tokens of [B, T, C]).
  virtual Tensor concat(const Tensor& a, const Tensor& b, int dim) = 0;
  // Nearest-neighbour 2x upsampling of [B, C, H, W].
  virtual Tensor upsample_nearest2x(const Tensor& x) = 0;
  // [B, C, H, W] -> [B, H*W, C] and back.
  virtual Tensor nchw_to_nlc(const Tensor& x) = 0;
  virtual Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) = 0;
  // Zero padding of [B, C, H, W]: `left`/`right` columns and `top`/`bottom` rows (each >= 0).
  virtual Tensor pad(const Tensor& x, int left, int right, int top, int bottom) = 0;

  // Sinusoidal timestep embedding: t [B] -> [B, dim]: [cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})],
  // f_j = exp(-ln(max_period) j / h), h = dim/2 (a zero appended if dim is odd).
  virtual Tensor timestep_embedding(const std::vector<float>& t, int dim, float max_period) = 0;
  // Embedding lookup: rows ids[i] of table [V, D] (any weight type, as prepared) -> F32 [n, D].
  // Every id must be in [0, V) (InvalidArgument otherwise).
  virtual Tensor get_rows(const Tensor& table, const std::vector<int32_t>& ids) = 0;

  // ---- diagnostics ----
  // Operations run on the CPU instead (the CPU fallback wrapper); empty for other backends.
  virtual std::vector<std::pair<Op, int64_t>> fallback_counts() const { return {}; }
};

// ---------------------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------------------

// One per compiled-in backend kind.
class BackendFactory {
 public:
  virtual ~BackendFactory() = default;
  virtual const char* name() const = 0;  // "cpu", "vulkan", ...
  // Devices this backend sees (cheap to call again: results may be cached). A backend whose runtime is missing
  // returns no devices and says why in unavailable_reason().
  virtual std::vector<DeviceInfo> devices() = 0;
  virtual std::string unavailable_reason() { return ""; }
  // A new instance on device `index` (throws sdn::Error Unsupported/OutOfMemory/... naming the device).
  virtual std::shared_ptr<Backend> create(int index, const BackendOptions& options) = 0;
};

// Compiled-in backends, CPU first.
const std::vector<BackendFactory*>& backend_factories();
BackendFactory* find_backend_factory(const std::string& name);
// Every device of every compiled-in backend (the CPU first).
std::vector<DeviceInfo> list_devices();

struct BackendChoice {
  std::shared_ptr<Backend> backend;  // device backends come wrapped with the CPU fallback
  std::shared_ptr<Backend> cpu;      // a CPU backend for components placed on the CPU (set by the caller; may be null)
  std::string device;                // "vulkan:0" / "cpu"
  std::string description;           // "vulkan:0 NVIDIA H200, 139 GiB" or "cpu: no Vulkan loader found"
};
// Creates a backend for `spec`: "cpu", "vulkan", "vulkan:N", or "auto" (the best usable GPU, else the CPU, with
// the reason in description). An explicit device that is missing or unusable throws Unsupported naming the
// device and what to use instead.
BackendChoice create_backend(const std::string& spec, const BackendOptions& options);

// A CPU backend instance with its own pools (threads as in options).
std::shared_ptr<Backend> make_cpu_backend(const BackendOptions& options = {});
// Wraps a device backend so that operations it does not support (or whose weights it could not take) run on
// `cpu`, moving tensors across; fallbacks are counted (fallback_counts(); SDN_DEBUG=1 prints each kind once).
std::shared_ptr<Backend> with_cpu_fallback(std::shared_ptr<Backend> device, std::shared_ptr<Backend> cpu);

// The process-wide shared CPU backend (default threads). Tests and tools use it; models get their own instance.
Backend& cpu_backend();

}  // namespace sdn
