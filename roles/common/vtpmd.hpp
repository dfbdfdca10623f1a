// The pieces of xtpm-vtpmd between its config and its pipeline: open the state,
// power the TPM on as the flags ask, build the configured servers, and describe
// where they listen for the ready line.
#pragma once

#include "common/vtpmd_config.hpp"

#include <xtpm/device/libtpms.hpp>
#include <xtpm/source/mssim_server.hpp>
#include <xtpm/source/multi_source.hpp>
#include <xtpm/source/swtpm_server.hpp>
#include <xtpm/store/directory_store.hpp>

#include <stdexcept>
#include <string>

namespace xtpm::roles {

// A startup error with a clear message (roles may throw; see style.md).
template <class T>
auto must(result<T> r, std::string const& what) -> T {
    if (!r) throw std::runtime_error(what + ": " + r.error().message());
    if constexpr (!std::is_void_v<T>) return std::move(*r);
}

// TPM2_Startup / TPM_Startup (TPM 2.0 Part 3 section 9.3, TPM 1.2 Main Part 3 section 3.2).
struct startup_command {
    wire::command_header header;
    std::uint16_t type;  // TPM_SU_CLEAR = 0 (2.0), TPM_ST_CLEAR = 1 (1.2)
    static constexpr auto fields = wire::describe(&startup_command::header, &startup_command::type);
};

using vtpm_device = libtpms_device<directory_store>;

inline auto open_device(vtpmd_config const& cfg) -> vtpm_device {
    auto store = must(directory_store::open(cfg.state_dir), "state directory " + cfg.state_dir);
    auto dev = must(vtpm_device::create(std::move(store), {cfg.family, cfg.buffer_size}), "libtpms");
    if (!cfg.power_on) return dev;
    must(dev.power_on(false), "power on the TPM");
    if (cfg.startup_clear) {
        bool const tpm2 = cfg.family == wire::family::tpm2;
        startup_command const cmd{{tpm2 ? wire::tpm_st::no_sessions : wire::tpm_st::rqu_command, 12,
                                   tpm2 ? wire::tpm_cc::startup : wire::tpm_cc::tpm12_startup},
                                  static_cast<std::uint16_t>(tpm2 ? 0 : 1)};
        std::array<std::byte, 12> buf{};
        auto const bytes = must(wire::encode_into(buf, cmd), "encode Startup");
        std::array<std::byte, 64> scratch{};
        auto resp = must(dev.execute(must(wire::parse_command(bytes, cfg.family, 12), "Startup"), scratch), "Startup");
        if (resp.rc() != wire::tpm_rc::success)
            throw std::runtime_error("Startup(CLEAR) failed with rc " + std::to_string(std::to_underlying(resp.rc())));
    }
    return dev;
}

inline auto make_swtpm(vtpmd_config const& cfg) -> swtpm_server {
    swtpm_server::options o;
    o.data = cfg.data;
    o.ctrl = cfg.ctrl ? *cfg.ctrl : vtpmd_config::next_endpoint(*cfg.data);
    o.allow_set_locality = cfg.allow_set_locality;
    o.reject_locality_4 = cfg.reject_locality_4;
    return must(swtpm_server::create(std::move(o)), "swtpm server");
}

inline auto make_mssim(vtpmd_config const& cfg) -> mssim_server {
    return must(mssim_server::create({*cfg.mssim, vtpmd_config::next_endpoint(*cfg.mssim)}), "mssim server");
}

inline auto describe(swtpm_server const& s) -> std::string {
    auto out = std::string{"swtpm-ctrl="} + io::to_string(s.ctrl_endpoint());
    if (auto d = s.data_endpoint()) out = "swtpm=" + io::to_string(*d) + " " + out;
    return out;
}
inline auto describe(mssim_server const& s) -> std::string {
    return "mssim=" + io::to_string(s.command_endpoint()) + " mssim-platform=" + io::to_string(s.platform_endpoint());
}
template <class A, class B>
auto describe(multi_source<A, B>& s) -> std::string {
    return describe(s.first()) + " " + describe(s.second());
}

}  // namespace xtpm::roles
