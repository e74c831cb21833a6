#include "formats/mapped_file.h"

#include <cerrno>
#include <cstring>
#include <vector>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/files.h"
#include "sdn/error.h"

namespace sdn {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  struct stat st;
  int fd = open_regular_file(path, &st);  // refuses FIFOs, devices and folders without blocking
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = (size_t)st.st_size;
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw_error(e == ENOMEM ? ErrorCode::OutOfMemory : ErrorCode::Io,
                  path + ": cannot memory-map (" + std::strerror(e) + ")");
    }
    m->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

static bool page_range(size_t size, size_t offset, size_t len, size_t* begin, size_t* end) {
  if (offset >= size || len == 0) return false;
  if (len > size - offset) len = size - offset;
  static const size_t page = (size_t)::sysconf(_SC_PAGESIZE);
  *begin = offset / page * page;
  *end = (offset + len + page - 1) / page * page;
  return true;
}

void MappedFile::release(size_t offset, size_t len) const {
  size_t b, e;
  if (!data_ || !page_range(size_, offset, len, &b, &e)) return;
  ::madvise(const_cast<uint8_t*>(data_) + b, e - b, MADV_DONTNEED);
}

bool MappedFile::resident(size_t offset, size_t len) const {
  size_t b, e;
  if (!data_ || !page_range(size_, offset, len, &b, &e)) return true;
  static const size_t page = (size_t)::sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> v((e - b) / page);
  if (::mincore(const_cast<uint8_t*>(data_) + b, e - b, v.data()) != 0) return false;
  for (unsigned char c : v)
    if (!(c & 1)) return false;
  return true;
}

void MappedFile::prefetch(size_t offset, size_t len) const {
  size_t b, e;
  if (!data_ || !page_range(size_, offset, len, &b, &e)) return;
  ::madvise(const_cast<uint8_t*>(data_) + b, e - b, MADV_WILLNEED);
}

}  // namespace sdn
