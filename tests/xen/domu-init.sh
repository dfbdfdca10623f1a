#!/bin/busybox sh
# domu-init.sh: /init of the domU's busybox initramfs (tests/xen/boot.sh packs it). What it does
# comes from the xl config's `extra` (kernel parameters it does not know become our environment):
#   xtpm_scn     scenario name used in every marker line (DOMU: <scn> ..., XTPM-GUEST <scn> ...)
#   xtpm_front   kernel: insmod xen-tpmfront, use /dev/tpm0;  user: xtpm-front --hv xen, unix socket
#   xtpm_family  tpm12|tpm2;  xtpm_action extend|read (guest_tpm's modes)
#   xtpm_then    reattach: after the test wait for /dev/tpm0 to go (xl vtpm-detach) and come
#                back (vtpm-attach), then read the PCR again as scenario pv_reattach
# shellcheck shell=dash  # busybox ash: local is fine
# No `set -e`: the markers must be printed whatever fails; everything that could hang is bounded.
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /tmp /proc/xen
scn=${xtpm_scn:-unknown} xtpm_family=${xtpm_family:-tpm12} xtpm_action=${xtpm_action:-extend}
say() { echo "DOMU: $*"; }
tpmdev() { ls /dev/tpm[0-9]* 2>/dev/null | head -n 1; }
wait_tpm() { # wait_tpm present|absent SECONDS
    local i=0
    while [ $i -lt $(($2 * 4)) ]; do
        if [ "$1" = present ]; then [ -n "$(tpmdev)" ] && return 0; else [ -z "$(tpmdev)" ] && return 0; fi
        sleep 0.25; i=$((i + 1))
    done
    return 1
}
kmsg() { dmesg | grep -i tpm | grep -v xtpm_ | sed "s/^/DOMU-DMESG $1: /"; }  # not our own parameters
test_tpm() { # test_tpm SCN TARGET ACTION
    timeout 150 /bin/guest_tpm "$1" "$2" "$xtpm_family" "$3"
    say "$1 guest_tpm rc=$?"
}

say "$scn boot: guest_type=$(cat /sys/hypervisor/guest_type 2>&1) xenbus=$(ls /sys/bus/xen/devices | tr '\n' ' ')"
if [ "${xtpm_front:-kernel}" = kernel ]; then
    (insmod /lib/modules/xen-tpmfront.ko; say "$scn insmod xen-tpmfront rc=$?") &  # the probe may block
    if wait_tpm present 150; then
        say "$scn tpmdev=$(tpmdev) vtpm state=$(cat /sys/bus/xen/devices/vtpm-0/state)"
        test_tpm "$scn" "$(tpmdev)" "$xtpm_action"
    else
        say "$scn no /dev/tpm* after 150 s; vtpm state=$(cat /sys/bus/xen/devices/vtpm-0/state 2>&1)"
    fi
    kmsg "$scn"
    say "$scn done"
    if [ "${xtpm_then:-}" = reattach ]; then
        wait_tpm absent 60 && say "pv_reattach tpm gone"
        if wait_tpm present 90; then
            say "pv_reattach tpmdev=$(tpmdev) vtpm state=$(cat /sys/bus/xen/devices/vtpm-0/state)"
            test_tpm pv_reattach "$(tpmdev)" read
        else
            say "pv_reattach no /dev/tpm* after re-attach"
        fi
        kmsg pv_reattach
        say "pv_reattach done"
    fi
else
    while read -r m; do  # the Xen device modules, not xen-tpmfront: xtpm-front is the frontend here
        [ "$m" = xen-tpmfront.ko ] || insmod /lib/modules/"$m" || say "$scn insmod $m failed"
    done </lib/modules/modules.order
    mount -t xenfs xenfs /proc/xen
    say "$scn lsmod: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ') dev/xen: $(ls /dev/xen | tr '\n' ' ')"
    timeout 200 /bin/xtpm-front --hv xen --"$xtpm_family" --server type=unixio,path=/tmp/tpm.sock \
        >/tmp/front.log 2>&1 &
    front=$!
    i=0
    while [ $i -lt 120 ] && ! grep -q 'xtpm-front: ready' /tmp/front.log; do
        kill -0 $front 2>/dev/null || break
        sleep 0.25; i=$((i + 1))
    done
    grep -q 'xtpm-front: ready' /tmp/front.log && test_tpm "$scn" unix:/tmp/tpm.sock "$xtpm_action"
    kill -TERM $front 2>/dev/null
    wait $front
    say "$scn xtpm-front exit rc=$?"
    sed 's/^/DOMU-FRONT: /' /tmp/front.log
    kmsg "$scn"
    say "$scn done"
fi
exec sleep 100000
