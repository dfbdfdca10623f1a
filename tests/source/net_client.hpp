// Client-side helpers for the socket-source tests: blocking sockets with
// deadlines (every wait is bounded), hex byte strings, and a pipeline served
// on a thread that is stopped and joined on scope exit.
#pragma once

#include <xtpm/io/socket.hpp>
#include <xtpm/wire/reader.hpp>

#include <array>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <csignal>

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace xtpm::test {

using bytes = std::vector<std::byte>;
inline constexpr std::chrono::milliseconds io_limit{5000};

// "80 01 00 00" -> bytes; spaces ignored.
inline auto hex(std::string_view s) -> bytes {
    bytes out;
    auto const nibble = [](char c) -> unsigned {
        if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
        if (c >= 'a' && c <= 'f') return static_cast<unsigned>(c - 'a' + 10);
        return static_cast<unsigned>(c - 'A' + 10);
    };
    unsigned acc = 0;
    bool half = false;
    for (char c : s) {
        if (c == ' ') continue;
        acc = (acc << 4) | nibble(c);
        if (half) { out.push_back(static_cast<std::byte>(acc & 0xFF)); acc = 0; }
        half = !half;
    }
    return out;
}

inline auto cat(bytes a, bytes const& b) -> bytes {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

inline auto be32(std::uint32_t v) -> bytes {
    return {std::byte(v >> 24), std::byte((v >> 16) & 0xFF), std::byte((v >> 8) & 0xFF), std::byte(v & 0xFF)};
}

// A TPM 2.0 command: header for `code` and `body`.
inline auto tpm2_command(std::uint32_t code, bytes const& body = {}) -> bytes {
    auto out = cat(cat(hex("8001"), be32(static_cast<std::uint32_t>(10 + body.size()))), be32(code));
    return cat(out, body);
}

inline auto connect(io::endpoint const& ep) -> io::unique_fd {
    auto fd = io::connect_to(ep);
    return fd ? std::move(*fd) : io::unique_fd{};
}

inline auto send_all(int fd, wire::bytes_view b) -> bool {
    while (!b.empty()) {
        auto const n = ::send(fd, b.data(), b.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        b = b.subspan(static_cast<std::size_t>(n));
    }
    return true;
}

// Wait for input until `deadline`; false on timeout.
inline auto wait_readable(int fd, std::chrono::steady_clock::time_point deadline) -> bool {
    for (;;) {
        auto const left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        int const r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return false;
    }
}

// Exactly n bytes, or nullopt on EOF, error or timeout.
inline auto read_exact(int fd, std::size_t n, std::chrono::milliseconds limit = io_limit) -> std::optional<bytes> {
    auto const deadline = std::chrono::steady_clock::now() + limit;
    bytes out(n);
    std::size_t got = 0;
    while (got < n) {
        if (!wait_readable(fd, deadline)) return std::nullopt;
        auto const r = ::recv(fd, out.data() + got, n - got, 0);
        if (r <= 0) return std::nullopt;
        got += static_cast<std::size_t>(r);
    }
    return out;
}

// Everything until the peer closes (bounded); nullopt if it never does.
inline auto read_to_eof(int fd, std::chrono::milliseconds limit = io_limit) -> std::optional<bytes> {
    auto const deadline = std::chrono::steady_clock::now() + limit;
    bytes out;
    std::array<std::byte, 4096> buf{};
    for (;;) {
        if (!wait_readable(fd, deadline)) return std::nullopt;
        auto const r = ::recv(fd, buf.data(), buf.size(), 0);
        if (r < 0) return errno == ECONNRESET ? std::optional{out} : std::nullopt;
        if (r == 0) return out;
        out.insert(out.end(), buf.begin(), buf.begin() + r);
    }
}

// One request, one reply of known size, on a fresh or given connection.
inline auto exchange(int fd, bytes const& req, std::size_t reply_size) -> std::optional<bytes> {
    if (!send_all(fd, req)) return std::nullopt;
    return read_exact(fd, reply_size);
}

// A TPM response framed by its size field.
inline auto read_response(int fd) -> std::optional<bytes> {
    auto hdr = read_exact(fd, 10);
    if (!hdr) return std::nullopt;
    auto const size = wire::load_be<std::uint32_t>(wire::bytes_view{*hdr}.subspan(2, 4));
    if (size < 10 || size > 65536) return std::nullopt;
    auto rest = read_exact(fd, size - 10);
    if (!rest) return std::nullopt;
    return cat(*hdr, *rest);
}

inline auto rc_of(bytes const& resp) -> std::uint32_t {
    return resp.size() >= 10 ? wire::load_be<std::uint32_t>(wire::bytes_view{resp}.subspan(6, 4)) : 0xFFFFFFFF;
}
inline auto u32_at(bytes const& b, std::size_t at) -> std::uint32_t {
    return wire::load_be<std::uint32_t>(wire::bytes_view{b}.subspan(at, 4));
}

// Run a program with output discarded; its exit status, or -1. Killed by pid
// if it outlives `limit`.
inline auto run_program(std::vector<std::string> args, std::chrono::milliseconds limit = std::chrono::seconds{20})
    -> int {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t const pid = ::fork();
    if (pid == 0) {
        int const null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
    if (pid < 0) return -1;
    // glibc 2.36's <sys/pidfd.h> lacks extern "C": use the system call.
    io::unique_fd pidfd{static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))};
    pollfd pf{pidfd.get(), POLLIN, 0};
    if (!pidfd || ::poll(&pf, 1, static_cast<int>(limit.count())) != 1) ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs p.run() on a thread; the destructor stops the pipeline and joins.
template <class Pipeline>
class served {
public:
    explicit served(Pipeline& p) : p_{p}, t_{[this] {
        auto r = p_.run();
        std::lock_guard lock{mu_};
        result_ = r;
        done_ = true;
        cv_.notify_all();
    }} {}
    served(served const&) = delete;
    auto operator=(served const&) -> served& = delete;
    ~served() { stop(); }
    void stop() {
        if (t_.joinable()) {
            p_.stop();
            t_.join();
        }
    }
    // Wait (bounded) for serve() to return by itself, e.g. after SHUTDOWN.
    auto wait_done(std::chrono::milliseconds limit = io_limit) -> bool {
        std::unique_lock lock{mu_};
        if (!cv_.wait_for(lock, limit, [&] { return done_; })) return false;
        lock.unlock();
        t_.join();
        return true;
    }
    [[nodiscard]] auto result() -> xtpm::result<void> {
        std::lock_guard lock{mu_};
        return result_;
    }

private:
    Pipeline& p_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    xtpm::result<void> result_;
    std::thread t_;
};

}  // namespace xtpm::test
