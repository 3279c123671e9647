# Script mode: install mwm into WORK_DIR/prefix, then configure, build and run the consumer.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "failed (${code}): ${ARGN}\n${out}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${MWM_SOURCE_DIR} -B ${WORK_DIR}/mwm -G ${GENERATOR}
    -DMWM_BUILD_TESTS=OFF -DMWM_BUILD_BENCHMARKS=OFF -DMWM_BUILD_EXAMPLES=OFF
    -DCMAKE_INSTALL_PREFIX=${prefix})
run(${CMAKE_COMMAND} --install ${WORK_DIR}/mwm)
run(${CMAKE_COMMAND} -S ${MWM_SOURCE_DIR}/tests/cpp/consumer -B ${WORK_DIR}/consumer
    -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run(${WORK_DIR}/consumer/consumer)
message(STATUS "consumer built against the installed package and ran")

# The same consumer with mwm vendored through add_subdirectory: no tests, benchmarks or examples.
run(${CMAKE_COMMAND} -S ${MWM_SOURCE_DIR}/tests/cpp/consumer -B ${WORK_DIR}/vendored
    -G ${GENERATOR} -DMWM_VENDORED_SOURCE=${MWM_SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/vendored)
run(${WORK_DIR}/vendored/consumer)
message(STATUS "consumer built with add_subdirectory(mwm) and ran")
