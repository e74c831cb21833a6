// libFuzzer target: the JSON parser.
#include <cstdint>

#include "formats/json.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sdn_fuzz_guard([&] {
    sdn::json::Value v = sdn::json::parse(reinterpret_cast<const char*>(data), size, "fuzz.json");
    volatile bool o = v.is_object();
    (void)o;
  });
  return 0;
}
