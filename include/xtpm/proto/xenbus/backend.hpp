// The backend's half of the vtpm xenbus handshake, sans-I/O, after Mini-OS tpmback
// (xen-vtpm-protocol.md 4.3 steps 2 and 4, 4.4, and the checklist of section 9):
// uuid required, feature-protocol-v2 published, InitWait, connect on frontend
// Initialised/Connected, reopen after the frontend closes (Closed and stay when the
// toolstack set online=0), Closed when the frontend's state node disappears. One object
// per <frontend-id>/<devid> directory.
#pragma once

#include <xtpm/proto/xenbus/common.hpp>

#include <span>

namespace xtpm::proto::xenbus {

struct backend_config {
    bool extra_pages = false;  // advertise feature-extra-pages (the channel can map extra refs)
};

// Not checked by the compiler: the I/O layer performs the actions of one call in order
// and feeds back exactly what they ask for (on_values after read_keys, on_mapped after
// map_ring); a watch on <frontend>/state is reported as on_frontend_state(value read).
class backend_handshake {
public:
    // `dir` is /local/domain/<self>/backend/vtpm/<frontend_id>/<devid>: the identity of
    // the peer comes from where the toolstack put the directory, not from its contents.
    backend_handshake(std::string dir, domid frontend_id, backend_config cfg = {})
        : dir_{std::move(dir)}, frontend_id_{frontend_id}, cfg_{cfg} {}

    // A new backend directory appeared (or existed at start-up).
    auto start() -> actions {
        if (phase_ != phase::created) return {};
        phase_ = phase::reading_identity;
        return {read_keys{{join(dir_, keys::uuid), join(dir_, keys::frontend)}}};
    }

    // The values of the last read_keys, in order.
    auto on_values(std::span<std::optional<std::string> const> values) -> actions {
        if (phase_ == phase::reading_identity && values.size() == 2) return identity_read(values[0], values[1]);
        if (phase_ == phase::reading_ring && values.size() == ring_keys()) return ring_read(values);
        if (phase_ == phase::reading_online && values.size() == 1) return online_read(values[0]);
        return {};  // stale: the handshake moved on while the read was in flight
    }

    // <frontend>/state after its watch fired; nullopt when the node is gone.
    auto on_frontend_state(std::optional<std::string_view> value) -> actions {
        if (!watching()) return {};
        auto const s = value ? parse_state(*value) : result<device_state>{fail(errc::bad_value)};
        // Gone, Unknown or not a state at all (Linux reads the latter as Unknown): teardown.
        if (!s || *s == device_state::unknown) return teardown();
        switch (*s) {
        case device_state::initialised:
        case device_state::connected:
            if (phase_ != phase::init_wait) return {};  // connecting or connected already
            phase_ = phase::reading_ring;
            return {read_keys{ring_paths()}};
        case device_state::closing:
            if (phase_ == phase::failed) return {};
            phase_ = phase::closing;
            return switch_to(device_state::closing);
        case device_state::closed: {  // reopen, unless the toolstack is removing the device
            actions out = unmap();
            phase_ = phase::reading_online;
            out.emplace_back(read_keys{{join(dir_, keys::online)}});
            return out;
        }
        default: return {};  // Initialising, InitWait, Reconfiguring/-ed: nothing to do
        }
    }

    // Outcome of the last map_ring (grant mapped and port bound, or not).
    auto on_mapped(result<void> const& r) -> actions {
        if (phase_ != phase::mapping) {
            if (r) return {unmap_ring{}};  // the frontend closed meanwhile
            return {};
        }
        if (!r) return fail_with("cannot map ring-ref or bind event-channel: " + r.error().message());
        mapped_ = true;
        phase_ = phase::connected;
        actions out{write_keys{{{join(dir_, keys::ready), "1"}}}};
        append(out, switch_to(device_state::connected));
        return out;
    }

    // The backend stops serving this device (daemon exit, backend directory removed):
    // unmap, Closed, stop watching. The directory itself stays (the toolstack owns it).
    auto close() -> actions {
        if (!alive()) return {};
        actions out = unmap();
        if (watching()) out.emplace_back(unwatch_path{join(frontend_dir_, keys::state)});
        append(out, switch_to(device_state::closed));
        phase_ = phase::gone;
        return out;
    }

    [[nodiscard]] auto state() const noexcept -> device_state { return state_; }
    // False once the instance was refused or torn down: the I/O layer drops it.
    [[nodiscard]] auto alive() const noexcept -> bool { return phase_ != phase::refused && phase_ != phase::gone; }
    [[nodiscard]] auto connected() const noexcept -> bool { return phase_ == phase::connected; }
    [[nodiscard]] auto reason() const noexcept -> std::string const& { return reason_; }
    [[nodiscard]] auto uuid() const noexcept -> std::optional<uuid_bytes> const& { return uuid_; }
    [[nodiscard]] auto frontend_dir() const noexcept -> std::string const& { return frontend_dir_; }
    [[nodiscard]] auto frontend_id() const noexcept -> domid { return frontend_id_; }
    [[nodiscard]] auto dir() const noexcept -> std::string const& { return dir_; }
    [[nodiscard]] auto extra_pages() const noexcept -> bool { return extra_pages_; }

private:
    enum class phase : std::uint8_t {
        created, reading_identity, init_wait, reading_ring, mapping, connected, closing, reading_online, failed,
        refused, gone
    };

    auto identity_read(std::optional<std::string> const& uuid, std::optional<std::string> const& fe) -> actions {
        if (!uuid) return refuse("no uuid in " + dir_);
        auto parsed = parse_uuid(*uuid);
        if (!parsed) return refuse("uuid in " + dir_ + " is not a canonical UUID");
        if (!fe) return refuse("no frontend path in " + dir_);
        if (!path_under_domain(*fe, frontend_id_))
            return refuse("frontend path in " + dir_ + " is not under domain " + std::to_string(frontend_id_));
        uuid_ = *parsed;
        frontend_dir_ = *fe;
        phase_ = phase::init_wait;
        write_keys features{{{join(dir_, keys::protocol_v2), "1"}}};
        if (cfg_.extra_pages) features.entries.emplace_back(join(dir_, keys::extra_pages), "1");
        actions out{std::move(features)};
        append(out, switch_to(device_state::init_wait));
        out.emplace_back(watch_path{join(frontend_dir_, keys::state)});
        return out;
    }

    auto ring_read(std::span<std::optional<std::string> const> v) -> actions {
        if (!v[0]) return fail_with("frontend wrote no ring-ref");
        auto const ref = parse_decimal(*v[0], max_grant_ref);
        if (!ref) return fail_with("frontend ring-ref is not a grant reference");
        if (!v[1]) return fail_with("frontend wrote no event-channel");
        auto const port = parse_decimal(*v[1], max_port);
        if (!port || *port == 0) return fail_with("frontend event-channel is not a port");
        if (v[2] != "1") return fail_with("vTPM protocol 2 required: frontend feature-protocol-v2 is not 1");
        extra_pages_ = cfg_.extra_pages && v[3] == "1";  // v has 4 entries when extra_pages
        phase_ = phase::mapping;
        return {map_ring{frontend_id_, static_cast<grant_ref>(*ref), static_cast<evtchn_port>(*port), extra_pages_}};
    }

    [[nodiscard]] auto ring_keys() const noexcept -> std::size_t { return cfg_.extra_pages ? 4 : 3; }
    [[nodiscard]] auto ring_paths() const -> std::vector<std::string> {
        std::vector<std::string> p{join(frontend_dir_, keys::ring_ref), join(frontend_dir_, keys::event_channel),
                                   join(frontend_dir_, keys::protocol_v2)};
        if (cfg_.extra_pages) p.push_back(join(frontend_dir_, keys::extra_pages));
        return p;
    }
    [[nodiscard]] auto watching() const noexcept -> bool {
        return phase_ != phase::created && phase_ != phase::reading_identity && alive();
    }

    // The frontend closed. online = "0": `xl vtpm-detach` or `xl destroy` is removing the
    // device and waits for Closed (libxl's device removal; Linux's blkback and netback check
    // xenbus_dev_is_online() the same way). Otherwise the frontend closed on its own
    // (xtpm-front's exit, Mini-OS kexec, a guest reboot in place): InitWait for the next one.
    auto online_read(std::optional<std::string> const& online) -> actions {
        if (online == "0") {
            phase_ = phase::gone;
            actions out = switch_to(device_state::closed);
            out.emplace_back(unwatch_path{join(frontend_dir_, keys::state)});
            return out;
        }
        phase_ = phase::init_wait;
        return switch_to(device_state::init_wait);
    }

    // The frontend's state node is gone: Closing, Closed. The directory is the toolstack's:
    // libxl waits on its state for Closed and removes it; removing it ourselves raced with
    // that watch ("wanted state 6 but it was removed", seen on real Xen, docs/xen.md).
    auto teardown() -> actions {
        actions out = unmap();
        append(out, switch_to(device_state::closing));
        append(out, switch_to(device_state::closed));
        out.emplace_back(unwatch_path{join(frontend_dir_, keys::state)});
        phase_ = phase::gone;
        return out;
    }

    // The instance is not created: Closed, and the reason for the log.
    auto refuse(std::string why) -> actions {
        reason_ = std::move(why);
        phase_ = phase::refused;
        return switch_to(device_state::closed);
    }

    // Any failure while connecting: Closed with the reason; a frontend Closed reopens.
    auto fail_with(std::string why) -> actions {
        reason_ = std::move(why);
        actions out = unmap();
        phase_ = phase::failed;
        append(out, switch_to(device_state::closed));
        return out;
    }

    auto unmap() -> actions {
        if (!mapped_) return {};
        mapped_ = false;
        extra_pages_ = false;
        return {unmap_ring{}};
    }

    auto switch_to(device_state s) -> actions {
        if (state_ == s) return {};
        state_ = s;
        return {switch_state{join(dir_, keys::state), s}};
    }

    std::string dir_;
    domid frontend_id_;
    backend_config cfg_;
    phase phase_ = phase::created;
    device_state state_ = device_state::initialising;  // what the toolstack wrote
    bool mapped_ = false;
    bool extra_pages_ = false;
    std::optional<uuid_bytes> uuid_;
    std::string frontend_dir_;
    std::string reason_;
};

}  // namespace xtpm::proto::xenbus
