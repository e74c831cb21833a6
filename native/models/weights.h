// Weight access for the models: a name -> tensor source (a WeightFile, or an in-memory map for tests), with
// optional conversion on load (LoadOptions.weight_type) and a cache of backend-prepared tensors.
//
// Every weight is fetched through Backend::prepare_weight() exactly once and cached until release(prefix),
// which drops the cached copies and tells the source the pages are not needed now (memory-mapped files).
#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/tensor.h"

namespace sdn {

class WeightFile;

// A low-rank change to one weight (LoRA / LoCon): delta = scale * up @ down, added to rows
// [row_offset, row_offset + up.rows) of the target (a fused q/k/v projection takes three deltas at three offsets).
//   up   [rows, rank] or [rows, rank, 1, 1]            (host tensor as stored: f32, f16, bf16)
//   down [rank, in] or [rank, in, kh, kw]               (its row length must equal the target's)
struct WeightDelta {
  Tensor up, down;
  float scale = 1.f;
  int64_t row_offset = 0;
  std::shared_ptr<const void> keep;  // keeps the source (an opened LoRA file) alive while the delta is set
  bool same_as(const WeightDelta& o) const {
    return up.storage_id() == o.up.storage_id() && down.storage_id() == o.down.storage_id() && scale == o.scale &&
           row_offset == o.row_offset;
  }
};

// What set_deltas() changed.
struct DeltaUpdate {
  int64_t weights_adapted = 0;  // weights that now carry a delta
  int64_t weights_changed = 0;  // weights whose delta list changed (dropped from the cache; merged again on use)
  uint64_t bytes_before = 0;    // bytes of merged copies held before and after the update
};

class WeightStore {
 public:
  // Backed by an opened file (not owned; must outlive the store).
  WeightStore(WeightFile* file, Backend& backend);
  // Backed by tensors held in memory (tests, tiny models).
  WeightStore(std::map<std::string, Tensor> tensors, Backend& backend);
  // Adds a file that supplies every tensor whose name starts with `prefix` (separate U-Net / VAE / text-encoder
  // files), taking precedence over the files added before it for those names. Not owned.
  void add_file(const std::string& prefix, WeightFile* file);

  Backend& backend() const { return *backend_; }
  bool has(const std::string& name) const;
  // The tensor as stored (or as converted on load). Throws InvalidFile naming the tensor if absent.
  const Tensor& raw(const std::string& name) const;
  // The backend-prepared tensor (cached). Throws InvalidFile naming the tensor if absent.
  const Tensor& get(const std::string& name);
  // Same, or nullptr when the tensor is absent.
  const Tensor* get_opt(const std::string& name);
  // All names starting with prefix, in stable order.
  std::vector<std::string> names_with_prefix(const std::string& prefix) const;

  // Replaces a tensor's stored value (conversion on load). The new tensor must own its data.
  void override_tensor(const std::string& name, Tensor t);
  // Drops cached prepared tensors under prefix and advises the file that their pages are not needed.
  void release(const std::string& prefix);
  // Only advises the file(s) that the pages under prefix are not needed now (prepared views stay valid: the OS
  // maps the pages again from its page cache on the next access).
  void release_pages(const std::string& prefix);
  // Reads the file pages under prefix into the page cache ahead of use (WeightFile::prefetch); a no-op for
  // tensors held in memory. Safe to call from another thread while the store is used (it only reads the
  // source files' immutable tensor tables).
  void prefetch(const std::string& prefix, const std::atomic<bool>* stop = nullptr) const;
  // Bytes held by prepared copies that do not alias the source (diagnostics).
  size_t cached_entries() const { return cache_.size(); }

  // ---- the weight-adapter point (LoRA) ----
  // Sets the deltas applied to weights, replacing the previous set (name -> deltas; an empty map removes all).
  // Only weights whose delta list changed lose their merged copy and prepared tensor; every other weight (and the
  // model file) is untouched, so switching LoRAs costs the affected weights only. A weight with deltas is merged
  // on its next get(): W' = W + sum(scale * up @ down), computed in f32 row by row and stored back in W's own
  // type (f16/bf16 rounded, quantized types re-quantized with the same block format), so it takes the kernels'
  // fast path and the memory of one copy of each adapted weight. Throws InvalidArgument naming the weight when a
  // delta's shape does not fit (nothing is changed then).
  DeltaUpdate set_deltas(std::map<std::string, std::vector<WeightDelta>> deltas);
  const std::map<std::string, std::vector<WeightDelta>>& deltas() const { return deltas_; }
  // Bytes of the merged copies currently held (memory added by the adapters, beyond the model file).
  uint64_t merged_bytes() const;
  // W' of a weight as get() would use it, as a host tensor in the weight's type (tests; merges if needed).
  const Tensor& adapted(const std::string& name);

 private:
  // (prefix, file): a name comes from the LAST file whose prefix it starts with
  const WeightFile* source(const std::string& name) const;
  std::vector<std::pair<std::string, WeightFile*>> files_;
  std::map<std::string, Tensor> mem_;
  std::map<std::string, Tensor> overrides_;
  std::map<std::string, Tensor> cache_;
  std::map<std::string, std::vector<WeightDelta>> deltas_;
  std::map<std::string, Tensor> merged_;  // host copies W + deltas, in W's type (kept across release())
  Backend* backend_;
};

// Converts the weights of `store` (matrices and convolution kernels under the given prefixes) to `type` on load.
// Rows that do not fit a K-quant's 256-element blocks use q5_0 / q5_1 / q8_0 (for q4_K / q5_K / q6_K); rows that
// fit no block size (e.g. 4*3*3 = 36) become f16 (bf16 stays bf16).
// on_tensor(done, total) is polled after each tensor; returning false aborts (Error Aborted).
void convert_weights(WeightStore& store, const std::vector<std::string>& prefixes, DType type,
                     const std::function<bool(int64_t, int64_t)>& on_tensor);

// W + sum(delta) for one weight, computed in f32 per row and stored in W's type (or in `type` when not Invalid).
// Exposed for tests that measure the error of storing the merged weight in f16/bf16/quantized types.
Tensor merge_deltas(const std::string& name, const Tensor& w, const std::vector<WeightDelta>& deltas,
                    DType type = DType::Invalid);

// Debug dumps: when the environment variable SDN_DUMP_DIR is set, dump(name, t) writes t (as f32) to
// $SDN_DUMP_DIR/<name>.npy. A no-op otherwise.
bool dump_enabled();
void dump(const std::string& name, const Tensor& t);

}  // namespace sdn
