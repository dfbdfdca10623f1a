#include <xtpm/io/spin.hpp>
#include <xtpm/proto/tpmif/backend.hpp>

#include "tpmif/peer.hpp"

#include <catch2/catch.hpp>

#include <random>

namespace {
using namespace xtpm;
using test::page_peer;
namespace tp = proto::tpmif;

constexpr auto submit = static_cast<std::uint8_t>(tp::page_state::submit);
constexpr auto finish = static_cast<std::uint8_t>(tp::page_state::finish);
constexpr auto idle = static_cast<std::uint8_t>(tp::page_state::idle);
constexpr auto cancel = static_cast<std::uint8_t>(tp::page_state::cancel);

auto rc_at(page_peer& p, std::size_t offset) -> std::uint32_t {
    return wire::load_be<std::uint32_t>(p.at(offset + 6, 4));
}

// The page holds a well-formed 10-byte error response at `offset`, FINISH, length 10.
void check_error_answer(page_peer& p, std::size_t offset, std::uint32_t rc, std::uint16_t tag = 0x8001) {
    CHECK(p.state() == finish);
    REQUIRE(p.length() == 10);
    auto const hdr = wire::parse_response(p.at(offset, 10));
    REQUIRE(hdr);
    CHECK(static_cast<std::uint16_t>(hdr->tag) == tag);
    CHECK(rc_at(p, offset) == rc);
}

auto as_request(tp::backend_action const& a) -> tp::request {
    REQUIRE(std::holds_alternative<tp::request>(a));
    return std::get<tp::request>(a);
}

auto as_malformed(tp::backend_action const& a) -> tp::malformed {
    REQUIRE(std::holds_alternative<tp::malformed>(a));
    CHECK(tp::notify_due(a));
    return std::get<tp::malformed>(a);
}
}  // namespace

TEST_CASE("tpmif backend: a SUBMIT is copied out once with its locality", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096);
    auto const cmd = test::command(12);
    p.submit(cmd, 3);
    auto const req = as_request(be.on_event(p.region(), buf));
    CHECK(std::ranges::equal(req.command, cmd));
    CHECK(req.command.data() == buf.data());
    CHECK(req.locality == 3);
    CHECK(be.busy());
    CHECK(p.state() == submit);  // the backend writes nothing until it answers

    auto const resp = test::response(14);
    CHECK(be.complete(p.region(), resp));
    CHECK(p.state() == finish);
    CHECK(p.length() == 14);
    CHECK(std::ranges::equal(p.at(8, 14), resp));
    CHECK_FALSE(be.busy());
}

TEST_CASE("tpmif backend: the command is the one snapshotted at SUBMIT", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be{{.family = wire::family::tpm2, .extra_pages = true}};
    std::vector<std::byte> buf(8192);
    auto const cmd = test::command(100);
    SECTION("length and payload flipped after pickup") {
        p.submit(cmd, 0);
        auto const req = as_request(be.on_event(p.region(), buf));
        p.set_length(0xFFFFFFFF);
        std::ranges::fill(p.at(8, 100), std::byte{0xEE});
        p.set_locality(4);
        CHECK(std::ranges::equal(req.command, cmd));
        CHECK(req.locality == 0);
        CHECK(be.complete(p.region(), test::response(10)));
        CHECK(p.length() == 10);  // the response length, not the flipped one
    }
    SECTION("nr_extra_pages flipped after pickup: the response goes where the request was") {
        page_peer two{2};
        two.set_ref(0, 77);
        two.submit(cmd, 0, 1);
        auto const m = be.on_event(two.first_page(), buf);
        REQUIRE(std::holds_alternative<tp::map_pages>(m));
        two.set_nr(200);
        two.set_length(0xFFFFFFFF);  // between the snapshot and the copy
        two.set_locality(4);
        auto const req = as_request(be.on_pages_mapped(two.region(), buf));
        CHECK(std::ranges::equal(req.command, cmd));
        CHECK(req.locality == 0);
        auto const resp = test::response(5000);  // needs the second page
        CHECK(be.complete(two.region(), resp));
        CHECK(two.length() == 5000);
        CHECK(std::ranges::equal(two.at(12, 5000), resp));
    }
}

TEST_CASE("tpmif backend: request lengths at and past every bound", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096);
    SECTION("0, 1 and 9 bytes are forwarded: the pipeline answers the header error") {
        for (std::size_t n : {0U, 1U, 9U}) {
            p.submit(test::command(n));
            auto const req = as_request(be.on_event(p.region(), buf));
            CHECK(req.command.size() == n);
            CHECK(be.complete(p.region(), test::response(10)));
        }
    }
    SECTION("4088 bytes, the whole page") {
        p.submit(test::command(4088));
        CHECK(as_request(be.on_event(p.region(), buf)).command.size() == 4088);
    }
    SECTION("4089 bytes: one past the page") {
        p.submit(test::command(4088));
        p.set_length(4089);
        CHECK(as_malformed(be.on_event(p.region(), buf)).error == errc::too_large);
        check_error_answer(p, 8, 0x142);
        CHECK_FALSE(be.busy());
    }
    SECTION("0xFFFFFFF0..0xFFFFFFFF: no 32-bit wrap") {
        for (std::uint64_t n = 0xFFFFFFF0; n <= 0xFFFFFFFF; ++n) {
            p.submit(test::command(10));
            p.set_length(static_cast<std::uint32_t>(n));
            CHECK(as_malformed(be.on_event(p.region(), buf)).error == errc::too_large);
            check_error_answer(p, 8, 0x142);
        }
    }
    SECTION("larger than the vTPM's buffer") {
        std::vector<std::byte> small(64);
        p.submit(test::command(65));
        CHECK(as_malformed(be.on_event(p.region(), small)).error == errc::too_large);
        p.submit(test::command(64));
        CHECK(as_request(be.on_event(p.region(), small)).command.size() == 64);
    }
    SECTION("TPM 1.2 vTPM: the error response has the 1.2 tag and code") {
        tp::backend_channel be12{{.family = wire::family::tpm12}};
        p.submit(test::command(10, 0x00C1, 0x46));
        p.set_length(5000);
        CHECK(as_malformed(be12.on_event(p.region(), buf)).error == errc::too_large);
        check_error_answer(p, 8, 0x17, 0x00C4);
    }
}

TEST_CASE("tpmif backend: nr_extra_pages 0..255 without the feature", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096);
    for (unsigned n = 0; n <= 255; ++n) {
        CAPTURE(n);
        for (std::size_t i = 0; i < n; ++i) p.set_ref(i, 0xDEAD0000U + static_cast<std::uint32_t>(i));
        p.submit(test::command(10), 0, static_cast<std::uint8_t>(n));
        auto const a = be.on_event(p.region(), buf);
        if (n == 0) {
            CHECK(as_request(a).command.size() == 10);
            CHECK(be.complete(p.region(), test::response(10)));
            continue;
        }
        CHECK(as_malformed(a).error == errc::bad_value);
        check_error_answer(p, 8 + 4 * n, 0x084);  // where a Linux frontend looks for it
    }
}

TEST_CASE("tpmif backend: nr_extra_pages 0..255 with the feature", "[tpmif][backend]") {
    tp::backend_channel be{{.family = wire::family::tpm2, .extra_pages = true}};
    std::vector<std::byte> buf(8192);
    for (unsigned n = 0; n <= 255; ++n) {
        CAPTURE(n);
        page_peer p{2};
        for (std::size_t i = 0; i < n; ++i) p.set_ref(i, 1000 + static_cast<std::uint32_t>(i));
        p.submit(test::command(10), 0, static_cast<std::uint8_t>(n));
        auto const a = be.on_event(p.first_page(), buf);
        if (n == 0) {
            CHECK(as_request(a).command.size() == 10);
            CHECK(be.complete(p.first_page(), test::response(10)));
        } else if (n <= tp::max_extra_pages) {
            REQUIRE(std::holds_alternative<tp::map_pages>(a));
            CHECK_FALSE(tp::notify_due(a));
            auto const refs = std::get<tp::map_pages>(a).view();
            REQUIRE(refs.size() == n);
            CHECK(refs[0] == 1000);
            CHECK(as_request(be.on_pages_mapped(p.region(), buf)).command.size() == 10);
            CHECK(be.complete(p.region(), test::response(10)));
        } else {
            CHECK(as_malformed(a).error == errc::too_large);
            check_error_answer(p, 8 + 4 * n, 0x142);
        }
    }
}

TEST_CASE("tpmif backend: extra pages bound requests and responses", "[tpmif][backend]") {
    tp::backend_channel be{{.family = wire::family::tpm2, .extra_pages = true}};
    std::vector<std::byte> buf(8192);
    page_peer p{2};
    p.set_ref(0, 5);
    auto pick = [&](std::uint32_t length) {
        p.submit(test::command(10), 0, 1);
        p.set_length(length);
        REQUIRE(std::holds_alternative<tp::map_pages>(be.on_event(p.first_page(), buf)));
        return be.on_pages_mapped(p.region(), buf);
    };
    SECTION("8180 bytes fill both pages") { CHECK(as_request(pick(8180)).command.size() == 8180); }
    SECTION("8181 bytes do not fit") {
        CHECK(as_malformed(pick(8181)).error == errc::too_large);
        check_error_answer(p, 12, 0x142);
    }
    SECTION("only the first page mapped: bounded by it") {
        p.submit(test::command(10), 0, 1);
        p.set_length(4085);
        REQUIRE(std::holds_alternative<tp::map_pages>(be.on_event(p.first_page(), buf)));
        CHECK(as_malformed(be.on_pages_mapped(p.first_page(), buf)).error == errc::too_large);
    }
    SECTION("refs that cannot be mapped") {
        p.submit(test::command(10), 0, 1);
        REQUIRE(std::holds_alternative<tp::map_pages>(be.on_event(p.first_page(), buf)));
        CHECK(as_malformed(be.on_pages_unavailable(p.first_page())).error == errc::bad_value);
        check_error_answer(p, 12, 0x084);
    }
    SECTION("a request naming no extra page is bounded by one page, whatever is mapped") {
        p.submit(test::command(10), 0, 0);
        p.set_length(4089);
        CHECK(as_malformed(be.on_event(p.region(), buf)).error == errc::too_large);
    }
}

TEST_CASE("tpmif backend: a response that does not fit becomes an error response", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096);
    p.submit(test::command(10));
    REQUIRE(std::holds_alternative<tp::request>(be.on_event(p.region(), buf)));
    CHECK(be.complete(p.region(), test::response(4089)));
    check_error_answer(p, 8, 0x101);
    p.submit(test::command(10));
    REQUIRE(std::holds_alternative<tp::request>(be.on_event(p.region(), buf)));
    CHECK(be.complete(p.region(), test::response(4088)));
    CHECK(p.length() == 4088);
}

TEST_CASE("tpmif backend: states that are not ours to act on are spurious", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096);
    for (unsigned s : {0U, 2U, 4U, 7U, 128U, 255U}) {
        p.set_state(static_cast<std::uint8_t>(s));
        p.set_length(0xFFFFFFFF);
        auto const before = p.mem;
        CHECK_FALSE(be.wants_service(p.region()));
        CHECK(std::holds_alternative<tp::spurious>(be.on_event(p.region(), buf)));
        CHECK(p.mem == before);
    }
    SECTION("SUBMIT again while busy does not pick up twice") {
        p.submit(test::command(10));
        CHECK(be.wants_service(p.region()));
        REQUIRE(std::holds_alternative<tp::request>(be.on_event(p.region(), buf)));
        p.submit(test::command(20));
        CHECK_FALSE(be.wants_service(p.region()));
        CHECK(std::holds_alternative<tp::spurious>(be.on_event(p.region(), buf)));
    }
}

TEST_CASE("tpmif backend: cancel", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096);
    SECTION("while idle: acknowledged with IDLE and a notify") {
        p.set_state(cancel);
        auto const a = be.on_event(p.region(), buf);
        CHECK(std::holds_alternative<tp::cancel_acked>(a));
        CHECK(tp::notify_due(a));
        CHECK(p.state() == idle);
    }
    SECTION("CANCEL that overwrote a SUBMIT before the backend looked: acknowledged") {
        p.submit(test::command(10));
        p.set_state(cancel);
        CHECK(std::holds_alternative<tp::cancel_acked>(be.on_event(p.region(), buf)));
        CHECK_FALSE(be.busy());
    }
    SECTION("while busy: the device is asked once and the response still FINISHes") {
        p.submit(test::command(10));
        REQUIRE(std::holds_alternative<tp::request>(be.on_event(p.region(), buf)));
        p.set_state(cancel);
        auto const a = be.on_event(p.region(), buf);
        CHECK(std::holds_alternative<tp::cancel_device>(a));
        CHECK_FALSE(tp::notify_due(a));
        CHECK(be.cancel_requested());
        CHECK(std::holds_alternative<tp::spurious>(be.on_event(p.region(), buf)));
        CHECK(p.state() == cancel);  // not acknowledged while the command runs
        auto resp = test::response(10);
        wire::store_be<std::uint32_t>(std::span{resp}.subspan(6), 0x909);  // what the device answered
        CHECK(be.complete(p.region(), resp));
        CHECK(p.state() == finish);
        CHECK(rc_at(p, 8) == 0x909);
        CHECK_FALSE(be.cancel_requested());
    }
    SECTION("while mapping extra pages: remembered, then answered") {
        tp::backend_channel bx{{.family = wire::family::tpm2, .extra_pages = true}};
        page_peer two{2};
        two.submit(test::command(10), 0, 1);
        REQUIRE(std::holds_alternative<tp::map_pages>(bx.on_event(two.first_page(), buf)));
        two.set_state(cancel);
        CHECK(std::holds_alternative<tp::cancel_device>(bx.on_event(two.first_page(), buf)));
        CHECK(as_malformed(bx.on_pages_unavailable(two.first_page())).error == errc::bad_value);
        CHECK_FALSE(bx.cancel_requested());
    }
}

TEST_CASE("tpmif backend: SUBMIT/CANCEL storms always end answered", "[tpmif][backend]") {
    page_peer p;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096);
    std::minstd_rand rng{42};
    int requests = 0, errors = 0, acks = 0;
    for (int i = 0; i < 20000; ++i) {
        auto const r = rng();
        switch (r % 4) {
        case 0: p.submit(test::command(10 + r % 50)); break;
        case 1: p.set_state(cancel); break;
        case 2:  // a SUBMIT with a hostile length, mostly past the page
            p.submit(test::command(10));
            p.set_length(static_cast<std::uint32_t>(rng() % 3 ? rng() : rng() % 4096));
            break;
        default: p.set_state(static_cast<std::uint8_t>(rng())); break;
        }
        auto const a = be.on_event(p.region(), buf);
        if (std::holds_alternative<tp::request>(a)) {
            ++requests;
            CHECK(std::get<tp::request>(a).command.size() <= buf.size());
            if (rng() % 2) p.set_state(cancel);  // the frontend gives up meanwhile
            if (rng() % 2) CHECK(std::holds_alternative<tp::cancel_device>(be.on_event(p.region(), buf)) ==
                                 (p.state() == cancel));
            be.complete(p.region(), test::response(10));
            CHECK(p.state() == finish);
        } else if (std::holds_alternative<tp::malformed>(a)) {
            ++errors;
            CHECK(p.state() == finish);
            CHECK(wire::parse_response(p.at(8, p.length())));
        } else if (std::holds_alternative<tp::cancel_acked>(a)) {
            ++acks;
            CHECK(p.state() == idle);
        }
        CHECK_FALSE(be.busy());
    }
    CHECK(requests > 1000);
    CHECK(errors > 100);
    CHECK(acks > 1000);
}

TEST_CASE("io::spin_until: true once ready, false after the window, one look without a window", "[tpmif][spin]") {
    int looks = 0;
    CHECK(io::spin_until([&] { return ++looks == 3; }, std::chrono::seconds{5}));
    CHECK(looks == 3);
    looks = 0;
    CHECK_FALSE(io::spin_until([&] { return ++looks, false; }, std::chrono::nanoseconds{0}));
    CHECK(looks == 1);
    auto const t0 = std::chrono::steady_clock::now();
    CHECK_FALSE(io::spin_until([] { return false; }, std::chrono::microseconds{200}));
    CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::microseconds{200});
}
