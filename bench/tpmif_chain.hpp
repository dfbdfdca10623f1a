// The guest path the tpmif bench measures, started by pid in a private directory: xtpm-simhv
// (domains 1-6; 5 and 6 are the sim floor's), xtpm-simxl writing what xl writes for guest 1 -> backend 3 and guest 2 ->
// backend 4, one `xtpm-vtpmd --hv sim` per guest, and xtpm-front as guest 2 serving the swtpm
// data protocol on 127.0.0.1 (docs/benchmarks.md, "tpmif"). The bench itself is guest 1.
#pragma once

#include "cli.hpp"
#include "process.hpp"

#include <filesystem>
#include <string>

namespace xtpm::bench {

struct chain_paths {
    std::filesystem::path simhv, simxl, vtpmd, front;
};

// Guest 1 (the bench, direct) and guest 2 (behind xtpm-front) and their backends.
inline constexpr std::uint16_t direct_guest = 1, front_guest = 2, direct_backend = 3, front_backend = 4;

class sim_chain {
public:
    static auto start(chain_paths const& p, bool with_front, std::chrono::seconds limit) -> outcome<sim_chain> {
        sim_chain c;
        auto dir = temp_dir::create("xtpm-tpmif-bench");
        if (!dir) return std::unexpected{"temporary directory: " + dir.error().message()};
        c.dir_ = std::move(*dir);
        c.hv_dir_ = c.dir_.path() + "/hv";
        if (auto r = c.spawn_ready(c.simhv_, "simhv", {p.simhv.string(), "--dir", c.hv_dir_, "--domains", "1,2,3,4,5,6"}, limit); !r)
            return std::unexpected{r.error()};
        for (auto const& [fe, be] : {std::pair{direct_guest, direct_backend}, std::pair{front_guest, front_backend}}) {
            if (!with_front && fe == front_guest) continue;
            if (auto r = c.run(p.simxl, {"--simhv-dir", c.hv_dir_, "vtpm-attach", "--frontend", std::to_string(fe),
                                         "--backend", std::to_string(be)}, limit); !r)
                return std::unexpected{r.error()};
            auto const state = c.dir_.path() + "/state" + std::to_string(fe);
            if (std::error_code ec; !std::filesystem::create_directory(state, ec)) return std::unexpected{"mkdir " + state};
            auto& v = fe == direct_guest ? c.vtpm_direct_ : c.vtpm_front_;
            if (auto r = c.spawn_ready(v, "vtpmd" + std::to_string(fe),
                                       {p.vtpmd.string(), "--hv", "sim", "--simhv-dir", c.hv_dir_, "--domain",
                                        std::to_string(be), "--frontend", std::to_string(fe), "--state", state}, limit); !r)
                return std::unexpected{r.error()};
        }
        if (!with_front) return c;
        for (int attempt = 0;; ++attempt) {  // a port taken between the probe and the bind: retry
            auto port = pick_port_pair();
            if (!port) return std::unexpected{"no free port: " + port.error().message()};
            auto const ep = [](unsigned q) { return "type=tcp,port=" + std::to_string(q) + ",bindaddr=127.0.0.1"; };
            auto r = c.spawn_ready(c.front_, "front", {p.front.string(), "--hv", "sim", "--simhv-dir", c.hv_dir_, "--domain",
                                                      std::to_string(front_guest), "--server", ep(*port), "--ctrl", ep(*port + 1u)},
                                   limit);
            if (r) {
                c.front_port_ = *port;
                return c;
            }
            if (attempt == 2) return std::unexpected{r.error()};
        }
    }

    [[nodiscard]] auto hv_dir() const -> std::string const& { return hv_dir_; }
    [[nodiscard]] auto front_port() const -> std::uint16_t { return front_port_; }
    [[nodiscard]] auto vtpmd_direct() -> child_process& { return vtpm_direct_; }
    [[nodiscard]] auto vtpmd_front() -> child_process& { return vtpm_front_; }
    [[nodiscard]] auto front() -> child_process& { return front_; }
    [[nodiscard]] auto log_of(std::string const& name) const -> std::string { return log_tail(dir_.path() + "/" + name + ".log"); }

    // Stop the processes in dependency order (frontends, backends, the hypervisor).
    void stop() {
        front_.stop();
        vtpm_front_.stop();
        vtpm_direct_.stop();
        simhv_.stop();
    }

private:
    // Start argv with its output in <name>.log and wait (bounded) for a line saying "ready".
    auto spawn_ready(child_process& slot, std::string const& name, std::vector<std::string> const& argv,
                     std::chrono::seconds limit) -> outcome<> {
        auto const log = dir_.path() + "/" + name + ".log";
        [[maybe_unused]] int const t = ::truncate(log.c_str(), 0);
        auto proc = child_process::spawn(argv, log);
        if (!proc) return std::unexpected{"cannot start " + argv[0] + ": " + proc.error().message()};
        slot = std::move(*proc);
        auto const deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            if (log_tail(log).find("ready") != std::string::npos) return {};
            if (stop_requested) return std::unexpected{"interrupted"};
            if (!slot.alive()) return std::unexpected{name + " " + describe_status(slot.wait_status()) + "; log:\n" + log_tail(log)};
            if (std::chrono::steady_clock::now() > deadline) {
                slot.stop();
                return std::unexpected{name + " not ready within the limit; log:\n" + log_tail(log)};
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});  // a bounded readiness poll
        }
    }

    // Run a tool to completion (bounded); its exit status must be 0.
    auto run(std::filesystem::path const& prog, std::vector<std::string> args, std::chrono::seconds limit) -> outcome<> {
        args.insert(args.begin(), prog.string());
        auto const log = dir_.path() + "/tool.log";
        auto proc = child_process::spawn(args, log);
        if (!proc) return std::unexpected{"cannot start " + prog.string() + ": " + proc.error().message()};
        auto const deadline = std::chrono::steady_clock::now() + limit;
        while (proc->alive()) {
            if (std::chrono::steady_clock::now() > deadline) return std::unexpected{prog.string() + " did not finish"};
            std::this_thread::sleep_for(std::chrono::milliseconds{2});
        }
        if (!WIFEXITED(proc->wait_status()) || WEXITSTATUS(proc->wait_status()) != 0)
            return std::unexpected{prog.string() + " " + describe_status(proc->wait_status()) + ": " + log_tail(log)};
        return {};
    }

    temp_dir dir_;  // first: destroyed last, after every process that writes into it
    std::string hv_dir_;
    child_process simhv_, vtpm_direct_, vtpm_front_, front_;
    std::uint16_t front_port_ = 0;
};

}  // namespace xtpm::bench
