// What xtpm-hwtpm serves: tis_device<Mmio> (docs/tis.md) over a real TIS window
// (devmem_mmio) or over the register model (sim_tis) backed by an swtpm data
// channel or by libtpms in this process, and the rule that turns a chip fault
// into a TPM error for the client (docs/hwtpm.md, "Chip faults").
#pragma once

#include "common/hwtpm_config.hpp"
#include "common/vtpmd.hpp"

#include <xtpm/device/libtpms.hpp>
#include <xtpm/device/tis.hpp>
#include <xtpm/mmio/devmem.hpp>
#include <xtpm/mmio/sim_tis.hpp>
#include <xtpm/store/memory_store.hpp>

#include <cstdio>
#include <variant>

namespace xtpm::roles {

// libtpms as the TPM behind the model: a throw-away TPM, its NV in memory.
class libtpms_backend {
public:
    static auto create(wire::family fam, std::size_t buffer) -> result<libtpms_backend> {
        auto dev = libtpms_device<memory_store>::create(memory_store{}, {fam, static_cast<std::uint32_t>(buffer)});
        if (!dev) return std::unexpected{dev.error()};
        if (auto on = dev->power_on(false); !on) return std::unexpected{on.error()};
        return libtpms_backend{std::move(*dev)};
    }

    // The model hands over whatever a driver wrote; a command the TPM would not
    // take is answered with the error a TPM gives, as a chip would.
    auto execute(wire::bytes_view cmd, std::uint8_t locality) -> result<std::vector<std::byte>> {
        auto const fam = dev_.family();
        auto admitted = wire::parse_command(cmd, fam, dev_.max_command_size(), locality);
        std::array<std::byte, wire::header_size> err{};
        if (!admitted) return to_vector(wire::error_response(admitted.error(), fam, err));
        auto resp = dev_.execute(*admitted, {});
        if (!resp) return to_vector(wire::error_response(resp.error(), fam, err));
        return to_vector(resp->bytes);
    }

private:
    explicit libtpms_backend(libtpms_device<memory_store> dev) : dev_{std::move(dev)} {}
    static auto to_vector(wire::bytes_view b) -> std::vector<std::byte> { return {b.begin(), b.end()}; }
    libtpms_device<memory_store> dev_;
};

// The model's TPM, chosen at run time: one model type for both keeps the
// number of pipeline instantiations down.
class hwtpm_backend {
public:
    explicit hwtpm_backend(swtpm_backend b) : b_{std::move(b)} {}
    explicit hwtpm_backend(libtpms_backend b) : b_{std::move(b)} {}

    auto execute(wire::bytes_view cmd, std::uint8_t locality) -> result<std::vector<std::byte>> {
        return std::visit([&](auto& b) { return b.execute(cmd, locality); }, b_);
    }

    // TPM2_GetCapability straight to the TPM, before any model exists: its tag
    // says which family, and so which register flavour the model must show.
    auto detect_family() -> result<wire::family> {
        std::array<std::byte, proto::tis::tpm2_get_capability_size> buf{};
        auto const cmd = proto::tis::tpm2_probe_command(buf);
        XTPM_ASSERT(cmd.has_value());
        auto const resp = execute(*cmd, 0);
        if (!resp) return std::unexpected{resp.error()};
        auto const hdr = wire::parse_response(*resp);
        if (!hdr) return std::unexpected{hdr.error()};
        auto const fam = wire::response_family(hdr->tag);
        if (!fam) return fail(errc::bad_tag);
        return *fam;
    }

private:
    std::variant<swtpm_backend, libtpms_backend> b_;
};
static_assert(tpm_backend<hwtpm_backend>);

// tis_device as the role serves it. A chip fault is never the client's fault,
// so the codes that blame a command (TPM_RC_COMMAND_SIZE for a response the
// chip sized wrongly, say) must not reach the client:
//   busy (locality not granted, or seized)  -> TPM_RC_RETRY / TPM_RETRY: try again
//   canceled                                -> TPM_RC_CANCELED / TPM_FAIL
//   every other fault                       -> TPM_RC_FAILURE / TPM_FAIL
// and the fault's step goes to the log, one line per failed command.
template <class Mmio>
class chip_device {
public:
    using tis_type = tis_device<Mmio>;

    explicit chip_device(tis_type tis) : tis_{std::move(tis)} {}

    auto execute(wire::command_view cmd, wire::bytes_span scratch) -> result<wire::response_view> {
        auto r = tis_.execute(cmd, scratch);
        if (r) return r;
        auto const e = to_errc(r.error());
        auto const kept = e == errc::busy || e == errc::canceled ? e : errc::device_failure;
        auto const rc = wire::to_tpm_rc(kept, tis_.family());
        std::fprintf(stderr, "xtpm-hwtpm: command 0x%X failed at the chip: %s (%s); answered rc 0x%X\n",
                     static_cast<unsigned>(cmd.header.code), std::string{proto::tis::name(tis_.last_fault())}.c_str(),
                     r.error().message().c_str(), static_cast<unsigned>(rc));
        return fail(kept);
    }
    [[nodiscard]] auto family() const -> wire::family { return tis_.family(); }
    [[nodiscard]] auto max_command_size() const -> std::size_t { return tis_.max_command_size(); }
    void cancel() noexcept { tis_.cancel(); }

    [[nodiscard]] auto tis() -> tis_type& { return tis_; }
    [[nodiscard]] auto tis() const -> tis_type const& { return tis_; }

private:
    tis_type tis_;
};

using sim_chip = chip_device<sim_tis<hwtpm_backend>>;
using devmem_chip = chip_device<devmem_mmio>;

// The window of our locality only: all a driver needs, and all a Xen domain
// given one iomem page can map.
inline auto open_devmem_chip(hwtpm_config const& cfg) -> devmem_chip {
    auto where = cfg.describe_chip();
    auto win = must(devmem_mmio::open(cfg.address, cfg.devmem_path, cfg.tis.locality, 1), "map the TIS window (" + where + ")");
    return devmem_chip{must(tis_device<devmem_mmio>::open(std::move(win), cfg.tis), "no TIS chip answers (" + where + ")")};
}

inline auto open_sim_chip(hwtpm_config const& cfg) -> sim_chip {
    auto const fam = cfg.tis.family.value_or(wire::family::tpm2);
    auto backend = cfg.libtpms
                       ? hwtpm_backend{must(libtpms_backend::create(fam, cfg.tis.max_command_size), "libtpms")}
                       : hwtpm_backend{must(swtpm_backend::connect(*cfg.tpm_data, cfg.tpm_ctrl),
                                            "connect to the TPM at " + io::to_string(*cfg.tpm_data))};
    auto const model_family = cfg.tis.family ? *cfg.tis.family : must(backend.detect_family(), "ask the TPM its family");
    sim_tis_options o;
    o.family = model_family;
    o.buffer_size = cfg.tis.max_command_size;
    sim_tis chip{std::move(backend), o};
    auto dev = must(tis_device<sim_tis<hwtpm_backend>>::open(chip, cfg.tis), "open the TIS model");
    chip.set_hostile(cfg.hostile);  // from now on: the driver has come up on a sane chip
    return sim_chip{std::move(dev)};
}

// "tpm2 locality=0 chip=5854:0001 rid=1": what the driver found, for the ready line.
template <class Mmio>
auto describe(chip_device<Mmio> const& d) -> std::string {
    auto const& info = d.tis().chip();
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s locality=%u chip=%04x:%04x rid=%u",
                  d.family() == wire::family::tpm2 ? "tpm2" : "tpm12", static_cast<unsigned>(d.tis().locality()),
                  static_cast<unsigned>(info.vendor_id()), static_cast<unsigned>(info.device_id()),
                  static_cast<unsigned>(info.rid));
    return buf;
}

}  // namespace xtpm::roles
