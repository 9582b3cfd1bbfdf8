// eleaf._C: the frequency-domain path of the CPU Gabor filterbank (eleaf/ops/gabor_cpu.py) for
// one filter group in one op per direction: segments of the input and their spectra, product
// with the filter spectra and stride fold, inverse FFT, squared modulus and pooling, one
// (block, filter, example) row at a time in per-thread buffers. Nothing of size (B, n, N) is
// written: a row stays in the cache between its steps, and the backward pass recomputes it
// instead of reading a stored one. The FFTs are oneMKL's (mkl_dft.h).
//
// Ops (complex numbers as (..., 2) real pairs; fake kernels and autograd in
// eleaf/ops/gabor_cpu.py):
//
//   eleaf::spectral_pool_fwd(x, h, win, int stride, int pool_stride, int block_frames,
//                            int start, int first_step, int steps_total, int frames,
//                            int chunk_values) -> out
//     x    (B, L) zero-padded input signal
//     h    (n, N, 2) filter spectra, N divisible by s = stride; M = N / s steps per block
//     win  (n, W) pooling windows; P = pool_stride, T = frames, fb = block_frames
//     Block k = 0 ... ceil(T / fb) - 1 holds frames [k fb, min(T, (k + 1) fb)); its segment
//     is x[b, o_k : o_k + N], o_k = start + k fb P s, with spectrum X = fft_N(segment), and
//     its steps p = 0 ... M - 1 are the signal's convolution steps g = first_step + k fb P + p:
//       z[p]  = ifft_M(sum_{j < s} X[q + j M] h[f, q + j M])[p]   (1/M normalised)
//       e[p]  = |z[p]|^2 for 0 <= g < steps_total, 0 elsewhere (the pooling's zero padding)
//       out[b, f, k fb + t] = sum_w win[f, w] e[t P + w]
//     The segment spectra are computed for a chunk of blocks at a time, at most about
//     chunk_values complex values (at least one block): memory stays bounded for long inputs.
//
//   eleaf::spectral_pool_bwd(grad, x, h, win, <the same ints but frames>, bool need_x,
//                            bool need_h, bool need_win) -> (grad_x, grad_h, grad_win)
//     the gradients of out (PyTorch's convention for complex tensors); an output not needed
//     is an empty tensor.
//
//   eleaf::spectral_pool_unavailable() -> str
//     "" where the ops run, else why not.
//
// Parallel over (block, filter, example) rows in the forward pass and over filters (grad_h,
// grad_win) or examples (grad_x) in the backward pass: every output element is written by
// one thread in a fixed order, whatever the number of threads (deterministic). float32 and
// float64.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "filterbank_rows.h"
#include "mkl_dft.h"

namespace eleaf {
namespace {

struct Plan {
  int64_t B, n, L, N, M, s, W, P, T, fb, blocks, start, first_step, steps_total;
  int64_t chunk;  // blocks whose segment spectra are held at once

  int64_t offset(int64_t k) const { return start + k * fb * P * s; }

  // pooling geometry of block k: its frames and its steps inside the signal
  Geometry pool(int64_t k) const {
    const int64_t g0 = first_step + k * fb * P;
    const int64_t lo = std::min(M, std::max<int64_t>(0, -g0));
    const int64_t hi = std::max(lo, std::min(M, steps_total - g0));
    return Geometry{B, n, M, W, std::min(fb, T - k * fb), P, lo, hi};
  }
};

Plan check(const at::Tensor& x, const at::Tensor& h, const at::Tensor& win, int64_t stride,
           int64_t pool_stride, int64_t block_frames, int64_t start, int64_t first_step,
           int64_t steps_total, int64_t frames, int64_t chunk_values, const char* op) {
  TORCH_CHECK(dft::available(), op, ": ", dft::reason());
  TORCH_CHECK(x.dim() == 2, op, ": x must be (B, L), got ", x.dim(), " dimensions");
  TORCH_CHECK(h.dim() == 3 && h.size(2) == 2, op, ": h must be (n, N, 2), got ", h.dim(),
              " dimensions");
  TORCH_CHECK(win.dim() == 2 && win.size(0) == h.size(0), op, ": win must be (n, W) with n = ",
              h.size(0));
  TORCH_CHECK(x.scalar_type() == h.scalar_type() && x.scalar_type() == win.scalar_type() &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              op, ": x, h and win must all be float32 or all float64");
  TORCH_CHECK(x.device().is_cpu() && h.device().is_cpu() && win.device().is_cpu(), op,
              ": CPU tensors only");
  Plan p;
  p.B = x.size(0);
  p.L = x.size(1);
  p.n = h.size(0);
  p.N = h.size(1);
  p.s = stride;
  p.W = win.size(1);
  p.P = pool_stride;
  p.T = frames;
  p.fb = block_frames;
  p.start = start;
  p.first_step = first_step;
  p.steps_total = steps_total;
  TORCH_CHECK(stride >= 1 && p.N >= stride && p.N % stride == 0, op, ": N = ", p.N,
              " must be a positive multiple of the stride ", stride);
  p.M = p.N / stride;
  TORCH_CHECK(pool_stride >= 1 && block_frames >= 1 && frames >= 0, op,
              ": pool_stride and block_frames must be >= 1 and frames >= 0");
  TORCH_CHECK(p.W >= 1 && (block_frames - 1) * pool_stride + p.W <= p.M, op, ": ",
              block_frames, " frames of stride ", pool_stride, " and window ", p.W,
              " do not fit in M = ", p.M, " steps");
  p.blocks = (frames + block_frames - 1) / block_frames;
  TORCH_CHECK(p.blocks == 0 || (start >= 0 && p.offset(p.blocks - 1) + p.N <= p.L), op,
              ": the segments of ", p.blocks, " blocks from sample ", start,
              " do not fit in x of ", p.L, " samples");
  p.chunk = std::max<int64_t>(1, chunk_values / std::max<int64_t>(1, p.B * p.N));
  return p;
}

// Spectra of the (example, block) segments of blocks [k0, k1): X (B, k1 - k0, N, 2), row
// b (k1 - k0) + k - k0. Every element is written below (no zero fill first).
template <typename T>
std::unique_ptr<T[]> segment_spectra(const T* x, const Plan& p, int64_t k0, int64_t k1) {
  const int64_t nk = k1 - k0;
  std::unique_ptr<T[]> X(new T[2 * p.B * nk * p.N]);
  at::parallel_for(0, p.B * nk, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* seg = x + (r / nk) * p.L + p.offset(k0 + r % nk);
      T* out = X.get() + 2 * r * p.N;
      for (int64_t i = 0; i < p.N; ++i) {
        out[2 * i] = seg[i];
        out[2 * i + 1] = T(0);
      }
      dft::forward(out, p.N, 1.0);
    }
  });
  return X;
}

// z = ifft_M(sum_j X[q + j M] h[q + j M]) of one row
template <typename T>
void response(const T* X, const T* h, T* z, const Plan& p) {
  cmul_any(X, h, z, p.M);
  for (int64_t j = 1; j < p.s; ++j) cmul_add_any(X + 2 * j * p.M, h + 2 * j * p.M, z, p.M);
  dft::backward(z, p.M, 1.0 / static_cast<double>(p.M));
}

// Per-thread buffers: z, its gradient gz (2M each), e, a (M each), gw (W), gX (2N).
template <typename T>
struct Scratch {
  std::vector<T> z, gz, e, a, gw, gX;
  Scratch(const Plan& p, bool backward, bool input_grad = false)
      : z(2 * p.M), gz(backward ? 2 * p.M : 0), e(p.M), a(backward ? p.M : 0),
        gw(backward ? p.W : 0), gX(input_grad ? 2 * p.N : 0) {}
};

// Into s.gz: the gradient of the row's folded product, (1/M) fft_M(dL/dz), for the upstream
// gradient gy of the block's frames; the window's gradient is added to gw.
template <typename T>
void row_grad(const T* gy, const T* X, const T* h, const T* w, T* gw, Scratch<T>& s,
              const Geometry& g, const Plan& p) {
  response(X, h, s.z.data(), p);
  const T* z = s.z.data();
  pool_row_bwd(gy, Row<T>{z, z + 1, 2}, w, gw, s.gz.data(), s.gz.data() + 1, 2, s.e.data(),
               s.a.data(), g);
  dft::forward(s.gz.data(), p.M, 1.0 / static_cast<double>(p.M));
}

at::Tensor spectral_pool_fwd_cpu(const at::Tensor& x_, const at::Tensor& h_,
                                 const at::Tensor& win_, int64_t stride, int64_t pool_stride,
                                 int64_t block_frames, int64_t start, int64_t first_step,
                                 int64_t steps_total, int64_t frames, int64_t chunk_values) {
  const Plan p = check(x_, h_, win_, stride, pool_stride, block_frames, start, first_step,
                       steps_total, frames, chunk_values, "eleaf::spectral_pool_fwd");
  const at::Tensor x = x_.contiguous(), h = h_.contiguous(), win = win_.contiguous();
  at::Tensor out = at::empty({p.B, p.n, p.T}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_pool_fwd_cpu", [&] {
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* wp = win.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for (int64_t k0 = 0; k0 < p.blocks; k0 += p.chunk) {
      const int64_t nk = std::min(p.chunk, p.blocks - k0);
      const auto X = segment_spectra(x.data_ptr<scalar_t>(), p, k0, k0 + nk);
      // rows ordered (block, filter, example): a thread's rows share a block's input spectra
      at::parallel_for(0, nk * p.n * p.B, 1, [&](int64_t r0, int64_t r1) {
        Scratch<scalar_t> s(p, false);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t kk = r / (p.n * p.B), f = (r / p.B) % p.n, b = r % p.B;
          const int64_t k = k0 + kk;
          response(X.get() + 2 * (b * nk + kk) * p.N, hp + 2 * f * p.N, s.z.data(), p);
          const scalar_t* z = s.z.data();
          pool_row_fwd(Row<scalar_t>{z, z + 1, 2}, wp + f * p.W,
                       op + (b * p.n + f) * p.T + k * p.fb, s.e.data(), p.pool(k));
        }
      });
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_pool_bwd_cpu(
    const at::Tensor& grad_, const at::Tensor& x_, const at::Tensor& h_, const at::Tensor& win_,
    int64_t stride, int64_t pool_stride, int64_t block_frames, int64_t start,
    int64_t first_step, int64_t steps_total, int64_t chunk_values, bool need_x, bool need_h,
    bool need_win) {
  const char* op = "eleaf::spectral_pool_bwd";
  TORCH_CHECK(grad_.dim() == 3, op, ": grad must be (B, n, T), got ", grad_.dim(),
              " dimensions");
  const Plan p = check(x_, h_, win_, stride, pool_stride, block_frames, start, first_step,
                       steps_total, grad_.size(2), chunk_values, op);
  TORCH_CHECK(grad_.size(0) == p.B && grad_.size(1) == p.n &&
                  grad_.scalar_type() == x_.scalar_type(),
              op, ": grad must be (", p.B, ", ", p.n, ", T) of x's dtype");
  const at::Tensor x = x_.contiguous(), h = h_.contiguous(), win = win_.contiguous();
  const at::Tensor grad = grad_.contiguous();
  at::Tensor gx = need_x ? at::zeros_like(x) : at::empty({0}, x.options());
  at::Tensor gh = need_h ? at::zeros_like(h) : at::empty({0}, h.options());
  at::Tensor gwin = need_win ? at::zeros_like(win) : at::empty({0}, win.options());
  if (p.B == 0 || p.n == 0 || p.T == 0 || !(need_x || need_h || need_win)) {
    return {gx, gh, gwin};
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_pool_bwd_cpu", [&] {
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* wp = win.data_ptr<scalar_t>();
    scalar_t* ghp = need_h ? gh.data_ptr<scalar_t>() : nullptr;
    scalar_t* gwp = need_win ? gwin.data_ptr<scalar_t>() : nullptr;
    scalar_t* gxp = need_x ? gx.data_ptr<scalar_t>() : nullptr;
    // chunks of blocks in order: every sum below runs over (block, example) in the same order
    // whatever the chunk size
    for (int64_t k0 = 0; k0 < p.blocks; k0 += p.chunk) {
      const int64_t nk = std::min(p.chunk, p.blocks - k0);
      const auto X = segment_spectra(x.data_ptr<scalar_t>(), p, k0, k0 + nk);
      if (need_h || need_win) {
        // per filter f: grad_h[f, q + j M] = sum_{b, k} conj(X[b, k, q + j M]) gz[b, k, f, q]
        at::parallel_for(0, p.n, 1, [&](int64_t f0, int64_t f1) {
          Scratch<scalar_t> s(p, true);
          for (int64_t f = f0; f < f1; ++f) {
            scalar_t* gw = gwp ? gwp + f * p.W : s.gw.data();
            for (int64_t kk = 0; kk < nk; ++kk) {
              const int64_t k = k0 + kk;
              const Geometry g = p.pool(k);
              for (int64_t b = 0; b < p.B; ++b) {
                const scalar_t* Xbk = X.get() + 2 * (b * nk + kk) * p.N;
                row_grad(gp + (b * p.n + f) * p.T + k * p.fb, Xbk, hp + 2 * f * p.N,
                         wp + f * p.W, gw, s, g, p);
                if (!ghp) continue;
                for (int64_t j = 0; j < p.s; ++j) {
                  cmul_conj_add_any(Xbk + 2 * j * p.M, s.gz.data(),
                                    ghp + 2 * (f * p.N + j * p.M), p.M);
                }
              }
            }
          }
        });
      }
      if (need_x) {
        // per example b and block k: gX[q + j M] = sum_f conj(h[f, q + j M]) gz[b, k, f, q],
        // then x's gradient Re(N ifft_N(gX)) added to the block's segment, blocks in order
        at::parallel_for(0, p.B, 1, [&](int64_t b0, int64_t b1) {
          Scratch<scalar_t> s(p, true, true);
          for (int64_t b = b0; b < b1; ++b) {
            for (int64_t kk = 0; kk < nk; ++kk) {
              const int64_t k = k0 + kk;
              const Geometry g = p.pool(k);
              std::fill(s.gX.begin(), s.gX.end(), scalar_t(0));
              for (int64_t f = 0; f < p.n; ++f) {
                const scalar_t* hf = hp + 2 * f * p.N;
                row_grad(gp + (b * p.n + f) * p.T + k * p.fb,
                         X.get() + 2 * (b * nk + kk) * p.N, hf, wp + f * p.W, s.gw.data(), s,
                         g, p);
                for (int64_t j = 0; j < p.s; ++j) {
                  cmul_conj_add_any(hf + 2 * j * p.M, s.gz.data(), s.gX.data() + 2 * j * p.M,
                                    p.M);
                }
              }
              dft::backward(s.gX.data(), p.N, 1.0);
              scalar_t* seg = gxp + b * p.L + p.offset(k);
              for (int64_t i = 0; i < p.N; ++i) seg[i] += s.gX[2 * i];
            }
          }
        });
      }
    }
  });
  return {gx, gh, gwin};
}

std::string spectral_pool_unavailable() { return dft::reason(); }

}  // namespace
}  // namespace eleaf

TORCH_LIBRARY_FRAGMENT(eleaf, m) {
  m.def("spectral_pool_fwd(Tensor x, Tensor h, Tensor win, int stride, int pool_stride, "
        "int block_frames, int start, int first_step, int steps_total, int frames, "
        "int chunk_values) -> Tensor");
  m.def("spectral_pool_bwd(Tensor grad, Tensor x, Tensor h, Tensor win, int stride, "
        "int pool_stride, int block_frames, int start, int first_step, int steps_total, "
        "int chunk_values, bool need_x, bool need_h, bool need_win) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("spectral_pool_unavailable() -> str", &eleaf::spectral_pool_unavailable);
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("spectral_pool_fwd", &eleaf::spectral_pool_fwd_cpu);
  m.impl("spectral_pool_bwd", &eleaf::spectral_pool_bwd_cpu);
}
