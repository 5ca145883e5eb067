// File-system side of save() / load(): only regular files are read or replaced. A path
// naming a FIFO, a device or a directory is refused before anything is opened or written:
// reading /dev/zero never ended, a FIFO blocked until a writer came, and replacing by
// rename turned a FIFO, a device node or a symlink into a regular file.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace arctic_suffix {

// A path that cannot be used (empty, with a NUL, naming something other than a regular
// file, or refused by the OS). The bindings raise arctic_suffix.CachePathError (a ValueError).
class PathError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The path in quotes, control bytes escaped, for error messages.
std::string quoted(const std::string& path);

// A regular file opened for reading. stat() first, so that a device or a FIFO is never
// opened (opening one can block or have side effects); then open(O_NONBLOCK) and fstat(),
// refusing anything that is not the same regular file by then.
class FileReader {
 public:
  explicit FileReader(const std::string& path);  // throws PathError
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  uint64_t size() const { return size_; }  // st_size: the most a caller should read
  // Reads up to n bytes (fewer only at end of file); throws PathError on an I/O error.
  size_t read(char* dst, size_t n);

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Atomic replacement of a regular file: the bytes go to a new temporary file beside the
// target, are fsynced, and the temporary is renamed over the target, so a crash never
// leaves a half-written file. A symlink is followed (also a chain, or one naming a file
// not yet created) and the file at its end replaced; the link itself stays. The target's
// permission bits are kept. A target that is (or whose link names) a directory, FIFO,
// socket or device is refused, at construction and again just before the rename.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);  // throws PathError
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void commit(const std::string& bytes);  // throws PathError; the target is then untouched

 private:
  std::string path_;    // as given
  std::string target_;  // the file replaced (path_ with symlinks followed)
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace arctic_suffix
