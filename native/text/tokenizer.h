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
  // At most 48 894 merges are read (OpenAI's bpe_simple_vocab_16e6.txt lists more; CLIP uses only these);
  // trailing empty lines are allowed. Throws InvalidFile on malformed input (a line that is not two symbols
  // separated by one space, a symbol that is neither a byte symbol nor an earlier merge's result, a repeated
  // merge result, text after an empty line, no merges, more than 64 MiB).
  // The returned tokenizer is thread-safe (its per-word BPE cache is guarded by a mutex).
  static std::shared_ptr<ClipTokenizer> from_merges(const std::string& merges_text);
  virtual ~ClipTokenizer() = default;
  // Token ids of `text` without BOS/EOS or padding (OpenAI CLIP semantics: html.unescape applied twice,
  // whitespace runs collapsed to one space and stripped, Python str.lower(), pre-tokenisation with \p{L} / \p{N}
  // classes; ftfy is not applied). Invalid UTF-8 bytes become U+FFFD. "<|startoftext|>" / "<|endoftext|>" in
  // the text map to BOS / EOS, as in OpenAI's tokenizer.
  virtual std::vector<int> encode(const std::string& text) const = 0;
  virtual int vocab_size() const = 0;
  int bos() const { return vocab_size() - 2; }
  int eos() const { return vocab_size() - 1; }
};

// A prompt after A1111 attention parsing, tokenized and split into 77-token windows.
// Every chunk is laid out as BOS, its <= 75 tokens, EOS-padding up to 75, EOS (A1111's layout; the padding
// token is EOS = 49407, what SD1.x and SDXL's CLIP-L use). For encoders whose pad id is 0 (SD2.x OpenCLIP
// ViT-H, SDXL's bigG) the pipeline must replace every id after the first EOS of each chunk with 0.
// The most 77-token chunks one prompt may make (75 tokens each, BREAK starting a new one): 2,400 tokens. Every
// chunk lengthens the text context that each U-Net cross-attention reads at every step, so the cost of a prompt
// is bounded here; a longer one is refused with InvalidArgument saying so.
constexpr int kMaxPromptChunks = 32;

struct TokenizedPrompt {
  std::vector<int> ids;          // chunks * 77 ids (BOS, up to 75 tokens, EOS padding, EOS)
  std::vector<float> weights;    // chunks * 77 emphasis weights (1.0 for BOS/EOS/padding)
  int chunks = 1;
};

// Parses the prompt (parse_prompt_attention), tokenizes each segment separately (tokens never merge across
// segments) and splits the tokens into chunks of 75 following A1111's sd_hijack_clip rules: when a chunk is full
// and the next token is not a comma, the tokens after the chunk's last comma move to the next chunk if that comma
// is within the last 20 tokens; `BREAK` (uppercase, weight exactly -1) closes the current chunk. An empty prompt
// gives one chunk [BOS, EOS x 76]. (sd.cpp splits plainly every 75 tokens: a DIFF only for prompts > 75 tokens
// with a comma near the boundary.) Throws InvalidArgument for prompts over 1 MiB.
//
// The pipeline then encodes each 77-token chunk independently, concatenates the [77, D] outputs along the token
// axis, and applies the weights per chunk with apply_emphasis() (after the final layer norm / clip-skip layer).
// A token sequence replaced by other ids while tokenizing (textual-inversion embeddings: the tokens of the
// embedding's name become ids past the vocabulary, one per vector).
struct TokenReplacement {
  std::vector<int> match;
  std::vector<int> ids;
};
TokenizedPrompt tokenize_prompt(const ClipTokenizer& tok, const std::string& prompt,
                                const std::vector<TokenReplacement>& replacements = {});

// A1111 "Original" emphasis (also sd.cpp): for one chunk's hidden states [tokens, dim] (row-major) and its
// weights [tokens]: m0 = mean(hidden); hidden[t, :] *= weights[t]; m1 = mean(hidden); hidden *= m0 / m1.
// Means are accumulated in double. Leaves the scaled values unnormalised when m1 is 0 or not finite (A1111 would
// produce NaN). Apply it to each 77-token chunk separately; the SDXL pooled vector is not re-weighted.
void apply_emphasis(float* hidden, int tokens, int dim, const float* weights);

// A1111 parse_prompt_attention: `(text)` x1.1, `(text:1.3)` (spaces allowed around the number), `[text]` /1.1,
// nesting multiplies, unclosed brackets apply at the end, `\(` `\)` `\[` `\]` `\\` are literal characters and a
// lone backslash is dropped, `BREAK` (uppercase, a whole word) becomes the segment {"BREAK", -1}; adjacent
// segments with equal weights are merged; an empty prompt gives {"", 1}. Weights are computed in double (as in
// A1111) and rounded to float. Deviation: a `(text:N)` whose N Python's float() rejects (e.g. "1.2.3") is kept
// as plain text here instead of raising. Note A1111's quirk, reproduced: a BREAK inside brackets gets its -1
// multiplied and then is ordinary text.
struct PromptSegment {
  std::string text;
  float weight;
};
std::vector<PromptSegment> parse_prompt_attention(const std::string& prompt);

}  // namespace sdn
