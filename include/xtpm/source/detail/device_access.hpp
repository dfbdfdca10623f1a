// What the socket sources need from the pipeline besides process(): a snapshot
// of the device's capabilities (device/concepts.hpp), taken once through
// with_device() so that lock-free paths (cancel) need not ask again, the
// listeners they bind, and the reply buffer TPM commands are answered into.
#pragma once

#include <xtpm/device/concepts.hpp>
#include <xtpm/io/socket.hpp>
#include <xtpm/proto/tpm_stream.hpp>

#include <string>
#include <vector>

namespace xtpm::detail {

struct device_caps {
    wire::family family = wire::family::tpm2;
    std::size_t max_command = 4096;
    bool cancellable = false;
    bool powered = false;
    bool stateful = false;
    bool established = false;
    bool buffer_sized = false;
    bool hashing = false;
    bool described = false;
};

template <class Handler>
auto probe_device(Handler& h) -> device_caps {
    auto caps = h.with_device([]<class D>(D& dev) {
        return device_caps{dev.family(),          dev.max_command_size(),
                           cancellable_device<D>, powered_device<D>,
                           stateful_device<D>,    established_device<D>,
                           buffer_sized_device<D>, hashing_device<D>,
                           described_device<D>};
    });
    return caps;
}

// A device without power control is always on.
template <class D>
auto device_running(D const& dev) -> bool {
    if constexpr (powered_device<D>) return dev.running();
    else return true;
}

// Power-cycle: orderly off when running, then on (mssim RESET, swtpm INIT).
template <powered_device D>
auto power_cycle(D& dev, bool delete_volatile) -> result<void> {
    if (dev.running())
        if (auto off = dev.power_off(); !off) return off;
    return dev.power_on(delete_volatile);
}

// Room for one TPM response plus the mssim framing around it.
class reply_buffer {
public:
    // process() promises a well-formed error in 4096 bytes; device responses need max_command.
    auto span(std::size_t max_command) -> wire::bytes_span {
        auto const n = proto::reply_headroom + std::max<std::size_t>(max_command, 4096) + proto::reply_tailroom;
        if (buf_.size() < n) buf_.resize(n);
        return wire::bytes_span{buf_}.first(n);
    }

private:
    std::vector<std::byte> buf_;
};

// Run one TPM command through the pipeline; the response lands at
// buf[reply_headroom, +size) and its size comes back.
template <class Handler>
auto run_command(Handler& h, wire::bytes_view cmd, std::uint8_t locality, wire::bytes_span buf) -> std::size_t {
    auto out = buf.subspan(proto::reply_headroom, buf.size() - proto::reply_headroom - proto::reply_tailroom);
    auto resp = h.process(cmd, locality, out);
    XTPM_ASSERT(resp.size() <= out.size());
    if (resp.data() != out.data()) std::ranges::copy(resp, out.begin());  // the contract says `out`; copy if not
    return resp.size();
}

// A bound listening socket and where it really listens (port 0 resolved).
struct bound_listener {
    io::unique_fd fd;
    io::endpoint where;
};

inline auto open_listener(io::endpoint const& ep) -> result<bound_listener> {
    auto fd = io::listen_on(ep);
    if (!fd) return std::unexpected{fd.error()};
    bound_listener out{std::move(*fd), ep};
    if (auto* tcp = std::get_if<io::tcp_endpoint>(&out.where)) {
        sockaddr_in sin{};
        socklen_t len = sizeof sin;
        // getsockname fills a sockaddr_in for an AF_INET socket: the documented alias.
        if (::getsockname(out.fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) < 0) return io::sys_error();
        tcp->port = ntohs(sin.sin_port);
    }
    return out;
}

// Unix socket files the server created: removed when it goes away, as swtpm does.
class socket_files {
public:
    socket_files() = default;
    socket_files(socket_files const&) = delete;
    auto operator=(socket_files const&) -> socket_files& = delete;
    ~socket_files() {
        for (auto const& p : paths_) ::unlink(p.c_str());
    }
    void add(io::endpoint const& ep) {
        if (auto const* u = std::get_if<io::unix_endpoint>(&ep)) paths_.push_back(u->path);
    }

private:
    std::vector<std::string> paths_;
};

}  // namespace xtpm::detail
