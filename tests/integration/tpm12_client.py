"""TPM 1.2 raw-command client for persistence.sh (TPM Main Part 3: Startup, GetRandom, Extend,
PCRRead, CreateEndorsementKeyPair, ReadPubek).

  tpm12_client.py first --data EP --pubek FILE   fresh TPM: exercise commands, create the EK, save it
  tpm12_client.py again --data EP --pubek FILE   restarted TPM: same EK, EK creation now refused

The EK lives in permanent state; reading the same public EK after a restart proves the permanent state
was reloaded rather than re-manufactured (a new TPM would have no EK: TPM_NO_ENDORSEMENT).
"""

import argparse
import struct
import sys

import xtpm_wire as w

TPM_SUCCESS = 0
TPM_DISABLED_CMD = 0x08
TPM_NO_ENDORSEMENT = 0x23


def check(cond, what):
    print(('ok: ' if cond else 'FAIL: ') + what)
    if not cond:
        sys.exit(1)


def send(ep, cmd):
    resp = w.tpm_transact(ep, cmd, timeout=20.0)
    tag, size = struct.unpack('>HI', resp[:6])
    if tag != 0x00C4 or size != len(resp):
        check(False, 'response framing of ordinal 0x%x (tag 0x%x, size %d)'
              % (struct.unpack('>I', cmd[6:10])[0], tag, size))
    return w.rc_of(resp), resp[10:]


def startup_and_basics(ep):
    rc, _ = send(ep, w.tpm12_startup_clear())
    check(rc == TPM_SUCCESS, 'TPM_Startup(ST_CLEAR) rc 0x%x' % rc)
    rc, body = send(ep, w.tpm12_get_random(16))
    n = struct.unpack('>I', body[:4])[0] if len(body) >= 4 else -1
    check(rc == 0 and n == 16 and len(body) == 20, 'TPM_GetRandom(16) returns 16 bytes')
    rc, before = send(ep, w.tpm12_pcr_read(10))
    check(rc == 0 and before == bytes(20), 'TPM_PCRRead(10) after ST_CLEAR is 20 zero bytes')
    digest = w.sha1(b'xtpm integration tpm12')
    rc, out = send(ep, w.tpm12_extend(10, digest))
    expected = w.sha1(before + digest)
    check(rc == 0 and out == expected, 'TPM_Extend(10) returns SHA-1(old || digest) = ' + expected.hex())
    rc, after = send(ep, w.tpm12_pcr_read(10))
    check(rc == 0 and after == expected, 'TPM_PCRRead(10) equals the extended value')


def read_pubek(ep):
    nonce = bytes(range(20))
    rc, body = send(ep, w.tpm12_read_pubek(nonce))
    if rc != 0:
        return rc, b''
    pubek, checksum = body[:-20], body[-20:]
    check(checksum == w.sha1(pubek + nonce), 'TPM_ReadPubek checksum = SHA-1(pubek || nonce)')
    return rc, pubek


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('step', choices=['first', 'again'])
    ap.add_argument('--data', required=True)
    ap.add_argument('--pubek', required=True)
    a = ap.parse_args()
    startup_and_basics(a.data)
    if a.step == 'first':
        rc, _ = read_pubek(a.data)
        check(rc == TPM_NO_ENDORSEMENT, 'fresh TPM has no EK yet (TPM_ReadPubek rc 0x%x)' % rc)
        rc, _ = send(a.data, w.tpm12_create_ek(bytes(20)))
        check(rc == 0, 'TPM_CreateEndorsementKeyPair rc 0x%x' % rc)
        rc, pubek = read_pubek(a.data)
        check(rc == 0 and len(pubek) > 256, 'TPM_ReadPubek returns the new EK (%d bytes)' % len(pubek))
        with open(a.pubek, 'wb') as f:
            f.write(pubek)
    else:
        with open(a.pubek, 'rb') as f:
            saved = f.read()
        rc, pubek = read_pubek(a.data)
        check(rc == 0 and pubek == saved, 'TPM_ReadPubek after restart returns the same EK (rc 0x%x)' % rc)
        rc, _ = send(a.data, w.tpm12_create_ek(bytes(20)))
        check(rc == TPM_DISABLED_CMD, 'TPM_CreateEndorsementKeyPair refused: EK exists (rc 0x%x)' % rc)


if __name__ == '__main__':
    main()
