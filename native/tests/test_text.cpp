// Tests for the CLIP tokenizer (native/text): golden token ids, Unicode/HTML normalisation, merges-file
// validation, A1111 prompt parsing, 75-token chunking, and emphasis mean restoration.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "sdn/error.h"
#include "test.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace {

// ../shared next to the repository (or $SDNODE_SHARED_DIR, as the JS golden tests use). Empty when absent.
std::string shared_dir() {
  if (const char* env = std::getenv("SDNODE_SHARED_DIR")) return env;
  std::string f = __FILE__;  // <repo>/native/tests/test_text.cpp
  for (int i = 0; i < 3; i++) {
    size_t p = f.find_last_of("/\\");
    if (p == std::string::npos) return "";
    f = f.substr(0, p);
  }
  std::string d = f + "/../shared";
  std::ifstream probe(d + "/golden/tokens.tsv");
  return probe.good() ? d : "";
}

void skip(const std::string& why) { std::cerr << "SKIP: " << why << std::endl; }

// The CLIP merges, from ../shared/data/clip-bpe-merges.txt.gz (decompressed with the system's gzip, so the
// engine needs no zlib). Null (after a visible SKIP message) when unavailable.
std::shared_ptr<sdn::ClipTokenizer> clip_tokenizer() {
  static std::shared_ptr<sdn::ClipTokenizer> tok;
  static bool tried = false;
  if (tried) return tok;
  tried = true;
  std::string dir = shared_dir();
  if (dir.empty()) {
    skip("../shared is absent: CLIP merges not available");
    return nullptr;
  }
  std::string cmd = "gzip -dc '" + dir + "/data/clip-bpe-merges.txt.gz'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    skip("cannot run gzip");
    return nullptr;
  }
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int rc = pclose(p);
  if (rc != 0 || text.empty()) {
    skip("gzip -dc failed on the CLIP merges");
    return nullptr;
  }
  tok = sdn::ClipTokenizer::from_merges(text);
  return tok;
}

std::string ids_str(const std::vector<int>& v) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < v.size(); i++) o << (i ? "," : "") << v[i];
  o << "]";
  return o.str();
}

}  // namespace

TEST(text, golden_tokens_tsv) {
  auto tok = clip_tokenizer();
  if (!tok) return;
  EXPECT_EQ(tok->vocab_size(), 49408);
  EXPECT_EQ(tok->bos(), sdn::kClipBos);
  EXPECT_EQ(tok->eos(), sdn::kClipEos);
  std::ifstream in(shared_dir() + "/golden/tokens.tsv");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t tab = line.rfind('\t');
    EXPECT_TRUE(tab != std::string::npos);
    std::string prompt = line.substr(0, tab), want = line.substr(tab + 1);
    std::string got = ids_str(tok->encode(prompt));
    if (got != want) SDN_FAIL("prompt '" << prompt << "': got " << got << " want " << want);
    lines++;
  }
  EXPECT_EQ(lines, 12);
}

namespace {

// A tiny tokenizer that needs no data: byte symbols plus "cat</w>" (vocab 516, BOS 514, EOS 515).
std::shared_ptr<sdn::ClipTokenizer> tiny_tokenizer() {
  static auto t = sdn::ClipTokenizer::from_merges("#version: 0.2\nc a\nca t</w>\n");
  return t;
}
constexpr int kCat = 513;    // "cat</w>" = 512 + rank 1
constexpr int kComma = 267;  // ",</w>" = 256 + id(',') where ',' is byte 0x2C -> id 11

}  // namespace

TEST(text, facts_examples) {
  auto tok = clip_tokenizer();
  if (!tok) return;
  EXPECT_EQ(ids_str(tok->encode("a photo of a cat")), "[320,1125,539,320,2368]");
  EXPECT_EQ(ids_str(tok->encode("masterpiece, best quality, 1girl")), "[12066,267,949,3027,267,272,1611]");
  EXPECT_EQ(ids_str(tok->encode("hello world")), "[3306,1002]");
  EXPECT_EQ(ids_str(tok->encode("the")), "[518]");
  EXPECT_EQ(ids_str(tok->encode("!")), "[256]");
  EXPECT_EQ(ids_str(tok->encode("(")), "[263]");
  EXPECT_EQ(ids_str(tok->encode("123")), "[272,273,274]");
  EXPECT_EQ(ids_str(tok->encode("")), "[]");
  EXPECT_EQ(ids_str(tok->encode(" \t\n ")), "[]");
  EXPECT_EQ(ids_str(tok->encode("<|startoftext|>cat<|endoftext|>")), "[49406,2368,49407]");
  // repeated calls hit the word cache and give the same ids
  EXPECT_EQ(ids_str(tok->encode("a photo of a cat")), "[320,1125,539,320,2368]");
}

TEST(text, normalisation) {
  auto tok = tiny_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 516);
  EXPECT_EQ(tok->bos(), 514);
  EXPECT_EQ(tok->eos(), 515);
  auto same = [&](const std::string& a, const std::string& b) {
    std::string x = ids_str(tok->encode(a)), y = ids_str(tok->encode(b));
    if (x != y) SDN_FAIL("'" << a << "' -> " << x << " but '" << b << "' -> " << y);
  };
  EXPECT_EQ(ids_str(tok->encode("cat")), "[513]");
  EXPECT_EQ(ids_str(tok->encode("CAT")), "[513]");
  EXPECT_EQ(ids_str(tok->encode("a")), "[320]");     // 'a' = id 64, + 256 for </w>
  EXPECT_EQ(ids_str(tok->encode("ab")), "[64,321]");  // no merges: bytes, last with </w>
  same("ÅNGSTRÖM Ça ÑANDÚ", "ångström ça ñandú");
  same("ΑΒΓΔ ΣΟΦΙΑ", "αβγδ σοφια");
  same("ПРИВЕТ МИР Ё", "привет мир ё");
  same("ĀĂĄĆ ŁŃŒ", "āăąć łńœ");
  same("İ", "i\xcc\x87");  // U+0130 lower-cases to i + U+0307
  same("  a \t\n  cat\u3000 ", "a cat");
  same("a&amp;b", "a&b");
  same("&lt;x&gt;", "<x>");
  same("&amp;amp;", "&");  // unescaped twice
  same("&#65;&#x42;", "ab");
  same("&eacute;t&eacute;", "été");
  same("&notit;", "¬it;");  // longest legacy prefix
  same("&#128;", "€");      // Windows-1252 reading of C1 references
  same("&#0;", "\xef\xbf\xbd");
  same("&#xD800;", "\xef\xbf\xbd");
  same("&#99999999999999999999;", "\xef\xbf\xbd");
  same("&unknownentity;", "&unknownentity;");
  same("&nbsp;cat", "cat");  // NBSP is whitespace
  // Python's str.lower() final-sigma rule: U+03A3 after a cased letter and not before one becomes U+03C2
  same("ΟΔΟΣ", "οδο\xcf\x82");
  same("ΟΔΟΣ.", "οδο\xcf\x82.");    // '.' is case-ignorable
  same("ΟΔΟΣΑ", "οδο\xcf\x83α");
  same("Σ", "\xcf\x83");                    // nothing cased before it
  same("ΑΣ'Β", "α\xcf\x83'β");                // a cased letter follows after the ignorable apostrophe
  // the contraction alternatives are case-insensitive: "'ſ" (long s) is one word like "'s"
  EXPECT_EQ(tok->encode("'\xc5\xbf")[0], 6);  // "'" without </w>: merged into the word
  EXPECT_EQ(tok->encode("' \xc5\xbf")[0], 262);
  // pre-tokenisation: letters run, digits single, symbol runs, contractions
  EXPECT_EQ(tok->encode("ab12").size(), (size_t)4);           // "a" "b</w>" | "1</w>" | "2</w>"
  EXPECT_EQ(ids_str(tok->encode("it's")), ids_str(tok->encode("it 's")));
  EXPECT_EQ(ids_str(tok->encode("猫")), "[163,234,360]");       // one CJK letter = 3 bytes
  EXPECT_EQ(tok->encode("🦊🦊").size(), (size_t)8);             // a symbol run of 8 bytes
  EXPECT_EQ(tok->encode("x🦊y").size(), (size_t)6);             // letter | symbols | letter
  // invalid UTF-8 does not crash
  EXPECT_TRUE(!tok->encode(std::string("\xff\xfe\xc3", 3)).empty());
}

TEST(text, unicode_classes) {
  using namespace sdn::uni;
  for (uint32_t c : {0x61u, 0x5Au, 0xE9u, 0x3A9u, 0x416u, 0x732Bu, 0x3053u, 0x30ABu, 0xAC00u, 0x5D0u, 0x627u, 0x20000u, 0x30000u})
    if (!is_letter(c)) SDN_FAIL("U+" << std::hex << c << " should be a letter");
  for (uint32_t c : {0x30u, 0x39u, 0xB2u, 0xBDu, 0x663u, 0x2167u, 0xFF11u})
    if (!is_number(c) || is_letter(c)) SDN_FAIL("U+" << std::hex << c << " should be a number");
  for (uint32_t c : {0x1F98Au, 0x2764u, 0x21u, 0x2Cu, 0x301u, 0x3000u, 0x20u, 0xA0u})
    if (is_letter(c) || is_number(c)) SDN_FAIL("U+" << std::hex << c << " should be neither");
  EXPECT_TRUE(is_space(0x3000) && is_space(0xA0) && is_space(0x1F) && is_space(0x2028) && !is_space(0x200B));
  EXPECT_EQ(lower_simple('A'), (uint32_t)'a');
  EXPECT_EQ(lower_simple(0xC5), 0xE5u);
  EXPECT_EQ(lower_simple(0xD7), 0xD7u);  // multiplication sign
  EXPECT_EQ(lower_simple(0x100), 0x101u);
  EXPECT_EQ(lower_simple(0x101), 0x101u);
  EXPECT_EQ(lower_simple(0x3A3), 0x3C3u);
  EXPECT_EQ(lower_simple(0x401), 0x451u);
  EXPECT_EQ(lower_simple(0x10400), 0x10428u);  // Deseret
  EXPECT_EQ(lower_simple(0x1E900), 0x1E922u);  // Adlam
  EXPECT_EQ(lower_simple(0x212A), (uint32_t)'k');  // Kelvin sign
  EXPECT_EQ(lower_simple(0x732B), 0x732Bu);
  std::string s = "aé€🦊";
  EXPECT_EQ(encode_utf8(decode_utf8(s)), s);
}

TEST(text, merges_validation) {
  using sdn::ErrorCode;
  auto bad = [](const std::string& text) {
    EXPECT_THROWS_CODE(sdn::ClipTokenizer::from_merges(text), ErrorCode::InvalidFile);
  };
  bad("");
  bad("#version: 0.2\n");
  bad("hello world\n");                 // symbols that are not byte symbols or earlier merges
  bad("c a\nca\n");                     // not a pair
  bad("c a\nc  a\n");                   // two spaces
  bad("c a b\n");
  bad(std::string("\x00\x01 \x02\n", 5));  // raw control bytes are not byte symbols
  bad("c a\n\nc a\n");                  // text after an empty line
  bad("c a\nc a\n");                    // repeated merge result
  bad(std::string(70 << 20, 'a'));       // too large
  // with or without the #version line, and with CRLF line ends
  auto a = sdn::ClipTokenizer::from_merges("c a\nca t</w>");
  auto b = sdn::ClipTokenizer::from_merges("#version: 0.2\r\nc a\r\nca t</w>\r\n\r\n");
  EXPECT_EQ(ids_str(a->encode("cat cat")), "[513,513]");
  EXPECT_EQ(ids_str(b->encode("cat cat")), "[513,513]");
}

// Expected strings below were also checked against a Python port of A1111's parse_prompt_attention (its regexes
// re_attention / re_break and loop), and the chunk layouts against a port of sd_hijack_clip's tokenize_line.
TEST(text, parse_prompt_attention) {
  auto str = [](const std::vector<sdn::PromptSegment>& v) {
    std::ostringstream o;
    o.precision(6);
    for (auto& s : v) o << "[" << s.text << "|" << s.weight << "]";
    return o.str();
  };
  auto check = [&](const std::string& prompt, const std::string& want) {
    std::string got = str(sdn::parse_prompt_attention(prompt));
    if (got != want) SDN_FAIL("prompt '" << prompt << "': got " << got << " want " << want);
  };
  // A1111's documented examples (prompt_parser.py docstring, also ENGINE-FACTS 5.6)
  check("normal text", "[normal text|1]");
  check("an (important) word", "[an |1][important|1.1][ word|1]");
  check("(unbalanced", "[unbalanced|1.1]");
  check("\\(literal\\]", "[(literal]|1]");
  check("(unnecessary)(parens)", "[unnecessaryparens|1.1]");
  check("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        "[a |1][house|1.573][ |1.1][on|1][ a |1.1][hill|0.55][, sun, |1.1][sky|1.4641][.|1.1]");
  check("", "[|1]");
  check("((x))", "[x|1.21]");
  check("(x:1.5)", "[x|1.5]");
  check("[x]", "[x|0.909091]");
  check("[[x]]", "[x|0.826446]");
  check("(x: 0.7 )", "[x|0.7]");
  check("(x:-1)", "[x|-1]");
  check("a \\\\ b", "[a \\ b|1]");
  check("a\\b", "[ab|1]");      // a lone backslash is dropped (A1111 appends text[1:] = "")
  check("x:1.2) y", "[x:1.2) y|1]");  // weight without '(' is text
  check("a:b", "[a:b|1]");
  check("(a:1.2.3)", "[a:1.2.3)|1.1]");  // deviation: A1111 raises; we keep it as text in the open bracket
  check("a BREAK b", "[a|1][BREAK|-1][b|1]");
  check("a  BREAK  BREAK b", "[a|1][BREAK|-1][|1][BREAK|-1][b|1]");
  check("aBREAK b", "[aBREAK b|1]");
  check("a break b", "[a break b|1]");
  check("(a BREAK b)", "[a|1.1][BREAK|-1.1][b|1.1]");  // A1111 quirk: the marker is multiplied too
  check("BREAK", "[|1][BREAK|-1][|1]");
}

TEST(text, tokenize_prompt_chunks) {
  auto tok = tiny_tokenizer();
  const int B = tok->bos(), E = tok->eos();
  auto repeat = [](const std::string& w, int n, const std::string& sep = " ") {
    std::string s;
    for (int i = 0; i < n; i++) s += (i ? sep : "") + w;
    return s;
  };
  auto expect_chunk = [&](const sdn::TokenizedPrompt& tp, int c, const std::vector<int>& body) {
    const int* ids = tp.ids.data() + 77 * c;
    EXPECT_EQ(ids[0], B);
    EXPECT_EQ(ids[76], E);
    for (int i = 0; i < 75; i++) {
      int want = i < (int)body.size() ? body[i] : E;
      if (ids[1 + i] != want) SDN_FAIL("chunk " << c << " token " << i << ": " << ids[1 + i] << " want " << want);
    }
  };
  // empty prompt: one chunk BOS, EOS x 76
  auto e = sdn::tokenize_prompt(*tok, "");
  EXPECT_EQ(e.chunks, 1);
  EXPECT_EQ(e.ids.size(), (size_t)77);
  expect_chunk(e, 0, {});
  for (float w : e.weights) EXPECT_EQ(w, 1.0f);
  // exactly 75 tokens: one chunk; 76: two
  EXPECT_EQ(sdn::tokenize_prompt(*tok, repeat("cat", 75)).chunks, 1);
  auto t80 = sdn::tokenize_prompt(*tok, repeat("cat", 80));
  EXPECT_EQ(t80.chunks, 2);
  EXPECT_EQ(t80.ids.size(), (size_t)154);
  expect_chunk(t80, 0, std::vector<int>(75, kCat));
  expect_chunk(t80, 1, std::vector<int>(5, kCat));
  // comma backtrack: 70 cats, a comma, 10 cats -> the 4 cats after the comma move to chunk 2
  auto bt = sdn::tokenize_prompt(*tok, repeat("cat", 70) + ", " + repeat("cat", 10));
  EXPECT_EQ(bt.chunks, 2);
  std::vector<int> first(70, kCat);
  first.push_back(kComma);
  expect_chunk(bt, 0, first);
  expect_chunk(bt, 1, std::vector<int>(10, kCat));
  // comma 25 tokens before the boundary (> 20): plain split
  auto far = sdn::tokenize_prompt(*tok, repeat("cat", 50) + ", " + repeat("cat", 30));
  std::vector<int> f0(50, kCat);
  f0.push_back(kComma);
  f0.insert(f0.end(), 24, kCat);
  expect_chunk(far, 0, f0);
  expect_chunk(far, 1, std::vector<int>(6, kCat));
  // comma exactly at 20 tokens from the end of the chunk (index 55): still backtracks
  auto edge = sdn::tokenize_prompt(*tok, repeat("cat", 55) + ", " + repeat("cat", 25));
  std::vector<int> g0(55, kCat);
  g0.push_back(kComma);
  expect_chunk(edge, 0, g0);
  expect_chunk(edge, 1, std::vector<int>(25, kCat));
  // the 76th token is itself a comma: no backtrack, the comma starts chunk 2
  auto cm = sdn::tokenize_prompt(*tok, repeat("cat", 75) + ", cat");
  expect_chunk(cm, 0, std::vector<int>(75, kCat));
  expect_chunk(cm, 1, {kComma, kCat});
  // BREAK closes a chunk; weights follow their segments
  auto br = sdn::tokenize_prompt(*tok, "(cat:1.5) BREAK [cat] cat");
  EXPECT_EQ(br.chunks, 2);
  expect_chunk(br, 0, {kCat});
  expect_chunk(br, 1, {kCat, kCat});
  EXPECT_NEAR(br.weights[1], 1.5, 1e-6);
  EXPECT_NEAR(br.weights[77 + 1], 1 / 1.1, 1e-6);
  EXPECT_NEAR(br.weights[77 + 2], 1.0, 0);
  EXPECT_EQ(br.weights[0], 1.0f);
  EXPECT_EQ(br.weights[2], 1.0f);
  // BREAK at the very start gives an empty first chunk, trailing BREAK no extra chunk
  EXPECT_EQ(sdn::tokenize_prompt(*tok, "BREAK cat").chunks, 2);
  EXPECT_EQ(sdn::tokenize_prompt(*tok, "cat BREAK").chunks, 1);
  // segments tokenise separately: "c(a)t" is c | a | t, not "cat"
  auto sep = sdn::tokenize_prompt(*tok, "c(a)t");
  // 'c' 'a' 't' are bytes 0x63 0x61 0x74 -> ids 66 64 83 (byte - 0x21), each + 256 for </w>
  EXPECT_EQ(sep.ids[1], 322);
  EXPECT_EQ(sep.ids[2], 320);
  EXPECT_EQ(sep.ids[3], 339);
  EXPECT_EQ(sep.ids[4], E);
}

TEST(text, tokenize_prompt_real_vocab) {
  auto tok = clip_tokenizer();
  if (!tok) return;
  // golden case v3's prompt
  auto tp = sdn::tokenize_prompt(*tok, "(red:1.3) fox, [snow], forest");
  EXPECT_EQ(tp.chunks, 1);
  std::vector<int> want = {49406, 736, 3240, 267, 2583, 267, 4167, 49407};
  for (size_t i = 0; i < want.size(); i++) EXPECT_EQ(tp.ids[i], want[i]);
  for (int i = (int)want.size(); i < 77; i++) EXPECT_EQ(tp.ids[i], 49407);
  EXPECT_NEAR(tp.weights[1], 1.3, 1e-6);
  EXPECT_NEAR(tp.weights[2], 1.0, 0);
  EXPECT_NEAR(tp.weights[4], 1 / 1.1, 1e-6);
  EXPECT_NEAR(tp.weights[5], 1.0, 0);
}

TEST(text, apply_emphasis) {
  for (int tokens : {1, 3, 77}) {
    for (int dim : {1, 5, 768}) {
      auto h = sdntest::random_vector((size_t)tokens * dim, tokens * 31 + dim, -1.f, 2.f);
      auto w = sdntest::random_vector(tokens, dim + 7, 0.5f, 1.5f);
      std::vector<double> ref(h.size());
      double m0 = 0, m1 = 0;
      for (size_t k = 0; k < h.size(); k++) m0 += h[k];
      m0 /= h.size();
      for (int t = 0; t < tokens; t++)
        for (int d = 0; d < dim; d++) ref[(size_t)t * dim + d] = (double)h[(size_t)t * dim + d] * w[t], m1 += ref[(size_t)t * dim + d];
      m1 /= h.size();
      for (auto& v : ref) v *= m0 / m1;
      auto got = h;
      sdn::apply_emphasis(got.data(), tokens, dim, w.data());
      EXPECT_CLOSE(got.data(), ref.data(), got.size(), 1e-5, 1e-5);
      double mg = 0;
      for (float v : got) mg += v;
      EXPECT_NEAR(mg / got.size(), m0, 1e-5);
    }
  }
  // all weights 1: unchanged; zero mean after weighting: no NaN
  std::vector<float> h = {1, 2, 3, 4}, ones = {1, 1};
  sdn::apply_emphasis(h.data(), 2, 2, ones.data());
  EXPECT_NEAR(h[3], 4, 1e-6);
  std::vector<float> z = {1, -1, 2, -2}, w2 = {2, 3};
  sdn::apply_emphasis(z.data(), 2, 2, w2.data());
  for (float v : z) EXPECT_TRUE(std::isfinite(v));
}

TEST(text, hostile_input_does_not_crash) {
  auto tok = tiny_tokenizer();
  std::mt19937 gen(99);
  const char alphabet[] = "()[]:\\ ,.BREAK&#;x1\t\n";
  for (int iter = 0; iter < 300; iter++) {
    std::string s;
    int len = (int)(gen() % 200);
    for (int i = 0; i < len; i++) {
      if (gen() % 3 == 0)
        s.push_back((char)(gen() & 0xFF));  // arbitrary bytes, often invalid UTF-8
      else
        s.push_back(alphabet[gen() % (sizeof(alphabet) - 1)]);
    }
    tok->encode(s);
    sdn::parse_prompt_attention(s);
    auto tp = sdn::tokenize_prompt(*tok, s);
    EXPECT_EQ(tp.ids.size(), (size_t)tp.chunks * 77);
    EXPECT_EQ(tp.weights.size(), tp.ids.size());
  }
  // deep nesting and long prompts
  std::string deep(100000, '(');
  deep += "cat";
  auto v = sdn::parse_prompt_attention(deep);
  EXPECT_EQ(v.size(), (size_t)1);
  EXPECT_TRUE(std::isinf(v[0].weight) || v[0].weight > 1e30f);
  EXPECT_THROWS_CODE(sdn::tokenize_prompt(*tok, std::string(2 << 20, 'a')), sdn::ErrorCode::InvalidArgument);
  std::string quad;
  for (int i = 0; i < 300000; i++) quad += "(a";
  EXPECT_THROWS_CODE(sdn::parse_prompt_attention(quad), sdn::ErrorCode::InvalidArgument);
  std::string many;
  for (int i = 0; i < 100000; i++) many += "a\\";  // 200k segments merged into one
  EXPECT_EQ(sdn::parse_prompt_attention(many).size(), (size_t)1);
}

TEST(text, long_words_heap_bpe) {
  // Words over 64 bytes take the O(n log n) heap merge path; expected ids from an independent Python port of
  // OpenAI's bpe() loop with the same merges.
  auto tok = clip_tokenizer();
  if (!tok) return;
  std::string s3;
  for (int i = 0; i < 3; i++) s3 += "supercalifragilisticexpialidocious";
  std::vector<int> w1 = {1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 698, 1987, 1642, 2857, 13093, 2076, 5868,
                         26850, 835, 639, 698, 1987, 1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 38466};
  EXPECT_EQ(ids_str(tok->encode(s3)), ids_str(w1));
  std::vector<int> w2(18, 23126);
  w2.push_back(44413);
  EXPECT_EQ(ids_str(tok->encode(std::string(150, 'a'))), ids_str(w2));
  std::string ab;
  for (int i = 0; i < 70; i++) ab += "ab";
  std::vector<int> w3(70, 596);
  w3.push_back(20023);
  w3.push_back(345);
  EXPECT_EQ(ids_str(tok->encode(ab + "xyz")), ids_str(w3));
  std::string ban;
  for (int i = 0; i < 20; i++) ban += "banana";
  std::vector<int> w4 = {1159};
  for (int i = 0; i < 19; i++) w4.push_back(34742), w4.push_back(514);
  w4.push_back(1388);
  EXPECT_EQ(ids_str(tok->encode(ban)), ids_str(w4));
  // a 1 MB word finishes quickly
  EXPECT_TRUE(!tok->encode(std::string(1 << 20, 'q')).empty());
}

TEST(text, concurrent_encode) {
  // one tokenizer shared by several threads (its word cache is locked): same ids as serial calls
  auto tok = sdn::ClipTokenizer::from_merges("#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n");
  std::vector<std::string> texts;
  for (int i = 0; i < 200; i++) texts.push_back("cat dog w" + std::to_string(i) + " cadog x" + std::to_string(i * 7));
  std::vector<std::string> serial;
  for (auto& t : texts) serial.push_back(ids_str(tok->encode(t)));
  auto fresh = sdn::ClipTokenizer::from_merges("#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n");
  std::vector<std::string> got[3];
  std::vector<std::thread> th;
  for (int k = 0; k < 3; k++)
    th.emplace_back([&, k] {
      for (int rep = 0; rep < 5; rep++)
        for (size_t i = 0; i < texts.size(); i++) {
          std::string r = ids_str(fresh->encode(texts[(i * (k + 1)) % texts.size()]));
          if (rep == 0) got[k].push_back(r);
        }
    });
  for (auto& t : th) t.join();
  for (int k = 0; k < 3; k++)
    for (size_t i = 0; i < texts.size(); i++) EXPECT_EQ(got[k][i], serial[(i * (k + 1)) % texts.size()]);
}
