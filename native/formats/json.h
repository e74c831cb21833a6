// A small, strict JSON parser for file headers (safetensors headers, diffusers configs, sharded indexes).
// Bounded: nesting depth <= kMaxDepth and input size <= the caller's limit. Well-formedness is fully checked
// (RFC 8259 grammar, UTF-8 escapes incl. surrogate pairs, no trailing garbage); failures throw
// sdn::Error(InvalidFile) with "<what>: invalid JSON at byte N: <problem>".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sdn {
namespace json {

constexpr int kMaxDepth = 64;
// At most this many values per document: bounds memory at ~150 bytes per value (about 80 MB) whatever the input
// size. A real safetensors header has about 10 values per tensor (SDXL: ~25,000 values).
constexpr size_t kMaxValues = 512u << 10;

struct Value {
  enum Type { Null, Bool, Number, String, Array, Object } type = Null;
  bool b = false;
  double num = 0;
  bool is_int = false;  // an integer literal (no fraction/exponent) that fits int64
  int64_t i = 0;
  std::string str;
  std::vector<Value> arr;
  std::vector<std::pair<std::string, Value>> obj;  // in file order; duplicates kept (see has_duplicate_keys)

  bool is_null() const { return type == Null; }
  bool is_object() const { return type == Object; }
  bool is_array() const { return type == Array; }
  bool is_string() const { return type == String; }
  bool is_number() const { return type == Number; }
  bool is_bool() const { return type == Bool; }
  // First member with this key, or nullptr.
  const Value* find(const std::string& key) const;
};

// Parses `len` bytes. `what` names the source in error messages (e.g. "model.safetensors header").
Value parse(const char* text, size_t len, const std::string& what);
inline Value parse(const std::string& s, const std::string& what) { return parse(s.data(), s.size(), what); }

// Reads and parses a whole file (at most max_bytes; larger files are InvalidFile). NotFound if missing.
Value parse_file(const std::string& path, size_t max_bytes = 16u << 20);

}  // namespace json
}  // namespace sdn
