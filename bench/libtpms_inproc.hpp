// libtpms TPM 2.0 called in the bench process: the floor of any vTPM. Sequence
// from the libtpms man pages (TPMLIB_ChooseTPMVersion, TPMLIB_RegisterCallbacks,
// TPMLIB_MainInit, TPMLIB_Process) and toolchain.md 7.1-7.5; then TPM2_Startup
// (TPM 2.0 Part 3 section 9.3). Include after other headers: tpm_types.h
// redefines TRUE/FALSE (toolchain.md 7.6).
#pragma once

#include <xtpm/wire/header.hpp>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>

namespace xtpm::bench {

namespace detail {
// libtpms is a process-wide singleton whose NV callbacks take no user pointer,
// so its in-memory NV lives in one function-local static (toolchain.md 7.1).
inline auto nv_blobs() -> std::map<std::string, std::vector<unsigned char>>& {
    static std::map<std::string, std::vector<unsigned char>> blobs;
    return blobs;
}
inline auto nv_init() -> TPM_RESULT { return TPM_SUCCESS; }
inline auto nv_load(unsigned char** data, uint32_t* length, uint32_t, char const* name) -> TPM_RESULT {
    auto it = nv_blobs().find(name);
    if (it == nv_blobs().end()) return TPM_RETRY;  // "no such blob": manufacture (toolchain.md 7.3)
    // libtpms free()s the buffer, so it must come from malloc.
    auto* p = static_cast<unsigned char*>(std::malloc(it->second.size() ? it->second.size() : 1));
    if (p == nullptr) return TPM_FAIL;
    std::memcpy(p, it->second.data(), it->second.size());
    *data = p;
    *length = static_cast<uint32_t>(it->second.size());
    return TPM_SUCCESS;
}
inline auto nv_store(unsigned char const* data, uint32_t length, uint32_t, char const* name)
    -> TPM_RESULT {
    nv_blobs()[name].assign(data, data + length);
    return TPM_SUCCESS;
}
inline auto nv_delete(uint32_t, char const* name, TPM_BOOL) -> TPM_RESULT {
    nv_blobs().erase(name);
    return TPM_SUCCESS;
}
}  // namespace detail

// One per process. Not copyable; the destructor terminates libtpms.
class libtpms_inproc {
public:
    static auto start() -> result<libtpms_inproc> {
        if (TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2) != TPM_SUCCESS) return fail(errc::device_failure);
        libtpms_callbacks cbs{};
        cbs.sizeOfStruct = sizeof cbs;
        cbs.tpm_nvram_init = detail::nv_init;
        cbs.tpm_nvram_loaddata = detail::nv_load;
        cbs.tpm_nvram_storedata = detail::nv_store;
        cbs.tpm_nvram_deletename = detail::nv_delete;
        if (TPMLIB_RegisterCallbacks(&cbs) != TPM_SUCCESS) return fail(errc::device_failure);
        if (TPMLIB_MainInit() != TPM_SUCCESS) return fail(errc::device_failure);
        libtpms_inproc t;
        t.live_ = true;
        // TPM2_Startup(TPM_SU_CLEAR): tag, size 12, cc, startupType 0.
        std::array<std::byte, 12> startup{};
        wire::writer w{startup};
        wire::encode(w, wire::command_header{wire::tpm_st::no_sessions, 12, wire::tpm_cc::startup});
        w.write_be(std::uint16_t{0});
        auto cmd = w.finish();
        if (!cmd) return std::unexpected{cmd.error()};
        auto rsp = t.roundtrip(*cmd);
        if (!rsp) return std::unexpected{rsp.error()};
        if (wire::response_view{*rsp}.rc() != wire::tpm_rc::success) return fail(errc::device_failure);
        return t;
    }

    libtpms_inproc(libtpms_inproc&& o) noexcept
        : live_{std::exchange(o.live_, false)}, rsp_{std::exchange(o.rsp_, nullptr)},
          cap_{std::exchange(o.cap_, 0)} {}
    auto operator=(libtpms_inproc&&) -> libtpms_inproc& = delete;
    libtpms_inproc(libtpms_inproc const&) = delete;
    auto operator=(libtpms_inproc const&) -> libtpms_inproc& = delete;
    ~libtpms_inproc() {
        std::free(rsp_);  // libtpms reallocs it
        if (live_) TPMLIB_Terminate();
    }

    // One command through TPMLIB_Process; the view aliases libtpms' response
    // buffer, reused (and realloc'ed by libtpms when too small) across calls.
    auto roundtrip(wire::bytes_view cmd) -> result<wire::bytes_view> {
        uint32_t len = 0;
        // TPMLIB_Process takes a non-const pointer but does not write the command (toolchain.md 7.5).
        auto* in = const_cast<unsigned char*>(reinterpret_cast<unsigned char const*>(cmd.data()));
        if (TPMLIB_Process(&rsp_, &len, &cap_, in, static_cast<uint32_t>(cmd.size())) != TPM_SUCCESS)
            return fail(errc::device_failure);
        return wire::bytes_view{reinterpret_cast<std::byte const*>(rsp_), len};  // unsigned char -> byte view
    }

private:
    libtpms_inproc() = default;
    bool live_ = false;
    unsigned char* rsp_ = nullptr;
    uint32_t cap_ = 0;
};

}  // namespace xtpm::bench
