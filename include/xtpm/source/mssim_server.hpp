// mssim_server: a request_source speaking the Microsoft/IBM simulator protocol
// on a command port and a platform port (conventionally 2321/2322), for the
// tpm2-tss mssim TCTI and the IBM TSS "socsim" interface (peers-and-protocols.md
// 4.3, 4.4). A real platform port, unlike swtpm's: POWER_ON on a running TPM
// keeps its state, so PCRs survive from one tpm2-tools invocation to the next.
#pragma once

#include <xtpm/proto/mssim.hpp>
#include <xtpm/source/detail/conn_loop.hpp>
#include <xtpm/source/detail/device_access.hpp>

#include <atomic>

namespace xtpm {

struct mssim_server_options {
    io::endpoint command = io::tcp_endpoint{"127.0.0.1", 2321};
    io::endpoint platform = io::tcp_endpoint{"127.0.0.1", 2322};
    detail::loop_limits limits{};
};

class mssim_server {
public:
    using options = mssim_server_options;

    static auto create(options opts) -> result<mssim_server> {
        auto st = std::make_unique<state>();
        auto cmd = detail::open_listener(opts.command);
        if (!cmd) return std::unexpected{cmd.error()};
        st->files.add(cmd->where);
        st->command_where = cmd->where;
        auto plat = detail::open_listener(opts.platform);
        if (!plat) return std::unexpected{plat.error()};
        st->files.add(plat->where);
        st->platform_where = plat->where;
        auto cl = detail::conn_loop::create(std::move(cmd->fd), {opts.limits, false, false});
        if (!cl) return std::unexpected{cl.error()};
        auto pl = detail::conn_loop::create(std::move(plat->fd), {opts.limits, false, false});
        if (!pl) return std::unexpected{pl.error()};
        st->command = std::move(*cl);
        st->platform = std::move(*pl);
        return mssim_server{std::move(st)};
    }

    // Serve until stop() or TPM_STOP on either port. TPM commands run on this
    // thread, platform signals on their own, so CANCEL_ON reaches a running command.
    template <class Handler>
    auto serve(Handler& h) -> result<void> {
        auto const caps = detail::probe_device(h);
        command_service<Handler> cs{h, *st_, caps};
        platform_service<Handler> ps{h, *st_, caps};
        return detail::run_pair(*st_->command, cs, *st_->platform, ps);
    }

    void stop() noexcept {
        st_->command->stop();
        st_->platform->stop();
    }

    [[nodiscard]] auto command_endpoint() const -> io::endpoint { return st_->command_where; }
    [[nodiscard]] auto platform_endpoint() const -> io::endpoint { return st_->platform_where; }

private:
    struct state {
        std::unique_ptr<detail::conn_loop> command, platform;
        io::endpoint command_where, platform_where;
        detail::socket_files files;
        // GET_COMMAND_RESPONSE_SIZES: the largest command and response since the last query.
        std::atomic<std::uint32_t> largest_command_size{0}, largest_command{0};
        std::atomic<std::uint32_t> largest_response_size{0}, largest_response{0};
    };

    explicit mssim_server(std::unique_ptr<state> st) noexcept : st_{std::move(st)} {}

    template <class T>
    static void send(detail::connection& c, T const& msg) {
        std::array<std::byte, 64> buf{};
        auto b = wire::encode_into(buf, msg);
        XTPM_ASSERT(b.has_value());
        c.send(*b);
    }
    static void send_status(detail::connection& c, bool ok) {
        send(c, proto::mssim::ack_reply{ok ? proto::mssim::ack : proto::mssim::nack});
    }

    // --- command port ---
    template <class Handler>
    class command_service {
    public:
        command_service(Handler& h, state& st, detail::device_caps const& caps) : h_{h}, st_{st}, caps_{caps} {}

        auto on_input(detail::connection& c) -> detail::step {
            namespace ms = proto::mssim;
            auto const in = c.input();
            // TPM_SEND_COMMAND's length is checked against the device's buffer
            // before any body is read; a bad one cannot be skipped: answer, close.
            if (in.size() >= ms::send_command_prefix_size && is_send_command(in)) {
                auto const len = wire::load_be<std::uint32_t>(in.subspan(5, 4));
                if (len < wire::header_size || len > caps_.max_command) {
                    fail_command(c, len < wire::header_size ? errc::too_small : errc::too_large);
                    return detail::step::done();
                }
            }
            auto need = ms::command_bytes_needed(in);
            if (!need) {  // an unknown code or an oversized HASH_DATA: the reference server just closes
                c.discard_input();
                c.close_after_flush();
                return detail::step::done();
            }
            if (*need == 0 || in.size() < *need) return detail::step::more(*need);
            auto req = ms::decode_command(in.first(*need));
            auto const s = req ? std::visit([&](auto const& r) { return handle(c, r); }, *req)
                               : (c.close_after_flush(), detail::step::done());
            c.consume(*need);
            return s;
        }

        // A half-sent TPM command gets a TPM error the TCTI can parse; other
        // half-sent requests have no error form: just close.
        void on_stall(detail::connection& c, detail::stall) {
            if (is_send_command(c.input())) fail_command(c, errc::truncated);
        }

    private:
        using step = detail::step;

        static auto is_send_command(wire::bytes_view in) -> bool {
            return in.size() >= 4 &&
                   wire::load_be<std::uint32_t>(in) == static_cast<std::uint32_t>(proto::mssim::cmd::send_command);
        }

        void fail_command(detail::connection& c, errc e) {
            auto const buf = reply_.span(caps_.max_command);
            auto resp = wire::error_response(make_error_code(e), caps_.family, buf.subspan(proto::reply_headroom));
            c.send(proto::mssim::wrap_response(buf, resp.size()));
            c.discard_input();
            c.close_after_flush();
        }

        // The locality goes to the pipeline as sent: above 4 it answers TPM_RC_LOCALITY.
        auto handle(detail::connection& c, proto::mssim::send_command_request const& r) -> step {
            auto const buf = reply_.span(caps_.max_command);
            auto const size = detail::run_command(h_, r.command.data, r.locality, buf);
            record(r.command.data, buf.subspan(proto::reply_headroom, size));
            c.send(proto::mssim::wrap_response(buf, size));
            return step::done();
        }

        void record(wire::bytes_view cmd, wire::bytes_view resp) {
            auto const code_at = [](wire::bytes_view b) { return wire::load_be<std::uint32_t>(b.subspan(6, 4)); };
            if (cmd.size() >= wire::header_size && cmd.size() > st_.largest_command_size.load()) {
                st_.largest_command_size.store(static_cast<std::uint32_t>(cmd.size()));
                st_.largest_command.store(code_at(cmd));
            }
            if (resp.size() >= wire::header_size && resp.size() > st_.largest_response_size.load()) {
                st_.largest_response_size.store(static_cast<std::uint32_t>(resp.size()));
                st_.largest_response.store(code_at(resp));
            }
        }

        auto handle(detail::connection& c, proto::mssim::bare_request<proto::mssim::cmd::hash_start> const&) -> step {
            return hash_op(c, [](auto& dev) { return dev.hash_start(); });
        }
        auto handle(detail::connection& c, proto::mssim::hash_data_request const& r) -> step {
            return hash_op(c, [&](auto& dev) { return dev.hash_data(r.data.data); });
        }
        auto handle(detail::connection& c, proto::mssim::bare_request<proto::mssim::cmd::hash_end> const&) -> step {
            return hash_op(c, [](auto& dev) { return dev.hash_end(); });
        }
        // The reference server always acks; a device without DRTM hashing (or a
        // failed step) answers nack, the protocol's only error.
        template <class Op>
        auto hash_op(detail::connection& c, Op op) -> step {
            auto const ok = h_.with_device([&]<class D>(D& dev) -> bool {
                if constexpr (hashing_device<D>) return detail::device_running(dev) && op(dev).has_value();
                else return false;
            });
            send_status(c, ok);
            return step::done();
        }

        auto handle(detail::connection& c, proto::mssim::handshake_request const& r) -> step {
            namespace ms = proto::mssim;
            if (r.client_version == 0) {  // refused, as the reference server does: close without a reply
                c.close_after_flush();
                return step::done();
            }
            // No SupportsPP: physical presence signals are accepted but change nothing.
            send(c, ms::handshake_reply{ms::server_version,
                                        ms::endpoint_info::platform_available | ms::endpoint_info::in_raw_mode,
                                        ms::ack});
            return step::done();
        }

        auto handle(detail::connection& c, proto::mssim::alternative_result_request const&) -> step {
            send_status(c, true);
            return step::done();
        }
        auto handle(detail::connection& c, proto::mssim::bare_request<proto::mssim::cmd::session_end> const&)
            -> step {
            c.close_after_flush();  // no reply
            return step::done();
        }
        auto handle(detail::connection&, proto::mssim::bare_request<proto::mssim::cmd::stop> const&) -> step {
            return step::stop_loop();  // no reply
        }

        Handler& h_;
        state& st_;
        detail::device_caps caps_;
        detail::reply_buffer reply_;
    };

    // --- platform port: one u32 signal, one u32 answer ---
    template <class Handler>
    class platform_service {
    public:
        platform_service(Handler& h, state& st, detail::device_caps const& caps) : h_{h}, st_{st}, caps_{caps} {}

        auto on_input(detail::connection& c) -> detail::step {
            namespace ms = proto::mssim;
            auto const in = c.input();
            auto need = ms::platform_bytes_needed(in);
            if (!need) {  // unknown signal: nack and close, as the reference server does
                send_status(c, false);
                c.discard_input();
                c.close_after_flush();
                return detail::step::done();
            }
            if (*need == 0 || in.size() < *need) return detail::step::more(*need);
            auto req = ms::decode_platform(in.first(*need));
            c.consume(*need);
            if (!req) {
                c.close_after_flush();
                return detail::step::done();
            }
            return handle(c, *req);
        }

        void on_stall(detail::connection&, detail::stall) {}  // a signal split mid-u32: just close

    private:
        using step = detail::step;

        template <class F>
        auto power(F&& f) -> bool {
            return h_.with_device([&]<class D>(D& dev) -> bool {
                if constexpr (powered_device<D>) return f(dev).has_value();
                else return false;
            });
        }

        auto handle(detail::connection& c, proto::mssim::platform_request const& req) -> step {
            namespace ms = proto::mssim;
            using ms::cmd;
            if (auto const* act = std::get_if<ms::act_get_signaled_request>(&req)) {
                (void)act;  // no Authenticated Countdown Timers: never signaled
                send(c, ms::act_reply{0, ms::ack});
                return step::done();
            }
            switch (ms::code_of(req)) {
            case cmd::power_on:  // keeps a running TPM as it is (tpm2-tss sends it at every start)
                send_status(c, !caps_.powered || power([](auto& dev) -> result<void> {
                    if (dev.running()) return {};
                    return dev.power_on(false);
                }));
                break;
            case cmd::power_off:
                send_status(c, !caps_.powered || power([](auto& dev) -> result<void> {
                    if (!dev.running()) return {};
                    return dev.power_off();
                }));
                break;
            case cmd::reset:    // power-on with reset
            case cmd::restart:  // both power-cycle here
                send_status(c, power([](auto& dev) { return detail::power_cycle(dev, false); }));
                break;
            case cmd::cancel_on:  // lock-free: reaches the command running on the other thread
                if (caps_.cancellable) h_.cancel();
                send_status(c, caps_.cancellable);
                break;
            case cmd::session_end:
                c.close_after_flush();  // no reply
                break;
            case cmd::stop:
                return step::stop_loop();  // no reply
            case cmd::get_command_response_sizes:
                send(c, ms::sizes_reply{16,
                                        {st_.largest_command_size.exchange(0), st_.largest_command.exchange(0),
                                         st_.largest_response_size.exchange(0), st_.largest_response.exchange(0)},
                                        ms::ack});
                break;
            default:  // PHYS_PRES_*, CANCEL_OFF (cancel is one-shot), NV_*, KEY_CACHE_*: nothing to do
                send_status(c, true);
                break;
            }
            return step::done();
        }

        Handler& h_;
        state& st_;
        detail::device_caps caps_;
    };

    std::unique_ptr<state> st_;
};

}  // namespace xtpm
