#include "file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

namespace arctic_suffix {

namespace {

std::string os_error() { return std::strerror(errno); }

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symlink";
  return "not a regular file";
}

// Refused before any system call: a NUL would silently cut the path short in the C API.
void check_path(const std::string& path, const char* verb) {
  if (path.empty()) {
    throw PathError(std::string("cannot ") + verb + " an empty path; pass a file path");
  }
  if (path.find('\0') != std::string::npos) {
    throw PathError(std::string("cannot ") + verb + " " + quoted(path) +
                    ": the path contains a NUL character");
  }
}

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Follows symlinks by hand (lstat + readlink), so that a link naming a file not created
// yet resolves too: the first save through a prepared link creates the file it names.
std::string resolve_for_write(const std::string& path) {
  std::string p = path;
  for (int hops = 0; hops <= 40; ++hops) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) return p;  // a new file; a missing directory fails at create
      throw PathError("cannot save to " + quoted(path) + ": " + os_error());
    }
    if (S_ISREG(st.st_mode)) return p;
    const std::string via = p == path ? "" : " (a symlink to " + quoted(p) + ")";
    if (!S_ISLNK(st.st_mode)) {
      throw PathError("cannot save to " + quoted(path) + via + ": it is " + kind_of(st.st_mode) +
                      ", not a regular file; save writes regular files only: pass a file "
                      "path (or remove what is there)");
    }
    std::vector<char> buf(static_cast<size_t>(st.st_size > 0 ? st.st_size : 255) + 1);
    ssize_t n;
    while ((n = ::readlink(p.c_str(), buf.data(), buf.size())) >= 0 &&
           static_cast<size_t>(n) == buf.size()) {
      buf.resize(2 * buf.size());  // the link grew since the lstat
    }
    if (n < 0) throw PathError("cannot save to " + quoted(path) + ": " + os_error());
    std::string link(buf.data(), static_cast<size_t>(n));
    p = link.empty() || link[0] == '/' ? link : dir_of(p) + "/" + link;
  }
  throw PathError("cannot save to " + quoted(path) + ": too many levels of symlinks");
}

}  // namespace

std::string quoted(const std::string& path) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "'";
}

FileReader::FileReader(const std::string& path) : path_(path) {
  check_path(path, "load");
  struct stat before;
  if (::stat(path.c_str(), &before) != 0) {
    throw PathError("cannot open cache file " + quoted(path) + ": " + os_error());
  }
  auto refuse = [&](mode_t mode) {
    throw PathError("cannot load " + quoted(path) + ": it is " + kind_of(mode) +
                    ", not a regular file; pass the path of a file written by save()");
  };
  if (!S_ISREG(before.st_mode)) refuse(before.st_mode);
  // O_NONBLOCK: should the path have become a FIFO since the stat, open must not wait for
  // a writer; it has no effect on a regular file.
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd_ < 0) throw PathError("cannot open cache file " + quoted(path) + ": " + os_error());
  struct stat now;
  if (::fstat(fd_, &now) != 0) {
    std::string err = os_error();
    ::close(fd_);
    throw PathError("cannot stat cache file " + quoted(path) + ": " + err);
  }
  if (!S_ISREG(now.st_mode) || now.st_dev != before.st_dev || now.st_ino != before.st_ino) {
    ::close(fd_);
    fd_ = -1;
    if (!S_ISREG(now.st_mode)) refuse(now.st_mode);
    throw PathError("cannot load " + quoted(path) + ": it was replaced while being opened");
  }
  size_ = static_cast<uint64_t>(now.st_size);
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
}

size_t FileReader::read(char* dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd_, dst + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw PathError("cannot read cache file " + quoted(path_) + ": " + os_error());
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  check_path(path, "save to");
  const std::string base = base_of(path);
  if (base.empty() || base == "." || base == "..") {
    throw PathError("cannot save to " + quoted(path) + ": it names a directory; pass a file path");
  }
  target_ = resolve_for_write(path);
  struct stat st;
  const bool exists = ::stat(target_.c_str(), &st) == 0;
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; fd_ < 0; ++attempt) {
    // Beside the target: the same file system, so the rename is atomic.
    tmp_ = target_ + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd_ < 0 && (errno != EEXIST || attempt >= 100)) {
      throw PathError("cannot save to " + quoted(path) + ": cannot create a temporary file in " +
                      quoted(dir_of(target_)) + ": " + os_error());
    }
  }
  // Best effort: keep the replaced file's permissions (umask applies to a new file).
  if (exists) (void)::fchmod(fd_, st.st_mode & 07777);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::commit(const std::string& bytes) {
  auto fail = [&](const std::string& what) {
    throw PathError("cannot save to " + quoted(path_) + ": " + what);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail("cannot write " + quoted(tmp_) + ": " + os_error());
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd_) != 0) fail("cannot flush " + quoted(tmp_) + ": " + os_error());
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("cannot write " + quoted(tmp_) + ": " + os_error());
  // Something other than a regular file put at the target since the constructor looked
  // is refused, not replaced.
  struct stat st;
  if (::lstat(target_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    fail(quoted(target_) + " became " + kind_of(st.st_mode) + " while saving; nothing was written");
  }
  if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
    fail("cannot rename " + quoted(tmp_) + " to " + quoted(target_) + ": " + os_error());
  }
  committed_ = true;
  // Make the rename itself durable; a file system that cannot fsync a directory still
  // holds the complete file under one of the two names.
  int dir = ::open(dir_of(target_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

}  // namespace arctic_suffix
