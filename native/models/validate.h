// Load-time checks of a model's weights against the architecture the models (clip.cpp, unet.cpp, vae.cpp) run:
// every tensor those forward passes use is checked for presence, rank, dimensions and element type, so a broken
// file fails at load with InvalidFile naming the tensor, not at generate() with a kernel's complaint.
// Also check_finite(), the NaN/Inf guard the pipeline runs on its host vectors.
#pragma once
#include <cstddef>
#include <string>

#include "models/weights.h"

namespace sdn {

struct ArchShapes {
  int clip_width = 0, clip_positions = 0, clip_vocab = 0;
  int unet_in_channels = 0, unet_out_channels = 0, unet_context_dim = 0;
  int vae_latent_channels = 0;
};

// Each throws ErrorCode::InvalidFile "<what>: <component> tensor <name> ..." on the first problem.
// `heads` as the models use them (<= 0: CLIP's default of width / 64).
void validate_clip_shapes(const WeightStore& w, const std::string& prefix, int heads, const std::string& what,
                          ArchShapes* out);
void validate_unet_shapes(const WeightStore& w, const std::string& prefix, int heads, const std::string& what,
                          ArchShapes* out);
void validate_vae_decoder_shapes(const WeightStore& w, const std::string& prefix, const std::string& what,
                                 ArchShapes* out);
// The SD1.x text-to-image set: the three above plus the links between them (context width, latent channels,
// 77 positions, a vocabulary that holds every token id of a tokenizer with `tokenizer_vocab` entries).
void validate_sd1_shapes(const WeightStore& w, int clip_heads, int unet_heads, int tokenizer_vocab,
                         const std::string& what);

// Throws ErrorCode::InvalidFile when any of the n values is NaN or infinite: "<component> produced non-finite
// values ...", saying what that usually means. `stage` adds context ("at sampling step 3").
void check_finite(const float* v, size_t n, const char* component, const std::string& stage = "");

}  // namespace sdn
