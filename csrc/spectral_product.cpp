// eleaf._C: the frequency-domain product of the FFT path of the CPU Gabor filterbank
// (eleaf/ops/gabor_cpu.py), fused with the fold that applies a convolution stride s.
//
// Ops (complex numbers as (..., 2) real pairs, i.e. torch.view_as_real; fake kernels and
// autograd in eleaf/ops/gabor_cpu.py):
//
//   eleaf::spectral_fold_fwd(x, h, int stride) -> z
//     x (B, N, 2) input spectra, h (n, N, 2) filter spectra, N divisible by s = stride,
//     z (B, n, M, 2), M = N / s:  z[b, f, k] = sum_{j < s} x[b, k + j M] * h[f, k + j M]
//     (complex products). The inverse FFT of z over M points gives every s-th output of the
//     circular convolution of x and h, times s.
//
//   eleaf::spectral_fold_bwd(grad_z, x, h, int stride, bool need_x, bool need_h)
//       -> (grad_x, grad_h)
//     grad_h[f, k + j M] = sum_b conj(x[b, k + j M]) grad_z[b, f, k]
//     grad_x[b, k + j M] = sum_f conj(h[f, k + j M]) grad_z[b, f, k]
//     (PyTorch's convention for the gradient of a complex product); an output not needed is
//     an empty tensor.
//
// The reference composition ``(x[:, None] * h).view(B, n, s, M).sum(2)`` writes the full
// (B, n, N) product; here each output is accumulated in registers. Parallel over filters
// (forward, grad_h) or examples (grad_x): every output element is written by one thread,
// with a fixed summation order (deterministic). float32 (complex64) and float64. The inner
// loops are compiled for AVX-512, AVX2 and baseline x86-64 (cpu_math.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "cpu_math.h"
#include "filterbank_rows.h"

namespace eleaf {
namespace {

// z[k] = x[k] h[k] (complex, interleaved re/im), k < M
template <typename T>
ELEAF_ALWAYS_INLINE void cmul(const T* __restrict x, const T* __restrict h, T* __restrict z,
                              int64_t M) {
  for (int64_t k = 0; k < M; ++k) {
    const T xr = x[2 * k], xi = x[2 * k + 1], hr = h[2 * k], hi = h[2 * k + 1];
    z[2 * k] = xr * hr - xi * hi;
    z[2 * k + 1] = xr * hi + xi * hr;
  }
}

// z[k] += x[k] h[k] (complex, interleaved re/im), k < M
template <typename T>
ELEAF_ALWAYS_INLINE void cmul_add(const T* __restrict x, const T* __restrict h,
                                  T* __restrict z, int64_t M) {
  for (int64_t k = 0; k < M; ++k) {
    const T xr = x[2 * k], xi = x[2 * k + 1], hr = h[2 * k], hi = h[2 * k + 1];
    z[2 * k] += xr * hr - xi * hi;
    z[2 * k + 1] += xr * hi + xi * hr;
  }
}

// o[k] += conj(a[k]) g[k] (complex, interleaved re/im), k < M
template <typename T>
ELEAF_ALWAYS_INLINE void cmul_conj_add(const T* __restrict a, const T* __restrict g,
                                       T* __restrict o, int64_t M) {
  for (int64_t k = 0; k < M; ++k) {
    const T ar = a[2 * k], ai = a[2 * k + 1], gr = g[2 * k], gi = g[2 * k + 1];
    o[2 * k] += ar * gr + ai * gi;
    o[2 * k + 1] += ar * gi - ai * gr;
  }
}

// the loops above compiled for AVX-512, AVX2 and baseline x86-64 (see cpu_math.h)
ELEAF_MULTIVERSION void cmul_f32(const float* x, const float* h, float* z, int64_t M) {
  cmul(x, h, z, M);
}
ELEAF_MULTIVERSION void cmul_f64(const double* x, const double* h, double* z, int64_t M) {
  cmul(x, h, z, M);
}
ELEAF_MULTIVERSION void cmul_add_f32(const float* x, const float* h, float* z, int64_t M) {
  cmul_add(x, h, z, M);
}
ELEAF_MULTIVERSION void cmul_add_f64(const double* x, const double* h, double* z, int64_t M) {
  cmul_add(x, h, z, M);
}
ELEAF_MULTIVERSION void cmul_conj_add_f32(const float* a, const float* g, float* o, int64_t M) {
  cmul_conj_add(a, g, o, M);
}
ELEAF_MULTIVERSION void cmul_conj_add_f64(const double* a, const double* g, double* o,
                                          int64_t M) {
  cmul_conj_add(a, g, o, M);
}
struct Dims {
  int64_t B, n, N, M, s;
};

Dims check(const at::Tensor& x, const at::Tensor& h, int64_t stride, const char* op) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == 2, op, ": x must be (B, N, 2), got ", x.sizes());
  TORCH_CHECK(h.dim() == 3 && h.size(2) == 2 && h.size(1) == x.size(1), op,
              ": h must be (n, N, 2) with N = ", x.size(1), ", got ", h.sizes());
  TORCH_CHECK(x.scalar_type() == h.scalar_type() &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              op, ": x and h must both be float32 or both float64");
  TORCH_CHECK(x.device().is_cpu() && h.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(stride >= 1 && x.size(1) % stride == 0, op, ": N = ", x.size(1),
              " must be divisible by the stride ", stride);
  return {x.size(0), h.size(0), x.size(1), x.size(1) / stride, stride};
}

template <typename T>
void fold_fwd(const T* x, const T* h, T* z, const Dims& d) {
  at::parallel_for(0, d.n, 1, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f) {
      const T* hf = h + 2 * f * d.N;
      for (int64_t b = 0; b < d.B; ++b) {
        const T* xb = x + 2 * b * d.N;
        T* zo = z + 2 * (b * d.n + f) * d.M;
        cmul_any(xb, hf, zo, d.M);
        for (int64_t j = 1; j < d.s; ++j) {
          cmul_add_any(xb + 2 * j * d.M, hf + 2 * j * d.M, zo, d.M);
        }
      }
    }
  });
}

// out[r, k + j M] = sum_q conj(a[q, k + j M]) g[(q, r), k] for r in [r0, r1): the gradient of
// h (rows r = filters, q = examples) or of x (rows r = examples, q = filters)
template <typename T>
void fold_bwd(const T* a, const T* g, T* out, int64_t rows, int64_t others, bool g_row_major,
              const Dims& d) {
  at::parallel_for(0, rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* o = out + 2 * r * d.N;
      for (int64_t i = 0; i < 2 * d.N; ++i) o[i] = 0;
      for (int64_t q = 0; q < others; ++q) {
        const T* aq = a + 2 * q * d.N;
        // g is (B, n, M, 2): for the gradient of h the row is f and q is b
        const int64_t gi = g_row_major ? (r * others + q) : (q * rows + r);
        const T* gq = g + 2 * gi * d.M;
        for (int64_t j = 0; j < d.s; ++j) {
          cmul_conj_add_any(aq + 2 * j * d.M, gq, o + 2 * j * d.M, d.M);
        }
      }
    }
  });
}

at::Tensor spectral_fold_fwd_cpu(const at::Tensor& x_, const at::Tensor& h_, int64_t stride) {
  const Dims d = check(x_, h_, stride, "eleaf::spectral_fold_fwd");
  const at::Tensor x = x_.contiguous(), h = h_.contiguous();
  at::Tensor z = at::empty({d.B, d.n, d.M, 2}, x.options());
  if (z.numel() == 0) return z;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_fold_fwd_cpu", [&] {
    fold_fwd<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(),
                       d);
  });
  return z;
}

std::tuple<at::Tensor, at::Tensor> spectral_fold_bwd_cpu(const at::Tensor& grad_,
                                                         const at::Tensor& x_,
                                                         const at::Tensor& h_, int64_t stride,
                                                         bool need_x, bool need_h) {
  const char* op = "eleaf::spectral_fold_bwd";
  const Dims d = check(x_, h_, stride, op);
  TORCH_CHECK(grad_.dim() == 4 && grad_.size(0) == d.B && grad_.size(1) == d.n &&
                  grad_.size(2) == d.M && grad_.size(3) == 2 &&
                  grad_.scalar_type() == x_.scalar_type(),
              op, ": grad must be (", d.B, ", ", d.n, ", ", d.M, ", 2) of x's dtype, got ",
              grad_.sizes());
  const at::Tensor x = x_.contiguous(), h = h_.contiguous(), grad = grad_.contiguous();
  at::Tensor gx = need_x ? at::empty_like(x) : at::empty({0}, x.options());
  at::Tensor gh = need_h ? at::empty_like(h) : at::empty({0}, h.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_fold_bwd_cpu", [&] {
    if (need_h && gh.numel() > 0) {
      if (d.B == 0) {
        gh.zero_();
      } else {
        // rows: filters f; g index (b, f) = b * n + f
        fold_bwd<scalar_t>(x.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                           gh.data_ptr<scalar_t>(), d.n, d.B, false, d);
      }
    }
    if (need_x && gx.numel() > 0) {
      if (d.n == 0) {
        gx.zero_();
      } else {
        // rows: examples b; g index (b, f) = b * n + f
        fold_bwd<scalar_t>(h.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                           gx.data_ptr<scalar_t>(), d.B, d.n, true, d);
      }
    }
  });
  return {gx, gh};
}

}  // namespace

void cmul_any(const float* x, const float* h, float* z, int64_t M) { cmul_f32(x, h, z, M); }
void cmul_any(const double* x, const double* h, double* z, int64_t M) { cmul_f64(x, h, z, M); }
void cmul_add_any(const float* x, const float* h, float* z, int64_t M) {
  cmul_add_f32(x, h, z, M);
}
void cmul_add_any(const double* x, const double* h, double* z, int64_t M) {
  cmul_add_f64(x, h, z, M);
}
void cmul_conj_add_any(const float* a, const float* g, float* o, int64_t M) {
  cmul_conj_add_f32(a, g, o, M);
}
void cmul_conj_add_any(const double* a, const double* g, double* o, int64_t M) {
  cmul_conj_add_f64(a, g, o, M);
}

}  // namespace eleaf

TORCH_LIBRARY_FRAGMENT(eleaf, m) {
  m.def("spectral_fold_fwd(Tensor x, Tensor h, int stride) -> Tensor");
  m.def("spectral_fold_bwd(Tensor grad, Tensor x, Tensor h, int stride, bool need_x, "
        "bool need_h) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("spectral_fold_fwd", &eleaf::spectral_fold_fwd_cpu);
  m.impl("spectral_fold_bwd", &eleaf::spectral_fold_bwd_cpu);
}
