// PLACEHOLDER: replaced by the model-file readers and the GGUF converter.
#include "sdn/sdn.h"

namespace sdn {

ModelInfo inspect_model(const std::string&) { throw_error(ErrorCode::Unsupported, "inspect is not implemented yet"); }
ConvertSummary convert_model(const std::string&, const std::string&, const ConvertOptions&) {
  throw_error(ErrorCode::Unsupported, "convert is not implemented yet");
}

}  // namespace sdn
