// Model-file layer: JSON, safetensors, GGUF, diffusers folders, name mapping, detection, converter, and the
// corrupt-file corpus (every malformed input must give a typed sdn::Error naming the problem, never a crash).
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "../fuzz/ckpt_zip.h"
#include "../fuzz/fuzz_adapters_body.h"
#include "../fuzz/fuzz_model_body.h"
#include "core/quant.h"
#include "formats/files.h"
#include "formats/gguf.h"
#include "formats/json.h"
#include "formats/mapped_file.h"
#include "formats/model_files.h"
#include "formats/names.h"
#include "formats/readers.h"
#include "formats/weight_file.h"
#include "sdn/sdn.h"
#include "test.h"

using namespace sdn;

namespace {

std::string repo_root() {
  std::string f = __FILE__;  // <root>/native/tests/test_formats.cpp
  size_t p = f.rfind("/native/tests/");
  if (p != std::string::npos) return f.substr(0, p);
  return ".";
}

// A private temp folder for this process, removed at exit.
struct TempDir {
  std::string dir;
  ~TempDir() {
    if (!dir.empty() && dir.rfind("/tmp/sdn_formats_", 0) == 0) std::system(("rm -rf '" + dir + "'").c_str());
  }
};
std::string temp_dir() {
  static TempDir t;
  if (t.dir.empty()) {
    char tmpl[] = "/tmp/sdn_formats_XXXXXX";
    char* d = mkdtemp(tmpl);
    if (!d) SDN_FAIL("mkdtemp failed");
    t.dir = d;
  }
  return t.dir;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), (std::streamsize)bytes.size());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[(size_t)i] = (char)(v >> (8 * i));
  return s;
}
std::string le32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[(size_t)i] = (char)(v >> (8 * i));
  return s;
}

// safetensors from a header JSON text and a data buffer.
std::string st_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

struct StT {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string data;
};
std::string st_build(const std::vector<StT>& ts, const std::string& metadata = "") {
  std::string h = "{", d;
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":" + metadata;
    first = false;
  }
  for (auto& t : ts) {
    h += first ? "" : ",";
    first = false;
    h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) h += (i ? "," : "") + std::to_string(t.shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(d.size()) + "," + std::to_string(d.size() + t.data.size()) + "]}";
    d += t.data;
  }
  h += "}";
  while (h.size() % 8) h += ' ';
  return st_bytes(h, d);
}

std::string f32_bytes(const std::vector<float>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

// Minimal GGUF builder for the corrupt corpus.
struct GgufB {
  std::string kv, infos, data;
  uint64_t n_kv = 0, n_t = 0;
  uint32_t version = 3;
  static std::string str(const std::string& s) { return le64(s.size()) + s; }
  GgufB& kv_str(const std::string& k, const std::string& v) {
    kv += str(k) + le32(8) + str(v);
    ++n_kv;
    return *this;
  }
  GgufB& kv_u32(const std::string& k, uint32_t v) {
    kv += str(k) + le32(4) + le32(v);
    ++n_kv;
    return *this;
  }
  GgufB& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    infos += str(name) + le32((uint32_t)ne.size());
    for (uint64_t d : ne) infos += le64(d);
    infos += le32(type) + le64(offset);
    ++n_t;
    return *this;
  }
  std::string bytes(size_t align = 32) const {
    std::string s = "GGUF" + le32(version) + le64(n_t) + le64(n_kv) + kv + infos;
    while (s.size() % align) s += '\0';
    return s + data;
  }
};

RawModel parse_st(const std::string& b) {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "test.safetensors", nullptr);
}
RawModel parse_gg(const std::string& b) {
  return parse_gguf(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "test.gguf", nullptr);
}

// Expects InvalidFile whose message contains every word of `needles` ('|'-separated alternatives allowed).
template <typename F>
void expect_invalid(F fn, const std::string& needle, const std::string& label) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidFile)
      SDN_FAIL(label << ": expected InvalidFile, got " << error_code_name(e.code()) << ": " << e.what());
    std::string msg = e.what();
    bool any = false;
    size_t b = 0;
    for (;;) {
      size_t p = needle.find('|', b);
      std::string alt = needle.substr(b, p == std::string::npos ? std::string::npos : p - b);
      if (msg.find(alt) != std::string::npos) any = true;
      if (p == std::string::npos) break;
      b = p + 1;
    }
    if (!any) SDN_FAIL(label << ": message does not mention \"" << needle << "\": " << msg);
    return;
  }
  SDN_FAIL(label << ": did not throw");
}

// The tiny SD1 model from scripts/make-tiny-model.js (generated once per run; empty string if node is missing).
std::string tiny_dir(const std::string& dtype) {
  static std::map<std::string, std::string> made;
  auto it = made.find(dtype);
  if (it != made.end()) return it->second;
  std::string out = temp_dir() + "/tiny-" + dtype;
  std::string cmd = "node \"" + repo_root() + "/scripts/make-tiny-model.js\" \"" + out + "\" --dtype " + dtype +
                    " --formats safetensors,gguf,diffusers,ckpt > /dev/null 2>&1";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::fprintf(stderr, "SKIP: could not run node scripts/make-tiny-model.js (rc %d); tiny-model tests skipped\n", rc);
    out = "";
  }
  made[dtype] = out;
  return out;
}

bool quant_available(DType t) {
  float x[256];
  for (int i = 0; i < 256; ++i) x[i] = (float)i / 256.f - 0.5f;
  std::vector<uint8_t> buf(dtype_row_bytes(t, 256));
  try {
    quantize_row(t, x, buf.data(), 256);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------------------
TEST(formats, json_valid) {
  json::Value v = json::parse(R"( {"a": [1, -2, 3.5e2, 0, true, false, null], "s": "x\n\u00e9\ud83d\ude00\/",
                                   "big": 18446744073709551616, "neg": -9223372036854775808, "o": {}} )", "t");
  EXPECT_TRUE(v.is_object());
  const json::Value* a = v.find("a");
  EXPECT_TRUE(a && a->arr.size() == 7);
  EXPECT_TRUE(a->arr[0].is_int && a->arr[0].i == 1);
  EXPECT_TRUE(a->arr[1].is_int && a->arr[1].i == -2);
  EXPECT_TRUE(!a->arr[2].is_int && a->arr[2].num == 350.0);
  EXPECT_TRUE(a->arr[4].is_bool() && a->arr[4].b);
  EXPECT_TRUE(a->arr[6].is_null());
  EXPECT_EQ(v.find("s")->str, std::string("x\n\xc3\xa9\xf0\x9f\x98\x80/"));
  EXPECT_TRUE(!v.find("big")->is_int);  // 2^64 does not fit int64
  EXPECT_TRUE(v.find("neg")->is_int && v.find("neg")->i == INT64_MIN);
  EXPECT_TRUE(v.find("o")->is_object());
}

TEST(formats, json_invalid) {
  const char* bad[] = {"",          "{",           "{\"a\":1,}",     "[1,]",          "{\"a\" 1}",  "[01]",
                       "[1.]",      "[-]",         "[1e]",           "\"abc",         "\"\\x\"",    "\"\\ud800\"",
                       "\"\\udc00\"", "[tru]",     "{} x",           "{1:2}",         "\"\x01\"",   "\"\xc3\"",
                       "\"\xff\"",  "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "nul",         "[1 2]",      "{\"a\":}"};
  for (const char* b : bad) {
    std::string s = b;
    EXPECT_THROWS_CODE(json::parse(s, "bad"), ErrorCode::InvalidFile);
  }
  std::string deep(200, '[');
  deep += std::string(200, ']');
  expect_invalid([&] { json::parse(deep, "deep"); }, "nesting", "deep nesting");
  std::string ok(60, '[');
  ok += std::string(60, ']');
  json::parse(ok, "ok");  // within the bound
  std::string many = "[";
  for (size_t i = 0; i < json::kMaxValues + 10; ++i) many += i ? ",0" : "0";
  many += "]";
  expect_invalid([&] { json::parse(many, "many"); }, "values", "value count bound");
}

// ---------------------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------------------
TEST(formats, safetensors_types_and_conversions) {
  std::vector<float> f = {1.5f, -2.25f, 3.0f, 0.1f, 7.f, -0.f};
  uint16_t h[2] = {f32_to_f16(0.5f), f32_to_f16(-3.f)};
  uint16_t bf[2] = {f32_to_bf16(1.25f), f32_to_bf16(-8.f)};
  double dd[3] = {1.0 / 3.0, -1e10, 2.5};
  int64_t ii[3] = {5, -7, (int64_t)1 << 40};
  uint8_t e4[4] = {0x38, 0xb8, 0x01, 0x7e};  // 1.0, -1.0, 2^-9 (subnormal), 448
  uint8_t e5[2] = {0x3c, 0xc0};              // 1.0, -2.0
  std::vector<StT> ts = {
      {"a.f32", "F32", {2, 3}, f32_bytes(f)},
      {"a.f16", "F16", {2}, std::string(reinterpret_cast<char*>(h), 4)},
      {"a.bf16", "BF16", {1, 2}, std::string(reinterpret_cast<char*>(bf), 4)},
      {"a.f64", "F64", {3}, std::string(reinterpret_cast<char*>(dd), 24)},
      {"a.i64", "I64", {3}, std::string(reinterpret_cast<char*>(ii), 24)},
      {"a.e4m3", "F8_E4M3", {4}, std::string(reinterpret_cast<char*>(e4), 4)},
      {"a.e5m2", "F8_E5M2", {2}, std::string(reinterpret_cast<char*>(e5), 2)},
      {"a.mask", "BOOL", {3}, std::string("\1\0\1", 3)},
      {"a.empty", "F32", {0, 5}, ""},
      {"a.scalar", "F32", {}, f32_bytes({42.f})},
  };
  std::string path = temp_dir() + "/types.safetensors";
  write_file(path, st_build(ts, R"({"format":"pt","k":"v"})"));
  auto wf = WeightFile::open(path);
  EXPECT_EQ(wf->metadata().at("k"), std::string("v"));
  EXPECT_TRUE(!wf->has("a.mask"));  // BOOL tensors are skipped
  const Tensor& a = wf->get("a.f32");
  EXPECT_EQ(a.ndim, 2);
  EXPECT_EQ(a.shape[1], 3);
  EXPECT_TRUE(a.dtype == DType::F32);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.f32()[i], f[(size_t)i]);
  EXPECT_TRUE(wf->get("a.f16").dtype == DType::F16);
  EXPECT_TRUE(wf->get("a.bf16").dtype == DType::BF16);
  Tensor d = wf->get("a.f64");
  EXPECT_TRUE(d.dtype == DType::F32);
  EXPECT_EQ(d.f32()[0], (float)(1.0 / 3.0));
  EXPECT_EQ(d.f32()[1], (float)-1e10);
  const Tensor& i64 = wf->get("a.i64");
  EXPECT_TRUE(i64.dtype == DType::I32);
  EXPECT_EQ(i64.ptr<int32_t>()[1], -7);
  EXPECT_EQ(i64.ptr<int32_t>()[2], INT32_MAX);  // clamped
  Tensor e = wf->get("a.e4m3").to_f32();
  EXPECT_EQ(e.f32()[0], 1.0f);
  EXPECT_EQ(e.f32()[1], -1.0f);
  EXPECT_EQ(e.f32()[2], 1.0f / 512.f);
  EXPECT_EQ(e.f32()[3], 448.f);
  Tensor e5t = wf->get("a.e5m2").to_f32();
  EXPECT_EQ(e5t.f32()[0], 1.0f);
  EXPECT_EQ(e5t.f32()[1], -2.0f);
  EXPECT_EQ(wf->get("a.empty").numel(), 0);
  EXPECT_EQ(wf->get("a.scalar").ndim, 0);
  EXPECT_EQ(wf->get("a.scalar").f32()[0], 42.f);
  EXPECT_THROWS_CODE(wf->get("nope"), ErrorCode::InvalidFile);
  EXPECT_EQ(wf->info().family, std::string("unknown"));
  EXPECT_TRUE(!wf->info().runnable);
}

TEST(formats, missing_and_pickle_files) {
  EXPECT_THROWS_CODE(WeightFile::open(temp_dir() + "/does-not-exist.safetensors"), ErrorCode::NotFound);
  EXPECT_THROWS_CODE(inspect_model(temp_dir() + "/nope/model.gguf"), ErrorCode::NotFound);
  std::string ck = temp_dir() + "/model.ckpt";
  write_file(ck, std::string("PK\x03\x04", 4) + std::string(100, '\0'));
  expect_invalid([&] { WeightFile::open(ck); }, "zip", "zip without a directory");
  std::string legacy = temp_dir() + "/legacy.ckpt";
  write_file(legacy, std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
  try {
    WeightFile::open(legacy);
    SDN_FAIL("legacy ckpt opened");
  } catch (const Error& e) {
    EXPECT_TRUE(e.code() == ErrorCode::Unsupported);
    EXPECT_TRUE(std::string(e.what()).find("safetensors") != std::string::npos);
  }
  std::string junk = temp_dir() + "/junk.bin2";
  write_file(junk, "hello world, not a model");
  EXPECT_THROWS_CODE(WeightFile::open(junk), ErrorCode::InvalidFile);
  std::string empty = temp_dir() + "/empty.safetensors";
  write_file(empty, "");
  EXPECT_THROWS_CODE(WeightFile::open(empty), ErrorCode::InvalidFile);
  std::string emptydir = temp_dir() + "/emptydir";
  mkdir(emptydir.c_str(), 0755);
  EXPECT_THROWS_CODE(WeightFile::open(emptydir), ErrorCode::InvalidFile);
}

// The corrupt-file corpus for safetensors: each case and the word its message must contain.
TEST(formats, safetensors_corrupt_corpus) {
  std::string good = st_build({{"w", "F32", {2, 2}, f32_bytes({1, 2, 3, 4})}});
  parse_st(good);  // sanity
  struct Case {
    std::string label, bytes, needle;
  };
  auto hdr = [](const std::string& json, const std::string& data) {
    std::string h = json;
    while (h.size() % 8) h += ' ';
    return st_bytes(h, data);
  };
  std::string d16 = f32_bytes({1, 2, 3, 4});
  std::vector<Case> cases = {
      {"truncated length", "abc", "truncated"},
      {"huge header length", le64(1ull << 40) + "{}", "100 MB"},
      {"header past end", le64(5000) + "{\"a\":1}", "past the end"},
      {"bad JSON", hdr("{\"w\":{\"dtype\":\"F32\",", d16), "invalid JSON"},
      {"header not object", hdr("[1,2,3]", d16), "not a JSON object"},
      {"offsets past end", hdr(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,32]}})", d16) , "past the end"},
      {"truncated data", good.substr(0, good.size() - 3), "past the end"},
      {"overlap", hdr(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d16), "overlap"},
      {"wrong byte length", hdr(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", d16), "byte length"},
      {"dims overflow", hdr(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", d16), "overflow"},
      {"bytes overflow", hdr(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16]}})", d16), "overflow"},
      {"unknown dtype", hdr(R"({"w":{"dtype":"F128","shape":[4],"data_offsets":[0,16]}})", d16), "unknown dtype"},
      {"negative dim", hdr(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", d16), "non-negative"},
      {"fractional dim", hdr(R"({"w":{"dtype":"F32","shape":[4.5],"data_offsets":[0,16]}})", d16), "non-negative"},
      {"five dims", hdr(R"({"w":{"dtype":"F32","shape":[1,1,1,1,4],"data_offsets":[0,16]}})", d16), "5 dimensions"},
      {"begin > end", hdr(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", d16), "begin"},
      {"offsets not pair", hdr(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", d16), "data_offsets"},
      {"missing dtype", hdr(R"({"w":{"shape":[4],"data_offsets":[0,16]}})", d16), "dtype"},
      {"duplicate name", hdr(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d16), "duplicate"},
      {"metadata not object", hdr(R"({"__metadata__":[1]})", ""), "__metadata__"},
      {"entry not object", hdr(R"({"w":7})", ""), "not an object"},
      {"offset huge", hdr(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551600,18446744073709551615]}})", d16), "non-negative|past the end"},
  };
  for (const Case& c : cases) expect_invalid([&] { parse_st(c.bytes); }, c.needle, c.label);
  // Messages name the file and the tensor.
  try {
    parse_st(cases[8].bytes);
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_TRUE(m.find("test.safetensors") != std::string::npos && m.find("\"w\"") != std::string::npos);
  }
  // Through the file API too (mmap path), e.g. a truncated file.
  std::string p = temp_dir() + "/trunc.safetensors";
  write_file(p, good.substr(0, good.size() - 1));
  EXPECT_THROWS_CODE(WeightFile::open(p), ErrorCode::InvalidFile);
  EXPECT_THROWS_CODE(inspect_model(p), ErrorCode::InvalidFile);
}

TEST(formats, safetensors_sharded_index) {
  std::string dir = temp_dir() + "/sharded";
  mkdir(dir.c_str(), 0755);
  write_file(dir + "/a.safetensors", st_build({{"model.diffusion_model.x", "F32", {2}, f32_bytes({1, 2})}}));
  write_file(dir + "/b.safetensors", st_build({{"model.diffusion_model.y", "F32", {1}, f32_bytes({3})}}));
  write_file(dir + "/m.safetensors.index.json",
             R"({"metadata":{"total_size":12},"weight_map":{"model.diffusion_model.x":"a.safetensors","model.diffusion_model.y":"b.safetensors"}})");
  auto wf = WeightFile::open(dir + "/m.safetensors.index.json");
  EXPECT_EQ(wf->names().size(), (size_t)2);
  EXPECT_EQ(wf->get("model.diffusion_model.y").f32()[0], 3.f);
  write_file(dir + "/bad.safetensors.index.json", R"({"weight_map":{"x":"../etc/passwd"}})");
  expect_invalid([&] { WeightFile::open(dir + "/bad.safetensors.index.json"); }, "outside", "index traversal");
  write_file(dir + "/miss.safetensors.index.json", R"({"weight_map":{"model.diffusion_model.z":"a.safetensors"}})");
  expect_invalid([&] { WeightFile::open(dir + "/miss.safetensors.index.json"); }, "not found", "index missing tensor");
  write_file(dir + "/gone.safetensors.index.json", R"({"weight_map":{"q":"c.safetensors"}})");
  EXPECT_THROWS_CODE(WeightFile::open(dir + "/gone.safetensors.index.json"), ErrorCode::NotFound);
}

// ---------------------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------------------
TEST(formats, gguf_reader_values) {
  GgufB g;
  g.kv_str("general.architecture", "x").kv_u32("general.alignment", 64);
  // every scalar type + arrays
  auto kvraw = [&](const std::string& k, uint32_t t, const std::string& payload) {
    g.kv += GgufB::str(k) + le32(t) + payload;
    ++g.n_kv;
  };
  kvraw("u8", 0, std::string("\x07", 1));
  kvraw("i8", 1, std::string("\xff", 1));
  kvraw("u16", 2, std::string("\x01\x01", 2));
  kvraw("i16", 3, std::string("\xfe\xff", 2));
  kvraw("i32", 5, le32((uint32_t)-5));
  float fl = 0.5f;
  kvraw("f32", 6, std::string(reinterpret_cast<char*>(&fl), 4));
  kvraw("b", 7, std::string("\x01", 1));
  kvraw("u64", 10, le64(1ull << 40));
  kvraw("i64", 11, le64((uint64_t)-3));
  double db = 0.25;
  kvraw("f64", 12, std::string(reinterpret_cast<char*>(&db), 8));
  kvraw("arr", 9, le32(4) + le64(3) + le32(1) + le32(2) + le32(3));
  kvraw("sarr", 9, le32(8) + le64(2) + GgufB::str("p") + GgufB::str("q"));
  kvraw(gguf::kMergesKey, 9, le32(8) + le64(2) + GgufB::str("#version: 0.2") + GgufB::str("a b"));
  g.tensor("model.diffusion_model.w", {4, 2}, 0, 0);
  g.tensor("model.diffusion_model.v", {2}, 1, 64);
  std::vector<float> w = {1, 2, 3, 4, 5, 6, 7, 8};
  g.data = f32_bytes(w) + std::string(32, '\0');
  uint16_t hv[2] = {f32_to_f16(1.f), f32_to_f16(2.f)};
  g.data += std::string(reinterpret_cast<char*>(hv), 4);
  std::string path = temp_dir() + "/values.gguf";
  write_file(path, g.bytes(64));
  auto wf = WeightFile::open(path);
  const auto& md = wf->metadata();
  EXPECT_EQ(md.at("u8"), std::string("7"));
  EXPECT_EQ(md.at("i8"), std::string("-1"));
  EXPECT_EQ(md.at("u16"), std::string("257"));
  EXPECT_EQ(md.at("i16"), std::string("-2"));
  EXPECT_EQ(md.at("i32"), std::string("-5"));
  EXPECT_EQ(md.at("f32"), std::string("0.5"));
  EXPECT_EQ(md.at("b"), std::string("true"));
  EXPECT_EQ(md.at("u64"), std::to_string(1ull << 40));
  EXPECT_EQ(md.at("i64"), std::string("-3"));
  EXPECT_EQ(md.at("f64"), std::string("0.25"));
  EXPECT_EQ(md.at("arr"), std::string("[1,2,3]"));
  EXPECT_EQ(md.at("sarr"), std::string("[\"p\",\"q\"]"));
  EXPECT_EQ(wf->tokenizer_merges(), std::string("#version: 0.2\na b\n"));
  EXPECT_TRUE(wf->info().has_tokenizer);
  const Tensor& t = wf->get("model.diffusion_model.w");
  EXPECT_EQ(t.ndim, 2);
  EXPECT_EQ(t.shape[0], 2);  // ne [4, 2] -> torch [2, 4]
  EXPECT_EQ(t.shape[1], 4);
  EXPECT_EQ(t.f32()[5], 6.f);
  EXPECT_EQ(wf->get("model.diffusion_model.v").to_f32().f32()[1], 2.f);
  // Version 2 has the same layout.
  g.version = 2;
  write_file(path, g.bytes(64));
  EXPECT_EQ(WeightFile::open(path)->names().size(), (size_t)2);
}

TEST(formats, gguf_corrupt_corpus) {
  auto base = [] {
    GgufB g;
    g.kv_str("general.architecture", "stable-diffusion");
    return g;
  };
  struct Case {
    std::string label, bytes, needle;
  };
  std::vector<Case> cases;
  {
    GgufB g = base();
    g.tensor("w", {4}, 0, 0);
    g.data = f32_bytes({1, 2, 3, 4});
    std::string ok = g.bytes();
    parse_gg(ok);
    cases.push_back({"truncated data", ok.substr(0, ok.size() - 2), "past the end"});
    cases.push_back({"truncated header", ok.substr(0, 10), "truncated"});
    cases.push_back({"truncated infos", ok.substr(0, 60), "truncated|past the end|cannot fit"});
    std::string bm = ok;
    bm[0] = 'X';
    cases.push_back({"bad magic", bm, "magic"});
  }
  {
    GgufB g = base();
    g.version = 1;
    cases.push_back({"version 1", g.bytes(), "version 1"});
    g.version = 0x03000000;
    cases.push_back({"big-endian version", g.bytes(), "version"});
  }
  {
    std::string s = "GGUF" + le32(3) + le64(0) + le64(1) + le64(1ull << 50) + std::string(40, 'a');
    cases.push_back({"string length past EOF", s, "string length"});
    std::string s2 = "GGUF" + le32(3) + le64(0) + le64(1ull << 60);
    cases.push_back({"kv count huge", s2, "cannot fit"});
    std::string s3 = "GGUF" + le32(3) + le64(1ull << 60) + le64(0);
    cases.push_back({"tensor count huge", s3, "cannot fit"});
  }
  {
    GgufB g = base();
    g.tensor("w", {1, 1, 1, 1, 4}, 0, 0);
    g.data = f32_bytes({1, 2, 3, 4});
    cases.push_back({"n_dims 5", g.bytes(), "n_dims 5"});
  }
  {
    GgufB g = base();
    g.tensor("w", {4}, 77, 0);
    g.data = f32_bytes({1, 2, 3, 4});
    cases.push_back({"unknown type", g.bytes(), "type id 77"});
    GgufB g4 = base();
    g4.tensor("w", {4}, 4, 0);  // removed q4_2
    g4.data = f32_bytes({1, 2, 3, 4});
    cases.push_back({"removed type", g4.bytes(), "type id 4"});
  }
  {
    GgufB g = base();
    g.tensor("w", {4}, 0, 4);
    g.data = f32_bytes({1, 2, 3, 4, 5, 6, 7, 8});
    cases.push_back({"unaligned offset", g.bytes(), "alignment"});
    GgufB g2 = base();
    g2.tensor("w", {4}, 0, 64);
    g2.data = f32_bytes({1, 2, 3, 4});
    cases.push_back({"offset past end", g2.bytes(), "past the end"});
    GgufB g3 = base();
    g3.tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 0);
    g3.data = f32_bytes({1, 2, 3, 4, 5, 6, 7, 8});
    cases.push_back({"overlap", g3.bytes(), "overlap"});
    GgufB g4 = base();
    g4.tensor("a", {1ull << 32, 1ull << 32, 1ull << 32}, 0, 0);
    cases.push_back({"dims overflow", g4.bytes(), "overflow"});
    GgufB g5 = base();
    g5.tensor("a", {1ull << 62}, 0, 0);
    cases.push_back({"bytes overflow", g5.bytes(), "overflow"});
    GgufB g6 = base();
    g6.tensor("a", {33}, 8, 0);
    g6.data = std::string(64, '\0');
    cases.push_back({"row not block multiple", g6.bytes(), "block size"});
    GgufB g7 = base();
    g7.tensor("a", {4}, 0, 0).tensor("a", {4}, 0, 32);
    g7.data = std::string(64, '\0');
    cases.push_back({"duplicate tensor", g7.bytes(), "duplicate"});
    GgufB g8 = base();
    g8.tensor("", {4}, 0, 0);
    g8.data = std::string(32, '\0');
    cases.push_back({"empty tensor name", g8.bytes(), "empty name"});
    GgufB g9 = base();
    g9.tensor("a", {1ull << 63}, 0, 0);
    cases.push_back({"dim too large", g9.bytes(), "too large"});
  }
  {
    GgufB g = base();
    g.kv_str("general.architecture", "again");
    cases.push_back({"duplicate key", g.bytes(), "duplicate key"});
    GgufB g2;
    g2.kv += GgufB::str("flag") + le32(7) + std::string("\x02", 1);
    g2.n_kv = 1;
    cases.push_back({"bool 2", g2.bytes(), "BOOL"});
    GgufB g3;
    g3.kv += GgufB::str("nest") + le32(9) + le32(9) + le64(1) + le32(0) + le64(0);
    g3.n_kv = 1;
    cases.push_back({"nested array", g3.bytes(), "nested"});
    GgufB g4;
    g4.kv += GgufB::str("x") + le32(13) + le32(0);
    g4.n_kv = 1;
    cases.push_back({"unknown value type", g4.bytes(), "unknown value type"});
    GgufB g5;
    g5.kv_u32("general.alignment", 24);
    cases.push_back({"alignment not power of two", g5.bytes(), "power of two"});
    GgufB g6;
    g6.kv_str("general.alignment", "32");
    cases.push_back({"alignment wrong type", g6.bytes(), "UINT32"});
    GgufB g7;
    g7.kv += GgufB::str("arr") + le32(9) + le32(4) + le64(1ull << 61);
    g7.n_kv = 1;
    cases.push_back({"array past end", g7.bytes(), "past the end"});
    GgufB g8;
    g8.kv += GgufB::str("") + le32(4) + le32(1);
    g8.n_kv = 1;
    cases.push_back({"empty key", g8.bytes(), "empty key"});
    GgufB g9;
    g9.kv += GgufB::str("arr") + le32(9) + le32(99) + le64(1);
    g9.n_kv = 1;
    cases.push_back({"unknown array type", g9.bytes(), "element type"});
  }
  for (const Case& c : cases) expect_invalid([&] { parse_gg(c.bytes); }, c.needle, c.label);
  // File path through WeightFile as well.
  std::string p = temp_dir() + "/n5.gguf";
  write_file(p, cases[8].bytes);
  expect_invalid([&] { WeightFile::open(p); }, "n5.gguf", "file named in message");
}

// ---------------------------------------------------------------------------------------------------------
// PyTorch zip checkpoints (restricted pickle reader)
// ---------------------------------------------------------------------------------------------------------
namespace {

struct Pk {
  std::string s = std::string("\x80\x02", 2);
  Pk& op(char c) { s += c; return *this; }
  Pk& raw(const std::string& r) { s += r; return *this; }
  Pk& uni(const std::string& v) { s += 'X'; s += le32((uint32_t)v.size()); s += v; return *this; }
  Pk& i32(int32_t v) { s += 'J'; s += le32((uint32_t)v); return *this; }
  Pk& glob(const std::string& m, const std::string& n) { s += 'c' + m + "\n" + n + "\n"; return *this; }
  Pk& tuple_ints(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) i32((int32_t)x);
    return op('t');
  }
  // key -> _rebuild_tensor_v2(storage(type, key), offset, size, stride, False, OrderedDict())
  Pk& tensor(const std::string& name, const std::string& storage_type, const std::string& key, int64_t offset,
             const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    uni(name).glob("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').uni("storage").glob("torch", storage_type).uni(key).uni("cpu").i32(100).op('t').op('Q');
    i32((int32_t)offset).tuple_ints(size).tuple_ints(stride).op('\x89');
    glob("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
};

std::string ckpt_bytes(const std::string& pkl, std::vector<std::pair<std::string, std::string>> storages) {
  storages.insert(storages.begin(), {"archive/data.pkl", pkl});
  storages.push_back({"archive/version", "3\n"});
  return sdnfuzz::zip_stored(storages);
}

RawModel parse_ck(const std::string& b) {
  return parse_ckpt(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "test.ckpt", nullptr);
}

}  // namespace

TEST(formats, ckpt_restricted_pickle) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6, 7};
  uint16_t h[5] = {0, f32_to_f16(1.5f), f32_to_f16(-2.f), f32_to_f16(3.f), f32_to_f16(4.f)};
  Pk p;
  p.op('}').raw(std::string("q\0", 2)).op('(');
  p.uni("epoch").i32(3);
  // A hostile global: must never run, only become an opaque value.
  p.uni("evil").glob("os", "system").uni("touch /tmp/sdn_pwned").op('\x85').op('R');
  p.uni("state_dict").glob("collections", "OrderedDict").op(')').op('R').raw(std::string("q\x01", 2)).op('(');
  p.tensor("model.diffusion_model.out.2.weight", "FloatStorage", "0", 1, {2, 3}, {3, 1});
  p.tensor("first_stage_model.quant_conv.bias", "HalfStorage", "1", 1, {4}, {1});
  p.uni("step").i32(7);
  p.op('u').op('u').op('.');
  std::string path = temp_dir() + "/tiny.ckpt";
  write_file(path, ckpt_bytes(p.s, {{"archive/data/0", f32_bytes(a)}, {"archive/data/1", std::string((char*)h, 10)}}));
  auto wf = WeightFile::open(path);
  EXPECT_EQ(wf->info().format, std::string("ckpt"));
  EXPECT_EQ(wf->names().size(), (size_t)2);
  const Tensor& w = wf->get("model.diffusion_model.out.2.weight");
  EXPECT_EQ(w.shape[0], 2);
  EXPECT_EQ(w.shape[1], 3);
  EXPECT_EQ(w.f32()[0], 2.f);  // storage offset 1
  EXPECT_EQ(w.f32()[5], 7.f);
  Tensor b = wf->get("first_stage_model.quant_conv.bias").to_f32();
  EXPECT_EQ(b.f32()[0], 1.5f);
  EXPECT_EQ(b.f32()[3], 4.f);
  EXPECT_TRUE(access("/tmp/sdn_pwned", F_OK) != 0);

  struct Case {
    std::string label, bytes, needle;
  };
  std::vector<Case> cases;
  auto with = [&](const std::function<void(Pk&)>& body, std::vector<std::pair<std::string, std::string>> st) {
    Pk q;
    body(q);
    return ckpt_bytes(q.s, st);
  };
  std::vector<std::pair<std::string, std::string>> st0 = {{"archive/data/0", f32_bytes(a)}};
  cases.push_back({"truncated zip", ckpt_bytes(p.s, st0).substr(0, 40), "zip"});
  cases.push_back({"no data.pkl", sdnfuzz::zip_stored({{"archive/x", "y"}}), "data.pkl"});
  cases.push_back({"storage missing", with([](Pk& q) { q.op('}').op('(').tensor("w", "FloatStorage", "9", 0, {2}, {1}).op('u').op('.'); }, st0), "missing"});
  cases.push_back({"storage too short", with([](Pk& q) { q.op('}').op('(').tensor("w", "FloatStorage", "0", 5, {4}, {1}).op('u').op('.'); }, st0), "past the end"});
  cases.push_back({"non-contiguous", with([](Pk& q) { q.op('}').op('(').tensor("w", "FloatStorage", "0", 0, {2, 2}, {1, 2}).op('u').op('.'); }, st0), "non-contiguous"});
  cases.push_back({"five dims", with([](Pk& q) { q.op('}').op('(').tensor("w", "FloatStorage", "0", 0, {1, 1, 1, 1, 2}, {2, 2, 2, 2, 1}).op('u').op('.'); }, st0), "5 dimensions"});
  cases.push_back({"dims overflow", with([](Pk& q) { q.op('}').op('(').tensor("w", "FloatStorage", "0", 0, {1 << 30, 1 << 30, 1 << 30}, {1 << 30, 1 << 30, 1}).op('u').op('.'); }, st0), "overflow|non-contiguous"});
  cases.push_back({"unknown storage", with([](Pk& q) { q.op('}').op('(').tensor("w", "ComplexStorage", "0", 0, {2}, {1}).op('u').op('.'); }, st0), "storage type"});
  cases.push_back({"unknown opcode", with([](Pk& q) { q.op('\xff'); }, st0), "opcode"});
  cases.push_back({"stack underflow", with([](Pk& q) { q.op('R'); }, st0), "underflow"});
  cases.push_back({"bad memo", with([](Pk& q) { q.raw("h\x05"); }, st0), "memo"});
  cases.push_back({"no STOP", with([](Pk& q) { q.op('}'); }, st0), "STOP"});
  cases.push_back({"string past end", with([](Pk& q) { q.raw(std::string("X\xff\xff\xff\x00" "ab", 7)); }, st0), "truncated"});
  cases.push_back({"top not dict", with([](Pk& q) { q.op(']').op('.'); }, st0), "not a dictionary"});
  cases.push_back({"duplicate", with([](Pk& q) { q.op('}').op('(').tensor("w", "FloatStorage", "0", 0, {2}, {1}).tensor("w", "FloatStorage", "0", 0, {2}, {1}).op('u').op('.'); }, st0), "duplicate"});
  cases.push_back({"odd setitems", with([](Pk& q) { q.op('}').op('(').i32(1).op('u').op('.'); }, st0), "odd"});
  std::string comp = ckpt_bytes(p.s, st0);
  comp[8] = 8;  // compression method of data.pkl (local header); the central directory says so too:
  size_t cdp = comp.find("PK\x01\x02");
  comp[cdp + 10] = 8;
  cases.push_back({"compressed", comp, "compressed"});
  for (const Case& c : cases) expect_invalid([&] { parse_ck(c.bytes); }, c.needle, c.label);
}

// ---------------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------------
TEST(formats, name_mapping_diffusers_and_others) {
  std::vector<std::pair<std::string, std::string>> names = {
      {"unet", "up_blocks.1.attentions.0.norm.weight"}, {"unet", "up_blocks.0.upsamplers.0.conv.weight"},
      {"unet", "up_blocks.1.upsamplers.0.conv.weight"}, {"vae", "decoder.up_blocks.3.resnets.0.conv1.weight"}};
  NameMapper m(names);
  const std::string U = "model.diffusion_model.";
  struct C {
    std::string comp, in, out;
  };
  std::vector<C> cases = {
      {"unet", "time_embedding.linear_1.weight", U + "time_embed.0.weight"},
      {"unet", "time_embedding.linear_2.bias", U + "time_embed.2.bias"},
      {"unet", "add_embedding.linear_1.weight", U + "label_emb.0.0.weight"},
      {"unet", "conv_in.weight", U + "input_blocks.0.0.weight"},
      {"unet", "conv_norm_out.bias", U + "out.0.bias"},
      {"unet", "conv_out.weight", U + "out.2.weight"},
      {"unet", "down_blocks.0.resnets.1.norm1.weight", U + "input_blocks.2.0.in_layers.0.weight"},
      {"unet", "down_blocks.1.resnets.0.conv_shortcut.weight", U + "input_blocks.4.0.skip_connection.weight"},
      {"unet", "down_blocks.2.resnets.0.time_emb_proj.bias", U + "input_blocks.7.0.emb_layers.1.bias"},
      {"unet", "down_blocks.3.resnets.1.conv2.weight", U + "input_blocks.11.0.out_layers.3.weight"},
      {"unet", "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight",
       U + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"},
      {"unet", "down_blocks.2.downsamplers.0.conv.weight", U + "input_blocks.9.0.op.weight"},
      {"unet", "mid_block.resnets.0.norm2.weight", U + "middle_block.0.out_layers.0.weight"},
      {"unet", "mid_block.resnets.1.conv1.bias", U + "middle_block.2.in_layers.2.bias"},
      {"unet", "mid_block.attentions.0.proj_in.weight", U + "middle_block.1.proj_in.weight"},
      {"unet", "up_blocks.0.resnets.2.conv1.weight", U + "output_blocks.2.0.in_layers.2.weight"},
      {"unet", "up_blocks.0.upsamplers.0.conv.weight", U + "output_blocks.2.1.conv.weight"},
      {"unet", "up_blocks.1.upsamplers.0.conv.weight", U + "output_blocks.5.2.conv.weight"},
      {"unet", "up_blocks.3.attentions.2.proj_out.bias", U + "output_blocks.11.1.proj_out.bias"},
      {"vae", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight"},
      {"vae", "encoder.down_blocks.2.downsamplers.0.conv.bias", "first_stage_model.encoder.down.2.downsample.conv.bias"},
      {"vae", "decoder.up_blocks.0.resnets.2.norm1.weight", "first_stage_model.decoder.up.3.block.2.norm1.weight"},
      {"vae", "decoder.up_blocks.2.upsamplers.0.conv.weight", "first_stage_model.decoder.up.1.upsample.conv.weight"},
      {"vae", "decoder.mid_block.resnets.1.conv2.weight", "first_stage_model.decoder.mid.block_2.conv2.weight"},
      {"vae", "encoder.mid_block.attentions.0.group_norm.weight", "first_stage_model.encoder.mid.attn_1.norm.weight"},
      {"vae", "encoder.mid_block.attentions.0.to_q.weight", "first_stage_model.encoder.mid.attn_1.q.weight"},
      {"vae", "decoder.mid_block.attentions.0.to_out.0.bias", "first_stage_model.decoder.mid.attn_1.proj_out.bias"},
      {"vae", "decoder.mid_block.attentions.0.proj_attn.weight", "first_stage_model.decoder.mid.attn_1.proj_out.weight"},
      {"vae", "decoder.mid_block.attentions.0.key.bias", "first_stage_model.decoder.mid.attn_1.k.bias"},
      {"vae", "encoder.conv_norm_out.weight", "first_stage_model.encoder.norm_out.weight"},
      {"vae", "quant_conv.weight", "first_stage_model.quant_conv.weight"},
      {"text_encoder", "text_model.encoder.layers.3.mlp.fc1.weight",
       "cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1.weight"},
      {"text_encoder", "text_model.embeddings.position_ids", ""},
      {"text_encoder_2", "text_model.final_layer_norm.weight", "cond_stage_model.1.transformer.text_model.final_layer_norm.weight"},
      {"", "model_ema.decay", ""},
      {"", "betas", ""},
      {"", "alphas_cumprod", "alphas_cumprod"},
      {"", "cond_stage_model.transformer.encoder.layers.0.mlp.fc1.weight",
       "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"},
      {"", "cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight",
       "cond_stage_model.transformer.text_model.encoder.layers.5.self_attn.in_proj.weight"},
      {"", "cond_stage_model.model.positional_embedding", "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"},
      {"", "cond_stage_model.model.ln_final.bias", "cond_stage_model.transformer.text_model.final_layer_norm.bias"},
      {"", "cond_stage_model.model.logit_scale", ""},
      {"", "conditioner.embedders.0.transformer.text_model.final_layer_norm.bias",
       "cond_stage_model.transformer.text_model.final_layer_norm.bias"},
      {"", "conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight",
       "cond_stage_model.1.transformer.text_model.encoder.layers.0.mlp.fc1.weight"},
      {"", "conditioner.embedders.1.model.text_projection", "cond_stage_model.1.transformer.text_model.text_projection"},
      {"", "diffusion_model.out.2.bias", U + "out.2.bias"},
      {"", "first_stage_model.decoder.conv_in.weight", "first_stage_model.decoder.conv_in.weight"},
      {"", "vae.decoder.up_blocks.1.upsamplers.0.conv.weight", "first_stage_model.decoder.up.2.upsample.conv.weight"},
  };
  for (auto& c : cases) {
    std::string got = m.map(c.comp, c.in);
    if (got != c.out) SDN_FAIL(c.comp << "/" << c.in << " -> " << got << ", expected " << c.out);
  }
  // Bare UNet-only and VAE-only files.
  NameMapper bu({{"", "input_blocks.0.0.weight"}, {"", "out.2.weight"}});
  EXPECT_EQ(bu.map("", "out.2.weight"), U + "out.2.weight");
  NameMapper bv({{"", "encoder.conv_in.weight"}, {"", "decoder.conv_in.weight"}, {"", "post_quant_conv.bias"}});
  EXPECT_EQ(bv.map("", "post_quant_conv.bias"), std::string("first_stage_model.post_quant_conv.bias"));
  EXPECT_EQ(bv.map("", "encoder.down.0.block.0.conv1.weight"), std::string("first_stage_model.encoder.down.0.block.0.conv1.weight"));
  NameMapper bd({{"", "conv_in.weight"}, {"", "down_blocks.0.resnets.0.norm1.weight"}});
  EXPECT_EQ(bd.map("", "down_blocks.0.resnets.0.norm1.weight"), U + "input_blocks.1.0.in_layers.0.weight");
  // A file with full prefixes does not treat bare names as components.
  NameMapper mixed({{"", "model.diffusion_model.out.2.bias"}, {"", "encoder.x"}});
  EXPECT_EQ(mixed.map("", "encoder.x"), std::string("encoder.x"));
}

TEST(formats, vae_linear_projection_becomes_1x1_conv) {
  std::string dir = temp_dir() + "/vaeonly";
  mkdir(dir.c_str(), 0755);
  mkdir((dir + "/vae").c_str(), 0755);
  std::vector<float> w = sdntest::random_vector(9, 3);
  write_file(dir + "/vae/diffusion_pytorch_model.safetensors",
             st_build({{"decoder.mid_block.attentions.0.to_q.weight", "F32", {3, 3}, f32_bytes(w)},
                       {"decoder.mid_block.attentions.0.to_q.bias", "F32", {3}, f32_bytes({1, 2, 3})}}));
  auto wf = WeightFile::open(dir);
  const Tensor& t = wf->get("first_stage_model.decoder.mid.attn_1.q.weight");
  EXPECT_EQ(t.ndim, 4);
  EXPECT_EQ(t.shape[0], 3);
  EXPECT_EQ(t.shape[2], 1);
  EXPECT_EQ(t.f32()[4], w[4]);
  EXPECT_EQ(wf->get("first_stage_model.decoder.mid.attn_1.q.bias").ndim, 1);
  EXPECT_EQ(wf->info().format, std::string("diffusers"));
  EXPECT_TRUE(!wf->info().runnable);
}

TEST(formats, duplicate_after_mapping_is_rejected) {
  std::string p = temp_dir() + "/dup.safetensors";
  write_file(p, st_build({{"model.diffusion_model.out.2.bias", "F32", {1}, f32_bytes({1})},
                          {"diffusion_model.out.2.bias", "F32", {1}, f32_bytes({2})}}));
  expect_invalid([&] { WeightFile::open(p); }, "duplicate", "same canonical name twice");
}

// ---------------------------------------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------------------------------------
TEST(formats, detection_families) {
  auto mk = [](std::vector<std::pair<std::string, std::vector<int64_t>>> shapes) {
    std::map<std::string, Tensor> t;
    for (auto& s : shapes) t[s.first] = Tensor::wrap(nullptr, s.second, DType::F32);
    return t;
  };
  const std::string U = "model.diffusion_model.", TE = "cond_stage_model.transformer.text_model.";
  std::vector<std::pair<std::string, std::vector<int64_t>>> sd1 = {
      {U + "input_blocks.0.0.weight", {320, 4, 3, 3}},
      {U + "input_blocks.1.1.proj_in.weight", {320, 320, 1, 1}},
      {U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", {320, 768}},
      {U + "middle_block.1.norm.weight", {1280}},
      {"first_stage_model.decoder.conv_in.weight", {512, 4, 3, 3}},
      {TE + "embeddings.token_embedding.weight", {49408, 768}},
  };
  ModelInfo i;
  detect_model(mk(sd1), {}, i);
  EXPECT_EQ(i.family, std::string("sd1"));
  EXPECT_EQ(i.variant, std::string("base"));
  EXPECT_EQ(i.prediction, std::string("eps"));
  EXPECT_TRUE(i.runnable);
  ModelInfo iv;  // SD1 with a declared v-prediction: recognised and runnable (the pipeline uses the v scalings)
  detect_model(mk(sd1), {{"sdnode.prediction", "v_prediction"}}, iv);
  EXPECT_EQ(iv.prediction, std::string("v"));
  EXPECT_TRUE(iv.runnable);
  auto inp = sd1;
  inp[0].second = {320, 9, 3, 3};
  ModelInfo j;
  detect_model(mk(inp), {}, j);
  EXPECT_EQ(j.variant, std::string("inpaint"));
  EXPECT_TRUE(j.runnable);  // inpainting checkpoints run (img2img + mask, 9-channel U-Net input)
  auto p2p = sd1;
  p2p[0].second = {320, 8, 3, 3};
  ModelInfo jp;
  detect_model(mk(p2p), {}, jp);
  EXPECT_EQ(jp.variant, std::string("pix2pix"));
  EXPECT_TRUE(!jp.runnable && !jp.not_runnable_reason.empty());
  auto sd2 = sd1;
  sd2[1].second = {320, 320};
  sd2[2].second = {320, 1024};
  sd2[5].second = {49408, 1024};
  ModelInfo k;
  detect_model(mk(sd2), {{"modelspec.prediction_type", "v"}}, k);
  EXPECT_EQ(k.family, std::string("sd2"));
  EXPECT_EQ(k.prediction, std::string("v"));
  EXPECT_EQ(k.prediction_source, std::string("file"));
  EXPECT_TRUE(k.runnable);
  ModelInfo k2;  // SD2 declaring nothing: undecided here (Model::load probes the U-Net)
  detect_model(mk(sd2), {}, k2);
  EXPECT_EQ(k2.prediction, std::string(""));
  EXPECT_EQ(k2.prediction_source, std::string(""));
  EXPECT_TRUE(k2.runnable);
  auto xl = sd1;
  xl.push_back({U + "label_emb.0.0.weight", {1280, 2816}});
  xl.push_back({"cond_stage_model.1.transformer.text_model.final_layer_norm.weight", {1280}});
  ModelInfo l;
  detect_model(mk(xl), {}, l);
  EXPECT_EQ(l.family, std::string("sdxl"));
  EXPECT_EQ(l.prediction, std::string("eps"));
  EXPECT_EQ(l.prediction_source, std::string("family"));
  EXPECT_TRUE(l.runnable);
  auto xl1 = xl;  // no second text encoder
  xl1.pop_back();
  ModelInfo l1;
  detect_model(mk(xl1), {}, l1);
  EXPECT_EQ(l1.family, std::string("sdxl"));
  EXPECT_TRUE(!l1.runnable && l1.not_runnable_reason.find("second text encoder") != std::string::npos);
  auto novae = sd1;
  novae.erase(novae.begin() + 4);
  ModelInfo m;
  detect_model(mk(novae), {}, m);
  EXPECT_EQ(m.family, std::string("sd1"));
  EXPECT_TRUE(!m.runnable && m.not_runnable_reason.find("VAE") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------------------
// Converter
// ---------------------------------------------------------------------------------------------------------
TEST(formats, convert_rules_roundtrip_and_abort) {
  const std::string U = "model.diffusion_model.";
  std::vector<float> lin = sdntest::random_vector(64 * 256, 11);
  std::vector<float> conv = sdntest::random_vector(8 * 4 * 3 * 3, 12);
  std::vector<float> vae = sdntest::random_vector(32 * 64, 13);
  std::vector<float> emb = sdntest::random_vector(10 * 256, 14);
  std::vector<float> bias = sdntest::random_vector(64, 15);
  std::string src = temp_dir() + "/conv_src.safetensors";
  write_file(src, st_build({{U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", "F32", {64, 256}, f32_bytes(lin)},
                            {U + "input_blocks.0.0.weight", "F32", {8, 4, 3, 3}, f32_bytes(conv)},
                            {U + "input_blocks.1.1.norm.weight", "F32", {64}, f32_bytes(bias)},
                            {U + "time_embed.0.weight", "F32", {64, 256}, f32_bytes(lin)},
                            {"first_stage_model.decoder.conv_out.weight", "F32", {32, 64}, f32_bytes(vae)},
                            {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "F32", {10, 256}, f32_bytes(emb)},
                            {U + "out.2.bias", "F32", {64}, f32_bytes(bias)}},
                           R"({"sdnode.unet.heads":"8"})"));
  std::string merges = temp_dir() + "/m.txt";
  write_file(merges, "#version: 0.2\nh i\n");
  std::vector<std::string> types = {"f32", "f16", "bf16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "q4_K", "q5_K", "q6_K"};
  std::map<std::string, double> tol = {{"f32", 0},      {"f16", 1e-3},  {"bf16", 8e-3}, {"q8_0", 1e-2},
                                       {"q5_0", 7e-2},  {"q5_1", 6e-2}, {"q4_0", 0.15}, {"q4_1", 0.15},
                                       {"q4_K", 0.15},  {"q5_K", 8e-2}, {"q6_K", 4e-2}};
  auto in = WeightFile::open(src);
  for (const std::string& ty : types) {
    DType t = dtype_from_name(ty);
    if (dtype_traits(t).quantized && !quant_available(t)) {
      std::fprintf(stderr, "SKIP: convert to %s (quantize_row not available in this build)\n", ty.c_str());
      continue;
    }
    ConvertOptions o;
    o.type = ty;
    o.tokenizer_path = merges;
    int64_t calls = 0;
    o.on_progress = [&](int64_t done, int64_t total) {
      EXPECT_TRUE(done <= total && total == 7);
      ++calls;
      return true;
    };
    std::string out = temp_dir() + "/conv_" + ty + ".gguf";
    ConvertSummary s = convert_model(src, out, o);
    EXPECT_EQ(s.tensor_count, 7);
    EXPECT_EQ(calls, 8);
    EXPECT_EQ(s.bytes_out, (int64_t)read_file(out).size());
    auto g = WeightFile::open(out);
    EXPECT_EQ(g->names().size(), (size_t)7);
    EXPECT_EQ(g->tokenizer_merges(), std::string("#version: 0.2\nh i\n"));
    EXPECT_EQ(g->metadata().at("sdnode.unet.heads"), std::string("8"));
    EXPECT_EQ(g->metadata().at("general.architecture"), std::string("stable-diffusion"));
    // rules
    EXPECT_TRUE(g->get(U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight").dtype == t);
    EXPECT_TRUE(g->get(U + "input_blocks.1.1.norm.weight").dtype == DType::F32);
    EXPECT_TRUE(g->get(U + "out.2.bias").dtype == DType::F32);
    EXPECT_TRUE(g->get("first_stage_model.decoder.conv_out.weight").dtype == DType::F16);
    DType conv_t = g->get(U + "input_blocks.0.0.weight").dtype;
    EXPECT_TRUE(conv_t == (dtype_traits(t).quantized ? DType::F16 : t));
    DType emb_t = g->get("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight").dtype;
    EXPECT_TRUE(emb_t == (dtype_traits(t).quantized ? DType::F16 : t));
    EXPECT_TRUE(g->get(U + "time_embed.0.weight").dtype == emb_t);
    // values within the type's error (relative to the tensor's max |x|)
    for (const std::string& n : in->names()) {
      Tensor a = in->get(n).to_f32(), b = g->get(n).to_f32();
      EXPECT_EQ(a.numel(), b.numel());
      double mx = 0, err = 0;
      for (int64_t q = 0; q < a.numel(); ++q) {
        mx = std::fmax(mx, std::fabs((double)a.f32()[q]));
        err = std::fmax(err, std::fabs((double)a.f32()[q] - (double)b.f32()[q]));
      }
      double lim = tol[dtype_name(g->get(n).dtype)] + 1e-9;
      if (!(err / mx <= lim)) SDN_FAIL(ty << " " << n << " rel err " << err / mx << " > " << lim);
    }
  }
  // abort: Aborted, no output, no partial file
  ConvertOptions o;
  o.on_progress = [](int64_t done, int64_t) { return done < 3; };
  std::string out = temp_dir() + "/aborted.gguf";
  EXPECT_THROWS_CODE(convert_model(src, out, o), ErrorCode::Aborted);
  EXPECT_TRUE(access(out.c_str(), F_OK) != 0);
  EXPECT_TRUE(access((out + ".part").c_str(), F_OK) != 0);
  ConvertOptions bad;
  bad.type = "q9_9";
  EXPECT_THROWS_CODE(convert_model(src, out, bad), ErrorCode::InvalidArgument);
  bad.type = "i32";
  EXPECT_THROWS_CODE(convert_model(src, out, bad), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(convert_model(temp_dir() + "/missing.safetensors", out, ConvertOptions()), ErrorCode::NotFound);
  ConvertOptions tp;
  tp.tokenizer_path = temp_dir() + "/no-merges.txt";
  EXPECT_THROWS_CODE(convert_model(src, out, tp), ErrorCode::NotFound);
  tp.tokenizer_path = temp_dir();
  EXPECT_THROWS_CODE(convert_model(src, out, tp), ErrorCode::InvalidArgument);
  EXPECT_TRUE(access(out.c_str(), F_OK) != 0);
}

// ---------------------------------------------------------------------------------------------------------
// Tiny SD1 model (scripts/make-tiny-model.js): three forms agree; inspect fields; release
// ---------------------------------------------------------------------------------------------------------
TEST(formats, tiny_model_forms_agree) {
  for (const char* dt : {"f32", "f16"}) {
    std::string dir = tiny_dir(dt);
    if (dir.empty()) return;
    auto st = WeightFile::open(dir + "/tiny-sd1.safetensors");
    auto gg = WeightFile::open(dir + "/tiny-sd1.gguf");
    auto df = WeightFile::open(dir + "/tiny-sd1-diffusers");
    auto ck = WeightFile::open(dir + "/tiny-sd1.ckpt");
    EXPECT_TRUE(st->names() == ck->names());
    EXPECT_TRUE(st->names() == gg->names());
    EXPECT_TRUE(st->names() == df->names());
    EXPECT_EQ(st->names().size(), (size_t)970);  // 971 written, position_ids dropped
    for (const std::string& n : st->names()) {
      const Tensor& a = st->get(n);
      for (const WeightFile* o : {gg.get(), df.get(), ck.get()}) {
        const Tensor& b = o->get(n);
        if (a.sizes() != b.sizes() || a.dtype != b.dtype) SDN_FAIL(n << ": " << a.shape_str() << " vs " << b.shape_str());
        if (std::memcmp(a.data, b.data, a.nbytes()) != 0) SDN_FAIL(n << ": data differs");
      }
    }
    std::string merges = read_file(dir + "/tiny-sd1-merges.txt");
    EXPECT_EQ(gg->tokenizer_merges(), merges);
    EXPECT_EQ(df->tokenizer_merges(), merges);
    EXPECT_EQ(st->tokenizer_merges(), std::string(""));
    const Tensor& tok = st->get("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight");
    int lines = 0;
    for (char c : merges) lines += c == '\n';
    EXPECT_EQ(tok.shape[0], (int64_t)(256 + 256 + (lines - 1) + 2));
    for (const WeightFile* w : {st.get(), gg.get(), df.get(), ck.get()}) {
      const ModelInfo& i = w->info();
      EXPECT_EQ(i.family, std::string("sd1"));
      EXPECT_EQ(i.variant, std::string("base"));
      EXPECT_EQ(i.prediction, std::string("eps"));
      EXPECT_TRUE(i.runnable);
      EXPECT_EQ(i.tensor_count, 970);
      EXPECT_EQ(i.parameter_count, st->info().parameter_count);
      EXPECT_EQ(i.tensors_by_type.at(dt), 970);
      if (w != ck.get()) EXPECT_EQ(i.metadata.at("sdnode.unet.heads"), std::string("8"));
    }
    ModelInfo ins = inspect_model(dir + "/tiny-sd1-diffusers");
    EXPECT_EQ(ins.format, std::string("diffusers"));
    EXPECT_TRUE(ins.has_tokenizer);
    EXPECT_EQ(ins.parameter_count, st->info().parameter_count);
    // release keeps data readable (pages come back from the file)
    const Tensor& v = st->get("first_stage_model.decoder.conv_in.weight");
    std::vector<uint8_t> before((const uint8_t*)v.data, (const uint8_t*)v.data + v.nbytes());
    st->release("first_stage_model.");
    EXPECT_TRUE(std::memcmp(before.data(), v.data, v.nbytes()) == 0);
    // prefetch reads ahead without changing data; a set stop flag issues nothing; unknown prefixes are no-ops
    std::atomic<bool> stop{true};
    st->prefetch("model.diffusion_model.", &stop);
    st->prefetch("first_stage_model.");
    st->prefetch("no.such.prefix.");
    EXPECT_TRUE(std::memcmp(before.data(), v.data, v.nbytes()) == 0);
  }
}

TEST(formats, mapped_file_prefetch_and_residency) {
  std::string path = temp_dir() + "/prefetch.bin";
  {
    std::ofstream f(path, std::ios::binary);
    std::vector<char> buf(1 << 20, 7);
    f.write(buf.data(), (std::streamsize)buf.size());
  }
  auto m = MappedFile::open(path);
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < m->size(); i += 4096) sum = (uint8_t)(sum + m->data()[i]);  // every page read once
  EXPECT_TRUE(m->resident(0, m->size()));
  EXPECT_TRUE(m->resident(m->size() + 10, 100));  // out of range: nothing to read
  m->prefetch(0, m->size());
  m->prefetch(m->size() - 1, 1 << 30);  // clipped to the file
  EXPECT_EQ((int)m->data()[m->size() - 1], 7);
  std::remove(path.c_str());
}

TEST(formats, tiny_model_convert_diffusers_equals_single_file) {
  std::string dir = tiny_dir("f32");
  if (dir.empty()) return;
  ConvertOptions o;
  o.type = "f16";
  std::string a = temp_dir() + "/tiny_from_st.gguf", b = temp_dir() + "/tiny_from_diff.gguf";
  o.tokenizer_path = dir + "/tiny-sd1-merges.txt";
  ConvertSummary sa = convert_model(dir + "/tiny-sd1.safetensors", a, o);
  o.tokenizer_path.clear();
  ConvertSummary sb = convert_model(dir + "/tiny-sd1-diffusers", b, o);
  EXPECT_EQ(sa.tensor_count, 970);
  EXPECT_EQ(sa.bytes_in, sb.bytes_in);  // (bytes_out differ by the metadata: source names, diffusers keys)
  auto ga = WeightFile::open(a), gb = WeightFile::open(b);
  EXPECT_TRUE(ga->names() == gb->names());
  for (const std::string& n : ga->names())
    if (std::memcmp(ga->get(n).data, gb->get(n).data, ga->get(n).nbytes()) != 0) SDN_FAIL(n << " differs");
  EXPECT_EQ(ga->tokenizer_merges(), gb->tokenizer_merges());
  EXPECT_EQ(ga->info().family, std::string("sd1"));
  EXPECT_TRUE(ga->info().runnable);
  EXPECT_EQ(ga->metadata().at("sdnode.family"), std::string("sd1"));
}

// ---------------------------------------------------------------------------------------------------------
// Fuzz regressions: every input under test/fixtures/fuzz-regressions/<target>/ must give a typed error or parse.
// ---------------------------------------------------------------------------------------------------------
TEST(formats, fuzz_regressions_replay) {
  std::string root = repo_root() + "/test/fixtures/fuzz-regressions";
  int n = 0;
  const std::string tmp = temp_dir();  // fuzz_adapters writes each input to a file (the adapter readers open paths)
  for (const char* parser : {"safetensors", "gguf", "json", "ckpt", "model", "adapters"}) {
    std::string dir = root + "/" + parser;
    DIR* d = opendir(dir.c_str());
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string bytes = read_file(dir + "/" + e->d_name);
      ++n;
      try {
        if (std::string(parser) == "safetensors") parse_st(bytes);
        else if (std::string(parser) == "gguf") parse_gg(bytes);
        else if (std::string(parser) == "adapters")
          sdnfuzz::adapters_one_input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), tmp);
        else if (std::string(parser) == "model")
          sdnfuzz::model_one_input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
        else if (std::string(parser) == "ckpt")
          parse_ck(bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] == 'K'
                       ? bytes
                       : sdnfuzz::zip_stored({{"archive/data.pkl", bytes}, {"archive/data/0", std::string(64, '\x01')}}));
        else json::parse(bytes, "fuzz");
      } catch (const Error& err) {
        if (err.code() == ErrorCode::Internal) SDN_FAIL(parser << "/" << e->d_name << ": internal error " << err.what());
      }
    }
    closedir(d);
  }
  if (n == 0) std::fprintf(stderr, "SKIP: no fuzz regression inputs under %s\n", root.c_str());
}

TEST(formats, merges_file_reader_errors_say_what_to_do) {
  const std::string dir = temp_dir();
  const std::string plain = dir + "/merges.txt", gz = dir + "/merges.txt.gz";
  write_file(plain, "#version: 0.2\na b\n");
  write_file(gz, std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00", 8) + "compressed bytes");
  EXPECT_EQ(read_merges_file(plain, "tokenizer_path"), std::string("#version: 0.2\na b\n"));
  EXPECT_THROWS_CODE(read_merges_file(dir + "/absent.txt", "tokenizer_path"), ErrorCode::NotFound);
  EXPECT_THROWS_CODE(read_merges_file(dir, "tokenizer_path"), ErrorCode::InvalidArgument);
  try {
    read_merges_file(gz, "tokenizer_path");
    SDN_FAIL("a gzip file was accepted");
  } catch (const Error& e) {
    EXPECT_TRUE(e.code() == ErrorCode::InvalidFile);
    EXPECT_TRUE(std::string(e.what()).find("gzip-compressed: decompress it first") != std::string::npos);
    EXPECT_TRUE(std::string(e.what()).find("sdnode get-tokenizer --url") != std::string::npos);
  }
}
