#include "wire/tls_session.h"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace stig::wire {

// The BIO under a session: reads come from the session's fed bytes (an empty
// buffer is "try again", never end of file: the owner learns of the socket's
// end itself), writes append to its output. No copy beyond the one into the
// session and OpenSSL's own, no syscall.
struct TlsSessionBio {
  static TlsSession& of(BIO* b) { return *static_cast<TlsSession*>(BIO_get_data(b)); }

  static int write(BIO* b, const char* data, int n) {
    BIO_clear_retry_flags(b);
    if (n <= 0) return 0;
    of(b).out_.append(data, static_cast<size_t>(n));
    return n;
  }

  static int read(BIO* b, char* data, int n) {
    BIO_clear_retry_flags(b);
    TlsSession& s = of(b);
    const size_t available = s.in_.size() - s.in_pos_;
    if (available == 0) {
      BIO_set_retry_read(b);
      return -1;
    }
    const size_t take = std::min(available, static_cast<size_t>(std::max(n, 0)));
    std::memcpy(data, s.in_.data() + s.in_pos_, take);
    s.in_pos_ += take;
    if (s.in_pos_ == s.in_.size()) {
      s.in_.clear();
      s.in_pos_ = 0;
    }
    return static_cast<int>(take);
  }

  static long ctrl(BIO* b, int cmd, long, void*) {
    switch (cmd) {
      case BIO_CTRL_FLUSH: return 1;
      case BIO_CTRL_PENDING: {
        const TlsSession& s = of(b);
        return static_cast<long>(std::min<size_t>(s.in_.size() - s.in_pos_, std::numeric_limits<long>::max()));
      }
      default: return 0;  // no EOF, nothing buffered for writing, no kTLS
    }
  }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }

  static const BIO_METHOD* method() {
    static const BIO_METHOD* const m = [] {
      BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "stig tls session");
      if (!meth || BIO_meth_set_write(meth, &write) != 1 || BIO_meth_set_read(meth, &read) != 1 ||
          BIO_meth_set_ctrl(meth, &ctrl) != 1 || BIO_meth_set_create(meth, &create) != 1)
        throw std::runtime_error("cannot set up OpenSSL's BIO for TLS sessions");
      return meth;
    }();
    return m;
  }
};

TlsSession::TlsSession(ssl_ctx_st* ctx, Role role) {
  ssl_ = SSL_new(ctx);
  BIO* bio = ssl_ ? BIO_new(TlsSessionBio::method()) : nullptr;
  if (!bio) {
    if (ssl_) SSL_free(ssl_);
    ERR_clear_error();
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: the session owns one reference
  if (role == Role::kServer)
    SSL_set_accept_state(ssl_);
  else
    SSL_set_connect_state(ssl_);
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

void TlsSession::feed(const char* data, size_t n) {
  if (n == 0) return;
  if (in_pos_ > 0) {  // keep only the unconsumed tail (a partial record)
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  in_.append(data, n);
}

// What Asio's ssl::stream would report for the same failure, so one set of
// describe functions serves both.
boost::system::error_code TlsSession::error_of(int ret) {
  const int kind = SSL_get_error(ssl_, ret);
  switch (kind) {
    case SSL_ERROR_WANT_READ: return {};
    case SSL_ERROR_ZERO_RETURN: return boost::asio::error::eof;
    case SSL_ERROR_SSL: {
      const unsigned long e = ERR_get_error();
      ERR_clear_error();
      if (e != 0) return {static_cast<int>(e), boost::asio::error::get_ssl_category()};
      return boost::asio::ssl::error::unspecified_system_error;  // failed before, nothing new queued
    }
    case SSL_ERROR_SYSCALL: ERR_clear_error(); return boost::asio::ssl::error::stream_truncated;
    default: ERR_clear_error(); return boost::asio::ssl::error::unspecified_system_error;
  }
}

// SSL_get_error needs an empty error queue before the call it reads; every
// failure here leaves it empty, so a peek (cheaper than a clear) suffices.
static void ensure_no_stale_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

bool TlsSession::handshake(boost::system::error_code& ec) {
  ec.clear();
  if (handshake_done_) return true;
  ensure_no_stale_errors();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_done_ = true;
    return true;
  }
  ec = error_of(r);
  return false;
}

// Whether a read can return something: OpenSSL holds bytes of its own (a
// decrypted remainder or part of a record), or a whole record was fed. So
// the read that would only find a record incomplete is not made: it costs
// as much as a successful one.
bool TlsSession::record_ready() const {
  if (SSL_has_pending(ssl_)) return true;
  const size_t available = in_.size() - in_pos_;
  if (available < kRecordHeaderBytes) return false;
  const auto* header = reinterpret_cast<const unsigned char*>(in_.data() + in_pos_);
  const size_t length = (size_t{header[3]} << 8) | header[4];
  // A length no record may have: let OpenSSL refuse it now, not after
  // buffering up to 64 KiB of it.
  if (length > kMaxRecordPayloadBytes) return true;
  return available >= kRecordHeaderBytes + length;
}

void TlsSession::release_buffers() { SSL_free_buffers(ssl_); }

size_t TlsSession::read(char* buf, size_t capacity, boost::system::error_code& ec) {
  ec.clear();
  if (!record_ready()) return 0;
  ensure_no_stale_errors();
  size_t n = 0;
  if (SSL_read_ex(ssl_, buf, capacity, &n) == 1) return n;
  ec = error_of(0);
  return 0;
}

bool TlsSession::write(std::string_view plain, boost::system::error_code& ec) {
  ec.clear();
  ensure_no_stale_errors();
  while (!plain.empty()) {
    size_t written = 0;
    if (SSL_write_ex(ssl_, plain.data(), plain.size(), &written) != 1) {
      ec = error_of(0);
      if (!ec) ec = boost::asio::ssl::error::unspecified_system_error;  // a write never waits for input here
      return false;
    }
    plain.remove_prefix(written);
  }
  return true;
}

}  // namespace stig::wire
