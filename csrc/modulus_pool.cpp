// eleaf._C: squared modulus fused with the strided Gaussian pooling of the Gabor filterbank
// (SPEC §3, §4), CPU. The convolution itself runs in ATen (eleaf/ops/gabor_cpu.py): this
// kernel replaces the reference's ``re**2 + im**2`` pass and its depthwise pooling conv1d, so
// the squared modulus is never written to memory.
//
// Ops (fake kernels and autograd in eleaf/ops/gabor_cpu.py):
//
//   eleaf::modulus_pool_fwd(y, win, int stride, int lo, int hi, int frames, bool interleaved)
//       -> out
//     y      Gabor responses at N consecutive convolution steps, either
//            (B, 2n, N): real parts of the n filters, then their imaginary parts (a conv1d
//            output), or, with interleaved, (B, n, N, 2) (torch.view_as_real of a complex
//            (B, n, N)); any strides
//     win    (n, W) pooling windows
//     e[p]   = re[p]^2 + im[p]^2 for lo <= p < hi, 0 elsewhere (the pooling's zero padding)
//     out    (B, n, T), T = frames <= (N - W) / stride + 1:
//            out[b, f, t] = sum_q win[f, q] * e[b, f, t * stride + q]
//
//   eleaf::modulus_pool_bwd(grad, y, win, int stride, int lo, int hi, bool interleaved)
//       -> (grad_y, grad_win)
//     a[p] = sum_t grad[t] * win[p - t * stride];  grad re = 2 a re, grad im = 2 a im
//     (zero outside [lo, hi) and beyond the last frame's window), in y's shape (contiguous);
//     grad_win[f, q] = sum_{b, t} grad[b, f, t] e[b, f, t * stride + q]
//
// Parallel over filters (at::parallel_for): each filter's rows of all examples are handled by
// one thread, so grad_win is reduced without atomics and the result does not depend on the
// number of threads. Per row, e is computed once into a thread-local buffer. float32 and
// float64, computed in the input dtype; dot products use 16 partial sums (vectorisable), 4
// for windows of at most 32 taps. The row kernels are compiled for AVX-512, AVX2 and
// baseline x86-64 and chosen at load time (GCC function multiversioning) where the compiler
// supports it.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "cpu_math.h"
#include "filterbank_rows.h"

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

namespace eleaf {
namespace {

// windows of at most this many taps are "short" (see dot), of at most kTinyWindow "tiny"
// (see bwd_row)
constexpr int64_t kShortWindow = 32;
constexpr int64_t kTinyWindow = 8;

// sum_i a[i] b[i]: 4 partial sums up to kShortWindow values, else 16 (one AVX-512 register of
// floats), added pairwise
template <typename T>
ELEAF_ALWAYS_INLINE T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  if (n <= kShortWindow) {  // 4 partial sums (the 16 of long windows cost more to add up)
    T acc[4] = {};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      for (int j = 0; j < 4; ++j) acc[j] += a[i + j] * b[i + j];
    }
    T sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
  }
  constexpr int L = 16;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    for (int j = 0; j < L; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int w = L / 2; w > 0; w /= 2) {
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  T sum = acc[0];
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

template <typename T>
ELEAF_ALWAYS_INLINE void axpy(T alpha, const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Whether re and im of a row are interleaved pairs (a view_as_real row: step 2, im = re + 1).
template <typename T>
ELEAF_ALWAYS_INLINE bool pairs(const T* re, const T* im, int64_t step) {
  return step == 2 && im == re + 1;
}

// e[p] = re^2 + im^2 on [lo, hi), 0 elsewhere. The two memory layouts of the callers (pairs,
// or planar rows of step 1) have their own loops, which the compiler vectorises.
template <typename T>
ELEAF_ALWAYS_INLINE void squared_modulus(const Row<T>& y, const Geometry& g, T* __restrict e) {
  std::fill(e, e + g.lo, T(0));
  if (pairs(y.re, y.im, y.step)) {
    const T* __restrict z = y.re;
    for (int64_t p = g.lo; p < g.hi; ++p) e[p] = z[2 * p] * z[2 * p] + z[2 * p + 1] * z[2 * p + 1];
  } else if (y.step == 1) {
    const T* __restrict re = y.re;
    const T* __restrict im = y.im;
    for (int64_t p = g.lo; p < g.hi; ++p) e[p] = re[p] * re[p] + im[p] * im[p];
  } else {
    for (int64_t p = g.lo; p < g.hi; ++p) {
      const T r = y.re[p * y.step], i = y.im[p * y.step];
      e[p] = r * r + i * i;
    }
  }
  std::fill(e + g.hi, e + g.N, T(0));
}

template <typename T>
ELEAF_ALWAYS_INLINE void fwd_row(const Row<T>& y, const T* w, T* out, T* e, const Geometry& g) {
  squared_modulus(y, g, e);
  for (int64_t t = 0; t < g.T; ++t) out[t] = dot(w, e + t * g.stride, g.W);
}

// a: scratch (N); writes the row's gradient (gre, gim at steps p * gstep) and adds to gw
template <typename T>
ELEAF_ALWAYS_INLINE void bwd_row(const T* gy, const Row<T>& y, const T* w, T* gw, T* gre, T* gim,
                                 int64_t gstep, T* e, T* a, const Geometry& g) {
  squared_modulus(y, g, e);
  std::fill(a, a + g.N, T(0));
  if (g.W <= kTinyWindow) {  // the window's gradient in a local array, not through memory
    T acc[kTinyWindow] = {};
    for (int64_t t = 0; t < g.T; ++t) {
      const T* et = e + t * g.stride;
      T* at = a + t * g.stride;
      for (int64_t q = 0; q < g.W; ++q) {
        at[q] += gy[t] * w[q];
        acc[q] += gy[t] * et[q];
      }
    }
    for (int64_t q = 0; q < g.W; ++q) gw[q] += acc[q];
  } else {
    for (int64_t t = 0; t < g.T; ++t) {
      axpy(gy[t], w, a + t * g.stride, g.W);
      axpy(gy[t], e + t * g.stride, gw, g.W);
    }
  }
  // gradient 2 a re, 2 a im on [lo, hi), 0 elsewhere
  for (int64_t p = 0; p < g.lo; ++p) gre[p * gstep] = gim[p * gstep] = T(0);
  if (pairs(y.re, y.im, y.step) && pairs<T>(gre, gim, gstep)) {
    const T* __restrict z = y.re;
    T* __restrict gz = gre;
    for (int64_t p = g.lo; p < g.hi; ++p) {
      gz[2 * p] = T(2) * a[p] * z[2 * p];
      gz[2 * p + 1] = T(2) * a[p] * z[2 * p + 1];
    }
  } else {
    for (int64_t p = g.lo; p < g.hi; ++p) {
      gre[p * gstep] = T(2) * a[p] * y.re[p * y.step];
      gim[p * gstep] = T(2) * a[p] * y.im[p * y.step];
    }
  }
  for (int64_t p = g.hi; p < g.N; ++p) gre[p * gstep] = gim[p * gstep] = T(0);
}

ELEAF_MULTIVERSION void fwd_row_f32(const Row<float>& y, const float* w, float* out, float* e,
                                    const Geometry& g) {
  fwd_row(y, w, out, e, g);
}
ELEAF_MULTIVERSION void fwd_row_f64(const Row<double>& y, const double* w, double* out,
                                    double* e, const Geometry& g) {
  fwd_row(y, w, out, e, g);
}
ELEAF_MULTIVERSION void bwd_row_f32(const float* gy, const Row<float>& y, const float* w,
                                    float* gw, float* gre, float* gim, int64_t gstep, float* e,
                                    float* a, const Geometry& g) {
  bwd_row(gy, y, w, gw, gre, gim, gstep, e, a, g);
}
ELEAF_MULTIVERSION void bwd_row_f64(const double* gy, const Row<double>& y, const double* w,
                                    double* gw, double* gre, double* gim, int64_t gstep,
                                    double* e, double* a, const Geometry& g) {
  bwd_row(gy, y, w, gw, gre, gim, gstep, e, a, g);
}

// Row (b, f) of y: (B, 2n, N) with re in channel f and im in channel n + f, or (B, n, N, 2)
template <typename T>
Row<T> row_of(const T* base, const at::IntArrayRef strides, bool interleaved, int64_t n,
              int64_t b, int64_t f) {
  const T* re = base + b * strides[0] + f * strides[1];
  const T* im = interleaved ? re + strides[3] : re + n * strides[1];
  return {re, im, strides[2]};
}

void check_inputs(const at::Tensor& y, const at::Tensor& win, int64_t stride, int64_t lo,
                  int64_t hi, bool interleaved, const char* op) {
  TORCH_CHECK(interleaved ? (y.dim() == 4 && y.size(3) == 2) : (y.dim() == 3 && y.size(1) % 2 == 0),
              op, ": y must be (B, 2n, N), or (B, n, N, 2) with interleaved, got ", y.sizes());
  const int64_t n = interleaved ? y.size(1) : y.size(1) / 2;
  TORCH_CHECK(win.dim() == 2 && win.size(0) == n, op, ": win must be (n, W) with n = ", n,
              ", got ", win.sizes());
  TORCH_CHECK(y.scalar_type() == win.scalar_type(), op, ": y and win must have one dtype");
  TORCH_CHECK(y.scalar_type() == at::kFloat || y.scalar_type() == at::kDouble, op,
              ": float32 or float64 only, got ", y.scalar_type());
  TORCH_CHECK(y.device().is_cpu() && win.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
  TORCH_CHECK(win.size(1) >= 1 && win.size(1) <= y.size(2), op, ": window size ", win.size(1),
              " must be between 1 and the number of steps ", y.size(2));
  TORCH_CHECK(0 <= lo && lo <= hi && hi <= y.size(2), op, ": need 0 <= lo <= hi <= N, got ",
              lo, ", ", hi, ", N = ", y.size(2));
}

Geometry make_geometry(const at::Tensor& y, const at::Tensor& win, int64_t stride, int64_t lo,
                       int64_t hi, int64_t frames, bool interleaved, const char* op) {
  Geometry g;
  g.B = y.size(0);
  g.n = interleaved ? y.size(1) : y.size(1) / 2;
  g.N = y.size(2);
  g.W = win.size(1);
  g.T = frames;
  g.stride = stride;
  g.lo = lo;
  g.hi = hi;
  TORCH_CHECK(frames >= 0 && (frames == 0 || (frames - 1) * stride + g.W <= g.N), op,
              ": ", frames, " frames of stride ", stride, " and window ", g.W,
              " do not fit in ", g.N, " steps");
  return g;
}

at::Tensor modulus_pool_fwd_cpu(const at::Tensor& y, const at::Tensor& win_, int64_t stride,
                                int64_t lo, int64_t hi, int64_t frames, bool interleaved) {
  const char* op = "eleaf::modulus_pool_fwd";
  check_inputs(y, win_, stride, lo, hi, interleaved, op);
  const at::Tensor win = win_.contiguous();
  const Geometry g = make_geometry(y, win, stride, lo, hi, frames, interleaved, op);
  at::Tensor out = at::empty({g.B, g.n, g.T}, y.options().memory_format(
                                                  at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "modulus_pool_fwd_cpu", [&] {
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* wp = win.data_ptr<scalar_t>();
    scalar_t* op_ = out.data_ptr<scalar_t>();
    at::parallel_for(0, g.n, 1, [&](int64_t f0, int64_t f1) {
      std::vector<scalar_t> e(g.N);
      for (int64_t f = f0; f < f1; ++f) {
        for (int64_t b = 0; b < g.B; ++b) {
          pool_row_fwd(row_of(yp, y.strides(), interleaved, g.n, b, f), wp + f * g.W,
                      op_ + (b * g.n + f) * g.T, e.data(), g);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> modulus_pool_bwd_cpu(const at::Tensor& grad_,
                                                        const at::Tensor& y,
                                                        const at::Tensor& win_, int64_t stride,
                                                        int64_t lo, int64_t hi,
                                                        bool interleaved) {
  const char* op = "eleaf::modulus_pool_bwd";
  check_inputs(y, win_, stride, lo, hi, interleaved, op);
  const at::Tensor win = win_.contiguous();
  TORCH_CHECK(grad_.dim() == 3 && grad_.scalar_type() == y.scalar_type(), op,
              ": grad must be (B, n, T) of y's dtype, got ", grad_.sizes(), " ",
              grad_.scalar_type());
  const Geometry g = make_geometry(y, win, stride, lo, hi, grad_.size(2), interleaved, op);
  TORCH_CHECK(grad_.size(0) == g.B && grad_.size(1) == g.n, op, ": grad must be (", g.B, ", ",
              g.n, ", T), got ", grad_.sizes());
  const at::Tensor grad = grad_.contiguous();
  auto opts = y.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor grad_y = at::empty(y.sizes(), opts);
  at::Tensor grad_win = at::zeros({g.n, g.W}, opts);
  if (y.numel() == 0) return {grad_y, grad_win};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "modulus_pool_bwd_cpu", [&] {
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* wp = win.data_ptr<scalar_t>();
    scalar_t* gyp = grad_y.data_ptr<scalar_t>();
    scalar_t* gwp = grad_win.data_ptr<scalar_t>();
    at::parallel_for(0, g.n, 1, [&](int64_t f0, int64_t f1) {
      std::vector<scalar_t> e(g.N), a(g.N);
      for (int64_t f = f0; f < f1; ++f) {
        for (int64_t b = 0; b < g.B; ++b) {
          Row<scalar_t> gr = row_of<scalar_t>(gyp, grad_y.strides(), interleaved, g.n, b, f);
          pool_row_bwd(gp + (b * g.n + f) * g.T, row_of(yp, y.strides(), interleaved, g.n, b, f),
                      wp + f * g.W, gwp + f * g.W, const_cast<scalar_t*>(gr.re),
                      const_cast<scalar_t*>(gr.im), gr.step, e.data(), a.data(), g);
        }
      }
    });
  });
  return {grad_y, grad_win};
}

}  // namespace

void pool_row_fwd(const Row<float>& y, const float* w, float* out, float* e,
                  const Geometry& g) {
  fwd_row_f32(y, w, out, e, g);
}
void pool_row_fwd(const Row<double>& y, const double* w, double* out, double* e,
                  const Geometry& g) {
  fwd_row_f64(y, w, out, e, g);
}
void pool_row_bwd(const float* gy, const Row<float>& y, const float* w, float* gw, float* gre,
                  float* gim, int64_t gstep, float* e, float* a, const Geometry& g) {
  bwd_row_f32(gy, y, w, gw, gre, gim, gstep, e, a, g);
}
void pool_row_bwd(const double* gy, const Row<double>& y, const double* w, double* gw,
                  double* gre, double* gim, int64_t gstep, double* e, double* a,
                  const Geometry& g) {
  bwd_row_f64(gy, y, w, gw, gre, gim, gstep, e, a, g);
}

}  // namespace eleaf

TORCH_LIBRARY_FRAGMENT(eleaf, m) {
  m.def("modulus_pool_fwd(Tensor y, Tensor win, int stride, int lo, int hi, int frames, "
        "bool interleaved) -> Tensor");
  m.def("modulus_pool_bwd(Tensor grad, Tensor y, Tensor win, int stride, int lo, int hi, "
        "bool interleaved) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("modulus_pool_fwd", &eleaf::modulus_pool_fwd_cpu);
  m.impl("modulus_pool_bwd", &eleaf::modulus_pool_bwd_cpu);
}
