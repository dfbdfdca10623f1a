// The simulated event-channel registry (Xen: xen/include/public/event_channel.h and
// xen/common/event_channel.c). Ports live in per-domain namespaces; an interdomain channel is
// two ports. Notification bypasses the daemon: every port owns two eventfds for its whole
// life, `wait` (its owner polls it) and `notify` (its owner writes it; the peer waits on it).
// Binding port Y to unbound port X gives Y wait = X.notify and notify = X.wait, so both ends
// keep stable descriptors across a peer's death and a re-bind. The two pending words of
// the channel (sim/pending_words.hpp) live in a page both ends map, word 0 the unbound
// port's, word 1 its binder's.
#pragma once

#include <xtpm/hv/sim/grant_table.hpp>
#include <xtpm/hv/sim/pending_words.hpp>

#include <map>
#include <utility>

#include <sys/eventfd.h>

namespace xtpm::hv::sim {

// Ports per domain: Linux's evtchn driver allows 1024 per user by default.
inline constexpr std::size_t max_ports_per_domain = 1024;

class event_channels {
public:
    struct bound_port {
        evtchn_port_t port;
        io::unique_fd wait;    // the owner polls and reads this
        io::unique_fd notify;  // the owner writes this to signal the peer
        io::unique_fd words;   // the channel's pending words (a page to map)
    };

    // EVTCHNOP_alloc_unbound: a port that `remote` may bind.
    auto alloc_unbound(domid_t self, conn_id conn, domid_t remote) -> result<bound_port> {
        auto& tab = ports_[self];
        if (tab.size() >= max_ports_per_domain) return sys_error(ENOSPC);
        io::unique_fd w{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)}, n{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
        if (!w || !n) return io::sys_error();
        auto words = pending_words::create();
        if (!words) return std::unexpected{words.error()};
        auto shared = std::make_shared<channel_words>(std::move(words->first), std::move(words->second));
        auto const p = free_port(tab);
        auto& rec = tab.emplace(p, port_rec{conn, false, remote, 0, std::move(w), std::move(n), std::move(shared), 0})
                        .first->second;
        return hand_out(p, rec);
    }

    // EVTCHNOP_bind_interdomain: `rport` of `remote` must be unbound and reserved for `self`.
    // The new local port is marked pending ("lost notifications" rule in event_channel.c).
    auto bind(domid_t self, conn_id conn, domid_t remote, evtchn_port_t rport) -> result<bound_port> {
        auto const rt = ports_.find(remote);
        if (rt == ports_.end()) return sys_error(EINVAL);
        auto const rp = rt->second.find(rport);
        if (rp == rt->second.end() || rp->second.bound || rp->second.remote_dom != self) return sys_error(EINVAL);
        auto& tab = ports_[self];
        if (tab.size() >= max_ports_per_domain) return sys_error(ENOSPC);
        auto w = dup_fd(rp->second.notify.get());
        auto n = dup_fd(rp->second.wait.get());
        if (!w || !n) return io::sys_error();
        auto const p = free_port(tab);
        auto& rec = tab.emplace(p, port_rec{conn, true, remote, rport, std::move(*w), std::move(*n),
                                            rp->second.words, 1})
                        .first->second;
        rp->second.bound = true;
        rp->second.remote_port = p;
        rec.words->map.raise(rec.wait_word);
        signal(rec.wait.get());
        return hand_out(p, rec);
    }

    // EVTCHNOP_close, only through the connection that made the port (as the evtchn driver
    // allows only its own ports). The peer returns to unbound, reserved for our domain.
    auto unbind(domid_t self, conn_id conn, evtchn_port_t port) -> result<void> {
        auto const t = ports_.find(self);
        if (t == ports_.end()) return sys_error(EINVAL);
        auto const it = t->second.find(port);
        if (it == t->second.end() || it->second.owner != conn) return sys_error(EINVAL);
        close(self, it);
        return {};
    }

    void drop_connection(domid_t self, conn_id conn) {
        auto const t = ports_.find(self);
        if (t == ports_.end()) return;
        for (auto it = t->second.begin(); it != t->second.end();) {
            auto const next = std::next(it);
            if (it->second.owner == conn) close(self, it);
            it = next;
        }
    }

    [[nodiscard]] auto count(domid_t d) const -> std::size_t {
        auto const t = ports_.find(d);
        return t == ports_.end() ? 0 : t->second.size();
    }

private:
    struct channel_words {
        channel_words(io::unique_fd f, pending_words m) : fd{std::move(f)}, map{std::move(m)} {}
        io::unique_fd fd;
        pending_words map;
    };
    struct port_rec {
        conn_id owner;
        bool bound;
        domid_t remote_dom;
        evtchn_port_t remote_port;
        io::unique_fd wait;
        io::unique_fd notify;
        std::shared_ptr<channel_words> words;  // shared by both ports of the channel
        unsigned wait_word;                    // 0: made by alloc_unbound, 1: bound to such a port
    };
    using table = std::map<evtchn_port_t, port_rec>;

    static auto free_port(table const& tab) -> evtchn_port_t {
        evtchn_port_t p = 1;  // port 0 is never valid in Xen
        while (tab.contains(p)) ++p;
        return p;
    }
    static auto dup_fd(int fd) -> result<io::unique_fd> {
        io::unique_fd d{::fcntl(fd, F_DUPFD_CLOEXEC, 0)};
        if (!d) return io::sys_error();
        return d;
    }
    static void signal(int fd) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);  // EAGAIN: already pending
    }
    static auto hand_out(evtchn_port_t p, port_rec const& rec) -> result<bound_port> {
        auto w = dup_fd(rec.wait.get());
        auto n = dup_fd(rec.notify.get());
        auto b = dup_fd(rec.words->fd.get());
        if (!w || !n || !b) return io::sys_error();
        return bound_port{p, std::move(*w), std::move(*n), std::move(*b)};
    }

    void close(domid_t self, table::iterator it) {
        if (it->second.bound) {
            auto const pt = ports_.find(it->second.remote_dom);
            if (pt != ports_.end()) {
                auto const peer = pt->second.find(it->second.remote_port);
                if (peer != pt->second.end()) {
                    peer->second.bound = false;
                    peer->second.remote_dom = self;
                    peer->second.remote_port = 0;
                }
            }
        }
        ports_[self].erase(it);
    }

    std::map<domid_t, table> ports_;
};

}  // namespace xtpm::hv::sim
