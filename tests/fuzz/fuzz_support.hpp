// Shared by the fuzz targets: a failed invariant aborts with a message, so libFuzzer records the
// input as a crash (assert would vanish under NDEBUG).
#pragma once

#include <cstdio>
#include <cstdlib>

#define MWM_FUZZ_CHECK(condition)                                                            \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (false)
