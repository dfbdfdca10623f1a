// sim_tis<Backend>: a register-level model of a TIS FIFO TPM chip (TIS 1.3
// section 5; PTP FIFO interface for the TPM 2.0 flavour): five 4 KiB locality
// windows, TPM_ACCESS arbitration with requestUse, Seize and relinquish, the
// TPM_STS state machine (Idle, Ready, Reception, Execution, Completion) with
// stsValid, Expect, dataAvail, burstCount, responseRetry, commandCancel,
// TPM_INT_*, TPM_INTF_CAPABILITY, TPM_INTERFACE_ID, TPM_DID_VID and TPM_RID.
// Complete commands run on a Backend (tpm_backend.hpp) in a worker thread, so
// dataAvail rises later, as on a real chip. tis_hostile makes it misbehave.
#pragma once

#include <xtpm/mmio/concepts.hpp>
#include <xtpm/mmio/tpm_backend.hpp>
#include <xtpm/proto/tis/registers.hpp>
#include <xtpm/wire/error_response.hpp>

#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace xtpm {

// The ways the model misbehaves (the "TPM Genie" class: a malicious chip or an
// interposer on the bus). Set at any time; each applies from the next access.
enum class tis_hostile : std::uint8_t {
    none,
    burst_zero,          // burstCount reads 0, always
    burst_huge,          // burstCount reads 0xFFFF whatever the FIFO holds
    response_too_large,  // the response's header size field says 1 MiB
    response_too_small,  // the response's header size field says 6
    data_avail_stuck,    // dataAvail stays set after the response; the FIFO keeps giving 0xA5
    data_avail_never,    // commands complete but dataAvail never rises
    data_avail_early,    // dataAvail drops when half the response is read
    sts_valid_never,     // stsValid reads 0, always
    locality_never,      // requestUse and Seize are never granted
    garbage,             // every register read returns random bits
};

struct sim_tis_options {
    wire::family family = wire::family::tpm2;  // PTP (TPM 2.0) or TIS 1.3 (TPM 1.2) registers
    std::size_t buffer_size = 4096;            // the chip's command buffer
    std::uint16_t max_burst = 64;              // burstCount ceiling
    bool vary_burst = true;                    // each STS read draws burstCount from [1, max_burst]
    std::uint32_t seed = 0x5EED;               // for burstCount and garbage
    unsigned sts_valid_lag = 1;                // STS reads with stsValid 0 after each FIFO write
    std::uint32_t did_vid = 0x0001'5854;       // synthetic: vendor 0x5854 ("XT"), device 1
    std::uint8_t rid = 1;
};

namespace detail {

// Everything behind one mutex; the worker thread runs the backend outside it.
template <tpm_backend Backend>
class sim_tis_chip {
public:
    sim_tis_chip(Backend backend, sim_tis_options const& opts)
        : backend_{std::move(backend)}, opts_{opts}, rng_{opts.seed != 0 ? opts.seed : 1U} {
        XTPM_ASSERT(opts.buffer_size >= wire::header_size && opts.max_burst > 0);
        worker_ = std::thread{[this] { work(); }};
    }
    sim_tis_chip(sim_tis_chip const&) = delete;
    auto operator=(sim_tis_chip const&) -> sim_tis_chip& = delete;
    ~sim_tis_chip() {
        {
            std::lock_guard lock{mu_};
            stop_ = true;
        }
        cv_.notify_all();
        worker_.join();  // a backend call in flight finishes first
    }

    // One bus cycle of `width` (1 or 4) bytes; reserved bytes read 0xFF.
    auto read(std::uint8_t loc, std::uint16_t off, unsigned width) -> std::uint32_t {
        check(loc, off, width);
        std::lock_guard lock{mu_};
        if (hostile_ == tis_hostile::garbage) return width == 4 ? random() : random() & 0xFF;
        std::uint32_t v = 0;
        if (is_fifo(off)) {
            for (unsigned i = 0; i < width; ++i) v |= std::uint32_t{pop(loc)} << (8 * i);
            return v;
        }
        auto const base = static_cast<std::uint16_t>(off & ~3U);
        auto const dword = read_register(loc, base) >> (8 * (off - base));
        return width == 4 ? dword : dword & 0xFF;
    }

    void write(std::uint8_t loc, std::uint16_t off, unsigned width, std::uint32_t v) {
        check(loc, off, width);
        std::lock_guard lock{mu_};
        if (is_fifo(off)) {
            for (unsigned i = 0; i < width; ++i) push(loc, static_cast<std::uint8_t>(v >> (8 * i)));
            return;
        }
        auto const base = static_cast<std::uint16_t>(off & ~3U);
        auto const shift = 8 * (off - base);
        auto const mask = (width == 4 ? 0xFFFFFFFFU : 0xFFU) << shift;
        write_register(loc, base, (v << shift) & mask, mask);
    }

    void set_hostile(tis_hostile h) {
        std::lock_guard lock{mu_};
        hostile_ = h;
    }
    [[nodiscard]] auto active_locality() -> std::optional<std::uint8_t> {
        std::lock_guard lock{mu_};
        return active_;
    }
    [[nodiscard]] auto executing() -> bool {
        std::lock_guard lock{mu_};
        return st_ == state::execution;
    }
    [[nodiscard]] auto commands_executed() -> std::size_t {
        std::lock_guard lock{mu_};
        return executed_;
    }

private:
    enum class state : std::uint8_t { idle, ready, reception, execution, completion };
    static constexpr std::uint8_t stuck_byte = 0xA5;
    static constexpr std::uint32_t huge_size = 0x0010'0000;  // response_too_large claims 1 MiB
    static constexpr std::uint32_t tiny_size = 6;            // response_too_small

    static void check(std::uint8_t loc, std::uint16_t off, unsigned width) {
        XTPM_ASSERT(loc < proto::tis::localities && (width == 1 || width == 4));
        XTPM_ASSERT(off % width == 0 && off + width <= proto::tis::window_size);
    }
    static constexpr auto is_fifo(std::uint16_t off) noexcept -> bool {
        using namespace proto::tis;
        return (off >= reg::data_fifo && off < reg::data_fifo + 4) ||
               (off >= reg::xdata_fifo && off < reg::xdata_fifo + 4);
    }

    // --- reads ----------------------------------------------------------------
    auto read_register(std::uint8_t loc, std::uint16_t base) -> std::uint32_t {
        using namespace proto::tis;
        switch (base) {
        case reg::access: return 0xFFFFFF00U | access_value(loc);
        case reg::int_enable: return int_enable_[loc];
        case reg::int_vector: return 0xFFFFFF00U | int_vector_;
        case reg::int_status: return int_status_[loc];
        case reg::intf_capability: return intf_capability();
        case reg::sts: return sts_value(loc);
        case reg::interface_id: return interface_id();
        case reg::did_vid: return opts_.did_vid;
        case reg::rid: return 0xFFFFFF00U | opts_.rid;
        default: return 0xFFFFFFFFU;  // unimplemented: a floating bus
        }
    }

    auto access_value(std::uint8_t loc) const -> std::uint8_t {
        namespace acc = proto::tis::access;
        std::uint8_t v = acc::reg_valid_sts | acc::tpm_establishment;  // no dynamic OS launched in the model
        if (active_ == loc) v |= acc::active_locality;
        if (seized_[loc]) v |= acc::been_seized;
        if (requested_[loc]) v |= acc::request_use;
        for (std::uint8_t l = 0; l < proto::tis::localities; ++l)
            if (l != loc && requested_[l]) v |= acc::pending_request;
        return v;
    }

    auto intf_capability() const -> std::uint32_t {
        using namespace proto::tis::intf;
        std::uint32_t v = data_avail_int | sts_valid_int | locality_change_int | level_low | command_ready_int |
                          transfer_64;
        if (!opts_.vary_burst) v |= burst_count_static;
        return v | (opts_.family == wire::family::tpm2 ? version_ptp : version_tis13);
    }

    auto interface_id() const -> std::uint32_t {
        using namespace proto::tis::iface_id;
        if (opts_.family != wire::family::tpm2) return 0xFFFFFFFFU;  // TIS 1.3: not implemented
        return type_fifo | cap_locality | cap_fifo | (sel_locked_ ? sel_lock : 0U);
    }

    // Reads from a locality that is not active return all ones, as QEMU's TIS does.
    auto sts_value(std::uint8_t loc) -> std::uint32_t {
        using namespace proto::tis;
        if (active_ != loc) return 0xFFFFFFFFU;
        bool valid = hostile_ != tis_hostile::sts_valid_never;
        if (valid_lag_ > 0) {
            --valid_lag_;
            valid = false;
        }
        std::uint32_t v = opts_.family == wire::family::tpm2 ? sts::family_tpm2 : sts::family_tpm12;
        if (valid) v |= sts::sts_valid;
        std::size_t room = 0;  // what burstCount may announce
        switch (st_) {
        case state::idle: break;
        case state::ready:
            v |= sts::command_ready;
            room = opts_.buffer_size;
            break;
        case state::reception:
            if (valid && expecting()) v |= sts::expect;
            room = opts_.buffer_size - cmd_.size();
            break;
        case state::execution: break;
        case state::completion:
            if (valid && data_avail()) v |= sts::data_avail;
            room = rpos_ < resp_.size() ? resp_.size() - rpos_ : 0;
            break;
        }
        return v | (std::uint32_t{burst(room)} << sts::burst_shift);
    }

    auto burst(std::size_t room) -> std::uint16_t {
        if (hostile_ == tis_hostile::burst_zero) return 0;
        if (hostile_ == tis_hostile::burst_huge) return 0xFFFF;
        std::size_t b = opts_.max_burst;
        if (opts_.vary_burst) b = 1 + random() % opts_.max_burst;
        return static_cast<std::uint16_t>(std::min(b, room));
    }

    auto data_avail() const -> bool {
        if (hostile_ == tis_hostile::data_avail_stuck) return true;
        if (hostile_ == tis_hostile::data_avail_early) return rpos_ < resp_.size() / 2;
        return rpos_ < resp_.size();
    }

    auto pop(std::uint8_t loc) -> std::uint8_t {
        if (active_ != loc || st_ != state::completion) return 0xFF;
        if (data_avail() && rpos_ < resp_.size()) return std::to_integer<std::uint8_t>(resp_[rpos_++]);
        return hostile_ == tis_hostile::data_avail_stuck ? stuck_byte : 0xFF;
    }

    // --- writes -----------------------------------------------------------------
    void write_register(std::uint8_t loc, std::uint16_t base, std::uint32_t v, std::uint32_t mask) {
        using namespace proto::tis;
        if (base == reg::access) {
            if (mask & 0xFF) write_access(loc, static_cast<std::uint8_t>(v));
            return;
        }
        if (base == reg::interface_id && (v & iface_id::sel_lock) && opts_.family == wire::family::tpm2) {
            sel_locked_ = true;  // IntfSelLock: sticky until reset
            return;
        }
        if (active_ != loc) return;  // only TPM_ACCESS accepts writes from other localities
        switch (base) {
        case reg::int_enable: {
            auto const writable = irq::global_enable | irq::polarity_mask | irq::events;
            int_enable_[loc] = (int_enable_[loc] & ~mask) | (v & mask & writable);
            break;
        }
        case reg::int_vector:
            if (mask & 0xFF) int_vector_ = static_cast<std::uint8_t>(v & 0x0F);
            break;
        case reg::int_status: int_status_[loc] &= ~(v & mask); break;  // write 1 to clear
        case reg::sts: write_sts(loc, v); break;
        default: break;  // read-only or unimplemented
        }
    }

    void write_access(std::uint8_t loc, std::uint8_t v) {
        namespace acc = proto::tis::access;
        bool const never = hostile_ == tis_hostile::locality_never;
        if (v & acc::seize) v &= static_cast<std::uint8_t>(~(acc::request_use | acc::active_locality));  // Seize wins
        if (v & acc::active_locality) {
            if (active_ == loc) {
                std::optional<std::uint8_t> next;  // the highest locality asking gets it
                for (std::uint8_t l = proto::tis::localities; l-- > 0;)
                    if (requested_[l] && !never) { next = l; break; }
                set_active(next);
            } else {
                requested_[loc] = false;  // withdraw a pending request
            }
        }
        if (v & acc::been_seized) seized_[loc] = false;
        if ((v & acc::seize) && !never && (!active_ || loc > *active_)) {
            if (active_) seized_[*active_] = true;
            set_active(loc);
        }
        if ((v & acc::request_use) && active_ != loc) {
            if (!active_ && !never) set_active(loc);
            else requested_[loc] = true;
        }
    }

    // A change of locality ends whatever the previous one was doing.
    void set_active(std::optional<std::uint8_t> loc) {
        if (loc == active_) return;
        reset_fifo(state::idle);
        active_ = loc;
        if (loc) {
            requested_[*loc] = false;
            raise(*loc, proto::tis::irq::locality_change);
        }
    }

    void reset_fifo(state to) {
        if (st_ == state::execution) ++generation_;  // the worker's result will be dropped
        st_ = to;
        cmd_.clear();
        resp_.clear();
        rpos_ = 0;
    }

    void write_sts(std::uint8_t loc, std::uint32_t v) {
        using namespace proto::tis;
        if ((v & sts::command_cancel) && opts_.family == wire::family::tpm2 && st_ == state::execution) {
            ++generation_;  // PTP: abort, answering TPM_RC_CANCELED
            complete(respond_error(wire::rc2::canceled));
            return;
        }
        if (v & sts::command_ready) {
            reset_fifo(state::ready);  // from Reception or Execution this aborts (TIS 1.3)
            raise(loc, irq::command_ready);
        } else if (v & sts::tpm_go) {
            if (st_ == state::reception && !expecting()) go(loc);
        } else if (v & sts::response_retry) {
            if (st_ == state::completion) rpos_ = 0;
        }
    }

    void push(std::uint8_t loc, std::uint8_t b) {
        if (active_ != loc) return;
        if (st_ == state::ready) st_ = state::reception;
        if (st_ != state::reception || !expecting() || cmd_.size() >= opts_.buffer_size) return;  // dropped
        cmd_.push_back(std::byte{b});
        valid_lag_ = opts_.sts_valid_lag;
    }

    // Expect: until the size field is in and that many bytes arrived. A size
    // field outside [10, buffer] ends reception at once; tpmGo then answers an error.
    [[nodiscard]] auto expecting() const -> bool {
        if (cmd_.size() < 6) return true;
        auto const size = declared_size();
        if (size < wire::header_size || size > opts_.buffer_size) return false;
        return cmd_.size() < size;
    }
    [[nodiscard]] auto declared_size() const -> std::uint32_t {
        return wire::load_be<std::uint32_t>(wire::bytes_view{cmd_}.subspan(2, 4));
    }

    void go(std::uint8_t loc) {
        auto const size = declared_size();
        if (size < wire::header_size || size > opts_.buffer_size || cmd_.size() != size) {
            auto const rc = opts_.family == wire::family::tpm2 ? wire::rc2::command_size : wire::rc12::bad_param_size;
            complete(respond_error(rc));
            return;
        }
        st_ = state::execution;
        exec_locality_ = loc;
        ++generation_;
        job_ = true;
        cv_.notify_all();
    }

    auto respond_error(wire::tpm_rc rc) const -> std::vector<std::byte> {
        std::vector<std::byte> r(wire::header_size);
        (void)wire::error_response(rc, opts_.family, r);
        return r;
    }

    // The response goes into the FIFO, bent by the hostile mode of the moment.
    void complete(std::vector<std::byte> r) {
        if (r.size() > opts_.buffer_size || r.size() < wire::header_size)
            r = respond_error(opts_.family == wire::family::tpm2 ? wire::rc2::failure : wire::rc12::fail);
        if (hostile_ == tis_hostile::response_too_large) wire::store_be(wire::bytes_span{r}.subspan(2, 4), huge_size);
        if (hostile_ == tis_hostile::response_too_small) wire::store_be(wire::bytes_span{r}.subspan(2, 4), tiny_size);
        if (hostile_ == tis_hostile::data_avail_never) {
            st_ = state::execution;  // forever, until commandReady or a locality change
            return;
        }
        resp_ = std::move(r);
        rpos_ = 0;
        st_ = state::completion;
        if (active_) raise(*active_, proto::tis::irq::data_avail);
    }

    void raise(std::uint8_t loc, std::uint32_t event) {
        if (int_enable_[loc] & event) int_status_[loc] |= event;  // recorded, never delivered
    }

    auto random() -> std::uint32_t {  // xorshift32: reproducible from the seed
        rng_ ^= rng_ << 13;
        rng_ ^= rng_ >> 17;
        rng_ ^= rng_ << 5;
        return rng_;
    }

    // --- the worker: one command at a time, the backend called unlocked ---------
    void work() {
        std::unique_lock lock{mu_};
        for (;;) {
            cv_.wait(lock, [&] { return job_ || stop_; });
            if (stop_) return;
            job_ = false;
            auto const gen = generation_;
            auto const loc = exec_locality_;
            std::vector<std::byte> cmd = cmd_;
            lock.unlock();
            auto r = backend_.execute(cmd, loc);
            lock.lock();
            ++executed_;
            if (gen != generation_ || st_ != state::execution) continue;  // aborted meanwhile
            auto const fail_rc = opts_.family == wire::family::tpm2 ? wire::rc2::failure : wire::rc12::fail;
            complete(r ? std::move(*r) : respond_error(fail_rc));
        }
    }

    Backend backend_;  // used by the worker only
    sim_tis_options const opts_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::optional<std::uint8_t> active_;
    std::array<bool, proto::tis::localities> requested_{};
    std::array<bool, proto::tis::localities> seized_{};
    std::array<std::uint32_t, proto::tis::localities> int_enable_{};
    std::array<std::uint32_t, proto::tis::localities> int_status_{};
    std::uint8_t int_vector_ = 0;
    bool sel_locked_ = false;
    state st_ = state::idle;
    std::vector<std::byte> cmd_;
    std::vector<std::byte> resp_;
    std::size_t rpos_ = 0;
    unsigned valid_lag_ = 0;
    tis_hostile hostile_ = tis_hostile::none;
    std::uint32_t rng_;
    std::uint64_t generation_ = 0;
    std::uint8_t exec_locality_ = 0;
    bool job_ = false;
    bool stop_ = false;
    std::size_t executed_ = 0;
    std::thread worker_;  // last: starts after everything it reads is built
};

}  // namespace detail

// A handle on one modelled chip: copies share the chip (two devices at two
// localities, or a test that turns on a hostile mode while a device runs).
// Models mmio_window; every access is one atomic bus cycle under the chip's lock.
template <tpm_backend Backend>
class sim_tis {
public:
    explicit sim_tis(Backend backend, sim_tis_options const& opts = {})
        : c_{std::make_shared<detail::sim_tis_chip<Backend>>(std::move(backend), opts)} {}

    auto read8(std::uint8_t loc, std::uint16_t off) -> std::uint8_t {
        return static_cast<std::uint8_t>(c_->read(loc, off, 1));
    }
    auto read32(std::uint8_t loc, std::uint16_t off) -> std::uint32_t { return c_->read(loc, off, 4); }
    void write8(std::uint8_t loc, std::uint16_t off, std::uint8_t v) { c_->write(loc, off, 1, v); }
    void write32(std::uint8_t loc, std::uint16_t off, std::uint32_t v) { c_->write(loc, off, 4, v); }

    void set_hostile(tis_hostile h) { c_->set_hostile(h); }
    [[nodiscard]] auto active_locality() const -> std::optional<std::uint8_t> { return c_->active_locality(); }
    [[nodiscard]] auto executing() const -> bool { return c_->executing(); }
    [[nodiscard]] auto commands_executed() const -> std::size_t { return c_->commands_executed(); }

private:
    std::shared_ptr<detail::sim_tis_chip<Backend>> c_;
};

}  // namespace xtpm
