#!/usr/bin/env bash
# The main job: build xtpm, start xtpm-chain on its embedded defaults - the simulated
# hypervisor, a vTPM (xtpm-vtpmd --hv sim, backend domain 1) attached to guest domain 2 as xl
# would, and the guest's tpmif frontend (xtpm-front) serving TPM 2.0 on the swtpm protocol
# (127.0.0.1:2321/2322) and mssim (127.0.0.1:2331/2332) - with a fresh state directory, and
# run a short tpm2-tools session through tpmif over both protocols. The chain is stopped by
# pid at the end, whatever happens (it stops its parts in order).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh

cmake --preset default >/dev/null
cmake --build --preset default --target xtpm-chain >/dev/null
chain=$PWD/build/default/roles/xtpm-chain/xtpm-chain

work=$(mktemp -d /tmp/xtpm-demo.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$chain" --state "$work/state" >"$work/chain.out" 2>"$work/chain.err" &
pid=$!
for _ in $(seq 300); do
  grep -q "ready" "$work/chain.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/chain.err" >&2; echo "xtpm-chain did not start" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready" "$work/chain.out" || { echo "xtpm-chain not ready after 30 s" >&2; exit 1; }
cat "$work/chain.out" "$work/chain.err"

swtpm_tcti="swtpm:host=127.0.0.1,port=2321"
mssim_tcti="mssim:host=127.0.0.1,port=2331"
t() { echo "\$ $*"; timeout 30 "$@"; }
cd "$work"

echo; echo "== TPM2_Startup and identity (swtpm protocol)"
t tpm2_startup -c -T "$swtpm_tcti"
t tpm2_getcap -T "$swtpm_tcti" properties-fixed | grep -A2 -E "^TPM2_PT_(FAMILY_INDICATOR|MANUFACTURER|REVISION):" | grep -E "PT_|value"

echo; echo "== PCRs (mssim protocol)"
t tpm2_pcrread -T "$mssim_tcti" sha256:0,16
digest=$(printf 'xtpm demo' | sha256sum | cut -d' ' -f1)
t tpm2_pcrextend -T "$mssim_tcti" "16:sha256=$digest"
t tpm2_pcrread -T "$mssim_tcti" sha256:16

echo; echo "== Random bytes"
t tpm2_getrandom -T "$swtpm_tcti" --hex 16; echo
t tpm2_getrandom -T "$mssim_tcti" --hex 16; echo

echo; echo "== A secret sealed to the TPM"
t tpm2_createprimary -T "$swtpm_tcti" -Q -C o -c primary.ctx
echo -n "the secret of the demo" > secret.txt
t tpm2_create -T "$swtpm_tcti" -Q -C primary.ctx -i secret.txt -u seal.pub -r seal.priv
t tpm2_flushcontext -T "$swtpm_tcti" -t
t tpm2_load -T "$swtpm_tcti" -Q -C primary.ctx -u seal.pub -r seal.priv -c seal.ctx
echo "unsealed: $(t tpm2_unseal -T "$swtpm_tcti" -c seal.ctx | tail -n 1)"
t tpm2_flushcontext -T "$swtpm_tcti" -t

echo; echo "== Orderly stop (SIGTERM): frontend closed, the TPM shut down and its state persisted"
kill -TERM "$pid"
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then echo "xtpm-chain did not stop" >&2; exit 1; fi
wait "$pid" && echo "xtpm-chain exited 0"; pid=""
ls -l "$work/state"
