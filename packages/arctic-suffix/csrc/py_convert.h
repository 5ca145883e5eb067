// Python arguments to C++ values, validated while the GIL is held. Every refusal names the
// parameter and the value passed: TypeError for the wrong kind of value, ValueError (or an
// arctic_suffix.exceptions subclass of it) for a value out of range.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "suffix_tree.h"

namespace arctic_suffix {

namespace py = pybind11;

// Token ids: a list (or other sequence) of ints, or a 1-D numpy int32/int64 array in any
// byte order and with any strides. A native-order, aligned, contiguous int32 array is read
// in place (kept alive by `keep`); anything else is copied and checked.
struct Tokens {
  const Token* data = nullptr;
  size_t size = 0;
  std::vector<Token> owned;
  py::object keep;
};
Tokens to_tokens(py::handle obj, const char* what);

// An int (or an object with __index__, such as a numpy integer) in [lo, hi]; bools refused.
int64_t int_arg(py::handle v, const char* name, int64_t lo, int64_t hi);
// The same, or None.
std::optional<int64_t> optional_int_arg(py::handle v, const char* name, int64_t lo, int64_t hi);
// A real number (int, float, numpy scalar); ranges are checked by the C++ validators.
double float_arg(py::handle v, const char* name);
bool bool_arg(py::handle v, const char* name);  // a bool or a numpy bool
std::string str_arg(py::handle v, const char* name);

// A file-system path: str, bytes or os.PathLike, as the bytes the OS will see (os.fsencode).
// An empty path or one holding a NUL (which the C API would silently cut short) raises
// CachePathError naming the path.
std::string path_arg(py::handle v);

// Request ids: str or 64-bit int, tagged ("s"/"i") so that "5" and 5 stay distinct.
std::string key_of(py::handle obj);
py::object id_of(const std::string& key);

}  // namespace arctic_suffix
