// Compiled with -Wall -Wextra -Wpedantic -Werror and nothing but the standard library.
#include <mwm/masking.hpp>

int mwm_header_check_anchor() { return MWM_VERSION_MAJOR; }
