// Adapters of a generation: LoRAs (prompt tags and the API list, merged through the WeightStore's weight-adapter
// point), the ControlNet (its own weights, run by the CFG denoiser each step) and textual-inversion embeddings
// (looked up by the conditioner).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/conditioning.h"
#include "models/controlnet.h"
#include "models/lora.h"
#include "models/weights.h"
#include "sdn/sdn.h"

namespace sdn {

class WeightFile;

// Removes every <lora:NAME> / <lora:NAME:WEIGHT> tag from `prompt` and returns them resolved to files in
// `lora_dir` (NAME.safetensors, .ckpt, .pt, .bin; NAME may contain sub-folders). NotFound naming the folder when a
// file is missing; InvalidArgument when tags are used without a folder or a weight is not a number.
std::vector<LoraSpec> extract_lora_tags(std::string& prompt, const std::string& lora_dir);

// The LoRAs currently merged into a model's weights. apply() opens new files (kept open while in use), matches
// them, and hands the summed deltas to the WeightStore, which re-prepares only the weights whose deltas changed.
class LoraState {
 public:
  // family: the model's ("sd1", ...). Warnings (unmatched/unsupported tensors) are appended to `warnings`.
  // te_store: where the text encoder's weights come from when it is not `store` (text encoder placed on the CPU);
  // the text-encoder deltas (cond_stage_model.*) go there.
  void apply(WeightStore& store, WeightStore* te_store, const std::vector<LoraSpec>& loras,
             const std::string& family, std::vector<std::string>& warnings);

  const DeltaUpdate& last_update() const { return last_; }

 private:
  std::map<std::string, std::shared_ptr<LoraFile>> open_;  // path -> file (only the ones in use are kept)
  std::vector<std::pair<std::string, float>> current_;
  std::vector<std::string> current_warnings_;
  DeltaUpdate last_;
};

// A loaded ControlNet (its file, weights and model), kept between generations while the same file is asked for.
struct LoadedControlNet {
  std::string path;
  std::unique_ptr<WeightFile> file;
  std::unique_ptr<WeightStore> store;
  std::unique_ptr<ControlNetModel> model;
  ~LoadedControlNet();
};
// Opens a ControlNet (a file, or a diffusers ControlNet folder) for the model whose U-Net is `unet` (model_family
// for messages; heads/head_dim: the U-Net's attention head rule). Throws InvalidArgument naming the file when it is for another family (SD 1.x / SD 2.x /
// SDXL, told apart by label_emb and the context width) or its blocks do not match the U-Net's.
std::unique_ptr<LoadedControlNet> load_controlnet(const std::string& path, Backend& backend, const UNetModel& unet,
                                                  const std::string& model_family, int heads, int head_dim = 64);

// Textual-inversion embeddings of a folder.
struct Embedding {
  std::string name;  // lower-case file name without extension (as written in prompts)
  std::string path;
  Tensor vectors;    // host F32 [n, width]: the first text encoder's rows (SD 1.x CLIP-L, SD 2.x OpenCLIP-H,
                     // SDXL clip_l)
  Tensor vectors2;   // SDXL: host F32 [n, width2] for OpenCLIP bigG (clip_g); undefined for other families
};
// Finds the embeddings a prompt uses: "embedding:NAME" (NAME must exist: NotFound naming the folder otherwise) and
// plain words equal to a file name. Rewrites "embedding:NAME" to NAME in `prompt`. model_family "sd1" / "sd2" /
// "sdxl"; width: the (first) text encoder's width; width2: SDXL's bigG width (0 otherwise). An embedding that does
// not fit (another width, SD 1.x/2.x layout on SDXL, SDXL layout on SD 2.x) is an InvalidArgument naming the file.
std::vector<Embedding> find_embeddings(std::string& prompt, const std::string& dir, int64_t width,
                                       const std::string& model_family, int64_t width2 = 0);
// Reads one embedding file for a model of `model_family` (see find_embeddings). Layouts: A1111 .pt
// (string_to_param.*), .safetensors (emb_params), ComfyUI/A1111 SDXL (clip_l [n, 768] + clip_g [n, 1280]), or one
// 2-D tensor. SD 1.x also takes an SDXL file's clip_l (the same CLIP ViT-L), SD 2.x a `clip_h` tensor (ComfyUI).
Embedding read_embedding(const std::string& path, const std::string& model_family, int64_t width, int64_t width2 = 0);
// The token replacements and extra-row tables of a prompt's embeddings for encoders whose first vocabulary has
// `vocab` rows (ids vocab .. vocab+n-1 carry the vectors, in the order of `embs`).
ExtraTokens embedding_tokens(const std::vector<Embedding>& embs, const ClipTokenizer& tokenizer, int vocab);

}  // namespace sdn
