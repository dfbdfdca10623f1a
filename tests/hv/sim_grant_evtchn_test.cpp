#include <xtpm/hv/sim.hpp>

#include "hv/sim_fixture.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include <sys/mman.h>

namespace {
using namespace xtpm;
using namespace xtpm::hv;
using test::sys;

auto text(std::span<std::byte> b, std::size_t at, std::size_t n) -> std::string {
    return {reinterpret_cast<char const*>(b.data() + at), n};
}
void put(std::span<std::byte> b, std::size_t at, std::string_view s) { std::memcpy(b.data() + at, s.data(), s.size()); }

auto str_or_empty(result<std::optional<std::string>> const& r) -> std::string { return r && *r ? **r : ""; }

// Publish numbers through xenstore, as a frontend does with ring-ref and event-channel.
auto read_number(sim_hv& h, std::string_view path) -> std::uint32_t {
    auto v = h.read(path);
    REQUIRE((v && *v));
    return static_cast<std::uint32_t>(std::stoul(**v));
}
}  // namespace

TEST_CASE("sim_hv grants: a writable grant is memory shared both ways between processes", "[hv][sim][grant]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto share = dom0.share_pages(1, 2, true);
    REQUIRE(share.has_value());
    REQUIRE(share->refs().size() == 2);
    REQUIRE(share->bytes().size() == 2 * page_size);
    CHECK(std::ranges::all_of(share->bytes(), [](std::byte b) { return b == std::byte{0}; }));
    put(share->bytes(), page_size + 10, "from dom0");
    std::array<grant_ref_t, 2> const refs{share->refs()[0], share->refs()[1]};
    test::pipe_signal done;
    test::child_process dom1{[&] {
        auto h = sim_hv::connect(d.dir(), 1);
        if (!h) return 1;
        auto m = h->map_grants(0, refs, true);
        if (!m || m->bytes().size() != 2 * page_size) return 2;
        if (text(m->bytes(), page_size + 10, 9) != "from dom0") return 3;
        put(m->bytes(), 0, "from dom1");
        done.post();
        return 0;
    }};
    REQUIRE(done.await());
    CHECK(text(share->bytes(), 0, 9) == "from dom1");
    CHECK(dom1.exit_code() == 0);
}

TEST_CASE("sim_hv grants: a read-only grant cannot be written through", "[hv][sim][grant]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    auto share = dom0.share_pages(1, 1, false);
    REQUIRE(share.has_value());
    put(share->bytes(), 0, "read me");  // the granter's own mapping stays writable
    CHECK(dom1.map_grants(0, share->refs(), true).error() == sys(EPERM));
    auto m = dom1.map_grants(0, share->refs(), false);
    REQUIRE(m.has_value());
    CHECK(text(m->bytes(), 0, 7) == "read me");
    CHECK(::mprotect(m->bytes().data(), page_size, PROT_READ | PROT_WRITE) != 0);

    SECTION("a process that writes anyway takes SIGSEGV") {
        test::child_process writer{[&] {
            m->bytes()[0] = std::byte{'X'};
            return 0;
        }};
        auto const code = writer.exit_code();
        CHECK(code == 128 + SIGSEGV);
        CHECK(text(share->bytes(), 0, 7) == "read me");
    }
}

TEST_CASE("sim_hv grants: only the grantee maps, only granted refs, only while granted", "[hv][sim][grant]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    auto dom2 = d.connect(2);
    auto made = dom0.share_pages(1, 1, true);
    REQUIRE(made.has_value());
    std::optional<sim_hv::share> share{std::move(*made)};
    auto const ref = share->refs()[0];
    grant_ref_t const one[] = {ref};
    CHECK(dom2.map_grants(0, one, false).error() == sys(EPERM));  // granted to dom1, not dom2
    grant_ref_t const bogus[] = {ref, 4711};
    CHECK(dom1.map_grants(0, bogus, false).error() == sys(EINVAL));
    CHECK(dom1.map_grants(2, one, false).error() == sys(EINVAL));  // dom2 granted nothing
    auto kept = dom1.map_grants(0, one, true);
    REQUIRE(kept.has_value());
    put(share->bytes(), 0, "before end");
    share.reset();  // ends the grant
    CHECK(dom1.map_grants(0, one, true).error() == sys(EINVAL));
    CHECK(text(kept->bytes(), 0, 10) == "before end");  // an existing mapping stays, as a busy grant
}

TEST_CASE("sim_hv grants: one map call is contiguous in ref order", "[hv][sim][grant]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    auto a = dom0.share_pages(1, 2, true);
    auto b = dom0.share_pages(1, 1, true);
    REQUIRE((a && b));
    put(a->bytes(), 0, "A0");
    put(a->bytes(), page_size, "A1");
    put(b->bytes(), 0, "B0");
    grant_ref_t const refs[] = {b->refs()[0], a->refs()[1], a->refs()[0]};
    auto m = dom1.map_grants(0, refs, true);
    REQUIRE(m.has_value());
    REQUIRE(m->bytes().size() == 3 * page_size);
    CHECK(text(m->bytes(), 0, 2) == "B0");
    CHECK(text(m->bytes(), page_size, 2) == "A1");
    CHECK(text(m->bytes(), 2 * page_size, 2) == "A0");
    CHECK(dom0.share_pages(1, 0, true).error() == make_error_code(errc::bad_value));
    CHECK(dom0.share_pages(1, 257, true).error() == make_error_code(errc::bad_value));
}

TEST_CASE("sim_hv evtchn: a notify before the bind is not lost", "[hv][sim][evtchn]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    auto port = dom1.alloc_unbound(0);
    REQUIRE(port.has_value());
    CHECK(dom1.notify(*port).has_value());  // nobody bound yet
    auto local = dom0.bind_interdomain(1, *port);
    REQUIRE(local.has_value());
    CHECK(test::next_port(dom0) == *local);
    CHECK(dom0.pending() == result<std::optional<evtchn_port_t>>{std::nullopt});  // consumed
    REQUIRE(dom0.unmask(*local));

    SECTION("notifications travel both ways") {
        for (int i = 0; i < 3; ++i) {
            REQUIRE(dom0.notify(*local));
            CHECK(test::next_port(dom1) == *port);
            REQUIRE(dom1.notify(*port));
            CHECK(test::next_port(dom0) == *local);
        }
    }
    SECTION("a bind marks the new port pending even without a notify") {
        auto p2 = dom1.alloc_unbound(0);
        auto l2 = dom0.bind_interdomain(1, *p2);
        REQUIRE(l2.has_value());
        CHECK(test::next_port(dom0) == *l2);
    }
    SECTION("only the domain the port was made for binds it, and only once") {
        auto dom2 = d.connect(2);
        auto p2 = dom1.alloc_unbound(0);
        CHECK(dom2.bind_interdomain(1, *p2).error() == sys(EINVAL));
        CHECK(dom0.bind_interdomain(1, *port).error() == sys(EINVAL));  // already bound
        CHECK(dom0.bind_interdomain(1, 999).error() == sys(EINVAL));
        CHECK(dom1.alloc_unbound(42).error() == sys(ESRCH));
        CHECK(dom1.notify(999).error() == sys(EINVAL));
    }
    SECTION("after unbind the peer's notify is a harmless no-op") {
        REQUIRE(dom0.unbind(*local));
        CHECK(dom1.notify(*port).has_value());
        CHECK(dom0.notify(*local).error() == sys(EINVAL));
    }
}

TEST_CASE("sim_hv evtchn: notifies to a port that is already pending make one event", "[hv][sim][evtchn]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    auto port = dom1.alloc_unbound(0);
    REQUIRE(port.has_value());
    auto local = dom0.bind_interdomain(1, *port);
    REQUIRE(local.has_value());
    REQUIRE(test::next_port(dom0) == *local);  // the bind's own mark
    for (int i = 0; i < 3; ++i) REQUIRE(dom1.notify(*port));
    CHECK(test::next_port(dom0) == *local);
    CHECK(dom0.pending() == result<std::optional<evtchn_port_t>>{std::nullopt});
    CHECK_FALSE(test::wait_readable(dom0.evtchn_fd(), std::chrono::milliseconds{0}));
    REQUIRE(dom1.notify(*port));  // consumed above: pending again, and the fd wakes a poller
    CHECK(test::wait_readable(dom0.evtchn_fd()));
    CHECK(test::next_port(dom0) == *local);
}

TEST_CASE("sim_hv evtchn: no notify is lost while the ends mix polling the page and blocking", "[hv][sim][evtchn]") {
    // Ping-pong of a sequence number through a granted page. Each end sometimes sees the
    // peer's write by looking at the page (leaving the event pending, as a polling tpmif end
    // does) and sometimes blocks for the event. A lost wake-up hangs one end: its poll gives
    // up after a bound and the test fails.
    test::simhv_daemon d;
    auto fe = d.connect(1);
    auto page = fe.share_pages(0, 1, true);
    auto port = fe.alloc_unbound(0);
    REQUIRE((page && port));
    constexpr std::uint32_t rounds = 20000;
    auto const ref = page->refs()[0];
    // Wait until the word at `at` is `want`: peek first on some rounds, else block.
    auto const await = [](sim_hv& h, std::span<std::byte> b, std::size_t at, std::uint32_t want) {
        std::atomic_ref<std::uint32_t> w{*reinterpret_cast<std::uint32_t*>(b.data() + at)};
        if (want % 3 != 0 && w.load(std::memory_order_acquire) == want) return true;  // event left pending
        do {  // as tpmif_frontend waits: poll the fd first, then consume one port
            if (!test::wait_readable(h.evtchn_fd())) return false;
            if (!h.pending()) return false;
        } while (w.load(std::memory_order_acquire) != want);
        return true;
    };
    test::child_process be{[&] {
        auto h = sim_hv::connect(d.dir(), 0);
        if (!h) return 1;
        grant_ref_t const refs[] = {ref};
        auto m = h->map_grants(1, refs, true);
        auto l = h->bind_interdomain(1, *port);
        if (!m || !l) return 2;
        std::atomic_ref<std::uint32_t> out{*reinterpret_cast<std::uint32_t*>(m->bytes().data() + 64)};
        for (std::uint32_t i = 1; i <= rounds; ++i) {
            if (!await(*h, m->bytes(), 0, i)) return 3;
            out.store(i, std::memory_order_release);
            if (!h->notify(*l)) return 4;
        }
        return 0;
    }};
    std::atomic_ref<std::uint32_t> out{*reinterpret_cast<std::uint32_t*>(page->bytes().data())};
    std::uint32_t done = 0;
    for (std::uint32_t i = 1; i <= rounds; ++i, ++done) {
        out.store(i, std::memory_order_release);
        REQUIRE(fe.notify(*port));
        if (!await(fe, page->bytes(), 64, i)) break;
    }
    CHECK(done == rounds);
    CHECK(be.exit_code() == 0);
}

TEST_CASE("sim_hv evtchn: a dead peer is harmless and its port can be bound again", "[hv][sim][evtchn]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto port = dom0.alloc_unbound(1);
    REQUIRE(port.has_value());
    REQUIRE(dom0.write("/port", std::to_string(*port)));
    auto const backend = [&] {
        auto h = sim_hv::connect(d.dir(), 1);
        if (!h) return 1;
        auto rp = h->read("/port");
        if (!rp) return 2;
        auto l = h->bind_interdomain(0, static_cast<evtchn_port_t>(std::stoul(rp->value_or("0"))));
        if (!l || !h->notify(*l)) return 3;
        return test::next_port(*h) == *l ? 0 : 4;  // the bind's own pending mark
    };
    {
        xs_permission const readable[] = {{0, true, false}};
        REQUIRE(dom0.set_permissions("/port", readable));
        test::child_process first{backend};
        CHECK(first.exit_code() == 0);
    }
    CHECK(test::next_port(dom0) == *port);
    int failed = 0;
    for (int i = 0; i < 100000; ++i) failed += dom0.notify(*port) ? 0 : 1;  // never blocks, never fails
    CHECK(failed == 0);
    test::child_process second{backend};  // the port is unbound again, reserved for dom1
    CHECK(second.exit_code() == 0);
    CHECK(test::next_port(dom0) == *port);
}

TEST_CASE("sim_hv: a domain's death ends its grants and closes its ports", "[hv][sim][death]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    REQUIRE(dom0.watch("@releaseDomain", "gone"));
    REQUIRE(test::next_event(dom0));
    test::pipe_signal ready;
    test::child_process guest{[&] {
        auto h = sim_hv::connect(d.dir(), 1);
        if (!h) return 1;
        auto s = h->share_pages(0, 1, true);
        auto p = h->alloc_unbound(0);
        if (!s || !p) return 2;
        put(s->bytes(), 0, "guest page");
        if (!h->write("ring-ref", std::to_string(s->refs()[0])) || !h->write("event-channel", std::to_string(*p)) ||
            !h->watch("/local/domain/0", "w"))
            return 3;
        ready.post();
        pause();  // until killed
        return 0;
    }};
    REQUIRE(ready.await());
    auto const ref = read_number(dom0, "/local/domain/1/ring-ref");
    auto const port = read_number(dom0, "/local/domain/1/event-channel");
    grant_ref_t const refs[] = {ref};
    auto kept = dom0.map_grants(1, refs, true);
    REQUIRE(kept.has_value());
    auto local = dom0.bind_interdomain(1, port);
    REQUIRE(local.has_value());
    auto const other = dom0.alloc_unbound(1);
    REQUIRE(other.has_value());

    guest.kill();
    REQUIRE(guest.wait());
    auto ev = test::next_event(dom0);
    REQUIRE(ev);
    CHECK(ev->token == "gone");

    CHECK(dom0.map_grants(1, refs, true).error() == sys(EINVAL));
    CHECK(text(kept->bytes(), 0, 10) == "guest page");
    CHECK(dom0.notify(*local).has_value());
    CHECK(dom0.write("/local/domain/0/x", "1").has_value());  // its watch here went with it
    CHECK(str_or_empty(dom0.read("/local/domain/1/ring-ref")) == std::to_string(ref));  // the toolstack's to remove
    // A new incarnation of dom1 starts clean and can bind what dom0 offers it.
    auto dom1 = d.connect(1);
    CHECK(dom1.bind_interdomain(0, *other).has_value());
}

TEST_CASE("sim_hv: round trip over a granted page and an event channel", "[hv][sim][.bench]") {
    // Frontend (this process, dom1) and backend (a child, dom0), as tpmif: the frontend writes
    // a request and state SUBMIT, notifies; the backend copies it out, writes a response and
    // FINISH, notifies back. Printed, not asserted.
    test::simhv_daemon d;
    auto fe = d.connect(1);
    auto page = fe.share_pages(0, 1, true);
    auto port = fe.alloc_unbound(0);
    REQUIRE((page && port));
    constexpr int rounds = 20000;
    constexpr std::size_t len = 64;
    auto const ref = page->refs()[0];
    test::child_process be{[&] {
        auto h = sim_hv::connect(d.dir(), 0);
        if (!h) return 1;
        grant_ref_t const refs[] = {ref};
        auto m = h->map_grants(1, refs, true);
        auto l = h->bind_interdomain(1, *port);
        if (!m || !l) return 2;
        std::array<std::byte, len> buf{};
        std::atomic_ref<std::uint8_t> state{*reinterpret_cast<std::uint8_t*>(m->bytes().data() + 4)};
        for (int i = 0; i < rounds;) {
            if (!test::next_port(*h)) return 3;
            if (state.load(std::memory_order_acquire) != 1) continue;
            std::memcpy(buf.data(), m->bytes().data() + 8, len);
            std::memcpy(m->bytes().data() + 8, buf.data(), len);
            state.store(2, std::memory_order_release);
            if (!h->notify(*l)) return 4;
            ++i;
        }
        return 0;
    }};
    std::atomic_ref<std::uint8_t> state{*reinterpret_cast<std::uint8_t*>(page->bytes().data() + 4)};
    std::vector<double> us;
    us.reserve(rounds);
    std::array<std::byte, len> req{}, rsp{};
    for (int i = 0; i < rounds; ++i) {
        auto const t0 = std::chrono::steady_clock::now();
        std::memcpy(page->bytes().data() + 8, req.data(), len);
        state.store(1, std::memory_order_release);
        REQUIRE(fe.notify(*port));
        while (state.load(std::memory_order_acquire) != 2) REQUIRE(test::next_port(fe));
        std::memcpy(rsp.data(), page->bytes().data() + 8, len);
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    CHECK(be.exit_code() == 0);
    std::ranges::sort(us);
    std::printf("sim_hv round trip (%d x %zu B): p50 %.2f us, p99 %.2f us, max %.1f us\n", rounds, len,
                us[us.size() / 2], us[us.size() * 99 / 100], us.back());
}
