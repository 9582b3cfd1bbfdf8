// eleaf._C: fused log compression + median subtraction of LogTBN (SPEC §6), CUDA part.
//
// Schemas, CPU kernels, the median convention and the input checks: compress.cpp. This file
// registers the CUDA kernels of eleaf::log1p_median_fwd / eleaf::log1p_median_bwd.
//
// One thread block per row (the last axis, T frames):
//   forward:  l = log1p(10^a x) (in float32 for float16/bfloat16; only y is rounded to
//             x's dtype) into shared memory
//             (global scratch for rows longer than kMaxSharedT), then the median by an exact
//             radix select over order-preserving integer keys of l (8 bits per pass, a
//             256-bin histogram in shared memory; 4 passes for float, 8 for double), then the
//             (k - #{l < m})-th occurrence of m in time order via warp ballots -- the same
//             element as CPU torch.median and compress.cpp; a row with NaN takes its first
//             NaN. Then y = l - m (or l and l - m with append).
//   backward: G = sum of the row's gradient of l - m (block reduction), grad_l = g (+ g2) and
//             grad_l[idx] -= G, grad_x = grad_l * s / (1 + s x); per-row partial sums of
//             grad_l * s x / (1 + s x) are reduced per band afterwards (grad of a).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>

#include "compress.h"

std::string eleaf_cuda_build_info() {
  return "cuda " + std::to_string(CUDART_VERSION / 1000) + "." +
         std::to_string((CUDART_VERSION % 1000) / 10);
}

namespace eleaf {
namespace {

constexpr int kHistBins = 256;
// rows up to this many frames keep l in shared memory (40 KiB of float, 20 KiB of double
// rows... the limit is in bytes: kMaxSharedBytes); longer rows use a global scratch buffer
constexpr int64_t kMaxSharedBytes = 40 * 1024;

template <typename acc_t>
struct Key;

template <>
struct Key<float> {
  using type = uint32_t;
  static constexpr int kBits = 32;
  // order-preserving map of non-NaN floats to unsigned integers; -0 and +0 map together
  __device__ __forceinline__ static uint32_t of(float v) {
    const uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
};

template <>
struct Key<double> {
  using type = unsigned long long;
  static constexpr int kBits = 64;
  __device__ __forceinline__ static unsigned long long of(double v) {
    const unsigned long long u =
        static_cast<unsigned long long>(__double_as_longlong(v == 0.0 ? 0.0 : v));
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  }
};

__device__ __forceinline__ float log1p_dev(float u) { return log1pf(u); }
__device__ __forceinline__ double log1p_dev(double u) { return log1p(u); }

template <typename scalar_t>
__host__ __device__ constexpr bool is_reduced() {
  return std::is_same<scalar_t, c10::Half>::value || std::is_same<scalar_t, c10::BFloat16>::value;
}

// Sum over the block, returned to every thread. ``s_red`` has 32 entries.
template <typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v, acc_t* s_red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  __syncthreads();  // s_red may still be read by a previous call
  if (lane == 0) s_red[warp] = v;
  __syncthreads();
  acc_t total = 0;
  for (int w = 0; w < nwarps; ++w) total += s_red[w];
  return total;
}

struct Layout {
  int64_t T, F, rows_per_batch;
  bool per_band, median, append, scaled;
  __device__ __forceinline__ int64_t out_offset(int64_t r) const {
    if (!(median && append)) return r * T;
    const int64_t b = r / rows_per_batch;
    return (b * 2 * rows_per_batch + r % rows_per_batch) * T;
  }
};

Layout to_device_layout(const RowLayout& L, bool scaled) {
  return Layout{L.T, L.F, L.rows_per_batch, L.per_band, L.median, L.append, scaled};
}

// blockDim.x: a multiple of 32, at least 64, about T / 8 elements per thread, at most 512
int threads_for(int64_t T) {
  int threads = 64;
  while (threads < 512 && threads * 8 < T) threads *= 2;
  return threads;
}

template <typename scalar_t, typename acc_t>
__global__ void log1p_median_fwd_kernel(const scalar_t* __restrict__ x,
                                        const acc_t* __restrict__ scales, const Layout L,
                                        acc_t* __restrict__ scratch, scalar_t* __restrict__ y,
                                        int64_t* __restrict__ idx) {
  using K = typename Key<acc_t>::type;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int s_hist[kHistBins];
  __shared__ int s_warp[32];
  __shared__ int s_nan, s_digit, s_rank, s_sel;

  const int64_t r = blockIdx.x;
  const int T = static_cast<int>(L.T);
  const int tid = threadIdx.x;
  const acc_t s = L.scaled ? scales[L.per_band ? r % L.F : 0] : acc_t(1);
  const scalar_t* xr = x + r * L.T;
  scalar_t* y1 = y + L.out_offset(r);

  if (!L.median) {
    for (int t = tid; t < T; t += blockDim.x) {
      acc_t u = static_cast<acc_t>(xr[t]);
      if (L.scaled) u = s * u;  // in float32: 10^a x overflows float16
      y1[t] = static_cast<scalar_t>(log1p_dev(u));
    }
    return;
  }

  acc_t* vals = scratch != nullptr ? scratch + r * L.T : reinterpret_cast<acc_t*>(smem_raw);
  if (tid == 0) {
    s_nan = INT_MAX;
    s_sel = -1;
  }
  __syncthreads();
  // 1. l in the computation dtype (float32 for float16/bfloat16: only y is rounded)
  for (int t = tid; t < T; t += blockDim.x) {
    acc_t u = static_cast<acc_t>(xr[t]);
    if (L.scaled) u = s * u;  // in float32: 10^a x overflows float16
    acc_t l = log1p_dev(u);
    vals[t] = l;
    if (l != l) atomicMin(&s_nan, t);
  }
  __syncthreads();

  int sel;
  if (s_nan != INT_MAX) {
    sel = s_nan;  // torch.median: a row with NaN has median NaN, the first one
  } else {
    // 2. radix select of the element of rank k in value order (MSB first, 8 bits a pass)
    int kk = (T - 1) / 2;
    K prefix = 0, mask = 0;
    for (int shift = Key<acc_t>::kBits - 8; shift >= 0; shift -= 8) {
      for (int i = tid; i < kHistBins; i += blockDim.x) s_hist[i] = 0;
      __syncthreads();
      for (int t = tid; t < T; t += blockDim.x) {
        const K key = Key<acc_t>::of(vals[t]);
        if ((key & mask) == prefix) atomicAdd(&s_hist[(key >> shift) & 0xff], 1);
      }
      __syncthreads();
      if (tid < 32) {  // warp 0: the bin holding rank kk; lane i scans bins 8i .. 8i+7
        int c[8], sum = 0;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          c[j] = s_hist[tid * 8 + j];
          sum += c[j];
        }
        int incl = sum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const int n = __shfl_up_sync(0xffffffffu, incl, o);
          if (tid >= o) incl += n;
        }
        int cum = incl - sum;
        if (cum <= kk && kk < incl) {
          int d = tid * 8;
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            if (cum + c[j] > kk) {
              d = tid * 8 + j;
              break;
            }
            cum += c[j];
          }
          s_digit = d;
          s_rank = kk - cum;
        }
      }
      __syncthreads();
      prefix |= static_cast<K>(s_digit) << shift;
      mask |= static_cast<K>(0xff) << shift;
      kk = s_rank;
    }
    // 3. the kk-th element (in time order) whose key is the median's
    const int lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
    for (int base = 0; base < T; base += blockDim.x) {
      const int t = base + tid;
      const bool hit = t < T && Key<acc_t>::of(vals[t]) == prefix;
      const unsigned ballot = __ballot_sync(0xffffffffu, hit);
      if (lane == 0) s_warp[warp] = __popc(ballot);
      __syncthreads();
      int before = 0, total = 0;
      for (int w = 0; w < nwarps; ++w) {
        before += w < warp ? s_warp[w] : 0;
        total += s_warp[w];
      }
      if (hit && before + __popc(ballot & ((1u << lane) - 1u)) == kk) s_sel = t;
      kk -= total;
      __syncthreads();
      if (s_sel >= 0) break;
    }
    sel = s_sel;
  }
  CUDA_KERNEL_ASSERT(sel >= 0 && sel < T);
  const acc_t m = vals[sel];
  if (tid == 0) idx[r] = sel;
  // 4. outputs
  scalar_t* y2 = L.append ? y1 + L.rows_per_batch * L.T : y1;
  for (int t = tid; t < T; t += blockDim.x) {
    const acc_t l = vals[t];
    if (L.append) y1[t] = static_cast<scalar_t>(l);
    y2[t] = static_cast<scalar_t>(l - m);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void log1p_median_bwd_kernel(const scalar_t* __restrict__ gy,
                                        const scalar_t* __restrict__ x,
                                        const acc_t* __restrict__ scales, const Layout L,
                                        const int64_t* __restrict__ idx,
                                        scalar_t* __restrict__ gx, acc_t* __restrict__ ga_rows) {
  __shared__ acc_t s_red[32];
  const int64_t r = blockIdx.x;
  const int T = static_cast<int>(L.T);
  const int tid = threadIdx.x;
  const acc_t s = L.scaled ? scales[L.per_band ? r % L.F : 0] : acc_t(1);
  const scalar_t* g1 = gy + L.out_offset(r);
  const scalar_t* g2 = (L.median && L.append) ? g1 + L.rows_per_batch * L.T : nullptr;
  const scalar_t* xr = x + r * L.T;
  scalar_t* gxr = gx + r * L.T;

  acc_t G = 0;  // gradient of the row's median: minus the sum of the gradient of l - m
  int sel = -1;
  if (L.median) {
    const scalar_t* gs = g2 != nullptr ? g2 : g1;
    acc_t part = 0;
    for (int t = tid; t < T; t += blockDim.x) part += static_cast<acc_t>(gs[t]);
    G = block_sum(part, s_red);
    sel = static_cast<int>(idx[r]);
    CUDA_KERNEL_ASSERT(sel >= 0 && sel < T);
  }
  acc_t ga = 0;
  for (int t = tid; t < T; t += blockDim.x) {
    acc_t gl = static_cast<acc_t>(g1[t]);
    if (g2 != nullptr) gl += static_cast<acc_t>(g2[t]);
    if (t == sel) gl -= G;
    const acc_t xv = static_cast<acc_t>(xr[t]);
    const acc_t d = s / (acc_t(1) + s * xv);
    gxr[t] = static_cast<scalar_t>(gl * d);
    ga += gl * xv * d;
  }
  if (ga_rows != nullptr) {
    ga = block_sum(ga, s_red);
    if (tid == 0) ga_rows[r] = ga;
  }
}

std::tuple<at::Tensor, at::Tensor> log1p_median_fwd_cuda(const at::Tensor& x_,
                                                          const c10::optional<at::Tensor>& a,
                                                          bool per_band, bool median_filter,
                                                          bool append) {
  check_fwd_inputs(x_, a, per_band, median_filter, append);
  TORCH_CHECK(x_.is_cuda(), "eleaf::log1p_median_fwd (CUDA): x must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor x = x_.contiguous();
  at::Tensor y = at::empty(fwd_out_shape(x, median_filter, append), x.options());
  at::Tensor idx = median_filter
                       ? at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(at::kLong))
                       : at::empty({0}, x.options().dtype(at::kLong));
  if (x.numel() == 0) return {y, idx};
  const bool scaled = a.has_value() && a->defined();
  const RowLayout L = make_layout(x, per_band && scaled, median_filter, append);
  TORCH_CHECK(L.T <= INT_MAX && L.rows <= INT_MAX,
              "eleaf::log1p_median_fwd (CUDA): at most 2^31 - 1 rows and frames, got ", L.rows,
              " rows of ", L.T, " frames");
  const int threads = threads_for(L.T);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "log1p_median_fwd_cuda", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    const at::Tensor scales = band_scales(a, c10::CppTypeToScalarType<acc_t>::value, x.device());
    const int64_t row_bytes = L.T * static_cast<int64_t>(sizeof(acc_t));
    const bool in_shared = row_bytes <= kMaxSharedBytes;
    at::Tensor scratch;
    if (median_filter && !in_shared) {
      scratch = at::empty({L.rows * L.T}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    }
    const size_t smem = (median_filter && in_shared) ? static_cast<size_t>(row_bytes) : 0;
    log1p_median_fwd_kernel<scalar_t, acc_t><<<static_cast<unsigned>(L.rows), threads, smem,
                                               stream>>>(
        x.data_ptr<scalar_t>(), scales.data_ptr<acc_t>(), to_device_layout(L, scaled),
        scratch.defined() ? scratch.data_ptr<acc_t>() : nullptr, y.data_ptr<scalar_t>(),
        median_filter ? idx.data_ptr<int64_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {y, idx};
}

std::tuple<at::Tensor, at::Tensor> log1p_median_bwd_cuda(const at::Tensor& grad_y_,
                                                          const at::Tensor& x_,
                                                          const c10::optional<at::Tensor>& a,
                                                          const at::Tensor& idx_, bool per_band,
                                                          bool median_filter, bool append) {
  check_bwd_inputs(grad_y_, x_, a, idx_, per_band, median_filter, append);
  TORCH_CHECK(x_.is_cuda(), "eleaf::log1p_median_bwd (CUDA): x must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(x_.device());
  const at::Tensor x = x_.contiguous();
  const at::Tensor grad_y = grad_y_.contiguous();
  const at::Tensor idx = idx_.contiguous();
  const bool scaled = a.has_value() && a->defined();
  const RowLayout L = make_layout(x, per_band && scaled, median_filter, append);
  TORCH_CHECK(L.T <= INT_MAX && L.rows <= INT_MAX,
              "eleaf::log1p_median_bwd (CUDA): at most 2^31 - 1 rows and frames, got ", L.rows,
              " rows of ", L.T, " frames");
  at::Tensor gx = at::empty_like(x);
  at::Tensor ga;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "log1p_median_bwd_cuda", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
    at::Tensor ga_rows = at::zeros({scaled ? L.rows : 0}, x.options().dtype(acc_type));
    if (x.numel() > 0) {
      const at::Tensor scales = band_scales(a, acc_type, x.device());
      const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
      log1p_median_bwd_kernel<scalar_t, acc_t>
          <<<static_cast<unsigned>(L.rows), threads_for(L.T), 0, stream>>>(
              grad_y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), scales.data_ptr<acc_t>(),
              to_device_layout(L, scaled), median_filter ? idx.data_ptr<int64_t>() : nullptr,
              gx.data_ptr<scalar_t>(), scaled ? ga_rows.data_ptr<acc_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (scaled) ga = reduce_grad_a(ga_rows, *a, L.per_band, L.F);
  });
  if (!scaled) ga = at::empty({0}, x.options());
  return {gx, ga};
}

}  // namespace
}  // namespace eleaf

TORCH_LIBRARY_IMPL(eleaf, CUDA, m) {
  m.impl("log1p_median_fwd", &eleaf::log1p_median_fwd_cuda);
  m.impl("log1p_median_bwd", &eleaf::log1p_median_bwd_cuda);
}
