// Weight access for the models: a name -> tensor source (a WeightFile, or an in-memory map for tests), with
// optional conversion on load (LoadOptions.weight_type) and a cache of backend-prepared tensors.
//
// Every weight is fetched through Backend::prepare_weight() exactly once and cached until release(prefix),
// which drops the cached copies and tells the source the pages are not needed now (memory-mapped files).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/tensor.h"

namespace sdn {

class WeightFile;

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
  // Bytes held by prepared copies that do not alias the source (diagnostics).
  size_t cached_entries() const { return cache_.size(); }

 private:
  // (prefix, file): a name comes from the LAST file whose prefix it starts with
  const WeightFile* source(const std::string& name) const;
  std::vector<std::pair<std::string, WeightFile*>> files_;
  std::map<std::string, Tensor> mem_;
  std::map<std::string, Tensor> overrides_;
  std::map<std::string, Tensor> cache_;
  Backend* backend_;
};

// Converts the weights of `store` (matrices and convolution kernels under the given prefixes) to `type` on load.
// Rows that do not fit a K-quant's 256-element blocks use q5_0 / q5_1 / q8_0 (for q4_K / q5_K / q6_K); rows that
// fit no block size (e.g. 4*3*3 = 36) become f16 (bf16 stays bf16).
// on_tensor(done, total) is polled after each tensor; returning false aborts (Error Aborted).
void convert_weights(WeightStore& store, const std::vector<std::string>& prefixes, DType type,
                     const std::function<bool(int64_t, int64_t)>& on_tensor);

// Debug dumps: when the environment variable SDN_DUMP_DIR is set, dump(name, t) writes t (as f32) to
// $SDN_DUMP_DIR/<name>.npy. A no-op otherwise.
bool dump_enabled();
void dump(const std::string& name, const Tensor& t);

}  // namespace sdn
