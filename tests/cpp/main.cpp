#if MWM_CATCH_VERSION == 2
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
