// One TLS session driven through memory instead of through a socket.
//
// The owner moves the bytes: what its socket read goes in with feed(), what
// the session has to send (handshake messages, records, alerts) is taken
// from output() and written by the owner. So TLS rides the owner's own
// batching: every record that one socket read brought in is decrypted in
// that wake-up, and every reply queued in one wake-up becomes one buffer of
// records sent with one write. (Asio's ssl::stream takes a scheduler round
// trip per record read and per buffer written, which cost a small put
// 20-30% of its throughput; see bench/README.md "TLS vs plain TCP".)
//
// Light header on purpose (no OpenSSL): stigd's connections, peer links and
// stig-bench include it.
//
// Guarantees:
//  - bytes fed are consumed in order, and plaintext comes out of read() in
//    the order it was sent;
//  - nothing is written to any socket here; output() only grows, the owner
//    empties it (swap it out, or clear it once written);
//  - errors are values: Boost error codes in Asio's ssl category (what
//    ssl::stream reports, so the same describe functions read them), or
//    asio::error::eof for the other side's close_notify;
//  - after an error the session stays failed; output() may still hold the
//    alert that tells the other side why, worth sending before closing.
//
// Not thread-safe: one session per connection, used by one thread.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <string>
#include <string_view>

struct ssl_st;
struct ssl_ctx_st;
struct bio_st;

namespace stig::wire {

class TlsSession {
 public:
  enum class Role { kClient, kServer };

  // `ctx` (an SSL_CTX: certificates, trust, verification) is referenced for
  // the session's life.
  TlsSession(ssl_ctx_st* ctx, Role role);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Bytes the socket delivered, in order (copied).
  void feed(const char* data, size_t n);

  // Advances the handshake with what was fed so far; may add to output().
  // true once complete. false with `ec` clear: it needs more input.
  bool handshake(boost::system::error_code& ec);
  bool handshake_done() const { return handshake_done_; }

  // Decrypts into `buf` what was fed: the number of bytes (> 0), or 0 with
  // `ec` clear when no complete record is left (feed more), eof when the
  // other side closed the session, or the error.
  size_t read(char* buf, size_t capacity, boost::system::error_code& ec);

  // Decrypts every complete record fed so far, `buf` at a time, handing
  // each piece to sink(const char* data, size_t n). Returns what read()
  // ended with: clear (feed more), eof, or the error.
  template <typename Sink>
  boost::system::error_code read_all(char* buf, size_t capacity, Sink&& sink) {
    boost::system::error_code ec;
    while (const size_t got = read(buf, capacity, ec)) sink(static_cast<const char*>(buf), got);
    return ec;
  }

  // Encrypts `plain` into records appended to output() (a record holds up
  // to 16 KiB). After the handshake only. false (and `ec`) on failure.
  bool write(std::string_view plain, boost::system::error_code& ec);

  // What is waiting to be sent, in order.
  std::string& output() { return out_; }

  // Gives OpenSSL's record buffers (about 34 KiB) back while the
  // connection is idle; they come back with the next record.
  void release_buffers();

  ssl_st* native_handle() { return ssl_; }

 private:
  friend struct TlsSessionBio;
  boost::system::error_code error_of(int ret);
  bool record_ready() const;

  static constexpr size_t kRecordHeaderBytes = 5;
  // TLS 1.3: 16 KiB of plaintext, its content type and up to 255 bytes of
  // padding and tag (RFC 8446 section 5.2).
  static constexpr size_t kMaxRecordPayloadBytes = 16384 + 256;

  ssl_st* ssl_ = nullptr;
  std::string in_;       // fed bytes not yet consumed, from in_pos_
  size_t in_pos_ = 0;
  std::string out_;      // bytes for the socket
  bool handshake_done_ = false;
};

}  // namespace stig::wire
