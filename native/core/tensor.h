// Tensors: a typed view (shape, strides) over storage owned elsewhere (a pool block, a memory map, the heap).
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

struct Tensor {
  DType dtype = DType::F32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {1, 1, 1, 1};
  int64_t stride[kMaxDims] = {0, 0, 0, 0};  // elements; only meaningful for non-quantized dtypes
  void* data = nullptr;
  std::shared_ptr<void> owner;  // keeps the storage alive; null for borrowed views

  Tensor() = default;

  // A fresh, contiguous, uninitialised tensor from `pool` (default_pool() when null).
  static Tensor empty(const std::vector<int64_t>& shape, DType dtype = DType::F32, TensorPool* pool = nullptr);
  static Tensor zeros(const std::vector<int64_t>& shape, DType dtype = DType::F32, TensorPool* pool = nullptr);
  // A contiguous tensor owning a heap copy of `values` (tests, small constants).
  static Tensor from_vector(const std::vector<int64_t>& shape, const std::vector<float>& values);
  // Borrowed contiguous view over external memory (caller keeps it alive, or passes `owner`).
  static Tensor wrap(void* data, const std::vector<int64_t>& shape, DType dtype, std::shared_ptr<void> owner = {});

  bool defined() const { return data != nullptr || numel() == 0; }
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
  // Contiguous copy (any layout) from the default pool.
  Tensor contiguous() const;
  // Copy converted to F32 (dequantizing if needed), contiguous.
  Tensor to_f32() const;
  // Slice [begin, end) along dimension 0 (a view, contiguous tensors only).
  Tensor slice0(int64_t begin, int64_t end) const;

  void set_contiguous_strides();
};

// Caching allocator for activations: blocks are kept on free lists by size class and reused, so a forward pass
// does not call malloc per operation once warm. Thread-safe. Memory is 64-byte aligned.
class TensorPool {
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

TensorPool& default_tensor_pool();

}  // namespace sdn
