# hwtpm_lib.sh - helpers for the xtpm-hwtpm suites (sourced after lib.sh by hwtpm_*.sh, never run).
# The chain under test: client -> xtpm-hwtpm (swtpm/mssim servers) -> TIS driver -> register model
# (sim_tis) -> Debian swtpm's data channel, or libtpms inside xtpm-hwtpm (--tpm libtpms).
# Environment: XTPM_HWTPM (the xtpm-hwtpm binary, required), SWTPM, PYTHON3.

# hw_init NAME: xi_init with xtpm-hwtpm as the daemon under test.
hw_init() {
    [[ -n ${XTPM_HWTPM:-} ]] || { echo "set XTPM_HWTPM to the xtpm-hwtpm binary" >&2; exit 1; }
    export XTPM_VTPMD=$XTPM_HWTPM XTPM_DAEMON_KIND=xtpm
    xi_init "$1"
}

# hw_start_swtpm NAME [--tpm12]: Debian's swtpm on TCP (data P, ctrl P+1), --flags not-need-init:
# powered, but not started up, so the client's Startup goes through the driver too.
hw_start_swtpm() {
    xi_need "$XI_SWTPM"
    local name=$1
    shift
    xi_start "$name" --bin "$XI_SWTPM" --kind swtpm "$@"
}

# hw_start_hwtpm NAME CHIP-ARGS...: xtpm-hwtpm with the given chip options (--mmio sim --tpm ...),
# swtpm servers on B (data) and B+1 (ctrl), mssim on B+2/B+3. Waits for its ready line and pid
# file (bounded, lib.sh). Sets XI_PID[NAME] and XI_PORT[NAME] = B; the ready line is in NAME.out.
hw_start_hwtpm() {
    local name=$1 attempt base pid out=$XI_DIR/$1.out
    shift
    for ((attempt = 1; attempt <= 3; attempt++)); do
        base=$(xi_free_ports 4)
        rm -f "$XI_DIR/$name.pid"
        "$XTPM_HWTPM" "$@" \
            --server "type=tcp,port=$base,bindaddr=127.0.0.1" --ctrl "type=tcp,port=$((base + 1)),bindaddr=127.0.0.1" \
            --mssim "port=$((base + 2)),bindaddr=127.0.0.1" --pid "file=$XI_DIR/$name.pid" \
            >"$out" 2>>"$XI_DIR/$name.err" </dev/null &
        pid=$!
        XI_PID[$name]=$pid
        XI_PORT[$name]=$base
        XI_KINDOF[$name]=xtpm
        if xi_wait_ready "$name" xtpm "$pid" "$out"; then
            xi_log "started $name: pid $pid: $(head -n 1 "$out")"
            return 0
        fi
        xi_alive "$pid" && { xi_kill "$pid"; xi_fail "$name did not become ready within 20 s"; }
        wait "$pid" 2>/dev/null || true
        unset "XI_PID[$name]"
        xi_log "attempt $attempt: $name exited before ready: $(tail -n 3 "$XI_DIR/$name.err" | tr '\n' ' ')"
    done
    xi_fail "$name could not be started: $XTPM_HWTPM $*"
}

# hw_no_chip_faults NAME: the driver logged no failed command (one stderr line per chip fault).
hw_no_chip_faults() {
    ! grep -q 'failed at the chip' "$XI_DIR/$1.err" ||
        xi_fail "$1 logged chip faults: $(grep 'failed at the chip' "$XI_DIR/$1.err" | head -3 | tr '\n' ' ')"
}

# hw_py: python3 on a program from stdin, with this directory's xtpm_wire.py importable; bounded.
hw_py() {
    PYTHONPATH=$XI_HERE timeout "${XI_PY_TIMEOUT:-60}" "$XI_PY" - "$@"
}
