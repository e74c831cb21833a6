#include "pipeline/conditioner.h"

#include <algorithm>
#include <cstdlib>

#include "pipeline/adapters.h"

#include "models/validate.h"
#include "sdn/error.h"

namespace sdn {

ClipConditioner::ClipConditioner(WeightStore& w, std::shared_ptr<ClipTokenizer> tokenizer, int clip_heads)
    : w_(w), tokenizer_(std::move(tokenizer)), clip_(w, "cond_stage_model.transformer.text_model.", clip_heads) {}

Conditioning ClipConditioner::encode(const std::string& prompt, const GenerateParams& params) {
  Conditioning c;
  c.context = encode_prompt(prompt, params.clip_skip > 0 ? params.clip_skip : 1, params.embedding_dir);
  return c;
}

Conditioning FamilyConditioner::encode(const std::string& prompt, const GenerateParams& params, bool zero_context) {
  SizeConditioning size;  // original = target = the image size, crop (0, 0): what A1111 and sd.cpp use
  size.target_width = size.original_width = params.width;
  size.target_height = size.original_height = params.height;
  // textual inversion: SD 2.x OpenCLIP-H vectors, SDXL clip_l (CLIP-L) and clip_g (bigG) vectors
  if (!text_.tokenizer()) throw_error(ErrorCode::NotFound, "no CLIP tokenizer is loaded");
  std::string p = prompt;
  const std::vector<Embedding> embs = find_embeddings(p, params.embedding_dir, text_.width(),
                                                      model_family_name(text_.family()), text_.width2());
  const ExtraTokens et = embedding_tokens(embs, *text_.tokenizer(), text_.vocab());
  TextConditioning t = text_.encode(p, params.clip_skip, size, zero_context, &et);
  Conditioning c;
  c.context = t.context;
  c.y = t.y;
  return c;
}

Conditioning FamilyConditioner::encode(const std::string& prompt, const GenerateParams& params) {
  return encode(prompt, params, false);
}

Conditioning FamilyConditioner::encode_negative(const std::string& prompt, const GenerateParams& params) {
  // SDXL with an empty negative prompt: zero context (SGM force_zero_embeddings), pooled part of y kept (the
  // reference engine's rule, stable-diffusion.cpp)
  return encode(prompt, params, text_.family() == ModelFamily::SDXL && prompt.empty());
}

Tensor ClipConditioner::encode_prompt(const std::string& prompt_in, int clip_skip, const std::string& embedding_dir) {
  if (!tokenizer_) throw_error(ErrorCode::NotFound, "no CLIP tokenizer is loaded");
  // textual inversion: each embedding's name (as tokens) becomes ids past the vocabulary, one per vector
  std::string prompt = prompt_in;
  std::vector<Embedding> embs = find_embeddings(prompt, embedding_dir, clip_.width(), "sd1");
  const ExtraTokens et = embedding_tokens(embs, *tokenizer_, clip_.vocab());
  const Tensor& extra = et.extra;
  TokenizedPrompt tp = tokenize_prompt(*tokenizer_, prompt, et.replacements);
  const int T = clip_.positions();
  if (tp.chunks < 1 || (int64_t)tp.ids.size() != (int64_t)tp.chunks * T || tp.weights.size() != tp.ids.size())
    throw_error(ErrorCode::Internal, "tokenized prompt has " + std::to_string(tp.ids.size()) +
                                         " ids for " + std::to_string(tp.chunks) + " chunks of " + std::to_string(T));
  Backend& be = w_.backend();
  // One text-encoder pass per DISTINCT chunk, polling the abort check before each: the cost is linear in the
  // chunks that differ (at most kMaxPromptChunks), and an abort does not wait for a long prompt.
  const size_t CT = (size_t)T;
  std::vector<Tensor> enc((size_t)tp.chunks);  // [1, T, D] per chunk (a repeated chunk shares its first one's)
  for (int c = 0; c < tp.chunks; ++c) {
    if (abort_check_ && abort_check_()) throw_error(ErrorCode::Aborted, "generation was aborted");
    for (int e = 0; e < c && !enc[(size_t)c].defined(); ++e)
      if (std::equal(tp.ids.begin() + c * CT, tp.ids.begin() + (c + 1) * CT, tp.ids.begin() + e * CT))
        enc[(size_t)c] = enc[(size_t)e];
    if (enc[(size_t)c].defined()) continue;
    std::vector<int> ids(tp.ids.begin() + c * CT, tp.ids.begin() + (c + 1) * CT);
    enc[(size_t)c] = clip_.encode(ids, 1, clip_skip, extra.defined() ? &extra : nullptr);
  }
  Tensor z = enc[0];  // [chunks, T, D]
  for (int c = 1; c < tp.chunks; ++c) z = be.concat(z, enc[(size_t)c], 0);
  enc.clear();
  {
    Tensor hz = be.to_host(z);
    if (!hz.is_contiguous()) hz = hz.contiguous();
    check_finite(hz.f32(), (size_t)hz.numel(), "text encoder");
  }
  const int64_t D = z.shape[2];
  bool emphasis = false;
  for (float wt : tp.weights) emphasis = emphasis || wt != 1.0f;
  if (emphasis) {
    // A1111 emphasis (scale rows, restore each chunk's mean) needs the chunk means: done on the host, one
    // device round trip per prompt (not per step).
    Tensor hz = be.to_host(z).contiguous();  // a private copy (the CPU backend's to_host returns the tensor itself)
    z = Tensor();
    for (int c = 0; c < tp.chunks; ++c) {
      const float* wt = tp.weights.data() + (size_t)c * T;
      bool all_one = true;
      for (int i = 0; i < T; ++i) all_one = all_one && wt[i] == 1.0f;
      if (!all_one) apply_emphasis(hz.f32() + (size_t)c * T * D, T, (int)D, wt);
    }
    z = be.upload(hz);
  }
  // chunks are concatenated along the token axis: [chunks, T, D] has the same memory as [1, chunks*T, D]
  Tensor out = z.reshape({1, (int64_t)tp.chunks * T, D});
  dump("cond", out);
  return out;
}

}  // namespace sdn
