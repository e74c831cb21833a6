// Tests for the CLIP tokenizer (native/text): golden token ids, Unicode/HTML normalisation, merges-file
// validation, A1111 prompt parsing, 75-token chunking, and emphasis mean restoration.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "sdn/error.h"
#include "test.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace {

// ../shared next to the repository (or $SDN_SHARED_DIR). Empty when absent.
std::string shared_dir() {
  if (const char* env = std::getenv("SDN_SHARED_DIR")) return env;
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
