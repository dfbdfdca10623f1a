// Child processes for the bench: spawn with output to a log file, stop by pid
// (SIGTERM, bounded wait, then SIGKILL), wait for a TCP port with a bounded
// poll, free port pairs, temporary state directories, the swtpm command line,
// VmRSS/VmHWM from /proc/PID/status (proc(5)), and the stop-signal handlers.
#pragma once

#include <xtpm/io/socket.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace xtpm::bench {

// Set by the bench's SIGINT/SIGTERM handler; blocking calls see EINTR (the
// handler is installed without SA_RESTART) and give up.
inline volatile std::sig_atomic_t stop_requested = 0;

inline void request_stop(int) { stop_requested = 1; }

// SIGINT and SIGTERM set stop_requested, without SA_RESTART: a blocked recv
// returns EINTR and the run winds down, stopping every child by pid. SIGPIPE is
// ignored, so a server that goes away is an error, not the bench's death.
inline void install_stop_handlers() {
    struct sigaction sa{};
    sa.sa_handler = request_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
}

class child_process {
public:
    child_process() = default;
    child_process(child_process&& o) noexcept
        : pid_{std::exchange(o.pid_, -1)}, status_{o.status_} {}
    auto operator=(child_process&& o) noexcept -> child_process& {
        if (this != &o) {
            stop();
            pid_ = std::exchange(o.pid_, -1);
            status_ = o.status_;
        }
        return *this;
    }
    child_process(child_process const&) = delete;
    auto operator=(child_process const&) -> child_process& = delete;
    ~child_process() { stop(); }

    // Start argv[0] (searched in PATH) with stdin from /dev/null and stdout and
    // stderr appended to log_path. The child gets its own process group, so a
    // terminal's ^C reaches only the bench, which then stops it by pid, and
    // PR_SET_PDEATHSIG, so it cannot outlive a bench that was killed. With
    // `cpu`, the child is pinned to it; otherwise it inherits the bench's affinity.
    static auto spawn(std::vector<std::string> const& argv, std::string const& log_path,
                      std::optional<unsigned> cpu = std::nullopt) -> result<child_process> {
        if (argv.empty()) return fail(errc::bad_value);
        std::vector<char*> args;
        for (auto const& a : argv) args.push_back(const_cast<char*>(a.c_str()));  // execvp's C signature
        args.push_back(nullptr);
        io::unique_fd log{::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)};
        io::unique_fd null{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
        if (!log || !null) return io::sys_error();
        cpu_set_t set;
        CPU_ZERO(&set);
        if (cpu) CPU_SET(*cpu, &set);
        int report[2];  // exec failure reporting: the CLOEXEC write end closes on success
        if (::pipe2(report, O_CLOEXEC) < 0) return io::sys_error();
        io::unique_fd rd{report[0]}, wr{report[1]};
        pid_t const parent = ::getpid();
        pid_t const pid = ::fork();
        if (pid < 0) return io::sys_error();
        if (pid == 0) {
            // Only async-signal-safe calls from here to exec.
            ::setpgid(0, 0);
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (::getppid() != parent) ::_exit(126);
            if (cpu && ::sched_setaffinity(0, sizeof set, &set) < 0) ::_exit(125);
            ::signal(SIGPIPE, SIG_DFL);  // the bench ignores SIGPIPE; exec would inherit that
            ::dup2(null.get(), 0);
            ::dup2(log.get(), 1);
            ::dup2(log.get(), 2);
            ::execvp(args[0], args.data());
            int const e = errno;
            [[maybe_unused]] auto n = ::write(wr.get(), &e, sizeof e);
            ::_exit(127);
        }
        wr.reset();
        child_process c;
        c.pid_ = pid;
        int e = 0;
        ssize_t n;
        do n = ::read(rd.get(), &e, sizeof e);
        while (n < 0 && errno == EINTR);
        if (n == static_cast<ssize_t>(sizeof e)) {
            c.stop();
            return std::unexpected{std::error_code{e, std::system_category()}};
        }
        return c;
    }

    [[nodiscard]] auto pid() const noexcept -> pid_t { return pid_; }

    // True until the process has exited; reaps it when it has.
    auto alive() noexcept -> bool {
        if (pid_ <= 0) return false;
        if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
            pid_ = -1;
            return false;
        }
        return true;
    }
    // The wait status once alive() returned false.
    [[nodiscard]] auto wait_status() const noexcept -> int { return status_; }

    // SIGTERM, up to `grace` for it to exit, then SIGKILL. Idempotent.
    void stop(std::chrono::milliseconds grace = std::chrono::seconds{3}) noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        auto const deadline = std::chrono::steady_clock::now() + grace;
        while (std::chrono::steady_clock::now() < deadline) {
            if (!alive()) return;
            std::this_thread::sleep_for(std::chrono::milliseconds{2});
        }
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {}
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
    int status_ = 0;
};

// The CPUs this process may run on, ascending.
inline auto allowed_cpus() -> std::vector<unsigned> {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<unsigned> out;
    if (::sched_getaffinity(0, sizeof set, &set) < 0) return out;
    for (unsigned i = 0; i < CPU_SETSIZE; ++i)
        if (CPU_ISSET(i, &set)) out.push_back(i);
    return out;
}

// Pin the calling process (and so every child it starts later) to one CPU.
inline auto pin_self(unsigned cpu) -> result<void> {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) < 0) return io::sys_error();
    return {};
}

inline auto describe_status(int st) -> std::string {
    if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
    if (WIFSIGNALED(st)) return "killed by signal " + std::to_string(WTERMSIG(st));
    return "stopped";
}

// Connect to 127.0.0.1:port once the child listens: a bounded poll that gives
// up early if the child exits (errc::not_running) and after `limit`
// (std::errc::timed_out), or on a stop request (errc::canceled). The
// connection that succeeds is the one returned.
inline auto connect_when_ready(child_process& c, std::uint16_t port, std::chrono::milliseconds limit)
    -> result<io::unique_fd> {
    auto const deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (stop_requested) return fail(errc::canceled);
        if (!c.alive()) return fail(errc::not_running);
        if (auto fd = io::connect_to(io::tcp_endpoint{"127.0.0.1", port})) return fd;
        if (std::chrono::steady_clock::now() >= deadline)
            return std::unexpected{std::make_error_code(std::errc::timed_out)};
        std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
}

// A port P with P and P+1 both free on 127.0.0.1 (data and control channel).
// Drawn from 20000-31999, below Linux's ephemeral range, so a probing connect
// can never be its own peer. Another process may still take it before the
// daemon binds: callers retry start-up with a fresh pair.
inline auto pick_port_pair() -> result<std::uint16_t> {
    static std::mt19937 rng{std::random_device{}()};  // one seed per process is plenty for ports
    std::uniform_int_distribution<unsigned> dist{20000, 31998};
    for (int attempt = 0; attempt < 64; ++attempt) {
        auto const p = static_cast<std::uint16_t>(dist(rng));
        auto a = io::listen_on(io::tcp_endpoint{"127.0.0.1", p});
        if (!a) continue;
        auto b = io::listen_on(io::tcp_endpoint{"127.0.0.1", static_cast<std::uint16_t>(p + 1)});
        if (b) return p;
    }
    return std::unexpected{std::make_error_code(std::errc::address_in_use)};
}

// `swtpm socket` on 127.0.0.1:port (data) and port + 1 (control) with its state in
// `state`, powered on and started by itself; xtpm-vtpmd takes the same line.
inline auto swtpm_argv(std::string const& program, std::uint16_t port, std::string const& state)
    -> std::vector<std::string> {
    auto const tcp = [](unsigned p) { return "type=tcp,port=" + std::to_string(p) + ",bindaddr=127.0.0.1"; };
    return {program, "socket", "--tpm2", "--server", tcp(port), "--ctrl", tcp(port + 1u), "--tpmstate", "dir=" + state,
            "--flags", "not-need-init,startup-clear"};
}

// A private directory under $TMPDIR (or /tmp), removed with its contents.
class temp_dir {
public:
    static auto create(std::string_view prefix) -> result<temp_dir> {
        char const* base = std::getenv("TMPDIR");
        std::string tmpl = std::string{base && *base ? base : "/tmp"} + "/" + std::string{prefix} + ".XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) return io::sys_error();
        temp_dir d;
        d.path_ = std::move(tmpl);
        return d;
    }
    temp_dir() = default;
    temp_dir(temp_dir&& o) noexcept : path_{std::exchange(o.path_, {})} {}
    auto operator=(temp_dir&& o) noexcept -> temp_dir& {
        if (this != &o) {
            remove();
            path_ = std::exchange(o.path_, {});
        }
        return *this;
    }
    temp_dir(temp_dir const&) = delete;
    auto operator=(temp_dir const&) -> temp_dir& = delete;
    ~temp_dir() { remove(); }

    [[nodiscard]] auto path() const -> std::string const& { return path_; }

private:
    void remove() noexcept {
        if (path_.empty()) return;
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
        path_.clear();
    }
    std::string path_;
};

struct memory_kib {
    long rss = -1;  // VmRSS
    long hwm = -1;  // VmHWM, the peak RSS
};

inline auto read_memory(pid_t pid) -> result<memory_kib> {
    std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
    if (!in) return fail(errc::not_running);
    memory_kib m;
    std::string line;
    while (std::getline(in, line)) {
        auto value = [&](std::string_view key) -> long {
            return std::strtol(line.c_str() + key.size(), nullptr, 10);  // "VmRSS:\t  6600 kB"
        };
        if (line.starts_with("VmRSS:")) m.rss = value("VmRSS:");
        else if (line.starts_with("VmHWM:")) m.hwm = value("VmHWM:");
    }
    if (m.rss < 0 || m.hwm < 0) return fail(errc::bad_value);
    return m;
}

// The last `max` bytes of a log file, for error messages.
inline auto log_tail(std::string const& path, std::size_t max = 2000) -> std::string {
    std::ifstream in{path, std::ios::binary};
    std::string s{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
    return s.size() > max ? s.substr(s.size() - max) : s;
}

}  // namespace xtpm::bench
