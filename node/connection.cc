#include "node/connection.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "node/envelope.h"

namespace stig::node {

namespace pb = stigmergy::v1;

namespace {

// How long a failed client connection keeps discarding input after the error
// reply, so the reply is not destroyed by a reset from unread input.
constexpr std::chrono::milliseconds kLinger{1000};

pb::ErrorCode error_code_for(wire::FrameError e) {
  switch (e) {
    case wire::FrameError::kTooLarge: return pb::FRAME_TOO_LARGE;
    default: return pb::MALFORMED_FRAME;
  }
}

}  // namespace

Connection::Connection(ConnectionHost& host, tcp::socket socket, uint64_t id, ConnectionLimits limits)
    : host_(host),
      socket_(std::move(socket)),
      linger_timer_(socket_.get_executor()),
      id_(id),
      limits_(limits),
      decoder_(limits.max_frame_bytes) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  socket_.set_option(tcp::no_delay(true), ec);
}

void Connection::start() { do_read(); }

void Connection::do_read() {
  if (reading_ || closed_ || read_stopped_ || failing_) return;
  if (backlog() > limits_.max_backlog_bytes) {
    read_paused_ = true;  // resumed by on_write once the client catches up
    return;
  }
  reading_ = true;
  socket_.async_read_some(asio::buffer(read_buf_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                                size_t n) { self->on_read(ec, n); });
}

void Connection::on_read(const boost::system::error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (lingering_) {  // discard until the client closes or the linger ends
    if (ec) {
      close();
      return;
    }
    reading_ = true;
    socket_.async_read_some(asio::buffer(read_buf_), [self = shared_from_this()](const boost::system::error_code& e,
                                                                                  size_t m) { self->on_read(e, m); });
    return;
  }
  if (ec) {
    if (ec != asio::error::eof && ec != asio::error::operation_aborted)
      spdlog::debug("connection #{} from {}: read failed: {}", id_, remote_, ec.message());
    else if (role_ == Role::kPeer)
      spdlog::info("inbound link from peer {} ({}) closed", peer_id_, remote_);
    close();
    return;
  }
  if (read_stopped_) return;
  decoder_.feed(std::string_view(read_buf_.data(), n));
  while (decoder_.next(env_)) {
    handle(env_);
    env_.Clear();
    if (closed_ || failing_ || read_stopped_) return;
  }
  if (decoder_.error() != wire::FrameError::kNone) {
    on_frame_error(decoder_.error());
    return;
  }
  do_read();
}

void Connection::handle(pb::Envelope& env) {
  if (role_ == Role::kUndecided) {
    if (env.has_request()) {
      role_ = Role::kClient;
    } else if (env.has_peer() && env.peer().has_hello()) {
      const std::string& id = env.peer().hello().node_id();
      if (!host_.is_peer(id)) {
        spdlog::warn("connection #{} from {}: hello from '{}', which is not a configured peer; closing", id_, remote_,
                     id);
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
  if (env.peer().has_hello()) return;      // a repeated hello changes nothing
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

void Connection::fail(pb::ErrorCode code, uint64_t seq, const std::string& message) {
  if (failing_ || closed_) return;
  if (role_ == Role::kPeer) {
    spdlog::warn("inbound link from peer {} ({}): {}; closing", peer_id_, remote_, message);
    close();
    return;
  }
  spdlog::warn("client connection #{} from {}: {} ({}); closing", id_, remote_, message, pb::ErrorCode_Name(code));
  pb::Response r;
  r.set_seq(seq);
  r.set_error(code);
  r.set_error_message(message);
  r.set_node(host_.self_id());
  append_response_frame(r, out_pending_);
  failing_ = true;
  do_write();
}

void Connection::send_response(const pb::Response& response) {
  if (closed_ || failing_) return;
  append_response_frame(response, out_pending_);
  do_write();
}

void Connection::do_write() {
  if (writing_ || closed_ || out_pending_.empty()) return;
  writing_ = true;
  out_writing_.swap(out_pending_);
  asio::async_write(socket_, asio::buffer(out_writing_),
                    [self = shared_from_this()](const boost::system::error_code& ec, size_t) { self->on_write(ec); });
}

void Connection::on_write(const boost::system::error_code& ec) {
  writing_ = false;
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
  if (!out_pending_.empty()) {
    do_write();
    return;
  }
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
    do_read();
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
  if (!reading_) {
    reading_ = true;
    socket_.async_read_some(asio::buffer(read_buf_), [self = shared_from_this()](const boost::system::error_code& e,
                                                                                  size_t m) { self->on_read(e, m); });
  }
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
  host_.on_connection_closed(id_);
}

}  // namespace stig::node
