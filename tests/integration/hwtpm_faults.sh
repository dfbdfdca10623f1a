#!/usr/bin/env bash
# hwtpm_faults.sh - a hostile chip through the role: xtpm-hwtpm --mmio sim --tpm libtpms, first
# sane (TPM2_Startup and GetRandom answered by libtpms through the driver), then once per
# --hostile mode. Each chip fault must reach the client as a well-formed 10-byte TPM 2.0 error,
# collapsed as docs/hwtpm.md says (TPM_RC_FAILURE 0x101, or TPM_RC_RETRY 0x922 when the locality
# is never granted; never the command-size codes that would blame the client), within a time
# bound, twice in a row (the daemon keeps serving), with the fault named in its log.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hwtpm_lib.sh"

hw_init hwtpm-faults
cd "$XI_DIR"

hw_start_hwtpm sane --mmio sim --tpm libtpms
hw_py "tcp:127.0.0.1:${XI_PORT[sane]}" <<'EOF' || xi_fail "TPM2 commands through the sane model"
import sys
import xtpm_wire as w
ep = sys.argv[1]
assert w.rc_of(w.tpm_transact(ep, w.startup_clear())) == 0
assert w.check_get_random(w.tpm_transact(ep, w.get_random(16)), 16)
EOF
hw_no_chip_faults sane
xi_stop sane
xi_ok "--tpm libtpms: Startup and GetRandom(16) through the driver"

# mode, expected rc, the fault's name in the log (proto::tis::name), seconds allowed per command
# (the bounded waits are TIMEOUT_A/D = 750 ms; the rest fail as soon as the chip is read).
cases=(
    "response_too_large 0x101 response larger than buffer 5"
    "response_too_small 0x101 response size < 10 5"
    "data_avail_early 0x101 response shorter than its size 5"
    "burst_zero 0x101 burstCount timeout 10"
    "locality_never 0x922 locality not granted 10"
)
for c in "${cases[@]}"; do
    read -r mode rc rest <<<"$c"
    limit=${rest##* }
    fault=${rest% *}
    hw_start_hwtpm "$mode" --mmio sim --tpm libtpms --hostile "$mode"
    hw_py "tcp:127.0.0.1:${XI_PORT[$mode]}" "$rc" "$limit" <<'EOF' || xi_fail "--hostile $mode"
import struct, sys, time
import xtpm_wire as w
ep, want, limit = sys.argv[1], int(sys.argv[2], 16), float(sys.argv[3])
for attempt in (1, 2):
    t0 = time.monotonic()
    resp = w.tpm_transact(ep, w.get_random(16), timeout=limit + 5)
    took = time.monotonic() - t0
    assert w.is_error_response(resp), 'not a 10-byte TPM error: ' + resp.hex()
    tag, _, rc = struct.unpack('>HII', resp)
    assert tag == w.ST_NO_SESSIONS and rc == want, 'tag 0x%x rc 0x%x, want rc 0x%x' % (tag, rc, want)
    assert took < limit, 'answered after %.2f s, bound %.0f s' % (took, limit)
    print('    command %d: rc 0x%x after %.3f s' % (attempt, rc, took))
EOF
    grep -q "failed at the chip: $fault " "$mode.err" || xi_fail "$mode: the log does not name '$fault'"
    xi_stop "$mode"
    xi_ok "--hostile $mode: rc $rc ($fault), twice, daemon still serving"
done

# A chip that never answers holds a command for its whole duration (90 s): SIGTERM cancels it
# and the daemon exits 0 at once. The client gets TPM_RC_CANCELED (0x909), or no answer if the
# signal came before the daemon read the command.
hw_start_hwtpm stuck --mmio sim --tpm libtpms --hostile data_avail_never
hw_py "tcp:127.0.0.1:${XI_PORT[stuck]}" "${XI_PID[stuck]}" <<'EOF' || xi_fail "SIGTERM during a command the chip never answers"
import os, signal, socket, struct, sys, time
import xtpm_wire as w
s = w.connect(sys.argv[1])
s.sendall(w.get_random(8))
early = w.read_tpm_response(s, time.monotonic() + 0.3)
assert early.kind == 'timeout', 'answered although the chip never raises dataAvail: %r' % early
os.kill(int(sys.argv[2]), signal.SIGTERM)
out = w.read_tpm_response(s, time.monotonic() + 5)
assert out.kind in ('data', 'closed', 'reset'), 'no answer and no close within 5 s: %r' % out
if out.kind == 'data':
    assert out.data == struct.pack('>HII', 0x8001, 10, 0x909), 'not TPM_RC_CANCELED: ' + out.data.hex()
print('    after SIGTERM: ' + ('TPM_RC_CANCELED' if out.kind == 'data' else out.kind))
EOF
xi_wait_gone "${XI_PID[stuck]}" 5 || xi_fail "xtpm-hwtpm still running 5 s after SIGTERM with a command in flight"
wait "${XI_PID[stuck]}" || xi_fail "xtpm-hwtpm exited with status $? after SIGTERM"
unset "XI_PID[stuck]"
xi_ok "SIGTERM cancels a command the chip never answers; exit status 0"

# --mmio devmem over a file that reads as a floating bus (all ones, no chip): the probe gives up
# after TIMEOUT_A and the role exits 2 with a clear message, before it binds anything.
head -c 20480 /dev/zero | tr '\0' '\377' >floating.bin
start=$SECONDS
rc=0
timeout 10 "$XTPM_HWTPM" --mmio devmem --devmem floating.bin --address 0x1000 --locality 2 \
    --server "type=tcp,port=$(xi_free_ports 2),bindaddr=127.0.0.1" >devmem.out 2>devmem.err || rc=$?
((rc == 2)) || xi_fail "devmem without a chip: exit status $rc, expected 2"
grep -q 'no TIS chip answers (mmio=devmem address=0x1000 ' devmem.err || xi_fail "devmem: $(cat devmem.err)"
((SECONDS - start <= 5)) || xi_fail "devmem without a chip took $((SECONDS - start)) s"
xi_ok "--mmio devmem with no chip behind the window: exit 2, \"no TIS chip answers\""
xi_log "PASS ($SECONDS s)"
