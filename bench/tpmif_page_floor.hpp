// The shared-page floor (toolchain.md 6.5, bench_shm_pingpong): what any tpmif transport
// between two processes costs at least on this machine. A forked child shares one 4 KiB page
// laid out as struct tpmif_shared_page (xen/io/tpmif.h) and a pair of eventfds with the bench,
// waits with a blocking read, copies the request out, writes a canned response as long as a
// real TPM's (commands.hpp) and FINISH, and notifies: the sim_hv event-channel mechanism
// (one eventfd per direction) with no xenstore, no handshake and no TPM.
// Polling mode (`poll-floor`): each end looks at the state byte with sched_yield() between
// looks (io/spin.hpp) for 50 us before it blocks on its eventfd, and a notify is written only
// to an end that said it sleeps (a flag in the page, Dekker-style): while both ends are
// active a round trip is two context switches and nothing else, the least two processes can
// spend on one CPU. (Idle, the child sleeps, so it does not disturb other contestants.)
#pragma once

#include "tpmif_floor.hpp"

#include <xtpm/io/spin.hpp>

#include <atomic>

#include <sys/eventfd.h>
#include <sys/mman.h>

namespace xtpm::bench {

class page_floor {
public:
    enum class mode : std::uint8_t { blocking, polling };

    static auto start(mode m = mode::blocking) -> result<page_floor> {
        page_floor f;
        f.mode_ = m;
        void* const mem = ::mmap(nullptr, proto::tpmif::page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) return io::sys_error();
        f.page_ = {static_cast<std::byte*>(mem), proto::tpmif::page_size};
        f.to_child_.reset(::eventfd(0, EFD_CLOEXEC));
        f.to_parent_.reset(::eventfd(0, EFD_CLOEXEC));
        if (!f.to_child_ || !f.to_parent_) return io::sys_error();
        auto canned = build_canned_responses();
        if (!canned) return std::unexpected{canned.error()};
        auto pid = tpmif_floor::fork_responder();
        if (!pid) return std::unexpected{pid.error()};
        f.pid_ = *pid;
        if (f.pid_ == 0) f.serve(*canned);  // never returns
        return f;
    }

    page_floor() = default;
    page_floor(page_floor&& o) noexcept
        : page_{std::exchange(o.page_, {})}, to_child_{std::move(o.to_child_)}, to_parent_{std::move(o.to_parent_)},
          pid_{std::exchange(o.pid_, -1)}, mode_{o.mode_} {}
    page_floor(page_floor const&) = delete;
    auto operator=(page_floor&& o) noexcept -> page_floor& {
        if (this != &o) {
            stop();
            page_ = std::exchange(o.page_, {});
            to_child_ = std::move(o.to_child_);
            to_parent_ = std::move(o.to_parent_);
            pid_ = std::exchange(o.pid_, -1);
            mode_ = o.mode_;
        }
        return *this;
    }
    auto operator=(page_floor const&) -> page_floor& = delete;
    ~page_floor() { stop(); }

    [[nodiscard]] auto pid() const -> pid_t { return pid_; }

    // Copy in, length, SUBMIT, notify; block until notified; copy the response out.
    auto roundtrip(wire::bytes_view cmd) -> result<wire::bytes_view> {
        using proto::tpmif::page_state;
        if (auto r = tpmif_floor::submit(page_, cmd); !r) return std::unexpected{r.error()};
        if (auto r = signal(to_child_.get()); !r) return std::unexpected{r.error()};
        if (auto r = await(to_parent_.get(), page_state::finish); !r) return std::unexpected{r.error()};
        if (!tpmif_floor::holds(page_, page_state::finish)) return fail(errc::device_failure);
        return tpmif_floor::take_response(page_, out_);
    }

private:
    void stop() noexcept {
        tpmif_floor::kill_responder(pid_);
        if (!page_.empty()) ::munmap(page_.data(), page_.size());
        page_ = {};
    }

    // The sleeping flags of polling mode, past anything the bench writes in the page.
    static constexpr std::size_t child_sleeps = 3072, parent_sleeps = 3076;
    [[nodiscard]] auto sleeps_flag(int fd) const -> std::atomic_ref<std::uint32_t> {
        auto* p = page_.data() + (fd == to_child_.get() ? child_sleeps : parent_sleeps);
        return std::atomic_ref<std::uint32_t>{*reinterpret_cast<std::uint32_t*>(p)};
    }

    auto signal(int fd) -> result<void> {
        if (mode_ == mode::polling) {
            std::atomic_thread_fence(std::memory_order_seq_cst);  // the state store before the flag load
            if (sleeps_flag(fd).load() == 0) return {};
        }
        std::uint64_t one = 1;
        if (::write(fd, &one, sizeof one) != sizeof one) return io::sys_error();
        return {};
    }
    auto await(int fd, proto::tpmif::page_state want) -> result<void> {
        if (mode_ == mode::polling) {
            auto const there = [&] { return tpmif_floor::holds(page_, want); };
            while (!io::spin_until(there, std::chrono::microseconds{50})) {
                auto flag = sleeps_flag(fd);
                flag.store(1);  // seq_cst, then look again: a notifier either sees the flag or we see its state
                bool const ready = there();
                std::uint64_t v;
                if (!ready && ::read(fd, &v, sizeof v) < 0 && errno != EINTR) return io::sys_error();
                flag.store(0);
                if (ready) break;
                if (stop_requested) return fail(errc::canceled);
            }
            return {};
        }
        std::uint64_t v;
        for (;;) {
            if (::read(fd, &v, sizeof v) == sizeof v) return {};
            if (errno != EINTR) return io::sys_error();
            if (stop_requested) return fail(errc::canceled);
        }
    }

    [[noreturn]] void serve(canned_responses const& canned) {
        std::array<std::byte, proto::tpmif::single_page_capacity> req{};
        for (;;) {
            if (!await(to_child_.get(), proto::tpmif::page_state::submit)) ::_exit(1);
            if (!tpmif_floor::answer(page_, req, canned)) continue;
            if (!signal(to_parent_.get())) ::_exit(1);
        }
    }

    wire::bytes_span page_;
    io::unique_fd to_child_, to_parent_;
    pid_t pid_ = -1;
    mode mode_ = mode::blocking;
    std::array<std::byte, proto::tpmif::page_size> out_{};
};

}  // namespace xtpm::bench
