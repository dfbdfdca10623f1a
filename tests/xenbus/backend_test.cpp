#include <xtpm/proto/xenbus/backend.hpp>

#include "xenbus/helpers.hpp"

namespace {
using namespace xtpm;
using namespace xtpm::test;
using xb::device_state;

std::string const be_dir = "/local/domain/0/backend/vtpm/5/0";
std::string const fe_dir = "/local/domain/5/device/vtpm/0";
std::string const good_uuid = "6b1f3a4e-0c2d-4e5f-8a9b-0123456789ab";

// A backend that has published its features and waits for the frontend (InitWait).
auto waiting_backend(xb::backend_config cfg = {}) -> xb::backend_handshake {
    xb::backend_handshake be{be_dir, 5, cfg};
    (void)be.start();
    (void)be.on_values(vals({good_uuid, fe_dir}));
    REQUIRE(be.state() == device_state::init_wait);
    return be;
}

// ... and has read the ring keys and asked for the mapping.
auto connected_backend() -> xb::backend_handshake {
    auto be = waiting_backend();
    (void)be.on_frontend_state("3");
    auto const a = be.on_values(vals({"8", "17", "1"}));
    REQUIRE(count<xb::map_ring>(a) == 1);
    (void)be.on_mapped({});
    REQUIRE(be.connected());
    return be;
}
}  // namespace

TEST_CASE("xenbus backend: a new directory reads uuid and frontend", "[xenbus][backend]") {
    xb::backend_handshake be{be_dir, 5};
    auto const a = be.start();
    REQUIRE(a.size() == 1);
    CHECK(get<xb::read_keys>(a, 0).paths == paths({be_dir + "/uuid", be_dir + "/frontend"}));
    CHECK(be.start().empty());  // only once
    CHECK(be.state() == device_state::initialising);
}

TEST_CASE("xenbus backend: valid identity publishes v2, InitWait, watches the frontend", "[xenbus][backend]") {
    SECTION("without extra pages") {
        xb::backend_handshake be{be_dir, 5};
        (void)be.start();
        auto const a = be.on_values(vals({good_uuid, fe_dir}));
        REQUIRE(a.size() == 3);
        auto const& w = get<xb::write_keys>(a, 0);
        CHECK_FALSE(w.transaction);
        REQUIRE(w.entries.size() == 1);
        CHECK(w.entries[0] == std::pair<std::string, std::string>{be_dir + "/feature-protocol-v2", "1"});
        check_switch(a, 1, be_dir + "/state", device_state::init_wait);
        CHECK(get<xb::watch_path>(a, 2).path == fe_dir + "/state");
        REQUIRE(be.uuid());
        CHECK((*be.uuid())[0] == std::byte{0x6b});
        CHECK((*be.uuid())[15] == std::byte{0xab});
        CHECK(be.frontend_dir() == fe_dir);
        CHECK(be.alive());
    }
    SECTION("with extra pages: the feature key too") {
        xb::backend_handshake be{be_dir, 5, {.extra_pages = true}};
        (void)be.start();
        auto const a = be.on_values(vals({"6B1F3A4E-0C2D-4E5F-8A9B-0123456789AB", fe_dir}));
        auto const& w = get<xb::write_keys>(a, 0);
        REQUIRE(w.entries.size() == 2);
        CHECK(w.entries[1] == std::pair<std::string, std::string>{be_dir + "/feature-extra-pages", "1"});
    }
}

TEST_CASE("xenbus backend: a missing or invalid uuid refuses the instance", "[xenbus][backend]") {
    auto refused = [](std::optional<std::string> uuid, std::optional<std::string> fe = fe_dir) {
        xb::backend_handshake be{be_dir, 5};
        (void)be.start();
        auto const a = be.on_values(vals({std::move(uuid), std::move(fe)}));
        REQUIRE(a.size() == 1);
        check_switch(a, 0, be_dir + "/state", device_state::closed);
        CHECK_FALSE(be.alive());
        CHECK_FALSE(be.reason().empty());
        CHECK(be.on_frontend_state("3").empty());  // no instance, no watch
        return be.reason();
    };
    CHECK(refused(std::nullopt).find("uuid") != std::string::npos);
    for (std::string bad : std::vector<std::string>{"", "not-a-uuid", "6b1f3a4e-0c2d-4e5f-8a9b-0123456789a",
                            "6b1f3a4e-0c2d-4e5f-8a9b-0123456789abc", "6b1f3a4e00c2d-4e5f-8a9b-0123456789ab",
                            "6b1f3a4e-0c2d-4e5f-8a9b-0123456789ag", "6b1f3a4e-0c2d-4e5f-8a9b-0123456789 b",
                            "+b1f3a4e-0c2d-4e5f-8a9b-0123456789ab", "6b1f3a4e-0c2d-4e5f-8a9b0-123456789ab",
                            "{b1f3a4e-0c2d-4e5f-8a9b-0123456789a}", std::string(36, '-')}) {
        CAPTURE(bad);
        CHECK(refused(bad).find("uuid") != std::string::npos);
    }
    SECTION("the frontend path is missing or not the frontend domain's") {
        for (std::optional<std::string> bad : {std::optional<std::string>{}, std::optional<std::string>{""},
                                               std::optional<std::string>{"/local/domain/6/device/vtpm/0"},
                                               std::optional<std::string>{"/local/domain/5"},
                                               std::optional<std::string>{"/local/domain/5/"},
                                               std::optional<std::string>{"/local/domain/5/device/vtpm/0/"},
                                               std::optional<std::string>{"/local/domain/5//vtpm"},
                                               std::optional<std::string>{"/local/domain/5/../0/x"},
                                               std::optional<std::string>{"/local/domain/55/device/vtpm/0"},
                                               std::optional<std::string>{"local/domain/5/device/vtpm/0"}}) {
            CAPTURE(bad.value_or("(missing)"));
            CHECK(refused(good_uuid, bad).find("frontend") != std::string::npos);
        }
    }
}

TEST_CASE("xenbus backend: frontend Initialised or Connected reads the ring keys", "[xenbus][backend]") {
    for (std::string st : {"3", "4"}) {
        auto be = waiting_backend();
        CHECK(be.on_frontend_state("1").empty());  // Initialising: nothing
        CHECK(be.on_frontend_state("2").empty());
        auto const a = be.on_frontend_state(st);
        REQUIRE(a.size() == 1);
        CHECK(get<xb::read_keys>(a, 0).paths ==
              paths({fe_dir + "/ring-ref", fe_dir + "/event-channel", fe_dir + "/feature-protocol-v2"}));
        CHECK(be.on_frontend_state(st).empty());  // the watch fires again: no second read
        auto const m = be.on_values(vals({"8", "17", "1"}));
        REQUIRE(m.size() == 1);
        auto const& map = get<xb::map_ring>(m, 0);
        CHECK(map.frontend == 5);
        CHECK(map.ring_ref == 8);
        CHECK(map.port == 17);
        CHECK_FALSE(map.extra_pages);
        auto const c = be.on_mapped({});
        REQUIRE(c.size() == 2);
        CHECK(get<xb::write_keys>(c, 0).entries[0].first == be_dir + "/ready");
        check_switch(c, 1, be_dir + "/state", device_state::connected);
        CHECK(be.connected());
        CHECK(be.on_frontend_state("4").empty());
    }
}

TEST_CASE("xenbus backend: garbage or missing ring keys close with a reason", "[xenbus][backend]") {
    auto closes = [](std::optional<std::string> ref, std::optional<std::string> port, std::optional<std::string> v2) {
        auto be = waiting_backend();
        (void)be.on_frontend_state("3");
        auto const a = be.on_values(vals({std::move(ref), std::move(port), std::move(v2)}));
        CHECK(count<xb::map_ring>(a) == 0);
        REQUIRE(a.size() == 1);
        check_switch(a, 0, be_dir + "/state", device_state::closed);
        CHECK_FALSE(be.reason().empty());
        CHECK(be.alive());  // a frontend Closed reopens it
        return be.reason();
    };
    for (std::optional<std::string> ref : {std::optional<std::string>{}, std::optional<std::string>{""},
                                           std::optional<std::string>{"-1"}, std::optional<std::string>{"+5"},
                                           std::optional<std::string>{" 5"}, std::optional<std::string>{"5 "},
                                           std::optional<std::string>{"0x10"}, std::optional<std::string>{"12abc"},
                                           std::optional<std::string>{"08"},
                                           std::optional<std::string>{"4294967296"},
                                           std::optional<std::string>{"99999999999999999999999"}}) {
        CAPTURE(ref.value_or("(missing)"));
        CHECK(closes(ref, "17", "1").find("ring-ref") != std::string::npos);
    }
    for (std::optional<std::string> port : {std::optional<std::string>{}, std::optional<std::string>{"0"},
                                            std::optional<std::string>{"131072"}, std::optional<std::string>{"1e3"},
                                            std::optional<std::string>{"-17"}}) {
        CAPTURE(port.value_or("(missing)"));
        CHECK(closes("8", port, "1").find("event-channel") != std::string::npos);
    }
    for (std::optional<std::string> v2 : {std::optional<std::string>{}, std::optional<std::string>{"0"},
                                          std::optional<std::string>{"2"}, std::optional<std::string>{"01"},
                                          std::optional<std::string>{"1 "}, std::optional<std::string>{"true"}}) {
        CAPTURE(v2.value_or("(missing)"));
        CHECK(closes("8", "17", v2).find("protocol 2") != std::string::npos);
    }
    SECTION("the largest values in range are accepted") {
        auto be = waiting_backend();
        (void)be.on_frontend_state("3");
        auto const a = be.on_values(vals({"4294967295", "131071", "1"}));
        CHECK(get<xb::map_ring>(a, 0).ring_ref == 4294967295U);
        CHECK(get<xb::map_ring>(a, 0).port == 131071U);
    }
}

TEST_CASE("xenbus backend: a failed map or bind closes with a reason", "[xenbus][backend]") {
    auto be = waiting_backend();
    (void)be.on_frontend_state("4");
    (void)be.on_values(vals({"8", "17", "1"}));
    auto const a = be.on_mapped(std::unexpected{make_error_code(errc::io_error)});
    REQUIRE(a.size() == 1);
    check_switch(a, 0, be_dir + "/state", device_state::closed);
    CHECK(be.reason().find("map") != std::string::npos);
    CHECK_FALSE(be.connected());
}

TEST_CASE("xenbus backend: close and reopen", "[xenbus][backend]") {
    SECTION("frontend Closing, then Closed: unmap and back to InitWait") {
        auto be = connected_backend();
        auto const c = be.on_frontend_state("5");
        REQUIRE(c.size() == 1);
        check_switch(c, 0, be_dir + "/state", device_state::closing);
        auto const d = be.on_frontend_state("6");
        REQUIRE(d.size() == 2);
        CHECK(std::holds_alternative<xb::unmap_ring>(d[0]));
        CHECK(get<xb::read_keys>(d, 1).paths == paths({be_dir + "/online"}));
        auto const r = be.on_values(vals({"1"}));
        REQUIRE(r.size() == 1);
        check_switch(r, 0, be_dir + "/state", device_state::init_wait);
        auto const again = be.on_frontend_state("6");  // still Closed: look at online again, nothing else
        CHECK(count<xb::read_keys>(again) == 1);
        CHECK(count<xb::switch_state>(again) == 0);
        CHECK(be.on_values(vals({"1"})).empty());  // already InitWait
        // the frontend comes back
        CHECK(be.on_frontend_state("1").empty());
        REQUIRE(count<xb::read_keys>(be.on_frontend_state("3")) == 1);
        REQUIRE(count<xb::map_ring>(be.on_values(vals({"9", "18", "1"}))) == 1);
        (void)be.on_mapped({});
        CHECK(be.connected());
    }
    SECTION("after a failure, frontend Closed reopens") {
        auto be = waiting_backend();
        (void)be.on_frontend_state("3");
        (void)be.on_values(vals({"garbage", "17", "1"}));
        CHECK(be.state() == device_state::closed);
        CHECK(be.on_frontend_state("5").empty());  // already Closed
        auto const d = be.on_frontend_state("6");
        REQUIRE(d.size() == 1);
        CHECK(get<xb::read_keys>(d, 0).paths == paths({be_dir + "/online"}));
        check_switch(be.on_values(vals({std::nullopt})), 0, be_dir + "/state", device_state::init_wait);
        REQUIRE(count<xb::read_keys>(be.on_frontend_state("3")) == 1);
    }
    SECTION("the frontend closed while the map was in flight: the late mapping is undone") {
        auto be = waiting_backend();
        (void)be.on_frontend_state("3");
        (void)be.on_values(vals({"8", "17", "1"}));
        (void)be.on_frontend_state("6");
        auto const a = be.on_mapped({});
        REQUIRE(a.size() == 1);
        CHECK(std::holds_alternative<xb::unmap_ring>(a[0]));
        CHECK_FALSE(be.connected());
    }
    SECTION("frontend Closed while the toolstack removes the device (online=0): Closed, and it stays") {
        auto be = connected_backend();
        (void)be.on_frontend_state("5");
        auto const d = be.on_frontend_state("6");
        REQUIRE(count<xb::read_keys>(d) == 1);
        auto const r = be.on_values(vals({"0"}));
        REQUIRE(r.size() == 2);
        check_switch(r, 0, be_dir + "/state", device_state::closed);
        CHECK(get<xb::unwatch_path>(r, 1).path == fe_dir + "/state");
        CHECK_FALSE(be.alive());
        CHECK(be.on_frontend_state("1").empty());
        CHECK(be.on_frontend_state("3").empty());
    }
    SECTION("values that arrive after the handshake moved on are ignored") {
        auto be = waiting_backend();
        (void)be.on_frontend_state("3");
        (void)be.on_frontend_state("5");
        CHECK(be.on_values(vals({"8", "17", "1"})).empty());
        CHECK(be.on_values(vals({"8"})).empty());
    }
}

TEST_CASE("xenbus backend: the frontend's state node gone tears everything down", "[xenbus][backend]") {
    for (std::optional<std::string_view> gone : {std::optional<std::string_view>{},
                                                 std::optional<std::string_view>{"0"},
                                                 std::optional<std::string_view>{"banana"},
                                                 std::optional<std::string_view>{"9"},
                                                 std::optional<std::string_view>{""}}) {
        auto be = connected_backend();
        auto const a = be.on_frontend_state(gone);
        REQUIRE(a.size() == 4);
        CHECK(std::holds_alternative<xb::unmap_ring>(a[0]));
        check_switch(a, 1, be_dir + "/state", device_state::closing);
        check_switch(a, 2, be_dir + "/state", device_state::closed);
        CHECK(get<xb::unwatch_path>(a, 3).path == fe_dir + "/state");
        CHECK(count<xb::remove_keys>(a) == 0);  // the toolstack's directory: libxl removes it
        CHECK_FALSE(be.alive());
        CHECK(be.on_frontend_state("3").empty());
        CHECK(be.close().empty());
    }
    SECTION("before any connection: nothing to unmap") {
        auto be = waiting_backend();
        auto const a = be.on_frontend_state(std::nullopt);
        CHECK(count<xb::unmap_ring>(a) == 0);
        CHECK(count<xb::remove_keys>(a) == 0);
    }
}

TEST_CASE("xenbus backend: feature-extra-pages needs both ends", "[xenbus][backend]") {
    SECTION("enabled here, frontend wrote 1") {
        auto be = waiting_backend({.extra_pages = true});
        auto const r = be.on_frontend_state("3");
        CHECK(get<xb::read_keys>(r, 0).paths.back() == fe_dir + "/feature-extra-pages");
        auto const a = be.on_values(vals({"8", "17", "1", "1"}));
        CHECK(get<xb::map_ring>(a, 0).extra_pages);
    }
    for (std::optional<std::string> v : {std::optional<std::string>{}, std::optional<std::string>{"0"},
                                         std::optional<std::string>{"yes"}}) {
        auto be = waiting_backend({.extra_pages = true});
        (void)be.on_frontend_state("3");
        auto const a = be.on_values(vals({"8", "17", "1", v}));
        CHECK_FALSE(get<xb::map_ring>(a, 0).extra_pages);
    }
    SECTION("not enabled here: the frontend's key is not even read") {
        auto be = waiting_backend();
        CHECK(get<xb::read_keys>(be.on_frontend_state("3"), 0).paths.size() == 3);
        CHECK(be.on_values(vals({"8", "17", "1", "1"})).empty());  // wrong arity: not our read
    }
}

TEST_CASE("xenbus backend: close() unmaps, stops watching and says Closed", "[xenbus][backend]") {
    auto be = connected_backend();
    auto const a = be.close();
    REQUIRE(a.size() == 3);
    CHECK(std::holds_alternative<xb::unmap_ring>(a[0]));
    CHECK(get<xb::unwatch_path>(a, 1).path == fe_dir + "/state");
    check_switch(a, 2, be_dir + "/state", device_state::closed);
    CHECK_FALSE(be.alive());
}

TEST_CASE("xenbus: strict parsers", "[xenbus]") {
    CHECK(xb::parse_decimal("0", 5) == 0U);
    CHECK(xb::parse_decimal("7", 7) == 7U);
    CHECK_FALSE(xb::parse_decimal("007", 7));  // not what any writer produces
    CHECK_FALSE(xb::parse_decimal("00", 7));
    CHECK_FALSE(xb::parse_decimal("8", 7));
    CHECK_FALSE(xb::parse_decimal("18446744073709551616", UINT64_MAX));
    CHECK(xb::parse_decimal("18446744073709551615", UINT64_MAX) == UINT64_MAX);
    for (auto bad : {"", "-0", "+1", " 1", "1 ", "1\n", "0x1", "1.0", "١"}) CHECK_FALSE(xb::parse_decimal(bad, 100));
    CHECK(xb::parse_state("4") == device_state::connected);
    CHECK(xb::parse_state("8") == device_state::reconfigured);
    CHECK_FALSE(xb::parse_state("9"));
    CHECK(xb::to_string(device_state::closed) == "6");
    STATIC_REQUIRE(static_cast<int>(device_state::init_wait) == XenbusStateInitWait);
    STATIC_REQUIRE(xb::max_port == 131071);
    STATIC_REQUIRE(xb::max_domid == 0x7FEF);
}
