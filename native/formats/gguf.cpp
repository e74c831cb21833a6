// GGUF v2/v3 reader (ENGINE-FACTS section 2) and writer.
#include "formats/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include "formats/readers.h"
#include "sdn/error.h"

namespace sdn {

namespace {

constexpr uint64_t kGgufMaxTensors = 65536;
constexpr uint64_t kGgufMaxKeys = 65536;

class Cursor {
 public:
  Cursor(const uint8_t* d, size_t n, const std::string& what) : d_(d), n_(n), what_(what) {}
  [[noreturn]] void fail(const std::string& msg) const {
    throw_error(ErrorCode::InvalidFile, what_ + ": " + msg + " (at byte " + std::to_string(pos_) + ")");
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }
  void need(uint64_t k, const char* ctx) const {
    if (k > remaining()) fail(std::string("truncated file: ") + ctx + " runs past the end of the file");
  }
  template <typename T>
  T get(const char* ctx) {
    need(sizeof(T), ctx);
    T v;
    std::memcpy(&v, d_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const char* ctx) {
    uint64_t len = get<uint64_t>(ctx);
    if (len > remaining())
      fail(std::string(ctx) + ": string length " + std::to_string(len) + " runs past the end of the file");
    std::string s(reinterpret_cast<const char*>(d_ + pos_), (size_t)len);
    pos_ += (size_t)len;
    return s;
  }
  void skip(uint64_t k, const char* ctx) {
    need(k, ctx);
    pos_ += (size_t)k;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& what_;
};

int scalar_size(uint32_t t) {
  switch (t) {
    case gguf::UINT8: case gguf::INT8: case gguf::BOOL: return 1;
    case gguf::UINT16: case gguf::INT16: return 2;
    case gguf::UINT32: case gguf::INT32: case gguf::FLOAT32: return 4;
    case gguf::UINT64: case gguf::INT64: case gguf::FLOAT64: return 8;
    default: return 0;
  }
}

const char* type_name(uint32_t t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                "u64", "i64", "f64"};
  return t <= 12 ? names[t] : "?";
}

// Reads one scalar value and renders it as text; validates BOOL.
std::string read_scalar(Cursor& c, uint32_t t, const std::string& key) {
  switch (t) {
    case gguf::UINT8: return std::to_string(c.get<uint8_t>("value"));
    case gguf::INT8: return std::to_string(c.get<int8_t>("value"));
    case gguf::UINT16: return std::to_string(c.get<uint16_t>("value"));
    case gguf::INT16: return std::to_string(c.get<int16_t>("value"));
    case gguf::UINT32: return std::to_string(c.get<uint32_t>("value"));
    case gguf::INT32: return std::to_string(c.get<int32_t>("value"));
    case gguf::UINT64: return std::to_string(c.get<uint64_t>("value"));
    case gguf::INT64: return std::to_string(c.get<int64_t>("value"));
    case gguf::FLOAT32: {
      char buf[48];
      std::snprintf(buf, sizeof buf, "%.9g", (double)c.get<float>("value"));
      return buf;
    }
    case gguf::FLOAT64: {
      char buf[48];
      std::snprintf(buf, sizeof buf, "%.17g", c.get<double>("value"));
      return buf;
    }
    case gguf::BOOL: {
      uint8_t b = c.get<uint8_t>("value");
      if (b > 1) c.fail("key \"" + key + "\": BOOL value " + std::to_string(b) + " is not 0 or 1");
      return b ? "true" : "false";
    }
    case gguf::STRING: return c.str("string value");
    default: c.fail("key \"" + key + "\": unknown value type " + std::to_string(t));
  }
}

}  // namespace

RawModel parse_gguf(const uint8_t* data, size_t size, const std::string& what, const std::shared_ptr<MappedFile>& map) {
  Cursor c(data, size, what);
  if (size < 4) c.fail("truncated file: too short for a GGUF header");
  uint32_t magic = c.get<uint32_t>("magic");
  if (magic != gguf::kMagic) c.fail("bad magic: not a GGUF file");
  uint32_t version = c.get<uint32_t>("header");
  if (version == 1) c.fail("GGUF version 1 is not supported (re-convert the file with a current tool)");
  if (version != 2 && version != 3)
    c.fail("unsupported GGUF version " + std::to_string(version) + " (big-endian or corrupt file?)");
  uint64_t n_tensors = c.get<uint64_t>("header");
  uint64_t n_kv = c.get<uint64_t>("header");
  // Each KV needs at least 8 (key len) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 4 + 8 bytes.
  if (n_kv > c.remaining() / 13) c.fail("key/value count " + std::to_string(n_kv) + " cannot fit in the file");
  if (n_tensors > c.remaining() / 24) c.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the file");
  // Hard caps far above any real model (SDXL has ~2,500 tensors, GGUF files a few dozen keys) keep the parse's
  // memory and time bounded for hostile files (issue 13: 2^20 keys took 964 MB and 17.6 s).
  if (n_tensors > kGgufMaxTensors)
    c.fail("tensor count " + std::to_string(n_tensors) + " exceeds the limit of " + std::to_string(kGgufMaxTensors));
  if (n_kv > kGgufMaxKeys)
    c.fail("key/value count " + std::to_string(n_kv) + " exceeds the limit of " + std::to_string(kGgufMaxKeys));

  RawModel m;
  m.format = "gguf";
  uint64_t alignment = gguf::kDefaultAlignment;
  std::set<std::string> keys;
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str("key");
    if (key.empty()) c.fail("empty key");
    if (key.size() > 65535) c.fail("key of " + std::to_string(key.size()) + " bytes (the GGUF limit is 65535)");
    if (!keys.insert(key).second) c.fail("duplicate key \"" + key.substr(0, 200) + "\"");
    std::string shown = key.substr(0, 200);
    uint32_t t = c.get<uint32_t>("value type");
    if (t == gguf::ARRAY) {
      uint32_t et = c.get<uint32_t>("array type");
      uint64_t count = c.get<uint64_t>("array count");
      if (et == gguf::ARRAY) c.fail("key \"" + shown + "\": nested arrays are not supported");
      int es = et == gguf::STRING ? 8 : scalar_size(et);
      if (es == 0) c.fail("key \"" + shown + "\": unknown array element type " + std::to_string(et));
      if (count > c.remaining() / (uint64_t)es)
        c.fail("key \"" + shown + "\": array of " + std::to_string(count) + " elements runs past the end of the file");
      std::string rendered;
      std::string joined;  // string arrays: lines joined with '\n' (merges)
      bool is_merges = key == gguf::kMergesKey || key == "tokenizer.ggml.merges";
      for (uint64_t i = 0; i < count; ++i) {
        std::string v = read_scalar(c, et, shown);
        if (is_merges && et == gguf::STRING) {
          joined += v;
          joined += '\n';
        } else if (i < 16) {
          rendered += (i ? "," : "") + (et == gguf::STRING ? "\"" + v.substr(0, 64) + "\"" : v);
        }
      }
      if (is_merges && et == gguf::STRING) {
        if (key == gguf::kMergesKey || m.merges.empty()) m.merges = joined;
        continue;
      }
      if (m.metadata.size() >= kMaxMetadataEntries) m.metadata_omitted++;
      else m.metadata[key] = count <= 16 ? "[" + rendered + "]" : "[" + std::to_string(count) + " x " + type_name(et) + "]";
      continue;
    }
    if (scalar_size(t) == 0 && t != gguf::STRING) c.fail("key \"" + shown + "\": unknown value type " + std::to_string(t));
    if (key == "general.alignment") {
      if (t != gguf::UINT32) c.fail("general.alignment must be a UINT32, found type " + std::to_string(t));
      uint32_t a = c.get<uint32_t>("value");
      if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20))
        c.fail("general.alignment " + std::to_string(a) + " is not a power of two up to 1 MiB");
      alignment = a;
      m.metadata[key] = std::to_string(a);
      continue;
    }
    std::string v = read_scalar(c, t, shown);
    if (key == gguf::kMergesKey) {
      m.merges = v;
      continue;
    }
    if (m.metadata.size() >= kMaxMetadataEntries) m.metadata_omitted++;
    else m.metadata[key] = std::move(v);
  }

  struct Info {
    uint64_t offset, nbytes;
  };
  std::vector<Info> infos;
  std::set<std::string> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    RawTensor t;
    t.name = c.str("tensor name");
    std::string tn = "tensor \"" + t.name.substr(0, 200) + "\"";
    if (t.name.empty()) c.fail("tensor " + std::to_string(k) + " has an empty name");
    if (!names.insert(t.name).second) c.fail("duplicate " + tn);
    uint32_t nd = c.get<uint32_t>("tensor info");
    if (nd > 4) c.fail(tn + ": n_dims " + std::to_string(nd) + " (at most 4)");
    std::vector<int64_t> ne(nd);
    for (uint32_t i = 0; i < nd; ++i) {
      uint64_t d = c.get<uint64_t>("tensor info");
      if (d > (uint64_t)INT64_MAX) c.fail(tn + ": dimension " + std::to_string(d) + " is too large");
      ne[i] = (int64_t)d;
    }
    uint32_t type = c.get<uint32_t>("tensor info");
    if (!dtype_known(type)) c.fail(tn + ": unknown or unsupported type id " + std::to_string(type));
    uint64_t off = c.get<uint64_t>("tensor info");
    t.shape.assign(ne.rbegin(), ne.rend());
    t.dtype = (DType)type;
    int64_t numel;
    if (!checked_numel(t.shape, &numel)) c.fail(tn + ": dimensions " + shape_string(ne) + " overflow");
    const DTypeTraits& tr = dtype_traits(t.dtype);
    int64_t row = ne.empty() ? 1 : ne[0];
    if (row % tr.block_size != 0)
      c.fail(tn + ": row length " + std::to_string(row) + " is not a multiple of the " + tr.name + " block size " +
             std::to_string(tr.block_size));
    uint64_t nbytes;
    if (!checked_nbytes(t.dtype, t.shape, &nbytes)) c.fail(tn + ": byte size overflows");
    if (off % alignment != 0)
      c.fail(tn + ": data offset " + std::to_string(off) + " is not a multiple of the alignment " +
             std::to_string(alignment));
    if (t.dtype == DType::F64) t.conv = Conv::F64toF32, t.dtype = DType::F32;
    else if (t.dtype == DType::I64) t.conv = Conv::I64toI32, t.dtype = DType::I32;
    t.nbytes = (size_t)nbytes;
    infos.push_back({off, nbytes});
    m.tensors.push_back(std::move(t));
  }
  uint64_t data_start = c.pos();
  data_start += (alignment - data_start % alignment) % alignment;
  if (data_start > size) {
    if (n_tensors > 0) c.fail("truncated file: the tensor data section starts past the end of the file");
    data_start = size;
  }
  uint64_t data_size = size - data_start;
  std::vector<size_t> order(infos.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = 0; i < infos.size(); ++i) {
    RawTensor& t = m.tensors[i];
    if (infos[i].offset > data_size || infos[i].nbytes > data_size - infos[i].offset)
      throw_error(ErrorCode::InvalidFile, what + ": tensor \"" + t.name.substr(0, 200) + "\": data [" +
                                              std::to_string(infos[i].offset) + ", +" + std::to_string(infos[i].nbytes) +
                                              ") runs past the end of the file (data section " +
                                              std::to_string(data_size) + " bytes): truncated file");
    t.offset = (size_t)(data_start + infos[i].offset);
    t.data = data + t.offset;
    t.map = map;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return infos[a].offset < infos[b].offset; });
  uint64_t max_end = 0;
  size_t max_idx = 0;
  for (size_t i : order) {
    if (infos[i].nbytes == 0) continue;
    if (infos[i].offset < max_end)
      throw_error(ErrorCode::InvalidFile, what + ": tensors \"" + m.tensors[max_idx].name.substr(0, 200) + "\" and \"" +
                                              m.tensors[i].name.substr(0, 200) + "\" overlap");
    max_end = infos[i].offset + infos[i].nbytes;
    max_idx = i;
  }
  return m;
}

RawModel read_gguf(const std::string& path) {
  auto map = MappedFile::open(path);
  return parse_gguf(map->data(), map->size(), path, map);
}

// ---------------------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------------------
namespace gguf {

void Writer::put(const void* p, size_t n) {
  if (n && std::fwrite(p, 1, n, f_) != n)
    throw_error(ErrorCode::Io, path_ + ": write failed (" + std::strerror(errno) + "): disk full?");
  written_ += n;
}

void Writer::pad_to(uint64_t multiple) {
  static const uint8_t zeros[64] = {0};
  uint64_t pad = (multiple - written_ % multiple) % multiple;
  while (pad) {
    size_t k = (size_t)std::min<uint64_t>(pad, sizeof zeros);
    put(zeros, k);
    pad -= k;
  }
}

void Writer::begin(std::FILE* f, const std::string& path) {
  f_ = f;
  path_ = path;
  written_ = 0;
  uint64_t off = 0;
  for (TensorDesc& t : tensors_) {
    t.offset = off;
    off += t.nbytes;
    off += (alignment_ - off % alignment_) % alignment_;
  }
  put_u32(kMagic);
  put_u32(3);
  put_u64(tensors_.size());
  bool has_align = alignment_ != kDefaultAlignment;
  put_u64(kv_str_.size() + kv_u32_.size() + (has_align ? 1 : 0));
  if (has_align) {
    put_str("general.alignment");
    put_u32(UINT32);
    put_u32(alignment_);
  }
  for (auto& kv : kv_u32_) {
    put_str(kv.first);
    put_u32(UINT32);
    put_u32(kv.second);
  }
  for (auto& kv : kv_str_) {
    put_str(kv.first);
    put_u32(STRING);
    put_str(kv.second);
  }
  for (const TensorDesc& t : tensors_) {
    put_str(t.name);
    uint32_t nd = (uint32_t)t.shape.size();
    if (nd == 0) {  // scalars are written as one element
      put_u32(1);
      put_u64(1);
    } else {
      put_u32(nd);
      for (uint32_t i = 0; i < nd; ++i) put_u64((uint64_t)t.shape[nd - 1 - i]);
    }
    put_u32((uint32_t)t.dtype);
    put_u64(t.offset);
  }
  pad_to(alignment_);
  data_start_ = written_;
  piece_ = 0;
}

void Writer::write_piece(const void* data, size_t nbytes) {
  put(data, nbytes);
  piece_ += nbytes;
}

void Writer::end_tensor(size_t index) {
  SDN_CHECK(index < tensors_.size(), "gguf writer: bad tensor index");
  const TensorDesc& t = tensors_[index];
  SDN_CHECK(piece_ == t.nbytes, "gguf writer: wrong byte count for " + t.name);
  SDN_CHECK(written_ - data_start_ == t.offset + t.nbytes, "gguf writer: tensors written out of order");
  piece_ = 0;
  pad_to(alignment_);
}

void Writer::write_data(size_t index, const void* data, size_t nbytes) {
  write_piece(data, nbytes);
  end_tensor(index);
}

}  // namespace gguf
}  // namespace sdn
