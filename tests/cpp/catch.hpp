// Catch2 v2 and v3 behind one include.
#pragma once

#if MWM_CATCH_VERSION == 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
