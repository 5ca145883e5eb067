// On-disk form of a global cache: versioned and CRC32-checked so that a corrupt, truncated
// or foreign file is refused before anything is replaced.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "suffix_cache.h"

namespace arctic_suffix {

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr uint32_t kFileVersion = 1;

uint32_t crc32(const unsigned char* data, size_t n);
std::string encode_entries(const std::vector<CachedEntry>& entries, int max_depth);
std::vector<CachedEntry> decode_entries(const std::string& bytes);  // throws FormatError

}  // namespace arctic_suffix
