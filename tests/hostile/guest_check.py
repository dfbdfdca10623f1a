"""The well-behaved guest's check: its vTPM, reached through xtpm-front's swtpm data socket (so over
tpmif, exactly as the guest kernel would), still answers correctly while another guest misbehaves.

TPM2_Startup(CLEAR) (TPM_RC_INITIALIZE when already started is fine), GetRandom(32), then
PCR_Extend(16) with a fresh digest and PCR_Read(16): the new value must be
SHA-256(old || digest) (TCG TPM 2.0 Part 1 section 17.7). Every exchange is bounded (xtpm_wire).
Usage: guest_check.py tcp:127.0.0.1:PORT [TAG]; exit 0 when correct, 1 otherwise.
"""

import hashlib
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
import xtpm_wire as w  # noqa: E402

PCR = 16


def pcr16(ep):
    resp = w.tpm_transact(ep, w.pcr_read([PCR]))
    check(w.rc_of(resp) == 0, 'PCR_Read rc 0x%x' % w.rc_of(resp))
    # header 10, update counter 4, TPML_PCR_SELECTION (4 + 2 + 1 + 3), TPML_DIGEST count 4, size 2
    count, size = struct.unpack('>IH', resp[24:30])
    check(count == 1 and size == 32 and len(resp) == 62, 'PCR_Read answer shape: %s' % resp.hex())
    return resp[30:62]


def check(cond, what):
    if not cond:
        print('guest check FAILED: ' + what)
        sys.exit(1)


def main():
    ep = sys.argv[1]
    tag = sys.argv[2] if len(sys.argv) > 2 else ''
    rc = w.rc_of(w.tpm_transact(ep, w.startup_clear()))
    check(rc in (0, 0x100), 'Startup rc 0x%x' % rc)
    resp = w.tpm_transact(ep, w.get_random(32))
    check(w.rc_of(resp) == 0 and len(resp) == 44 and struct.unpack('>H', resp[10:12])[0] == 32,
          'GetRandom(32): %s' % resp.hex())
    before = pcr16(ep)
    digest = hashlib.sha256(os.urandom(16)).digest()
    resp = w.tpm_transact(ep, w.pcr_extend(PCR, digest))
    check(w.rc_of(resp) == 0, 'PCR_Extend rc 0x%x' % w.rc_of(resp))
    after = pcr16(ep)
    check(after == hashlib.sha256(before + digest).digest(), 'PCR 16 is not SHA-256(old || digest)')
    print('guest check ok%s: GetRandom(32), PCR_Extend + PCR_Read(16) consistent' % (' (' + tag + ')' if tag else ''))


if __name__ == '__main__':
    main()
