// A1111 prompt handling: attention/emphasis syntax (modules/prompt_parser.py parse_prompt_attention), the
// "infinite prompt" 75-token chunking with comma backtracking (sd_hijack_clip.py), and emphasis application.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "sdn/error.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace sdn {
namespace {

constexpr size_t kMaxPromptBytes = size_t(1) << 20;
constexpr int kChunkTokens = 75;
constexpr int kCommaBacktrack = 20;
constexpr size_t kMaxBracketWork = size_t(50) << 20;  // A1111 option comma_padding_backtrack (default 20)

struct Seg {
  std::string text;
  double weight;
};

bool is_word(uint32_t c) { return c == '_' || uni::is_letter(c) || uni::is_number(c); }

// re.split(r"\s*\bBREAK\b\s*", text): the pieces between BREAK keywords.
std::vector<std::string> split_break(const std::vector<uint32_t>& t) {
  std::vector<std::string> parts;
  const size_t n = t.size();
  size_t last = 0, q = 0;
  while (q + 5 <= n) {
    bool hit = t[q] == 'B' && t[q + 1] == 'R' && t[q + 2] == 'E' && t[q + 3] == 'A' && t[q + 4] == 'K' &&
               (q == 0 || !is_word(t[q - 1])) && (q + 5 == n || !is_word(t[q + 5]));
    if (!hit) {
      q++;
      continue;
    }
    size_t start = q, end = q + 5;
    while (start > last && uni::is_space(t[start - 1])) start--;
    while (end < n && uni::is_space(t[end])) end++;
    parts.push_back(uni::encode_utf8(std::vector<uint32_t>(t.begin() + last, t.begin() + start)));
    last = q = end;
  }
  parts.push_back(uni::encode_utf8(std::vector<uint32_t>(t.begin() + last, t.end())));
  return parts;
}

// Python float() of "[+-]?[.0-9]+"; false when it is not a number (e.g. "1.2.3" or ".").
bool parse_weight(const std::string& s, double* out) {
  int dots = 0, digits = 0;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (c == '.') dots++;
    else if (c >= '0' && c <= '9') digits++;
    else if (!(i == 0 && (c == '+' || c == '-'))) return false;
  }
  if (dots > 1 || digits == 0) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

std::vector<Seg> parse_attention(const std::string& prompt) {
  const std::vector<uint32_t> t = uni::decode_utf8(prompt);
  const size_t n = t.size();
  std::vector<Seg> res;
  std::vector<size_t> round, square;
  // A1111 multiplies every segment of an open bracket's range; bound the total work (quadratic for prompts such
  // as "(a(a(a..." with thousands of brackets) instead of hanging.
  size_t work = 0;
  auto multiply = [&](size_t start, double m) {
    work += res.size() - start;
    if (work > kMaxBracketWork)
      throw_error(ErrorCode::InvalidArgument, "prompt has too many nested emphasis brackets to evaluate");
    for (size_t p = start; p < res.size(); p++) res[p].weight *= m;
  };
  auto plain = [&](size_t a, size_t b) {
    std::vector<std::string> parts = split_break(std::vector<uint32_t>(t.begin() + a, t.begin() + b));
    for (size_t i = 0; i < parts.size(); i++) {
      if (i > 0) res.push_back({"BREAK", -1.0});
      res.push_back({parts[i], 1.0});
    }
  };
  auto special = [](uint32_t c) { return c == '\\' || c == '(' || c == ')' || c == '[' || c == ']' || c == ':'; };
  size_t i = 0;
  while (i < n) {
    uint32_t c = t[i];
    if (c == '\\') {
      // \( \) \[ \] \\ -> the literal character; a lone backslash -> nothing (A1111 appends text[1:] = "")
      std::string lit;
      if (i + 1 < n && (t[i + 1] == '(' || t[i + 1] == ')' || t[i + 1] == '[' || t[i + 1] == ']' || t[i + 1] == '\\')) {
        lit.push_back((char)t[i + 1]);
        i += 2;
      } else {
        i += 1;
      }
      res.push_back({lit, 1.0});
    } else if (c == '(') {
      round.push_back(res.size());
      i++;
    } else if (c == '[') {
      square.push_back(res.size());
      i++;
    } else if (c == ':') {
      // ":\s*([+-]?[.\d]+)\s*\)"
      size_t j = i + 1;
      while (j < n && uni::is_space(t[j])) j++;
      size_t num0 = j;
      if (j < n && (t[j] == '+' || t[j] == '-')) j++;
      size_t d0 = j;
      while (j < n && (t[j] == '.' || (t[j] >= '0' && t[j] <= '9'))) j++;
      size_t num1 = j;
      while (j < n && uni::is_space(t[j])) j++;
      double w;
      if (num1 > d0 && j < n && t[j] == ')' && !round.empty() &&
          parse_weight(uni::encode_utf8(std::vector<uint32_t>(t.begin() + num0, t.begin() + num1)), &w)) {
        multiply(round.back(), w);
        round.pop_back();
        i = j + 1;
      } else if (num1 > d0 && j < n && t[j] == ')') {
        // a weight with no open '(' (or one Python's float() rejects): the whole match is plain text
        plain(i, j + 1);
        i = j + 1;
      } else {
        plain(i, i + 1);  // lone ':'
        i++;
      }
    } else if (c == ')') {
      if (!round.empty()) {
        multiply(round.back(), 1.1);
        round.pop_back();
      } else {
        plain(i, i + 1);
      }
      i++;
    } else if (c == ']') {
      if (!square.empty()) {
        multiply(square.back(), 1.0 / 1.1);
        square.pop_back();
      } else {
        plain(i, i + 1);
      }
      i++;
    } else {
      size_t j = i;
      while (j < n && !special(t[j])) j++;
      plain(i, j);
      i = j;
    }
  }
  for (size_t p : round) multiply(p, 1.1);
  for (size_t p : square) multiply(p, 1.0 / 1.1);
  if (res.empty()) res.push_back({"", 1.0});
  // merge runs of equal weights (linear pass; A1111 pops one at a time)
  std::vector<Seg> merged;
  for (Seg& s : res) {
    if (!merged.empty() && merged.back().weight == s.weight)
      merged.back().text += s.text;
    else
      merged.push_back(std::move(s));
  }
  return merged;
}

}  // namespace

std::vector<PromptSegment> parse_prompt_attention(const std::string& prompt) {
  if (prompt.size() > kMaxPromptBytes)
    throw_error(ErrorCode::InvalidArgument, "prompt is too long (" + std::to_string(prompt.size()) +
                                                " bytes; the limit is 1 MiB)");
  std::vector<PromptSegment> out;
  for (const Seg& s : parse_attention(prompt)) out.push_back({s.text, (float)s.weight});
  return out;
}

TokenizedPrompt tokenize_prompt(const ClipTokenizer& tok, const std::string& prompt,
                                const std::vector<TokenReplacement>& replacements) {
  if (prompt.size() > kMaxPromptBytes)
    throw_error(ErrorCode::InvalidArgument, "prompt is too long (" + std::to_string(prompt.size()) +
                                                " bytes; the limit is 1 MiB)");
  const int bos = tok.bos(), eos = tok.eos();
  std::vector<int> comma_ids = tok.encode(",");
  const int comma = comma_ids.size() == 1 ? comma_ids[0] : -1;

  TokenizedPrompt out;
  out.chunks = 0;
  std::vector<int> ids;
  std::vector<float> mult;
  int last_comma = -1;
  auto next_chunk = [&]() {
    if (out.chunks >= kMaxPromptChunks)
      throw_error(ErrorCode::InvalidArgument,
                  "prompt is too long: it makes more than " + std::to_string(kMaxPromptChunks) +
                      " chunks of 75 tokens (each BREAK also starts a chunk); shorten it (the limit is " +
                      std::to_string(kMaxPromptChunks * kChunkTokens) + " tokens)");
    while ((int)ids.size() < kChunkTokens) ids.push_back(eos), mult.push_back(1.0f);
    out.ids.push_back(bos);
    out.weights.push_back(1.0f);
    out.ids.insert(out.ids.end(), ids.begin(), ids.end());
    out.weights.insert(out.weights.end(), mult.begin(), mult.end());
    out.ids.push_back(eos);
    out.weights.push_back(1.0f);
    out.chunks++;
    ids.clear();
    mult.clear();
    last_comma = -1;
  };

  for (const Seg& seg : parse_attention(prompt)) {
    if (seg.text == "BREAK" && seg.weight == -1.0) {
      next_chunk();
      continue;
    }
    const float w = (float)seg.weight;
    std::vector<int> seg_ids = tok.encode(seg.text);
    if (!replacements.empty()) {
      std::vector<int> r;
      for (size_t i = 0; i < seg_ids.size();) {
        const TokenReplacement* hit = nullptr;
        for (const TokenReplacement& rp : replacements)
          if (!rp.match.empty() && i + rp.match.size() <= seg_ids.size() &&
              std::equal(rp.match.begin(), rp.match.end(), seg_ids.begin() + (long)i) &&
              (!hit || rp.match.size() > hit->match.size()))
            hit = &rp;
        if (hit) {
          r.insert(r.end(), hit->ids.begin(), hit->ids.end());
          i += hit->match.size();
        } else {
          r.push_back(seg_ids[i++]);
        }
      }
      seg_ids.swap(r);
    }
    for (int token : seg_ids) {
      if (token == comma) {
        last_comma = (int)ids.size();
      } else if ((int)ids.size() == kChunkTokens && last_comma != -1 &&
                 (int)ids.size() - last_comma <= kCommaBacktrack) {
        // move the tokens after the last comma into the next chunk
        size_t cut = (size_t)last_comma + 1;
        std::vector<int> moved_ids(ids.begin() + (long)cut, ids.end());
        std::vector<float> moved_w(mult.begin() + (long)cut, mult.end());
        ids.resize(cut);
        mult.resize(cut);
        next_chunk();
        ids = std::move(moved_ids);
        mult = std::move(moved_w);
      }
      if ((int)ids.size() == kChunkTokens) next_chunk();
      ids.push_back(token);
      mult.push_back(w);
    }
  }
  if (!ids.empty() || out.chunks == 0) next_chunk();
  return out;
}

void apply_emphasis(float* hidden, int tokens, int dim, const float* weights) {
  if (tokens <= 0 || dim <= 0) return;
  const size_t total = (size_t)tokens * (size_t)dim;
  double m0 = 0;
  for (size_t k = 0; k < total; k++) m0 += hidden[k];
  m0 /= (double)total;
  double m1 = 0;
  for (int t = 0; t < tokens; t++) {
    float* row = hidden + (size_t)t * dim;
    const float w = weights[t];
    for (int d = 0; d < dim; d++) {
      row[d] *= w;
      m1 += row[d];
    }
  }
  m1 /= (double)total;
  if (m1 == 0.0 || !std::isfinite(m1) || !std::isfinite(m0)) return;  // A1111 would divide by zero here
  const float scale = (float)(m0 / m1);
  for (size_t k = 0; k < total; k++) hidden[k] *= scale;
}

}  // namespace sdn
