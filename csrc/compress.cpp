// eleaf._C: fused log compression + median subtraction of LogTBN (SPEC §6), CPU part.
//
// Reference: eleaf.ops.log1p_median_ref (log1p_ref, then median_subtract_ref).
//
// Ops (schemas below, CUDA kernels in compress_cuda.cu, autograd in autograd.cpp,
// fake kernels in eleaf/ops/compress.py):
//
//   eleaf::log1p_median_fwd(x, a, per_band, median_filter, append) -> (y, idx)
//     x   (..., F, T) floating; (B, F, T) or (B, C, F, T) when append.
//     a   None (plain log1p), one element (scalar a), or (F,) when per_band.
//     l   = log1p(10^a * x)
//     y   = l                                  without median_filter,
//         = l - m                              with median_filter,
//         = cat(l, l - m) on dim 1             with median_filter and append:
//                                              (B, 2, F, T) or (B, 2C, F, T).
//     idx (x.shape[:-1]) int64, the time index of the median m of each row of l
//         (empty (0,) without median_filter).
//
//   eleaf::log1p_median_bwd(grad_y, x, a, idx, per_band, median_filter, append)
//       -> (grad_x, grad_a)
//     grad_x like x, grad_a like a (empty (0,) when a is None).
//
// Median convention (torch.median): the element of rank k = (T - 1) / 2 (the lower middle
// element for even T) in the order "by value, then by time index". With ties this is the
// (k - #{l < m})-th occurrence of m in time order -- the same element torch.median returns on
// the CPU -- and the gradient of m goes to that element only (exactly one per row). A row
// containing NaN has median NaN at its first NaN, like torch.median. -0 and +0 compare equal.
//
// CPU: rows in parallel (at::parallel_for). l = log1p(10^a x) by a vectorised float32 log1p
// (Cephes polynomial, about 1 ulp; std::log1p for float64), written straight into y. The
// median: one pass for min / max / NaN; the values are bucketed by a monotone map into about
// T buckets, the bucket holding rank k is kept (repeated while many candidates remain), and
// std::nth_element on the few candidates gives m; then one scan finds the occurrence of m
// that has rank k. No sort; O(T) per row.
//
// Precision: float32 / float16 / bfloat16 are computed in float32 (16-bit inputs: 10^a (from
// a in float32), 10^a x -- 10^5 x overflows float16 --, l, the median and l - m stay in
// float32 and only y is rounded to the dtype, as the reference does), float64 in float64. Row sums run in the computation dtype (vectorised); the
// per-row partial sums of the gradient of a are reduced in float64.
#include <Python.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include "compress.h"
#include "cpu_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#ifndef TORCH_EXTENSION_NAME
#define TORCH_EXTENSION_NAME _C
#endif

#ifdef ELEAF_WITH_CUDA
std::string eleaf_cuda_build_info();  // compress_cuda.cu
#endif

namespace eleaf {

std::string build_info() {
#ifdef ELEAF_WITH_CUDA
  return "cpu+" + eleaf_cuda_build_info();
#else
  return "cpu";
#endif
}

// ---------------------------------------------------------------------------------------
// Shared input checks (also used by compress_cuda.cu)
// ---------------------------------------------------------------------------------------

// "(2, 5, 7)": shapes in error messages are formatted here, from plain integers, instead of
// streaming an IntArrayRef into TORCH_CHECK (that crashed the CUDA build's error path on
// torch 2.11 + nvcc 13.0, seen on an H100: the CPU build was unaffected).
static std::string shape_str(at::IntArrayRef sizes) {
  std::string out = "(";
  for (size_t i = 0; i < sizes.size(); ++i) {
    out += std::to_string(sizes[i]);
    if (i + 1 < sizes.size() || sizes.size() == 1) out += ", ";
  }
  if (sizes.size() == 1) out.pop_back();
  return out + ")";
}

void check_fwd_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& a, bool per_band,
                      bool median_filter, bool append) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble ||
                  x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16,
              "eleaf::log1p_median: x must be float32, float64, float16 or bfloat16, got ",
              x.scalar_type());
  TORCH_CHECK(x.dim() >= 1, "eleaf::log1p_median: x must have a time axis, got a 0-dim tensor");
  if (median_filter) {
    TORCH_CHECK(x.size(-1) > 0,
                "eleaf::log1p_median: median_filter needs at least one frame (T >= 1), got "
                "x of shape ", shape_str(x.sizes()));
    if (append) {
      TORCH_CHECK(x.dim() == 3 || x.dim() == 4,
                  "eleaf::log1p_median: append needs x of shape (B, F, T) or (B, C, F, T), got ",
                  shape_str(x.sizes()));
    }
  }
  if (a.has_value() && a->defined()) {
    TORCH_CHECK(at::isFloatingType(a->scalar_type()),
                "eleaf::log1p_median: a must be floating point, got ", a->scalar_type());
    TORCH_CHECK(a->device() == x.device(), "eleaf::log1p_median: a is on ", a->device(),
                " but x is on ", x.device());
    if (per_band) {
      TORCH_CHECK(x.dim() >= 2, "eleaf::log1p_median: per_band needs x of shape (..., F, T), "
                  "got ", shape_str(x.sizes()));
      TORCH_CHECK(a->dim() == 1 && a->size(0) == x.size(-2),
                  "eleaf::log1p_median: per_band a must have shape (F,) = (", x.size(-2),
                  ",), got ", shape_str(a->sizes()));
    } else {
      TORCH_CHECK(a->numel() == 1,
                  "eleaf::log1p_median: a must have one element (scalar a) unless per_band, "
                  "got shape ", shape_str(a->sizes()));
    }
  }
}

void check_bwd_inputs(const at::Tensor& grad_y, const at::Tensor& x,
                      const c10::optional<at::Tensor>& a, const at::Tensor& idx, bool per_band,
                      bool median_filter, bool append) {
  check_fwd_inputs(x, a, per_band, median_filter, append);
  TORCH_CHECK(grad_y.scalar_type() == x.scalar_type(), "eleaf::log1p_median_bwd: grad_y dtype ",
              grad_y.scalar_type(), " != x dtype ", x.scalar_type());
  TORCH_CHECK(grad_y.device() == x.device(), "eleaf::log1p_median_bwd: grad_y is on ",
              grad_y.device(), " but x is on ", x.device());
  std::vector<int64_t> yshape = x.sizes().vec();
  if (median_filter && append) {
    if (x.dim() == 3) yshape.insert(yshape.begin() + 1, 2);
    else yshape[1] *= 2;
  }
  TORCH_CHECK(grad_y.sizes() == at::IntArrayRef(yshape), "eleaf::log1p_median_bwd: grad_y has "
              "shape ", shape_str(grad_y.sizes()), ", expected ", shape_str(yshape));
  if (median_filter) {
    TORCH_CHECK(idx.scalar_type() == at::kLong, "eleaf::log1p_median_bwd: idx must be int64, got ",
                idx.scalar_type());
    TORCH_CHECK(idx.device() == x.device(), "eleaf::log1p_median_bwd: idx is on ", idx.device(),
                " but x is on ", x.device());
    TORCH_CHECK(idx.sizes() == x.sizes().slice(0, x.dim() - 1), "eleaf::log1p_median_bwd: idx "
                "must have shape x.shape[:-1] = ", shape_str(x.sizes().slice(0, x.dim() - 1)),
                ", got ", shape_str(idx.sizes()));
  }
}

// Output shape of the forward.
std::vector<int64_t> fwd_out_shape(const at::Tensor& x, bool median_filter, bool append) {
  std::vector<int64_t> shape = x.sizes().vec();
  if (median_filter && append) {
    if (x.dim() == 3) shape.insert(shape.begin() + 1, 2);
    else shape[1] *= 2;
  }
  return shape;
}

// 10^a in a's dtype (the same ATen kernel as the reference's ``10 ** a``; a float16 or
// bfloat16 a in float32, where 10^5 is finite), as a contiguous tensor of the computation
// dtype with one entry per band (F entries when per_band, else 1).
at::Tensor band_scales(const c10::optional<at::Tensor>& a, at::ScalarType acc_type,
                       const at::Device& device) {
  if (!a.has_value() || !a->defined()) {
    return at::ones({1}, at::TensorOptions().dtype(acc_type).device(device));
  }
  at::Tensor ad = a->detach();
  if (ad.scalar_type() == at::kHalf || ad.scalar_type() == at::kBFloat16) {
    ad = ad.to(at::kFloat);
  }
  return at::pow(10, ad).to(acc_type).reshape({-1}).contiguous();
}

// ---------------------------------------------------------------------------------------
// CPU kernels
// ---------------------------------------------------------------------------------------
namespace {

// log1p for float32, vectorisable (no calls, no branches): log(w) with w = 1 + u by the
// Cephes logf polynomial on the mantissa in [sqrt(1/2), sqrt(2)), then the usual correction
// log1p(u) = log(w) + (u - (w - 1)) / w. About 1 ulp; NaN, +-inf, -1, -0 and u < -1 as
// std::log1p.
ELEAF_ALWAYS_INLINE float fast_log1pf(float u) {
  const float w = 1.0f + u;
  float fe;
  const float f = logf_reduce(w, fe);
  const float f2 = f * f;
  const float p = logf_poly(f);
  float y = f * f2 * p;
  y += -2.12194440E-4f * fe;
  y += -0.5f * f2;
  float r = f + y;
  r += 0.693359375f * fe;
  return log1pf_finish(u, w, r);
}

inline float log1p_acc(float u) { return fast_log1pf(u); }
inline double log1p_acc(double u) { return std::log1p(u); }

// log1p(s * x) (s = 1 when not scaled) for one float32 row; with an AVX2 clone on x86-64
// Linux.
ELEAF_CLONES_AVX2
void log1p_row_f32(const float* __restrict__ x, float* __restrict__ out, int64_t T, float s,
                   bool scaled) {
  if (scaled) {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) out[t] = fast_log1pf(s * x[t]);
  } else {
#pragma omp simd
    for (int64_t t = 0; t < T; ++t) out[t] = fast_log1pf(x[t]);
  }
}

// l = log1p(s * x) for one row, as acc_t into vals (not rounded to a 16-bit scalar_t).
template <typename scalar_t, typename acc_t>
inline void row_log1p(const scalar_t* __restrict__ x, acc_t* __restrict__ vals, int64_t T,
                      acc_t s, bool scaled) {
  if (std::is_same<scalar_t, float>::value) {
    log1p_row_f32(reinterpret_cast<const float*>(x), reinterpret_cast<float*>(vals), T,
                  static_cast<float>(s), scaled);
  } else if (std::is_same<scalar_t, acc_t>::value) {
    const acc_t* xs = reinterpret_cast<const acc_t*>(x);
    for (int64_t t = 0; t < T; ++t) vals[t] = log1p_acc(scaled ? s * xs[t] : xs[t]);
  } else {
    for (int64_t t = 0; t < T; ++t) {
      acc_t u = static_cast<acc_t>(x[t]);
      if (scaled) u = s * u;  // in float32: 10^a x overflows float16
      vals[t] = log1p_acc(u);
    }
  }
}

// Index of the element of rank k = (T - 1) / 2 of v[0..T) in the order (value, index), or of
// the first NaN. ``work`` and ``ids`` have room for T values, ``hist`` for kMaxBuckets.
constexpr int64_t kMaxBuckets = 2048;

template <typename acc_t>
int64_t select_median(const acc_t* __restrict__ v, int64_t T, acc_t* __restrict__ work,
                      int32_t* __restrict__ hist, int32_t* __restrict__ ids) {
  const int64_t k = (T - 1) / 2;
  // one pass: min, max, NaN
  acc_t mn = v[0], mx = v[0];
  int nan = 0;
#pragma omp simd reduction(min : mn) reduction(max : mx) reduction(| : nan)
  for (int64_t t = 0; t < T; ++t) {
    mn = bits_select(v[t] < mn, v[t], mn);
    mx = bits_select(v[t] > mx, v[t], mx);
    nan |= (v[t] != v[t]);
  }
  if (nan) {
    for (int64_t t = 0; t < T; ++t)
      if (v[t] != v[t]) return t;
  }
  if (!(mn < mx)) return k;  // all equal: the k-th occurrence is index k

  // Candidates of the median: bucket by value (a monotone map), keep the bucket holding rank
  // k; repeat on the candidates while they are many and not all equal; finish with
  // nth_element. ``below`` counts the elements known to be smaller than every candidate.
  const acc_t* src = v;
  int64_t n = T, kk = k, below = 0;
  acc_t m;
  for (int level = 0;; ++level) {
    const acc_t width = mx - mn;
    const int64_t nb = std::min<int64_t>(kMaxBuckets, std::max<int64_t>(n, 8));
    const acc_t scale = static_cast<acc_t>(nb) / width;
    if (n <= 16 || level >= 3 || !(mn < mx) || !std::isfinite(width) || !std::isfinite(scale)) {
      if (src != work) std::copy(src, src + n, work);
      if (!(mn < mx)) {
        m = mn;
      } else {
        std::nth_element(work, work + kk, work + n);
        m = work[kk];
      }
      int64_t less = 0;
      for (int64_t t = 0; t < n; ++t) less += work[t] < m;
      below += less;
      break;
    }
    std::fill(hist, hist + nb, 0);
    const int32_t last = static_cast<int32_t>(nb - 1);
#pragma omp simd
    for (int64_t t = 0; t < n; ++t) {
      const int32_t b = static_cast<int32_t>((src[t] - mn) * scale);
      ids[t] = b < last ? b : last;
    }
    for (int64_t t = 0; t < n; ++t) hist[ids[t]]++;
    int32_t bk = 0;
    int64_t cum = 0;
    while (cum + hist[bk] <= kk) cum += hist[bk++];
    kk -= cum;
    below += cum;
    int64_t cnt = 0;
    for (int64_t t = 0; t < n; ++t) {
      if (ids[t] == bk) work[cnt++] = src[t];
    }
    acc_t cmn = work[0], cmx = work[0];
    for (int64_t t = 1; t < cnt; ++t) {
      cmn = work[t] < cmn ? work[t] : cmn;
      cmx = work[t] > cmx ? work[t] : cmx;
    }
    src = work;
    n = cnt;
    mn = cmn;
    mx = cmx;
  }
  // the (k - below)-th occurrence of m in time order
  int64_t j = k - below;
  for (int64_t t = 0; t < T; ++t) {
    if (v[t] == m) {
      if (j == 0) return t;
      --j;
    }
  }
  TORCH_INTERNAL_ASSERT(false, "eleaf::log1p_median: median selection failed");
  return k;
}

int64_t grain_rows(int64_t T) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(T, 1)); }

template <typename scalar_t, typename acc_t>
void fwd_cpu_kernel(const scalar_t* x, const acc_t* scales, bool scaled, scalar_t* y,
                    int64_t* idx, const RowLayout L) {
  const int64_t T = L.T;
  constexpr bool same = std::is_same<scalar_t, acc_t>::value;
  at::parallel_for(0, L.rows, grain_rows(T), [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> buf(same ? 0 : T), work(L.median ? T : 0);
    std::vector<int32_t> hist(L.median ? kMaxBuckets : 0), ids(L.median ? T : 0);
    for (int64_t r = r0; r < r1; ++r) {
      scalar_t* y1 = y + L.out_offset(r);
      // l goes straight into the (first) output row when it has the computation dtype
      acc_t* vals = same ? reinterpret_cast<acc_t*>(y1) : buf.data();
      row_log1p<scalar_t, acc_t>(x + r * T, vals, T, scales[L.band(r)], scaled);
      if (!same && (!L.median || L.append)) {
        for (int64_t t = 0; t < T; ++t) y1[t] = static_cast<scalar_t>(vals[t]);
      }
      if (!L.median) continue;
      const int64_t i = select_median<acc_t>(vals, T, work.data(), hist.data(), ids.data());
      idx[r] = i;
      const acc_t m = vals[i];
      scalar_t* y2 = L.append ? y1 + L.rows_per_batch * T : y1;
      if (same) {
        acc_t* y2a = reinterpret_cast<acc_t*>(y2);
#pragma omp simd
        for (int64_t t = 0; t < T; ++t) y2a[t] = vals[t] - m;
      } else {
        for (int64_t t = 0; t < T; ++t) y2[t] = static_cast<scalar_t>(vals[t] - m);
      }
    }
  });
}

template <typename scalar_t, typename acc_t>
void bwd_cpu_kernel(const scalar_t* gy, const scalar_t* x, const acc_t* scales, bool scaled,
                    const int64_t* idx, scalar_t* gx, double* ga_rows, const RowLayout L) {
  const int64_t T = L.T;
  at::parallel_for(0, L.rows, grain_rows(T), [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> tmp(std::is_same<scalar_t, acc_t>::value ? 0 : 3 * T);
    for (int64_t r = r0; r < r1; ++r) {
      const acc_t s = scales[L.band(r)];
      const scalar_t* g1s = gy + L.out_offset(r);
      const scalar_t* g2s = (L.median && L.append) ? g1s + L.rows_per_batch * T : nullptr;
      const scalar_t* xs = x + r * T;
      const acc_t *g1, *g2, *xr;
      if (std::is_same<scalar_t, acc_t>::value) {
        g1 = reinterpret_cast<const acc_t*>(g1s);
        g2 = reinterpret_cast<const acc_t*>(g2s);
        xr = reinterpret_cast<const acc_t*>(xs);
      } else {
        acc_t* b = tmp.data();
        for (int64_t t = 0; t < T; ++t) b[t] = static_cast<acc_t>(g1s[t]);
        for (int64_t t = 0; t < T; ++t) b[2 * T + t] = static_cast<acc_t>(xs[t]);
        if (g2s)
          for (int64_t t = 0; t < T; ++t) b[T + t] = static_cast<acc_t>(g2s[t]);
        g1 = b;
        g2 = g2s ? b + T : nullptr;
        xr = b + 2 * T;
      }
      // G: total gradient of the row's median (it is subtracted from every element)
      double G = 0;
      if (L.median) {
        const acc_t* gs = g2 ? g2 : g1;
        acc_t acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t t = 0; t < T; ++t) acc += gs[t];
        G = static_cast<double>(acc);
      }
      // dl/dx = s / (1 + s x); dl/da = ln(10) s x / (1 + s x)
      acc_t ga = 0;
      scalar_t* gxr = gx + r * T;
      if (std::is_same<scalar_t, acc_t>::value) {
        acc_t* gxa = reinterpret_cast<acc_t*>(gxr);
        if (g2) {
#pragma omp simd reduction(+ : ga)
          for (int64_t t = 0; t < T; ++t) {
            const acc_t gl = g1[t] + g2[t];
            const acc_t d = s / (acc_t(1) + s * xr[t]);
            gxa[t] = gl * d;
            ga += gl * xr[t] * d;
          }
        } else {
#pragma omp simd reduction(+ : ga)
          for (int64_t t = 0; t < T; ++t) {
            const acc_t gl = g1[t];
            const acc_t d = s / (acc_t(1) + s * xr[t]);
            gxa[t] = gl * d;
            ga += gl * xr[t] * d;
          }
        }
      } else {
        for (int64_t t = 0; t < T; ++t) {
          const acc_t gl = g2 ? g1[t] + g2[t] : g1[t];
          const acc_t d = s / (acc_t(1) + s * xr[t]);
          gxr[t] = static_cast<scalar_t>(gl * d);
          ga += gl * xr[t] * d;
        }
      }
      if (L.median) {
        const int64_t i = idx[r];
        TORCH_CHECK(i >= 0 && i < T, "eleaf::log1p_median_bwd: median index ", i,
                    " out of range [0, ", T, ")");
        const acc_t gl = (g2 ? g1[i] + g2[i] : g1[i]) - static_cast<acc_t>(G);
        const acc_t d = s / (acc_t(1) + s * xr[i]);
        gxr[i] = static_cast<scalar_t>(gl * d);
        ga -= static_cast<acc_t>(G) * xr[i] * d;
      }
      if (ga_rows) ga_rows[r] = static_cast<double>(ga);
    }
  });
}

}  // namespace

// grad of a from the per-row sums of gl * x * d (float64, one per row): times ln(10), summed
// per band (per_band) or over everything, in a's shape and dtype.
at::Tensor reduce_grad_a(const at::Tensor& ga_rows, const at::Tensor& a, bool per_band,
                         int64_t F) {
  at::Tensor g;
  if (per_band) {
    g = ga_rows.numel() > 0 ? ga_rows.view({-1, F}).sum(0) : at::zeros({F}, ga_rows.options());
  } else {
    g = ga_rows.sum();
  }
  return g.mul(std::log(10.0)).to(a.scalar_type()).reshape(a.sizes());
}

std::tuple<at::Tensor, at::Tensor> log1p_median_fwd_cpu(const at::Tensor& x_,
                                                         const c10::optional<at::Tensor>& a,
                                                         bool per_band, bool median_filter,
                                                         bool append) {
  check_fwd_inputs(x_, a, per_band, median_filter, append);
  TORCH_CHECK(x_.device().is_cpu(), "eleaf::log1p_median_fwd (CPU): x must be a CPU tensor");
  const at::Tensor x = x_.contiguous();
  at::Tensor y = at::empty(fwd_out_shape(x, median_filter, append), x.options());
  at::Tensor idx = median_filter
                       ? at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(at::kLong))
                       : at::empty({0}, x.options().dtype(at::kLong));
  const bool scaled = a.has_value() && a->defined();
  const RowLayout L = make_layout(x, per_band && scaled, median_filter, append);
  if (x.numel() == 0) return {y, idx};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "log1p_median_fwd_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    const at::Tensor scales = band_scales(a, c10::CppTypeToScalarType<acc_t>::value, x.device());
    fwd_cpu_kernel<scalar_t, acc_t>(x.data_ptr<scalar_t>(), scales.data_ptr<acc_t>(), scaled,
                                    y.data_ptr<scalar_t>(),
                                    median_filter ? idx.data_ptr<int64_t>() : nullptr, L);
  });
  return {y, idx};
}

std::tuple<at::Tensor, at::Tensor> log1p_median_bwd_cpu(const at::Tensor& grad_y_,
                                                         const at::Tensor& x_,
                                                         const c10::optional<at::Tensor>& a,
                                                         const at::Tensor& idx_, bool per_band,
                                                         bool median_filter, bool append) {
  check_bwd_inputs(grad_y_, x_, a, idx_, per_band, median_filter, append);
  TORCH_CHECK(x_.device().is_cpu(), "eleaf::log1p_median_bwd (CPU): x must be a CPU tensor");
  const at::Tensor x = x_.contiguous();
  const at::Tensor grad_y = grad_y_.contiguous();
  const at::Tensor idx = idx_.contiguous();
  const bool scaled = a.has_value() && a->defined();
  const RowLayout L = make_layout(x, per_band && scaled, median_filter, append);
  at::Tensor gx = at::empty_like(x);
  at::Tensor ga_rows = at::zeros({scaled ? L.rows : 0}, x.options().dtype(at::kDouble));
  if (x.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                    "log1p_median_bwd_cpu", [&] {
      using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
      const at::Tensor scales =
          band_scales(a, c10::CppTypeToScalarType<acc_t>::value, x.device());
      bwd_cpu_kernel<scalar_t, acc_t>(grad_y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                                      scales.data_ptr<acc_t>(), scaled,
                                      median_filter ? idx.data_ptr<int64_t>() : nullptr,
                                      gx.data_ptr<scalar_t>(),
                                      scaled ? ga_rows.data_ptr<double>() : nullptr, L);
    });
  }
  at::Tensor ga = scaled ? reduce_grad_a(ga_rows, *a, L.per_band, L.F)
                         : at::empty({0}, x.options());
  return {gx, ga};
}

}  // namespace eleaf

TORCH_LIBRARY(eleaf, m) {
  m.impl_abstract_pystub("eleaf.ops.compress");
  m.def("log1p_median_fwd(Tensor x, Tensor? a, bool per_band, bool median_filter, bool append)"
        " -> (Tensor, Tensor)");
  m.def("log1p_median_bwd(Tensor grad_y, Tensor x, Tensor? a, Tensor idx, bool per_band, "
        "bool median_filter, bool append) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("log1p_median_fwd", &eleaf::log1p_median_fwd_cpu);
  m.impl("log1p_median_bwd", &eleaf::log1p_median_bwd_cpu);
}

// ---------------------------------------------------------------------------------------
// Python module eleaf._C: importing it registers the ops above; build_info() says what was
// compiled in ('cpu', or 'cpu+cuda <version>').
// ---------------------------------------------------------------------------------------
static PyObject* eleaf_py_build_info(PyObject*, PyObject*) {
  return PyUnicode_FromString(eleaf::build_info().c_str());
}

static PyMethodDef eleaf_methods[] = {
    {"build_info", eleaf_py_build_info, METH_NOARGS,
     "What eleaf._C was compiled with: 'cpu' or 'cpu+cuda <version>'."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef eleaf_module = {
    PyModuleDef_HEAD_INIT, "eleaf._C",
    "Compiled eleaf ops (torch.ops.eleaf.*); see eleaf/ops/compress.py.", -1, eleaf_methods};

#define ELEAF_CONCAT_(a, b) a##b
#define ELEAF_CONCAT(a, b) ELEAF_CONCAT_(a, b)

PyMODINIT_FUNC ELEAF_CONCAT(PyInit_, TORCH_EXTENSION_NAME)(void) {
  return PyModule_Create(&eleaf_module);
}
