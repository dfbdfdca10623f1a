#!/usr/bin/env python3
"""check.py: judges the real-Xen scenarios of one boot from its timestamped serial log alone.

Usage: check.py --boot pv|pvh SERIAL_LOG                 one `XTPM-RESULT <scenario> PASS|FAIL <why>`
                                                        line per scenario of that boot (exit 0)
       check.py --boot pv|pvh --scenario S SERIAL_LOG   the evidence lines, then S's result line
                                                        (exit 0 PASS, 1 FAIL, 77 when boot.sh
                                                        skipped: its work dir holds `skipped`)
The log is what boot.sh wrote: "[seconds] text", where the text is Xen's and dom0's console with
"DOM0:" markers, "[name] " prefixed guest consoles (DOMU: markers, XTPM-GUEST lines of guest_tpm,
DOMU-DMESG lines) and backend logs. TPM arithmetic is recomputed here with hashlib.
Standard library only.
"""
import argparse
import hashlib
import os
import re
import sys

SCENARIOS = {
    'pv': ['pv_boot', 'pv_tpm12', 'pv_reattach', 'pv_reboot', 'pv_tpm2', 'pv_front', 'pv_toolstack'],
    'pvh': ['pvh_boot', 'pvh_tpm12'],
}
ETIME = re.compile(r'-62\b|ETIME')


class Fail(Exception):
    pass


def need(cond, why):
    if not cond:
        raise Fail(why)


class Log:
    def __init__(self, path):
        self.lines = []  # (seconds, text)
        with open(path, errors='replace') as f:
            for raw in f:
                m = re.match(r'\[\s*([0-9.]+)\] ?(.*)', raw.rstrip('\n'))
                if m:
                    self.lines.append((float(m.group(1)), m.group(2)))
        self.evidence = []

    def find(self, pattern, keep=True):
        """All (seconds, match) of a regex searched in every line; kept as evidence."""
        out = []
        for t, text in self.lines:
            m = re.search(pattern, text)
            if m:
                out.append((t, m))
                line = f'[{t:6.1f}] {text}'
                if keep and line not in self.evidence:
                    self.evidence.append(line)
        return out

    def has(self, pattern, why):
        hits = self.find(pattern)
        need(hits, why.replace('\\', ''))
        return hits

    def guest(self, scn):
        """guest_tpm's lines of a scenario: {step: bytes} (the last of each step)."""
        steps = {}
        for _, m in self.find(rf'XTPM-GUEST {re.escape(scn)} (\S+)(?: (\S+))?'):
            if m.group(1) == 'error':
                raise Fail(f'guest_tpm reported an error: {m.group(0)}')
            steps[m.group(1)] = bytes.fromhex(m.group(2)) if m.group(2) else b''
        need('ok' in steps, f'guest_tpm did not finish scenario {scn}')
        return steps

    def cfg_uuid(self, scn):
        """The vtpm uuid of /xtpm/cfg/<scn>.cfg, as dom0 printed it before `xl create`."""
        printing = False
        for _, text in self.lines:
            if text.startswith('--- /xtpm/cfg/'):
                printing = text == f'--- /xtpm/cfg/{scn}.cfg'
            elif printing and (m := re.search(r'uuid=([0-9a-f-]{36})', text)):
                return m.group(1)
        raise Fail(f'no config printed for {scn}')


def u32(b, at):
    return int.from_bytes(b[at:at + 4], 'big')


def rc_ok(b, step):
    need(len(b) >= 10 and u32(b, 2) == len(b), f'{step}: malformed response')
    need(u32(b, 6) == 0, f'{step}: TPM error 0x{u32(b, 6):x}')


def tpm12_extend(log, scn):
    s = log.guest(scn)
    for step in ('getrandom', 'pcrread0', 'extend', 'pcrread1'):
        need(step in s, f'no {step} response')
        rc_ok(s[step], step)
    rnd = s['getrandom'][14:]
    need(u32(s['getrandom'], 10) == 20 and len(rnd) == 20, 'GetRandom did not return 20 bytes')
    need(s['extend.cmd'][14:34] == rnd, 'the extended digest is not the random bytes')
    old, new = s['pcrread0'][10:30], s['pcrread1'][10:30]
    want = hashlib.sha1(old + rnd).digest()
    need(s['extend'][10:30] == want, 'TPM_Extend returned a wrong PCR value')
    need(new == want, f'PCR16 {new.hex()} != SHA1(old || digest) {want.hex()}')
    return f'PCR16 {old.hex()[:8]}.. -> {new.hex()[:8]}.. = SHA1(old||GetRandom(20))', new


def tpm12_read(log, scn):
    s = log.guest(scn)
    rc_ok(s.get('pcrread', b''), 'pcrread')
    return s['pcrread'][10:30]


def tpm2_pcr(b, step):
    """The single sha256 digest of a TPM2_PCR_Read response."""
    rc_ok(b, step)
    at = 18  # header, pcrUpdateCounter, TPML_PCR_SELECTION.count
    for _ in range(u32(b, 14)):
        at += 3 + b[at + 2]
    need(u32(b, at) == 1 and int.from_bytes(b[at + 4:at + 6], 'big') == 32, f'{step}: not one sha256 digest')
    return b[at + 6:at + 38]


def tpm2_extend(log, scn):
    s = log.guest(scn)
    st = s.get('startup', b'')
    need(len(st) == 10 and u32(st, 6) in (0, 0x100), 'TPM2_Startup failed (neither success nor TPM_RC_INITIALIZE)')
    rc_ok(s.get('getrandom', b''), 'getrandom')
    rnd = s['getrandom'][12:]
    need(int.from_bytes(s['getrandom'][10:12], 'big') == 32 and len(rnd) == 32, 'GetRandom did not return 32 bytes')
    need(s['extend.cmd'][-32:] == rnd, 'the extended digest is not the random bytes')
    rc_ok(s.get('extend', b''), 'extend')
    old, new = tpm2_pcr(s.get('pcrread0', b''), 'pcrread0'), tpm2_pcr(s.get('pcrread1', b''), 'pcrread1')
    want = hashlib.sha256(old + rnd).digest()
    need(new == want, f'PCR16 {new.hex()} != SHA256(old || digest) {want.hex()}')
    startup = 'Startup ok' if u32(st, 6) == 0 else 'Startup: TPM_RC_INITIALIZE (already started)'
    return f'{startup}; sha256 PCR16 {old.hex()[:8]}.. -> {new.hex()[:8]}.. = SHA256(old||GetRandom(32))'


def kernel_frontend(log, scn, vtpmd, min_connects=1, cfg=None):
    """xen-tpmfront's probe reached the vTPM: /dev/tpmN, no -62 (ETIME), backend connected."""
    log.has(rf'DOMU: {scn} tpmdev=/dev/tpm\d', f'no /dev/tpm* in the {scn} guest')
    bad = [m.group(0) for _, m in log.find(rf'DOMU-DMESG {scn}: .*') if ETIME.search(m.group(0))]
    need(not bad, f'kernel saw -62/ETIME: {bad[:2]}')
    uuid = log.cfg_uuid(cfg or scn)
    n = len(log.find(rf'\[{vtpmd}\] xtpm-vtpmd: device \d+/0 uuid={uuid}: connected'))
    need(n >= min_connects, f'{vtpmd} logged {n} connections of uuid {uuid}, expected >= {min_connects}')
    return uuid


def guest_type(log, scn, pvh):
    hits = log.has(rf'DOMU: {scn} boot: guest_type=(\S+)', f'no boot line of {scn}')
    need(hits[-1][1].group(1) == ('PVH' if pvh else 'PV'), f'guest booted as {hits[-1][1].group(1)}')


def dom0_ok(log, what):
    return log.has(rf'DOM0: {what} rc=0 \(([0-9.]+) s\)', f'dom0 step failed or missing: {what}')


def boot(log, name):
    hits = log.has(r'DOM0: ALL DONE', 'dom0 never reached ALL DONE (hang, crash or time budget)')
    crash = [t for t in log.lines if re.search(r'Dom0 crashed|Kernel panic', t[1]) and not re.match(r'\[[a-z]', t[1])]
    need(not crash, f'crash: {crash[0][1] if crash else ""}')
    log.has(r'DOM0: xen services up', 'xenstored/xenconsoled did not come up')
    log.has(r'DOM0: scenarios finished rc=0', 'the dom0 scenario script stopped early')
    return f'ALL DONE at {hits[0][0]:.1f} s after QEMU start'


def tpm12_kernel(log, scn, pvh):
    guest_type(log, scn, pvh)
    dom0_ok(log, rf'xl create /xtpm/cfg/{scn}\.cfg')
    kernel_frontend(log, scn, 'vtpm12')
    what, _ = tpm12_extend(log, scn)
    return f'{"PVH" if pvh else "PV"} xen-tpmfront /dev/tpm0 TPM 1.2, no -62; {what}; GetRandom ok'


def reattach(log):
    _, before = tpm12_extend(log, 'pv_tpm12')
    dom0_ok(log, r'xl -vvv vtpm-detach guest12 0')
    log.has(r'DOMU: pv_reattach tpm gone', '/dev/tpm0 did not go away after vtpm-detach')
    uuid = log.cfg_uuid('pv_tpm12')
    dom0_ok(log, rf'xl vtpm-attach guest12 backend=0 uuid={uuid}')
    log.has(r'DOM0: backend state after vtpm-attach, guest paused: 2\b', 'backend not in InitWait (2) after attach')
    kernel_frontend(log, 'pv_reattach', 'vtpm12', 2, 'pv_tpm12')
    after = tpm12_read(log, 'pv_reattach')
    need(after == before, f'PCR16 after re-attach {after.hex()} != before {before.hex()}')
    return f'detach, attach (same uuid) -> InitWait(2), reconnected; PCR16 kept {after.hex()[:8]}..'


def reboot(log):
    _, before = tpm12_extend(log, 'pv_tpm12')
    dom0_ok(log, r'xl -vvv destroy guest12')
    dom0_ok(log, r'xl create -p /xtpm/cfg/pv_reboot\.cfg')
    need(log.cfg_uuid('pv_reboot') == log.cfg_uuid('pv_tpm12'), 'reboot used another uuid')
    log.has(r'DOM0: backend state after create -p, guest paused: 2\b', 'backend not in InitWait (2) for the new guest')
    kernel_frontend(log, 'pv_reboot', 'vtpm12', 3)
    after = tpm12_read(log, 'pv_reboot')
    need(after == before, f'PCR16 after reboot {after.hex()} != before {before.hex()}')
    return f'destroy + create (same uuid, same backend) -> InitWait(2), reconnected; PCR16 kept {after.hex()[:8]}..'


def tpm2_kernel(log):
    log.find(r'DOMU-DMESG pv_tpm2: .*')  # the kernel's own TPM 1.2 probe, for the record
    dom0_ok(log, r'xl create /xtpm/cfg/pv_tpm2\.cfg')
    kernel_frontend(log, 'pv_tpm2', 'vtpm2')
    return f'TPM 2.0 vTPM via xen-tpmfront /dev/tpm0; {tpm2_extend(log, "pv_tpm2")}'


def front(log):
    dom0_ok(log, r'xl create /xtpm/cfg/pv_front\.cfg')
    mods = log.has(r'DOMU: pv_front lsmod: (.*) dev/xen:', 'no module list from the guest')
    need('xen_tpmfront' not in mods[-1][1].group(1), 'xen-tpmfront was loaded')
    log.has(r'DOMU-FRONT: xtpm-front: ready .*hv=xen', 'xtpm-front never became ready')
    uuid = log.cfg_uuid('pv_front')
    log.has(rf'\[vtpmf\] xtpm-vtpmd: device \d+/0 uuid={uuid}: connected', 'the backend never connected')
    # two backends ran side by side (--uuid): each connected only its own guest
    for name, scn in (('vtpmf', 'pv_front'), ('vtpm2', 'pv_tpm2')):
        want = log.cfg_uuid(scn)
        other = [m.group(1) for _, m in log.find(rf'\[{name}\] xtpm-vtpmd: device \d+/0 uuid=(\S+): connected')
                 if m.group(1) != want]
        need(not other, f'{name} served another guest\'s vTPM: {other[0] if other else ""}')
    what = tpm2_extend(log, 'pv_front')
    log.has(r'DOMU: pv_front xtpm-front exit rc=0', 'xtpm-front did not exit cleanly on SIGTERM')
    return f'xtpm-front --hv xen (gntalloc+evtchn, no xen-tpmfront) <-> its own xtpm-vtpmd --uuid; {what}'


def toolstack(log):
    """libxl finds the backend well-behaved: no libxl errors, detach without its 10 s timeout."""
    log.find(r'DOM0: states of guest12')
    errors = log.find(r'libxl: error: .*')
    need(not errors, f'libxl reported {len(errors)} errors, first: {errors[0][1].group(0) if errors else ""}')
    secs = float(dom0_ok(log, r'xl -vvv vtpm-detach guest12 0')[-1][1].group(1))
    need(secs < 5, f'xl vtpm-detach took {secs} s (libxl waits 10 s for backend state Closed)')
    return f'no libxl errors; vtpm-detach in {secs} s'


CHECKS = {
    'pv_boot': lambda log: boot(log, 'pv'),
    'pvh_boot': lambda log: boot(log, 'pvh'),
    'pv_tpm12': lambda log: tpm12_kernel(log, 'pv_tpm12', False),
    'pvh_tpm12': lambda log: tpm12_kernel(log, 'pvh_tpm12', True),
    'pv_reattach': reattach,
    'pv_reboot': reboot,
    'pv_tpm2': tpm2_kernel,
    'pv_front': front,
    'pv_toolstack': toolstack,
}


def judge(path, scn):
    log = Log(path)
    try:
        return True, CHECKS[scn](log), log.evidence
    except Fail as e:
        return False, str(e), log.evidence
    except (ValueError, IndexError, KeyError) as e:  # a missing step or garbled hex: no evidence
        return False, f'malformed or missing evidence: {e!r}', log.evidence


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--boot', required=True, choices=sorted(SCENARIOS))
    ap.add_argument('--scenario')
    ap.add_argument('log')
    a = ap.parse_args()
    if not os.path.exists(a.log):
        skipped = os.path.join(os.path.dirname(a.log), 'skipped')
        if os.path.exists(skipped):  # boot.sh could not run here and said why
            print('SKIP: ' + open(skipped).read().strip())
            return 77
        print(f'XTPM-RESULT {a.scenario or a.boot} FAIL no serial log {a.log}')
        return 1
    if a.scenario:
        ok, why, evidence = judge(a.log, a.scenario)
        print('\n'.join(evidence))
        print(f'XTPM-RESULT {a.scenario} {"PASS" if ok else "FAIL"} {why}')
        return 0 if ok else 1
    for scn in SCENARIOS[a.boot]:
        ok, why, _ = judge(a.log, scn)
        print(f'XTPM-RESULT {scn} {"PASS" if ok else "FAIL"} {why}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
