# ctest bench_smoke: run `xtpm-bench --quick`, require exit status 0 and the
# printed table (header, one libtpms row, the derived block). No timing checks.
execute_process(COMMAND ${BENCH} --quick
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 110)
message("${out}")
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "xtpm-bench --quick exited with ${rc}\n${err}")
endif()
foreach(re "command +contestant +p50 +p99 +mean +calls"
           "RESULT name=libtpms\\.get_random p50_us="
           "RESULT name=floor\\.pcr_read p50_us="
           "xtpm added")
    if(NOT out MATCHES "${re}")
        message(FATAL_ERROR "xtpm-bench output lacks /${re}/\n${err}")
    endif()
endforeach()
