// PLACEHOLDER: replaced by the txt2img pipeline. Throws Unsupported so callers get a clear error meanwhile.
#include "sdn/sdn.h"

namespace sdn {

std::unique_ptr<Model> Model::load(const ModelParts&, const LoadOptions&) {
  throw_error(ErrorCode::Unsupported, "image generation is not implemented yet");
}
std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  ModelParts p;
  p.file = path;
  return load(p, options);
}
void validate_params(const GenerateParams&) {}

}  // namespace sdn
