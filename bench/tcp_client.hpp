// The socket contestants' client: one persistent TCP connection (swtpm serves
// one data connection at a time), raw TPM bytes, the response framed by the
// size field of its header (TPM 2.0 Part 1 section 18; swtpm data channel,
// peers-and-protocols.md 4.2).
#pragma once

#include "process.hpp"

#include <xtpm/io/socket.hpp>
#include <xtpm/wire/header.hpp>

#include <array>

#include <sys/socket.h>
#include <sys/time.h>

namespace xtpm::bench {

// The largest response accepted: libtpms' default TPM2 buffer (toolchain.md 5).
inline constexpr std::size_t max_response = 4096;

class tcp_client {
public:
    // Takes a connected socket (io::connect_to already set TCP_NODELAY). A daemon
    // that does not answer within `timeout` fails the call instead of hanging the bench.
    explicit tcp_client(io::unique_fd fd, std::chrono::seconds timeout = std::chrono::seconds{10})
        : fd_{std::move(fd)} {
        io::tune_stream(fd_.get());
        timeval tv{};
        tv.tv_sec = static_cast<time_t>(timeout.count());
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }

    // Send one command and read one whole response; the view aliases an
    // internal buffer and lives until the next call.
    auto roundtrip(wire::bytes_view cmd) -> result<wire::bytes_view> {
        if (auto w = send_all(cmd); !w) return std::unexpected{w.error()};
        std::size_t have = 0, want = 0;
        while (want == 0 || have < want) {
            auto const n = ::recv(fd_.get(), buf_.data() + have, buf_.size() - have, 0);
            if (n < 0) {
                if (errno == EINTR && !stop_requested) continue;
                if (errno == EINTR) return fail(errc::canceled);
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return std::unexpected{std::make_error_code(std::errc::timed_out)};
                return io::sys_error();
            }
            if (n == 0) return fail(errc::closed);
            have += static_cast<std::size_t>(n);
            if (want == 0) {
                auto size = wire::frame_size(wire::bytes_view{buf_}.first(have), buf_.size());
                if (!size) return std::unexpected{size.error()};
                want = *size;
            }
        }
        if (have > want) return fail(errc::trailing_bytes);  // the peer sent more than one response
        return wire::bytes_view{buf_}.first(want);
    }

private:
    auto send_all(wire::bytes_view b) -> result<void> {
        while (!b.empty()) {
            auto const n = ::send(fd_.get(), b.data(), b.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR && !stop_requested) continue;
                if (errno == EINTR) return fail(errc::canceled);
                if (errno == EPIPE || errno == ECONNRESET) return fail(errc::closed);
                return io::sys_error();
            }
            b = b.subspan(static_cast<std::size_t>(n));
        }
        return {};
    }

    io::unique_fd fd_;
    std::array<std::byte, max_response> buf_{};
};

}  // namespace xtpm::bench
