// Shared by the libFuzzer target fuzz_adapters.cpp and the regression replay (native/tests): one input read as the
// adapter files a prompt names. As a LoRA (LoraFile::open: pairing, the kohya / diffusers / PEFT name conversions,
// alpha), matched against a tiny SD 1.x and SDXL weight set (shape checks, fused q/k/v slices); and as a
// textual-inversion embedding for each family (read_embedding: layouts, widths, conversion to F32 rows). Both readers
// open paths, so the input is written to `dir`: "in.ckpt" when it starts with "PK", "in.gguf" with "GGUF", else
// "in.safetensors". Typed errors are the expected outcome; an Internal error propagates (a bug).
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "../tests/tiny_sd.h"
#include "backends/backend.h"
#include "models/lora.h"
#include "models/weights.h"
#include "pipeline/adapters.h"
#include "sdn/error.h"

namespace sdnfuzz {

inline void adapters_one_input(const uint8_t* data, size_t size, const std::string& dir) {
  static sdn::WeightStore* sd1 = new sdn::WeightStore(sdntest::make_tiny_sd(), sdn::cpu_backend());
  static sdn::WeightStore* sdxl = [] {
    sdntest::TinySdConfig c;
    c.family = "sdxl";
    return new sdn::WeightStore(sdntest::make_tiny_sd(c), sdn::cpu_backend());
  }();
  auto attempt = [](auto fn) {
    try {
      fn();
    } catch (const sdn::Error& e) {
      if (e.code() == sdn::ErrorCode::Internal) throw;
    }
  };
  const char* ext = size >= 2 && data[0] == 'P' && data[1] == 'K' ? "ckpt"
                    : size >= 4 && std::memcmp(data, "GGUF", 4) == 0 ? "gguf"
                                                                     : "safetensors";
  const std::string path = dir + "/in." + ext;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), (std::streamsize)size);
  }
  struct Remove {
    const std::string& p;
    ~Remove() { std::remove(p.c_str()); }
  } remove_after{path};
  attempt([&] {
    auto lora = sdn::LoraFile::open(path);
    attempt([&] { lora->match(*sd1, 0.7f, "sd1"); });
    attempt([&] { lora->match(*sdxl, 1.f, "sdxl"); });
  });
  attempt([&] { sdn::read_embedding(path, "sd1", 64); });
  attempt([&] { sdn::read_embedding(path, "sd2", 64); });
  attempt([&] { sdn::read_embedding(path, "sdxl", 64, 64); });
}

}  // namespace sdnfuzz
