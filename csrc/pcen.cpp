// eleaf._C: per-channel energy normalisation (PCEN, SPEC §6), CPU kernels.
//
// Reference: eleaf.functional.pcen_ref on the *effective* parameters (the mapping from the
// stored parameters, eleaf.functional.pcen_parameters, stays in torch, so autograd carries the
// gradients through it in both parameterisations).
//
// Ops (fake kernels and autograd in eleaf/ops/pcen_cpp.py; csrc/README.md):
//
//   eleaf::pcen_fwd(Tensor x, Tensor s, Tensor alpha, Tensor delta, Tensor r, float eps,
//                   float? clamp) -> Tensor y
//     x (..., F, T) floating, any leading axes; s, alpha, delta, r (F,) floating.
//     xc  = max(x, clamp) (torch.clamp: NaN stays NaN), or x without clamp
//     M_0 = xc_0,  M_t = (1 - s) M_{t-1} + s xc_t
//     y   = (xc exp(-alpha (ln eps + log1p(M / eps))) + delta)^r - delta^r
//     y: x's shape and dtype.
//
//   eleaf::pcen_bwd(Tensor grad, Tensor x, Tensor s, Tensor alpha, Tensor delta, Tensor r,
//                   float eps, float? clamp) -> (Tensor dx, Tensor ds, Tensor dalpha,
//                                                Tensor ddelta, Tensor dr)
//     the gradients of sum(grad * y): dx like x (zero where x < clamp; it passes at
//     equality, like torch.clamp), the others (F,) in the dtype of the respective parameter.
//     Nothing is saved by the forward: the backward recomputes M from x (one multiply-add
//     per element, interleaved over 8 rows, cheap next to the transcendental functions).
//
// Evaluation (same function, better conditioned than the literal formula; see the comment
// before fwd_general_span): L = log(M + eps) instead of ln eps + log1p(M / eps) (two ~27-sized
// terms cancelling in float32 for eps = 1e-12), and for delta > 0 and z = v + delta > 0
// (v = (xc / (M + eps)) exp((1 - alpha) L)) y = delta^r expm1(r log1p(v / delta)) instead of z^r - delta^r (all
// digits lost in float32 when v << delta); the gradients likewise. Elsewhere (delta <= 0, or
// z <= 0, where only an integer r is finite) the literal formulas with torch.pow's
// conventions, so the special values are the reference's: pow(z, r) for z < 0 is NaN unless r
// is an integer, pow(z, 0) = 1; the gradient of z^r is 0 where r = 0, that of the exponent 0
// where z = 0 and r >= 0; silence with delta = 0 and no clamp gives the reference's inf / NaN
// gradients; a smoother below -eps (s outside [0, 1] in the linear parameterisation) gives
// NaN from that frame on, as the reference (eleaf/ops/pcen.py has the findings).
//
// Precision: float32 / float16 / bfloat16 are computed in float32 with the smoother recursion
// (and its adjoint) in float64; float64 entirely in float64. 16-bit inputs: the clamp bound is
// first rounded to the input dtype (as x.clamp does), the result is rounded at the end.
// Parameter gradients: per-row partial sums in float64, reduced per band in a fixed order.
//
// CPU scheme, per group of up to 8 rows (row = one (..., f) slice over time):
//   1. the recursion for the group's rows interleaved (independent dependency chains), M
//      stored in the computation dtype;
//   2. one vectorised pass per row over t: float32 log / log1p / exp / expm1 are branch-free
//      Cephes-style polynomials (about 1-3 ulp), compiled for x86-64-v4 (AVX-512), v3
//      (AVX2 + FMA) and baseline x86-64 (target_clones, chosen at load time on x86-64 Linux
//      with GCC >= 11; AVX2 / baseline with Clang); float64 uses libm. The last T % 16 frames
//      run through the same vector code on a padded copy;
//   3. backward: the same recomputation, a vectorised pass that writes dL/dM and the direct
//      part of dL/dxc and sums the alpha / delta / r terms, then the reverse (adjoint)
//      recursion over time, lambda_t = dL/dM_t + (1 - s) lambda_{t+1}, interleaved over the
//      group, which adds s lambda_t to dx and sums lambda_t (xc_t - M_{t-1}) for ds.
// Rows are split over threads with at::parallel_for; each row's partial sums go to their own
// slot and are reduced band by band in row order, so the results do not depend on the number
// of threads (bitwise).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "cpu_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace eleaf {
namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
template <typename T>
constexpr T kInf = std::numeric_limits<T>::infinity();

// Cephes logf core: log(w) for a positive normal w (no special values), without the exponent's
// terms.
ELEAF_ALWAYS_INLINE float logf_core(float w, float& fe_out) {
  const float f = logf_reduce(w, fe_out);
  const float f2 = f * f;
  const float p = logf_poly(f);
  float y = f * f2 * p;
  y += -0.5f * f2;
  return f + y;
}

// log for float32, vectorisable; subnormals, 0 (-inf), negative (NaN), inf, NaN as std::log.
ELEAF_ALWAYS_INLINE float plog(float w) {
  const bool sub = w < 1.17549435e-38f;  // FLT_MIN: scale subnormals up by 2^23
  const float ws = bits_select(sub, w * 8388608.0f, w);
  float fe;
  float r = logf_core(ws, fe);
  fe -= bits_select(sub, 23.0f, 0.0f);
  r += -2.12194440E-4f * fe;
  r += 0.693359375f * fe;
  return logf_special(w, r);
}

// log1p for float32, vectorisable: log(w), w = 1 + u, with the correction (u - (w - 1)) / w
// for the rounding of w. About 1 ulp; NaN, +-inf, -1, -0 and u < -1 as std::log1p.
ELEAF_ALWAYS_INLINE float plog1p(float u) {
  const float w = 1.0f + u;
  float fe;
  float r = logf_core(w, fe);
  r += -2.12194440E-4f * fe;
  r += 0.693359375f * fe;
  return log1pf_finish(u, w, r);
}

// exp for float32, vectorisable (Cephes expf polynomial; 2^n applied as two factors so that
// subnormal results are rounded once). inf, -inf, NaN, overflow and underflow as std::exp.
ELEAF_ALWAYS_INLINE float pexp(float x) {
  float xc = bits_select(x < -104.0f, -104.0f, x);
  xc = bits_select(xc > 89.0f, 89.0f, xc);
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (round to nearest even, no call)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  float y = p * (r * r) + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(bits_select(xc == xc, n, 0.0f));  // [-150, 128]
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  y = y * float_from_bits(static_cast<uint32_t>(n1 + 127) << 23);
  y = y * float_from_bits(static_cast<uint32_t>(n2 + 127) << 23);
  y = bits_select(x > 89.0f, kInfF, y);
  y = bits_select(x < -104.0f, 0.0f, y);
  y = bits_select(x == x, y, x);  // NaN
  return y;
}

// expm1 for float32, vectorisable: a degree-8 Taylor polynomial for |x| < 0.35 (truncation
// below 1e-9 relative), exp(x) - 1 elsewhere (a few ulp). inf, -inf, NaN as std::expm1.
ELEAF_ALWAYS_INLINE float pexpm1(float x) {
  float p = 2.48015873e-5f;  // 1/8!
  p = p * x + 1.98412698e-4f;
  p = p * x + 1.38888889e-3f;
  p = p * x + 8.33333333e-3f;
  p = p * x + 4.16666667e-2f;
  p = p * x + 1.66666667e-1f;
  p = p * x + 0.5f;
  const float small = x + (x * x) * p;
  const float big = pexp(x) - 1.0f;
  return bits_select(std::abs(x) < 0.35f, small, big);
}

ELEAF_ALWAYS_INLINE double plog(double x) { return std::log(x); }
ELEAF_ALWAYS_INLINE double plog1p(double x) { return std::log1p(x); }
ELEAF_ALWAYS_INLINE double pexp(double x) { return std::exp(x); }
ELEAF_ALWAYS_INLINE double pexpm1(double x) { return std::expm1(x); }

// Constants of one band, in the computation dtype T.
template <typename T>
struct Band {
  T alpha, neg_alpha, one_minus_alpha, delta, r, rm1, delta_r, log_delta, eps, clamp;
  // factor of |z|^p for z < 0: +-1 for an even / odd integer p, NaN otherwise (torch.pow)
  T neg_r, neg_rm1;
  bool r_zero, rm1_zero, r_nonneg, has_clamp;
  // delta > 0 and finite: the well-conditioned evaluation (see fwd_fast_span)
  bool fast;
  // d(delta^r)/d delta = r delta^(r-1) and d(delta^r)/dr = delta^r log delta, with torch's
  // pow backward conventions (0 where r = 0, resp. where delta = 0 and r >= 0)
  T ddelta_r, drdelta_r;
};

template <typename T>
T neg_base_factor(T p) {
  if (!std::isfinite(p) || std::floor(p) != p) return std::numeric_limits<T>::quiet_NaN();
  return std::fmod(p, T(2)) != 0 ? T(-1) : T(1);
}

template <typename T>
Band<T> make_band(T alpha, T delta, T r, double eps, bool has_clamp, T clamp) {
  Band<T> b;
  b.alpha = alpha;
  b.neg_alpha = -alpha;
  b.one_minus_alpha = T(1) - alpha;
  b.delta = delta;
  b.r = r;
  b.rm1 = r - T(1);
  b.delta_r = std::pow(delta, r);
  b.eps = static_cast<T>(eps);
  b.has_clamp = has_clamp;
  b.clamp = has_clamp ? clamp : -std::numeric_limits<T>::infinity();
  b.neg_r = neg_base_factor(b.r);
  b.neg_rm1 = neg_base_factor(b.rm1);
  b.r_zero = r == T(0);
  b.rm1_zero = b.rm1 == T(0);
  b.r_nonneg = r >= T(0);
  b.fast = delta > T(0) && std::isfinite(delta) && std::isfinite(r);
  b.log_delta = b.fast ? std::log(delta) : T(0);
  b.ddelta_r = b.r_zero ? T(0) : r * std::pow(delta, b.rm1);
  b.drdelta_r = (delta == T(0) && b.r_nonneg) ? T(0) : b.delta_r * std::log(delta);
  return b;
}

// z^p from lz = log|z| (torch.pow for real z: z < 0 needs an integer p; p = 0 gives 1).
template <typename T>
ELEAF_ALWAYS_INLINE T ppow(T z, T lz, T p, T neg_factor, bool p_zero) {
  const T v = pexp(p * lz);
  return bits_select(p_zero, T(1), bits_select(z < T(0), v * neg_factor, v));
}

// Evaluation. L = log(M + eps) (= ln eps + log1p(M / eps) of the reference, the same
// -inf / NaN for M <= -eps, but without the cancellation of two ~27-sized terms in float32
// for eps = 1e-12), E = (M + eps)^-alpha, v = xc E. The fast spans compute
// E = exp((1 - alpha) L) / (M + eps) and v = (xc / (M + eps)) exp((1 - alpha) L): the
// exponential's argument is (1 - alpha) L instead of -alpha L (for alpha = 0.96, 25x smaller,
// and so is its rounding error, about |argument| ulps), and for alpha = 1 v is the correctly
// rounded quotient, as in TF LEAF's x / (M + floor)^alpha. M + eps = inf is left to the
// general spans (E = exp(-alpha L) = 0 there, as in the reference).
//
// fast (delta > 0, per element u = v / delta > -1, i.e. z = v + delta > 0):
//   y = delta^r expm1(r log1p(u))                          (no cancellation of z^r - delta^r)
//   dy/dz = r z^r / z, z^r = delta^r + y
//   dy/ddelta = r delta^(r-1) expm1((r - 1) log1p(u))     (= r z^(r-1) - r delta^(r-1))
//   dy/dr = log(delta) y + z^r log1p(u)                     (= z^r log z - delta^r log delta)
// general (delta <= 0, or z <= 0 where only an integer r gives a finite value): the
// reference's formulas with torch.pow's conventions; delta^r and its derivatives are applied
// per band to the sum of the incoming gradient over these elements, as the reference does.
// Elements with z <= 0 (or z = inf) in a fast row are flagged by the vector pass and
// recomputed by the general formulas.

// ----- forward ---------------------------------------------------------------------------

template <typename T>
ELEAF_ALWAYS_INLINE void fwd_general_span(const T* __restrict__ x, const T* __restrict__ M,
                                  T* __restrict__ y, int64_t n, const Band<T>& b) {
  const T clamp = b.clamp, eps = b.eps, neg_alpha = b.neg_alpha;
  const T delta = b.delta, r = b.r, neg_r = b.neg_r, delta_r = b.delta_r;
  const bool r_zero = b.r_zero;
#pragma omp simd
  for (int64_t t = 0; t < n; ++t) {
    const T xc = bits_select(x[t] < clamp, clamp, x[t]);
    const T L = plog(M[t] + eps);
    const T E = pexp(neg_alpha * L);
    const T z = xc * E + delta;
    const T lz = plog(std::abs(z));
    y[t] = ppow(z, lz, r, neg_r, r_zero) - delta_r;
  }
}

// returns whether an element had z <= 0 or z = inf (flagged in bad[t])
template <typename T>
ELEAF_ALWAYS_INLINE int fwd_fast_span(const T* __restrict__ x, const T* __restrict__ M,
                              T* __restrict__ y, T* __restrict__ bad, int64_t n,
                              const Band<T>& b) {
  const T clamp = b.clamp, eps = b.eps, one_minus_alpha = b.one_minus_alpha;
  const T delta = b.delta, r = b.r, delta_r = b.delta_r;
  int any = 0;
#pragma omp simd reduction(| : any)
  for (int64_t t = 0; t < n; ++t) {
    const T xc = bits_select(x[t] < clamp, clamp, x[t]);
    const T Me = M[t] + eps;
    const T L = plog(Me);
    const T u = ((xc / Me) * pexp(one_minus_alpha * L)) / delta;
    y[t] = delta_r * pexpm1(r * plog1p(u));
    const int flag = (u <= T(-1)) | (u == kInf<T>) | (Me == kInf<T>);
    bad[t] = bits_select(flag != 0, T(1), T(0));
    any |= flag;
  }
  return any;
}

// The last n % kTail elements of a row go through the vector loop too, on a padded copy of
// kTail elements (a scalar epilogue of the polynomial code would cost about as much as the
// vector loop for rows of ~100 frames).
constexpr int64_t kTail = 16;

template <typename T>
ELEAF_ALWAYS_INLINE void fwd_row_impl(const T* __restrict__ x, const T* __restrict__ M,
                              T* __restrict__ y, T* __restrict__ bad, int64_t n,
                              const Band<T>& b) {
  const int64_t nm = n - n % kTail;
  alignas(64) T xt[kTail], mt[kTail], yt[kTail];
  for (int64_t i = 0; i < kTail; ++i) {
    xt[i] = nm + i < n ? x[nm + i] : T(1);
    mt[i] = nm + i < n ? M[nm + i] : T(1);
  }
  if (!b.fast) {
    fwd_general_span<T>(x, M, y, nm, b);
    if (nm < n) fwd_general_span<T>(xt, mt, yt, kTail, b);
  } else {
    int any = fwd_fast_span<T>(x, M, y, bad, nm, b);
    if (nm < n) any |= fwd_fast_span<T>(xt, mt, yt, bad + nm, kTail, b);
    if (any) {
      for (int64_t t = 0; t < n; ++t) {
        if (bad[t] == T(0)) continue;
        if (t < nm) fwd_general_span<T>(x + t, M + t, y + t, 1, b);
        else fwd_general_span<T>(xt + (t - nm), mt + (t - nm), yt + (t - nm), 1, b);
      }
    }
  }
  for (int64_t i = 0; nm + i < n; ++i) y[nm + i] = yt[i];
}

ELEAF_CLONES_X86_64_LEVELS
void fwd_row(const float* x, const float* M, float* y, float* bad, int64_t n,
             const Band<float>& b) {
  fwd_row_impl<float>(x, M, y, bad, n, b);
}

void fwd_row(const double* x, const double* M, double* y, double* bad, int64_t n,
             const Band<double>& b) {
  fwd_row_impl<double>(x, M, y, bad, n, b);
}

// ----- backward --------------------------------------------------------------------------

// Per row sums (float64), kSums of them:
//   [0] dalpha, [1] ddelta, [2] dr (complete for fast elements; without the delta^r terms
//   for general ones), [3] sum of g over the general elements, [4] their number, [5] ds.
constexpr int64_t kSums = 6;

// Both spans write dL/dM (dM) and the direct part of dL/dxc (dxc) and add to sums[0..4];
// only elements t < nv count (the padded tail), and in the fast span only those with z > 0.
template <typename T>
ELEAF_ALWAYS_INLINE void bwd_general_span(const T* __restrict__ x, const T* __restrict__ M,
                                  const T* __restrict__ g, T* __restrict__ dM,
                                  T* __restrict__ dxc, int64_t n, int64_t nv, const Band<T>& b,
                                  double* sums) {
  const T clamp = b.clamp, eps = b.eps, neg_alpha = b.neg_alpha;
  const T delta = b.delta, r = b.r, rm1 = b.rm1, neg_r = b.neg_r, neg_rm1 = b.neg_rm1;
  const bool r_zero = b.r_zero, rm1_zero = b.rm1_zero, r_nonneg = b.r_nonneg;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  double s_a = 0, s_d = 0, s_r = 0, s_g = 0, s_n = 0;
#pragma omp simd reduction(+ : s_a, s_d, s_r, s_g, s_n)
  for (int64_t t = 0; t < n; ++t) {
    const T xc = bits_select(x[t] < clamp, clamp, x[t]);
    const T Me = M[t] + eps;
    const T L = plog(Me);
    const T E = pexp(neg_alpha * L);
    const T z = xc * E + delta;
    const T lz = plog(std::abs(z));
    const T zr = ppow(z, lz, r, neg_r, r_zero);
    const T zr1 = ppow(z, lz, rm1, neg_rm1, rm1_zero);
    const T gt = g[t];
    // torch: d z^r / dz = where(r == 0, 0, r z^(r-1));
    //        d z^r / dr = where(z == 0 & r >= 0, 0, z^r log z)
    const T gz = bits_select(r_zero, T(0), gt * (r * zr1));
    const T dr = bits_select((z == T(0)) & r_nonneg, T(0), zr * bits_select(z < T(0), nan, lz));
    const T du = (gz * xc) * E;
    dM[t] = du * neg_alpha / Me;
    dxc[t] = gz * E;
    const bool valid = t < nv;
    s_a += static_cast<double>(bits_select(valid, -(du * L), T(0)));
    s_d += static_cast<double>(bits_select(valid, gz, T(0)));
    s_r += static_cast<double>(bits_select(valid, gt * dr, T(0)));
    s_g += static_cast<double>(bits_select(valid, gt, T(0)));
    s_n += valid ? 1.0 : 0.0;
  }
  sums[0] += s_a;
  sums[1] += s_d;
  sums[2] += s_r;
  sums[3] += s_g;
  sums[4] += s_n;
}

template <typename T>
ELEAF_ALWAYS_INLINE int bwd_fast_span(const T* __restrict__ x, const T* __restrict__ M,
                              const T* __restrict__ g, T* __restrict__ dM, T* __restrict__ dxc,
                              T* __restrict__ bad, int64_t n, int64_t nv,
                              const Band<T>& b, double* sums) {
  const T clamp = b.clamp, eps = b.eps, neg_alpha = b.neg_alpha;
  const T one_minus_alpha = b.one_minus_alpha;
  const T delta = b.delta, r = b.r, rm1 = b.rm1, delta_r = b.delta_r;
  const T log_delta = b.log_delta, rdr1 = b.ddelta_r;
  double s_a = 0, s_d = 0, s_r = 0;
  // (no int reduction next to the float64 ones: GCC 12 then leaves the loop scalar)
#pragma omp simd reduction(+ : s_a, s_d, s_r)
  for (int64_t t = 0; t < n; ++t) {
    const T xc = bits_select(x[t] < clamp, clamp, x[t]);
    const T Me = M[t] + eps;
    const T L = plog(Me);
    const T w = pexp(one_minus_alpha * L);
    const T E = w / Me;
    const T v = (xc / Me) * w;
    const T u = v / delta;
    const T lz = plog1p(u);
    const T y = delta_r * pexpm1(r * lz);
    const T zr = delta_r + y;
    const T q = r * zr / (v + delta);  // dy/dz
    const T gt = g[t];
    const T gz = gt * q;
    dM[t] = (gz * v) * neg_alpha / Me;
    dxc[t] = gz * E;
    const int flag = (u <= T(-1)) | (u == kInf<T>) | (Me == kInf<T>);
    bad[t] = bits_select(flag != 0, T(1), T(0));
    const bool valid = (t < nv) & !flag;
    s_a += static_cast<double>(bits_select(valid, -(gz * v * L), T(0)));
    s_d += static_cast<double>(bits_select(valid, gt * (rdr1 * pexpm1(rm1 * lz)), T(0)));
    s_r += static_cast<double>(bits_select(valid, gt * (log_delta * y + zr * lz), T(0)));
  }
  sums[0] += s_a;
  sums[1] += s_d;
  sums[2] += s_r;
  int any = 0;
  for (int64_t t = 0; t < n; ++t) any |= bad[t] != T(0);
  return any;
}

template <typename T>
ELEAF_ALWAYS_INLINE void bwd_row_impl(const T* __restrict__ x, const T* __restrict__ M,
                              const T* __restrict__ g, T* __restrict__ dM, T* __restrict__ dxc,
                              T* __restrict__ bad, int64_t n, const Band<T>& b,
                              double* sums) {
  const int64_t nm = n - n % kTail;
  alignas(64) T xt[kTail], mt[kTail], gt[kTail], dmt[kTail], dxt[kTail];
  for (int64_t i = 0; i < kTail; ++i) {
    const bool in = nm + i < n;
    xt[i] = in ? x[nm + i] : T(1);
    mt[i] = in ? M[nm + i] : T(1);
    gt[i] = in ? g[nm + i] : T(0);
  }
  if (!b.fast) {
    bwd_general_span<T>(x, M, g, dM, dxc, nm, nm, b, sums);
    if (nm < n) bwd_general_span<T>(xt, mt, gt, dmt, dxt, kTail, n - nm, b, sums);
  } else {
    int any = bwd_fast_span<T>(x, M, g, dM, dxc, bad, nm, nm, b, sums);
    if (nm < n) any |= bwd_fast_span<T>(xt, mt, gt, dmt, dxt, bad + nm, kTail, n - nm, b, sums);
    if (any) {
      for (int64_t t = 0; t < n; ++t) {
        if (bad[t] == T(0)) continue;
        if (t < nm) {
          bwd_general_span<T>(x + t, M + t, g + t, dM + t, dxc + t, 1, 1, b, sums);
        } else {
          const int64_t i = t - nm;
          bwd_general_span<T>(xt + i, mt + i, gt + i, dmt + i, dxt + i, 1, 1, b, sums);
        }
      }
    }
  }
  for (int64_t i = 0; nm + i < n; ++i) {
    dM[nm + i] = dmt[i];
    dxc[nm + i] = dxt[i];
  }
}

ELEAF_CLONES_X86_64_LEVELS
void bwd_row(const float* x, const float* M, const float* g, float* dM, float* dxc,
             float* bad, int64_t n, const Band<float>& b, double* sums) {
  bwd_row_impl<float>(x, M, g, dM, dxc, bad, n, b, sums);
}

void bwd_row(const double* x, const double* M, const double* g, double* dM, double* dxc,
             double* bad, int64_t n, const Band<double>& b, double* sums) {
  bwd_row_impl<double>(x, M, g, dM, dxc, bad, n, b, sums);
}

// ----- the recursion and its adjoint, interleaved over a group of rows --------------------

constexpr int64_t kGroup = 8;

// M of rows k < n (row k at x + k * T), recursion in R, stored as T.
template <typename T, typename R>
void smooth_group(const T* __restrict__ x, T* __restrict__ M, int64_t n, int64_t T_,
                  const R* a, const R* s, T clamp) {
  R m[kGroup], ak[kGroup], sk[kGroup];
  for (int64_t k = 0; k < n; ++k) {
    ak[k] = a[k];
    sk[k] = s[k];
    const T x0 = x[k * T_];
    m[k] = static_cast<R>(x0 < clamp ? clamp : x0);
    M[k * T_] = static_cast<T>(m[k]);
  }
  for (int64_t t = 1; t < T_; ++t) {
    for (int64_t k = 0; k < n; ++k) {
      const T xt = x[k * T_ + t];
      const R xc = static_cast<R>(xt < clamp ? clamp : xt);
      m[k] = ak[k] * m[k] + sk[k] * xc;
      M[k * T_ + t] = static_cast<T>(m[k]);
    }
  }
}

// Adjoint of the recursion: lambda_t = dM_t + (1 - s) lambda_{t+1}; dx = mask * (dxc +
// s lambda_t) (lambda_0 at t = 0, since M_0 = xc_0), in place in dxc; ds[k] += sum over
// t >= 1 of lambda_t (xc_t - M_{t-1}).
template <typename T, typename R>
void adjoint_group(const T* __restrict__ x, const T* __restrict__ M, const T* __restrict__ dM,
                   T* __restrict__ dxc, int64_t n, int64_t T_, const R* a, const R* s,
                   bool has_clamp, T clamp, double* ds) {
  R lam[kGroup], ak[kGroup], sk[kGroup];
  double dsk[kGroup];
  for (int64_t k = 0; k < n; ++k) {
    lam[k] = 0;
    ak[k] = a[k];
    sk[k] = s[k];
    dsk[k] = 0;
  }
  for (int64_t t = T_ - 1; t >= 1; --t) {
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = k * T_ + t;
      lam[k] = static_cast<R>(dM[i]) + ak[k] * lam[k];
      const T xt = x[i];
      const T xc = xt < clamp ? clamp : xt;
      dsk[k] += static_cast<double>(lam[k] * (static_cast<R>(xc) - static_cast<R>(M[i - 1])));
      const T d = static_cast<T>(static_cast<R>(dxc[i]) + sk[k] * lam[k]);
      dxc[i] = (!has_clamp || xt >= clamp) ? d : T(0);
    }
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = k * T_;
    lam[k] = static_cast<R>(dM[i]) + ak[k] * lam[k];
    const T d = static_cast<T>(static_cast<R>(dxc[i]) + lam[k]);
    dxc[i] = (!has_clamp || x[i] >= clamp) ? d : T(0);
    ds[k] += dsk[k];
  }
}

// ----- drivers ---------------------------------------------------------------------------

struct Layout {
  int64_t rows = 0, T = 0, F = 1;
};

// rows per parallel_for grain: about 4096 elements, at least one group
int64_t grain_rows(int64_t T) { return std::max<int64_t>(kGroup, 4096 / std::max<int64_t>(T, 1)); }

// Rows interleaved in the recursion: 8, fewer for very long rows (scratch is 8 rows per
// buffer per thread).
int64_t group_rows(int64_t T) {
  return std::max<int64_t>(1, std::min<int64_t>(kGroup, (int64_t(1) << 20) / std::max<int64_t>(T, 1)));
}

template <typename T, typename R>
struct BandTables {
  std::vector<Band<T>> band;
  std::vector<R> a, s;  // 1 - s and s in the recursion dtype
};

// scalar_t: tensor dtype; T: computation dtype; R: recursion dtype
template <typename scalar_t, typename T, typename R>
void fwd_kernel(const scalar_t* x, scalar_t* y, const Layout L, const BandTables<T, R>& P) {
  constexpr bool same = std::is_same<scalar_t, T>::value;
  const int64_t T_ = L.T, F = L.F;
  const int64_t G = group_rows(T_);
  at::parallel_for(0, L.rows, grain_rows(T_), [&](int64_t r0, int64_t r1) {
    std::vector<T> mbuf(G * T_), xbuf(same ? 0 : G * T_), ybuf(same ? 0 : G * T_);
    std::vector<T> bad(T_ + kTail);  // 1 where z <= 0 (same width as T: full vectors)
    R a[kGroup], s[kGroup];
    for (int64_t g0 = r0; g0 < r1; g0 += G) {
      const int64_t n = std::min(G, r1 - g0);
      const T* xs;
      if constexpr (same) {
        xs = x + g0 * T_;
      } else {
        for (int64_t i = 0; i < n * T_; ++i) xbuf[i] = static_cast<T>(x[g0 * T_ + i]);
        xs = xbuf.data();
      }
      for (int64_t k = 0; k < n; ++k) {
        a[k] = P.a[(g0 + k) % F];
        s[k] = P.s[(g0 + k) % F];
      }
      smooth_group<T, R>(xs, mbuf.data(), n, T_, a, s, P.band[g0 % F].clamp);
      for (int64_t k = 0; k < n; ++k) {
        const Band<T>& b = P.band[(g0 + k) % F];
        if constexpr (same) {
          fwd_row(xs + k * T_, mbuf.data() + k * T_, y + (g0 + k) * T_, bad.data(), T_, b);
        } else {
          fwd_row(xs + k * T_, mbuf.data() + k * T_, ybuf.data() + k * T_, bad.data(), T_,
                  b);
        }
      }
      if constexpr (!same) {
        for (int64_t i = 0; i < n * T_; ++i) y[g0 * T_ + i] = static_cast<scalar_t>(ybuf[i]);
      }
    }
  });
}

template <typename scalar_t, typename T, typename R>
void bwd_kernel(const scalar_t* gy, const scalar_t* x, scalar_t* dx, double* sums, const Layout L,
                const BandTables<T, R>& P) {
  constexpr bool same = std::is_same<scalar_t, T>::value;
  const int64_t T_ = L.T, F = L.F;
  const int64_t G = group_rows(T_);
  at::parallel_for(0, L.rows, grain_rows(T_), [&](int64_t r0, int64_t r1) {
    std::vector<T> mbuf(G * T_), dmbuf(G * T_);
    std::vector<T> bad(T_ + kTail);  // 1 where z <= 0 (same width as T: full vectors)
    std::vector<T> xbuf(same ? 0 : G * T_), gbuf(same ? 0 : G * T_), dxbuf(same ? 0 : G * T_);
    R a[kGroup], s[kGroup];
    double ds[kGroup];
    for (int64_t g0 = r0; g0 < r1; g0 += G) {
      const int64_t n = std::min(G, r1 - g0);
      const T *xs, *gs;
      T* dxs;
      if constexpr (same) {
        xs = x + g0 * T_;
        gs = gy + g0 * T_;
        dxs = dx + g0 * T_;
      } else {
        for (int64_t i = 0; i < n * T_; ++i) {
          xbuf[i] = static_cast<T>(x[g0 * T_ + i]);
          gbuf[i] = static_cast<T>(gy[g0 * T_ + i]);
        }
        xs = xbuf.data();
        gs = gbuf.data();
        dxs = dxbuf.data();
      }
      for (int64_t k = 0; k < n; ++k) {
        a[k] = P.a[(g0 + k) % F];
        s[k] = P.s[(g0 + k) % F];
        ds[k] = 0;
      }
      const Band<T>& b0 = P.band[g0 % F];
      smooth_group<T, R>(xs, mbuf.data(), n, T_, a, s, b0.clamp);
      for (int64_t k = 0; k < n; ++k) {
        double* row_sums = sums + (g0 + k) * kSums;
        bwd_row(xs + k * T_, mbuf.data() + k * T_, gs + k * T_, dmbuf.data() + k * T_,
                dxs + k * T_, bad.data(), T_, P.band[(g0 + k) % F], row_sums);
      }
      adjoint_group<T, R>(xs, mbuf.data(), dmbuf.data(), dxs, n, T_, a, s, b0.has_clamp,
                          b0.clamp, ds);
      for (int64_t k = 0; k < n; ++k) sums[(g0 + k) * kSums + 5] += ds[k];
      if constexpr (!same) {
        for (int64_t i = 0; i < n * T_; ++i) dx[g0 * T_ + i] = static_cast<scalar_t>(dxs[i]);
      }
    }
  });
}

// ----- input checks and host functions ---------------------------------------------------

std::string shape_string(at::IntArrayRef sizes) {
  std::string out = "(";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(sizes[i]);
  }
  if (sizes.size() == 1) out += ",";
  return out + ")";
}

bool is_float_type(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

void check_inputs(const char* op, const at::Tensor& x, const at::Tensor& s,
                  const at::Tensor& alpha, const at::Tensor& delta, const at::Tensor& r) {
  TORCH_CHECK(is_float_type(x.scalar_type()), op,
              ": x must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK(x.dim() >= 2, op, ": x must have shape (..., F, T), got ",
              shape_string(x.sizes()));
  TORCH_CHECK(x.device().is_cpu(), op, " (CPU): x must be a CPU tensor, got ", x.device());
  const int64_t F = x.size(-2);
  const char* names[4] = {"s", "alpha", "delta", "r"};
  const at::Tensor* ps[4] = {&s, &alpha, &delta, &r};
  for (int i = 0; i < 4; ++i) {
    const at::Tensor& p = *ps[i];
    TORCH_CHECK(is_float_type(p.scalar_type()), op, ": ", names[i],
                " must be floating point, got ", p.scalar_type());
    TORCH_CHECK(p.device() == x.device(), op, ": ", names[i], " is on ", p.device(),
                " but x is on ", x.device());
    TORCH_CHECK(p.dim() == 1 && p.size(0) == F, op, ": ", names[i], " must have shape (F,) = (",
                F, ",), got ", shape_string(p.sizes()));
  }
}

Layout make_layout(const at::Tensor& x) {
  Layout L;
  L.T = x.size(-1);
  L.F = x.size(-2);
  L.rows = L.T > 0 ? x.numel() / L.T : 0;
  return L;
}

template <typename scalar_t, typename T, typename R>
BandTables<T, R> band_tables(const at::Tensor& s, const at::Tensor& alpha,
                             const at::Tensor& delta, const at::Tensor& r, double eps,
                             c10::optional<double> clamp) {
  constexpr at::ScalarType tt = c10::CppTypeToScalarType<T>::value;
  const at::Tensor sa = s.detach().to(tt).contiguous(), aa = alpha.detach().to(tt).contiguous();
  const at::Tensor da = delta.detach().to(tt).contiguous(), ra = r.detach().to(tt).contiguous();
  const int64_t F = sa.numel();
  // the clamp bound as x.clamp(min=clamp) sees it: rounded to x's dtype
  const T cl = clamp.has_value() ? static_cast<T>(static_cast<scalar_t>(*clamp)) : T(0);
  BandTables<T, R> P;
  P.band.resize(F);
  P.a.resize(F);
  P.s.resize(F);
  for (int64_t f = 0; f < F; ++f) {
    const T sv = sa.data_ptr<T>()[f];
    P.band[f] = make_band<T>(aa.data_ptr<T>()[f], da.data_ptr<T>()[f], ra.data_ptr<T>()[f], eps,
                             clamp.has_value(), cl);
    if constexpr (std::is_same<R, T>::value) {
      P.a[f] = T(1) - sv;  // exactly the reference's (1 - s) in its dtype
    } else {
      P.a[f] = R(1) - static_cast<R>(sv);
    }
    P.s[f] = static_cast<R>(sv);
  }
  return P;
}

at::Tensor pcen_fwd_cpu(const at::Tensor& x_, const at::Tensor& s, const at::Tensor& alpha,
                        const at::Tensor& delta, const at::Tensor& r, double eps,
                        c10::optional<double> clamp) {
  check_inputs("eleaf::pcen_fwd", x_, s, alpha, delta, r);
  const at::Tensor x = x_.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  const Layout L = make_layout(x);
  if (x.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pcen_fwd_cpu", [&] {
    using T = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    using R = double;
    const BandTables<T, R> P = band_tables<scalar_t, T, R>(s, alpha, delta, r, eps, clamp);
    fwd_kernel<scalar_t, T, R>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), L, P);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> pcen_bwd_cpu(
    const at::Tensor& grad_, const at::Tensor& x_, const at::Tensor& s, const at::Tensor& alpha,
    const at::Tensor& delta, const at::Tensor& r, double eps, c10::optional<double> clamp) {
  check_inputs("eleaf::pcen_bwd", x_, s, alpha, delta, r);
  TORCH_CHECK(grad_.scalar_type() == x_.scalar_type(), "eleaf::pcen_bwd: grad dtype ",
              grad_.scalar_type(), " != x dtype ", x_.scalar_type());
  TORCH_CHECK(grad_.device() == x_.device(), "eleaf::pcen_bwd: grad is on ", grad_.device(),
              " but x is on ", x_.device());
  TORCH_CHECK(grad_.sizes() == x_.sizes(), "eleaf::pcen_bwd: grad has shape ",
              shape_string(grad_.sizes()), ", expected x's ", shape_string(x_.sizes()));
  const at::Tensor x = x_.contiguous();
  const at::Tensor grad = grad_.contiguous();
  const Layout L = make_layout(x);
  const int64_t F = L.F;
  at::Tensor dx = at::empty(x.sizes(), x.options());
  at::Tensor band_sums = at::zeros({4, F}, x.options().dtype(at::kDouble));  // s, alpha, delta, r
  if (x.numel() > 0) {
    at::Tensor row_sums = at::zeros({L.rows, kSums}, x.options().dtype(at::kDouble));
    double* rs = row_sums.data_ptr<double>();
    double* bs = band_sums.data_ptr<double>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pcen_bwd_cpu",
                                    [&] {
      using T = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
      using R = double;
      const BandTables<T, R> P = band_tables<scalar_t, T, R>(s, alpha, delta, r, eps, clamp);
      bwd_kernel<scalar_t, T, R>(grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                                 dx.data_ptr<scalar_t>(), rs, L, P);
      // per band, rows in order: deterministic whatever the number of threads
      for (int64_t f = 0; f < F; ++f) {
        double acc[kSums] = {0, 0, 0, 0, 0, 0};
        for (int64_t row = f; row < L.rows; row += F) {
          for (int64_t j = 0; j < kSums; ++j) acc[j] += rs[row * kSums + j];
        }
        const Band<T>& b = P.band[f];
        // acc: see kSums; the delta^r terms of the general elements are applied to their
        // summed gradient, as the reference does (never inf * 0 when there are none)
        const bool general = acc[4] > 0;
        bs[0 * F + f] = acc[5];
        bs[1 * F + f] = acc[0];
        bs[2 * F + f] = acc[1] - (general ? acc[3] * static_cast<double>(b.ddelta_r) : 0.0);
        bs[3 * F + f] = acc[2] - (general ? acc[3] * static_cast<double>(b.drdelta_r) : 0.0);
      }
    });
  }
  // separate tensors (copies), never views of one buffer
  return {dx, band_sums[0].to(s.scalar_type(), false, true),
          band_sums[1].to(alpha.scalar_type(), false, true),
          band_sums[2].to(delta.scalar_type(), false, true),
          band_sums[3].to(r.scalar_type(), false, true)};
}

}  // namespace
}  // namespace eleaf

TORCH_LIBRARY_FRAGMENT(eleaf, m) {
  m.impl_abstract_pystub("eleaf.ops.pcen_cpp");
  m.def("pcen_fwd(Tensor x, Tensor s, Tensor alpha, Tensor delta, Tensor r, float eps, "
        "float? clamp) -> Tensor");
  m.def("pcen_bwd(Tensor grad, Tensor x, Tensor s, Tensor alpha, Tensor delta, Tensor r, "
        "float eps, float? clamp) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("pcen_fwd", &eleaf::pcen_fwd_cpu);
  m.impl("pcen_bwd", &eleaf::pcen_bwd_cpu);
}
