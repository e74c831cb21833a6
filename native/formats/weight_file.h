// A model's weights, opened from a .safetensors file (or sharded index), a .gguf file, or a diffusers folder,
// presented under ONE naming: the original LDM checkpoint names (model.diffusion_model.*, first_stage_model.*,
// cond_stage_model.transformer.text_model.*). Tensor data stays in a read-only memory map unless it must be
// converted (dtypes the kernels do not take, e.g. F64/I64/F8, become F32/F16 heap copies).
//
// Every length, offset and shape read from a file is validated; failures throw sdn::Error(InvalidFile) naming
// the file, the tensor and the problem.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "sdn/sdn.h"

namespace sdn {

class WeightFile {
 public:
  virtual ~WeightFile() = default;

  // Opens a file (.safetensors, .safetensors.index.json, .gguf, PyTorch zip .ckpt/.pt/.bin) or a diffusers folder;
  // format from content.
  static std::unique_ptr<WeightFile> open(const std::string& path);

  // Canonical (LDM) names, in a stable order.
  virtual const std::vector<std::string>& names() const = 0;
  virtual bool has(const std::string& name) const = 0;
  // The tensor as stored (dtype may be any weight type). Throws InvalidFile "<file>: no tensor <name>" if absent.
  virtual const Tensor& get(const std::string& name) const = 0;
  // String key-values (GGUF metadata, safetensors __metadata__, diffusers config values that matter).
  virtual const std::map<std::string, std::string>& metadata() const = 0;
  // Recognised family/variant etc. (same as inspect_model()).
  virtual const ModelInfo& info() const = 0;
  // CLIP BPE merges text if the file/folder carries it (GGUF key, diffusers tokenizer/merges.txt), else "".
  virtual std::string tokenizer_merges() const = 0;
  // Tells the OS the pages of all tensors whose name starts with `prefix` are not needed now (they are read
  // again from the file if used later). Lowers resident memory between pipeline stages.
  virtual void release(const std::string& prefix) = 0;
  // Reads the pages of all tensors whose name starts with `prefix` into the page cache ahead of use (large
  // sequential reads instead of one page fault at a time; ranges already in the page cache are skipped). Blocks
  // until the reads are issued, in chunks of at most 32 MiB; stops early when `stop` becomes true. The resident
  // set of the process does not grow (nothing is mapped into it).
  virtual void prefetch(const std::string& prefix, const std::atomic<bool>* stop = nullptr) const = 0;
};

}  // namespace sdn
