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

// The largest dimension any Stable Diffusion layer has is ~50k (the token embedding); anything far above it is
// a damaged shape (and would overflow the int widths the models keep).
constexpr int64_t kMaxDim = int64_t(1) << 24;

// Walks the tensors of one component; every failure names the file, the component and the tensor.
class Checker {
 public:
  Checker(const WeightStore& w, std::string what, std::string component)
      : w_(w), what_(std::move(what)), component_(std::move(component)) {}

  [[noreturn]] void fail(const std::string& name, const std::string& msg) const {
    throw_error(ErrorCode::InvalidFile, what_ + ": " + component_ + " tensor " + name + " " + msg +
                                            ": the file does not hold a model of this architecture (damaged, "
                                            "truncated or converted wrongly); re-download or re-convert it");
  }
  bool has(const std::string& name) const { return w_.has(name); }
  int rank(const std::string& name) const { return w_.has(name) ? w_.raw(name).ndim : 0; }
  const WeightStore& store() const { return w_; }

  // The tensor, which must exist, be floating-point or quantized, and have shape `want` (-1: any size).
  const Tensor& get(const std::string& name, const std::vector<int64_t>& want) const {
    if (!w_.has(name)) fail(name, "is missing");
    const Tensor& t = w_.raw(name);
    const DTypeTraits& tr = dtype_traits(t.dtype);
    if (!(tr.weight_type || t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16))
      fail(name, std::string("has element type ") + tr.name + "; weights must be floating-point or quantized");
    bool ok = t.ndim == (int)want.size();
    for (size_t i = 0; ok && i < want.size(); ++i)
      ok = t.shape[i] > 0 && t.shape[i] <= kMaxDim && (want[i] < 0 || t.shape[i] == want[i]);
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

// Residual block (U-Net ResBlock, VAE ResnetBlock): norm, 3x3 conv, [time-embedding projection], norm, 3x3 conv,
// and a 1x1 shortcut that must be there when the channels change. The two networks name the same layers
// differently; `temb` < 0: no time embedding (VAE). Returns the output channels.
struct ResNames {
  const char *norm1, *conv1, *emb, *norm2, *conv2, *skip;
};
constexpr ResNames kUnetRes = {"in_layers.0", "in_layers.2", "emb_layers.1", "out_layers.0", "out_layers.3", "skip_connection"};
constexpr ResNames kVaeRes = {"norm1", "conv1", nullptr, "norm2", "conv2", "nin_shortcut"};

int64_t res_block(const Checker& c, const std::string& p, const ResNames& n, int64_t cin, int64_t temb) {
  c.group_norm32(p + n.norm1, cin);
  const int64_t cout = c.conv(p + n.conv1, cin, -1, 3);
  if (n.emb) c.linear(p + n.emb, temb, cout);
  c.group_norm32(p + n.norm2, cout);
  c.conv(p + n.conv2, cout, cout, 3);
  const std::string skip = p + n.skip;
  if (c.has(skip + ".weight")) c.conv(skip, cin, cout, 1);
  else if (cin != cout)
    c.fail(skip + ".weight", "is missing: the block maps " + std::to_string(cin) + " to " + std::to_string(cout) +
                                 " channels");
  return cout;
}

int64_t unet_res(const Checker& c, const std::string& p, int64_t cin, int64_t temb) {
  return res_block(c, p, kUnetRes, cin, temb);
}

// Spatial transformer on `ch` channels: proj_in/proj_out as 1x1 convolutions (SD1.x) or Linear layers (SD2.x,
// SDXL), as UNetModel tells them apart (the rank of proj_in.weight); heads as UNetModel::heads_for counts them.
void unet_transformer(const Checker& c, const std::string& p, int64_t ch, int heads, int head_dim,
                      int64_t* context_dim) {
  c.group_norm32(p + "norm", ch);
  const bool linear_proj = c.rank(p + "proj_in.weight") == 2;
  const int64_t inner = linear_proj ? c.linear(p + "proj_in", ch) : c.conv(p + "proj_in", ch, -1, 1);
  int64_t h = heads;
  if (h <= 0) {
    if (head_dim < 1 || ch % head_dim != 0)
      c.fail(p + "norm.weight", "normalises " + std::to_string(ch) + " channels, which do not split into attention "
                                "heads of " + std::to_string(head_dim));
    h = ch / head_dim;
  }
  if (h < 1 || ch % h != 0 || inner % h != 0)
    c.fail(p + "proj_in.weight", "gives " + std::to_string(inner) + " features, which do not split into " +
                                     std::to_string(h) + " attention heads");
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
  if (linear_proj) {
    if (c.rank(p + "proj_out.weight") == 4)
      c.fail(p + "proj_out.weight", "is a convolution but proj_in.weight is a Linear weight (the two must match)");
    c.linear(p + "proj_out", inner, ch);
  } else {
    c.conv(p + "proj_out", inner, ch, 1);
  }
}

int64_t vae_res(const Checker& c, const std::string& p, int64_t cin) { return res_block(c, p, kVaeRes, cin, -1); }

void vae_attn(const Checker& c, const std::string& p, int64_t ch) {
  c.group_norm32(p + "norm", ch);
  for (const char* n : {"q", "k", "v", "proj_out"}) c.conv(p + n, ch, ch, 1);
}

// The VAE's middle: block_1, the optional single-head attention, block_2. Returns the channels.
int64_t vae_mid(const Checker& c, const std::string& m, int64_t ch) {
  ch = vae_res(c, m + "block_1.", ch);
  if (c.has(m + "attn_1.q.weight")) vae_attn(c, m + "attn_1.", ch);
  return vae_res(c, m + "block_2.", ch);
}

}  // namespace

void validate_clip_shapes(const WeightStore& w, const std::string& p, int heads, const std::string& what,
                          ArchShapes* out, const std::string& component) {
  Checker c(w, what, component);
  const Tensor& tok = c.get(p + "embeddings.token_embedding.weight", {-1, -1});
  const int64_t D = tok.shape[1];
  const Tensor& pos = c.get(p + "embeddings.position_embedding.weight", {-1, D});
  // a layer holds separate q/k/v projections or OpenCLIP's fused in_proj (ClipTextModel splits it into row slices)
  auto layer_present = [&](int l) {
    const std::string a = p + "encoder.layers." + std::to_string(l) + ".self_attn.";
    return w.has(a + "q_proj.weight") || w.has(a + "in_proj.weight");
  };
  int layers = 0;
  while (layers < (1 << 16) && layer_present(layers)) ++layers;
  if (layers < 1) c.fail(p + "encoder.layers.0.self_attn.q_proj.weight", "is missing (nor a fused in_proj.weight)");
  const int64_t h = heads > 0 ? heads : (D % 64 == 0 ? D / 64 : 1);
  if (D % h != 0)
    c.fail(p + "embeddings.token_embedding.weight", "has width " + std::to_string(D) + ", which does not split into " +
                                                        std::to_string(h) + " attention heads");
  for (int l = 0; l < layers; ++l) {
    const std::string lp = p + "encoder.layers." + std::to_string(l) + ".";
    c.norm(lp + "layer_norm1", D);
    if (w.has(lp + "self_attn.q_proj.weight")) {
      for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}) c.linear(lp + n, D, D);
    } else {
      // q, k and v stacked along dim 0: [3D, D], bias [3D]
      c.get(lp + "self_attn.in_proj.weight", {3 * D, D});
      if (c.has(lp + "self_attn.in_proj.bias")) c.get(lp + "self_attn.in_proj.bias", {3 * D});
    }
    c.linear(lp + "self_attn.out_proj", D, D);
    c.norm(lp + "layer_norm2", D);
    const int64_t F = c.linear(lp + "mlp.fc1", D);
    c.linear(lp + "mlp.fc2", F, D);
  }
  c.norm(p + "final_layer_norm", D);
  // the text projection (pooled output): the HF Linear weight [N, D] or the OpenCLIP matrix [D, N]
  int64_t proj = 0;
  if (c.has(p + "text_projection.weight")) proj = c.get(p + "text_projection.weight", {-1, D}).shape[0];
  else if (c.has(p + "text_projection")) proj = c.get(p + "text_projection", {D, -1}).shape[1];
  out->clip_width = (int)D;
  out->clip_positions = (int)pos.shape[0];
  out->clip_vocab = (int)tok.shape[0];
  out->clip_layers = layers;
  out->clip_projection = (int)proj;
}

void validate_unet_shapes(const WeightStore& w, const std::string& p, int heads, int head_dim,
                          const std::string& what, ArchShapes* out) {
  Checker c(w, what, "U-Net");
  const Tensor& cin = c.get(p + "input_blocks.0.0.weight", {-1, -1, 3, 3});
  const int64_t MC = cin.shape[0], IN = cin.shape[1];
  if (c.has(p + "input_blocks.0.0.bias")) c.get(p + "input_blocks.0.0.bias", {MC});
  const int64_t TE = c.linear(p + "time_embed.0", MC);
  c.linear(p + "time_embed.2", TE, TE);
  // SDXL's vector conditioning: y [adm] -> Linear -> SiLU -> Linear, added to the time embedding
  int64_t adm = 0;
  if (c.has(p + "label_emb.0.0.weight") || c.has(p + "label_emb.0.2.weight")) {
    adm = c.get(p + "label_emb.0.0.weight", {TE, -1}).shape[1];
    c.linear(p + "label_emb.0.0", adm, TE);
    c.linear(p + "label_emb.0.2", TE, TE);
  }
  int64_t ctx = -1, ch = MC;
  std::vector<int64_t> skips{ch};
  int i = 1;
  for (;; ++i) {
    const std::string b = p + "input_blocks." + std::to_string(i) + ".";
    if (w.has(b + "0.op.weight")) {
      c.conv(b + "0.op", ch, ch, 3);
    } else if (w.has(b + "0.in_layers.0.weight")) {
      ch = unet_res(c, b + "0.", ch, TE);
      if (w.has(b + "1.norm.weight")) unet_transformer(c, b + "1.", ch, heads, head_dim, &ctx);
    } else {
      break;
    }
    skips.push_back(ch);
  }
  if (i < 2) c.fail(p + "input_blocks.1.0.in_layers.0.weight", "is missing (the U-Net has no input blocks)");
  ch = unet_res(c, p + "middle_block.0.", ch, TE);
  if (w.has(p + "middle_block.1.norm.weight")) unet_transformer(c, p + "middle_block.1.", ch, heads, head_dim, &ctx);
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
      if (w.has(s + "norm.weight")) unet_transformer(c, s, ch, heads, head_dim, &ctx);
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
  out->unet_adm_channels = (int)adm;
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
  ch = vae_mid(c, d + "mid.", ch);
  const int levels = count_indexed(w, d + "up.", ".block.0.conv1.weight");
  if (levels < 1) c.fail(d + "up.0.block.0.conv1.weight", "is missing");
  int ups = 0;
  for (int l = levels - 1; l >= 0; --l) {
    const std::string up = d + "up." + std::to_string(l) + ".";
    const int blocks = count_indexed(w, up + "block.", ".conv1.weight");
    for (int j = 0; j < blocks; ++j) ch = vae_res(c, up + "block." + std::to_string(j) + ".", ch);
    if (w.has(up + "upsample.conv.weight")) {
      c.conv(up + "upsample.conv", ch, ch, 3);
      ++ups;
    }
  }
  c.group_norm32(d + "norm_out", ch);
  c.conv(d + "conv_out", ch, 3, 3);  // RGB
  out->vae_latent_channels = (int)Z;
  out->vae_upscale = ups < 30 ? 1 << ups : 0;
}

void validate_vae_encoder_shapes(const WeightStore& w, const std::string& p, const std::string& what,
                                 ArchShapes* out) {
  Checker c(w, what, "VAE encoder");
  const std::string e = p + "encoder.";
  int64_t ch = c.conv(e + "conv_in", 3, -1, 3);  // RGB in
  const int levels = count_indexed(w, e + "down.", ".block.0.conv1.weight");
  if (levels < 1) c.fail(e + "down.0.block.0.conv1.weight", "is missing");
  int downs = 0;
  for (int l = 0; l < levels; ++l) {
    const std::string dn = e + "down." + std::to_string(l) + ".";
    const int blocks = count_indexed(w, dn + "block.", ".conv1.weight");
    for (int j = 0; j < blocks; ++j) ch = vae_res(c, dn + "block." + std::to_string(j) + ".", ch);
    if (w.has(dn + "downsample.conv.weight")) {
      c.conv(dn + "downsample.conv", ch, ch, 3);
      ++downs;
    }
  }
  ch = vae_mid(c, e + "mid.", ch);
  c.group_norm32(e + "norm_out", ch);
  int64_t M = c.conv(e + "conv_out", ch, -1, 3);
  if (w.has(p + "quant_conv.weight")) M = c.conv(p + "quant_conv", M, -1, 1);
  out->vae_encoder_moments = (int)M;
  out->vae_downscale = downs < 30 ? 1 << downs : 0;
}

int64_t validate_conv_shapes(const WeightStore& w, const std::string& layer, int64_t cin, int64_t cout, int k,
                             const std::string& what, const std::string& component) {
  return Checker(w, what, component).conv(layer, cin, cout, k);
}

void validate_model_shapes(const WeightStore& w, const ModelShapeSpec& s) {
  const bool xl = s.family == "sdxl", sd2 = s.family == "sd2";
  if (!xl && !sd2 && s.family != "sd1")
    throw_error(ErrorCode::Internal, "validate_model_shapes: unknown family '" + s.family + "'");
  const std::string unet_file = s.unet_file;
  const std::string te_file = s.text_encoder_file.empty() ? unet_file : s.text_encoder_file;
  const std::string vae_file = s.vae_file.empty() ? unet_file : s.vae_file;
  const std::string te1 = "cond_stage_model.transformer.text_model.", te2 = "cond_stage_model.1.transformer.text_model.",
                    unet = "model.diffusion_model.", vae = "first_stage_model.";
  const char* fam = xl ? "SDXL" : sd2 ? "SD 2.x" : "SD 1.x";
  ArchShapes t1, t2, u, v;
  validate_clip_shapes(w, te1, s.clip_heads, te_file, &t1,
                       xl ? "first text encoder (CLIP ViT-L)" : sd2 ? "text encoder (OpenCLIP ViT-H)" : "text encoder");
  if (xl) {
    if (!w.has(te2 + "embeddings.token_embedding.weight"))
      throw_error(ErrorCode::InvalidFile, te_file + ": the SDXL second text encoder (OpenCLIP ViT-bigG) is missing (no "
                                                    "tensor " + te2 + "embeddings.token_embedding.weight): give a "
                                                    "complete SDXL checkpoint (conditioner.embedders.1.* in a single "
                                                    "file, text_encoder_2/ in a diffusers folder)");
    validate_clip_shapes(w, te2, s.clip_heads, te_file, &t2, "second text encoder (OpenCLIP ViT-bigG)");
  }
  const int unet_heads = s.unet_heads > 0 ? s.unet_heads : (xl || sd2 ? 0 : 8);
  validate_unet_shapes(w, unet, unet_heads, s.unet_head_dim, unet_file, &u);
  validate_vae_decoder_shapes(w, vae, vae_file, &v);
  // the encoder is checked when the file has one (img2img and inpainting need it; a decoder-only VAE runs txt2img)
  if (!w.names_with_prefix(vae + "encoder.").empty()) validate_vae_encoder_shapes(w, vae, vae_file, &v);

  auto bad = [](const std::string& file, const std::string& m) { throw_error(ErrorCode::InvalidFile, file + ": " + m); };
  // an explanation of where a second file comes in
  auto other = [&](const std::string& f) { return f == unet_file ? std::string() : " (" + f + ")"; };
  auto check_encoder = [&](const std::string& p, const ArchShapes& a, const std::string& name) {
    if (a.clip_positions != 77)
      bad(te_file, name + " tensor " + p + "embeddings.position_embedding.weight has " +
                       std::to_string(a.clip_positions) + " positions; " + fam +
                       " prompts are encoded in chunks of 77 tokens: the file does not hold a model of this "
                       "architecture; re-download or re-convert it");
    if (s.tokenizer_vocab > a.clip_vocab)
      bad(te_file, name + " tensor " + p + "embeddings.token_embedding.weight has " + std::to_string(a.clip_vocab) +
                       " rows but the CLIP tokenizer produces token ids up to " + std::to_string(s.tokenizer_vocab - 1) +
                       ": the merges do not belong to this model; give the model's own merges.txt (tokenizerPath in "
                       "JavaScript, --tokenizer on the command line)");
  };
  check_encoder(te1, t1, xl ? "the first text encoder's" : "the text encoder's");
  int64_t context = t1.clip_width;
  if (xl) {
    check_encoder(te2, t2, "the second text encoder's");
    if (t2.clip_projection == 0)
      bad(te_file, "the SDXL second text encoder has no text_projection (tensor " + te2 +
                       "text_projection), which its pooled output needs: give a complete SDXL checkpoint");
    context += t2.clip_width;
  }
  if (u.unet_context_dim != context)
    bad(unet_file, "the U-Net's cross-attention expects text features of width " + std::to_string(u.unet_context_dim) +
                       " but the text encoder" + (xl ? "s give " + std::to_string(t1.clip_width) + " + " +
                                                           std::to_string(t2.clip_width) + " = "
                                                     : std::string(" gives ")) +
                       std::to_string(context) + other(te_file) + ": the parts do not belong to one " + fam + " model");
  const int64_t adm = xl ? (int64_t)t2.clip_projection + 6 * 256 : 0;
  if (u.unet_adm_channels != adm) {
    if (!xl)
      bad(unet_file, "the U-Net has a vector conditioning (label_emb, width " + std::to_string(u.unet_adm_channels) +
                         "), which " + fam + " models do not have: the file is not a " + fam + " model");
    bad(unet_file, "the U-Net's vector conditioning (label_emb.0.0.weight) takes " +
                       (u.unet_adm_channels ? std::to_string(u.unet_adm_channels) + " features" : std::string("nothing")) +
                       " but the second text encoder's pooled output (" + std::to_string(t2.clip_projection) +
                       ") and the 6 size embeddings of 256 make " + std::to_string(adm) + other(te_file) +
                       ": the parts do not belong to one SDXL model");
  }
  if (v.vae_latent_channels != u.unet_out_channels)
    bad(vae_file, "the VAE decoder takes " + std::to_string(v.vae_latent_channels) + " latent channels but the U-Net" +
                      (vae_file == unet_file ? std::string() : " (" + unet_file + ")") + " makes " +
                      std::to_string(u.unet_out_channels) + ": give a VAE of the model's family (parts.vae in JavaScript, --vae on the command line)");
  if (v.vae_upscale != 8)
    bad(vae_file, "the VAE decoder upsamples the latent " + std::to_string(v.vae_upscale) +
                      "x; Stable Diffusion VAEs upsample 8x (three up.N.upsample.conv layers): the file does not "
                      "hold a Stable Diffusion VAE");
  if (v.vae_encoder_moments) {
    const int64_t C = u.unet_out_channels;
    if (v.vae_encoder_moments != 2 * C && v.vae_encoder_moments != C)
      bad(vae_file, "the VAE encoder gives " + std::to_string(v.vae_encoder_moments) + " channels but the latent has " +
                        std::to_string(C) + " (the encoder gives its mean and log-variance, " + std::to_string(2 * C) +
                        " channels): give a VAE of the model's family (parts.vae in JavaScript, --vae on the command line)");
    if (v.vae_downscale != 8)
      bad(vae_file, "the VAE encoder downsamples the image " + std::to_string(v.vae_downscale) +
                        "x; Stable Diffusion VAEs downsample 8x (three down.N.downsample.conv layers): the file does "
                        "not hold a Stable Diffusion VAE");
  }
}

void validate_sd1_shapes(const WeightStore& w, int clip_heads, int unet_heads, int tokenizer_vocab,
                         const std::string& what) {
  ModelShapeSpec s;
  s.family = "sd1";
  s.clip_heads = clip_heads;
  s.unet_heads = unet_heads;
  s.tokenizer_vocab = tokenizer_vocab;
  s.unet_file = what;
  validate_model_shapes(w, s);
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
