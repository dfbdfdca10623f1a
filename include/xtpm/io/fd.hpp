// Owned file descriptor and the few blocking/non-blocking syscall wrappers the
// sources share. POSIX I/O lives under io/ and in policies, never in wire/ or proto/.
#pragma once

#include <xtpm/error.hpp>

#include <cerrno>
#include <cstddef>
#include <span>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace xtpm::io {

class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_{fd} {}
    unique_fd(unique_fd&& o) noexcept : fd_{std::exchange(o.fd_, -1)} {}
    auto operator=(unique_fd&& o) noexcept -> unique_fd& {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~unique_fd() { reset(); }

    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }
    [[nodiscard]] auto release() noexcept -> int { return std::exchange(fd_, -1); }
    [[nodiscard]] auto get() const noexcept -> int { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

inline auto sys_error() -> std::unexpected<std::error_code> {
    return std::unexpected{std::error_code{errno, std::system_category()}};
}

inline auto set_nonblocking(int fd, bool on = true) -> result<void> {
    int const fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) return sys_error();
    if (::fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK)) < 0) return sys_error();
    return {};
}

// Write all of `b` to a blocking fd (EINTR retried). errc::closed on EPIPE.
inline auto write_all(int fd, std::span<std::byte const> b) -> result<void> {
    while (!b.empty()) {
        auto const n = ::write(fd, b.data(), b.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) return fail(errc::closed);
            return sys_error();
        }
        b = b.subspan(static_cast<std::size_t>(n));
    }
    return {};
}

// Read exactly b.size() bytes from a blocking fd; errc::closed on EOF.
inline auto read_exact(int fd, std::span<std::byte> b) -> result<void> {
    while (!b.empty()) {
        auto const n = ::read(fd, b.data(), b.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) return fail(errc::closed);
            return sys_error();
        }
        if (n == 0) return fail(errc::closed);
        b = b.subspan(static_cast<std::size_t>(n));
    }
    return {};
}

}  // namespace xtpm::io
