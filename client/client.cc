#include "stigmergy/client.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <cstdlib>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "client/asio.h"
#include "client/internal.h"
#include "client/tls.h"
#include "stigmergy.pb.h"
#include "stigmergy/text.h"
#include "wire/envelope.h"
#include "wire/frame.h"

namespace stigmergy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// ---------------------------------------------------------------------------
// Errors, durability, endpoints, agent

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kBadRequest: return "BAD_REQUEST";
    case ErrorCode::kWrongType: return "WRONG_TYPE";
    case ErrorCode::kTooManySiblings: return "TOO_MANY_SIBLINGS";
    case ErrorCode::kMalformedContext: return "MALFORMED_CONTEXT";
    case ErrorCode::kDurabilityNotMet: return "DURABILITY_NOT_MET";
    case ErrorCode::kFrameTooLarge: return "FRAME_TOO_LARGE";
    case ErrorCode::kMalformedFrame: return "MALFORMED_FRAME";
    case ErrorCode::kUnknownRequest: return "UNKNOWN_REQUEST";
    case ErrorCode::kInternal: return "INTERNAL";
    case ErrorCode::kUnavailable: return "UNAVAILABLE";
    case ErrorCode::kStaleRequest: return "STALE_REQUEST";
    case ErrorCode::kPermissionDenied: return "PERMISSION_DENIED";
    case ErrorCode::kConflict: return "CONFLICT";
    case ErrorCode::kBusy: return "BUSY";
    case ErrorCode::kDeadlock: return "DEADLOCK";
    case ErrorCode::kNotLeader: return "NOT_LEADER";
    case ErrorCode::kNotFound: return "NOT_FOUND";
    case ErrorCode::kCompacted: return "COMPACTED";
    case ErrorCode::kSessionExpired: return "SESSION_EXPIRED";
    case ErrorCode::kRetryUnknown: return "RETRY_UNKNOWN";
    case ErrorCode::kOutcomeUnknown: return "OUTCOME_UNKNOWN";
    case ErrorCode::kServerOther: return "SERVER_ERROR";
    case ErrorCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::kUnreachable: return "UNREACHABLE";
    case ErrorCode::kProtocol: return "PROTOCOL_ERROR";
  }
  return "UNKNOWN";
}

bool is_server_error(ErrorCode code) {
  return code != ErrorCode::kOk && code != ErrorCode::kInvalidArgument && code != ErrorCode::kUnreachable &&
         code != ErrorCode::kProtocol && code != ErrorCode::kOutcomeUnknown;
}

std::string Error::to_string() const {
  std::string out = message.empty() ? std::string(error_code_name(code)) : message;
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

Result<Durability> parse_durability(std::string_view text) {
  if (text == "local") return Durability::kLocal;
  if (text == "quorum") return Durability::kQuorum;
  if (text == "all") return Durability::kAll;
  return make_error(ErrorCode::kInvalidArgument,
                    "unknown durability '" + std::string(text) + "' (expected local, quorum or all)");
}

const char* durability_name(Durability d) {
  switch (d) {
    case Durability::kLocal: return "local";
    case Durability::kQuorum: return "quorum";
    case Durability::kAll: return "all";
  }
  return "local";
}

std::string Endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  const std::string shown(text);
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, "bad endpoint '" + shown + "': " + why + " (expected HOST:PORT)");
  };
  if (text.empty()) return bad("empty");
  Endpoint ep;
  std::string_view port;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']' after IPv6 address");
    ep.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("missing ':PORT' after ']'");
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("missing ':PORT'");
    ep.host = std::string(text.substr(0, colon));
    if (ep.host.find(':') != std::string::npos) return bad("IPv6 addresses need brackets, as in [::1]:7101");
    port = text.substr(colon + 1);
  }
  if (ep.host.empty()) return bad("missing host");
  for (char c : ep.host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == ',' || c == '/') return bad("invalid character in host");
  }
  if (port.empty()) return bad("missing port");
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad("port '" + std::string(port) + "' is not a number");
    p = p * 10 + static_cast<uint32_t>(c - '0');
    if (p > 65535) return bad("port '" + std::string(port) + "' is out of range 1-65535");
  }
  if (p == 0) return bad("port 0 is not allowed");
  ep.port = static_cast<uint16_t>(p);
  return ep;
}

Result<std::vector<Endpoint>> parse_endpoints(std::string_view csv) {
  std::vector<Endpoint> out;
  if (csv.find_first_not_of(" \t") == std::string_view::npos) {
    return make_error(ErrorCode::kInvalidArgument, "no endpoints given (expected HOST:PORT[,HOST:PORT...])");
  }
  size_t start = 0;
  while (true) {
    const size_t comma = csv.find(',', start);
    std::string_view item = csv.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "bad endpoint list '" + std::string(csv) + "': empty item (expected HOST:PORT[,HOST:PORT...])");
    }
    auto ep = parse_endpoint(item);
    if (!ep) return ep.error();
    for (const auto& seen : out) {
      if (seen.host == ep->host && seen.port == ep->port) {
        return make_error(ErrorCode::kInvalidArgument, "endpoint '" + std::string(item) + "' is listed twice");
      }
    }
    out.push_back(std::move(ep).value());
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string default_agent() {
  if (const char* a = std::getenv("STIG_AGENT"); a != nullptr && *a != '\0') return a;
  std::string user;
  if (const char* u = std::getenv("USER"); u != nullptr && *u != '\0') {
    user = u;
  } else if (const char* l = std::getenv("LOGNAME"); l != nullptr && *l != '\0') {
    user = l;
  } else {
    user = "uid" + std::to_string(::getuid());
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return user;
  return user + "@" + host;
}

std::vector<std::string> GetReply::values() const {
  std::vector<std::string> out;
  for (const auto& v : versions) out.push_back(v.value);
  return out;
}

namespace {

namespace pb = stigmergy::v1;

// Responses may be larger than requests (many siblings); accept up to this.
constexpr uint32_t kMaxResponseBytes = 64u << 20;
// Remembered contexts for read-your-writes are dropped wholesale past this
// many keys, which bounds memory for clients that touch unbounded key sets.
constexpr size_t kMaxRememberedKeys = 100000;

pb::Durability to_pb(Durability d) {
  switch (d) {
    case Durability::kLocal: return pb::DURABILITY_LOCAL;
    case Durability::kQuorum: return pb::DURABILITY_QUORUM;
    case Durability::kAll: return pb::DURABILITY_ALL;
  }
  return pb::DURABILITY_LOCAL;
}

ErrorCode from_pb(pb::ErrorCode e) {
  switch (e) {
    case pb::OK: return ErrorCode::kOk;
    case pb::BAD_REQUEST: return ErrorCode::kBadRequest;
    case pb::WRONG_TYPE: return ErrorCode::kWrongType;
    case pb::TOO_MANY_SIBLINGS: return ErrorCode::kTooManySiblings;
    case pb::MALFORMED_CONTEXT: return ErrorCode::kMalformedContext;
    case pb::DURABILITY_NOT_MET: return ErrorCode::kDurabilityNotMet;
    case pb::FRAME_TOO_LARGE: return ErrorCode::kFrameTooLarge;
    case pb::MALFORMED_FRAME: return ErrorCode::kMalformedFrame;
    case pb::UNKNOWN_REQUEST: return ErrorCode::kUnknownRequest;
    case pb::INTERNAL: return ErrorCode::kInternal;
    case pb::UNAVAILABLE: return ErrorCode::kUnavailable;
    case pb::STALE_REQUEST: return ErrorCode::kStaleRequest;
    case pb::PERMISSION_DENIED: return ErrorCode::kPermissionDenied;
    case pb::CONFLICT: return ErrorCode::kConflict;
    case pb::BUSY: return ErrorCode::kBusy;
    case pb::DEADLOCK: return ErrorCode::kDeadlock;
    case pb::NOT_LEADER: return ErrorCode::kNotLeader;
    case pb::OUTCOME_UNKNOWN: return ErrorCode::kOutcomeUnknown;
    case pb::NOT_FOUND: return ErrorCode::kNotFound;
    case pb::COMPACTED: return ErrorCode::kCompacted;
    case pb::SESSION_EXPIRED: return ErrorCode::kSessionExpired;
    case pb::RETRY_UNKNOWN: return ErrorCode::kRetryUnknown;
    default: return ErrorCode::kServerOther;
  }
}

std::string millis_text(Clock::duration d) {
  return std::to_string(std::chrono::round<std::chrono::milliseconds>(d).count()) + " ms";
}

std::string random_client_id() {
  std::random_device rd;
  std::mt19937_64 gen((uint64_t{rd()} << 32) ^ rd() ^
                      static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^
                      (static_cast<uint64_t>(::getpid()) << 17));
  static const char* hex = "0123456789abcdef";
  uint64_t v = gen();
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = hex[v & 15];
  return out;
}

// Runs one asynchronous operation on `io` to completion or until `deadline`,
// whichever comes first. `start(done)` starts the operation, whose handler
// must call done(ec). On timeout `cancel()` aborts the operation (closing the
// socket, Asio 1.18 has no per-operation cancellation) and timed_out is returned.
template <class Start, class Cancel>
error_code run_until(asio::io_context& io, Clock::time_point deadline, Start&& start, Cancel&& cancel) {
  bool finished = false;
  error_code result;
  io.restart();
  start([&](const error_code& ec) {
    finished = true;
    result = ec;
  });
  io.run_until(deadline);
  if (!finished) {
    cancel();
    io.restart();
    io.run();  // lets the aborted handler run, so nothing refers to this frame
    if (!finished) result = asio::error::operation_aborted;
    return asio::error::timed_out;
  }
  return result;
}

// A failed attempt at one endpoint.
struct TransportFailure {
  std::string reason;       // "connection refused", "timed out after 3000 ms", ...
  bool maybe_applied = false;  // the request was sent before the failure
  bool reused = false;      // failed on a connection kept from an earlier call
};

// One TCP connection to one endpoint, driven synchronously with deadlines,
// over TLS when the client has a TLS context (a new session per connection,
// handshake within the connect budget, node certificate checked).
// Guarantees: a call returns by its deadline; after any failure the socket is
// closed, so a late reply to an abandoned request can never be mistaken for
// the answer to a later one (replies are also matched by seq).
class Connection {
 public:
  using TlsSocket = asio::ssl::stream<tcp::socket&>;

  Connection(asio::io_context& io, Endpoint ep, std::shared_ptr<internal::ClientTls> tls)
      : io_(io), ep_(std::move(ep)), socket_(io), tls_(std::move(tls)), decoder_(kMaxResponseBytes) {}

  const Endpoint& endpoint() const { return ep_; }

  // Sends `frame` (a request with sequence number `seq`) and waits for the
  // response carrying the same seq. Frames for other seqs are skipped.
  // `connect_budget` bounds connection set-up; `budget` (ending at
  // `deadline`) bounds the whole call.
  std::optional<TransportFailure> call(const std::string& frame, uint64_t seq, Clock::duration connect_budget,
                                       Clock::time_point deadline, Clock::duration budget, pb::Response& out) {
    const bool reused = socket_.is_open();
    if (!reused) {
      connect_budget = std::min(connect_budget, budget);
      if (auto f = connect(std::min(Clock::now() + connect_budget, deadline), connect_budget)) return f;
    }
    auto fail = [&](const error_code& ec, bool sent) {
      close();
      TransportFailure f;
      f.reused = reused;
      f.maybe_applied = sent;
      if (ec == asio::error::timed_out) {
        f.reason = sent ? "no reply within " + millis_text(budget) : "timed out after " + millis_text(budget);
      } else {
        f.reason = describe(ec);
        if (stream_ && internal::is_credential_refusal(ec)) f.maybe_applied = false;  // never read
      }
      return f;
    };
    error_code ec = run_until(
        io_, deadline,
        [&](auto done) {
          if (stream_)
            asio::async_write(*stream_, asio::buffer(frame), [done](const error_code& e, size_t) { done(e); });
          else
            asio::async_write(socket_, asio::buffer(frame), [done](const error_code& e, size_t) { done(e); });
        },
        [&] { close(); });
    if (ec) return fail(ec, false);

    pb::Envelope env;
    while (true) {
      while (decoder_.next(env)) {
        if (!env.has_response()) continue;
        if (env.response().seq() == seq ||
            (env.response().seq() == 0 && env.response().error() != pb::OK)) {
          out = std::move(*env.mutable_response());
          return std::nullopt;
        }
      }
      if (decoder_.error() != stig::wire::FrameError::kNone) {
        TransportFailure f;
        f.reason = std::string("bad reply: ") + stig::wire::frame_error_message(decoder_.error());
        f.maybe_applied = true;
        f.reused = reused;
        close();
        return f;
      }
      size_t got = 0;
      ec = run_until(
          io_, deadline,
          [&](auto done) {
            auto on_read = [done, &got](const error_code& e, size_t n) {
              got = n;
              done(e);
            };
            if (stream_)
              stream_->async_read_some(asio::buffer(buf_), on_read);
            else
              socket_.async_read_some(asio::buffer(buf_), on_read);
          },
          [&] { close(); });
      if (ec) return fail(ec, true);
      decoder_.feed(std::string_view(buf_.data(), got));
    }
  }

  void close() {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    decoder_ = stig::wire::FrameDecoder(kMaxResponseBytes);
  }

 private:
  std::string describe(const error_code& ec) const {
    if (stream_ && (ec.category() == asio::error::get_ssl_category() || ec == asio::ssl::error::stream_truncated))
      return internal::describe_tls_failure(stream_->native_handle(), ec, !tls_->agent.empty());
    if (ec == asio::error::connection_refused) return "connection refused";
    if (ec == asio::error::eof) return "connection closed by the node";
    if (ec == asio::error::connection_reset) return "connection reset by the node";
    if (ec == asio::error::broken_pipe) return "connection closed by the node (broken pipe)";
    if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again) return "host not found";
    if (ec == asio::error::network_unreachable) return "network unreachable";
    if (ec == asio::error::host_unreachable) return "host unreachable";
    return ec.message();
  }

  std::optional<TransportFailure> connect(Clock::time_point deadline, Clock::duration budget) {
    close();
    stream_.reset();  // no operation is pending on it: run_until drains them
    tcp::resolver resolver(io_);
    tcp::resolver::results_type results;
    error_code ec = run_until(
        io_, deadline,
        [&](auto done) {
          resolver.async_resolve(ep_.host, std::to_string(ep_.port),
                                 [done, &results](const error_code& e, tcp::resolver::results_type r) {
                                   results = std::move(r);
                                   done(e);
                                 });
        },
        [&] { resolver.cancel(); });
    if (!ec) {
      ec = run_until(
          io_, deadline,
          [&](auto done) {
            asio::async_connect(socket_, results, [done](const error_code& e, const tcp::endpoint&) { done(e); });
          },
          [&] { close(); });
    }
    if (ec) {
      close();
      TransportFailure f;
      f.reason = ec == asio::error::timed_out ? "could not connect within " + millis_text(budget) : describe(ec);
      return f;
    }
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    if (tls_) return handshake(deadline, budget);
    return std::nullopt;
  }

  std::optional<TransportFailure> handshake(Clock::time_point deadline, Clock::duration budget) {
    stream_ = std::make_unique<TlsSocket>(socket_, tls_->ctx);
    error_code ec = run_until(
        io_, deadline,
        [&](auto done) {
          stream_->async_handshake(asio::ssl::stream_base::client, [done](const error_code& e) { done(e); });
        },
        [&] { close(); });
    std::string bad;
    if (ec == asio::error::timed_out)
      bad = "no TLS handshake within " + millis_text(budget) + " (does the node run with TLS?)";
    else if (ec)
      bad = internal::describe_tls_failure(stream_->native_handle(), ec, !tls_->agent.empty());
    else
      bad = internal::check_node_certificate(stream_->native_handle());
    if (bad.empty()) return std::nullopt;
    close();
    TransportFailure f;
    f.reason = bad;
    return f;
  }

  asio::io_context& io_;
  Endpoint ep_;
  tcp::socket socket_;
  std::shared_ptr<internal::ClientTls> tls_;  // null: plain TCP
  std::unique_ptr<TlsSocket> stream_;         // the session of the open connection
  stig::wire::FrameDecoder decoder_;
  std::array<char, 64 * 1024> buf_{};
};

Error server_error(const pb::Response& r) {
  const ErrorCode code = from_pb(r.error());
  std::string name = error_code_name(code);
  if (code == ErrorCode::kServerOther) name += " " + std::to_string(static_cast<int>(r.error()));
  std::string where = name + (r.node().empty() ? "" : ", node " + r.node());
  std::string msg = r.error_message().empty() ? "the node refused the request" : r.error_message();
  return make_error(code, msg + " (" + where + ")", r.node());
}

Result<void> check_key(std::string_view key) {
  if (key.empty()) return make_error(ErrorCode::kInvalidArgument, "key must not be empty");
  return {};
}

Error wrong_result(const pb::Response& r, const char* expected) {
  return make_error(ErrorCode::kProtocol,
                    std::string("node ") + (r.node().empty() ? "?" : r.node()) + " sent an unexpected reply (expected " +
                        expected + " result)",
                    r.node());
}

std::vector<Version> to_versions(const google::protobuf::RepeatedPtrField<pb::Version>& vs) {
  std::vector<Version> out;
  out.reserve(static_cast<size_t>(vs.size()));
  for (const auto& v : vs) {
    out.push_back(Version{v.value(), v.modified_by(), v.modified_at_ms(), v.dot_node(), v.dot_counter()});
  }
  return out;
}

PutReply parse_put(const pb::Response& r, std::string_view key) {
  return PutReply{r.put().key().empty() ? std::string(key) : r.put().key(),
                  r.put().context(),
                  to_versions(r.put().versions()),
                  r.node(),
                  r.put().dot_node(),
                  r.put().dot_counter(),
                  r.put().context_cut()};
}

}  // namespace

// ---------------------------------------------------------------------------
// Client::Impl

// Holds connections, the sequence counter, the sticky endpoint and the
// remembered contexts of one Client.
class Client::Impl {
 public:
  Impl(ClientOptions o, std::vector<Endpoint> eps, std::shared_ptr<internal::ClientTls> tls)
      : opts_(std::move(o)), tls_(std::move(tls)), rng_(std::random_device{}()) {
    for (auto& ep : eps) conns_.push_back(std::make_unique<Connection>(io_, std::move(ep), tls_));
    configured_ = conns_.size();
  }

  const ClientOptions& opts() const { return opts_; }
  std::string current_endpoint() const { return conns_[current_]->endpoint().to_string(); }

  pb::Request new_request() {
    pb::Request req;
    req.set_client_id(opts_.client_id);
    req.set_seq(next_seq_++);
    req.set_agent(opts_.agent);
    return req;
  }

  // Sends `req` to the current endpoint, failing over to the others in order.
  // Server errors other than UNAVAILABLE are returned as errors, not retried.
  Result<pb::Response> call(const pb::Request& req) {
    std::vector<std::string> failures;
    bool maybe_applied = false;
    const size_t n = conns_.size();
    // A lazy write sent again elsewhere says it is a retry: the nodes it may
    // have reached and, for each, the dot counter that node last reported
    // before the first attempt (docs/lazy-path.md "Retries").
    const bool lazy_write = is_write(req);
    const std::map<std::string, uint64_t> horizons = lazy_write ? node_dots_ : std::map<std::string, uint64_t>();
    std::vector<size_t> reached;
    pb::Request retry;
    for (size_t i = 0; i < n; ++i) {
      const size_t idx = (current_ + i) % n;
      const pb::Request* send = &req;
      if (lazy_write && !reached.empty()) {
        retry = req;
        retry.set_attempt(static_cast<uint32_t>(i + 1));
        for (size_t t : reached) {
          auto id = conn_node_.find(t);
          if (id == conn_node_.end()) {
            retry.set_tried_unknown(true);
            continue;
          }
          auto* tried = retry.add_tried();
          tried->set_node(id->second);
          auto h = horizons.find(id->second);
          tried->set_horizon(h == horizons.end() ? 0 : h->second);
        }
        send = &retry;
      }
      auto r = attempt(idx, *send, Clock::now() + opts_.timeout);
      if (!r.ok()) {
        maybe_applied |= r.failure->maybe_applied;
        if (r.failure->maybe_applied) reached.push_back(idx);
        failures.push_back(conns_[idx]->endpoint().to_string() + ": " + r.failure->reason);
        continue;
      }
      note_node(idx, r.response);
      if (r.response.error() == pb::UNAVAILABLE) {
        failures.push_back(conns_[idx]->endpoint().to_string() + ": " + server_error(r.response).message);
        continue;
      }
      current_ = idx;
      if (r.response.error() != pb::OK) return server_error(r.response);
      return std::move(r.response);
    }
    return unreachable(failures, maybe_applied && is_write(req), "");
  }

  // Sends `req` to endpoint `idx` only (admin commands).
  Result<pb::Response> call_only(size_t idx, const pb::Request& req, const char* why) {
    auto r = attempt(idx, req, Clock::now() + opts_.timeout);
    if (!r.ok()) {
      return unreachable({conns_[idx]->endpoint().to_string() + ": " + r.failure->reason}, false, why);
    }
    if (r.response.error() != pb::OK) return server_error(r.response);
    return std::move(r.response);
  }

  Result<pb::Response> call_strong(const pb::StrongRequest& sr, Clock::duration extra_wait, bool write);

  Result<GetReply> get(std::string_view key);
  void remember(const std::string& key, const std::string& context, bool deleted);

 private:
  struct Attempt {
    std::optional<TransportFailure> failure;
    pb::Response response;
    bool ok() const { return !failure.has_value(); }
  };

  static bool is_write(const pb::Request& req) {
    return req.has_put() || req.has_del() || req.has_counter_add() || req.has_set_add() || req.has_set_remove();
  }

  Attempt attempt(size_t idx, const pb::Request& req, Clock::time_point deadline) {
    std::string frame;
    stig::wire::append_request_frame(req, frame);
    Attempt a;
    // A kept-alive connection may have died since its last use (node
    // restarted): on such a failure reconnect once before giving up.
    for (int round = 0; round < 2; ++round) {
      const auto now = Clock::now();
      a.failure = conns_[idx]->call(frame, req.seq(), opts_.connect_timeout, deadline, deadline - now, a.response);
      if (a.ok() || !a.failure->reused || a.failure->reason.rfind("no reply within", 0) == 0) break;
    }
    return a;
  }

  // Learns which node an endpoint is and the highest dot counter it reported.
  void note_node(size_t idx, const pb::Response& r) {
    if (r.node().empty()) return;
    conn_node_[idx] = r.node();
    uint64_t& d = node_dots_[r.node()];
    d = std::max(d, r.node_dot());
  }

  Error unreachable(const std::vector<std::string>& failures, bool maybe_applied, const std::string& why) {
    std::string msg;
    if (failures.size() == 1) {
      msg = "cannot reach " + failures.front();
    } else {
      msg = "cannot reach any of " + std::to_string(failures.size()) + " endpoints: ";
      for (size_t i = 0; i < failures.size(); ++i) msg += (i ? "; " : "") + failures[i];
    }
    if (!why.empty()) msg += " (" + why + ")";
    if (maybe_applied) msg += " (the write may or may not have been applied)";
    return make_error(ErrorCode::kUnreachable, msg);
  }

  // The connection for a leader address from a NOT_LEADER hint: one of the
  // endpoints, or a new connection (at most kMaxLearned beyond them, so a
  // confused node cannot make the client open unbounded connections).
  std::optional<size_t> index_for(const std::string& address) {
    auto ep = parse_endpoint(address);
    if (!ep) return std::nullopt;
    for (size_t i = 0; i < conns_.size(); ++i) {
      const auto& known = conns_[i]->endpoint();
      if (known.host == ep->host && known.port == ep->port) return i;
    }
    constexpr size_t kMaxLearned = 8;
    if (conns_.size() >= configured_ + kMaxLearned) return std::nullopt;
    conns_.push_back(std::make_unique<Connection>(io_, std::move(*ep), tls_));
    return conns_.size() - 1;
  }

  ClientOptions opts_;
  std::shared_ptr<internal::ClientTls> tls_;  // null: plain TCP
  asio::io_context io_;
  std::vector<std::unique_ptr<Connection>> conns_;
  size_t configured_ = 0;            // conns_[0, configured_) are the endpoints given
  size_t current_ = 0;
  std::map<size_t, std::string> conn_node_;    // endpoint index -> the node id it answered as
  std::map<std::string, uint64_t> node_dots_;  // node id -> highest Response.node_dot it sent
  std::optional<size_t> leader_;     // the strong path's leader, when known
  uint64_t next_seq_ = 1;
  std::mt19937_64 rng_;              // backoff jitter only

  struct Remembered {
    VersionVector vv;
    bool deleted = false;  // this client's last write of the key was a delete
  };
  std::unordered_map<std::string, Remembered> remembered_;

  bool caught_up(const GetReply& reply, const Remembered& mine) const {
    auto vv = parse_context(reply.context);
    if (!vv) return true;  // cannot tell; do not hold the read back
    if (mine.deleted && reply.values().empty()) return true;
    return dominates(*vv, mine.vv);
  }

  Result<GetReply> parse_get(const pb::Response& r, std::string_view key) {
    if (r.result_case() != pb::Response::kGet && r.result_case() != pb::Response::RESULT_NOT_SET) {
      return wrong_result(r, "get");
    }
    GetReply out;
    out.key = r.get().key().empty() ? std::string(key) : r.get().key();
    out.context = r.get().context();
    out.node = r.node();
    out.versions = to_versions(r.get().versions());
    return out;
  }

  friend class Client;
};

void Client::Impl::remember(const std::string& key, const std::string& context, bool deleted) {
  if (!opts_.read_your_writes) return;
  auto vv = parse_context(context);
  if (!vv) return;
  if (remembered_.size() >= kMaxRememberedKeys && remembered_.find(key) == remembered_.end()) remembered_.clear();
  auto& slot = remembered_[key];
  slot.vv = merge(slot.vv, *vv);
  slot.deleted = deleted;
}

// The strong path's request loop. Why each answer leads where:
//  - OK or a refusal (CONFLICT, BUSY, ...): final; this node is the leader.
//  - NOT_LEADER with a leader address: go there at once (a few hops at most
//    before backing off, so two nodes that disagree cannot ping-pong us).
//  - NOT_LEADER without one (election under way), UNAVAILABLE, a transport
//    failure: next endpoint; after a round of failures, back off.
//  - OUTCOME_UNKNOWN: the leader was lost mid-write; back off and retry the
//    same (client id, seq) to learn the outcome from the next leader.
// The request, and so its seq, is built once: every retry is the same
// logical request, which the state machine applies at most once.
Result<pb::Response> Client::Impl::call_strong(const pb::StrongRequest& sr, Clock::duration extra_wait, bool write) {
  pb::Request req = new_request();
  *req.mutable_strong() = sr;
  const auto start = Clock::now();
  const auto deadline = start + opts_.strong_deadline + extra_wait;
  size_t target = leader_.value_or(current_);
  Clock::duration backoff = opts_.strong_backoff_initial;
  bool maybe_applied = false;   // a write may have been applied: never report "failed"
  bool saw_no_leader = false;   // some node answered that it is not the leader
  std::map<std::string, std::string> reasons;  // endpoint -> its last failure, for the error
  std::string last_reason;
  size_t failures_in_round = 0;
  int hops = 0;
  while (Clock::now() < deadline) {
    auto a = attempt(target, req, std::min(deadline, Clock::now() + opts_.timeout + extra_wait));
    const std::string where = conns_[target]->endpoint().to_string();
    bool pause = false;
    if (!last_reason.empty()) reasons[last_reason.substr(0, last_reason.find(": "))] = last_reason;
    if (!a.ok()) {
      maybe_applied |= write && a.failure->maybe_applied;
      last_reason = where + ": " + a.failure->reason;
    } else {
      const pb::Response& r = a.response;
      if (r.error() == pb::NOT_LEADER) {
        saw_no_leader = true;
        last_reason = where + ": " + (r.error_message().empty() ? "not the leader" : r.error_message());
        if (leader_ == target) leader_.reset();
        if (!r.leader_address().empty() && hops < 3) {
          if (auto idx = index_for(r.leader_address()); idx && *idx != target) {
            target = *idx;
            ++hops;
            continue;
          }
        }
      } else if (r.error() == pb::UNAVAILABLE) {
        last_reason = where + ": " + r.error_message();
        pause = true;
      } else if (r.error() == pb::OUTCOME_UNKNOWN) {
        maybe_applied |= write;
        last_reason = where + ": " + r.error_message();
        pause = true;
      } else {
        leader_ = target;
        current_ = target;
        if (r.error() != pb::OK) return server_error(r);
        return std::move(a.response);
      }
    }
    if (leader_ == target) leader_.reset();
    target = (target + 1) % conns_.size();
    if (pause || ++failures_in_round >= conns_.size() || hops >= 3) {
      failures_in_round = 0;
      hops = 0;
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) break;
      // Full jitter in [backoff/2, backoff]: clients that failed together
      // do not retry together.
      const auto half = std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(backoff).count() / 2);
      const auto sleep = std::chrono::microseconds(half + static_cast<int64_t>(rng_() % static_cast<uint64_t>(half + 1)));
      std::this_thread::sleep_for(std::min<Clock::duration>(sleep, left));
      backoff = std::min<Clock::duration>(backoff * 2, opts_.strong_backoff_max);
    }
  }
  if (!last_reason.empty()) reasons[last_reason.substr(0, last_reason.find(": "))] = last_reason;
  std::string all;
  for (const auto& [ep, why] : reasons) all += (all.empty() ? "" : "; ") + why;
  last_reason = all;
  const std::string waited = millis_text(Clock::now() - start);
  if (maybe_applied) {
    return make_error(ErrorCode::kOutcomeUnknown,
                      "outcome unknown: the write may or may not have been applied (no answer for its request id "
                      "within " + waited + "; last: " + last_reason + ")");
  }
  if (saw_no_leader) {
    return make_error(ErrorCode::kNotLeader, "no leader found within " + waited + " (last answers: " + last_reason + ")");
  }
  return make_error(ErrorCode::kUnreachable, "cannot reach the strong path's leader within " + waited +
                                                 (last_reason.empty() ? std::string() : ": " + last_reason));
}

Result<GetReply> Client::Impl::get(std::string_view key) {
  auto make = [&] {
    pb::Request req = new_request();
    req.mutable_get()->set_key(std::string(key));
    return req;
  };
  auto first = call(make());
  if (!first) return first.error();
  auto reply = parse_get(*first, key);
  if (!reply) return reply;
  const std::string k(key);
  auto it = remembered_.find(k);
  if (!opts_.read_your_writes || it == remembered_.end() || caught_up(*reply, it->second)) {
    const bool deleted = it != remembered_.end() && it->second.deleted && reply->values().empty();
    remember(k, reply->context, deleted);
    return reply;
  }
  // The answering node has not seen this client's last write of the key yet:
  // ask the other nodes, then keep asking briefly with backoff.
  const Remembered mine = it->second;
  const auto deadline = Clock::now() + opts_.read_your_writes_budget;
  auto backoff = std::chrono::milliseconds(10);
  const size_t n = conns_.size();
  while (Clock::now() < deadline) {
    for (size_t i = 1; i <= n && Clock::now() < deadline; ++i) {
      const size_t idx = (current_ + i) % n;
      auto a = attempt(idx, make(), std::min(deadline, Clock::now() + opts_.timeout));
      if (!a.ok() || a.response.error() != pb::OK) continue;
      auto candidate = parse_get(a.response, key);
      if (!candidate) continue;
      if (caught_up(*candidate, mine)) {
        current_ = idx;
        remember(k, candidate->context, mine.deleted && candidate->values().empty());
        return candidate;
      }
    }
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, left));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(100));
  }
  reply->stale = true;
  remember(k, reply->context, false);
  return reply;
}

// ---------------------------------------------------------------------------
// Client

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Result<Client> Client::create(ClientOptions options) {
  if (options.endpoints.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "no endpoints given (expected HOST:PORT[,HOST:PORT...])");
  }
  std::vector<Endpoint> eps;
  for (const auto& text : options.endpoints) {
    auto parsed = parse_endpoints(text);  // an item may itself be a comma-separated list
    if (!parsed) return parsed.error();
    for (auto& ep : *parsed) {
      for (const auto& seen : eps) {
        if (seen.host == ep.host && seen.port == ep.port) {
          return make_error(ErrorCode::kInvalidArgument, "endpoint '" + ep.to_string() + "' is listed twice");
        }
      }
      eps.push_back(std::move(ep));
    }
  }
  std::shared_ptr<internal::ClientTls> tls;
  if (!options.tls.ca_file.empty()) {
    auto made = internal::make_client_tls(options.tls);
    if (!made) return made.error();
    tls = std::move(*made);
  } else if (!options.tls.cert_file.empty() || !options.tls.key_file.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "a client certificate needs the cluster's CA too (--ca or STIG_CA) to use TLS");
  }
  if (options.agent.empty()) {
    const char* env = std::getenv("STIG_AGENT");
    options.agent = (env && *env) || !tls || tls->agent.empty() ? default_agent() : tls->agent;
  }
  if (options.client_id.empty()) options.client_id = random_client_id();
  if (options.timeout <= std::chrono::milliseconds::zero()) {
    return make_error(ErrorCode::kInvalidArgument, "timeout must be positive");
  }
  if (options.connect_timeout <= std::chrono::milliseconds::zero()) options.connect_timeout = options.timeout;
  return Client(std::make_unique<Impl>(std::move(options), std::move(eps), std::move(tls)));
}

const std::string& Client::client_id() const { return impl_->opts().client_id; }
const std::string& Client::agent() const { return impl_->opts().agent; }
const ClientOptions& Client::options() const { return impl_->opts(); }

namespace internal {
Result<stigmergy::v1::Response> strong_call(Client::Impl& impl, const stigmergy::v1::StrongRequest& request,
                                            std::chrono::milliseconds extra_wait, bool write) {
  return impl.call_strong(request, extra_wait, write);
}
}  // namespace internal
std::string Client::current_endpoint() const { return impl_->current_endpoint(); }

Result<GetReply> Client::get(std::string_view key) {
  if (auto ok = check_key(key); !ok) return ok.error();
  return impl_->get(key);
}

Result<PutReply> Client::put(std::string_view key, std::string_view value, std::string_view context,
                             Durability durability) {
  if (auto ok = check_key(key); !ok) return ok.error();
  auto req = impl_->new_request();
  auto* p = req.mutable_put();
  p->set_key(std::string(key));
  p->set_value(std::string(value));
  p->set_context(std::string(context));
  p->set_durability(to_pb(durability));
  auto r = impl_->call(req);
  if (!r) return r.error();
  if (r->result_case() != pb::Response::kPut && r->result_case() != pb::Response::RESULT_NOT_SET) {
    return wrong_result(*r, "put");
  }
  PutReply out = parse_put(*r, key);
  impl_->remember(out.key, out.context, false);
  return out;
}

Result<PutReply> Client::del(std::string_view key, std::string_view context, Durability durability) {
  if (auto ok = check_key(key); !ok) return ok.error();
  auto req = impl_->new_request();
  auto* d = req.mutable_del();
  d->set_key(std::string(key));
  d->set_context(std::string(context));
  d->set_durability(to_pb(durability));
  auto r = impl_->call(req);
  if (!r) return r.error();
  if (r->result_case() != pb::Response::kPut && r->result_case() != pb::Response::RESULT_NOT_SET) {
    return wrong_result(*r, "put");
  }
  PutReply out = parse_put(*r, key);
  impl_->remember(out.key, out.context, true);
  return out;
}

namespace {

Result<CounterReply> parse_counter(const Result<pb::Response>& r, std::string_view key) {
  if (!r) return r.error();
  if (r->result_case() != pb::Response::kCounter && r->result_case() != pb::Response::RESULT_NOT_SET) {
    return wrong_result(*r, "counter");
  }
  const auto& c = r->counter();
  return CounterReply{std::string(key), c.value(), c.modified_by(), c.modified_at_ms(), r->node()};
}

Result<SetReply> parse_set(const Result<pb::Response>& r, std::string_view key) {
  if (!r) return r.error();
  if (r->result_case() != pb::Response::kSet && r->result_case() != pb::Response::RESULT_NOT_SET) {
    return wrong_result(*r, "set");
  }
  SetReply out{std::string(key), {}, r->node()};
  for (const auto& e : r->set().elements()) out.elements.push_back(e);
  return out;
}

Result<AdminReply> parse_admin(const Result<pb::Response>& r) {
  if (!r) return r.error();
  if (r->result_case() != pb::Response::kAdmin && r->result_case() != pb::Response::RESULT_NOT_SET) {
    return wrong_result(*r, "admin");
  }
  return AdminReply{r->admin().message(), r->node()};
}

}  // namespace

Result<CounterReply> Client::counter_add(std::string_view key, int64_t delta, Durability durability) {
  if (auto ok = check_key(key); !ok) return ok.error();
  auto req = impl_->new_request();
  auto* c = req.mutable_counter_add();
  c->set_key(std::string(key));
  c->set_delta(delta);
  c->set_durability(to_pb(durability));
  return parse_counter(impl_->call(req), key);
}

Result<CounterReply> Client::counter_get(std::string_view key) {
  if (auto ok = check_key(key); !ok) return ok.error();
  auto req = impl_->new_request();
  req.mutable_counter_get()->set_key(std::string(key));
  return parse_counter(impl_->call(req), key);
}

Result<SetReply> Client::set_add(std::string_view key, std::string_view element, Durability durability) {
  if (auto ok = check_key(key); !ok) return ok.error();
  auto req = impl_->new_request();
  auto* s = req.mutable_set_add();
  s->set_key(std::string(key));
  s->set_element(std::string(element));
  s->set_durability(to_pb(durability));
  return parse_set(impl_->call(req), key);
}

Result<SetReply> Client::set_remove(std::string_view key, std::string_view element, Durability durability) {
  if (auto ok = check_key(key); !ok) return ok.error();
  auto req = impl_->new_request();
  auto* s = req.mutable_set_remove();
  s->set_key(std::string(key));
  s->set_element(std::string(element));
  s->set_durability(to_pb(durability));
  return parse_set(impl_->call(req), key);
}

Result<SetReply> Client::set_get(std::string_view key) {
  if (auto ok = check_key(key); !ok) return ok.error();
  auto req = impl_->new_request();
  req.mutable_set_get()->set_key(std::string(key));
  return parse_set(impl_->call(req), key);
}

Result<ClusterStatus> Client::cluster_status() {
  auto req = impl_->new_request();
  req.mutable_cluster_status();
  auto r = impl_->call(req);
  if (!r) return r.error();
  if (r->result_case() != pb::Response::kClusterStatus) return wrong_result(*r, "cluster status");
  ClusterStatus out;
  out.node = r->node();
  for (const auto& n : r->cluster_status().nodes()) {
    out.nodes.push_back(NodeStatus{n.id(), n.address(), n.state(), n.keys(), n.tombstones(), n.digest(),
                                   n.last_heard_ms_ago(), n.role(), n.term(), n.commit_index()});
  }
  return out;
}

Result<AdminReply> Client::admin_partition(const std::vector<std::string>& drop_ids) {
  if (drop_ids.empty()) return make_error(ErrorCode::kInvalidArgument, "admin partition needs at least one node id");
  for (const auto& id : drop_ids) {
    if (id.empty()) return make_error(ErrorCode::kInvalidArgument, "admin partition: empty node id");
  }
  auto req = impl_->new_request();
  auto* a = req.mutable_admin_partition();
  for (const auto& id : drop_ids) a->add_drop(id);
  return parse_admin(impl_->call_only(0, req, "admin commands act on the first endpoint only"));
}

Result<AdminReply> Client::admin_heal() {
  auto req = impl_->new_request();
  req.mutable_admin_heal();
  return parse_admin(impl_->call_only(0, req, "admin commands act on the first endpoint only"));
}

}  // namespace stigmergy
