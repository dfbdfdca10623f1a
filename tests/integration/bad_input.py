"""Hostile clients against a running daemon: malformed, truncated, oversized and abandoned messages
on the data channel, the swtpm control channel and (xtpm-vtpmd only) the mssim port pair.

  bad_input.py --kind xtpm|swtpm --pid PID --data EP --ctrl EP [--mssim PORT] [--run-known-failures]

Each case must end in a well-formed error (TPM: tag, size 10, rc != 0; control: u32 result != 0; mssim:
a framed TPM error) or a close (FIN or RST) within a bounded time; afterwards the daemon's pid is alive
and a fresh client gets a correct GetRandom answer (over mssim too). Cases that Debian's swtpm 0.7.1 is
known to fail are skipped when --kind swtpm unless --run-known-failures is given (docs/testing.md).
Framing facts: peers-and-protocols.md 4.1-4.3 and 4.5.
"""

import argparse
import socket
import struct
import sys
import time

import xtpm_wire as w

ANSWER_WITHIN = 3.0    # seconds a daemon gets to answer or close once it has everything it will get
PATIENCE = 0.5         # seconds we wait before half-closing a message the daemon may still wait on
STALL_BUDGET = 0.4     # a GetRandom on localhost takes ~1 ms; one stalled client must not delay it more

# Known failures of Debian's swtpm 0.7.1, measured with --run-known-failures (docs/testing.md).
SWTPM_KNOWN = {
    'data: stalled partial header does not block another client':
        'serves one client at a time; a stalled client blocks the daemon (4.5)',
    'data: two commands in one write are answered in order':
        'ignores paramSize: one read is one command (4.5)',
    'data: command split inside the parameters is reassembled':
        'ignores paramSize: runs a first segment of >= 10 bytes as a truncated command (4.5)',
    'data: mssim-prefixed command with locality 5 is refused':
        'accepts locality 5 in the mssim prefix (4.5)',
    'ctrl: stalled partial message does not block the data channel':
        'the data channel waits for the control read timeout (500 ms)',
    'ctrl: stalled partial message does not block another ctrl client':
        'one control connection at a time; the next waits for the 500 ms read timeout',
}


class Failed(Exception):
    pass


class Daemon:
    def __init__(self, a):
        self.kind = a.kind
        self.pid = a.pid
        self.data = a.data
        self.ctrl = a.ctrl
        self.mssim = 'tcp:127.0.0.1:%d' % a.mssim if a.mssim else None
        self.platform = 'tcp:127.0.0.1:%d' % (a.mssim + 1) if a.mssim else None

# --- expectations --------------------------------------------------------------------------------

def first_outcome(s, framing, deadline):
    """Read the first answer unit in the given framing, or the close/timeout that came instead."""
    if framing == 'tpm':
        return w.read_tpm_response(s, deadline)
    if framing == 'mssim':
        return w.read_mssim_response(s, deadline)
    return w.read_exact(s, 4, deadline)  # ctrl and platform answers start with a u32 result


def judge(out, framing):
    """Return a description if the outcome is acceptable, raise Failed otherwise."""
    if out.kind in ('closed', 'reset'):
        return 'connection %s%s' % (out.kind, ' after %d bytes' % len(out.data) if out.data else '')
    if out.kind == 'timeout':
        raise Failed('no answer and no close within the deadline (%d bytes: %s)'
                     % (len(out.data), out.data.hex()))
    if framing in ('tpm', 'mssim'):
        if not w.is_error_response(out.data):
            raise Failed('answer is not a TPM error response: %s' % w.hexs(out.data))
        return 'TPM error rc 0x%x' % w.rc_of(out.data)
    res = struct.unpack('>I', out.data)[0]
    if res == 0:
        raise Failed('malformed message answered with success (u32 0)')
    return 'error result 0x%x' % res


def probe(ep, payload, framing, mode):
    """Send payload and apply the expectation of `mode`:
      close         close right after sending (nothing to judge; liveness is checked afterwards)
      abort         like close but with an RST
      halfclose     shut down our sending side, then expect an error answer or a close
      patient       wait PATIENCE for an answer; if none, half-close and expect one then
    """
    s = w.connect(ep)
    try:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return 'daemon closed while we were still sending'
        if mode == 'abort':
            w.abort_close(s)
            return 'client reset the connection'
        if mode == 'close':
            return 'client closed'
        if mode == 'halfclose':
            s.shutdown(socket.SHUT_WR)
        wait_for = PATIENCE if mode == 'patient' else ANSWER_WITHIN
        out = first_outcome(s, framing, time.monotonic() + wait_for)
        if out.kind == 'timeout' and mode == 'patient' and not out.data:
            s.shutdown(socket.SHUT_WR)
            out = first_outcome(s, framing, time.monotonic() + ANSWER_WITHIN)
            return judge(out, framing) + ' (after half-close)'
        return judge(out, framing)
    finally:
        s.close()

# --- liveness ------------------------------------------------------------------------------------

def alive(d):
    if d.pid and not w.pid_alive(d.pid):
        raise Failed('daemon pid %d is gone' % d.pid)
    try:
        resp = w.tpm_transact(d.data, w.get_random(16), timeout=5.0)
    except (OSError, IOError) as e:
        raise Failed('fresh data client got no GetRandom answer: %s' % e)
    if not w.check_get_random(resp, 16):
        raise Failed('fresh data client got a wrong GetRandom answer: %s' % w.hexs(resp))
    ans = w.ctrl_transact(d.ctrl, w.CTRL['GET_CAPABILITY'], timeout=5.0)
    if w.ctrl_res(ans) != 0 or len(ans) != 8:
        raise Failed('control channel GET_CAPABILITY answer %s' % ans.hex())
    if d.mssim:
        resp = w.mssim_transact(d.mssim, w.get_random(16), timeout=5.0)
        if not w.check_get_random(resp, 16):
            raise Failed('fresh mssim client got a wrong GetRandom answer: %s' % w.hexs(resp))

# --- data channel cases --------------------------------------------------------------------------

GET_RANDOM = w.get_random(16)


def header(tag, size, cc):
    return struct.pack('>HII', tag, size, cc)


def data_cases(d):
    ep = d.data
    c = []

    def add(name, fn):
        c.append(('data: ' + name, fn))

    add('truncated header (5 bytes) then close', lambda: probe(ep, GET_RANDOM[:5], 'tpm', 'close'))
    add('truncated header (5 bytes) then half-close', lambda: probe(ep, GET_RANDOM[:5], 'tpm', 'halfclose'))
    add('size field larger than bytes sent (100 vs 20)',
        lambda: probe(ep, header(0x8001, 100, 0x17B) + bytes(10), 'tpm', 'patient'))
    add('size field smaller than bytes sent (10 vs 12)',
        lambda: probe(ep, header(0x8001, 10, 0x17B) + b'\x00\x10', 'tpm', 'patient'))
    add('size field 0xFFFFFFFF', lambda: probe(ep, header(0x8001, 0xFFFFFFFF, 0x17B) + b'\0\x10', 'tpm', 'patient'))
    add('size field 6 (< 10)', lambda: probe(ep, header(0x8001, 6, 0x17B) + b'\0\x10', 'tpm', 'patient'))
    add('size field 0', lambda: probe(ep, header(0x8001, 0, 0x17B) + b'\0\x10', 'tpm', 'patient'))
    for tag in (0x1234, 0x0000, 0xFFFF, 0x00C1):
        add('unknown tag 0x%04x' % tag,
            lambda tag=tag: probe(ep, header(tag, 12, 0x17B) + b'\0\x10', 'tpm', 'patient'))
    add('oversized command (5000 bytes, all sent)',
        lambda: probe(ep, header(0x8001, 5000, 0x17B) + bytes(4990), 'tpm', 'patient'))
    add('oversized command (size 5000, 110 bytes sent)',
        lambda: probe(ep, header(0x8001, 5000, 0x17B) + bytes(100), 'tpm', 'patient'))
    extend = w.pcr_extend(16, bytes(32))
    add('disconnect mid-command (7 bytes, RST)', lambda: probe(ep, extend[:7], 'tpm', 'abort'))
    add('disconnect mid-command (20 of %d bytes, FIN)' % len(extend),
        lambda: probe(ep, extend[:20], 'tpm', 'close'))
    add('disconnect before reading the response (RST)',
        lambda: probe(ep, w.get_capability(6, 0x100, 128), 'tpm', 'abort'))
    add('20 pipelined commands then RST (daemon writes into a reset socket)',
        lambda: probe(ep, GET_RANDOM * 20, 'tpm', 'abort'))
    add('stalled partial header does not block another client',
        lambda: stalled(ep, GET_RANDOM[:5], data_random(ep)))
    add('two commands in one write are answered in order', lambda: pipelined(ep))
    add('command split inside the header is reassembled', lambda: split(ep, 6))
    add('command split inside the parameters is reassembled', lambda: split(ep, 11))
    add('mssim-prefixed command with locality 5 is refused', lambda: prefixed_locality5(ep))
    return c


def stalled(stall_ep, partial, serve):
    """A client that sends part of a message and then nothing must not delay another client;
    serve() runs the other client's exchange and says whether its answer was right."""
    s = w.connect(stall_ep)
    try:
        s.sendall(partial)
        start = time.monotonic()
        try:
            ok = serve()
        except (OSError, IOError) as e:
            raise Failed('other client not served while one stalls: %s' % e)
        took = time.monotonic() - start
        if not ok:
            raise Failed('other client got a wrong answer')
        if took > STALL_BUDGET:
            raise Failed('other client served only after %.2f s' % took)
        return 'other client served in %.3f s while one stalls' % took
    finally:
        w.abort_close(s)


def data_random(ep):
    return lambda: w.check_get_random(w.tpm_transact(ep, GET_RANDOM, timeout=ANSWER_WITHIN), 16)


def mssim_random(ep):
    return lambda: w.check_get_random(w.mssim_transact(ep, GET_RANDOM, timeout=ANSWER_WITHIN), 16)


def ctrl_caps(ep):
    return lambda: w.ctrl_res(w.ctrl_transact(ep, w.CTRL['GET_CAPABILITY'], timeout=ANSWER_WITHIN)) == 0


def pipelined(ep):
    s = w.connect(ep)
    try:
        s.sendall(w.get_random(8) + w.get_random(24))
        deadline = time.monotonic() + ANSWER_WITHIN
        first = w.read_tpm_response(s, deadline)
        second = w.read_tpm_response(s, deadline)
    finally:
        s.close()
    if first.kind != 'data' or not w.check_get_random(first.data, 8):
        raise Failed('first answer %r' % first)
    if second.kind != 'data' or not w.check_get_random(second.data, 24):
        raise Failed('second answer %r' % second)
    return 'GetRandom(8) then GetRandom(24) answered'


def split(ep, at):
    s = w.connect(ep)
    try:
        s.sendall(GET_RANDOM[:at])
        time.sleep(0.2)  # deliberate gap so the two parts arrive as separate reads
        s.sendall(GET_RANDOM[at:])
        out = w.read_tpm_response(s, time.monotonic() + ANSWER_WITHIN)
    finally:
        s.close()
    if out.kind != 'data' or not w.check_get_random(out.data, 16):
        raise Failed('answer %r' % out)
    return 'GetRandom(16) answered'


def prefixed_locality5(ep):
    """swtpm's data port accepts a 9-byte mssim prefix {u32 8, u8 locality, u32 len}; locality 5 does
    not exist (TPM 2.0 localities are 0-4 and 32-255)."""
    s = w.connect(ep)
    try:
        s.sendall(w.mssim_frame(GET_RANDOM, 5))
        deadline = time.monotonic() + ANSWER_WITHIN
        out = w.read_exact(s, 4, deadline)
        if out.kind != 'data':
            return judge(out, 'tpm')
        if out.data[:2] in (b'\x80\x01', b'\x80\x02', b'\x00\xc4'):
            resp = out.data + w.read_exact(s, 6, deadline).data  # raw TPM answer
        else:
            n = min(struct.unpack('>I', out.data)[0], 4096)  # mssim-framed: u32 length, response
            resp = w.read_exact(s, n, deadline).data
    finally:
        s.close()
    if w.is_error_response(resp):
        return 'TPM error rc 0x%x' % w.rc_of(resp)
    raise Failed('locality 5 command answered: %s' % w.hexs(resp))

# --- control channel cases -----------------------------------------------------------------------

def ctrl_msg(name, body=b''):
    return struct.pack('>I', w.CTRL[name]) + body


def ctrl_cases(d):
    ep = d.ctrl
    c = []

    def add(name, fn):
        c.append(('ctrl: ' + name, fn))

    add('truncated code (2 bytes) then close', lambda: probe(ep, b'\0\0', 'ctrl', 'close'))
    add('truncated code (2 bytes) then half-close', lambda: probe(ep, b'\0\0', 'ctrl', 'halfclose'))
    add('unknown code 0xDEAD', lambda: probe(ep, struct.pack('>I', 0xDEAD), 'ctrl', 'patient'))
    add('code 0', lambda: probe(ep, struct.pack('>I', 0), 'ctrl', 'patient'))
    add('SET_LOCALITY without its body', lambda: probe(ep, ctrl_msg('SET_LOCALITY'), 'ctrl', 'patient'))
    add('SET_LOCALITY(7)', lambda: probe(ep, ctrl_msg('SET_LOCALITY', b'\x07'), 'ctrl', 'patient'))
    add('SET_BUFFERSIZE with 2 of 4 body bytes',
        lambda: probe(ep, ctrl_msg('SET_BUFFERSIZE', b'\0\0'), 'ctrl', 'patient'))
    add('GET_STATEBLOB with 4 of 12 body bytes',
        lambda: probe(ep, ctrl_msg('GET_STATEBLOB', bytes(4)), 'ctrl', 'patient'))
    add('GET_STATEBLOB of unknown type 9',
        lambda: probe(ep, ctrl_msg('GET_STATEBLOB', struct.pack('>III', 0, 9, 0)), 'ctrl', 'patient'))
    add('INIT with 2 of 4 body bytes', lambda: probe(ep, ctrl_msg('INIT', b'\0\0'), 'ctrl', 'patient'))
    add('HASH_DATA of length 0xFFFFFFFF without HASH_START',
        lambda: probe(ep, ctrl_msg('HASH_DATA', struct.pack('>I', 0xFFFFFFFF) + bytes(8)), 'ctrl', 'patient'))
    add('HASH_DATA with 4 of 8 data bytes',
        lambda: probe(ep, ctrl_msg('HASH_DATA', struct.pack('>I', 8) + bytes(4)), 'ctrl', 'patient'))
    add('SET_STATEBLOB of length 0xFFFFFFFF while running',
        lambda: probe(ep, ctrl_msg('SET_STATEBLOB', struct.pack('>III', 0, 1, 0xFFFFFFFF)) + bytes(16),
                      'ctrl', 'patient'))
    add('5000 junk bytes after a complete SET_LOCALITY(0)', lambda: ctrl_junk_tail(ep))
    add('disconnect mid-message (RST)', lambda: probe(ep, ctrl_msg('GET_STATEBLOB', bytes(6)), 'ctrl', 'abort'))
    add('stalled partial message does not block the data channel',
        lambda: stalled(ep, b'\0\0', data_random(d.data)))
    add('stalled partial message does not block another ctrl client',
        lambda: stalled(ep, b'\0\0', ctrl_caps(ep)))
    for what, make_bad in (('garbage', blob_garbage), ('valid header, garbage payload', blob_framed_garbage),
                           ('first half of a good blob', blob_truncated),
                           ('half a good blob, header fixed up', blob_truncated_reframed)):
        add('corrupt permanent state blob (%s)' % what, lambda f=make_bad: corrupt_blob(d, f))
    return c


def ctrl_junk_tail(ep):
    """The leading message is valid (answer 0); whatever the daemon makes of the junk after it must be
    errors, a close, or silence - never another success."""
    s = w.connect(ep)
    try:
        s.sendall(ctrl_msg('SET_LOCALITY', b'\0') + bytes(5000))
        deadline = time.monotonic() + ANSWER_WITHIN
        out = w.read_exact(s, 4, deadline)
        if out.kind != 'data':
            return judge(out, 'ctrl')
        if out.data != bytes(4):
            raise Failed('SET_LOCALITY(0) answered 0x%s' % out.data.hex())
        errors = []
        while True:
            out = w.read_exact(s, 4, min(deadline, time.monotonic() + PATIENCE))
            if out.kind != 'data':
                break
            errors.append(judge(out, 'ctrl'))
    finally:
        s.close()
    return 'SET_LOCALITY(0) ok, then %d error answer(s), then %s' % (len(errors), out.kind)


MARKER_INDEX = 0x01500030
MARKER = b'marker!!'


def define_marker(d):
    if w.rc_of(w.tpm_transact(d.data, w.nv_read_public(MARKER_INDEX))) == 0:
        return
    for cmd in (w.nv_define(MARKER_INDEX, w.NV_AUTH_RW, len(MARKER)), w.nv_write(MARKER_INDEX, MARKER)):
        resp = w.tpm_transact(d.data, cmd)
        if w.rc_of(resp) != 0:
            raise Failed('setting up the NV marker: rc 0x%x' % w.rc_of(resp))


def ctrl_ok(d, name, body=b''):
    res = w.ctrl_res(w.ctrl_transact(d.ctrl, w.CTRL[name], body))
    if res != 0:
        raise Failed('%s -> 0x%x' % (name, res))


def blob_garbage(good):
    return bytes((i * 37 + 11) & 0xFF for i in range(512))


def blob_header(body):
    """swtpm blob header (peers-and-protocols.md 4.2): version 2, min 1, hdrsize 10, flags 0, totlen."""
    return struct.pack('>BBHHI', 2, 1, 10, 0, 10 + len(body)) + body


def blob_framed_garbage(good):
    payload = bytes((i * 53 + 7) & 0xFF for i in range(1024))
    return blob_header(struct.pack('>HI', 1, len(payload)) + payload)  # TLV tag 1 = plain data


def blob_truncated(good):
    return good[:len(good) // 2]


def blob_truncated_reframed(good):
    if good[:1] != b'\x02' or len(good) < 16:
        return good[:len(good) // 2]  # not swtpm's format: plain truncation
    payload = good[16:16 + (len(good) - 16) // 2]
    return blob_header(struct.pack('>HI', 1, len(payload)) + payload)


def corrupt_blob(d, make_bad):
    """STOP, SET_STATEBLOB(permanent, bad), INIT: the daemon must report an error, stay up, and must
    not come up with a freshly manufactured TPM (the NV marker would be gone). Then the saved good
    blob restores the original state."""
    define_marker(d)
    good = w.get_stateblob(d.ctrl, 1)
    ctrl_ok(d, 'STOP')
    res_set = w.set_stateblob(d.ctrl, 1, make_bad(good))
    res_init = w.ctrl_res(w.ctrl_transact(d.ctrl, w.CTRL['INIT'], struct.pack('>I', 0)))
    notes = 'SET_STATEBLOB -> 0x%x, INIT -> 0x%x' % (res_set, res_init)
    if not w.pid_alive(d.pid):
        raise Failed('daemon died: ' + notes)
    if res_set == 0 and res_init == 0:
        raise Failed('corrupt permanent state accepted without an error: ' + notes)
    startup = w.tpm_transact(d.data, w.startup_clear())
    marker = w.tpm_transact(d.data, w.nv_read_public(MARKER_INDEX))
    notes += ', then Startup rc 0x%x, NV_ReadPublic(marker) rc 0x%x' % (w.rc_of(startup), w.rc_of(marker))
    if w.rc_of(startup) in (0, 0x100) and w.rc_of(marker) != 0:
        raise Failed('TPM serves without the NV marker: state re-manufactured (%s)' % notes)
    # Recovery with the saved blob proves the original permanent state is intact.
    ctrl_ok(d, 'STOP')
    res = w.set_stateblob(d.ctrl, 1, good)
    if res != 0:
        raise Failed('restoring the good blob: SET_STATEBLOB -> 0x%x (%s)' % (res, notes))
    ctrl_ok(d, 'INIT', struct.pack('>I', 0))
    rc = w.rc_of(w.tpm_transact(d.data, w.startup_clear()))
    if rc not in (0, 0x100):
        raise Failed('Startup after recovery rc 0x%x (%s)' % (rc, notes))
    back = w.tpm_transact(d.data, w.nv_read(MARKER_INDEX, len(MARKER)))
    if w.rc_of(back) != 0 or back[-len(MARKER) - 5:-5] != MARKER:
        raise Failed('NV marker after recovery: %s (%s)' % (w.hexs(back), notes))
    return notes + '; good blob restored, NV marker intact'

# --- mssim cases (xtpm-vtpmd --mssim only) ---------------------------------------------------------

def mssim_cases(d):
    ep, plat = d.mssim, d.platform
    c = []

    def add(name, fn):
        c.append(('mssim: ' + name, fn))

    send = struct.pack('>IB', w.MS_SEND_COMMAND, 0)
    add('truncated code (2 bytes) then close', lambda: probe(ep, b'\0\0', 'mssim', 'close'))
    add('truncated code (2 bytes) then half-close', lambda: probe(ep, b'\0\0', 'mssim', 'halfclose'))
    add('SEND_COMMAND without length then half-close', lambda: probe(ep, send, 'mssim', 'halfclose'))
    add('SEND_COMMAND length 0xFFFFFFFF',
        lambda: probe(ep, send + struct.pack('>I', 0xFFFFFFFF) + GET_RANDOM, 'mssim', 'patient'))
    add('SEND_COMMAND length 100, 12 bytes sent',
        lambda: probe(ep, send + struct.pack('>I', 100) + GET_RANDOM, 'mssim', 'patient'))
    add('SEND_COMMAND oversized (5000 bytes)',
        lambda: probe(ep, send + struct.pack('>I', 5000) + header(0x8001, 5000, 0x17B) + bytes(4990),
                      'mssim', 'patient'))
    add('SEND_COMMAND whose TPM size field disagrees (frame 12, header 100)',
        lambda: probe(ep, send + struct.pack('>I', 12) + header(0x8001, 100, 0x17B) + b'\0\x10',
                      'mssim', 'patient'))
    add('SEND_COMMAND of a 4-byte command',
        lambda: probe(ep, send + struct.pack('>I', 4) + GET_RANDOM[:4], 'mssim', 'patient'))
    add('SEND_COMMAND at locality 5',
        lambda: probe(ep, w.mssim_frame(GET_RANDOM, 5), 'mssim', 'patient'))
    add('unknown code 99', lambda: probe(ep, struct.pack('>I', 99), 'mssim', 'patient'))
    add('disconnect mid-command (RST)', lambda: probe(ep, w.mssim_frame(GET_RANDOM)[:14], 'mssim', 'abort'))
    add('platform: unknown code 99', lambda: probe(plat, struct.pack('>I', 99), 'platform', 'patient'))
    add('platform: truncated code then half-close', lambda: probe(plat, b'\0', 'platform', 'halfclose'))
    add('stalled partial frame does not block another mssim client',
        lambda: stalled(ep, w.mssim_frame(GET_RANDOM)[:7], mssim_random(ep)))
    add('stalled platform client does not block the command port',
        lambda: stalled(plat, b'\0', mssim_random(ep)))
    return c


def mssim_power_on(d):
    """What tpm2-tss's mssim TCTI does at every start: POWER_ON, NV_ON; then TPM2_Startup."""
    answers = w.mssim_platform(d.platform, [w.MS_POWER_ON, w.MS_NV_ON])
    if answers != [0, 0]:
        raise Failed('POWER_ON/NV_ON answered %s' % answers)
    rc = w.rc_of(w.mssim_transact(d.mssim, w.startup_clear()))
    if rc not in (0, 0x100):
        raise Failed('Startup over mssim rc 0x%x' % rc)

# --- driver --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--kind', choices=['xtpm', 'swtpm'], required=True)
    ap.add_argument('--pid', type=int, required=True)
    ap.add_argument('--data', required=True)
    ap.add_argument('--ctrl', required=True)
    ap.add_argument('--mssim', type=int, default=0)
    ap.add_argument('--run-known-failures', action='store_true')
    ap.add_argument('--only', default='', help='run only cases whose name contains this')
    a = ap.parse_args()
    d = Daemon(a)
    counts = {'passed': 0, 'failed': 0, 'skipped': 0}
    try:
        if d.mssim:
            mssim_power_on(d)
        alive(d)
    except (Failed, OSError, IOError) as e:
        print('FAIL  daemon not serving before the first case: %s' % e)
        sys.exit(1)
    cases = data_cases(d) + ctrl_cases(d) + (mssim_cases(d) if d.mssim else [])
    for name, fn in cases:
        if a.only and a.only not in name:
            continue
        known = SWTPM_KNOWN.get(name) if d.kind == 'swtpm' else None
        if known and not a.run_known_failures:
            counts['skipped'] += 1
            print('SKIP  %s: known swtpm 0.7.1 failure: %s' % (name, known))
            continue
        start = time.monotonic()
        try:
            detail = fn()
            alive(d)
        except (Failed, OSError, IOError) as e:
            counts['failed'] += 1
            print('FAIL  %s: %s%s' % (name, e, ' (known swtpm failure)' if known else ''))
            if not w.pid_alive(d.pid):
                print('FAIL  daemon pid %d died; stopping' % d.pid)
                break
            continue
        counts['passed'] += 1
        print('ok    %s: %s [%.2f s]' % (name, detail, time.monotonic() - start))
    print('bad input: %(passed)d passed, %(failed)d failed, %(skipped)d skipped' % counts)
    sys.exit(1 if counts['failed'] else 0)


if __name__ == '__main__':
    main()
