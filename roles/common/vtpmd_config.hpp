// xtpm-vtpmd's command line: the native form and the `socket` form, a drop-in
// for the `swtpm socket` options that libvirt and test harnesses pass
// (swtpm(8): --tpm2, --server, --ctrl, --tpmstate, --flags, --locality, --pid, --log).
// Roles may throw: a bad command line is a startup error with a clear message.
#pragma once

#include "common/hv_config.hpp"

#include <xtpm/io/socket.hpp>
#include <xtpm/wire/types.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace xtpm::roles {

inline constexpr char const* vtpmd_usage = R"(Usage:
  xtpm-vtpmd [options]            a vTPM on the embedded defaults (TPM 2.0, swtpm and mssim ports)
  xtpm-vtpmd socket [swtpm-opts]  drop-in for `swtpm socket` (TPM 1.2 unless --tpm2, as swtpm)

Native options:
  --tpm2 | --tpm12        TPM family (default: TPM 2.0)
  --state DIR             state directory (default: $XTPM_STATE_DIR, else
                          $XDG_STATE_HOME/xtpm/vtpm0, else ~/.local/state/xtpm/vtpm0)
  --swtpm PORT|PATH       swtpm protocol: data on 127.0.0.1:PORT and control on PORT+1,
                          or a unix socket PATH and PATH.ctrl (default: 2321); "off" disables
  --mssim PORT            Microsoft simulator protocol: command port PORT, platform PORT+1
                          (default: 2331); "off" disables
  --buffer-size N         largest command and response in bytes (default 4096)
  --pid FILE, --log FILE  write the pid to FILE; append the log to FILE
  The TPM is powered on at start; clients send TPM2_Startup (tpm2_startup -c).

tpmif backend (the vTPM of a guest over Xen's shared page; no sockets):
  --hv sim|xen            hypervisor: the simulated one (xtpm-simhv) or real Xen
  --simhv-dir DIR         sim: the xtpm-simhv directory (default: $XTPM_SIMHV_DIR)
  --domain B              our domain id (sim: required; xen: read from xenstore)
  --frontend F            serve only guest domain F (default: every vtpm device of B)
  --devid N               serve only device N
  --uuid U                serve only the device whose backend directory says uuid U (xl's
                          vtpm=["backend=B,uuid=U"]; survives the guest's reboots, its domain id does not)
  --extra-pages on|off    advertise feature-extra-pages (default on): buffer 4096, else 4088
  --poll-us N             after answering, look at the page N us for the next request before
                          blocking (default 50; 0: always block)

swtpm-compatible options (after `socket`):
  --tpm2                                   TPM 2.0 (without it: TPM 1.2)
  --server type=tcp,port=P[,bindaddr=A] | type=unixio,path=S    data channel
  --ctrl type=tcp,port=P[,bindaddr=A] | type=unixio,path=S      control channel
  --tpmstate dir=D                         state directory
  --flags not-need-init[,startup-clear]    power on at start [and send Startup(CLEAR)]
  --locality allow-set-locality[,reject-locality-4]
  --pid file=F    --log file=F[,level=N]
  --mssim port=Q[,bindaddr=A]              also serve mssim on ports Q and Q+1

The daemon prints a line starting with "xtpm-vtpmd: ready" once every port accepts
connections (and notifies systemd when NOTIFY_SOCKET is set). SIGTERM or SIGINT
shuts the TPM down orderly, persists its state and exits 0.
)";

struct vtpmd_config {
    wire::family family = wire::family::tpm2;
    std::string state_dir;
    std::optional<io::endpoint> data, ctrl;  // swtpm protocol
    std::optional<io::endpoint> mssim;       // mssim command port; platform port is +1
    bool power_on = true;
    bool startup_clear = false;
    bool allow_set_locality = false;  // TPM2_SetLocality on the data channel (swtpm(8))
    bool reject_locality_4 = false;
    std::uint32_t buffer_size = 4096;
    std::optional<std::string> pid_file, log_file;
    int log_level = 1;
    bool help = false;
    // tpmif backend mode (--hv)
    std::optional<hv_options> hv;
    std::optional<hv::domid_t> frontend;
    std::optional<unsigned> devid;
    std::optional<proto::xenbus::uuid_bytes> uuid;
    bool extra_pages = true;

    static auto from_args(int argc, char** argv) -> vtpmd_config {
        std::vector<std::string_view> args(argv + 1, argv + argc);
        if (!args.empty() && args.front() == "socket") return parse_socket(std::span{args}.subspan(1));
        return parse_native(args);
    }

    // The port that follows `ep` (tcp) or PATH.ctrl (unix): the swtpm TCTI convention.
    static auto next_endpoint(io::endpoint const& ep) -> io::endpoint {
        if (auto const* t = std::get_if<io::tcp_endpoint>(&ep)) {
            if (t->port == 65535) throw std::invalid_argument("port 65535 has no successor");
            return io::tcp_endpoint{t->address, static_cast<std::uint16_t>(t->port + 1)};
        }
        return io::unix_endpoint{std::get<io::unix_endpoint>(ep).path + ".ctrl"};
    }

private:
    [[noreturn]] static void bad(std::string const& what) { throw std::invalid_argument(what + " (see --help)"); }

    static auto endpoint_or_bad(std::string_view spec, char const* opt) -> io::endpoint {
        auto ep = io::parse_endpoint(spec);
        if (!ep) bad(std::string{opt} + ": cannot parse '" + std::string{spec} + "'");
        return *ep;
    }

    // "k=v,k2,k3=v3" -> {k: v, k2: "", k3: v3}
    static auto key_values(std::string_view spec) -> std::map<std::string, std::string, std::less<>> {
        std::map<std::string, std::string, std::less<>> out;
        while (!spec.empty()) {
            auto const comma = spec.find(',');
            auto item = spec.substr(0, comma);
            spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
            auto const eq = item.find('=');
            out.emplace(std::string{item.substr(0, eq)},
                        eq == std::string_view::npos ? std::string{} : std::string{item.substr(eq + 1)});
        }
        return out;
    }

    static auto default_state_dir() -> std::string {
        if (auto const* d = std::getenv("XTPM_STATE_DIR")) return d;
        if (auto const* d = std::getenv("XDG_STATE_HOME")) return std::string{d} + "/xtpm/vtpm0";
        if (auto const* h = std::getenv("HOME")) return std::string{h} + "/.local/state/xtpm/vtpm0";
        return "/var/lib/xtpm/vtpm0";
    }

    static auto port_endpoint(std::string_view v, char const* opt) -> io::endpoint {
        if (!v.empty() && v.find_first_not_of("0123456789") == std::string_view::npos)
            return endpoint_or_bad("type=tcp,port=" + std::string{v}, opt);
        return io::unix_endpoint{std::string{v}};
    }

    static auto parse_native(std::span<std::string_view const> args) -> vtpmd_config {
        vtpmd_config c;
        c.state_dir = default_state_dir();
        c.data = io::tcp_endpoint{"127.0.0.1", 2321};
        c.mssim = io::tcp_endpoint{"127.0.0.1", 2331};
        hv_options h;
        bool sized = false;
        for (std::size_t i = 0; i < args.size(); ++i) {
            auto const a = args[i];
            auto value = [&]() -> std::string_view {
                if (i + 1 >= args.size()) bad(std::string{a} + " needs a value");
                return args[++i];
            };
            if (take_hv_option(h, a, value)) c.hv = h;
            else if (a == "--frontend") c.frontend = parse_domid(value(), "--frontend");
            else if (a == "--devid") c.devid = parse_uint(value(), "--devid");
            else if (a == "--uuid") {
                auto const u = proto::xenbus::parse_uuid(value());
                if (!u) bad("--uuid: not a canonical UUID");
                c.uuid = *u;
            } else if (a == "--extra-pages") {
                auto const v = value();
                if (v != "on" && v != "off") bad("--extra-pages: on or off");
                c.extra_pages = v == "on";
            } else if (a == "--help" || a == "-h") c.help = true;
            else if (a == "--tpm2") c.family = wire::family::tpm2;
            else if (a == "--tpm12") c.family = wire::family::tpm12;
            else if (a == "--state") c.state_dir = value();
            else if (a == "--swtpm") {
                auto v = value();
                c.data = v == "off" ? std::nullopt : std::optional{port_endpoint(v, "--swtpm")};
            } else if (a == "--mssim") {
                auto v = value();
                c.mssim = v == "off" ? std::nullopt : std::optional{port_endpoint(v, "--mssim")};
            } else if (a == "--buffer-size") {
                c.buffer_size = static_cast<std::uint32_t>(std::stoul(std::string{value()}));
                sized = true;
            }
            else if (a == "--pid") c.pid_file = value();
            else if (a == "--log") c.log_file = value();
            else bad("unknown option '" + std::string{a} + "'");
        }
        if (c.hv && !c.help) {  // a tpmif backend serves the guest, not sockets
            check(*c.hv);
            c.data.reset();
            c.mssim.reset();
            // What the page carries (docs/tpmif.md): 4096 needs the extra page, else 4088.
            std::uint32_t const fit = c.extra_pages ? 4096 : 4088;
            c.buffer_size = sized ? std::min(c.buffer_size, fit) : fit;
            return c;
        }
        if (c.data) c.ctrl = next_endpoint(*c.data);
        if (!c.data && !c.mssim && !c.help) bad("nothing to serve: both --swtpm and --mssim are off");
        return c;
    }

    static auto parse_socket(std::span<std::string_view const> args) -> vtpmd_config {
        vtpmd_config c;
        c.family = wire::family::tpm12;  // swtpm's rule: TPM 1.2 unless --tpm2
        c.power_on = false;              // swtpm waits for CMD_INIT unless not-need-init
        bool have_state = false;
        for (std::size_t i = 0; i < args.size(); ++i) {
            auto const a = args[i];
            auto value = [&]() -> std::string_view {
                if (i + 1 >= args.size()) bad(std::string{a} + " needs a value");
                return args[++i];
            };
            if (a == "--help" || a == "-h") c.help = true;
            else if (a == "--tpm2") c.family = wire::family::tpm2;
            else if (a == "--server") c.data = endpoint_or_bad(value(), "--server");
            else if (a == "--ctrl") c.ctrl = endpoint_or_bad(value(), "--ctrl");
            else if (a == "--mssim") c.mssim = endpoint_or_bad("type=tcp," + std::string{value()}, "--mssim");
            else if (a == "--tpmstate") {
                auto kv = key_values(value());
                auto it = kv.find("dir");
                if (it == kv.end() || it->second.empty()) bad("--tpmstate needs dir=DIR");
                c.state_dir = it->second;
                have_state = true;
            } else if (a == "--flags") {
                for (auto const& [k, v] : key_values(value())) {
                    if (k == "not-need-init") c.power_on = true;
                    else if (k == "startup-clear") c.startup_clear = true;
                    else bad("--flags: unsupported flag '" + k + "'");
                }
            } else if (a == "--locality") {
                for (auto const& [k, v] : key_values(value())) {
                    if (k == "allow-set-locality") c.allow_set_locality = true;
                    else if (k == "reject-locality-4") c.reject_locality_4 = true;
                    else bad("--locality: unsupported option '" + k + "'");
                }
            } else if (a == "--pid") {
                auto kv = key_values(value());
                if (!kv.contains("file")) bad("--pid needs file=FILE");
                c.pid_file = kv["file"];
            } else if (a == "--log") {
                auto kv = key_values(value());
                if (kv.contains("file")) c.log_file = kv["file"];
                if (kv.contains("level")) c.log_level = std::stoi(kv["level"]);
            } else bad("unknown option '" + std::string{a} + "'");
        }
        if (c.help) return c;
        if (!have_state) c.state_dir = default_state_dir();
        if (!c.data && !c.ctrl && !c.mssim) bad("nothing to serve: give --server, --ctrl or --mssim");
        if (c.startup_clear && !c.power_on) bad("--flags startup-clear needs not-need-init");
        return c;
    }
};

}  // namespace xtpm::roles
