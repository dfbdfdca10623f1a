// Both handshake machines wired together through an in-memory xenstore that fires
// watches like the real one (once on registration, then on every change at or below
// the path), so the sequences of xen-vtpm-protocol.md 4.3/4.4 run end to end.
#include <xtpm/proto/xenbus.hpp>

#include "xenbus/helpers.hpp"

#include <deque>
#include <map>
#include <set>

namespace {
using namespace xtpm;
using namespace xtpm::test;
using xb::device_state;

std::string const be_dir = "/local/domain/0/backend/vtpm/5/0";
std::string const fe_dir = "/local/domain/5/device/vtpm/0";

struct fake_xenbus {
    enum class side : std::uint8_t { backend, frontend };

    xb::backend_handshake be;
    xb::frontend_handshake fe;
    std::map<std::string, std::string> store;
    std::set<std::pair<side, std::string>> watches;
    std::deque<std::pair<side, std::string>> events;
    int eagain = 0;  // transactions to restart before one commits
    std::optional<std::pair<xb::grant_ref, xb::evtchn_port>> ring;  // the frontend's page and port
    std::optional<xb::map_ring> mapped;                              // what the backend mapped
    bool ready = false;                                              // channel_ready seen
    xb::grant_ref next_ref = 8;
    xb::evtchn_port next_port = 10;

    fake_xenbus(xb::backend_config bc, xb::frontend_config fc, bool with_uuid = true)
        : be{be_dir, 5, bc}, fe{fe_dir, fc} {
        // what libxl writes for vtpm=["backend=0,uuid=..."]
        store[be_dir + "/frontend"] = fe_dir;
        store[be_dir + "/frontend-id"] = "5";
        store[be_dir + "/state"] = "1";
        if (with_uuid) store[be_dir + "/uuid"] = "6b1f3a4e-0c2d-4e5f-8a9b-0123456789ab";
        store[fe_dir + "/backend"] = be_dir;
        store[fe_dir + "/backend-id"] = "0";
        store[fe_dir + "/state"] = "1";
    }

    auto get(std::string const& p) const -> std::optional<std::string> {
        auto it = store.find(p);
        return it == store.end() ? std::nullopt : std::optional{it->second};
    }
    void changed(std::string const& p) {
        for (auto const& [s, w] : watches)
            if (p == w || p.starts_with(w + "/") || w.starts_with(p + "/")) events.emplace_back(s, w);
    }
    void write(std::string const& p, std::string v) {
        store[p] = std::move(v);
        changed(p);
    }
    void remove(std::string const& p) {
        std::erase_if(store, [&](auto const& kv) { return kv.first == p || kv.first.starts_with(p + "/"); });
        changed(p);
    }

    void run(side s, xb::actions const& acts) {
        for (auto const& a : acts) std::visit([&](auto const& x) { act(s, x); }, a);
    }
    auto values(xb::read_keys const& r) const {
        std::vector<std::optional<std::string>> v;
        for (auto const& p : r.paths) v.push_back(get(p));
        return v;
    }
    void act(side s, xb::read_keys const& r) {
        run(s, s == side::backend ? be.on_values(values(r)) : fe.on_values(values(r)));
    }
    void act(side s, xb::write_keys const& w) {
        if (w.transaction && eagain > 0) {
            --eagain;
            REQUIRE(s == side::frontend);
            return run(s, fe.on_transaction(false));
        }
        for (auto const& [k, v] : w.entries) write(k, v);
        if (w.transaction) run(s, fe.on_transaction(true));
    }
    void act(side, xb::remove_keys const& r) {
        for (auto const& p : r.paths) remove(p);
    }
    void act(side, xb::switch_state const& sw) { write(sw.path, xb::to_string(sw.state)); }
    void act(side s, xb::watch_path const& w) {
        watches.emplace(s, w.path);
        events.emplace_back(s, w.path);
    }
    void act(side s, xb::unwatch_path const& w) { watches.erase({s, w.path}); }
    void act(side s, xb::map_ring const& m) {
        REQUIRE(s == side::backend);
        bool const ok = ring && ring->first == m.ring_ref && ring->second == m.port && m.frontend == 5;
        if (ok) mapped = m;
        run(s, be.on_mapped(ok ? result<void>{} : result<void>{fail(errc::io_error)}));
    }
    void act(side, xb::unmap_ring const&) { mapped.reset(); }
    void act(side s, xb::setup_ring const& r) {
        REQUIRE(s == side::frontend);
        CHECK(r.backend == 0);
        ring = {next_ref++, next_port++};
        run(s, fe.on_ring_ready(ring->first, ring->second));
    }
    void act(side, xb::release_ring const&) {
        ring.reset();
        ready = false;
    }
    void act(side, xb::channel_ready const&) { ready = true; }

    // Deliver queued watch events until nothing changes (bounded: a loop is a bug).
    void pump() {
        for (int n = 0; !events.empty(); ++n) {
            REQUIRE(n < 1000);
            auto const [s, w] = events.front();
            events.pop_front();
            if (!watches.contains({s, w})) continue;
            auto const v = get(w);
            auto const sv = v ? std::optional<std::string_view>{*v} : std::nullopt;
            run(s, s == side::backend ? be.on_frontend_state(sv) : fe.on_backend_state(sv));
        }
    }
    void start_both(bool frontend_first = false) {
        if (frontend_first) run(side::frontend, fe.start());
        run(side::backend, be.start());
        if (!frontend_first) run(side::frontend, fe.start());
        pump();
    }
    auto connected() const -> bool {
        return be.connected() && fe.connected() && ready && mapped && ring && mapped->ring_ref == ring->first &&
               get(be_dir + "/state") == "4" && get(fe_dir + "/state") == "4";
    }
};

auto linux_fe(bool extra = false) -> xb::frontend_config { return {xb::frontend_variant::linux_driver, extra}; }
auto minios_fe() -> xb::frontend_config { return {xb::frontend_variant::minios, false}; }
}  // namespace

TEST_CASE("xenbus handshake: Linux frontend and backend connect", "[xenbus][handshake]") {
    for (bool frontend_first : {false, true}) {
        fake_xenbus x{{}, linux_fe()};
        x.start_both(frontend_first);
        CHECK(x.connected());
        CHECK(x.get(be_dir + "/feature-protocol-v2") == "1");
        CHECK(x.get(fe_dir + "/feature-protocol-v2") == "1");
        CHECK(x.get(fe_dir + "/ring-ref") == "8");
        CHECK(x.get(fe_dir + "/event-channel") == "10");
        CHECK(x.get(be_dir + "/ready") == "1");
        CHECK_FALSE(x.mapped->extra_pages);
    }
}

TEST_CASE("xenbus handshake: Mini-OS frontend and backend connect", "[xenbus][handshake]") {
    fake_xenbus x{{}, minios_fe()};
    x.start_both();
    CHECK(x.connected());
}

TEST_CASE("xenbus handshake: EAGAIN transactions are retried", "[xenbus][handshake]") {
    fake_xenbus x{{}, linux_fe()};
    x.eagain = 3;
    x.start_both();
    CHECK(x.eagain == 0);
    CHECK(x.connected());
}

TEST_CASE("xenbus handshake: frontend close, backend InitWait, reopen", "[xenbus][handshake]") {
    fake_xenbus x{{}, minios_fe()};
    x.start_both();
    REQUIRE(x.connected());
    x.run(fake_xenbus::side::frontend, x.fe.close());
    x.pump();
    CHECK_FALSE(x.mapped);
    CHECK_FALSE(x.ring);
    CHECK(x.get(be_dir + "/state") == "2");  // ready for a new connection
    CHECK(x.get(fe_dir + "/state") == "1");  // Mini-OS leaves the device reusable
    CHECK_FALSE(x.get(fe_dir + "/ring-ref"));
    x.run(fake_xenbus::side::frontend, x.fe.reopen());
    x.pump();
    CHECK(x.connected());
    CHECK(x.mapped->ring_ref == 9);  // the new page
}

TEST_CASE("xenbus handshake: Linux frontend follows a closing backend", "[xenbus][handshake]") {
    fake_xenbus x{{}, linux_fe()};
    x.start_both();
    REQUIRE(x.connected());
    x.run(fake_xenbus::side::backend, x.be.close());
    x.pump();
    CHECK(x.get(fe_dir + "/state") == "6");
    CHECK(x.fe.closed());
    CHECK_FALSE(x.ring);
}

TEST_CASE("xenbus handshake: the frontend directory disappears", "[xenbus][handshake]") {
    fake_xenbus x{{}, linux_fe()};
    x.start_both();
    REQUIRE(x.connected());
    x.remove(fe_dir);  // the toolstack destroyed the guest
    x.pump();
    CHECK_FALSE(x.be.alive());
    CHECK_FALSE(x.mapped);
    CHECK(x.get(be_dir + "/state") == "6");  // Closed; the directory is the toolstack's to remove
}

TEST_CASE("xenbus handshake: no uuid, no instance; the frontend gives up", "[xenbus][handshake]") {
    fake_xenbus x{{}, linux_fe(), false};
    x.start_both();
    CHECK_FALSE(x.be.alive());
    CHECK(x.get(be_dir + "/state") == "6");
    CHECK_FALSE(x.mapped);
    // The backend never watches, so the frontend only learns it from the backend's state.
    CHECK(x.get(fe_dir + "/state") == "6");
    CHECK(x.fe.closed());
}

TEST_CASE("xenbus handshake: extra pages only when both ends advertise them", "[xenbus][handshake]") {
    for (auto [be_on, fe_on] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
        fake_xenbus x{{.extra_pages = be_on}, linux_fe(fe_on)};
        x.start_both();
        REQUIRE(x.connected());
        CHECK(x.mapped->extra_pages == (be_on && fe_on));
        CHECK(x.fe.extra_pages() == (be_on && fe_on));
        CHECK(x.be.extra_pages() == (be_on && fe_on));
    }
}
