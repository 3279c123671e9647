# Script mode: masking.hpp alone, with the given compiler, needs nothing but the standard library.
#   cmake -DCXX=<compiler> -DSOURCE_DIR=<repo> -P header_check.cmake
# 1. It compiles with -std=c++17 -Wall -Wextra -Wpedantic -Werror and only include/ on the path.
# 2. Every header it pulls in includes, in angle brackets, only standard library headers (and the
#    compiler's own x86 intrinsics headers).
set(include_dir ${SOURCE_DIR}/include)
set(source ${SOURCE_DIR}/tests/cpp/header_check.cpp)
execute_process(COMMAND ${CXX} -std=c++17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only
                        -I${include_dir} ${source}
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "${CXX} -std=c++17 -Wall -Wextra -Wpedantic -Werror failed on masking.hpp:\n${out}")
endif()

# -MM lists the non-system headers the translation unit reads: they must all be mwm's own.
execute_process(COMMAND ${CXX} -std=c++17 -MM -I${include_dir} ${source}
                RESULT_VARIABLE code OUTPUT_VARIABLE deps ERROR_VARIABLE err)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "${CXX} -MM failed: ${err}")
endif()
string(REPLACE "\\\n" " " deps "${deps}")
string(REGEX REPLACE "^[^:]*:" "" deps "${deps}")
separate_arguments(deps UNIX_COMMAND "${deps}")

set(standard algorithm array atomic cassert cerrno cfloat climits cmath cstddef cstdint cstdio
    cstdlib cstring exception functional initializer_list iterator limits memory mutex new
    numeric sstream stdexcept string thread tuple type_traits utility vector math.h string.h
    stdint.h
    # The compiler's own SSE2 intrinsics (every x86-64 compiler ships them; no library), read
    # only under #if defined(__SSE2__) with a portable loop otherwise: loss_bands.hpp's RGB gather.
    emmintrin.h
    # The compiler's own AVX2 / AVX-512 intrinsics, read only on x86-64 GCC and Clang, in
    # functions compiled for those units by attribute and called after a CPU check, with the
    # portable code otherwise: keys_x86.hpp (Philox keys) and sort_x86.hpp (the sorting network).
    immintrin.h)
set(headers 0)
foreach(dep ${deps})
  if(dep STREQUAL source)
    continue()
  endif()
  file(TO_CMAKE_PATH "${dep}" dep)
  if(NOT dep MATCHES "/include/mwm/[a-z_0-9]+\\.hpp$")
    message(FATAL_ERROR "masking.hpp reads ${dep}, which is not an mwm header")
  endif()
  math(EXPR headers "${headers} + 1")
  file(STRINGS ${dep} lines REGEX "^[ \t]*#[ \t]*include[ \t]*<")
  foreach(line ${lines})
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*<([^>]*)>.*" "\\1" name "${line}")
    list(FIND standard "${name}" found)
    if(found EQUAL -1)
      message(FATAL_ERROR "${dep} includes <${name}>, which is not a standard library header")
    endif()
  endforeach()
endforeach()
if(headers LESS 10)
  message(FATAL_ERROR "expected masking.hpp to pull in its mwm headers, found ${headers}: ${deps}")
endif()
message(STATUS "${CXX}: masking.hpp and its ${headers} headers use the standard library only")
