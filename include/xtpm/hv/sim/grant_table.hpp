// The simulated grant table (Xen: xen/include/public/grant_table.h, gntdev/gntalloc): per
// granting domain, refs naming pages of a sealed memfd that the granter created, the grantee
// and the access. Mapping hands out the memfd itself (read-only grants: a read-only reopen of a
// file sealed against future writes, so PROT_WRITE is refused). Ending a grant revokes future
// maps; existing mappings stay, as with a busy grant in Xen.
#pragma once

#include <xtpm/hv/sim/wire.hpp>
#include <xtpm/io/fd.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>

namespace xtpm::hv::sim {

using conn_id = std::uint64_t;

// Xen reserves the first grant entries for the toolstack (GNTTAB_NR_RESERVED_ENTRIES).
inline constexpr grant_ref_t first_grant_ref = 8;
// Grant entries per domain: far above what a split driver needs, and a bound on daemon memory.
inline constexpr std::size_t max_grants_per_domain = 4096;

class grant_table {
public:
    // Seals a granter must have set (memfd_create(2), fcntl F_ADD_SEALS): a fixed size, so a
    // mapper never takes SIGBUS from a shrunk file, and no later seal that could break maps.
    static constexpr int required_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    static constexpr int write_seals = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;

    // Register `count` pages of `memfd` granted by (granter, conn) to `grantee`.
    auto share(domid_t granter, conn_id conn, domid_t grantee, std::size_t count, bool writable,
               io::unique_fd memfd) -> result<std::vector<grant_ref_t>> {
        if (count == 0 || count > max_pages_per_call || !memfd) return sys_error(EINVAL);
        int const seals = ::fcntl(memfd.get(), F_GET_SEALS);
        if (seals < 0) return sys_error(EINVAL);  // not a memfd
        if ((seals & required_seals) != required_seals) return sys_error(EINVAL);
        // A read-only grant must be sealed against writes; a writable one must not be.
        if (writable == ((seals & write_seals) != 0)) return sys_error(EINVAL);
        struct stat st{};
        if (::fstat(memfd.get(), &st) < 0 || static_cast<std::size_t>(st.st_size) != count * page_size)
            return sys_error(EINVAL);
        auto& tab = table_[granter];
        if (tab.size() + count > max_grants_per_domain) return sys_error(ENOSPC);
        auto reg = std::make_shared<region>(std::move(memfd));
        std::vector<grant_ref_t> refs;
        grant_ref_t next = first_grant_ref;
        for (std::size_t i = 0; i < count; ++i) {
            while (tab.contains(next)) ++next;  // lowest free ref, as Xen's free list tends to give
            tab.emplace(next, entry{conn, grantee, writable, reg, static_cast<std::uint32_t>(i)});
            refs.push_back(next);
        }
        return refs;
    }

    struct mapped {
        std::vector<io::unique_fd> fds;               // one per distinct memfd
        std::vector<std::pair<std::size_t, std::uint32_t>> pages;  // per ref: fd index, page
    };

    // Every ref must be granted by `granter` to `grantee` (the caller's domain), and writable
    // if asked so; all or nothing. EPERM for a ref not ours or read-only, EINVAL for bad refs.
    auto map(domid_t grantee, domid_t granter, bool writable, std::span<grant_ref_t const> refs) -> result<mapped> {
        if (refs.empty() || refs.size() > max_pages_per_call) return sys_error(EINVAL);
        auto const t = table_.find(granter);
        if (t == table_.end()) return sys_error(EINVAL);
        mapped out;
        std::vector<region*> seen;
        for (auto const ref : refs) {
            auto const e = t->second.find(ref);
            if (e == t->second.end()) return sys_error(EINVAL);
            if (e->second.grantee != grantee || (writable && !e->second.writable)) return sys_error(EPERM);
            auto* r = e->second.reg.get();
            auto const at = std::ranges::find(seen, r);
            if (at == seen.end()) {
                if (seen.size() == max_fds_per_message) return sys_error(E2BIG);
                auto fd = writable ? dup_fd(r->rw.get()) : r->read_only();
                if (!fd) return std::unexpected{fd.error()};
                out.fds.push_back(std::move(*fd));
                seen.push_back(r);
            }
            out.pages.emplace_back(static_cast<std::size_t>(std::ranges::find(seen, r) - seen.begin()), e->second.page);
        }
        return out;
    }

    // End grants of the caller's domain; all refs are checked before any ends.
    auto end(domid_t granter, std::span<grant_ref_t const> refs) -> result<void> {
        auto const t = table_.find(granter);
        if (refs.empty() || t == table_.end()) return sys_error(EINVAL);
        for (auto const ref : refs)
            if (!t->second.contains(ref)) return sys_error(EINVAL);
        for (auto const ref : refs) t->second.erase(ref);
        return {};
    }

    // A connection closed: its grants end (gntalloc handle closed / domain destroyed).
    void drop_connection(conn_id conn) {
        for (auto& [dom, tab] : table_) std::erase_if(tab, [&](auto const& kv) { return kv.second.owner == conn; });
    }
    void drop_domain(domid_t d) { table_.erase(d); }

    [[nodiscard]] auto count(domid_t granter) const -> std::size_t {
        auto const t = table_.find(granter);
        return t == table_.end() ? 0 : t->second.size();
    }

private:
    static auto dup_fd(int fd) -> result<io::unique_fd> {
        io::unique_fd d{::fcntl(fd, F_DUPFD_CLOEXEC, 0)};
        if (!d) return io::sys_error();
        return d;
    }

    struct region {
        explicit region(io::unique_fd fd) : rw{std::move(fd)} {}
        io::unique_fd rw;
        io::unique_fd ro;
        // A read-only open of the same file: mmap(PROT_WRITE, MAP_SHARED) on it fails with EACCES.
        auto read_only() -> result<io::unique_fd> {
            if (!ro) {
                auto const path = std::string{"/proc/self/fd/"}.append(std::to_string(rw.get()));
                ro.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
                if (!ro) return io::sys_error();
            }
            return dup_fd(ro.get());
        }
    };
    struct entry {
        conn_id owner;
        domid_t grantee;
        bool writable;
        std::shared_ptr<region> reg;
        std::uint32_t page;
    };

    std::map<domid_t, std::map<grant_ref_t, entry>> table_;
};

}  // namespace xtpm::hv::sim
