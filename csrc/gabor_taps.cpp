// eleaf._C: the Gabor taps of the CPU filterbank (SPEC §2), every filter at its own kernel
// size, packed into one vector, and their parameter gradients in closed form, CPU.
//
//   h_f[t] = exp(-t^2 / (2 sigma_f^2)) / (sqrt(2 pi) sigma_f) (cos + j sin)(mu_f t),
//   t = -J ... J, K_f = 2 J + 1 taps
//
// Ops (used by eleaf/ops/gabor_cpu.py, _GaborTaps; fake kernels there):
//
//   eleaf::gabor_taps_fwd(center_freqs, sigmas, int[] sizes) -> taps
//     center_freqs, sigmas (F,) rad/sample and samples; sizes (F,) odd K_f
//     taps (2 sum_f K_f,): the real taps of every filter in order (filter f's K_f values
//          from offset sum_{f' < f} K_f'), then the imaginary taps in the same order
//
//   eleaf::gabor_taps_bwd(grad, taps, sigmas, int[] sizes) -> (grad_mu, grad_sigma)
//     grad, taps as taps above (taps: the forward's output); with re, im the taps and
//     g_re, g_im their gradients,
//     grad_mu[f]    = sum_t t (g_im re - g_re im)
//     grad_sigma[f] = sum_t (g_re re + g_im im) (t^2 / sigma^3 - 1 / sigma)
//     summed in float64.
//
// The forward computes taps t >= 0 of a filter in float64 by recurrences, the envelope
// (exp(-(t+1)^2 / 2 sigma^2) = exp(-t^2 / 2 sigma^2) r^(2t+1), r = exp(-1 / 2 sigma^2)) and the
// carrier (a rotation by mu per tap), and mirrors them (real taps even, imaginary odd in
// time): one exp and one sincos per filter instead of per tap; after the J <= a few
// thousand steps of a filter the recurrences are ~1e-13 relative from the direct formula,
// far below float32 rounding. Before (torch ops on the packed taps plus autograd-free
// segment sums) the taps took about half a millisecond of EfficientLEAF 8G-opt's training
// step at 80 filters. Parallel over filters; float32 and float64.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace eleaf {
namespace {

constexpr double kSqrt2Pi = 2.5066282746310002;  // sqrt(2 pi)
// filters per parallel chunk: about this many taps
constexpr int64_t kTapsPerChunk = 4096;

// prefix sums of sizes: offsets[f] where filter f's taps start; offsets[F] = their total
std::vector<int64_t> tap_offsets(at::IntArrayRef sizes, const char* op) {
  std::vector<int64_t> offsets(sizes.size() + 1, 0);
  for (size_t f = 0; f < sizes.size(); ++f) {
    TORCH_CHECK(sizes[f] >= 1 && sizes[f] % 2 == 1, op, ": kernel sizes must be odd and >= 1, "
                "got ", sizes[f], " for filter ", f);
    offsets[f + 1] = offsets[f] + sizes[f];
  }
  return offsets;
}

void check_params(const at::Tensor& t, int64_t F, const char* name, const char* op) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == F, op, ": ", name, " must be (F,) with F = ", F,
              " (one kernel size per filter), got ", t.dim(), "-d of ", t.numel());
  TORCH_CHECK(t.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op,
              ": float32 or float64 only, got ", t.scalar_type());
}

int64_t grain(int64_t F, int64_t total) {
  return std::max<int64_t>(1, F * kTapsPerChunk / std::max<int64_t>(total, 1));
}

at::Tensor gabor_taps_fwd_cpu(const at::Tensor& mu_, const at::Tensor& sigma_,
                              at::IntArrayRef sizes) {
  const char* op = "eleaf::gabor_taps_fwd";
  const int64_t F = static_cast<int64_t>(sizes.size());
  check_params(mu_, F, "center_freqs", op);
  check_params(sigma_, F, "sigmas", op);
  TORCH_CHECK(mu_.scalar_type() == sigma_.scalar_type(), op,
              ": center_freqs and sigmas must have one dtype");
  const std::vector<int64_t> offsets = tap_offsets(sizes, op);
  const int64_t total = offsets[F];
  at::Tensor taps = at::empty({2 * total}, mu_.options());
  const at::Tensor mu = mu_.contiguous(), sigma = sigma_.contiguous();
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "gabor_taps_fwd_cpu", [&] {
    using T = scalar_t;
    const T* mp = mu.data_ptr<T>();
    const T* sp = sigma.data_ptr<T>();
    T* out = taps.data_ptr<T>();
    at::parallel_for(0, F, grain(F, total), [&](int64_t f0, int64_t f1) {
      for (int64_t f = f0; f < f1; ++f) {
        const int64_t J = sizes[f] / 2;
        T* re = out + offsets[f] + J;          // tap t of filter f: re[t], im[t]
        T* im = re + total;
        const double s = sp[f], m = mp[f];
        const double r = std::exp(-0.5 / (s * s));
        const double r2 = r * r;
        const double cm = std::cos(m), sm = std::sin(m);
        double env = 1.0 / (kSqrt2Pi * s), ratio = r;  // envelope at t, r^(2t+1)
        double c = 1.0, sn = 0.0;                      // cos, sin of mu t
        re[0] = T(env);
        im[0] = T(0);
        for (int64_t t = 1; t <= J; ++t) {
          env *= ratio;
          ratio *= r2;
          const double c1 = c * cm - sn * sm;
          sn = c * sm + sn * cm;
          c = c1;
          re[t] = re[-t] = T(env * c);
          im[t] = T(env * sn);
          im[-t] = -im[t];
        }
      }
    });
  });
  return taps;
}

std::tuple<at::Tensor, at::Tensor> gabor_taps_bwd_cpu(const at::Tensor& grad_,
                                                      const at::Tensor& taps_,
                                                      const at::Tensor& sigma_,
                                                      at::IntArrayRef sizes) {
  const char* op = "eleaf::gabor_taps_bwd";
  const int64_t F = static_cast<int64_t>(sizes.size());
  check_params(sigma_, F, "sigmas", op);
  const std::vector<int64_t> offsets = tap_offsets(sizes, op);
  const int64_t total = offsets[F];
  for (const at::Tensor* t : {&grad_, &taps_}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == 2 * total && t->device().is_cpu() &&
                    t->scalar_type() == sigma_.scalar_type(),
                op, ": grad and taps must be CPU tensors of (2 sum K_f,) = (", 2 * total,
                ",) of the sigmas' dtype, got ", t->dim(), "-d of ", t->numel(), " ",
                t->scalar_type());
  }
  at::Tensor g_mu = at::empty({F}, sigma_.options()), g_sigma = at::empty({F}, sigma_.options());
  const at::Tensor grad = grad_.contiguous(), taps = taps_.contiguous(),
                   sigma = sigma_.contiguous();
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "gabor_taps_bwd_cpu", [&] {
    using T = scalar_t;
    const T* gp = grad.data_ptr<T>();
    const T* hp = taps.data_ptr<T>();
    const T* sp = sigma.data_ptr<T>();
    T* gm = g_mu.data_ptr<T>();
    T* gs = g_sigma.data_ptr<T>();
    at::parallel_for(0, F, grain(F, total), [&](int64_t f0, int64_t f1) {
      for (int64_t f = f0; f < f1; ++f) {
        const int64_t K = sizes[f], J = K / 2, o = offsets[f];
        const T *re = hp + o, *im = hp + total + o, *g_re = gp + o, *g_im = gp + total + o;
        double mu_sum = 0, radial = 0, radial_t2 = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double t = double(k - J);
          const double r = double(g_re[k]) * re[k] + double(g_im[k]) * im[k];
          mu_sum += t * (double(g_im[k]) * re[k] - double(g_re[k]) * im[k]);
          radial += r;
          radial_t2 += t * t * r;
        }
        const double s = sp[f];
        gm[f] = T(mu_sum);
        gs[f] = T(radial_t2 / (s * s * s) - radial / s);
      }
    });
  });
  return {g_mu, g_sigma};
}

}  // namespace
}  // namespace eleaf

TORCH_LIBRARY_FRAGMENT(eleaf, m) {
  m.def("gabor_taps_fwd(Tensor center_freqs, Tensor sigmas, int[] sizes) -> Tensor");
  m.def("gabor_taps_bwd(Tensor grad, Tensor taps, Tensor sigmas, int[] sizes) -> "
        "(Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("gabor_taps_fwd", &eleaf::gabor_taps_fwd_cpu);
  m.impl("gabor_taps_bwd", &eleaf::gabor_taps_bwd_cpu);
}
