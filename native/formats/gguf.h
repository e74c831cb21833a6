// GGUF constants and the writer used by the converter (the reader is in readers.h).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace sdn {
namespace gguf {

constexpr uint32_t kMagic = 0x46554747u;  // "GGUF" little-endian
constexpr uint32_t kDefaultAlignment = 32;
enum ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
  ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// Key under which the CLIP BPE merges text (merges.txt content) is stored, as one STRING.
constexpr const char* kMergesKey = "tokenizer.clip.merges";

struct TensorDesc {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;  // torch order (written reversed, as ne)
  uint64_t nbytes = 0;
  uint64_t offset = 0;         // relative to the data section (filled by Writer::layout)
};

// Streams a GGUF v3 file: header, string/u32 KVs, tensor infos, then tensor data in info order, each tensor
// aligned to `alignment` (zero padding). Throws Io on write errors.
class Writer {
 public:
  explicit Writer(uint32_t alignment = kDefaultAlignment) : alignment_(alignment) {}
  void add_string(const std::string& key, const std::string& value) { kv_str_.emplace_back(key, value); }
  void add_u32(const std::string& key, uint32_t value) { kv_u32_.emplace_back(key, value); }
  void add_tensor(const TensorDesc& t) { tensors_.push_back(t); }
  const std::vector<TensorDesc>& tensors() const { return tensors_; }
  // Writes header + infos + padding; afterwards call write_data for each tensor in order, then finish().
  void begin(std::FILE* f, const std::string& path);
  void write_data(size_t index, const void* data, size_t nbytes);
  // Appends the data of tensor `index` in pieces (total must equal its nbytes); call end_tensor after.
  void write_piece(const void* data, size_t nbytes);
  void end_tensor(size_t index);
  uint64_t bytes_written() const { return written_; }

 private:
  void put(const void* p, size_t n);
  void put_u32(uint32_t v) { put(&v, 4); }
  void put_u64(uint64_t v) { put(&v, 8); }
  void put_str(const std::string& s) {
    put_u64(s.size());
    put(s.data(), s.size());
  }
  void pad_to(uint64_t multiple);
  uint32_t alignment_;
  std::vector<std::pair<std::string, std::string>> kv_str_;
  std::vector<std::pair<std::string, uint32_t>> kv_u32_;
  std::vector<TensorDesc> tensors_;
  std::FILE* f_ = nullptr;
  std::string path_;
  uint64_t written_ = 0, data_start_ = 0, piece_ = 0;
};

}  // namespace gguf
}  // namespace sdn
