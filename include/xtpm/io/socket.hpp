// Stream sockets for the local protocols: TCP on an IPv4 address (loopback by
// default, as swtpm does) or a unix socket path. Endpoints parse from swtpm's
// option syntax ("type=tcp,port=P,bindaddr=A" / "type=unixio,path=S").
#pragma once

#include <xtpm/io/fd.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

namespace xtpm::io {

struct tcp_endpoint {
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;
};
struct unix_endpoint {
    std::string path;
};
using endpoint = std::variant<tcp_endpoint, unix_endpoint>;

inline auto to_string(endpoint const& ep) -> std::string {
    if (auto const* t = std::get_if<tcp_endpoint>(&ep)) return t->address + ":" + std::to_string(t->port);
    return "unix:" + std::get<unix_endpoint>(ep).path;
}

namespace detail {
inline auto make_sockaddr(endpoint const& ep, sockaddr_storage& ss) -> result<socklen_t> {
    std::memset(&ss, 0, sizeof ss);
    if (auto const* t = std::get_if<tcp_endpoint>(&ep)) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);  // sockaddr_storage is the documented alias target
        sin->sin_family = AF_INET;
        sin->sin_port = htons(t->port);
        if (::inet_pton(AF_INET, t->address.c_str(), &sin->sin_addr) != 1) return fail(errc::bad_value);
        return socklen_t{sizeof(sockaddr_in)};
    }
    auto const& path = std::get<unix_endpoint>(ep).path;
    auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
    if (path.empty() || path.size() >= sizeof sun->sun_path) return fail(errc::bad_value);
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, path.c_str(), path.size() + 1);
    return socklen_t{sizeof(sockaddr_un)};
}
}  // namespace detail

// TCP_NODELAY and TCP_QUICKACK: the mssim TCTI writes a frame in two send()s and
// a delayed ACK would cost ~40 ms per command (peers-and-protocols.md 4.5).
inline void tune_stream(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

// A listening socket. A stale unix socket file is replaced, as swtpm does.
inline auto listen_on(endpoint const& ep, int backlog = 16) -> result<unique_fd> {
    sockaddr_storage ss;
    auto len = detail::make_sockaddr(ep, ss);
    if (!len) return std::unexpected{len.error()};
    unique_fd fd{::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (!fd) return sys_error();
    if (ss.ss_family == AF_INET) {
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    } else {
        ::unlink(std::get<unix_endpoint>(ep).path.c_str());
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), *len) < 0) return sys_error();
    if (::listen(fd.get(), backlog) < 0) return sys_error();
    return fd;
}

// A connected blocking client socket (tests, benchmarks, forwarding clients).
inline auto connect_to(endpoint const& ep) -> result<unique_fd> {
    sockaddr_storage ss;
    auto len = detail::make_sockaddr(ep, ss);
    if (!len) return std::unexpected{len.error()};
    unique_fd fd{::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (!fd) return sys_error();
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), *len) < 0) return sys_error();
    if (ss.ss_family == AF_INET) tune_stream(fd.get());
    return fd;
}

// Accept one connection, non-blocking and close-on-exec; nullopt-like errc::busy on EAGAIN.
inline auto accept_from(int listener) -> result<unique_fd> {
    int const fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return fail(errc::busy);
        return sys_error();
    }
    sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0 && ss.ss_family == AF_INET) tune_stream(fd);
    return unique_fd{fd};
}

// Parse swtpm's endpoint syntax: "type=tcp,port=P[,bindaddr=A]" or
// "type=unixio,path=S" (also "port=P" alone for tcp, as swtpm accepts).
inline auto parse_endpoint(std::string_view spec) -> result<endpoint> {
    std::string type = "tcp", path, addr = "127.0.0.1";
    std::optional<std::uint16_t> port;
    while (!spec.empty()) {
        auto const comma = spec.find(',');
        auto item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        auto const eq = item.find('=');
        if (eq == std::string_view::npos) return fail(errc::bad_value);
        auto const key = item.substr(0, eq), val = item.substr(eq + 1);
        if (key == "type") type = val;
        else if (key == "path") path = val;
        else if (key == "bindaddr") addr = val;
        else if (key == "port") {
            unsigned v = 0;
            auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), v);
            if (ec != std::errc{} || p != val.data() + val.size() || v == 0 || v > 65535) return fail(errc::bad_value);
            port = static_cast<std::uint16_t>(v);
        } else if (key == "disconnect" || key == "mode" || key == "uid" || key == "gid") {
            // accepted for command-line compatibility with swtpm; no effect here
        } else {
            return fail(errc::bad_value);
        }
    }
    if (type == "tcp") {
        if (!port) return fail(errc::bad_value);
        return endpoint{tcp_endpoint{addr, *port}};
    }
    if (type == "unixio" && !path.empty()) return endpoint{unix_endpoint{path}};
    return fail(errc::bad_value);
}

}  // namespace xtpm::io
