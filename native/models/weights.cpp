#include "models/weights.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/quant.h"
#include "core/threadpool.h"
#include "formats/weight_file.h"
#include "sdn/error.h"

namespace sdn {

WeightStore::WeightStore(WeightFile* file, Backend& backend) : backend_(&backend) {
  if (file) files_.push_back({"", file});
}

void WeightStore::add_file(const std::string& prefix, WeightFile* file) {
  if (file) files_.push_back({prefix, file});
  for (auto it = cache_.lower_bound(prefix); it != cache_.end() && it->first.compare(0, prefix.size(), prefix) == 0;)
    it = cache_.erase(it);
}

const WeightFile* WeightStore::source(const std::string& name) const {
  for (auto it = files_.rbegin(); it != files_.rend(); ++it)
    if (name.compare(0, it->first.size(), it->first) == 0) return it->second;
  return nullptr;
}
WeightStore::WeightStore(std::map<std::string, Tensor> tensors, Backend& backend)
    : mem_(std::move(tensors)), backend_(&backend) {}

bool WeightStore::has(const std::string& name) const {
  if (overrides_.count(name)) return true;
  if (!files_.empty()) {
    const WeightFile* f = source(name);
    return f && f->has(name);
  }
  return mem_.count(name) != 0;
}

const Tensor& WeightStore::raw(const std::string& name) const {
  auto o = overrides_.find(name);
  if (o != overrides_.end()) return o->second;
  if (!files_.empty()) {
    const WeightFile* f = source(name);
    if (!f) throw_error(ErrorCode::InvalidFile, "model weights: no tensor " + name);
    return f->get(name);
  }
  auto it = mem_.find(name);
  if (it == mem_.end()) throw_error(ErrorCode::InvalidFile, "model weights: no tensor " + name);
  return it->second;
}

namespace {
// A vector (norm scale, bias) stored in a block-quantized type: stable-diffusion.cpp's converter writes e.g. the
// 1-D norm weights of an SDXL checkpoint as q8_0. Operations read vectors as plain floats, so such a tensor is
// dequantized to f32 once, here (a few KB each).
Tensor plain_vector(const Tensor& t) {
  const DTypeTraits& tr = dtype_traits(t.dtype);
  if (t.ndim >= 2 || tr.block_size <= 1 || t.on_device() || !t.data) return t;
  const int64_t n = t.numel();
  if (n % tr.block_size != 0) return t;  // validation reports it
  auto buf = std::shared_ptr<void>(std::malloc((size_t)n * sizeof(float) + 64), std::free);
  if (!buf) throw_error(ErrorCode::OutOfMemory, "dequantizing a vector weight: out of memory");
  dequantize_row(t.dtype, t.data, static_cast<float*>(buf.get()), n);
  return Tensor::wrap(buf.get(), t.sizes(), DType::F32, buf);
}
}  // namespace

const Tensor& WeightStore::get(const std::string& name) {
  auto it = cache_.find(name);
  if (it != cache_.end()) return it->second;
  Tensor p = backend_->prepare_weight(plain_vector(deltas_.empty() ? raw(name) : adapted(name)));
  return cache_.emplace(name, std::move(p)).first->second;
}

const Tensor* WeightStore::get_opt(const std::string& name) {
  if (!has(name)) return nullptr;
  return &get(name);
}

std::vector<std::string> WeightStore::names_with_prefix(const std::string& prefix) const {
  std::vector<std::string> out;
  if (!files_.empty()) {
    for (const auto& f : files_)
      for (const auto& n : f.second->names())
        if (n.compare(0, prefix.size(), prefix) == 0 && source(n) == f.second) out.push_back(n);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  } else {
    for (const auto& kv : mem_)
      if (kv.first.compare(0, prefix.size(), prefix) == 0) out.push_back(kv.first);
  }
  return out;
}

void WeightStore::override_tensor(const std::string& name, Tensor t) {
  cache_.erase(name);
  merged_.erase(name);
  overrides_[name] = std::move(t);
}

void WeightStore::release(const std::string& prefix) {
  for (auto it = cache_.lower_bound(prefix); it != cache_.end() && it->first.compare(0, prefix.size(), prefix) == 0;)
    it = cache_.erase(it);
  for (auto& f : files_) f.second->release(prefix);
}

void WeightStore::release_pages(const std::string& prefix) {
  for (auto& f : files_) f.second->release(prefix);
}

void WeightStore::prefetch(const std::string& prefix, const std::atomic<bool>* stop) const {
  for (const auto& f : files_) {
    if (stop && stop->load(std::memory_order_relaxed)) return;
    f.second->prefetch(prefix, stop);
  }
}

const Tensor& WeightStore::adapted(const std::string& name) {
  auto d = deltas_.find(name);
  if (d == deltas_.end()) return raw(name);
  auto m = merged_.find(name);
  if (m != merged_.end()) return m->second;
  return merged_.emplace(name, merge_deltas(name, raw(name), d->second)).first->second;
}

uint64_t WeightStore::merged_bytes() const {
  uint64_t n = 0;
  for (const auto& kv : merged_) n += kv.second.nbytes();
  return n;
}

namespace {
// Checks that a delta fits the weight; returns "" or the problem.
std::string delta_problem(const Tensor& w, const WeightDelta& d) {
  if (w.ndim < 2) return "the weight is not a matrix or convolution kernel";
  if (d.up.ndim < 2 || d.down.ndim < 2) return "the LoRA up/down tensors are not matrices";
  const int64_t rows = w.shape[0], K = w.numel() / (rows ? rows : 1);
  const int64_t R = d.up.shape[0], rank = d.up.numel() / (R ? R : 1);
  if (d.down.shape[0] != rank)
    return "rank mismatch: up " + d.up.shape_str() + " and down " + d.down.shape_str();
  if (d.down.numel() / (rank ? rank : 1) != K)
    return "down " + d.down.shape_str() + " does not fit the weight " + w.shape_str();
  if (d.row_offset < 0 || d.row_offset + R > rows)
    return "up " + d.up.shape_str() + " (rows from " + std::to_string(d.row_offset) + ") does not fit the weight " +
           w.shape_str();
  if (d.up.on_device() || d.down.on_device()) return "the LoRA tensors must be host tensors";
  return "";
}

std::vector<float> host_f32(const Tensor& t) {
  std::vector<float> v((size_t)t.numel());
  if (t.dtype == DType::F32 && t.is_contiguous()) {
    std::memcpy(v.data(), t.data, v.size() * sizeof(float));
    return v;
  }
  const int64_t n = t.numel();
  if (!t.is_contiguous()) {
    Tensor c = t.to_f32();
    std::memcpy(v.data(), c.data, v.size() * sizeof(float));
    return v;
  }
  dequantize_row(t.dtype, t.data, v.data(), n);
  return v;
}
}  // namespace

Tensor merge_deltas(const std::string& name, const Tensor& w, const std::vector<WeightDelta>& deltas, DType type) {
  if (w.on_device()) throw_error(ErrorCode::Internal, name + ": LoRA merge needs the weight in host memory");
  for (const WeightDelta& d : deltas) {
    std::string pr = delta_problem(w, d);
    if (!pr.empty()) throw_error(ErrorCode::InvalidArgument, "LoRA for " + name + ": " + pr);
  }
  const DType out = type == DType::Invalid ? w.dtype : type;
  const int64_t rows = w.shape[0], K = w.numel() / (rows ? rows : 1);
  if (dtype_traits(out).block_size > 1 && K % dtype_traits(out).block_size != 0)
    throw_error(ErrorCode::InvalidArgument, name + ": rows of " + std::to_string(K) + " do not fit the blocks of " +
                                                dtype_name(out));
  struct D {
    std::vector<float> up, down;
    int64_t R, rank, off;
    float scale;
  };
  std::vector<D> ds;
  for (const WeightDelta& d : deltas) {
    D x;
    x.up = host_f32(d.up);
    x.down = host_f32(d.down);
    x.R = d.up.shape[0];
    x.rank = d.up.numel() / (x.R ? x.R : 1);
    x.off = d.row_offset;
    x.scale = d.scale;
    ds.push_back(std::move(x));
  }
  Tensor src = w.is_contiguous() ? w : w.contiguous();
  const size_t in_row = dtype_row_bytes(src.dtype, K), out_row = dtype_row_bytes(out, K);
  auto buf = std::shared_ptr<void>(std::malloc(out_row * (size_t)rows + 64), std::free);
  if (!buf) throw_error(ErrorCode::OutOfMemory, "applying a LoRA to " + name + ": out of memory");
  Tensor dst = Tensor::wrap(buf.get(), src.sizes(), out, buf);
  current_pool().parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp((size_t)K);
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(src.dtype, static_cast<const char*>(src.data) + (size_t)r * in_row, tmp.data(), K);
      for (const D& d : ds) {
        if (r < d.off || r >= d.off + d.R) continue;
        const float* u = d.up.data() + (size_t)(r - d.off) * d.rank;
        for (int64_t j = 0; j < d.rank; ++j) {
          const float a = d.scale * u[j];
          const float* dn = d.down.data() + (size_t)j * K;
          for (int64_t k = 0; k < K; ++k) tmp[k] += a * dn[k];
        }
      }
      quantize_row(out, tmp.data(), static_cast<char*>(dst.data) + (size_t)r * out_row, K);
    }
  });
  return dst;
}

DeltaUpdate WeightStore::set_deltas(std::map<std::string, std::vector<WeightDelta>> deltas) {
  // validate everything first, so a bad set changes nothing
  for (const auto& kv : deltas) {
    if (!has(kv.first)) throw_error(ErrorCode::InvalidArgument, "LoRA: the model has no weight " + kv.first);
    const Tensor& w = raw(kv.first);
    for (const WeightDelta& d : kv.second) {
      std::string pr = delta_problem(w, d);
      if (!pr.empty()) throw_error(ErrorCode::InvalidArgument, "LoRA for " + kv.first + ": " + pr);
    }
  }
  DeltaUpdate u;
  u.bytes_before = merged_bytes();
  auto same = [](const std::vector<WeightDelta>& a, const std::vector<WeightDelta>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!a[i].same_as(b[i])) return false;
    return true;
  };
  std::vector<std::string> changed;
  for (const auto& kv : deltas_) {
    auto n = deltas.find(kv.first);
    if (n == deltas.end() || !same(kv.second, n->second)) changed.push_back(kv.first);
  }
  for (const auto& kv : deltas)
    if (!deltas_.count(kv.first)) changed.push_back(kv.first);
  for (const auto& name : changed) {
    cache_.erase(name);
    merged_.erase(name);
  }
  deltas_ = std::move(deltas);
  u.weights_adapted = (int64_t)deltas_.size();
  u.weights_changed = (int64_t)changed.size();
  return u;
}

void convert_weights(WeightStore& store, const std::vector<std::string>& prefixes, DType type,
                     const std::function<bool(int64_t, int64_t)>& on_tensor) {
  std::vector<std::string> names;
  for (const auto& p : prefixes)
    for (auto& n : store.names_with_prefix(p)) names.push_back(n);
  const DTypeTraits& tt = dtype_traits(type);
  int64_t done = 0, total = (int64_t)names.size();
  for (const auto& name : names) {
    const Tensor& src = store.raw(name);
    bool matrix = src.ndim >= 2 && name.find("embedding") == std::string::npos &&
                  dtype_traits(src.dtype).weight_type;
    if (matrix && src.dtype != type) {
      int64_t rows = src.shape[0];
      int64_t row = src.numel() / (rows ? rows : 1);
      DType target = type;
      if (row % tt.block_size != 0) {
        // rows that do not fit 256-element super-blocks take a 32-block type of similar size, as llama.cpp does
        // (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0); rows that fit no block stay 16-bit
        if (type == DType::Q4_K) target = DType::Q5_0;
        else if (type == DType::Q5_K) target = DType::Q5_1;
        else if (type == DType::Q6_K) target = DType::Q8_0;
        if (row % dtype_traits(target).block_size != 0) target = DType::F16;
      }
      if (target != src.dtype && !(target == DType::F16 && src.dtype == DType::BF16)) {
        // heap copy, not from the activation pool
        size_t row_bytes = dtype_row_bytes(target, row);
        auto buf = std::shared_ptr<void>(std::malloc(row_bytes * (size_t)rows + 64), std::free);
        if (!buf) throw_error(ErrorCode::OutOfMemory, "converting " + name + ": out of memory");
        Tensor dst = Tensor::wrap(buf.get(), src.sizes(), target, buf);
        std::vector<float> tmp((size_t)row);
        size_t src_row_bytes = dtype_row_bytes(src.dtype, row);
        for (int64_t r = 0; r < rows; ++r) {
          dequantize_row(src.dtype, static_cast<const char*>(src.data) + (size_t)r * src_row_bytes, tmp.data(), row);
          quantize_row(target, tmp.data(), static_cast<char*>(dst.data) + (size_t)r * row_bytes, row);
        }
        store.override_tensor(name, std::move(dst));
        store.release(name);  // the stored copy's pages are not needed any more
      }
    }
    ++done;
    if (on_tensor && !on_tensor(done, total)) throw_error(ErrorCode::Aborted, "model loading was aborted");
  }
}

// ---------------------------------------------------------------------------------------------------------
static const char* dump_dir() {
  static const char* d = std::getenv("SDN_DUMP_DIR");
  return (d && *d) ? d : nullptr;
}
bool dump_enabled() { return dump_dir() != nullptr; }

void dump(const std::string& name, const Tensor& t) {
  const char* dir = dump_dir();
  if (!dir) return;
  Tensor f = t.to_f32();
  std::string path = std::string(dir) + "/" + name + ".npy";
  FILE* fp = std::fopen(path.c_str(), "wb");
  if (!fp) return;
  std::string shape = "(";
  for (int i = 0; i < f.ndim; ++i) shape += std::to_string(f.shape[i]) + (f.ndim == 1 || i + 1 < f.ndim ? "," : "");
  shape += ")";
  std::string hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + hdr.size() + 1;
  hdr.append((64 - total % 64) % 64, ' ');
  hdr += '\n';
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  std::fwrite(magic, 1, 8, fp);
  uint16_t hl = (uint16_t)hdr.size();
  std::fwrite(&hl, 2, 1, fp);
  std::fwrite(hdr.data(), 1, hdr.size(), fp);
  std::fwrite(f.data, 4, (size_t)f.numel(), fp);
  std::fclose(fp);
}

}  // namespace sdn
