// The pending bits of one simulated event channel, in a page both ends map: Xen keeps a
// port's pending bit in shared memory (shared_info evtchn_pending[], event_channel.h) and
// sends an upcall only when the bit goes 0 -> 1. sim_hv does the same: notify() sets the
// peer's word and writes its eventfd only on that transition, so a peer that is busy or
// polling its page is not signalled again and again (one syscall per notify saved).
// Word 0 is the pending bit of the port that alloc_unbound made, word 1 of the port bound
// to it. The page is shared with the peer, which may scribble on it: that can only delay
// or repeat notifications *from* that peer (the eventfd stays authoritative for wake-ups).
#pragma once

#include <xtpm/config.hpp>
#include <xtpm/hv/concepts.hpp>
#include <xtpm/io/fd.hpp>

#include <atomic>
#include <cstdint>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

namespace xtpm::hv::sim {

class pending_words {
public:
    pending_words() noexcept = default;
    pending_words(pending_words&& o) noexcept : words_{std::exchange(o.words_, nullptr)} {}
    auto operator=(pending_words&& o) noexcept -> pending_words& {
        std::swap(words_, o.words_);
        return *this;
    }
    pending_words(pending_words const&) = delete;
    auto operator=(pending_words const&) -> pending_words& = delete;
    ~pending_words() {
        if (words_) ::munmap(words_, page_size);
    }

    // A fresh page (daemon side): the memfd to hand to both ends, and our mapping.
    static auto create() -> result<std::pair<io::unique_fd, pending_words>> {
        io::unique_fd fd{::memfd_create("xtpm-evtchn", MFD_CLOEXEC | MFD_ALLOW_SEALING)};
        if (!fd) return io::sys_error();
        if (::ftruncate(fd.get(), static_cast<off_t>(page_size)) < 0) return io::sys_error();
        if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) return io::sys_error();
        auto m = map(fd.get());
        if (!m) return std::unexpected{m.error()};
        return std::pair{std::move(fd), std::move(*m)};
    }
    static auto map(int fd) -> result<pending_words> {
        void* const p = ::mmap(nullptr, page_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) return io::sys_error();
        pending_words w;
        w.words_ = static_cast<std::uint32_t*>(p);
        return w;
    }

    // Set word i; true if it was clear (the caller then writes the eventfd).
    auto raise(unsigned i) noexcept -> bool { return word(i).exchange(1, std::memory_order_acq_rel) == 0; }
    // Clear word i; true if it was set. Clear only after draining the eventfd: a notify in
    // between then either finds the word set (and we handle it now) or writes the fd again.
    auto take(unsigned i) noexcept -> bool { return word(i).exchange(0, std::memory_order_acq_rel) != 0; }
    [[nodiscard]] auto is_set(unsigned i) const noexcept -> bool {
        return word(i).load(std::memory_order_acquire) != 0;
    }

private:
    [[nodiscard]] auto word(unsigned i) const noexcept -> std::atomic_ref<std::uint32_t> {
        XTPM_ASSERT(words_ && i < 2);
        return std::atomic_ref<std::uint32_t>{words_[i]};
    }
    std::uint32_t* words_ = nullptr;
};

}  // namespace xtpm::hv::sim
