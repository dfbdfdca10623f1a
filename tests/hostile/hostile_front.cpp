// xtpm-hostile-front: a guest domain's tpmif frontend that misbehaves on purpose (issue 3,
// "a hostile frontend process"). It connects to sim_hv as domain F, does (or botches) the
// xenbus handshake with the proto/xenbus machine and the raw page, runs one scenario, prints
// what it observed and exits 1 when the backend's behaviour is wrong. docs/hostile-frontend.md.
#include "xenbus_scenarios.hpp"

#include <charconv>
#include <cstdlib>
#include <string_view>

namespace {

using namespace xtpm::hostile;

struct scenario {
    char const* name;
    outcome<> (*run)(guest&, run_options const&);
    char const* what;
};

constexpr scenario scenarios[] = {
    {"good", good, "a correct handshake and commands (the baseline)"},
    {"lengths", lengths, "request lengths 0, 1, 9, 10, 4088, 4089, ..., 0xFFFFFFF0..0xFFFFFFFF"},
    {"extra-pages", extra_pages, "nr_extra_pages 0..255 with bogus refs, extension not negotiated"},
    {"extra-pages-negotiated", extra_pages_negotiated, "the same with feature-extra-pages requested"},
    {"flip-event", flip_event, "flip length and a payload byte of PCR_Event while the backend works"},
    {"flip-random", flip_random, "flip length and GetRandom's bytesRequested (8 <-> 32) while the backend works"},
    {"storm", storm, "random bursts of SUBMIT, CANCEL and notifies"},
    {"bad-state", bad_state, "state values only the backend may write, or nobody"},
    {"keys-missing", keys_missing, "ring-ref, event-channel, feature-protocol-v2 missing"},
    {"keys-ring-ref", keys_ring_ref_garbage, "malformed ring-ref values"},
    {"keys-event-channel", keys_event_channel_garbage, "malformed event-channel values"},
    {"keys-protocol-v2", keys_protocol_v2, "feature-protocol-v2 other than \"1\""},
    {"keys-bogus", keys_bogus, "well-formed ring-ref/event-channel naming what is not the backend's"},
    {"readonly", readonly, "the ring granted read-only"},
    {"state-storm", state_storm, "frontend states written back to back"},
    {"vanish", vanish, "exit with SUBMIT set (GetRandom)"},
    {"vanish-busy", vanish_busy, "exit with SUBMIT set while the vTPM runs CreatePrimary"},
    {"vanish-cancel", vanish_cancel, "exit after SUBMIT and CANCEL of CreatePrimary"},
    {"vanish-handshake", vanish_handshake, "exit right after announcing Initialised"},
    {"teardown-state", teardown_state, "frontend state 'banana' (the toolstack must re-attach after)"},
    {"teardown-dir", teardown_dir, "frontend device directory removed (the toolstack must re-attach after)"},
};

constexpr char const* usage =
    "usage: xtpm-hostile-front --simhv-dir D --domain F [--devid N] [--timeout-ms T]\n"
    "                          [--iterations N] [--seed S] SCENARIO\n"
    "       xtpm-hostile-front --list\n"
    "  Runs one scenario as guest F against the vTPM backend attached to its device N.\n"
    "  Exit status: 0 the backend behaved, 1 it did not, 2 usage or environment error.\n";

template <class T>
auto number(std::string_view s, T& out) -> bool {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

int main(int argc, char** argv) {
    guest_options go;
    run_options ro;
    std::string name;
    unsigned domain = 0, timeout = 5000;
    for (int i = 1; i < argc; ++i) {
        std::string_view const a = argv[i];
        if (a == "--list") {
            for (auto const& s : scenarios) std::printf("%-24s %s\n", s.name, s.what);
            return 0;
        }
        if (a == "--help" || a == "-h") return std::fputs(usage, stdout), 0;
        if (!a.starts_with("--")) {
            name = a;
            continue;
        }
        if (i + 1 >= argc) return std::fprintf(stderr, "%s needs a value\n%s", argv[i], usage), 2;
        std::string_view const v = argv[++i];
        bool ok = true;
        if (a == "--simhv-dir") go.simhv_dir = v;
        else if (a == "--domain") ok = number(v, domain) && domain > 0 && domain <= xb::max_domid;
        else if (a == "--devid") ok = number(v, go.devid);
        else if (a == "--timeout-ms") ok = number(v, timeout) && timeout > 0;
        else if (a == "--iterations") ok = number(v, ro.iterations);
        else if (a == "--seed") ok = number(v, ro.seed);
        else ok = false;
        if (!ok) return std::fprintf(stderr, "bad option %s %s\n%s", argv[i - 1], argv[i], usage), 2;
    }
    scenario const* sc = nullptr;
    for (auto const& s : scenarios)
        if (name == s.name) sc = &s;
    if (!sc || go.simhv_dir.empty() || domain == 0) return std::fputs(usage, stderr), 2;
    go.self = static_cast<xtpm::hv::domid_t>(domain);
    go.limit = ms{timeout};

    auto g = guest::open(go);
    if (!g) return std::fprintf(stderr, "xtpm-hostile-front: %s\n", g.error().c_str()), 2;
    say("xtpm-hostile-front: domain %u, %s, backend domain %u: scenario %s (%s)", domain, g->dir().c_str(),
        g->backend_id(), sc->name, sc->what);
    auto r = sc->run(*g, ro);
    if (!r) {
        say("FAIL %s: %s", sc->name, r.error().c_str());
        return 1;
    }
    say("PASS %s", sc->name);
    return 0;
}
