// Hostile use of a connected tpmif page (issue 3, "a hostile frontend process"): bad lengths,
// bogus extra pages, bytes flipped while the backend works, SUBMIT/CANCEL storms, states only
// the backend may write, and a frontend that vanishes mid-command. What the backend must do
// is in docs/tpmif.md and docs/hostile-frontend.md; every case ends with a correct command.
#pragma once

#include "checks.hpp"

#include <map>
#include <random>
#include <unistd.h>

namespace xtpm::hostile {

struct run_options {
    unsigned iterations = 0;  // 0: the scenario's default
    std::uint32_t seed = 1;
};

// A fresh, correct connection to a started TPM (xtpm-vtpmd --hv powers the TPM on and leaves
// TPM2_Startup to the guest, as a real TPM does).
inline auto connected(guest& g, bool extra_pages = false) -> outcome<> {
    if (auto r = g.reset(); !r) return r;
    if (auto r = g.connect(extra_pages); !r) return r;
    auto s = g.transact(startup_clear());
    if (!s) return failure("TPM2_Startup: " + s.error());
    auto const rc = static_cast<std::uint32_t>(wire::response_view{*s}.rc());
    if (rc != 0 && rc != rc_initialize) return failure("TPM2_Startup failed with rc " + hex32(rc));
    return {};
}

// A correct exchange first, so that a failure later is the scenario's doing.
inline auto good(guest& g, run_options const&) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    auto r = g.transact(get_random(32));
    if (!r) return failure("GetRandom(32): " + r.error());
    if (auto ok = expect_random(*r, 32); !ok) return ok;
    std::vector<std::byte> event(100, std::byte{0x42});
    auto a = event_digests_of(g, event);
    auto b = a ? event_digests_of(g, event) : a;
    if (!a || !b) return failure(!a ? a.error() : b.error());
    if (*a != *b) return failure("PCR_Event(TPM_RH_NULL) of the same data gave different digests");
    say("good: GetRandom(32) and PCR_Event(TPM_RH_NULL) x2 answered correctly (%zu banks)", a->size());
    return {};
}

// Request lengths around and far past the page (doc 3.8: the upstream check wraps in 32 bits).
inline auto lengths(guest& g, run_options const&) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    auto pg = g.page();
    auto const cmd = get_random(16);
    std::vector<std::byte> big(tp::single_page_capacity, std::byte{0xA5});
    std::ranges::copy(cmd, big.begin());
    wire::store_be<std::uint32_t>(wire::bytes_span{big}.subspan(2, 4), static_cast<std::uint32_t>(big.size()));
    struct length_case {
        std::uint32_t length;
        std::vector<std::byte> payload;
        std::optional<std::uint32_t> rc;  // required rc; nullopt: any error
        bool may_succeed = false;
        char const* what;
    };
    std::vector<length_case> cases{
        {0, {}, {}, false, "empty"},
        {1, {std::byte{0x80}}, {}, false, "one byte"},
        {9, {cmd.begin(), cmd.begin() + 9}, {}, false, "a header minus one byte"},
        {10, {cmd.begin(), cmd.begin() + 10}, {}, false, "a header claiming 12 bytes"},
        {4088, big, {}, true, "4088 bytes, header size 4088 (GetRandom + junk)"},
        {4088, cmd, {}, false, "4088 bytes, header size 12"},
        {4089, big, rc_command_size, false, "one byte past the page"},
        {4096, big, rc_command_size, false, "the page size"},
        {4097, big, rc_command_size, false, "page size + 1"},
        {0x10000, big, rc_command_size, false, "64 KiB"},
        {0x7FFFFFFF, big, rc_command_size, false, "INT32_MAX"},
        {0x80000000, big, rc_command_size, false, "2^31"},
    };
    for (std::uint32_t v = 0xFFFFFFF0; v != 0; ++v) cases.push_back({v, big, rc_command_size, false, "wraps 8 + length"});
    for (auto const& c : cases) {
        pg.fill(tp::header_size, tp::single_page_capacity, std::byte{0xA5});
        auto a = exchange(g, c.payload, c.length);
        auto const label = "length " + hex32(c.length) + " (" + c.what + ")";
        if (!a) return failure(label + ": " + a.error());
        if (!(c.may_succeed && a->rc() == 0))
            if (auto e = expect_error(*a, c.rc); !e) return failure(label + ": " + e.error());
        if (auto s = still_serves(g); !s) return failure(label + ": " + s.error());
        say("lengths: %-52s -> rc %s, %u bytes; next command served", label.c_str(), hex32(a->rc()).c_str(), a->length);
    }
    return {};
}

// nr_extra_pages 0..255 naming refs that are not pages granted to the backend. Without the
// negotiated extension any n > 0 is refused with TPM_RC_VALUE; with it, n > 1 with
// TPM_RC_COMMAND_SIZE and unusable refs with TPM_RC_VALUE (docs/tpmif.md).
inline auto extra_pages_impl(guest& g, bool want_feature) -> outcome<> {
    if (auto r = connected(g, want_feature); !r) return r;
    bool const on = g.extra_pages_negotiated();
    say("extra-pages: feature-extra-pages %s", on ? "negotiated" : want_feature ? "requested but not offered by the backend" : "not requested");
    auto const cmd = get_random(16);
    std::vector<std::uint32_t> const bogus{0, 1, 7, 4095, 0x80000000, 0xDEADBEEF, 0xFFFFFFFF, g.ring_ref() + 1000};
    auto check = [&](answer const& a, std::uint8_t n, bool alias) -> outcome<> {
        if (n == 0) return expect_random(a.bytes, 16);
        if (!on) return expect_error(a, rc_value);
        if (n > tp::max_extra_pages) return expect_error(a, rc_command_size);
        if (alias) return a.rc() == 0 ? expect_random(a.bytes, 16) : expect_error(a);  // any well-formed answer
        return expect_error(a, rc_value);
    };
    auto pg = g.page();
    auto one = [&](std::uint8_t n, std::span<std::uint32_t const> refs, bool alias, std::string const& what) -> outcome<std::uint32_t> {
        for (std::size_t i = 0; i < n; ++i) pg.set_ref(i, refs[i % refs.size()]);
        auto a = exchange(g, cmd, static_cast<std::uint32_t>(cmd.size()), n);
        if (!a) return failure(what + ": " + a.error());
        if (auto c = check(*a, n, alias); !c) return failure(what + ": " + c.error());
        if (auto s = still_serves(g); !s) return failure(what + ": " + s.error());
        return a->rc();
    };
    for (unsigned n = 0; n <= tp::max_nr_extra_pages_field; ++n) {
        std::vector<std::uint32_t> refs;
        for (std::size_t i = 0; i < n; ++i) refs.push_back(bogus[(n + i) % bogus.size()]);
        if (refs.empty()) refs.push_back(0);
        if (auto r = one(static_cast<std::uint8_t>(n), refs, false, "nr_extra_pages " + std::to_string(n)); !r)
            return failure(r.error());
    }
    say("extra-pages: nr_extra_pages 0..255 with bogus refs: each answered as required, the next command served");
    // One page named by refs that exist but must not be usable, and the ring itself.
    hv::domid_t const other = g.backend_id() != 0 ? 0 : g.self();
    auto ro = g.grant_spare(false, g.backend_id());
    auto foreign = ro ? g.grant_spare(true, other) : ro;
    if (!ro || !foreign) return failure(!ro ? ro.error() : foreign.error());
    struct named { std::uint32_t ref; bool alias; char const* what; };
    for (auto const& c : {named{*ro, false, "a page granted read-only"}, named{*foreign, false, "a page granted to another domain"},
                          named{g.ring_ref(), true, "the ring page itself"}}) {
        std::array<std::uint32_t, 1> refs{c.ref};
        auto r = one(1, refs, c.alias, std::string{"nr_extra_pages 1 = "} + c.what);
        if (!r) return failure(r.error());
        say("extra-pages: nr_extra_pages 1 naming %s: rc %s, as required", c.what, hex32(*r).c_str());
    }
    return {};
}
inline auto extra_pages(guest& g, run_options const&) -> outcome<> { return extra_pages_impl(g, false); }
inline auto extra_pages_negotiated(guest& g, run_options const&) -> outcome<> { return extra_pages_impl(g, true); }

// While the state is SUBMIT (checked on every pass, until `d`): every `every` passes store the
// other of `values` at `at`, and every 8 flips a length drawn from `lengths`. Returns the passes.
template <std::size_t L>
auto flip_until_answered(raw_page const& pg, deadline const& d, std::size_t at, std::array<std::byte, 2> values,
                         std::array<std::uint32_t, L> const& lengths, unsigned every, std::minstd_rand& rng) -> unsigned long {
    unsigned long k = 0;
    unsigned flips = 0;
    while (pg.state() == static_cast<std::uint8_t>(tp::page_state::submit) && (k & 0xFFF || !d.passed())) {
        if (k++ % every) continue;
        pg.set_byte(at, values[++flips & 1]);
        if (flips % 8 == 0) pg.set_length(lengths[rng() % L]);
    }
    return k;
}

// Flip `length` and one payload byte in a tight loop from SUBMIT until the backend answers.
// The backend copies the request once; the answer must be for one consistent snapshot. The
// command is PCR_Event(TPM_RH_NULL) of 1000 bytes: its answer holds the digests of the event
// data the TPM saw, so it tells which variant was snapshotted (all banks must agree on one),
// and the flipped byte lies past the end of any answer, so a flip that lands after the
// backend wrote its answer cannot corrupt it (docs/hostile-frontend.md).
inline auto flip_event(guest& g, run_options const& o) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    constexpr std::size_t event_size = 1000, flip_index = 990;
    std::vector<std::byte> ev_a(event_size), ev_b;
    for (std::size_t i = 0; i < event_size; ++i) ev_a[i] = static_cast<std::byte>(i * 13 + 1);
    ev_b = ev_a;
    ev_b[flip_index] ^= std::byte{0xFF};
    auto dig_a = event_digests_of(g, ev_a);
    auto dig_b = dig_a ? event_digests_of(g, ev_b) : dig_a;
    if (!dig_a || !dig_b) return failure("reference digests: " + (!dig_a ? dig_a.error() : dig_b.error()));
    if (*dig_a == *dig_b) return failure("the two event variants have the same digests");
    auto const cmd = pcr_event(ev_a);
    auto const len = static_cast<std::uint32_t>(cmd.size());
    std::array<std::uint32_t, 8> const lengths{len, len, len, len + 1, len - 1, 0xFFFFFFFF, 4089, len};
    std::size_t const flip_at = tp::header_size + pcr_event_data_offset + flip_index;
    std::array<std::byte, 2> const flip_values{ev_a[flip_index], ev_b[flip_index]};
    auto pg = g.page();
    unsigned const n = o.iterations ? o.iterations : 300;
    std::map<std::string, unsigned> seen;
    unsigned long flips = 0;
    std::minstd_rand rng{o.seed};
    for (unsigned it = 0; it < n; ++it) {
        g.drain_events();
        pg.submit(cmd, len);
        if (auto r = g.notify(); !r) return r;
        flips += flip_until_answered(pg, deadline{g.limit()}, flip_at, flip_values, lengths, 1, rng);
        auto [end, raw] = g.await_done();
        auto const label = "iteration " + std::to_string(it);
        if (!end || end->state != tp::page_state::finish || !end->notified)
            return failure(label + ": no FINISH with a notify within the limit (state " + std::to_string(raw) + ")");
        auto a = read_answer_by_header(pg, tp::header_size);
        if (!a) return failure(label + ": " + a.error());
        if (a->length != a->bytes.size() && std::ranges::find(lengths, a->length) == lengths.end())
            return failure(label + ": page length " + hex32(a->length) + " is neither the answer's size nor a value we wrote");
        if (a->rc() != 0) {
            if (auto e = expect_error(answer{wire::header_size, a->bytes, a->header}); !e) return failure(label + ": " + e.error());
            ++seen["error " + hex32(a->rc())];
            continue;
        }
        auto d2 = event_digests(a->bytes);
        if (!d2) return failure(label + ": a success answer that does not parse as PCR_Event's");
        if (*d2 == *dig_a) ++seen["digests of variant A"];
        else if (*d2 == *dig_b) ++seen["digests of variant B"];
        else return failure(label + ": digests match neither variant: the TPM ran bytes nobody submitted whole");
    }
    say("flip-event: %u submits; byte %zu and length flipped over %lu loop passes while the backend worked:", n, flip_at, flips);
    for (auto const& [what, count] : seen) say("flip-event:   %5u x %s", count, what.c_str());
    return still_serves(g);
}

// GetRandom(8) with the low byte of bytesRequested flipped to 32 (and `length` flipped) from
// SUBMIT until FINISH: the answer must be a consistent GetRandom(8) or GetRandom(32), or an
// error. The flipped byte (page offset 19) is also the low byte of the answer's TPM2B size,
// so a flip that lands after the backend wrote the answer is detectable and excused, never
// mistaken for a backend fault; if over half the answers are excused, the run proves nothing
// and fails.
inline auto flip_random(guest& g, run_options const& o) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    auto const cmd = get_random(8);
    constexpr std::uint32_t len = 12;
    std::array<std::uint32_t, 6> const lengths{len, len, len, 11, 13, 0xFFFFFFF0};
    constexpr std::size_t flip_at = tp::header_size + 11;
    std::array<std::byte, 2> const flip_values{std::byte{8}, std::byte{32}};
    auto pg = g.page();
    unsigned const n = o.iterations ? o.iterations : 300;
    std::map<std::string, unsigned> seen;
    unsigned excused = 0;
    std::minstd_rand rng{o.seed};
    for (unsigned it = 0; it < n; ++it) {
        g.drain_events();
        pg.submit(cmd, len);
        if (auto r = g.notify(); !r) return r;
        // Flipping on every 16th pass only: few flips land in the backend's window between
        // writing its answer and storing FINISH.
        flip_until_answered(pg, deadline{g.limit()}, flip_at, flip_values, lengths, 16, rng);
        auto [end, raw] = g.await_done();
        auto const label = "iteration " + std::to_string(it);
        if (!end || end->state != tp::page_state::finish || !end->notified)
            return failure(label + ": no FINISH with a notify within the limit (state " + std::to_string(raw) + ")");
        auto a = read_answer_by_header(pg, tp::header_size);
        if (!a) return failure(label + ": " + a.error());
        if (a->rc() != 0) {
            if (auto e = expect_error(answer{wire::header_size, a->bytes, a->header}); !e) return failure(label + ": " + e.error());
            ++seen["error " + hex32(a->rc())];
            continue;
        }
        auto const size = a->bytes.size();
        if ((size == 20 && expect_random(a->bytes, 8)) || (size == 44 && expect_random(a->bytes, 32))) {
            ++seen[size == 20 ? "GetRandom(8)" : "GetRandom(32)"];
            continue;
        }
        auto const low = std::to_integer<unsigned>(a->bytes.size() > 11 ? a->bytes[11] : std::byte{0});
        if ((size == 20 && low == 32) || (size == 44 && low == 8)) {
            ++excused;  // our own flip after the backend's answer, at exactly the flipped byte
            continue;
        }
        return failure(label + ": a success answer of " + std::to_string(size) + " bytes that is neither GetRandom(8) nor GetRandom(32)");
    }
    say("flip-random: %u submits flipping bytesRequested 8<->32 and length:", n);
    for (auto const& [what, count] : seen) say("flip-random:   %5u x %s", count, what.c_str());
    say("flip-random:   %5u x answer overwritten by our own late flip (excused)", excused);
    if (excused * 2 > n) return failure("too many answers overwritten by our own flips to judge the backend");
    return still_serves(g);
}

// Random bursts of SUBMIT, CANCEL, notifies and pauses. After each burst the page must settle
// in IDLE or FINISH within the bound; a FINISH carries a GetRandom(32) or a well-formed error
// (TPM_RC_CANCELED, or TPM_RC_COMMAND_CODE for an answer we re-submitted as a command).
inline auto storm(guest& g, run_options const& o) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    auto pg = g.page();
    auto const cmd = get_random(32);
    std::mt19937 rng{o.seed};
    unsigned const n = o.iterations ? o.iterations : 300;
    std::map<std::string, unsigned> seen;
    for (unsigned burst = 0; burst < n; ++burst) {
        g.drain_events();
        // The request goes in before the burst's first SUBMIT (the backend is idle then); a
        // burst without one leaves the last answer on the page, which must still check out.
        bool written = false;
        auto submit = [&] {
            if (!std::exchange(written, true)) {
                pg.put(tp::header_size, cmd);
                pg.set_length(static_cast<std::uint32_t>(cmd.size()));
            }
            pg.set_state(tp::page_state::submit);
        };
        unsigned const ops = 1 + static_cast<unsigned>(rng() % 8);
        for (unsigned i = 0; i < ops; ++i) {
            switch (static_cast<unsigned>(rng() % 5)) {
            case 0: submit(); break;
            case 1: pg.set_state(tp::page_state::cancel); break;
            case 2: (void)g.notify(); break;
            case 3:
                for (auto spin = static_cast<unsigned>(rng() % 4000); spin > 0; --spin) (void)pg.state();
                break;
            default:
                for (unsigned t = 0; t < 64; ++t) t & 1 ? pg.set_state(tp::page_state::cancel) : submit();
                (void)g.notify();
            }
        }
        if (auto r = g.notify(); !r) return r;
        deadline const d{g.limit()};
        std::uint8_t s = pg.state();
        while (s != static_cast<std::uint8_t>(tp::page_state::idle) && s != static_cast<std::uint8_t>(tp::page_state::finish)) {
            if (d.passed()) return failure("burst " + std::to_string(burst) + ": the page did not settle in IDLE or FINISH (state " + std::to_string(s) + ")");
            readable(g.hv().evtchn_fd(), d.left_ms(1));
            g.drain_events();
            s = pg.state();
        }
        if (s == static_cast<std::uint8_t>(tp::page_state::idle)) {
            ++seen["settled IDLE"];
            continue;
        }
        auto a = read_answer(pg, tp::header_size);
        if (!a) return failure("burst " + std::to_string(burst) + ": " + a.error());
        // A SUBMIT stored after the backend's FINISH re-submits the answer as a command (its
        // code, 0 or an rc, is no command: TPM_RC_COMMAND_CODE); that is our doing, and any
        // well-formed error is a correct reply to it. A success must be GetRandom(32).
        if (a->rc() != 0) {
            if (auto e = expect_error(*a); !e) return failure("burst " + std::to_string(burst) + ": " + e.error());
            ++seen["FINISH with error " + hex32(a->rc())];
        } else if (auto ok = expect_random(a->bytes, 32); ok) {
            ++seen["FINISH with GetRandom(32)"];
        } else if (!written && burst == 0) {
            ++seen["FINISH with Startup's answer (no SUBMIT in the first burst)"];
        } else {
            return failure("burst " + std::to_string(burst) + ": " + ok.error() + "; answer " + to_hex(a->bytes));
        }
    }
    say("storm: %u bursts of SUBMIT/CANCEL/notify (seed %u):", n, o.seed);
    for (auto const& [what, count] : seen) say("storm:   %5u x %s", count, what.c_str());
    return still_serves(g);
}

// States only the backend may write (IDLE, FINISH) and values no end may write, each with a
// notify, then a correct request: the backend ignores the former and serves the latter.
inline auto bad_state(guest& g, run_options const&) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    auto pg = g.page();
    auto const cmd = get_random(16);
    for (std::uint8_t v : {std::uint8_t{4}, std::uint8_t{5}, std::uint8_t{0x7F}, std::uint8_t{0x80}, std::uint8_t{0xFF},
                           std::uint8_t{2}, std::uint8_t{0}}) {
        pg.set_state(v);
        if (auto r = g.notify(); !r) return r;
        auto a = exchange(g, cmd, static_cast<std::uint32_t>(cmd.size()));
        if (!a) return failure("after state " + std::to_string(v) + ": " + a.error());
        if (auto ok = expect_random(a->bytes, 16); !ok) return failure("after state " + std::to_string(v) + ": " + ok.error());
        say("bad-state: state %u + notify ignored; the next request served", v);
    }
    return {};
}

// Exit (no cleanup: the process just ends, as a crashed guest does) with SUBMIT set.
inline auto vanish_impl(guest& g, wire::bytes_view cmd, bool cancel, char const* what) -> outcome<> {
    if (auto r = connected(g); !r) return r;
    auto pg = g.page();
    say("vanish: submitting %s%s, then exiting at once", what, cancel ? " and canceling it" : "");
    pg.submit(cmd, static_cast<std::uint32_t>(cmd.size()));
    (void)g.notify();
    if (cancel) {
        pg.set_state(tp::page_state::cancel);
        (void)g.notify();
    }
    ::_exit(0);  // no say() here: the backend must find the request still in flight
}
inline auto vanish(guest& g, run_options const&) -> outcome<> { return vanish_impl(g, get_random(32), false, "GetRandom(32)"); }
inline auto vanish_busy(guest& g, run_options const&) -> outcome<> {
    return vanish_impl(g, std::as_bytes(std::span{create_primary_rsa}), false, "CreatePrimary(RSA-2048)");
}
inline auto vanish_cancel(guest& g, run_options const&) -> outcome<> {
    return vanish_impl(g, std::as_bytes(std::span{create_primary_rsa}), true, "CreatePrimary(RSA-2048)");
}

}  // namespace xtpm::hostile
