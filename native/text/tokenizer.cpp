// CLIP byte-level BPE (OpenAI CLIP SimpleTokenizer semantics, without ftfy).
#include "text/tokenizer.h"

#include <functional>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "sdn/error.h"
#include "text/unicode.h"

namespace sdn {
namespace {

constexpr size_t kMaxMergesText = size_t(64) << 20;  // the real file is ~0.5 MB
constexpr int kClipMerges = 48894;                     // merges CLIP uses (49408 - 256 - 256 - 2)
constexpr size_t kCacheLimit = 200000;                 // memoised words before the cache is reset
constexpr size_t kMaxCachedWord = 256;                 // longer words are not memoised
constexpr size_t kShortWord = 64;                      // symbols up to which the plain O(n^2) loop is used

// bytes_to_unicode: the printable bytes keep their code point, the rest are moved to 256 + n in byte order.
// `order` lists the bytes in vocabulary order (ids 0..255), `cp` gives each byte's code point.
struct ByteTable {
  uint32_t cp[256];
  int id[256];  // byte -> vocabulary id (0..255)
  ByteTable() {
    bool printable[256] = {};
    for (int b = 0x21; b <= 0x7E; b++) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
    int next_id = 0;
    for (int b = 0; b < 256; b++)
      if (printable[b]) cp[b] = (uint32_t)b, id[b] = next_id++;
    int n = 0;
    for (int b = 0; b < 256; b++)
      if (!printable[b]) cp[b] = 256u + (uint32_t)n++, id[b] = next_id++;
  }
};
const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

class BpeTokenizer final : public ClipTokenizer {
 public:
  explicit BpeTokenizer(const std::string& text) { parse(text); }

  int vocab_size() const override { return (int)vocab_.size(); }

  std::vector<int> encode(const std::string& text) const override {
    std::vector<uint32_t> cps = normalise(text);
    std::vector<int> ids;
    const size_t n = cps.size();
    size_t i = 0;
    std::vector<uint32_t> word;
    while (i < n) {
      uint32_t c = cps[i];
      word.clear();
      if (c == ' ') {  // only plain spaces remain after normalisation
        i++;
        continue;
      }
      size_t special = match_special(cps, i);
      if (special) {
        ids.push_back(special == 15 ? bos() : eos());
        i += special;
        continue;
      }
      if (c == '\'' && i + 1 < n) {
        uint32_t a = cps[i + 1], b = i + 2 < n ? cps[i + 2] : 0;
        size_t len = 0;
        // the pattern is case-insensitive: after lower-casing only U+017F (long s, folds to 's') still matters
        if (a == 's' || a == 0x17F || a == 't' || a == 'm' || a == 'd')
          len = 2;
        else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
          len = 3;
        if (len) {
          word.assign(cps.begin() + i, cps.begin() + i + len);
          i += len;
          bpe_word(word, ids);
          continue;
        }
      }
      if (uni::is_letter(c)) {
        size_t j = i;
        while (j < n && uni::is_letter(cps[j])) j++;
        word.assign(cps.begin() + i, cps.begin() + j);
        i = j;
      } else if (uni::is_number(c)) {
        word.assign(1, c);
        i++;
      } else {
        size_t j = i;
        while (j < n && !uni::is_space(cps[j]) && !uni::is_letter(cps[j]) && !uni::is_number(cps[j])) j++;
        word.assign(cps.begin() + i, cps.begin() + j);
        i = j;
      }
      bpe_word(word, ids);
    }
    return ids;
  }

 private:
  std::vector<std::string> vocab_;                // id -> symbol (byte-unicode characters, UTF-8)
  std::unordered_map<std::string, int> lookup_;   // symbol -> id (the last id wins, as in CLIP's dict)
  struct Merge {
    int rank, id;
  };
  std::unordered_map<uint64_t, Merge> merges_;    // (left id, right id) -> rank and merged id
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>> cache_;

  static uint64_t key(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

  [[noreturn]] static void bad(size_t line, const std::string& why) {
    throw_error(ErrorCode::InvalidFile, "BPE merges file, line " + std::to_string(line) + ": " + why +
                                            " (expected lines of two symbols separated by one space)");
  }

  void parse(const std::string& text) {
    if (text.size() > kMaxMergesText)
      throw_error(ErrorCode::InvalidFile, "BPE merges file is too large (" + std::to_string(text.size()) +
                                              " bytes; the CLIP file is about 0.5 MB)");
    const ByteTable& bt = byte_table();
    vocab_.resize(512);
    for (int b = 0; b < 256; b++) {
      std::string s;
      uni::append_utf8(s, bt.cp[b]);
      vocab_[bt.id[b]] = s;
      vocab_[256 + bt.id[b]] = s + "</w>";
    }
    for (int i = 0; i < 512; i++) lookup_[vocab_[i]] = i;

    size_t pos = 0, line_no = 0;
    int rank = 0;
    bool ended = false;  // an empty line was seen: only empty lines may follow
    while (pos < text.size() && rank < kClipMerges) {
      size_t eol = text.find('\n', pos);
      if (eol == std::string::npos) eol = text.size();
      std::string line = text.substr(pos, eol - pos);
      pos = eol + 1;
      line_no++;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line_no == 1 && line.compare(0, 8, "#version") == 0) continue;
      if (line.empty()) {
        ended = true;
        continue;
      }
      if (ended) bad(line_no, "text after an empty line");
      size_t sp = line.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string::npos)
        bad(line_no, "not a pair of symbols");
      std::string a = line.substr(0, sp), b = line.substr(sp + 1);
      auto ia = lookup_.find(a), ib = lookup_.find(b);
      if (ia == lookup_.end() || ib == lookup_.end())
        bad(line_no, "symbol '" + (ia == lookup_.end() ? a : b).substr(0, 40) + "' is not a byte symbol or an earlier merge");
      std::string merged = a + b;
      if (lookup_.count(merged)) bad(line_no, "merge result '" + merged.substr(0, 40) + "' repeats an earlier symbol");
      int id = 512 + rank;
      vocab_.push_back(merged);
      lookup_[merged] = id;
      merges_[key(ia->second, ib->second)] = Merge{rank, id};
      rank++;
    }
    if (rank == 0) throw_error(ErrorCode::InvalidFile, "BPE merges file contains no merges");
    vocab_.push_back("<|startoftext|>");
    vocab_.push_back("<|endoftext|>");
  }

  // OpenAI CLIP: html.unescape twice, strip, collapse whitespace runs to one space, strip, lower-case.
  static std::vector<uint32_t> normalise(const std::string& text) {
    std::vector<uint32_t> cps = uni::html_unescape(uni::html_unescape(uni::decode_utf8(text)));
    std::vector<uint32_t> out;
    out.reserve(cps.size());
    bool pending_space = false;
    for (uint32_t c : cps) {
      if (uni::is_space(c)) {
        pending_space = !out.empty();
        continue;
      }
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.push_back(c);
    }
    return uni::lower_string(out);
  }

  static size_t match_special(const std::vector<uint32_t>& cps, size_t i) {
    static const char* const kNames[2] = {"<|startoftext|>", "<|endoftext|>"};
    if (cps[i] != '<') return 0;
    for (const char* name : kNames) {
      size_t len = std::char_traits<char>::length(name);
      if (i + len > cps.size()) continue;
      size_t k = 0;
      while (k < len && cps[i + k] == (uint32_t)(unsigned char)name[k]) k++;
      if (k == len) return len;
    }
    return 0;
  }

  void bpe_word(const std::vector<uint32_t>& word, std::vector<int>& ids) const {
    std::string utf8 = uni::encode_utf8(word);
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(utf8);
      if (it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const ByteTable& bt = byte_table();
    std::vector<int> sym;
    sym.reserve(utf8.size());
    for (unsigned char b : utf8) sym.push_back(bt.id[b]);
    sym.back() += 256;  // the last symbol carries "</w>"
    if (sym.size() <= kShortWord)
      merge_simple(sym);
    else
      merge_heap(sym);
    ids.insert(ids.end(), sym.begin(), sym.end());
    if (utf8.size() > kMaxCachedWord) return;
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheLimit) cache_.clear();
    cache_.emplace(std::move(utf8), std::move(sym));
  }

 private:
  // OpenAI's loop: repeatedly merge every (non-overlapping, left to right) occurrence of the lowest-ranked
  // adjacent pair. O(n^2) per word, fine for ordinary words.
  void merge_simple(std::vector<int>& sym) const {
    while (sym.size() > 1) {
      int best_rank = -1, best_id = 0, left = 0, right = 0;
      for (size_t k = 0; k + 1 < sym.size(); k++) {
        auto it = merges_.find(key(sym[k], sym[k + 1]));
        if (it != merges_.end() && (best_rank < 0 || it->second.rank < best_rank)) {
          best_rank = it->second.rank, best_id = it->second.id, left = sym[k], right = sym[k + 1];
        }
      }
      if (best_rank < 0) break;
      size_t w = 0;
      for (size_t k = 0; k < sym.size(); k++) {
        if (k + 1 < sym.size() && sym[k] == left && sym[k + 1] == right) {
          sym[w++] = best_id;
          k++;
        } else {
          sym[w++] = sym[k];
        }
      }
      sym.resize(w);
    }
  }

  // The same result in O(n log n) for very long "words": a heap of candidate pairs ordered by (rank, position).
  // Exact because a merge's result only takes part in later-ranked merges (the parser requires each merge's
  // symbols to exist before it), so all occurrences of one rank are consumed left to right before any other.
  void merge_heap(std::vector<int>& sym) const {
    const int n = (int)sym.size();
    std::vector<int> prev(n), next(n);
    std::vector<char> alive(n, 1);
    for (int k = 0; k < n; k++) prev[k] = k - 1, next[k] = k + 1 < n ? k + 1 : -1;
    struct Cand {
      int rank, pos, left, right;  // left/right symbols at push time, to detect stale entries
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int a) {
      int b = a >= 0 ? next[a] : -1;
      if (a < 0 || b < 0) return;
      auto it = merges_.find(key(sym[a], sym[b]));
      if (it != merges_.end()) heap.push(Cand{it->second.rank, a, sym[a], sym[b]});
    };
    for (int k = 0; k + 1 < n; k++) push(k);
    while (!heap.empty()) {
      Cand c = heap.top();
      heap.pop();
      int a = c.pos;
      if (!alive[a]) continue;
      int b = next[a];
      if (b < 0 || sym[a] != c.left || sym[b] != c.right) continue;  // stale
      sym[a] = merges_.find(key(c.left, c.right))->second.id;
      alive[b] = 0;
      next[a] = next[b];
      if (next[b] >= 0) prev[next[b]] = a;
      push(prev[a]);
      push(a);
    }
    std::vector<int> out;
    for (int k = 0; k >= 0; k = next[k]) out.push_back(sym[k]);
    sym.swap(out);
  }
};

}  // namespace

std::shared_ptr<ClipTokenizer> ClipTokenizer::from_merges(const std::string& merges_text) {
  return std::make_shared<BpeTokenizer>(merges_text);
}

}  // namespace sdn
