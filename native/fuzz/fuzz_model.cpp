// libFuzzer target: model construction past the parsers (format sniffing, name mapping, detection, info, shape
// validation of every network). Inputs: a safetensors, GGUF or zip-checkpoint file.
#include "fuzz_common.h"
#include "fuzz_model_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sdn_fuzz_guard([&] { sdnfuzz::model_one_input(data, size); });
  return 0;
}
