// xtpm-chain: the whole guest path in the foreground (docs/guest-path.md): xtpm-simhv, the
// vTPM (xtpm-vtpmd --hv sim, backend domain 1), the xl entries (xtpm-simxl), and the guest's
// frontend (xtpm-front, domain 2) serving local endpoints. One ready line; SIGTERM stops all.
#include "common/chain.hpp"
#include "common/chain_config.hpp"
#include "common/daemon.hpp"

#include <cstdio>

int main(int argc, char** argv) try {
    using namespace xtpm::roles;
    auto const cfg = chain_config::from_args(argc, argv);
    if (cfg.help) return std::fputs(chain_usage, stdout) < 0;
    daemon_process d{cfg.pid_file, cfg.log_file, "xtpm-chain"};
    std::string tmp = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + std::string{"/xtpm-chain.XXXXXX"};
    if (!::mkdtemp(tmp.data())) throw std::runtime_error("mkdtemp " + tmp);
    struct cleanup {
        std::string dir;
        ~cleanup() { std::error_code ec; std::filesystem::remove_all(dir, ec); }
    } const keep{tmp};
    auto const hv = tmp + "/hv";
    auto const tpm = std::string{cfg.family == xtpm::wire::family::tpm2 ? "--tpm2" : "--tpm12"};
    std::filesystem::create_directories(cfg.state_dir);
    int rc = 2;
    {
        supervisor s;
        try {
            s.spawn("xtpm-simhv", {find_role("xtpm-simhv", "XTPM_CHAIN_SIMHV"), "--dir", hv, "--domains", "1,2"});
            s.await_line(0, "xtpm-simhv: ready");
            std::vector<std::string> xl{find_role("xtpm-simxl", "XTPM_CHAIN_SIMXL"), "--simhv-dir", hv, "vtpm-attach",
                                        "--frontend", "2", "--backend", "1", "--devid", "0"};
            if (!cfg.uuid.empty()) xl.insert(xl.end(), {"--uuid", cfg.uuid});
            s.spawn("xtpm-simxl", xl);
            auto const uuid = s.await_line(1, "");
            if (s.await_exit(1) != 0) throw std::runtime_error("xtpm-simxl vtpm-attach failed");
            s.spawn("xtpm-vtpmd", {find_role("xtpm-vtpmd", "XTPM_CHAIN_VTPMD"), "--hv", "sim", "--simhv-dir", hv,
                                   "--domain", "1", "--frontend", "2", "--devid", "0", "--state", cfg.state_dir, tpm});
            s.await_line(2, "xtpm-vtpmd: ready");
            std::vector<std::string> fe{find_role("xtpm-front", "XTPM_CHAIN_FRONT"), "--hv", "sim", "--simhv-dir", hv,
                                        "--domain", "2", "--devid", "0", tpm};
            fe.insert(fe.end(), cfg.front_args.begin(), cfg.front_args.end());
            s.spawn("xtpm-front", fe);
            auto const ready = s.await_line(3, "xtpm-front: ready ");
            d.ready(ready.substr(std::strlen("xtpm-front: ready ")) + " uuid=" + uuid + " state=" + cfg.state_dir);
            rc = s.run();
        } catch (std::exception const& e) {
            std::fprintf(stderr, "xtpm-chain: %s\n", e.what());
        }
        if (!s.teardown() && rc == 0) rc = 1;
    }
    return rc;
} catch (std::exception const& e) {
    std::fprintf(stderr, "xtpm-chain: %s\n", e.what());
    return 2;
}
