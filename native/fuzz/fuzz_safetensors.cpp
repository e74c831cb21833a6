// libFuzzer target: safetensors header parsing, bounds of every tensor, name mapping.
#include <cstdint>
#include <string>
#include <vector>

#include "formats/names.h"
#include "formats/readers.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sdn_fuzz_guard([&] {
    sdn::RawModel m = sdn::parse_safetensors(data, size, "fuzz.safetensors", nullptr);
    std::vector<std::pair<std::string, std::string>> names;
    unsigned sum = 0;
    for (const sdn::RawTensor& t : m.tensors) {
      names.emplace_back(t.component, t.name);
      if (t.nbytes) sum += t.data[0] + t.data[t.nbytes - 1];  // ASan: the range must be inside the input
    }
    sdn::NameMapper mapper(names);
    for (auto& n : names) sum += (unsigned)mapper.map(n.first, n.second).size();
    volatile unsigned sink = sum;
    (void)sink;
  });
  return 0;
}
