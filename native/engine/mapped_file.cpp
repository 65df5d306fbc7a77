// POSIX mapping: open, fstat, mmap, close the descriptor (the mapping keeps
// the file alive).
#include "engine/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace st {

namespace {

struct Descriptor {
  int fd;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void fail(const std::string& path, const char* what, int error) {
  throw FileError(path + ": " + what + ": " + std::strerror(error));
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail(path, "cannot open", errno);
  const Descriptor descriptor{fd};
  struct stat info;
  if (::fstat(fd, &info) != 0) fail(path, "cannot stat", errno);
  if (S_ISDIR(info.st_mode)) throw FileError(path + ": is a directory, not a file");
  if (!S_ISREG(info.st_mode)) throw FileError(path + ": not a regular file");
  if (info.st_size < 0 || static_cast<unsigned long long>(info.st_size) > SIZE_MAX)
    throw FileError(path + ": too large to map");
  size_ = static_cast<size_t>(info.st_size);
  if (size_ == 0) return;
  void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (address == MAP_FAILED) fail(path, "cannot map", errno);
  data_ = static_cast<const uint8_t*>(address);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

namespace {

size_t page_size() {
  static const size_t size = size_t(::sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace

void MappedFile::advise_sequential() const {
  if (data_ != nullptr) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_SEQUENTIAL);
}

void MappedFile::prefetch(size_t offset, size_t length) const {
  if (data_ == nullptr || offset >= size_) return;
  length = std::min(length, size_ - offset);
  // madvise wants a page-aligned start; widen down to the page.
  const size_t begin = offset - offset % page_size();
  if (length > 0) ::madvise(const_cast<uint8_t*>(data_) + begin, offset + length - begin, MADV_WILLNEED);
}

void MappedFile::release_pages(size_t offset, size_t length) const {
  if (data_ == nullptr || offset >= size_) return;
  const size_t end = std::min(size_, offset + std::min(length, size_ - offset));
  // Only pages wholly inside the span: a page shared with a neighbour may
  // still be wanted. The file's last partial page counts as whole.
  const size_t page = page_size();
  const size_t begin = (offset + page - 1) / page * page;
  const size_t stop = end == size_ ? end : end / page * page;
  if (stop > begin) ::madvise(const_cast<uint8_t*>(data_) + begin, stop - begin, MADV_DONTNEED);
}

void MappedFile::release() noexcept {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace st
