// xtpm-vtpmd --hv: the vTPM as the tpmif backend of its guest(s), pipeline<tpmif_backend<Hv>,
// locality_policy, libtpms_device> (docs/guest-path.md). The uuid the toolstack wrote in the
// backend directory is logged when the guest connects; identity never comes from requests.
#pragma once

#include "common/daemon.hpp"
#include "common/vtpmd.hpp"

#include <xtpm/pipeline.hpp>
#include <xtpm/source/tpmif_backend.hpp>
#include <xtpm/stage/locality_policy.hpp>

#include <cstdio>

namespace xtpm::roles {

inline auto serve_tpmif(vtpmd_config const& cfg, daemon_process& d, vtpm_device device) -> int {
    return with_hv(*cfg.hv, [&]<class Hv>(Hv h) {
        auto const self = h.self();
        typename tpmif_backend<Hv>::options o;
        o.frontend = cfg.frontend;
        o.devid = cfg.devid;
        o.uuid = cfg.uuid;
        o.extra_pages = cfg.extra_pages;
        o.poll_window = cfg.hv->poll_window;
        o.log = [](std::string const& line) { std::fprintf(stderr, "xtpm-vtpmd: %s\n", line.c_str()); };
        auto source = must(tpmif_backend<Hv>::create(std::move(h), std::move(o)), "tpmif backend");
        auto const policy = cfg.reject_locality_4 ? locality_policy::without_locality_4() : locality_policy::all();
        pipeline p{std::move(source), std::move(device), policy};
        d.stop_on_signals(p);
        auto const who = cfg.frontend ? std::to_string(*cfg.frontend) : std::string{"any"};
        d.ready(std::string{cfg.family == wire::family::tpm2 ? "tpm2 " : "tpm12 "} + "tpmif hv=" + cfg.hv->kind +
                " domain=" + std::to_string(self) + " frontend=" + who +
                " devid=" + (cfg.devid ? std::to_string(*cfg.devid) : std::string{"any"}) +
                " uuid=" + (cfg.uuid ? xtpm::detail::uuid_string(*cfg.uuid) : std::string{"any"}) +
                " buffer=" + std::to_string(cfg.buffer_size) + " state=" + cfg.state_dir);
        auto served = p.run();
        auto off = p.with_device([](vtpm_device& dev) { return dev.running() ? dev.power_off() : result<void>{}; });
        if (!served) std::fprintf(stderr, "xtpm-vtpmd: serving failed: %s\n", served.error().message().c_str());
        if (!off) std::fprintf(stderr, "xtpm-vtpmd: persisting state failed: %s\n", off.error().message().c_str());
        return served && off ? 0 : 1;
    });
}

}  // namespace xtpm::roles
