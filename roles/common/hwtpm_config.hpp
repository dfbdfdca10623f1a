// xtpm-hwtpm's command line: the chip (a TIS window through /dev/mem, or the
// register model over swtpm or libtpms; docs/hwtpm.md, docs/tis.md) and the
// local servers, whose options (--server, --ctrl, --mssim, --pid, --log) use the
// `xtpm-vtpmd socket` syntax and are parsed by vtpmd_config's socket form.
// Roles may throw: a bad command line is a startup error with a clear message.
#pragma once

#include "common/vtpmd_config.hpp"

#include <xtpm/device/tis.hpp>
#include <xtpm/mmio/sim_tis.hpp>

#include <array>
#include <charconv>
#include <utility>

namespace xtpm::roles {

inline constexpr char const* hwtpm_usage = R"(Usage:
  xtpm-hwtpm --mmio devmem [--address ADDR] [chip options] SERVERS   a real TPM chip
  xtpm-hwtpm --mmio sim --tpm tcp:HOST:PORT|unix:PATH|libtpms [chip options] SERVERS

Serves a TPM 1.2 or 2.0 that sits behind TIS FIFO registers (TIS 1.3 / PTP: one 4 KiB
window per locality, 0xFED40000 on a PC) to local TPM clients (tpm2-tools, IBM TSS, QEMU)
over the swtpm and mssim socket protocols. Every command goes through xtpm's TIS driver:
request the locality, commandReady, the command in burstCount chunks, tpmGo, dataAvail,
the response, release. Use it to check a chip (or the driver) from a shell.

The chip:
  --mmio devmem           a real chip: map its window from /dev/mem. Needs root, and nobody
                          else may drive the chip: unload tpm_tis/tpm_tis_core first (in Xen,
                          dom0 must not drive it either). See docs/hwtpm.md.
  --address ADDR          physical address of the locality-0 window (default 0xFED40000)
  --devmem PATH           the file to map the window from (default /dev/mem)
  --mmio sim              xtpm's register-level TIS chip model, executing commands on
  --tpm tcp:HOST:PORT     a running swtpm's data channel (`swtpm socket --server ...`), or
  --tpm unix:PATH         its unix socket; the locality is passed on through swtpm's control
                          channel at PORT+1 or PATH.ctrl (change with --tpm-ctrl EP|none)
  --tpm libtpms           a throw-away TPM in this process (state in memory, lost at exit)
  --hostile MODE          sim only, for tests: once started, the model misbehaves: burst_zero,
                          burst_huge, response_too_large, response_too_small,
                          data_avail_stuck, data_avail_never, data_avail_early,
                          sts_valid_never, locality_never, garbage
  --locality N            the TIS locality (0-4) every command uses (default 0). The locality
                          a client asks for (swtpm SET_LOCALITY, mssim) is not used.
  --tpm2 | --tpm12        the chip's family (default: detect; libtpms: TPM 2.0)
  --buffer-size N         largest command admitted, in bytes (default 4096)
  --keep-locality         hold the locality between commands (default: release after each,
                          so that other localities can use the chip in between)

Servers (at least one; the syntax of `swtpm socket` and `xtpm-vtpmd socket`):
  --server type=tcp,port=P[,bindaddr=A] | type=unixio,path=S   swtpm data channel
  --ctrl type=tcp,port=P[,bindaddr=A] | type=unixio,path=S     swtpm control channel
                                                               (default: data port + 1)
  --mssim port=Q[,bindaddr=A]            Microsoft simulator protocol on ports Q and Q+1
  --pid file=F    --log file=F           pid file; append stderr to F

Example (the model in front of an swtpm; a client through the driver):
  swtpm socket --tpm2 --server type=tcp,port=2321 --ctrl type=tcp,port=2322 \
        --tpmstate dir=/tmp/st --flags not-need-init &
  xtpm-hwtpm --mmio sim --tpm tcp:127.0.0.1:2321 --server type=tcp,port=2341 --mssim port=2351 &
  tpm2_startup -c -T swtpm:port=2341;  tpm2_getrandom -T mssim:port=2351 8 | xxd

xtpm-hwtpm prints a line starting with "xtpm-hwtpm: ready" once every port accepts
connections. It never powers the chip on or off: clients send Startup (on a PC the
firmware already did). A chip that misbehaves is answered to the client as a TPM error:
TPM_RC_RETRY / TPM_RETRY when another locality holds the chip, TPM_RC_CANCELED when
canceled, TPM_RC_FAILURE / TPM_FAIL for every other fault; the fault is logged on stderr.
SIGTERM or SIGINT stops it (exit status 0).
)";

enum class hwtpm_mmio : std::uint8_t { sim, devmem };

struct hwtpm_config {
    hwtpm_mmio mmio = hwtpm_mmio::sim;
    // --mmio devmem
    std::uint64_t address = proto::tis::default_base;
    std::string devmem_path = "/dev/mem";
    // --mmio sim: the TPM behind the model, an swtpm (data, ctrl) or libtpms
    std::optional<io::endpoint> tpm_data, tpm_ctrl;
    bool libtpms = false;
    tis_hostile hostile = tis_hostile::none;
    // the driver: locality, family (empty = detect), max_command_size, keep_locality
    tis_options tis;
    vtpmd_config servers;  // data/ctrl/mssim endpoints, pid and log files
    bool help = false;

    static auto from_args(int argc, char** argv) -> hwtpm_config {
        hwtpm_config c;
        std::optional<hwtpm_mmio> mmio;
        std::optional<std::string_view> tpm, tpm_ctrl;
        bool address = false, devmem_path = false, hostile = false;
        std::vector<std::string> forwarded{"xtpm-hwtpm", "socket"};
        std::vector<std::string_view> const args(argv + 1, argv + argc);
        for (std::size_t i = 0; i < args.size(); ++i) {
            auto const a = args[i];
            auto value = [&]() -> std::string_view {
                if (i + 1 >= args.size()) bad(std::string{a} + " needs a value");
                return args[++i];
            };
            if (a == "--help" || a == "-h") c.help = true;
            else if (a == "--mmio") mmio = parse_mmio(value());
            else if (a == "--address") { c.address = parse_number(value(), UINT64_MAX, "--address"); address = true; }
            else if (a == "--devmem") { c.devmem_path = std::string{value()}; devmem_path = true; }
            else if (a == "--tpm") tpm = value();
            else if (a == "--tpm-ctrl") tpm_ctrl = value();
            else if (a == "--hostile") { c.hostile = parse_hostile(value()); hostile = true; }
            else if (a == "--locality")
                c.tis.locality = static_cast<std::uint8_t>(parse_number(value(), wire::max_locality, "--locality"));
            else if (a == "--tpm2") c.tis.family = wire::family::tpm2;
            else if (a == "--tpm12") c.tis.family = wire::family::tpm12;
            else if (a == "--buffer-size")
                c.tis.max_command_size = parse_number(value(), std::size_t{1} << 20, "--buffer-size");
            else if (a == "--keep-locality") c.tis.keep_locality = true;
            else if (a == "--server" || a == "--ctrl" || a == "--mssim" || a == "--pid" || a == "--log") {
                forwarded.emplace_back(a);
                forwarded.emplace_back(value());
            } else bad("unknown option '" + std::string{a} + "'");
        }
        if (c.help) return c;
        if (!mmio) bad("say which chip: --mmio devmem (a real one) or --mmio sim (the model)");
        c.mmio = *mmio;
        if (c.tis.max_command_size < wire::header_size) bad("--buffer-size: at least 10");
        if (c.mmio == hwtpm_mmio::devmem) {
            if (tpm || tpm_ctrl || hostile) bad("--tpm, --tpm-ctrl and --hostile need --mmio sim");
        } else {
            if (address || devmem_path) bad("--address and --devmem need --mmio devmem");
            if (!tpm) bad("--mmio sim needs --tpm tcp:HOST:PORT, unix:PATH or libtpms");
            c.libtpms = *tpm == "libtpms";
            if (!c.libtpms) {
                c.tpm_data = parse_tpm_endpoint(*tpm, "--tpm");
                if (!tpm_ctrl) c.tpm_ctrl = vtpmd_config::next_endpoint(*c.tpm_data);
                else if (*tpm_ctrl != "none") c.tpm_ctrl = parse_tpm_endpoint(*tpm_ctrl, "--tpm-ctrl");
            } else if (tpm_ctrl) {
                bad("--tpm-ctrl needs an swtpm (--tpm tcp:... or unix:...)");
            }
        }
        std::vector<char*> v;
        for (auto& s : forwarded) v.push_back(s.data());
        c.servers = vtpmd_config::from_args(static_cast<int>(v.size()), v.data());
        return c;
    }

    // "mmio=sim tpm=tcp:127.0.0.1:2321" or "mmio=devmem address=0xfed40000": the ready line's chip part.
    [[nodiscard]] auto describe_chip() const -> std::string {
        if (mmio == hwtpm_mmio::devmem) {
            std::array<char, 32> hex{};
            auto const end = std::to_chars(hex.data(), hex.data() + hex.size(), address, 16).ptr;
            return "mmio=devmem address=0x" + std::string{hex.data(), end} + " devmem=" + devmem_path;
        }
        return std::string{"mmio=sim tpm="} + (libtpms ? "libtpms" : endpoint_spec(*tpm_data));
    }

private:
    [[noreturn]] static void bad(std::string const& what) { throw std::invalid_argument(what + " (see --help)"); }

    static auto parse_mmio(std::string_view v) -> hwtpm_mmio {
        if (v == "sim") return hwtpm_mmio::sim;
        if (v == "devmem") return hwtpm_mmio::devmem;
        bad("--mmio: sim or devmem, not '" + std::string{v} + "'");
    }

    // Decimal, or hexadecimal after 0x; at most `max`.
    template <class T>
    static auto parse_number(std::string_view v, T max, char const* opt) -> T {
        int base = 10;
        if (v.starts_with("0x") || v.starts_with("0X")) {
            v.remove_prefix(2);
            base = 16;
        }
        T n{};
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n, base);
        if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n > max)
            bad(std::string{opt} + ": expected a number up to " + std::to_string(max) + ", not '" + std::string{v} + "'");
        return n;
    }

    // tcp:HOST:PORT, tcp:PORT (127.0.0.1), unix:PATH, or swtpm's type=...,port=... syntax.
    static auto parse_tpm_endpoint(std::string_view v, char const* opt) -> io::endpoint {
        if (v.starts_with("unix:") && v.size() > 5) return io::unix_endpoint{std::string{v.substr(5)}};
        if (v.starts_with("tcp:")) {
            auto const rest = v.substr(4);
            auto const colon = rest.rfind(':');
            auto const host = colon == std::string_view::npos ? std::string_view{"127.0.0.1"} : rest.substr(0, colon);
            auto const port = colon == std::string_view::npos ? rest : rest.substr(colon + 1);
            return io::tcp_endpoint{std::string{host}, static_cast<std::uint16_t>(parse_number(port, std::uint16_t{65535}, opt))};
        }
        auto ep = io::parse_endpoint(v);
        if (!ep) bad(std::string{opt} + ": tcp:HOST:PORT, unix:PATH or libtpms, not '" + std::string{v} + "'");
        return *ep;
    }

    static auto endpoint_spec(io::endpoint const& ep) -> std::string {
        if (std::holds_alternative<io::unix_endpoint>(ep)) return io::to_string(ep);
        return "tcp:" + io::to_string(ep);
    }

    static constexpr std::array<std::pair<std::string_view, tis_hostile>, 10> hostile_names{{
        {"burst_zero", tis_hostile::burst_zero},
        {"burst_huge", tis_hostile::burst_huge},
        {"response_too_large", tis_hostile::response_too_large},
        {"response_too_small", tis_hostile::response_too_small},
        {"data_avail_stuck", tis_hostile::data_avail_stuck},
        {"data_avail_never", tis_hostile::data_avail_never},
        {"data_avail_early", tis_hostile::data_avail_early},
        {"sts_valid_never", tis_hostile::sts_valid_never},
        {"locality_never", tis_hostile::locality_never},
        {"garbage", tis_hostile::garbage},
    }};
    static auto parse_hostile(std::string_view v) -> tis_hostile {
        for (auto const& [name, mode] : hostile_names)
            if (name == v) return mode;
        bad("--hostile: unknown mode '" + std::string{v} + "'");
    }
};

}  // namespace xtpm::roles
