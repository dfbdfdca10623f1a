// xtpm-simhv: the simulated hypervisor daemon (xenstore, grant table, event channels) for
// machines without Xen. Clients are domains: dom<N> connects to <dir>/dom<N>.sock.
// Usage: xtpm-simhv --dir D [--domains 1,2,...]. Prints a ready line; stops on SIGTERM/SIGINT.
#include <xtpm/hv/sim/daemon.hpp>

#include <csignal>
#include <optional>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {
using namespace xtpm::hv;

int stop_fd = -1;  // the daemon's stop eventfd: a write from the signal handler ends run()
extern "C" void on_signal(int) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd, &one, sizeof one);
}

constexpr char const* usage =
    "usage: xtpm-simhv --dir DIR [--domains N,N,...]\n"
    "  Serves the simulated hypervisor; domain N connects to DIR/domN.sock.\n"
    "  dom0 always exists; dom0 introduces more (XS_INTRODUCE) or --domains does.\n";

auto parse(int argc, char** argv) -> std::optional<sim::daemon::options> {
    sim::daemon::options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view const a = argv[i];
        if (a == "--help" || a == "-h") return std::nullopt;
        if (i + 1 >= argc) throw std::invalid_argument{std::string{"missing value for "} + argv[i]};
        std::string_view const v = argv[++i];
        if (a == "--dir") {
            o.dir = std::string{v};
        } else if (a == "--domains") {
            for (std::size_t at = 0; at <= v.size();) {
                auto const comma = std::min(v.find(',', at), v.size());
                auto const d = sim::parse_decimal<domid_t>(v.substr(at, comma - at));
                if (!d || *d > sim::max_domid) throw std::invalid_argument{"bad domain id in --domains"};
                o.domains.push_back(*d);
                at = comma + 1;
            }
        } else {
            throw std::invalid_argument{"unknown option " + std::string{a}};
        }
    }
    if (o.dir.empty()) throw std::invalid_argument{usage};
    return o;
}
}  // namespace

int main(int argc, char** argv) try {
    auto const o = parse(argc, argv);
    if (!o) return std::fputs(usage, stdout) < 0;
    auto d = sim::daemon::create(*o);
    if (!d) throw std::runtime_error{"cannot start: " + d.error().message()};
    stop_fd = d->stop_fd();
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    std::printf("xtpm-simhv: ready dir=%s\n", o->dir.c_str());
    std::fflush(stdout);
    auto r = d->run();
    if (!r) std::fprintf(stderr, "xtpm-simhv: %s\n", r.error().message().c_str());
    return r ? 0 : 1;
} catch (std::exception const& e) {
    std::fprintf(stderr, "xtpm-simhv: %s\n", e.what());
    return 2;
}
