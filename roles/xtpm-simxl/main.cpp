// xtpm-simxl: the sim "toolstack". Writes, as dom0, exactly the xenstore entries and
// permissions that xl/libxl write for `vtpm=["backend=B,uuid=U"]` (xen-vtpm-protocol.md 4.1),
// and removes them again (xl vtpm-detach). See roles/common/xl_vtpm.hpp.
#include "common/hv_config.hpp"
#include "common/xl_vtpm.hpp"

#include <cstdio>

namespace {
constexpr char const* usage =
    "usage: xtpm-simxl --simhv-dir D vtpm-attach --frontend F --backend B [--devid N] [--uuid U]\n"
    "       xtpm-simxl --simhv-dir D vtpm-detach --frontend F --backend B [--devid N]\n"
    "  attach prints the vTPM's uuid (random when not given, as libxl does).\n";
}  // namespace

int main(int argc, char** argv) try {
    using namespace xtpm::roles;
    hv_options h{"sim", {}, 0};
    std::string cmd;
    vtpm_attachment a;
    bool fe = false, be = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view const arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) throw std::invalid_argument(std::string{arg} + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") return std::fputs(usage, stdout) < 0;
        if (arg == "--simhv-dir") h.simhv_dir = std::string{value()};
        else if (arg == "vtpm-attach" || arg == "vtpm-detach") cmd = arg;
        else if (arg == "--frontend") {
            a.frontend = parse_domid(value(), "--frontend");
            fe = true;
        } else if (arg == "--backend") {
            a.backend = parse_domid(value(), "--backend");
            be = true;
        }
        else if (arg == "--devid") a.devid = parse_uint(value(), "--devid");
        else if (arg == "--uuid") a.uuid = std::string{value()};
        else throw std::invalid_argument("unknown argument " + std::string{arg} + "\n" + usage);
    }
    if (cmd.empty() || !fe || !be) throw std::invalid_argument(usage);
    check(h);
    auto dom0 = xtpm::hv::sim_hv::connect(h.simhv_dir, 0);
    if (!dom0) throw std::runtime_error("cannot reach xtpm-simhv in " + h.simhv_dir + ": " + dom0.error().message());
    if (cmd == "vtpm-attach") {
        if (auto r = vtpm_attach(*dom0, a); !r) throw std::runtime_error(cmd + ": " + r.error().message());
        return std::printf("%s\n", a.uuid.c_str()) < 0;
    }
    auto r = vtpm_detach(*dom0, a);
    if (!r) throw std::runtime_error(cmd + ": " + r.error().message());
    if (!*r) std::fputs("xtpm-simxl: the backend did not reach Closed within 10 s; removed by force\n", stderr);
    return 0;
} catch (std::exception const& e) {
    std::fprintf(stderr, "xtpm-simxl: %s\n", e.what());
    return 2;
}
