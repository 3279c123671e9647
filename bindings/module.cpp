// The Python module mwm._C: importing it registers the ops (torch.ops.mwm.*); it also reports
// how the extension was built.
#include <torch/extension.h>

#include <mwm/config.hpp>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "mwm torch extension: ops are registered as torch.ops.mwm.*";
  module.def("version", [] {
    return std::to_string(MWM_VERSION_MAJOR) + "." + std::to_string(MWM_VERSION_MINOR) + "." +
           std::to_string(MWM_VERSION_PATCH);
  });
  module.def("built_with_cuda", [] {
#ifdef MWM_WITH_CUDA_KERNELS
    return true;
#else
    return false;
#endif
  });
}
