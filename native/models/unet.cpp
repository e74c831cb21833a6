#include "models/unet.h"

#include "models/blocks.h"
#include "sdn/error.h"

namespace sdn {

UNetModel::UNetModel(WeightStore& w, std::string prefix, int heads, bool encoder_only, int head_dim)
    : w_(w), p_(std::move(prefix)), heads_(heads), head_dim_(head_dim), encoder_only_(encoder_only) {
  const Tensor& cin = w_.raw(p_ + "input_blocks.0.0.weight");
  const Tensor& te = w_.raw(p_ + "time_embed.0.weight");
  if (cin.ndim != 4 || te.ndim != 2) throw_error(ErrorCode::InvalidFile, "U-Net tensors have unexpected shapes");
  in_channels_ = (int)cin.shape[1];
  model_channels_ = (int)te.shape[1];
  if (!encoder_only_) {
    const Tensor& cout = w_.raw(p_ + "out.2.weight");
    if (cout.ndim != 4) throw_error(ErrorCode::InvalidFile, "U-Net tensors have unexpected shapes");
    out_channels_ = (int)cout.shape[0];
  }
  for (int i = 0;; ++i) {
    std::string b = p_ + "input_blocks." + std::to_string(i) + ".";
    Block blk;
    if (i == 0) {
      blk.kind = Block::ConvIn;
    } else if (w_.has(b + "0.op.weight")) {
      blk.kind = Block::Down;
      blk.res = b + "0.op";
      ++downsamples_;
    } else if (w_.has(b + "0.in_layers.0.weight")) {
      blk.res = b + "0.";
      if (w_.has(b + "1.norm.weight")) blk.attn = b + "1.";
    } else {
      break;
    }
    input_.push_back(blk);
  }
  for (int o = 0;; ++o) {
    std::string b = p_ + "output_blocks." + std::to_string(o) + ".";
    if (!w_.has(b + "0.in_layers.0.weight")) break;
    Block blk;
    blk.res = b + "0.";
    for (int k = 1; k <= 2; ++k) {
      std::string s = b + std::to_string(k) + ".";
      if (w_.has(s + "norm.weight")) blk.attn = s;
      if (w_.has(s + "conv.weight")) blk.up = s + "conv";
    }
    output_.push_back(blk);
  }
  mid_res0_ = p_ + "middle_block.0.";
  mid_attn_ = w_.has(p_ + "middle_block.1.norm.weight") ? p_ + "middle_block.1." : "";
  mid_res1_ = p_ + "middle_block.2.";
  if (input_.size() < 2 || (!encoder_only_ && output_.size() != input_.size()) ||
      !w_.has(mid_res0_ + "in_layers.0.weight"))
    throw_error(ErrorCode::InvalidFile, "U-Net block layout not recognised (" + std::to_string(input_.size()) +
                                            " input blocks, " + std::to_string(output_.size()) + " output blocks)");
  // context width from the first cross-attention
  for (const Block& b : input_)
    if (!b.attn.empty()) {
      context_dim_ = (int)w_.raw(b.attn + "transformer_blocks.0.attn2.to_k.weight").shape[1];
      break;
    }
  if (!context_dim_ && !mid_attn_.empty())
    context_dim_ = (int)w_.raw(mid_attn_ + "transformer_blocks.0.attn2.to_k.weight").shape[1];
  if (w_.has(p_ + "label_emb.0.0.weight")) {
    const Tensor& le = w_.raw(p_ + "label_emb.0.0.weight");
    const Tensor& le2 = w_.raw(p_ + "label_emb.0.2.weight");
    if (le.ndim != 2 || le2.ndim != 2 || le.shape[0] != te.shape[0] || le2.shape[0] != te.shape[0] ||
        le2.shape[1] != le.shape[0])
      throw_error(ErrorCode::InvalidFile, "U-Net label_emb has shapes " + le.shape_str() + " / " +
                                              le2.shape_str() + " that do not match the time embedding " +
                                              te.shape_str());
    adm_channels_ = (int)le.shape[1];
  }
}

int UNetModel::heads_for(const std::string& p, int64_t channels) const {
  int heads = heads_;
  if (heads <= 0) {
    if (head_dim_ < 1 || channels % head_dim_ != 0)
      throw_error(ErrorCode::InvalidFile, p + ": " + std::to_string(channels) +
                                              " channels do not split into heads of " + std::to_string(head_dim_));
    heads = (int)(channels / head_dim_);
  }
  if (heads < 1 || channels % heads != 0)
    throw_error(ErrorCode::InvalidFile, p + ": " + std::to_string(channels) + " channels do not split into " +
                                            std::to_string(heads) + " attention heads");
  return heads;
}

void UNetModel::poll_abort() const {
  if (abort_check_ && abort_check_()) throw_error(ErrorCode::Aborted, "generation was aborted");
}

Tensor UNetModel::resblock(const std::string& p, const Tensor& x, const Tensor& emb_silu) {
  Backend& be = w_.backend();
  Tensor h = group_norm(w_, p + "in_layers.0", x, 1e-5f, true);
  h = conv(w_, p + "in_layers.2", h, 1, 1);
  {
    Tensor e = linear(w_, p + "emb_layers.1", emb_silu);  // [B, Cout]
    be.add_(h, e.reshape({e.shape[0], e.shape[1], 1, 1}));
  }
  h = group_norm(w_, p + "out_layers.0", h, 1e-5f, true);
  h = conv(w_, p + "out_layers.3", h, 1, 1);
  if (w_.has(p + "skip_connection.weight")) {
    Tensor s = conv(w_, p + "skip_connection", x, 1, 0);
    be.add_(h, s);
  } else {
    be.add_(h, x);
  }
  return h;
}

Tensor UNetModel::transformer(const std::string& p, const Tensor& x, const Tensor& context, UNetContextCache* cache) {
  Backend& be = w_.backend();
  const int64_t H = x.shape[2], W = x.shape[3];
  const int heads = heads_for(p, x.shape[1]);
  // SD1.x: 1x1 conv before flattening to tokens; SD2.x/SDXL: Linear after it (same numbers either way, but the
  // weight's rank says which one the file holds)
  const bool linear_proj = w_.raw(p + "proj_in.weight").ndim == 2;
  Tensor h = group_norm(w_, p + "norm", x, 1e-6f, false);
  if (linear_proj) {
    h = be.nchw_to_nlc(h);  // [B, HW, C]
    h = linear(w_, p + "proj_in", h);
  } else {
    h = conv(w_, p + "proj_in", h, 1, 0);
    h = be.nchw_to_nlc(h);  // [B, HW, C]
  }
  int depth = count_indexed(w_, p + "transformer_blocks.", ".norm1.weight");
  for (int d = 0; d < depth; ++d) {
    std::string tb = p + "transformer_blocks." + std::to_string(d) + ".";
    {
      Tensor n = layer_norm(w_, tb + "norm1", h, 1e-5f);
      Tensor q = linear(w_, tb + "attn1.to_q", n);
      Tensor k = linear(w_, tb + "attn1.to_k", n);
      Tensor v = linear(w_, tb + "attn1.to_v", n);
      n = Tensor();
      Tensor a = be.attention(q, k, v, heads, false);
      q = k = v = Tensor();
      Tensor o = linear(w_, tb + "attn1.to_out.0", a);
      be.add_(h, o);
    }
    {
      Tensor n = layer_norm(w_, tb + "norm2", h, 1e-5f);
      Tensor q = linear(w_, tb + "attn2.to_q", n);
      n = Tensor();
      Tensor k, v;
      if (cache) {
        if (cache->context_data != context.storage_id()) {
          cache->kv.clear();
          cache->context_data = context.storage_id();
        }
        auto it = cache->kv.find(tb);
        if (it == cache->kv.end())
          it = cache->kv.emplace(tb, std::make_pair(linear(w_, tb + "attn2.to_k", context),
                                                    linear(w_, tb + "attn2.to_v", context))).first;
        k = it->second.first;
        v = it->second.second;
      } else {
        k = linear(w_, tb + "attn2.to_k", context);
        v = linear(w_, tb + "attn2.to_v", context);
      }
      Tensor a = be.attention(q, k, v, heads, false);
      q = k = v = Tensor();
      Tensor o = linear(w_, tb + "attn2.to_out.0", a);
      be.add_(h, o);
    }
    {
      Tensor n = layer_norm(w_, tb + "norm3", h, 1e-5f);
      Tensor f = linear(w_, tb + "ff.net.0.proj", n);
      n = Tensor();
      f = be.geglu(f);
      Tensor o = linear(w_, tb + "ff.net.2", f);
      be.add_(h, o);
    }
  }
  if (linear_proj) {
    h = linear(w_, p + "proj_out", h);
    h = be.nlc_to_nchw(h, H, W);
  } else {
    h = be.nlc_to_nchw(h, H, W);
    h = conv(w_, p + "proj_out", h, 1, 0);
  }
  be.add_(h, x);
  return h;
}

int64_t UNetModel::block_channels(int i) const {
  if (i < 0 || i > (int)input_.size()) return 0;
  if (i == (int)input_.size()) return w_.raw(mid_res1_ + "out_layers.3.weight").shape[0];
  const Block& b = input_[(size_t)i];
  if (b.kind == Block::ConvIn) return w_.raw(p_ + "input_blocks.0.0.weight").shape[0];
  if (b.kind == Block::Down) return w_.raw(b.res + ".weight").shape[0];
  return w_.raw(b.res + "out_layers.3.weight").shape[0];
}

void UNetModel::check_inputs(const Tensor& x, const std::vector<float>& t, const Tensor& context) const {
  const int64_t B = x.shape[0];
  if (x.ndim != 4 || x.shape[1] != in_channels_)
    throw_error(ErrorCode::InvalidArgument, "U-Net input must be [B, " + std::to_string(in_channels_) +
                                                ", h, w], got " + x.shape_str());
  if ((int64_t)t.size() != B) throw_error(ErrorCode::InvalidArgument, "U-Net: one timestep per batch item needed");
  if (context.ndim != 3 || context.shape[0] != B || context.shape[2] != context_dim_)
    throw_error(ErrorCode::InvalidArgument, "U-Net context must be [" + std::to_string(B) + ", T, " +
                                                std::to_string(context_dim_) + "], got " + context.shape_str());
  const int m = size_multiple();
  if (x.shape[2] % m || x.shape[3] % m)
    throw_error(ErrorCode::InvalidArgument, "U-Net latent size " + std::to_string(x.shape[3]) + "x" +
                                                std::to_string(x.shape[2]) + " must be a multiple of " +
                                                std::to_string(m) + " (image size a multiple of " +
                                                std::to_string(8 * m) + ")");
}

Tensor UNetModel::time_embedding(const std::vector<float>& t, const Tensor* y) {
  Backend& be = w_.backend();
  const int64_t B = (int64_t)t.size();
  Tensor emb = be.timestep_embedding(t, model_channels_, 10000.f);
  emb = linear(w_, p_ + "time_embed.0", emb);
  emb = be.unary(UnaryOp::Silu, emb);
  emb = linear(w_, p_ + "time_embed.2", emb);
  if (adm_channels_) {
    if (!y || !y->defined())
      throw_error(ErrorCode::InvalidArgument, "this U-Net (SDXL) needs the vector conditioning y [" +
                                                  std::to_string(B) + ", " + std::to_string(adm_channels_) + "]");
    if (y->ndim != 2 || y->shape[0] != B || y->shape[1] != adm_channels_)
      throw_error(ErrorCode::InvalidArgument, "U-Net vector conditioning y must be [" + std::to_string(B) + ", " +
                                                  std::to_string(adm_channels_) + "], got " + y->shape_str());
    Tensor l = linear(w_, p_ + "label_emb.0.0", *y);
    l = be.unary(UnaryOp::Silu, l);
    l = linear(w_, p_ + "label_emb.0.2", l);
    be.add_(emb, l);
  } else if (y && y->defined()) {
    throw_error(ErrorCode::InvalidArgument, "this U-Net has no label_emb: it takes no vector conditioning y");
  }
  return be.unary(UnaryOp::Silu, emb);
}

std::vector<Tensor> UNetModel::encoder_states(const Tensor& x, const std::vector<float>& t, const Tensor& context,
                                              UNetContextCache* cache, const Tensor* hint, Tensor* emb_out,
                                              const Tensor* y) {
  Backend& be = w_.backend();
  check_inputs(x, t, context);
  Tensor emb_silu = time_embedding(t, y);
  dump("unet.emb_silu", emb_silu);
  if (emb_out) *emb_out = emb_silu;
  std::vector<Tensor> states;
  Tensor h;
  for (size_t i = 0; i < input_.size(); ++i) {
    const Block& b = input_[i];
    if (b.kind == Block::ConvIn) {
      h = conv(w_, p_ + "input_blocks.0.0", x, 1, 1);
      if (hint) {
        if (hint->ndim != 4 || hint->shape[1] != h.shape[1] || hint->shape[2] != h.shape[2] ||
            hint->shape[3] != h.shape[3])
          throw_error(ErrorCode::InvalidArgument, "control hint " + hint->shape_str() + " does not fit " +
                                                      h.shape_str());
        be.add_(h, *hint);
      }
    } else if (b.kind == Block::Down) {
      h = conv(w_, b.res, h, 2, 1);
    } else {
      h = resblock(b.res, h, emb_silu);
      if (!b.attn.empty()) h = transformer(b.attn, h, context, cache);
    }
    if (dump_enabled()) dump("unet.input_blocks." + std::to_string(i), h);
    if (stream_weights_) w_.release_pages(p_ + "input_blocks." + std::to_string(i) + ".");
    states.push_back(h);
    poll_abort();
  }
  h = resblock(mid_res0_, h, emb_silu);
  if (!mid_attn_.empty()) h = transformer(mid_attn_, h, context, cache);
  h = resblock(mid_res1_, h, emb_silu);
  dump("unet.middle", h);
  if (stream_weights_) w_.release_pages(p_ + "middle_block.");
  states.push_back(h);
  return states;
}

Tensor UNetModel::forward(const Tensor& x, const std::vector<float>& t, const Tensor& context,
                          UNetContextCache* cache, const std::vector<Tensor>* residuals, const Tensor* y) {
  Backend& be = w_.backend();
  if (encoder_only_) throw_error(ErrorCode::Internal, "forward() on an encoder-only U-Net");
  if (residuals && residuals->size() != input_.size() + 1)
    throw_error(ErrorCode::InvalidArgument, "U-Net: " + std::to_string(residuals->size()) +
                                                " control residuals given, " + std::to_string(input_.size() + 1) +
                                                " needed (one per input block and one for the middle block)");
  Tensor emb_silu;
  std::vector<Tensor> skips = encoder_states(x, t, context, cache, nullptr, &emb_silu, y);
  Tensor h = std::move(skips.back());
  skips.pop_back();
  if (residuals) {
    // the middle residual, then each skip's (batch 1 broadcasts over the CFG batch); skips are fresh tensors
    // owned here, so the in-place adds touch nothing else
    auto add_res = [&](Tensor& a, const Tensor& r) {
      if (r.ndim != 4 || r.shape[1] != a.shape[1] || r.shape[2] != a.shape[2] || r.shape[3] != a.shape[3] ||
          (r.shape[0] != 1 && r.shape[0] != a.shape[0]))
        throw_error(ErrorCode::InvalidArgument, "control residual " + r.shape_str() + " does not fit the U-Net's " +
                                                    a.shape_str());
      be.add_(a, r);
    };
    add_res(h, residuals->back());
    for (size_t i = 0; i < skips.size(); ++i) add_res(skips[i], (*residuals)[i]);
  }
  for (size_t o = 0; o < output_.size(); ++o) {
    const Block& b = output_[o];
    {
      Tensor s = std::move(skips.back());
      skips.pop_back();
      h = be.concat(h, s, 1);
    }
    h = resblock(b.res, h, emb_silu);
    if (!b.attn.empty()) h = transformer(b.attn, h, context, cache);
    if (!b.up.empty()) {
      h = be.upsample_nearest2x(h);
      h = conv(w_, b.up, h, 1, 1);
    }
    if (dump_enabled()) dump("unet.output_blocks." + std::to_string(o), h);
    if (stream_weights_) w_.release_pages(p_ + "output_blocks." + std::to_string(o) + ".");
    poll_abort();
  }
  h = group_norm(w_, p_ + "out.0", h, 1e-5f, true);
  h = conv(w_, p_ + "out.2", h, 1, 1);
  dump("unet.out", h);
  return h;
}

void UNetModel::release() { w_.release(p_); }

}  // namespace sdn
