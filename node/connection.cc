#include "node/connection.h"

#include "node/tls_stream.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

#include "wire/envelope.h"
#include "wire/tls_session.h"
#include "replication/printable.h"

namespace stig::node {

namespace pb = stigmergy::v1;
using wire::append_response_frame;

namespace {

// How long a failed client connection keeps discarding input after the error
// reply, so the reply is not destroyed by a reset from unread input.
constexpr std::chrono::milliseconds kLinger{1000};

// How long a TLS connection is idle before its record buffers are freed.
constexpr std::chrono::milliseconds kTlsBuffersIdle{1000};

pb::ErrorCode error_code_for(wire::FrameError e) {
  switch (e) {
    case wire::FrameError::kTooLarge: return pb::FRAME_TOO_LARGE;
    default: return pb::MALFORMED_FRAME;
  }
}

}  // namespace

Connection::Connection(ConnectionHost& host, tcp::socket socket, uint64_t id, const ConnectionLimits& limits,
                       TlsContext* tls)
    : host_(host),
      socket_(std::move(socket)),
      tls_(tls ? std::make_unique<wire::TlsSession>(tls->get().native_handle(), wire::TlsSession::Role::kServer)
               : nullptr),
      linger_timer_(socket_.get_executor()),
      id_(id),
      limits_(limits),
      decoder_(limits.max_frame_bytes),
      accepted_at_(Clock::now()),
      last_frame_at_(accepted_at_),
      last_write_at_(accepted_at_) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  socket_.set_option(tcp::no_delay(true), ec);
  // Reads happen only once the socket is readable, into the host's shared
  // buffer; a non-blocking read never stalls the io thread on a spurious wakeup.
  socket_.non_blocking(true, ec);
}

Connection::~Connection() = default;

void Connection::start() {
  if (!tls_) {
    wait_readable();
    return;
  }
  handshaking_ = true;
  socket_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this()](const boost::system::error_code& ec) { self->on_first_bytes(ec); });
}

// A TLS connection must begin with a TLS handshake record (0x16). Our frames
// begin with a length whose first byte is 0 for any frame the node accepts,
// so a plaintext client is told in plaintext what it needs instead of
// seeing a handshake failure it cannot read.
void Connection::on_first_bytes(const boost::system::error_code& ec) {
  if (closed_) return;
  if (ec) {
    close();
    return;
  }
  char first = 0;
  boost::system::error_code rec;
  const size_t n = socket_.receive(asio::buffer(&first, 1), tcp::socket::message_peek, rec);
  if (rec == asio::error::would_block || rec == asio::error::try_again) {
    start();
    return;
  }
  if (rec || n == 0) {
    close();
    return;
  }
  if (first != 0x16) {
    handshaking_ = false;
    tls_.reset();
    refusal_.reset();
    host_.on_handshake_failed(*this, "plaintext instead of a TLS handshake");
    fail(pb::PERMISSION_DENIED, 0,
         "this node requires TLS: connect with the cluster's CA and an agent credential (--ca/--cert/--key or "
         "STIG_CA/STIG_CERT/STIG_KEY)",
         false);
    return;
  }
  wait_readable();  // the handshake goes on in on_cipher
}

// Steps the handshake with what was fed. true once it is done and the
// connection may go on; false while it needs more bytes (reading goes on)
// or when it failed (the connection closes once the alert is sent).
bool Connection::finish_handshake() {
  boost::system::error_code ec;
  const bool done = tls_->handshake(ec);
  if (!done && !ec) {
    do_write();  // the server's flight
    wait_readable();
    return false;
  }
  handshaking_ = false;
  if (ec) {
    host_.on_handshake_failed(*this, describe_tls_error(tls_->native_handle(), ec));
    read_stopped_ = true;
    close_when_flushed();  // the alert first: it tells the other side why
    do_write();
    return false;
  }
  identity_ = peer_identity(tls_->native_handle());
  if (refusal_) {
    fail(refusal_->first, 0, refusal_->second, false);
    return false;
  }
  spdlog::debug("connection #{} from {}: TLS as '{}'", id_, remote_, replication::printable(identity_.subject, 140));
  return true;
}

void Connection::on_cipher(const char* data, size_t n) {
  tls_->feed(data, n);
  if (handshaking_ && !finish_handshake()) return;
  // The raw bytes are in the session now: the shared buffer takes the
  // plaintext. Every complete record of this read goes to the decoder.
  const asio::mutable_buffer buf = host_.read_buffer();
  const Clock::time_point now = Clock::now();
  const auto ec = tls_->read_all(static_cast<char*>(buf.data()), buf.size(), [&](const char* plain, size_t got) {
    if (!frame_in_progress()) frame_started_at_ = now;
    decoder_.feed(std::string_view(plain, got));
  });
  if (ec) {
    on_read_error(ec);  // eof: the client closed the session
    return;
  }
  drain_frames(now);
}

bool Connection::presents_revoked(X509_crl_st* crl) {
  return tls_ && !handshaking_ && presents_revoked_certificate(tls_->native_handle(), crl);
}

void Connection::refuse(pb::ErrorCode code, const std::string& message) {
  if (!tls_) {
    fail(code, 0, message, false);
    return;
  }
  // Over TLS the reply can only be written once the handshake is done.
  refusal_ = std::make_unique<std::pair<pb::ErrorCode, std::string>>(code, message);
  start();
}

// --- reading --------------------------------------------------------------------

void Connection::wait_readable() {
  if (reading_ || closed_) return;
  if (!lingering_) {
    if (read_stopped_ || failing_) return;
    if (backlog() > limits_.max_backlog_bytes) {
      read_paused_ = true;  // resumed by on_write once the client catches up
      return;
    }
  }
  reading_ = true;
  socket_.async_read_some(asio::buffer(read_buf_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                              size_t n) { self->on_read(ec, n); });
}

void Connection::on_read(const boost::system::error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    on_read_error(ec);
    return;
  }
  if (lingering_) {  // discard until the client closes or the linger ends
    wait_readable();
    return;
  }
  if (read_stopped_) return;
  const auto deliver = [this](const char* data, size_t len) {
    if (tls_)
      on_cipher(data, len);
    else
      on_bytes(data, len);
  };
  if (n < read_buf_.size()) {
    deliver(read_buf_.data(), n);
    return;
  }
  // The small buffer filled: more is likely waiting. Take it in one read
  // into the shared buffer, the small buffer's bytes first.
  asio::mutable_buffer buf = host_.read_buffer();
  std::memcpy(buf.data(), read_buf_.data(), n);
  boost::system::error_code rec;
  const size_t more = socket_.read_some(asio::buffer(static_cast<char*>(buf.data()) + n, buf.size() - n), rec);
  if (rec && rec != asio::error::would_block && rec != asio::error::try_again && rec != asio::error::interrupted) {
    deliver(static_cast<const char*>(buf.data()), n);  // what arrived before the error still counts
    if (!closed_) on_read_error(rec);
    return;
  }
  deliver(static_cast<const char*>(buf.data()), n + (rec ? 0 : more));
}

void Connection::on_read_error(const boost::system::error_code& ec) {
  if (lingering_) {
    close();
    return;
  }
  if (ec != asio::error::eof && ec != asio::error::operation_aborted)
    spdlog::debug("connection #{} from {}: read failed: {}", id_, remote_, ec.message());
  else if (role_ == Role::kPeer)
    spdlog::info("inbound link from peer {} ({}) closed", peer_id_, remote_);
  close();
}

void Connection::on_bytes(const char* data, size_t n) {
  const Clock::time_point now = Clock::now();
  if (!frame_in_progress()) frame_started_at_ = now;
  decoder_.feed(std::string_view(data, n));
  drain_frames(now);
}

void Connection::drain_frames(Clock::time_point now) {
  while (true) {
    if (role_ == Role::kClient && in_flight_ >= limits_.max_requests_in_flight) {
      awaiting_answers_ = true;  // send_response resumes once answers come back
      return;
    }
    if (role_ == Role::kClient && backlog() > limits_.max_backlog_bytes) {
      read_paused_ = true;  // on_write resumes once the client reads its answers
      return;
    }
    if (!decoder_.next(env_)) break;
    last_frame_at_ = now;
    // The next frame (if any bytes of it are here) starts now.
    frame_started_at_ = decoder_.buffered() ? now : Clock::time_point{};
    handle(env_);
    env_.Clear();
    if (closed_ || failing_ || read_stopped_) return;
  }
  if (decoder_.error() != wire::FrameError::kNone) {
    on_frame_error(decoder_.error());
    return;
  }
  if (!settle_charge()) return;
  wait_readable();
}

// Charges the host's budget for what the decoder holds (the whole declared
// frame once its header is in), or returns what it no longer holds.
bool Connection::settle_charge() {
  const uint64_t want = decoder_.pending_frame_bytes();
  if (want > charged_) {
    if (!host_.charge_inbound(*this, want - charged_)) return false;
  } else if (want < charged_) {
    host_.release_inbound(charged_ - want);
  }
  charged_ = want;
  return true;
}

// Forgets buffered input (the connection is failing) and its charge.
void Connection::drop_input() {
  decoder_ = wire::FrameDecoder(limits_.max_frame_bytes);
  frame_started_at_ = {};
  if (charged_) host_.release_inbound(charged_);
  charged_ = 0;
}

void Connection::handle(pb::Envelope& env) {
  if (role_ == Role::kUndecided) {
    if (env.has_request()) {
      if (tls_ && !identity_.is_agent()) {
        fail(pb::PERMISSION_DENIED, env.request().seq(),
             "the certificate of this connection ('" + identity_.subject +
                 "') is not an agent credential (a client needs a certificate with CN agent:NAME)");
        return;
      }
      if (!host_.admit_client(*this, env.request().seq())) return;  // refused: the host failed us
      role_ = Role::kClient;
    } else if (env.has_peer() && env.peer().has_hello()) {
      const std::string& id = env.peer().hello().node_id();
      if (tls_ && !identity_.is_node(id)) {
        spdlog::warn("connection #{} from {}: hello as '{}' but its certificate is '{}'; closing", id_, remote_,
                     replication::printable(id, 64), replication::printable(identity_.subject, 140));
        close();
        return;
      }
      if (!host_.admit_peer(*this, id)) {  // the host logged why
        close();
        return;
      }
      role_ = Role::kPeer;
      peer_id_ = id;
      spdlog::info("inbound link from peer {} ({})", peer_id_, remote_);
      return;
    } else if (env.has_peer()) {
      spdlog::warn("connection #{} from {}: peer message before hello; closing", id_, remote_);
      close();
      return;
    } else {
      fail(pb::MALFORMED_FRAME, 0, "the first frame must carry a request (client) or a hello (peer)");
      return;
    }
  }

  if (role_ == Role::kClient) {
    if (!env.has_request()) {
      fail(pb::MALFORMED_FRAME, 0, "a client connection may only send requests");
      return;
    }
    pb::Request& req = *env.mutable_request();
    if (req.op_case() == pb::Request::OP_NOT_SET) {
      fail(pb::UNKNOWN_REQUEST, req.seq(), "request carries no operation this node knows");
      return;
    }
    ++in_flight_;
    host_.on_client_request(*this, std::move(req));
    return;
  }

  // Inbound peer link: receive only.
  if (!env.has_peer()) {
    spdlog::warn("inbound link from peer {} ({}): non-peer frame; closing", peer_id_, remote_);
    close();
    return;
  }
  if (host_.is_dropped(peer_id_)) return;  // fault injection: partitioned away
  if (env.peer().has_hello()) return;      // a repeated hello (keepalive) changes nothing
  host_.on_peer_message(peer_id_, std::move(*env.mutable_peer()));
}

void Connection::on_frame_error(wire::FrameError error) {
  const std::string what = wire::frame_error_message(error);
  if (role_ == Role::kPeer) {
    spdlog::warn("inbound link from peer {} ({}): {}; closing", peer_id_, remote_, what);
    close();
    return;
  }
  std::string message = what;
  if (error == wire::FrameError::kTooLarge)
    message += " (" + std::to_string(limits_.max_frame_bytes) + " bytes)";
  else if (error == wire::FrameError::kBadVersion)
    message += " (this node speaks version " + std::to_string(wire::kProtocolVersion) + ")";
  fail(error_code_for(error), 0, message);
}

// --- timeouts ---------------------------------------------------------------------

void Connection::check_timeouts(Clock::time_point now) {
  if (closed_ || failing_ || lingering_ || read_stopped_) return;
  using std::chrono::duration_cast;
  using Ms = std::chrono::milliseconds;
  const auto zero = Ms::zero();
  // An idle TLS connection gives its record buffers back, so a busy one
  // keeps them (no allocation per record) and many idle ones cost little.
  if (tls_ && !handshaking_ && !writing_ && now - std::max(last_frame_at_, last_write_at_) >= kTlsBuffersIdle)
    tls_->release_buffers();
  if (handshaking_ && limits_.handshake_timeout > zero && now - accepted_at_ >= limits_.handshake_timeout) {
    host_.on_handshake_failed(
        *this, "no TLS handshake within " + std::to_string(limits_.handshake_timeout.count()) + " ms");
    close();
    return;
  }
  if (frame_in_progress() && limits_.slow_frame_timeout > zero && now - frame_started_at_ >= limits_.slow_frame_timeout) {
    const std::string what = "frame not complete " + std::to_string(limits_.slow_frame_timeout.count()) +
                             " ms after its first byte (" + std::to_string(decoder_.buffered()) + " of " +
                             std::to_string(decoder_.pending_frame_bytes()) + " bytes arrived; slow-frame timeout)";
    if (role_ == Role::kPeer) {
      spdlog::warn("inbound link from peer {} ({}): {}; closing", peer_id_, remote_, what);
      close();
    } else {
      fail(pb::MALFORMED_FRAME, 0, what);
    }
    return;
  }
  switch (role_) {
    case Role::kUndecided:
      // The first frame must begin within the hello timeout (then the
      // slow-frame timeout applies); a connection admitted beyond the client
      // limit must complete it (a hello is small).
      if (limits_.hello_timeout > zero && now - accepted_at_ >= limits_.hello_timeout &&
          (!frame_in_progress() || slot_ == Slot::kProbation)) {
        spdlog::debug("connection #{} from {}: no {} within {} ms; closing", id_, remote_,
                      frame_in_progress() ? "complete first frame" : "first frame", limits_.hello_timeout.count());
        close();
      }
      return;
    case Role::kClient:
      if (limits_.idle_timeout > zero && !frame_in_progress() && !writing_ &&
          now - std::max(last_frame_at_, last_write_at_) >= limits_.idle_timeout) {
        spdlog::debug("client connection #{} from {}: idle for {} ms; closing", id_, remote_,
                      limits_.idle_timeout.count());
        close();
      } else if (limits_.idle_timeout > zero && writing_ &&
                 now - std::max(last_frame_at_, last_write_at_) >= limits_.idle_timeout) {
        spdlog::warn("client connection #{} from {}: has not read its responses for {} ms ({} bytes unsent); "
                     "closing",
                     id_, remote_, limits_.idle_timeout.count(), backlog());
        close();
      }
      return;
    case Role::kPeer:
      if (limits_.peer_idle_timeout > zero && now - last_frame_at_ >= limits_.peer_idle_timeout) {
        spdlog::warn("inbound link from peer {} ({}): no frame for {} ms; closing (the peer reconnects)", peer_id_,
                     remote_, duration_cast<Ms>(now - last_frame_at_).count());
        close();
      }
      return;
  }
}

// --- writing ------------------------------------------------------------------------

void Connection::fail(pb::ErrorCode code, uint64_t seq, const std::string& message, bool log) {
  if (failing_ || closed_) return;
  if (role_ == Role::kPeer) {
    spdlog::warn("inbound link from peer {} ({}): {}; closing", peer_id_, remote_, message);
    close();
    return;
  }
  const std::string line = replication::one_line_utf8(message);
  if (log)
    spdlog::warn("client connection #{} from {}: {} ({}); closing", id_, remote_, line, pb::ErrorCode_Name(code));
  pb::Response r;
  r.set_seq(seq);
  r.set_error(code);
  r.set_error_message(line);
  r.set_node(host_.self_id());
  append_response_frame(r, out_pending_);
  failing_ = true;
  drop_input();
  do_write();
}

void Connection::send_response(const pb::Response& response) {
  if (closed_ || failing_) return;
  append_response_frame(response, out_pending_);
  if (in_flight_ > 0) --in_flight_;
  do_write();
  if (awaiting_answers_ && in_flight_ < limits_.max_requests_in_flight) {
    awaiting_answers_ = false;
    // Not from inside the host's release loop: decoding steps the core.
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (!self->closed_ && !self->failing_ && !self->read_stopped_) self->drain_frames();
    });
  }
}

bool Connection::has_unsent() const { return !out_pending_.empty() || (tls_ && !tls_->output().empty()); }

uint64_t Connection::backlog() const {
  return out_pending_.size() + out_writing_.size() + (tls_ ? tls_->output().size() : 0);
}

void Connection::do_write() {
  if (writing_ || closed_) return;
  std::string* next = &out_pending_;
  if (tls_) {
    // All the frames queued so far become records in one go (the handshake
    // done: refuse() holds its reply until then).
    if (!out_pending_.empty() && tls_->handshake_done()) {
      boost::system::error_code ec;
      if (!tls_->write(out_pending_, ec)) {
        spdlog::debug("connection #{} from {}: TLS write failed: {}", id_, remote_, ec.message());
        close();
        return;
      }
      out_pending_.clear();
    }
    next = &tls_->output();
  }
  if (next->empty()) return;
  writing_ = true;
  out_writing_.swap(*next);
  asio::async_write(socket_, asio::buffer(out_writing_),
                    [self = shared_from_this()](const boost::system::error_code& ec, size_t) { self->on_write(ec); });
}

void Connection::on_write(const boost::system::error_code& ec) {
  writing_ = false;
  last_write_at_ = Clock::now();
  if (out_writing_.capacity() > (1u << 20)) {
    std::string().swap(out_writing_);  // don't keep a large buffer around
  } else {
    out_writing_.clear();
  }
  if (closed_) return;
  if (ec) {
    spdlog::debug("connection #{} from {}: write failed: {}", id_, remote_, ec.message());
    close();
    return;
  }
  if (has_unsent()) {
    do_write();
    return;
  }
  if (out_pending_.capacity() > (1u << 20)) std::string().swap(out_pending_);
  if (failing_) {
    begin_linger();
    return;
  }
  if (close_when_flushed_) {
    close();
    return;
  }
  if (read_paused_ && backlog() <= limits_.max_backlog_bytes) {
    read_paused_ = false;
    drain_frames();  // frames already buffered first, then reading
  }
}

void Connection::begin_linger() {
  if (lingering_ || closed_) return;
  lingering_ = true;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);  // FIN after the error reply
  if (ec) {
    close();
    return;
  }
  linger_timer_.expires_after(kLinger);
  linger_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
    if (!e) self->close();
  });
  wait_readable();
}

void Connection::stop_reading() { read_stopped_ = true; }

void Connection::close_when_flushed() {
  close_when_flushed_ = true;
  if (write_idle() && !failing_) close();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  linger_timer_.cancel();
  socket_.close(ec);
  if (charged_) host_.release_inbound(charged_);
  charged_ = 0;
  host_.on_connection_closed(*this);
}

}  // namespace stig::node
