// Regression tests for issue 13 (hostile-use probe): unbounded prompt encoding, special files, printable error
// messages, bounded parsing of hostile headers, shape validation at load, NaN/Inf detection, aligned weights,
// thread limits. The JavaScript side of the same findings is in test/hardening.test.ts.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "../fuzz/ckpt_zip.h"
#include "backends/backend.h"
#include "formats/files.h"
#include "formats/json.h"
#include "formats/mapped_file.h"
#include "formats/readers.h"
#include "formats/weight_file.h"
#include "models/validate.h"
#include "pipeline/pipeline.h"
#include "sdn/error.h"
#include "sdn/sdn.h"
#include "test.h"
#include "text/tokenizer.h"
#include "tiny_sd.h"

using namespace sdn;

namespace {

// A private temp folder for these tests, removed at exit.
struct HardeningTemp {
  std::string dir;
  ~HardeningTemp() {
    if (!dir.empty() && dir.rfind("/tmp/sdn_hardening_", 0) == 0) std::system(("rm -rf '" + dir + "'").c_str());
  }
};
std::string temp_dir() {
  static HardeningTemp t;
  if (t.dir.empty()) {
    char tmpl[] = "/tmp/sdn_hardening_XXXXXX";
    char* d = mkdtemp(tmpl);
    if (!d) SDN_FAIL("mkdtemp failed");
    t.dir = d;
  }
  return t.dir;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string error_of(const std::function<void()>& fn, ErrorCode* code = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  SDN_FAIL("did not throw");
}

// Runs fn on this thread while a watchdog unblocks a FIFO reader after 5 s (by opening the FIFO for writing),
// so that a regression fails the test instead of hanging the runner.
void with_fifo_watchdog(const std::string& fifo, const std::function<void()>& fn) {
  std::atomic<bool> done{false}, fired{false};
  std::thread dog([&] {
    auto t0 = std::chrono::steady_clock::now();
    while (!done.load() && ms_since(t0) < 5000) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (done.load()) return;
    fired = true;
    int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
  });
  try {
    fn();
  } catch (...) {
    done = true;
    dog.join();
    throw;
  }
  done = true;
  dog.join();
  if (fired) SDN_FAIL("blocked on the FIFO " << fifo << " until the watchdog opened it");
}

std::unique_ptr<DiffusionPipeline> tiny_pipeline(std::map<std::string, Tensor> w = sdntest::make_tiny_sd()) {
  auto store = std::make_unique<WeightStore>(std::move(w), cpu_backend());
  return std::make_unique<DiffusionPipeline>(std::move(store), ClipTokenizer::from_merges(sdntest::tiny_merges()));
}

Tensor encode(DiffusionPipeline& p, const std::string& prompt, std::function<bool()> abort = {}) {
  auto& c = static_cast<ClipConditioner&>(p.conditioner());
  c.set_abort_check(std::move(abort));
  Tensor t = c.encode_prompt(prompt, 1);
  c.set_abort_check({});
  return t;
}

}  // namespace

// ---- finding 1: prompt encoding bounded, linear in what carries tokens, abortable -------------------------------
TEST(hardening, prompt_chunks_are_capped) {
  auto tok = ClipTokenizer::from_merges(sdntest::tiny_merges());
  std::string many;
  for (int i = 0; i < 300; ++i) many += "BREAK ";
  auto t0 = std::chrono::steady_clock::now();
  ErrorCode code{};
  std::string msg = error_of([&] { tokenize_prompt(*tok, many); }, &code);
  EXPECT_TRUE(code == ErrorCode::InvalidArgument);
  if (msg.find("32 chunks") == std::string::npos) SDN_FAIL("message: " << msg);
  EXPECT_TRUE(ms_since(t0) < 1000);
  std::string ok = "a";
  for (int i = 0; i < kMaxPromptChunks - 1; ++i) ok += " BREAK a";
  EXPECT_EQ(tokenize_prompt(*tok, ok).chunks, kMaxPromptChunks);
}

TEST(hardening, repeated_chunks_are_encoded_once_and_abort_is_polled) {
  auto pipe = tiny_pipeline();
  // "a BREAK BREAK BREAK b": chunks a, empty, empty, b
  int polls = 0;
  Tensor c = encode(*pipe, "red BREAK BREAK BREAK thin", [&] { ++polls; return false; });
  EXPECT_EQ(c.shape[1], (int64_t)4 * 77);
  EXPECT_TRUE(polls >= 4);
  Tensor h = cpu_backend().to_host(c);
  const int64_t D = h.shape[2];
  const size_t chunk = (size_t)77 * D;
  EXPECT_TRUE(std::memcmp(h.f32() + chunk, h.f32() + 2 * chunk, chunk * sizeof(float)) == 0);
  // the same conditioning as one encoder pass per chunk would give
  Tensor one = cpu_backend().to_host(encode(*pipe, "red"));
  EXPECT_TRUE(std::memcmp(h.f32(), one.f32(), chunk * sizeof(float)) == 0);
  // an abort during encoding stops it
  int calls = 0;
  EXPECT_THROWS_CODE(encode(*pipe, "red BREAK thin BREAK rain", [&] { return ++calls > 1; }), ErrorCode::Aborted);
}

// ---- finding 3: special files never block ------------------------------------------------------------------
TEST(hardening, fifos_and_devices_are_refused_without_blocking) {
  const std::string fifo = temp_dir() + "/hardening.fifo";
  ::unlink(fifo.c_str());
  if (::mkfifo(fifo.c_str(), 0600) != 0) SDN_FAIL("mkfifo failed");
  auto expect_kind = [&](const std::function<void()>& fn, const char* kind) {
    std::string msg;
    with_fifo_watchdog(fifo, [&] { msg = error_of(fn); });
    if (msg.find(kind) == std::string::npos) SDN_FAIL("message does not say " << kind << ": " << msg);
  };
  expect_kind([&] { MappedFile::open(fifo); }, "named pipe");
  expect_kind([&] { read_small_file(fifo, 1 << 20); }, "named pipe");
  expect_kind([&] { json::parse_file(fifo); }, "named pipe");
  expect_kind([&] { WeightFile::open(fifo); }, "named pipe");
  expect_kind([&] { read_merges_file(fifo, "tokenizer path"); }, "named pipe");
  expect_kind([&] { read_merges_file("/dev/null", "tokenizer path"); }, "character device");
  expect_kind([&] { read_merges_file(temp_dir(), "tokenizer path"); }, "folder");
  LoadOptions lo;
  lo.tokenizer_path = fifo;
  expect_kind([&] { Model::load(temp_dir() + "/no-model.safetensors", lo); }, "named pipe");
  ::unlink(fifo.c_str());
}

// ---- finding 5: thread limit --------------------------------------------------------------------------------
TEST(hardening, threads_above_the_hardware_are_refused) {
  EXPECT_TRUE(max_threads() >= 1);
  EXPECT_THROWS_CODE(validate_threads(max_threads() + 1), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(set_threads(1024 + max_threads()), ErrorCode::InvalidArgument);
  validate_threads(max_threads());
  validate_threads(0);
  LoadOptions lo;
  lo.threads = max_threads() + 1;
  EXPECT_THROWS_CODE(Model::load(temp_dir() + "/no-model.safetensors", lo), ErrorCode::InvalidArgument);
}

// ---- finding 6: weights used in place are aligned; no overflow for zero-element shapes -------------------------
TEST(hardening, unaligned_checkpoint_data_is_copied_to_aligned_memory) {
  // state_dict {"w": tensor [2] of FloatStorage "0"}, as torch.save writes it (protocol 2)
  std::string pkl = "\x80\x02}(";
  auto X = [&](const std::string& v) {
    pkl += 'X';
    uint32_t n = (uint32_t)v.size();
    pkl.append(reinterpret_cast<const char*>(&n), 4);
    pkl += v;
  };
  X("w");
  pkl += "ctorch._utils\n_rebuild_tensor_v2\n((";
  X("storage");
  pkl += "ctorch\nFloatStorage\n";
  X("0");
  X("cpu");
  pkl += std::string("K\x02tQK\x00(K\x02t(K\x01ttRu.", 18);
  const float vals[2] = {1.5f, -2.25f};
  const std::string data(reinterpret_cast<const char*>(vals), 8);
  bool tested = false;
  for (std::string prefix = "a"; prefix.size() < 8 && !tested; prefix += "b") {
    std::string zip = sdnfuzz::zip_stored({{prefix + "/data.pkl", pkl}, {prefix + "/data/0", data}});
    size_t off = zip.rfind(data);
    if (off % 4 == 0) continue;  // want data the kernels could not load in place
    const std::string path = temp_dir() + "/unaligned.ckpt";
    FILE* fp = std::fopen(path.c_str(), "wb");
    std::fwrite(zip.data(), 1, zip.size(), fp);
    std::fclose(fp);
    auto wf = WeightFile::open(path);
    for (const std::string& n : wf->names()) {
      const Tensor& t = wf->get(n);
      if (reinterpret_cast<uintptr_t>(t.data) % 4 != 0) SDN_FAIL(n << " is used at a misaligned address");
      EXPECT_EQ(t.numel(), (int64_t)2);
      EXPECT_TRUE(std::memcmp(t.data, vals, 8) == 0);
      tested = true;
    }
  }
  EXPECT_TRUE(tested);
}

TEST(hardening, zero_element_shapes_with_overflowing_dimensions_are_refused) {
  int64_t n = -1;
  const int64_t big = int64_t(1) << 62;
  EXPECT_TRUE(!checked_numel({0, big, big, big}, &n));
  EXPECT_TRUE(checked_numel({0, 5, 7}, &n));
  EXPECT_EQ(n, (int64_t)0);
  EXPECT_TRUE(checked_numel({3, 5, 7}, &n));
  EXPECT_EQ(n, (int64_t)105);
}

// ---- finding 8: messages are printable ------------------------------------------------------------------------
TEST(hardening, error_messages_escape_control_characters) {
  Error e(ErrorCode::InvalidFile, std::string("tensor \"w\x1b]0;pwned\x07\x1b[2J\xc2\x9b" "31m\xe2\x80\xae\xff\" bad\nnext"));
  const std::string m = e.what();
  for (unsigned char c : m)
    if ((c < 0x20 && c != '\n') || c == 0x7f) SDN_FAIL("raw control byte " << (int)c << " in: " << m);
  EXPECT_TRUE(m.find("\xc2\x9b") == std::string::npos);      // C1 CSI
  EXPECT_TRUE(m.find("\xe2\x80\xae") == std::string::npos);  // RIGHT-TO-LEFT OVERRIDE
  EXPECT_TRUE(m.find("\\x1b]0;pwned\\x07") != std::string::npos);
  EXPECT_TRUE(m.find("\\xff") != std::string::npos);
  EXPECT_TRUE(m.find("\nnext") != std::string::npos);  // newlines of multi-line messages stay
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x9c\x93"), std::string("caf\xc3\xa9 \xe2\x9c\x93"));  // UTF-8 text untouched
  // a 40 MB name does not make a 40 MB message; the advice at the end survives
  Error big(ErrorCode::InvalidFile, "tensor " + std::string(40u << 20, 'x') + " is bad: re-download the file");
  EXPECT_TRUE(std::strlen(big.what()) < 5000);
  EXPECT_TRUE(std::string(big.what()).find("re-download the file") != std::string::npos);
}

// ---- findings 7, 10: bounded parsing of hostile headers --------------------------------------------------------
TEST(hardening, gguf_key_and_tensor_counts_are_capped) {
  std::string f = "GGUF";
  auto u32 = [&](uint32_t v) { f.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { f.append(reinterpret_cast<const char*>(&v), 8); };
  u32(3);
  u64(0);
  u64(uint64_t(1) << 20);  // 2^20 keys of 13+ bytes each
  f.append(size_t(14) << 20, '\x01');
  auto t0 = std::chrono::steady_clock::now();
  std::string msg = error_of([&] { parse_gguf(reinterpret_cast<const uint8_t*>(f.data()), f.size(), "k.gguf", nullptr); });
  if (msg.find("exceeds the limit of 65536") == std::string::npos) SDN_FAIL(msg);
  EXPECT_TRUE(ms_since(t0) < 1000);
}

TEST(hardening, inspect_metadata_is_bounded) {
  // 5,000 GGUF string keys: 4,096 kept by the reader, 256 shown, the rest counted
  std::string f = "GGUF";
  auto u32 = [&](uint32_t v) { f.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { f.append(reinterpret_cast<const char*>(&v), 8); };
  auto str = [&](const std::string& s) { u64(s.size()); f += s; };
  u32(3);
  u64(0);
  u64(5000);
  for (int i = 0; i < 5000; ++i) {
    str("key" + std::to_string(i) + std::string(i == 0 ? 300 : 0, 'k'));
    u32(8);
    str(i == 1 ? std::string(100000, 'v') : "v");
  }
  const std::string path = temp_dir() + "/many-keys.gguf";
  FILE* fp = std::fopen(path.c_str(), "wb");
  std::fwrite(f.data(), 1, f.size(), fp);
  std::fclose(fp);
  ModelInfo info = inspect_model(path);
  EXPECT_TRUE(info.metadata.size() <= 257);
  EXPECT_TRUE(info.metadata.count(kMetadataOmittedKey) == 1);
  if (info.metadata.at(kMetadataOmittedKey).find("4744 more") == std::string::npos)
    SDN_FAIL(info.metadata.at(kMetadataOmittedKey));
  for (const auto& kv : info.metadata) {
    EXPECT_TRUE(kv.first.size() <= 259);
    EXPECT_TRUE(kv.second.size() <= 1027);
  }
}

TEST(hardening, pickle_memory_is_bounded_by_its_size) {
  // a 2 MB data.pkl of None opcodes (each one an object) used to take 478-862 MB
  std::string pkl = "\x80\x02";
  pkl.append(size_t(2) << 20, 'N');
  pkl += '.';
  std::string zip = sdnfuzz::zip_stored({{"archive/data.pkl", pkl}});
  auto t0 = std::chrono::steady_clock::now();
  std::string msg = error_of([&] { parse_ckpt(reinterpret_cast<const uint8_t*>(zip.data()), zip.size(), "n.ckpt", nullptr); });
  if (msg.find("MiB") == std::string::npos) SDN_FAIL(msg);
  EXPECT_TRUE(ms_since(t0) < 5000);
}

// ---- finding 11: duplicate keys in a safetensors entry -------------------------------------------------------
TEST(hardening, safetensors_entry_with_a_repeated_key_is_refused) {
  std::string h = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"dtype":"I8"}})";
  std::string f(8, '\0');
  uint64_t n = h.size();
  std::memcpy(&f[0], &n, 8);
  f += h;
  f.append(8, '\0');
  std::string msg = error_of([&] { parse_safetensors(reinterpret_cast<const uint8_t*>(f.data()), f.size(), "d.safetensors", nullptr); });
  if (msg.find("\"dtype\" appears twice") == std::string::npos) SDN_FAIL(msg);
}

// ---- finding 9: shapes validated at load; non-finite values detected --------------------------------------------
TEST(hardening, tensor_shapes_and_types_are_validated_against_the_architecture) {
  const int vocab = ClipTokenizer::from_merges(sdntest::tiny_merges())->vocab_size();
  {
    WeightStore ok(sdntest::make_tiny_sd(), cpu_backend());
    validate_sd1_shapes(ok, 0, 8, vocab, "tiny");
    // an inpainting U-Net takes 9 channels (latent, mask, masked image) and predicts 4
    auto w = sdntest::make_tiny_sd();
    w["model.diffusion_model.input_blocks.0.0.weight"] = Tensor::zeros({32, 9, 3, 3});
    WeightStore inpaint(std::move(w), cpu_backend());
    validate_sd1_shapes(inpaint, 0, 8, vocab, "tiny-inpaint");
  }
  struct Case {
    const char* name;
    std::function<void(std::map<std::string, Tensor>&)> edit;
    const char* needle;
  };
  const std::string U = "model.diffusion_model.", C = "cond_stage_model.transformer.text_model.",
                    V = "first_stage_model.decoder.";
  std::vector<Case> cases = {
      {"bias too short", [&](auto& w) { w[U + "input_blocks.1.0.emb_layers.1.bias"] = Tensor::zeros({7}); },
       "input_blocks.1.0.emb_layers.1.bias has shape [7]"},
      {"missing", [&](auto& w) { w.erase(U + "middle_block.1.transformer_blocks.0.attn2.to_v.weight"); },
       "attn2.to_v.weight is missing"},
      {"transposed conv", [&](auto& w) {
         Tensor& t = w[U + "input_blocks.4.0.in_layers.2.weight"];  // [64, 32, 3, 3] in the tiny layout
         std::swap(t.shape[0], t.shape[1]);
         t.set_contiguous_strides();
       }, "input_blocks.4.0.in_layers.2.weight"},
      {"int8 weight", [&](auto& w) {
         Tensor& t = w[C + "encoder.layers.0.mlp.fc2.weight"];
         t.dtype = DType::I8;
       }, "element type"},
      {"vae rgb", [&](auto& w) { w[V + "conv_out.weight"] = Tensor::zeros({4, 32, 3, 3}); }, "conv_out.weight"},
      {"positions", [&](auto& w) { w[C + "embeddings.position_embedding.weight"] = Tensor::zeros({70, 64}); },
       "77"},
  };
  for (const Case& c : cases) {
    auto w = sdntest::make_tiny_sd();
    c.edit(w);
    WeightStore st(std::move(w), cpu_backend());
    ErrorCode code{};
    std::string msg = error_of([&] { validate_sd1_shapes(st, 0, 8, vocab, "tiny.safetensors"); }, &code);
    if (code != ErrorCode::InvalidFile || msg.find(c.needle) == std::string::npos || msg.find("tiny.safetensors") != 0)
      SDN_FAIL(c.name << ": " << msg);
  }
}

TEST(hardening, non_finite_weights_give_a_typed_error_naming_the_component) {
  GenerateParams p;
  p.prompt = "red";
  p.width = p.height = 64;
  p.steps = 2;
  p.cfg_scale = 1.f;
  p.sampler = "euler";
  p.seed = 3;
  struct Case {
    std::string tensor, component;
  };
  for (const Case& c : {Case{"model.diffusion_model.out.2.bias", "U-Net"},
                        Case{"first_stage_model.decoder.conv_out.bias", "VAE decoder"},
                        Case{"cond_stage_model.transformer.text_model.final_layer_norm.bias", "text encoder"}}) {
    auto w = sdntest::make_tiny_sd();
    Tensor& t = w.at(c.tensor);
    Tensor f = t.to_f32();
    f.f32()[0] = NAN;
    t = f;
    auto pipe = tiny_pipeline(std::move(w));
    ErrorCode code{};
    std::string msg = error_of([&] { pipe->generate(p, {}); }, &code);
    if (code != ErrorCode::InvalidFile || msg.find("the " + c.component + " produced non-finite values") == std::string::npos)
      SDN_FAIL(c.tensor << ": " << msg);
  }
  float ok[3] = {1.f, 2.f, 3.f};
  check_finite(ok, 3, "x");
  float bad[3] = {1.f, INFINITY, 3.f};
  EXPECT_THROWS_CODE(check_finite(bad, 3, "x"), ErrorCode::InvalidFile);
}

// ---- issue 13 leftovers: SD 2.x / SDXL networks, the VAE encoder, separate parts and TAESD checked at load -----
namespace {

using TensorMapT = std::map<std::string, Tensor>;

sdntest::TinySdConfig tiny_config(const std::string& family) {
  sdntest::TinySdConfig c;
  c.family = family;
  return c;
}

// What Model::load passes for a tiny model of `family` (heads of 16 channels, as make-tiny-model.js records them).
ModelShapeSpec tiny_spec(const std::string& family) {
  ModelShapeSpec s;
  s.family = family;
  s.unet_head_dim = 16;
  s.tokenizer_vocab = ClipTokenizer::from_merges(sdntest::tiny_merges())->vocab_size();
  s.unet_file = "tiny-" + family + ".safetensors";
  return s;
}

// A tensor of the same element count with another shape (F32 copy of the values).
Tensor reshaped(const Tensor& t, std::vector<int64_t> shape) {
  Tensor f = t.to_f32();
  return Tensor::from_vector(shape, std::vector<float>(f.f32(), f.f32() + f.numel()));
}

void erase_prefix(TensorMapT& w, const std::string& prefix) {
  for (auto it = w.begin(); it != w.end();)
    it = it->first.compare(0, prefix.size(), prefix) == 0 ? w.erase(it) : std::next(it);
}

struct ShapeCase {
  const char* name;
  std::function<void(TensorMapT&, ModelShapeSpec&)> edit;
  const char* needle;
};

// Every case must fail validate_model_shapes with InvalidFile, starting with the file the component comes from and
// containing the needle; the unedited model must pass before and after (nothing is left changed).
void expect_shape_cases(const std::string& family, const std::vector<ShapeCase>& cases, const std::string& starts = "") {
  const TensorMapT good = sdntest::make_tiny_sd(tiny_config(family));
  {
    WeightStore st(TensorMapT(good), cpu_backend());
    validate_model_shapes(st, tiny_spec(family));
  }
  for (const ShapeCase& c : cases) {
    TensorMapT w = good;
    ModelShapeSpec spec = tiny_spec(family);
    c.edit(w, spec);
    WeightStore st(std::move(w), cpu_backend());
    ErrorCode code{};
    std::string msg = error_of([&] { validate_model_shapes(st, spec); }, &code);
    const std::string file = starts.empty() ? spec.unet_file : starts;
    // the needle's parts (separated by '|') must all appear
    bool found = true;
    for (size_t b = 0, e; found && b <= std::strlen(c.needle); b = e + 1) {
      e = std::string(c.needle).find('|', b);
      if (e == std::string::npos) e = std::strlen(c.needle);
      found = msg.find(std::string(c.needle).substr(b, e - b)) != std::string::npos;
    }
    if (code != ErrorCode::InvalidFile || !found || msg.rfind(file, 0) != 0)
      SDN_FAIL(family << " / " << c.name << ": " << msg);
  }
  WeightStore st(TensorMapT(good), cpu_backend());
  validate_model_shapes(st, tiny_spec(family));
}

const std::string kU = "model.diffusion_model.", kT1 = "cond_stage_model.transformer.text_model.",
                  kT2 = "cond_stage_model.1.transformer.text_model.", kV = "first_stage_model.";

// The VAE encoder and the U-Net/VAE links, shared by every family.
std::vector<ShapeCase> vae_encoder_cases() {
  return {
      {"encoder conv_in not RGB", [](auto& w, auto&) { w[kV + "encoder.conv_in.weight"] = Tensor::zeros({32, 4, 3, 3}); },
       "VAE encoder tensor first_stage_model.encoder.conv_in.weight has shape [32, 4, 3, 3]"},
      {"encoder block truncated", [](auto& w, auto&) { w.erase(kV + "encoder.down.1.block.1.conv2.weight"); },
       "encoder.down.1.block.1.conv2.weight is missing"},
      {"encoder int8", [](auto& w, auto&) { w[kV + "encoder.mid.attn_1.v.weight"].dtype = DType::I8; }, "element type"},
      {"encoder bias", [](auto& w, auto&) { w[kV + "encoder.down.0.downsample.conv.bias"] = Tensor::zeros({31}); },
       "encoder.down.0.downsample.conv.bias has shape [31]"},
      {"encoder 4x", [](auto& w, auto&) {
         erase_prefix(w, kV + "encoder.down.2.downsample.");
       }, "downsamples the image 4x"},
      {"encoder moments", [](auto& w, auto&) {
         w.erase(kV + "quant_conv.weight");
         w.erase(kV + "quant_conv.bias");
         w[kV + "encoder.conv_out.weight"] = Tensor::zeros({6, 64, 3, 3});
         w[kV + "encoder.conv_out.bias"] = Tensor::zeros({6});
       }, "VAE encoder gives 6 channels"},
      {"quant_conv", [](auto& w, auto&) { w[kV + "quant_conv.weight"] = Tensor::zeros({8, 6, 1, 1}); },
       "quant_conv.weight has shape [8, 6, 1, 1]"},
      {"decoder 16x", [](auto& w, auto&) {
         // one more upsampling level: the decoder would make 16x images
         w[kV + "decoder.up.0.upsample.conv.weight"] = Tensor::zeros({32, 32, 3, 3});
       }, "upsamples the latent 16x"},
      {"latent channels", [](auto& w, auto&) {
         w[kV + "post_quant_conv.weight"] = Tensor::zeros({8, 8, 1, 1});
         w[kV + "post_quant_conv.bias"] = Tensor::zeros({8});
         w[kV + "decoder.conv_in.weight"] = Tensor::zeros({64, 8, 3, 3});
       }, "the VAE decoder takes 8 latent channels but the U-Net makes 4"},
  };
}

}  // namespace

TEST(hardening, sd2_shapes_are_validated_at_load) {
  // separate q/k/v (the diffusers layout) passes too
  {
    sdntest::TinySdConfig c = tiny_config("sd2");
    c.fused_qkv = false;
    WeightStore st(sdntest::make_tiny_sd(c), cpu_backend());
    validate_model_shapes(st, tiny_spec("sd2"));
  }
  const std::string L0 = kT1 + "encoder.layers.0.self_attn.", MT = kU + "middle_block.1.";
  std::vector<ShapeCase> cases = {
      {"fused in_proj rows", [&](auto& w, auto&) { w[L0 + "in_proj.weight"] = Tensor::zeros({128, 64}); },
       "in_proj.weight has shape [128, 64]|the architecture needs [192, 64]"},
      {"fused in_proj bias", [&](auto& w, auto&) { w[L0 + "in_proj.bias"] = Tensor::zeros({64}); },
       "in_proj.bias has shape [64]"},
      {"no attention at all", [&](auto& w, auto&) {
         erase_prefix(w, kT1 + "encoder.layers.");
       }, "encoder.layers.0.self_attn.q_proj.weight is missing (nor a fused in_proj.weight)"},
      {"text_projection", [&](auto& w, auto&) { w[kT1 + "text_projection"] = Tensor::zeros({63, 64}); },
       "text_projection has shape [63, 64]|needs [64, *]"},
      {"positions", [&](auto& w, auto&) { w[kT1 + "embeddings.position_embedding.weight"] = Tensor::zeros({76, 64}); },
       "76 positions; SD 2.x prompts are encoded in chunks of 77 tokens"},
      {"vocabulary", [&](auto& w, auto&) { w[kT1 + "embeddings.token_embedding.weight"] = Tensor::zeros({300, 64}); },
       "has 300 rows but the CLIP tokenizer"},
      {"linear proj_in transposed", [&](auto& w, auto&) {
         w[MT + "proj_in.weight"] = Tensor::zeros({64, 32});
       }, "middle_block.1.proj_in.weight has shape [64, 32]|needs [*, 64]"},
      {"proj_out a convolution", [&](auto& w, auto&) {
         w[MT + "proj_out.weight"] = reshaped(w[MT + "proj_out.weight"], {64, 64, 1, 1});
       }, "proj_out.weight is a convolution but proj_in.weight is a Linear weight"},
      {"head size", [&](auto&, auto& s) { s.unet_head_dim = 24; }, "do not split into attention heads of 24"},
      {"ff truncated", [&](auto& w, auto&) { w.erase(MT + "transformer_blocks.0.ff.net.2.weight"); },
       "middle_block.1.transformer_blocks.0.ff.net.2.weight is missing"},
      {"GEGLU", [&](auto& w, auto&) {
         w[MT + "transformer_blocks.0.ff.net.0.proj.weight"] = Tensor::zeros({511, 64});
         w[MT + "transformer_blocks.0.ff.net.0.proj.bias"] = Tensor::zeros({511});
       }, "odd output size 511"},
      {"label_emb in SD 2.x", [&](auto& w, auto&) {
         w[kU + "label_emb.0.0.weight"] = Tensor::zeros({128, 16});
         w[kU + "label_emb.0.2.weight"] = Tensor::zeros({128, 128});
       }, "which SD 2.x models do not have"},
  };
  for (const ShapeCase& c : vae_encoder_cases()) cases.push_back(c);
  expect_shape_cases("sd2", cases);
}

TEST(hardening, sdxl_shapes_are_validated_at_load) {
  const std::string T = kU + "input_blocks.4.1.";  // a level-1 transformer of depth 2
  std::vector<ShapeCase> cases = {
      {"second encoder missing", [&](auto& w, auto&) { erase_prefix(w, "cond_stage_model.1."); },
       "the SDXL second text encoder (OpenCLIP ViT-bigG) is missing"},
      {"second encoder truncated", [&](auto& w, auto&) {
         w.erase(kT2 + "encoder.layers.2.mlp.fc2.weight");
       }, "second text encoder (OpenCLIP ViT-bigG) tensor cond_stage_model.1.transformer.text_model.encoder.layers.2.mlp.fc2.weight is missing"},
      {"no text projection", [&](auto& w, auto&) { w.erase(kT2 + "text_projection"); }, "has no text_projection"},
      {"first encoder width", [&](auto& w, auto&) {
         TensorMapT narrow = sdntest::make_tiny_sd([] { auto c = tiny_config("sdxl"); c.ctx = 32; return c; }());
         erase_prefix(w, kT1);
         for (auto& kv : narrow)
           if (kv.first.rfind(kT1, 0) == 0) w[kv.first] = kv.second;
       }, "expects text features of width 128 but the text encoders give 32 + 64 = 96"},
      {"label_emb width", [&](auto& w, auto&) { w[kU + "label_emb.0.0.weight"] = Tensor::zeros({128, 1570}); },
       "takes 1570 features but the second text encoder's pooled output (32) and the 6 size embeddings of 256 make 1568"},
      {"label_emb truncated", [&](auto& w, auto&) { w.erase(kU + "label_emb.0.2.weight"); },
       "label_emb.0.2.weight is missing"},
      {"label_emb without its first layer", [&](auto& w, auto&) {
         w.erase(kU + "label_emb.0.0.weight");
         w.erase(kU + "label_emb.0.0.bias");
       }, "label_emb.0.0.weight is missing"},
      {"depth-2 block truncated", [&](auto& w, auto&) { w.erase(T + "transformer_blocks.1.attn2.to_k.weight"); },
       "input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight is missing"},
      {"cross-attention width", [&](auto& w, auto&) {
         w[T + "transformer_blocks.1.attn2.to_v.weight"] = Tensor::zeros({64, 64});
       }, "transformer_blocks.1.attn2.to_v.weight has shape [64, 64]|needs [64, 128]"},
      {"transformer norm width", [&](auto& w, auto&) {
         w[T + "norm.weight"] = Tensor::zeros({40});
       }, "input_blocks.4.1.norm.weight has shape [40]"},
      {"output blocks", [&](auto& w, auto&) { erase_prefix(w, kU + "output_blocks.5."); },
       "output_blocks.5.0.in_layers.0.weight is missing: 6 input blocks need as many output blocks"},
  };
  for (const ShapeCase& c : vae_encoder_cases()) cases.push_back(c);
  expect_shape_cases("sdxl", cases);
  // an SDXL inpainting U-Net (9 input channels) passes
  TensorMapT w = sdntest::make_tiny_sd(tiny_config("sdxl"));
  w[kU + "input_blocks.0.0.weight"] = Tensor::zeros({32, 9, 3, 3});
  WeightStore st(std::move(w), cpu_backend());
  validate_model_shapes(st, tiny_spec("sdxl"));
}

TEST(hardening, shape_errors_name_the_part_file_the_component_comes_from) {
  auto with_files = [](auto edit) {
    return [edit](TensorMapT& w, ModelShapeSpec& s) {
      s.vae_file = "my-vae.safetensors";
      s.text_encoder_file = "my-te";
      edit(w);
    };
  };
  // a separate VAE (--vae) that does not fit, and a broken separate text encoder
  expect_shape_cases("sdxl", {{"vae part", with_files([](TensorMapT& w) { w.erase(kV + "decoder.mid.attn_1.k.weight"); }),
                               "VAE decoder tensor first_stage_model.decoder.mid.attn_1.k.weight is missing"}},
                     "my-vae.safetensors");
  expect_shape_cases("sdxl", {{"te part", with_files([](TensorMapT& w) { w.erase(kT2 + "final_layer_norm.bias"); }),
                               "final_layer_norm.bias is missing"}},
                     "my-te");
  expect_shape_cases("sd1", {{"vae latent", with_files([](TensorMapT& w) {
                                w[kV + "post_quant_conv.weight"] = Tensor::zeros({8, 8, 1, 1});
                                w[kV + "post_quant_conv.bias"] = Tensor::zeros({8});
                                w[kV + "decoder.conv_in.weight"] = Tensor::zeros({64, 8, 3, 3});
                              }),
                              "latent channels but the U-Net (tiny-sd1.safetensors) makes 4: give a VAE of the "
                              "model's family (parts.vae in JavaScript, --vae on the command line)"}},
                     "my-vae.safetensors");
}

TEST(hardening, taesd_biases_and_element_types_are_checked) {
  // a TAESD decoder in the diffusers layout: convs 0, 6, 11, 16, 18 and Blocks of three 64x64 convs
  auto make = [] {
    TensorMapT w;
    auto conv = [&](const std::string& p, int64_t oc, int64_t ic, bool bias) {
      w[p + ".weight"] = Tensor::zeros({oc, ic, 3, 3});
      if (bias) w[p + ".bias"] = Tensor::zeros({oc});
    };
    const std::string d = "decoder.layers.";
    conv(d + "0", 64, 4, true);
    for (int i : {6, 11, 16}) conv(d + std::to_string(i), 64, 64, false);
    conv(d + "18", 3, 64, true);
    for (int i : {2, 3, 4, 7, 8, 9, 12, 13, 14, 17})
      for (int k : {0, 2, 4}) conv(d + std::to_string(i) + ".conv." + std::to_string(k), 64, 64, true);
    return w;
  };
  {
    WeightStore st(make(), cpu_backend());
    TaesdModel m(st, "taesd.safetensors");
    EXPECT_EQ(m.latent_channels(), 4);
  }
  struct Case {
    std::function<void(TensorMapT&)> edit;
    const char* needle;
  };
  for (const Case& c : std::vector<Case>{
           {[](auto& w) { w["decoder.layers.7.conv.2.bias"] = Tensor::zeros({63}); },
            "TAESD tensor decoder.layers.7.conv.2.bias has shape [63]"},
           {[](auto& w) { w["decoder.layers.18.weight"].dtype = DType::I8; }, "element type"},
           {[](auto& w) { w["decoder.layers.3.skip.weight"] = Tensor::zeros({64, 32, 1, 1}); },
            "decoder.layers.3.skip.weight has shape [64, 32, 1, 1]"},
           {[](auto& w) { w.erase("decoder.layers.12.conv.4.weight"); }, "decoder.layers.12.conv.4.weight is missing"},
       }) {
    TensorMapT w = make();
    c.edit(w);
    WeightStore st(std::move(w), cpu_backend());
    ErrorCode code{};
    std::string msg = error_of([&] { TaesdModel m(st, "taesd.safetensors"); }, &code);
    if (code != ErrorCode::InvalidFile || msg.find(c.needle) == std::string::npos || msg.rfind("taesd.safetensors: ", 0) != 0)
      SDN_FAIL(c.needle << ": " << msg);
  }
}
