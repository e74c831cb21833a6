// CLIP text encoders over `Backend`: OpenAI CLIP ViT-L/14 (SD1.x, SDXL's first encoder) and the OpenCLIP towers
// ViT-H/14 (SD2.x) and ViT-bigG/14 (SDXL's second encoder). All use HF-transformers style names under a prefix
// (formats/names.cpp maps OpenCLIP names onto them); an OpenCLIP fused `self_attn.in_proj.weight` [3D, D] (q, k, v
// stacked along dim 0) is split into q/k/v row slices when the model is built. Dimensions come from the tensors
// (width, layers, positions, vocabulary), so tiny test models run too.
#pragma once
#include <string>
#include <vector>

#include "backends/backend.h"
#include "models/weights.h"

namespace sdn {

enum class ClipActivation {
  QuickGelu,  // OpenAI CLIP (ViT-L/14): x * sigmoid(1.702 x)
  GeluErf,    // OpenCLIP (ViT-H/14, ViT-bigG/14): exact GELU
};

struct ClipEncodeOptions {
  // The hidden state used: after layer (layers - clip_skip + 1); 1 = the last layer, 2 = the penultimate one.
  int clip_skip = 1;
  // Apply the final LayerNorm to that hidden state (SD1, SD2: yes; SDXL: no).
  bool final_norm = true;
  // Also compute the pooled output: all layers, the final LayerNorm, the row at the first EOS position
  // (argmax of the ids, as OpenCLIP does), times the text projection (needs a text_projection tensor).
  bool pooled = false;
  // Host F32 [n, width] rows for ids vocab() .. vocab()+n-1 (textual-inversion vectors); may be null.
  const Tensor* extra = nullptr;
};

struct ClipEncoding {
  Tensor hidden;  // [batch, positions, width]
  Tensor pooled;  // [batch, projection width] (only when requested)
};

class ClipTextModel {
 public:
  // heads <= 0: width / 64 (every supported tower has heads of 64), at least 1.
  explicit ClipTextModel(WeightStore& w, std::string prefix = "cond_stage_model.transformer.text_model.",
                         int heads = 0, ClipActivation act = ClipActivation::QuickGelu);

  int width() const { return width_; }
  int layers() const { return layers_; }
  int positions() const { return positions_; }
  int vocab() const { return vocab_; }
  bool has_projection() const { return projection_ != Projection::None; }
  // Width of the pooled output (the projection's output width); 0 without a projection.
  int projection_width() const { return projection_width_; }

  // ids: batch rows of positions() ids each. Returns [batch, positions, width]: the hidden state after layer
  // (layers - clip_skip + 1) (clip_skip 1 = all layers), followed by the final LayerNorm (SD1 semantics).
  // extra (optional): host F32 [n, width] rows for ids vocab() .. vocab()+n-1 (textual-inversion vectors).
  Tensor encode(const std::vector<int>& ids, int batch, int clip_skip, const Tensor* extra = nullptr);
  ClipEncoding encode(const std::vector<int>& ids, int batch, const ClipEncodeOptions& options);
  // Drops the prepared weights and lets the OS reclaim the mapped pages.
  void release();

 private:
  enum class Projection { None, OpenClip, Linear };
  WeightStore& w_;
  std::string p_;
  int width_ = 0, layers_ = 0, positions_ = 0, vocab_ = 0, heads_ = 1, projection_width_ = 0;
  ClipActivation act_;
  Projection projection_ = Projection::None;
};

}  // namespace sdn
