// eleaf._C: the direct (time-domain) strided Gabor convolution of the CPU filterbank, folded
// on the taps' symmetry (SPEC §2): a Gabor filter's real taps are even in time and its
// imaginary taps odd, so
//
//   re[p] = sum_{t=0}^{J} hr[t] (x[c + t] + x[c - t]),  im[p] = sum_{t=1}^{J} hi[t] (x[c + t] - x[c - t])
//
// with c = p s + J the step's centre sample: the sum and difference of each pair of samples
// feed all filters, and half the multiply-adds of a conv1d of the 2n full-length filters
// remain. Ops (autograd in eleaf/ops/gabor_cpu.py):
//
//   eleaf::gabor_fold_fwd(x, taps, int stride, int steps) -> y
//     x      (E, S) input segments (unit stride in time), S >= (steps - 1) stride + K
//     taps   (2n, K), K = 2 J + 1 odd: rows f < n the real taps of filter f, rows n + f its
//            imaginary taps, centred on sample p stride + J of step p; only the taps
//            t = 0 ... J (columns J ... 2 J) are read: the real rows are taken as even
//            (w[f, J - t] = w[f, J + t]) and the imaginary ones as odd, as Gabor taps are
//     y      (E, 2n, steps): conv1d(x, w, stride) for such taps
//
//   eleaf::gabor_fold_wgrad(grad, x, int stride, int taps) -> grad_taps
//     grad (E, 2n, steps), x as above, taps = K -> (2n, K): the gradient of the pair of taps
//     +-t, g[f, t] = sum_{e, p} grad[e, f, p] (x[c + t] + x[c - t]), split evenly between
//     them (columns J + t and J - t get g / 2 each; the imaginary rows' J - t get -g / 2;
//     the centre: the real rows' gradient, 0 for the imaginary ones). Exact for anything the
//     taps depend on symmetrically (the Gabor parameters); not the gradient of each tap on
//     its own.
//
// Both read the input through its polyphase split (xs[r][m] = x[m stride + r]): for a tile of
// L consecutive steps, sample p stride + k is L consecutive values of row k mod stride, one
// vector load. The forward pass keeps a tile's 2 x NF accumulators (NF filters) in registers
// over all taps; the weight gradient keeps NF filters x JB taps. Parallel over (example, tile)
// and over (filter chunk, tap block) respectively: no atomics, the result does not depend on
// the number of threads. float32 and float64, computed in the input dtype. Each kernel is
// compiled for AVX-512, AVX2 + FMA and baseline x86-64 (wider vectors, more filters per pass)
// and chosen at run time.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "cpu_math.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ELEAF_FOLD_X86 1
#define ELEAF_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define ELEAF_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define ELEAF_FOLD_X86 0
#endif

// GCC notes that passing vectors wider than the baseline target's changes the ABI: the
// helpers taking and returning them are always inlined into their callers of one target.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace eleaf {
namespace {

// L lanes of T (GCC / Clang vector extension: one register of the target, or several)
template <typename T, int L>
struct Lanes {
  typedef T type __attribute__((vector_size(L * sizeof(T))));
};

template <typename T, int L>
ELEAF_ALWAYS_INLINE typename Lanes<T, L>::type load(const T* p) {
  typename Lanes<T, L>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, int L>
ELEAF_ALWAYS_INLINE T lane_sum(const typename Lanes<T, L>::type& v) {
  T s = 0;
  for (int i = 0; i < L; ++i) s += v[i];
  return s;
}

// One call: E examples of the polyphase input xs (E, s, M), n filters, K = 2 J + 1 taps,
// `steps` outputs per example in `tiles` tiles of L steps.
template <typename T>
struct Fold {
  const T* xs;           // (E, s, M) polyphase input, zero beyond the segment
  const int64_t* plus;   // (J + 1 + pad) offset in xs of sample c + t relative to the tile
  const int64_t* minus;  // ... of sample c - t
  int64_t E, n, J, s, M, steps, tiles;
};

// Forward: y[e, f, p] for the units (e, tile) in [u0, u1); taps (chunks, J + 1, NF, 2):
// chunk c's real and imaginary half taps of filters c NF ... c NF + NF - 1 (zero beyond n).
template <typename T, int L, int NF>
ELEAF_ALWAYS_INLINE void fwd_units(const Fold<T>& g, const T* taps, int64_t chunks, T* y,
                                   int64_t u0, int64_t u1) {
  using V = typename Lanes<T, L>::type;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t e = u / g.tiles, p0 = (u % g.tiles) * L;
    const T* base = g.xs + e * g.s * g.M + p0;
    const int64_t valid = std::min<int64_t>(L, g.steps - p0);
    for (int64_t c = 0; c < chunks; ++c) {
      const T* h = taps + c * (g.J + 1) * NF * 2;
      V re[NF], im[NF];
      for (int i = 0; i < NF; ++i) re[i] = im[i] = V{};
      for (int64_t t = 0; t <= g.J; ++t) {
        const V a = load<T, L>(base + g.plus[t]), b = load<T, L>(base + g.minus[t]);
        const V sum = a + b, diff = a - b;
        const T* ht = h + t * NF * 2;
        for (int i = 0; i < NF; ++i) {
          re[i] += ht[2 * i] * sum;
          im[i] += ht[2 * i + 1] * diff;
        }
      }
      for (int i = 0; i < NF && c * NF + i < g.n; ++i) {
        T* yr = y + (e * 2 * g.n + c * NF + i) * g.steps + p0;
        T* yi = yr + g.n * g.steps;
        for (int64_t l = 0; l < valid; ++l) {
          yr[l] = re[i][l];
          yi[l] = im[i][l];
        }
      }
    }
  }
}

// L lanes in reverse order.
template <typename T, int L>
ELEAF_ALWAYS_INLINE typename Lanes<T, L>::type reversed(const typename Lanes<T, L>::type& v) {
  using I = typename Lanes<typename Bits<T>::type, L>::type;
  I order;
  for (int i = 0; i < L; ++i) order[i] = L - 1 - i;
#if defined(__clang__)
  typename Lanes<T, L>::type r;
  for (int i = 0; i < L; ++i) r[i] = v[L - 1 - i];
  (void)order;
  return r;
#else
  return __builtin_shuffle(v, order);
#endif
}

// Weight gradient, vectorised over taps: samples c + t of taps t = t0 ... t0 + L - 1 are L
// consecutive input samples, samples c - t the L before c - t0 in reverse order, and each
// step's gradient of a filter is one broadcast scalar (gt holds those of a filter chunk side
// by side). An item (filter chunk c, block of TB x L taps starting at tap t0 <= J + 1 - TB L,
// so that it reads only taps t <= J: the last block may overlap the one before) keeps its
// 2 NF TB accumulators in registers over a range of steps and adds them to its own rows of
// acc. Examples and ranges of steps are the outer loops: the items of a thread share the
// range's input and gradient in the L1 cache.
template <typename T>
struct Wgrad {
  const T* x;   // (E, S) input, row stride xs
  const T* gt;  // (E, chunks, steps, 2, NF): real then imaginary parts' gradient, 0 beyond n
  T* acc;       // (chunks, blocks, 2, NF, TB L) sums per item
  int64_t E, xs, chunks, blocks, J, s, steps, range;
};

template <typename T, int L, int NF, int TB>
ELEAF_ALWAYS_INLINE void wgrad_items(const Wgrad<T>& g, int64_t i0, int64_t i1) {
  using V = typename Lanes<T, L>::type;
  constexpr int64_t kSpan = TB * L;
  for (int64_t e = 0; e < g.E; ++e) {
    const T* x = g.x + e * g.xs;
    for (int64_t p0 = 0; p0 < g.steps; p0 += g.range) {
      const int64_t p1 = std::min(g.steps, p0 + g.range);
      for (int64_t item = i0; item < i1; ++item) {
        const int64_t c = item / g.blocks;
        const int64_t t0 = std::min((item % g.blocks) * kSpan, g.J + 1 - kSpan);
        const T* gp = g.gt + ((e * g.chunks + c) * g.steps + p0) * 2 * NF;
        V re[NF][TB], im[NF][TB];
        for (int i = 0; i < NF; ++i)
          for (int k = 0; k < TB; ++k) re[i][k] = im[i][k] = V{};
        // step p: c = p s + J; x[c + t0 + k L ...] forwards, x[c - t0 - k L - L + 1 ...] reversed
        const T* fwd = x + p0 * g.s + g.J + t0;
        const T* bwd = x + p0 * g.s + g.J - t0 - L + 1;
        for (int64_t p = p0; p < p1; ++p, fwd += g.s, bwd += g.s, gp += 2 * NF) {
          V sum[TB], diff[TB];
          for (int k = 0; k < TB; ++k) {
            const V a = load<T, L>(fwd + k * L), b = reversed<T, L>(load<T, L>(bwd - k * L));
            sum[k] = a + b;
            diff[k] = a - b;
          }
          for (int i = 0; i < NF; ++i) {
            for (int k = 0; k < TB; ++k) {
              re[i][k] += gp[i] * sum[k];
              im[i][k] += gp[NF + i] * diff[k];
            }
          }
        }
        T* mine = g.acc + item * 2 * NF * kSpan;
        for (int i = 0; i < NF; ++i) {
          for (int k = 0; k < TB; ++k) {
            T* ar = mine + i * kSpan + k * L;
            T* ai = ar + NF * kSpan;
            const V r = load<T, L>(ar) + re[i][k], m = load<T, L>(ai) + im[i][k];
            std::memcpy(ar, &r, sizeof(V));
            std::memcpy(ai, &m, sizeof(V));
          }
        }
      }
    }
  }
}

// Tap vectors per weight-gradient item: two while 2 NF x 2 accumulators fit in max_acc.
constexpr int wgrad_tb(int nf, int max_acc) { return 4 * nf <= max_acc ? 2 : 1; }

template <typename T, int L, int MaxNF, int MaxAcc, int NF = MaxNF>
ELEAF_ALWAYS_INLINE void wgrad_any(int nf, const Wgrad<T>& g, int64_t i0, int64_t i1) {
  if constexpr (NF > 1) {
    if (nf < NF) return wgrad_any<T, L, MaxNF, MaxAcc, NF - 1>(nf, g, i0, i1);
  }
  wgrad_items<T, L, NF, wgrad_tb(NF, MaxAcc)>(g, i0, i1);
}

// Run-time choice among the instantiations: filters per forward pass up to kMaxNF.
template <typename T, int L, int MaxNF, int NF = MaxNF>
ELEAF_ALWAYS_INLINE void fwd_any(int nf, const Fold<T>& g, const T* taps, int64_t chunks, T* y,
                                 int64_t u0, int64_t u1) {
  if constexpr (NF > 1) {
    if (nf < NF) return fwd_any<T, L, MaxNF, NF - 1>(nf, g, taps, chunks, y, u0, u1);
  }
  fwd_units<T, L, NF>(g, taps, chunks, y, u0, u1);
}

// The shapes per target: forward tiles of L lanes with up to MaxNF filters (2 MaxNF vector
// accumulators), weight gradient NF filters x JB taps (2 NF JB accumulators).
template <typename T>
struct Shape;
template <>
struct Shape<float> {
  static constexpr int kLanes512 = 16, kLanes256 = 8, kLanes128 = 4;
};
template <>
struct Shape<double> {
  static constexpr int kLanes512 = 8, kLanes256 = 4, kLanes128 = 2;
};

constexpr int kMaxNF512 = 10, kMaxNF256 = 5, kMaxNF128 = 5;
// weight gradient: accumulators at most (2 NF TB), filters per chunk at most
constexpr int kWgradAcc512 = 20, kWgradAcc256 = 10, kWgradAcc128 = 10;
constexpr int kWgradNF512 = 10, kWgradNF256 = 5, kWgradNF128 = 5;

template <typename T>
using FwdFn = void (*)(int, const Fold<T>&, const T*, int64_t, T*, int64_t, int64_t);
template <typename T>
using WgradFn = void (*)(int, const Wgrad<T>&, int64_t, int64_t);

template <typename T>
void fwd_base(int nf, const Fold<T>& g, const T* taps, int64_t chunks, T* y, int64_t u0,
              int64_t u1) {
  fwd_any<T, Shape<T>::kLanes128, kMaxNF128>(nf, g, taps, chunks, y, u0, u1);
}
template <typename T>
void wgrad_base(int nf, const Wgrad<T>& g, int64_t i0, int64_t i1) {
  wgrad_any<T, Shape<T>::kLanes128, kWgradNF128, kWgradAcc128>(nf, g, i0, i1);
}
#if ELEAF_FOLD_X86
template <typename T>
ELEAF_TARGET_AVX2 void fwd_avx2(int nf, const Fold<T>& g, const T* taps, int64_t chunks, T* y,
                                int64_t u0, int64_t u1) {
  fwd_any<T, Shape<T>::kLanes256, kMaxNF256>(nf, g, taps, chunks, y, u0, u1);
}
template <typename T>
ELEAF_TARGET_AVX2 void wgrad_avx2(int nf, const Wgrad<T>& g, int64_t i0, int64_t i1) {
  wgrad_any<T, Shape<T>::kLanes256, kWgradNF256, kWgradAcc256>(nf, g, i0, i1);
}
template <typename T>
ELEAF_TARGET_AVX512 void fwd_avx512(int nf, const Fold<T>& g, const T* taps, int64_t chunks,
                                    T* y, int64_t u0, int64_t u1) {
  fwd_any<T, Shape<T>::kLanes512, kMaxNF512>(nf, g, taps, chunks, y, u0, u1);
}
template <typename T>
ELEAF_TARGET_AVX512 void wgrad_avx512(int nf, const Wgrad<T>& g, int64_t i0, int64_t i1) {
  wgrad_any<T, Shape<T>::kLanes512, kWgradNF512, kWgradAcc512>(nf, g, i0, i1);
}
#endif

// The widest instruction set of this CPU: 512, 256 or 128 (bits of a vector), at most
// $ELEAF_FOLD_MAX_BITS where set (the tests run every kernel that way).
int vector_bits() {
#if ELEAF_FOLD_X86
  static const int native = __builtin_cpu_supports("avx512f")                             ? 512
                            : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 256
                                                                                              : 128;
#else
  static const int native = 128;
#endif
  const char* cap = std::getenv("ELEAF_FOLD_MAX_BITS");
  if (cap == nullptr || *cap == '\0') return native;
  const int bits = std::atoi(cap);
  return bits >= 512 ? native : bits >= 256 ? std::min(native, 256) : 128;
}

int lanes_for(int bits, bool is_float) {
  const int l = bits / 32;
  return is_float ? l : l / 2;
}

// The polyphase split of x (E, S) into xs (E, s, M): xs[e, r, m] = x[e, m s + r] where
// m s + r < S, else 0.
template <typename T>
void split(const at::Tensor& x, int64_t s, int64_t M, T* xs) {
  const int64_t E = x.size(0), S = x.size(1), row = x.stride(0);
  const T* xp = x.data_ptr<T>();
  at::parallel_for(0, E * s, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t er = r0; er < r1; ++er) {
      const int64_t e = er / s, r = er % s;
      const T* src = xp + e * row;
      T* dst = xs + er * M;
      const int64_t n = r < S ? std::min<int64_t>(M, (S - 1 - r) / s + 1) : 0;
      for (int64_t m = 0; m < n; ++m) dst[m] = src[m * s + r];
      std::fill(dst + n, dst + M, T(0));
    }
  });
}

// Scratch memory of the calling thread, kept between calls (slot: one buffer per use): freshly
// allocated megabytes cost a page fault per 4 KiB on every call, which took longer than the
// kernels themselves (EfficientLEAF 8G-opt, 16 x 1 s). Not zeroed.
template <typename T>
T* scratch(int slot, size_t size) {
  thread_local std::vector<T> buffers[2];
  std::vector<T>& b = buffers[slot];
  if (b.size() < size) {
    b.clear();
    b.shrink_to_fit();
    b.resize(size);
  }
  return b.data();
}

struct Layout {
  int64_t J, tiles, M;
  std::vector<int64_t> plus, minus;
};

// Tiles of L steps, polyphase rows of M samples, offsets of samples c +- t (t = 0 ... J).
Layout make_layout(int64_t K, int64_t s, int64_t steps, int L) {
  Layout lay;
  lay.J = K / 2;
  lay.tiles = (steps + L - 1) / L;
  lay.M = lay.tiles * L + (K - 1) / s + 1;
  lay.plus.resize(lay.J + 1);
  lay.minus.resize(lay.J + 1);
  for (int64_t t = 0; t <= lay.J; ++t) {
    const int64_t kp = lay.J + t, km = lay.J - t;
    lay.plus[t] = (kp % s) * lay.M + kp / s;
    lay.minus[t] = (km % s) * lay.M + km / s;
  }
  return lay;
}

void check_x(const at::Tensor& x, int64_t stride, const char* op) {
  TORCH_CHECK(x.dim() == 2, op, ": x must be (E, S), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": float32 or float64 only, got ", x.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
}

at::Tensor gabor_fold_fwd_cpu(const at::Tensor& x_, const at::Tensor& taps_, int64_t stride,
                              int64_t steps) {
  const char* op = "eleaf::gabor_fold_fwd";
  check_x(x_, stride, op);
  TORCH_CHECK(taps_.dim() == 2 && taps_.size(0) % 2 == 0 && taps_.size(1) % 2 == 1, op,
              ": taps must be (2n, K) with K odd, got ", taps_.sizes());
  TORCH_CHECK(taps_.scalar_type() == x_.scalar_type() && taps_.device().is_cpu(), op,
              ": taps must be a CPU tensor of x's dtype");
  const int64_t n = taps_.size(0) / 2, K = taps_.size(1), J = K / 2;
  TORCH_CHECK(steps >= 0 && (steps == 0 || (steps - 1) * stride + K <= x_.size(1)), op,
              ": ", steps, " steps of stride ", stride, " and ", K, " taps need at least ",
              (steps - 1) * stride + K, " samples, x has ", x_.size(1));
  const int64_t E = x_.size(0);
  at::Tensor y = at::empty({E, 2 * n, steps}, x_.options());
  if (y.numel() == 0) return y;
  const at::Tensor x = x_.stride(1) == 1 ? x_ : x_.contiguous();
  const at::Tensor h = taps_.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gabor_fold_fwd_cpu", [&] {
    using T = scalar_t;
    const int bits = vector_bits();
    const int L = lanes_for(bits, std::is_same<T, float>::value);
    const int max_nf = bits == 512 ? kMaxNF512 : bits == 256 ? kMaxNF256 : kMaxNF128;
    const int64_t chunks = (n + max_nf - 1) / max_nf;
    const int nf = static_cast<int>((n + chunks - 1) / chunks);
    const Layout lay = make_layout(K, stride, steps, L);
    T* xs = scratch<T>(0, E * stride * lay.M);
    split<T>(x, stride, lay.M, xs);
    // taps (chunks, J + 1, nf, 2): the centre's real tap halved (its sample is added twice)
    T* taps = scratch<T>(1, chunks * (J + 1) * nf * 2);
    std::fill(taps, taps + chunks * (J + 1) * nf * 2, T(0));
    const T* hp = h.data_ptr<T>();
    for (int64_t f = 0; f < n; ++f) {
      const int64_t c = f / nf, i = f % nf;
      for (int64_t t = 0; t <= J; ++t) {
        T* dst = taps + ((c * (J + 1) + t) * nf + i) * 2;
        dst[0] = t == 0 ? hp[f * K + J] * T(0.5) : hp[f * K + J + t];
        dst[1] = t == 0 ? T(0) : hp[(n + f) * K + J + t];
      }
    }
    const Fold<T> g{xs, lay.plus.data(), lay.minus.data(), E, n, J, stride, lay.M,
                    steps, lay.tiles};
    FwdFn<T> fn = fwd_base<T>;
#if ELEAF_FOLD_X86
    if (bits == 512) fn = fwd_avx512<T>;
    else if (bits == 256) fn = fwd_avx2<T>;
#endif
    T* yp = y.data_ptr<T>();
    at::parallel_for(0, E * lay.tiles, 1, [&](int64_t u0, int64_t u1) {
      fn(nf, g, taps, chunks, yp, u0, u1);
    });
  });
  return y;
}

at::Tensor gabor_fold_wgrad_cpu(const at::Tensor& grad_, const at::Tensor& x_, int64_t stride,
                                int64_t K) {
  const char* op = "eleaf::gabor_fold_wgrad";
  check_x(x_, stride, op);
  TORCH_CHECK(K >= 1 && K % 2 == 1, op, ": taps must be odd, got ", K);
  TORCH_CHECK(grad_.dim() == 3 && grad_.size(0) == x_.size(0) && grad_.size(1) % 2 == 0 &&
                  grad_.scalar_type() == x_.scalar_type() && grad_.device().is_cpu(),
              op, ": grad must be (E, 2n, steps) of x's dtype with E = ", x_.size(0), ", got ",
              grad_.sizes(), " ", grad_.scalar_type());
  const int64_t E = grad_.size(0), n = grad_.size(1) / 2, steps = grad_.size(2), J = K / 2;
  TORCH_CHECK(steps == 0 || (steps - 1) * stride + K <= x_.size(1), op, ": ", steps,
              " steps of stride ", stride, " and ", K, " taps need at least ",
              (steps - 1) * stride + K, " samples, x has ", x_.size(1));
  at::Tensor out = at::zeros({2 * n, K}, x_.options());
  if (E == 0 || n == 0 || steps == 0) return out;
  const at::Tensor x = x_.stride(1) == 1 ? x_ : x_.contiguous();
  const at::Tensor grad = grad_.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gabor_fold_wgrad_cpu", [&] {
    using T = scalar_t;
    const int bits = vector_bits();
    int L = lanes_for(bits, std::is_same<T, float>::value);
    int max_nf = bits == 512 ? kWgradNF512 : bits == 256 ? kWgradNF256 : kWgradNF128;
    int max_acc = bits == 512 ? kWgradAcc512 : bits == 256 ? kWgradAcc256 : kWgradAcc128;
    WgradFn<T> fn = wgrad_base<T>;
#if ELEAF_FOLD_X86
    if (bits == 512) fn = wgrad_avx512<T>;
    else if (bits == 256) fn = wgrad_avx2<T>;
#endif
    const int64_t chunks = (n + max_nf - 1) / max_nf;
    const int nf = static_cast<int>((n + chunks - 1) / chunks);
    int64_t span = wgrad_tb(nf, max_acc) * L;
    if (J + 1 < span) {  // a block would read taps beyond J: the baseline kernel's shorter one
      fn = wgrad_base<T>;
      L = lanes_for(128, std::is_same<T, float>::value);
      max_acc = kWgradAcc128;
      span = wgrad_tb(nf, max_acc) * L;
    }
    if (J + 1 < span) {  // still: sum the pairs in double here (kernels of few taps)
      const T* xp = x.data_ptr<T>();
      const T* gs = grad.data_ptr<T>();
      T* op_ = out.data_ptr<T>();
      at::parallel_for(0, 2 * n, 1, [&](int64_t f0, int64_t f1) {
        for (int64_t f = f0; f < f1; ++f) {
          const bool odd = f >= n;
          for (int64_t t = 0; t <= J; ++t) {
            double sum = 0;
            for (int64_t e = 0; e < E; ++e) {
              const T* row = xp + e * x.stride(0);
              const T* gr = gs + (e * 2 * n + f) * steps;
              for (int64_t p = 0; p < steps; ++p) {
                const T a = row[p * stride + J + t], b = row[p * stride + J - t];
                sum += double(gr[p]) * double(t == 0 ? (odd ? T(0) : a) : odd ? a - b : a + b);
              }
            }
            T* dst = op_ + f * K + J;
            dst[t] = T(t == 0 ? sum : 0.5 * sum);
            if (t > 0) dst[-t] = odd ? -dst[t] : dst[t];
          }
        }
      });
      return;
    }
    const int64_t blocks = (J + 1 + span - 1) / span;
    T* gt = scratch<T>(0, E * chunks * steps * 2 * nf);
    T* acc = scratch<T>(1, chunks * blocks * 2 * nf * span);
    std::fill(acc, acc + chunks * blocks * 2 * nf * span, T(0));
    const T* gsrc = grad.data_ptr<T>();
    // gt[e, c, p, part, i] = grad[e, part n + c nf + i, p] (0 for filters beyond n)
    at::parallel_for(0, E * chunks, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t e = r / chunks, c = r % chunks;
        T* dst = gt + r * steps * 2 * nf;
        for (int64_t p = 0; p < steps; ++p) {
          for (int part = 0; part < 2; ++part) {
            for (int i = 0; i < nf; ++i) {
              const int64_t f = c * nf + i;
              dst[(p * 2 + part) * nf + i] =
                  f < n ? gsrc[(e * 2 * n + part * n + f) * steps + p] : T(0);
            }
          }
        }
      }
    });
    // steps per range: the range's input samples and gradient fill about 24 KiB
    const int64_t range =
        std::max<int64_t>(8, (24 << 10) / (int64_t(sizeof(T)) * (stride + 2 * nf)));
    const Wgrad<T> g{x.data_ptr<T>(), gt, acc, E, x.stride(0), chunks, blocks, J, stride,
                     steps, range};
    at::parallel_for(0, chunks * blocks, 1, [&](int64_t i0, int64_t i1) {
      fn(nf, g, i0, i1);
    });
    // taps per item: block b covers t0 = min(b span, J + 1 - span) ...; the centre sample
    // was added twice (c + 0 and c - 0); an odd filter has no centre tap
    T* op_ = out.data_ptr<T>();
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t t0 = std::min(b * span, J + 1 - span);
        const T* mine = acc + (c * blocks + b) * 2 * nf * span;
        for (int i = 0; i < nf && c * nf + i < n; ++i) {
          T* gr = op_ + (c * nf + i) * K + J;
          T* gi = op_ + (n + c * nf + i) * K + J;
          for (int64_t k = 0; k < span; ++k) {
            const int64_t t = t0 + k;
            const T r = mine[i * span + k], m = mine[(nf + i) * span + k];
            if (t == 0) {
              gr[0] = r * T(0.5);
              gi[0] = T(0);
            } else {
              gr[t] = gr[-t] = r * T(0.5);
              gi[t] = m * T(0.5);
              gi[-t] = -gi[t];
            }
          }
        }
      }
    }
  });
  return out;
}

}  // namespace
}  // namespace eleaf

TORCH_LIBRARY_FRAGMENT(eleaf, m) {
  m.def("gabor_fold_fwd(Tensor x, Tensor taps, int stride, int steps) -> Tensor");
  m.def("gabor_fold_wgrad(Tensor grad, Tensor x, int stride, int taps) -> Tensor");
}

TORCH_LIBRARY_IMPL(eleaf, CPU, m) {
  m.impl("gabor_fold_fwd", &eleaf::gabor_fold_fwd_cpu);
  m.impl("gabor_fold_wgrad", &eleaf::gabor_fold_wgrad_cpu);
}
