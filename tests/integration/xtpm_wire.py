"""Raw-byte clients for the integration suites: TPM data channel, swtpm control channel, mssim.

Framing follows docs peers-and-protocols.md 4.1-4.3 (swtpm tpm_ioctl.h control messages, TCG TPM 2.0
Part 1 section 18 command/response headers, the Microsoft simulator's TpmTcpProtocol.h). Every read is
bounded by a deadline; nothing here blocks forever. Only the Python standard library is used.
"""

import hashlib
import socket
import struct
import time

# --- endpoints -----------------------------------------------------------------------------------

def endpoint(spec):
    """'tcp:HOST:PORT' or 'unix:/path' -> (family, address)."""
    kind, _, rest = spec.partition(':')
    if kind == 'tcp':
        host, _, port = rest.rpartition(':')
        return socket.AF_INET, (host, int(port))
    if kind == 'unix':
        return socket.AF_UNIX, rest
    raise ValueError('bad endpoint ' + spec)


def connect(spec, timeout=5.0):
    family, addr = endpoint(spec)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(addr)
    if family == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def abort_close(s):
    """Close with SO_LINGER 0: the peer sees a reset, as when a client crashes."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    s.close()

# --- bounded reads -------------------------------------------------------------------------------

class Outcome:
    """What came back: kind is 'data' (all n bytes), 'closed' (FIN), 'reset' (RST) or 'timeout'."""

    def __init__(self, kind, data):
        self.kind = kind
        self.data = data

    def __repr__(self):
        return '%s(%s)' % (self.kind, self.data.hex())


def read_exact(s, n, deadline):
    buf = b''
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return Outcome('timeout', buf)
        s.settimeout(left)
        try:
            chunk = s.recv(n - len(buf))
        except socket.timeout:
            return Outcome('timeout', buf)
        except (ConnectionResetError, BrokenPipeError):
            return Outcome('reset', buf)
        if not chunk:
            return Outcome('closed', buf)
        buf += chunk
    return Outcome('data', buf)


def read_tpm_response(s, deadline):
    """One TPM response framed by its header's size field (TPM 1.2 and 2.0 share the layout)."""
    head = read_exact(s, 10, deadline)
    if head.kind != 'data':
        return head
    size = struct.unpack('>I', head.data[2:6])[0]
    if size < 10 or size > 1 << 20:
        return Outcome('data', head.data)  # malformed; the caller's checks reject it
    rest = read_exact(s, size - 10, deadline)
    return Outcome(rest.kind, head.data + rest.data)


def tpm_transact(spec, cmd, timeout=5.0):
    """Send one command on a fresh connection and return the whole response (raises on failure)."""
    s = connect(spec, timeout)
    try:
        s.sendall(cmd)
        out = read_tpm_response(s, time.monotonic() + timeout)
    finally:
        s.close()
    if out.kind != 'data':
        raise IOError('no TPM response: %r' % out)
    return out.data


def rc_of(resp):
    return struct.unpack('>I', resp[6:10])[0]


def is_error_response(resp):
    """A well-formed TPM error answer: 1.2 or 2.0 response tag, size 10, non-zero rc."""
    if len(resp) != 10:
        return False
    tag, size, rc = struct.unpack('>HII', resp)
    return tag in (0x8001, 0x00C4) and size == 10 and rc != 0

# --- TPM 2.0 commands (TCG TPM 2.0 Part 3) --------------------------------------------------------

ST_NO_SESSIONS = 0x8001
ST_SESSIONS = 0x8002
RS_PW = 0x40000009
RH_OWNER = 0x40000001
RH_NULL = 0x40000007

CC = {
    'Startup': 0x144, 'Shutdown': 0x145, 'SelfTest': 0x143, 'GetTestResult': 0x17C,
    'GetCapability': 0x17A, 'GetRandom': 0x17B, 'PCR_Read': 0x17E, 'PCR_Extend': 0x182,
    'PCR_Reset': 0x13D, 'ReadClock': 0x181, 'NV_DefineSpace': 0x12A, 'NV_Write': 0x137,
    'NV_Read': 0x14E, 'NV_ReadPublic': 0x169, 'NV_UndefineSpace': 0x122,
}


def tpm2_cmd(cc, body=b'', tag=ST_NO_SESSIONS):
    return struct.pack('>HII', tag, 10 + len(body), cc) + body


def pw_auth():
    """Authorization area with one empty-password session (Part 1 section 19.8.4)."""
    session = struct.pack('>IHBH', RS_PW, 0, 0, 0)
    return struct.pack('>I', len(session)) + session


def startup_clear():
    return tpm2_cmd(CC['Startup'], struct.pack('>H', 0))


def shutdown_clear():
    return tpm2_cmd(CC['Shutdown'], struct.pack('>H', 0))


def get_random(n):
    return tpm2_cmd(CC['GetRandom'], struct.pack('>H', n))


def get_capability(cap, prop, count):
    return tpm2_cmd(CC['GetCapability'], struct.pack('>III', cap, prop, count))


def pcr_select(pcrs, hash_alg=0x000B):
    bitmap = bytearray(3)
    for p in pcrs:
        bitmap[p // 8] |= 1 << (p % 8)
    return struct.pack('>IHB', 1, hash_alg, 3) + bytes(bitmap)


def pcr_read(pcrs, hash_alg=0x000B):
    return tpm2_cmd(CC['PCR_Read'], pcr_select(pcrs, hash_alg))


def pcr_extend(pcr, digest, hash_alg=0x000B):
    body = struct.pack('>I', pcr) + pw_auth() + struct.pack('>IH', 1, hash_alg) + digest
    return tpm2_cmd(CC['PCR_Extend'], body, ST_SESSIONS)


def self_test(full):
    return tpm2_cmd(CC['SelfTest'], bytes([1 if full else 0]))


def nv_public(index, attrs, size, name_alg=0x000B):
    inner = struct.pack('>IHIHH', index, name_alg, attrs, 0, size)
    return struct.pack('>H', len(inner)) + inner


def nv_define(index, attrs, size):
    body = struct.pack('>I', RH_OWNER) + pw_auth() + struct.pack('>H', 0)
    body += nv_public(index, attrs, size)
    return tpm2_cmd(CC['NV_DefineSpace'], body, ST_SESSIONS)


def nv_write(index, data, offset=0):
    body = struct.pack('>II', index, index) + pw_auth()
    body += struct.pack('>H', len(data)) + data + struct.pack('>H', offset)
    return tpm2_cmd(CC['NV_Write'], body, ST_SESSIONS)


def nv_read(index, size, offset=0):
    body = struct.pack('>II', index, index) + pw_auth() + struct.pack('>HH', size, offset)
    return tpm2_cmd(CC['NV_Read'], body, ST_SESSIONS)


def nv_read_public(index):
    return tpm2_cmd(CC['NV_ReadPublic'], struct.pack('>I', index))


# TPMA_NV: AUTHWRITE (bit 2) | AUTHREAD (bit 18) | NO_DA (bit 25) | ORDINARY type (0)
NV_AUTH_RW = (1 << 2) | (1 << 18) | (1 << 25)

# --- TPM 1.2 commands (TPM Main Part 3) -----------------------------------------------------------

TAG_RQU_COMMAND = 0x00C1


def tpm12_cmd(ordinal, body=b''):
    return struct.pack('>HII', TAG_RQU_COMMAND, 10 + len(body), ordinal) + body


def tpm12_startup_clear():
    return tpm12_cmd(0x99, struct.pack('>H', 1))


def tpm12_get_random(n):
    return tpm12_cmd(0x46, struct.pack('>I', n))


def tpm12_extend(pcr, digest20):
    return tpm12_cmd(0x14, struct.pack('>I', pcr) + digest20)


def tpm12_pcr_read(pcr):
    return tpm12_cmd(0x15, struct.pack('>I', pcr))


def tpm12_read_pubek(nonce20):
    return tpm12_cmd(0x7C, nonce20)


def tpm12_create_ek(nonce20):
    # TPM_KEY_PARMS: RSA, OAEP-SHA1, no signing, 2048-bit, 2 primes, default exponent
    parms = struct.pack('>IHHIIII', 1, 3, 1, 12, 2048, 2, 0)
    return tpm12_cmd(0x78, nonce20 + parms)

# --- swtpm control channel (tpm_ioctl.h) -----------------------------------------------------------

CTRL = {
    'GET_CAPABILITY': 0x01, 'INIT': 0x02, 'SHUTDOWN': 0x03, 'GET_TPMESTABLISHED': 0x04,
    'SET_LOCALITY': 0x05, 'HASH_START': 0x06, 'HASH_DATA': 0x07, 'HASH_END': 0x08,
    'CANCEL_TPM_CMD': 0x09, 'STORE_VOLATILE': 0x0A, 'RESET_TPMESTABLISHED': 0x0B,
    'GET_STATEBLOB': 0x0C, 'SET_STATEBLOB': 0x0D, 'STOP': 0x0E, 'GET_CONFIG': 0x0F,
    'SET_DATAFD': 0x10, 'SET_BUFFERSIZE': 0x11, 'GET_INFO': 0x12,
}

# Bytes after the u32 result in a successful answer (fixed-size answers only).
CTRL_OK_TAIL = {0x01: 4, 0x04: 4, 0x0F: 4, 0x11: 12}


def ctrl_transact(spec, code, body=b'', timeout=5.0):
    """One control message on a fresh connection; returns the raw answer (u32 result first)."""
    s = connect(spec, timeout)
    try:
        s.sendall(struct.pack('>I', code) + body)
        deadline = time.monotonic() + timeout
        out = read_exact(s, 4, deadline)
        if out.kind != 'data':
            raise IOError('no control answer to 0x%x: %r' % (code, out))
        res = struct.unpack('>I', out.data)[0]
        data = out.data
        if res == 0 and code == CTRL['GET_STATEBLOB']:
            head = read_exact(s, 12, deadline)
            if head.kind != 'data':
                raise IOError('short GET_STATEBLOB answer: %r' % head)
            length = struct.unpack('>I', head.data[8:12])[0]
            blob = read_exact(s, length, deadline)
            if blob.kind != 'data':
                raise IOError('short state blob: %r' % blob)
            data += head.data + blob.data
        elif res == 0 and code == CTRL['GET_INFO']:  # totlength, length, then length bytes
            head = read_exact(s, 8, deadline)
            if head.kind != 'data':
                raise IOError('short GET_INFO answer: %r' % head)
            chunk = read_exact(s, struct.unpack('>I', head.data[4:8])[0], deadline)
            if chunk.kind != 'data':
                raise IOError('short GET_INFO chunk: %r' % chunk)
            data += head.data + chunk.data
        elif res == 0 and code in CTRL_OK_TAIL:
            tail = read_exact(s, CTRL_OK_TAIL[code], deadline)
            if tail.kind != 'data':
                raise IOError('short control answer to 0x%x: %r' % (code, tail))
            data += tail.data
    finally:
        s.close()
    return data


def ctrl_res(answer):
    return struct.unpack('>I', answer[:4])[0]


def get_stateblob(spec, blob_type):
    """Returns the decrypted blob of type 1 (permanent), 2 (volatile) or 3 (savestate)."""
    ans = ctrl_transact(spec, CTRL['GET_STATEBLOB'], struct.pack('>III', 1, blob_type, 0))
    if ctrl_res(ans) != 0:
        raise IOError('GET_STATEBLOB(%d) -> 0x%x' % (blob_type, ctrl_res(ans)))
    return ans[16:]


def set_stateblob(spec, blob_type, blob):
    body = struct.pack('>III', 0, blob_type, len(blob)) + blob
    return ctrl_res(ctrl_transact(spec, CTRL['SET_STATEBLOB'], body))

# --- Microsoft simulator protocol (TpmTcpProtocol.h) ----------------------------------------------

MS_SEND_COMMAND = 8
MS_REMOTE_HANDSHAKE = 15
MS_SESSION_END = 20
MS_POWER_ON = 1
MS_NV_ON = 11


def mssim_frame(cmd, locality=0):
    return struct.pack('>IBI', MS_SEND_COMMAND, locality, len(cmd)) + cmd


def read_mssim_response(s, deadline):
    """u32 length, response bytes, u32 0 trailer; returns the inner TPM response or an Outcome."""
    head = read_exact(s, 4, deadline)
    if head.kind != 'data':
        return head
    length = struct.unpack('>I', head.data)[0]
    if length > 1 << 20:
        return Outcome('data', b'')
    body = read_exact(s, length + 4, deadline)
    if body.kind != 'data':
        return Outcome(body.kind, body.data)
    if body.data[-4:] != b'\0\0\0\0':
        return Outcome('data', b'')  # bad trailer; callers see an empty (invalid) response
    return Outcome('data', body.data[:-4])


def mssim_transact(spec, cmd, locality=0, timeout=5.0):
    s = connect(spec, timeout)
    try:
        s.sendall(mssim_frame(cmd, locality))
        out = read_mssim_response(s, time.monotonic() + timeout)
        try:
            s.sendall(struct.pack('>I', MS_SESSION_END))
        except OSError:
            pass
    finally:
        s.close()
    if out.kind != 'data':
        raise IOError('no mssim response: %r' % out)
    return out.data


def mssim_platform(spec, codes, timeout=5.0):
    """Send platform signals on one connection; returns their u32 answers."""
    s = connect(spec, timeout)
    answers = []
    try:
        for code in codes:
            s.sendall(struct.pack('>I', code))
            out = read_exact(s, 4, time.monotonic() + timeout)
            if out.kind != 'data':
                raise IOError('no platform answer to %d: %r' % (code, out))
            answers.append(struct.unpack('>I', out.data)[0])
        s.sendall(struct.pack('>I', MS_SESSION_END))
    finally:
        s.close()
    return answers

# --- small helpers ---------------------------------------------------------------------------------

def sha256(data):
    return hashlib.sha256(data).digest()


def sha1(data):
    return hashlib.sha1(data).digest()


def pid_alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ('Z', 'X')


def hexs(b, limit=48):
    h = b.hex()
    return h if len(h) <= 2 * limit else h[:2 * limit] + '...(%d bytes)' % len(b)


def check_get_random(resp, n):
    """A correct GetRandom answer: success, TPM2B of exactly n bytes, size field consistent."""
    if len(resp) != 12 + n:
        return False
    tag, size, rc, count = struct.unpack('>HIIH', resp[:12])
    return tag == ST_NO_SESSIONS and size == len(resp) and rc == 0 and count == n
