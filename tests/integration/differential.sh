#!/usr/bin/env bash
# differential.sh - replays one deterministic trace of raw TPM 2.0 commands and control messages to
# Debian's swtpm (the reference, $SWTPM, default /usr/bin/swtpm) and to the daemon under test, both
# started here on their own ports and fresh state dirs with --tpm2 --flags not-need-init,startup-clear;
# every answer must be byte-identical after masking random bytes and clock values (differential.py).
# Argument: tcp (default) or unix - the transport of both daemons' data and control channels.
source "$(dirname "$0")/lib.sh"

transport=${1:-tcp}
case $transport in tcp) unix=() ;; unix) unix=(--unix) ;; *) echo "usage: $0 [tcp|unix]" >&2; exit 2 ;; esac
xi_init "differential-$transport"
[[ -x $XI_SWTPM ]] || xi_skip "reference swtpm not found at $XI_SWTPM"
[[ $(readlink -f "$XI_SWTPM") != "$(readlink -f "$XI_DAEMON")" ]] ||
    xi_log "note: the daemon under test is the reference itself (proves the trace and the masks)"

xi_start ref --bin "$XI_SWTPM" --kind swtpm --flags not-need-init,startup-clear "${unix[@]}"
xi_start dut --flags not-need-init,startup-clear "${unix[@]}"
xi_py differential.py --ref-data "$(xi_data_ep ref)" --ref-ctrl "$(xi_ctrl_ep ref)" \
    --dut-data "$(xi_data_ep dut)" --dut-ctrl "$(xi_ctrl_ep dut)" || xi_fail "answers differ from swtpm's"
xi_stop dut
xi_stop ref
xi_log "PASS ($SECONDS s)"
