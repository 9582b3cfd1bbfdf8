// eleaf._C: the autograd of the compiled ops' forwards, in C++.
//
// For each op with a separate backward op, a torch::autograd::Function whose forward calls
// the op below autograd and saves what the backward op needs, registered as the op's
// Autograd kernel (all devices the op has kernels for):
//
//   eleaf::log1p_median_fwd -> (y, idx): saves x, a, idx; backward eleaf::log1p_median_bwd;
//     idx is not differentiable; a's gradient only when a is a defined tensor that needs one.
//     Kernels: compress.cpp (CPU), compress_cuda.cu (CUDA).
//   eleaf::pcen_fwd -> y: saves x, s, alpha, delta, r; backward eleaf::pcen_bwd. pcen.cpp.
//
// Registered in C++ rather than with torch.library.register_autograd because a Python
// autograd kernel costs tens of microseconds of host time per call: on a GPU that is most of
// log1p_median's time (its kernels take about 0.07 ms forward+backward at (256, 80, 100) on
// an H100). torch.compile traces through these like through any C++ autograd kernel; the
// fake kernels stay in eleaf/ops/compress.py and eleaf/ops/pcen_cpp.py.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>

namespace eleaf {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> call_fwd(const at::Tensor& x,
                                            const c10::optional<at::Tensor>& a, bool per_band,
                                            bool median_filter, bool append) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("eleaf::log1p_median_fwd", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const c10::optional<at::Tensor>&, bool, bool,
                           bool)>();
  return op.call(x, a, per_band, median_filter, append);
}

std::tuple<at::Tensor, at::Tensor> call_bwd(const at::Tensor& grad_y, const at::Tensor& x,
                                            const c10::optional<at::Tensor>& a,
                                            const at::Tensor& idx, bool per_band,
                                            bool median_filter, bool append) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("eleaf::log1p_median_bwd", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&,
                           const c10::optional<at::Tensor>&, const at::Tensor&, bool, bool,
                           bool)>();
  return op.call(grad_y, x, a, idx, per_band, median_filter, append);
}

class Log1pMedian : public torch::autograd::Function<Log1pMedian> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               const c10::optional<at::Tensor>& a, bool per_band,
                               bool median_filter, bool append) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [y, idx] = call_fwd(x, a, per_band, median_filter, append);
    const bool has_a = a.has_value() && a->defined();
    ctx->save_for_backward({x, has_a ? *a : at::Tensor(), idx});
    ctx->saved_data["per_band"] = per_band;
    ctx->saved_data["median_filter"] = median_filter;
    ctx->saved_data["append"] = append;
    ctx->saved_data["has_a"] = has_a;
    ctx->mark_non_differentiable({idx});
    return {y, idx};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool has_a = ctx->saved_data["has_a"].toBool();
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_a = has_a && ctx->needs_input_grad(1);
    variable_list out(5);
    if (!(need_x || need_a)) return out;
    // grads[0] is never undefined: the Function materialises an unused y's gradient as zeros
    const at::Tensor& x = saved[0];
    const at::Tensor& grad_y = grads[0];
    const c10::optional<at::Tensor> a =
        has_a ? c10::optional<at::Tensor>(saved[1]) : c10::nullopt;
    auto [gx, ga] = call_bwd(grad_y, x, a, saved[2], ctx->saved_data["per_band"].toBool(),
                             ctx->saved_data["median_filter"].toBool(),
                             ctx->saved_data["append"].toBool());
    if (need_x) out[0] = gx;
    if (need_a) out[1] = ga;
    return out;
  }
};

using Tensor5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

class Pcen : public torch::autograd::Function<Pcen> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s,
                            const at::Tensor& alpha, const at::Tensor& delta,
                            const at::Tensor& r, double eps, c10::optional<double> clamp) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("eleaf::pcen_fwd", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, double, c10::optional<double>)>();
    at::AutoDispatchBelowADInplaceOrView below;
    ctx->save_for_backward({x, s, alpha, delta, r});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["clamp"] = clamp.has_value() ? c10::IValue(*clamp) : c10::IValue();
    return op.call(x, s, alpha, delta, r, eps, clamp);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("eleaf::pcen_bwd", "")
                         .typed<Tensor5(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        double, c10::optional<double>)>();
    variable_list out(7);
    bool any = false;
    for (int i = 0; i < 5; ++i) any = any || ctx->needs_input_grad(i);
    if (!any) return out;
    const auto v = ctx->get_saved_variables();
    const c10::IValue& clamp = ctx->saved_data["clamp"];
    auto [dx, ds, dalpha, ddelta, dr] =
        op.call(grads[0], v[0], v[1], v[2], v[3], v[4], ctx->saved_data["eps"].toDouble(),
                clamp.isNone() ? c10::nullopt : c10::optional<double>(clamp.toDouble()));
    const at::Tensor all[5] = {dx, ds, dalpha, ddelta, dr};
    for (int i = 0; i < 5; ++i) {
      if (ctx->needs_input_grad(i)) out[i] = all[i];
    }
    return out;
  }
};

at::Tensor pcen_fwd_autograd(const at::Tensor& x, const at::Tensor& s, const at::Tensor& alpha,
                             const at::Tensor& delta, const at::Tensor& r, double eps,
                             c10::optional<double> clamp) {
  return Pcen::apply(x, s, alpha, delta, r, eps, clamp);
}

std::tuple<at::Tensor, at::Tensor> log1p_median_fwd_autograd(const at::Tensor& x,
                                                             const c10::optional<at::Tensor>& a,
                                                             bool per_band, bool median_filter,
                                                             bool append) {
  auto outs = Log1pMedian::apply(x, a, per_band, median_filter, append);
  return {outs[0], outs[1]};
}

}  // namespace
}  // namespace eleaf

TORCH_LIBRARY_IMPL(eleaf, Autograd, m) {
  m.impl("log1p_median_fwd", &eleaf::log1p_median_fwd_autograd);
  m.impl("pcen_fwd", &eleaf::pcen_fwd_autograd);
}
