// A device for the socket-source tests: models every capability concept in
// device/concepts.hpp and records what it was asked, so tests can check what a
// control channel did. The real libtpms device is tested elsewhere.
#pragma once

#include <xtpm/device/concepts.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace xtpm::test {

// Shared between the device (moved into a pipeline) and the test.
struct fake_log {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> calls;
    bool executing = false;
    bool cancel_requested = false;
    int cancels = 0;

    void add(std::string s) {
        std::lock_guard lock{mu};
        calls.push_back(std::move(s));
    }
    auto snapshot() -> std::vector<std::string> {
        std::lock_guard lock{mu};
        return calls;
    }
    auto count(std::string const& s) -> long {
        std::lock_guard lock{mu};
        return std::ranges::count(calls, s);
    }
    // Wait (bounded) until a slow command is inside execute().
    auto wait_executing(std::chrono::milliseconds limit) -> bool {
        std::unique_lock lock{mu};
        return cv.wait_for(lock, limit, [&] { return executing; });
    }
};

// A command code the fake runs slowly: it returns when canceled, or after `slow_limit`.
inline constexpr std::uint32_t slow_code = 0x20000001;

struct fake_device {
    std::shared_ptr<fake_log> log = std::make_shared<fake_log>();
    wire::family fam = wire::family::tpm2;
    std::uint32_t buffer = 4096;
    bool on = true;
    bool established = true;
    std::map<state_blob, std::vector<std::byte>> blobs;
    std::chrono::milliseconds slow_limit{5000};
    bool short_answers = false;  // answer a bare 10-byte success header, as TPM2_Startup does

    // Answers {tag, size 15, rc}{u8 locality}{u32 command code}; TPM_RC_CANCELED if canceled.
    auto execute(wire::command_view cmd, wire::bytes_span scratch) -> result<wire::response_view> {
        if (!on) return fail(errc::not_running);
        auto const code = static_cast<std::uint32_t>(cmd.header.code);
        log->add("execute " + std::to_string(code) + " at " + std::to_string(cmd.locality));
        auto rc = wire::tpm_rc::success;
        if (code == slow_code) {
            std::unique_lock lock{log->mu};
            log->executing = true;
            log->cv.notify_all();
            log->cv.wait_for(lock, slow_limit, [&] { return log->cancel_requested; });
            if (log->cancel_requested) rc = wire::rc2::canceled;
            log->executing = false;
            log->cancel_requested = false;
        }
        wire::writer w{scratch};
        if (short_answers) {
            w.write_be(wire::tpm_st::no_sessions).write_be(std::uint32_t{10}).write_be(rc);
            auto out = w.finish();
            if (!out) return std::unexpected{out.error()};
            return wire::response_view{*out};
        }
        w.write_be(fam == wire::family::tpm2 ? wire::tpm_st::no_sessions : wire::tpm_st::rsp_command);
        w.write_be(std::uint32_t{15});
        w.write_be(rc);
        w.write_be(cmd.locality);
        w.write_be(code);
        auto out = w.finish();
        if (!out) return std::unexpected{out.error()};
        return wire::response_view{*out};
    }
    auto family() const -> wire::family { return fam; }
    auto max_command_size() const -> std::size_t { return buffer; }

    void cancel() noexcept {
        std::lock_guard lock{log->mu};
        ++log->cancels;
        if (log->executing) log->cancel_requested = true;
        log->cv.notify_all();
    }

    auto power_on(bool delete_volatile) -> result<void> {
        log->add(delete_volatile ? "power_on delete_volatile" : "power_on");
        on = true;
        return {};
    }
    auto power_off() -> result<void> {
        log->add("power_off");
        on = false;
        return {};
    }
    auto running() const -> bool { return on; }

    auto get_state(state_blob t) -> result<std::vector<std::byte>> {
        log->add("get_state " + std::to_string(static_cast<int>(t)));
        auto it = blobs.find(t);
        if (it == blobs.end()) return std::vector<std::byte>{};
        return it->second;
    }
    // A blob starting with 0xBA is "corrupt".
    auto set_state(state_blob t, wire::bytes_view blob) -> result<void> {
        log->add("set_state " + std::to_string(static_cast<int>(t)) + " " + std::to_string(blob.size()));
        if (on) return fail(errc::busy);
        if (!blob.empty() && blob[0] == std::byte{0xBA}) return fail(errc::bad_state);
        blobs[t].assign(blob.begin(), blob.end());
        return {};
    }
    auto store_volatile() -> result<void> {
        log->add("store_volatile");
        return {};
    }

    // Longer than one GET_INFO chunk (3 KiB), so the server must page it by offset.
    auto info(std::uint64_t flags) -> result<std::string> {
        log->add("info " + std::to_string(flags));
        return "{\"flags\":" + std::to_string(flags) + ",\"pad\":\"" + std::string(3100, 'x') + "\"}";
    }

    auto tpm_established() -> result<bool> { return established; }
    auto reset_established(std::uint8_t locality) -> result<void> {
        if (locality < 3) return fail(errc::bad_locality);
        established = false;
        return {};
    }

    // As libtpms: 0 queries; a new size only while off, clamped to [2808, 4096].
    auto set_buffer_size(std::uint32_t size) -> result<buffer_sizes> {
        if (size != 0) {
            if (on) return fail(errc::busy);
            buffer = std::clamp<std::uint32_t>(size, 2808, 4096);
        }
        return buffer_sizes{buffer, 2808, 4096};
    }

    auto hash_start() -> result<void> { log->add("hash_start"); return {}; }
    auto hash_data(wire::bytes_view d) -> result<void> {
        log->add("hash_data " + std::to_string(d.size()));
        return {};
    }
    auto hash_end() -> result<void> { log->add("hash_end"); return {}; }
};

// Only a tpm_device: every optional capability is missing.
struct bare_device {
    auto execute(wire::command_view cmd, wire::bytes_span scratch) -> result<wire::response_view> {
        auto out = wire::encode_into(scratch, wire::response_header{wire::tpm_st::no_sessions, 10, wire::tpm_rc::success});
        (void)cmd;
        if (!out) return std::unexpected{out.error()};
        return wire::response_view{*out};
    }
    auto family() const -> wire::family { return wire::family::tpm2; }
    auto max_command_size() const -> std::size_t { return 4096; }
};

static_assert(cancellable_device<fake_device> && powered_device<fake_device> && stateful_device<fake_device> &&
              established_device<fake_device> && buffer_sized_device<fake_device> && hashing_device<fake_device>);
static_assert(tpm_device<bare_device> && !powered_device<bare_device> && !cancellable_device<bare_device>);

}  // namespace xtpm::test
