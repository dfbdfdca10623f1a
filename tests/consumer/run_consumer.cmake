# Configure+install xtpm (headers only, no tests) into WORK_DIR/prefix, then
# configure, build and run the consumer project with find_package(xtpm).
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
    execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGV}")
    endif()
endfunction()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/xtpm -G Ninja -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix -DXTPM_BUILD_TESTS=OFF -DXTPM_BUILD_ROLES=OFF
    -DXTPM_BUILD_BENCH=OFF -DXTPM_INSTALL=ON)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/xtpm)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer/project -B ${WORK_DIR}/build -G Ninja
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
run(${WORK_DIR}/build/consumer_libtpms)
