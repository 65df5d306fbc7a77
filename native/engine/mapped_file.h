#pragma once
// A whole file mapped read-only (mmap, MAP_PRIVATE) for as long as the object
// lives. A 0-byte file is allowed and maps nothing (data() is nullptr).
// Like any mapping, reading a file that another process truncates meanwhile
// raises SIGBUS; weights are expected to stay put while a model is loaded.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace st {

// "<path>: cannot open: <strerror>", "<path>: cannot map: ...", "<path>: is a
// directory", ... Readers of a format rethrow it as their own error type.
class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws FileError
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // Paging hints for a reader that streams through the file once, so a large
  // file is read ahead of use and its pages do not stay in the process's
  // resident set after use. Hints only: failures are ignored, and the bytes
  // stay readable (a released page is read again from the file if touched).
  void advise_sequential() const;
  // Starts reading [offset, offset + length) into the page cache.
  void prefetch(size_t offset, size_t length) const;
  // Drops the whole pages inside [offset, offset + length) from this
  // mapping's resident set; they stay in the page cache.
  void release_pages(size_t offset, size_t length) const;

 private:
  void release() noexcept;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace st
