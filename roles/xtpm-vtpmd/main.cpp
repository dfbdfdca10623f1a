// xtpm-vtpmd: one vTPM (libtpms, TPM 2.0 or 1.2) behind swtpm's socket protocol
// and/or the mssim protocol, or behind tpmif for a guest (--hv).
// Pipeline: source -> locality_policy -> libtpms_device.
#include "common/daemon.hpp"
#include "common/vtpmd.hpp"
#include "common/vtpmd_tpmif.hpp"

#include <xtpm/pipeline.hpp>
#include <xtpm/stage/locality_policy.hpp>

#include <cstdio>

namespace {
using namespace xtpm;
using namespace xtpm::roles;

template <class Source>
auto serve(vtpmd_config const& cfg, daemon_process& d, Source source, vtpm_device device) -> int {
    auto const policy = cfg.reject_locality_4 ? locality_policy::without_locality_4() : locality_policy::all();
    pipeline p{std::move(source), std::move(device), policy};
    d.stop_on_signals(p);
    d.ready(std::string{cfg.family == wire::family::tpm2 ? "tpm2 " : "tpm12 "} + describe(p.source()) +
            " state=" + cfg.state_dir);
    auto served = p.run();
    // Orderly: TPM2_Shutdown / TPM_SaveState, then libtpms writes its NV.
    auto off = p.with_device([](vtpm_device& dev) { return dev.running() ? dev.power_off() : result<void>{}; });
    if (!served) std::fprintf(stderr, "xtpm-vtpmd: serving failed: %s\n", served.error().message().c_str());
    if (!off) std::fprintf(stderr, "xtpm-vtpmd: persisting state failed: %s\n", off.error().message().c_str());
    return served && off ? 0 : 1;
}
}  // namespace

int main(int argc, char** argv) try {
    auto const cfg = vtpmd_config::from_args(argc, argv);
    if (cfg.help) {
        std::fputs(vtpmd_usage, stdout);
        return 0;
    }
    daemon_process d{cfg.pid_file, cfg.log_file};
    auto device = open_device(cfg);
    if (cfg.hv) return serve_tpmif(cfg, d, std::move(device));
    bool const swtpm = cfg.data || cfg.ctrl;
    if (swtpm && cfg.mssim)
        return serve(cfg, d, multi_source{make_swtpm(cfg), make_mssim(cfg)}, std::move(device));
    if (swtpm) return serve(cfg, d, make_swtpm(cfg), std::move(device));
    return serve(cfg, d, make_mssim(cfg), std::move(device));
} catch (std::exception const& e) {
    std::fprintf(stderr, "xtpm-vtpmd: %s\n", e.what());
    return 2;
}
