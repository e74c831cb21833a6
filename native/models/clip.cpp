#include "models/clip.h"

#include <cstdlib>
#include <cstring>

#include "models/blocks.h"
#include "sdn/error.h"

namespace sdn {

ClipTextModel::ClipTextModel(WeightStore& w, std::string prefix, int heads, ClipActivation act)
    : w_(w), p_(std::move(prefix)), act_(act) {
  const Tensor& tok = w_.raw(p_ + "embeddings.token_embedding.weight");
  const Tensor& pos = w_.raw(p_ + "embeddings.position_embedding.weight");
  if (tok.ndim != 2 || pos.ndim != 2 || tok.shape[1] != pos.shape[1])
    throw_error(ErrorCode::InvalidFile, "CLIP embeddings have unexpected shapes " + tok.shape_str() + " / " +
                                            pos.shape_str());
  vocab_ = (int)tok.shape[0];
  width_ = (int)tok.shape[1];
  positions_ = (int)pos.shape[0];
  // OpenCLIP towers store q, k and v fused ([3D, D] weight, [3D] bias, in that order along dim 0): the three
  // projections become row slices of it (views, no copy), so the layers below see separate q/k/v weights.
  for (int l = 0;; ++l) {
    std::string lp = p_ + "encoder.layers." + std::to_string(l) + ".self_attn.";
    if (w_.has(lp + "q_proj.weight")) continue;
    if (!w_.has(lp + "in_proj.weight")) break;
    const Tensor& f = w_.raw(lp + "in_proj.weight");
    if (f.ndim != 2 || f.shape[0] != 3 * (int64_t)width_ || f.shape[1] != width_ || !f.is_contiguous() ||
        f.on_device())
      throw_error(ErrorCode::InvalidFile, lp + "in_proj.weight has shape " + f.shape_str() + ", expected [" +
                                              std::to_string(3 * width_) + ", " + std::to_string(width_) + "]");
    const char* names[3] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; i < 3; ++i)
      w_.override_tensor(lp + names[i] + ".weight", f.slice0((int64_t)i * width_, (int64_t)(i + 1) * width_));
    if (w_.has(lp + "in_proj.bias")) {
      const Tensor& b = w_.raw(lp + "in_proj.bias");
      if (b.ndim != 1 || b.shape[0] != 3 * (int64_t)width_ || !b.is_contiguous() || b.on_device())
        throw_error(ErrorCode::InvalidFile, lp + "in_proj.bias has shape " + b.shape_str() + ", expected [" +
                                                std::to_string(3 * width_) + "]");
      for (int i = 0; i < 3; ++i)
        w_.override_tensor(lp + names[i] + ".bias", b.slice0((int64_t)i * width_, (int64_t)(i + 1) * width_));
    }
  }
  layers_ = count_indexed(w_, p_ + "encoder.layers.", ".self_attn.q_proj.weight");
  if (layers_ == 0) throw_error(ErrorCode::InvalidFile, "CLIP text encoder has no layers under " + p_);
  heads_ = heads > 0 ? heads : (width_ % 64 == 0 ? width_ / 64 : 1);
  if (width_ % heads_ != 0)
    throw_error(ErrorCode::InvalidFile, "CLIP width " + std::to_string(width_) + " is not divisible into " +
                                            std::to_string(heads_) + " heads");
  // Text projection: OpenCLIP stores P [width, embed] applied as row @ P; HF/diffusers store the Linear weight
  // W = P^T [embed, width]. The OpenCLIP matrix is transposed once here (a load-time weight transform, like the
  // q/k/v split) so both run as a Linear. SDN_POOLED_PROJECTION=linear instead applies P itself as the Linear
  // weight (row @ P^T), as stable-diffusion.cpp does for OpenCLIP-layout files.
  if (w_.has(p_ + "text_projection.weight")) {
    const Tensor& t = w_.raw(p_ + "text_projection.weight");
    if (t.ndim != 2 || t.shape[1] != width_)
      throw_error(ErrorCode::InvalidFile, p_ + "text_projection.weight has shape " + t.shape_str() +
                                              ", expected [N, " + std::to_string(width_) + "]");
    projection_ = Projection::Linear;
    projection_width_ = (int)t.shape[0];
  } else if (w_.has(p_ + "text_projection")) {
    const Tensor& t = w_.raw(p_ + "text_projection");
    if (t.ndim != 2 || t.shape[0] != width_ || t.on_device())
      throw_error(ErrorCode::InvalidFile, p_ + "text_projection has shape " + t.shape_str() + ", expected [" +
                                              std::to_string(width_) + ", N]");
    const int64_t rows = t.shape[0], cols = t.shape[1];
    Tensor f = t.to_f32();
    const char* mode = std::getenv("SDN_POOLED_PROJECTION");
    if (mode && std::strcmp(mode, "linear") == 0) {
      // stable-diffusion.cpp's behaviour (ENGINE-FACTS 10, DIFF 9): the stored OpenCLIP matrix applied as a
      // Linear weight, pooled = row @ P^T. Only for reproducing that engine's SDXL images (its golden case).
      w_.override_tensor(p_ + "text_projection.weight", f);
      projection_ = Projection::OpenClip;
      projection_width_ = (int)rows;
      return;
    }
    auto buf = std::shared_ptr<float>(new float[(size_t)rows * cols], std::default_delete<float[]>());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) buf.get()[c * rows + r] = f.f32()[r * cols + c];
    w_.override_tensor(p_ + "text_projection.weight", Tensor::wrap(buf.get(), {cols, rows}, DType::F32, buf));
    projection_ = Projection::OpenClip;
    projection_width_ = (int)cols;
  }
}

Tensor ClipTextModel::encode(const std::vector<int>& ids, int batch, int clip_skip, const Tensor* extra) {
  ClipEncodeOptions o;
  o.clip_skip = clip_skip;
  o.extra = extra;
  return encode(ids, batch, o).hidden;
}

ClipEncoding ClipTextModel::encode(const std::vector<int>& ids, int batch, const ClipEncodeOptions& opt) {
  Backend& be = w_.backend();
  const int T = positions_;
  const int clip_skip = opt.clip_skip;
  const Tensor* extra = opt.extra;
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
  if (opt.pooled && projection_ == Projection::None)
    throw_error(ErrorCode::InvalidFile, "the text encoder under " + p_ +
                                            " has no text_projection, which the pooled output needs");
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

  const UnaryOp act = act_ == ClipActivation::GeluErf ? UnaryOp::GeluErf : UnaryOp::QuickGelu;
  const int wanted = layers_ - clip_skip + 1;  // hidden state after this many layers
  const int run = opt.pooled ? layers_ : wanted;
  ClipEncoding out;
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
      f = be.unary(act, f);
      Tensor o = linear(w_, lp + "mlp.fc2", f);
      be.add_(x, o);
    }
    if (dump_enabled()) dump("clip.layer" + std::to_string(l), x);
    if (l + 1 == wanted) {
      if (opt.final_norm) {
        out.hidden = layer_norm(w_, p_ + "final_layer_norm", x, 1e-5f);
      } else if (run > wanted) {
        out.hidden = be.combine(x, 1.f, x, 0.f);  // a copy: x keeps changing in place
      } else {
        out.hidden = x;
      }
    }
  }
  dump("clip.out", out.hidden);
  if (opt.pooled) {
    Tensor n = layer_norm(w_, p_ + "final_layer_norm", x, 1e-5f);
    x = Tensor();
    std::vector<int32_t> rows((size_t)batch);
    for (int b = 0; b < batch; ++b) {
      // first position of the largest id (EOS = 49407 is the largest id of the vocabulary); textual-inversion
      // ids (past the vocabulary) are not candidates: they are larger than EOS but are not the end of the text
      int best = 0;
      for (int i = 1; i < T; ++i) {
        const int id = ids[(size_t)b * T + i];
        if (id < vocab_ && id > ids[(size_t)b * T + best]) best = i;
      }
      rows[(size_t)b] = b * T + best;
    }
    Tensor r = be.get_rows(n.reshape({(int64_t)batch * T, width_}), rows);  // [batch, width]
    out.pooled = linear(w_, p_ + "text_projection", r);
    dump("clip.pooled", out.pooled);
  }
  return out;
}

void ClipTextModel::release() { w_.release(p_); }

}  // namespace sdn
