#!/usr/bin/env python3
# Cross-checks the golden vectors of tests/wire/codec_test.cpp against a real
# swtpm/libtpms: starts swtpm (TPM 2.0, then TPM 1.2) on free 127.0.0.1 ports,
# sends each command, compares the response with the expected hex ("xx" matches
# any byte: random output) and stops swtpm by its pid. Exit 0 = all match,
# 77 = swtpm not installed (ctest SKIP_RETURN_CODE). Usage: swtpm_vectors.py [-v]
import os, shutil, socket, subprocess, sys, tempfile, time

TPM2 = [  # name, command, expected response
    ("TPM2_Startup(SU_CLEAR), already started", "8001 0000000c 00000144 0000", "8001 0000000a 00000100"),
    ("TPM2_GetRandom(16)", "8001 0000000c 0000017b 0010", "8001 0000001c 00000000 0010" + " xx" * 16),
    ("TPM2_PCR_Read(sha256, PCR 16)", "8001 00000014 0000017e 00000001 000b 03 000001",
     "8001 0000003e 00000000 00000014 00000001 000b 03 000001 00000001 0020" + " 00" * 32),
]
TPM12 = [
    ("TPM_GetRandom(16)", "00c1 0000000e 00000046 00000010", "00c4 0000001e 00000000 00000010" + " xx" * 16),
    ("TPM_PCRRead(16)", "00c1 0000000e 00000015 00000010", "00c4 0000001e 00000000" + " 00" * 20),
]
DEADLINE_S = 20  # per swtpm instance: start, connect, all commands


def matches(pattern, got):
    want = pattern.replace(" ", "")
    return len(want) == 2 * len(got) and all(
        w == "xx" or int(w, 16) == g for w, g in zip((want[i:i + 2] for i in range(0, len(want), 2)), got))


def free_port_pair():
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        b.bind(("127.0.0.1", port + 1))  # OSError if taken: the caller retries
        return port


def recv_response(s, deadline):
    buf = b""
    while time.monotonic() < deadline:
        if len(buf) >= 10 and len(buf) >= int.from_bytes(buf[2:6], "big"):
            break
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def start_swtpm(tpm2, state):
    for _ in range(5):  # another process may grab the ports between probe and bind
        try:
            port = free_port_pair()
        except OSError:
            continue
        args = ["swtpm", "socket", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--flags", "not-need-init,startup-clear", "--tpmstate", f"dir={state}"]
        if tpm2:
            args.insert(2, "--tpm2")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE_S
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                return proc, socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                time.sleep(0.02)  # poll for the listener, bounded by the deadline
        stop(proc)
    sys.exit("could not start swtpm")


def stop(proc):
    proc.terminate()  # by pid
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(tpm2, vectors, verbose):
    failures = 0
    with tempfile.TemporaryDirectory() as state:
        proc, s = start_swtpm(tpm2, state)
        try:
            deadline = time.monotonic() + DEADLINE_S
            with s:
                for name, cmd, want in vectors:
                    s.sendall(bytes.fromhex(cmd))
                    got = recv_response(s, deadline)
                    ok = matches(want, got)
                    failures += not ok
                    if verbose or not ok:
                        print(f"{'ok  ' if ok else 'FAIL'} {name}\n  cmd {cmd}\n  rsp {got.hex()}\n  want {want}")
        finally:
            stop(proc)
    return failures


if __name__ == "__main__":
    if shutil.which("swtpm") is None:
        print("swtpm not found")
        sys.exit(77)
    verbose = "-v" in sys.argv
    failures = run(True, TPM2, verbose) + run(False, TPM12, verbose)
    print(f"{failures} mismatches")
    sys.exit(1 if failures else 0)
