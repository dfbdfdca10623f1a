"""Differential check: the same deterministic trace of raw TPM 2.0 commands and control messages is
sent to a reference daemon (Debian's swtpm 0.7.1 on libtpms 0.9.2) and to the daemon under test; the
answers must be byte-identical after masking what is random or time-dependent.

  differential.py --ref-data EP --ref-ctrl EP --dut-data EP --dut-ctrl EP

Both daemons run with --tpm2 --flags not-need-init,startup-clear on fresh state directories. Commands
follow TCG TPM 2.0 Part 3; control messages follow swtpm's tpm_ioctl.h (peers-and-protocols.md 4.1).
Each data command uses a fresh connection, as tpm2-tss's swtpm TCTI does.
"""

import argparse
import struct
import sys

import xtpm_wire as w

# Intentional differences from swtpm 0.7.1, each documented in docs/testing.md:
# - GET_CAPABILITY bits 15 SEND_COMMAND_HEADER and 16 LOCK_STORAGE (newer swtpm releases have them)
#   may be added; bit 12 SET_DATAFD may be absent on a TCP control channel, which cannot pass an fd.
CAPS_MAY_ADD = (1 << 15) | (1 << 16)
CAPS_MAY_DROP_ON_TCP = 1 << 12
# - A tag other than TPM_ST_SESSIONS/NO_SESSIONS may get TPM_RC_BAD_TAG (0x01E), the answer TCG Part 1
#   section 18.2 and Part 3 section 5.2 require, where libtpms 0.9.2 answers TPM_RC_VALUE (0x084).
BAD_TAG = bytes.fromhex('80010000000a0000001e')
DUT_MAY_ANSWER = {
    'bad tag 0x1234': [BAD_TAG],
    'bad tag 0x0000': [BAD_TAG],
    'TPM 1.2 tag 0x00C1 (TPM_Startup)': [BAD_TAG, bytes.fromhex('00c40000000a0000001e')],
}

NV_INDEX = 0x01500020


def mask_random(resp):
    """GetRandom: keep header and TPM2B size, zero the random bytes."""
    return resp[:12] + bytes(len(resp) - 12) if len(resp) > 12 else resp


def mask_clock(resp):
    """ReadClock: TPMS_TIME_INFO = time u64, clock u64, resetCount, restartCount, safe; mask the two
    counters of elapsed time, compare resetCount/restartCount/safe."""
    return resp[:10] + bytes(16) + resp[26:] if len(resp) >= 26 else resp


def tpm_trace():
    """(name, command, mask) in order; later steps depend on the state left by earlier ones."""
    t = []
    cap = w.get_capability
    t += [('GetCapability(TPM_PROPERTIES, PT_FIXED)', cap(6, 0x100, 128), None),
          ('GetCapability(TPM_PROPERTIES, PT_VAR)', cap(6, 0x200, 128), None),
          ('GetCapability(ALGS)', cap(0, 0, 128), None),
          ('GetCapability(COMMANDS)', cap(2, 0x11F, 256), None),
          ('GetCapability(PCRS)', cap(5, 0, 1), None),
          ('GetCapability(ECC_CURVES)', cap(8, 0, 64), None),
          ('GetCapability(HANDLES, persistent)', cap(1, 0x81000000, 64), None),
          ('GetCapability(bad capability 0x1234)', cap(0x1234, 0, 1), None)]
    t += [('PCR_Read(sha256: 0,16,23)', w.pcr_read([0, 16, 23]), None),
          ('PCR_Read(sha1: 0-23)', w.pcr_read(range(24), 0x0004), None),
          ('PCR_Extend(16, sha256)', w.pcr_extend(16, w.sha256(b'differential')), None),
          ('PCR_Read(sha256: 16) after extend', w.pcr_read([16]), None),
          ('PCR_Extend(24) out of range', w.pcr_extend(24, bytes(32)), None),
          ('PCR_Read(sha256: 16)', w.pcr_read([16]), None)]
    body = w.get_random(8)[6:]
    t += [('bad tag 0x1234', struct.pack('>HI', 0x1234, 12) + body, None),
          ('bad tag 0x0000', struct.pack('>HI', 0x0000, 12) + body, None),
          ('TPM 1.2 tag 0x00C1 (TPM_Startup)', w.tpm12_startup_clear(), None),
          ('unknown command code 0x0000FFFF', w.tpm2_cmd(0xFFFF), None),
          ('vendor command code 0x20000000', w.tpm2_cmd(0x20000000), None),
          ('truncated GetCapability (4 of 12 parameter bytes)', w.tpm2_cmd(0x17A, bytes(4)), None),
          ('truncated PCR_Read (count 1, no selection)', w.tpm2_cmd(0x17E, struct.pack('>I', 1)), None),
          ('GetRandom without parameter', w.tpm2_cmd(0x17B), None),
          ('GetRandom with trailing bytes', w.tpm2_cmd(0x17B, struct.pack('>HH', 8, 0)), None),
          ('ST_SESSIONS without auth area', w.tpm2_cmd(0x17B, struct.pack('>H', 8), 0x8002), None)]
    for n in (0, 1, 16, 32, 48, 64, 65, 100, 0xFFFF):
        t.append(('GetRandom(%d)' % n, w.get_random(n), mask_random))
    t += [('SelfTest(fullTest=YES)', w.self_test(True), None),
          ('SelfTest(fullTest=NO)', w.self_test(False), None),
          ('GetTestResult', w.tpm2_cmd(0x17C), None),
          ('ReadClock', w.tpm2_cmd(0x181), mask_clock)]
    t += [('NV_DefineSpace(0x01500020, 16 bytes, authread|authwrite|no_da)',
           w.nv_define(NV_INDEX, w.NV_AUTH_RW, 16), None),
          ('NV_DefineSpace again (already defined)', w.nv_define(NV_INDEX, w.NV_AUTH_RW, 16), None),
          ('NV_ReadPublic', w.nv_read_public(NV_INDEX), None),
          ('NV_Read before any write', w.nv_read(NV_INDEX, 16), None),
          ('NV_Write(16 bytes)', w.nv_write(NV_INDEX, bytes(range(16))), None),
          ('NV_ReadPublic after write (WRITTEN set)', w.nv_read_public(NV_INDEX), None),
          ('NV_Read(16)', w.nv_read(NV_INDEX, 16), None),
          ('NV_Read(8 at offset 4)', w.nv_read(NV_INDEX, 8, 4), None),
          ('NV_Read past the end', w.nv_read(NV_INDEX, 16, 8), None),
          ('NV_Write past the end', w.nv_write(NV_INDEX, bytes(8), 12), None),
          ('NV_ReadPublic(absent index)', w.nv_read_public(NV_INDEX + 1), None),
          ('GetCapability(HANDLES, NV)', cap(1, 0x01000000, 64), None),
          ('Startup again (TPM_RC_INITIALIZE)', w.startup_clear(), None),
          ('GetCapability(TPM_PROPERTIES, PT_VAR) at the end', cap(6, 0x200, 128), None)]
    return t


def ctrl_trace(tcp):
    """(name, code, body, answer mask) control messages; SET_LOCALITY is restored to 0 at the end."""
    c = w.CTRL
    may_differ = CAPS_MAY_ADD | (CAPS_MAY_DROP_ON_TCP if tcp else 0)

    def caps_mask(ans):
        if len(ans) != 8:
            return ans
        return ans[:4] + struct.pack('>I', struct.unpack('>I', ans[4:])[0] & ~may_differ)

    return [('GET_CAPABILITY', c['GET_CAPABILITY'], b'', caps_mask),
            ('GET_TPMESTABLISHED', c['GET_TPMESTABLISHED'], b'', None),
            ('GET_CONFIG', c['GET_CONFIG'], b'', None),
            ('SET_BUFFERSIZE(0) query', c['SET_BUFFERSIZE'], struct.pack('>I', 0), None),
            ('SET_LOCALITY(3)', c['SET_LOCALITY'], b'\x03', None),
            ('SET_LOCALITY(4)', c['SET_LOCALITY'], b'\x04', None),
            ('SET_LOCALITY(5) invalid', c['SET_LOCALITY'], b'\x05', None),
            ('SET_LOCALITY(0)', c['SET_LOCALITY'], b'\x00', None),
            ('GET_TPMESTABLISHED again', c['GET_TPMESTABLISHED'], b'', None)] + [
        # libtpms's JSON (TPMLIB_GetInfo) from both: specification, attributes, features, unknown bits.
        ('GET_INFO(flags 0x%x, offset %d)' % (flags, offset), c['GET_INFO'],
         struct.pack('>QII', flags, offset, 0), None)
        for flags, offset in [(1, 0), (2, 0), (4, 0), (7, 0), (0xFF, 0), (1 << 40, 0), (7, 30), (1, 61), (1, 62),
                              (1, 0xFFFFFFFF)]]


def show(b):
    return w.hexs(b, 40)


def main():
    ap = argparse.ArgumentParser()
    for who in ('ref', 'dut'):
        ap.add_argument('--%s-data' % who, required=True)
        ap.add_argument('--%s-ctrl' % who, required=True)
    a = ap.parse_args()
    diffs = 0
    checked = 0

    def compare(name, ref, dut, mask, ctrl=False):
        nonlocal diffs, checked
        checked += 1
        mref, mdut = (mask(ref), mask(dut)) if mask else (ref, dut)
        what = ('answer %s' % ref.hex()) if ctrl else ('rc 0x%x, %d bytes' % (w.rc_of(ref), len(ref)))
        if mref == mdut:
            print('same  %-58s %s%s' % (name, what, ' (masked)' if mask else ''))
        elif dut in DUT_MAY_ANSWER.get(name, []):
            print('same* %-58s ref %s, dut %s: documented difference' % (name, ref.hex(), dut.hex()))
        else:
            diffs += 1
            at = next((i for i, (x, y) in enumerate(zip(mref, mdut)) if x != y), min(len(mref), len(mdut)))
            lo = max(0, at - 8)
            print('DIFF  %s: %d vs %d bytes, first difference at byte %d\n      ref [%d:] %s\n'
                  '      dut [%d:] %s' % (name, len(ref), len(dut), at, lo, show(ref[lo:]), lo, show(dut[lo:])))

    for name, cmd, mask in tpm_trace():
        ref = w.tpm_transact(a.ref_data, cmd)
        dut = w.tpm_transact(a.dut_data, cmd)
        compare(name, ref, dut, mask)
    for name, code, body, mask in ctrl_trace(a.dut_ctrl.startswith('tcp:')):
        ref = w.ctrl_transact(a.ref_ctrl, code, body)
        dut = w.ctrl_transact(a.dut_ctrl, code, body)
        compare('ctrl ' + name, ref, dut, mask, ctrl=True)
        if code == w.CTRL['GET_CAPABILITY'] and ref != dut:
            extra = struct.unpack('>I', dut[4:8])[0] ^ struct.unpack('>I', ref[4:8])[0]
            print('      capability bits that differ: 0x%x (may differ: bits 15, 16%s)'
                  % (extra, ', 12' if a.dut_ctrl.startswith('tcp:') else ''))
    # The data channel still answers identically after the control traffic.
    for name, cmd, mask in [('PCR_Read(sha256: 16) after ctrl', w.pcr_read([16]), None),
                            ('GetRandom(32) after ctrl', w.get_random(32), mask_random)]:
        compare(name, w.tpm_transact(a.ref_data, cmd), w.tpm_transact(a.dut_data, cmd), mask)
    print('%d answers compared, %d differ' % (checked, diffs))
    sys.exit(1 if diffs else 0)


if __name__ == '__main__':
    main()
