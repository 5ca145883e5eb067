// Thin pybind11 layer: convert and validate inputs while holding the GIL (py_convert.h),
// then release it for the C++ work. Bad input raises before anything is mutated.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

#include "cache_file.h"
#include "file_io.h"
#include "py_convert.h"
#include "suffix_cache.h"
#include "suffix_tree.h"

namespace py = pybind11;
using namespace arctic_suffix;

namespace {

// Every numeric and boolean knob of a draft; each refusal names the parameter and value.
DraftParams params(py::handle max_spec_tokens, py::handle factor, py::handle offset,
                   py::handle min_prob, py::handle tree, int max_depth) {
  DraftParams p;
  p.max_spec_tokens = static_cast<int>(
      optional_int_arg(max_spec_tokens, "max_spec_tokens", 0, kMaxSpecTokens).value_or(max_depth));
  p.max_spec_factor = float_arg(factor, "max_spec_factor");
  p.max_spec_offset = float_arg(offset, "max_spec_offset");
  p.min_token_prob = float_arg(min_prob, "min_token_prob");
  p.tree = bool_arg(tree, "tree");
  validate(p);
  return p;
}

int depth_arg(py::handle v) {
  return static_cast<int>(int_arg(v, "max_depth", 1, kMaxDepthLimit));
}

int64_t seq_arg(py::handle v) { return int_arg(v, "seq_id", INT64_MIN, INT64_MAX); }

struct PyTree {
  explicit PyTree(int d) : tree(d) {}
  SuffixTree tree;
  std::mutex mu;  // the tree itself is unsynchronized; Python threads share it through this
};

Eviction parse_eviction(py::handle v) {
  const std::string s = str_arg(v, "eviction");
  if (s == "fifo") return Eviction::kFifo;
  if (s == "lru") return Eviction::kLru;
  throw py::value_error("eviction must be 'fifo' or 'lru', got '" + s + "'");
}

int64_t limit(py::handle v, const char* name) {
  // -1: unbounded (None).
  return optional_int_arg(v, name, 0, INT64_MAX).value_or(-1);
}

// Messages may quote a path whose bytes are not UTF-8: decode them, never fail on them.
void set_error(PyObject* cls, const char* what) {
  PyObject* msg = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)),
                                       "backslashreplace");
  if (msg == nullptr) return;  // the decode error is set instead
  PyErr_SetObject(cls, msg);
  Py_DECREF(msg);
}

PyObject* error_class(const char* name) {
  return py::module_::import("arctic_suffix.exceptions").attr(name).ptr();
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ suffix tree for model-free suffix decoding (arXiv 2411.04975).";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FormatError& e) {
      set_error(error_class("CacheFileError"), e.what());
    } catch (const PathError& e) {
      set_error(error_class("CachePathError"), e.what());
    } catch (const arctic_suffix::KeyError& e) {
      set_error(PyExc_KeyError, e.what());
    } catch (const std::logic_error& e) {
      if (dynamic_cast<const std::invalid_argument*>(&e) != nullptr) {
        set_error(PyExc_ValueError, e.what());
      } else {
        set_error(error_class("IntegrityError"), e.what());
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
      .def(py::init([](py::handle max_depth) { return new PyTree(depth_arg(max_depth)); }),
           py::arg("max_depth") = 64)
      .def_property_readonly("max_depth", [](PyTree& t) { return t.tree.max_depth(); })
      .def("extend", [](PyTree& t, py::handle seq_id, py::handle ids) {
        int64_t seq = seq_arg(seq_id);
        Tokens tok = to_tokens(ids, "token_ids");
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(t.mu);
        t.tree.extend(seq, tok.data, tok.size);
      }, py::arg("seq_id"), py::arg("token_ids"))
      .def("remove", [](PyTree& t, py::handle seq_id) {
        int64_t seq = seq_arg(seq_id);
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(t.mu);
        t.tree.remove(seq);
      }, py::arg("seq_id"))
      .def("__contains__", [](PyTree& t, py::handle seq_id) {
        int64_t seq = seq_arg(seq_id);
        std::lock_guard<std::mutex> lock(t.mu);
        return t.tree.contains(seq);
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
      .def("speculate", [](PyTree& t, py::handle context, py::handle max_spec_tokens,
                           py::handle factor, py::handle offset, py::handle min_prob,
                           py::handle tree) {
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
      .def(py::init([](py::handle max_depth, py::handle max_requests, py::handle max_tokens,
                       py::handle eviction, py::handle removal_chunk) {
             int depth = depth_arg(max_depth);
             int64_t requests = limit(max_requests, "max_cached_requests");
             int64_t tokens = limit(max_tokens, "max_cached_tokens");
             Eviction ev = parse_eviction(eviction);
             int64_t chunk = int_arg(removal_chunk, "removal_chunk", 1, INT64_MAX);
             return new SuffixCache(depth, requests, tokens, ev, static_cast<size_t>(chunk));
           }),
           py::arg("max_depth") = 64, py::arg("max_cached_requests") = py::none(),
           py::arg("max_cached_tokens") = py::none(), py::arg("eviction") = "lru",
           py::arg("removal_chunk") = 8192)
      .def_property_readonly("max_depth", &SuffixCache::max_depth)
      .def("start_request", [](SuffixCache& c, py::handle req_id, py::handle prompt,
                               py::handle ns) {
        std::string key = key_of(req_id);
        Tokens tok = to_tokens(prompt, "prompt_ids");
        std::string space = str_arg(ns, "namespace");
        py::gil_scoped_release nogil;
        c.start_request(key, space, tok.data, tok.size);
      }, py::arg("req_id"), py::arg("prompt_ids"), py::arg("namespace") = "",
         "Starts a request. The id may be one with responses still in the global cache "
         "(a reused or restarted id): those stay cached (see stop_request).")
      .def("add_tokens", [](SuffixCache& c, py::handle req_id, py::handle ids) {
        std::string key = key_of(req_id);
        Tokens tok = to_tokens(ids, "token_ids");
        py::gil_scoped_release nogil;
        c.add_tokens(key, tok.data, tok.size);
      }, py::arg("req_id"), py::arg("token_ids"))
      .def("speculate", [](SuffixCache& c, py::handle req_id, py::handle context,
                           py::handle max_spec_tokens, py::handle factor, py::handle offset,
                           py::handle min_prob, py::handle tree, py::handle adaptive,
                           py::handle extend) {
        std::string key = key_of(req_id);
        DraftParams p = params(max_spec_tokens, factor, offset, min_prob, tree, c.max_depth());
        const bool adapt = bool_arg(adaptive, "adaptive");
        const bool ext = bool_arg(extend, "extend");
        if (context.is_none()) {
          py::gil_scoped_release nogil;
          return c.speculate(key, nullptr, 0, p, adapt, ext);
        }
        Tokens tok = to_tokens(context, "context");
        py::gil_scoped_release nogil;
        return c.speculate(key, tok.data, tok.size, p, adapt, ext);
      }, py::arg("req_id"), py::arg("context") = py::none(),
         py::arg("max_spec_tokens") = py::none(), py::arg("max_spec_factor") = 1.0,
         py::arg("max_spec_offset") = 0.0, py::arg("min_token_prob") = 0.1,
         py::arg("tree") = false, py::arg("adaptive") = false, py::arg("extend") = true)
      .def("stop_request", [](SuffixCache& c, py::handle req_id) {
        std::string key = key_of(req_id);
        py::gil_scoped_release nogil;
        c.stop_request(key);
      }, py::arg("req_id"),
         "Finishes a request: its output joins the namespace's global cache as a new entry. "
         "Entries cached earlier under the same id are kept beside it, never replaced; "
         "evict(req_id) removes them all.")
      .def("evict", [](SuffixCache& c, py::handle req_id) {
        std::string key = key_of(req_id);
        py::gil_scoped_release nogil;
        c.evict(key);
      }, py::arg("req_id"),
         "Removes every response cached under req_id (KeyError if none).")
      .def("run_pending_work", [](SuffixCache& c, py::handle max_units) {
        std::optional<int64_t> units = optional_int_arg(max_units, "max_units", 0, INT64_MAX);
        size_t budget = units ? static_cast<size_t>(*units) : SIZE_MAX;
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
      }, "Ids of the cached responses in eviction order, next victim first; an id appears "
         "once per response cached under it.")
      .def_property_readonly("cached_tokens", &SuffixCache::cached_tokens)
      .def_property_readonly("pending_work", &SuffixCache::pending_work)
      .def("memory_bytes", &SuffixCache::memory_bytes)
      .def("check_integrity", [](SuffixCache& c) {
        py::gil_scoped_release nogil;
        c.check_integrity();
      })
      .def("save", [](SuffixCache& c, py::handle path) {
        std::string p = path_arg(path);
        py::gil_scoped_release nogil;
        c.save(p);
      }, py::arg("path"),
         "Writes the global cache to path (str, bytes or os.PathLike) atomically: a temporary "
         "file beside it, fsynced, renamed over it. A symlink is followed and the file it "
         "names replaced (the link stays). A directory, FIFO, socket or device node (or a "
         "link to one), an empty path or one with a NUL raise CachePathError.")
      .def("load", [](SuffixCache& c, py::handle path) {
        std::string p = path_arg(path);
        py::gil_scoped_release nogil;
        c.load(p);
      }, py::arg("path"),
         "Replaces the global cache with the one saved at path. Only a regular file (or a "
         "symlink to one) is read, and at most its size: anything else raises "
         "CachePathError, a corrupt file CacheFileError; the cache is then untouched.");
}
