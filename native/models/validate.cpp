#include "models/validate.h"

#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "models/blocks.h"
#include "sdn/error.h"

namespace sdn {

namespace {

std::string dims(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + (d[i] < 0 ? std::string("*") : std::to_string(d[i]));
  return s + "]";
}

// Walks the tensors of one component; every failure names the file, the component and the tensor.
class Checker {
 public:
  Checker(const WeightStore& w, std::string what, std::string component)
      : w_(w), what_(std::move(what)), component_(std::move(component)) {}

  [[noreturn]] void fail(const std::string& name, const std::string& msg) const {
    throw_error(ErrorCode::InvalidFile, what_ + ": " + component_ + " tensor " + name + " " + msg +
                                            ": the file does not hold a model of this architecture (damaged, or "
                                            "converted wrongly)");
  }
  bool has(const std::string& name) const { return w_.has(name); }
  const WeightStore& store() const { return w_; }

  // The tensor, which must exist, be floating-point or quantized, and have shape `want` (-1: any size).
  const Tensor& get(const std::string& name, const std::vector<int64_t>& want) const {
    if (!w_.has(name)) fail(name, "is missing");
    const Tensor& t = w_.raw(name);
    const DTypeTraits& tr = dtype_traits(t.dtype);
    if (!(tr.weight_type || t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16))
      fail(name, std::string("has element type ") + tr.name + "; weights must be floating-point or quantized");
    bool ok = t.ndim == (int)want.size();
    for (size_t i = 0; ok && i < want.size(); ++i) ok = t.shape[i] > 0 && (want[i] < 0 || t.shape[i] == want[i]);
    if (!ok) fail(name, "has shape " + t.shape_str() + " but the architecture needs " + dims(want));
    return t;
  }
  // y = x W^T + b: weight [out, in], optional bias [out]. Returns out.
  int64_t linear(const std::string& p, int64_t in, int64_t out = -1) const {
    const Tensor& wt = get(p + ".weight", {out, in});
    if (has(p + ".bias")) get(p + ".bias", {wt.shape[0]});
    return wt.shape[0];
  }
  // weight [cout, cin, k, k], optional bias [cout]. Returns cout.
  int64_t conv(const std::string& p, int64_t cin, int64_t cout, int k) const {
    const Tensor& wt = get(p + ".weight", {cout, cin, k, k});
    if (has(p + ".bias")) get(p + ".bias", {wt.shape[0]});
    return wt.shape[0];
  }
  void norm(const std::string& p, int64_t c) const {
    get(p + ".weight", {c});
    get(p + ".bias", {c});
  }
  void group_norm32(const std::string& p, int64_t c) const {
    norm(p, c);
    if (c % 32 != 0) fail(p + ".weight", "normalises " + std::to_string(c) + " channels in 32 groups (not a multiple of 32)");
  }

 private:
  const WeightStore& w_;
  std::string what_, component_;
};

// U-Net residual block: returns its output channels.
int64_t unet_res(const Checker& c, const std::string& p, int64_t cin, int64_t temb) {
  c.group_norm32(p + "in_layers.0", cin);
  const int64_t cout = c.conv(p + "in_layers.2", cin, -1, 3);
  c.linear(p + "emb_layers.1", temb, cout);
  c.group_norm32(p + "out_layers.0", cout);
  c.conv(p + "out_layers.3", cout, cout, 3);
  if (c.has(p + "skip_connection.weight")) c.conv(p + "skip_connection", cin, cout, 1);
  else if (cin != cout)
    c.fail(p + "skip_connection.weight", "is missing: the block maps " + std::to_string(cin) + " to " +
                                             std::to_string(cout) + " channels");
  return cout;
}

void unet_transformer(const Checker& c, const std::string& p, int64_t ch, int heads, int64_t* context_dim) {
  c.group_norm32(p + "norm", ch);
  const int64_t inner = c.conv(p + "proj_in", ch, -1, 1);
  if (heads < 1 || ch % heads != 0 || inner % heads != 0)
    c.fail(p + "proj_in.weight", "gives " + std::to_string(inner) + " features, which do not split into " +
                                     std::to_string(heads) + " attention heads");
  const int depth = count_indexed(c.store(), p + "transformer_blocks.", ".norm1.weight");
  if (depth < 1) c.fail(p + "transformer_blocks.0.norm1.weight", "is missing");
  for (int d = 0; d < depth; ++d) {
    const std::string tb = p + "transformer_blocks." + std::to_string(d) + ".";
    c.norm(tb + "norm1", inner);
    for (const char* n : {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_out.0"})
      c.linear(tb + n, inner, inner);
    c.norm(tb + "norm2", inner);
    // the text-context width: from the first cross-attention, then the same everywhere
    if (*context_dim < 0) *context_dim = c.get(tb + "attn2.to_k.weight", {inner, -1}).shape[1];
    c.linear(tb + "attn2.to_k", *context_dim, inner);
    c.linear(tb + "attn2.to_v", *context_dim, inner);
    c.norm(tb + "norm3", inner);
    const int64_t ff2 = c.linear(tb + "ff.net.0.proj", inner);
    if (ff2 % 2 != 0) c.fail(tb + "ff.net.0.proj.weight", "has an odd output size " + std::to_string(ff2) + " (GEGLU halves it)");
    c.linear(tb + "ff.net.2", ff2 / 2, inner);
  }
  c.conv(p + "proj_out", inner, ch, 1);
}

// VAE residual block: returns its output channels.
int64_t vae_res(const Checker& c, const std::string& p, int64_t cin) {
  c.group_norm32(p + "norm1", cin);
  const int64_t cout = c.conv(p + "conv1", cin, -1, 3);
  c.group_norm32(p + "norm2", cout);
  c.conv(p + "conv2", cout, cout, 3);
  if (c.has(p + "nin_shortcut.weight")) c.conv(p + "nin_shortcut", cin, cout, 1);
  else if (cin != cout)
    c.fail(p + "nin_shortcut.weight", "is missing: the block maps " + std::to_string(cin) + " to " +
                                          std::to_string(cout) + " channels");
  return cout;
}

void vae_attn(const Checker& c, const std::string& p, int64_t ch) {
  c.group_norm32(p + "norm", ch);
  for (const char* n : {"q", "k", "v", "proj_out"}) c.conv(p + n, ch, ch, 1);
}

}  // namespace

void validate_clip_shapes(const WeightStore& w, const std::string& p, int heads, const std::string& what,
                          ArchShapes* out) {
  Checker c(w, what, "text encoder");
  const Tensor& tok = c.get(p + "embeddings.token_embedding.weight", {-1, -1});
  const int64_t D = tok.shape[1];
  const Tensor& pos = c.get(p + "embeddings.position_embedding.weight", {-1, D});
  const int layers = count_indexed(w, p + "encoder.layers.", ".self_attn.q_proj.weight");
  if (layers < 1) c.fail(p + "encoder.layers.0.self_attn.q_proj.weight", "is missing");
  const int h = heads > 0 ? heads : (D % 64 == 0 ? (int)(D / 64) : 1);
  if (D % h != 0)
    c.fail(p + "embeddings.token_embedding.weight", "has width " + std::to_string(D) + ", which does not split into " +
                                                        std::to_string(h) + " attention heads");
  for (int l = 0; l < layers; ++l) {
    const std::string lp = p + "encoder.layers." + std::to_string(l) + ".";
    c.norm(lp + "layer_norm1", D);
    for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"})
      c.linear(lp + n, D, D);
    c.norm(lp + "layer_norm2", D);
    const int64_t F = c.linear(lp + "mlp.fc1", D);
    c.linear(lp + "mlp.fc2", F, D);
  }
  c.norm(p + "final_layer_norm", D);
  out->clip_width = (int)D;
  out->clip_positions = (int)pos.shape[0];
  out->clip_vocab = (int)tok.shape[0];
}

void validate_unet_shapes(const WeightStore& w, const std::string& p, int heads, const std::string& what,
                          ArchShapes* out) {
  Checker c(w, what, "U-Net");
  const Tensor& cin = c.get(p + "input_blocks.0.0.weight", {-1, -1, 3, 3});
  const int64_t MC = cin.shape[0], IN = cin.shape[1];
  if (c.has(p + "input_blocks.0.0.bias")) c.get(p + "input_blocks.0.0.bias", {MC});
  const int64_t TE = c.linear(p + "time_embed.0", MC);
  c.linear(p + "time_embed.2", TE, TE);
  int64_t ctx = -1, ch = MC;
  std::vector<int64_t> skips{ch};
  int i = 1;
  for (;; ++i) {
    const std::string b = p + "input_blocks." + std::to_string(i) + ".";
    if (w.has(b + "0.op.weight")) {
      c.conv(b + "0.op", ch, ch, 3);
    } else if (w.has(b + "0.in_layers.0.weight")) {
      ch = unet_res(c, b + "0.", ch, TE);
      if (w.has(b + "1.norm.weight")) unet_transformer(c, b + "1.", ch, heads, &ctx);
    } else {
      break;
    }
    skips.push_back(ch);
  }
  ch = unet_res(c, p + "middle_block.0.", ch, TE);
  if (w.has(p + "middle_block.1.norm.weight")) unet_transformer(c, p + "middle_block.1.", ch, heads, &ctx);
  ch = unet_res(c, p + "middle_block.2.", ch, TE);
  int o = 0;
  for (;; ++o) {
    const std::string b = p + "output_blocks." + std::to_string(o) + ".";
    if (!w.has(b + "0.in_layers.0.weight")) break;
    if (skips.empty()) c.fail(b + "0.in_layers.0.weight", "belongs to more output blocks than there are input blocks");
    ch = unet_res(c, b + "0.", ch + skips.back(), TE);
    skips.pop_back();
    for (int k = 1; k <= 2; ++k) {
      const std::string s = b + std::to_string(k) + ".";
      if (w.has(s + "norm.weight")) unet_transformer(c, s, ch, heads, &ctx);
      if (w.has(s + "conv.weight")) c.conv(s + "conv", ch, ch, 3);
    }
  }
  if (!skips.empty())
    c.fail(p + "output_blocks." + std::to_string(o) + ".0.in_layers.0.weight",
           "is missing: " + std::to_string(i) + " input blocks need as many output blocks");
  c.group_norm32(p + "out.0", ch);
  // the prediction has the latent's channels; the input may carry more (inpainting: latent + mask + masked image)
  const int64_t OUT = c.conv(p + "out.2", ch, -1, 3);
  if (IN < OUT)
    c.fail(p + "out.2.weight", "predicts " + std::to_string(OUT) + " latent channels from a " + std::to_string(IN) +
                                   "-channel input (the input holds at least the latent)");
  if (ctx < 0) c.fail(p + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "is missing (no cross-attention)");
  out->unet_in_channels = (int)IN;
  out->unet_out_channels = (int)OUT;
  out->unet_context_dim = (int)ctx;
}

void validate_vae_decoder_shapes(const WeightStore& w, const std::string& p, const std::string& what,
                                 ArchShapes* out) {
  Checker c(w, what, "VAE decoder");
  const std::string d = p + "decoder.";
  int64_t Z = 4;  // the decoder's latent width without post_quant_conv (vae.h)
  if (w.has(p + "post_quant_conv.weight")) {
    Z = c.get(p + "post_quant_conv.weight", {-1, -1, 1, 1}).shape[0];
    c.conv(p + "post_quant_conv", Z, Z, 1);
  }
  int64_t ch = c.conv(d + "conv_in", Z, -1, 3);
  ch = vae_res(c, d + "mid.block_1.", ch);
  if (w.has(d + "mid.attn_1.q.weight")) vae_attn(c, d + "mid.attn_1.", ch);
  ch = vae_res(c, d + "mid.block_2.", ch);
  const int levels = count_indexed(w, d + "up.", ".block.0.conv1.weight");
  if (levels < 1) c.fail(d + "up.0.block.0.conv1.weight", "is missing");
  for (int l = levels - 1; l >= 0; --l) {
    const std::string up = d + "up." + std::to_string(l) + ".";
    const int blocks = count_indexed(w, up + "block.", ".conv1.weight");
    for (int j = 0; j < blocks; ++j) ch = vae_res(c, up + "block." + std::to_string(j) + ".", ch);
    if (w.has(up + "upsample.conv.weight")) c.conv(up + "upsample.conv", ch, ch, 3);
  }
  c.group_norm32(d + "norm_out", ch);
  c.conv(d + "conv_out", ch, 3, 3);  // RGB
  out->vae_latent_channels = (int)Z;
}

void validate_sd1_shapes(const WeightStore& w, int clip_heads, int unet_heads, int tokenizer_vocab,
                         const std::string& what) {
  ArchShapes a;
  const std::string clip = "cond_stage_model.transformer.text_model.", unet = "model.diffusion_model.",
                    vae = "first_stage_model.";
  validate_clip_shapes(w, clip, clip_heads, what, &a);
  validate_unet_shapes(w, unet, unet_heads, what, &a);
  validate_vae_decoder_shapes(w, vae, what, &a);
  auto bad = [&](const std::string& m) { throw_error(ErrorCode::InvalidFile, what + ": " + m); };
  if (a.clip_positions != 77)
    bad("text encoder tensor " + clip + "embeddings.position_embedding.weight has " +
        std::to_string(a.clip_positions) + " positions; SD1.x prompts are encoded in chunks of 77 tokens");
  if (tokenizer_vocab > a.clip_vocab)
    bad("text encoder tensor " + clip + "embeddings.token_embedding.weight has " + std::to_string(a.clip_vocab) +
        " rows but the CLIP tokenizer produces token ids up to " + std::to_string(tokenizer_vocab - 1) +
        ": the merges do not belong to this model; give the model's own merges.txt (tokenizerPath in JavaScript, "
        "--tokenizer on the command line)");
  if (a.unet_context_dim != a.clip_width)
    bad("the U-Net's cross-attention expects text features of width " + std::to_string(a.unet_context_dim) +
        " but the text encoder gives " + std::to_string(a.clip_width));
  if (a.vae_latent_channels != a.unet_out_channels)
    bad("the VAE decoder takes " + std::to_string(a.vae_latent_channels) + " latent channels but the U-Net makes " +
        std::to_string(a.unet_out_channels));
}

void check_finite(const float* v, size_t n, const char* component, const std::string& stage) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) {
      if (!bad) first = i;
      ++bad;
    }
  if (!bad) return;
  throw_error(ErrorCode::InvalidFile,
              std::string("the ") + component + " produced non-finite values (NaN or infinity" +
                  (stage.empty() ? "" : ", " + stage) + ": " + std::to_string(bad) + " of " + std::to_string(n) +
                  ", the first at index " + std::to_string(first) +
                  "). Its weights probably hold NaN/Inf values (a damaged or badly converted file): re-download or "
                  "re-convert the model");
}

}  // namespace sdn
