// Helpers shared by the CPU kernels of eleaf._C (compress.cpp, pcen.cpp, modulus_pool.cpp,
// spectral_product.cpp):
// compiler macros and branch-free float building blocks. Header-only, host C++ (not included
// by the CUDA sources).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

// Forces inlining (GCC / Clang), so that the helpers below vectorise inside their callers'
// loops and are compiled for the target of each multiversioned caller.
#if defined(__GNUC__) || defined(__clang__)
#define ELEAF_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ELEAF_ALWAYS_INLINE inline
#endif

// Function multiversioning: target_clones compiles one clone of a function per target, and an
// ifunc resolver picks one at load time (x86-64 Linux). The targets decide the numerics (FMA
// contraction, vector width of reductions), so each kernel file keeps its own list:
//   ELEAF_MULTIVERSION          AVX-512F, AVX2, baseline (GCC)              modulus_pool.cpp,
//                                                                           spectral_product.cpp
//   ELEAF_CLONES_AVX2           AVX2, baseline (GCC, Clang)                 compress.cpp
//   ELEAF_CLONES_X86_64_LEVELS  x86-64-v4 (AVX-512), v3 (AVX2 + FMA) and    pcen.cpp
//                               baseline (GCC >= 11), else ELEAF_CLONES_AVX2
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ELEAF_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ELEAF_MULTIVERSION
#endif

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define ELEAF_CLONES_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define ELEAF_CLONES_AVX2
#endif

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 11
#define ELEAF_CLONES_X86_64_LEVELS \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ELEAF_CLONES_X86_64_LEVELS ELEAF_CLONES_AVX2
#endif

namespace eleaf {

// Bits<T>::type: the unsigned integer type of T's size (float, double).
template <typename T>
struct Bits;
template <>
struct Bits<float> { using type = uint32_t; };
template <>
struct Bits<double> { using type = uint64_t; };

// ``c ? a : b`` on the bits: no control flow, so that loops using it vectorise (GCC also
// without -fno-trapping-math).
template <typename T>
ELEAF_ALWAYS_INLINE T bits_select(bool c, T a, T b) {
  using U = typename Bits<T>::type;
  U ia, ib;
  std::memcpy(&ia, &a, sizeof(T));
  std::memcpy(&ib, &b, sizeof(T));
  const U m = U(0) - static_cast<U>(c);
  const U r = (ia & m) | (ib & ~m);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// The float with the bit pattern i, and the bit pattern of f.
ELEAF_ALWAYS_INLINE float float_from_bits(uint32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof(f));
  return f;
}

ELEAF_ALWAYS_INLINE uint32_t bits_of(float f) {
  uint32_t i;
  std::memcpy(&i, &f, sizeof(i));
  return i;
}

// Cephes logf, argument reduction: w = 2^fe (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)), for a
// positive normal w; returns f and sets fe.
ELEAF_ALWAYS_INLINE float logf_reduce(float w, float& fe) {
  const uint32_t iw = bits_of(w);
  const uint32_t ix = iw - 0x3f3504f3u;
  const int32_t e = static_cast<int32_t>(ix) >> 23;
  const uint32_t iz = iw - (ix & 0xff800000u);
  fe = static_cast<float>(e);
  return float_from_bits(iz) - 1.0f;
}

// Cephes logf polynomial P(f): log(1 + f) = f - f^2 / 2 + f^3 P(f) on the reduced range.
ELEAF_ALWAYS_INLINE float logf_poly(float f) {
  float p = 7.0376836292E-2f;
  p = p * f - 1.1514610310E-1f;
  p = p * f + 1.1676998740E-1f;
  p = p * f - 1.2420140846E-1f;
  p = p * f + 1.4249322787E-1f;
  p = p * f - 1.6668057665E-1f;
  p = p * f + 2.0000714765E-1f;
  p = p * f - 2.4999993993E-1f;
  p = p * f + 3.3333331174E-1f;
  return p;
}

// r, a polynomial log(w), with std::log's special values: +inf and NaN as w, -inf at +-0,
// NaN below 0.
ELEAF_ALWAYS_INLINE float logf_special(float w, float r) {
  const float inf = std::numeric_limits<float>::infinity();
  r = bits_select(w < inf, r, w);                                          // +inf, NaN
  r = bits_select(w == 0.0f, -inf, r);                                     // +-0
  r = bits_select(w < 0.0f, std::numeric_limits<float>::quiet_NaN(), r);  // negative
  return r;
}

// log1p(u) from r, a polynomial log(w) of w = 1 + u (rounded): adds the correction
// (u - (w - 1)) / w for the rounding of w; NaN, +-inf, -1, -0 and u < -1 as std::log1p.
ELEAF_ALWAYS_INLINE float log1pf_finish(float u, float w, float r) {
  r += (u - (w - 1.0f)) / w;
  r = logf_special(w, r);            // +inf, NaN; u = -1; u < -1
  r = bits_select(u == 0.0f, u, r);  // sign of zero
  return r;
}

}  // namespace eleaf
