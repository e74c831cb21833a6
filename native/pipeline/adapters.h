// Adapters of a generation: LoRAs (prompt tags and the API list, merged through the WeightStore's weight-adapter
// point), the ControlNet (its own weights, run by the CFG denoiser each step) and textual-inversion embeddings
// (looked up by the conditioner).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

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
  std::string name;
  Tensor vectors;  // host F32 [n, D]
};
// Finds the embeddings a prompt uses: "embedding:NAME" (NAME must exist: NotFound naming the folder otherwise) and
// plain words equal to a file name. Rewrites "embedding:NAME" to NAME in `prompt`. width: the text encoder's width
// (an embedding of another width is an InvalidArgument naming the file).
std::vector<Embedding> find_embeddings(std::string& prompt, const std::string& dir, int64_t width,
                                       const std::string& model_family);
// Reads one embedding file (A1111 .pt/.safetensors: string_to_param.* or emb_params; SDXL clip_l/clip_g: the
// tensor for `key` ("clip_l" or "clip_g"), or any single 2-D tensor).
Tensor read_embedding(const std::string& path, int64_t width, const std::string& key = "clip_l");

}  // namespace sdn
