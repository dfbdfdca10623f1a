// A hostile frontend's side of the vtpm xenbus handshake (xen-vtpm-protocol.md 4.1-4.4, 9):
// ring-ref / event-channel / feature-protocol-v2 missing, malformed, naming grants or ports
// that are not for the backend, a read-only ring, a state storm, and the frontend's device
// tearing down under the backend. For each botch the backend must go Closed (never Connected)
// and then serve a correct reconnection; see docs/hostile-frontend.md.
#pragma once

#include "page_scenarios.hpp"

namespace xtpm::hostile {

// What the botched frontend publishes. A value of nullopt omits the key; "$ref" and "$port"
// stand for the real grant ref and port, with `prefix`/`suffix` around them.
struct botch {
    std::string what;
    std::optional<std::string> ring_ref = "$ref";
    std::optional<std::string> event_channel = "$port";
    std::optional<std::string> protocol_v2 = "1";
    bool writable = true;        // grant the ring read-write
    bool foreign_grant = false;  // grant it to another domain than the backend
    bool foreign_port = false;   // allocate the port for another domain
};

inline auto substitute(std::string v, guest const& g) -> std::string {
    if (auto at = v.find("$ref"); at != std::string::npos) v.replace(at, 4, std::to_string(g.ring_ref()));
    if (auto at = v.find("$port"); at != std::string::npos) v.replace(at, 5, std::to_string(g.port()));
    return v;
}

// Publish `b`, announce Initialised (even cases) or Connected directly as Mini-OS does (odd
// cases), and require the backend to close. A request already sits on the page, so a backend
// that wrongly maps the ring has something to act on.
inline auto botched_handshake(guest& g, botch const& b, unsigned index) -> outcome<> {
    if (auto r = g.reset(); !r) return r;
    hv::domid_t const other = g.backend_id() != 0 ? 0 : g.self();
    if (auto r = g.grant_ring(b.writable, b.foreign_grant ? std::optional{other} : std::nullopt); !r) return r;
    if (auto r = g.alloc_port(b.foreign_port ? std::optional{other} : std::nullopt); !r) return r;
    auto const cmd = get_random(16);
    g.page().submit(cmd, static_cast<std::uint32_t>(cmd.size()));
    for (auto const& [key, value] : {std::pair{xb::keys::ring_ref, b.ring_ref}, std::pair{xb::keys::event_channel, b.event_channel},
                                     std::pair{xb::keys::protocol_v2, b.protocol_v2}})
        if (value)
            if (auto w = g.write(g.key(key), substitute(*value, g)); !w) return w;
    auto const announce = index % 2 ? xb::device_state::connected : xb::device_state::initialised;
    if (auto r = g.set_state(announce); !r) return r;
    auto seen = g.await_backend([](auto const& v) { return is_state(v, xb::device_state::closed) || is_state(v, xb::device_state::connected); },
                                "Closed");
    if (!seen) return failure(b.what + ": " + seen.error());
    if (!is_state(*seen, xb::device_state::closed)) return failure(b.what + ": the backend connected");
    say("keys: %-58s (announced %s) -> backend Closed", b.what.c_str(), announce == xb::device_state::connected ? "Connected" : "Initialised");
    return {};
}

inline auto botch_all(guest& g, std::vector<botch> const& cases) -> outcome<> {
    for (unsigned i = 0; i < cases.size(); ++i)
        if (auto r = botched_handshake(g, cases[i], i); !r) return r;
    // The same device, done properly, still works: the botches left nothing behind.
    if (auto r = connected(g); !r) return failure("reconnecting after the botches: " + r.error());
    if (auto r = still_serves(g); !r) return r;
    say("keys: a correct handshake afterwards connected and served a command");
    return {};
}

inline auto keys_missing(guest& g, run_options const&) -> outcome<> {
    return botch_all(g, {
        botch{.what = "no ring-ref", .ring_ref = std::nullopt},
        botch{.what = "no event-channel", .event_channel = std::nullopt},
        botch{.what = "no feature-protocol-v2", .protocol_v2 = std::nullopt},
        botch{.what = "no keys at all", .ring_ref = std::nullopt, .event_channel = std::nullopt, .protocol_v2 = std::nullopt},
    });
}

inline auto keys_ring_ref_garbage(guest& g, run_options const&) -> outcome<> {
    std::vector<botch> cases;
    for (char const* v : {"", "abc", "-1", "+$ref", " $ref", "$ref ", "0$ref", "0x8", "$refabc", "4294967296",
                          "18446744073709551616", "$ref\n"})
        cases.push_back(botch{.what = std::string{"ring-ref '"} + v + "'", .ring_ref = v});
    cases.push_back(botch{.what = "ring-ref of 1500 digits (xenstored's entry quota is 2048)", .ring_ref = std::string(1500, '7')});
    return botch_all(g, cases);
}

inline auto keys_event_channel_garbage(guest& g, run_options const&) -> outcome<> {
    std::vector<botch> cases;
    for (char const* v : {"", "0", "131072", "-1", "abc", "0$port", "$port ", "+$port", "1e3", "4294967297"})
        cases.push_back(botch{.what = std::string{"event-channel '"} + v + "'", .event_channel = v});
    return botch_all(g, cases);
}

inline auto keys_protocol_v2(guest& g, run_options const&) -> outcome<> {
    std::vector<botch> cases;
    for (char const* v : {"0", "2", "", " 1", "1 ", "01", "yes", "true", "1\n"})
        cases.push_back(botch{.what = std::string{"feature-protocol-v2 '"} + v + "'", .protocol_v2 = v});
    return botch_all(g, cases);
}

// Well-formed values that name something the backend may not use.
inline auto keys_bogus(guest& g, run_options const&) -> outcome<> {
    return botch_all(g, {
        botch{.what = "ring-ref of a grant that does not exist", .ring_ref = "4000"},
        botch{.what = "ring-ref granted to another domain", .foreign_grant = true},
        botch{.what = "event-channel that was never allocated", .event_channel = "1000"},
        botch{.what = "event-channel allocated for another domain", .foreign_port = true},
    });
}

// The ring granted read-only: the backend cannot store FINISH, so it must refuse the device
// (map_grants(writable) fails with EPERM) rather than connect, crash or answer nothing.
inline auto readonly(guest& g, run_options const&) -> outcome<> {
    return botch_all(g, {botch{.what = "ring granted read-only", .writable = false}});
}

// Frontend states written back to back with no waiting (doc 4.2 values 1-8), then a correct
// reset and handshake: whatever the backend made of the storm, it must come back.
inline auto state_storm(guest& g, run_options const& o) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    std::mt19937 rng{o.seed};
    unsigned const n = o.iterations ? o.iterations : 300;
    for (unsigned i = 0; i < n; ++i)
        if (auto r = g.set_state(static_cast<xb::device_state>(1 + static_cast<unsigned>(rng() % 8))); !r) return r;
    say("state-storm: %u random frontend states written (seed %u); backend now %s", n, o.seed,
        state_name(g.backend_state().value_or(std::nullopt)).c_str());
    // The backend still works through the storm's watch events after the reset saw InitWait;
    // one of them may map the storm-time ring, whose grant the reset ended, and close. A
    // frontend then resets again: a few attempts, each bounded, must succeed.
    for (unsigned attempt = 1;; ++attempt) {
        auto r = connected(g);
        if (r) break;
        if (attempt == 3) return failure("reconnecting after the storm, 3 attempts: " + r.error());
        say("state-storm: reconnect attempt %u: %s; again", attempt, r.error().c_str());
    }
    if (auto r = still_serves(g); !r) return r;
    say("state-storm: a correct handshake afterwards connected and served a command");
    return {};
}

// The frontend's state node stops being a state, or its device directory disappears (the
// guest is destroyed): the backend tears the instance down and ends Closed; the directory
// is the toolstack's to remove (libxl waits on it for Closed). The toolstack must attach the
// device again before the next scenario.
inline auto teardown_impl(guest& g, bool remove_dir) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    if (auto r = remove_dir ? g.remove(g.dir()) : g.write(g.key(xb::keys::state), "banana"); !r) return r;
    auto seen = g.await_backend([](auto const& v) { return is_state(v, xb::device_state::closed); }, "Closed");
    if (!seen) return failure(seen.error());
    say("teardown: frontend %s -> backend %s", remove_dir ? "directory removed" : "state 'banana'", state_name(*seen).c_str());
    return {};
}
inline auto teardown_state(guest& g, run_options const&) -> outcome<> { return teardown_impl(g, false); }
inline auto teardown_dir(guest& g, run_options const&) -> outcome<> { return teardown_impl(g, true); }

// Exit right after announcing Initialised: the backend maps a ring whose grant ends at once.
inline auto vanish_handshake(guest& g, run_options const&) -> outcome<> {
    if (auto r = g.reset(); !r) return r;
    if (auto r = g.grant_ring(); !r) return r;
    if (auto r = g.alloc_port(); !r) return r;
    for (auto const& [k, v] : {std::pair{xb::keys::ring_ref, std::to_string(g.ring_ref())},
                               std::pair{xb::keys::event_channel, std::to_string(g.port())},
                               std::pair{xb::keys::protocol_v2, std::string{"1"}}})
        if (auto w = g.write(g.key(k), v); !w) return w;
    if (auto r = g.set_state(xb::device_state::initialised); !r) return r;
    say("vanish-handshake: Initialised announced; exiting now");
    ::_exit(0);
}

}  // namespace xtpm::hostile
