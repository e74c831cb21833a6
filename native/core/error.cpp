#include "sdn/error.h"

namespace sdn {

const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument: return "InvalidArgument";
    case ErrorCode::NotFound: return "NotFound";
    case ErrorCode::InvalidFile: return "InvalidFile";
    case ErrorCode::Unsupported: return "Unsupported";
    case ErrorCode::OutOfMemory: return "OutOfMemory";
    case ErrorCode::Aborted: return "Aborted";
    case ErrorCode::Disposed: return "Disposed";
    case ErrorCode::Io: return "Io";
    case ErrorCode::Internal: return "Internal";
  }
  return "Unknown";
}

void throw_error(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace sdn
