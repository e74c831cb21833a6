// Shared by the libFuzzer target fuzz_model.cpp and the regression replay (native/tests): one input through the
// whole model-construction path past the parsers: format sniffing, parsing, name mapping, detection, inspect info,
// and the load-time shape validation of every network (whatever the detected family).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "backends/backend.h"
#include "formats/model_files.h"
#include "formats/readers.h"
#include "models/validate.h"
#include "models/weights.h"

namespace sdnfuzz {

inline void model_one_input(const uint8_t* data, size_t size) {
  sdn::RawModel raw;
  if (size >= 4 && std::memcmp(data, "GGUF", 4) == 0) raw = sdn::parse_gguf(data, size, "fuzz.gguf", nullptr);
  else if (size >= 2 && data[0] == 'P' && data[1] == 'K') raw = sdn::parse_ckpt(data, size, "fuzz.ckpt", nullptr);
  else raw = sdn::parse_safetensors(data, size, "fuzz.safetensors", nullptr);
  auto wf = sdn::weight_file_from_raw(raw, "fuzz", /*load_data=*/true);
  const sdn::ModelInfo& info = wf->info();
  size_t sum = info.family.size() + info.metadata.size();
  for (const std::string& n : wf->names()) {
    const sdn::Tensor& t = wf->get(n);
    if (t.data && t.nbytes()) sum += static_cast<const uint8_t*>(t.data)[t.nbytes() - 1];  // ASan: inside the input
  }
  sdn::WeightStore store(wf.get(), sdn::cpu_backend());
  sdn::ArchShapes a;
  auto attempt = [&](auto fn) {
    try {
      fn();
    } catch (const sdn::Error& e) {
      if (e.code() == sdn::ErrorCode::Internal) throw;
    }
  };
  attempt([&] { sdn::validate_clip_shapes(store, "cond_stage_model.transformer.text_model.", 0, "fuzz", &a); });
  attempt([&] { sdn::validate_unet_shapes(store, "model.diffusion_model.", 8, "fuzz", &a); });
  attempt([&] { sdn::validate_vae_decoder_shapes(store, "first_stage_model.", "fuzz", &a); });
  attempt([&] { sdn::validate_sd1_shapes(store, 0, 8, 49408, "fuzz"); });
  volatile size_t sink = sum;
  (void)sink;
}

}  // namespace sdnfuzz
