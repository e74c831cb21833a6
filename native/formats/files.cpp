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

std::string path_kind(const std::string& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return "";
  if (S_ISREG(st.st_mode)) return "a regular file";
  if (S_ISDIR(st.st_mode)) return "a folder";
  if (S_ISFIFO(st.st_mode)) return "a named pipe (FIFO)";
  if (S_ISCHR(st.st_mode)) return "a character device";
  if (S_ISBLK(st.st_mode)) return "a block device";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  return "a special file";
}

static std::string kind_of_mode(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a named pipe (FIFO)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "a special file";
}

int open_regular_file(const std::string& path, struct stat* st) {
  if (::stat(path.c_str(), st) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) throw_error(ErrorCode::NotFound, path + ": file not found");
    throw_error(ErrorCode::Io, path + ": cannot read (" + std::strerror(e) + ")");
  }
  if (!S_ISREG(st->st_mode))
    throw_error(ErrorCode::InvalidFile, path + " is " + kind_of_mode(st->st_mode) + ", not a regular file");
  // O_NONBLOCK: if the path was swapped for a FIFO since stat(), open() still returns at once.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) throw_error(ErrorCode::NotFound, path + ": file not found");
    throw_error(ErrorCode::Io, path + ": cannot open (" + std::strerror(e) + ")");
  }
  if (::fstat(fd, st) != 0) {
    int e = errno;
    ::close(fd);
    throw_error(ErrorCode::Io, path + ": cannot stat (" + std::strerror(e) + ")");
  }
  if (!S_ISREG(st->st_mode)) {
    ::close(fd);
    throw_error(ErrorCode::InvalidFile, path + " is " + kind_of_mode(st->st_mode) + ", not a regular file");
  }
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

std::string read_small_file(const std::string& path, size_t limit) {
  struct stat st;
  int fd = open_regular_file(path, &st);
  if ((uint64_t)st.st_size > limit) {
    ::close(fd);
    throw_error(ErrorCode::InvalidFile, path + ": file too large (" + std::to_string((long long)st.st_size) +
                                            " bytes, limit " + std::to_string(limit) + ")");
  }
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
    const std::string kind = path_kind(path);
    if (kind.empty()) throw_error(ErrorCode::NotFound, what + " " + path + " does not exist");
    throw_error(ErrorCode::InvalidArgument, what + " " + path + " is " + kind + ", not a merges file");
  }
  std::string s = read_small_file(path, 64u << 20);
  if (s.size() >= 2 && (unsigned char)s[0] == 0x1f && (unsigned char)s[1] == 0x8b)
    throw_error(ErrorCode::InvalidFile,
                what + " " + path + " is gzip-compressed: decompress it first (gunzip), or run "
                "`sdnode get-tokenizer --url " + path + "`, which checks it and stores it in the per-user cache");
  return s;
}

}  // namespace sdn
