// One accepted TCP connection: a client, or an inbound link from a peer.
//
// The first frame decides the role: an Envelope carrying a Request makes it a
// client connection; an Envelope carrying PeerMessage{hello} from a configured
// peer makes it an inbound peer link (which only ever receives). Frames are
// read with read_some into a 64 KiB buffer and cut by wire::FrameDecoder,
// which refuses a declared length above the maximum before buffering a body.
//
// Guarantees:
//  - frames are handed to the host in arrival order, on the io thread;
//  - a bad frame (too large, malformed, bad version, unknown op, wrong kind)
//    on a client connection gets ONE Response naming the problem, then the
//    connection is shut down for sending and closed once the client stops
//    sending or after a short linger (so the reply is not lost to a reset);
//    on a peer link it is logged and the link closed. Other connections are
//    unaffected;
//  - responses are written by one writer: each write takes everything queued
//    so far as one buffer, so frames never interleave;
//  - a client that does not read its responses stops being read once its
//    backlog exceeds the configured bound (backpressure, bounded memory).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "node/asio.h"
#include "wire/frame.h"

namespace stig::node {

class Connection;

// What a Connection needs from the server that owns it (io thread only).
class ConnectionHost {
 public:
  virtual ~ConnectionHost() = default;
  // A request on a client connection (op is set).
  virtual void on_client_request(Connection& conn, stigmergy::v1::Request&& request) = 0;
  // A message on an inbound link authenticated by its hello as `from`.
  virtual void on_peer_message(const std::string& from, stigmergy::v1::PeerMessage&& message) = 0;
  // Whether `id` named in a hello is a configured peer.
  virtual bool is_peer(const std::string& id) const = 0;
  // Whether frames from peer `id` are being dropped (fault injection).
  virtual bool is_dropped(const std::string& id) const = 0;
  virtual const std::string& self_id() const = 0;
  // The connection closed; the host forgets it.
  virtual void on_connection_closed(uint64_t id) = 0;
};

struct ConnectionLimits {
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  uint64_t max_backlog_bytes = 16ull << 20;  // unsent response bytes before reads pause
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Role { kUndecided, kClient, kPeer };

  Connection(ConnectionHost& host, tcp::socket socket, uint64_t id, ConnectionLimits limits);

  void start();

  uint64_t id() const { return id_; }
  Role role() const { return role_; }
  const std::string& remote() const { return remote_; }
  const std::string& peer_id() const { return peer_id_; }

  // A fresh token for a client request on this connection: the connection id
  // in the high bits, a per-connection counter in the low kTokenSlotBits.
  static constexpr int kTokenSlotBits = 24;
  uint64_t next_token() { return (id_ << kTokenSlotBits) | (next_slot_++ & ((1u << kTokenSlotBits) - 1)); }
  static uint64_t connection_of(uint64_t token) { return token >> kTokenSlotBits; }

  // Queues one response frame (client connections). Ignored once closing.
  void send_response(const stigmergy::v1::Response& response);

  // Replies with `code`/`message` (as the reply to `seq`), then closes
  // gracefully. Client or undecided connections only; peers are just closed.
  void fail(stigmergy::v1::ErrorCode code, uint64_t seq, const std::string& message);

  // Stops handing frames to the host (shutdown); writes continue.
  void stop_reading();
  // Closes once every queued response is written (shutdown).
  void close_when_flushed();
  bool write_idle() const { return !writing_ && out_pending_.empty(); }
  bool closed() const { return closed_; }
  // Closes now; idempotent.
  void close();

 private:
  void do_read();
  void on_read(const boost::system::error_code& ec, size_t n);
  void handle(stigmergy::v1::Envelope& env);
  void on_frame_error(wire::FrameError error);
  void do_write();
  void on_write(const boost::system::error_code& ec);
  void begin_linger();
  uint64_t backlog() const { return out_pending_.size() + out_writing_.size(); }

  ConnectionHost& host_;
  tcp::socket socket_;
  asio::steady_timer linger_timer_;
  const uint64_t id_;
  const ConnectionLimits limits_;
  std::string remote_;
  Role role_ = Role::kUndecided;
  std::string peer_id_;
  uint64_t next_slot_ = 0;

  wire::FrameDecoder decoder_;
  stigmergy::v1::Envelope env_;  // reused for every frame
  std::array<char, 64 * 1024> read_buf_;
  bool reading_ = false;
  bool read_paused_ = false;     // backpressure: backlog above the bound
  bool read_stopped_ = false;    // shutdown: no more frames to the host
  bool failing_ = false;         // error reply queued; close after writing it
  bool lingering_ = false;       // send side shut down; discarding input
  bool close_when_flushed_ = false;
  bool closed_ = false;

  std::string out_pending_;  // frames queued since the current write began
  std::string out_writing_;  // the bytes of the write in flight
  bool writing_ = false;
};

}  // namespace stig::node
