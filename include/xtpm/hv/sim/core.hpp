// The simulated hypervisor's state machine, without sockets: domains, connections, and the
// requests of one connection in, replies and watch events out. The caller's domain is the
// connection's, fixed when the connection was accepted on that domain's socket; nothing in a
// request can change it. Domains are introduced by dom0 (XS_INTRODUCE, as a toolstack does)
// and released (XS_RELEASE) like destroyed domains. A bad packet ends its connection.
#pragma once

#include <xtpm/hv/sim/event_channels.hpp>
#include <xtpm/hv/sim/xs_service.hpp>

#include <map>
#include <optional>
#include <utility>

namespace xtpm::hv::sim {

// Domain ids below DOMID_FIRST_RESERVED (xen.h) are real domains.
inline constexpr domid_t max_domid = 0x7FEF;
// Connections per unprivileged domain (each is a process's handle); dom0 is not limited.
inline constexpr std::size_t max_connections_per_domain = 16;

class core {
public:
    explicit core(xs_quota q = {}) : xs_{q} { introduce(privileged_domain); }

    // Make a domain exist: its home /local/domain/<d> owned by it, @introduceDomain fired.
    // Idempotent. The socket layer opens its socket (take_introduced()).
    auto introduce(domid_t d) -> result<void> {
        if (d > max_domid) return sys_error(EINVAL);
        if (domains_.contains(d)) return {};
        domains_.emplace(d, 0);
        std::vector<xs_change> ignored;
        auto& t = xs_.tree();
        for (auto const* p : {"/local", "/local/domain"}) (void)t.mkdir(privileged_domain, p, ignored);
        auto const home = domain_home(d);
        (void)t.mkdir(privileged_domain, home, ignored);
        xs_permission const owner[] = {{d, false, false}};
        (void)t.set_perms(privileged_domain, home, owner, ignored);
        introduced_.push_back(d);
        xs_.fire_special("@introduceDomain");
        return {};
    }

    [[nodiscard]] auto introduced(domid_t d) const -> bool { return domains_.contains(d); }

    // A new connection of domain d, or nullopt (unknown domain, too many connections).
    auto attach(domid_t d) -> std::optional<conn_id> {
        auto const it = domains_.find(d);
        if (it == domains_.end()) return std::nullopt;
        if (d != privileged_domain && it->second >= max_connections_per_domain) return std::nullopt;
        ++it->second;
        auto const id = ++next_conn_;
        conns_.emplace(id, d);
        xs_.attach(id, d);
        return id;
    }

    // A connection closed: its grants end, its ports close (peers become unbound), its
    // watches and transactions go. The last connection of a domU going fires @releaseDomain,
    // the simulator's notion of a crashed domain.
    void detach(conn_id c) {
        auto const it = conns_.find(c);
        if (it == conns_.end()) return;
        auto const d = it->second;
        conns_.erase(it);
        xs_.detach(c);
        grants_.drop_connection(c);
        ports_.drop_connection(d, c);
        auto const dom = domains_.find(d);
        if (dom != domains_.end() && --dom->second == 0 && d != privileged_domain) xs_.fire_special("@releaseDomain");
    }

    // One packet from connection c (with the descriptors that came with it).
    void handle(conn_id c, std::span<std::byte const> packet, std::vector<io::unique_fd> fds) {
        auto const it = conns_.find(c);
        if (it == conns_.end()) return;
        auto const dom = it->second;
        auto m = parse_message(packet);
        if (!m) return drop(c);  // bad length: xenstored kills such a connection too
        auto const type = m->type();
        result<std::string> r = sys_error(EINVAL);
        std::vector<io::unique_fd> reply_fds;
        bool const takes_fd = type == static_cast<std::uint32_t>(msg_type::gnt_share);
        if (!fds.empty() && !takes_fd) {
            r = sys_error(EINVAL);  // descriptors only travel with GNT_SHARE
        } else if (xs_service::handles(type)) {
            r = xs_.handle(c, *m);
        } else if (type >= static_cast<std::uint32_t>(msg_type::gnt_share)) {
            r = m->header.tx_id == no_tx ? hypervisor_op(dom, c, *m, std::move(fds), reply_fds) : sys_error(EINVAL);
        } else {
            r = domain_op(dom, *m);
        }
        reply(c, *m, r, std::move(reply_fds));
        if (r) xs_.after_reply(c);
    }

    // Effects for the socket layer.
    auto outbox() -> std::vector<outgoing>& { return xs_.outbox(); }
    auto take_introduced() -> std::vector<domid_t> { return std::exchange(introduced_, {}); }
    auto take_released() -> std::vector<domid_t> { return std::exchange(released_, {}); }
    // Connections the core ended (protocol error, domain released): close their sockets
    // without calling detach() again.
    auto take_dropped() -> std::vector<conn_id> { return std::exchange(dropped_, {}); }

    auto grants() -> grant_table& { return grants_; }
    auto ports() -> event_channels& { return ports_; }

private:
    void drop(conn_id c) {
        detach(c);
        dropped_.push_back(c);
    }

    void reply(conn_id c, message const& m, result<std::string> const& r, std::vector<io::unique_fd> fds) {
        if (!conns_.contains(c)) return;
        auto const& h = m.header;
        auto msg = r ? message_builder{}.raw(*r).finish(h.type, h.req_id, h.tx_id)
                     : message_builder{}.str(errno_name(wire_errno(r.error()))).finish(msg_type::error, h.req_id, h.tx_id);
        if (!msg) msg = message_builder{}.str("E2BIG").finish(msg_type::error, h.req_id, h.tx_id);
        if (!r) fds.clear();
        outbox().push_back({c, std::move(*msg), std::move(fds)});
    }

    static auto arg_domid(std::string_view s) -> std::optional<domid_t> {
        auto d = parse_decimal<domid_t>(s);
        if (!d || *d > max_domid) return std::nullopt;
        return d;
    }

    // Toolstack requests: INTRODUCE and RELEASE are dom0's alone, as in xenstored.
    auto domain_op(domid_t dom, message const& m) -> result<std::string> {
        auto args = split_strings(m.payload);
        if (!args || args->empty()) return sys_error(EINVAL);
        auto const d = arg_domid((*args)[0]);
        if (!d) return sys_error(EINVAL);
        switch (static_cast<msg_type>(m.type())) {
        case msg_type::get_domain_path:
            if (args->size() != 1) return sys_error(EINVAL);
            return domain_home(*d) + '\0';
        case msg_type::is_domain_introduced:
            if (args->size() != 1) return sys_error(EINVAL);
            return std::string{introduced(*d) ? "T" : "F"} + '\0';
        case msg_type::introduce: {  // <domid>|<mfn>|<evtchn>|: the ring fields mean nothing here
            if (dom != privileged_domain) return sys_error(EACCES);
            if (args->size() != 3 || *d == privileged_domain) return sys_error(EINVAL);
            if (auto r = introduce(*d); !r) return std::unexpected{r.error()};
            return std::string{"OK\0", 3};
        }
        case msg_type::release: {
            if (dom != privileged_domain) return sys_error(EACCES);
            if (args->size() != 1 || *d == privileged_domain) return sys_error(EINVAL);
            if (!introduced(*d)) return sys_error(ENOENT);
            release(*d);
            return std::string{"OK\0", 3};
        }
        default: return sys_error(EINVAL);
        }
    }

    void release(domid_t d) {
        std::vector<conn_id> mine;
        for (auto const& [id, cd] : conns_)
            if (cd == d) mine.push_back(id);
        domains_.erase(d);  // first, so that dropping its last connection fires nothing more
        for (auto const id : mine) drop(id);
        grants_.drop_domain(d);
        released_.push_back(d);
        xs_.fire_special("@releaseDomain");
    }

    auto hypervisor_op(domid_t dom, conn_id c, message const& m, std::vector<io::unique_fd> fds,
                       std::vector<io::unique_fd>& reply_fds) -> result<std::string> {
        auto args = split_strings(m.payload);
        if (!args || args->empty()) return sys_error(EINVAL);
        auto const& a = *args;
        auto const flag = [](std::string_view s) -> std::optional<bool> {
            if (s == "0" || s == "1") return s == "1";
            return std::nullopt;
        };
        auto const refs_from = [&](std::size_t first) -> std::optional<std::vector<grant_ref_t>> {
            std::vector<grant_ref_t> refs;
            for (auto const s : std::span{a}.subspan(first)) {
                auto r = parse_decimal<grant_ref_t>(s);
                if (!r) return std::nullopt;
                refs.push_back(*r);
            }
            return refs;
        };
        auto const port_reply = [&](result<event_channels::bound_port> p) -> result<std::string> {
            if (!p) return std::unexpected{p.error()};
            reply_fds.push_back(std::move(p->wait));
            reply_fds.push_back(std::move(p->notify));
            reply_fds.push_back(std::move(p->words));
            return std::to_string(p->port) + '\0';
        };
        switch (static_cast<msg_type>(m.type())) {
        case msg_type::gnt_share: {
            auto const grantee = arg_domid(a[0]);
            auto const count = a.size() == 3 ? parse_decimal<std::size_t>(a[1]) : std::nullopt;
            auto const writable = a.size() == 3 ? flag(a[2]) : std::nullopt;
            if (!grantee || !count || !writable || fds.size() != 1) return sys_error(EINVAL);
            auto refs = grants_.share(dom, c, *grantee, *count, *writable, std::move(fds[0]));
            if (!refs) return std::unexpected{refs.error()};
            std::string out;
            for (auto const r : *refs) out.append(std::to_string(r)).push_back('\0');
            return out;
        }
        case msg_type::gnt_map: {
            auto const granter = arg_domid(a[0]);
            auto const writable = a.size() >= 3 ? flag(a[1]) : std::nullopt;
            auto const refs = a.size() >= 3 ? refs_from(2) : std::nullopt;
            if (!granter || !writable || !refs) return sys_error(EINVAL);
            auto mapped = grants_.map(dom, *granter, *writable, *refs);
            if (!mapped) return std::unexpected{mapped.error()};
            std::string out;
            for (auto const& [fd, page] : mapped->pages)
                out.append(std::to_string(fd)).append(1, '\0').append(std::to_string(page)).push_back('\0');
            reply_fds = std::move(mapped->fds);
            return out;
        }
        case msg_type::gnt_end: {
            auto const refs = refs_from(0);
            if (!refs) return sys_error(EINVAL);
            if (auto r = grants_.end(dom, *refs); !r) return std::unexpected{r.error()};
            return std::string{"OK\0", 3};
        }
        case msg_type::evt_alloc_unbound: {
            auto const remote = arg_domid(a[0]);
            if (!remote || a.size() != 1) return sys_error(EINVAL);
            if (!introduced(*remote)) return sys_error(ESRCH);
            return port_reply(ports_.alloc_unbound(dom, c, *remote));
        }
        case msg_type::evt_bind: {
            auto const remote = arg_domid(a[0]);
            auto const rport = a.size() == 2 ? parse_decimal<evtchn_port_t>(a[1]) : std::nullopt;
            if (!remote || !rport) return sys_error(EINVAL);
            return port_reply(ports_.bind(dom, c, *remote, *rport));
        }
        case msg_type::evt_unbind: {
            auto const port = parse_decimal<evtchn_port_t>(a[0]);
            if (!port || a.size() != 1) return sys_error(EINVAL);
            if (auto r = ports_.unbind(dom, c, *port); !r) return std::unexpected{r.error()};
            return std::string{"OK\0", 3};
        }
        default: return sys_error(EINVAL);
        }
    }

    xs_service xs_;
    grant_table grants_;
    event_channels ports_;
    std::map<domid_t, std::size_t> domains_;  // introduced domains -> live connections
    std::map<conn_id, domid_t> conns_;
    conn_id next_conn_ = 0;
    std::vector<domid_t> introduced_, released_;
    std::vector<conn_id> dropped_;
};

}  // namespace xtpm::hv::sim
