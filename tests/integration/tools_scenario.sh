#!/usr/bin/env bash
# tools_scenario.sh TCTI - drives the daemon with Debian's tpm2-tools 5.4 through one TCTI:
#   swtpm       tpm2-tss swtpm TCTI over TCP (data port P, ctrl P+1)
#   swtpm-unix  tpm2-tss swtpm TCTI over unix sockets (--server/--ctrl type=unixio)
#   mssim       tpm2-tss mssim TCTI (xtpm-vtpmd --mssim only; Debian's swtpm has no mssim platform port)
# With XTPM_TOOLS_TCTI set (a full TCTI string), it starts nothing and drives that endpoint, which its
# caller started and stops (hwtpm_tools.sh: tpm2-tools -> xtpm-hwtpm -> TIS driver -> model -> swtpm).
# Checks: startup, fixed properties, random, PCR extend against an independent SHA-256, seal/unseal,
# PCR-policy seal that breaks after an extend, NV define/write/read, persistent key, EK/AK/quote.
source "$(dirname "$0")/lib.sh"

tcti_kind=${1:-swtpm}
xi_init "tools-$tcti_kind"
xi_need tpm2_startup tpm2_getcap sha256sum xxd
cd "$XI_DIR"

case ${XTPM_TOOLS_TCTI:+given}$tcti_kind in
    given*)
        tcti=$XTPM_TOOLS_TCTI ;;
    swtpm)
        xi_start tpm
        tcti="swtpm:host=127.0.0.1,port=${XI_PORT[tpm]}" ;;
    swtpm-unix)
        xi_start tpm --unix
        tcti="swtpm:path=${XI_SOCK[tpm]}" ;;
    mssim)
        [[ $XI_KIND == xtpm ]] || xi_skip "the mssim TCTI needs a real mssim platform port (swtpm has none)"
        xi_start tpm
        tcti="mssim:host=127.0.0.1,port=$(xi_mssim_port tpm)" ;;
    *) xi_fail "unknown TCTI kind $tcti_kind" ;;
esac
xi_log "TCTI $tcti"

# t TOOL ARGS: one bounded tpm2-tools call; stderr kept for diagnosis.
t() {
    local tool=$1
    shift
    timeout 30 "$tool" -T "$tcti" "$@" 2>>tools.err
}
# Without a resource manager objects and sessions stay loaded; the 4th tool would get 0x902/0x903.
flush() { t tpm2_flushcontext -t && t tpm2_flushcontext -s && t tpm2_flushcontext -l; }

t tpm2_startup -c || xi_fail "tpm2_startup -c"
xi_ok "tpm2_startup -c"

t tpm2_getcap properties-fixed >fixed.yaml || xi_fail "tpm2_getcap properties-fixed"
grep -A2 '^TPM2_PT_FAMILY_INDICATOR:' fixed.yaml | grep -q 'value: "2.0"' ||
    xi_fail "TPM2_PT_FAMILY_INDICATOR is not \"2.0\": $(head -3 fixed.yaml | tr '\n' ' ')"
xi_ok "TPM2_PT_FAMILY_INDICATOR value \"2.0\""

t tpm2_getrandom 32 -o rand1.bin || xi_fail "tpm2_getrandom 32"
t tpm2_getrandom 32 -o rand2.bin || xi_fail "tpm2_getrandom 32 (second)"
[[ $(stat -c %s rand1.bin) == 32 && $(stat -c %s rand2.bin) == 32 ]] || xi_fail "getrandom size"
! cmp -s rand1.bin rand2.bin || xi_fail "two GetRandom(32) answers are identical"
xi_ok "tpm2_getrandom 32 returns 32 bytes (two calls differ)"

# PCR 16 is resettable from locality 0, so its pre-extend value is known: 32 zero bytes.
digest=$(sha256sum <<<"xtpm integration digest" | cut -d' ' -f1)
t tpm2_pcrreset 16 || xi_fail "tpm2_pcrreset 16"
t tpm2_pcrextend "16:sha256=$digest" || xi_fail "tpm2_pcrextend 16"
t tpm2_pcrread sha256:16 -o pcr16.bin >/dev/null || xi_fail "tpm2_pcrread sha256:16"
{ head -c 32 /dev/zero; xxd -r -p <<<"$digest"; } >extend-input.bin
expected=$(sha256sum extend-input.bin | cut -d' ' -f1)
actual=$(xxd -p -c 64 pcr16.bin)
[[ $actual == "$expected" ]] || xi_fail "PCR16 $actual, expected SHA-256(0^32 || digest) = $expected"
xi_ok "PCR16 after extend = SHA-256(32 zero bytes || digest) = $expected"

printf 'sealed secret %s' "$RANDOM$RANDOM" >secret.bin
t tpm2_createprimary -C o -G ecc -c primary.ctx >/dev/null || xi_fail "tpm2_createprimary"
flush
t tpm2_create -C primary.ctx -i secret.bin -u seal.pub -r seal.priv >/dev/null || xi_fail "tpm2_create (seal)"
flush
t tpm2_load -C primary.ctx -u seal.pub -r seal.priv -c seal.ctx >/dev/null || xi_fail "tpm2_load"
flush
t tpm2_unseal -c seal.ctx -o unsealed.bin || xi_fail "tpm2_unseal"
flush
cmp -s secret.bin unsealed.bin || xi_fail "unsealed data differs from the sealed secret"
xi_ok "createprimary/create/load/unseal round-trips the secret"

t tpm2_createpolicy --policy-pcr -l sha256:16 -L pcr.policy >/dev/null || xi_fail "tpm2_createpolicy"
flush
t tpm2_create -C primary.ctx -L pcr.policy -a 'fixedtpm|fixedparent' -i secret.bin \
    -u pseal.pub -r pseal.priv >/dev/null || xi_fail "tpm2_create (PCR-policy seal)"
flush
t tpm2_load -C primary.ctx -u pseal.pub -r pseal.priv -c pseal.ctx >/dev/null || xi_fail "tpm2_load (policy)"
flush
t tpm2_unseal -c pseal.ctx -p pcr:sha256:16 -o punsealed.bin || xi_fail "PCR-policy unseal before extend"
flush
cmp -s secret.bin punsealed.bin || xi_fail "PCR-policy unseal returned other data"
xi_ok "PCR-policy sealed object unseals while PCR16 is unchanged"
t tpm2_pcrextend "16:sha256=$digest" || xi_fail "second tpm2_pcrextend 16"
if t tpm2_unseal -c pseal.ctx -p pcr:sha256:16 -o punsealed2.bin; then
    xi_fail "PCR-policy unseal succeeded after PCR16 changed"
fi
grep -qi '0x99d' tools.err || xi_fail "unseal after extend failed, but not with TPM_RC_POLICY_FAIL (0x99d)"
flush
xi_ok "PCR-policy unseal fails with 0x99d after tpm2_pcrextend 16"

head -c 32 /dev/urandom >nv.in
t tpm2_nvdefine 0x1500016 -C o -s 32 -a 'ownerread|ownerwrite' >/dev/null || xi_fail "tpm2_nvdefine"
t tpm2_nvwrite 0x1500016 -C o -i nv.in || xi_fail "tpm2_nvwrite"
t tpm2_nvread 0x1500016 -C o -s 32 -o nv.out || xi_fail "tpm2_nvread"
cmp -s nv.in nv.out || xi_fail "NV read-back differs"
xi_ok "nvdefine/nvwrite/nvread of 32 bytes at 0x1500016"

t tpm2_evictcontrol -C o -c primary.ctx 0x81000001 >/dev/null || xi_fail "tpm2_evictcontrol"
flush
t tpm2_readpublic -c 0x81000001 -n persistent.name >/dev/null || xi_fail "tpm2_readpublic 0x81000001"
t tpm2_readpublic -c primary.ctx -n primary.name >/dev/null || xi_fail "tpm2_readpublic primary.ctx"
flush
cmp -s persistent.name primary.name || xi_fail "persistent key name differs from the primary's"
handles=$(t tpm2_getcap handles-persistent) || xi_fail "tpm2_getcap handles-persistent"
[[ $handles == *0x81000001* ]] || xi_fail "0x81000001 not listed: $handles"
xi_ok "evictcontrol to 0x81000001; readpublic name = primary name"

t tpm2_createek -c ek.ctx -G ecc -u ek.pub || xi_fail "tpm2_createek"
flush
t tpm2_createak -C ek.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa -u ak.pem -f pem -n ak.name \
    >/dev/null || xi_fail "tpm2_createak"
flush
nonce=$(xxd -p -l 16 rand1.bin)
t tpm2_quote -c ak.ctx -l sha256:16 -q "$nonce" -m quote.msg -s quote.sig -o quote.pcrs -g sha256 \
    >/dev/null || xi_fail "tpm2_quote"
flush
# Sanity only: Debian's tpm2_checkquote has CVE-2024-29038/29039 and is no oracle for negative tests.
timeout 30 tpm2_checkquote -u ak.pem -m quote.msg -s quote.sig -f quote.pcrs -g sha256 -q "$nonce" \
    >/dev/null 2>>tools.err || xi_fail "tpm2_checkquote rejected the quote"
xi_ok "createek/createak/quote; tpm2_checkquote accepts the quote (sanity check)"

[[ -n ${XTPM_TOOLS_TCTI:-} ]] || xi_stop tpm
xi_log "PASS ($SECONDS s)"
