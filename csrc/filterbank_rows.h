// Row kernels of the CPU Gabor filterbank shared by its ops: the squared modulus + pooling of
// one (example, filter) row (defined in modulus_pool.cpp) and the complex products of the
// frequency-domain path (defined in spectral_product.cpp). Each is compiled for AVX-512, AVX2
// and baseline x86-64 (cpu_math.h) and picked at load time.
#pragma once

#include <cstdint>

namespace eleaf {

// Pooling geometry of one call: B examples, n filters, N convolution steps per row, W window
// taps, T frames of the given stride; steps outside [lo, hi) count as zero.
struct Geometry {
  int64_t B, n, N, W, T, stride, lo, hi;
};

// One (b, f) row of responses: re and im at steps p * step, p = 0 ... N - 1.
template <typename T>
struct Row {
  const T* re;
  const T* im;
  int64_t step;
};

// out[t] = sum_q w[q] e[t * stride + q], e = re^2 + im^2 on [lo, hi) (0 elsewhere);
// e: scratch of N values.
void pool_row_fwd(const Row<float>& y, const float* w, float* out, float* e, const Geometry& g);
void pool_row_fwd(const Row<double>& y, const double* w, double* out, double* e,
                  const Geometry& g);

// Gradient of pool_row_fwd for the upstream gradient gy (T): writes the row's gradient
// (gre, gim at steps p * gstep) and adds the window's gradient to gw (W); e, a: scratch of N.
void pool_row_bwd(const float* gy, const Row<float>& y, const float* w, float* gw, float* gre,
                  float* gim, int64_t gstep, float* e, float* a, const Geometry& g);
void pool_row_bwd(const double* gy, const Row<double>& y, const double* w, double* gw,
                  double* gre, double* gim, int64_t gstep, double* e, double* a,
                  const Geometry& g);

// z[k] = x[k] h[k], z[k] += x[k] h[k] and o[k] += conj(a[k]) g[k], k < M (complex numbers
// as re/im pairs).
void cmul_any(const float* x, const float* h, float* z, int64_t M);
void cmul_any(const double* x, const double* h, double* z, int64_t M);
void cmul_add_any(const float* x, const float* h, float* z, int64_t M);
void cmul_add_any(const double* x, const double* h, double* z, int64_t M);
void cmul_conj_add_any(const float* a, const float* g, float* o, int64_t M);
void cmul_conj_add_any(const double* a, const double* g, double* o, int64_t M);

}  // namespace eleaf
