#include "py_convert.h"

#include <pybind11/numpy.h>

#include <climits>
#include <cstring>

#include "file_io.h"

namespace arctic_suffix {

namespace {

// repr() of a value for a message, cut short if huge (10**400 would fill a screen).
std::string shown_value(py::handle v) {
  std::string r = py::repr(v);
  if (r.size() > 60) r = r.substr(0, 40) + "..." + r.substr(r.size() - 12);
  return r + " (" + std::string(py::str(v.get_type().attr("__name__"))) + ")";
}

[[noreturn]] void bad_token(const char* what, long long v, size_t i) {
  throw py::value_error(std::string(what) + "[" + std::to_string(i) + "] = " +
                        std::to_string(v) + " is not a valid token id; ids must be in [0, 2^31)");
}

[[noreturn]] void not_token_ids(const char* what, py::handle obj) {
  throw py::value_error(std::string(what) + " must be a list of ints or a 1-D int32/int64 "
                        "numpy array, got " + std::string(py::str(obj.get_type().attr("__name__"))));
}

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

uint32_t swapped(uint32_t v) { return __builtin_bswap32(v); }
uint64_t swapped(uint64_t v) { return __builtin_bswap64(v); }

// Element i of a strided buffer, read bytewise (a field of a structured array or a byte-
// offset view need not be aligned) and byte-swapped when the array's order is not ours.
template <class U>
U element(const char* base, ssize_t step, size_t i, bool swap) {
  U v;
  std::memcpy(&v, base + static_cast<ssize_t>(i) * step, sizeof(U));
  return swap ? swapped(v) : v;
}

Tokens from_array(py::handle obj, const char* what) {
  Tokens out;
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.ndim() != 1) {
    throw py::value_error(std::string(what) + " must be a 1-D array, got ndim=" +
                          std::to_string(arr.ndim()));
  }
  const py::dtype dt = arr.dtype();
  const ssize_t itemsize = arr.itemsize();
  if (dt.kind() != 'i' || (itemsize != 4 && itemsize != 8)) {
    throw py::value_error(std::string(what) + " must have dtype int32 or int64, got " +
                          std::string(py::str(dt)));
  }
  // '=' native, '|' not applicable, '<' / '>' explicit (either may be ours).
  const char order = dt.byteorder();
  const bool swap = order == (kLittleEndian ? '>' : '<');
  const size_t n = static_cast<size_t>(arr.shape(0));
  const ssize_t step = arr.strides(0);  // bytes, may be negative or not a multiple of 4
  const char* base = static_cast<const char*>(arr.data());
  out.size = n;
  if (itemsize == 4 && !swap && (step == 4 || n <= 1) &&
      reinterpret_cast<uintptr_t>(base) % alignof(Token) == 0) {
    const Token* p = reinterpret_cast<const Token*>(base);
    for (size_t i = 0; i < n; ++i) {
      if (p[i] < 0) bad_token(what, p[i], i);
    }
    out.data = p;  // zero-copy: the array is kept alive, not copied
    out.keep = py::reinterpret_borrow<py::object>(obj);
    return out;
  }
  out.owned.resize(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t v = itemsize == 4
                    ? static_cast<int32_t>(element<uint32_t>(base, step, i, swap))
                    : static_cast<int64_t>(element<uint64_t>(base, step, i, swap));
    if (v < 0 || v > INT32_MAX) bad_token(what, v, i);
    out.owned[i] = static_cast<Token>(v);
  }
  out.data = out.owned.data();
  return out;
}

// Any other buffer exporter (memoryview, array.array, ctypes arrays): read by value through
// its format, whatever the byte order ('<', '>', '!') or integer width. Python cannot
// index a memoryview of a non-native format at all, so the sequence path would fail.
Tokens from_buffer(Py_buffer& view, py::handle obj, const char* what) {
  const std::string type = py::str(obj.get_type().attr("__name__"));
  if (view.ndim != 1) {
    throw py::value_error(std::string(what) + " must be 1-D, got a " + std::to_string(view.ndim) +
                          "-D " + type);
  }
  const char* f = view.format != nullptr ? view.format : "B";
  char order = '@';
  if (std::strchr("@=<>!", *f) != nullptr && *f != '\0') order = *f++;
  const bool is_signed = std::strlen(f) == 1 && std::strchr("bhilqn", *f) != nullptr;
  const bool is_unsigned = std::strlen(f) == 1 && std::strchr("BHILQN", *f) != nullptr;
  const size_t width = static_cast<size_t>(view.itemsize);
  if ((!is_signed && !is_unsigned) || (width != 1 && width != 2 && width != 4 && width != 8)) {
    throw py::value_error(std::string(what) + " must hold integers, got a " + type +
                          " of format '" + std::string(view.format != nullptr ? view.format : "B") +
                          "'");
  }
  const bool big = order == '>' || order == '!';
  const bool swap = width > 1 && (big ? kLittleEndian : (order == '<' && !kLittleEndian));
  const size_t n = static_cast<size_t>(view.shape[0]);
  const ssize_t step = view.strides != nullptr ? view.strides[0] : view.itemsize;
  const char* base = static_cast<const char*>(view.buf);
  Tokens out;
  out.owned.resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t raw = 0;
    std::memcpy(&raw, base + static_cast<ssize_t>(i) * step, width);  // low bytes on LE
    if (!kLittleEndian) raw >>= 8 * (8 - width);
    if (swap) raw = __builtin_bswap64(raw) >> (8 * (8 - width));
    int64_t v = static_cast<int64_t>(raw);
    if (is_signed && width < 8 && (raw >> (8 * width - 1)) != 0) {
      v = static_cast<int64_t>(raw | (~uint64_t{0} << (8 * width)));  // sign-extend
    }
    if (is_unsigned && width == 8 && raw > static_cast<uint64_t>(INT64_MAX)) {
      throw py::value_error(std::string(what) + "[" + std::to_string(i) + "] = " +
                            std::to_string(raw) +
                            " is not a valid token id; ids must be in [0, 2^31)");
    }
    if (v < 0 || v > INT32_MAX) bad_token(what, v, i);
    out.owned[i] = static_cast<Token>(v);
  }
  out.data = out.owned.data();
  out.size = n;
  return out;
}

bool is_numpy_bool(py::handle v) {
  const char* name = Py_TYPE(v.ptr())->tp_name;
  return std::strcmp(name, "numpy.bool_") == 0 || std::strcmp(name, "numpy.bool") == 0;
}

}  // namespace

Tokens to_tokens(py::handle obj, const char* what) {
  // Raw bytes are not token ids (b"12" is not [1, 2] nor [49, 50]).
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) ||
      PyByteArray_Check(obj.ptr())) {
    not_token_ids(what, obj);
  }
  // Checked by type name first: no numpy import when numpy is not installed or not used.
  if (std::strcmp(Py_TYPE(obj.ptr())->tp_name, "numpy.ndarray") == 0) {
    return from_array(obj, what);
  }
  // numpy scalars and ndarray subclasses export buffers too; they stay refused below (a
  // masked array's buffer holds its masked values).
  const bool numpy_type = std::strncmp(Py_TYPE(obj.ptr())->tp_name, "numpy.", 6) == 0;
  if (!numpy_type && PyObject_CheckBuffer(obj.ptr())) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_RECORDS_RO) == 0) {
      struct Release {
        Py_buffer* v;
        ~Release() { PyBuffer_Release(v); }
      } release{&view};
      return from_buffer(view, obj, what);
    }
    PyErr_Clear();  // an exporter without strided access: read it as a sequence
  }
  if (!py::isinstance<py::sequence>(obj)) not_token_ids(what, obj);
  Tokens out;
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  size_t n = py::len(seq);
  out.owned.resize(n);
  for (size_t i = 0; i < n; ++i) {
    py::object item = seq[i];
    if (!PyLong_Check(item.ptr()) || PyBool_Check(item.ptr())) {
      throw py::value_error(std::string(what) + "[" + std::to_string(i) + "] must be an int, got " +
                            std::string(py::str(item.get_type().attr("__name__"))));
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(item.ptr(), &overflow);
    if (overflow != 0) {
      throw py::value_error(std::string(what) + "[" + std::to_string(i) + "] = " +
                            std::string(py::str(item)) + " is not a valid token id; ids must be in [0, 2^31)");
    }
    if (v < 0 || v > INT32_MAX) bad_token(what, v, i);
    out.owned[i] = static_cast<Token>(v);
  }
  out.data = out.owned.data();
  out.size = n;
  return out;
}

namespace {

int64_t int_in(py::handle v, const char* name, int64_t lo, int64_t hi, const char* or_none) {
  const std::string want = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]" + or_none;
  if (PyBool_Check(v.ptr()) || is_numpy_bool(v) || !PyIndex_Check(v.ptr())) {
    throw py::type_error(std::string(name) + " must be an int in " + want + ", got " +
                         shown_value(v));
  }
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!i) throw py::error_already_set();
  int overflow = 0;
  long long x = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow != 0 || x < lo || x > hi) {
    throw py::value_error(std::string(name) + " must be in " + want + ", got " + shown_value(v));
  }
  return x;
}

}  // namespace

int64_t int_arg(py::handle v, const char* name, int64_t lo, int64_t hi) {
  return int_in(v, name, lo, hi, "");
}

std::optional<int64_t> optional_int_arg(py::handle v, const char* name, int64_t lo, int64_t hi) {
  if (v.is_none()) return std::nullopt;
  return int_in(v, name, lo, hi, " or None");
}

double float_arg(py::handle v, const char* name) {
  if (PyBool_Check(v.ptr()) || is_numpy_bool(v) || v.is_none()) {
    throw py::type_error(std::string(name) + " must be a number, got " + shown_value(v));
  }
  double x = PyFloat_AsDouble(v.ptr());  // float, int, or anything with __float__/__index__
  if (x == -1.0 && PyErr_Occurred()) {
    const bool overflow = PyErr_ExceptionMatches(PyExc_OverflowError);
    PyErr_Clear();
    if (overflow) {
      throw py::value_error(std::string(name) + " is too large for a float, got " + shown_value(v));
    }
    throw py::type_error(std::string(name) + " must be a number, got " + shown_value(v));
  }
  return x;
}

bool bool_arg(py::handle v, const char* name) {
  if (PyBool_Check(v.ptr())) return v.ptr() == Py_True;
  if (is_numpy_bool(v)) return PyObject_IsTrue(v.ptr()) == 1;
  throw py::type_error(std::string(name) + " must be True or False, got " + shown_value(v));
}

std::string str_arg(py::handle v, const char* name) {
  if (!py::isinstance<py::str>(v)) {
    throw py::type_error(std::string(name) + " must be a str, got " + shown_value(v));
  }
  return v.cast<std::string>();
}

std::string path_arg(py::handle v) {
  py::module_ os = py::module_::import("os");
  py::object p = os.attr("fspath")(v);  // TypeError for anything that is not a path
  if (py::isinstance<py::str>(p)) p = os.attr("fsencode")(p);
  std::string raw = p.cast<py::bytes>();  // keeps an embedded NUL, unlike a C string
  if (raw.empty()) throw PathError("path must not be empty, got " + std::string(py::repr(v)));
  if (raw.find('\0') != std::string::npos) {
    throw PathError("path " + std::string(py::repr(v)) +
                    " contains a NUL character, which no file name can hold");
  }
  return raw;
}

std::string key_of(py::handle obj) {
  if (py::isinstance<py::str>(obj)) return "s" + obj.cast<std::string>();
  if (PyLong_Check(obj.ptr()) && !PyBool_Check(obj.ptr())) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (overflow == 0) return "i" + std::to_string(v);
  }
  throw py::value_error("request id must be a str or a 64-bit int, got " +
                        std::string(py::repr(obj)));
}

py::object id_of(const std::string& key) {
  if (key[0] == 'i') return py::int_(std::stoll(key.substr(1)));
  return py::str(key.substr(1));
}

}  // namespace arctic_suffix
