// Granted pages on the sim_hv client side. mapped_pages: pages of one or more memfds mapped
// contiguously in ref order (a PROT_NONE reservation, then MAP_FIXED page by page), as
// xengnttab_map_domain_grant_refs() maps foreign grants. shared_pages: our own pages granted
// to another domain, ended (GNT_END) when destroyed, as xengntshr_unshare() does.
#pragma once

#include <xtpm/hv/sim/channel.hpp>

#include <memory>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

namespace xtpm::hv::sim {

class mapped_pages {
public:
    mapped_pages() noexcept = default;
    mapped_pages(mapped_pages&& o) noexcept
        : base_{std::exchange(o.base_, nullptr)}, size_{std::exchange(o.size_, 0)} {}
    auto operator=(mapped_pages&& o) noexcept -> mapped_pages& {
        if (this != &o) {
            unmap();
            base_ = std::exchange(o.base_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    mapped_pages(mapped_pages const&) = delete;
    auto operator=(mapped_pages const&) -> mapped_pages& = delete;
    ~mapped_pages() { unmap(); }

    [[nodiscard]] auto bytes() noexcept -> std::span<std::byte> { return {base_, size_}; }

    // Page i of the result is page pages[i].second of fds[pages[i].first].
    static auto map(std::span<io::unique_fd const> fds, std::span<std::pair<std::size_t, std::uint32_t> const> pages,
                    bool writable) -> result<mapped_pages> {
        if (pages.empty() || ::sysconf(_SC_PAGESIZE) != static_cast<long>(page_size)) return fail(errc::bad_value);
        mapped_pages m;
        void* const base = ::mmap(nullptr, pages.size() * page_size, PROT_NONE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) return io::sys_error();
        m.base_ = static_cast<std::byte*>(base);
        m.size_ = pages.size() * page_size;
        int const prot = PROT_READ | (writable ? PROT_WRITE : 0);
        for (std::size_t i = 0; i < pages.size(); ++i) {
            auto const [fd, page] = pages[i];
            if (fd >= fds.size()) return fail(errc::bad_value);
            // Replaces page i of the reservation: contiguous in ref order.
            void* const at = ::mmap(m.base_ + i * page_size, page_size, prot, MAP_SHARED | MAP_FIXED, fds[fd].get(),
                                    static_cast<off_t>(page) * static_cast<off_t>(page_size));
            if (at == MAP_FAILED) return io::sys_error();
        }
        return m;
    }

private:
    void unmap() noexcept {
        if (base_) ::munmap(base_, size_);
        base_ = nullptr;
        size_ = 0;
    }
    std::byte* base_ = nullptr;
    std::size_t size_ = 0;
};

class shared_pages {
public:
    shared_pages() noexcept = default;
    shared_pages(mapped_pages pages, std::vector<grant_ref_t> refs, std::weak_ptr<channel> ch) noexcept
        : pages_{std::move(pages)}, refs_{std::move(refs)}, ch_{std::move(ch)} {}
    shared_pages(shared_pages&& o) noexcept
        : pages_{std::move(o.pages_)}, refs_{std::exchange(o.refs_, {})}, ch_{std::move(o.ch_)} {}
    auto operator=(shared_pages&& o) noexcept -> shared_pages& {
        if (this != &o) {
            end();
            pages_ = std::move(o.pages_);
            refs_ = std::exchange(o.refs_, {});
            ch_ = std::move(o.ch_);
        }
        return *this;
    }
    ~shared_pages() { end(); }

    [[nodiscard]] auto bytes() noexcept -> std::span<std::byte> { return pages_.bytes(); }
    [[nodiscard]] auto refs() const noexcept -> std::span<grant_ref_t const> { return refs_; }

    // A fresh zeroed memfd of `count` pages, mapped writable here, sealed so that its size
    // never changes and, for a read-only grant, so that no one can map it writable again.
    static auto create(std::size_t count, bool writable) -> result<std::pair<io::unique_fd, mapped_pages>> {
        io::unique_fd fd{::memfd_create("xtpm-grant", MFD_CLOEXEC | MFD_ALLOW_SEALING)};
        if (!fd) return io::sys_error();
        if (::ftruncate(fd.get(), static_cast<off_t>(count * page_size)) < 0) return io::sys_error();
        std::vector<io::unique_fd> one;
        one.push_back(std::move(fd));
        std::vector<std::pair<std::size_t, std::uint32_t>> pages;
        for (std::uint32_t i = 0; i < count; ++i) pages.emplace_back(0, i);
        auto m = mapped_pages::map(one, pages, true);
        if (!m) return std::unexpected{m.error()};
        int const seals = F_SEAL_SHRINK | F_SEAL_GROW | (writable ? 0 : F_SEAL_FUTURE_WRITE) | F_SEAL_SEAL;
        if (::fcntl(one[0].get(), F_ADD_SEALS, seals) < 0) return io::sys_error();
        return std::pair{std::move(one[0]), std::move(*m)};
    }

private:
    void end() noexcept {
        if (refs_.empty()) return;
        if (auto ch = ch_.lock()) {
            message_builder b;
            for (auto const r : refs_) b.num(r);
            (void)ch->call(msg_type::gnt_end, no_tx, b);  // a daemon that is gone has ended them
        }
        refs_.clear();
    }

    mapped_pages pages_;
    std::vector<grant_ref_t> refs_;
    std::weak_ptr<channel> ch_;
};

}  // namespace xtpm::hv::sim
