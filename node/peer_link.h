// The outbound link to one peer: the only connection this node SENDS peer
// messages to that peer on.
//
// It resolves and connects to the peer's address, sends
// Envelope{peer{from = self, hello{node_id = self}}}, then the queued frames.
// When the connection fails it reconnects with backoff (100 ms doubling to
// 2 s, reset after a successful connect). It reads only to notice that the
// peer closed the connection; peers never send on it. When it has written
// nothing for a keepalive interval it sends the hello again (ignored by the
// peer), so the peer's idle timeout never closes a healthy link, even while
// this node sends the peer nothing (a partition made with admin partition).
//
// With TLS the link completes a TLS 1.3 handshake after connecting, within
// a bounded time, presenting this node's certificate and accepting only a
// server certificate from the cluster CA naming node:<the peer it dialed>;
// anything else is a failed connection attempt (logged, retried with backoff).
// Over TLS each write gathers the queued frames into one plaintext buffer and
// encrypts it into records (up to 16 KiB each), so small messages share them.
//
// Guarantees:
//  - frames go out in the order send() was called (frames in flight when a
//    connection breaks are lost; anti-entropy repairs what they carried);
//  - one writer: each write gathers every queued frame into one async_write,
//    so frames never interleave; frames are shared, never copied;
//  - the queue is bounded by bytes: send() beyond the bound drops the frame
//    and logs a rate-limited warning. Nothing queues while disconnected:
//    frames sent then, and frames still queued when a connection breaks, are
//    dropped (anti-entropy repairs them), so no message outlives a
//    disconnection and arrives long after it was sent.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "node/asio.h"
#include "wire/envelope.h"
#include "node/options.h"
#include "node/tls.h"

struct X509_crl_st;

namespace stig::wire {
class TlsSession;
}

namespace stig::node {

using wire::SharedFrame;

class PeerLink : public std::enable_shared_from_this<PeerLink> {
 public:
  // keepalive 0: never send a keepalive.
  PeerLink(asio::io_context& io, const std::string& self_id, std::string peer_id, Endpoint address,
           uint64_t max_queue_bytes, std::chrono::milliseconds keepalive = std::chrono::milliseconds(0),
           TlsContext* tls = nullptr, std::chrono::milliseconds handshake_timeout = std::chrono::milliseconds(5000));
  ~PeerLink();

  void start();
  // Queues one encoded frame for the peer.
  void send(SharedFrame frame);
  // Drops every queued frame (the peer was partitioned away).
  void clear();
  // Stops reconnecting and closes once the queue is written (shutdown).
  void close_when_flushed();
  // Closes now and stops reconnecting; idempotent.
  void stop();
  // Over TLS: drops the connection (and reconnects, to be refused if the
  // peer keeps its certificate) if the peer's certificate is on `crl`.
  // true if it did.
  bool drop_if_revoked(X509_crl_st* crl);

  bool connected() const { return connected_; }
  bool write_idle() const { return !connected_ || (!writing_ && queue_.empty()); }
  const std::string& peer_id() const { return peer_id_; }
  uint64_t queued_bytes() const { return queued_bytes_; }
  uint64_t dropped() const { return dropped_total_; }

 private:
  // One gathered write: keeps the frames and buffer list (or, over TLS,
  // the records) alive until it completes.
  struct Batch {
    std::vector<SharedFrame> frames;
    std::vector<asio::const_buffer> buffers;
    std::string records;
  };

  void connect();
  void on_tcp_connected(uint64_t gen);
  void on_connected(uint64_t gen);
  void disconnect(const std::string& why);
  void schedule_reconnect();
  void do_write();
  bool encrypt_queue();
  void do_read();
  void on_cipher(const char* data, size_t n);
  void arm_keepalive();

  asio::io_context& io_;
  const std::string peer_id_;
  const Endpoint address_;
  const uint64_t max_queue_bytes_;
  SharedFrame hello_;

  tcp::resolver resolver_;
  tcp::socket socket_;
  TlsContext* const tls_context_;  // null: plain TCP
  const std::chrono::milliseconds handshake_timeout_;
  // The session of the current connection; a new one per connection.
  // Handlers never touch it (they check gen_), so it is simply replaced.
  std::unique_ptr<wire::TlsSession> tls_;
  std::string plain_;  // TLS: the queued frames gathered before encryption
  asio::steady_timer handshake_timer_;
  asio::steady_timer retry_timer_;
  asio::steady_timer keepalive_timer_;
  const std::chrono::milliseconds keepalive_;
  bool wrote_since_keepalive_ = false;
  std::chrono::milliseconds backoff_{100};
  uint64_t gen_ = 0;  // connection attempt; callbacks of older attempts are ignored
  bool connected_ = false;
  bool ever_connected_ = false;
  bool failure_logged_ = false;  // one warning per outage, then debug
  bool stopped_ = false;
  bool close_when_flushed_ = false;

  std::deque<SharedFrame> queue_;
  uint64_t queued_bytes_ = 0;
  bool writing_ = false;
  std::array<char, 512> read_buf_;

  uint64_t dropped_total_ = 0;
  uint64_t dropped_since_warning_ = 0;
  std::chrono::steady_clock::time_point last_drop_warning_{};
};

}  // namespace stig::node
