// xtpm-front's command line: the hv options, the device (--devid, --tpm12, --extra-pages) and
// the local endpoints with the `xtpm-vtpmd socket` syntax (--server, --ctrl, --mssim port=Q,
// --pid file=F, --log file=F), which are parsed by vtpmd_config's socket form.
#pragma once

#include "common/vtpmd_config.hpp"

namespace xtpm::roles {

inline constexpr char const* front_usage = R"(Usage:
  xtpm-front --hv sim|xen [--simhv-dir D] --domain F [--devid N] [--tpm12] [--extra-pages on|off]
             [--poll-us N (look at the page N us before blocking; default 50)]
             [--server type=tcp,port=P | type=unixio,path=S] [--ctrl ...] [--mssim port=Q]
             [--pid file=F] [--log file=F]
  A user-space tpmif frontend for domain F's vTPM device N (default 0): serves the swtpm
  and mssim protocols locally and forwards every command over the shared page, exactly as
  Linux xen-tpmfront does. Without endpoints: swtpm on 2321/2322 and mssim on 2331/2332.
  Prints "xtpm-front: ready ..." once connected to the backend; SIGTERM closes the device.
)";

struct front_config {
    hv_options hv;
    unsigned devid = 0;
    bool extra_pages = true;
    vtpmd_config endpoints;  // data/ctrl/mssim, family, pid and log files
    bool help = false;

    static auto from_args(int argc, char** argv) -> front_config {
        front_config c;
        wire::family fam = wire::family::tpm2;
        std::vector<std::string> rest{"xtpm-front", "socket"};
        bool endpoint = false;
        std::vector<std::string_view> const args(argv + 1, argv + argc);
        for (std::size_t i = 0; i < args.size(); ++i) {
            auto const a = args[i];
            auto value = [&]() -> std::string_view {
                if (i + 1 >= args.size()) throw std::invalid_argument(std::string{a} + " needs a value");
                return args[++i];
            };
            if (take_hv_option(c.hv, a, value)) continue;
            if (a == "--help" || a == "-h") c.help = true;
            else if (a == "--devid") c.devid = parse_uint(value(), "--devid");
            else if (a == "--tpm12") fam = wire::family::tpm12;
            else if (a == "--tpm2") fam = wire::family::tpm2;
            else if (a == "--extra-pages") c.extra_pages = value() != "off";
            else {
                endpoint = endpoint || a == "--server" || a == "--ctrl" || a == "--mssim";
                rest.emplace_back(a);
            }
        }
        if (c.help) return c;
        check(c.hv);
        if (!endpoint)  // the embedded defaults, as the main job uses them
            for (auto const* s : {"--server", "type=tcp,port=2321", "--ctrl", "type=tcp,port=2322", "--mssim", "port=2331"})
                rest.emplace_back(s);
        std::vector<char*> v;
        for (auto& s : rest) v.push_back(s.data());
        c.endpoints = vtpmd_config::from_args(static_cast<int>(v.size()), v.data());
        c.endpoints.family = fam;
        return c;
    }
};

}  // namespace xtpm::roles
