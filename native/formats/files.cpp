#include "formats/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sdn/error.h"

namespace sdn {

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string read_small_file(const std::string& path, size_t limit) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw_error(ErrorCode::NotFound, path + ": file not found");
    throw_error(ErrorCode::Io, path + ": cannot read (" + std::strerror(errno) + ")");
  }
  if (!S_ISREG(st.st_mode)) throw_error(ErrorCode::InvalidFile, path + ": not a regular file");
  if ((uint64_t)st.st_size > limit)
    throw_error(ErrorCode::InvalidFile, path + ": file too large (" + std::to_string((long long)st.st_size) +
                                            " bytes, limit " + std::to_string(limit) + ")");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error(ErrorCode::Io, path + ": cannot open (" + std::strerror(errno) + ")");
  std::string s((size_t)st.st_size, '\0');
  size_t got = 0;
  while (got < s.size()) {
    ssize_t r = ::read(fd, &s[got], s.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  ::close(fd);
  s.resize(got);
  return s;
}

std::string read_merges_file(const std::string& path, const std::string& what) {
  if (!is_file(path)) {
    if (is_dir(path)) throw_error(ErrorCode::InvalidArgument, what + " " + path + " is a folder, not a merges file");
    throw_error(ErrorCode::NotFound, what + " " + path + " does not exist");
  }
  std::string s = read_small_file(path, 64u << 20);
  if (s.size() >= 2 && (unsigned char)s[0] == 0x1f && (unsigned char)s[1] == 0x8b)
    throw_error(ErrorCode::InvalidFile,
                what + " " + path + " is gzip-compressed: decompress it first (gunzip), or run "
                "`sdnode get-tokenizer --url " + path + "`, which checks it and stores it in the per-user cache");
  return s;
}

}  // namespace sdn
