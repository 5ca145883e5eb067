// A growable array of trivially copyable elements that grows through realloc(). A
// std::vector grows by allocate + copy + free: measured on a 1M-token tree (1M nodes,
// 40 MB) that copy was the longest single call while a response joined the global tree
// (36 ms), and it grows with the tree. glibc's realloc moves a large block by remapping
// its pages instead (measured here: 1 GB -> 2 GB in 2.7 ms); blocks below glibc's mmap
// threshold (at most 32 MB) are copied. One indirection per access, as with std::vector.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <type_traits>

namespace arctic_suffix {

template <class T>
class PodVector {
  static_assert(std::is_trivially_copyable<T>::value, "realloc moves elements bytewise");

 public:
  PodVector() = default;
  ~PodVector() { std::free(data_); }
  PodVector(const PodVector&) = delete;
  PodVector& operator=(const PodVector&) = delete;

  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  size_t size() const { return size_; }

  T& emplace_back() {
    if (size_ == capacity_) {
      size_t cap = capacity_ == 0 ? 16 : 2 * capacity_;
      void* p = std::realloc(data_, cap * sizeof(T));
      if (p == nullptr) throw std::bad_alloc();
      data_ = static_cast<T*>(p);
      capacity_ = cap;
    }
    return *new (data_ + size_++) T();
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace arctic_suffix
