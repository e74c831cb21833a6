// sdnode addon: a stand-in sdn::Model for testing the Node layer (queueing, cancellation, progress, previews,
// disposal, event-loop responsiveness) without weights or math. It sleeps instead of computing, polls
// should_abort like the real pipeline, allocates scratch memory per run like the real one, and returns images whose
// pixels depend on seed and prompt. Reached only through the internal lib/testing.ts; not part of the public API.
#pragma once
#include <cstdint>
#include <memory>

#include "sdn/sdn.h"

namespace sdnaddon {

struct FakeModelOptions {
  double load_ms = 0;
  double encode_ms = 5;
  double step_ms = 10;
  double decode_ms = 20;
  int64_t scratch_bytes = 8 << 20;  // allocated (and touched) for the duration of each run
};

std::unique_ptr<sdn::Model> make_fake_model(const FakeModelOptions& fo, const sdn::LoadOptions& lo);

}  // namespace sdnaddon
