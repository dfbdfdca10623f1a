// The frontend's half of the vtpm xenbus handshake, sans-I/O, in the two flavours that
// exist (xen-vtpm-protocol.md 4.1, 4.3, 4.4 and the checklist of section 9):
//  - Linux xen-tpmfront: ring-ref, event-channel and feature-protocol-v2 in one
//    transaction (retried on EAGAIN), Initialised; Connected once the backend is
//    Initialised/Connected with a non-zero feature-protocol-v2; Closed when it closes.
//  - Mini-OS tpmfront: feature-protocol-v2 first, the ring keys in a transaction, then
//    Connected directly; waits for backend Connected and requires exactly "1".
#pragma once

#include <xtpm/proto/xenbus/common.hpp>

#include <span>

namespace xtpm::proto::xenbus {

enum class frontend_variant : std::uint8_t { linux_driver, minios };

struct frontend_config {
    frontend_variant variant = frontend_variant::linux_driver;
    bool extra_pages = false;  // advertise feature-extra-pages
};

// Linux retries an EAGAIN transaction without bound; we stop after this many attempts
// (a store that conflicts this often is broken, not busy).
inline constexpr unsigned max_transaction_attempts = 64;

// Same I/O contract as backend_handshake; `dir` is /local/domain/<self>/device/vtpm/<devid>.
class frontend_handshake {
public:
    explicit frontend_handshake(std::string dir, frontend_config cfg = {}) : dir_{std::move(dir)}, cfg_{cfg} {}

    // The device directory exists (probe); also the first step of reopen().
    auto start() -> actions {
        if (phase_ != phase::created) return {};
        phase_ = phase::reading_backend;
        actions out = switch_to(device_state::initialising);
        out.emplace_back(read_keys{{join(dir_, keys::backend), join(dir_, keys::backend_id)}});
        return out;
    }

    auto on_values(std::span<std::optional<std::string> const> values) -> actions {
        if (phase_ == phase::reading_backend && values.size() == 2) return backend_read(values[0], values[1]);
        if (phase_ == phase::reading_features && values.size() == feature_keys()) return features_read(values);
        return {};
    }

    // setup_ring done: the page is granted to the backend and the port allocated.
    auto on_ring_ready(grant_ref ref, evtchn_port port) -> actions {
        if (phase_ != phase::setting_up) return {};
        ring_ = true;
        ring_ref_ = ref;
        port_ = port;
        phase_ = phase::publishing;
        attempts_ = 1;
        return {publish()};
    }
    auto on_ring_failed(std::error_code ec) -> actions {
        if (phase_ != phase::setting_up) return {};
        return fail_with("cannot set up the shared page: " + ec.message());
    }

    // Outcome of the write_keys transaction: committed, or false to restart it (EAGAIN).
    auto on_transaction(result<bool> const& committed) -> actions {
        if (phase_ != phase::publishing) return {};
        if (!committed) return fail_with("writing ring-ref/event-channel: " + committed.error().message());
        if (!*committed) {
            if (attempts_ >= max_transaction_attempts) return fail_with("xenstore transaction kept failing");
            ++attempts_;
            return {publish()};
        }
        phase_ = phase::wait_backend;
        watching_ = true;
        actions out = switch_to(cfg_.variant == frontend_variant::minios ? device_state::connected
                                                                         : device_state::initialised);
        out.emplace_back(watch_path{join(backend_dir_, keys::state)});
        return out;
    }

    // <backend>/state after its watch fired; nullopt when the node is gone.
    auto on_backend_state(std::optional<std::string_view> value) -> actions {
        if (!watching_) return {};
        auto const s = value ? parse_state(*value) : result<device_state>{fail(errc::bad_value)};
        auto const is = [&](device_state a) { return s && *s == a; };
        bool const closing = is(device_state::closing) || is(device_state::closed);
        switch (phase_) {
        case phase::wait_backend:
            if (is(device_state::connected) || (is(device_state::initialised) && !minios())) {
                phase_ = phase::reading_features;
                return {read_keys{feature_paths()}};
            }
            if (minios() && (closing || !s || is(device_state::unknown)))
                return fail_with("backend did not connect");
            if (closing) return closed_by_backend();
            return {};
        case phase::reading_features:
        case phase::connected:
            return closing ? closed_by_backend() : actions{};
        case phase::failed:  // Linux after xenbus_dev_fatal: Closing until the backend closes too
            return closing ? closed_by_backend() : actions{};
        case phase::closing_wait:  // Mini-OS shutdown: wait for backend Closed or InitWait
            if (s && !is(device_state::closed) && !is(device_state::init_wait) && !is(device_state::unknown))
                return {};
            {
                actions out = switch_to(device_state::initialising);  // reusable by a later user
                append(out, release());
                append(out, stop_watching());
                phase_ = phase::closed;
                return out;
            }
        default: return {};
        }
    }

    // Orderly shutdown (Mini-OS shutdown_tpmfront): Closing, remove the ring keys,
    // Closed, then wait for the backend before releasing the page.
    auto close() -> actions {
        if (phase_ == phase::created || phase_ == phase::closed || phase_ == phase::closing_wait) return {};
        actions out = switch_to(device_state::closing);
        out.emplace_back(remove_keys{{join(dir_, keys::ring_ref), join(dir_, keys::event_channel)}});
        append(out, switch_to(device_state::closed));
        if (watching_) {
            phase_ = phase::closing_wait;
            return out;
        }
        append(out, release());
        phase_ = phase::closed;
        return out;
    }

    // After Closed or a failure: start over from Initialising with a fresh page.
    auto reopen() -> actions {
        if (phase_ != phase::closed && phase_ != phase::failed) return {};
        actions out = release();
        append(out, stop_watching());
        phase_ = phase::created;
        reason_.clear();
        append(out, start());
        return out;
    }

    [[nodiscard]] auto state() const noexcept -> device_state { return state_; }
    [[nodiscard]] auto connected() const noexcept -> bool { return phase_ == phase::connected; }
    [[nodiscard]] auto closed() const noexcept -> bool { return phase_ == phase::closed || phase_ == phase::failed; }
    [[nodiscard]] auto reason() const noexcept -> std::string const& { return reason_; }
    [[nodiscard]] auto backend_dir() const noexcept -> std::string const& { return backend_dir_; }
    [[nodiscard]] auto backend_id() const noexcept -> domid { return backend_id_; }
    [[nodiscard]] auto extra_pages() const noexcept -> bool { return extra_pages_; }

private:
    enum class phase : std::uint8_t {
        created, reading_backend, setting_up, publishing, wait_backend, reading_features, connected,
        closing_wait, closed, failed
    };

    [[nodiscard]] auto minios() const noexcept -> bool { return cfg_.variant == frontend_variant::minios; }

    auto backend_read(std::optional<std::string> const& path, std::optional<std::string> const& id) -> actions {
        if (!id) return fail_with("no backend-id in " + dir_);
        auto const be = parse_decimal(*id, max_domid);
        if (!be) return fail_with("backend-id in " + dir_ + " is not a domain id");
        backend_id_ = static_cast<domid>(*be);
        if (!path || !path_under_domain(*path, backend_id_))
            return fail_with("backend path in " + dir_ + " is missing or not under the backend's domain");
        backend_dir_ = *path;
        phase_ = phase::setting_up;
        actions out;
        if (minios()) out.emplace_back(write_keys{features()});  // before the ring, outside the transaction
        out.emplace_back(setup_ring{backend_id_});
        return out;
    }

    auto features_read(std::span<std::optional<std::string> const> v) -> actions {
        // Linux: xenbus_read_unsigned(..., 0) must be non-zero; Mini-OS: the literal "1".
        bool const v2 = minios() ? v[0] == "1" : (v[0] && parse_decimal(*v[0], UINT32_MAX).value_or(0) != 0);
        if (!v2) return fail_with("vTPM protocol 2 required: backend feature-protocol-v2 is not set");
        extra_pages_ = cfg_.extra_pages && v[1] == "1";  // v has 2 entries when extra_pages
        phase_ = phase::connected;
        actions out = switch_to(device_state::connected);
        out.emplace_back(channel_ready{extra_pages_});
        return out;
    }

    [[nodiscard]] auto features() const -> std::vector<std::pair<std::string, std::string>> {
        std::vector<std::pair<std::string, std::string>> e{{join(dir_, keys::protocol_v2), "1"}};
        if (cfg_.extra_pages) e.emplace_back(join(dir_, keys::extra_pages), "1");
        return e;
    }

    // Linux: the three keys in one transaction; Mini-OS: the feature key went first.
    [[nodiscard]] auto publish() const -> write_keys {
        write_keys w{{{join(dir_, keys::ring_ref), std::to_string(ring_ref_)},
                      {join(dir_, keys::event_channel), std::to_string(port_)}},
                     true};
        if (!minios())
            for (auto& e : features()) w.entries.push_back(std::move(e));
        return w;
    }

    [[nodiscard]] auto feature_keys() const noexcept -> std::size_t { return cfg_.extra_pages ? 2 : 1; }
    [[nodiscard]] auto feature_paths() const -> std::vector<std::string> {
        std::vector<std::string> p{join(backend_dir_, keys::protocol_v2)};
        if (cfg_.extra_pages) p.push_back(join(backend_dir_, keys::extra_pages));
        return p;
    }

    // Backend Closing/Closed (Linux backend_changed): drop the device, Closed.
    auto closed_by_backend() -> actions {
        actions out = release();
        append(out, switch_to(device_state::closed));
        append(out, stop_watching());
        phase_ = phase::closed;
        return out;
    }

    // Linux xenbus_dev_fatal switches to Closing (and Closed once the backend follows);
    // Mini-OS gives up with Closed.
    auto fail_with(std::string why) -> actions {
        reason_ = std::move(why);
        actions out = release();
        phase_ = phase::failed;
        if (minios() || !watching_) {
            append(out, switch_to(device_state::closed));
            append(out, stop_watching());
        } else {
            append(out, switch_to(device_state::closing));
        }
        return out;
    }

    auto release() -> actions {
        if (!ring_) return {};
        ring_ = false;
        extra_pages_ = false;
        return {release_ring{}};
    }

    auto stop_watching() -> actions {
        if (!watching_) return {};
        watching_ = false;
        return {unwatch_path{join(backend_dir_, keys::state)}};
    }

    auto switch_to(device_state s) -> actions {
        if (state_ == s) return {};
        state_ = s;
        return {switch_state{join(dir_, keys::state), s}};
    }

    std::string dir_;
    frontend_config cfg_;
    phase phase_ = phase::created;
    device_state state_ = device_state::initialising;  // what the toolstack wrote
    bool ring_ = false;
    bool watching_ = false;
    bool extra_pages_ = false;
    unsigned attempts_ = 0;
    grant_ref ring_ref_ = 0;
    evtchn_port port_ = 0;
    domid backend_id_ = 0;
    std::string backend_dir_;
    std::string reason_;
};

}  // namespace xtpm::proto::xenbus
