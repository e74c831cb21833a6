// libFuzzer target: LoRA and textual-inversion embedding files (native/fuzz/fuzz_adapters_body.h), written to a
// private temporary folder because both readers open paths.
#include <cstdlib>
#include <string>

#include "fuzz_adapters_body.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/sdn-fuzz-adapters-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    return std::string(tmpl);
  }();
  sdn_fuzz_guard([&] { sdnfuzz::adapters_one_input(data, size, dir); });
  return 0;
}
