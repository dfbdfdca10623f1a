// libtpms_device: the emulated TPM 1.2 or 2.0 running in this process. It wraps
// libtpms's process-global state in one object (libtpms 0.9 man pages:
// TPMLIB_RegisterCallbacks(3), TPMLIB_Process(3), TPMLIB_Get/SetState(3),
// TPM_IO_Hash_Start(3), TPM_IO_TpmEstablished_Get(3)) and keeps the TPM's NV
// blobs in a state_store through libtpms's NV callbacks.
#pragma once

#include <xtpm/config.hpp>
#include <xtpm/device/concepts.hpp>
#include <xtpm/store/concepts.hpp>
#include <xtpm/wire/header.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

// libtpms last: tpm_types.h redefines TRUE and FALSE (toolchain.md section 7.6).
#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_nvfilename.h>
#include <libtpms/tpm_tis.h>

namespace xtpm {

struct libtpms_options {
    wire::family family = wire::family::tpm2;
    // I/O buffer size the TPM advertises (TPM_PT_MAX_COMMAND/RESPONSE_SIZE);
    // libtpms clamps it to [min, max]: TPM 2.0 [2808, 4096], TPM 1.2 [3072, 4096].
    // 4088 fits a single tpmif page (toolchain.md section 5).
    std::uint32_t buffer_size = 4096;
};

namespace detail {

// The one global xtpm allows (style.md): libtpms itself is a process singleton.
inline std::atomic<bool> libtpms_claimed{false};

struct malloc_free {
    void operator()(unsigned char* p) const noexcept { std::free(p); }
};
using malloc_ptr = std::unique_ptr<unsigned char, malloc_free>;

static_assert(permanent_blob_name == TPM_PERMANENT_ALL_NAME);
static_assert(volatile_blob_name == TPM_VOLATILESTATE_NAME);
static_assert(save_state_blob_name == TPM_SAVESTATE_NAME);

inline auto blob_name(state_blob t) noexcept -> std::string_view {
    switch (t) {
    case state_blob::permanent: return permanent_blob_name;
    case state_blob::volatile_state: return volatile_blob_name;
    case state_blob::save_state: return save_state_blob_name;
    }
    return {};
}

inline auto libtpms_state_type(state_blob t) noexcept -> TPMLIB_StateType {
    switch (t) {
    case state_blob::permanent: return TPMLIB_STATE_PERMANENT;
    case state_blob::volatile_state: return TPMLIB_STATE_VOLATILE;
    case state_blob::save_state: return TPMLIB_STATE_SAVE_STATE;
    }
    return TPMLIB_STATE_PERMANENT;
}

inline auto libtpms_version(wire::family f) noexcept -> TPMLIB_TPMVersion {
    return f == wire::family::tpm2 ? TPMLIB_TPM_VERSION_2 : TPMLIB_TPM_VERSION_1_2;
}

// libtpms speaks unsigned char; std::byte may alias any object, so both views are valid.
inline auto as_bytes(unsigned char const* p, std::size_t n) noexcept -> wire::bytes_view {
    return {reinterpret_cast<std::byte const*>(p), n};
}

}  // namespace detail

// Models tpm_device, cancellable_device, powered_device, stateful_device,
// established_device, buffer_sized_device and hashing_device.
// Contract beyond the concepts:
//  - one live object per process (libtpms has no handle): a second create()
//    while one lives is a bug and aborts;
//  - not thread-safe except cancel(); the pipeline serialises everything else;
//  - state never silently resets: a blob the store cannot read, or libtpms
//    cannot parse, stops power_on() with an error instead of manufacturing a new
//    TPM (architecture.md, "State, keys and trust");
//  - "volatilestate" is consumed once: power_on() loads and removes it (peers 4.5);
//  - set_state(permanent) also drops the stored volatile and save state, which
//    belonged to the permanent state it replaces.
template <state_store Store>
class libtpms_device {
public:
    // Claims libtpms and applies the options; the TPM stays powered off.
    static auto create(Store store, libtpms_options opts = {}) -> result<libtpms_device> {
        if (opts.family != wire::family::tpm2 && opts.family != wire::family::tpm12) return fail(errc::bad_value);
        if (opts.buffer_size == 0) return fail(errc::bad_value);  // 0 is libtpms's "query"
        bool const first = !detail::libtpms_claimed.exchange(true);
        XTPM_ASSERT(first && "only one libtpms_device may live per process");
        auto c = std::make_unique<core>(std::move(store), opts);
        if (auto r = select(*c); !r) return std::unexpected{r.error()};
        return libtpms_device{std::move(c)};
    }

    libtpms_device(libtpms_device&&) noexcept = default;
    auto operator=(libtpms_device&& o) noexcept -> libtpms_device& {
        if (this != &o) {
            release();
            c_ = std::move(o.c_);
        }
        return *this;
    }
    libtpms_device(libtpms_device const&) = delete;
    auto operator=(libtpms_device const&) -> libtpms_device& = delete;
    // Powers off orderly if still running, then frees libtpms for the next device.
    ~libtpms_device() { release(); }

    // --- tpm_device ---------------------------------------------------------
    // The response aliases a device-owned buffer; `scratch` is not used.
    auto execute(wire::command_view cmd, wire::bytes_span /*scratch*/) -> result<wire::response_view> {
        auto& c = get();
        if (!c.running.load()) return fail(errc::not_running);
        if (cmd.bytes.size() > c.buffer_size) return fail(errc::too_large);
        if (cmd.locality > wire::max_locality) return fail(errc::bad_locality);
        c.locality = cmd.locality;
        auto const resp = process(c, cmd.bytes);
        if (!resp) return resp;
        auto const shutdown = c.fam == wire::family::tpm2 ? wire::tpm_cc::shutdown : wire::tpm_cc::tpm12_save_state;
        c.shut_down = cmd.header.code == shutdown && resp->rc() == wire::tpm_rc::success;
        return resp;
    }
    [[nodiscard]] auto family() const -> wire::family { return get().fam; }
    [[nodiscard]] auto max_command_size() const -> std::size_t { return get().buffer_size; }

    // --- cancellable_device: any thread; libtpms clears the flag at the next command.
    void cancel() noexcept {
        if (c_ && c_->running.load()) TPMLIB_CancelCommand();
    }

    // --- powered_device -----------------------------------------------------
    // errc::busy if already running. Store errors come back as they are, a blob
    // libtpms refuses as errc::bad_state, a failed TPMLIB_MainInit as
    // errc::device_failure; in each case the TPM stays off.
    auto power_on(bool delete_volatile) -> result<void> {
        auto& c = get();
        if (c.running.load()) return fail(errc::busy);
        c.store_error = {};
        if (auto r = select(c); !r) return r;

        // Parse the permanent state here, so a corrupt blob fails closed before
        // MainInit could enter failure mode or manufacture over it.
        auto perm = c.store.load(permanent_blob_name);
        if (!perm) return std::unexpected{perm.error()};
        if (*perm) {
            if (auto r = set_cached(c, state_blob::permanent, **perm); !r) return r;
        }

        if (delete_volatile) {
            if (auto r = c.store.remove(volatile_blob_name); !r) return r;
        } else {
            auto vol = c.store.load(volatile_blob_name);
            if (!vol) return std::unexpected{vol.error()};
            if (*vol) {
                if (!*perm) return fail(errc::bad_state);  // volatile state of a TPM that does not exist
                if (auto r = set_cached(c, state_blob::volatile_state, **vol); !r) return r;
                // Removed before MainInit: a crash from here on loses the snapshot
                // (a power loss), never replays it.
                if (auto r = c.store.remove(volatile_blob_name); !r) return r;
            }
        }

        if (TPMLIB_MainInit() != TPM_SUCCESS || c.store_error) {
            // Never Process after a failed MainInit (TPM 1.2 crashes); Terminate
            // unlocks the version choice for the next attempt, as swtpm does.
            TPMLIB_Terminate();
            if (c.store_error) return std::unexpected{c.store_error};
            return fail(errc::device_failure);
        }
        c.shut_down = false;
        c.running.store(true);
        return {};
    }

    // Orderly: TPM2_Shutdown(SU_CLEAR) or TPM_SaveState unless the last command
    // already shut the TPM down (a guest's Shutdown(SU_STATE) must survive), then
    // TPMLIB_Terminate. Reports the first store failure since power_on, if any.
    auto power_off() -> result<void> {
        auto& c = get();
        if (!c.running.load()) return {};
        if (!c.shut_down) {
            c.locality = 0;
            std::array<std::byte, 12> buf{};
            auto const cmd =
                c.fam == wire::family::tpm2
                    ? wire::encode_into(buf, tpm2_shutdown{{wire::tpm_st::no_sessions, 12, wire::tpm_cc::shutdown}, 0})
                    : wire::encode_into(buf, wire::command_header{wire::tpm_st::rqu_command, 10,
                                                                  wire::tpm_cc::tpm12_save_state});
            XTPM_ASSERT(cmd.has_value());
            (void)process(c, *cmd);  // an rc (e.g. TPM_RC_INITIALIZE before Startup) changes nothing here
        }
        c.running.store(false);
        TPMLIB_Terminate();
        if (c.store_error) return std::unexpected{c.store_error};
        return {};
    }

    [[nodiscard]] auto running() const -> bool { return get().running.load(); }

    // --- stateful_device ----------------------------------------------------
    // Running: the live TPM's blob (TPMLIB_GetState). Off: the stored blob. An
    // absent blob (e.g. TPM 2.0 save state) is an empty vector.
    auto get_state(state_blob t) -> result<std::vector<std::byte>> {
        auto& c = get();
        if (detail::blob_name(t).empty()) return fail(errc::bad_value);
        if (!c.running.load()) {
            auto stored = c.store.load(detail::blob_name(t));
            if (!stored) return std::unexpected{stored.error()};
            return std::move(*stored).value_or(std::vector<std::byte>{});
        }
        unsigned char* raw = nullptr;
        std::uint32_t len = 0;
        auto const rc = TPMLIB_GetState(detail::libtpms_state_type(t), &raw, &len);
        detail::malloc_ptr const owned{raw};
        if (rc != TPM_SUCCESS) return fail(errc::device_failure);
        auto const b = detail::as_bytes(raw, raw ? len : 0);
        return std::vector<std::byte>(b.begin(), b.end());
    }

    // Only while off (errc::busy otherwise). libtpms parses the blob first; one
    // it refuses is errc::bad_state and nothing is stored. Volatile state is
    // checked against the stored permanent state, so set that first.
    auto set_state(state_blob t, wire::bytes_view blob) -> result<void> {
        auto& c = get();
        if (c.running.load()) return fail(errc::busy);
        if (detail::blob_name(t).empty()) return fail(errc::bad_value);
        // An empty blob would tell libtpms to hide the stored one (TPMLIB_SetState(3)).
        if (blob.empty() || blob.size() > std::numeric_limits<std::uint32_t>::max()) return fail(errc::bad_state);
        if (auto r = select(c); !r) return r;
        c.store_error = {};
        if (auto r = set_cached(c, t, blob); !r) return r;
        if (t == state_blob::permanent) {
            if (auto r = c.store.remove(volatile_blob_name); !r) return r;
            if (auto r = c.store.remove(save_state_blob_name); !r) return r;
        }
        return c.store.save(detail::blob_name(t), blob);
    }

    // Snapshot the running TPM's volatile state into the store; the next
    // power_on(false) resumes from it once.
    auto store_volatile() -> result<void> {
        auto& c = get();
        if (!c.running.load()) return fail(errc::not_running);
        auto v = get_state(state_blob::volatile_state);
        if (!v) return std::unexpected{v.error()};
        if (v->empty()) return fail(errc::device_failure);
        return c.store.save(volatile_blob_name, *v);
    }

    // --- established_device -------------------------------------------------
    auto tpm_established() -> result<bool> {
        if (!get().running.load()) return fail(errc::not_running);
        TPM_BOOL established = 0;
        if (TPM_IO_TpmEstablished_Get(&established) != TPM_SUCCESS) return fail(errc::device_failure);
        return established != 0;
    }

    // Only from locality 3 or 4 (TIS 1.3 section 5.6.11); libtpms checks it
    // again through the locality callback.
    auto reset_established(std::uint8_t locality) -> result<void> {
        auto& c = get();
        if (!c.running.load()) return fail(errc::not_running);
        if (locality > wire::max_locality || locality < 3) return fail(errc::bad_locality);
        c.locality = locality;
        auto const rc = TPM_IO_TpmEstablished_Reset();
        if (rc == TPM_BAD_LOCALITY) return fail(errc::bad_locality);
        if (rc != TPM_SUCCESS) return fail(errc::device_failure);
        return {};
    }

    // --- buffer_sized_device ------------------------------------------------
    auto set_buffer_size(std::uint32_t size) -> result<buffer_sizes> {
        auto& c = get();
        if (size != 0) {
            if (c.running.load()) return fail(errc::busy);
            c.buffer_size = size;
            if (auto r = select(c); !r) return std::unexpected{r.error()};
        }
        return buffer_sizes{c.buffer_size, c.min_size, c.max_size};
    }

    // --- described_device: libtpms answers for the chosen family, running or not.
    auto info(std::uint64_t flags) -> result<std::string> {
        (void)get();
        std::unique_ptr<char, decltype(&std::free)> json{TPMLIB_GetInfo(static_cast<TPMLIB_InfoFlags>(flags)), &std::free};
        if (!json) return fail(errc::device_failure);
        return std::string{json.get()};
    }

    // --- hashing_device: the DRTM sequence, at locality 4 -------------------
    auto hash_start() -> result<void> { return hash_call([] { return TPM_IO_Hash_Start(); }); }
    auto hash_data(wire::bytes_view data) -> result<void> {
        if (data.size() > std::numeric_limits<std::uint32_t>::max()) return fail(errc::too_large);
        return hash_call([&] {
            return TPM_IO_Hash_Data(reinterpret_cast<unsigned char const*>(data.data()),  // see detail::as_bytes
                                    static_cast<std::uint32_t>(data.size()));
        });
    }
    auto hash_end() -> result<void> { return hash_call([] { return TPM_IO_Hash_End(); }); }

    // The first store failure inside a libtpms callback since power_on(), if any.
    [[nodiscard]] auto store_error() const -> std::error_code { return get().store_error; }
    [[nodiscard]] auto store() -> Store& { return get().store; }

private:
    struct tpm2_shutdown {  // TPM2_Shutdown, TPM 2.0 Part 3 section 9.4
        wire::command_header header;
        std::uint16_t shutdown_type;  // TPM_SU_CLEAR = 0
        static constexpr auto fields = wire::describe(&tpm2_shutdown::header, &tpm2_shutdown::shutdown_type);
    };

    // Everything libtpms's callbacks reach, on the heap so that moving the device
    // never moves it: `live` stays valid for the object's whole life.
    struct core {
        core(Store s, libtpms_options const& o) : store{std::move(s)}, fam{o.family}, buffer_size{o.buffer_size} {
            live = this;
        }
        core(core const&) = delete;
        auto operator=(core const&) -> core& = delete;
        ~core() {
            std::free(resp);
            live = nullptr;
            detail::libtpms_claimed.store(false);
        }

        Store store;
        wire::family fam;
        std::uint32_t buffer_size;
        std::uint32_t min_size = 0;
        std::uint32_t max_size = 0;
        std::atomic<bool> running{false};
        bool shut_down = false;              // the last command was a successful Shutdown / SaveState
        TPM_MODIFIER_INDICATOR locality = 0;  // what the getlocality callback reports
        unsigned char* resp = nullptr;        // malloc'ed; libtpms reallocs it as needed
        std::uint32_t resp_cap = 0;
        std::error_code store_error;

        inline static core* live = nullptr;

        void note(std::error_code ec) noexcept {
            if (!store_error) store_error = ec;
        }

        // libtpms's NV and I/O callbacks. C code calls them: never throw through it.
        static auto nvram_init() noexcept -> TPM_RESULT { return live ? TPM_SUCCESS : TPM_FAIL; }

        static auto nvram_load(unsigned char** data, std::uint32_t* length, std::uint32_t, char const* name) noexcept
            -> TPM_RESULT {
            *data = nullptr;
            *length = 0;
            if (!live || !name) return TPM_FAIL;
            std::string_view const n{name};
            // Volatile state reaches libtpms only through power_on()'s SetState, so it is consumed once.
            if (n == volatile_blob_name) return TPM_RETRY;
            auto blob = live->store.load(n);
            if (!blob) {
                live->note(blob.error());
                return TPM_FAIL;  // unreadable is never "absent": no manufacture over it
            }
            if (!*blob) return TPM_RETRY;  // absent: libtpms manufactures a new TPM
            auto const& b = **blob;
            if (b.empty() || b.size() > std::numeric_limits<std::uint32_t>::max()) {
                live->note(make_error_code(errc::bad_state));
                return TPM_FAIL;
            }
            auto* p = static_cast<unsigned char*>(std::malloc(b.size()));  // libtpms free()s it
            if (!p) return TPM_FAIL;
            std::memcpy(p, b.data(), b.size());
            *data = p;
            *length = static_cast<std::uint32_t>(b.size());
            return TPM_SUCCESS;
        }

        static auto nvram_store(unsigned char const* data, std::uint32_t length, std::uint32_t,
                                char const* name) noexcept -> TPM_RESULT {
            if (!live || !name || (!data && length != 0)) return TPM_FAIL;
            auto r = live->store.save(name, detail::as_bytes(data, length));
            if (!r) {
                live->note(r.error());
                return TPM_FAIL;
            }
            return TPM_SUCCESS;
        }

        static auto nvram_delete(std::uint32_t, char const* name, TPM_BOOL must_exist) noexcept -> TPM_RESULT {
            if (!live || !name) return TPM_FAIL;
            if (must_exist) {
                auto b = live->store.load(name);
                if (!b) live->note(b.error());
                if (!b || !*b) return TPM_FAIL;
            }
            auto r = live->store.remove(name);
            if (!r) {
                live->note(r.error());
                return TPM_FAIL;
            }
            return TPM_SUCCESS;
        }

        static auto io_init() noexcept -> TPM_RESULT { return TPM_SUCCESS; }
        static auto io_locality(TPM_MODIFIER_INDICATOR* loc, std::uint32_t) noexcept -> TPM_RESULT {
            *loc = live ? live->locality : 0;
            return TPM_SUCCESS;
        }
        static auto io_physical_presence(TPM_BOOL* pp, std::uint32_t) noexcept -> TPM_RESULT {
            *pp = 0;  // never asserted: a vTPM has no physical operator
            return TPM_SUCCESS;
        }
    };

    explicit libtpms_device(std::unique_ptr<core> c) noexcept : c_{std::move(c)} {}

    // A moved-from device has no core; using one is a bug.
    auto get() const -> core& {
        XTPM_ASSERT(c_ != nullptr);
        return *c_;
    }

    void release() noexcept {
        if (c_ && c_->running.load()) (void)power_off();
        c_.reset();
    }

    // Prepare libtpms for this device: its family, its callbacks, its buffer size.
    // Choosing the other family first drops blobs an earlier SetState left in
    // libtpms's cache (TPMLIB_SetState(3): a change of version clears them), so
    // MainInit sees only what this device sets.
    static auto select(core& c) -> result<void> {
        auto const other = c.fam == wire::family::tpm2 ? wire::family::tpm12 : wire::family::tpm2;
        if (TPMLIB_ChooseTPMVersion(detail::libtpms_version(other)) != TPM_SUCCESS ||
            TPMLIB_ChooseTPMVersion(detail::libtpms_version(c.fam)) != TPM_SUCCESS)
            return fail(errc::device_failure);  // someone else left libtpms initialised
        libtpms_callbacks cbs{};
        cbs.sizeOfStruct = sizeof cbs;
        cbs.tpm_nvram_init = &core::nvram_init;
        cbs.tpm_nvram_loaddata = &core::nvram_load;
        cbs.tpm_nvram_storedata = &core::nvram_store;
        cbs.tpm_nvram_deletename = &core::nvram_delete;
        cbs.tpm_io_init = &core::io_init;
        cbs.tpm_io_getlocality = &core::io_locality;
        cbs.tpm_io_getphysicalpresence = &core::io_physical_presence;
        if (TPMLIB_RegisterCallbacks(&cbs) != TPM_SUCCESS) return fail(errc::device_failure);
        std::uint32_t mn = 0, mx = 0;
        c.buffer_size = TPMLIB_SetBufferSize(c.buffer_size, &mn, &mx);
        c.min_size = mn;
        c.max_size = mx;
        return {};
    }

    // TPMLIB_SetState parses the blob and keeps it for the next MainInit. It is
    // the validity check: TPMLIB_ValidateState would read the permanent state
    // through the load callback, i.e. the stored blob, not the candidate.
    // A store failure while libtpms reads the permanent state for a volatile
    // blob is reported as itself, not as a bad blob.
    static auto set_cached(core& c, state_blob t, wire::bytes_view blob) -> result<void> {
        if (blob.empty() || blob.size() > std::numeric_limits<std::uint32_t>::max()) return fail(errc::bad_state);
        auto const rc = TPMLIB_SetState(detail::libtpms_state_type(t),
                                        reinterpret_cast<unsigned char const*>(blob.data()),  // see detail::as_bytes
                                        static_cast<std::uint32_t>(blob.size()));
        if (rc == TPM_SUCCESS) return {};
        if (c.store_error) return std::unexpected{c.store_error};
        return fail(errc::bad_state);
    }

    static auto process(core& c, wire::bytes_view cmd) -> result<wire::response_view> {
        std::uint32_t len = 0;
        // TPMLIB_Process takes a non-const command but never writes it (toolchain.md section 7.5).
        auto* in = const_cast<unsigned char*>(reinterpret_cast<unsigned char const*>(cmd.data()));
        auto const rc = TPMLIB_Process(&c.resp, &len, &c.resp_cap, in, static_cast<std::uint32_t>(cmd.size()));
        if (rc != TPM_SUCCESS || !c.resp || len < wire::header_size || len > c.resp_cap)
            return fail(errc::device_failure);
        return wire::response_view{detail::as_bytes(c.resp, len)};
    }

    template <class F>
    auto hash_call(F&& f) -> result<void> {
        auto& c = get();
        if (!c.running.load()) return fail(errc::not_running);
        c.locality = 4;
        if (std::forward<F>(f)() != TPM_SUCCESS) return fail(errc::device_failure);
        return {};
    }

    std::unique_ptr<core> c_;
};

}  // namespace xtpm
