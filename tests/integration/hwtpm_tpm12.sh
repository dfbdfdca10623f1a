#!/usr/bin/env bash
# hwtpm_tpm12.sh - raw TPM 1.2 commands -> xtpm-hwtpm -> TIS driver -> register model (TIS 1.3
# flavour) -> Debian swtpm in TPM 1.2 mode, over its unix data socket. The family is not given: the role asks the TPM and
# the driver tells it by a probe command (a TIS 1.3 chip does not announce its family). Then
# tpm12_client.py over the swtpm data channel (Startup, GetRandom, PCRRead, Extend against an
# independent SHA-1, CreateEndorsementKeyPair under the driver's long duration, ReadPubek with
# its checksum) and a GetRandom over the mssim protocol.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hwtpm_lib.sh"

hw_init hwtpm-tpm12
cd "$XI_DIR"

# swtpm on unix sockets here (the TPM 2.0 suites use TCP): --tpm unix:PATH, control at PATH.ctrl.
hw_start_swtpm tpm --tpm12 --unix
hw_start_hwtpm hw --mmio sim --tpm "unix:${XI_SOCK[tpm]}"
grep -q '^xtpm-hwtpm: ready tpm12 locality=0 ' hw.out || xi_fail "not detected as TPM 1.2: $(head -n 1 hw.out)"
xi_ok "xtpm-hwtpm detected a TPM 1.2 behind the TIS 1.3 model"

xi_py tpm12_client.py first --data "tcp:127.0.0.1:${XI_PORT[hw]}" --pubek pubek.bin | sed "s/^/[$XI_NAME] /" ||
    xi_fail "tpm12_client.py through xtpm-hwtpm"
xi_ok "TPM 1.2 commands through the driver (startup, random, PCRs, EK)"

hw_py "127.0.0.1:$((XI_PORT[hw] + 2))" <<'EOF' || xi_fail "TPM_GetRandom over mssim"
import struct, sys
import xtpm_wire as w
resp = w.mssim_transact('tcp:' + sys.argv[1], w.tpm12_get_random(8), timeout=20.0)
tag, size, rc, n = struct.unpack('>HIII', resp[:14])
assert (tag, size, rc, n, len(resp)) == (0x00C4, 22, 0, 8, 22), resp.hex()
EOF
xi_ok "TPM_GetRandom(8) over the mssim protocol answers 8 bytes"

hw_no_chip_faults hw
xi_stop hw
xi_stop tpm
xi_log "PASS ($SECONDS s)"
