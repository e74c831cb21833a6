// libFuzzer target: LoRA and textual-inversion embedding files (native/fuzz/fuzz_adapters_body.h), written to a
// private temporary folder because both readers open paths.
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "fuzz_adapters_body.h"
#include "fuzz_common.h"

namespace {
std::string g_dir;  // the private folder, removed at exit (each input's file is removed after it is read)
void remove_dir() { rmdir(g_dir.c_str()); }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (g_dir.empty()) {
    char tmpl[] = "/tmp/sdn-fuzz-adapters-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    g_dir = tmpl;
    std::atexit(remove_dir);
  }
  sdn_fuzz_guard([&] { sdnfuzz::adapters_one_input(data, size, g_dir); });
  return 0;
}
