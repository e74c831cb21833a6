// Text conditioning per model family, written against Backend only:
//  * SD1.x: CLIP ViT-L/14, hidden state after layer L - clip_skip + 1, final LayerNorm (default clip skip 1).
//  * SD2.x: OpenCLIP ViT-H/14 (exact GELU), ids padded with 0 after the first EOS, penultimate layer + final
//    LayerNorm by default (the model's configuration: layer "penultimate"; clip skip 2).
//  * SDXL: CLIP ViT-L/14 (EOS padding) and OpenCLIP ViT-bigG/14 (0 padding), both at the penultimate layer
//    without the final LayerNorm, concatenated along features to a 2048-wide context; the vector conditioning
//    y = [pooled bigG output through its text projection | E(orig h) E(orig w) E(crop top) E(crop left)
//    E(target h) E(target w)], E = 256-wide sinusoidal embedding (ENGINE-FACTS 5.8).
// Emphasis ((word:1.2)) is applied per 77-token chunk (for SDXL on the concatenated chunk, as the reference
// engine does); the pooled vector is taken from the first chunk and not re-weighted.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/clip.h"
#include "models/weights.h"
#include "text/tokenizer.h"

namespace sdn {

enum class ModelFamily { SD1, SD2, SDXL };
// "sd1" / "sd2" / "sdxl" (InvalidArgument otherwise).
ModelFamily model_family_from_name(const std::string& name);
const char* model_family_name(ModelFamily f);

// SDXL size and crop conditioning (pixels). Zeros for the sizes mean "the image size".
struct SizeConditioning {
  int original_width = 0, original_height = 0;
  int crop_left = 0, crop_top = 0;
  int target_width = 0, target_height = 0;
};

// Textual-inversion vectors for one prompt: each replacement turns a token sequence of the prompt (an embedding's
// name) into ids past the first encoder's vocabulary (vocab() + k); row k of `extra` (first encoder) and of `extra2`
// (SDXL's bigG) is the vector for id vocab() + k. Built by the pipeline (pipeline/adapters.h) from embedding files.
struct ExtraTokens {
  std::vector<TokenReplacement> replacements;
  Tensor extra;   // host F32 [n, width of the first encoder]
  Tensor extra2;  // SDXL: host F32 [n, width of the second encoder]; undefined otherwise
  bool empty() const { return replacements.empty(); }
};

struct TextConditioning {
  Tensor context;  // [1, 77 * chunks, D] on the backend
  Tensor y;        // [1, adm] (SDXL) or undefined
};

class TextConditioner {
 public:
  // clip_heads <= 0: width / 64.
  TextConditioner(WeightStore& w, std::shared_ptr<ClipTokenizer> tokenizer, ModelFamily family, int clip_heads = 0);

  ModelFamily family() const { return family_; }
  int context_dim() const;
  // Width of y (SDXL: pooled width + 6 * 256); 0 for families without a vector conditioning.
  int adm_channels() const;
  // The clip skip used when the caller gives 0: SD1 1, SD2 2, SDXL 2.
  int default_clip_skip() const { return family_ == ModelFamily::SD1 ? 1 : 2; }
  // The largest clip skip the encoders allow (the smallest layer count).
  int max_clip_skip() const;

  // clip_skip 0 = the family default. zero_context: all-zero context (SDXL with an empty negative prompt, as the
  // reference engine does; the pooled part of y is still the encoded empty prompt's).
  // extra: textual-inversion vectors (may be null).
  TextConditioning encode(const std::string& prompt, int clip_skip, const SizeConditioning& size,
                          bool zero_context = false, const ExtraTokens* extra = nullptr);
  void release();

  const std::shared_ptr<ClipTokenizer>& tokenizer() const { return tok_; }
  // Width and vocabulary of the first encoder (CLIP-L or ViT-H); width of the second (SDXL bigG; 0 otherwise).
  int width() const { return clip_->width(); }
  int vocab() const { return clip_->vocab(); }
  int width2() const { return clip2_ ? clip2_->width() : 0; }

 private:
  WeightStore& w_;
  std::shared_ptr<ClipTokenizer> tok_;
  ModelFamily family_;
  std::unique_ptr<ClipTextModel> clip_;   // CLIP-L (SD1, SDXL) or OpenCLIP ViT-H (SD2)
  std::unique_ptr<ClipTextModel> clip2_;  // OpenCLIP bigG (SDXL)
};

}  // namespace sdn
