// tpmif_backend<sim_hv> and forward<tpmif_frontend<sim_hv>> end to end over a real xtpm-simhv
// process: the toolstack (dom0) attaches vTPMs as xl does, the backend (dom1) serves them
// through a pipeline over a fake device, frontends (dom2, dom3) run commands.
#include <xtpm/source/tpmif_backend.hpp>

#include <xtpm/device/forward.hpp>
#include <xtpm/device/tpmif_frontend.hpp>
#include <xtpm/pipeline.hpp>
#include <xtpm/wire/writer.hpp>

#include "common/xl_vtpm.hpp"
#include "hv/sim_fixture.hpp"

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <string_view>
#include <thread>

#include <poll.h>

namespace {
using namespace xtpm;
using hv::sim_hv;
using namespace std::chrono_literals;

constexpr std::uint32_t slow_code = 0x20000123;  // vendor code: runs until canceled (at most 5 s)
constexpr std::uint32_t rc_canceled = 0x909;

// Echo device: the response is a success header followed by the command's payload.
struct fake_device {
    std::shared_ptr<std::atomic<bool>> cancel_flag = std::make_shared<std::atomic<bool>>(false);
    std::shared_ptr<std::atomic<int>> started = std::make_shared<std::atomic<int>>(0);
    auto execute(wire::command_view cmd, wire::bytes_span out) -> result<wire::response_view> {
        std::uint32_t rc = 0;
        if (cmd.bytes.size() >= 10 && wire::load_be<std::uint32_t>(cmd.bytes.subspan(6, 4)) == slow_code) {
            cancel_flag->store(false);
            started->fetch_add(1);
            auto const end = std::chrono::steady_clock::now() + 5s;
            while (!cancel_flag->load() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
            rc = cancel_flag->load() ? rc_canceled : 0;
        }
        auto const n = cmd.bytes.size();
        wire::store_be<std::uint16_t>(out.subspan(0, 2), 0x8001);
        wire::store_be<std::uint32_t>(out.subspan(2, 4), static_cast<std::uint32_t>(n));
        wire::store_be<std::uint32_t>(out.subspan(6, 4), rc);
        std::ranges::copy(cmd.bytes.subspan(10), out.begin() + 10);
        return wire::response_view{out.first(n)};
    }
    void cancel() noexcept { cancel_flag->store(true); }
    [[nodiscard]] auto family() const -> wire::family { return wire::family::tpm2; }
    [[nodiscard]] auto max_command_size() const -> std::size_t { return 4096; }
};

auto command(std::size_t size, std::uint32_t code = 0x17B, std::uint8_t fill = 0) -> std::vector<std::byte> {
    std::vector<std::byte> c(size);
    wire::store_be<std::uint16_t>(std::span{c}.subspan(0, 2), 0x8001);
    wire::store_be<std::uint32_t>(std::span{c}.subspan(2, 4), static_cast<std::uint32_t>(size));
    wire::store_be<std::uint32_t>(std::span{c}.subspan(6, 4), code);
    for (std::size_t i = 10; i < size; ++i) c[i] = std::byte{static_cast<std::uint8_t>(fill + i)};
    return c;
}

using backend_pipeline = pipeline<tpmif_backend<sim_hv>, fake_device>;
using front = forward<tpmif_frontend<sim_hv>>;

// The backend domain's pipeline on its own thread.
class backend_runner {
public:
    backend_runner(test::simhv_daemon const& d, fake_device dev, tpmif_backend<sim_hv>::options o = {}) {
        o.log = [log = log_](std::string const& line) {
            std::scoped_lock lock{log->mutex};
            log->lines.push_back(line);
        };
        auto be = tpmif_backend<sim_hv>::create(d.connect(1), std::move(o));
        REQUIRE(be.has_value());
        p_ = std::make_unique<backend_pipeline>(std::move(*be), std::move(dev));
        thread_ = std::jthread{[this] { served_ = p_->run(); }};
    }
    ~backend_runner() { stop(); }
    void stop() {
        if (!thread_.joinable()) return;
        p_->stop();
        thread_.join();
    }
    [[nodiscard]] auto served() const -> result<void> const& { return served_; }
    [[nodiscard]] auto log_has(std::string_view part) const -> bool {
        std::scoped_lock lock{log_->mutex};
        return std::ranges::any_of(log_->lines, [&](std::string const& l) { return l.contains(part); });
    }

private:
    struct log_lines {
        std::mutex mutex;
        std::vector<std::string> lines;
    };
    std::shared_ptr<log_lines> log_ = std::make_shared<log_lines>();
    std::unique_ptr<backend_pipeline> p_;
    result<void> served_;
    std::jthread thread_;
};

auto attach(sim_hv& dom0, hv::domid_t fe, unsigned devid) -> roles::vtpm_attachment {
    roles::vtpm_attachment a{fe, 1, devid, {}};
    REQUIRE(roles::vtpm_attach(dom0, a).has_value());
    return a;
}

auto open_front(test::simhv_daemon const& d, hv::domid_t fe, unsigned devid = 0, bool extra = true) -> front {
    tpmif_frontend<sim_hv>::options o;
    o.devid = devid;
    o.extra_pages = extra;
    o.connect_timeout = 5000ms;
    auto f = tpmif_frontend<sim_hv>::open(d.connect(fe), o);
    REQUIRE(f.has_value());
    return front{std::move(*f)};
}

auto run(front& f, std::vector<std::byte> const& cmd, std::vector<std::byte>& out) -> result<wire::response_view> {
    auto admitted = wire::parse_command(cmd, wire::family::tpm2, 4096);
    REQUIRE(admitted.has_value());
    out.assign(4096, std::byte{});
    return f.execute(*admitted, out);
}

void check_echo(front& f, std::size_t size, std::uint8_t fill = 0) {
    auto const cmd = command(size, 0x17B, fill);
    std::vector<std::byte> out;
    auto const t0 = std::chrono::steady_clock::now();
    auto r = run(f, cmd, out);
    INFO("after " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
                  << " ms: " << (r ? std::string{} : r.error().message()));
    REQUIRE(r.has_value());
    REQUIRE(r->bytes.size() == size);
    CHECK(r->rc() == wire::tpm_rc{0});
    CHECK(std::ranges::equal(r->bytes.subspan(10), std::span{cmd}.subspan(10)));
}

template <class F>
auto eventually(F f, std::chrono::milliseconds limit = 5000ms) -> bool {
    auto const end = std::chrono::steady_clock::now() + limit;
    while (!f()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(5ms);  // polling a xenstore value with a deadline
    }
    return true;
}

}  // namespace

TEST_CASE("tpmif_backend: a frontend runs commands through the backend's pipeline", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2}};
    auto dom0 = d.connect(0);
    auto const a = attach(dom0, 2, 0);
    backend_runner be{d, fake_device{}};
    auto f = open_front(d, 2);
    CHECK(f.client().connected());
    CHECK(dom0.read(roles::backend_dir(a) + "/state").value() == "4");
    CHECK(dom0.read(roles::frontend_dir(a) + "/state").value() == "4");
    CHECK(dom0.read(roles::backend_dir(a) + "/feature-protocol-v2").value() == "1");
    CHECK(f.client().extra_pages());  // both ends advertise it: a 4096-byte command fits
    CHECK(f.max_command_size() == 4096);
    check_echo(f, 10);
    check_echo(f, 4088);
    check_echo(f, 4096, 7);
}

TEST_CASE("tpmif_backend: without extra pages the frontend is limited to 4088 bytes", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2}};
    auto dom0 = d.connect(0);
    attach(dom0, 2, 0);
    backend_runner be{d, fake_device{}};
    auto f = open_front(d, 2, 0, false);
    CHECK_FALSE(f.client().extra_pages());
    CHECK(f.max_command_size() == 4088);
    check_echo(f, 4088);
    auto const big = command(4096);
    std::vector<std::byte> out(4096);
    CHECK(f.client().transact(big, 0, out).error() == make_error_code(errc::too_large));
    check_echo(f, 100);
}

TEST_CASE("tpmif_backend: serves many devices of several guests at once", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2, 3}};
    auto dom0 = d.connect(0);
    std::vector<std::pair<hv::domid_t, unsigned>> const devs{{2, 0}, {2, 1}, {3, 0}, {3, 5}};
    for (auto [fe, id] : devs) attach(dom0, fe, id);
    backend_runner be{d, fake_device{}};
    std::vector<front> fronts;
    for (auto [fe, id] : devs) fronts.push_back(open_front(d, fe, id));
    std::vector<std::jthread> threads;
    std::atomic<int> ok{0};
    for (std::size_t i = 0; i < fronts.size(); ++i) {
        threads.emplace_back([&, i] {
            for (int n = 0; n < 50; ++n) {
                auto const cmd = command(20 + static_cast<std::size_t>(n) * 7, 0x17B, static_cast<std::uint8_t>(i));
                std::vector<std::byte> out(4096);
                auto admitted = wire::parse_command(cmd, wire::family::tpm2, 4096);
                auto r = fronts[i].execute(*admitted, out);
                if (r && std::ranges::equal(r->bytes.subspan(10), std::span{cmd}.subspan(10))) ++ok;
            }
        });
    }
    threads.clear();
    CHECK(ok == 200);
}

TEST_CASE("tpmif_backend: a frontend closes and a new one reopens the same device", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2}};
    auto dom0 = d.connect(0);
    auto const a = attach(dom0, 2, 0);
    backend_runner be{d, fake_device{}};
    {
        auto f = open_front(d, 2);
        check_echo(f, 50);
        f.client().close();
        CHECK(eventually([&] { return dom0.read(roles::backend_dir(a) + "/state").value() == "2"; }));  // InitWait
    }
    auto g = open_front(d, 2);
    check_echo(g, 60);
    CHECK(dom0.read(roles::backend_dir(a) + "/state").value() == "4");
}

TEST_CASE("tpmif_backend: the backend restarts while the frontend waits", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2}};
    auto dom0 = d.connect(0);
    auto const a = attach(dom0, 2, 0);
    auto be = std::make_unique<backend_runner>(d, fake_device{});
    auto f = open_front(d, 2);
    check_echo(f, 30);
    be->stop();
    CHECK(be->served().has_value());
    CHECK(dom0.read(roles::backend_dir(a) + "/state").value() == "6");  // Closed
    be = std::make_unique<backend_runner>(d, fake_device{});
    // Idle, the frontend follows the backend over xenstore (xtpm-front's device_events source);
    // a command sent before it has seen the restart may go to the old backend and fail.
    CHECK(eventually([&] {
        REQUIRE(f.service().has_value());
        return f.client().connected() && dom0.read(roles::backend_dir(a) + "/state").value() == "4";
    }));
    check_echo(f, 40);
    CHECK(dom0.read(roles::backend_dir(a) + "/state").value() == "4");
}

TEST_CASE("tpmif_backend: CANCEL reaches the device while a command runs", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2}};
    auto dom0 = d.connect(0);
    attach(dom0, 2, 0);
    fake_device dev;
    auto started = dev.started;
    backend_runner be{d, dev};
    auto f = open_front(d, 2);
    std::jthread canceller{[&] {
        if (eventually([&] { return started->load() > 0; })) f.cancel();
    }};
    auto const cmd = command(12, slow_code);
    std::vector<std::byte> out;
    auto const t0 = std::chrono::steady_clock::now();
    auto r = run(f, cmd, out);
    canceller.join();
    REQUIRE(r.has_value());
    CHECK(r->rc() == wire::tpm_rc{rc_canceled});
    CHECK(std::chrono::steady_clock::now() - t0 < 4s);
    check_echo(f, 20);  // the channel is usable afterwards
}

TEST_CASE("tpmif_backend: a device the toolstack removes goes, the other guest's keeps working", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2, 3}};
    auto dom0 = d.connect(0);
    auto const a = attach(dom0, 2, 0);
    attach(dom0, 3, 0);
    backend_runner be{d, fake_device{}};
    auto f2 = open_front(d, 2);
    auto f3 = open_front(d, 3);
    check_echo(f2, 11);
    SECTION("forced: the directories go under the backend") {
        REQUIRE(roles::vtpm_remove(dom0, a).has_value());
        CHECK(eventually([&] { return dom0.read(roles::backend_dir(a) + "/frontend-id").value() == std::nullopt; }));
        check_echo(f3, 33);
        // The backend's teardown (Closing, Closed) must not recreate the removed directory.
        REQUIRE(eventually([&] { return be.log_has("2/0: disconnected"); }));
        check_echo(f3, 35);  // served after the teardown's actions ran (one backend thread)
        CHECK(dom0.read(roles::backend_dir(a), hv::no_tx).value() == std::nullopt);
    }
    SECTION("xl vtpm-detach: online=0, backend Closing, the backend's Closed, then removal") {
        // The idle frontend handles its xenstore events meanwhile (xtpm-front's device_events).
        auto detached = std::async(std::launch::async, [&] { return roles::vtpm_detach(dom0, a); });
        auto const until = std::chrono::steady_clock::now() + 10s;
        while (detached.wait_for(0ms) != std::future_status::ready && std::chrono::steady_clock::now() < until) {
            pollfd p{f2.event_fd(), POLLIN, 0};
            if (::poll(&p, 1, 10) > 0) REQUIRE(f2.service().has_value());
        }
        auto closed = detached.get();
        REQUIRE(closed.has_value());
        CHECK(*closed);  // the frontend answered Closing with Closed and the backend reached Closed
        CHECK(dom0.read(roles::backend_dir(a), hv::no_tx).value() == std::nullopt);
        check_echo(f3, 34);
    }
}

TEST_CASE("tpmif_backend: with a uuid filter each backend serves only its guest's vTPM", "[guest][tpmif]") {
    test::simhv_daemon d{{1, 2, 3}};
    auto dom0 = d.connect(0);
    auto const uuid_of = [](char c) { return std::string(8, c) + "-1111-4222-8333-" + std::string(12, c); };
    roles::vtpm_attachment a{2, 1, 0, uuid_of('a')}, b{3, 1, 0, uuid_of('b')};
    REQUIRE(roles::vtpm_attach(dom0, a).has_value());
    REQUIRE(roles::vtpm_attach(dom0, b).has_value());
    auto const filter = [&](std::string const& u) {
        tpmif_backend<sim_hv>::options o;
        o.uuid = proto::xenbus::parse_uuid(u).value();
        return o;
    };
    auto be_a = std::make_unique<backend_runner>(d, fake_device{}, filter(a.uuid));
    auto fa = open_front(d, 2);
    check_echo(fa, 21);
    CHECK(dom0.read(roles::backend_dir(a) + "/state").value() == "4");
    CHECK(dom0.read(roles::backend_dir(b) + "/state").value() == "1");  // not touched: not its uuid
    backend_runner be_b{d, fake_device{}, filter(b.uuid)};
    auto fb = open_front(d, 3);
    check_echo(fb, 31);
    check_echo(fa, 22);
    be_a.reset();  // guest 2's backend goes; guest 3's is not disturbed
    CHECK(dom0.read(roles::backend_dir(a) + "/state").value() == "6");
    check_echo(fb, 32);
}
