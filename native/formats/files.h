// Small file-system helpers shared by the readers, the converter and the pipeline (POSIX).
#pragma once
#include <cstddef>
#include <string>

namespace sdn {

bool is_file(const std::string& path);  // an existing regular file
bool is_dir(const std::string& path);   // an existing directory

// Whole file as bytes, refusing files over `limit` bytes. NotFound / InvalidFile (not a regular file, too large) /
// Io, each naming the path.
std::string read_small_file(const std::string& path, size_t limit);

// A CLIP BPE merges file (merges.txt, at most 64 MiB). A gzip-compressed file is refused with a message saying how
// to use it (the engine does not link zlib). `what` names the source in messages, e.g. "tokenizer_path".
std::string read_merges_file(const std::string& path, const std::string& what);

}  // namespace sdn
