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

struct RawModel;
// A WeightFile over tensors already read (name mapping, detection, info): what open_weight_file does after
// parsing one file. `what` names the source in messages. The raw tensors must outlive the result when their data
// is not owned (in-memory buffers: fuzzing).
std::unique_ptr<WeightFile> weight_file_from_raw(RawModel& raw, const std::string& what, bool load_data);

// Recognises what a set of canonical tensors is (family, variant, prediction, runnable) and fills `info`'s
// detection fields. `tensors` maps canonical names to tensors.
void detect_model(const std::map<std::string, Tensor>& tensors, const std::map<std::string, std::string>& metadata,
                  ModelInfo& info);

}  // namespace sdn
