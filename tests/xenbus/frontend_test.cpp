#include <xtpm/proto/xenbus/frontend.hpp>

#include "xenbus/helpers.hpp"

namespace {
using namespace xtpm;
using namespace xtpm::test;
using xb::device_state;

std::string const be_dir = "/local/domain/0/backend/vtpm/5/0";
std::string const fe_dir = "/local/domain/5/device/vtpm/0";

auto linux_cfg(bool extra = false) -> xb::frontend_config { return {xb::frontend_variant::linux_driver, extra}; }
auto minios_cfg(bool extra = false) -> xb::frontend_config { return {xb::frontend_variant::minios, extra}; }

// Up to the point where the frontend waits for the backend.
auto waiting_frontend(xb::frontend_config cfg) -> xb::frontend_handshake {
    xb::frontend_handshake fe{fe_dir, cfg};
    (void)fe.start();
    (void)fe.on_values(vals({be_dir, "0"}));
    (void)fe.on_ring_ready(8, 17);
    (void)fe.on_transaction(true);
    return fe;
}

auto connected_frontend(xb::frontend_config cfg) -> xb::frontend_handshake {
    auto fe = waiting_frontend(cfg);
    (void)fe.on_backend_state("4");
    auto const a = fe.on_values(cfg.extra_pages ? vals({"1", "1"}) : vals({"1"}));
    REQUIRE(count<xb::channel_ready>(a) == 1);
    REQUIRE(fe.connected());
    return fe;
}
}  // namespace

TEST_CASE("xenbus frontend: Linux's exact sequence", "[xenbus][frontend][linux]") {
    xb::frontend_handshake fe{fe_dir, linux_cfg()};
    auto const a = fe.start();
    REQUIRE(a.size() == 1);  // the toolstack already wrote Initialising
    CHECK(get<xb::read_keys>(a, 0).paths == paths({fe_dir + "/backend", fe_dir + "/backend-id"}));

    auto const b = fe.on_values(vals({be_dir, "0"}));
    REQUIRE(b.size() == 1);
    CHECK(get<xb::setup_ring>(b, 0).backend == 0);
    CHECK(fe.backend_dir() == be_dir);

    auto const c = fe.on_ring_ready(8, 17);
    REQUIRE(c.size() == 1);
    auto const& w = get<xb::write_keys>(c, 0);
    CHECK(w.transaction);
    using kv = std::pair<std::string, std::string>;
    CHECK(w.entries == std::vector<kv>{{fe_dir + "/ring-ref", "8"},
                                       {fe_dir + "/event-channel", "17"},
                                       {fe_dir + "/feature-protocol-v2", "1"}});

    auto const d = fe.on_transaction(true);
    REQUIRE(d.size() == 2);
    check_switch(d, 0, fe_dir + "/state", device_state::initialised);
    CHECK(get<xb::watch_path>(d, 1).path == be_dir + "/state");

    for (auto s : {"1", "2", "0", "7"}) CHECK(fe.on_backend_state(s).empty());  // not yet
    CHECK(fe.on_backend_state(std::nullopt).empty());

    auto const e = fe.on_backend_state("4");
    REQUIRE(e.size() == 1);
    CHECK(get<xb::read_keys>(e, 0).paths == paths({be_dir + "/feature-protocol-v2"}));
    auto const f = fe.on_values(vals({"1"}));
    REQUIRE(f.size() == 2);
    check_switch(f, 0, fe_dir + "/state", device_state::connected);
    CHECK_FALSE(get<xb::channel_ready>(f, 1).extra_pages);
    CHECK(fe.connected());
    CHECK(fe.on_backend_state("4").empty());  // already Connected
}

TEST_CASE("xenbus frontend: Linux connects on backend Initialised too, with any non-zero flag", "[xenbus][frontend][linux]") {
    for (std::string v : {"1", "2", "4294967295"}) {
        auto fe = waiting_frontend(linux_cfg());
        REQUIRE(count<xb::read_keys>(fe.on_backend_state("3")) == 1);
        CHECK(count<xb::channel_ready>(fe.on_values(vals({v}))) == 1);
    }
}

TEST_CASE("xenbus frontend: Linux requires protocol v2 from the backend", "[xenbus][frontend][linux]") {
    for (std::optional<std::string> v : {std::optional<std::string>{}, std::optional<std::string>{"0"},
                                         std::optional<std::string>{""}, std::optional<std::string>{"-1"},
                                         std::optional<std::string>{"1x"}, std::optional<std::string>{"01"}}) {
        auto fe = waiting_frontend(linux_cfg());
        (void)fe.on_backend_state("4");
        auto const a = fe.on_values(vals({v}));
        CHECK(count<xb::channel_ready>(a) == 0);
        REQUIRE(a.size() == 2);
        CHECK(std::holds_alternative<xb::release_ring>(a[0]));
        check_switch(a, 1, fe_dir + "/state", device_state::closing);  // xenbus_dev_fatal
        CHECK(fe.reason().find("protocol 2") != std::string::npos);
        // the backend follows: Closed
        auto const b = fe.on_backend_state("5");
        REQUIRE(b.size() == 2);
        check_switch(b, 0, fe_dir + "/state", device_state::closed);
        CHECK(get<xb::unwatch_path>(b, 1).path == be_dir + "/state");
        CHECK(fe.closed());
    }
}

TEST_CASE("xenbus frontend: Linux retries the transaction on EAGAIN", "[xenbus][frontend][linux]") {
    xb::frontend_handshake fe{fe_dir, linux_cfg()};
    (void)fe.start();
    (void)fe.on_values(vals({be_dir, "0"}));
    auto const first = get<xb::write_keys>(fe.on_ring_ready(8, 17), 0);
    SECTION("a few restarts, then committed") {
        for (int i = 0; i < 5; ++i) {
            auto const again = fe.on_transaction(false);
            REQUIRE(again.size() == 1);
            CHECK(get<xb::write_keys>(again, 0).entries == first.entries);
        }
        CHECK(count<xb::switch_state>(fe.on_transaction(true)) == 1);
        CHECK(fe.state() == device_state::initialised);
    }
    SECTION("bounded") {
        std::size_t n = 1;
        while (count<xb::write_keys>(fe.on_transaction(false)) == 1) ++n;
        CHECK(n == xb::max_transaction_attempts);
        CHECK(fe.closed());
        CHECK(fe.state() == device_state::closed);  // nothing to wait for: not watching yet
    }
    SECTION("an error") {
        auto const a = fe.on_transaction(std::unexpected{make_error_code(errc::io_error)});
        CHECK(count<xb::release_ring>(a) == 1);
        CHECK(fe.closed());
    }
}

TEST_CASE("xenbus frontend: Linux closes when the backend closes, and reopens", "[xenbus][frontend][linux]") {
    for (auto st : {"5", "6"}) {
        auto fe = connected_frontend(linux_cfg());
        auto const a = fe.on_backend_state(st);
        REQUIRE(a.size() == 3);
        CHECK(std::holds_alternative<xb::release_ring>(a[0]));
        check_switch(a, 1, fe_dir + "/state", device_state::closed);
        CHECK(get<xb::unwatch_path>(a, 2).path == be_dir + "/state");
        CHECK(fe.closed());
        auto const r = fe.reopen();
        REQUIRE(r.size() == 2);
        check_switch(r, 0, fe_dir + "/state", device_state::initialising);
        CHECK(count<xb::read_keys>(r) == 1);
        (void)fe.on_values(vals({be_dir, "0"}));
        (void)fe.on_ring_ready(9, 18);
        (void)fe.on_transaction(true);
        (void)fe.on_backend_state("4");
        CHECK(count<xb::channel_ready>(fe.on_values(vals({"1"}))) == 1);
    }
    SECTION("backend Closing before it connected") {
        auto fe = waiting_frontend(linux_cfg());
        CHECK(count<xb::release_ring>(fe.on_backend_state("6")) == 1);
        CHECK(fe.closed());
    }
    SECTION("reopen only from closed") {
        auto fe = connected_frontend(linux_cfg());
        CHECK(fe.reopen().empty());
    }
}

TEST_CASE("xenbus frontend: the Mini-OS variant writes Connected directly", "[xenbus][frontend][minios]") {
    xb::frontend_handshake fe{fe_dir, minios_cfg()};
    (void)fe.start();
    auto const a = fe.on_values(vals({be_dir, "0"}));
    REQUIRE(a.size() == 2);
    auto const& feat = get<xb::write_keys>(a, 0);
    CHECK_FALSE(feat.transaction);  // feature-protocol-v2 first, outside the transaction
    CHECK(feat.entries == std::vector<std::pair<std::string, std::string>>{{fe_dir + "/feature-protocol-v2", "1"}});
    CHECK(std::holds_alternative<xb::setup_ring>(a[1]));
    auto const ring = get<xb::write_keys>(fe.on_ring_ready(8, 17), 0);
    CHECK(ring.transaction);
    CHECK(ring.entries.size() == 2);
    auto const c = fe.on_transaction(true);
    REQUIRE(c.size() == 2);
    check_switch(c, 0, fe_dir + "/state", device_state::connected);
    CHECK(get<xb::watch_path>(c, 1).path == be_dir + "/state");
    for (auto s : {"1", "2", "3"}) CHECK(fe.on_backend_state(s).empty());  // waits for Connected
    REQUIRE(count<xb::read_keys>(fe.on_backend_state("4")) == 1);
    auto const d = fe.on_values(vals({"1"}));
    REQUIRE(d.size() == 1);  // already Connected: no state switch
    CHECK(std::holds_alternative<xb::channel_ready>(d[0]));
}

TEST_CASE("xenbus frontend: Mini-OS fails on a backend that does not connect", "[xenbus][frontend][minios]") {
    for (std::optional<std::string_view> st : {std::optional<std::string_view>{"0"},
                                               std::optional<std::string_view>{"5"},
                                               std::optional<std::string_view>{"6"},
                                               std::optional<std::string_view>{},
                                               std::optional<std::string_view>{"x"}}) {
        auto fe = waiting_frontend(minios_cfg());
        auto const a = fe.on_backend_state(st);
        CHECK(count<xb::release_ring>(a) == 1);
        CHECK(fe.state() == device_state::closed);
        CHECK(fe.closed());
    }
    SECTION("and requires the literal 1") {
        for (std::string v : {"2", "01", ""}) {
            auto fe = waiting_frontend(minios_cfg());
            (void)fe.on_backend_state("4");
            CHECK(count<xb::channel_ready>(fe.on_values(vals({v}))) == 0);
            CHECK(fe.state() == device_state::closed);
        }
    }
}

TEST_CASE("xenbus frontend: orderly close waits for the backend", "[xenbus][frontend]") {
    auto fe = connected_frontend(minios_cfg());
    auto const a = fe.close();
    REQUIRE(a.size() == 3);
    check_switch(a, 0, fe_dir + "/state", device_state::closing);
    CHECK(get<xb::remove_keys>(a, 1).paths == paths({fe_dir + "/ring-ref", fe_dir + "/event-channel"}));
    check_switch(a, 2, fe_dir + "/state", device_state::closed);
    CHECK(fe.on_backend_state("4").empty());
    CHECK(fe.on_backend_state("5").empty());
    auto const b = fe.on_backend_state("2");  // the backend went back to InitWait
    REQUIRE(b.size() == 3);
    check_switch(b, 0, fe_dir + "/state", device_state::initialising);
    CHECK(std::holds_alternative<xb::release_ring>(b[1]));
    CHECK(std::holds_alternative<xb::unwatch_path>(b[2]));
    CHECK(fe.closed());
    CHECK(fe.close().empty());
    SECTION("before the ring exists: released at once") {
        xb::frontend_handshake early{fe_dir, linux_cfg()};
        (void)early.start();
        auto const c = early.close();
        CHECK(count<xb::release_ring>(c) == 0);
        CHECK(early.closed());
    }
}

TEST_CASE("xenbus frontend: garbage backend and backend-id", "[xenbus][frontend]") {
    using ov = std::optional<std::string>;
    for (auto [path, id] : {std::pair<ov, ov>{be_dir, ov{}}, std::pair<ov, ov>{be_dir, "-1"},
                            std::pair<ov, ov>{be_dir, "32752"}, std::pair<ov, ov>{be_dir, "1"},
                            std::pair<ov, ov>{ov{}, "0"}, std::pair<ov, ov>{"/local/domain/0/backend/vtpm/5/0/", "0"},
                            std::pair<ov, ov>{"/local/domain/0/backend/vtpm/5/0 ", "0"}}) {
        xb::frontend_handshake fe{fe_dir, linux_cfg()};
        (void)fe.start();
        auto const a = fe.on_values(vals({path, id}));
        CHECK(count<xb::setup_ring>(a) == 0);
        CHECK(fe.closed());
        CHECK_FALSE(fe.reason().empty());
    }
    SECTION("a ring that cannot be set up") {
        xb::frontend_handshake fe{fe_dir, linux_cfg()};
        (void)fe.start();
        (void)fe.on_values(vals({be_dir, "0"}));
        auto const a = fe.on_ring_failed(make_error_code(errc::io_error));
        CHECK(count<xb::release_ring>(a) == 0);
        CHECK(fe.closed());
    }
}

TEST_CASE("xenbus frontend: feature-extra-pages", "[xenbus][frontend]") {
    SECTION("written in the transaction and read from the backend") {
        xb::frontend_handshake fe{fe_dir, linux_cfg(true)};
        (void)fe.start();
        (void)fe.on_values(vals({be_dir, "0"}));
        auto const w = get<xb::write_keys>(fe.on_ring_ready(8, 17), 0);
        CHECK(w.entries.back() == std::pair<std::string, std::string>{fe_dir + "/feature-extra-pages", "1"});
        (void)fe.on_transaction(true);
        auto const r = fe.on_backend_state("4");
        CHECK(get<xb::read_keys>(r, 0).paths == paths({be_dir + "/feature-protocol-v2", be_dir + "/feature-extra-pages"}));
        CHECK(get<xb::channel_ready>(fe.on_values(vals({"1", "1"})), 1).extra_pages);
        CHECK(fe.extra_pages());
    }
    SECTION("the backend does not advertise it") {
        auto fe = waiting_frontend(linux_cfg(true));
        (void)fe.on_backend_state("4");
        CHECK_FALSE(get<xb::channel_ready>(fe.on_values(vals({"1", std::nullopt})), 1).extra_pages);
    }
}
