// Shared by the libFuzzer target fuzz_model.cpp and the regression replay (native/tests): one input through the
// whole model-construction path past the parsers: format sniffing, parsing, name mapping, detection, inspect info,
// and the load-time shape validation of every network (SD1.x, SD2.x and SDXL text encoders, U-Nets, the VAE decoder
// and encoder, TAESD), whatever the detected family.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "backends/backend.h"
#include "formats/model_files.h"
#include "formats/readers.h"
#include "models/taesd.h"
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
  const std::string te1 = "cond_stage_model.transformer.text_model.", te2 = "cond_stage_model.1.transformer.text_model.",
                    unet = "model.diffusion_model.", vae = "first_stage_model.";
  attempt([&] { sdn::validate_clip_shapes(store, te1, 0, "fuzz", &a); });
  attempt([&] { sdn::validate_clip_shapes(store, te2, 0, "fuzz", &a); });
  attempt([&] { sdn::validate_unet_shapes(store, unet, 8, 64, "fuzz", &a); });    // SD1.x: 8 heads
  attempt([&] { sdn::validate_unet_shapes(store, unet, 0, 64, "fuzz", &a); });    // SD2.x / SDXL: heads of 64
  attempt([&] { sdn::validate_vae_decoder_shapes(store, vae, "fuzz", &a); });
  attempt([&] { sdn::validate_vae_encoder_shapes(store, vae, "fuzz", &a); });
  // every family's whole set and the links between its parts (the tiny corpus models record smaller head sizes)
  for (const char* family : {"sd1", "sd2", "sdxl"})
    for (int head_dim : {64, 16}) {
      sdn::ModelShapeSpec spec;
      spec.family = family;
      spec.unet_head_dim = head_dim;
      spec.tokenizer_vocab = 49408;
      spec.unet_file = "fuzz";
      attempt([&] { sdn::validate_model_shapes(store, spec); });
    }
  // TAESD's layout detection and checks (the same input read as a TAESD file)
  attempt([&] { sdn::TaesdModel taesd(store, "fuzz"); });
  volatile size_t sink = sum;
  (void)sink;
}

}  // namespace sdnfuzz
