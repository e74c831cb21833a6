#include "sdn/error.h"

#include <cstdint>
#include <cstdio>

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

Error::Error(ErrorCode code, const std::string& message) : std::runtime_error(printable(message)), code_(code) {}

void throw_error(ErrorCode code, const std::string& message) { throw Error(code, message); }

namespace {

void hex_byte(std::string& out, unsigned char b) {
  static const char* hx = "0123456789abcdef";
  out += "\\x";
  out += hx[b >> 4];
  out += hx[b & 15];
}

// Escapes one string (no length limit).
std::string escape_all(const std::string& s, bool keep_newlines) {
  std::string out;
  out.reserve(s.size());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      if ((c < 0x20 && !(keep_newlines && (c == '\n' || c == '\t'))) || c == 0x7f) hex_byte(out, c);
      else out += (char)c;
      i++;
      continue;
    }
    // a UTF-8 sequence: its length, then validity (shortest form, no surrogates, <= U+10FFFF)
    int len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    bool ok = len > 0 && i + (size_t)len <= n;
    for (int k = 1; ok && k < len; k++) {
      const unsigned char d = (unsigned char)s[i + (size_t)k];
      if ((d & 0xc0) != 0x80) ok = false;
      cp = cp << 6 | (d & 0x3f);
    }
    if (ok) {
      ok = (len == 2 && cp >= 0x80) || (len == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
           (len == 4 && cp >= 0x10000 && cp <= 0x10ffff);
    }
    if (!ok) {
      hex_byte(out, c);
      i++;
      continue;
    }
    // C1 controls (U+0080..U+009F: e.g. U+009B is CSI to some terminals) and bidirectional overrides/isolates
    if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\u{%04x}", (unsigned)cp);
      out += buf;
    } else {
      out.append(s, i, (size_t)len);
    }
    i += (size_t)len;
  }
  return out;
}

}  // namespace

std::string printable(const std::string& s, size_t max_bytes, bool keep_newlines) {
  if (max_bytes < 64) max_bytes = 64;
  if (s.size() <= max_bytes) return escape_all(s, keep_newlines);
  // cut in the middle, on UTF-8 boundaries
  size_t head = max_bytes / 2 - 16, tail = max_bytes / 2 - 16;
  while (head > 0 && ((unsigned char)s[head] & 0xc0) == 0x80) head--;
  size_t from = s.size() - tail;
  while (from < s.size() && ((unsigned char)s[from] & 0xc0) == 0x80) from++;
  return escape_all(s.substr(0, head), keep_newlines) + " [... " + std::to_string(from - head) + " bytes ...] " +
         escape_all(s.substr(from), keep_newlines);
}

}  // namespace sdn
