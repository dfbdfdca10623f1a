// xtpm-chain's supervisor (docs/guest-path.md): starts xtpm-simhv, attaches a vTPM as xl
// would (xtpm-simxl), starts xtpm-vtpmd --hv sim as the backend domain and xtpm-front in the
// guest domain, each by pid, waiting (bounded) for each ready line; then waits for SIGTERM,
// SIGINT or the death of any child and tears the rest down in reverse order, by pid.
#pragma once

#include <xtpm/io/fd.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <poll.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace xtpm::roles {

// A sibling role binary: $XTPM_CHAIN_<ROLE> (e.g. XTPM_CHAIN_VTPMD), else next to us in the
// build tree (<exe dir>/../<role>/<role>) or in the same directory (installed).
inline auto find_role(std::string const& role, char const* env) -> std::string {
    if (auto const* e = std::getenv(env)) return e;
    auto const self = std::filesystem::read_symlink("/proc/self/exe").parent_path();
    for (auto const& p : {self.parent_path() / role / role, self / role})
        if (::access(p.c_str(), X_OK) == 0) return p.string();
    throw std::runtime_error("cannot find " + role + " next to " + self.string() + " (set " + env + ")");
}

class supervisor {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::chrono::seconds ready_limit{30};  // TPM 1.2 start-up makes an RSA key
    static constexpr std::chrono::seconds stop_limit{10};

    struct child {
        std::string name;
        pid_t pid = -1;
        io::unique_fd out;  // its stdout
        std::string buffered;
    };

    // SIGTERM, SIGINT and SIGCHLD arrive through a signalfd; children get them back unblocked.
    supervisor() {
        sigemptyset(&set_);
        for (int s : {SIGTERM, SIGINT, SIGCHLD, SIGHUP}) sigaddset(&set_, s);
        if (::sigprocmask(SIG_BLOCK, &set_, &old_) < 0) throw std::runtime_error("sigprocmask");
        sfd_.reset(::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!sfd_) throw std::runtime_error("signalfd");
    }
    supervisor(supervisor const&) = delete;
    auto operator=(supervisor const&) -> supervisor& = delete;
    ~supervisor() { teardown(); }

    auto spawn(std::string name, std::vector<std::string> argv) -> child& {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0) throw std::runtime_error("pipe");
        io::unique_fd rd{p[0]}, wr{p[1]};
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, wr.get(), STDOUT_FILENO);
        posix_spawnattr_init(&at);
        sigset_t none, dfl;
        sigemptyset(&none);
        sigemptyset(&dfl);
        for (int s : {SIGTERM, SIGINT, SIGCHLD, SIGHUP, SIGPIPE}) sigaddset(&dfl, s);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &dfl);
        // Own process group: a terminal's Ctrl-C or a group kill reaches only us, and we stop
        // the parts in order (the frontend before the vTPM, the hypervisor last).
        posix_spawnattr_setpgroup(&at, 0);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        pid_t pid = -1;
        int const rc = ::posix_spawn(&pid, args[0], &fa, &at, args.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
        children_.push_back(child{std::move(name), pid, std::move(rd), {}});
        return children_.back();
    }

    // The first stdout line of `c` that starts with `prefix`; throws if it dies, a signal comes
    // or the deadline passes.
    auto await_line(std::size_t index, std::string const& prefix) -> std::string {
        auto const deadline = clock::now() + ready_limit;
        for (;;) {
            auto& c = children_[index];
            for (auto nl = c.buffered.find('\n'); nl != std::string::npos; nl = c.buffered.find('\n')) {
                auto line = c.buffered.substr(0, nl);
                c.buffered.erase(0, nl + 1);
                if (line.starts_with(prefix)) return line;
            }
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0) throw std::runtime_error(c.name + " was not ready within 30 s");
            pollfd fds[2] = {{c.out.get(), POLLIN, 0}, {sfd_.get(), POLLIN, 0}};
            if (::poll(fds, 2, static_cast<int>(left)) < 0 && errno != EINTR) throw std::runtime_error("poll");
            if (fds[1].revents && stop_requested()) throw std::runtime_error("stopped by a signal during start-up");
            if (fds[0].revents) {
                char buf[512];
                auto const n = ::read(c.out.get(), buf, sizeof buf);
                if (n <= 0) throw std::runtime_error(c.name + " exited during start-up" + status_of(c));
                c.buffered.append(buf, static_cast<std::size_t>(n));
            }
        }
    }

    // Wait for a child to exit (bounded); its exit code, or -1.
    auto await_exit(std::size_t index) -> int {
        auto& c = children_[index];
        auto st = wait_for(c.pid, stop_limit);
        c.pid = -1;
        if (!st) return -1;
        return WIFEXITED(*st) ? WEXITSTATUS(*st) : 128 + WTERMSIG(*st);
    }

    // Serve until a stop signal (0) or a child's death (1, with the reason on stderr).
    auto run() -> int {
        for (;;) {
            std::vector<pollfd> fds{{sfd_.get(), POLLIN, 0}};
            for (auto& c : children_) fds.push_back({c.pid > 0 && c.out ? c.out.get() : -1, POLLIN, 0});
            if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return 1;
            for (std::size_t i = 1; i < fds.size(); ++i) {
                if (!fds[i].revents) continue;
                char buf[512];
                auto const n = ::read(fds[i].fd, buf, sizeof buf);  // children's later stdout goes to our log
                if (n > 0) [[maybe_unused]] auto w = ::write(STDERR_FILENO, buf, static_cast<std::size_t>(n));
                else children_[i - 1].out.reset();
            }
            if (fds[0].revents && stop_requested()) return 0;
            for (auto& c : children_) {
                int st = 0;
                if (c.pid > 0 && ::waitpid(c.pid, &st, WNOHANG) == c.pid) {
                    c.pid = -1;
                    std::fprintf(stderr, "xtpm-chain: %s exited (%s %d); stopping the chain\n", c.name.c_str(),
                                 WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
                    return 1;
                }
            }
        }
    }

    // SIGTERM to every running child, last started first; false if one did not exit 0.
    auto teardown() -> bool {
        bool clean = true;
        for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
            if (it->pid <= 0) continue;
            ::kill(it->pid, SIGTERM);
            auto st = wait_for(it->pid, stop_limit);
            if (!st) {
                ::kill(it->pid, SIGKILL);
                st = wait_for(it->pid, stop_limit);
                std::fprintf(stderr, "xtpm-chain: %s did not stop within 10 s; killed\n", it->name.c_str());
            }
            clean = clean && st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
            it->pid = -1;
        }
        return clean;
    }

    auto children() -> std::vector<child>& { return children_; }

private:
    // A stop signal is pending (SIGCHLD alone is not one: run() checks the children).
    auto stop_requested() -> bool {
        signalfd_siginfo si{};
        bool stop = false;
        while (::read(sfd_.get(), &si, sizeof si) == sizeof si)
            if (si.ssi_signo != SIGCHLD) stop = true;
        return stop;
    }

    static auto status_of(child& c) -> std::string {
        auto st = wait_for(c.pid, std::chrono::seconds{2});
        if (!st) return "";
        c.pid = -1;
        return WIFEXITED(*st) ? " with status " + std::to_string(WEXITSTATUS(*st))
                              : " on signal " + std::to_string(WTERMSIG(*st));
    }

    // waitpid with a deadline, through a pidfd (no polling loop).
    static auto wait_for(pid_t pid, std::chrono::seconds limit) -> std::optional<int> {
        io::unique_fd pfd{static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))};
        if (pfd) {
            pollfd p{pfd.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds{limit}.count())) <= 0) return std::nullopt;
        }
        int st = 0;
        if (::waitpid(pid, &st, 0) != pid) return std::nullopt;
        return st;
    }

    sigset_t set_{}, old_{};
    io::unique_fd sfd_;
    std::vector<child> children_;
};

}  // namespace xtpm::roles
