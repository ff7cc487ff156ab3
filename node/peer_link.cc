#include "node/peer_link.h"

#include <spdlog/spdlog.h>

#include "node/tls_stream.h"
#include "replication/printable.h"
#include "wire/tls_session.h"

namespace stig::node {

namespace pb = stigmergy::v1;

namespace {
constexpr std::chrono::milliseconds kInitialBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};
constexpr std::chrono::seconds kDropWarningEvery{5};
}  // namespace

PeerLink::PeerLink(asio::io_context& io, const std::string& self_id, std::string peer_id, Endpoint address,
                   uint64_t max_queue_bytes, std::chrono::milliseconds keepalive, TlsContext* tls,
                   std::chrono::milliseconds handshake_timeout)
    : io_(io),
      peer_id_(std::move(peer_id)),
      address_(std::move(address)),
      max_queue_bytes_(max_queue_bytes),
      resolver_(io),
      socket_(io),
      tls_context_(tls),
      handshake_timeout_(handshake_timeout),
      handshake_timer_(io),
      retry_timer_(io),
      keepalive_timer_(io),
      keepalive_(keepalive) {
  pb::PeerMessage hello;
  hello.set_from(self_id);
  hello.mutable_hello()->set_node_id(self_id);
  hello_ = wire::encode_peer_frame(hello);
}

PeerLink::~PeerLink() = default;

void PeerLink::start() { connect(); }

void PeerLink::connect() {
  if (stopped_) return;
  const uint64_t gen = ++gen_;
  resolver_.async_resolve(
      address_.host, std::to_string(address_.port),
      [self = shared_from_this(), gen](const boost::system::error_code& ec, tcp::resolver::results_type results) {
        if (gen != self->gen_ || self->stopped_) return;
        if (ec) {
          self->disconnect("cannot resolve " + self->address_.host + ": " + ec.message());
          return;
        }
        asio::async_connect(self->socket_, results,
                            [self, gen](const boost::system::error_code& e, const tcp::endpoint&) {
                              if (gen != self->gen_ || self->stopped_) return;
                              if (e) {
                                self->disconnect(e.message());
                                return;
                              }
                              self->on_tcp_connected(gen);
                            });
      });
}

void PeerLink::on_tcp_connected(uint64_t gen) {
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  if (!tls_context_) {
    on_connected(gen);
    return;
  }
  tls_ = std::make_unique<wire::TlsSession>(tls_context_->get().native_handle(), wire::TlsSession::Role::kClient);
  if (handshake_timeout_.count() > 0) {
    handshake_timer_.expires_after(handshake_timeout_);
    handshake_timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& e) {
      if (e || gen != self->gen_ || self->stopped_ || self->connected_) return;
      self->disconnect("no TLS handshake within " + std::to_string(self->handshake_timeout_.count()) + " ms");
    });
  }
  on_cipher(nullptr, 0);  // the ClientHello
  do_read();
}

// Bytes from the peer: the handshake's, then (peers never send on this
// link) only what TLS itself carries, such as the peer's close or an alert.
void PeerLink::on_cipher(const char* data, size_t n) {
  tls_->feed(data, n);
  boost::system::error_code ec;
  if (!tls_->handshake_done()) {
    const bool done = tls_->handshake(ec);
    do_write();  // this side's flight, or the alert that says why it failed
    if (ec) {
      handshake_timer_.cancel();
      disconnect(describe_tls_error(tls_->native_handle(), ec));
      return;
    }
    if (!done) return;
    handshake_timer_.cancel();
    // The CA vouches for the certificate; its name must be the node we
    // meant to reach, or any node of the cluster could stand in for it.
    const CertIdentity who = peer_identity(tls_->native_handle());
    if (!who.is_node(peer_id_)) {
      disconnect("its certificate is '" + replication::printable(who.subject, 140) + "', not node:" + peer_id_);
      return;
    }
    on_connected(gen_);
    if (!connected_) return;
  }
  std::array<char, 4096> discard;  // a peer's server side sends nothing we read
  ec = tls_->read_all(discard.data(), discard.size(), [](const char*, size_t) {});
  if (ec) {
    disconnect(ec == asio::error::eof ? std::string("closed by peer") : describe_tls_error(tls_->native_handle(), ec));
    return;
  }
  do_write();  // anything TLS wants to answer
}

void PeerLink::on_connected(uint64_t gen) {
  connected_ = true;
  backoff_ = kInitialBackoff;
  if (failure_logged_ || !ever_connected_)
    spdlog::info("connected to peer {} at {}", peer_id_, address_.to_string());
  ever_connected_ = true;
  failure_logged_ = false;
  queue_.push_front(hello_);  // first frame of every connection
  queued_bytes_ += hello_->size();
  (void)gen;
  do_write();
  if (!tls_) do_read();  // over TLS the handshake's read goes on
  arm_keepalive();
}

void PeerLink::arm_keepalive() {
  if (keepalive_.count() <= 0) return;
  wrote_since_keepalive_ = false;
  keepalive_timer_.expires_after(keepalive_);
  const uint64_t gen = gen_;
  keepalive_timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& ec) {
    if (ec || gen != self->gen_ || self->stopped_ || !self->connected_) return;
    if (!self->wrote_since_keepalive_ && !self->writing_ && self->queue_.empty()) {
      self->queue_.push_back(self->hello_);  // a repeated hello changes nothing at the peer
      self->queued_bytes_ += self->hello_->size();
      self->do_write();
    }
    self->arm_keepalive();
  });
}

void PeerLink::disconnect(const std::string& why) {
  const bool was_connected = connected_;
  connected_ = false;
  writing_ = false;  // the in-flight batch is lost; its handler is ignored (gen)
  ++gen_;
  // Unsent messages are dropped, not kept for the next connection: anti-entropy
  // repairs what they carried, and a message never waits long enough to
  // outlive a tombstone's grace period and revive a deleted key.
  queue_.clear();
  queued_bytes_ = 0;
  boost::system::error_code ec;
  handshake_timer_.cancel();
  socket_.close(ec);
  tls_.reset();
  if (stopped_) return;
  if (was_connected) {
    spdlog::warn("lost connection to peer {} at {}: {}; reconnecting", peer_id_, address_.to_string(), why);
    failure_logged_ = true;
  } else if (!failure_logged_) {
    // Peers of a cluster start at about the same time: not reaching one at
    // first is normal, not reaching one again after a connection was lost
    // is worth a warning.
    if (ever_connected_)
      spdlog::warn("cannot reach peer {} at {}: {}; retrying", peer_id_, address_.to_string(), why);
    else
      spdlog::info("peer {} at {} not reachable yet: {}; retrying", peer_id_, address_.to_string(), why);
    failure_logged_ = true;
  } else {
    spdlog::debug("cannot reach peer {} at {}: {}; retrying in {} ms", peer_id_, address_.to_string(), why,
                  backoff_.count());
  }
  if (close_when_flushed_) {
    stop();
    return;
  }
  schedule_reconnect();
}

void PeerLink::schedule_reconnect() {
  retry_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  const uint64_t gen = gen_;
  retry_timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& ec) {
    if (ec || gen != self->gen_ || self->stopped_) return;
    self->connect();
  });
}

void PeerLink::send(SharedFrame frame) {
  if (stopped_) return;
  if (!connected_) {  // see disconnect(): nothing waits for a connection
    ++dropped_total_;
    return;
  }
  if (queued_bytes_ + frame->size() > max_queue_bytes_) {
    ++dropped_total_;
    ++dropped_since_warning_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_drop_warning_ >= kDropWarningEvery) {
      spdlog::warn("outbound queue to peer {} is full ({} bytes queued): dropped {} message(s); anti-entropy will "
                   "repair",
                   peer_id_, queued_bytes_, dropped_since_warning_);
      dropped_since_warning_ = 0;
      last_drop_warning_ = now;
    }
    return;
  }
  queued_bytes_ += frame->size();
  queue_.push_back(std::move(frame));
  do_write();
}

void PeerLink::clear() {
  // The hello must stay first on a live connection; it is only queued while
  // a write of it is pending, so keep a queued hello.
  std::deque<SharedFrame> keep;
  if (!queue_.empty() && queue_.front() == hello_) keep.push_back(hello_);
  queue_.swap(keep);
  queued_bytes_ = queue_.empty() ? 0 : hello_->size();
}

// Over TLS: every queued frame into one plaintext buffer, then records (a
// record holds up to 16 KiB, so small frames share them). false: failed
// (disconnected).
bool PeerLink::encrypt_queue() {
  if (!connected_ || queue_.empty()) return true;
  plain_.clear();
  for (const SharedFrame& f : queue_) plain_.append(*f);
  queue_.clear();
  queued_bytes_ = 0;
  boost::system::error_code ec;
  if (!tls_->write(plain_, ec)) {
    disconnect("TLS write failed: " + describe_tls_error(tls_->native_handle(), ec));
    return false;
  }
  if (plain_.capacity() > (1u << 20)) std::string().swap(plain_);
  return true;
}

void PeerLink::do_write() {
  if (writing_ || stopped_) return;
  if (tls_ ? !encrypt_queue() || tls_->output().empty() : !connected_ || queue_.empty()) return;
  auto batch = std::make_shared<Batch>();
  if (tls_) {
    // Handshake messages go out before the link counts as connected.
    batch->records.swap(tls_->output());
    batch->buffers.emplace_back(asio::buffer(batch->records));
  } else {
    batch->frames.reserve(queue_.size());
    batch->buffers.reserve(queue_.size());
    while (!queue_.empty()) {
      batch->buffers.emplace_back(asio::buffer(*queue_.front()));
      queued_bytes_ -= queue_.front()->size();
      batch->frames.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  writing_ = true;
  wrote_since_keepalive_ = true;
  const uint64_t gen = gen_;
  auto done = [self = shared_from_this(), batch, gen](const boost::system::error_code& ec, size_t) {
    if (gen != self->gen_) return;  // that connection is gone
    self->writing_ = false;
    if (ec) {
      self->disconnect("write failed: " + ec.message());
      return;
    }
    if (self->tls_ && self->tls_->output().empty() && batch->records.capacity() <= (1u << 20)) {
      batch->records.clear();  // its capacity takes the next records
      self->tls_->output().swap(batch->records);
    }
    if (self->queue_.empty() && self->close_when_flushed_) {
      self->stop();
      return;
    }
    self->do_write();
  };
  asio::async_write(socket_, batch->buffers, std::move(done));
}

void PeerLink::do_read() {
  const uint64_t gen = gen_;
  auto done = [self = shared_from_this(), gen](const boost::system::error_code& ec, size_t n) {
    if (gen != self->gen_) return;
    if (ec) {
      if (ec == asio::error::eof && self->tls_ && !self->tls_->handshake_done())
        self->disconnect("connection closed during the TLS handshake (the other side refused it, or does not speak TLS)");
      else
        self->disconnect(ec == asio::error::eof ? std::string("closed by peer") : ec.message());
      return;
    }
    if (self->tls_) {
      self->on_cipher(self->read_buf_.data(), n);
      if (gen != self->gen_) return;  // it failed, or the peer closed the session
    }
    self->do_read();  // peers send nothing else here
  };
  socket_.async_read_some(asio::buffer(read_buf_), std::move(done));
}

bool PeerLink::drop_if_revoked(X509_crl_st* crl) {
  if (!tls_ || !tls_->handshake_done() || !presents_revoked_certificate(tls_->native_handle(), crl)) return false;
  disconnect("its certificate was revoked");
  return true;
}

void PeerLink::close_when_flushed() {
  close_when_flushed_ = true;
  if (write_idle()) stop();
}

void PeerLink::stop() {
  if (stopped_) return;
  stopped_ = true;
  ++gen_;
  connected_ = false;
  writing_ = false;
  boost::system::error_code ec;
  resolver_.cancel();
  handshake_timer_.cancel();
  retry_timer_.cancel();
  keepalive_timer_.cancel();
  socket_.close(ec);
  tls_.reset();
  queue_.clear();
  queued_bytes_ = 0;
}

}  // namespace stig::node
