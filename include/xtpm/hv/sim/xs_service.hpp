// The xenstore requests of the simulated hypervisor (docs/misc/xenstore.txt): READ, WRITE,
// MKDIR, RM, DIRECTORY, GET/SET_PERMS on the tree, transactions (a private copy of the whole
// store, as the spec describes; commit fails with EAGAIN when a node the transaction looked
// at changed since it started) and watches (fire once on registration, then on every change
// at or below the path, including removal; only for nodes the watcher may read).
#pragma once

#include <xtpm/hv/sim/grant_table.hpp>
#include <xtpm/hv/sim/xs_tree.hpp>

#include <map>
#include <memory>

namespace xtpm::hv::sim {

// A packet for one connection, with descriptors to pass along (SCM_RIGHTS).
struct outgoing {
    conn_id to;
    std::vector<std::byte> bytes;
    std::vector<io::unique_fd> fds;
};

// C xenstored defaults for unprivileged domains: quota-max-transaction 10, quota-max-watch 128.
inline constexpr std::size_t max_transactions_per_connection = 10;
inline constexpr std::size_t max_watches_per_connection = 128;

class xs_service {
public:
    explicit xs_service(xs_quota q = {}) : tree_{q} {}

    void attach(conn_id c, domid_t d) { conns_.emplace(c, connection{d, {}, {}}); }
    void detach(conn_id c) { conns_.erase(c); }
    auto tree() -> xs_tree& { return tree_; }
    auto outbox() -> std::vector<outgoing>& { return out_; }

    static auto handles(std::uint32_t type) -> bool {
        switch (static_cast<msg_type>(type)) {
        case msg_type::read: case msg_type::write: case msg_type::mkdir: case msg_type::rm:
        case msg_type::directory: case msg_type::get_perms: case msg_type::set_perms:
        case msg_type::watch: case msg_type::unwatch: case msg_type::transaction_start:
        case msg_type::transaction_end: case msg_type::reset_watches:
            return true;
        default:
            return false;
        }
    }

    // The reply payload of one request of connection `c` (a type handles() accepts).
    auto handle(conn_id c, message const& m) -> result<std::string> {
        auto& conn = conns_.at(c);
        auto const type = static_cast<msg_type>(m.type());
        if (type == msg_type::write) return write(conn, m);
        auto args = split_strings(m.payload);
        if (!args) return sys_error(EINVAL);
        auto const& a = *args;
        switch (type) {
        case msg_type::watch: return watch(conn, a);
        case msg_type::unwatch: return unwatch(conn, a);
        case msg_type::reset_watches:
            conn.watches.clear();
            conn.txs.clear();
            return ok();
        case msg_type::transaction_start: return tx_start(conn, m, a);
        case msg_type::transaction_end: return tx_end(conn, m, a);
        default: break;
        }
        auto tx = in_tx(conn, m.header.tx_id);
        if (!tx) return std::unexpected{tx.error()};
        auto& tree = *tx ? (*tx)->tree : tree_;
        if (a.empty()) return sys_error(EINVAL);
        auto path = resolve_path(conn.dom, a[0]);
        if (!path) return std::unexpected{path.error()};
        std::vector<xs_change> changes;
        result<void> done;
        switch (type) {
        case msg_type::read:
            if (a.size() != 1) return sys_error(EINVAL);
            return tree.read(conn.dom, *path);
        case msg_type::directory: {
            if (a.size() != 1) return sys_error(EINVAL);
            auto names = tree.directory(conn.dom, *path);
            if (!names) return std::unexpected{names.error()};
            std::string out;
            for (auto const& n : *names) out.append(n).push_back('\0');
            return out;
        }
        case msg_type::get_perms: {
            if (a.size() != 1) return sys_error(EINVAL);
            auto perms = tree.get_perms(conn.dom, *path);
            if (!perms) return std::unexpected{perms.error()};
            std::string out;
            for (auto const& p : *perms) out.append(perm_string(p)).push_back('\0');
            return out;
        }
        case msg_type::mkdir:
            if (a.size() != 1) return sys_error(EINVAL);
            done = tree.mkdir(conn.dom, *path, changes);
            break;
        case msg_type::rm:
            if (a.size() != 1) return sys_error(EINVAL);
            done = tree.remove(conn.dom, *path, changes);
            break;
        case msg_type::set_perms: {
            std::vector<xs_permission> perms;
            for (auto const s : std::span{a}.subspan(1)) {
                auto p = parse_perm(s);
                if (!p) return sys_error(EINVAL);
                perms.push_back(*p);
            }
            done = tree.set_perms(conn.dom, *path, perms, changes);
            if (done && *tx) (*tx)->log.push_back({type, *path, {}, std::move(perms)});
            if (!done) return std::unexpected{done.error()};
            if (!*tx) fire(changes);
            return ok();
        }
        default: return sys_error(EINVAL);
        }
        if (!done) return std::unexpected{done.error()};
        if (*tx) (*tx)->log.push_back({type, *path, {}, {}});
        else fire(changes);
        return ok();
    }

    // Special watch events (@introduceDomain, @releaseDomain): privileged watchers only.
    void fire_special(std::string_view name) {
        for (auto& [id, conn] : conns_) {
            if (conn.dom != privileged_domain) continue;
            for (auto const& w : conn.watches)
                if (w.abs == name) event(id, name, w.token);
        }
    }

private:
    struct watch_rec {
        std::string path;  // as registered (relative stays relative in events)
        std::string abs;   // resolved, or the special name
        std::string token;
    };
    struct op {
        msg_type kind;
        std::string path;
        std::string value;
        std::vector<xs_permission> perms;
    };
    struct transaction {
        explicit transaction(xs_tree const& t) : tree{t} { tree.observe_into(&seen); }
        transaction(transaction const&) = delete;
        auto operator=(transaction const&) -> transaction& = delete;
        xs_tree tree;
        xs_tree::observations seen;
        std::vector<op> log;
    };
    struct connection {
        domid_t dom;
        std::vector<watch_rec> watches;
        std::map<xs_tx_t, std::unique_ptr<transaction>> txs;
    };

    static auto ok() -> std::string { return {"OK\0", 3}; }

    auto in_tx(connection& conn, xs_tx_t id) -> result<transaction*> {
        if (id == no_tx) return nullptr;
        auto const it = conn.txs.find(id);
        if (it == conn.txs.end()) return sys_error(ENOENT);
        return it->second.get();
    }

    // WRITE is "<path>|<value|>": the value is raw bytes up to the end of the payload.
    auto write(connection& conn, message const& m) -> result<std::string> {
        auto const all = as_view(m.payload);
        auto const nul = all.find('\0');
        if (nul == std::string_view::npos) return sys_error(EINVAL);
        auto path = resolve_path(conn.dom, all.substr(0, nul));
        if (!path) return std::unexpected{path.error()};
        auto const value = all.substr(nul + 1);
        auto tx = in_tx(conn, m.header.tx_id);
        if (!tx) return std::unexpected{tx.error()};
        std::vector<xs_change> changes;
        auto done = (*tx ? (*tx)->tree : tree_).write(conn.dom, *path, value, changes);
        if (!done) return std::unexpected{done.error()};
        if (*tx) (*tx)->log.push_back({msg_type::write, *path, std::string{value}, {}});
        else fire(changes);
        return ok();
    }

    auto tx_start(connection& conn, message const& m, std::vector<std::string_view> const& a) -> result<std::string> {
        if (m.header.tx_id != no_tx || a.size() > 1 || (a.size() == 1 && !a[0].empty())) return sys_error(EINVAL);
        if (conn.dom != privileged_domain && conn.txs.size() >= max_transactions_per_connection)
            return sys_error(ENOSPC);
        do ++next_tx_;
        while (next_tx_ == no_tx);
        conn.txs.emplace(next_tx_, std::make_unique<transaction>(tree_));
        return std::to_string(next_tx_) + '\0';
    }

    auto tx_end(connection& conn, message const& m, std::vector<std::string_view> const& a) -> result<std::string> {
        if (a.size() != 1 || (a[0] != "T" && a[0] != "F")) return sys_error(EINVAL);
        auto const it = conn.txs.find(m.header.tx_id);
        if (m.header.tx_id == no_tx || it == conn.txs.end()) return sys_error(ENOENT);
        auto tx = std::move(it->second);
        conn.txs.erase(it);
        if (a[0] == "F") return ok();
        for (auto const& [path, gen] : tx->seen)
            if (tree_.gen_of(path) != gen) return sys_error(EAGAIN);
        // Nothing the transaction looked at changed, so replaying its operations gives the
        // same results; on a copy, so that a failure (a quota) leaves the store untouched.
        xs_tree next = tree_;
        std::vector<xs_change> changes;
        for (auto const& o : tx->log) {
            result<void> r;
            switch (o.kind) {
            case msg_type::write: r = next.write(conn.dom, o.path, o.value, changes); break;
            case msg_type::mkdir: r = next.mkdir(conn.dom, o.path, changes); break;
            case msg_type::rm: r = next.remove(conn.dom, o.path, changes); break;
            default: r = next.set_perms(conn.dom, o.path, o.perms, changes); break;
            }
            if (!r) return std::unexpected{r.error()};
        }
        tree_ = std::move(next);
        fire(changes);
        return ok();
    }

    auto watch_target(connection const& conn, std::string_view p) -> result<std::string> {
        if (p.starts_with('@')) {
            if (p.size() > rel_path_max || !valid_path_syntax(p)) return sys_error(EINVAL);
            return std::string{p};
        }
        return resolve_path(conn.dom, p);
    }

    auto watch(connection& conn, std::vector<std::string_view> const& a) -> result<std::string> {
        if (a.size() != 2) return sys_error(EINVAL);
        auto abs = watch_target(conn, a[0]);
        if (!abs) return std::unexpected{abs.error()};
        for (auto const& w : conn.watches)
            if (w.path == a[0] && w.token == a[1]) return sys_error(EEXIST);
        if (conn.dom != privileged_domain && conn.watches.size() >= max_watches_per_connection)
            return sys_error(E2BIG);
        conn.watches.push_back({std::string{a[0]}, std::move(*abs), std::string{a[1]}});
        pending_initial_ = true;  // the caller sends the reply, then initial_event()
        return ok();
    }

    auto unwatch(connection& conn, std::vector<std::string_view> const& a) -> result<std::string> {
        if (a.size() != 2) return sys_error(EINVAL);
        auto const n = std::erase_if(conn.watches, [&](watch_rec const& w) { return w.path == a[0] && w.token == a[1]; });
        if (n == 0) return sys_error(ENOENT);
        return ok();
    }

public:
    // After the reply to a successful WATCH: its first event, with the path as registered.
    void after_reply(conn_id c) {
        if (!pending_initial_) return;
        pending_initial_ = false;
        auto const& w = conns_.at(c).watches.back();
        event(c, w.path, w.token);
    }

private:
    void fire(std::vector<xs_change> const& changes) {
        for (auto const& ch : changes) {
            for (auto& [id, conn] : conns_) {
                if (!xs_tree::access(conn.dom, ch.perms).read) continue;
                auto const home = domain_home(conn.dom) + "/";
                for (auto const& w : conn.watches) {
                    if (w.abs.starts_with('@')) continue;
                    std::string_view epath;
                    if (is_child(ch.path, w.abs)) epath = ch.path;
                    else if (ch.removal && is_child(w.abs, ch.path)) epath = w.abs;  // a parent went away
                    else continue;
                    if (!w.path.starts_with('/')) epath.remove_prefix(home.size());  // relative watch
                    event(id, epath, w.token);
                }
            }
        }
    }

    void event(conn_id to, std::string_view path, std::string_view token) {
        auto msg = message_builder{}.str(path).str(token).finish(msg_type::watch_event, 0, 0);
        // A deep path with a long token can exceed the payload limit: that event is dropped.
        if (msg) out_.push_back({to, std::move(*msg), {}});
    }

    xs_tree tree_;
    std::map<conn_id, connection> conns_;
    std::vector<outgoing> out_;
    xs_tx_t next_tx_ = 0;
    bool pending_initial_ = false;
};

}  // namespace xtpm::hv::sim
