// Shared by the libFuzzer targets: typed errors are the expected outcome for bad input; an Internal error (a broken
// invariant) or any other exception is a bug and aborts so that the fuzzer records the input.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>

#include "sdn/error.h"

template <typename F>
void sdn_fuzz_guard(F body) {
  try {
    body();
  } catch (const ::sdn::Error& e) {
    if (e.code() == ::sdn::ErrorCode::Internal) {
      std::fprintf(stderr, "internal error: %s\n", e.what());
      std::abort();
    }
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "allocation failure (absurd allocation?)\n");
    std::abort();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    std::abort();
  }
}
