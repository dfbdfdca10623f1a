// The TIS driver and tis_device against the chip model with scripted backends:
// commands of every size, both families, localities, every hostile mode with
// its error and a bound on time, cancel; plus the sans-I/O pieces (timeouts,
// capability codecs, backoff) and devmem_mmio on a plain file.
#include <xtpm/device/tis.hpp>

#include "archetypes/mmio_archetype.hpp"
#include "tis/tis_support.hpp"
#include <xtpm/mmio/devmem.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <future>

namespace {
using namespace xtpm;
using namespace xtpm::test;
namespace tis = proto::tis;
using chip_t = sim_tis<echo_backend>;
using device_t = tis_device<chip_t>;

static_assert(mmio_window<archetypes::mmio>);
static_assert(mmio_window<devmem_mmio>);
static_assert(mmio_window<chip_t>);
struct no_write32 {
    auto read8(std::uint8_t, std::uint16_t) -> std::uint8_t;
    auto read32(std::uint8_t, std::uint16_t) -> std::uint32_t;
    void write8(std::uint8_t, std::uint16_t, std::uint8_t);
};
struct wide_read8 : no_write32 {
    auto read8(std::uint8_t, std::uint16_t) -> std::uint32_t;
    void write32(std::uint8_t, std::uint16_t, std::uint32_t);
};
static_assert(!mmio_window<no_write32>);
static_assert(!mmio_window<wide_read8>);
static_assert(tpm_device<device_t>);
static_assert(cancellable_device<device_t>);
static_assert(tpm_device<tis_device<devmem_mmio>>);
static_assert(tpm_device<tis_device<archetypes::mmio, tis::manual_clock>>);
static_assert(std::movable<device_t> && !std::copyable<device_t>);
static_assert(tpm_backend<echo_backend> && tpm_backend<gated_backend>);

auto open_device(chip_t const& chip, tis_options opts = {}) -> device_t {
    auto d = device_t::open(chip, opts);
    REQUIRE(d.has_value());
    return std::move(*d);
}

auto chip_of(wire::family fam, std::uint16_t max_burst = 64, bool vary = true) -> chip_t {
    sim_tis_options o;
    o.family = fam;
    o.max_burst = max_burst;
    o.vary_burst = vary;
    return chip_t{echo_backend{fam}, o};
}

template <class F>
auto timed(F&& f) {
    auto const t0 = steady::now();
    auto r = f();
    return std::pair{std::move(r), steady::now() - t0};
}
}  // namespace

// --- sans-I/O pieces ---------------------------------------------------------------

TEST_CASE("tis timeouts: chip values only lengthen the bounds, up to the caps", "[tis][timeouts]") {
    tis::timeouts const def{};
    CHECK(def.a == 750ms);
    CHECK(def.b == 2000ms);
    CHECK(def.c == 750ms);
    CHECK(def.d == 750ms);
    SECTION("microseconds, shorter ignored, longer taken, absurd capped, zero ignored") {
        auto const t = tis::apply(def, tis::chip_timeouts{1'000'000, 1'000, 0, 3'600'000'000U});
        CHECK(t.a == 1000ms);
        CHECK(t.b == 2000ms);
        CHECK(t.c == 750ms);
        CHECK(t.d == tis::max_timeout);
    }
    SECTION("values below 1000 are milliseconds (chips that report the wrong unit)") {
        CHECK(tis::apply(def, tis::chip_timeouts{900, 900, 900, 900}).a == 900ms);
    }
    SECTION("durations: medium bounds every ordinary command, long the key generation") {
        auto const t = tis::apply(def, tis::chip_durations{50'000'000, 100'000'000, 900'000'000});
        CHECK(t.standard == 100s);
        CHECK(t.long_running == tis::max_duration);
        CHECK(tis::duration_for(t, wire::family::tpm12, 0x1F) == tis::max_duration);  // CreateWrapKey
        CHECK(tis::duration_for(t, wire::family::tpm12, 0x46) == 100s);              // GetRandom
        CHECK(tis::duration_for(def, wire::family::tpm2, 0x131) == 180s);             // CreatePrimary
        CHECK(tis::duration_for(def, wire::family::tpm2, 0x17B) == 90s);
    }
}

TEST_CASE("tis capability codecs: TPM 1.2 GetCapability and the TPM 2.0 probe", "[tis][timeouts]") {
    std::array<std::byte, 22> buf{};
    auto const c = tis::tpm12_capability_command(tis::tpm12_prop_tis_timeout, buf);
    REQUIRE(c.has_value());
    CHECK(bytes(c->begin(), c->end()) == hex("00c1 00000016 00000065 00000005 00000004 00000115"));
    auto const p = tis::tpm2_probe_command(buf);
    REQUIRE(p.has_value());
    CHECK(bytes(p->begin(), p->end()) == hex("8001 00000016 0000017a 00000006 00000100 00000001"));

    // Measured from Debian's swtpm 0.7.1 in TPM 1.2 mode.
    auto const t = tis::parse_tpm12_property<tis::chip_timeouts>(
        hex("00c4 0000001e 00000000 00000010 000f4240 000f4240 000f4240 000f4240"));
    REQUIRE(t.has_value());
    CHECK(t->a == 1'000'000);
    CHECK(t->d == 1'000'000);
    auto const d = tis::parse_tpm12_property<tis::chip_durations>(
        hex("00c4 0000001a 00000000 0000000c 02faf080 05f5e100 11e1a300"));
    REQUIRE(d.has_value());
    CHECK(d->long_us == 300'000'000);
    SECTION("malformed answers") {
        CHECK(tis::parse_tpm12_property<tis::chip_durations>(hex("00c4 0000000a 0000000a")).error() ==
              errc::device_failure);  // a TPM error
        CHECK(tis::parse_tpm12_property<tis::chip_durations>(
                  hex("00c4 0000001a 00000000 00000010 02faf080 05f5e100 11e1a300"))
                  .error() == errc::truncated);  // inner size beyond the message
        CHECK(tis::parse_tpm12_property<tis::chip_timeouts>(
                  hex("00c4 0000001a 00000000 0000000c 02faf080 05f5e100 11e1a300"))
                  .error() == errc::truncated);  // 12 bytes where 16 belong
        CHECK_FALSE(tis::parse_tpm12_property<tis::chip_timeouts>(hex("00c4 00000020 00000000")).has_value());
    }
}

TEST_CASE("tis driver: polling backs off from yields to 1 ms", "[tis]") {
    CHECK(tis::backoff(0) == 0us);
    CHECK(tis::backoff(tis::spin_polls - 1) == 0us);
    CHECK(tis::backoff(tis::spin_polls) == 10us);
    CHECK(tis::backoff(tis::spin_polls + 3) == 80us);
    CHECK(tis::backoff(1000) == 1000us);
    tis::manual_clock clk{2ms};
    clk.pause(0us);
    clk.pause(5ms);
    CHECK(clk.now() == 7ms);
}

// --- devices over the model ------------------------------------------------------

TEST_CASE("tis_device: commands of every size reach the chip and come back byte for byte", "[tis][device]") {
    auto const fam = GENERATE(wire::family::tpm2, wire::family::tpm12);
    auto const burst = GENERATE(std::uint16_t{1}, std::uint16_t{7}, std::uint16_t{64}, std::uint16_t{4096});
    auto chip = chip_of(fam, burst);
    auto dev = open_device(chip);
    CHECK(dev.family() == fam);  // 2.0 from TPM_INTF_CAPABILITY, 1.2 by the probe command
    CHECK(dev.chip().did_vid == sim_tis_options{}.did_vid);
    for (std::size_t size : {10U, 11U, 12U, 63U, 64U, 65U, 1000U, 4095U, 4096U}) {
        auto const cmd = sized_command(size, fam);
        auto const r = transact(dev, cmd, size);  // the response fills the buffer exactly
        INFO("size " << size << " burst " << burst);
        REQUIRE(r.has_value());
        CHECK(*r == echoed(cmd, fam));
    }
    CHECK_FALSE(chip.active_locality());  // released after every command
}

TEST_CASE("tis_device: a response one byte larger than the buffer is too_large, never an overflow",
          "[tis][device][hostile]") {
    auto chip = chip_of(wire::family::tpm2);
    tis_options o;
    o.timeouts = short_timeouts();
    auto dev = open_device(chip, o);
    auto const cmd = sized_command(100);
    CHECK(transact(dev, cmd, 99).error() == errc::too_large);
    CHECK(dev.last_fault() == tis::fault::response_too_large);
    CHECK(transact(dev, cmd, 100).value() == echoed(cmd));  // and the chip is in step again
    CHECK(transact(dev, sized_command(4097), 8192).error() == errc::too_large);  // over max_command_size
    CHECK(transact(dev, cmd, 9).error() == errc::buffer_full);                    // no room for a header
}

TEST_CASE("tis_device: an explicit family skips detection; TPM 1.2 chip timeouts are queried",
          "[tis][device]") {
    auto chip = chip_of(wire::family::tpm12);
    tis_options o;
    o.family = wire::family::tpm12;
    auto dev = open_device(chip, o);
    CHECK(dev.family() == wire::family::tpm12);
    CHECK(dev.timeouts() == tis::timeouts{});  // the echo chip answers GetCapability with junk: defaults kept
    CHECK(chip.commands_executed() == 2);       // TIS_TIMEOUT and DURATION were asked
    o.query_chip_timeouts = false;
    auto quiet = open_device(chip, o);
    CHECK(chip.commands_executed() == 2);
    o.locality = 5;
    CHECK(device_t::open(chip, o).error() == errc::bad_locality);
}

TEST_CASE("tis_device: no chip on the bus is device_failure within TIMEOUT_A", "[tis][device]") {
    tis_options o;
    o.timeouts = short_timeouts();
    auto const r = tis_device<archetypes::mmio, tis::manual_clock>::open(archetypes::mmio{}, o);
    CHECK(r.error() == errc::device_failure);
}

TEST_CASE("tis_device: localities are requested, held, released and seized", "[tis][device][locality]") {
    auto chip = chip_of(wire::family::tpm2);
    auto const cmd = sized_command(32);
    tis_options o;
    o.timeouts = short_timeouts();

    SECTION("keep_locality holds it until the device goes away") {
        o.keep_locality = true;
        {
            auto dev = open_device(chip, o);
            REQUIRE(transact(dev, cmd).has_value());
            CHECK(chip.active_locality() == 0);
        }
        CHECK_FALSE(chip.active_locality());
    }
    SECTION("a held locality blocks a lower request, Seize from above takes it") {
        o.keep_locality = true;
        auto holder = open_device(chip, o);
        REQUIRE(transact(holder, cmd).has_value());

        tis_options lo = o;
        lo.locality = 2;
        lo.keep_locality = false;
        auto waiter = open_device(chip, lo);
        auto [r, took] = timed([&] { return transact(waiter, cmd); });
        CHECK(r.error() == errc::busy);
        CHECK(waiter.last_fault() == tis::fault::locality_timeout);
        CHECK(took < 10s);
        CHECK((chip.read8(2, tis::reg::access) & tis::access::request_use) == 0);  // request withdrawn
        CHECK(chip.active_locality() == 0);

        tis_options hi = lo;
        hi.locality = 3;
        hi.seize = true;
        auto seizer = open_device(chip, hi);
        CHECK(transact(seizer, cmd).value() == echoed(cmd));
        CHECK_FALSE(chip.active_locality());  // seizer released it

        // The holder lost it (beenSeized) and takes it back on its next command.
        CHECK((chip.read8(0, tis::reg::access) & tis::access::been_seized) != 0);
        CHECK(transact(holder, cmd).value() == echoed(cmd));
        CHECK(chip.active_locality() == 0);
    }
}

TEST_CASE("tis_device: a locality seized during a command ends it with busy", "[tis][device][locality]") {
    gated_backend gb;
    sim_tis<gated_backend> chip{gb};
    tis_options o;
    o.timeouts = short_timeouts();
    o.timeouts.standard = 20s;  // the seize, not a timeout, must end the wait
    auto dev = tis_device<sim_tis<gated_backend>>::open(chip, o);
    gate_guard guard{gb};  // after chip and device: released before they join the worker
    REQUIRE(dev.has_value());
    auto const cmd = sized_command(16);
    auto fut = std::async(std::launch::async, [&] { return transact(*dev, cmd); });
    REQUIRE(gb.wait_entered());
    auto const t0 = steady::now();
    chip.write8(4, tis::reg::access, tis::access::seize);
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    CHECK(steady::now() - t0 < 10s);
    CHECK(fut.get().error() == errc::busy);
    CHECK(dev->last_fault() == tis::fault::locality_lost);
    gb.release();
    chip.write8(4, tis::reg::access, tis::access::active_locality);
    CHECK(transact(*dev, cmd).value() == echoed(cmd));
}

TEST_CASE("tis_device: cancel during a long command aborts it with commandReady", "[tis][device][cancel]") {
    gated_backend gb;
    sim_tis<gated_backend> chip{gb};
    tis_options o;
    o.timeouts.standard = 20s;
    auto dev = tis_device<sim_tis<gated_backend>>::open(chip, o);
    gate_guard guard{gb};  // after chip and device: released before they join the worker
    REQUIRE(dev.has_value());
    static_assert(cancellable_device<tis_device<sim_tis<gated_backend>>>);
    auto const cmd = sized_command(24);

    dev->cancel();  // while idle: not for the next command
    auto fut = std::async(std::launch::async, [&] { return transact(*dev, cmd); });
    REQUIRE(gb.wait_entered());
    REQUIRE(chip.executing());
    auto const t0 = steady::now();
    dev->cancel();
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    CHECK(steady::now() - t0 < 10s);
    CHECK(fut.get().error() == errc::canceled);
    CHECK(dev->last_fault() == tis::fault::canceled);
    CHECK_FALSE(chip.executing());  // commandReady aborted it
    gb.release();
    CHECK(transact(*dev, cmd).value() == echoed(cmd));
}

TEST_CASE("tis_device: every hostile chip mode ends in its error within the bound", "[tis][device][hostile]") {
    struct expectation {
        tis_hostile mode;
        errc error;
        tis::fault step;
    };
    auto const e = GENERATE(
        expectation{tis_hostile::burst_zero, errc::device_failure, tis::fault::burst_timeout},
        expectation{tis_hostile::response_too_large, errc::too_large, tis::fault::response_too_large},
        expectation{tis_hostile::response_too_small, errc::too_small, tis::fault::response_too_small},
        expectation{tis_hostile::data_avail_stuck, errc::size_mismatch, tis::fault::response_overrun},
        expectation{tis_hostile::data_avail_never, errc::device_failure, tis::fault::response_timeout},
        expectation{tis_hostile::data_avail_early, errc::truncated, tis::fault::response_underrun},
        expectation{tis_hostile::sts_valid_never, errc::device_failure, tis::fault::sts_valid_timeout},
        expectation{tis_hostile::locality_never, errc::busy, tis::fault::locality_timeout});
    auto const fam = GENERATE(wire::family::tpm2, wire::family::tpm12);
    auto chip = chip_of(fam);
    tis_options o;
    o.timeouts = short_timeouts();
    o.family = fam;
    auto dev = open_device(chip, o);
    auto const cmd = sized_command(200, fam);
    chip.set_hostile(e.mode);
    auto [r, took] = timed([&] { return transact(dev, cmd, 300); });
    INFO("mode " << static_cast<int>(e.mode) << ": " << tis::name(dev.last_fault()));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == e.error);
    CHECK(dev.last_fault() == e.step);
    CHECK(took < 10s);
    chip.set_hostile(tis_hostile::none);  // the driver left the chip Ready: it recovers
    CHECK(transact(dev, cmd, 300).value() == echoed(cmd, fam));
}

TEST_CASE("tis_device: burstCount 0xFFFF over a short FIFO reads no more than the response",
          "[tis][device][hostile]") {
    auto chip = chip_of(wire::family::tpm2);
    tis_options o;
    o.timeouts = short_timeouts();
    auto dev = open_device(chip, o);
    chip.set_hostile(tis_hostile::burst_huge);
    for (std::size_t size : {10U, 33U, 500U}) {
        auto const cmd = sized_command(size);
        CHECK(transact(dev, cmd, size).value() == echoed(cmd));  // exact-size buffer
    }
}

TEST_CASE("tis_device: garbage in every register ends in an error or a well-formed response",
          "[tis][device][hostile]") {
    auto chip = chip_of(wire::family::tpm2);
    tis_options o;
    o.timeouts = short_timeouts();
    auto dev = open_device(chip, o);
    chip.set_hostile(tis_hostile::garbage);
    auto const cmd = sized_command(64);
    for (int i = 0; i < 8; ++i) {
        auto [r, took] = timed([&] { return transact(dev, cmd, 128); });
        CHECK(took < 10s);
        if (r) CHECK(wire::parse_response(*r).has_value());
    }
    chip.set_hostile(tis_hostile::none);
    CHECK(transact(dev, cmd, 128).value() == echoed(cmd));
}

TEST_CASE("tis_device: a callable backend answers through the model", "[tis][device]") {
    std::size_t calls = 0;
    auto fn = [&calls](wire::bytes_view c, std::uint8_t loc) -> result<std::vector<std::byte>> {
        ++calls;
        auto r = echo_backend{}.execute(c, loc);
        if (r) (*r)[10] = std::byte{static_cast<std::uint8_t>(0xA0 + loc)};  // the locality it ran at
        return r;
    };
    sim_tis chip{callable_backend{fn}};
    tis_options o;
    o.locality = 3;
    auto dev = tis_device<decltype(chip)>::open(chip, o);
    REQUIRE(dev.has_value());
    auto const r = transact(*dev, sized_command(12));
    REQUIRE(r.has_value());
    CHECK((*r)[10] == std::byte{0xA3});
    CHECK(calls == 1);
}

TEST_CASE("devmem_mmio: maps a file like /dev/mem and reads what was written", "[tis][devmem]") {
    auto const path = std::filesystem::temp_directory_path() / ("xtpm-devmem-" + std::to_string(::getpid()));
    {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        REQUIRE(f != nullptr);
        std::vector<char> zeros(tis::region_size + 4096);
        REQUIRE(std::fwrite(zeros.data(), 1, zeros.size(), f) == zeros.size());
        std::fclose(f);
    }
    auto m = devmem_mmio::open(4096, path.string());  // a page-aligned "base" inside the file
    REQUIRE(m.has_value());
    m->write32(2, tis::reg::did_vid, 0x12345678);
    m->write8(4, tis::reg::rid, 0x9A);
    CHECK(m->read32(2, tis::reg::did_vid) == 0x12345678);
    CHECK(m->read8(2, tis::reg::did_vid) == 0x78);  // little-endian register
    CHECK(m->read8(4, tis::reg::rid) == 0x9A);
    devmem_mmio moved = std::move(*m);
    CHECK(moved.read32(2, tis::reg::did_vid) == 0x12345678);

    auto one = devmem_mmio::open(4096, path.string(), 2, 1);  // only locality 2's window
    REQUIRE(one.has_value());
    CHECK(one->read32(2, tis::reg::did_vid) == 0x12345678);
    std::filesystem::remove(path);

    CHECK(devmem_mmio::open(0xFED40001, path.string()).error() == errc::bad_value);  // unaligned
    CHECK(devmem_mmio::open(0, path.string(), 3, 3).error() == errc::bad_value);     // past locality 4
    CHECK_FALSE(devmem_mmio::open(0, "/nonexistent/xtpm-mem").has_value());
}
