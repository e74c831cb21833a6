// Small file-system helpers shared by the readers, the converter and the pipeline (POSIX).
#pragma once
#include <cstddef>
#include <string>

struct stat;

namespace sdn {

bool is_file(const std::string& path);  // an existing regular file
bool is_dir(const std::string& path);   // an existing directory

// What a path is, for messages: "a regular file", "a folder", "a named pipe (FIFO)", "a character device",
// "a block device", "a socket", "a special file", or "" when it does not exist (or cannot be examined).
std::string path_kind(const std::string& path);

// Opens an existing regular file for reading, never blocking on a special file: the path is examined first (a
// FIFO, device, socket or folder is refused without being opened), then opened with O_NONBLOCK and checked again
// on the descriptor (the path may have changed in between). Returns the descriptor (blocking mode restored) and
// fills *st. NotFound / InvalidFile ("<path> is a named pipe (FIFO), not a regular file") / Io, naming the path.
int open_regular_file(const std::string& path, struct stat* st);

// Whole file as bytes, refusing files over `limit` bytes. NotFound / InvalidFile (not a regular file, too large) /
// Io, each naming the path.
std::string read_small_file(const std::string& path, size_t limit);

// A CLIP BPE merges file (merges.txt, at most 64 MiB). A gzip-compressed file is refused with a message saying how
// to use it (the engine does not link zlib). `what` names the source in messages, e.g. "tokenizer_path".
std::string read_merges_file(const std::string& path, const std::string& what);

}  // namespace sdn
