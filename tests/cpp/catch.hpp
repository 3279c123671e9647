// Catch2 v2 and v3 behind one include.
#pragma once

#if MWM_CATCH_VERSION == 3
#include <catch2/catch_all.hpp>
// v2 declares Approx at global scope; v3 keeps it in namespace Catch. The tests use v2's name.
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
