// The backend registry (which backends are compiled in, their devices, choosing one for a model) and the CPU
// fallback wrapper that lets a device backend run a model even where it lacks an operation or a weight type.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "sdn/error.h"

namespace sdn {

#if SDN_WITH_VULKAN
BackendFactory* vulkan_backend_factory();  // backends/vulkan
#endif

const char* op_name(Op op) {
  static const char* const names[] = {
#define SDN_OP_NAME(id, name) name,
      SDN_BACKEND_OPS(SDN_OP_NAME)
#undef SDN_OP_NAME
  };
  int i = static_cast<int>(op);
  return i >= 0 && i < kOpCount ? names[i] : "unknown";
}

namespace {

class CpuFactory final : public BackendFactory {
 public:
  const char* name() const override { return "cpu"; }
  std::vector<DeviceInfo> devices() override { return {cpu_backend().device_info()}; }
  std::shared_ptr<Backend> create(int index, const BackendOptions& options) override {
    if (index != 0) throw_error(ErrorCode::InvalidArgument, "there is one CPU device (cpu), not cpu:" + std::to_string(index));
    return make_cpu_backend(options);
  }
};

bool debug_enabled() {
  static const bool on = [] {
    const char* d = std::getenv("SDN_DEBUG");
    return d && *d && *d != '0';
  }();
  return on;
}

// ---------------------------------------------------------------------------------------------------------
// CPU fallback: every operation goes to the device backend when it supports the operation (for the weight's type)
// and the weight is resident there; otherwise inputs are copied to the host, the CPU backend computes, and the
// result is uploaded back. Weights the device cannot take (prepare_weight says Unsupported, or supports() is false
// for their type in both linear and conv2d) stay prepared for the CPU.
// ---------------------------------------------------------------------------------------------------------
class FallbackBackend final : public Backend {
 public:
  FallbackBackend(std::shared_ptr<Backend> dev, std::shared_ptr<Backend> cpu) : d_(std::move(dev)), c_(std::move(cpu)) {
    for (auto& n : counts_) n = 0;
  }
  const char* name() const override { return d_->name(); }
  DeviceInfo device_info() const override { return d_->device_info(); }
  bool supports(Op op, DType w) const override { return true; }
  Tensor empty(const std::vector<int64_t>& shape, DType dtype) override { return d_->empty(shape, dtype); }
  Tensor upload(const Tensor& host) override { return host.on_device() ? host : d_->upload(host); }
  Tensor to_host(const Tensor& x) override { return host(x); }
  void write(Tensor& dst, const Tensor& src) override { d_->write(dst, src); }
  void synchronize() override { d_->synchronize(); }
  void trim() override {
    d_->trim();
    c_->trim();
  }
  MemoryStats memory_stats() const override { return d_->memory_stats(); }
  void reset_peak() override { d_->reset_peak(); }
  std::vector<std::pair<Op, int64_t>> fallback_counts() const override {
    std::vector<std::pair<Op, int64_t>> out;
    for (int i = 0; i < kOpCount; ++i)
      if (counts_[i].load()) out.push_back({static_cast<Op>(i), counts_[i].load()});
    return out;
  }

  Tensor prepare_weight(const Tensor& w) override {
    const bool matrix = w.ndim >= 2;
    if (matrix && !d_->supports(Op::Linear, w.dtype) && !d_->supports(Op::Conv2d, w.dtype) &&
        !d_->supports(Op::GetRows, w.dtype))
      return c_->prepare_weight(w);
    try {
      return d_->prepare_weight(w);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::Unsupported) throw;
      return c_->prepare_weight(w);
    }
  }

  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* b) override {
    if (on_dev(Op::Linear, w.dtype, {&w, b})) return d_->linear(dx(x), w, b);
    count(Op::Linear);
    Tensor hb = b ? host(*b) : Tensor();
    return back(c_->linear(host(x), host(w), b ? &hb : nullptr));
  }
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad) override {
    if (on_dev(Op::Conv2d, w.dtype, {&w, b})) return d_->conv2d(dx(x), w, b, stride, pad);
    count(Op::Conv2d);
    Tensor hb = b ? host(*b) : Tensor();
    return back(c_->conv2d(host(x), host(w), b ? &hb : nullptr, stride, pad));
  }
  Tensor group_norm(const Tensor& x, int groups, float eps, const Tensor* g, const Tensor* b, bool silu) override {
    if (on_dev(Op::GroupNorm, DType::F32, {g, b})) return d_->group_norm(dx(x), groups, eps, g, b, silu);
    count(Op::GroupNorm);
    Tensor hg = g ? host(*g) : Tensor(), hb = b ? host(*b) : Tensor();
    return back(c_->group_norm(host(x), groups, eps, g ? &hg : nullptr, b ? &hb : nullptr, silu));
  }
  Tensor layer_norm(const Tensor& x, float eps, const Tensor* g, const Tensor* b) override {
    if (on_dev(Op::LayerNorm, DType::F32, {g, b})) return d_->layer_norm(dx(x), eps, g, b);
    count(Op::LayerNorm);
    Tensor hg = g ? host(*g) : Tensor(), hb = b ? host(*b) : Tensor();
    return back(c_->layer_norm(host(x), eps, g ? &hg : nullptr, b ? &hb : nullptr));
  }
  Tensor softmax(const Tensor& x) override {
    if (on_dev(Op::Softmax)) return d_->softmax(dx(x));
    count(Op::Softmax);
    return back(c_->softmax(host(x)));
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) override {
    if (on_dev(Op::Attention)) return d_->attention(dx(q), dx(k), dx(v), heads, causal);
    count(Op::Attention);
    return back(c_->attention(host(q), host(k), host(v), heads, causal));
  }
  Tensor unary(UnaryOp op, const Tensor& x) override {
    if (on_dev(Op::Unary)) return d_->unary(op, dx(x));
    count(Op::Unary);
    return back(c_->unary(op, host(x)));
  }
  Tensor geglu(const Tensor& x) override {
    if (on_dev(Op::Geglu)) return d_->geglu(dx(x));
    count(Op::Geglu);
    return back(c_->geglu(host(x)));
  }
  Tensor add(const Tensor& a, const Tensor& b) override {
    if (on_dev(Op::Add)) return d_->add(dx(a), dx(b));
    count(Op::Add);
    return back(c_->add(host(a), host(b)));
  }
  Tensor mul(const Tensor& a, const Tensor& b) override {
    if (on_dev(Op::Mul)) return d_->mul(dx(a), dx(b));
    count(Op::Mul);
    return back(c_->mul(host(a), host(b)));
  }
  void add_(Tensor& a, const Tensor& b) override {
    if (on_dev(Op::AddInplace)) return d_->add_(a, dx(b));
    count(Op::AddInplace);
    Tensor ha = host(a);
    if (ha.storage_id() == a.storage_id()) ha = ha.contiguous();  // never alias the caller's tensor
    c_->add_(ha, host(b));
    if (a.on_device())
      d_->write(a, ha);
    else
      a = ha;
  }
  Tensor scale(const Tensor& x, float s) override {
    if (on_dev(Op::Scale)) return d_->scale(dx(x), s);
    count(Op::Scale);
    return back(c_->scale(host(x), s));
  }
  Tensor combine(const Tensor& a, float wa, const Tensor& b, float wb) override {
    if (on_dev(Op::Combine)) return d_->combine(dx(a), wa, dx(b), wb);
    count(Op::Combine);
    return back(c_->combine(host(a), wa, host(b), wb));
  }
  Tensor concat(const Tensor& a, const Tensor& b, int dim) override {
    if (on_dev(Op::Concat)) return d_->concat(dx(a), dx(b), dim);
    count(Op::Concat);
    return back(c_->concat(host(a), host(b), dim));
  }
  Tensor upsample_nearest2x(const Tensor& x) override {
    if (on_dev(Op::Upsample2x)) return d_->upsample_nearest2x(dx(x));
    count(Op::Upsample2x);
    return back(c_->upsample_nearest2x(host(x)));
  }
  Tensor nchw_to_nlc(const Tensor& x) override {
    if (on_dev(Op::NchwToNlc)) return d_->nchw_to_nlc(dx(x));
    count(Op::NchwToNlc);
    return back(c_->nchw_to_nlc(host(x)));
  }
  Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) override {
    if (on_dev(Op::NlcToNchw)) return d_->nlc_to_nchw(dx(x), h, w);
    count(Op::NlcToNchw);
    return back(c_->nlc_to_nchw(host(x), h, w));
  }
  Tensor pad(const Tensor& x, int l, int r, int t, int b) override {
    if (on_dev(Op::Pad)) return d_->pad(dx(x), l, r, t, b);
    count(Op::Pad);
    return back(c_->pad(host(x), l, r, t, b));
  }
  Tensor timestep_embedding(const std::vector<float>& t, int dim, float max_period) override {
    if (on_dev(Op::TimestepEmbedding)) return d_->timestep_embedding(t, dim, max_period);
    count(Op::TimestepEmbedding);
    return back(c_->timestep_embedding(t, dim, max_period));
  }
  Tensor get_rows(const Tensor& table, const std::vector<int32_t>& ids) override {
    if (on_dev(Op::GetRows, table.dtype, {&table})) return d_->get_rows(table, ids);
    count(Op::GetRows);
    return back(c_->get_rows(host(table), ids));
  }

 private:
  // The device runs `op` when it supports it for `wt` and every given parameter tensor is resident there.
  bool on_dev(Op op, DType wt = DType::F32, std::initializer_list<const Tensor*> params = {}) const {
    if (!d_->supports(op, wt)) return false;
    for (const Tensor* p : params)
      if (p && p->defined() && p->numel() > 0 && !p->on_device()) return false;
    return true;
  }
  // A device copy of an activation (activations that came back from a CPU fallback are host tensors).
  Tensor dx(const Tensor& t) { return t.on_device() || !t.defined() ? t : d_->upload(t); }
  Tensor host(const Tensor& t) { return t.on_device() ? t.device_backend()->to_host(t) : t; }
  Tensor back(const Tensor& t) { return d_->upload(t); }
  void count(Op op) {
    if (counts_[static_cast<int>(op)]++ == 0 && debug_enabled())
      std::fprintf(stderr, "sdnode: %s has no %s kernel for this case; running it on the CPU\n", d_->name(), op_name(op));
  }

  std::shared_ptr<Backend> d_, c_;
  std::array<std::atomic<int64_t>, kOpCount> counts_;
};

}  // namespace

std::shared_ptr<Backend> with_cpu_fallback(std::shared_ptr<Backend> device, std::shared_ptr<Backend> cpu) {
  return std::make_shared<FallbackBackend>(std::move(device), std::move(cpu));
}

const std::vector<BackendFactory*>& backend_factories() {
  static const std::vector<BackendFactory*> list = [] {
    std::vector<BackendFactory*> v;
    static CpuFactory cpu;
    v.push_back(&cpu);
#if SDN_WITH_VULKAN
    v.push_back(vulkan_backend_factory());
#endif
    return v;
  }();
  return list;
}

BackendFactory* find_backend_factory(const std::string& name) {
  for (BackendFactory* f : backend_factories())
    if (name == f->name()) return f;
  return nullptr;
}

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  for (BackendFactory* f : backend_factories())
    for (DeviceInfo& d : f->devices()) out.push_back(std::move(d));
  return out;
}

static std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f GiB", (double)bytes / (1ull << 30));
  return buf;
}

static std::string compiled_list() {
  std::string s;
  for (BackendFactory* f : backend_factories()) s += (s.empty() ? "" : ", ") + std::string(f->name());
  return s;
}

BackendChoice create_backend(const std::string& spec_in, const BackendOptions& options) {
  std::string spec = spec_in.empty() ? "auto" : spec_in;
  BackendChoice choice;
  auto wrap = [&](BackendFactory* f, int index) {
    std::shared_ptr<Backend> b = f->create(index, options);
    if (!b->is_host()) b = with_cpu_fallback(b, make_cpu_backend(options));
    return b;
  };
  if (spec == "auto") {
    std::string why;
    for (BackendFactory* f : backend_factories()) {
      if (std::string(f->name()) == "cpu") continue;
      std::vector<DeviceInfo> devs = f->devices();
      if (devs.empty()) {
        std::string r = f->unavailable_reason();
        why += (why.empty() ? "" : "; ") + (r.empty() ? std::string(f->name()) + ": no devices" : r);
        continue;
      }
      // best usable device: discrete > integrated > virtual > software/cpu, then memory
      auto rank = [](const DeviceInfo& d) {
        int r = d.type == "discrete" ? 4 : d.type == "integrated" ? 3 : d.type == "virtual" ? 2 : 1;
        return r;
      };
      const DeviceInfo* best = nullptr;
      for (const DeviceInfo& d : devs) {
        if (!d.usable) {
          why += (why.empty() ? "" : "; ") + d.id + ": " + d.unusable_reason;
          continue;
        }
        if (d.type == "software" || d.type == "cpu") {  // a software rasteriser is slower than our CPU backend
          why += (why.empty() ? "" : "; ") + d.id + " (" + d.name + ") is a software device";
          continue;
        }
        if (!best || rank(d) > rank(*best) || (rank(d) == rank(*best) && d.memory_bytes > best->memory_bytes))
          best = &d;
      }
      if (!best) continue;
      try {
        choice.backend = wrap(f, best->index);
        choice.device = best->id;
        choice.description = best->id + " " + best->name + ", " + gib(best->memory_bytes);
        return choice;
      } catch (const Error& e) {
        why += (why.empty() ? "" : "; ") + best->id + " failed to start: " + e.what();
      }
    }
    choice.backend = make_cpu_backend(options);
    choice.device = "cpu";
    choice.description = "cpu: " + (why.empty() ? std::string("no GPU backend is compiled in") : why);
    return choice;
  }
  std::string name = spec;
  int index = 0;
  size_t colon = spec.find(':');
  if (colon != std::string::npos) {
    name = spec.substr(0, colon);
    std::string idx = spec.substr(colon + 1);
    char* end = nullptr;
    long v = idx.empty() ? -1 : std::strtol(idx.c_str(), &end, 10);
    if (idx.empty() || *end || v < 0 || v > 1024)
      throw_error(ErrorCode::InvalidArgument, "device '" + spec + "': the index after ':' must be a number, e.g. " +
                                                  name + ":0");
    index = (int)v;
  }
  BackendFactory* f = find_backend_factory(name);
  if (!f)
    throw_error(ErrorCode::Unsupported, "device '" + spec + "' is not available: this build has the backends " +
                                            compiled_list() + " (use device 'auto' or 'cpu')");
  if (name != "cpu") {
    std::vector<DeviceInfo> devs = f->devices();
    const DeviceInfo* d = nullptr;
    for (const DeviceInfo& x : devs)
      if (x.index == index) d = &x;
    if (!d) {
      std::string r = f->unavailable_reason();
      throw_error(ErrorCode::Unsupported, "device '" + spec + "' was not found" + (r.empty() ? "" : " (" + r + ")") +
                                              "; " + std::to_string(devs.size()) +
                                              " device(s) of this kind (see `sdnode system`; use device 'cpu')");
    }
    if (!d->usable)
      throw_error(ErrorCode::Unsupported, "device '" + spec + "' (" + d->name + ") is unusable: " +
                                              d->unusable_reason + " (use device 'cpu')");
    choice.backend = wrap(f, index);
    choice.device = d->id;
    choice.description = d->id + " " + d->name + ", " + gib(d->memory_bytes);
    return choice;
  }
  choice.backend = wrap(f, index);
  choice.device = "cpu";
  choice.description = "cpu: requested";
  return choice;
}

}  // namespace sdn
