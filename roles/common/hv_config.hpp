// The hypervisor options of the guest-path roles (xtpm-vtpmd --hv, xtpm-front, xtpm-simxl):
// `--hv sim|xen`, `--simhv-dir D` (sim_hv's daemon directory), `--domain N` (who we are) and
// `--poll-us N` (how long an end looks at the shared page before blocking, io/spin.hpp),
// and with_hv(), which opens the chosen policy and hands it to a generic callable.
#pragma once

#include <xtpm/hv/sim.hpp>
#include <xtpm/hv/xen.hpp>
#include <xtpm/proto/xenbus/common.hpp>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace xtpm::roles {

struct hv_options {
    std::string kind;                     // "sim" or "xen"
    std::string simhv_dir;                // sim: where xtpm-simhv serves dom<N>.sock
    std::optional<hv::domid_t> domain;    // sim: required; xen: read from xenstore when absent
    std::chrono::microseconds poll_window{50};  // look at the page this long before blocking
};

inline auto parse_domid(std::string_view v, char const* opt) -> hv::domid_t {
    auto const d = proto::xenbus::parse_decimal(v, proto::xenbus::max_domid);
    if (!d) throw std::invalid_argument(std::string{opt} + ": not a domain id: '" + std::string{v} + "'");
    return static_cast<hv::domid_t>(*d);
}

inline auto parse_uint(std::string_view v, char const* opt) -> unsigned {
    auto const d = proto::xenbus::parse_decimal(v, UINT32_MAX);
    if (!d) throw std::invalid_argument(std::string{opt} + ": not a number: '" + std::string{v} + "'");
    return static_cast<unsigned>(*d);
}

// Takes `a` (and its value) if it is one of the hv options; false otherwise.
template <class Value>
auto take_hv_option(hv_options& o, std::string_view a, Value&& value) -> bool {
    if (a == "--hv") {
        o.kind = std::string{value()};
        if (o.kind != "sim" && o.kind != "xen") throw std::invalid_argument("--hv: sim or xen");
    } else if (a == "--simhv-dir") {
        o.simhv_dir = std::string{value()};
    } else if (a == "--domain") {
        o.domain = parse_domid(value(), "--domain");
    } else if (a == "--poll-us") {
        auto const us = parse_uint(value(), "--poll-us");
        if (us > 10000) throw std::invalid_argument("--poll-us: at most 10000");
        o.poll_window = std::chrono::microseconds{us};
    } else {
        return false;
    }
    return true;
}

inline void check(hv_options& o) {
    if (o.kind.empty()) throw std::invalid_argument("--hv sim|xen is required");
    if (o.kind == "sim") {
        if (o.simhv_dir.empty())
            if (auto const* e = std::getenv("XTPM_SIMHV_DIR")) o.simhv_dir = e;
        if (o.simhv_dir.empty()) throw std::invalid_argument("--hv sim needs --simhv-dir DIR (or $XTPM_SIMHV_DIR)");
        if (!o.domain) throw std::invalid_argument("--hv sim needs --domain N");
    }
}

// Open the policy and call f(Hv) with it; f's result is returned. Throws if it cannot open.
template <class F>
auto with_hv(hv_options const& o, F&& f) {
    if (o.kind == "sim") {
        auto h = hv::sim_hv::connect(o.simhv_dir, *o.domain);
        if (!h) throw std::runtime_error("cannot reach xtpm-simhv in " + o.simhv_dir + " as domain " +
                                         std::to_string(*o.domain) + ": " + h.error().message());
        return std::forward<F>(f)(std::move(*h));
    }
    auto h = hv::xen_hv::open(o.domain);
    if (!h) throw std::runtime_error("cannot open the Xen interfaces (/dev/xen): " + h.error().message());
    return std::forward<F>(f)(std::move(*h));
}

}  // namespace xtpm::roles
