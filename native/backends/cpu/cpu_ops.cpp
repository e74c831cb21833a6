// CPU backend: every operation except linear/conv2d/prepare_weight (those are in cpu_linear.cpp).
// Shape checks, broadcasting and threading live here; the arithmetic is in simd/ops_kernels.cpp and
// simd/attention_kernels.cpp (one copy per ISA, picked with SDN_DISPATCH at call time).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/simd/attention_kernels.h"
#include "backends/cpu/simd/ops_kernels.h"
#include "core/cpu.h"
#include "core/quant.h"
#include "core/threadpool.h"
#include "sdn/error.h"

namespace sdn {

Backend& cpu_backend() {
  static CpuBackend* backend = new CpuBackend();  // never destroyed: tensors may outlive static destruction
  return *backend;
}

std::shared_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_shared<CpuBackend>(options);
}

CpuBackend::CpuBackend(const BackendOptions& options) : pool_(std::make_shared<TensorPool>()) {
  if (options.threads > 0 && resolve_thread_count(options.threads) != default_threads())
    threads_ = std::make_unique<ThreadPool>(resolve_thread_count(options.threads));
}

CpuBackend::~CpuBackend() = default;

int CpuBackend::threads() const { return threads_ ? threads_->size() : default_threads(); }

DeviceInfo CpuBackend::device_info() const {
  DeviceInfo d;
  d.id = "cpu";
  d.backend = "cpu";
  d.name = cpu_features().brand.empty() ? std::string("CPU") : cpu_features().brand;
  d.vendor = cpu_features().vendor;
  d.type = "cpu";
  d.memory_bytes = physical_memory_bytes();
  d.fp16 = d.int8 = true;
  return d;
}

Tensor CpuBackend::empty(const std::vector<int64_t>& shape, DType dtype) {
  return Tensor::empty(shape, dtype, pool_.get());
}

Tensor CpuBackend::upload(const Tensor& host) {
  if (host.on_device())
    throw_error(ErrorCode::Internal, "cpu upload: " + host.shape_str() + " lives on " +
                                         std::string(host.device_backend()->name()) + ", not on the host");
  if (host.is_contiguous()) return host;
  Scope sc(*this);
  return host.contiguous();
}

Tensor CpuBackend::to_host(const Tensor& x) {
  if (x.on_device())
    throw_error(ErrorCode::Internal, "cpu to_host: " + x.shape_str() + " lives on " +
                                         std::string(x.device_backend()->name()));
  return x;
}

void CpuBackend::write(Tensor& dst, const Tensor& src) {
  if (dst.on_device() || src.on_device() || !dst.is_contiguous() || dst.dtype != src.dtype ||
      dst.numel() != src.numel())
    throw_error(ErrorCode::Internal, "cpu write: " + src.shape_str() + " into " + dst.shape_str());
  Scope sc(*this);
  Tensor s = src.is_contiguous() ? src : src.contiguous();
  if (dst.nbytes()) std::memcpy(dst.data, s.data, dst.nbytes());
}

void CpuBackend::trim() { pool_->trim(); }

MemoryStats CpuBackend::memory_stats() const {
  MemoryStats m;
  m.in_use = pool_->bytes_in_use();
  m.cached = pool_->bytes_cached();
  m.peak = pool_->peak_bytes_in_use();
  return m;
}

void CpuBackend::reset_peak() { pool_->reset_peak(); }

namespace {

constexpr int64_t kElemGrain = 16384;  // elements per parallel chunk for streaming ops

[[noreturn]] void bad(const std::string& op, const std::string& msg) {
  throw_error(ErrorCode::InvalidArgument, op + ": " + msg);
}

// F32 contiguous version of t (no copy when it already is).
Tensor f32c(const Tensor& t, const char* op, const char* what) {
  if (!t.defined() || (t.data == nullptr && t.numel() > 0)) bad(op, std::string(what) + " is undefined");
  if (t.dtype != DType::F32) return t.to_f32();
  if (!t.is_contiguous()) return t.contiguous();
  return t;
}

void check_param_vector(const Tensor* p, int64_t n, const char* op, const char* what) {
  if (p && p->numel() != n)
    bad(op, std::string(what) + " has " + std::to_string(p->numel()) + " elements, expected " + std::to_string(n));
}

void parallel(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  current_pool().parallel_for(n, grain < 1 ? 1 : grain, fn);
}

// Items per chunk so that one chunk covers about kElemGrain elements.
int64_t grain_for(int64_t elems_per_item) {
  return std::max<int64_t>(1, kElemGrain / std::max<int64_t>(1, elems_per_item));
}

// ---- broadcasting binary ops ----

// out = a op b (out may be a itself for the in-place form).
void binary_broadcast(int op, const Tensor& a, const Tensor& b, float* out, const char* name) {
  const int nd = a.ndim;
  if (b.ndim > nd) {
    for (int i = 0; i < b.ndim - nd; ++i)
      if (b.shape[i] != 1) bad(name, "cannot broadcast " + b.shape_str() + " onto " + a.shape_str());
  }
  // b's dims right-aligned onto a's
  int64_t as[kMaxDims], bs[kMaxDims];
  for (int i = 0; i < nd; ++i) {
    as[i] = a.shape[i];
    int bi = b.ndim - nd + i;
    bs[i] = bi >= 0 ? b.shape[bi] : 1;
    if (bs[i] != 1 && bs[i] != as[i]) bad(name, "cannot broadcast " + b.shape_str() + " onto " + a.shape_str());
  }
  const float* ap = a.f32();
  const float* bp = b.f32();
  const int64_t n = a.numel();
  if (n == 0) return;
  auto bin = SDN_DISPATCH(binary_f32);
  auto bin_s = SDN_DISPATCH(binary_scalar_f32);
  if (b.numel() == n) {
    parallel(n, kElemGrain, [&](int64_t s, int64_t e) { bin(op, ap + s, bp + s, out + s, e - s); });
    return;
  }
  if (b.numel() == 1) {
    float s0 = bp[0];
    parallel(n, kElemGrain, [&](int64_t s, int64_t e) { bin_s(op, ap + s, s0, out + s, e - s); });
    return;
  }
  // Drop dims of size 1 in a (b is 1 there too), then merge the innermost run.
  int64_t sa[kMaxDims], sb[kMaxDims];
  int m = 0;
  for (int i = 0; i < nd; ++i)
    if (as[i] != 1) {
      sa[m] = as[i];
      sb[m] = bs[i];
      ++m;
    }
  // contiguous strides of b over the squeezed dims (0 where broadcast)
  int64_t bstr[kMaxDims];
  {
    int64_t s = 1;
    for (int i = m - 1; i >= 0; --i) {
      bstr[i] = sb[i] == 1 ? 0 : s;
      s *= sb[i];
    }
  }
  bool vector_run = sb[m - 1] == sa[m - 1];
  int k = m - 1;
  int64_t inner = 1;
  while (k >= 0 && ((sb[k] == sa[k]) == vector_run)) {
    inner *= sa[k];
    --k;
  }
  const int nouter_dims = k + 1;
  const int64_t outer = n / inner;
  parallel(outer, grain_for(inner), [&](int64_t s, int64_t e) {
    for (int64_t o = s; o < e; ++o) {
      int64_t rem = o, boff = 0;
      for (int i = nouter_dims - 1; i >= 0; --i) {
        int64_t idx = rem % sa[i];
        rem /= sa[i];
        boff += idx * bstr[i];
      }
      if (vector_run)
        bin(op, ap + o * inner, bp + boff, out + o * inner, inner);
      else
        bin_s(op, ap + o * inner, bp[boff], out + o * inner, inner);
    }
  });
}

// [B, rows, cols] -> [B, cols, rows] in 128x64 tiles (128 source rows = 512 contiguous bytes per destination row),
// parallel over (batch, 128-row block).
void transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols) {
  constexpr int64_t T = 128;
  constexpr int64_t TC = 64;
  const int64_t rb = (rows + T - 1) / T;
  auto tr = SDN_DISPATCH(transpose_f32);
  parallel(batch * rb, grain_for(T * cols), [&](int64_t s, int64_t e) {
    for (int64_t it = s; it < e; ++it) {
      const int64_t bi = it / rb, r0 = (it % rb) * T;
      const int64_t nr = std::min(T, rows - r0);
      const float* sp = src + bi * rows * cols;
      float* dp = dst + bi * rows * cols;
      for (int64_t c0 = 0; c0 < cols; c0 += TC)
        tr(sp + r0 * cols + c0, cols, dp + c0 * rows + r0, rows, nr, std::min(TC, cols - c0));
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------------------

Tensor CpuBackend::group_norm(const Tensor& x_in, int groups, float eps, const Tensor* gamma_in,
                              const Tensor* beta_in, bool silu) {
  Scope sc(*this);
  const char* op = "group_norm";
  if (x_in.ndim < 2) bad(op, "expected [B, C, ...], got " + x_in.shape_str());
  const int64_t B = x_in.shape[0], C = x_in.shape[1];
  if (groups <= 0 || C % groups != 0)
    bad(op, "groups (" + std::to_string(groups) + ") must divide the channel count " + std::to_string(C));
  if (!(eps >= 0)) bad(op, "eps must be >= 0");
  check_param_vector(gamma_in, C, op, "gamma");
  check_param_vector(beta_in, C, op, "beta");
  Tensor x = f32c(x_in, op, "x");
  Tensor gamma, beta;
  if (gamma_in) gamma = f32c(*gamma_in, op, "gamma");
  if (beta_in) beta = f32c(*beta_in, op, "beta");
  const float* gp = gamma_in ? gamma.f32() : nullptr;
  const float* bp = beta_in ? beta.f32() : nullptr;
  Tensor y = Tensor::empty(x.sizes());
  const int64_t S = (B * C) != 0 ? x.numel() / (B * C) : 0;
  const int64_t cpg = C / groups, gsize = cpg * S;
  if (x.numel() == 0) return y;
  auto sum = SDN_DISPATCH(sum_f32);
  auto sqdev = SDN_DISPATCH(sqdev_f32);
  auto affine = SDN_DISPATCH(affine_f32);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(B * groups, grain_for(gsize), [&](int64_t s, int64_t e) {
    for (int64_t it = s; it < e; ++it) {
      const int64_t g = it % groups;
      const float* xg = xp + it * gsize;
      float* yg = yp + it * gsize;
      // two passes: mean, then mean of squared deviations (double accumulation of float blocks)
      double mean = sum(xg, gsize) / (double)gsize;
      double var = sqdev(xg, gsize, (float)mean) / (double)gsize;
      double rstd = 1.0 / std::sqrt(var + (double)eps);
      for (int64_t cc = 0; cc < cpg; ++cc) {
        int64_t c = g * cpg + cc;
        double a = rstd * (gp ? gp[c] : 1.0);
        affine(xg + cc * S, yg + cc * S, S, (float)mean, (float)a, bp ? bp[c] : 0.f, silu);
      }
    }
  });
  return y;
}

Tensor CpuBackend::layer_norm(const Tensor& x_in, float eps, const Tensor* gamma_in, const Tensor* beta_in) {
  Scope sc(*this);
  const char* op = "layer_norm";
  if (x_in.ndim < 1) bad(op, "expected at least one dimension");
  const int64_t C = x_in.dim(-1);
  check_param_vector(gamma_in, C, op, "gamma");
  check_param_vector(beta_in, C, op, "beta");
  if (!(eps >= 0)) bad(op, "eps must be >= 0");
  Tensor x = f32c(x_in, op, "x");
  Tensor gamma, beta;
  if (gamma_in) gamma = f32c(*gamma_in, op, "gamma");
  if (beta_in) beta = f32c(*beta_in, op, "beta");
  const float* gp = gamma_in ? gamma.f32() : nullptr;
  const float* bp = beta_in ? beta.f32() : nullptr;
  Tensor y = Tensor::empty(x.sizes());
  if (x.numel() == 0 || C == 0) return y;
  const int64_t rows = x.numel() / C;
  auto sum = SDN_DISPATCH(sum_f32);
  auto sqdev = SDN_DISPATCH(sqdev_f32);
  auto norm = SDN_DISPATCH(normalize_f32);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(rows, grain_for(C), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const float* xr = xp + r * C;
      double mean = sum(xr, C) / (double)C;
      double var = sqdev(xr, C, (float)mean) / (double)C;
      norm(xr, yp + r * C, C, (float)mean, (float)(1.0 / std::sqrt(var + (double)eps)), gp, bp);
    }
  });
  return y;
}

Tensor CpuBackend::softmax(const Tensor& x_in) {
  Scope sc(*this);
  if (x_in.ndim < 1) bad("softmax", "expected at least one dimension");
  Tensor x = f32c(x_in, "softmax", "x");
  Tensor y = Tensor::empty(x.sizes());
  const int64_t C = x.dim(-1);
  if (x.numel() == 0 || C == 0) return y;
  const int64_t rows = x.numel() / C;
  auto sm = SDN_DISPATCH(softmax_row_f32);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(rows, grain_for(C), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) sm(xp + r * C, yp + r * C, C);
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------------------

Tensor CpuBackend::attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int heads, bool causal) {
  Scope sc(*this);
  const char* op = "attention";
  if (q_in.ndim != 3 || k_in.ndim != 3 || v_in.ndim != 3)
    bad(op, "expected q [B, Tq, H*D], k/v [B, Tk, H*D]; got " + q_in.shape_str() + ", " + k_in.shape_str() + ", " +
                v_in.shape_str());
  const int64_t B = q_in.shape[0], Tq = q_in.shape[1], HD = q_in.shape[2];
  const int64_t Tk = k_in.shape[1];
  if (k_in.shape[0] != B || v_in.shape[0] != B || v_in.shape[1] != Tk || k_in.shape[2] != HD ||
      v_in.shape[2] != HD)
    bad(op, "shapes do not match: q " + q_in.shape_str() + ", k " + k_in.shape_str() + ", v " + v_in.shape_str());
  if (heads <= 0 || HD % heads != 0)
    bad(op, "heads (" + std::to_string(heads) + ") must divide the feature size " + std::to_string(HD));
  if (Tk == 0 && Tq > 0) bad(op, "no keys (Tk = 0)");
  // Row-strided F32 views (e.g. slices of a fused QKV projection) are used in place; anything else is copied.
  auto rows_view = [&](const Tensor& t, const char* what) {
    if (t.dtype == DType::F32 && t.data && (t.stride[2] == 1 || t.shape[2] == 1)) return t;
    return f32c(t, op, what);
  };
  Tensor q = rows_view(q_in, "q"), k = rows_view(k_in, "k"), v = rows_view(v_in, "v");
  Tensor out = Tensor::empty({B, Tq, HD});
  if (out.numel() == 0) return out;
  const int D = (int)(HD / heads);
  auto rows_fn = SDN_DISPATCH(attn_rows_per_block);
  auto scratch_fn = SDN_DISPATCH(attn_scratch_floats);
  auto block_fn = SDN_DISPATCH(attn_block);
  const int64_t rb = rows_fn(D);
  const int64_t nblocks = (Tq + rb - 1) / rb;
  const int64_t items = B * heads * nblocks;
  const size_t per_thread = (scratch_fn(D) + 15) / 16 * 16;
  ThreadPool& pool = current_pool();
  const int nt = (int)std::min<int64_t>(pool.size(), items);
  Tensor scratch = Tensor::empty({(int64_t)(per_thread * (size_t)nt)});
  const float scale = (float)(1.0 / std::sqrt((double)D));
  std::atomic<int64_t> next{0};
  pool.run([&](int tid, int) {
    if (tid >= nt) return;
    float* sc = scratch.f32() + per_thread * (size_t)tid;
    for (;;) {
      int64_t it = next.fetch_add(1, std::memory_order_relaxed);
      if (it >= items) break;
      int64_t blk = it % nblocks, bh = it / nblocks;
      int64_t h = bh % heads, bi = bh / heads;
      cpu::AttnArgs a;
      a.q = q.f32() + bi * q.stride[0] + h * D;
      a.k = k.f32() + bi * k.stride[0] + h * D;
      a.v = v.f32() + bi * v.stride[0] + h * D;
      a.o = out.f32() + bi * Tq * HD + h * D;
      a.q_stride = q.stride[1];
      a.k_stride = k.stride[1];
      a.v_stride = v.stride[1];
      a.o_stride = HD;
      a.tq = Tq;
      a.tk = Tk;
      a.d = D;
      a.scale = scale;
      a.causal = causal;
      int64_t i0 = blk * rb, i1 = std::min(Tq, i0 + rb);
      block_fn(a, i0, i1, sc);
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Activations and elementwise
// ---------------------------------------------------------------------------------------------------------

Tensor CpuBackend::unary(UnaryOp uop, const Tensor& x_in) {
  Scope sc(*this);
  int op = (int)uop;
  if (op < 0 || op > (int)UnaryOp::Tanh) bad("unary", "unknown operation " + std::to_string(op));
  Tensor x = f32c(x_in, "unary", "x");
  Tensor y = Tensor::empty(x.sizes());
  if (uop == UnaryOp::Relu || uop == UnaryOp::Tanh) {
    const float* xp = x.f32();
    float* yp = y.f32();
    const bool relu = uop == UnaryOp::Relu;
    parallel(x.numel(), kElemGrain / 4, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) yp[i] = relu ? (xp[i] > 0.f ? xp[i] : 0.f) : std::tanh(xp[i]);
    });
    return y;
  }
  auto fn = SDN_DISPATCH(unary_f32);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(x.numel(), kElemGrain / 4, [&](int64_t s, int64_t e) { fn(op, xp + s, yp + s, e - s); });
  return y;
}

Tensor CpuBackend::geglu(const Tensor& x_in) {
  Scope sc(*this);
  if (x_in.ndim < 1 || x_in.dim(-1) % 2 != 0)
    bad("geglu", "last dimension must be even, got " + x_in.shape_str());
  Tensor x = f32c(x_in, "geglu", "x");
  const int64_t N2 = x.dim(-1), N = N2 / 2;
  std::vector<int64_t> oshape = x.sizes();
  oshape.back() = N;
  Tensor y = Tensor::empty(oshape);
  if (y.numel() == 0) return y;
  const int64_t rows = x.numel() / N2;
  auto fn = SDN_DISPATCH(geglu_f32);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(rows, grain_for(N * 4), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) fn(xp + r * N2, xp + r * N2 + N, yp + r * N, N);
  });
  return y;
}

Tensor CpuBackend::add(const Tensor& a_in, const Tensor& b_in) {
  Scope sc(*this);
  Tensor a = f32c(a_in, "add", "a"), b = f32c(b_in, "add", "b");
  Tensor y = Tensor::empty(a.sizes());
  binary_broadcast(cpu::kBinAdd, a, b, y.f32(), "add");
  return y;
}

Tensor CpuBackend::mul(const Tensor& a_in, const Tensor& b_in) {
  Scope sc(*this);
  Tensor a = f32c(a_in, "mul", "a"), b = f32c(b_in, "mul", "b");
  Tensor y = Tensor::empty(a.sizes());
  binary_broadcast(cpu::kBinMul, a, b, y.f32(), "mul");
  return y;
}

void CpuBackend::add_(Tensor& a, const Tensor& b_in) {
  Scope sc(*this);
  if (a.dtype != DType::F32 || !a.is_contiguous() || (a.data == nullptr && a.numel() > 0))
    bad("add_", "the destination must be a contiguous F32 tensor, got " + a.shape_str());
  Tensor b = f32c(b_in, "add_", "b");
  binary_broadcast(cpu::kBinAdd, a, b, a.f32(), "add_");
}

Tensor CpuBackend::scale(const Tensor& x_in, float s) {
  Scope sc(*this);
  Tensor x = f32c(x_in, "scale", "x");
  Tensor y = Tensor::empty(x.sizes());
  auto fn = SDN_DISPATCH(binary_scalar_f32);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(x.numel(), kElemGrain, [&](int64_t b, int64_t e) { fn(cpu::kBinMul, xp + b, s, yp + b, e - b); });
  return y;
}

Tensor CpuBackend::combine(const Tensor& a_in, float wa, const Tensor& b_in, float wb) {
  Scope sc(*this);
  if (a_in.sizes() != b_in.sizes()) bad("combine", "shapes differ: " + a_in.shape_str() + " and " + b_in.shape_str());
  Tensor a = f32c(a_in, "combine", "a"), b = f32c(b_in, "combine", "b");
  Tensor y = Tensor::empty(a.sizes());
  const float* ap = a.f32();
  const float* bp = b.f32();
  float* yp = y.f32();
  parallel(a.numel(), kElemGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) yp[i] = wa * ap[i] + wb * bp[i];
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------------------

Tensor CpuBackend::pad(const Tensor& x_in, int left, int right, int top, int bottom) {
  Scope sc(*this);
  if (x_in.ndim != 4) bad("pad", "expected [B, C, H, W], got " + x_in.shape_str());
  if (left < 0 || right < 0 || top < 0 || bottom < 0) bad("pad", "padding must not be negative");
  Tensor x = f32c(x_in, "pad", "x");
  const int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t OH = H + top + bottom, OW = W + left + right;
  Tensor y = Tensor::zeros({B, C, OH, OW});
  if (x.numel() == 0) return y;
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(B * C, grain_for(OH * OW), [&](int64_t s, int64_t e) {
    for (int64_t p = s; p < e; ++p)
      for (int64_t r = 0; r < H; ++r)
        std::memcpy(yp + (p * OH + r + top) * OW + left, xp + (p * H + r) * W, (size_t)W * sizeof(float));
  });
  return y;
}

Tensor CpuBackend::get_rows(const Tensor& table, const std::vector<int32_t>& ids) {
  Scope sc(*this);
  if (table.ndim != 2) bad("get_rows", "the table must be [V, D], got " + table.shape_str());
  if (table.on_device()) bad("get_rows", "the table lives on another device");
  const int64_t V = table.shape[0], D = table.shape[1];
  for (int32_t id : ids)
    if (id < 0 || id >= V) bad("get_rows", "id " + std::to_string(id) + " is outside [0, " + std::to_string(V) + ")");
  Tensor t = table.is_contiguous() ? table : table.contiguous();
  Tensor y = Tensor::empty({(int64_t)ids.size(), D});
  const size_t row_bytes = dtype_row_bytes(t.dtype, D);
  for (size_t i = 0; i < ids.size(); ++i)
    dequantize_row(t.dtype, static_cast<const char*>(t.data) + row_bytes * (size_t)ids[i], y.f32() + (int64_t)i * D, D);
  return y;
}

Tensor CpuBackend::concat(const Tensor& a_in, const Tensor& b_in, int dim) {
  Scope sc(*this);
  const char* op = "concat";
  if (a_in.ndim != b_in.ndim || a_in.ndim == 0)
    bad(op, "ranks differ: " + a_in.shape_str() + " and " + b_in.shape_str());
  const int nd = a_in.ndim;
  if (dim < 0) dim += nd;
  if (dim < 0 || dim >= nd) bad(op, "dimension out of range for " + a_in.shape_str());
  for (int i = 0; i < nd; ++i)
    if (i != dim && a_in.shape[i] != b_in.shape[i])
      bad(op, "shapes differ outside dimension " + std::to_string(dim) + ": " + a_in.shape_str() + " and " +
                  b_in.shape_str());
  Tensor a = f32c(a_in, op, "a"), b = f32c(b_in, op, "b");
  std::vector<int64_t> oshape = a.sizes();
  oshape[dim] += b.shape[dim];
  Tensor y = Tensor::empty(oshape);
  int64_t outer = 1;
  for (int i = 0; i < dim; ++i) outer *= a.shape[i];
  int64_t ia = 1, ib = 1;
  for (int i = dim; i < nd; ++i) {
    ia *= a.shape[i];
    ib *= b.shape[i];
  }
  const float* ap = a.f32();
  const float* bp = b.f32();
  float* yp = y.f32();
  if (y.numel() == 0) return y;
  parallel(outer, grain_for(ia + ib), [&](int64_t s, int64_t e) {
    for (int64_t o = s; o < e; ++o) {
      float* dst = yp + o * (ia + ib);
      if (ia) std::memcpy(dst, ap + o * ia, (size_t)ia * sizeof(float));
      if (ib) std::memcpy(dst + ia, bp + o * ib, (size_t)ib * sizeof(float));
    }
  });
  return y;
}

Tensor CpuBackend::upsample_nearest2x(const Tensor& x_in) {
  Scope sc(*this);
  if (x_in.ndim != 4) bad("upsample_nearest2x", "expected [B, C, H, W], got " + x_in.shape_str());
  Tensor x = f32c(x_in, "upsample_nearest2x", "x");
  const int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  Tensor y = Tensor::empty({B, C, 2 * H, 2 * W});
  if (y.numel() == 0) return y;
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel(B * C * H, grain_for(4 * W), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {  // r = plane * H + row
      const float* src = xp + r * W;
      float* d0 = yp + r * 4 * W;  // output rows 2*row and 2*row+1 of the plane are adjacent
      for (int64_t c = 0; c < W; ++c) d0[2 * c] = d0[2 * c + 1] = src[c];
      std::memcpy(d0 + 2 * W, d0, (size_t)(2 * W) * sizeof(float));
    }
  });
  return y;
}

Tensor CpuBackend::nchw_to_nlc(const Tensor& x_in) {
  Scope sc(*this);
  if (x_in.ndim != 4 && x_in.ndim != 3) bad("nchw_to_nlc", "expected [B, C, H, W], got " + x_in.shape_str());
  Tensor x = f32c(x_in, "nchw_to_nlc", "x");
  const int64_t B = x.shape[0], C = x.shape[1];
  const int64_t L = (B * C) != 0 ? x.numel() / (B * C) : 0;
  Tensor y = Tensor::empty({B, L, C});
  if (y.numel() == 0) return y;
  transpose_batched(x.f32(), y.f32(), B, C, L);
  return y;
}

Tensor CpuBackend::nlc_to_nchw(const Tensor& x_in, int64_t h, int64_t w) {
  Scope sc(*this);
  if (x_in.ndim != 3 || h < 0 || w < 0 || x_in.shape[1] != h * w)
    bad("nlc_to_nchw", "expected [B, " + std::to_string(h) + "*" + std::to_string(w) + ", C], got " +
                           x_in.shape_str());
  Tensor x = f32c(x_in, "nlc_to_nchw", "x");
  const int64_t B = x.shape[0], L = x.shape[1], C = x.shape[2];
  Tensor y = Tensor::empty({B, C, h, w});
  if (y.numel() == 0) return y;
  transpose_batched(x.f32(), y.f32(), B, L, C);
  return y;
}

Tensor CpuBackend::timestep_embedding(const std::vector<float>& t, int dim, float max_period) {
  Scope sc(*this);
  if (dim <= 0) bad("timestep_embedding", "dim must be positive");
  if (!(max_period > 0)) bad("timestep_embedding", "max_period must be positive");
  const int64_t B = (int64_t)t.size();
  Tensor y = Tensor::zeros({B, (int64_t)dim});
  const int half = dim / 2;
  // float32 arithmetic in the same order as the reference implementations: f_j = exp(-ln(P) * j / half).
  std::vector<float> freqs((size_t)half);
  const float neg_log = (float)-std::log((double)max_period);
  for (int j = 0; j < half; ++j) freqs[(size_t)j] = std::exp(neg_log * (float)j / (float)half);
  float* yp = y.f32();
  for (int64_t b = 0; b < B; ++b) {
    float* row = yp + b * dim;
    for (int j = 0; j < half; ++j) {
      float arg = t[(size_t)b] * freqs[(size_t)j];
      row[j] = std::cos(arg);
      row[half + j] = std::sin(arg);
    }
  }
  return y;
}

}  // namespace sdn
