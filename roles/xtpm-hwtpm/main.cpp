// xtpm-hwtpm: a TPM behind the TIS FIFO registers (a real chip through
// /dev/mem, or the register model over swtpm or libtpms) served to local
// clients over the swtpm and/or mssim protocols (docs/hwtpm.md).
// Pipeline: swtpm_server | mssim_server | multi_source -> chip_device<tis_device<Mmio>>.
#include "common/daemon.hpp"
#include "common/hwtpm_device.hpp"

#include <xtpm/pipeline.hpp>

#include <cstdio>

namespace {
using namespace xtpm;
using namespace xtpm::roles;

// SIGTERM also cancels the command in flight: a chip that never answers must
// not hold the daemon for the command's whole duration (up to 300 s).
template <class Pipeline>
struct cancel_then_stop {
    Pipeline& p;
    void stop() noexcept {
        p.cancel();  // an atomic store: async-signal-safe
        p.stop();
    }
};

template <class Source, class Device>
auto serve(hwtpm_config const& cfg, daemon_process& d, Source source, Device device) -> int {
    pipeline p{std::move(source), std::move(device)};
    cancel_then_stop<decltype(p)> on_signal{p};
    d.stop_on_signals(on_signal);
    d.ready(p.with_device([](Device const& dev) { return describe(dev); }) + " " + cfg.describe_chip() + " " +
            describe(p.source()));
    auto served = p.run();
    if (!served) std::fprintf(stderr, "xtpm-hwtpm: serving failed: %s\n", served.error().message().c_str());
    return served ? 0 : 1;
}

template <class Device>
auto serve_on_sockets(hwtpm_config const& cfg, daemon_process& d, Device device) -> int {
    auto const& s = cfg.servers;
    bool const swtpm = s.data || s.ctrl;
    if (swtpm && s.mssim) return serve(cfg, d, multi_source{make_swtpm(s), make_mssim(s)}, std::move(device));
    if (swtpm) return serve(cfg, d, make_swtpm(s), std::move(device));
    return serve(cfg, d, make_mssim(s), std::move(device));
}
}  // namespace

int main(int argc, char** argv) try {
    auto const cfg = hwtpm_config::from_args(argc, argv);
    if (cfg.help) return std::fputs(hwtpm_usage, stdout) < 0;
    daemon_process d{cfg.servers.pid_file, cfg.servers.log_file, "xtpm-hwtpm"};
    if (cfg.mmio == hwtpm_mmio::devmem) return serve_on_sockets(cfg, d, open_devmem_chip(cfg));
    return serve_on_sockets(cfg, d, open_sim_chip(cfg));
} catch (std::exception const& e) {
    std::fprintf(stderr, "xtpm-hwtpm: %s\n", e.what());
    return 2;
}
