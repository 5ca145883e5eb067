#include "cache_file.h"

#include <algorithm>
#include <cstring>

#include "file_io.h"

namespace arctic_suffix {

namespace {

constexpr char kMagic[8] = {'A', 'R', 'C', 'S', 'U', 'F', 'X', '\n'};
constexpr size_t kHeaderBytes = sizeof(kMagic) + 4 + 4 + 8;  // magic version depth count
constexpr size_t kCrcBytes = 4;
constexpr size_t kMinEntryBytes = 4 + 4 + 8;  // empty key, empty namespace, no tokens

void put_u32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct Reader {
  const std::string& buf;
  size_t pos;
  size_t end;
  void need(size_t n, const char* what) {
    if (n > end - pos) {
      throw FormatError(std::string("cache file is truncated (while reading ") + what + ")");
    }
  }
  uint64_t u(int bytes, const char* what) {
    need(bytes, what);
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v |= static_cast<uint64_t>(static_cast<unsigned char>(buf[pos + i])) << (8 * i);
    }
    pos += bytes;
    return v;
  }
  std::string str(const char* what) {
    uint64_t n = u(4, what);
    need(n, what);
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
};

}  // namespace

uint32_t crc32(const unsigned char* data, size_t n) {
  static uint32_t table[256];
  static bool ready = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)ready;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// Layout (little endian): magic[8] version:u32 max_depth:u32 count:u64, then per entry
// key, namespace (u32 length + bytes) and tokens (u64 count + int32s), then crc32 of all
// preceding bytes.
std::string encode_entries(const std::vector<CachedEntry>& entries, int max_depth) {
  std::string out(kMagic, sizeof(kMagic));
  put_u32(&out, kFileVersion);
  put_u32(&out, static_cast<uint32_t>(max_depth));
  put_u64(&out, entries.size());
  for (const auto& e : entries) {
    put_u32(&out, static_cast<uint32_t>(e.key.size()));
    out += e.key;
    put_u32(&out, static_cast<uint32_t>(e.ns.size()));
    out += e.ns;
    put_u64(&out, e.tokens.size());
    for (Token t : e.tokens) put_u32(&out, static_cast<uint32_t>(t));
  }
  put_u32(&out, crc32(reinterpret_cast<const unsigned char*>(out.data()), out.size()));
  return out;
}

// Returns the declared entry count, checked against what a file of this size can hold.
static uint64_t check_header(const char* head, uint64_t file_size) {
  if (file_size < kHeaderBytes + kCrcBytes) {
    throw FormatError("cache file is truncated: " + std::to_string(file_size) +
                      " bytes is shorter than the header");
  }
  if (std::memcmp(head, kMagic, sizeof(kMagic)) != 0) {
    throw FormatError("not an arctic-suffix cache file (bad magic)");
  }
  const std::string h(head, kHeaderBytes);
  Reader r{h, sizeof(kMagic), kHeaderBytes};
  uint32_t version = static_cast<uint32_t>(r.u(4, "version"));
  if (version != kFileVersion) {
    throw FormatError("cache file version " + std::to_string(version) +
                      " is not supported (this build reads version " +
                      std::to_string(kFileVersion) + ")");
  }
  r.u(4, "max_depth");
  uint64_t count = r.u(8, "entry count");
  const uint64_t room = (file_size - kHeaderBytes - kCrcBytes) / kMinEntryBytes;
  if (count > room) {
    throw FormatError("cache file declares " + std::to_string(count) + " entries, but its " +
                      std::to_string(file_size) + " bytes hold at most " +
                      std::to_string(room) + ": it is corrupt or truncated");
  }
  return count;
}

std::vector<CachedEntry> decode_entries(const std::string& bytes) {
  const uint64_t count = check_header(bytes.data(), bytes.size());
  uint32_t stored = static_cast<uint32_t>(Reader{bytes, bytes.size() - 4, bytes.size()}.u(4, "crc"));
  uint32_t actual = crc32(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size() - 4);
  if (stored != actual) {
    throw FormatError("cache file checksum mismatch: the file is corrupt or truncated");
  }
  // max_depth is informational: trees are rebuilt at the loading cache's depth.
  Reader r{bytes, kHeaderBytes, bytes.size() - kCrcBytes};
  std::vector<CachedEntry> entries;
  for (uint64_t i = 0; i < count; ++i) {
    CachedEntry e;
    e.key = r.str("key");
    e.ns = r.str("namespace");
    uint64_t n = r.u(8, "token count");
    if (n > (r.end - r.pos) / 4) throw FormatError("cache file is truncated (while reading tokens)");
    e.tokens.resize(n);
    for (uint64_t k = 0; k < n; ++k) {
      uint32_t v = static_cast<uint32_t>(r.u(4, "token"));
      if (v > static_cast<uint32_t>(INT32_MAX)) {
        throw FormatError("cache file holds an invalid token id " + std::to_string(v));
      }
      e.tokens[k] = static_cast<Token>(v);
    }
    // A request id may repeat: each entry is one cached response (see stop_request).
    entries.push_back(std::move(e));
  }
  if (r.pos != r.end) throw FormatError("cache file has trailing bytes after its entries");
  return entries;
}

void SuffixCache::save(const std::string& path) const {
  AtomicFileWriter out(path);  // refuses a bad path before the cache is encoded
  out.commit(encode_entries(snapshot(), max_depth_));
}

void SuffixCache::load(const std::string& path) {
  FileReader in(path);
  const uint64_t size = in.size();
  auto bad = [&](const FormatError& e) {
    return FormatError("cannot load " + quoted(path) + ": " + e.what());
  };
  // The header is read and checked before a buffer of the file's size is allocated, and
  // nothing past st_size is read: a growing file cannot make a load grow without bound.
  std::string bytes(static_cast<size_t>(std::min<uint64_t>(size, kHeaderBytes)), '\0');
  try {
    if (in.read(&bytes[0], bytes.size()) != bytes.size()) {
      throw FormatError("cache file is truncated (it shrank while being read)");
    }
    check_header(bytes.data(), size);  // a file shorter than the header fails here
    bytes.resize(static_cast<size_t>(size));
    const size_t rest = bytes.size() - kHeaderBytes;
    if (in.read(&bytes[kHeaderBytes], rest) != rest) {
      throw FormatError("cache file is truncated (it shrank while being read)");
    }
    replace_global(decode_entries(bytes));
  } catch (const FormatError& e) {
    throw bad(e);
  }
}

}  // namespace arctic_suffix
