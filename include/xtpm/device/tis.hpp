// tis_device<Mmio, Clock>: a hardware TPM 1.2 or 2.0 behind the TIS FIFO
// registers (TIS 1.3 section 5, PTP FIFO interface), as a tpm_device. Mmio is
// the physical window (devmem_mmio) or the register model (sim_tis); the
// protocol itself is proto/tis/driver.hpp. The chip is untrusted: every wait is
// bounded and every size is checked against the caller's buffer.
#pragma once

#include <xtpm/device/concepts.hpp>
#include <xtpm/mmio/concepts.hpp>
#include <xtpm/proto/tis.hpp>

#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <thread>

namespace xtpm {

// Real time for the driver's polls: pause(0) yields, longer pauses sleep.
struct steady_tis_clock {
    [[nodiscard]] auto now() const noexcept -> std::chrono::nanoseconds {
        return std::chrono::steady_clock::now().time_since_epoch();
    }
    void pause(std::chrono::microseconds d) const {
        if (d.count() <= 0) std::this_thread::yield();
        else std::this_thread::sleep_for(d);
    }
};
static_assert(proto::tis::tis_clock<steady_tis_clock>);

struct tis_options {
    std::uint8_t locality = 0;           // the TIS window every command uses (0-4)
    std::optional<wire::family> family;  // nullopt: TPM_INTF_CAPABILITY, else a probe command
    std::size_t max_command_size = 4096; // what the pipeline admits; PC TPMs buffer 2-4 KiB
    proto::tis::timeouts timeouts{};     // TIS 1.3 / Design Principles defaults
    bool query_chip_timeouts = true;     // TPM 1.2: the chip's own values may lengthen them
    bool keep_locality = false;          // hold the locality between commands (else release each time)
    bool seize = false;                  // take the locality with Seize (higher locality only)
};

// Models tpm_device and cancellable_device.
// Contract beyond the concepts:
//  - every command runs at options.locality, whatever the command_view says;
//  - the response lands in `scratch` and aliases it: scratch bounds what the
//    chip may return (a larger response is errc::too_large, never an overflow);
//  - cancel() raises a flag the polling checks; the driver then writes
//    commandReady, which aborts the command (TIS 1.3), and answers errc::canceled;
//  - after any failure the chip was sent commandReady and the locality released
//    (unless keep_locality), so the next command starts clean; last_fault() says
//    which step failed.
template <mmio_window Mmio, proto::tis::tis_clock Clock = steady_tis_clock>
class tis_device {
public:
    static auto open(Mmio mmio, tis_options opts = {}, Clock clock = {}) -> result<tis_device> {
        if (opts.locality > wire::max_locality) return fail(errc::bad_locality);
        if (opts.max_command_size < wire::header_size) return fail(errc::bad_value);
        auto s = std::make_unique<state>(std::move(mmio), std::move(clock), opts);
        auto d = s->driver();
        auto const info = d.probe();
        if (!info) return std::unexpected{info.error()};
        s->info = *info;
        if (opts.family) {
            s->fam = *opts.family;
        } else if (auto const announced = proto::tis::announced_family(info->intf_capability)) {
            s->fam = *announced;
        } else {
            auto const probed = probe_family(*s);
            if (!probed) return std::unexpected{probed.error()};
            s->fam = *probed;
        }
        if (s->fam == wire::family::tpm12 && opts.query_chip_timeouts) query_timeouts(*s);
        return tis_device{std::move(s)};
    }

    tis_device(tis_device&&) noexcept = default;
    auto operator=(tis_device&&) noexcept -> tis_device& = default;
    tis_device(tis_device const&) = delete;
    auto operator=(tis_device const&) -> tis_device& = delete;
    ~tis_device() {
        if (s_ && s_->opts.keep_locality) s_->driver().release_locality();
    }

    // --- tpm_device -------------------------------------------------------------
    auto execute(wire::command_view cmd, wire::bytes_span scratch) -> result<wire::response_view> {
        auto& s = get();
        if (cmd.bytes.size() > s.opts.max_command_size) return fail(errc::too_large);
        s.cancel.store(false, std::memory_order_relaxed);  // a cancel while idle is not for this command
        auto const code = static_cast<std::uint32_t>(cmd.header.code);
        auto r = run(s, cmd.bytes, scratch, proto::tis::duration_for(s.limits, s.fam, code));
        if (!r) return std::unexpected{r.error()};
        return wire::response_view{*r};
    }
    [[nodiscard]] auto family() const -> wire::family { return get().fam; }
    [[nodiscard]] auto max_command_size() const -> std::size_t { return get().opts.max_command_size; }

    // --- cancellable_device: any thread -------------------------------------------
    void cancel() noexcept {
        if (s_) s_->cancel.store(true, std::memory_order_relaxed);
    }

    // --- inspection -------------------------------------------------------------
    [[nodiscard]] auto chip() const -> proto::tis::chip_info const& { return get().info; }
    [[nodiscard]] auto timeouts() const -> proto::tis::timeouts const& { return get().limits; }
    [[nodiscard]] auto last_fault() const -> proto::tis::fault { return get().last; }
    [[nodiscard]] auto locality() const -> std::uint8_t { return get().opts.locality; }
    [[nodiscard]] auto mmio() -> Mmio& { return get().mmio; }

private:
    // Behind a pointer: the cancel flag must not move while another thread may
    // raise it, and Mmio/Clock need not be movable once the device is built.
    struct state {
        state(Mmio m, Clock c, tis_options const& o)
            : mmio{std::move(m)}, clock{std::move(c)}, opts{o}, limits{o.timeouts} {}
        auto driver() -> proto::tis::driver<Mmio, Clock> {
            return {mmio, clock, proto::tis::driver_config{opts.locality, opts.seize, limits}, &cancel};
        }
        Mmio mmio;
        Clock clock;
        tis_options opts;
        proto::tis::timeouts limits;
        wire::family fam = wire::family::tpm2;
        proto::tis::chip_info info{};
        std::atomic<bool> cancel{false};
        proto::tis::fault last = proto::tis::fault::none;
    };

    explicit tis_device(std::unique_ptr<state> s) noexcept : s_{std::move(s)} {}

    // Locality, command, release: the three steps every command takes.
    static auto run(state& s, wire::bytes_view cmd, wire::bytes_span out, proto::tis::milliseconds duration)
        -> result<wire::bytes_view> {
        auto d = s.driver();
        auto r = [&]() -> result<wire::bytes_view> {
            if (auto g = d.request_locality(); !g) return std::unexpected{g.error()};
            return d.transmit(cmd, out, duration);
        }();
        s.last = d.last_fault();
        if (!s.opts.keep_locality || !r) d.release_locality();
        return r;
    }

    // TPM2_GetCapability answered with a TPM 2.0 tag means TPM 2.0; a TPM 1.2
    // answers it with a TPM 1.2 error.
    static auto probe_family(state& s) -> result<wire::family> {
        std::array<std::byte, proto::tis::tpm2_get_capability_size> cmd{};
        auto const c = proto::tis::tpm2_probe_command(cmd);
        XTPM_ASSERT(c.has_value());
        std::array<std::byte, 256> resp{};  // 27 bytes expected; room for a chatty chip
        auto const r = run(s, *c, resp, s.limits.standard);
        if (!r) return std::unexpected{r.error()};
        auto const fam = wire::response_family(wire::load_be<wire::tpm_st>(r->first(2)));
        if (!fam) return fail(errc::bad_tag);
        return *fam;
    }

    // TPM 1.2 chips report TIS timeouts and durations; a failure keeps the defaults.
    static void query_timeouts(state& s) {
        std::array<std::byte, proto::tis::tpm12_get_capability_size> cmd{};
        std::array<std::byte, 256> resp{};
        for (auto const prop : {proto::tis::tpm12_prop_tis_timeout, proto::tis::tpm12_prop_duration}) {
            auto const c = proto::tis::tpm12_capability_command(prop, cmd);
            XTPM_ASSERT(c.has_value());
            auto const r = run(s, *c, resp, s.limits.standard);
            if (!r) continue;
            if (prop == proto::tis::tpm12_prop_tis_timeout) {
                if (auto const t = proto::tis::parse_tpm12_property<proto::tis::chip_timeouts>(*r))
                    s.limits = proto::tis::apply(s.limits, *t);
            } else if (auto const t = proto::tis::parse_tpm12_property<proto::tis::chip_durations>(*r)) {
                s.limits = proto::tis::apply(s.limits, *t);
            }
        }
        s.last = proto::tis::fault::none;
    }

    auto get() -> state& {
        XTPM_ASSERT(s_ != nullptr);  // use after move
        return *s_;
    }
    [[nodiscard]] auto get() const -> state const& {
        XTPM_ASSERT(s_ != nullptr);
        return *s_;
    }

    std::unique_ptr<state> s_;
};

}  // namespace xtpm
