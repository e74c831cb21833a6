// libFuzzer target: the restricted pickle reader. The input becomes archive/data.pkl of an in-memory zip that
// also holds a 64-byte storage archive/data/0, so the fuzzer explores the unpickler (the zip directory parser is
// covered by the corrupt-file tests and by inputs starting with "PK").
#include <cstdint>
#include <string>

#include "ckpt_zip.h"
#include "formats/readers.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  std::string zip = size >= 2 && in[0] == 'P' && in[1] == 'K'
                        ? in
                        : sdnfuzz::zip_stored({{"archive/data.pkl", in}, {"archive/data/0", std::string(64, '\x01')}});
  sdn_fuzz_guard([&] {
    sdn::RawModel m = sdn::parse_ckpt(reinterpret_cast<const uint8_t*>(zip.data()), zip.size(), "fuzz.ckpt", nullptr);
    unsigned sum = 0;
    for (const sdn::RawTensor& t : m.tensors)
      if (t.nbytes) sum += t.data[0] + t.data[t.nbytes - 1];
    volatile unsigned sink = sum;
    (void)sink;
  });
  return 0;
}
