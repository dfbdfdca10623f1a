// Unix SOCK_SEQPACKET sockets between sim_hv clients and the daemon: one message per packet,
// descriptors passed with SCM_RIGHTS (unix(7)), so message boundaries and the descriptors
// that belong to a message never mix.
#pragma once

#include <xtpm/hv/sim/wire.hpp>
#include <xtpm/io/fd.hpp>

#include <cstring>
#include <filesystem>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>

namespace xtpm::hv::sim {

// Domain d's socket in the daemon's directory: whoever connects to it is domain d.
inline auto socket_path(std::filesystem::path const& dir, domid_t d) -> std::filesystem::path {
    return dir / std::string{"dom"}.append(std::to_string(d)).append(".sock");
}

namespace detail {
inline auto unix_address(std::filesystem::path const& p, sockaddr_un& sa) -> result<socklen_t> {
    auto const& s = p.native();
    sa = {};
    sa.sun_family = AF_UNIX;
    if (s.empty() || s.size() >= sizeof sa.sun_path) return fail(errc::bad_value);
    std::memcpy(sa.sun_path, s.c_str(), s.size() + 1);
    return static_cast<socklen_t>(sizeof sa);
}
}  // namespace detail

inline auto listen_packets(std::filesystem::path const& p) -> result<io::unique_fd> {
    sockaddr_un sa;
    auto len = detail::unix_address(p, sa);
    if (!len) return std::unexpected{len.error()};
    io::unique_fd fd{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
    if (!fd) return io::sys_error();
    ::unlink(p.c_str());  // a stale socket of a daemon that died
    if (::bind(fd.get(), reinterpret_cast<sockaddr const*>(&sa), *len) < 0) return io::sys_error();
    if (::listen(fd.get(), 64) < 0) return io::sys_error();
    return fd;
}

inline auto connect_packets(std::filesystem::path const& p) -> result<io::unique_fd> {
    sockaddr_un sa;
    auto len = detail::unix_address(p, sa);
    if (!len) return std::unexpected{len.error()};
    io::unique_fd fd{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
    if (!fd) return io::sys_error();
    if (::connect(fd.get(), reinterpret_cast<sockaddr const*>(&sa), *len) < 0) return io::sys_error();
    return fd;
}

// Send one packet with descriptors. errc::busy if a non-blocking socket is full,
// errc::closed if the peer is gone.
inline auto send_packet(int fd, std::span<std::byte const> bytes, std::span<int const> fds, int flags = 0)
    -> result<void> {
    if (fds.size() > max_fds_per_message) return fail(errc::too_large);
    iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};  // sendmsg's iovec is not const
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    std::vector<std::byte> control;
    if (!fds.empty()) {
        control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
        mh.msg_control = control.data();
        mh.msg_controllen = control.size();
        auto* cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        if (::sendmsg(fd, &mh, flags | MSG_NOSIGNAL) >= 0) return {};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return fail(errc::busy);
        if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) return fail(errc::closed);
        return io::sys_error();
    }
}

// Receive one packet into `buf` and its descriptors into `fds` (close-on-exec). errc::closed
// on end of stream (or an empty packet, which no one sends), errc::busy when a non-blocking
// read finds nothing, errc::too_large for a packet longer than `buf`.
inline auto recv_packet(int fd, std::span<std::byte> buf, std::vector<io::unique_fd>& fds, int flags = 0)
    -> result<std::size_t> {
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) std::byte control[CMSG_SPACE(sizeof(int) * max_fds_per_message)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n;
    for (;;) {
        n = ::recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC);
        if (n >= 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return fail(errc::busy);
        if (errno == ECONNRESET) return fail(errc::closed);
        return io::sys_error();
    }
    for (auto* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        auto const count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int v;
            std::memcpy(&v, CMSG_DATA(cm) + i * sizeof(int), sizeof v);  // CMSG_DATA is not int-aligned
            fds.emplace_back(v);
        }
    }
    if (n == 0) return fail(errc::closed);
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return fail(errc::too_large);
    return static_cast<std::size_t>(n);
}

}  // namespace xtpm::hv::sim
