// sdn_tokenize MERGES_FILE [--prompt]: reads one text per line on stdin and prints its CLIP token ids as
// "[id,id,...]" (encode), or with --prompt the A1111 chunks as "chunks|id:weight ..." (tokenize_prompt).
// MERGES_FILE is an uncompressed CLIP merges file (e.g. `gzip -dc clip-bpe-merges.txt.gz > merges.txt`).
// For debugging and differential tests against other tokenizers.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "sdn/error.h"
#include "text/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && std::strcmp(argv[2], "--prompt") != 0)) {
    std::fprintf(stderr, "usage: sdn_tokenize MERGES_FILE [--prompt] < lines\n");
    return 2;
  }
  try {
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) throw sdn::Error(sdn::ErrorCode::NotFound, std::string("cannot open ") + argv[1]);
    std::stringstream ss;
    ss << in.rdbuf();
    auto tok = sdn::ClipTokenizer::from_merges(ss.str());
    const bool prompt = argc == 3;
    std::string line;
    while (std::getline(std::cin, line)) {
      std::ostringstream o;
      if (prompt) {
        auto tp = sdn::tokenize_prompt(*tok, line);
        o << tp.chunks << "|";
        for (size_t i = 0; i < tp.ids.size(); i++) o << (i ? " " : "") << tp.ids[i] << ":" << tp.weights[i];
      } else {
        auto ids = tok->encode(line);
        o << "[";
        for (size_t i = 0; i < ids.size(); i++) o << (i ? "," : "") << ids[i];
        o << "]";
      }
      std::cout << o.str() << "\n";
    }
  } catch (const sdn::Error& e) {
    std::fprintf(stderr, "sdn_tokenize: %s: %s\n", sdn::error_code_name(e.code()), e.what());
    return 1;
  }
  return 0;
}
