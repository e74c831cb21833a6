// Load-time checks of a model's weights against the architecture the models (clip.cpp, unet.cpp, vae.cpp,
// taesd.cpp) run, for SD1.x, SD2.x and SDXL: every tensor those forward passes use is checked for presence, rank,
// dimensions and element type, so a broken file fails at load with InvalidFile naming the file and the tensor,
// not at generate() with a kernel's complaint. Dimensions come from the tensors (tiny test models have other
// widths); what the architecture fixes (77 positions, 8x VAE, GEGLU, fused q/k/v = 3 x width) is checked.
// Also check_finite(), the NaN/Inf guard the pipeline runs on its host vectors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "models/weights.h"

namespace sdn {

struct ArchShapes {
  int clip_width = 0, clip_positions = 0, clip_vocab = 0, clip_layers = 0;
  int clip_projection = 0;  // width of the text projection (pooled output); 0 without one
  int unet_in_channels = 0, unet_out_channels = 0, unet_context_dim = 0;
  int unet_adm_channels = 0;  // width of the vector conditioning y (label_emb); 0 without one
  int vae_latent_channels = 0;
  int vae_upscale = 0;          // the decoder's upsampling factor (2^upsample convolutions)
  int vae_encoder_moments = 0;  // channels of the encoder's output (after quant_conv); 0: no encoder checked
  int vae_downscale = 0;        // the encoder's downsampling factor
};

// Each throws ErrorCode::InvalidFile "<what>: <component> tensor <name> ..." on the first problem.
// A text encoder (CLIP ViT-L, OpenCLIP ViT-H / ViT-bigG) under `prefix`: separate q/k/v projections or the fused
// OpenCLIP in_proj [3 width, width] (+ bias [3 width]); an optional text projection, stored as the HF Linear
// weight `text_projection.weight` [N, width] or the OpenCLIP matrix `text_projection` [width, N].
// `heads` as the models use them (<= 0: CLIP's default of width / 64). `component` names it in messages.
void validate_clip_shapes(const WeightStore& w, const std::string& prefix, int heads, const std::string& what,
                          ArchShapes* out, const std::string& component = "text encoder");
// The U-Net under `prefix`: conv (SD1.x) or Linear (SD2.x, SDXL) proj_in/proj_out, transformer depth per block
// and levels without attention as the tensors say, optional label_emb (SDXL). heads > 0: that many heads in every
// transformer; otherwise heads of `head_dim` channels.
void validate_unet_shapes(const WeightStore& w, const std::string& prefix, int heads, int head_dim,
                          const std::string& what, ArchShapes* out);
void validate_vae_decoder_shapes(const WeightStore& w, const std::string& prefix, const std::string& what,
                                 ArchShapes* out);
// The VAE encoder (img2img, inpainting) under prefix + "encoder." and the optional quant_conv.
void validate_vae_encoder_shapes(const WeightStore& w, const std::string& prefix, const std::string& what,
                                 ArchShapes* out);
// One convolution weight [cout, cin, k, k] (-1: any size) with its optional bias [cout], for networks whose layout
// is read elsewhere (TAESD). Returns cout.
int64_t validate_conv_shapes(const WeightStore& w, const std::string& layer, int64_t cin, int64_t cout, int k,
                             const std::string& what, const std::string& component);

// Everything one model family runs, checked before any of it is built: the text encoder(s) under
// cond_stage_model., the U-Net under model.diffusion_model., the VAE decoder (and its encoder when the file has
// one) under first_stage_model., and the links between them (context width = text encoder width(s), SDXL's
// vector conditioning = pooled width + 6 x 256, latent channels, 77 positions, 8x VAE, a vocabulary that holds
// every token id of a tokenizer with `tokenizer_vocab` entries).
struct ModelShapeSpec {
  std::string family = "sd1";  // "sd1", "sd2", "sdxl"
  int clip_heads = 0;          // 0: width / 64
  int unet_heads = 0;          // 0: the family's rule (SD1.x: 8 heads; SD2.x/SDXL: heads of unet_head_dim)
  int unet_head_dim = 64;
  int tokenizer_vocab = 0;     // 0: not checked
  // The files the components come from, named in messages ("" = unet_file).
  std::string unet_file, text_encoder_file, vae_file;
};
void validate_model_shapes(const WeightStore& w, const ModelShapeSpec& spec);
// The SD1.x set (validate_model_shapes with family "sd1", every component from `what`).
void validate_sd1_shapes(const WeightStore& w, int clip_heads, int unet_heads, int tokenizer_vocab,
                         const std::string& what);

// Throws ErrorCode::InvalidFile when any of the n values is NaN or infinite: "<component> produced non-finite
// values ...", saying what that usually means. `stage` adds context ("at sampling step 3").
void check_finite(const float* v, size_t n, const char* component, const std::string& stage = "");

}  // namespace sdn
