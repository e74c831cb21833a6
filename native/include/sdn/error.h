// sdnode engine: error type shared by every layer and by the public API.
#pragma once
#include <stdexcept>
#include <string>

namespace sdn {

// Stable error codes. The Node layer maps each to a typed JavaScript error, so never renumber.
enum class ErrorCode : int {
  InvalidArgument = 1,  // a parameter is out of range or of the wrong kind (user can fix the call)
  NotFound = 2,         // a file, folder or tensor that was asked for does not exist
  InvalidFile = 3,      // a file exists but is truncated, corrupt or hostile
  Unsupported = 4,      // recognised but not implemented (model family, dtype, feature)
  OutOfMemory = 5,      // an allocation failed or would exceed a limit
  Aborted = 6,          // the caller asked to stop
  Disposed = 7,         // the object was released
  Io = 8,               // read/write/mmap failed for an OS reason
  Internal = 9,         // a bug: an invariant did not hold
};

const char* error_code_name(ErrorCode c);

// Every message is made safe to print (see printable()): a file's names and bytes reach messages, and messages
// reach terminals and logs.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] void throw_error(ErrorCode code, const std::string& message);

// `s` made safe for a terminal or a log line: control characters (C0 except newline and tab, DEL, C1), bidi
// overrides and bytes that are not UTF-8 become \xNN / \u{NNNN} escapes; longer than max_bytes, the middle is cut
// (head and tail kept, so a message's advice at its end survives).
std::string printable(const std::string& s, size_t max_bytes = 4096, bool keep_newlines = true);

}  // namespace sdn

// Checks an internal invariant; failure is a bug, reported as ErrorCode::Internal (never abort()).
#define SDN_CHECK(cond, msg)                                                                            \
  do {                                                                                                  \
    if (!(cond)) ::sdn::throw_error(::sdn::ErrorCode::Internal,                                         \
                                    std::string(__FILE__ ":") + std::to_string(__LINE__) + ": " + (msg)); \
  } while (0)
