// Text conditioning: prompt -> what the U-Net is conditioned on. One Conditioner per model family (SD 1.x: one
// CLIP text encoder); the CFG denoiser and the sampling loop are shared by every family and task.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "backends/backend.h"
#include "models/clip.h"
#include "models/conditioning.h"
#include "models/weights.h"
#include "sdn/sdn.h"
#include "text/tokenizer.h"

namespace sdn {

// What the U-Net is conditioned on for one prompt (backend tensors).
struct Conditioning {
  Tensor context;  // [1, T, D] cross-attention context
  Tensor y;        // [1, adm] vector conditioning (SDXL: pooled text + size embedding); undefined when none
  bool defined() const { return context.defined(); }
};

class Conditioner {
 public:
  virtual ~Conditioner() = default;
  // Conditioning for one prompt with the generation's settings (clip skip, sizes for SDXL, ...).
  virtual Conditioning encode(const std::string& prompt, const GenerateParams& params) = 0;
  // The negative prompt's conditioning (SDXL: an empty negative prompt gives an all-zero context).
  virtual Conditioning encode_negative(const std::string& prompt, const GenerateParams& params) {
    return encode(prompt, params);
  }
  // Width of the context it produces (must match the U-Net's cross-attention).
  virtual int context_dim() const = 0;
  // Largest clip_skip the text encoder(s) allow.
  virtual int max_clip_skip() const = 0;
  // Drops the encoder weights after encoding (memory-mapped pages released).
  virtual void release() = 0;
  // Polled during encoding (between text-encoder passes); returning true stops it with Error Aborted.
  void set_abort_check(std::function<bool()> f) { abort_check_ = std::move(f); }

 protected:
  std::function<bool()> abort_check_;
};

// SD 1.x: CLIP ViT-L text encoder, A1111 prompt syntax (emphasis, BREAK, 77-token chunks concatenated).
class ClipConditioner final : public Conditioner {
 public:
  ClipConditioner(WeightStore& w, std::shared_ptr<ClipTokenizer> tokenizer, int clip_heads);
  Conditioning encode(const std::string& prompt, const GenerateParams& params) override;
  int context_dim() const override { return clip_.width(); }
  int max_clip_skip() const override { return clip_.layers(); }
  void release() override { clip_.release(); }
  // [1, 77*chunks, D] (emphasis applied). embedding_dir: textual-inversion embeddings used by name ("" = none).
  // Each distinct 77-token chunk is encoded once (the empty chunks of "a BREAK BREAK b" cost one pass together);
  // the abort check is polled before every pass.
  Tensor encode_prompt(const std::string& prompt, int clip_skip, const std::string& embedding_dir = "");

 private:
  WeightStore& w_;
  std::shared_ptr<ClipTokenizer> tokenizer_;
  ClipTextModel clip_;
};

// SD 2.x (OpenCLIP ViT-H, penultimate layer) and SDXL (CLIP-L + OpenCLIP bigG, pooled output and size
// conditioning in y): models/conditioning.h. params.clip_skip 0 = the family's default (2 for both).
class FamilyConditioner final : public Conditioner {
 public:
  FamilyConditioner(WeightStore& w, std::shared_ptr<ClipTokenizer> tokenizer, ModelFamily family, int clip_heads)
      : text_(w, std::move(tokenizer), family, clip_heads) {}
  Conditioning encode(const std::string& prompt, const GenerateParams& params) override;
  Conditioning encode_negative(const std::string& prompt, const GenerateParams& params) override;
  int context_dim() const override { return text_.context_dim(); }
  int max_clip_skip() const override { return text_.max_clip_skip(); }
  void release() override { text_.release(); }
  TextConditioner& text() { return text_; }

 private:
  Conditioning encode(const std::string& prompt, const GenerateParams& params, bool zero_context);
  TextConditioner text_;
};

}  // namespace sdn
