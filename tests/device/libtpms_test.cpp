#include <xtpm/device/libtpms.hpp>
#include <xtpm/store/directory_store.hpp>
#include <xtpm/store/memory_store.hpp>

#include "device/tpm_commands.hpp"

#include <catch2/catch.hpp>

#include <botan/hash.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

// libtpms is one TPM per process: every TEST_CASE creates its device and lets
// it die before the next one starts.

namespace {
using namespace xtpm;
using namespace xtpm::test;
namespace fs = std::filesystem;
using device = libtpms_device<memory_store>;

static_assert(tpm_device<device>);
static_assert(cancellable_device<device>);
static_assert(powered_device<device>);
static_assert(stateful_device<device>);
static_assert(established_device<device>);
static_assert(buffer_sized_device<device>);
static_assert(hashing_device<device>);
static_assert(std::movable<device>);
static_assert(!std::copyable<device>);
static_assert(tpm_device<libtpms_device<directory_store>>);

template <class D>
auto run(D& dev, bytes const& cmd, std::uint8_t locality = 0) -> bytes {
    auto v = wire::parse_command(cmd, dev.family(), dev.max_command_size(), locality);
    REQUIRE(v.has_value());
    std::array<std::byte, 16> scratch{};
    auto r = dev.execute(*v, scratch);
    REQUIRE(r.has_value());
    return {r->bytes.begin(), r->bytes.end()};
}

auto make_device(memory_store store = {}, libtpms_options opts = {}) -> device {
    auto d = device::create(std::move(store), opts);
    REQUIRE(d.has_value());
    return std::move(*d);
}

// hash(a || b), computed by Botan as an oracle independent of libtpms.
auto digest(std::string const& alg, std::span<std::byte const> a, std::span<std::byte const> b = {}) -> bytes {
    auto h = Botan::HashFunction::create_or_throw(alg);
    h->update(reinterpret_cast<std::uint8_t const*>(a.data()), a.size());
    h->update(reinterpret_cast<std::uint8_t const*>(b.data()), b.size());
    auto const out = h->final_stdvec();
    bytes r;
    for (auto x : out) r.push_back(static_cast<std::byte>(x));
    return r;
}

auto pattern(std::size_t n, unsigned seed) -> bytes {
    bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i * 7 + seed) & 0xFF);
    return b;
}

auto sub(bytes const& b, std::size_t off, std::size_t n) -> bytes {
    REQUIRE(b.size() >= off + n);
    return {b.begin() + static_cast<std::ptrdiff_t>(off), b.begin() + static_cast<std::ptrdiff_t>(off + n)};
}

void start(device& d, bool delete_volatile = false) {
    REQUIRE(d.power_on(delete_volatile).has_value());
    CHECK(rc_of(run(d, tpm2::startup_clear())) == 0);
}

// Defines the test NV index and writes `data` to it.
void define_and_write(device& d, bytes const& data) {
    CHECK(rc_of(run(d, tpm2::nv_define_space(tpm2::nv_index, static_cast<std::uint16_t>(data.size())))) == 0);
    CHECK(rc_of(run(d, tpm2::nv_write(tpm2::nv_index, data))) == 0);
}

auto read_nv(device& d, std::uint16_t n) -> bytes {
    auto const r = run(d, tpm2::nv_read(tpm2::nv_index, n));
    REQUIRE(rc_of(r) == 0);
    return sub(r, tpm2::nv_read_data_offset, n);
}

auto read_pcr(device& d, std::uint32_t pcr) -> bytes {
    auto const r = run(d, tpm2::pcr_read(pcr));
    REQUIRE(rc_of(r) == 0);
    return sub(r, tpm2::pcr_read_digest_offset, 32);
}

bytes const zeros32(32);
}  // namespace

TEST_CASE("libtpms_device: execute is not_running before power_on and after power_off", "[device][libtpms]") {
    auto d = make_device();
    CHECK_FALSE(d.running());
    auto const cmd = tpm2::get_random(8);
    auto v = wire::parse_command(cmd, d.family(), d.max_command_size());
    REQUIRE(v.has_value());
    std::array<std::byte, 16> scratch{};
    CHECK(d.execute(*v, scratch).error() == errc::not_running);
    CHECK(d.hash_start().error() == errc::not_running);
    CHECK(d.tpm_established().error() == errc::not_running);
    CHECK(d.store_volatile().error() == errc::not_running);
    d.cancel();  // harmless while off

    start(d);
    CHECK(d.power_on(false).error() == errc::busy);
    REQUIRE(d.power_off().has_value());
    CHECK_FALSE(d.running());
    CHECK(d.execute(*v, scratch).error() == errc::not_running);
    CHECK(d.power_off().has_value());  // already off: nothing to do
}

TEST_CASE("libtpms_device: info() is libtpms's JSON for the device's family, running or not", "[device][libtpms]") {
    auto d = make_device();
    auto const off = d.info(1);
    REQUIRE(off.has_value());
    CHECK(off->starts_with(R"({"TPMSpecification":{"family":"2.0",)"));
    start(d);
    CHECK(d.info(1) == off);
    auto const all = d.info(7);
    REQUIRE(all.has_value());
    CHECK(all->contains(R"("TPMAttributes":{)"));
    CHECK(all->contains(R"("TPMFeatures":{)"));
    CHECK(d.info(0) == std::string{"{}"});
}

TEST_CASE("libtpms_device: TPM 2.0 answers GetRandom and extends PCR 16 like SHA-256", "[device][libtpms][tpm2]") {
    auto d = make_device();
    CHECK(d.family() == wire::family::tpm2);
    start(d);

    auto const rnd = run(d, tpm2::get_random(32));
    CHECK(rc_of(rnd) == 0);
    REQUIRE(rnd.size() == 10 + 2 + 32);
    CHECK(wire::load_be<std::uint16_t>(std::span{rnd}.subspan(10, 2)) == 32);

    CHECK(read_pcr(d, 16) == zeros32);
    auto const ev = digest("SHA-256", pattern(64, 1));
    CHECK(rc_of(run(d, tpm2::pcr_extend(16, std::span<std::byte const, 32>{ev}))) == 0);
    CHECK(read_pcr(d, 16) == digest("SHA-256", zeros32, ev));

    SECTION("cancel while idle does not cancel the next command") {
        d.cancel();
        auto const again = run(d, tpm2::get_random(16));
        CHECK(rc_of(again) == 0);
        CHECK(again.size() == 10 + 2 + 16);
    }
    SECTION("the response of a malformed command is a TPM error, not a failure") {
        auto bad = tpm2::get_random(8);
        bad[9] = std::byte{0xFF};  // unknown command code
        CHECK(rc_of(run(d, bad)) != 0);
    }
}

TEST_CASE("libtpms_device: a moved device keeps serving through the callbacks", "[device][libtpms]") {
    memory_store store;
    auto d = make_device(store);
    device moved = std::move(d);
    start(moved);
    define_and_write(moved, pattern(8, 3));  // NV writes go through the storedata callback
    CHECK(store.contains("permall"));
    device again = std::move(moved);
    CHECK(read_nv(again, 8) == pattern(8, 3));
}

TEST_CASE("libtpms_device: an NV index survives a power cycle", "[device][libtpms][tpm2]") {
    memory_store store;
    auto d = make_device(store);
    start(d);
    auto const data = pattern(32, 9);
    define_and_write(d, data);
    REQUIRE(d.power_off().has_value());
    REQUIRE(store.contains("permall"));
    CHECK_FALSE(store.contains("volatilestate"));

    start(d);
    CHECK(read_nv(d, 32) == data);
}

TEST_CASE("libtpms_device: state moves to a new store through get_state and set_state",
          "[device][libtpms][tpm2]") {
    auto const data = pattern(16, 5);
    auto const ev = digest("SHA-256", pattern(20, 8));
    bytes perm, vol, extended;
    {
        memory_store a;
        auto d = make_device(a);
        start(d);
        define_and_write(d, data);
        CHECK(rc_of(run(d, tpm2::pcr_extend(16, std::span<std::byte const, 32>{ev}))) == 0);
        extended = read_pcr(d, 16);
        perm = d.get_state(state_blob::permanent).value();
        vol = d.get_state(state_blob::volatile_state).value();
        CHECK(perm.size() > 1000);
        CHECK(vol.size() > 1000);
        CHECK(d.get_state(state_blob::save_state).value().empty());  // TPM 2.0 keeps no separate save state
        REQUIRE(d.power_off().has_value());
        CHECK(d.get_state(state_blob::permanent).value() == a.peek("permall").value());  // off: the stored blob
        CHECK(d.get_state(state_blob::volatile_state).value().empty());                  // none stored
    }
    memory_store b;
    auto d = make_device(b);
    REQUIRE(d.set_state(state_blob::permanent, perm).has_value());
    CHECK(b.peek("permall") == perm);

    SECTION("permanent state only: the TPM starts afresh with its NV") {
        start(d);
        CHECK(read_nv(d, 16) == data);
        CHECK(read_pcr(d, 16) == zeros32);
        CHECK(d.set_state(state_blob::permanent, perm).error() == errc::busy);
    }
    SECTION("with volatile state: the TPM resumes where it was") {
        REQUIRE(d.set_state(state_blob::volatile_state, vol).has_value());
        CHECK(b.peek("volatilestate") == vol);
        REQUIRE(d.power_on(false).has_value());
        CHECK(read_pcr(d, 16) == extended);
        CHECK(read_nv(d, 16) == data);
    }
    SECTION("replacing the permanent state drops the volatile state that belonged to the old one") {
        REQUIRE(d.set_state(state_blob::volatile_state, vol).has_value());
        REQUIRE(d.set_state(state_blob::permanent, perm).has_value());
        CHECK_FALSE(b.contains("volatilestate"));
    }
    SECTION("TPM 2.0 has no save state to set") {
        CHECK(d.set_state(state_blob::save_state, vol).error() == errc::bad_state);
        CHECK_FALSE(b.contains("savestate"));
    }
    SECTION("an unknown blob type") {
        CHECK(d.set_state(static_cast<state_blob>(7), vol).error() == errc::bad_value);
        CHECK(d.get_state(static_cast<state_blob>(0)).error() == errc::bad_value);
    }
}

TEST_CASE("libtpms_device: a corrupt permanent blob is refused and the old state survives",
          "[device][libtpms][tpm2]") {
    memory_store store;
    auto d = make_device(store);
    start(d);
    auto const data = pattern(16, 11);
    define_and_write(d, data);
    REQUIRE(d.power_off().has_value());
    auto const good = store.peek("permall").value();
    REQUIRE(good.size() > 64);

    auto check_survives = [&] {
        CHECK(store.peek("permall") == good);
        start(d);
        CHECK(read_nv(d, 16) == data);
    };

    SECTION("set_state refuses") {
        bytes corrupt;
        SECTION("truncated") { corrupt = sub(good, 0, good.size() / 2); }
        SECTION("zeroed header") {
            corrupt = good;
            std::fill_n(corrupt.begin(), 16, std::byte{0});
        }
        SECTION("garbage") { corrupt = pattern(good.size(), 77); }
        SECTION("one byte") { corrupt = bytes(1); }
        SECTION("empty") { corrupt = {}; }
        CHECK(d.set_state(state_blob::permanent, corrupt).error() == errc::bad_state);
        CHECK_FALSE(d.running());
        check_survives();
    }
    SECTION("a corrupt stored blob stops power_on and is not manufactured over") {
        auto bad = sub(good, 0, good.size() / 2);
        store.poke("permall", bad);
        CHECK(d.power_on(false).error() == errc::bad_state);
        CHECK_FALSE(d.running());
        CHECK(store.peek("permall") == bad);
        store.poke("permall", good);
        check_survives();
    }
    SECTION("an empty stored blob stops power_on") {
        store.poke("permall", {});
        CHECK(d.power_on(false).error() == errc::bad_state);
        store.poke("permall", good);
        check_survives();
    }
    SECTION("volatile state without a permanent state is refused") {
        memory_store other;
        auto dv = d.get_state(state_blob::volatile_state);  // off: the stored one, i.e. none
        REQUIRE(dv.has_value());
        CHECK(dv->empty());
        CHECK(d.set_state(state_blob::volatile_state, pattern(100, 1)).error() == errc::bad_state);
        check_survives();
    }
}

TEST_CASE("libtpms_device: store errors stop power_on instead of manufacturing", "[device][libtpms][tpm2]") {
    memory_store store;
    auto d = make_device(store);
    SECTION("load fails on an existing state") {
        start(d);
        define_and_write(d, pattern(8, 1));
        REQUIRE(d.power_off().has_value());
        auto const good = store.peek("permall");
        store.set_faults({.load = true});
        CHECK(d.power_on(false).error() == errc::io_error);
        CHECK_FALSE(d.running());
        store.set_faults({});
        CHECK(store.peek("permall") == good);
        start(d);
        CHECK(read_nv(d, 8) == pattern(8, 1));
    }
    SECTION("load fails while set_state checks volatile state against the stored permanent state") {
        start(d);
        auto const vol = d.get_state(state_blob::volatile_state).value();
        REQUIRE(d.power_off().has_value());
        store.set_faults({.load = true});
        CHECK(d.set_state(state_blob::volatile_state, vol).error() == errc::io_error);
        store.set_faults({});
        CHECK_FALSE(store.contains("volatilestate"));
        REQUIRE(d.set_state(state_blob::volatile_state, vol).has_value());
    }
    SECTION("save fails while manufacturing") {
        store.set_faults({.save = true});
        auto const r = d.power_on(false);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == errc::io_error);
        CHECK_FALSE(d.running());
        store.set_faults({});
        start(d);
    }
    SECTION("save fails during a command") {
        start(d);
        store.set_faults({.save = true});
        auto const r = run(d, tpm2::nv_define_space(tpm2::nv_index, 8));
        CHECK(rc_of(r) != 0);
        CHECK(d.store_error() == errc::io_error);
        store.set_faults({});
        CHECK(d.power_off().error() == errc::io_error);
    }
}

TEST_CASE("libtpms_device: stored volatile state resumes the TPM once", "[device][libtpms][tpm2]") {
    memory_store store;
    auto d = make_device(store);
    start(d);
    auto const ev = digest("SHA-256", pattern(10, 2));
    CHECK(rc_of(run(d, tpm2::pcr_extend(16, std::span<std::byte const, 32>{ev}))) == 0);
    auto const extended = read_pcr(d, 16);
    REQUIRE(d.store_volatile().has_value());
    REQUIRE(store.contains("volatilestate"));
    REQUIRE(d.power_off().has_value());

    SECTION("power_on(false) resumes without Startup, then the snapshot is gone") {
        REQUIRE(d.power_on(false).has_value());
        CHECK_FALSE(store.contains("volatilestate"));
        CHECK(read_pcr(d, 16) == extended);
        REQUIRE(d.power_off().has_value());
        REQUIRE(d.power_on(false).has_value());
        CHECK(rc_of(run(d, tpm2::pcr_read(16))) == tpm2::rc_initialize);
    }
    SECTION("power_on(true) deletes it") {
        REQUIRE(d.power_on(true).has_value());
        CHECK_FALSE(store.contains("volatilestate"));
        CHECK(rc_of(run(d, tpm2::pcr_read(16))) == tpm2::rc_initialize);
    }
    SECTION("a corrupt snapshot fails closed until deleted") {
        store.poke("volatilestate", pattern(64, 3));
        CHECK(d.power_on(false).error() == errc::bad_state);
        CHECK_FALSE(d.running());
        start(d, true);
    }
}

TEST_CASE("libtpms_device: buffer size 4088 is what TPM 2.0 advertises", "[device][libtpms][tpm2]") {
    auto d = make_device({}, {.family = wire::family::tpm2, .buffer_size = 4088});
    CHECK(d.max_command_size() == 4088);
    start(d);
    auto const cmd = run(d, tpm2::get_tpm_property(tpm2::pt_max_command_size));
    REQUIRE(rc_of(cmd) == 0);
    CHECK(u32_at(cmd, tpm2::property_value_offset - 4) == tpm2::pt_max_command_size);
    CHECK(u32_at(cmd, tpm2::property_value_offset) == 4088);
    auto const resp = run(d, tpm2::get_tpm_property(tpm2::pt_max_response_size));
    CHECK(u32_at(resp, tpm2::property_value_offset) == 4088);

    auto const q = d.set_buffer_size(0);
    REQUIRE(q.has_value());
    CHECK(q->size == 4088);
    CHECK(q->min < 4088);
    CHECK(q->max == 4096);
    CHECK(d.set_buffer_size(4096).error() == errc::busy);
    REQUIRE(d.power_off().has_value());

    SECTION("out-of-range sizes are clamped") {
        auto lo = d.set_buffer_size(1);
        REQUIRE(lo.has_value());
        CHECK(lo->size == lo->min);
        auto hi = d.set_buffer_size(1'000'000);
        REQUIRE(hi.has_value());
        CHECK(hi->size == hi->max);
        CHECK(d.max_command_size() == hi->max);
    }
    SECTION("a new size applies at the next power_on") {
        REQUIRE(d.set_buffer_size(3000).value().size == 3000);
        start(d);
        CHECK(u32_at(run(d, tpm2::get_tpm_property(tpm2::pt_max_command_size)), tpm2::property_value_offset) == 3000);
    }
    CHECK(device::create({}, {.buffer_size = 0}).error() == errc::bad_value);  // d is alive: fails before claiming
}

TEST_CASE("libtpms_device: the command's locality reaches libtpms", "[device][libtpms][tpm2]") {
    auto d = make_device();
    start(d);
    CHECK(rc_of(run(d, tpm2::pcr_reset(16), 0)) == 0);
    CHECK(rc_of(run(d, tpm2::pcr_reset(20), 0)) == tpm2::rc_locality);
    CHECK(rc_of(run(d, tpm2::pcr_reset(20), 2)) == 0);
    CHECK(rc_of(run(d, tpm2::pcr_reset(20), 0)) == tpm2::rc_locality);  // not sticky
}

TEST_CASE("libtpms_device: the DRTM hash sequence extends PCR 17 and sets tpmEstablished",
          "[device][libtpms][tpm2]") {
    auto d = make_device();
    start(d);
    REQUIRE(d.tpm_established().has_value());
    CHECK(d.reset_established(0).error() == errc::bad_locality);
    CHECK(d.reset_established(5).error() == errc::bad_locality);

    auto const code = pattern(100, 4);
    REQUIRE(d.hash_start().has_value());
    REQUIRE(d.hash_data(code).has_value());
    REQUIRE(d.hash_end().has_value());
    CHECK(d.tpm_established().value());
    CHECK(read_pcr(d, 17) == digest("SHA-256", zeros32, digest("SHA-256", code)));

    REQUIRE(d.reset_established(3).has_value());
    CHECK_FALSE(d.tpm_established().value());
    CHECK(rc_of(run(d, tpm2::get_random(4))) == 0);  // the locality set for the reset does not leak
    CHECK(rc_of(run(d, tpm2::pcr_reset(20), 0)) == tpm2::rc_locality);
}

TEST_CASE("libtpms_device: a second live device aborts", "[device][libtpms]") {
    pid_t const pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        std::signal(SIGABRT, SIG_DFL);  // bypass Catch's handler: the parent judges the exit
        std::freopen("/dev/null", "w", stderr);
        auto first = device::create({});
        auto second = device::create({});  // XTPM_ASSERT: abort()
        ::_exit(0);
    }
    int status = 0;
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
    pid_t done = 0;
    while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds{5});  // polling a bounded deadline
    if (done == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    }
    REQUIRE(done == pid);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGABRT);
}

TEST_CASE("libtpms_device: TPM 1.2 runs and keeps its state in a directory", "[device][libtpms][tpm12]") {
    std::string dir = (fs::temp_directory_path() / "xtpm-dev-XXXXXX").string();
    REQUIRE(::mkdtemp(dir.data()) != nullptr);
    struct cleanup {
        std::string p;
        ~cleanup() {
            std::error_code ec;
            fs::remove_all(p, ec);
        }
    } const guard{dir};

    auto store = directory_store::open(dir + "/state");
    REQUIRE(store.has_value());
    auto made = libtpms_device<directory_store>::create(std::move(*store), {.family = wire::family::tpm12});
    REQUIRE(made.has_value());
    auto& d = *made;
    CHECK(d.family() == wire::family::tpm12);
    CHECK(d.info(1).value().starts_with(R"({"TPMSpecification":{"family":"1.2",)"));

    REQUIRE(d.power_on(false).has_value());
    CHECK(rc_of(run(d, tpm12::startup(1))) == 0);
    auto const rnd = run(d, tpm12::get_random(16));
    CHECK(rc_of(rnd) == 0);
    CHECK(u32_at(rnd, 10) == 16);
    CHECK(rnd.size() == 14 + 16);

    auto const ev = digest("SHA-1", pattern(50, 6));
    auto const ext = run(d, tpm12::extend(10, std::span<std::byte const, 20>{ev}));
    CHECK(rc_of(ext) == 0);
    auto const expected = digest("SHA-1", bytes(20), ev);
    CHECK(sub(ext, 10, 20) == expected);
    auto const perm_before = d.get_state(state_blob::permanent).value();

    REQUIRE(d.power_off().has_value());  // sends TPM_SaveState
    auto const permall = fs::path{dir} / "state" / "permall";
    REQUIRE(fs::exists(permall));
    CHECK(fs::file_size(permall) > 0);
    CHECK(fs::exists(fs::path{dir} / "state" / "savestate"));

    // The second MainInit loads the stored state: a manufacture would draw a new tpmProof.
    REQUIRE(d.power_on(false).has_value());
    CHECK(d.get_state(state_blob::permanent).value() == perm_before);
    CHECK(rc_of(run(d, tpm12::startup(2))) == 0);  // TPM_ST_STATE: resume from TPM_SaveState
    CHECK_FALSE(fs::exists(fs::path{dir} / "state" / "savestate"));  // consumed: never replayed
    auto const pcr = run(d, tpm12::pcr_read(10));
    CHECK(rc_of(pcr) == 0);
    CHECK(sub(pcr, 10, 20) == expected);
}
