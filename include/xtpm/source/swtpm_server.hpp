// swtpm_server: a request_source speaking swtpm's data channel (raw TPM
// commands, optional mssim prefix) and control channel (CMD_*), as QEMU's
// tpm-emulator backend, the tpm2-tss swtpm TCTI and swtpm_ioctl use them
// (peers-and-protocols.md 4.1, 4.2, 4.4, 4.5). Unlike swtpm 0.7.1 it frames by
// size, serves many clients at once, answers every malformed request, and cancels.
#pragma once

#include <xtpm/proto/swtpm_ctrl.hpp>
#include <xtpm/proto/tpm_stream.hpp>
#include <xtpm/source/detail/conn_loop.hpp>
#include <xtpm/source/detail/device_access.hpp>

#include <atomic>

#include <sys/stat.h>

namespace xtpm {

struct swtpm_server_options {
    // --server: absent when QEMU hands the data channel over with SET_DATAFD.
    std::optional<io::endpoint> data;
    // --ctrl: type=tcp (conventionally data port + 1) or type=unixio.
    io::endpoint ctrl = io::tcp_endpoint{};
    // An already connected data stream the server takes over (swtpm --fd);
    // create() owns it from the call on, and closes it if it fails.
    std::optional<int> data_fd;
    // Accept the in-band SetLocality vendor command (0x20001000) on the data
    // channel, as swtpm --locality allow-set-locality; otherwise the pipeline gets it.
    bool allow_set_locality = false;
    // SET_LOCALITY 4 (control or in-band) answers TPM_BAD_LOCALITY (--locality reject-locality-4).
    bool reject_locality_4 = false;
    // As swtpm with SET_DATAFD: serve() ends when an adopted data stream
    // (SET_DATAFD or data_fd) closes, i.e. when QEMU goes away.
    bool stop_when_datafd_closes = true;
    detail::loop_limits limits{};
};

class swtpm_server {
public:
    using options = swtpm_server_options;

    // Binds the listeners now, so that bind errors surface at start-up and
    // port 0 resolves (data_endpoint(), ctrl_endpoint()).
    static auto create(options opts) -> result<swtpm_server> {
        io::unique_fd data_fd{opts.data_fd.value_or(-1)};  // owned from here on, even on failure
        auto st = std::make_unique<state>();
        std::optional<io::unique_fd> data_listener;
        if (opts.data) {
            auto l = detail::open_listener(*opts.data);
            if (!l) return std::unexpected{l.error()};
            st->files.add(l->where);
            st->data_where = l->where;
            data_listener = std::move(l->fd);
        }
        auto ctrl_listener = detail::open_listener(opts.ctrl);
        if (!ctrl_listener) return std::unexpected{ctrl_listener.error()};
        st->files.add(ctrl_listener->where);
        st->ctrl_where = ctrl_listener->where;

        auto data = detail::conn_loop::create(std::move(data_listener),
                                              {opts.limits, false, opts.stop_when_datafd_closes});
        if (!data) return std::unexpected{data.error()};
        auto ctrl = detail::conn_loop::create(std::move(ctrl_listener->fd), {opts.limits, true, false});
        if (!ctrl) return std::unexpected{ctrl.error()};
        st->data = std::move(*data);
        st->ctrl = std::move(*ctrl);
        if (data_fd) st->data->adopt(std::move(data_fd));
        st->opts = std::move(opts);
        return swtpm_server{std::move(st)};
    }

    // Serve until stop(), CMD_SHUTDOWN, or (stop_when_datafd_closes) the
    // SET_DATAFD peer hanging up. Data commands run on this thread, the control
    // channel on its own, so CANCEL_TPM_CMD reaches a running command. The
    // device stays as it is: a role shuts it down after serve() if still running.
    template <class Handler>
    auto serve(Handler& h) -> result<void> {
        auto const caps = detail::probe_device(h);
        st_->max_command.store(caps.max_command);
        data_service<Handler> ds{h, *st_, caps};
        ctrl_service<Handler> cs{h, *st_, caps};
        return detail::run_pair(*st_->data, ds, *st_->ctrl, cs);
    }

    // Async-signal-safe.
    void stop() noexcept {
        st_->data->stop();
        st_->ctrl->stop();
    }

    [[nodiscard]] auto data_endpoint() const -> std::optional<io::endpoint> { return st_->data_where; }
    [[nodiscard]] auto ctrl_endpoint() const -> io::endpoint { return st_->ctrl_where; }
    // The locality raw data commands run at (SET_LOCALITY).
    [[nodiscard]] auto locality() const noexcept -> std::uint8_t { return st_->locality.load(); }

private:
    struct state {
        options opts;
        std::unique_ptr<detail::conn_loop> data, ctrl;
        std::optional<io::endpoint> data_where;
        io::endpoint ctrl_where;
        detail::socket_files files;
        std::atomic<std::uint8_t> locality{0};
        std::atomic<std::size_t> max_command{4096};  // follows SET_BUFFERSIZE
    };

    explicit swtpm_server(std::unique_ptr<state> st) noexcept : st_{std::move(st)} {}

    // Stamps a response into the connection's output.
    template <class T>
    static void send(detail::connection& c, T const& msg) {
        std::array<std::byte, 64> buf{};
        auto b = wire::encode_into(buf, msg);
        XTPM_ASSERT(b.has_value());
        c.send(*b);
    }
    static void send_result(detail::connection& c, wire::tpm_rc rc) { send(c, proto::swtpm::result_response{rc}); }
    static void send_result(detail::connection& c, result<void> const& r) {
        send_result(c, r ? proto::swtpm::res::success : proto::swtpm::to_result(r.error()));
    }

    // --- the data channel: TPM command frames -> pipeline -> responses ---
    template <class Handler>
    class data_service {
    public:
        data_service(Handler& h, state& st, detail::device_caps const& caps) : h_{h}, st_{st}, caps_{caps} {}

        auto on_input(detail::connection& c) -> detail::step {
            auto const max = st_.max_command.load(std::memory_order_relaxed);
            auto const buf = reply_.span(max);
            auto f = proto::next_frame(c.input(), caps_.family, max);
            if (!f) {  // bad size field or prefix: answer, then close (no resynchronising a stream)
                c.send(proto::error_reply(c.input(), caps_.family, f.error(), buf));
                c.discard_input();
                c.close_after_flush();
                return detail::step::done();
            }
            if (!f->complete()) return detail::step::more(f->size);
            auto const locality = f->framing == proto::stream_framing::mssim ? f->locality : st_.locality.load();
            std::size_t size = 0;
            if (st_.opts.allow_set_locality && proto::is_set_locality(f->command))
                size = set_locality(f->command, buf);
            else
                size = detail::run_command(h_, f->command, locality, buf);
            c.send(proto::frame_reply(f->framing, buf, size));
            c.consume(f->size);
            return detail::step::done();
        }

        void on_stall(detail::connection& c, detail::stall) {
            auto const buf = reply_.span(st_.max_command.load(std::memory_order_relaxed));
            c.send(proto::error_reply(c.input(), caps_.family, make_error_code(errc::truncated), buf));
        }

    private:
        // In-band SetLocality, answered here as swtpm does; success is a bare response header.
        auto set_locality(wire::bytes_view cmd, wire::bytes_span buf) -> std::size_t {
            auto const out = buf.subspan(proto::reply_headroom);
            auto loc = proto::decode_set_locality(cmd);
            if (loc && *loc == 4 && st_.opts.reject_locality_4) loc = fail(errc::bad_locality);
            if (!loc) return wire::error_response(loc.error(), caps_.family, out).size();
            st_.locality.store(*loc);
            return wire::error_response(wire::tpm_rc::success, caps_.family, out).size();
        }

        Handler& h_;
        state& st_;
        detail::device_caps caps_;
        detail::reply_buffer reply_;
    };

    // --- the control channel ---
    template <class Handler>
    class ctrl_service {
    public:
        ctrl_service(Handler& h, state& st, detail::device_caps const& caps) : h_{h}, st_{st}, caps_{caps} {}

        auto on_input(detail::connection& c) -> detail::step {
            namespace sw = proto::swtpm;
            auto const in = c.input();
            auto need = sw::bytes_needed(in);
            if (!need) {
                // An unknown code has no known length: answer it and drop what came
                // with it (swtpm reads one request per read() and does the same).
                // A length above our limit cannot be skipped safely: close.
                bool const unknown = to_errc(need.error()) == errc::unknown_command;
                send_result(c, unknown ? sw::res::bad_ordinal : sw::res::bad_parameter);
                c.discard_input();
                if (!unknown) c.close_after_flush();
                return detail::step::done();
            }
            if (*need == 0 || in.size() < *need) return detail::step::more(*need);
            auto req = sw::decode_request(in.first(*need));
            auto const s = req ? std::visit([&](auto const& r) { return handle(c, r); }, *req)
                               : (send_result(c, sw::res::bad_parameter), detail::step::done());
            c.consume(*need);
            return s;
        }

        void on_stall(detail::connection& c, detail::stall) { send_result(c, proto::swtpm::res::bad_parameter); }

    private:
        using step = detail::step;

        // Runs f(device) under the pipeline lock when the device is running;
        // TPM_BAD_ORDINAL otherwise, as swtpm answers commands needing a running TPM.
        template <class F>
        auto when_running(F&& f) -> result<void> {
            return h_.with_device([&]<class D>(D& dev) -> result<void> {
                if (!detail::device_running(dev)) return fail(errc::not_running);
                return f(dev);
            });
        }

        auto capabilities() const -> std::uint64_t {
            namespace cap = proto::swtpm::cap;
            std::uint64_t c = cap::shutdown | cap::set_locality | cap::get_config | cap::set_buffersize;
            if (caps_.powered) c |= cap::init | cap::stop;
            if (caps_.established) c |= cap::get_tpmestablished | cap::reset_tpmestablished;
            if (caps_.hashing) c |= cap::hashing;
            if (caps_.described) c |= cap::get_info;
            if (caps_.cancellable) c |= cap::cancel_tpm_cmd;
            if (caps_.stateful) c |= cap::store_volatile | cap::get_stateblob | cap::set_stateblob;
            if (std::holds_alternative<io::unix_endpoint>(st_.ctrl_where)) c |= cap::set_datafd;
            if (caps_.family == wire::family::tpm2) c |= cap::send_command_header;
            return c;  // LOCK_STORAGE: not implemented (the state directory is one daemon's), not reported
        }

        auto handle(detail::connection& c, proto::swtpm::get_capability_request const&) -> step {
            send(c, proto::swtpm::capability_response{capabilities()});
            return step::done();
        }

        auto handle(detail::connection& c, proto::swtpm::init_request const& r) -> step {
            send_result(c, h_.with_device([&]<class D>(D& dev) -> result<void> {
                if constexpr (powered_device<D>)
                    return detail::power_cycle(dev, (r.init_flags & proto::swtpm::init_flag_delete_volatile) != 0);
                else
                    return fail(errc::unknown_command);
            }));
            return step::done();
        }

        // Orderly power-off so the state is durable when the answer arrives;
        // then serve() returns. swtpm 0.7.1 skips TPM2_Shutdown (peers 4.5).
        auto handle(detail::connection& c, proto::swtpm::shutdown_request const&) -> step {
            send_result(c, h_.with_device([&]<class D>(D& dev) -> result<void> {
                if constexpr (powered_device<D>)
                    if (dev.running()) return dev.power_off();
                return {};
            }));
            return step::stop_loop();
        }

        auto handle(detail::connection& c, proto::swtpm::stop_request const&) -> step {
            send_result(c, h_.with_device([&]<class D>(D& dev) -> result<void> {
                if constexpr (powered_device<D>) {
                    if (dev.running()) return dev.power_off();
                    return {};
                } else {
                    return fail(errc::unknown_command);
                }
            }));
            return step::done();
        }

        auto handle(detail::connection& c, proto::swtpm::get_tpmestablished_request const&) -> step {
            std::uint8_t bit = 0;
            auto r = when_running([&]<class D>(D& dev) -> result<void> {
                if constexpr (established_device<D>) {
                    auto b = dev.tpm_established();
                    if (!b) return std::unexpected{b.error()};
                    bit = *b ? 1 : 0;
                    return {};
                } else {
                    return fail(errc::unknown_command);
                }
            });
            if (!r) send_result(c, r);
            else send(c, proto::swtpm::established_response{proto::swtpm::res::success, bit, {}});
            return step::done();
        }

        auto handle(detail::connection& c, proto::swtpm::set_locality_request const& r) -> step {
            if (r.locality > wire::max_locality || (r.locality == 4 && st_.opts.reject_locality_4)) {
                send_result(c, proto::swtpm::res::bad_locality);
            } else {
                st_.locality.store(r.locality);
                send_result(c, proto::swtpm::res::success);
            }
            return step::done();
        }

        auto handle(detail::connection& c, proto::swtpm::hash_start_request const&) -> step {
            return hash_op(c, [](auto& dev) { return dev.hash_start(); });
        }
        auto handle(detail::connection& c, proto::swtpm::hash_data_request const& r) -> step {
            return hash_op(c, [&](auto& dev) { return dev.hash_data(r.data.data); });
        }
        auto handle(detail::connection& c, proto::swtpm::hash_end_request const&) -> step {
            return hash_op(c, [](auto& dev) { return dev.hash_end(); });
        }
        template <class Op>
        auto hash_op(detail::connection& c, Op op) -> step {
            send_result(c, when_running([&]<class D>(D& dev) -> result<void> {
                if constexpr (hashing_device<D>) return op(dev);
                else return fail(errc::unknown_command);
            }));
            return step::done();
        }

        // Lock-free, so it reaches a command running on the data thread. Unlike
        // swtpm, it does not first ask whether the TPM runs: that would wait for
        // the very command it is meant to cancel.
        auto handle(detail::connection& c, proto::swtpm::cancel_tpm_cmd_request const&) -> step {
            if (!caps_.cancellable) {
                send_result(c, proto::swtpm::res::bad_ordinal);
            } else {
                h_.cancel();
                send_result(c, proto::swtpm::res::success);
            }
            return step::done();
        }

        auto handle(detail::connection& c, proto::swtpm::store_volatile_request const&) -> step {
            send_result(c, when_running([]<class D>(D& dev) -> result<void> {
                if constexpr (stateful_device<D>) return dev.store_volatile();
                else return fail(errc::unknown_command);
            }));
            return step::done();
        }

        auto handle(detail::connection& c, proto::swtpm::reset_tpmestablished_request const& r) -> step {
            send_result(c, when_running([&]<class D>(D& dev) -> result<void> {
                if constexpr (established_device<D>) {
                    if (r.locality > wire::max_locality) return fail(errc::bad_locality);
                    return dev.reset_established(r.locality);
                } else {
                    return fail(errc::unknown_command);
                }
            }));
            return step::done();
        }

        static auto blob_type(std::uint32_t t) -> std::optional<state_blob> {
            if (t < 1 || t > 3) return std::nullopt;
            return static_cast<state_blob>(t);
        }

        // Always the 16-byte header, then the blob from `offset`. A type outside
        // 1-3 answers TPM_BAD_PARAMETER (swtpm 0.7.1: TPM_RETRY); an empty blob
        // (no savestate) answers TPM_RETRY as swtpm does, which QEMU tolerates.
        // Blobs are plaintext: DECRYPTED is satisfied, ENCRYPTED never set.
        // Unlike swtpm, a stopped TPM answers too, with its stored state.
        auto handle(detail::connection& c, proto::swtpm::get_stateblob_request const& r) -> step {
            namespace sw = proto::swtpm;
            auto const header = [&](wire::tpm_rc rc, std::size_t len) {
                auto const n = static_cast<std::uint32_t>(len);
                send(c, sw::stateblob_header{rc, 0, n, n});
            };
            auto const type = blob_type(r.type);
            if (!type) { header(sw::res::bad_parameter, 0); return step::done(); }
            std::vector<std::byte> blob;
            auto got = h_.with_device([&]<class D>(D& dev) -> result<void> {
                if constexpr (stateful_device<D>) {
                    auto b = dev.get_state(*type);
                    if (!b) return std::unexpected{b.error()};
                    blob = std::move(*b);
                    return {};
                } else {
                    return fail(errc::unknown_command);
                }
            });
            if (!got) { header(sw::to_result(got.error()), 0); return step::done(); }
            if (blob.empty()) { header(sw::res::retry, 0); return step::done(); }
            auto const rest = wire::bytes_view{blob}.subspan(std::min<std::size_t>(r.offset, blob.size()));
            header(sw::res::success, rest.size());
            c.send(rest);
            return step::done();
        }

        // Only while stopped (swtpm: TPM_BAD_ORDINAL when running). swtpm's own
        // encrypted blobs cannot be read here: TPM_BAD_PARAMETER.
        auto handle(detail::connection& c, proto::swtpm::set_stateblob_request const& r) -> step {
            auto const type = blob_type(r.type);
            if (!type || (r.state_flags & proto::swtpm::state_flag_encrypted) != 0) {
                send_result(c, proto::swtpm::res::bad_parameter);
                return step::done();
            }
            send_result(c, h_.with_device([&]<class D>(D& dev) -> result<void> {
                if constexpr (stateful_device<D>) {
                    if (detail::device_running(dev) && powered_device<D>) return fail(errc::busy);
                    return dev.set_state(*type, r.blob.data);
                } else {
                    return fail(errc::unknown_command);
                }
            }));
            return step::done();
        }

        auto handle(detail::connection& c, proto::swtpm::get_config_request const&) -> step {
            send(c, proto::swtpm::config_response{proto::swtpm::res::success, 0});  // no swtpm file keys here
            return step::done();
        }

        // The passed descriptor becomes one more data connection (swtpm allows
        // one; several are harmless here). It must be a socket.
        auto handle(detail::connection& c, proto::swtpm::set_datafd_request const&) -> step {
            auto fd = c.take_fd();
            struct stat sb{};
            if (!fd || ::fstat(fd.get(), &sb) != 0 || !S_ISSOCK(sb.st_mode)) {
                send_result(c, proto::swtpm::res::bad_parameter);
                return step::done();
            }
            st_.data->adopt(std::move(fd));
            send_result(c, proto::swtpm::res::success);
            return step::done();
        }

        // A device without buffer_sized_device has one fixed size: report it as
        // size, min and max, which is what any request is clamped to.
        auto handle(detail::connection& c, proto::swtpm::set_buffersize_request const& r) -> step {
            buffer_sizes sizes{};
            auto got = h_.with_device([&]<class D>(D& dev) -> result<void> {
                if constexpr (buffer_sized_device<D>) {
                    auto s = dev.set_buffer_size(r.buffer_size);
                    if (!s) return std::unexpected{s.error()};
                    sizes = *s;
                } else {
                    auto const n = static_cast<std::uint32_t>(dev.max_command_size());
                    sizes = {n, n, n};
                }
                return {};
            });
            if (!got) { send_result(c, got); return step::done(); }
            st_.max_command.store(sizes.size);
            send(c, proto::swtpm::buffersize_response{proto::swtpm::res::success, sizes.size, sizes.min, sizes.max});
            return step::done();
        }

        // libtpms's JSON in chunks of up to 3 KiB from `offset`, as swtpm answers it (the same
        // bytes: both ask TPMLIB_GetInfo). An offset at or past the end is TPM_BAD_PARAMETER.
        auto handle(detail::connection& c, proto::swtpm::get_info_request const& r) -> step {
            namespace sw = proto::swtpm;
            std::string json;
            auto got = h_.with_device([&]<class D>(D& dev) -> result<void> {
                if constexpr (described_device<D>) {
                    auto j = dev.info(r.flags);
                    if (!j) return std::unexpected{j.error()};
                    json = std::move(*j);
                    return {};
                } else {
                    return fail(errc::unknown_command);
                }
            });
            if (!got) { send_result(c, got); return step::done(); }
            if (r.offset >= json.size()) { send_result(c, sw::res::bad_parameter); return step::done(); }
            auto const total = json.size() + 1;  // with the NUL
            auto const n = std::min<std::size_t>(total - r.offset, sw::max_info_chunk);
            send(c, sw::info_header{sw::res::success, static_cast<std::uint32_t>(total), static_cast<std::uint32_t>(n)});
            c.send(std::as_bytes(std::span{json.c_str() + r.offset, n}));
            return step::done();
        }
        auto handle(detail::connection& c, proto::swtpm::lock_storage_request const&) -> step {
            send_result(c, proto::swtpm::res::bad_ordinal);
            return step::done();
        }

        Handler& h_;
        state& st_;
        detail::device_caps caps_;
    };

    std::unique_ptr<state> st_;
};

}  // namespace xtpm
