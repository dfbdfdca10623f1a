# lib.sh - shared helpers for the integration suites (sourced by each *.sh test, never run).
# Starts a daemon that speaks `swtpm socket` options (xtpm-vtpmd or Debian's swtpm 0.7.1), waits for
# it with a bounded poll, stops it by pid, picks free ports, and cleans up one temp dir per test.
# Environment: XTPM_VTPMD (daemon binary, required), XTPM_DAEMON_KIND (xtpm|swtpm; default: guessed
# from the binary name), SWTPM (reference swtpm for the differential suite), PYTHON3, XTPM_KEEP_TMP=1.

set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

XI_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
XI_PY=${PYTHON3:-python3}
# shellcheck disable=SC2034  # used by differential.sh
XI_SWTPM=${SWTPM:-/usr/bin/swtpm}
declare -A XI_PID=() XI_PORT=() XI_SOCK=() XI_KINDOF=()
XI_DIR=
XI_NAME=

xi_log() { printf '[%s] %s\n' "$XI_NAME" "$*"; }
xi_ok() { printf '[%s] ok: %s\n' "$XI_NAME" "$*"; }
xi_fail() { printf '[%s] FAIL: %s\n' "$XI_NAME" "$*" >&2; exit 1; }
xi_skip() { printf '[%s] SKIP: %s\n' "$XI_NAME" "$*"; exit 77; }

# xi_init NAME: strict mode, unique temp dir, cleanup trap, daemon selection.
xi_init() {
    XI_NAME=$1
    XI_DIR=$(mktemp -d "${TMPDIR:-/tmp}/xtpm-integ-$XI_NAME.XXXXXX")
    trap xi_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    XI_DAEMON=${XTPM_VTPMD:-}
    [[ -n $XI_DAEMON ]] || xi_fail "set XTPM_VTPMD to the daemon binary (xtpm-vtpmd or swtpm)"
    [[ -x $XI_DAEMON ]] || xi_fail "XTPM_VTPMD=$XI_DAEMON is not executable"
    XI_KIND=${XTPM_DAEMON_KIND:-$(xi_guess_kind "$XI_DAEMON")}
    xi_log "daemon under test: $XI_DAEMON (kind $XI_KIND), temp dir $XI_DIR"
}

xi_guess_kind() { case $(basename "$1") in *swtpm*) echo swtpm ;; *) echo xtpm ;; esac; }

xi_need() {
    local t
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || xi_skip "$t not installed"; done
}

xi_cleanup() {
    local rc=$? name
    for name in "${!XI_PID[@]}"; do
        xi_kill "${XI_PID[$name]}"
    done
    if [[ $rc -ne 0 && $rc -ne 77 && -n $XI_DIR ]]; then
        for f in "$XI_DIR"/*.log "$XI_DIR"/*.err; do
            [[ -s $f ]] || continue
            printf '[%s] --- last lines of %s ---\n' "$XI_NAME" "$(basename "$f")" >&2
            tail -n 25 "$f" >&2 || true
        done
    fi
    if [[ -n $XI_DIR && -z ${XTPM_KEEP_TMP:-} ]]; then
        rm -rf "$XI_DIR"
    elif [[ -n $XI_DIR ]]; then
        xi_log "kept $XI_DIR"
    fi
    exit "$rc"
}

# xi_alive PID: the process exists and is not a zombie.
xi_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}

# xi_wait_gone PID SECONDS: bounded poll until PID has exited (0) or the deadline passed (1).
xi_wait_gone() {
    local pid=$1 end=$((SECONDS + $2))
    while xi_alive "$pid"; do
        ((SECONDS < end)) || return 1
        sleep 0.02
    done
}

# xi_kill PID: SIGTERM, bounded wait, then SIGKILL. Used only by cleanup.
xi_kill() {
    xi_alive "$1" || { wait "$1" 2>/dev/null || true; return 0; }
    kill -TERM "$1" 2>/dev/null || true
    xi_wait_gone "$1" 5 || kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# xi_port_free PORT: nothing on this host uses the TCP port (listening, connected or TIME_WAIT).
xi_port_free() {
    if command -v ss >/dev/null 2>&1; then
        [[ -z $(ss -Htan "sport = :$1" 2>/dev/null) ]]
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
    fi
}

# xi_free_ports N: prints a random base port B such that B..B+N-1 are all free.
xi_free_ports() {
    local n=$1 try base i
    for ((try = 0; try < 64; try++)); do
        base=$((20000 + RANDOM % 20000 * 2))
        for ((i = 0; i < n; i++)); do
            xi_port_free $((base + i)) || continue 2
        done
        echo "$base"
        return 0
    done
    xi_fail "no $n consecutive free ports found"
}

# xi_connectable tcp:PORT | unix:PATH - one bounded connect attempt.
xi_connectable() {
    case $1 in
        tcp:*) timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/${1#tcp:}" 2>/dev/null ;;
        unix:*) [[ -S ${1#unix:} ]] ;;
    esac
}

# xi_start NAME [options] [-- extra daemon args]
#   --bin B --kind K   daemon binary and kind (default: the daemon under test)
#   --state DIR        state directory (default: $XI_DIR/NAME.state, created)
#   --tpm12            start a TPM 1.2 (no --tpm2)
#   --unix             data and ctrl channels on unix sockets instead of TCP
#   --flags F          --flags value (default not-need-init)
# Sets XI_PID[NAME], XI_PORT[NAME] (data port; ctrl +1; mssim +2, platform +3) or XI_SOCK[NAME]
# (data socket; ctrl socket is ${XI_SOCK}.ctrl), XI_KINDOF[NAME]. Retries with new ports if the
# daemon exits before it is ready (a port taken between the check and the bind).
xi_start() {
    local name=$1 bin=$XI_DAEMON kind=$XI_KIND state='' tpm=--tpm2 unix='' flags=not-need-init
    shift
    while (($#)); do
        case $1 in
            --bin) bin=$2; shift 2 ;;
            --kind) kind=$2; shift 2 ;;
            --state) state=$2; shift 2 ;;
            --tpm12) tpm=; shift ;;
            --unix) unix=1; shift ;;
            --flags) flags=$2; shift 2 ;;
            --) shift; break ;;
            *) xi_fail "xi_start: unknown option $1" ;;
        esac
    done
    [[ -n $state ]] || state=$XI_DIR/$name.state
    mkdir -p "$state"
    local attempt base pid args probes p out=$XI_DIR/$name.out
    for ((attempt = 1; attempt <= 3; attempt++)); do
        args=(socket ${tpm:+"$tpm"} --tpmstate "dir=$state" --flags "$flags"
              --pid "file=$XI_DIR/$name.pid" --log "file=$XI_DIR/$name.log,level=${XTPM_LOG_LEVEL:-1}")
        probes=()
        if [[ -n $unix ]]; then
            local sock=$XI_DIR/$name.sock
            rm -f "$sock" "$sock.ctrl"
            args+=(--server "type=unixio,path=$sock" --ctrl "type=unixio,path=$sock.ctrl")
            probes+=("unix:$sock" "unix:$sock.ctrl")
            XI_SOCK[$name]=$sock
        fi
        base=$(xi_free_ports 4)
        if [[ -z $unix ]]; then
            args+=(--server "type=tcp,port=$base,bindaddr=127.0.0.1"
                   --ctrl "type=tcp,port=$((base + 1)),bindaddr=127.0.0.1")
            probes+=("tcp:$base" "tcp:$((base + 1))")
        fi
        if [[ $kind == xtpm ]]; then
            args+=(--mssim "port=$((base + 2)),bindaddr=127.0.0.1")
        fi
        XI_PORT[$name]=$base
        rm -f "$XI_DIR/$name.pid"
        "$bin" "${args[@]}" "$@" >"$out" 2>>"$XI_DIR/$name.err" </dev/null &
        pid=$!
        XI_PID[$name]=$pid
        XI_KINDOF[$name]=$kind
        if xi_wait_ready "$name" "$kind" "$pid" "$out" "${probes[@]}"; then
            xi_log "started $name: pid $pid, $(xi_describe "$name")"
            return 0
        fi
        xi_alive "$pid" && { xi_kill "$pid"; xi_fail "$name did not become ready within 20 s"; }
        wait "$pid" 2>/dev/null || true
        unset "XI_PID[$name]"
        xi_log "attempt $attempt: $name exited before ready: $(tail -n 3 "$XI_DIR/$name.err" | tr '\n' ' ')"
    done
    xi_fail "$name could not be started: $bin ${args[*]}"
}

xi_describe() {
    if [[ -n ${XI_SOCK[$1]:-} ]]; then
        echo "data ${XI_SOCK[$1]}, ctrl ${XI_SOCK[$1]}.ctrl"
    else
        local p=${XI_PORT[$1]}
        echo "data $p, ctrl $((p + 1))$([[ ${XI_KINDOF[$1]} == xtpm ]] && echo ", mssim $((p + 2))/$((p + 3))")"
    fi
}

# xtpm-vtpmd announces readiness with a "ready" line (and its pid file); swtpm has no such line, so
# for it every listening endpoint is probed. Both polls are bounded (20 s: TPM 1.2 start-up runs an
# RSA key generation) and stop early when the daemon dies.
xi_wait_ready() {
    local name=$1 kind=$2 pid=$3 out=$4 end=$((SECONDS + 20)) ep
    shift 4
    while ((SECONDS < end)); do
        xi_alive "$pid" || return 1
        if [[ $kind == xtpm ]]; then
            if grep -q ready "$out" 2>/dev/null; then
                # The pid file is part of the contract; allow it to land just after the line.
                local pend=$((SECONDS + 3))
                until [[ $(cat "$XI_DIR/$name.pid" 2>/dev/null) == "$pid" ]]; do
                    ((SECONDS < pend)) || xi_fail "$name printed ready but its pid file does not hold $pid"
                    sleep 0.02
                done
                return 0
            fi
        else
            local all=1
            for ep in "$@"; do xi_connectable "$ep" || { all=; break; }; done
            [[ -n $all ]] && return 0
        fi
        sleep 0.02
    done
    return 1
}

# xi_stop NAME: SIGTERM, wait for the pid to exit (bounded), require exit status 0.
xi_stop() {
    local name=$1 pid=${XI_PID[$1]} rc=0
    kill -TERM "$pid"
    xi_wait_gone "$pid" 15 || xi_fail "$name (pid $pid) still running 15 s after SIGTERM"
    wait "$pid" || rc=$?
    unset "XI_PID[$name]"
    ((rc == 0)) || xi_fail "$name (pid $pid) exited with status $rc after SIGTERM"
    xi_log "stopped $name (pid $pid) with SIGTERM, exit status 0"
}

# Endpoint specs for the python clients.
xi_data_ep() { [[ -n ${XI_SOCK[$1]:-} ]] && echo "unix:${XI_SOCK[$1]}" || echo "tcp:127.0.0.1:${XI_PORT[$1]}"; }
xi_ctrl_ep() { [[ -n ${XI_SOCK[$1]:-} ]] && echo "unix:${XI_SOCK[$1]}.ctrl" || echo "tcp:127.0.0.1:$((XI_PORT[$1] + 1))"; }
xi_mssim_port() { echo $((XI_PORT[$1] + 2)); }

# xi_py SCRIPT ARGS...: run a python client from this directory, bounded.
xi_py() {
    local script=$1
    shift
    timeout "${XI_PY_TIMEOUT:-60}" "$XI_PY" "$XI_HERE/$script" "$@"
}
