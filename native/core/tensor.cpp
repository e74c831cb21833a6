#include "core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "core/quant.h"
#include "sdn/error.h"

namespace sdn {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

size_t Tensor::nbytes() const {
  if (ndim == 0) return dtype_row_bytes(dtype, 1);
  int64_t rows = 1;
  for (int i = 0; i < ndim - 1; ++i) rows *= shape[i];
  return (size_t)rows * dtype_row_bytes(dtype, shape[ndim - 1]);
}

void Tensor::set_contiguous_strides() {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    stride[i] = s;
    s = (int64_t)((uint64_t)s * (uint64_t)shape[i]);  // wraps instead of overflowing (the readers refuse such shapes)
  }
}

bool Tensor::is_contiguous() const {
  if (dtype_traits(dtype).quantized) return true;
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && stride[i] != s) return false;
    s *= shape[i];
  }
  return true;
}

std::string Tensor::shape_str() const {
  std::ostringstream o;
  o << "[";
  for (int i = 0; i < ndim; ++i) o << (i ? ", " : "") << shape[i];
  o << "] " << dtype_name(dtype);
  return o.str();
}

static void set_shape(Tensor& t, const std::vector<int64_t>& shape) {
  if (shape.size() > (size_t)kMaxDims)
    throw_error(ErrorCode::InvalidArgument, "tensor has more than 4 dimensions");
  t.ndim = (int)shape.size();
  for (int i = 0; i < kMaxDims; ++i) t.shape[i] = i < t.ndim ? shape[i] : 1;
  for (int i = 0; i < t.ndim; ++i)
    if (shape[i] < 0) throw_error(ErrorCode::InvalidArgument, "negative tensor dimension");
  t.set_contiguous_strides();
}

Tensor Tensor::empty(const std::vector<int64_t>& shape, DType dtype, TensorPool* pool) {
  Tensor t;
  t.dtype = dtype;
  set_shape(t, shape);
  size_t bytes = t.nbytes();
  t.owner = (pool ? *pool : current_tensor_pool()).allocate(bytes);
  t.data = t.owner.get();
  return t;
}

Tensor Tensor::zeros(const std::vector<int64_t>& shape, DType dtype, TensorPool* pool) {
  Tensor t = empty(shape, dtype, pool);
  if (t.nbytes()) std::memset(t.data, 0, t.nbytes());
  return t;
}

Tensor Tensor::from_vector(const std::vector<int64_t>& shape, const std::vector<float>& values) {
  Tensor t;
  set_shape(t, shape);
  if ((size_t)t.numel() != values.size())
    throw_error(ErrorCode::InvalidArgument, "from_vector: value count does not match the shape");
  auto buf = std::shared_ptr<float>(new float[values.size() ? values.size() : 1], std::default_delete<float[]>());
  if (!values.empty()) std::memcpy(buf.get(), values.data(), values.size() * sizeof(float));
  t.owner = buf;
  t.data = buf.get();
  return t;
}

Tensor Tensor::wrap(void* data, const std::vector<int64_t>& shape, DType dtype, std::shared_ptr<void> owner) {
  Tensor t;
  t.dtype = dtype;
  set_shape(t, shape);
  t.data = data;
  t.owner = std::move(owner);
  return t;
}

Tensor Tensor::reshape(const std::vector<int64_t>& new_shape) const {
  if (!is_contiguous()) throw_error(ErrorCode::Internal, "reshape of a non-contiguous tensor " + shape_str());
  Tensor t = *this;
  set_shape(t, new_shape);
  if (t.numel() != numel())
    throw_error(ErrorCode::Internal, "reshape " + shape_str() + " to " + t.shape_str() + ": element count differs");
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  if (!is_contiguous() || ndim == 0 || begin < 0 || end > shape[0] || begin > end)
    throw_error(ErrorCode::Internal, "bad slice0 of " + shape_str());
  Tensor t = *this;
  t.shape[0] = end - begin;
  size_t skip;
  const DTypeTraits& tr = dtype_traits(dtype);
  if (ndim == 1 && tr.block_size > 1) {
    // a block-quantized vector (e.g. a fused q/k/v bias stored as q8_0): slices must start and end on blocks
    if (begin % tr.block_size != 0 || end % tr.block_size != 0)
      throw_error(ErrorCode::InvalidFile, "cannot slice " + shape_str() + " " + std::string(tr.name) + " at " +
                                              std::to_string(begin) + ".." + std::to_string(end) +
                                              ": not on its blocks of " + std::to_string(tr.block_size));
    skip = (size_t)(begin / tr.block_size) * (size_t)tr.block_bytes;
  } else {
    size_t row = shape[0] ? nbytes() / (size_t)shape[0] : 0;
    skip = row * (size_t)begin;
  }
  if (buffer)
    t.offset = offset + skip;
  else
    t.data = static_cast<char*>(data) + skip;
  return t;
}

static void require_host(const Tensor& t, const char* what) {
  if (t.buffer)
    throw_error(ErrorCode::Internal, std::string(what) + " of device tensor " + t.shape_str() +
                                         ": copy it to the host with Backend::to_host() first");
}

Tensor Tensor::contiguous() const {
  require_host(*this, "contiguous()");
  if (is_contiguous()) {
    Tensor t = empty(sizes(), dtype);
    if (nbytes()) std::memcpy(t.data, data, nbytes());
    return t;
  }
  size_t es = (size_t)dtype_traits(dtype).block_bytes;
  Tensor t = empty(sizes(), dtype);
  int64_t idx[kMaxDims] = {0, 0, 0, 0};
  int64_t n = numel();
  char* dst = static_cast<char*>(t.data);
  const char* src = static_cast<const char*>(data);
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = 0;
    for (int i = 0; i < ndim; ++i) off += idx[i] * stride[i];
    std::memcpy(dst + (size_t)k * es, src + (size_t)off * es, es);
    for (int i = ndim - 1; i >= 0; --i) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
  return t;
}

Tensor Tensor::to_f32() const {
  require_host(*this, "to_f32()");
  Tensor src = is_contiguous() ? *this : contiguous();
  Tensor t = empty(sizes(), DType::F32);
  if (dtype == DType::F32) {
    if (nbytes()) std::memcpy(t.data, src.data, nbytes());
    return t;
  }
  int64_t row = ndim ? shape[ndim - 1] : 1;
  int64_t rows = row ? numel() / row : 0;
  size_t rb = dtype_row_bytes(dtype, row);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(dtype, static_cast<const char*>(src.data) + r * rb, t.f32() + r * row, row);
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// TensorPool
// ---------------------------------------------------------------------------------------------------------

TensorPool::~TensorPool() { trim(); }

size_t TensorPool::size_class(size_t bytes) {
  // 64-byte granules up to 4 KiB, then 8 steps per power of two (at most 12.5 % waste).
  if (bytes <= 4096) return (bytes + 63) & ~(size_t)63;
  size_t p = 1;
  while (p * 2 <= bytes) p *= 2;
  size_t step = p / 8;
  return (bytes + step - 1) / step * step;
}

std::shared_ptr<void> TensorPool::allocate(size_t bytes) {
  size_t cls = size_class(bytes ? bytes : 1);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].first == cls) {
        p = free_[i].second;
        free_[i] = free_.back();
        free_.pop_back();
        cached_ -= cls;
        break;
      }
    }
    if (!p && limit_ && in_use_ + cached_ + cls > limit_) {
      // Try to make room by dropping cached blocks of other sizes.
      for (auto& f : free_) std::free(f.second);
      free_.clear();
      cached_ = 0;
      if (in_use_ + cls > limit_)
        throw_error(ErrorCode::OutOfMemory, "tensor memory limit reached (" + std::to_string(limit_ >> 20) +
                                                " MiB): use a smaller image size or batch");
    }
    in_use_ += cls;
    peak_ = std::max(peak_, in_use_);
  }
  if (!p) {
    p = std::aligned_alloc(64, cls);
    if (!p) {
      std::lock_guard<std::mutex> lk(mutex_);
      in_use_ -= cls;
      throw_error(ErrorCode::OutOfMemory, "could not allocate " + std::to_string(cls >> 20) +
                                              " MiB for a tensor: use a smaller image size or batch");
    }
  }
  // A pool owned through a shared_ptr (a backend's) stays alive while any of its blocks is in use.
  std::shared_ptr<TensorPool> keep = weak_from_this().lock();
  return std::shared_ptr<void>(p, [this, keep, cls](void* q) { release(q, cls); });
}

void TensorPool::release(void* p, size_t cls) {
  std::lock_guard<std::mutex> lk(mutex_);
  in_use_ -= cls;
  free_.emplace_back(cls, p);
  cached_ += cls;
}

void TensorPool::trim() {
  std::lock_guard<std::mutex> lk(mutex_);
  for (auto& f : free_) std::free(f.second);
  free_.clear();
  cached_ = 0;
}

size_t TensorPool::bytes_in_use() const {
  std::lock_guard<std::mutex> lk(mutex_);
  return in_use_;
}
size_t TensorPool::bytes_cached() const {
  std::lock_guard<std::mutex> lk(mutex_);
  return cached_;
}
size_t TensorPool::peak_bytes_in_use() const {
  std::lock_guard<std::mutex> lk(mutex_);
  return peak_;
}
void TensorPool::reset_peak() {
  std::lock_guard<std::mutex> lk(mutex_);
  peak_ = in_use_;
}
void TensorPool::set_limit(size_t bytes) {
  std::lock_guard<std::mutex> lk(mutex_);
  limit_ = bytes;
}

TensorPool& default_tensor_pool() {
  static TensorPool* pool = new TensorPool();  // never destroyed: tensors may outlive static destruction
  return *pool;
}

static thread_local TensorPool* t_current_pool = nullptr;

TensorPool& current_tensor_pool() { return t_current_pool ? *t_current_pool : default_tensor_pool(); }

HostPoolScope::HostPoolScope(TensorPool* pool) : saved_(t_current_pool) { t_current_pool = pool; }
HostPoolScope::~HostPoolScope() { t_current_pool = saved_; }

}  // namespace sdn
