// Tensors: a typed view (shape, strides) over storage owned elsewhere: host memory (a pool block, a memory map,
// the heap) or a backend's device buffer (a GPU allocation) at a byte offset.
//
// Where a tensor lives: `data` is its host address for host tensors; device tensors have data == nullptr and carry
// `buffer` + `offset` instead. Only the backend that owns the buffer reads or writes it; Backend::to_host() and
// Backend::upload() are the only ways across (see backends/backend.h).
//
// Conventions used throughout the engine:
//  * shape is in PyTorch order (outermost first): images/latents are [N, C, H, W], token sequences [N, T, C],
//    Linear weights [out, in], conv weights [OC, IC, KH, KW].
//  * strides are in elements (plain types only). Block-quantized tensors are always contiguous, rows along the
//    last dimension (which must be a multiple of the block size).
//  * Activations are F32. Weights may be any weight type (core/dtype.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace sdn {

constexpr int kMaxDims = 4;

class TensorPool;
class Backend;

// Memory owned by a backend (device memory, or host memory a backend manages itself). Subclassed per backend;
// freeing the last reference returns the memory to that backend's pool.
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  virtual Backend& backend() const = 0;
  virtual size_t size() const = 0;  // bytes
};

struct Tensor {
  DType dtype = DType::F32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {1, 1, 1, 1};
  int64_t stride[kMaxDims] = {0, 0, 0, 0};  // elements; only meaningful for non-quantized dtypes
  void* data = nullptr;          // host address (host tensors only)
  std::shared_ptr<void> owner;  // keeps host storage alive; null for borrowed views
  std::shared_ptr<DeviceBuffer> buffer;  // device tensors: the backend buffer holding the data ...
  size_t offset = 0;                     // ... at this byte offset (data stays nullptr)

  Tensor() = default;

  // A fresh, contiguous, uninitialised tensor from `pool` (default_pool() when null).
  static Tensor empty(const std::vector<int64_t>& shape, DType dtype = DType::F32, TensorPool* pool = nullptr);
  static Tensor zeros(const std::vector<int64_t>& shape, DType dtype = DType::F32, TensorPool* pool = nullptr);
  // A contiguous tensor owning a heap copy of `values` (tests, small constants).
  static Tensor from_vector(const std::vector<int64_t>& shape, const std::vector<float>& values);
  // Borrowed contiguous view over external memory (caller keeps it alive, or passes `owner`).
  static Tensor wrap(void* data, const std::vector<int64_t>& shape, DType dtype, std::shared_ptr<void> owner = {});

  bool defined() const { return data != nullptr || buffer != nullptr || (ndim > 0 && numel() == 0); }
  bool on_device() const { return buffer != nullptr; }
  // The backend owning a device tensor's buffer; nullptr for host tensors.
  Backend* device_backend() const { return buffer ? &buffer->backend() : nullptr; }
  // Identifies the storage (same value for the same bytes): host address, or buffer + offset.
  const void* storage_id() const {
    return buffer ? static_cast<const void*>(static_cast<const char*>(static_cast<const void*>(buffer.get())) + offset)
                  : data;
  }
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t numel() const;
  size_t nbytes() const;  // bytes of a contiguous tensor of this shape and dtype
  bool is_contiguous() const;
  std::vector<int64_t> sizes() const { return std::vector<int64_t>(shape, shape + ndim); }
  std::string shape_str() const;  // "[2, 4, 32, 32] f32"

  float* f32() const { return static_cast<float*>(data); }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }

  // Same storage, new shape (contiguous tensors only; element count must match).
  Tensor reshape(const std::vector<int64_t>& new_shape) const;
  // Contiguous copy (any layout) from the current host pool (host tensors only).
  Tensor contiguous() const;
  // Copy converted to F32 (dequantizing if needed), contiguous (host tensors only).
  Tensor to_f32() const;
  // Slice [begin, end) along dimension 0 (a view, contiguous tensors only; host or device).
  Tensor slice0(int64_t begin, int64_t end) const;

  void set_contiguous_strides();
};

// Caching allocator for host activations: blocks are kept on free lists by size class and reused, so a forward pass
// does not call malloc per operation once warm. Thread-safe. Memory is 64-byte aligned.
class TensorPool : public std::enable_shared_from_this<TensorPool> {
 public:
  TensorPool() = default;
  ~TensorPool();
  TensorPool(const TensorPool&) = delete;
  TensorPool& operator=(const TensorPool&) = delete;

  std::shared_ptr<void> allocate(size_t bytes);
  // Frees every cached (unused) block back to the OS.
  void trim();

  size_t bytes_in_use() const;
  size_t bytes_cached() const;
  size_t peak_bytes_in_use() const;
  void reset_peak();
  // Upper bound on bytes_in_use + cached; 0 = unlimited. Exceeding it throws OutOfMemory.
  void set_limit(size_t bytes);

 private:
  void release(void* p, size_t cls);
  static size_t size_class(size_t bytes);

  mutable std::mutex mutex_;
  std::vector<std::pair<size_t, void*>> free_;  // (class size, block)
  size_t in_use_ = 0, cached_ = 0, peak_ = 0, limit_ = 0;
};

// The process-wide host pool (used by host code outside any backend).
TensorPool& default_tensor_pool();
// The host pool Tensor::empty() uses when given none: the pool of the CPU backend whose operation is running on this
// thread (see HostPoolScope), else default_tensor_pool().
TensorPool& current_tensor_pool();
// Makes `pool` this thread's current host pool for the scope's lifetime (nests).
class HostPoolScope {
 public:
  explicit HostPoolScope(TensorPool* pool);
  ~HostPoolScope();
  HostPoolScope(const HostPoolScope&) = delete;
  HostPoolScope& operator=(const HostPoolScope&) = delete;

 private:
  TensorPool* saved_;
};

}  // namespace sdn
