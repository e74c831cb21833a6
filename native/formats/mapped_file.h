// Read-only memory map of a whole file (RAII). Tensors keep the map alive through shared_ptr ownership.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sdn {

class MappedFile {
 public:
  // Maps `path` read-only. NotFound if it does not exist, InvalidFile if it is not a regular file, Io otherwise.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Tells the OS the pages covering [offset, offset + len) are not needed now (MADV_DONTNEED: they are read
  // from the file again on the next access). Out-of-range parts are ignored.
  void release(size_t offset, size_t len) const;
  // Hints that the range will be read soon (MADV_WILLNEED: the kernel starts reading it into the page cache; no
  // page of this process's memory is mapped by it, so the resident set does not grow).
  void prefetch(size_t offset, size_t len) const;
  // True when every page of the range is in the page cache (mincore), i.e. touching it reads nothing from disk.
  bool resident(size_t offset, size_t len) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sdn
