// A sim_hv client's connection to the daemon: synchronous request/reply (matched by
// req_id, as xenstore.txt asks), with unsolicited watch events set aside in a queue. The
// queue is signalled on an eventfd so that event_fd() (an epoll set over the socket and that
// eventfd) is readable whenever an event is queued or may be arriving, like xs_fileno().
#pragma once

#include <xtpm/hv/sim/packet_socket.hpp>

#include <deque>
#include <optional>

#include <sys/epoll.h>
#include <sys/eventfd.h>

namespace xtpm::hv::sim {

// Watch events kept for a client that does not read them; later ones are dropped.
inline constexpr std::size_t client_event_backlog = 4096;

class channel {
public:
    struct reply {
        std::string payload;
        std::vector<io::unique_fd> fds;
    };

    static auto open(std::filesystem::path const& socket) -> result<channel> {
        channel c;
        auto fd = connect_packets(socket);
        if (!fd) return std::unexpected{fd.error()};
        c.sock_ = std::move(*fd);
        c.ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        c.queued_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!c.ep_ || !c.queued_) return io::sys_error();
        for (int const f : {c.sock_.get(), c.queued_.get()}) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = f;
            if (::epoll_ctl(c.ep_.get(), EPOLL_CTL_ADD, f, &ev) < 0) return io::sys_error();
        }
        return c;
    }

    // One request and its reply. An ERROR reply becomes its errno (std::system_category);
    // a daemon that went away is errc::closed.
    auto call(msg_type type, xs_tx_t tx, message_builder& body, std::span<int const> fds = {}) -> result<reply> {
        if (++next_req_ == 0) ++next_req_;
        auto const id = next_req_;
        auto msg = body.finish(type, id, tx);
        if (!msg) return std::unexpected{msg.error()};
        if (auto r = send_packet(sock_.get(), *msg, fds); !r) return std::unexpected{r.error()};
        for (;;) {
            std::vector<io::unique_fd> got;
            auto n = recv_packet(sock_.get(), buf_, got);
            if (!n) return std::unexpected{n.error()};
            auto m = parse_message(std::span{buf_}.first(*n));
            if (!m) return fail(errc::io_error);  // the daemon does not send malformed messages
            if (m->type() == static_cast<std::uint32_t>(msg_type::watch_event)) {
                queue_event(*m);
                continue;
            }
            if (m->header.req_id != id) continue;  // a reply to a request we gave up on
            if (m->type() == static_cast<std::uint32_t>(msg_type::error)) {
                auto const name = as_view(m->payload);
                return sys_error(errno_from_name(name.substr(0, name.find('\0'))));
            }
            return reply{std::string{as_view(m->payload)}, std::move(got)};
        }
    }

    // The next queued watch event, reading what has arrived without blocking.
    auto next_event() -> result<std::optional<watch_event>> {
        for (;;) {
            std::vector<io::unique_fd> got;
            auto n = recv_packet(sock_.get(), buf_, got, MSG_DONTWAIT);
            if (!n && to_errc(n.error()) == errc::busy) break;
            if (!n) {
                if (!events_.empty()) break;  // deliver what came before the end
                return std::unexpected{n.error()};
            }
            auto m = parse_message(std::span{buf_}.first(*n));
            if (m && m->type() == static_cast<std::uint32_t>(msg_type::watch_event)) queue_event(*m);
        }
        if (events_.empty()) return std::nullopt;
        auto ev = std::move(events_.front());
        events_.pop_front();
        if (events_.empty()) {
            std::uint64_t v;
            [[maybe_unused]] auto r = ::read(queued_.get(), &v, sizeof v);  // clear the signal
        }
        return ev;
    }

    [[nodiscard]] auto event_fd() const noexcept -> int { return ep_.get(); }

private:
    channel() = default;

    void queue_event(message const& m) {
        auto parts = split_strings(m.payload);
        if (!parts || parts->size() != 2 || events_.size() >= client_event_backlog) return;
        events_.push_back({std::string{(*parts)[0]}, std::string{(*parts)[1]}});
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(queued_.get(), &one, sizeof one);
    }

    io::unique_fd sock_, ep_, queued_;
    std::deque<watch_event> events_;
    std::uint32_t next_req_ = 0;
    std::vector<std::byte> buf_ = std::vector<std::byte>(packet_max);
};

}  // namespace xtpm::hv::sim
