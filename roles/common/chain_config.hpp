// xtpm-chain's command line. Native: [--tpm2|--tpm12] [--state DIR] [--server ...] [--ctrl ...]
// [--mssim port=Q] [--pid file=F] [--log file=F]; the endpoints have `xtpm-vtpmd socket`'s
// syntax and go to xtpm-front. The `socket` form (swtpm(8) options, TPM 1.2 unless --tpm2) is
// accepted too, so harnesses that start `swtpm socket` can start a whole chain instead.
#pragma once

#include "common/vtpmd_config.hpp"

namespace xtpm::roles {

inline constexpr char const* chain_usage = R"(Usage:
  xtpm-chain [--tpm2|--tpm12] [--state DIR] [--server SPEC] [--ctrl SPEC] [--mssim port=Q]
             [--uuid U] [--pid file=F] [--log file=F]
  xtpm-chain socket [swtpm socket options]
  Brings up the simulated hypervisor (xtpm-simhv), a vTPM (xtpm-vtpmd --hv sim, backend
  domain 1), attaches it to guest domain 2 as xl would (xtpm-simxl), and a user-space
  frontend in the guest (xtpm-front) serving the given endpoints (default: swtpm on
  127.0.0.1:2321/2322, mssim on 2331/2332). Prints one "xtpm-chain: ready ..." line;
  SIGTERM/SIGINT or the death of any part stops everything. Exit 0 after a signal, 1 when
  a part died, 2 when start-up failed.
)";

struct chain_config {
    wire::family family = wire::family::tpm2;
    std::string state_dir;
    std::string uuid;
    std::vector<std::string> front_args;  // endpoint and locality options for xtpm-front
    std::optional<std::string> pid_file, log_file;
    bool help = false;

    static auto from_args(int argc, char** argv) -> chain_config {
        chain_config c;
        std::vector<std::string_view> args(argv + 1, argv + argc);
        bool const socket = !args.empty() && args.front() == "socket";
        if (socket) {
            args.erase(args.begin());
            c.family = wire::family::tpm12;  // swtpm's rule
        }
        auto kv = [](std::string_view spec, std::string_view key) -> std::optional<std::string> {
            for (std::size_t at = 0; at <= spec.size();) {
                auto const end = std::min(spec.find(',', at), spec.size());
                auto const item = spec.substr(at, end - at);
                if (item.starts_with(key) && item.size() > key.size() && item[key.size()] == '=')
                    return std::string{item.substr(key.size() + 1)};
                at = end + 1;
            }
            return std::nullopt;
        };
        for (std::size_t i = 0; i < args.size(); ++i) {
            auto const a = args[i];
            auto value = [&]() -> std::string_view {
                if (i + 1 >= args.size()) throw std::invalid_argument(std::string{a} + " needs a value");
                return args[++i];
            };
            if (a == "--help" || a == "-h") c.help = true;
            else if (a == "--tpm2") c.family = wire::family::tpm2;
            else if (a == "--tpm12") c.family = wire::family::tpm12;
            else if (a == "--state") c.state_dir = std::string{value()};
            else if (a == "--tpmstate") c.state_dir = kv(value(), "dir").value_or("");
            else if (a == "--uuid") c.uuid = std::string{value()};
            else if (a == "--pid") c.pid_file = socket ? kv(value(), "file") : std::string{value()};
            else if (a == "--log") c.log_file = socket ? kv(value(), "file") : std::string{value()};
            else if (a == "--flags") (void)value();  // the vTPM is powered on; the guest sends Startup
            else if (a == "--server" || a == "--ctrl" || a == "--mssim" || a == "--locality") {
                c.front_args.emplace_back(a);
                c.front_args.emplace_back(value());
            } else throw std::invalid_argument("unknown option '" + std::string{a} + "' (see --help)");
        }
        if (c.front_args.empty())
            c.front_args = {"--server", "type=tcp,port=2321,bindaddr=127.0.0.1", "--ctrl",
                            "type=tcp,port=2322,bindaddr=127.0.0.1", "--mssim", "port=2331,bindaddr=127.0.0.1"};
        if (c.state_dir.empty()) {
            std::vector<char*> none{argv[0]};
            c.state_dir = vtpmd_config::from_args(1, none.data()).state_dir;  // vtpmd's default
        }
        return c;
    }
};

}  // namespace xtpm::roles
