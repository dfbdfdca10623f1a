# ctest bench_tpmif_smoke: run `xtpm-tpmif-bench --quick`, require exit status 0, the table and a
# RESULT line for every contestant that must exist (swtpm only when installed). No timing checks.
execute_process(COMMAND ${BENCH} --quick
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 170)
message("${out}")
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "xtpm-tpmif-bench --quick exited with ${rc}\n${err}")
endif()
set(required "command +contestant +p50 +p99 +mean +calls"
    "RESULT name=libtpms\\.get_random p50_us="
    "RESULT name=page-floor\\.pcr_read p50_us="
    "RESULT name=tpmif\\.pcr_extend p50_us="
    "RESULT name=tpmif-sock\\.get_random p50_us="
    "RESULT name=tpmif_minus_libtpms\\.pcr_read value_us=")
find_program(SWTPM swtpm)
if(SWTPM)
    list(APPEND required "RESULT name=speedup_swtpm_over_tpmif\\.get_random value=")
endif()
foreach(re IN LISTS required)
    if(NOT out MATCHES "${re}")
        message(FATAL_ERROR "xtpm-tpmif-bench output lacks /${re}/\n${err}")
    endif()
endforeach()
