#!/usr/bin/env bash
# hostile.sh [SCENARIO...] - the hostile-frontend integration test (docs/hostile-frontend.md).
# Starts xtpm-simhv (domains 1-4), attaches vtpm devices with xtpm-simxl (guest 1 -> backend 3,
# guest 2 -> backend 4), one xtpm-vtpmd --hv sim per guest, and xtpm-front for guest 2. Then every
# scenario of xtpm-hostile-front runs as guest 1; after each: the hostile program passed, both
# vTPMs, xtpm-front and xtpm-simhv are alive, guest 1's vTPM is not spinning, each botched
# handshake left a reason in the backend's log, and guest 2 still gets correct answers.
# Environment: XTPM_SIMHV, XTPM_VTPMD, XTPM_SIMXL, XTPM_FRONT, XTPM_HOSTILE (binaries), PYTHON3.
source "$(dirname "$0")/../integration/lib.sh"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
XI_HERE=$HERE  # xi_py runs guest_check.py from here
for v in XTPM_SIMHV XTPM_SIMXL XTPM_FRONT XTPM_HOSTILE; do
    [[ -x ${!v:-} ]] || { echo "set $v to its binary" >&2; exit 1; }
done
xi_init hostile

all=(good lengths extra-pages extra-pages-negotiated flip-event flip-random storm bad-state
     keys-missing keys-ring-ref keys-event-channel keys-protocol-v2 keys-bogus readonly state-storm
     vanish vanish-busy vanish-cancel vanish-handshake teardown-state teardown-dir)
scenarios=("$@")
((${#scenarios[@]})) || scenarios=("${all[@]}")

HV=$XI_DIR/hv
hostile=$XI_DIR/hostile.log

# start NAME OUT CMD...: run in the background, wait (bounded) for a line containing "ready".
start() {
    local name=$1 out=$2 end=$((SECONDS + 20))
    shift 2
    "$@" >"$out" 2>&1 </dev/null &
    XI_PID[$name]=$!
    until grep -q ready "$out" 2>/dev/null; do
        xi_alive "${XI_PID[$name]}" || xi_fail "$name exited before it was ready: $(tail -n 5 "$out")"
        ((SECONDS < end)) || xi_fail "$name not ready within 20 s"
        sleep 0.02
    done
    xi_log "started $name: pid ${XI_PID[$name]}"
}

attach() { "$XTPM_SIMXL" --simhv-dir "$HV" vtpm-attach --frontend "$1" --backend "$2" >/dev/null || xi_fail "vtpm-attach $1 -> $2"; }
detach() { "$XTPM_SIMXL" --simhv-dir "$HV" vtpm-detach --frontend "$1" --backend "$2" >/dev/null || xi_fail "vtpm-detach $1 -> $2"; }

start simhv "$XI_DIR/simhv.log" "$XTPM_SIMHV" --dir "$HV" --domains 1,2,3,4
attach 1 3
attach 2 4
mkdir -p "$XI_DIR/vtpm1.state" "$XI_DIR/vtpm2.state"
start vtpm1 "$XI_DIR/vtpm1.log" "$XTPM_VTPMD" --hv sim --simhv-dir "$HV" --domain 3 --frontend 1 --state "$XI_DIR/vtpm1.state"
start vtpm2 "$XI_DIR/vtpm2.log" "$XTPM_VTPMD" --hv sim --simhv-dir "$HV" --domain 4 --frontend 2 --state "$XI_DIR/vtpm2.state"
for attempt in 1 2 3; do
    port=$(xi_free_ports 2)
    "$XTPM_FRONT" --hv sim --simhv-dir "$HV" --domain 2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" >"$XI_DIR/front.log" 2>&1 </dev/null &
    XI_PID[front]=$!
    end=$((SECONDS + 20))
    until grep -q ready "$XI_DIR/front.log" || ! xi_alive "${XI_PID[front]}" || ((SECONDS >= end)); do sleep 0.02; done
    grep -q ready "$XI_DIR/front.log" && break
    xi_kill "${XI_PID[front]}"
    unset 'XI_PID[front]'
    xi_log "xtpm-front attempt $attempt failed: $(tail -n 2 "$XI_DIR/front.log" | tr '\n' ' ')"
done
[[ -n ${XI_PID[front]:-} ]] || xi_fail "xtpm-front could not be started"
xi_log "started front (guest 2): pid ${XI_PID[front]}, swtpm data port $port"
guest2=tcp:127.0.0.1:$port

xi_py guest_check.py "$guest2" "before" || xi_fail "guest 2 does not work before any hostile scenario"

# cpu_ticks PID: utime + stime (proc(5) fields 14 and 15) in clock ticks.
cpu_ticks() {
    local s
    s=$(cat "/proc/$1/stat") || return 1
    s=${s##*) }
    read -r -a f <<<"$s"
    echo $((f[11] + f[12]))
}

# A backend that spins on a bad request (doc 7.3 item 1, vtpmmgr) burns a CPU while idle.
not_spinning() {
    local pid=$1 hz t0 t1
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$pid")
    sleep 0.5  # a measurement window, not synchronisation
    t1=$(cpu_ticks "$pid")
    ((t1 - t0 <= hz / 5)) || xi_fail "$2 used $((t1 - t0)) ticks of CPU in 0.5 s while idle: spinning"
}

closed_reasons() { grep -c 'closed: .' "$XI_DIR/vtpm1.log" || true; }

for s in "${scenarios[@]}"; do
    before=$(closed_reasons)
    rc=0
    timeout 180 "$XTPM_HOSTILE" --simhv-dir "$HV" --domain 1 "$s" >"$hostile" 2>&1 || rc=$?
    sed "s/^/    /" "$hostile"
    ((rc == 0)) || xi_fail "scenario $s: xtpm-hostile-front exited with $rc"
    case $s in
        keys-* | readonly)
            want=$(grep -c -- '-> backend Closed' "$hostile" || true)
            got=$(($(closed_reasons) - before))
            ((got >= want)) || xi_fail "scenario $s: $want botched handshakes but only $got 'closed: <reason>' lines in vtpm1's log"
            xi_ok "$s: $want botched handshakes closed, $got with a reason in the backend's log" ;;
        teardown-*)
            detach 1 3
            attach 1 3 ;;
    esac
    for p in simhv vtpm1 vtpm2 front; do
        xi_alive "${XI_PID[$p]}" || xi_fail "scenario $s: $p (pid ${XI_PID[$p]}) died"
    done
    not_spinning "${XI_PID[vtpm1]}" vtpm1
    if [[ $s == vanish* || $s == teardown-* ]]; then
        "$XTPM_HOSTILE" --simhv-dir "$HV" --domain 1 good >"$hostile" 2>&1 || xi_fail "after $s guest 1's vTPM does not recover: $(tail -n 2 "$hostile")"
        xi_ok "$s: guest 1 reconnected and was served afterwards"
    fi
    xi_py guest_check.py "$guest2" "after $s" || xi_fail "guest 2 is affected by scenario $s"
done

if command -v tpm2_getrandom >/dev/null 2>&1; then
    timeout 30 tpm2_getrandom -T "swtpm:host=127.0.0.1,port=$port" 16 --hex >/dev/null ||
        xi_fail "tpm2_getrandom through xtpm-front (guest 2) failed"
    xi_ok "tpm2_getrandom through xtpm-front (guest 2) works"
fi
xi_stop front
xi_stop vtpm1
xi_stop vtpm2
xi_stop simhv
xi_log "PASS: ${#scenarios[@]} scenarios ($SECONDS s)"
