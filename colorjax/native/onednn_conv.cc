// XLA FFI handlers running the three passes of a 2-D grouped cross-correlation through oneDNN:
// the forward pass, the input gradient and the kernel gradient. Activations are NHWC, kernels
// HWIO ([kh, kw, Cin / groups, Cout]), as colorjax holds them; float32 or bfloat16 operands,
// float32 accumulation, float32 kernel gradients. Primitives are created once per shape and
// kept; the kernel is reordered into the primitive's own layout once per call. Each call
// brings its own scratchpad, so devices of one process may run the same primitive at once.
//
// Attributes: strides [sh, sw], padding [top, bottom, left, right], dilation [dh, dw]
// (1 = none, as in XLA), groups.

#include <omp.h>
#include <sched.h>

#include <cstdint>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Ints = ffi::Span<const int64_t>;

namespace {

struct Geometry {
  memory::dims strides, dilation, pad_low, pad_high;
  int64_t groups;
};

Geometry MakeGeometry(Ints strides, Ints padding, Ints dilation, int64_t groups) {
  return {{strides[0], strides[1]},
          {dilation[0] - 1, dilation[1] - 1},  // oneDNN counts the inserted gaps
          {padding[0], padding[2]},
          {padding[1], padding[3]},
          groups};
}

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The CPUs this process may run on (its affinity mask), as the OpenMP team size.
int AllowedThreads() {
  static const int threads = [] {
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : omp_get_num_procs();
  }();
  return threads;
}

memory::data_type DataType(ffi::DataType type) {
  switch (type) {
    case ffi::DataType::F32:
      return memory::data_type::f32;
    case ffi::DataType::BF16:
      return memory::data_type::bf16;
    default:
      throw std::invalid_argument("oneDNN convolutions take float32 or bfloat16");
  }
}

// An NHWC activation [N, H, W, C].
memory::desc ActivationDesc(Ints nhwc, memory::data_type type) {
  return memory::desc({nhwc[0], nhwc[3], nhwc[1], nhwc[2]}, type, memory::format_tag::nhwc);
}

// An HWIO kernel [kh, kw, Cin / G, Cout] as oneDNN's grouped weights (G, Cout / G, Cin / G, kh, kw).
memory::desc KernelDesc(Ints hwio, int64_t groups, memory::data_type type) {
  const int64_t kh = hwio[0], kw = hwio[1], in = hwio[2], out = hwio[3];
  if (groups == 1) return memory::desc({out, in, kh, kw}, type, {1, out, kw * in * out, in * out});
  return memory::desc({groups, out / groups, in, kh, kw}, type,
                      {out / groups, 1, out, kw * in * out, in * out});
}

// `desc` with every layout left to the primitive.
memory::desc AnyLayout(const memory::desc& desc) {
  return memory::desc(desc.get_dims(), desc.get_data_type(), memory::format_tag::any);
}

// Everything a primitive depends on, as a cache key.
std::string Key(char pass, ffi::DataType type, Ints a, Ints b, Ints c, const Geometry& g) {
  std::ostringstream key;
  key << pass << static_cast<int>(type) << ':' << g.groups;
  for (Ints dims : {a, b, c})
    for (int64_t d : dims) key << ',' << d;
  for (const memory::dims& dims : {g.strides, g.dilation, g.pad_low, g.pad_high})
    for (int64_t d : dims) key << ';' << d;
  return key.str();
}

// Primitives whose scratchpad each execution passes in.
dnnl::primitive_attr OwnScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const memory::desc& x,
                                                      const memory::desc& kernel,
                                                      const memory::desc& y, const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, x,
      AnyLayout(kernel), y, g.strides, g.dilation, g.pad_low, g.pad_high, OwnScratchpad());
}

// A convolution primitive, the kernel layout it wants and the reorder to or from colorjax's.
struct Plan {
  dnnl::primitive convolution;
  memory::desc scratchpad;
  memory::desc kernel;       // the primitive's layout
  memory::desc user_kernel;  // HWIO
  dnnl::reorder reorder;
  memory::desc reorder_scratchpad;
  bool needs_reorder;
};

template <typename Primitive>
Plan MakePlan(const typename Primitive::primitive_desc& desc, const memory::desc& kernel,
              const memory::desc& user_kernel, bool into_primitive) {
  Plan plan{Primitive(desc), desc.scratchpad_desc(), kernel, user_kernel,
            {}, {}, kernel != user_kernel};
  if (plan.needs_reorder) {
    const memory::desc& from = into_primitive ? user_kernel : kernel;
    const memory::desc& to = into_primitive ? kernel : user_kernel;
    dnnl::reorder::primitive_desc reorder(Engine(), from, Engine(), to, OwnScratchpad());
    plan.reorder = dnnl::reorder(reorder);
    plan.reorder_scratchpad = reorder.scratchpad_desc();
  }
  return plan;
}

// x [N,H,W,Cin], kernel HWIO, y [N,Ho,Wo,Cout]; `type` is that of the activations.
Plan ForwardPlan(Ints x, Ints kernel, Ints y, memory::data_type type, const Geometry& g) {
  const memory::desc user_kernel = KernelDesc(kernel, g.groups, type);
  auto desc = ForwardDesc(ActivationDesc(x, type), user_kernel, ActivationDesc(y, type), g);
  return MakePlan<dnnl::convolution_forward>(desc, desc.weights_desc(), user_kernel, true);
}

Plan InputGradPlan(Ints x, Ints kernel, Ints y, memory::data_type type, const Geometry& g) {
  const memory::desc user_kernel = KernelDesc(kernel, g.groups, type);
  const memory::desc dx = ActivationDesc(x, type), dy = ActivationDesc(y, type);
  auto hint = ForwardDesc(dx, user_kernel, dy, g);
  dnnl::convolution_backward_data::primitive_desc desc(
      Engine(), dnnl::algorithm::convolution_direct, dx, AnyLayout(user_kernel), dy, g.strides,
      g.dilation, g.pad_low, g.pad_high, hint, OwnScratchpad());
  return MakePlan<dnnl::convolution_backward_data>(desc, desc.weights_desc(), user_kernel, true);
}

Plan KernelGradPlan(Ints x, Ints kernel, Ints y, memory::data_type type, const Geometry& g) {
  const memory::desc user_kernel = KernelDesc(kernel, g.groups, memory::data_type::f32);
  const memory::desc xd = ActivationDesc(x, type), dy = ActivationDesc(y, type);
  auto hint = ForwardDesc(xd, KernelDesc(kernel, g.groups, type), dy, g);
  dnnl::convolution_backward_weights::primitive_desc desc(
      Engine(), dnnl::algorithm::convolution_direct, xd, AnyLayout(user_kernel), dy, g.strides,
      g.dilation, g.pad_low, g.pad_high, hint, OwnScratchpad());
  return MakePlan<dnnl::convolution_backward_weights>(desc, desc.diff_weights_desc(), user_kernel,
                                                      false);
}

using PlanMaker = Plan (*)(Ints, Ints, Ints, memory::data_type, const Geometry&);

// The plan for `key`, made by `make` on first use.
const Plan& CachedPlan(const std::string& key, PlanMaker make, Ints x, Ints kernel, Ints y,
                       memory::data_type type, const Geometry& g) {
  static std::mutex mutex;
  static std::unordered_map<std::string, Plan> plans;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = plans.find(key);
  if (found == plans.end()) found = plans.emplace(key, make(x, kernel, y, type, g)).first;
  return found->second;
}

memory Wrap(const memory::desc& desc, void* data) { return memory(desc, Engine(), data); }

// Runs `plan` with the activations `args`, the kernel in HWIO at `user_kernel` bound to
// `kernel_arg` (reordered into or out of the primitive's layout as needed).
void Run(const Plan& plan, std::unordered_map<int, memory> args, int kernel_arg,
         void* user_kernel, bool kernel_is_input) {
  omp_set_num_threads(AllowedThreads());
  dnnl::stream stream(Engine());
  memory user = Wrap(plan.user_kernel, user_kernel);
  memory kernel = plan.needs_reorder ? memory(plan.kernel, Engine()) : user;
  auto reorder = [&](const memory& from, const memory& to) {
    plan.reorder.execute(stream, {{DNNL_ARG_FROM, from},
                                  {DNNL_ARG_TO, to},
                                  {DNNL_ARG_SCRATCHPAD, memory(plan.reorder_scratchpad, Engine())}});
  };
  if (plan.needs_reorder && kernel_is_input) reorder(user, kernel);
  args[kernel_arg] = kernel;
  args[DNNL_ARG_SCRATCHPAD] = memory(plan.scratchpad, Engine());
  plan.convolution.execute(stream, args);
  if (plan.needs_reorder && !kernel_is_input) reorder(kernel, user);
  stream.wait();
}

template <typename Body>
ffi::Error Guarded(Body body) {
  try {
    body();
    return ffi::Error::Success();
  } catch (const std::exception& error) {
    return ffi::Error::Internal(std::string("oneDNN convolution: ") + error.what());
  }
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> y,
                   Ints strides, Ints padding, Ints dilation, int64_t groups) {
  return Guarded([&] {
    const Geometry g = MakeGeometry(strides, padding, dilation, groups);
    const memory::data_type type = DataType(x.element_type());
    const Plan& plan =
        CachedPlan(Key('f', x.element_type(), x.dimensions(), kernel.dimensions(),
                       y->dimensions(), g),
                   ForwardPlan, x.dimensions(), kernel.dimensions(), y->dimensions(), type, g);
    Run(plan,
        {{DNNL_ARG_SRC, Wrap(ActivationDesc(x.dimensions(), type), x.untyped_data())},
         {DNNL_ARG_DST, Wrap(ActivationDesc(y->dimensions(), type), y->untyped_data())}},
        DNNL_ARG_WEIGHTS, kernel.untyped_data(), true);
  });
}

ffi::Error InputGrad(ffi::AnyBuffer dy, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> dx,
                     Ints strides, Ints padding, Ints dilation, int64_t groups) {
  return Guarded([&] {
    const Geometry g = MakeGeometry(strides, padding, dilation, groups);
    const memory::data_type type = DataType(dy.element_type());
    const Plan& plan =
        CachedPlan(Key('d', dy.element_type(), dx->dimensions(), kernel.dimensions(),
                       dy.dimensions(), g),
                   InputGradPlan, dx->dimensions(), kernel.dimensions(), dy.dimensions(), type, g);
    Run(plan,
        {{DNNL_ARG_DIFF_DST, Wrap(ActivationDesc(dy.dimensions(), type), dy.untyped_data())},
         {DNNL_ARG_DIFF_SRC, Wrap(ActivationDesc(dx->dimensions(), type), dx->untyped_data())}},
        DNNL_ARG_WEIGHTS, kernel.untyped_data(), true);
  });
}

ffi::Error KernelGrad(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dkernel,
                      Ints strides, Ints padding, Ints dilation, int64_t groups) {
  return Guarded([&] {
    const Geometry g = MakeGeometry(strides, padding, dilation, groups);
    const memory::data_type type = DataType(x.element_type());
    const Plan& plan =
        CachedPlan(Key('w', x.element_type(), x.dimensions(), dkernel->dimensions(),
                       dy.dimensions(), g),
                   KernelGradPlan, x.dimensions(), dkernel->dimensions(), dy.dimensions(), type,
                   g);
    Run(plan,
        {{DNNL_ARG_SRC, Wrap(ActivationDesc(x.dimensions(), type), x.untyped_data())},
         {DNNL_ARG_DIFF_DST, Wrap(ActivationDesc(dy.dimensions(), type), dy.untyped_data())}},
        DNNL_ARG_DIFF_WEIGHTS, dkernel->untyped_data(), false);
  });
}

}  // namespace

// Two operands, one result and the geometry, as every pass takes them.
#define COLORJAX_CONV_BINDING    \
  ffi::Ffi::Bind()               \
      .Arg<ffi::AnyBuffer>()     \
      .Arg<ffi::AnyBuffer>()     \
      .Ret<ffi::AnyBuffer>()     \
      .Attr<Ints>("strides")     \
      .Attr<Ints>("padding")     \
      .Attr<Ints>("dilation")    \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(ColorjaxOnednnForward, Forward, COLORJAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(ColorjaxOnednnInputGrad, InputGrad, COLORJAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(ColorjaxOnednnKernelGrad, KernelGrad, COLORJAX_CONV_BINDING);
