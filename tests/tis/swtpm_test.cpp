// The whole hardware path against a real TPM: tis_device -> TIS registers ->
// sim_tis -> Debian's swtpm (TPM 2.0 and TPM 1.2), started and stopped by pid.
#include <xtpm/device/tis.hpp>

#include "tis/tis_support.hpp"

#include <catch2/catch.hpp>

#include <botan/hash.h>

#include <csignal>
#include <filesystem>
#include <random>

#include <sys/wait.h>
#include <unistd.h>

namespace {
using namespace xtpm;
using namespace xtpm::test;
using device_t = tis_device<sim_tis<swtpm_backend>>;

auto can_bind(std::uint16_t port) -> bool {
    auto fd = io::listen_on(io::tcp_endpoint{"127.0.0.1", port}, 1);
    return fd.has_value();
}

// One swtpm process on data port P and control port P+1, killed by pid.
class swtpm_process {
public:
    explicit swtpm_process(bool tpm2) {
        dir_ = std::filesystem::temp_directory_path() / ("xtpm-tis-swtpm-" + std::to_string(::getpid()) + "-" +
                                                         std::to_string(counter_++));
        std::filesystem::create_directories(dir_);
        std::mt19937 rng{std::random_device{}()};
        for (int attempt = 0; attempt < 8 && pid_ <= 0; ++attempt) {
            auto const p = static_cast<std::uint16_t>(20000 + rng() % 40000);
            if (!can_bind(p) || !can_bind(static_cast<std::uint16_t>(p + 1))) continue;
            spawn(tpm2, p);
            if (!ready()) stop();
        }
        REQUIRE(pid_ > 0);
    }
    swtpm_process(swtpm_process const&) = delete;
    auto operator=(swtpm_process const&) -> swtpm_process& = delete;
    ~swtpm_process() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    [[nodiscard]] auto data() const -> io::endpoint { return io::tcp_endpoint{"127.0.0.1", port_}; }
    [[nodiscard]] auto ctrl() const -> io::endpoint {
        return io::tcp_endpoint{"127.0.0.1", static_cast<std::uint16_t>(port_ + 1)};
    }

private:
    void spawn(bool tpm2, std::uint16_t port) {
        port_ = port;
        std::vector<std::string> args{"swtpm", "socket"};
        if (tpm2) args.emplace_back("--tpm2");
        auto const tcp = [](int p) { return "type=tcp,port=" + std::to_string(p) + ",bindaddr=127.0.0.1"; };
        for (auto const& a : {std::string{"--server"}, tcp(port), std::string{"--ctrl"}, tcp(port + 1),
                              std::string{"--flags"}, std::string{"not-need-init,startup-clear"},
                              std::string{"--tpmstate"}, "dir=" + dir_.string()})
            args.push_back(a);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            int const null = ::open("/dev/null", O_WRONLY);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
    }
    // Listening, polled with a bounded deadline; false if swtpm exited (port taken).
    auto ready() -> bool {
        return eventually([&] {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = 0;
                return true;
            }
            return io::connect_to(ctrl()).has_value();
        }, 10s) && pid_ > 0;
    }
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        if (!eventually([&] { return ::waitpid(pid_, nullptr, WNOHANG) == pid_; }, 5s)) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        pid_ = 0;
    }

    static inline int counter_ = 0;
    std::filesystem::path dir_;
    pid_t pid_ = -1;
    std::uint16_t port_ = 0;
};

auto open_over(swtpm_process const& tpm, wire::family fam, tis_options opts = {}) -> device_t {
    auto backend = swtpm_backend::connect(tpm.data(), tpm.ctrl());
    REQUIRE(backend.has_value());
    sim_tis_options so;
    so.family = fam;
    auto dev = device_t::open(sim_tis<swtpm_backend>{std::move(*backend), so}, opts);
    REQUIRE(dev.has_value());
    return std::move(*dev);
}

auto digest(char const* alg, wire::bytes_view a, wire::bytes_view b = {}) -> bytes {
    auto h = Botan::HashFunction::create_or_throw(alg);
    h->update(reinterpret_cast<std::uint8_t const*>(a.data()), a.size());
    h->update(reinterpret_cast<std::uint8_t const*>(b.data()), b.size());
    auto const out = h->final_stdvec();
    bytes r;
    for (auto x : out) r.push_back(static_cast<std::byte>(x));
    return r;
}

auto sub(bytes const& b, std::size_t off, std::size_t n) -> bytes {
    REQUIRE(b.size() >= off + n);
    return {b.begin() + static_cast<std::ptrdiff_t>(off), b.begin() + static_cast<std::ptrdiff_t>(off + n)};
}
}  // namespace

TEST_CASE("tis_device over swtpm: TPM 2.0 GetRandom, PCR_Extend and PCR_Read", "[tis][swtpm][tpm2]") {
    swtpm_process tpm{true};
    auto dev = open_over(tpm, wire::family::tpm2);
    CHECK(dev.family() == wire::family::tpm2);

    auto const rnd = transact(dev, tpm2::get_random(32)).value();
    CHECK(rc_of(rnd) == 0);
    CHECK(rnd.size() == 10 + 2 + 32);

    bytes const zeros(32);
    auto const ev = digest("SHA-256", sized_command(100));
    CHECK(rc_of(transact(dev, tpm2::pcr_extend(16, std::span<std::byte const, 32>{ev})).value()) == 0);
    auto const pcr = transact(dev, tpm2::pcr_read(16)).value();
    REQUIRE(rc_of(pcr) == 0);
    CHECK(sub(pcr, tpm2::pcr_read_digest_offset, 32) == digest("SHA-256", zeros, ev));

    SECTION("a 4096-byte command travels in bursts; the chip stays in step") {
        auto const big = sized_command(4096);  // GetRandom with a 4 KiB tail: a TPM error, well formed
        auto const r = transact(dev, big).value();
        CHECK(wire::parse_response(r).has_value());
        CHECK(rc_of(r) != 0);
        CHECK(rc_of(transact(dev, tpm2::get_random(8)).value()) == 0);
    }
    SECTION("a long response (the command list) arrives whole") {
        auto const cmd = build(wire::tpm_st::no_sessions, 0x17A, [](wire::writer& w) {
            w.write_be(std::uint32_t{2}).write_be(std::uint32_t{0x11F}).write_be(std::uint32_t{256});
        });  // GetCapability(TPM_CAP_COMMANDS, first, 256)
        auto const r = transact(dev, cmd).value();
        CHECK(rc_of(r) == 0);
        CHECK(r.size() > 300);
        CHECK(wire::parse_response(r).has_value());
    }
}

TEST_CASE("tis_device over swtpm: the TIS locality reaches the TPM", "[tis][swtpm][tpm2][locality]") {
    swtpm_process tpm{true};
    auto const reset20 = [&](std::uint8_t locality) {  // PCR 20 resets from locality 2 only
        tis_options o;
        o.locality = locality;
        auto dev = open_over(tpm, wire::family::tpm2, o);  // one at a time: swtpm serves one connection
        return rc_of(transact(dev, tpm2::pcr_reset(20)).value());
    };
    CHECK(reset20(0) == tpm2::rc_locality);
    CHECK(reset20(2) == 0);
    CHECK(reset20(3) == tpm2::rc_locality);
}

TEST_CASE("tis_device over swtpm: TPM 1.2 detected by probe, its timeouts queried, raw 1.2 commands",
          "[tis][swtpm][tpm12]") {
    swtpm_process tpm{false};
    auto dev = open_over(tpm, wire::family::tpm12);
    CHECK(dev.family() == wire::family::tpm12);
    CHECK(dev.timeouts().a == 1000ms);                   // swtpm reports 1 s, longer than 750 ms
    CHECK(dev.timeouts().long_running == 300s);          // and 300 s for long ordinals
    CHECK(dev.timeouts().standard == 100s);

    auto const rnd = transact(dev, tpm12::get_random(16)).value();
    CHECK(rc_of(rnd) == 0);
    CHECK(rnd.size() == 14 + 16);

    auto const before = transact(dev, tpm12::pcr_read(16)).value();
    REQUIRE(rc_of(before) == 0);
    auto const d = digest("SHA-1", sized_command(64));
    CHECK(rc_of(transact(dev, tpm12::extend(16, std::span<std::byte const, 20>{d})).value()) == 0);
    auto const after = transact(dev, tpm12::pcr_read(16)).value();
    REQUIRE(rc_of(after) == 0);
    CHECK(sub(after, 10, 20) == digest("SHA-1", sub(before, 10, 20), d));
}
