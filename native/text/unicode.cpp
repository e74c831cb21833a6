#include "text/unicode.h"

#include <algorithm>
#include <cstring>

namespace sdn {
namespace uni {
namespace {

struct UniRange {
  uint32_t lo, hi;
};
struct LowerRun {
  uint32_t first, last;
  int32_t delta;
  uint32_t stride;
};
struct HtmlEntity {
  const char* name;
  uint32_t cp0, cp1;
};

#include "text/unicode_tables.inc"

bool in_ranges(const UniRange* r, size_t n, uint32_t cp) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (r[mid].hi < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && r[lo].lo <= cp && cp <= r[lo].hi;
}

// html.unescape's replacements for numeric references to C1 controls / NUL / CR (Windows-1252 readings).
uint32_t invalid_charref(uint32_t n, bool* found) {
  static const uint32_t k80[32] = {0x20AC, 0x81,   0x201A, 0x192,  0x201E, 0x2026, 0x2020, 0x2021,
                                   0x2C6,  0x2030, 0x160,  0x2039, 0x152,  0x8D,   0x17D,  0x8F,
                                   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                   0x2DC,  0x2122, 0x161,  0x203A, 0x153,  0x9D,   0x17E,  0x178};
  *found = true;
  if (n == 0) return 0xFFFD;
  if (n == 0x0D) return 0x0D;
  if (n >= 0x80 && n <= 0x9F) return k80[n - 0x80];
  *found = false;
  return 0;
}

bool invalid_codepoint(uint32_t n) {
  if ((n >= 0x1 && n <= 0x8) || n == 0xB || (n >= 0xE && n <= 0x1F) || (n >= 0x7F && n <= 0x9F)) return true;
  if (n >= 0xFDD0 && n <= 0xFDEF) return true;
  if ((n & 0xFFFE) == 0xFFFE) return true;  // U+xFFFE / U+xFFFF of every plane
  return false;
}

const HtmlEntity* find_entity(const std::string& name) {
  const size_t n = sizeof(kHtmlEntities) / sizeof(kHtmlEntities[0]);
  const HtmlEntity* b = kHtmlEntities;
  const HtmlEntity* e = kHtmlEntities + n;
  const HtmlEntity* it = std::lower_bound(
      b, e, name, [](const HtmlEntity& a, const std::string& key) { return std::strcmp(a.name, key.c_str()) < 0; });
  if (it != e && name == it->name) return it;
  return nullptr;
}

bool is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
bool is_hex_digit(uint32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back((char)cp);
  } else if (cp < 0x800) {
    out.push_back((char)(0xC0 | (cp >> 6)));
    out.push_back((char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back((char)(0xE0 | (cp >> 12)));
    out.push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back((char)(0x80 | (cp & 0x3F)));
  } else {
    out.push_back((char)(0xF0 | (cp >> 18)));
    out.push_back((char)(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back((char)(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(const std::vector<uint32_t>& cps) {
  std::string s;
  s.reserve(cps.size());
  for (uint32_t c : cps) append_utf8(s, c);
  return s;
}

std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  const unsigned char* p = (const unsigned char*)s.data();
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      out.push_back(c);
      i++;
      continue;
    }
    int len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      out.push_back(0xFFFD);
      i++;
      continue;
    }
    int k = 1;
    for (; k < len && i + k < n && (p[i + k] & 0xC0) == 0x80; k++) cp = (cp << 6) | (p[i + k] & 0x3F);
    if (k < len || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      out.push_back(0xFFFD);
      i += k;  // skip the lead byte and the continuation bytes it consumed
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

bool is_letter(uint32_t cp) {
  return in_ranges(kLetterRanges, sizeof(kLetterRanges) / sizeof(kLetterRanges[0]), cp);
}
bool is_number(uint32_t cp) {
  return in_ranges(kNumberRanges, sizeof(kNumberRanges) / sizeof(kNumberRanges[0]), cp);
}
bool is_space(uint32_t cp) {
  if (cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint32_t lower_simple(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const size_t n = sizeof(kLowerRuns) / sizeof(kLowerRuns[0]);
  size_t lo = 0, hi = n;
  while (lo < hi) {  // first run with last >= cp
    size_t mid = (lo + hi) / 2;
    if (kLowerRuns[mid].last < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < n) {
    const LowerRun& r = kLowerRuns[lo];
    if (cp >= r.first && (cp - r.first) % r.stride == 0) return (uint32_t)((int64_t)cp + r.delta);
  }
  return cp;
}

bool is_case_ignorable(uint32_t cp) {
  return in_ranges(kCaseIgnorableRanges, sizeof(kCaseIgnorableRanges) / sizeof(kCaseIgnorableRanges[0]), cp);
}
bool is_cased(uint32_t cp) {
  return in_ranges(kCasedRanges, sizeof(kCasedRanges) / sizeof(kCasedRanges[0]), cp);
}

std::vector<uint32_t> lower_string(const std::vector<uint32_t>& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  const size_t n = s.size();
  for (size_t i = 0; i < n; i++) {
    if (s[i] != 0x3A3) {
      append_lower(out, s[i]);
      continue;
    }
    // Final_Sigma: \p{cased} \p{case-ignorable}* U+03A3 !(\p{case-ignorable}* \p{cased})
    size_t j = i;
    while (j > 0 && is_case_ignorable(s[j - 1])) j--;
    bool final_sigma = j > 0 && is_cased(s[j - 1]);
    if (final_sigma) {
      size_t k = i + 1;
      while (k < n && is_case_ignorable(s[k])) k++;
      final_sigma = k == n || !is_cased(s[k]);
    }
    out.push_back(final_sigma ? 0x3C2 : 0x3C3);
  }
  return out;
}

void append_lower(std::vector<uint32_t>& out, uint32_t cp) {
  if (cp == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE -> i + COMBINING DOT ABOVE
    out.push_back('i');
    out.push_back(0x307);
    return;
  }
  out.push_back(lower_simple(cp));
}

std::vector<uint32_t> html_unescape(const std::vector<uint32_t>& t) {
  std::vector<uint32_t> out;
  out.reserve(t.size());
  const size_t n = t.size();
  size_t i = 0;
  while (i < n) {
    if (t[i] != '&') {
      out.push_back(t[i++]);
      continue;
    }
    // Python: &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
    size_t j = i + 1;
    if (j < n && t[j] == '#') {
      bool hex = j + 1 < n && (t[j + 1] == 'x' || t[j + 1] == 'X');
      size_t k = j + (hex ? 2 : 1), d0 = k;
      uint64_t num = 0;
      bool big = false;
      while (k < n && (hex ? is_hex_digit(t[k]) : is_ascii_digit(t[k]))) {
        uint32_t c = t[k];
        uint32_t v = is_ascii_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        num = num * (hex ? 16 : 10) + v;
        if (num > 0x10FFFF) big = true, num = 0x110000;  // saturate: anything above is replaced anyway
        k++;
      }
      if (k == d0) {  // "&#" without digits: not a reference
        out.push_back(t[i++]);
        continue;
      }
      if (k < n && t[k] == ';') k++;
      bool found = false;
      uint32_t rep = big ? 0 : invalid_charref((uint32_t)num, &found);
      if (found) {
        out.push_back(rep);
      } else if (big || num > 0x10FFFF || (num >= 0xD800 && num <= 0xDFFF)) {
        out.push_back(0xFFFD);
      } else if (!invalid_codepoint((uint32_t)num)) {
        out.push_back((uint32_t)num);
      }
      i = k;
      continue;
    }
    // named: up to 32 chars none of \t \n \f space < & # ;  then an optional ';'
    size_t k = j;
    while (k < n && k - j < 32) {
      uint32_t c = t[k];
      if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
      k++;
    }
    if (k == j) {
      out.push_back(t[i++]);
      continue;
    }
    if (k < n && t[k] == ';') k++;
    std::vector<uint32_t> sv(t.begin() + j, t.begin() + k);
    std::string s = encode_utf8(sv);
    const HtmlEntity* e = find_entity(s);
    if (e) {
      out.push_back(e->cp0);
      if (e->cp1) out.push_back(e->cp1);
    } else {
      // longest prefix (at least 2 code points) that is a known entity name, the rest kept as text
      bool done = false;
      for (size_t x = sv.size() - 1; x > 1; x--) {
        std::string pre = encode_utf8(std::vector<uint32_t>(sv.begin(), sv.begin() + x));
        const HtmlEntity* pe = find_entity(pre);
        if (pe) {
          out.push_back(pe->cp0);
          if (pe->cp1) out.push_back(pe->cp1);
          out.insert(out.end(), sv.begin() + x, sv.end());
          done = true;
          break;
        }
      }
      if (!done) {
        out.push_back('&');
        out.insert(out.end(), sv.begin(), sv.end());
      }
    }
    i = k;
  }
  return out;
}

}  // namespace uni
}  // namespace sdn
