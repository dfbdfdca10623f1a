#include <xtpm/proto/tpmif/frontend.hpp>

#include "tpmif/peer.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace {
using namespace xtpm;
using test::page_peer;
namespace tp = proto::tpmif;

constexpr auto submit = static_cast<std::uint8_t>(tp::page_state::submit);
constexpr auto finish = static_cast<std::uint8_t>(tp::page_state::finish);
constexpr auto cancel = static_cast<std::uint8_t>(tp::page_state::cancel);

// The backend end, played by the test: a response of `n` bytes whose header says `size`.
void answer(page_peer& p, std::size_t n, std::uint32_t length, std::size_t offset = 8) {
    auto r = test::response(n);
    p.put(offset, r);
    p.set_length(length);
    p.set_state(tp::page_state::finish);
}
}  // namespace

TEST_CASE("tpmif frontend: submit writes the request as Linux does", "[tpmif][frontend]") {
    page_peer p;
    p.set_locality(9);
    p.set_nr(3);  // garbage left on the page is overwritten
    tp::frontend_channel fe;
    CHECK(fe.can_submit(p.region()));
    auto const cmd = test::command(30);
    REQUIRE(fe.submit(p.region(), cmd, 2));
    CHECK(p.state() == submit);
    CHECK(p.length() == 30);
    CHECK(p.locality() == 2);
    CHECK(p.nr() == 0);
    CHECK(std::ranges::equal(p.at(8, 30), cmd));
    CHECK(fe.in_flight());
    CHECK_FALSE(fe.can_submit(p.region()));
    std::vector<std::byte> out(4096);
    auto const r = fe.poll(p.region(), out);
    REQUIRE(r);
    CHECK(r->status == tp::poll_status::pending);
}

TEST_CASE("tpmif frontend: submit refuses what Linux refuses", "[tpmif][frontend]") {
    page_peer p;
    tp::frontend_channel fe;
    CHECK(fe.capacity(p.region()) == 4088);
    CHECK(fe.submit(p.region(), test::command(4089)).error() == errc::too_large);
    CHECK(fe.submit(p.region(), test::command(10), 5).error() == errc::bad_locality);
    for (auto s : {submit, cancel, std::uint8_t{4}, std::uint8_t{255}}) {
        p.set_state(s);
        CHECK_FALSE(fe.can_submit(p.region()));
        CHECK(fe.submit(p.region(), test::command(10)).error() == errc::busy);
    }
    p.set_state(finish);  // the previous exchange is over
    CHECK(fe.submit(p.region(), test::command(4088)));
}

TEST_CASE("tpmif frontend: poll reports FINISH, IDLE and anything else", "[tpmif][frontend]") {
    page_peer p;
    tp::frontend_channel fe;
    std::vector<std::byte> out(4096);
    CHECK(fe.poll(p.region(), out).error() == errc::busy);  // nothing submitted
    REQUIRE(fe.submit(p.region(), test::command(10)));
    SECTION("FINISH: the response is copied out") {
        answer(p, 20, 20);
        auto const r = fe.poll(p.region(), out);
        REQUIRE(r);
        CHECK(r->status == tp::poll_status::finished);
        CHECK(r->response.data() == out.data());
        CHECK(std::ranges::equal(r->response, test::response(20)));
        CHECK_FALSE(fe.in_flight());
        CHECK(fe.can_submit(p.region()));
    }
    SECTION("IDLE: canceled") {
        p.set_state(tp::page_state::idle);
        auto const r = fe.poll(p.region(), out);
        REQUIRE(r);
        CHECK(r->status == tp::poll_status::canceled);
    }
    SECTION("a value no end may write: still pending (Linux status 0)") {
        p.set_state(9);
        auto const r = fe.poll(p.region(), out);
        REQUIRE(r);
        CHECK(r->status == tp::poll_status::pending);
    }
}

TEST_CASE("tpmif frontend: a hostile response length is clamped and rejected", "[tpmif][frontend]") {
    page_peer p;
    tp::frontend_channel fe;
    std::vector<std::byte> out(4096);
    auto poll_after = [&](std::size_t n, std::uint32_t length, wire::bytes_span o) {
        REQUIRE(fe.submit(p.region(), test::command(10)));
        answer(p, n, length);
        return fe.poll(p.region(), o);
    };
    SECTION("0xFFFFFFFF: clamped to the page, then the header disagrees") {
        CHECK(poll_after(10, 0xFFFFFFFF, out).error() == errc::size_mismatch);
    }
    SECTION("shorter than a header") {
        CHECK(poll_after(10, 9, out).error() == errc::too_small);
        CHECK(poll_after(10, 0, out).error() == errc::too_small);
    }
    SECTION("header size differs from length") { CHECK(poll_after(20, 10, out).error() == errc::size_mismatch); }
    SECTION("the whole page is a valid response") {
        auto const r = poll_after(4088, 4088, out);
        REQUIRE(r);
        CHECK(r->response.size() == 4088);
    }
    SECTION("clamped to the caller's buffer") {
        std::vector<std::byte> small(64);
        CHECK(poll_after(100, 100, small).error() == errc::size_mismatch);
        CHECK(p.mem.size() == 4096);
    }
}

TEST_CASE("tpmif frontend: cancel stores CANCEL", "[tpmif][frontend]") {
    page_peer p;
    tp::frontend_channel fe;
    REQUIRE(fe.submit(p.region(), test::command(10)));
    fe.cancel(p.region());
    CHECK(p.state() == cancel);
    CHECK_FALSE(fe.can_submit(p.region()));  // until the backend answers
}

TEST_CASE("tpmif frontend: extra pages are listed after the header", "[tpmif][frontend]") {
    page_peer p{2};
    tp::frontend_channel fe;
    std::array<tp::grant_ref, 2> refs{41, 42};
    CHECK(fe.set_extra_pages(refs).error() == errc::too_large);
    REQUIRE(fe.set_extra_pages(std::span{refs}.first(1)));
    CHECK(fe.capacity(p.region()) == 8180);
    CHECK(fe.capacity(p.first_page()) == 4084);
    auto const cmd = test::command(4096);
    REQUIRE(fe.submit(p.region(), cmd));
    CHECK(p.nr() == 1);
    CHECK(p.ref(0) == 41);
    CHECK(std::ranges::equal(p.at(12, 4096), cmd));
    answer(p, 4096, 4096, 12);
    std::vector<std::byte> out(8192);
    auto const r = fe.poll(p.region(), out);
    REQUIRE(r);
    CHECK(std::ranges::equal(r->response, test::response(4096)));
}

TEST_CASE("tpmif: frontend and backend channels over one page", "[tpmif]") {
    page_peer p;
    tp::frontend_channel fe;
    tp::backend_channel be;
    std::vector<std::byte> buf(4096), out(4096);
    auto const cmd = test::command(64);
    SECTION("a round trip") {
        REQUIRE(fe.submit(p.region(), cmd, 1));
        auto const a = be.on_event(p.region(), buf);
        REQUIRE(std::holds_alternative<tp::request>(a));
        CHECK(std::ranges::equal(std::get<tp::request>(a).command, cmd));
        CHECK(be.complete(p.region(), test::response(33)));
        auto const r = fe.poll(p.region(), out);
        REQUIRE(r);
        CHECK(r->status == tp::poll_status::finished);
        CHECK(r->response.size() == 33);
    }
    SECTION("a cancel before the backend looked: IDLE, the frontend sees canceled") {
        REQUIRE(fe.submit(p.region(), cmd));
        fe.cancel(p.region());
        CHECK(std::holds_alternative<tp::cancel_acked>(be.on_event(p.region(), buf)));
        auto const r = fe.poll(p.region(), out);
        REQUIRE(r);
        CHECK(r->status == tp::poll_status::canceled);
        CHECK(fe.can_submit(p.region()));
    }
    SECTION("a cancel while the backend works: a late FINISH, then the next command") {
        REQUIRE(fe.submit(p.region(), cmd));
        REQUIRE(std::holds_alternative<tp::request>(be.on_event(p.region(), buf)));
        fe.cancel(p.region());
        CHECK(std::holds_alternative<tp::cancel_device>(be.on_event(p.region(), buf)));
        CHECK(be.complete(p.region(), test::response(10)));
        auto const r = fe.poll(p.region(), out);
        REQUIRE(r);
        CHECK(r->status == tp::poll_status::finished);
        CHECK(fe.submit(p.region(), cmd));
    }
}

TEST_CASE("tpmif: 10k round trips between two threads over one page", "[tpmif][threads]") {
    // Each side only touches the page through its channel; the state byte orders the
    // rest (TSan-clean). Every wait is a bounded poll, never a sleep.
    page_peer p;
    auto const region = p.region();
    constexpr int rounds = 10000;
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
    auto expired = [&] { return std::chrono::steady_clock::now() > deadline; };
    std::atomic<bool> stop{false};
    std::atomic<int> served{0};
    std::thread backend{[&] {
        tp::backend_channel be;
        std::vector<std::byte> buf(4096);
        while (!stop.load(std::memory_order_relaxed) && !expired()) {
            auto const a = be.on_event(region, buf);
            if (!std::holds_alternative<tp::request>(a)) {
                std::this_thread::yield();
                continue;
            }
            auto resp = std::vector<std::byte>(std::get<tp::request>(a).command.begin(),
                                               std::get<tp::request>(a).command.end());
            wire::store_be<std::uint32_t>(std::span{resp}.subspan(6), 0);  // echo with rc 0
            be.complete(region, resp);
            served.fetch_add(1, std::memory_order_relaxed);
        }
    }};
    tp::frontend_channel fe;
    std::vector<std::byte> out(4096);
    int ok = 0;
    for (int i = 0; i < rounds && !expired(); ++i) {
        auto const cmd = test::command(10 + static_cast<std::size_t>(i % 200), 0x8001, static_cast<std::uint32_t>(i));
        while (!fe.can_submit(region) && !expired()) std::this_thread::yield();
        if (!fe.submit(region, cmd)) break;
        result<tp::poll_result> r = fe.poll(region, out);
        while (r && r->status == tp::poll_status::pending && !expired()) {
            std::this_thread::yield();
            r = fe.poll(region, out);
        }
        if (!r || r->status != tp::poll_status::finished || r->response.size() != cmd.size()) break;
        if (!std::ranges::equal(r->response.subspan(10), std::span{cmd}.subspan(10))) break;
        ++ok;
    }
    stop = true;
    backend.join();
    CHECK(ok == rounds);
    CHECK(served.load() == rounds);
}

TEST_CASE("tpmif durations: Linux's classes per family", "[tpmif][duration]") {
    using tp::duration_class;
    using wire::family;
    STATIC_REQUIRE(std::ranges::is_sorted(tp::detail::tpm12_classes, {}, &tp::detail::code_class::code));
    STATIC_REQUIRE(std::ranges::is_sorted(tp::detail::tpm2_classes, {}, &tp::detail::code_class::code));
    CHECK(tp::classify(family::tpm12, 0x14) == duration_class::fast);   // Extend
    CHECK(tp::classify(family::tpm12, 0x46) == duration_class::fast);   // GetRandom
    CHECK(tp::classify(family::tpm12, 0x65) == duration_class::fast);   // GetCapability
    CHECK(tp::classify(family::tpm12, 0x0D) == duration_class::slow);   // TakeOwnership
    CHECK(tp::classify(family::tpm12, 0x1F) == duration_class::slow);   // CreateWrapKey
    CHECK(tp::classify(family::tpm12, 0x17) == duration_class::medium); // Seal
    CHECK(tp::classify(family::tpm2, 0x131) == duration_class::slow);   // CreatePrimary
    CHECK(tp::classify(family::tpm2, 0x153) == duration_class::slow);   // Create
    CHECK(tp::classify(family::tpm2, 0x182) == duration_class::fast);   // PCR_Extend
    CHECK(tp::classify(family::tpm2, 0x17B) == duration_class::medium); // GetRandom (Linux LONG)
    // A code of the other family, vendor ordinals and TPM 2.0 codes on a 1.2 table: unknown.
    CHECK(tp::classify(family::tpm12, 0x17B) == duration_class::unknown);
    CHECK(tp::classify(family::tpm12, 0x02000101) == duration_class::unknown);
    CHECK(tp::classify(family::tpm2, 0x14) == duration_class::unknown);

    using std::chrono::seconds;
    CHECK(tp::command_duration(family::tpm12, 0x14) == seconds{3});
    CHECK(tp::command_duration(family::tpm12, 0x0D) == seconds{600});
    CHECK(tp::command_duration(family::tpm12, 0xFFFF) == seconds{120});  // Linux's 2-minute fallback
    CHECK(tp::command_duration(family::tpm2, 0x131) == seconds{300});
    CHECK(tp::command_duration(family::tpm2, 0x17E) == seconds{3});
    tp::durations const from_vtpm{std::chrono::milliseconds{5}, std::chrono::milliseconds{6},
                                  std::chrono::milliseconds{7}, std::chrono::milliseconds{8}};
    CHECK(tp::command_duration(family::tpm2, 0x17B, from_vtpm) == std::chrono::milliseconds{6});
    CHECK(tp::command_duration(family::tpm2, 0x999, from_vtpm) == std::chrono::milliseconds{8});
    // From the command bytes: the code at 6..9; too short for a code: the fallback.
    CHECK(tp::command_duration(family::tpm2, test::command(12, 0x8001, 0x131)) == seconds{300});
    CHECK(tp::command_duration(family::tpm2, test::command(9)) == seconds{120});
}
