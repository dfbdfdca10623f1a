#!/usr/bin/env bash
# persistence.sh tpm2|tpm12 - state survives a daemon restart (SIGTERM, wait for the pid to exit,
# start again on the same --tpmstate dir).
#   tpm2   NV index content, a persistent key (0x81000001) and the endorsement seed survive two restarts;
#          a clean stop is an orderly TPM shutdown: TPMA_STARTUP_CLEAR.orderly = 1 and the
#          dictionary-attack counter does not rise (Debian's swtpm 0.7.1 fails both: reported, skipped)
#   tpm12  without --tpm2 the daemon is a TPM 1.2; the EK created in the first run is read back
#          unchanged after the restart (permanent state reloaded, not re-manufactured)
source "$(dirname "$0")/lib.sh"

version=${1:-tpm2}
xi_init "persistence-$version"
cd "$XI_DIR"
state=$XI_DIR/state

state_files() {
    local files
    files=$(find "$state" -type f ! -name '.lock' -size +0 | wc -l)
    ((files > 0)) || xi_fail "no state file in $state after the stop"
    xi_ok "state dir holds $files non-empty file(s) after the stop"
}

if [[ $version == tpm12 ]]; then
    xi_start tpm --state "$state" --tpm12
    xi_py tpm12_client.py first --data "$(xi_data_ep tpm)" --pubek pubek.bin || xi_fail "TPM 1.2 first run"
    xi_stop tpm
    state_files
    xi_start tpm --state "$state" --tpm12
    xi_py tpm12_client.py again --data "$(xi_data_ep tpm)" --pubek pubek.bin || xi_fail "TPM 1.2 after restart"
    xi_stop tpm
    xi_log "PASS ($SECONDS s)"
    exit 0
fi
[[ $version == tpm2 ]] || xi_fail "unknown version $version (tpm2|tpm12)"
xi_need tpm2_startup

t() {
    local tool=$1
    shift
    timeout 30 "$tool" -T "swtpm:host=127.0.0.1,port=${XI_PORT[tpm]}" "$@" 2>>tools.err
}
flush() { t tpm2_flushcontext -t && t tpm2_flushcontext -s && t tpm2_flushcontext -l; }

# A password use of a DA-protected object (no noDA attribute): after a power loss the TPM counts it
# as a possible attack (TCG Part 1 section 19.8.6), after an orderly shutdown it must not.
use_da_auth() {
    t tpm2_load -C 0x81000001 -u da.pub -r da.priv -c da.ctx >/dev/null || xi_fail "tpm2_load (DA object)"
    t tpm2_unseal -c da.ctx -o da.out || xi_fail "tpm2_unseal (DA-protected object)"
    flush
    cmp -s da.out da.in || xi_fail "DA object unsealed to other data"
}

xi_start tpm --state "$state"
t tpm2_startup -c || xi_fail "tpm2_startup -c"
head -c 32 /dev/urandom >nv.in
t tpm2_nvdefine 0x1500017 -C o -s 32 -a 'ownerread|ownerwrite' >/dev/null || xi_fail "tpm2_nvdefine"
t tpm2_nvwrite 0x1500017 -C o -i nv.in || xi_fail "tpm2_nvwrite"
t tpm2_createprimary -C o -G ecc -c primary.ctx >/dev/null || xi_fail "tpm2_createprimary"
t tpm2_evictcontrol -C o -c primary.ctx 0x81000001 >/dev/null || xi_fail "tpm2_evictcontrol"
flush
t tpm2_readpublic -c 0x81000001 -n key.name >/dev/null || xi_fail "tpm2_readpublic 0x81000001"
t tpm2_createek -c ek.ctx -G ecc -u ek.pub >/dev/null || xi_fail "tpm2_createek"
flush
printf 'da %s' "$RANDOM" >da.in
t tpm2_create -C 0x81000001 -i da.in -u da.pub -r da.priv >/dev/null || xi_fail "tpm2_create (DA object)"
flush
use_da_auth
xi_ok "first run: NV 0x1500017 written, key persisted at 0x81000001, EK created, DA auth used"

for cycle in 1 2; do
    xi_stop tpm
    state_files
    xi_start tpm --state "$state"
    t tpm2_startup -c || xi_fail "tpm2_startup -c after restart $cycle"
    t tpm2_nvread 0x1500017 -C o -s 32 -o nv.out || xi_fail "tpm2_nvread after restart $cycle"
    cmp -s nv.in nv.out || xi_fail "NV 0x1500017 content changed across restart $cycle"
    xi_ok "restart $cycle: NV 0x1500017 content unchanged"
    t tpm2_readpublic -c 0x81000001 -n key2.name >/dev/null || xi_fail "0x81000001 gone after restart $cycle"
    cmp -s key.name key2.name || xi_fail "0x81000001 has another name after restart $cycle"
    xi_ok "restart $cycle: persistent key 0x81000001 present with the same name"
    t tpm2_createek -c ek2.ctx -G ecc -u ek2.pub >/dev/null || xi_fail "tpm2_createek after restart $cycle"
    flush
    cmp -s ek.pub ek2.pub || xi_fail "EK public key changed: endorsement seed re-manufactured"
    xi_ok "restart $cycle: EK public key unchanged (same endorsement primary seed)"

    vars=$(t tpm2_getcap properties-variable) || xi_fail "tpm2_getcap properties-variable"
    orderly=$(awk '/orderly:/ {print $2; exit}' <<<"$vars")
    lockout=$(awk '/TPM2_PT_LOCKOUT_COUNTER:/ {print $2; exit}' <<<"$vars")
    xi_log "restart $cycle: TPMA_STARTUP_CLEAR.orderly = $orderly, TPM2_PT_LOCKOUT_COUNTER = $lockout"
    if [[ $XI_KIND == swtpm ]]; then
        [[ $orderly == 0 && $lockout == "$(printf '0x%x' "$cycle")" ]] ||
            xi_log "note: swtpm no longer shows the known non-orderly stop (see docs/testing.md)"
        xi_log "SKIP orderly/DA checks: known swtpm 0.7.1 shortfall, SIGTERM stops without TPM2_Shutdown"
    else
        [[ $orderly == 1 ]] || xi_fail "restart $cycle: not orderly: SIGTERM did not shut the TPM down"
        [[ $lockout == 0x0 ]] || xi_fail "restart $cycle: DA lockout counter rose to $lockout"
        xi_ok "restart $cycle: orderly shutdown, DA counter still 0"
    fi
    use_da_auth
done
xi_stop tpm
xi_log "PASS ($SECONDS s)"
