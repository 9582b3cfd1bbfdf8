// In-place complex DFTs of one row for the CPU kernels of eleaf._C, computed by the oneMKL
// DFTI functions that the installed PyTorch exports (the x86-64 wheels link oneMKL into
// libtorch_cpu and use it for torch.fft). The functions are looked up at run time, so the
// extension loads and works without them (a torch built without MKL): available() is then
// false, and the callers fall back to other ops.
#pragma once

#include <cstdint>
#include <string>

namespace eleaf {
namespace dft {

// Whether the DFTI functions were found; otherwise reason() says why.
bool available();
std::string reason();

// Length-M complex transforms of contiguous re/im pairs, in place, single-threaded (for use
// inside at::parallel_for). forward: X[k] = scale sum_m x[m] e^{-2 pi i k m / M};
// backward: x[m] = scale sum_k X[k] e^{+2 pi i k m / M}. One committed MKL descriptor per
// (thread, M, dtype, scale), created on first use and kept for the thread's lifetime.
void forward(float* data, int64_t M, double scale);
void forward(double* data, int64_t M, double scale);
void backward(float* data, int64_t M, double scale);
void backward(double* data, int64_t M, double scale);

}  // namespace dft
}  // namespace eleaf
