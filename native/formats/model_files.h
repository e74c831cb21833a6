// Internal entry points of the formats layer (used by WeightFile::open, inspect_model, convert_model, tests).
#pragma once
#include <memory>
#include <string>

#include "formats/weight_file.h"

namespace sdn {

struct OpenOptions {
  // false: headers only (inspect): tensors needing a type conversion are not converted and their data pointer is
  // null; everything else (names, shapes, info) is the same.
  bool load_data = true;
};

std::unique_ptr<WeightFile> open_weight_file(const std::string& path, const OpenOptions& options);

// Recognises what a set of canonical tensors is (family, variant, prediction, runnable) and fills `info`'s
// detection fields. `tensors` maps canonical names to tensors.
void detect_model(const std::map<std::string, Tensor>& tensors, const std::map<std::string, std::string>& metadata,
                  ModelInfo& info);

}  // namespace sdn
