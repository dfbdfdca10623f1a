// The xenstore tree of the simulated hypervisor: nodes with values and permissions,
// path rules and the permission model of docs/misc/xenstore.txt and xenstore-chmod(1)
// (owner has full access, the first entry is the default for others, dom0 is privileged,
// unprivileged domains own what they create), with C xenstored's default quotas.
// Pure data structure: no I/O. Errors are errnos in std::system_category.
#pragma once

#include <xtpm/hv/sim/wire.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace xtpm::hv::sim {

// C xenstored's default quotas, applied to unprivileged domains only (as there).
struct xs_quota {
    std::size_t nodes_per_domain = 1000;  // quota-nodes
    std::size_t entry_size = 2048;        // quota-max-entry-size
    std::size_t perms_per_node = 5;       // quota-nr-perms (entries after the owner's)
};

inline constexpr domid_t privileged_domain = 0;

// (append, not operator+: g++-12 -O3 reports a false -Wrestrict on "literal" + std::string&&)
inline auto domain_home(domid_t d) -> std::string { return std::string{"/local/domain/"}.append(std::to_string(d)); }

// `child` is `parent` or below it (xenstore.txt's child relation; "/" is everyone's parent).
inline auto is_child(std::string_view child, std::string_view parent) -> bool {
    if (parent == "/") return true;
    return child.starts_with(parent) && (child.size() == parent.size() || child[parent.size()] == '/');
}

inline auto parent_of(std::string_view path) -> std::string_view {
    auto const slash = path.rfind('/');
    return slash == 0 ? std::string_view{"/"} : path.substr(0, slash);
}

// Characters and shape of a path (xenstore.txt): alphanumerics and -/_@, no doubled or
// trailing slash, not empty.
inline auto valid_path_syntax(std::string_view p) -> bool {
    if (p.empty()) return false;
    for (char const c : p) {
        bool const ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                        c == '/' || c == '_' || c == '@';
        if (!ok) return false;
    }
    if (p.find("//") != std::string_view::npos) return false;
    return p == "/" || p.back() != '/';
}

// Resolve a node path as domain `self` sent it: absolute as is, relative under
// /local/domain/<self>. EINVAL for bad syntax or a special (@) path.
inline auto resolve_path(domid_t self, std::string_view p) -> result<std::string> {
    if (!valid_path_syntax(p) || p.front() == '@') return sys_error(EINVAL);
    if (p.front() == '/') {
        if (p.size() > abs_path_max) return sys_error(EINVAL);
        return std::string{p};
    }
    if (p.size() > rel_path_max) return sys_error(EINVAL);
    auto abs = domain_home(self) + "/" + std::string{p};
    if (abs.size() > abs_path_max) return sys_error(EINVAL);
    return abs;
}

struct xs_node {
    std::string value;
    std::vector<xs_permission> perms;  // never empty: [0] is the owner and the default
    std::uint64_t gen = 0;             // store generation of the last change (children included)
};

// One modification, for watches: the node's path, whether a subtree went away, and the
// permissions it had (who may see the event).
struct xs_change {
    std::string path;
    bool removal = false;
    std::vector<xs_permission> perms;
};

class xs_tree {
public:
    // Generation each looked-at node had (0 = absent): a transaction's read/write set.
    using observations = std::map<std::string, std::uint64_t, std::less<>>;

    explicit xs_tree(xs_quota q = {}) : quota_{q} {
        nodes_.emplace("/", xs_node{{}, {{privileged_domain, false, false}}, next_gen()});
    }

    void observe_into(observations* o) noexcept { obs_ = o; }
    [[nodiscard]] auto gen_of(std::string_view path) const -> std::uint64_t {
        auto const it = nodes_.find(path);
        return it == nodes_.end() ? 0 : it->second.gen;
    }
    [[nodiscard]] auto size() const noexcept -> std::size_t { return nodes_.size(); }

    static auto access(domid_t who, std::span<xs_permission const> perms) -> xs_permission {
        if (who == privileged_domain || who == perms[0].domain) return {who, true, true};
        for (auto const& p : perms.subspan(1))
            if (p.domain == who) return p;
        return {who, perms[0].read, perms[0].write};
    }

    auto read(domid_t who, std::string_view path) -> result<std::string> {
        auto const* n = find(path);
        if (!n) return missing(who, path);
        if (!access(who, n->perms).read) return sys_error(EACCES);
        return n->value;
    }

    auto directory(domid_t who, std::string_view path) -> result<std::vector<std::string>> {
        auto const* n = find(path);
        if (!n) return missing(who, path);
        if (!access(who, n->perms).read) return sys_error(EACCES);
        std::vector<std::string> out;
        std::string const prefix = path == "/" ? "/" : std::string{path} + "/";
        for (auto it = nodes_.lower_bound(prefix); it != nodes_.end() && it->first.starts_with(prefix); ++it) {
            auto const name = std::string_view{it->first}.substr(prefix.size());
            if (!name.empty() && name.find('/') == std::string_view::npos) out.emplace_back(name);
        }
        return out;
    }

    auto get_perms(domid_t who, std::string_view path) -> result<std::vector<xs_permission>> {
        auto const* n = find(path);
        if (!n) return missing(who, path);
        if (!access(who, n->perms).read) return sys_error(EACCES);
        return n->perms;
    }

    // WRITE creates missing parents with empty values (xenstore.txt).
    auto write(domid_t who, std::string_view path, std::string_view value, std::vector<xs_change>& out)
        -> result<void> {
        if (who != privileged_domain && value.size() > quota_.entry_size) return sys_error(ENOSPC);
        if (auto* n = find(path)) {
            if (!access(who, n->perms).write) return sys_error(EACCES);
            n->value = value;
            n->gen = next_gen();
            out.push_back({std::string{path}, false, n->perms});
            return {};
        }
        auto created = create(who, path);
        if (!created) return std::unexpected{created.error()};
        (*created)->value = value;
        out.push_back({std::string{path}, false, (*created)->perms});
        return {};
    }

    // MKDIR: an existing node is left alone (but must be writable, as in C xenstored).
    auto mkdir(domid_t who, std::string_view path, std::vector<xs_change>& out) -> result<void> {
        if (auto const* n = find(path)) {
            if (!access(who, n->perms).write) return sys_error(EACCES);
            return {};
        }
        auto created = create(who, path);
        if (!created) return std::unexpected{created.error()};
        out.push_back({std::string{path}, false, (*created)->perms});
        return {};
    }

    // RM: the node and its subtree. A missing node is fine if its parent exists.
    auto remove(domid_t who, std::string_view path, std::vector<xs_change>& out) -> result<void> {
        if (path == "/") return sys_error(EINVAL);
        auto const it = nodes_.find(path);
        if (it == nodes_.end()) {
            note(path, 0);
            if (find(parent_of(path))) return {};
            return missing(who, path);
        }
        note(path, it->second.gen);
        if (!access(who, it->second.perms).write) return sys_error(EACCES);
        out.push_back({std::string{path}, true, it->second.perms});
        std::string const prefix = std::string{path} + "/";
        auto last = std::next(it);
        while (last != nodes_.end() && last->first.starts_with(prefix)) ++last;
        for (auto i = it; i != last; ++i) count_owner(i->second.perms[0].domain, -1);
        nodes_.erase(it, last);
        touch(parent_of(path));
        return {};
    }

    auto set_perms(domid_t who, std::string_view path, std::span<xs_permission const> perms,
                   std::vector<xs_change>& out) -> result<void> {
        if (perms.empty()) return sys_error(EINVAL);
        auto* n = find(path);
        if (!n) return missing(who, path);
        bool const privileged = who == privileged_domain;
        if (!privileged && who != n->perms[0].domain) return sys_error(EACCES);  // only the owner
        if (!privileged && perms[0].domain != n->perms[0].domain) return sys_error(EPERM);  // cannot give away
        if (!privileged && perms.size() - 1 > quota_.perms_per_node) return sys_error(ENOSPC);
        count_owner(n->perms[0].domain, -1);
        count_owner(perms[0].domain, +1);
        n->perms.assign(perms.begin(), perms.end());
        n->gen = next_gen();
        out.push_back({std::string{path}, false, n->perms});
        return {};
    }

private:
    auto find(std::string_view path) -> xs_node* {
        auto const it = nodes_.find(path);
        note(path, it == nodes_.end() ? 0 : it->second.gen);
        return it == nodes_.end() ? nullptr : &it->second;
    }

    void note(std::string_view path, std::uint64_t gen) {
        if (obs_) obs_->try_emplace(std::string{path}, gen);
    }

    // A missing node: EACCES if its nearest existing ancestor is unreadable (so absence does
    // not leak), else ENOENT, as C xenstored's errno_from_parents().
    auto missing(domid_t who, std::string_view path) -> std::unexpected<std::error_code> {
        auto p = path;
        while (p != "/") {
            p = parent_of(p);
            if (auto const* n = find(p)) return sys_error(access(who, n->perms).read ? ENOENT : EACCES);
        }
        return sys_error(ENOENT);
    }

    // Create `path` and its missing parents; write access is checked on the nearest existing
    // ancestor. New nodes inherit its permissions; an unprivileged creator becomes the owner.
    auto create(domid_t who, std::string_view path) -> result<xs_node*> {
        std::vector<std::string_view> chain{path};
        auto p = path;
        xs_node* anc = nullptr;
        while (!anc) {
            p = parent_of(p);
            anc = find(p);
            if (!anc) chain.push_back(p);
        }
        if (!access(who, anc->perms).write) return sys_error(EACCES);
        auto perms = anc->perms;
        if (who != privileged_domain) perms[0].domain = who;
        if (who != privileged_domain && owned_[who] + chain.size() > quota_.nodes_per_domain) return sys_error(ENOSPC);
        anc->gen = next_gen();
        xs_node* last = nullptr;
        for (auto i = chain.rbegin(); i != chain.rend(); ++i) {
            last = &nodes_.insert_or_assign(std::string{*i}, xs_node{{}, perms, next_gen()}).first->second;
            count_owner(perms[0].domain, +1);
        }
        return last;
    }

    void touch(std::string_view path) {
        if (auto const it = nodes_.find(path); it != nodes_.end()) it->second.gen = next_gen();
    }
    void count_owner(domid_t d, int delta) {
        auto& c = owned_[d];
        c = delta < 0 ? (c == 0 ? 0 : c - 1) : c + 1;
    }
    auto next_gen() -> std::uint64_t { return ++gen_; }

    std::map<std::string, xs_node, std::less<>> nodes_;
    std::map<domid_t, std::size_t> owned_;
    std::uint64_t gen_ = 0;
    observations* obs_ = nullptr;
    xs_quota quota_;
};

}  // namespace xtpm::hv::sim
