// Run-time binding of oneMKL's DFTI interface (see mkl_dft.h). Only the handful of entry
// points used here are declared, with the enumeration values of oneMKL's mkl_dfti.h.
#include "mkl_dft.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define ELEAF_HAVE_DLFCN 1
#endif

#include <map>
#include <tuple>

namespace eleaf {
namespace dft {
namespace {

using MklLong = long;
using Handle = void*;

// enum values of mkl_dfti.h (DFTI_CONFIG_PARAM, DFTI_CONFIG_VALUE)
constexpr int kForwardScale = 4, kBackwardScale = 5, kThreadLimit = 27;
constexpr int kComplex = 32;

struct Api {
  MklLong (*create_s_1d)(Handle*, int, ...) = nullptr;
  MklLong (*create_d_1d)(Handle*, int, ...) = nullptr;
  MklLong (*set_value)(Handle, int, ...) = nullptr;
  MklLong (*commit)(Handle) = nullptr;
  MklLong (*compute_forward)(Handle, void*, ...) = nullptr;
  MklLong (*compute_backward)(Handle, void*, ...) = nullptr;
  MklLong (*free_descriptor)(Handle*) = nullptr;
  char* (*error_message)(MklLong) = nullptr;
  std::string missing;
};

template <typename F>
void bind(void* lib, const char* name, F& fn, std::string& missing) {
#ifdef ELEAF_HAVE_DLFCN
  fn = reinterpret_cast<F>(lib ? dlsym(lib, name) : nullptr);
#else
  fn = nullptr;
#endif
  if (!fn) missing += (missing.empty() ? "" : ", ") + std::string(name);
}

// The library that defines at::get_num_threads (libtorch_cpu), opened again by its path
// without loading anything new.
const Api& api() {
  static const Api instance = [] {
    Api a;
    void* lib = nullptr;
#ifdef ELEAF_HAVE_DLFCN
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) && info.dli_fname) {
      lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    }
#endif
    bind(lib, "DftiCreateDescriptor_s_1d", a.create_s_1d, a.missing);
    bind(lib, "DftiCreateDescriptor_d_1d", a.create_d_1d, a.missing);
    bind(lib, "DftiSetValue", a.set_value, a.missing);
    bind(lib, "DftiCommitDescriptor", a.commit, a.missing);
    bind(lib, "DftiComputeForward", a.compute_forward, a.missing);
    bind(lib, "DftiComputeBackward", a.compute_backward, a.missing);
    bind(lib, "DftiFreeDescriptor", a.free_descriptor, a.missing);
    bind(lib, "DftiErrorMessage", a.error_message, a.missing);
    return a;
  }();
  return instance;
}

void check(MklLong status, const char* what) {
  if (status != 0) {
    const Api& a = api();
    TORCH_CHECK(false, "eleaf: oneMKL ", what, " failed: ",
                a.error_message ? a.error_message(status) : "unknown error");
  }
}

// Committed descriptors of one thread, freed when the thread ends.
class Plans {
 public:
  ~Plans() {
    for (auto& kv : plans_) api().free_descriptor(&kv.second);
  }
  Handle get(int64_t M, bool is_double, double scale) {
    const auto key = std::make_tuple(M, is_double, scale);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    const Api& a = api();
    Handle h = nullptr;
    check(is_double ? a.create_d_1d(&h, kComplex, static_cast<MklLong>(M))
                    : a.create_s_1d(&h, kComplex, static_cast<MklLong>(M)),
          "DftiCreateDescriptor");
    // a scale is a variadic floating-point argument, i.e. passed as double for either
    // precision (as torch's own MKL FFT passes it)
    check(a.set_value(h, kForwardScale, scale), "DftiSetValue(FORWARD_SCALE)");
    check(a.set_value(h, kBackwardScale, scale), "DftiSetValue(BACKWARD_SCALE)");
    check(a.set_value(h, kThreadLimit, static_cast<MklLong>(1)), "DftiSetValue(THREAD_LIMIT)");
    check(a.commit(h), "DftiCommitDescriptor");
    plans_.emplace(key, h);
    return h;
  }

 private:
  std::map<std::tuple<int64_t, bool, double>, Handle> plans_;
};

Plans& plans() {
  thread_local Plans p;
  return p;
}

template <typename T>
void run(T* data, int64_t M, double scale, bool fwd) {
  TORCH_CHECK(available(), "eleaf: ", reason());
  Handle h = plans().get(M, sizeof(T) == sizeof(double), scale);
  const Api& a = api();
  check(fwd ? a.compute_forward(h, data) : a.compute_backward(h, data),
        fwd ? "DftiComputeForward" : "DftiComputeBackward");
}

}  // namespace

bool available() { return api().missing.empty(); }

std::string reason() {
  return available() ? std::string()
                     : "oneMKL's DFT functions are not exported by this PyTorch (missing: " +
                           api().missing + ")";
}

void forward(float* data, int64_t M, double scale) { run(data, M, scale, true); }
void forward(double* data, int64_t M, double scale) { run(data, M, scale, true); }
void backward(float* data, int64_t M, double scale) { run(data, M, scale, false); }
void backward(double* data, int64_t M, double scale) { run(data, M, scale, false); }

}  // namespace dft
}  // namespace eleaf
