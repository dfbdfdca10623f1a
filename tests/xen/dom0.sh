#!/bin/bash
# dom0.sh: the dom0 side of one real-Xen boot (tests/xen/boot.sh puts it on the payload disk; the
# image's /xeninit.sh mounts that disk at /xtpm and runs this, then powers off).
# Starts xenstored/xenconsoled, then runs the boot's scenarios (BOOT in /xtpm/boot.env): xtpm-vtpmd
# --hv xen is started before each `xl create`, guests are created from /xtpm/cfg/<scenario>.cfg, and
# their consoles and the backends' logs are streamed to this console with a [name] prefix.
# Markers ("DOM0: ...") record each step's exit status; check.py judges the scenarios from them.
# No `set -e`: init must always reach the power-off. Every command that could hang is bounded.
set -uo pipefail
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
P=/xtpm
# shellcheck source=/dev/null
. $P/boot.env  # BOOT, UUID12, UUID2, UUIDF
CON=/var/log/xen/console
declare -A vtpmd_pid=() domid=()

say() { echo "DOM0: $* [t=$(now)]"; }
now() { cut -d' ' -f1 /proc/uptime; }
run() { # run SECONDS CMD...: bounded, logged with its exit status and duration
    local t=$1 rc=0 start
    start=$(now)
    shift
    timeout "$t" "$@" </dev/null || rc=$?
    say "$* rc=$rc ($(echo "$start $(now)" | awk '{printf "%.1f", $2 - $1}') s)"
    return $rc
}
stream() { tail -n +1 -F "$2" 2>/dev/null | sed -u "s/^/[$1] /" & } # stream NAME FILE -> console

services() {
    mkdir -p /dev/pts /dev/shm
    mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
    mount -o remount,rw /
    mkdir -p /run/xen /run/xenstored /run/lock /var/lib/xenstored /var/lib/xen $CON
    rm -f $CON/*
    for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd; do modprobe $m; done
    mount -t xenfs xenfs /proc/xen
    xenstored --pid-file=/run/xenstore.pid
    for _ in $(seq 1 50); do timeout 5 xenstore-read /local >/dev/null 2>&1 && break; sleep 0.2; done
    run 30 xen-init-dom0 || return 1
    xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=$CON
    say "xen services up: $(xl info | grep -E '^(xen_version|virt_caps)' | tr -s ' ' | tr '\n' ' ')"
}

# vtpmd_start NAME tpm12|tpm2 UUID: the backend must be up (InitWait) before `xl create` (libxl
# waits 10 s); --uuid makes it serve only that guest's vTPM, so several run side by side.
vtpmd_start() {
    local name=$1
    mkdir -p /run/$name.state
    $P/bin/xtpm-vtpmd --hv xen --"$2" --uuid "$3" --state /run/$name.state --pid /run/$name.pid \
        >/run/$name.log 2>&1 </dev/null &
    vtpmd_pid[$name]=$!
    stream "$name" /run/$name.log
    for _ in $(seq 1 120); do
        grep -q 'xtpm-vtpmd: ready' /run/$name.log && { say "vtpmd $name ready"; return 0; }
        kill -0 "${vtpmd_pid[$name]}" 2>/dev/null || break
        sleep 0.25
    done
    say "vtpmd $name did not become ready"
    return 1
}

# vtpmd_stop NAME: SIGTERM (orderly TPM shutdown, state persisted), bounded wait, exit status logged.
vtpmd_stop() {
    local pid=${vtpmd_pid[$1]} rc=0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { say "vtpmd $1 still running 15 s after SIGTERM; killing"; kill -KILL "$pid"; }
    wait "$pid" || rc=$?
    say "vtpmd $1 stopped rc=$rc state=$(ls /run/$1.state | tr '\n' ' ')"
}

# wait_guest NAME PATTERN SECONDS: poll the guest's console log for a marker.
wait_guest() {
    local end=$(($(date +%s) + $3))
    while [ "$(date +%s)" -lt $end ]; do
        grep -q "$2" $CON/guest-$1.log 2>/dev/null && { say "guest $1 reached '$2'"; return 0; }
        sleep 0.5
    done
    say "guest $1 did not reach '$2' within $3 s"
    return 1
}

create() { # create NAME SCENARIO [-p]: xl create from the payload's config
    echo "--- /xtpm/cfg/$2.cfg"; grep -v '^#' $P/cfg/$2.cfg
    run 60 xl create ${3:-} $P/cfg/$2.cfg
    local rc=$?
    [ -e /run/streaming-$1 ] || { touch /run/streaming-$1; stream "$1" $CON/guest-$1.log; }
    return $rc
}

destroy() { # destroy NAME: libxl's debug lines and the sampled states show what it waited for
    local sampler
    domid[$1]=$(timeout 10 xl domid "$1")
    sample_states "$1" 4 &
    sampler=$!
    run 30 xl -vvv destroy "$1" 2>&1 | grep -E 'rc=|error|wanted state|still waiting|timed out|removed'
    wait $sampler
}

xs_dump() { # the vtpm entries of both ends, for the record
    timeout 10 xenstore-ls -f /local/domain/0/backend/vtpm 2>&1 | sed 's/^/XS: /'
    local d
    d=$(timeout 10 xl domid "$1" 2>/dev/null) && timeout 10 xenstore-ls -f /local/domain/$d/device/vtpm 2>&1 | sed 's/^/XS: /'
}

# sample_states NAME SECONDS &: the vtpm 0 xenbus states of NAME (backend, online, frontend) on
# every change, sampled every 0.2 s; shows what the toolstack waits for during detach/destroy.
sample_states() {
    local d=${domid[$1]} be fe last='' now end=$(($(date +%s) + $2))
    be=/local/domain/0/backend/vtpm/$d/0 fe=/local/domain/$d/device/vtpm/0
    while [ "$(date +%s)" -lt $end ]; do
        now=$(timeout 5 xenstore-read $be/state $be/online $fe/state 2>/dev/null | tr '\n' ' ')
        [ "$now" = "$last" ] || say "states of $1 (backend online frontend): ${now:-gone}"
        [ -n "$now" ] || break
        last=$now
        sleep 0.2
    done
}

backend_state() { # backend_state NAME WHEN: logs the backend's xenbus state of NAME's vtpm 0
    local d
    d=$(timeout 10 xl domid "$1") || { say "backend state $2: no domain $1"; return 1; }
    say "backend state $2: $(timeout 10 xenstore-read /local/domain/0/backend/vtpm/$d/0/state 2>&1)"
}

# PV boot: TPM 1.2 through xen-tpmfront (pv_tpm12), detach/attach (pv_reattach), guest reboot
# (pv_reboot); a TPM 2.0 vTPM (pv_tpm2); xtpm-front as the guest's frontend (pv_front)
boot_pv() {
    vtpmd_start vtpm12 tpm12 "$UUID12" || return 1
    create guest12 pv_tpm12 && wait_guest guest12 'DOMU: pv_tpm12 done' 120
    xs_dump guest12
    domid[guest12]=$(timeout 10 xl domid guest12)
    sample_states guest12 14 &
    local sampler=$!
    run 30 xl -vvv vtpm-detach guest12 0 2>&1 | grep -E 'rc=|error|wanted state|still waiting|timed out'
    wait_guest guest12 'DOMU: pv_reattach tpm gone' 40
    wait $sampler
    xs_dump guest12
    run 10 xl pause guest12
    run 30 xl vtpm-attach guest12 backend=0 uuid="$UUID12"
    backend_state guest12 'after vtpm-attach, guest paused'
    run 10 xl unpause guest12
    wait_guest guest12 'DOMU: pv_reattach done' 90
    xs_dump guest12
    destroy guest12
    create guest12 pv_reboot -p
    backend_state guest12 'after create -p, guest paused'
    run 10 xl unpause guest12
    wait_guest guest12 'DOMU: pv_reboot done' 120
    destroy guest12
    vtpmd_stop vtpm12

    # two TPM 2.0 vTPMs side by side, one per guest (--uuid):
    # guest2 through xen-tpmfront (the kernel's own TPM 1.2 probe is recorded),
    # guestf through xtpm-front (user space: gntalloc, evtchn, xenbus)
    vtpmd_start vtpm2 tpm2 "$UUID2" || return 1
    vtpmd_start vtpmf tpm2 "$UUIDF" || return 1
    create guest2 pv_tpm2 && wait_guest guest2 'DOMU: pv_tpm2 done' 180
    xs_dump guest2
    destroy guest2
    create guestf pv_front && wait_guest guestf 'DOMU: pv_front done' 120
    xs_dump guestf
    destroy guestf
    vtpmd_stop vtpm2
    vtpmd_stop vtpmf
}

# PVH boot: the TPM 1.2 scenario with a PVH guest (pvh_tpm12)
boot_pvh() {
    vtpmd_start vtpm12 tpm12 "$UUID12" || return 1
    create guestpvh pvh_tpm12 && wait_guest guestpvh 'DOMU: pvh_tpm12 done' 150
    xs_dump guestpvh
    destroy guestpvh
    vtpmd_stop vtpm12
}

say "dom0.sh boot=$BOOT payload=$(cat $P/payload.id)"
services || { say "xen services failed"; exit 1; }
"boot_$BOOT"
say "scenarios finished rc=$?"
sleep 1  # let the streams drain
