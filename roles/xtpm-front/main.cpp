// xtpm-front: a user-space tpmif frontend. Local swtpm/mssim endpoints feed a pipeline whose
// device is forward<tpmif_frontend<Hv>>: tpm2-tools reach a vTPM the way a guest kernel does.
#include "common/daemon.hpp"
#include "common/front_config.hpp"
#include "common/vtpmd.hpp"

#include <xtpm/device/forward.hpp>
#include <xtpm/device/tpmif_frontend.hpp>
#include <xtpm/pipeline.hpp>
#include <xtpm/source/device_events.hpp>

#include <cstdio>

namespace {
using namespace xtpm;
using namespace xtpm::roles;

// The clients' endpoints, and the frontend's xenstore events while no client is using it.
template <class Source, class Device>
auto serve(front_config const& cfg, daemon_process& d, hv::domid_t self, Source source, Device device) -> int {
    auto events = must(device_events::create(device.event_fd()), "watch the frontend's xenstore events");
    pipeline p{multi_source{std::move(source), std::move(events)}, std::move(device)};
    d.stop_on_signals(p);
    d.ready(std::string{cfg.endpoints.family == wire::family::tpm2 ? "tpm2 " : "tpm12 "} + describe(p.source().first()) +
            " hv=" + cfg.hv.kind + " domain=" + std::to_string(self) + " devid=" + std::to_string(cfg.devid));
    auto served = p.run();
    p.with_device([](Device& dev) { dev.client().close(); });  // Closing, Closed: the backend reopens
    if (!served) std::fprintf(stderr, "xtpm-front: serving failed: %s\n", served.error().message().c_str());
    return served ? 0 : 1;
}

template <class Hv>
auto run(front_config const& cfg, daemon_process& d, Hv h) -> int {
    typename tpmif_frontend<Hv>::options o;
    o.devid = cfg.devid;
    o.family = cfg.endpoints.family;
    o.durations = proto::tpmif::default_durations(o.family);
    o.extra_pages = cfg.extra_pages;
    o.poll_window = cfg.hv.poll_window;
    auto const self = h.self();
    forward device{must(tpmif_frontend<Hv>::open(std::move(h), o), "connect to the vTPM backend")};
    auto const& e = cfg.endpoints;
    if ((e.data || e.ctrl) && e.mssim) return serve(cfg, d, self, multi_source{make_swtpm(e), make_mssim(e)}, std::move(device));
    if (e.data || e.ctrl) return serve(cfg, d, self, make_swtpm(e), std::move(device));
    return serve(cfg, d, self, make_mssim(e), std::move(device));
}
}  // namespace

int main(int argc, char** argv) try {
    auto const cfg = front_config::from_args(argc, argv);
    if (cfg.help) return std::fputs(front_usage, stdout) < 0;
    daemon_process d{cfg.endpoints.pid_file, cfg.endpoints.log_file, "xtpm-front"};
    if (cfg.hv.kind == "sim") return run(cfg, d, must(hv::sim_hv::connect(cfg.hv.simhv_dir, *cfg.hv.domain), "xtpm-simhv"));
    return run(cfg, d, must(hv::xen_hv::open(cfg.hv.domain), "Xen interfaces"));
} catch (std::exception const& e) {
    std::fprintf(stderr, "xtpm-front: %s\n", e.what());
    return 2;
}
