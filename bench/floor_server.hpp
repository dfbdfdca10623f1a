// The transport floor: a bare TCP server that frames a TPM command by its
// header's size field (TPM 2.0 Part 1 section 18) and answers a canned success
// response as long as a real TPM's (commands.hpp), with TCP_NODELAY. No TCP
// daemon can beat it (toolchain.md 6.2); it runs as its own process, like the daemons.
#pragma once

#include "commands.hpp"

#include <xtpm/io/socket.hpp>

#include <array>

namespace xtpm::bench {

class floor_server {
public:
    static auto create() -> result<floor_server> {
        floor_server s;
        auto canned = build_canned_responses();
        if (!canned) return std::unexpected{canned.error()};
        s.canned_ = *canned;
        auto other = build_canned_response(wire::tpm_st::no_sessions, wire::header_size);
        if (!other) return std::unexpected{other.error()};
        s.other_ = *other;
        return s;
    }

    // Serve one client at a time until SIGTERM (or an accept error).
    auto serve(std::uint16_t port) -> result<void> {
        auto listener = io::listen_on(io::tcp_endpoint{"127.0.0.1", port});
        if (!listener) return std::unexpected{listener.error()};
        for (;;) {
            auto conn = io::accept_from(listener->get());  // tunes TCP_NODELAY
            if (!conn) {
                if (to_errc(conn.error()) == errc::busy) continue;
                return std::unexpected{conn.error()};
            }
            if (auto b = io::set_nonblocking(conn->get(), false); !b) continue;
            serve_connection(conn->get());
        }
    }

private:
    floor_server() = default;

    // Read until one whole command is buffered (usually one recv), answer it,
    // keep any bytes of the next command. Returns when the client goes away.
    void serve_connection(int fd) {
        std::size_t have = 0;
        for (;;) {
            auto size = wire::frame_size(wire::bytes_view{buf_}.first(have), buf_.size());
            if (!size) return;  // not a TPM frame: drop the client
            if (*size == 0 || have < *size) {
                auto const n = ::recv(fd, buf_.data() + have, buf_.size() - have, 0);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) return;
                have += static_cast<std::size_t>(n);
                continue;
            }
            auto const cc = wire::load_be<wire::tpm_cc>(wire::bytes_view{buf_}.subspan(6, 4));
            auto const which = command_for_code(cc);
            auto const& rsp = which ? canned_[static_cast<std::size_t>(*which)] : other_;
            if (!io::write_all(fd, rsp.bytes())) return;
            std::copy(buf_.begin() + static_cast<std::ptrdiff_t>(*size),
                      buf_.begin() + static_cast<std::ptrdiff_t>(have), buf_.begin());
            have -= *size;
        }
    }

    canned_responses canned_{};
    canned_response other_{};
    std::array<std::byte, 4096> buf_{};  // libtpms' default command buffer size
};

}  // namespace xtpm::bench
