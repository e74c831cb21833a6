// CLIP byte-level BPE tokenizer and A1111 prompt handling.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sdn {

constexpr int kClipBos = 49406;
constexpr int kClipEos = 49407;
constexpr int kClipChunk = 77;  // tokens per window, BOS + 75 + EOS

class ClipTokenizer {
 public:
  // From the text of a merges file (optionally starting with a "#version" line; the standard CLIP file has
  // 48 894 merges after it). Vocabulary = 256 byte symbols, the same with "</w>", one per merge, then BOS, EOS.
  // Throws InvalidFile on malformed input.
  static std::shared_ptr<ClipTokenizer> from_merges(const std::string& merges_text);
  virtual ~ClipTokenizer() = default;
  // Token ids of `text` without BOS/EOS or padding (OpenAI CLIP semantics: HTML unescape, whitespace collapse,
  // Unicode-aware lower-casing and letter classes).
  virtual std::vector<int> encode(const std::string& text) const = 0;
  virtual int vocab_size() const = 0;
  int bos() const { return vocab_size() - 2; }
  int eos() const { return vocab_size() - 1; }
};

// A prompt after A1111 attention parsing, tokenized and split into 77-token windows.
struct TokenizedPrompt {
  std::vector<int> ids;          // chunks * 77 ids (BOS, up to 75 tokens, EOS, padding with EOS)
  std::vector<float> weights;    // chunks * 77 emphasis weights (1.0 for BOS/EOS/padding)
  int chunks = 1;
};

// Parses `(word)`, `(word:1.3)`, `[word]`, escapes `\(` `\)` `\[` `\]` `\\`, and `BREAK`; tokenizes; splits into
// chunks of 75 tokens with A1111's rule (break after the last comma within 20 tokens of a boundary).
TokenizedPrompt tokenize_prompt(const ClipTokenizer& tok, const std::string& prompt);

// The parsed segments (exposed for tests): text and its weight, BREAK as the text "BREAK" with weight -1.
struct PromptSegment {
  std::string text;
  float weight;
};
std::vector<PromptSegment> parse_prompt_attention(const std::string& prompt);

}  // namespace sdn
