// Internal: the raw readers behind WeightFile. Each returns the tensors as stored (names as in the file, shapes in
// torch order, bytes inside the memory map), after checking every length, offset and shape against the file.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "formats/mapped_file.h"

namespace sdn {

// How stored bytes become a tensor the kernels take.
enum class Conv { None, F64toF32, I64toI32, E4M3toF16, E5M2toF16 };

struct RawTensor {
  std::string name;             // as stored in the file
  std::string component;        // diffusers sub-folder ("unet", "vae", "text_encoder", ...) or ""
  DType dtype = DType::F32;     // type of the tensor as presented (after `conv`)
  Conv conv = Conv::None;
  std::vector<int64_t> shape;   // torch order
  const uint8_t* data = nullptr;
  size_t nbytes = 0;            // stored bytes
  size_t offset = 0;            // byte offset in `map`
  std::shared_ptr<MappedFile> map;  // null for in-memory buffers (fuzzing)
};

// Metadata key-values kept per file (a hostile file may declare up to a million); the rest are counted only.
constexpr size_t kMaxMetadataEntries = 4096;

struct RawModel {
  std::string format;  // "safetensors", "gguf"
  std::vector<RawTensor> tensors;
  std::map<std::string, std::string> metadata;  // at most kMaxMetadataEntries
  size_t metadata_omitted = 0;                  // entries beyond that limit
  std::string merges;                 // embedded tokenizer merges ("" if none)
  std::vector<std::string> skipped;   // tensors left out (unsupported element types like BOOL/U8)
};

// safetensors: `what` names the file in messages; `map` may be null.
RawModel parse_safetensors(const uint8_t* data, size_t size, const std::string& what,
                           const std::shared_ptr<MappedFile>& map);
RawModel read_safetensors(const std::string& path);          // one file
RawModel read_safetensors_index(const std::string& path);    // *.safetensors.index.json (sharded)

// GGUF v2/v3.
RawModel parse_gguf(const uint8_t* data, size_t size, const std::string& what, const std::shared_ptr<MappedFile>& map);
RawModel read_gguf(const std::string& path);

// PyTorch zip checkpoints (.ckpt/.pt/.bin), read with a restricted pickle interpreter that never executes code.
RawModel parse_ckpt(const uint8_t* data, size_t size, const std::string& what, const std::shared_ptr<MappedFile>& map);

// Overflow-checked helpers shared by the readers.
bool checked_numel(const std::vector<int64_t>& shape, int64_t* out);
// Bytes of a tensor of `shape` and `t` (torch order; rows = last dim); false if overflow / not block-aligned.
bool checked_nbytes(DType t, const std::vector<int64_t>& shape, uint64_t* out);
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace sdn
