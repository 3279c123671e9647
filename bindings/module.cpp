// The Python module mwm._C: importing it registers the ops (torch.ops.mwm.*); it also reports
// how the extension was built and what the mask op accepts.
#include <torch/extension.h>

#include <mwm/config.hpp>
#include <mwm/vector_unit.hpp>

#include "common/coral_test_entries.h"
#include "ops/generate_masks.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "mwm torch extension: ops are registered as torch.ops.mwm.*";
#if defined(MWM_X86_DISPATCH)
  // A bad MWM_CPU_VECTOR_BITS fails the import, naming the variable, not the first op.
  mwm::detail::x86_vector_bits();
#endif
  module.def("version", [] {
    return std::to_string(MWM_VERSION_MAJOR) + "." + std::to_string(MWM_VERSION_MINOR) + "." +
           std::to_string(MWM_VERSION_PATCH);
  });
  module.def("built_with_cuda", [] {
#ifdef MWM_WITH_CUDA  // defined by bindings/cuda/CMakeLists.txt when the CUDA kernels are built in
    return true;
#else
    return false;
#endif
  });
  // The x86 vector unit the CPU kernels run on (512, 256, 128; MWM_CPU_VECTOR_BITS caps it), 0
  // where they have no x86 variants. Raises for a bad MWM_CPU_VECTOR_BITS.
  module.def("cpu_vector_bits", [] {
#if defined(MWM_X86_DISPATCH)
    return mwm::detail::x86_vector_bits();
#else
    return 0;
#endif
  });
  // The names each string option of generate_masks accepts (policy, rounding, ...), from the
  // tables the op parses with.
  module.def("mask_option_choices", &mwm_bindings::mask_option_choices);
  // CORAL entries for tests/python/test_coral_aten.py (common/coral_test_entries.h); not
  // public API. The ops' code without the CPU finiteness check (what the CUDA op runs) ...
  module.def("_coral_loss_aten", &mwm_bindings::coral_loss_aten, py::arg("x"), py::arg("y"));
  module.def("_coral_loss_backward_aten", &mwm_bindings::coral_loss_backward_aten,
             py::arg("grad_loss"), py::arg("grad_cov_diff"), py::arg("x"), py::arg("y"),
             py::arg("cov_diff"));
#ifdef MWM_WITH_EIGEN
  // ... and the header-only Eigen entry for C++ users (include/mwm/coral.hpp).
  module.def("_coral_loss_eigen", &mwm_bindings::coral_loss_eigen, py::arg("x"), py::arg("y"));
  module.def("_coral_loss_backward_eigen", &mwm_bindings::coral_loss_backward_eigen,
             py::arg("grad_loss"), py::arg("grad_cov_diff"), py::arg("x"), py::arg("y"),
             py::arg("cov_diff"));
#endif
}
