#include "models/clip.h"

#include <cstring>

#include "models/blocks.h"
#include "sdn/error.h"

namespace sdn {

ClipTextModel::ClipTextModel(WeightStore& w, std::string prefix, int heads) : w_(w), p_(std::move(prefix)) {
  const Tensor& tok = w_.raw(p_ + "embeddings.token_embedding.weight");
  const Tensor& pos = w_.raw(p_ + "embeddings.position_embedding.weight");
  if (tok.ndim != 2 || pos.ndim != 2 || tok.shape[1] != pos.shape[1])
    throw_error(ErrorCode::InvalidFile, "CLIP embeddings have unexpected shapes " + tok.shape_str() + " / " +
                                            pos.shape_str());
  vocab_ = (int)tok.shape[0];
  width_ = (int)tok.shape[1];
  positions_ = (int)pos.shape[0];
  layers_ = count_indexed(w_, p_ + "encoder.layers.", ".self_attn.q_proj.weight");
  if (layers_ == 0) throw_error(ErrorCode::InvalidFile, "CLIP text encoder has no layers under " + p_);
  heads_ = heads > 0 ? heads : (width_ % 64 == 0 ? width_ / 64 : 1);
  if (width_ % heads_ != 0)
    throw_error(ErrorCode::InvalidFile, "CLIP width " + std::to_string(width_) + " is not divisible into " +
                                            std::to_string(heads_) + " heads");
}

Tensor ClipTextModel::encode(const std::vector<int>& ids, int batch, int clip_skip, const Tensor* extra) {
  Backend& be = w_.backend();
  const int T = positions_;
  if (batch < 1 || (int64_t)ids.size() != (int64_t)batch * T)
    throw_error(ErrorCode::InvalidArgument, "CLIP: expected " + std::to_string(batch) + " x " +
                                                std::to_string(T) + " token ids, got " + std::to_string(ids.size()));
  const int64_t n_extra = extra ? extra->shape[0] : 0;
  if (extra && (extra->ndim != 2 || extra->shape[1] != width_))
    throw_error(ErrorCode::InvalidArgument, "CLIP: extra embedding rows " + extra->shape_str() + " must be [n, " +
                                                std::to_string(width_) + "]");
  bool any_extra = false;
  for (int id : ids) {
    if (id >= vocab_ && id < vocab_ + n_extra) {
      any_extra = true;
      continue;
    }
    if (id < 0 || id >= vocab_)
      throw_error(ErrorCode::InvalidArgument,
                  "token id " + std::to_string(id) + " is outside the text encoder's vocabulary (" + std::to_string(vocab_) +
                      " tokens): the CLIP merges in use do not belong to this model; give the model's own merges "
                      "file (tokenizerPath in JavaScript, --tokenizer on the command line)");
  }
  if (clip_skip < 1 || clip_skip > layers_)
    throw_error(ErrorCode::InvalidArgument, "clip_skip must be in 1.." + std::to_string(layers_) + ", got " +
                                                std::to_string(clip_skip));
  // embeddings: token rows + position rows (gathered on the backend from the tables in their stored type)
  const Tensor& tok = w_.get(p_ + "embeddings.token_embedding.weight");
  const Tensor& pos = w_.get(p_ + "embeddings.position_embedding.weight");
  std::vector<int32_t> pos_ids(T);
  for (int i = 0; i < T; ++i) pos_ids[i] = i;
  Tensor x;
  if (!any_extra) {
    x = be.get_rows(tok, std::vector<int32_t>(ids.begin(), ids.end())).reshape({batch, T, width_});
  } else {
    // rows past the vocabulary come from the extra table: two gathers blended with a 0/1 row mask
    const size_t n = ids.size();
    std::vector<int32_t> base(n), ext(n);
    std::vector<float> keep(n), take(n);
    for (size_t i = 0; i < n; ++i) {
      const bool e = ids[i] >= vocab_;
      base[i] = e ? 0 : ids[i];
      ext[i] = e ? ids[i] - vocab_ : 0;
      keep[i] = e ? 0.f : 1.f;
      take[i] = e ? 1.f : 0.f;
    }
    Tensor table = be.prepare_weight(*extra);
    Tensor a = be.mul(be.get_rows(tok, base), be.upload(Tensor::wrap(keep.data(), {(int64_t)n, 1}, DType::F32)));
    Tensor b = be.mul(be.get_rows(table, ext), be.upload(Tensor::wrap(take.data(), {(int64_t)n, 1}, DType::F32)));
    x = be.add(a, b).reshape({batch, T, width_});
  }
  be.add_(x, be.get_rows(pos, pos_ids));  // [T, D] broadcast over the batch
  dump("clip.embed", x);

  const int run = layers_ - clip_skip + 1;
  for (int l = 0; l < run; ++l) {
    std::string lp = p_ + "encoder.layers." + std::to_string(l) + ".";
    {
      Tensor h = layer_norm(w_, lp + "layer_norm1", x, 1e-5f);
      Tensor q = linear(w_, lp + "self_attn.q_proj", h);
      Tensor k = linear(w_, lp + "self_attn.k_proj", h);
      Tensor v = linear(w_, lp + "self_attn.v_proj", h);
      h = Tensor();
      Tensor a = be.attention(q, k, v, heads_, /*causal=*/true);
      q = k = v = Tensor();
      Tensor o = linear(w_, lp + "self_attn.out_proj", a);
      be.add_(x, o);
    }
    {
      Tensor h = layer_norm(w_, lp + "layer_norm2", x, 1e-5f);
      Tensor f = linear(w_, lp + "mlp.fc1", h);
      f = be.unary(UnaryOp::QuickGelu, f);
      Tensor o = linear(w_, lp + "mlp.fc2", f);
      be.add_(x, o);
    }
    if (dump_enabled()) dump("clip.layer" + std::to_string(l), x);
  }
  Tensor out = layer_norm(w_, p_ + "final_layer_norm", x, 1e-5f);
  dump("clip.out", out);
  return out;
}

void ClipTextModel::release() { w_.release(p_); }

}  // namespace sdn
