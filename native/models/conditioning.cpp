#include "models/conditioning.h"

#include <algorithm>

#include "sdn/error.h"

namespace sdn {

ModelFamily model_family_from_name(const std::string& name) {
  if (name == "sd1") return ModelFamily::SD1;
  if (name == "sd2") return ModelFamily::SD2;
  if (name == "sdxl") return ModelFamily::SDXL;
  throw_error(ErrorCode::InvalidArgument, "model family '" + name + "' is not one of sd1, sd2, sdxl");
}

const char* model_family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::SD1: return "sd1";
    case ModelFamily::SD2: return "sd2";
    default: return "sdxl";
  }
}

namespace {
constexpr int kSizeEmbedDim = 256;
const char* kTe1 = "cond_stage_model.transformer.text_model.";
const char* kTe2 = "cond_stage_model.1.transformer.text_model.";

// OpenCLIP tokenizers pad with id 0 after the end token (open_clip.tokenize; sd.cpp does the same).
std::vector<int> zero_after_first_eos(std::vector<int> ids, int T, int eos) {
  for (size_t c = 0; c * T < ids.size(); ++c) {
    bool seen = false;
    for (int i = 0; i < T; ++i) {
      int& v = ids[c * T + i];
      if (seen) v = 0;
      else if (v == eos) seen = true;
    }
  }
  return ids;
}

// A1111 emphasis per 77-token chunk of z [chunks, T, D] (one host round trip, only when a weight is not 1).
Tensor emphasis(Backend& be, Tensor z, const TokenizedPrompt& tp) {
  bool any = false;
  for (float w : tp.weights) any = any || w != 1.0f;
  if (!any) return z;
  const int T = (int)z.shape[1];
  const int64_t D = z.shape[2];
  Tensor hz = be.to_host(z).contiguous();  // a private copy (the CPU backend's to_host returns z itself)
  for (int c = 0; c < tp.chunks; ++c) {
    const float* w = tp.weights.data() + (size_t)c * T;
    bool all_one = true;
    for (int i = 0; i < T; ++i) all_one = all_one && w[i] == 1.0f;
    if (!all_one) apply_emphasis(hz.f32() + (size_t)c * T * D, T, (int)D, w);
  }
  return be.upload(hz);
}
}  // namespace

TextConditioner::TextConditioner(WeightStore& w, std::shared_ptr<ClipTokenizer> tokenizer, ModelFamily family,
                                 int clip_heads)
    : w_(w), tok_(std::move(tokenizer)), family_(family) {
  const ClipActivation act1 = family == ModelFamily::SD2 ? ClipActivation::GeluErf : ClipActivation::QuickGelu;
  clip_ = std::make_unique<ClipTextModel>(w_, kTe1, clip_heads, act1);
  if (family == ModelFamily::SDXL) {
    if (!w_.has(std::string(kTe2) + "embeddings.token_embedding.weight"))
      throw_error(ErrorCode::InvalidFile,
                  "the SDXL model has no second text encoder (OpenCLIP bigG: conditioner.embedders.1.* in a "
                  "single file, text_encoder_2/ in a diffusers folder)");
    clip2_ = std::make_unique<ClipTextModel>(w_, kTe2, clip_heads, ClipActivation::GeluErf);
    if (!clip2_->has_projection())
      throw_error(ErrorCode::InvalidFile, "the SDXL second text encoder has no text_projection (needed for the "
                                          "pooled output)");
    if (clip2_->positions() != clip_->positions())
      throw_error(ErrorCode::InvalidFile, "the two SDXL text encoders have different context lengths (" +
                                              std::to_string(clip_->positions()) + " and " +
                                              std::to_string(clip2_->positions()) + ")");
  }
}

int TextConditioner::context_dim() const { return clip_->width() + (clip2_ ? clip2_->width() : 0); }

int TextConditioner::adm_channels() const {
  return clip2_ ? clip2_->projection_width() + 6 * kSizeEmbedDim : 0;
}

int TextConditioner::max_clip_skip() const {
  return clip2_ ? std::min(clip_->layers(), clip2_->layers()) : clip_->layers();
}

TextConditioning TextConditioner::encode(const std::string& prompt, int clip_skip, const SizeConditioning& size,
                                         bool zero_context, const ExtraTokens* extra) {
  if (!tok_) throw_error(ErrorCode::NotFound, "no CLIP tokenizer is loaded");
  if (clip_skip <= 0) clip_skip = default_clip_skip();
  if (clip_skip > max_clip_skip())
    throw_error(ErrorCode::InvalidArgument, "clipSkip must be at most " + std::to_string(max_clip_skip()) +
                                                " for this model (its text encoder's layer count), got " +
                                                std::to_string(clip_skip));
  Backend& be = w_.backend();
  if (extra && extra->empty()) extra = nullptr;
  if (extra && (!extra->extra.defined() || extra->extra.ndim != 2 || extra->extra.shape[1] != clip_->width() ||
                (clip2_ && (!extra->extra2.defined() || extra->extra2.ndim != 2 ||
                            extra->extra2.shape[1] != clip2_->width() ||
                            extra->extra2.shape[0] != extra->extra.shape[0]))))
    throw_error(ErrorCode::Internal, "textual-inversion tables do not fit the text encoders");
  TokenizedPrompt tp = extra ? tokenize_prompt(*tok_, prompt, extra->replacements) : tokenize_prompt(*tok_, prompt);
  const int T = clip_->positions();
  if (tp.chunks < 1 || (int64_t)tp.ids.size() != (int64_t)tp.chunks * T || tp.weights.size() != tp.ids.size())
    throw_error(ErrorCode::Internal, "tokenized prompt has " + std::to_string(tp.ids.size()) + " ids for " +
                                         std::to_string(tp.chunks) + " chunks of " + std::to_string(T));
  TextConditioning out;
  Tensor z;  // [chunks, T, D]
  if (family_ != ModelFamily::SDXL) {
    ClipEncodeOptions o;
    o.clip_skip = clip_skip;
    o.final_norm = true;
    o.extra = extra ? &extra->extra : nullptr;
    const std::vector<int> ids = family_ == ModelFamily::SD2 ? zero_after_first_eos(tp.ids, T, tok_->eos()) : tp.ids;
    z = clip_->encode(ids, tp.chunks, o).hidden;
    z = emphasis(be, z, tp);
  } else {
    ClipEncodeOptions o1;
    o1.clip_skip = clip_skip;
    o1.final_norm = false;
    o1.extra = extra ? &extra->extra : nullptr;
    Tensor z1 = clip_->encode(tp.ids, tp.chunks, o1).hidden;  // [chunks, T, 768]
    std::vector<int> ids2 = zero_after_first_eos(tp.ids, T, tok_->eos());
    if (extra && clip2_->vocab() != clip_->vocab())  // ids past the first vocabulary -> past the second one
      for (int& id : ids2)
        if (id >= clip_->vocab()) id = id - clip_->vocab() + clip2_->vocab();
    Tensor z2;
    Tensor pooled;
    {
      // chunk 0 with the pooled output, the others without
      ClipEncodeOptions o2;
      o2.clip_skip = clip_skip;
      o2.final_norm = false;
      o2.pooled = true;
      o2.extra = extra ? &extra->extra2 : nullptr;
      ClipEncoding e0 = clip2_->encode(std::vector<int>(ids2.begin(), ids2.begin() + T), 1, o2);
      pooled = e0.pooled;  // [1, 1280]
      z2 = e0.hidden;
      if (tp.chunks > 1) {
        o2.pooled = false;
        Tensor rest = clip2_->encode(std::vector<int>(ids2.begin() + T, ids2.end()), tp.chunks - 1, o2).hidden;
        z2 = be.concat(z2, rest, 0);
      }
    }
    const int64_t rows = (int64_t)tp.chunks * T;
    const int64_t D1 = z1.shape[2], D2 = z2.shape[2];
    z = be.concat(z1.reshape({rows, D1}), z2.reshape({rows, D2}), 1).reshape({tp.chunks, T, D1 + D2});
    z1 = z2 = Tensor();
    z = emphasis(be, z, tp);
    // y = [pooled | E(orig h), E(orig w), E(crop top), E(crop left), E(target h), E(target w)]
    auto or_default = [](int v, int d) { return v > 0 ? v : d; };
    const int W = or_default(size.target_width, 0), H = or_default(size.target_height, 0);
    std::vector<float> v = {(float)or_default(size.original_height, H), (float)or_default(size.original_width, W),
                            (float)size.crop_top,                       (float)size.crop_left,
                            (float)H,                                   (float)W};
    Tensor e = be.timestep_embedding(v, kSizeEmbedDim, 10000.f).reshape({1, 6 * kSizeEmbedDim});
    out.y = be.concat(pooled, e, 1);
    dump("cond.y", out.y);
  }
  const int64_t D = z.shape[2];
  out.context = z.reshape({1, (int64_t)tp.chunks * T, D});
  if (zero_context) out.context = be.scale(out.context, 0.f);  // (the encoder's outputs are finite)
  dump("cond", out.context);
  return out;
}

void TextConditioner::release() {
  clip_->release();
  if (clip2_) clip2_->release();
}

}  // namespace sdn
