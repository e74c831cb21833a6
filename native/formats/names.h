// Internal: mapping of tensor names written by various tools onto the one naming the engine uses (original LDM
// checkpoint names: model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.text_model.*,
// SDXL's second encoder under cond_stage_model.1.transformer.text_model.*). ENGINE-FACTS sections 4.7 and 4.8.
#pragma once
#include <set>
#include <string>
#include <vector>

namespace sdn {

class NameMapper {
 public:
  // `names` = (component, stored name) of every tensor of the model; used to recognise layouts (bare UNet or VAE
  // files, diffusers up-blocks with attention, number of VAE up-blocks).
  explicit NameMapper(const std::vector<std::pair<std::string, std::string>>& names);
  // Canonical name, or "" when the tensor is not used by any engine (EMA copies, schedule buffers, position_ids).
  std::string map(const std::string& component, const std::string& name) const;

 private:
  std::string map_full(const std::string& name) const;
  std::string unet_diffusers(const std::vector<std::string>& p) const;  // after the "unet." prefix
  std::string vae_inner(const std::vector<std::string>& p) const;       // after "first_stage_model."/"vae."
  bool bare_unet_ = false, bare_unet_diffusers_ = false, bare_vae_ = false, bare_text_ = false;
  std::set<int> up_blocks_with_attn_;
  int vae_up_blocks_ = 4;
};

// True for canonical names whose LDM shape is a 1x1 conv while diffusers stores a Linear (VAE mid attention).
bool is_vae_attention_projection(const std::string& canonical);

}  // namespace sdn
