#!/usr/bin/env bash
# hwtpm_tools.sh swtpm|mssim LOCALITY - tpm2-tools -> xtpm-hwtpm -> TIS driver -> register model ->
# Debian swtpm (TPM 2.0), the model backed by swtpm's data channel. Runs the whole foundation
# scenario (tools_scenario.sh: startup, random, PCR extend against an independent SHA-256, seal and
# PCR-policy seal, NV, persistent key, EK/AK/quote) through the driver, over the given TCTI, with
# the driver at TIS locality LOCALITY. Then checks that the locality reached the TPM: PCR 20 resets
# only from locality 2 (TPM_RC_LOCALITY 0x907 otherwise), and that the driver saw no chip fault.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/hwtpm_lib.sh"

tcti_kind=${1:-swtpm}
locality=${2:-0}
hw_init "hwtpm-tools-$tcti_kind"
xi_need tpm2_startup tpm2_pcrreset
cd "$XI_DIR"

# TPM2_Startup is a locality-0 command (TPM_RC_LOCALITY elsewhere): at another locality the TPM
# comes up started, as on a PC whose firmware ran Startup, and the scenario's Startup gets
# TPM_RC_INITIALIZE, which tpm2_startup accepts.
if [[ $locality == 0 ]]; then hw_start_swtpm tpm; else hw_start_swtpm tpm --flags not-need-init,startup-clear; fi
# Family not given: the role asks the TPM, then the driver reads it from TPM_INTF_CAPABILITY.
hw_start_hwtpm hw --mmio sim --tpm "tcp:127.0.0.1:${XI_PORT[tpm]}" --locality "$locality"
grep -q "^xtpm-hwtpm: ready tpm2 locality=$locality chip=5854:0001 " hw.out ||
    xi_fail "ready line: $(head -n 1 hw.out)"
xi_ok "xtpm-hwtpm found a TPM 2.0 behind the model at locality $locality"

case $tcti_kind in
    swtpm) tcti="swtpm:host=127.0.0.1,port=${XI_PORT[hw]}" ;;
    mssim) tcti="mssim:host=127.0.0.1,port=$((XI_PORT[hw] + 2))" ;;
    *) xi_fail "unknown TCTI kind $tcti_kind" ;;
esac
xi_log "TCTI $tcti"
XTPM_TOOLS_TCTI=$tcti timeout 150 bash "$XI_HERE/tools_scenario.sh" "$tcti_kind" ||
    xi_fail "tools_scenario.sh through xtpm-hwtpm ($tcti)"
xi_ok "tools_scenario.sh passed through xtpm-hwtpm and the TIS driver"

# PC Client PCR 20 is resettable from locality 2 only: the driver's locality reached swtpm.
if timeout 30 tpm2_pcrreset -T "$tcti" 20 2>pcr20.err; then
    [[ $locality == 2 ]] || xi_fail "PCR 20 reset succeeded at TIS locality $locality"
    xi_ok "PCR 20 reset succeeds at TIS locality 2"
else
    [[ $locality != 2 ]] || xi_fail "PCR 20 reset failed at TIS locality 2: $(tr '\n' ' ' <pcr20.err)"
    grep -qi '0x907' pcr20.err || xi_fail "PCR 20 reset failed, but not with TPM_RC_LOCALITY: $(tr '\n' ' ' <pcr20.err)"
    xi_ok "PCR 20 reset refused with TPM_RC_LOCALITY (0x907) at TIS locality $locality"
fi

hw_no_chip_faults hw
xi_stop hw
xi_stop tpm
xi_log "PASS ($SECONDS s)"
