// One accepted TCP connection: a client, or an inbound link from a peer.
//
// The first frame decides the role: an Envelope carrying a Request makes it a
// client connection; an Envelope carrying PeerMessage{hello} from a configured
// peer makes it an inbound peer link (which only ever receives). The host
// (the Server) admits or refuses either (connection limit, duplicate peer).
//
// TLS (when the host runs with it): the connection first completes a TLS 1.3
// handshake that verifies the other side's certificate against the cluster
// CA (a connection without a valid certificate never gets further), then
// works as below over the TLS stream. The certificate's identity binds the
// role: only an agent certificate may send requests, only node <id>'s
// certificate may say hello as <id>. A handshake not done within the
// handshake timeout is closed with one log line (through the host); a
// failed one sends TLS's alert, then closes. The session is a
// wire::TlsSession driven through memory: the socket is read and written
// exactly as over plain TCP, every complete record of a read is decrypted
// in that wake-up, and every frame queued when a write begins is
// encrypted into records sent by that one write.
//
// Reading: the connection waits for readability, then reads into the host's
// one shared read buffer and hands the bytes to wire::FrameDecoder, which
// refuses a declared length above the maximum before buffering a body. An
// idle connection so holds no read buffer of its own.
//
// Guarantees:
//  - frames are handed to the host in arrival order, on the io thread;
//  - a bad frame (too large, malformed, bad version, unknown op, wrong kind),
//    a frame not completed within the slow-frame timeout, or a frame the
//    host's inbound buffer budget cannot hold, on a client connection gets
//    ONE Response naming the problem, then the connection is shut down for
//    sending and closed once the client stops sending or after a short
//    linger (so the reply is not lost to a reset); on a peer link it is
//    logged and the link closed. Other connections are unaffected;
//  - the bytes of a partly received frame are charged to the host's budget
//    (the whole declared frame as soon as its header is in) and released as
//    frames complete or the connection closes;
//  - timeouts (checked by the host's periodic sweep, check_timeouts()):
//    a connection whose first frame has not begun within the hello timeout,
//    a client connection that neither completed a frame nor finished a write
//    within the idle timeout, and an inbound peer link without a frame within
//    the peer-idle timeout are closed silently;
//  - responses are written by one writer: each write takes everything queued
//    so far as one buffer, so frames never interleave;
//  - a client that does not read its responses stops being read once its
//    backlog exceeds the configured bound (backpressure, bounded memory).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "node/asio.h"
#include "node/coarse_clock.h"
#include "node/tls.h"
#include "wire/frame.h"

struct X509_crl_st;

namespace stig::wire {
class TlsSession;
}

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
  // The first frame of `conn` is a request (with sequence number `seq`):
  // true to serve it as a client; false if refused (the host failed `conn`).
  virtual bool admit_client(Connection& conn, uint64_t seq) = 0;
  // The first frame of `conn` is a hello claiming to be node `id`: true makes
  // it the inbound link from that peer; false if refused (the host logged why;
  // the connection closes).
  virtual bool admit_peer(Connection& conn, const std::string& id) = 0;
  // Whether frames from peer `id` are being dropped (fault injection).
  virtual bool is_dropped(const std::string& id) const = 0;
  virtual const std::string& self_id() const = 0;
  // Inbound buffer budget: `conn` wants to buffer `bytes` more. false if
  // refused (the host failed `conn`); release_inbound returns bytes.
  virtual bool charge_inbound(Connection& conn, uint64_t bytes) = 0;
  virtual void release_inbound(uint64_t bytes) = 0;
  // The one buffer every connection reads into (the io thread is the only
  // reader; the bytes are copied out before the next read).
  virtual asio::mutable_buffer read_buffer() = 0;
  // The connection closed; the host forgets it.
  virtual void on_connection_closed(Connection& conn) = 0;
  // The TLS handshake of `conn` failed or timed out (`why`, one line); the
  // connection closes. The host logs it (rate-limited).
  virtual void on_handshake_failed(Connection& conn, const std::string& why) = 0;
};

struct ConnectionLimits {
  using Ms = std::chrono::milliseconds;
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  uint64_t max_backlog_bytes = 16ull << 20;  // unsent response bytes before reads pause
  // Requests handed to the core and not yet answered before the connection
  // stops decoding more: each answer can be megabytes (a get of a large key),
  // so this, not the request bytes, bounds what one read can make the node hold.
  uint32_t max_requests_in_flight = 32;
  Ms hello_timeout{10'000};                  // 0: off
  Ms idle_timeout{300'000};                  // 0: off
  Ms slow_frame_timeout{30'000};             // 0: off
  Ms peer_idle_timeout{5'000};               // 0: off
  Ms handshake_timeout{5'000};               // TLS handshake; 0: off
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Frame, write and accept times feed timeouts of a second or more.
  using Clock = CoarseClock;
  enum class Role { kUndecided, kClient, kPeer };
  // How the host counts the connection against its limits (host-owned).
  enum class Slot : uint8_t { kNone, kClient, kProbation, kRefused, kPeer };

  // `tls` null: plain TCP. Otherwise a TLS session is made from it.
  Connection(ConnectionHost& host, tcp::socket socket, uint64_t id, const ConnectionLimits& limits,
             TlsContext* tls = nullptr);
  ~Connection();

  void start();
  // Answers one error frame and closes, without serving the connection.
  void refuse(stigmergy::v1::ErrorCode code, const std::string& message);

  uint64_t id() const { return id_; }
  Role role() const { return role_; }
  const std::string& remote() const { return remote_; }
  const std::string& peer_id() const { return peer_id_; }
  // Over TLS: whom the verified certificate names (after the handshake).
  bool tls() const { return tls_ != nullptr; }
  const CertIdentity& identity() const { return identity_; }
  // Over TLS, after the handshake: whether the certificate the other side
  // presented is on `crl` (a revocation list just reloaded).
  bool presents_revoked(X509_crl_st* crl);
  Slot slot() const { return slot_; }
  void set_slot(Slot s) { slot_ = s; }
  Clock::time_point last_frame_at() const { return last_frame_at_; }

  // A fresh token for a client request on this connection: the connection id
  // in the high bits, a per-connection counter in the low kTokenSlotBits.
  static constexpr int kTokenSlotBits = 24;
  uint64_t next_token() { return (id_ << kTokenSlotBits) | (next_slot_++ & ((1u << kTokenSlotBits) - 1)); }
  static uint64_t connection_of(uint64_t token) { return token >> kTokenSlotBits; }

  // Queues one response frame (client connections). Ignored once closing.
  void send_response(const stigmergy::v1::Response& response);

  // Replies with `code`/`message` (as the reply to `seq`), then closes
  // gracefully. Client or undecided connections only; peers are just closed.
  // `message` is made one line of valid UTF-8. `log` false: the host logs.
  void fail(stigmergy::v1::ErrorCode code, uint64_t seq, const std::string& message, bool log = true);

  // Closes the connection if one of its timeouts has passed (host's sweep).
  void check_timeouts(Clock::time_point now);

  // Stops handing frames to the host (shutdown); writes continue.
  void stop_reading();
  // Closes once every queued response is written (shutdown).
  void close_when_flushed();
  bool write_idle() const { return !writing_ && !has_unsent(); }
  bool closed() const { return closed_; }
  // Closes now; idempotent.
  void close();

 private:
  void on_first_bytes(const boost::system::error_code& ec);
  void wait_readable();
  void on_read(const boost::system::error_code& ec, size_t n);
  void on_bytes(const char* data, size_t n);
  // Over TLS: bytes from the socket; advances the handshake, then decrypts
  // every complete record into the decoder.
  void on_cipher(const char* data, size_t n);
  bool finish_handshake();
  void on_read_error(const boost::system::error_code& ec);
  bool settle_charge();
  // Decodes and hands over buffered frames while fewer than the limit of
  // requests are in flight; then waits for more bytes, or for answers.
  void drain_frames() { drain_frames(Clock::now()); }
  void drain_frames(Clock::time_point now);
  void drop_input();
  void handle(stigmergy::v1::Envelope& env);
  void on_frame_error(wire::FrameError error);
  void do_write();
  void on_write(const boost::system::error_code& ec);
  void begin_linger();
  bool has_unsent() const;
  uint64_t backlog() const;
  bool frame_in_progress() const { return frame_started_at_ != Clock::time_point{}; }

  ConnectionHost& host_;
  tcp::socket socket_;
  std::unique_ptr<wire::TlsSession> tls_;  // null: plain TCP
  CertIdentity identity_;
  bool handshaking_ = false;
  // refuse() on a TLS connection: the reply to send once the handshake is done.
  std::unique_ptr<std::pair<stigmergy::v1::ErrorCode, std::string>> refusal_;
  asio::steady_timer linger_timer_;
  const uint64_t id_;
  const ConnectionLimits limits_;
  std::string remote_;
  Role role_ = Role::kUndecided;
  Slot slot_ = Slot::kNone;
  std::string peer_id_;
  uint64_t next_slot_ = 0;

  // Reads land here first: asio tries a read at once and only then waits,
  // so a wait costs no epoll_ctl (a plain async_wait re-arms the socket
  // with one every time). Small, as requests are; a full read is followed
  // by a read into the host's large shared buffer.
  std::array<char, 512> read_buf_;
  wire::FrameDecoder decoder_;
  stigmergy::v1::Envelope env_;  // reused for every frame
  uint64_t charged_ = 0;         // bytes charged to the host's inbound budget
  uint32_t in_flight_ = 0;       // client requests handed to the host, not yet answered
  bool awaiting_answers_ = false;  // decoding stopped at the in-flight limit
  bool reading_ = false;
  bool read_paused_ = false;     // backpressure: backlog above the bound
  bool read_stopped_ = false;    // shutdown: no more frames to the host
  bool failing_ = false;         // error reply queued; close after writing it
  bool lingering_ = false;       // send side shut down; discarding input
  bool close_when_flushed_ = false;
  bool closed_ = false;

  const Clock::time_point accepted_at_;
  Clock::time_point last_frame_at_;     // last complete frame (or accept)
  Clock::time_point last_write_at_;     // last completed write (or accept)
  Clock::time_point frame_started_at_;  // first byte of the frame in progress; {} if none

  std::string out_pending_;  // frames queued since the current write began
  // The bytes of the write in flight (over TLS: records; the frames are
  // encrypted at once when a write begins, and TLS output waits in tls_).
  std::string out_writing_;
  bool writing_ = false;
};

}  // namespace stig::node
