// What every daemon role does around its pipeline: pid file, log file, the
// "ready" line (plus sd_notify READY=1 when NOTIFY_SOCKET is set), and
// SIGTERM/SIGINT turned into an orderly stop of the pipeline.
#pragma once

#include <xtpm/io/fd.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace xtpm::roles {

namespace detail {
// The stop hook a signal handler may call: a plain function pointer and a
// context pointer, both set before the handlers are installed.
inline void (*stop_fn)(void*) noexcept = nullptr;
inline void* stop_ctx = nullptr;
inline volatile std::sig_atomic_t stop_signal = 0;
extern "C" inline void on_stop_signal(int sig) {
    stop_signal = sig;
    if (stop_fn) stop_fn(stop_ctx);
}
}  // namespace detail

class daemon_process {
public:
    // `role` names the ready line ("<role>: ready ...").
    daemon_process(std::optional<std::string> pid_file, std::optional<std::string> log_file,
                   char const* role = "xtpm-vtpmd")
        : pid_file_{std::move(pid_file)}, role_{role} {
        if (log_file) {
            int const fd = ::open(log_file->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd < 0) throw std::runtime_error("cannot open log file " + *log_file + ": " + std::strerror(errno));
            ::dup2(fd, STDERR_FILENO);
            ::close(fd);
        }
        std::signal(SIGPIPE, SIG_IGN);  // a client that goes away is an errc::closed, not a signal
    }
    daemon_process(daemon_process const&) = delete;
    auto operator=(daemon_process const&) -> daemon_process& = delete;
    ~daemon_process() {
        if (pid_file_) ::unlink(pid_file_->c_str());
    }

    // SIGTERM/SIGINT call p.stop(), which is async-signal-safe for every source.
    template <class Pipeline>
    void stop_on_signals(Pipeline& p) {
        detail::stop_ctx = &p;
        detail::stop_fn = [](void* ctx) noexcept { static_cast<Pipeline*>(ctx)->stop(); };
        struct sigaction sa{};
        sa.sa_handler = detail::on_stop_signal;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGTERM, &sa, nullptr);
        ::sigaction(SIGINT, &sa, nullptr);
    }

    // Writes the pid file atomically, prints the ready line, notifies systemd.
    void ready(std::string const& what) {
        if (pid_file_) {
            // No iostreams or std::filesystem (which pulls them in): with the C++ runtime
            // linked statically they cost ~300 KiB of RSS in every vTPM process.
            auto const tmp = *pid_file_ + ".tmp";
            auto const line = std::to_string(::getpid()) + "\n";
            io::unique_fd fd{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644)};
            if (!fd || !io::write_all(fd.get(), std::as_bytes(std::span{line})))
                throw std::runtime_error("cannot write pid file " + tmp);
            if (::rename(tmp.c_str(), pid_file_->c_str()) != 0)
                throw std::runtime_error("cannot write pid file " + *pid_file_ + ": " + std::strerror(errno));
        }
        std::printf("%s: ready %s\n", role_, what.c_str());
        std::fflush(stdout);
        sd_notify("READY=1");
    }

    static auto stopped_by_signal() -> int { return detail::stop_signal; }

private:
    // sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.
    static void sd_notify(char const* msg) {
        char const* path = std::getenv("NOTIFY_SOCKET");
        if (!path || (path[0] != '/' && path[0] != '@')) return;
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        auto const len = std::strlen(path);
        if (len >= sizeof sa.sun_path) return;
        std::memcpy(sa.sun_path, path, len);
        if (path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
        io::unique_fd fd{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
        if (!fd) return;
        ::sendto(fd.get(), msg, std::strlen(msg), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
    }

    std::optional<std::string> pid_file_;
    char const* role_;
};

}  // namespace xtpm::roles
