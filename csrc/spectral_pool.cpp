// eleaf._C: the frequency-domain path of the CPU Gabor filterbank (eleaf/ops/gabor_cpu.py) in
// one op per direction: product with the filter spectra and stride fold, inverse FFT, squared
// modulus and pooling, one (example, filter) row at a time in per-thread buffers. Nothing of
// size (B, n, N) is written: the row stays in the cache between its steps, and the backward
// pass recomputes it instead of reading a stored one.
//
// Ops (complex numbers as (..., 2) real pairs; fake kernels and autograd in
// eleaf/ops/gabor_cpu.py):
//
//   eleaf::spectral_pool_fwd(x, h, win, int stride, int pool_stride, int lo, int hi,
//                            int frames) -> out
//     x (B, N, 2) input spectra, h (n, N, 2) filter spectra, win (n, W) pooling windows;
//     N divisible by s = stride, M = N / s;
//     z[b, f] = ifft_M(sum_{j < s} x[b, k + j M] h[f, k + j M])  (1/M normalised, M steps)
//     e = |z|^2 on steps [lo, hi), 0 elsewhere
//     out (B, n, T), T = frames:  out[b, f, t] = sum_q win[f, q] e[b, f, t * pool_stride + q]
//     i.e. eleaf::spectral_fold_fwd, torch.fft.ifft and eleaf::modulus_pool_fwd composed.
//
//   eleaf::spectral_pool_bwd(grad, x, h, win, int stride, int pool_stride, int lo, int hi,
//                            bool need_x, bool need_h, bool need_win)
//       -> (grad_x, grad_h, grad_win)
//     the gradients of that composition (PyTorch's convention for complex tensors); an
//     output not needed is an empty tensor.
//
//   eleaf::spectral_pool_unavailable() -> str
//     "" where the ops run, else why not (the FFTs are oneMKL's, see mkl_dft.h).
//
// Parallel over (filter, example) rows in the forward pass and over filters (grad_h,
// grad_win) or examples (grad_x) in the backward pass: each output element is written by
// one thread in a fixed order (deterministic). float32 and float64.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "filterbank_rows.h"
#include "mkl_dft.h"

namespace eleaf {
namespace {

struct Dims {
  int64_t B, n, N, M, s;
  Geometry pool;  // pooling of one row of M steps
};

Dims check(const at::Tensor& x, const at::Tensor& h, const at::Tensor& win, int64_t stride,
           int64_t pool_stride, int64_t lo, int64_t hi, int64_t frames, const char* op) {
  TORCH_CHECK(dft::available(), op, ": ", dft::reason());
  TORCH_CHECK(x.dim() == 3 && x.size(2) == 2, op, ": x must be (B, N, 2), got ", x.sizes());
  TORCH_CHECK(h.dim() == 3 && h.size(2) == 2 && h.size(1) == x.size(1), op,
              ": h must be (n, N, 2) with N = ", x.size(1), ", got ", h.sizes());
  TORCH_CHECK(win.dim() == 2 && win.size(0) == h.size(0), op, ": win must be (n, W) with n = ",
              h.size(0), ", got ", win.sizes());
  TORCH_CHECK(x.scalar_type() == h.scalar_type() && x.scalar_type() == win.scalar_type() &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              op, ": x, h and win must all be float32 or all float64");
  TORCH_CHECK(x.device().is_cpu() && h.device().is_cpu() && win.device().is_cpu(), op,
              ": CPU tensors only");
  TORCH_CHECK(stride >= 1 && x.size(1) >= stride && x.size(1) % stride == 0, op, ": N = ",
              x.size(1), " must be a positive multiple of the stride ", stride);
  TORCH_CHECK(pool_stride >= 1, op, ": pool_stride must be >= 1, got ", pool_stride);
  Dims d;
  d.B = x.size(0);
  d.n = h.size(0);
  d.N = x.size(1);
  d.s = stride;
  d.M = d.N / stride;
  const int64_t W = win.size(1);
  TORCH_CHECK(W >= 1 && W <= d.M, op, ": window size ", W, " must be between 1 and M = ", d.M);
  TORCH_CHECK(0 <= lo && lo <= hi && hi <= d.M, op, ": need 0 <= lo <= hi <= M, got ", lo, ", ",
              hi, ", M = ", d.M);
  TORCH_CHECK(frames >= 0 && (frames == 0 || (frames - 1) * pool_stride + W <= d.M), op, ": ",
              frames, " frames of stride ", pool_stride, " and window ", W, " do not fit in ",
              d.M, " steps");
  d.pool = Geometry{d.B, d.n, d.M, W, frames, pool_stride, lo, hi};
  return d;
}

// z = ifft_M(sum_j x[k + j M] h[k + j M]) of one (example, filter) row
template <typename T>
void response(const T* x, const T* h, T* z, const Dims& d) {
  cmul_any(x, h, z, d.M);
  for (int64_t j = 1; j < d.s; ++j) cmul_add_any(x + 2 * j * d.M, h + 2 * j * d.M, z, d.M);
  dft::backward(z, d.M, 1.0 / static_cast<double>(d.M));
}

// Per-thread buffers of one row: z, its gradient gz (2M each), e, a (M each), gw (W).
template <typename T>
struct Scratch {
  std::vector<T> z, gz, e, a, gw;
  explicit Scratch(const Dims& d, bool backward)
      : z(2 * d.M), gz(backward ? 2 * d.M : 0), e(d.M), a(backward ? d.M : 0),
        gw(backward ? d.pool.W : 0) {}
};

// The gradient of the spectrum sum_j x h of row (b, f), (1/M) fft(dL/dz), into s.gz; the
// window gradient is added to gw.
template <typename T>
void row_grad(const T* gy, const T* x, const T* h, const T* w, T* gw, Scratch<T>& s,
              const Dims& d) {
  response(x, h, s.z.data(), d);
  const T* z = s.z.data();
  pool_row_bwd(gy, Row<T>{z, z + 1, 2}, w, gw, s.gz.data(), s.gz.data() + 1, 2, s.e.data(),
               s.a.data(), d.pool);
  dft::forward(s.gz.data(), d.M, 1.0 / static_cast<double>(d.M));
}

at::Tensor spectral_pool_fwd_cpu(const at::Tensor& x_, const at::Tensor& h_,
                                 const at::Tensor& win_, int64_t stride, int64_t pool_stride,
                                 int64_t lo, int64_t hi, int64_t frames) {
  const Dims d = check(x_, h_, win_, stride, pool_stride, lo, hi, frames,
                       "eleaf::spectral_pool_fwd");
  const at::Tensor x = x_.contiguous(), h = h_.contiguous(), win = win_.contiguous();
  at::Tensor out = at::empty({d.B, d.n, frames}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_pool_fwd_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* wp = win.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    // rows ordered filter-major, so that consecutive rows of a thread share a filter spectrum
    at::parallel_for(0, d.n * d.B, 1, [&](int64_t r0, int64_t r1) {
      Scratch<scalar_t> s(d, false);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t f = r / d.B, b = r % d.B;
        response(xp + 2 * b * d.N, hp + 2 * f * d.N, s.z.data(), d);
        const scalar_t* z = s.z.data();
        pool_row_fwd(Row<scalar_t>{z, z + 1, 2}, wp + f * d.pool.W,
                     op + (b * d.n + f) * frames, s.e.data(), d.pool);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_pool_bwd_cpu(
    const at::Tensor& grad_, const at::Tensor& x_, const at::Tensor& h_, const at::Tensor& win_,
    int64_t stride, int64_t pool_stride, int64_t lo, int64_t hi, bool need_x, bool need_h,
    bool need_win) {
  const char* op = "eleaf::spectral_pool_bwd";
  TORCH_CHECK(grad_.dim() == 3, op, ": grad must be (B, n, T), got ", grad_.sizes());
  const Dims d = check(x_, h_, win_, stride, pool_stride, lo, hi, grad_.size(2), op);
  TORCH_CHECK(grad_.size(0) == d.B && grad_.size(1) == d.n &&
                  grad_.scalar_type() == x_.scalar_type(),
              op, ": grad must be (", d.B, ", ", d.n, ", T) of x's dtype, got ", grad_.sizes());
  const at::Tensor x = x_.contiguous(), h = h_.contiguous(), win = win_.contiguous();
  const at::Tensor grad = grad_.contiguous();
  at::Tensor gx = need_x ? at::zeros_like(x) : at::empty({0}, x.options());
  at::Tensor gh = need_h ? at::zeros_like(h) : at::empty({0}, h.options());
  at::Tensor gwin = need_win ? at::zeros_like(win) : at::empty({0}, win.options());
  const int64_t T = d.pool.T, W = d.pool.W;
  if (d.B == 0 || d.n == 0 || T == 0) return {gx, gh, gwin};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_pool_bwd_cpu", [&] {
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* wp = win.data_ptr<scalar_t>();
    if (need_h || need_win) {
      // per filter f: grad_h[f, k + j M] = sum_b conj(x[b, k + j M]) gz[b, f, k]
      scalar_t* ghp = need_h ? gh.data_ptr<scalar_t>() : nullptr;
      scalar_t* gwp = need_win ? gwin.data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, d.n, 1, [&](int64_t f0, int64_t f1) {
        Scratch<scalar_t> s(d, true);
        for (int64_t f = f0; f < f1; ++f) {
          scalar_t* gw = gwp ? gwp + f * W : s.gw.data();
          for (int64_t b = 0; b < d.B; ++b) {
            const scalar_t* xb = xp + 2 * b * d.N;
            row_grad(gp + (b * d.n + f) * T, xb, hp + 2 * f * d.N, wp + f * W, gw, s, d);
            if (!ghp) continue;
            for (int64_t j = 0; j < d.s; ++j) {
              cmul_conj_add_any(xb + 2 * j * d.M, s.gz.data(), ghp + 2 * (f * d.N + j * d.M),
                                d.M);
            }
          }
        }
      });
    }
    if (need_x) {
      // per example b: grad_x[b, k + j M] = sum_f conj(h[f, k + j M]) gz[b, f, k]
      scalar_t* gxp = gx.data_ptr<scalar_t>();
      at::parallel_for(0, d.B, 1, [&](int64_t b0, int64_t b1) {
        Scratch<scalar_t> s(d, true);
        for (int64_t b = b0; b < b1; ++b) {
          for (int64_t f = 0; f < d.n; ++f) {
            const scalar_t* hf = hp + 2 * f * d.N;
            row_grad(gp + (b * d.n + f) * T, xp + 2 * b * d.N, hf, wp + f * W, s.gw.data(), s,
                     d);
            for (int64_t j = 0; j < d.s; ++j) {
              cmul_conj_add_any(hf + 2 * j * d.M, s.gz.data(), gxp + 2 * (b * d.N + j * d.M),
                                d.M);
            }
          }
        }
      });
    }
  });
  return {gx, gh, gwin};
}

std::string spectral_pool_unavailable() { return dft::reason(); }

}  // namespace
}  // namespace eleaf

TORCH_LIBRARY_FRAGMENT(eleaf, m) {
  m.def("spectral_pool_fwd(Tensor x, Tensor h, Tensor win, int stride, int pool_stride, "
        "int lo, int hi, int frames) -> Tensor");
  m.def("spectral_pool_bwd(Tensor grad, Tensor x, Tensor h, Tensor win, int stride, "
        "int pool_stride, int lo, int hi, bool need_x, bool need_h, bool need_win) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("spectral_pool_unavailable() -> str", &eleaf::spectral_pool_unavailable);
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("spectral_pool_fwd", &eleaf::spectral_pool_fwd_cpu);
  m.impl("spectral_pool_bwd", &eleaf::spectral_pool_bwd_cpu);
}
