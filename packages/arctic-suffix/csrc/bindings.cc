// Thin pybind11 layer: convert and validate inputs while holding the GIL, then release it
// for the C++ work. Bad input raises before anything is mutated.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

#include "cache_file.h"
#include "suffix_cache.h"
#include "suffix_tree.h"

namespace py = pybind11;
using namespace arctic_suffix;

namespace {

// Token ids borrowed from a C-contiguous int32 array (zero-copy) or copied and checked.
struct Tokens {
  const Token* data = nullptr;
  size_t size = 0;
  std::vector<Token> owned;
  py::object keep;
};

[[noreturn]] void bad_token(const char* what, long long v, size_t i) {
  throw py::value_error(std::string(what) + "[" + std::to_string(i) + "] = " +
                        std::to_string(v) + " is not a valid token id; ids must be in [0, 2^31)");
}

Tokens to_tokens(py::handle obj, const char* what) {
  Tokens out;
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj)) {
    throw py::value_error(std::string(what) + " must be a list of ints or a 1-D int32/int64 "
                          "numpy array, got " + std::string(py::str(obj.get_type().attr("__name__"))));
  }
  // Checked by type name first: no numpy import when numpy is not installed or not used.
  if (std::strcmp(Py_TYPE(obj.ptr())->tp_name, "numpy.ndarray") == 0) {
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    if (arr.ndim() != 1) {
      throw py::value_error(std::string(what) + " must be a 1-D array, got ndim=" +
                            std::to_string(arr.ndim()));
    }
    const char kind = arr.dtype().kind();
    const ssize_t itemsize = arr.itemsize();
    if (kind != 'i' || (itemsize != 4 && itemsize != 8)) {
      throw py::value_error(std::string(what) + " must have dtype int32 or int64, got " +
                            std::string(py::str(arr.dtype())));
    }
    const size_t n = static_cast<size_t>(arr.shape(0));
    const ssize_t stride = n > 0 ? arr.strides(0) / itemsize : 1;
    out.size = n;
    if (itemsize == 4) {
      const Token* p = static_cast<const Token*>(arr.data());
      for (size_t i = 0; i < n; ++i) {
        if (p[i * stride] < 0) bad_token(what, p[i * stride], i);
      }
      if (stride == 1 || n <= 1) {  // zero-copy: the array is kept alive, not copied
        out.data = p;
        out.keep = py::reinterpret_borrow<py::object>(obj);
        return out;
      }
      out.owned.resize(n);
      for (size_t i = 0; i < n; ++i) out.owned[i] = p[i * stride];
    } else {
      const int64_t* p = static_cast<const int64_t*>(arr.data());
      out.owned.resize(n);
      for (size_t i = 0; i < n; ++i) {
        int64_t v = p[i * stride];
        if (v < 0 || v > INT32_MAX) bad_token(what, v, i);
        out.owned[i] = static_cast<Token>(v);
      }
    }
    out.data = out.owned.data();
    return out;
  }
  if (!py::isinstance<py::sequence>(obj)) {
    throw py::value_error(std::string(what) + " must be a list of ints or a 1-D int32/int64 "
                          "numpy array, got " + std::string(py::str(obj.get_type().attr("__name__"))));
  }
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

// Request ids may be str or int (vLLM uses str); keys are tagged ("s"/"i") so that "5" and
// 5 stay distinct and ids round-trip with their type.
std::string key_of(const py::handle& obj) {
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

DraftParams params(std::optional<int> max_spec_tokens, double factor, double offset,
                   double min_prob, bool tree, int max_depth) {
  DraftParams p;
  p.max_spec_tokens = max_spec_tokens.value_or(max_depth);
  p.max_spec_factor = factor;
  p.max_spec_offset = offset;
  p.min_token_prob = min_prob;
  p.tree = tree;
  validate(p);
  return p;
}

struct PyTree {
  explicit PyTree(int d) : tree(d) {}
  SuffixTree tree;
  std::mutex mu;  // the tree itself is unsynchronized; Python threads share it through this
};

Eviction parse_eviction(const std::string& s) {
  if (s == "fifo") return Eviction::kFifo;
  if (s == "lru") return Eviction::kLru;
  throw py::value_error("eviction must be 'fifo' or 'lru', got '" + s + "'");
}

int64_t limit(std::optional<int64_t> v, const char* name) {
  if (!v) return -1;
  if (*v < 0) {
    throw py::value_error(std::string(name) + " must be >= 0 or None (unbounded), got " +
                          std::to_string(*v));
  }
  return *v;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ suffix tree for model-free suffix decoding (arXiv 2411.04975).";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FormatError& e) {
      py::object cls = py::module_::import("arctic_suffix.exceptions").attr("CacheFileError");
      PyErr_SetString(cls.ptr(), e.what());
    } catch (const arctic_suffix::KeyError& e) {
      PyErr_SetString(PyExc_KeyError, e.what());
    } catch (const std::logic_error& e) {
      if (dynamic_cast<const std::invalid_argument*>(&e) != nullptr) {
        PyErr_SetString(PyExc_ValueError, e.what());
      } else {
        py::object cls = py::module_::import("arctic_suffix.exceptions").attr("IntegrityError");
        PyErr_SetString(cls.ptr(), e.what());
      }
    }
  });
  m.attr("MAX_DEPTH_LIMIT") = kMaxDepthLimit;

  py::class_<Draft>(m, "Draft")
      .def_property_readonly("token_ids", [](const Draft& d) { return d.token_ids; })
      .def_property_readonly("parents", [](const Draft& d) { return d.parents; })
      .def_property_readonly("probs", [](const Draft& d) { return d.probs; })
      .def_readonly("score", &Draft::score)
      .def_readonly("match_len", &Draft::match_len)
      .def("__len__", [](const Draft& d) { return d.token_ids.size(); })
      .def("__repr__", [](const Draft& d) {
        return "Draft(len=" + std::to_string(d.token_ids.size()) +
               ", score=" + std::to_string(d.score) +
               ", match_len=" + std::to_string(d.match_len) + ")";
      });

  py::class_<PyTree>(m, "SuffixTree")
      .def(py::init<int>(), py::arg("max_depth") = 64)
      .def_property_readonly("max_depth", [](PyTree& t) { return t.tree.max_depth(); })
      .def("extend", [](PyTree& t, int64_t seq_id, py::handle ids) {
        Tokens tok = to_tokens(ids, "token_ids");
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(t.mu);
        t.tree.extend(seq_id, tok.data, tok.size);
      }, py::arg("seq_id"), py::arg("token_ids"))
      .def("remove", [](PyTree& t, int64_t seq_id) {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(t.mu);
        t.tree.remove(seq_id);
      }, py::arg("seq_id"))
      .def("__contains__", [](PyTree& t, int64_t seq_id) {
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.contains(seq_id);
      })
      .def("__len__", [](PyTree& t) {
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.num_sequences();
      })
      .def("count", [](PyTree& t, py::handle ngram) {
        Tokens tok = to_tokens(ngram, "ngram");
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.count(tok.data, tok.size);
      }, py::arg("ngram"))
      .def("speculate", [](PyTree& t, py::handle context, std::optional<int> max_spec_tokens,
                           double factor, double offset, double min_prob, bool tree) {
        Tokens tok = to_tokens(context, "context");
        DraftParams p = params(max_spec_tokens, factor, offset, min_prob, tree, t.tree.max_depth());
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.speculate(tok.data, tok.size, p);
      }, py::arg("context"), py::arg("max_spec_tokens") = py::none(),
         py::arg("max_spec_factor") = 1.0, py::arg("max_spec_offset") = 0.0,
         py::arg("min_token_prob") = 0.1, py::arg("tree") = false)
      .def("check_integrity", [](PyTree& t) {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(t.mu);
        t.tree.check_integrity();
      })
      .def("memory_bytes", [](PyTree& t) {
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.memory_bytes();
      })
      .def_property_readonly("num_nodes", [](PyTree& t) {
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.num_nodes();
      })
      .def_property_readonly("num_tokens", [](PyTree& t) {
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.total_tokens();
      });

  py::class_<SuffixCache>(m, "SuffixCache")
      .def(py::init([](int max_depth, std::optional<int64_t> max_requests,
                       std::optional<int64_t> max_tokens, const std::string& eviction,
                       int64_t removal_chunk) {
             if (removal_chunk <= 0) {
               throw py::value_error("removal_chunk must be >= 1, got " +
                                     std::to_string(removal_chunk));
             }
             return new SuffixCache(max_depth, limit(max_requests, "max_cached_requests"),
                                    limit(max_tokens, "max_cached_tokens"),
                                    parse_eviction(eviction), static_cast<size_t>(removal_chunk));
           }),
           py::arg("max_depth") = 64, py::arg("max_cached_requests") = py::none(),
           py::arg("max_cached_tokens") = py::none(), py::arg("eviction") = "lru",
           py::arg("removal_chunk") = 8192)
      .def_property_readonly("max_depth", &SuffixCache::max_depth)
      .def("start_request", [](SuffixCache& c, py::handle req_id, py::handle prompt,
                               const std::string& ns) {
        std::string key = key_of(req_id);
        Tokens tok = to_tokens(prompt, "prompt_ids");
        py::gil_scoped_release nogil;
        c.start_request(key, ns, tok.data, tok.size);
      }, py::arg("req_id"), py::arg("prompt_ids"), py::arg("namespace") = "")
      .def("add_tokens", [](SuffixCache& c, py::handle req_id, py::handle ids) {
        std::string key = key_of(req_id);
        Tokens tok = to_tokens(ids, "token_ids");
        py::gil_scoped_release nogil;
        c.add_tokens(key, tok.data, tok.size);
      }, py::arg("req_id"), py::arg("token_ids"))
      .def("speculate", [](SuffixCache& c, py::handle req_id, py::handle context,
                           std::optional<int> max_spec_tokens, double factor, double offset,
                           double min_prob, bool tree, bool adaptive, bool extend) {
        std::string key = key_of(req_id);
        DraftParams p = params(max_spec_tokens, factor, offset, min_prob, tree, c.max_depth());
        if (context.is_none()) {
          py::gil_scoped_release nogil;
          return c.speculate(key, nullptr, 0, p, adaptive, extend);
        }
        Tokens tok = to_tokens(context, "context");
        py::gil_scoped_release nogil;
        return c.speculate(key, tok.data, tok.size, p, adaptive, extend);
      }, py::arg("req_id"), py::arg("context") = py::none(),
         py::arg("max_spec_tokens") = py::none(), py::arg("max_spec_factor") = 1.0,
         py::arg("max_spec_offset") = 0.0, py::arg("min_token_prob") = 0.1,
         py::arg("tree") = false, py::arg("adaptive") = false, py::arg("extend") = true)
      .def("stop_request", [](SuffixCache& c, py::handle req_id) {
        std::string key = key_of(req_id);
        py::gil_scoped_release nogil;
        c.stop_request(key);
      }, py::arg("req_id"))
      .def("evict", [](SuffixCache& c, py::handle req_id) {
        std::string key = key_of(req_id);
        py::gil_scoped_release nogil;
        c.evict(key);
      }, py::arg("req_id"))
      .def("run_pending_work", [](SuffixCache& c, std::optional<int64_t> max_units) {
        size_t budget = max_units ? static_cast<size_t>(std::max<int64_t>(0, *max_units))
                                  : SIZE_MAX;
        py::gil_scoped_release nogil;
        return c.run_pending_work(budget);
      }, py::arg("max_units") = py::none())
      .def_property_readonly("active_requests", [](SuffixCache& c) {
        py::list out;
        for (const auto& k : c.active_requests()) out.append(id_of(k));
        return out;
      })
      .def_property_readonly("cached_requests", [](SuffixCache& c) {
        py::list out;
        for (const auto& k : c.cached_requests()) out.append(id_of(k));
        return out;
      })
      .def_property_readonly("cached_tokens", &SuffixCache::cached_tokens)
      .def_property_readonly("pending_work", &SuffixCache::pending_work)
      .def("memory_bytes", &SuffixCache::memory_bytes)
      .def("check_integrity", [](SuffixCache& c) {
        py::gil_scoped_release nogil;
        c.check_integrity();
      })
      .def("save", [](SuffixCache& c, const py::object& path) {
        std::string p = py::str(py::module_::import("os").attr("fspath")(path));
        py::gil_scoped_release nogil;
        c.save(p);
      }, py::arg("path"))
      .def("load", [](SuffixCache& c, const py::object& path) {
        std::string p = py::str(py::module_::import("os").attr("fspath")(path));
        py::gil_scoped_release nogil;
        c.load(p);
      }, py::arg("path"));
}
