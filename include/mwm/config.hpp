// Compile-time configuration shared by host and device code.
#pragma once

// The one place the version is written: CMake (project), pyproject.toml (scikit-build-core's
// regex provider) and the mwm package (mwm/_version.py) read these three lines.
#define MWM_VERSION_MAJOR 0
#define MWM_VERSION_MINOR 1
#define MWM_VERSION_PATCH 0

// Functions that the CUDA kernels share with the CPU path are marked MWM_HOST_DEVICE, so that
// nvcc compiles the very same code for both sides and CPU/GPU results stay bit-identical.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define MWM_HOST_DEVICE __host__ __device__
#define MWM_DEVICE_COMPILE 1
#else
#define MWM_HOST_DEVICE
#endif

#if defined(__CUDA_ARCH__)
#define MWM_INLINE __forceinline__
#else
#define MWM_INLINE inline
#endif
