# ctest bench_tis_smoke: run `xtpm-bench-tis --quick`, require exit status 0 and the printed
# tables (the contestants' rows, the ratio, the bus-cycle counts). No timing checks. Exit
# status 77 (no swtpm) prints "xtpm-bench-tis: skipped", which ctest reports as skipped.
execute_process(COMMAND ${BENCH} --quick
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 110)
message("${out}")
if(rc EQUAL 77)
    return()
endif()
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "xtpm-bench-tis --quick exited with ${rc}\n${err}")
endif()
foreach(re "command +contestant +p50 +p99 +mean +calls +cmds/s"
           "RESULT name=chardev\\.get_random p50_us="
           "RESULT name=tis\\.pcr_read p50_us="
           "RESULT name=tis-null\\.get_random p50_us="
           "RESULT name=backend\\.pcr_read p50_us="
           "RESULT name=ratio_tis_chardev\\.get_random value="
           "RESULT name=mmio\\.tis\\.pcr_read cycles=")
    if(NOT out MATCHES "${re}")
        message(FATAL_ERROR "xtpm-bench-tis output lacks /${re}/\n${err}")
    endif()
endforeach()
