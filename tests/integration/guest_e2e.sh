#!/usr/bin/env bash
# guest_e2e.sh path|chain - the guest path over sim_hv with separate processes (docs/guest-path.md):
#   path   xtpm-simhv + xtpm-simxl attach + xtpm-vtpmd --hv sim (domain 1) + xtpm-front (domain 2),
#          tpm2-tools through the frontend; the frontend stops and a new one reopens the device (PCR
#          state kept); the backend restarts on its state while the frontend waits (the frontend
#          reconnects, NV content kept); vtpm-detach with the frontend idle completes without force
#   chain  xtpm-chain's ready line; a part that dies stops the chain (exit 1, every part gone);
#          SIGTERM stops it cleanly (exit 0, every part gone)
# Environment: XTPM_SIMHV_BIN, XTPM_SIMXL_BIN, XTPM_FRONT_BIN, XTPM_CHAIN_BIN, XTPM_VTPMD.
source "$(dirname "$0")/lib.sh"

mode=${1:-path}
xi_init "guest-$mode"
xi_need tpm2_startup tpm2_pcrread sha256sum xxd
cd "$XI_DIR"
hv=$XI_DIR/hv

# run_bg NAME PREFIX CMD...: start CMD in the background, wait (bounded) for a stdout line
# starting with PREFIX; XI_PID[NAME] is stopped by pid on exit.
run_bg() {
    local name=$1 prefix=$2 end=$((SECONDS + 30)) pid
    shift 2
    "$@" >"$XI_DIR/$name.out" 2>>"$XI_DIR/$name.err" </dev/null &
    pid=$!
    XI_PID[$name]=$pid
    until grep -q "^$prefix" "$XI_DIR/$name.out" 2>/dev/null; do
        xi_alive "$pid" || xi_fail "$name exited before it was ready: $(tail -n 3 "$XI_DIR/$name.err" | tr '\n' ' ')"
        ((SECONDS < end)) || xi_fail "$name not ready within 30 s"
        sleep 0.02
    done
    xi_log "started $name (pid $pid): $(grep "^$prefix" "$XI_DIR/$name.out" | head -1)"
}

t() {
    local tool=$1
    shift
    timeout 30 "$tool" -T "swtpm:host=127.0.0.1,port=$port" "$@" 2>>tools.err
}

start_front() {
    run_bg front "xtpm-front: ready" "$XTPM_FRONT_BIN" --hv sim --simhv-dir "$hv" --domain 2 --devid 0 \
        --server "type=tcp,port=$port,bindaddr=127.0.0.1" --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1"
}
start_vtpmd() {
    run_bg vtpmd "xtpm-vtpmd: ready" "$XTPM_VTPMD" --hv sim --simhv-dir "$hv" --domain 1 --frontend 2 \
        --state "$XI_DIR/state"
}

if [[ $mode == path ]]; then
    port=$(xi_free_ports 2)
    mkdir -p "$hv" "$XI_DIR/state"
    run_bg simhv "xtpm-simhv: ready" "$XTPM_SIMHV_BIN" --dir "$hv" --domains 1,2
    uuid=$("$XTPM_SIMXL_BIN" --simhv-dir "$hv" vtpm-attach --frontend 2 --backend 1 --devid 0) ||
        xi_fail "xtpm-simxl vtpm-attach"
    start_vtpmd
    start_front
    grep -q "uuid=$uuid" vtpmd.err || xi_fail "the vTPM did not log the uuid $uuid from xenstore"
    xi_ok "xtpm-vtpmd connected the guest's device with uuid $uuid"

    t tpm2_startup -c || xi_fail "tpm2_startup -c through tpmif"
    digest=$(sha256sum <<<"guest path" | cut -d' ' -f1)
    t tpm2_pcrreset 16 || xi_fail "tpm2_pcrreset 16"
    t tpm2_pcrextend "16:sha256=$digest" || xi_fail "tpm2_pcrextend 16"
    t tpm2_pcrread sha256:16 -o pcr-before.bin >/dev/null || xi_fail "tpm2_pcrread"
    { head -c 32 /dev/zero; xxd -r -p <<<"$digest"; } >extend-input.bin
    [[ $(xxd -p -c 64 pcr-before.bin) == $(sha256sum extend-input.bin | cut -d' ' -f1) ]] ||
        xi_fail "PCR16 is not SHA-256(0^32 || digest)"
    head -c 32 /dev/urandom >nv.in
    t tpm2_nvdefine 0x1500018 -C o -s 32 -a 'ownerread|ownerwrite' >/dev/null || xi_fail "tpm2_nvdefine"
    t tpm2_nvwrite 0x1500018 -C o -i nv.in || xi_fail "tpm2_nvwrite"
    xi_ok "tpm2-tools -> xtpm-front -> tpmif -> xtpm-vtpmd: startup, PCR extend/read, NV write"

    xi_stop front
    for ((i = 0; i < 100; i++)); do grep -q "disconnected" vtpmd.err && break; sleep 0.05; done
    grep -q "disconnected" vtpmd.err || xi_fail "the backend did not see the frontend close within 5 s"
    start_front
    t tpm2_pcrread sha256:16 -o pcr-after.bin >/dev/null || xi_fail "tpm2_pcrread after reopen"
    cmp -s pcr-before.bin pcr-after.bin || xi_fail "PCR16 changed across the frontend's close and reopen"
    xi_ok "frontend closed and reopened: the vTPM kept PCR16"

    front_pid=${XI_PID[front]}
    xi_stop vtpmd
    connects=$(grep -c ": connected" vtpmd.err)
    start_vtpmd
    # The idle frontend follows the restart over xenstore; a command sent before that would go
    # to the old backend's page and fail (as with a Linux guest).
    for ((i = 0; i < 200; i++)); do (($(grep -c ": connected" vtpmd.err) > connects)) && break; sleep 0.05; done
    (($(grep -c ": connected" vtpmd.err) > connects)) || xi_fail "the frontend did not reconnect to the restarted backend within 10 s"
    t tpm2_startup -c || xi_fail "tpm2_startup -c after the backend restart (frontend did not reconnect)"
    t tpm2_nvread 0x1500018 -C o -s 32 -o nv.out || xi_fail "tpm2_nvread after the backend restart"
    cmp -s nv.in nv.out || xi_fail "NV content changed across the backend restart"
    [[ ${XI_PID[front]} == "$front_pid" ]] && xi_alive "$front_pid" || xi_fail "the frontend did not survive"
    xi_ok "backend restarted while the frontend waited: same frontend reconnected, NV kept"

    # xl vtpm-detach while no client uses the frontend: xtpm-front must still answer the backend's
    # Closing with Closed (as Linux's xenwatch does), or the toolstack waits 10 s and forces it.
    timeout 20 "$XTPM_SIMXL_BIN" --simhv-dir "$hv" vtpm-detach --frontend 2 --backend 1 --devid 0 2>detach.err ||
        xi_fail "xtpm-simxl vtpm-detach: $(cat detach.err)"
    ! grep -q "removed by force" detach.err || xi_fail "the backend never reached Closed: $(cat detach.err)"
    xi_alive "${XI_PID[vtpmd]}" && xi_alive "${XI_PID[front]}" || xi_fail "a daemon died at vtpm-detach"
    xi_ok "xl vtpm-detach with an idle frontend: backend Closed, device removed, both daemons up"
    xi_stop front
    xi_stop vtpmd
    xi_stop simhv
elif [[ $mode == chain ]]; then
    port=$(xi_free_ports 4)
    run_bg chain "xtpm-chain: ready" "$XTPM_CHAIN_BIN" --state "$XI_DIR/state" \
        --server "type=tcp,port=$port,bindaddr=127.0.0.1" --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
        --mssim "port=$((port + 2)),bindaddr=127.0.0.1"
    line=$(head -1 chain.out)
    [[ $line == *"swtpm=127.0.0.1:$port"* && $line == *"mssim=127.0.0.1:$((port + 2))"* && $line == *uuid=* ]] ||
        xi_fail "unexpected ready line: $line"
    [[ $(grep -c ready chain.out) == 1 ]] || xi_fail "more than one ready line"
    t tpm2_startup -c || xi_fail "tpm2_startup -c through the chain"
    xi_ok "one ready line naming the endpoints and the uuid; tpm2-tools work through it"
    mapfile -t parts < <(ps -o pid= --ppid "${XI_PID[chain]}")
    ((${#parts[@]} == 3)) || xi_fail "expected 3 running parts (simhv, vtpmd, front), got ${#parts[@]}"
    vtpmd_pid=$(ps -o pid=,args= --ppid "${XI_PID[chain]}" | awk '/xtpm-vtpmd/ {print $1}')
    kill -KILL "$vtpmd_pid"
    xi_wait_gone "${XI_PID[chain]}" 20 || xi_fail "the chain kept running after its vTPM died"
    rc=0
    wait "${XI_PID[chain]}" || rc=$?
    unset "XI_PID[chain]"
    ((rc == 1)) || xi_fail "chain exit status $rc after a part died (expected 1)"
    for p in "${parts[@]}"; do xi_alive "$p" && xi_fail "part $p still running after the chain stopped"; done
    grep -q "xtpm-vtpmd exited" chain.err || xi_fail "the chain did not say which part died"
    xi_ok "a dead vTPM stops the chain: exit 1, every part gone"

    run_bg chain "xtpm-chain: ready" "$XTPM_CHAIN_BIN" --state "$XI_DIR/state" \
        --server "type=tcp,port=$port,bindaddr=127.0.0.1" --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
        --mssim "port=$((port + 2)),bindaddr=127.0.0.1"
    mapfile -t parts < <(ps -o pid= --ppid "${XI_PID[chain]}")
    xi_stop chain
    for p in "${parts[@]}"; do xi_alive "$p" && xi_fail "part $p still running after SIGTERM"; done
    xi_ok "SIGTERM stops the chain: exit 0, every part gone"
else
    xi_fail "unknown mode $mode"
fi
xi_log "PASS ($SECONDS s)"
