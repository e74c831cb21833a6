// safetensors reader (ENGINE-FACTS section 1) and the sharded *.safetensors.index.json variant.
#include <algorithm>
#include <cstring>
#include <set>

#include "formats/json.h"
#include "formats/readers.h"
#include "sdn/error.h"

namespace sdn {

bool checked_numel(const std::vector<int64_t>& shape, int64_t* out) {
  // The product of the non-zero dimensions must fit too: [0, 2^62, 2^62, 2^62] has no elements, but its strides
  // (and every size computed from its dimensions) overflow.
  int64_t n = 1, nz = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (__builtin_mul_overflow(nz, d > 0 ? d : 1, &nz)) return false;
    n = d == 0 ? 0 : n * d;  // cannot overflow: |n| <= nz
  }
  *out = n;
  return true;
}

bool checked_nbytes(DType t, const std::vector<int64_t>& shape, uint64_t* out) {
  const DTypeTraits& tr = dtype_traits(t);
  if (tr.block_size <= 0) return false;
  int64_t n;
  if (!checked_numel(shape, &n)) return false;
  int64_t row = shape.empty() ? 1 : shape.back();
  if (row % tr.block_size != 0) return false;
  uint64_t blocks = (uint64_t)n / (uint64_t)tr.block_size;
  uint64_t bytes;
  if (__builtin_mul_overflow(blocks, (uint64_t)tr.block_bytes, &bytes)) return false;
  *out = bytes;
  return true;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

struct StDtype {
  const char* name;
  int size;
  DType dtype;  // Invalid = skipped
  Conv conv;
};
// Element types of the safetensors format and how we present them.
const StDtype kStDtypes[] = {
    {"F32", 4, DType::F32, Conv::None},        {"F16", 2, DType::F16, Conv::None},
    {"BF16", 2, DType::BF16, Conv::None},      {"F64", 8, DType::F32, Conv::F64toF32},
    {"I8", 1, DType::I8, Conv::None},          {"I16", 2, DType::I16, Conv::None},
    {"I32", 4, DType::I32, Conv::None},        {"I64", 8, DType::I32, Conv::I64toI32},
    {"F8_E4M3", 1, DType::F16, Conv::E4M3toF16}, {"F8_E5M2", 1, DType::F16, Conv::E5M2toF16},
    {"BOOL", 1, DType::Invalid, Conv::None},   {"U8", 1, DType::Invalid, Conv::None},
    {"U16", 2, DType::Invalid, Conv::None},    {"U32", 4, DType::Invalid, Conv::None},
    {"U64", 8, DType::Invalid, Conv::None},
};

}  // namespace

RawModel parse_safetensors(const uint8_t* data, size_t size, const std::string& what,
                           const std::shared_ptr<MappedFile>& map) {
  auto bad = [&](const std::string& msg) { throw_error(ErrorCode::InvalidFile, what + ": " + msg); };
  if (size < 8) bad("truncated safetensors file (" + std::to_string(size) + " bytes, the header length alone needs 8)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | data[i];
  if (n > 100000000ull) bad("safetensors header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupt or not a safetensors file)");
  if (n > size - 8) bad("safetensors header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) + " bytes): truncated file");
  if (n < 2) bad("safetensors header too short");
  // A header must be a JSON object; check the first non-space byte before parsing (cheap format sniffing).
  json::Value root = json::parse(reinterpret_cast<const char*>(data + 8), (size_t)n, what + " header");
  if (!root.is_object()) bad("safetensors header is not a JSON object");
  const uint8_t* buf = data + 8 + n;
  uint64_t buf_size = size - 8 - n;

  RawModel m;
  m.format = "safetensors";
  std::set<std::string> seen;
  struct Span {
    uint64_t b, e;
    size_t idx;
  };
  std::vector<Span> spans;
  for (const auto& kv : root.obj) {
    const std::string& name = kv.first;
    const json::Value& v = kv.second;
    if (!seen.insert(name).second) bad("duplicate entry \"" + name + "\" in the header");
    if (name == "__metadata__") {
      if (!v.is_object()) bad("__metadata__ is not an object");
      std::set<std::string> mkeys;
      for (const auto& mk : v.obj) {
        if (!mkeys.insert(mk.first).second) bad("duplicate key \"" + mk.first.substr(0, 200) + "\" in __metadata__");
        if (!mk.second.is_string()) continue;
        if (m.metadata.size() < kMaxMetadataEntries) m.metadata[mk.first] = mk.second.str;
        else m.metadata_omitted++;
      }
      continue;
    }
    std::string tn = "tensor \"" + name.substr(0, 200) + "\"";
    if (name.empty()) bad("tensor with an empty name");
    if (!v.is_object()) bad(tn + ": entry is not an object");
    for (size_t a = 0; a < v.obj.size(); ++a)
      for (size_t b = 0; b < a; ++b)
        if (v.obj[a].first == v.obj[b].first)
          bad(tn + ": key \"" + v.obj[a].first.substr(0, 64) + "\" appears twice in its entry");
    const json::Value* dt = v.find("dtype");
    const json::Value* sh = v.find("shape");
    const json::Value* off = v.find("data_offsets");
    if (!dt || !dt->is_string()) bad(tn + ": missing or non-string \"dtype\"");
    if (!sh || !sh->is_array()) bad(tn + ": missing or non-array \"shape\"");
    if (!off || !off->is_array() || off->arr.size() != 2) bad(tn + ": \"data_offsets\" must be [begin, end]");
    const StDtype* st = nullptr;
    for (const StDtype& d : kStDtypes)
      if (dt->str == d.name) st = &d;
    if (!st) bad(tn + ": unknown dtype \"" + dt->str.substr(0, 32) + "\"");
    std::vector<int64_t> shape;
    for (const json::Value& d : sh->arr) {
      if (!d.is_number() || !d.is_int || d.i < 0) bad(tn + ": shape has a dimension that is not a non-negative integer");
      shape.push_back(d.i);
    }
    if (shape.size() > 4) bad(tn + ": " + std::to_string(shape.size()) + " dimensions (at most 4 are supported)");
    int64_t numel;
    if (!checked_numel(shape, &numel)) bad(tn + ": shape " + shape_string(shape) + " overflows");
    uint64_t want;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)st->size, &want)) bad(tn + ": byte size overflows");
    for (const json::Value& o : off->arr)
      if (!o.is_number() || !o.is_int || o.i < 0) bad(tn + ": data_offsets are not non-negative integers");
    uint64_t b = (uint64_t)off->arr[0].i, e = (uint64_t)off->arr[1].i;
    if (b > e) bad(tn + ": data_offsets begin " + std::to_string(b) + " > end " + std::to_string(e));
    if (e > buf_size)
      bad(tn + ": data_offsets end " + std::to_string(e) + " is past the end of the data (" + std::to_string(buf_size) +
          " bytes): truncated file");
    if (e - b != want)
      bad(tn + ": byte length " + std::to_string(e - b) + " does not match shape " + shape_string(shape) + " x " +
          st->name + " (" + std::to_string(want) + " bytes)");
    if (st->dtype == DType::Invalid) {
      m.skipped.push_back(name);
      continue;
    }
    RawTensor t;
    t.name = name;
    t.dtype = st->dtype;
    t.conv = st->conv;
    t.shape = shape;
    t.data = buf + b;
    t.nbytes = (size_t)(e - b);
    t.offset = (size_t)(8 + n + b);
    t.map = map;
    spans.push_back({b, e, m.tensors.size()});
    m.tensors.push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.b < b.b || (a.b == b.b && a.e < b.e); });
  uint64_t max_end = 0;
  size_t max_idx = 0;
  for (const Span& c : spans) {
    if (c.e == c.b) continue;  // empty tensors take no bytes
    if (c.b < max_end)
      bad("tensors \"" + m.tensors[max_idx].name + "\" and \"" + m.tensors[c.idx].name + "\" overlap (data_offsets)");
    max_end = c.e;
    max_idx = c.idx;
  }
  return m;
}

RawModel read_safetensors(const std::string& path) {
  auto map = MappedFile::open(path);
  return parse_safetensors(map->data(), map->size(), path, map);
}

static std::string dir_of(const std::string& path) {
  size_t s = path.find_last_of('/');
  return s == std::string::npos ? std::string(".") : path.substr(0, s);
}

RawModel read_safetensors_index(const std::string& path) {
  json::Value root = json::parse_file(path, 64u << 20);
  auto bad = [&](const std::string& msg) { throw_error(ErrorCode::InvalidFile, path + ": " + msg); };
  if (!root.is_object()) bad("index is not a JSON object");
  const json::Value* wm = root.find("weight_map");
  if (!wm || !wm->is_object()) bad("index has no \"weight_map\" object");
  std::map<std::string, std::string> want;  // tensor -> shard
  std::vector<std::string> shards;
  for (const auto& kv : wm->obj) {
    if (!kv.second.is_string()) bad("weight_map entry \"" + kv.first + "\" is not a file name");
    const std::string& f = kv.second.str;
    if (f.empty() || f[0] == '/' || f.find("..") != std::string::npos || f.find('\\') != std::string::npos)
      bad("weight_map entry \"" + kv.first + "\" names a file outside the model folder: \"" + f + "\"");
    if (!want.emplace(kv.first, f).second) bad("duplicate tensor \"" + kv.first + "\" in weight_map");
    if (std::find(shards.begin(), shards.end(), f) == shards.end()) shards.push_back(f);
  }
  if (shards.size() > 4096) bad("too many shards");
  RawModel m;
  m.format = "safetensors";
  if (const json::Value* md = root.find("metadata"))
    if (md->is_object())
      for (const auto& kv : md->obj)
        if (kv.second.is_string() && m.metadata.size() < kMaxMetadataEntries) m.metadata[kv.first] = kv.second.str;
  std::string dir = dir_of(path);
  std::set<std::string> names;
  for (const std::string& s : shards) {
    RawModel part = read_safetensors(dir + "/" + s);
    for (auto& kv : part.metadata) m.metadata.emplace(kv.first, kv.second);
    for (auto& sk : part.skipped) m.skipped.push_back(sk);
    for (RawTensor& t : part.tensors) {
      auto it = want.find(t.name);
      if (it == want.end() || it->second != s) continue;  // not listed for this shard: ignore
      if (!names.insert(t.name).second) bad("tensor \"" + t.name + "\" appears in two shards");
      m.tensors.push_back(std::move(t));
    }
  }
  std::set<std::string> skipped(m.skipped.begin(), m.skipped.end());
  for (const auto& kv : want)
    if (!names.count(kv.first) && !skipped.count(kv.first))
      bad("tensor \"" + kv.first + "\" is listed for shard " + kv.second + " but not found in it");
  return m;
}

}  // namespace sdn
