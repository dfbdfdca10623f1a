// The tpm_device concept family: what executes TPM commands, and the optional
// capabilities that control channels use (cancel, power, state blobs).
// Valid expressions: docs/concepts/tpm_device.md.
#pragma once

#include <xtpm/wire/header.hpp>

#include <concepts>
#include <string>
#include <utility>
#include <vector>

namespace xtpm {

// A tpm_device runs one TPM command to completion and returns one response.
// Models: libtpms_device; later tis_device, manager_device, forward<Client>.
// Not checked by the compiler:
//  - blocking; never more than one command in flight on one device object
//    (the pipeline serialises callers);
//  - the returned view aliases `scratch` or device-owned storage and is
//    invalid after the next call on the device;
//  - a TPM error is a successful call whose response carries rc != success;
//    an errc means the device could not produce any response;
//  - family() and max_command_size() describe what the pipeline admits.
template <class D>
concept tpm_device = requires(D& d, D const& cd, wire::command_view cmd, wire::bytes_span scratch) {
    { d.execute(cmd, scratch) } -> std::same_as<result<wire::response_view>>;
    { cd.family() } -> std::same_as<wire::family>;
    { cd.max_command_size() } -> std::same_as<std::size_t>;
};

// cancel() may be called from any thread while execute() runs, and asks the
// device to end the command early (it then answers TPM_RC_CANCELED or finishes).
template <class D>
concept cancellable_device = tpm_device<D> && requires(D& d) {
    { d.cancel() } noexcept -> std::same_as<void>;
};

// Power cycle as a control channel sees it (swtpm INIT/STOP, mssim POWER_ON/OFF).
// power_off() shuts the TPM down orderly and persists its state first.
template <class D>
concept powered_device = tpm_device<D> && requires(D& d, D const& cd, bool delete_volatile) {
    { d.power_on(delete_volatile) } -> std::same_as<result<void>>;
    { d.power_off() } -> std::same_as<result<void>>;
    { cd.running() } -> std::same_as<bool>;
};

// The three state blobs of swtpm's control channel and of migration.
enum class state_blob : std::uint32_t { permanent = 1, volatile_state = 2, save_state = 3 };

// Whole-state access for GET/SET_STATEBLOB and STORE_VOLATILE. set_state() is
// only allowed while the device is powered off and validates the blob.
template <class D>
concept stateful_device = tpm_device<D> && requires(D& d, state_blob t, wire::bytes_view blob) {
    { d.get_state(t) } -> std::same_as<result<std::vector<std::byte>>>;
    { d.set_state(t, blob) } -> std::same_as<result<void>>;
    { d.store_volatile() } -> std::same_as<result<void>>;
};

}  // namespace xtpm

namespace xtpm {

// TPM_ACCESS.tpmEstablishment as swtpm's GET/RESET_TPMESTABLISHED expose it:
// reset only from locality 3 or 4 (TIS 1.3 section 5.6.11).
template <class D>
concept established_device = tpm_device<D> && requires(D& d, std::uint8_t locality) {
    { d.tpm_established() } -> std::same_as<result<bool>>;
    { d.reset_established(locality) } -> std::same_as<result<void>>;
};

struct buffer_sizes {
    std::uint32_t size, min, max;
};

// swtpm SET_BUFFERSIZE: 0 queries; a new size is only accepted while powered off
// and is clamped to [min, max] as libtpms does.
template <class D>
concept buffer_sized_device = tpm_device<D> && requires(D& d, std::uint32_t size) {
    { d.set_buffer_size(size) } -> std::same_as<result<buffer_sizes>>;
};

// The DRTM hash sequence (swtpm HASH_START/DATA/END, mssim SIGNAL_HASH_*),
// TIS 1.3 section 5.6.12; runs at locality 4.
template <class D>
concept hashing_device = tpm_device<D> && requires(D& d, wire::bytes_view data) {
    { d.hash_start() } -> std::same_as<result<void>>;
    { d.hash_data(data) } -> std::same_as<result<void>>;
    { d.hash_end() } -> std::same_as<result<void>>;
};

// libtpms's self-description as JSON (TPMLIB_GetInfo; swtpm GET_INFO): `flags` selects the parts
// (1 specification, 2 attributes, 4 features; others are libtpms's to know or ignore).
template <class D>
concept described_device = tpm_device<D> && requires(D& d, std::uint64_t flags) {
    { d.info(flags) } -> std::same_as<result<std::string>>;
};

// A device with events of its own that must be handled while no command runs: a guest-side
// tpmif frontend hears the backend close or come back over xenstore (Linux's xenwatch thread).
// event_fd() is readable when service() has something to do; service() never blocks and runs
// under the device lock like execute(). Its error means the events can no longer arrive.
template <class D>
concept evented_device = tpm_device<D> && requires(D& d, D const& cd) {
    { cd.event_fd() } -> std::same_as<int>;
    { d.service() } -> std::same_as<result<void>>;
};

}  // namespace xtpm
