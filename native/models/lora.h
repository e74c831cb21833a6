// LoRA files: reading the layouts people have and matching their tensors to the model's weights.
//
// Layouts (names after the file reader's own mapping, formats/names.cpp):
//  * kohya / sd-scripts: `lora_unet_<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`, with <module> the
//    diffusers module path (SD 1.x/2.x) or the LDM path (SDXL: input_blocks_4_1_...) with '.' written as '_';
//    text encoders `lora_te_` (SD 1.x/2.x), `lora_te1_` / `lora_te2_` (SDXL). LyCORIS LoCon uses the same names
//    for convolutions (down [r, in, kh, kw], up [out, r, 1, 1]).
//  * diffusers / PEFT: `<module>.lora_A.weight` / `.lora_B.weight` (optional `.alpha`), `<module>.lora.down.weight`
//    / `.lora.up.weight`, and the older attention-processor names (`attn1.processor.to_q_lora.down.weight`), with
//    `unet.` / `text_encoder.` / `text_encoder_2.` prefixes or bare U-Net names.
// Each pair becomes a WeightDelta on one weight of the WeightStore: delta = weight * alpha / rank * up @ down
// (alpha = rank when the file has none). q/k/v pairs aimed at a fused in_proj weight land on its row slices.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/weights.h"

namespace sdn {

class WeightFile;

struct LoraMatch {
  std::string path;                       // the file
  float weight = 1.f;                     // the user's multiplier
  int64_t pairs = 0;                      // up/down pairs in the file
  int64_t matched = 0;                    // pairs applied to a model weight
  std::vector<std::string> unmatched;     // pairs (module names as in the file) with no weight in this model
  std::vector<std::string> unsupported;   // tensors of kinds this engine does not apply (LoHa, LoKr, Tucker mid,
                                          // norms, biases), with the reason
  std::string family;                     // what the names and shapes suggest: "sd1", "sd2", "sdxl" or ""
  std::map<std::string, std::vector<WeightDelta>> deltas;  // target weight -> deltas
};

// An opened LoRA file (kept open while its deltas are set: the tensors are views into its memory map).
class LoraFile : public std::enable_shared_from_this<LoraFile> {
 public:
  // Opens the file (.safetensors, .ckpt/.pt) and groups its tensors into pairs. Throws NotFound / InvalidFile naming
  // the file; InvalidArgument when the file holds no LoRA tensors at all.
  static std::shared_ptr<LoraFile> open(const std::string& path);
  const std::string& path() const { return path_; }
  // Matches the pairs against the weights of `store` (model_family: "sd1", "sd2", "sdxl", for messages) with
  // multiplier `weight`. Throws InvalidArgument naming the file when nothing matches (a LoRA for another model
  // family: the message says which family the file looks like and what to use) or when a matched pair's shape
  // does not fit its weight.
  LoraMatch match(const WeightStore& store, float weight, const std::string& model_family) const;

  struct Pair {
    std::string module;  // as in the file (for reports)
    std::string target;  // LDM weight name guess ("" when the name is not understood)
    std::string alt;     // fused-projection fallback ("...self_attn.in_proj.weight") or ""
    int64_t slice = -1;  // 0/1/2 for q/k/v when landing on the fused projection
    const Tensor* up = nullptr;
    const Tensor* down = nullptr;
    float alpha = 0.f;   // 0: none in the file (scale 1)
  };
  const std::vector<Pair>& pairs() const { return pairs_; }

 private:
  std::string path_;
  std::unique_ptr<WeightFile> file_;
  std::vector<Pair> pairs_;
  std::vector<std::string> unsupported_;
  std::string family_, family_why_;
};

// kohya module name (without `lora_unet_` / `lora_te*_`) with '_' separators -> dotted path ("down_blocks.0.
// attentions.0.transformer_blocks.0.attn1.to_q"). Exposed for tests.
std::string kohya_dotted(const std::string& module);

// Sum of several matches into one delta map (several LoRAs at once).
std::map<std::string, std::vector<WeightDelta>> merge_matches(const std::vector<LoraMatch>& matches);

}  // namespace sdn
