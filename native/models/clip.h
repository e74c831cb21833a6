// CLIP ViT-L/14 text encoder (SD1.x), HF-transformers tensor names under a prefix. Dimensions come from the
// tensors (width, layers, positions, vocabulary), so tiny test models run too.
#pragma once
#include <string>
#include <vector>

#include "models/weights.h"

namespace sdn {

class ClipTextModel {
 public:
  // heads <= 0: width / 64 (CLIP ViT-L/14 has 12 heads of 64), at least 1.
  explicit ClipTextModel(WeightStore& w, std::string prefix = "cond_stage_model.transformer.text_model.",
                         int heads = 0);

  int width() const { return width_; }
  int layers() const { return layers_; }
  int positions() const { return positions_; }
  int vocab() const { return vocab_; }

  // ids: batch rows of positions() ids each. Returns [batch, positions, width]: the hidden state after layer
  // (layers - clip_skip + 1) (clip_skip 1 = all layers), followed by the final LayerNorm (SD1 semantics).
  // extra (optional): host F32 [n, width] rows for ids vocab() .. vocab()+n-1 (textual-inversion vectors).
  Tensor encode(const std::vector<int>& ids, int batch, int clip_skip, const Tensor* extra = nullptr);
  // Drops the prepared weights and lets the OS reclaim the mapped pages.
  void release();

 private:
  WeightStore& w_;
  std::string p_;
  int width_ = 0, layers_ = 0, positions_ = 0, vocab_ = 0, heads_ = 1;
};

}  // namespace sdn
