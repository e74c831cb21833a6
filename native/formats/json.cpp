#include "formats/json.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sys/stat.h>

#include "formats/files.h"
#include "sdn/error.h"

namespace sdn {
namespace json {

const Value* Value::find(const std::string& key) const {
  if (type != Object) return nullptr;
  for (const auto& kv : obj)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

class Parser {
 public:
  Parser(const char* p, size_t n, const std::string& what) : s_(p), n_(n), what_(what) {}

  Value run() {
    Value v;
    skip_ws();
    parse_value(v, 0);
    skip_ws();
    if (pos_ != n_) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) {
    throw_error(ErrorCode::InvalidFile, what_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + msg);
  }
  void skip_ws() {
    while (pos_ < n_ && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool lit(const char* w) {
    size_t l = std::strlen(w);
    if (n_ - pos_ >= l && std::memcmp(s_ + pos_, w, l) == 0) {
      pos_ += l;
      return true;
    }
    return false;
  }

  void parse_value(Value& v, int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    if (++values_ > kMaxValues) fail("more than " + std::to_string(kMaxValues) + " values");
    if (pos_ >= n_) fail("unexpected end of input");
    char c = s_[pos_];
    if (c == '{') {
      v.type = Value::Object;
      ++pos_;
      skip_ws();
      if (pos_ < n_ && s_[pos_] == '}') {
        ++pos_;
        return;
      }
      for (;;) {
        skip_ws();
        if (pos_ >= n_ || s_[pos_] != '"') fail("expected a string key");
        std::string key;
        parse_string(key);
        skip_ws();
        if (pos_ >= n_ || s_[pos_] != ':') fail("expected ':'");
        ++pos_;
        skip_ws();
        v.obj.emplace_back(std::move(key), Value());
        parse_value(v.obj.back().second, depth + 1);
        skip_ws();
        if (pos_ < n_ && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < n_ && s_[pos_] == '}') {
          ++pos_;
          return;
        }
        fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      v.type = Value::Array;
      ++pos_;
      skip_ws();
      if (pos_ < n_ && s_[pos_] == ']') {
        ++pos_;
        return;
      }
      for (;;) {
        skip_ws();
        v.arr.emplace_back();
        parse_value(v.arr.back(), depth + 1);
        skip_ws();
        if (pos_ < n_ && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < n_ && s_[pos_] == ']') {
          ++pos_;
          return;
        }
        fail("expected ',' or ']'");
      }
    } else if (c == '"') {
      v.type = Value::String;
      parse_string(v.str);
    } else if (c == 't') {
      if (!lit("true")) fail("bad literal");
      v.type = Value::Bool;
      v.b = true;
    } else if (c == 'f') {
      if (!lit("false")) fail("bad literal");
      v.type = Value::Bool;
    } else if (c == 'n') {
      if (!lit("null")) fail("bad literal");
      v.type = Value::Null;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      parse_number(v);
    } else {
      fail(std::string("unexpected character ") + describe(c));
    }
  }

  static std::string describe(char c) {
    unsigned char u = (unsigned char)c;
    if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", u);
    return buf;
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  void parse_number(Value& v) {
    size_t start = pos_;
    bool neg = false, integral = true;
    if (s_[pos_] == '-') {
      neg = true;
      ++pos_;
    }
    if (pos_ >= n_ || !digit(s_[pos_])) fail("bad number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < n_ && digit(s_[pos_])) ++pos_;
    }
    if (pos_ < n_ && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= n_ || !digit(s_[pos_])) fail("bad number: digits expected after '.'");
      while (pos_ < n_ && digit(s_[pos_])) ++pos_;
    }
    if (pos_ < n_ && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < n_ && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= n_ || !digit(s_[pos_])) fail("bad number: digits expected in the exponent");
      while (pos_ < n_ && digit(s_[pos_])) ++pos_;
    }
    v.type = Value::Number;
    if (pos_ - start > 400) fail("number literal too long");
    std::string lit(s_ + start, pos_ - start);
    v.num = std::strtod(lit.c_str(), nullptr);
    if (integral) {
      // exact int64 parse with overflow detection
      uint64_t acc = 0;
      bool overflow = false;
      for (size_t k = neg ? 1 : 0; k < lit.size(); ++k) {
        uint64_t d = (uint64_t)(lit[k] - '0');
        if (acc > (UINT64_MAX - d) / 10) {
          overflow = true;
          break;
        }
        acc = acc * 10 + d;
      }
      if (!overflow) {
        if (!neg && acc <= (uint64_t)INT64_MAX) {
          v.is_int = true;
          v.i = (int64_t)acc;
        } else if (neg && acc <= (uint64_t)INT64_MAX + 1) {
          v.is_int = true;
          v.i = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
        }
      }
    }
  }

  unsigned hex4() {
    if (n_ - pos_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
      else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += (char)cp;
    } else if (cp < 0x800) {
      out += (char)(0xc0 | (cp >> 6));
      out += (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += (char)(0xe0 | (cp >> 12));
      out += (char)(0x80 | ((cp >> 6) & 0x3f));
      out += (char)(0x80 | (cp & 0x3f));
    } else {
      out += (char)(0xf0 | (cp >> 18));
      out += (char)(0x80 | ((cp >> 12) & 0x3f));
      out += (char)(0x80 | ((cp >> 6) & 0x3f));
      out += (char)(0x80 | (cp & 0x3f));
    }
  }

  // Validates one UTF-8 sequence starting at pos_ and appends it.
  void utf8_char(std::string& out) {
    unsigned char c = (unsigned char)s_[pos_];
    int len;
    uint32_t cp;
    if (c < 0x80) {
      out += (char)c;
      ++pos_;
      return;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      fail("invalid UTF-8 in string");
    }
    if (n_ - pos_ < (size_t)len) fail("truncated UTF-8 sequence");
    for (int k = 1; k < len; ++k) {
      unsigned char d = (unsigned char)s_[pos_ + k];
      if ((d & 0xc0) != 0x80) fail("invalid UTF-8 in string");
      cp = cp << 6 | (d & 0x3f);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) fail("invalid UTF-8 in string");
    out.append(s_ + pos_, (size_t)len);
    pos_ += (size_t)len;
  }

  void parse_string(std::string& out) {
    ++pos_;  // opening quote
    for (;;) {
      if (pos_ >= n_) fail("unterminated string");
      char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return;
      }
      if ((unsigned char)c < 0x20) fail("control character in string");
      if (c != '\\') {
        utf8_char(out);
        continue;
      }
      ++pos_;
      if (pos_ >= n_) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (n_ - pos_ < 2 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') fail("unpaired surrogate in \\u escape");
            pos_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) fail("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            fail("unpaired surrogate in \\u escape");
          }
          put_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape \\") + describe(e));
      }
    }
  }

  const char* s_;
  size_t n_;
  size_t pos_ = 0;
  size_t values_ = 0;
  const std::string& what_;
};

}  // namespace

Value parse(const char* text, size_t len, const std::string& what) {
  Parser p(text, len, what);
  return p.run();
}

Value parse_file(const std::string& path, size_t max_bytes) {
  // read_small_file refuses FIFOs, devices and folders without blocking, and files over the limit
  std::string s = read_small_file(path, max_bytes);
  return parse(s, path);
}

}  // namespace json
}  // namespace sdn
