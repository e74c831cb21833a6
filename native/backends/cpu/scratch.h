// Per-thread growable scratch buffer (64-byte aligned) for the CPU kernels' packing and transform panels.
// Grows on demand and is reused across calls, so steady-state kernels do not allocate.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <string>

#include "sdn/error.h"

namespace sdn {
namespace cpu {

class ScratchBuffer {
 public:
  explicit ScratchBuffer(const char* what) : what_(what) {}
  ~ScratchBuffer() { std::free(p_); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  // A buffer of at least n floats; previous contents are not kept when it grows.
  float* get(size_t n) {
    if (n > cap_) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
      size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p_) throw_error(ErrorCode::OutOfMemory, std::string(what_) + " scratch allocation failed");
      cap_ = n;
    }
    return p_;
  }

 private:
  const char* what_;
  float* p_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace cpu
}  // namespace sdn
