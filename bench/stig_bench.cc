// stig-bench: a load generator for a Stigmergy cluster.
//
//   stig-bench --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
//              --clients 50 --duration 10s --ratio 50:50 --keys 10000 --value-size 100
//
// C simulated clients, each with its own TCP connection, run on one or two
// event-loop threads (Boost.Asio, no thread per client). Clients are spread
// round-robin across the endpoints (a client whose connection fails moves on
// to the next endpoint). Each keeps up to --pipeline requests in
// flight (with --rate, no sooner than its share of that rate allows), picks
// put or get by --ratio and a key uniformly from --keys, and measures the
// latency of every request from send to reply. After a warm-up
// the tool measures for --duration and prints throughput and p50/p99/p999
// latency per op type and overall (or one JSON object with --json). Puts carry
// the latest context the benchmark has seen for their key, as a real client
// would, so keys do not accumulate siblings without bound.
//
// --workload picks the strong path instead (Request.strong, Raft): strong-put,
// strong-cas (compare-and-set on the value last seen, reading the key first
// when it is not known), strong-txn (etcd-bench's txn: if mod_revision(k) ==
// last seen then put else get) and lock (acquire + release of a random lock
// name with one session per client). Strong requests go to the leader: a
// client sends to any endpoint and follows NOT_LEADER's leader_address; on
// NOT_LEADER or a lost connection it discovers the leader again.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <optional>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench/summary.h"
#include "client/asio.h"
#include "client/tls.h"
#include "stigmergy.pb.h"
#include "stigmergy/client.h"
#include "wire/frame.h"
#include "wire/tls_session.h"

namespace {

namespace asio = boost::asio;
namespace pb = stigmergy::v1;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using stig::bench::json_escape;
using stig::bench::parse_duration;
using stig::bench::Summary;
using stig::bench::summarize;
using stig::bench::summary_json;

enum Op { kPut = 0, kGet = 1, kStrong = 2, kOps = 3 };
const char* kOpNames[kOps] = {"put", "get", "strong"};  // [kStrong]: the --workload's name

enum class Workload { kLazy, kStrongPut, kStrongGet, kStrongCas, kStrongTxn, kLock };

struct Options {
  std::string endpoints = "127.0.0.1:7101";
  int clients = 16;
  std::string duration = "10s";
  std::string warmup = "1s";
  std::string ratio = "50:50";
  int keys = 10000;
  int value_size = 100;
  std::string durability = "local";
  int pipeline = 1;
  int threads = 1;
  bool json = false;
  bool quiet = false;
  std::string agent = "stig-bench";
  std::string ca, cert, key;  // TLS: --ca/--cert/--key or STIG_CA/STIG_CERT/STIG_KEY
  uint64_t seed = 0;
  std::string workload = "lazy";
  int lock_wait_ms = 10000;
  bool load = false;  // put keys 0..keys-1 once each, then stop
  double rate = 0;    // ops/s over all clients; 0: as fast as replies come back
};


// Latency samples (µs) and error counts of one client, merged at the end.
struct Stats {
  std::vector<uint32_t> latency_us[kOps];
  uint64_t errors[kOps] = {0, 0, 0};
  std::map<std::string, uint64_t> error_kinds;

  void merge(const Stats& o) {
    for (int i = 0; i < kOps; ++i) {
      latency_us[i].insert(latency_us[i].end(), o.latency_us[i].begin(), o.latency_us[i].end());
      errors[i] += o.errors[i];
    }
    for (const auto& [k, n] : o.error_kinds) error_kinds[k] += n;
  }
};

// State shared by every client: phase timing, progress counters and the
// latest causal context seen per key (striped locks; contention is low).
struct Shared {
  Options opt;
  pb::Durability durability = pb::DURABILITY_LOCAL;
  Workload workload = Workload::kLazy;
  int put_weight = 50, get_weight = 50;
  std::vector<tcp::endpoint> endpoints;
  std::vector<std::string> endpoint_names;
  // TLS (null: plain TCP): every connection is a TLS session from this context.
  std::shared_ptr<stigmergy::internal::ClientTls> tls;
  Clock::time_point measure_start, measure_end;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> done_ops[kOps] = {0, 0, 0};
  // Strong path: the endpoint index of the leader as last learned (-1: unknown),
  // and counts for the summary.
  std::atomic<int> leader{-1};
  std::atomic<uint64_t> redirects{0};
  // How often a NOT_LEADER named a leader other than the one named before
  // (a new leader was elected during the run).
  std::atomic<int> last_named_leader{-1};
  std::atomic<uint64_t> leader_changes{0};
  std::atomic<uint64_t> succeeded{0}, conflicts{0};
  std::atomic<uint64_t> done_errors{0};
  std::atomic<uint64_t> next_load_key{0};  // --load: the next key to put
  std::atomic<int> connected{0};
  std::atomic<uint64_t> last_error_count{0};
  std::mutex last_error_mu;
  std::string last_error;

  static constexpr size_t kStripes = 64;
  std::mutex ctx_mu[kStripes];
  std::vector<std::string> contexts;  // by key index

  std::string context_of(size_t key) {
    std::lock_guard<std::mutex> lock(ctx_mu[key % kStripes]);
    return contexts[key];
  }
  void set_context(size_t key, const std::string& ctx) {
    std::lock_guard<std::mutex> lock(ctx_mu[key % kStripes]);
    contexts[key] = ctx;
  }
  void note_error(const std::string& what) {
    last_error_count.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(last_error_mu);
    last_error = what;
  }
};

std::string key_name(size_t i) { return "bench:" + std::to_string(i); }

// One simulated client: one connection, up to --pipeline requests in flight.
// Lives on one event-loop thread; every handler holds a shared_ptr to it and
// the connection generation it was started for (a handler of an older
// connection, closed on a leader redirect, does nothing).
class BenchClient : public std::enable_shared_from_this<BenchClient> {
 public:
  BenchClient(asio::io_context& io, Shared& shared, size_t index, uint64_t seed)
      : io_(io), sh_(shared), index_(index), socket_(io), retry_timer_(io), pace_timer_(io), rng_(seed) {
    if (shared.opt.rate > 0) {
      // Each client paces an equal share of --rate, starting at a random
      // phase so the clients' sends do not line up.
      interval_ = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(static_cast<double>(shared.opt.clients) / shared.opt.rate));
      next_send_ = Clock::now() + Clock::duration(static_cast<Clock::rep>(rng_() % static_cast<uint64_t>(interval_.count() + 1)));
    }
    endpoint_ = index % shared.endpoints.size();
    char id[32];
    std::snprintf(id, sizeof id, "bench-%08llx-%04zu", static_cast<unsigned long long>(rng_() & 0xffffffffu), index);
    client_id_ = id;
    value_.resize(static_cast<size_t>(shared.opt.value_size));
    for (auto& c : value_) c = static_cast<char>('a' + rng_() % 26);
    env_.set_protocol_version(stig::wire::kProtocolVersion);
    env_.mutable_request()->set_client_id(client_id_);
    env_.mutable_request()->set_agent(shared.opt.agent);
  }

  void start() { connect(); }
  Stats& stats() { return stats_; }
  size_t in_flight() const { return pending_.size(); }

  void close() {
    boost::system::error_code ignored;
    retry_timer_.cancel();
    pace_timer_.cancel();
    socket_.close(ignored);
  }

 private:
  // One request in flight. A strong op may take two requests (cas: get then
  // cas or create; lock: acquire then release): `step` says which, and
  // op_start is when the op (its first request) started.
  enum Step { kSingle, kCasRead, kCasWrite, kLockAcquire, kLockRelease, kSessionGrant };
  struct Pending {
    Pending(Op o, size_t k, Clock::time_point t, Step st = kSingle) : op(o), key(k), start(t), step(st) {}
    Op op;
    size_t key;
    Clock::time_point start;
    Step step;
    std::string new_value;  // cas: the value written
    uint64_t token = 0;     // lock release
    std::string frame;      // strong: the request as sent, re-sent to the next leader
  };

  bool strong() const { return sh_.workload != Workload::kLazy; }

  void connect() {
    auto self = shared_from_this();
    const uint64_t gen = ++gen_;
    if (strong()) {
      const int leader = sh_.leader.load();
      if (leader >= 0) endpoint_ = static_cast<size_t>(leader);
    }
    socket_ = tcp::socket(io_);
    tls_.reset();
    socket_.async_connect(sh_.endpoints[endpoint_], [self, gen](const boost::system::error_code& ec) {
      if (gen != self->gen_) return;
      if (ec) return self->on_connection_error("connect to " + self->sh_.endpoint_names[self->endpoint_] + ": " + ec.message());
      boost::system::error_code ignored;
      self->socket_.set_option(tcp::no_delay(true), ignored);
      if (!self->sh_.tls) return self->on_connected();
      // A new session per connection, driven through memory like stigd's
      // (handlers check gen_ before touching it).
      self->tls_ = std::make_unique<stig::wire::TlsSession>(self->sh_.tls->ctx.native_handle(),
                                                            stig::wire::TlsSession::Role::kClient);
      if (self->step_handshake(nullptr, 0) && !self->connected_) self->read();
    });
  }

  // Over TLS, before on_connected: feeds `n` bytes and steps the handshake.
  // false if it failed (reported); on_connected() once it is done.
  bool step_handshake(const char* data, size_t n) {
    tls_->feed(data, n);
    boost::system::error_code ec;
    const bool done = tls_->handshake(ec);
    flush();  // this side's flight
    if (ec) {
      tls_error(ec);
      return false;
    }
    if (done) on_connected();
    return true;
  }

  void tls_error(const boost::system::error_code& ec) {
    on_connection_error("TLS with " + sh_.endpoint_names[endpoint_] + ": " +
                        stigmergy::internal::describe_tls_failure(tls_->native_handle(), ec, !sh_.tls->agent.empty()));
  }

  void on_connected() {
    auto self = shared_from_this();
    {
      self->connected_ = true;
      self->sh_.connected.fetch_add(1);
      self->decoder_ = stig::wire::FrameDecoder(64u << 20);
      if (self->strong()) self->resend_pending();
      self->read();
      self->fill();
    }
  }

  // Drops the connection (what is in flight on it is sent again on the next
  // one), then connects to `next` after `delay`.
  void redirect(size_t next, std::chrono::milliseconds delay) {
    if (connected_) sh_.connected.fetch_sub(1);
    connected_ = false;
    ++gen_;
    boost::system::error_code ignored;
    socket_.close(ignored);
    tls_.reset();
    out_pending_.clear();
    writing_ = false;
    endpoint_ = next;
    sh_.redirects.fetch_add(1, std::memory_order_relaxed);
    if (sh_.stopping.load()) return;
    auto self = shared_from_this();
    const uint64_t gen = gen_;
    retry_timer_.expires_after(delay);
    retry_timer_.async_wait([self, gen](const boost::system::error_code& ec) {
      if (!ec && gen == self->gen_ && !self->sh_.stopping.load()) self->connect();
    });
  }

  void on_connection_error(const std::string& what) {
    if (connected_) sh_.connected.fetch_sub(1);
    connected_ = false;
    ++gen_;
    boost::system::error_code ignored;
    socket_.close(ignored);
    tls_.reset();
    out_pending_.clear();
    writing_ = false;
    if (sh_.stopping.load()) {
      pending_.clear();
      return;
    }
    sh_.note_error(what);
    const auto now = Clock::now();
    if (!strong()) {
      // Requests in flight on a broken connection count as errors.
      for (const auto& [seq, p] : pending_) record_error(p, "connection");
      if (pending_.empty() && now >= sh_.measure_start && now <= sh_.measure_end) stats_.error_kinds["connect"]++;
      pending_.clear();
    } else {
      // Strong: sent again (same seqs) to the leader found next.
      sh_.redirects.fetch_add(1, std::memory_order_relaxed);
    }
    // Fail over like the client library: the next attempt goes to the next
    // endpoint (strong: the leader is unknown again if it was this one).
    if (strong()) {
      int expected = static_cast<int>(endpoint_);
      sh_.leader.compare_exchange_strong(expected, -1);
    }
    endpoint_ = (endpoint_ + 1) % sh_.endpoints.size();
    auto self = shared_from_this();
    const uint64_t gen = gen_;
    retry_timer_.expires_after(std::chrono::milliseconds(strong() ? 20 : 200));
    retry_timer_.async_wait([self, gen](const boost::system::error_code& ec) {
      if (!ec && gen == self->gen_ && !self->sh_.stopping.load()) self->connect();
    });
  }

  void fill() {
    if (sh_.workload == Workload::kLock && session_ == 0) {
      if (connected_ && !granting_ && !sh_.stopping.load()) grant_session();
      flush();
      return;
    }
    while (connected_ && !sh_.stopping.load(std::memory_order_relaxed) &&
           pending_.size() < static_cast<size_t>(sh_.opt.pipeline)) {
      if (interval_.count() > 0 && !paced()) break;
      if (!issue()) break;
    }
    flush();
  }

  // --rate: true when the next op is due (and books the slot after it);
  // otherwise arms the pace timer for it. A client that fell behind (its
  // replies were slow) sends at once but never bursts to catch up on more
  // than one missed slot.
  bool paced() {
    const auto now = Clock::now();
    if (now >= next_send_) {
      next_send_ = std::max(next_send_, now - interval_) + interval_;
      return true;
    }
    if (!pacing_) {
      pacing_ = true;
      auto self = shared_from_this();
      pace_timer_.expires_at(next_send_);
      pace_timer_.async_wait([self](const boost::system::error_code& ec) {
        self->pacing_ = false;
        if (!ec) self->fill();  // fill() sends only on a live connection
      });
    }
    return false;
  }

  pb::Request* next_request() {
    auto* req = env_.mutable_request();
    req->clear_op();
    req->set_seq(++seq_);
    return req;
  }

  void send(Pending p) {
    if (strong()) {
      p.frame = stig::wire::encode_frame(env_);
      out_pending_ += p.frame;
    } else {
      stig::wire::append_frame(env_, out_pending_);
    }
    pending_.emplace(seq_, std::move(p));
  }

  // Strong: after a reconnect, what was in flight goes again with the same
  // seqs (at most once: NOT_LEADER means not applied, and the leader's dedup
  // table answers a write that was applied), oldest first.
  void resend_pending() {
    std::vector<uint64_t> seqs;
    for (const auto& [seq, p] : pending_) seqs.push_back(seq);
    std::sort(seqs.begin(), seqs.end());
    for (uint64_t seq : seqs) out_pending_ += pending_.at(seq).frame;
  }

  void grant_session() {
    granting_ = true;
    auto* req = next_request();
    // A TTL past the end of the run, so no keepalive is needed.
    const auto ttl = std::chrono::duration_cast<std::chrono::milliseconds>(sh_.measure_end - Clock::now()) +
                     std::chrono::seconds(60);
    req->mutable_strong()->mutable_session_grant()->set_ttl_ms(ttl.count());
    send(Pending{kStrong, 0, Clock::now(), kSessionGrant});
  }

  std::string fresh_value() {
    std::string v = value_;
    const std::string n = std::to_string(++writes_);
    for (size_t i = 0; i < n.size() && i < v.size(); ++i) v[i] = n[i];
    return v;
  }

  // Queues the next op's first request; false if none could be started.
  bool issue() {
    const auto now = Clock::now();
    if (sh_.opt.load) {  // each key once, in order, shared by the clients; a fresh key needs no context
      const uint64_t next = sh_.next_load_key.fetch_add(1, std::memory_order_relaxed);
      if (next >= static_cast<uint64_t>(sh_.opt.keys)) return false;
      auto* p = next_request()->mutable_put();
      p->set_key(key_name(static_cast<size_t>(next)));
      p->set_value(value_);
      p->set_durability(sh_.durability);
      send(Pending{kPut, static_cast<size_t>(next), now});
      return true;
    }
    const size_t key = static_cast<size_t>(rng_() % static_cast<uint64_t>(sh_.opt.keys));
    switch (sh_.workload) {
      case Workload::kLazy: break;
      case Workload::kStrongPut: {
        auto* p = next_request()->mutable_strong()->mutable_put();
        p->set_key(key_name(key));
        p->set_value(value_);
        send(Pending{kStrong, key, now});
        return true;
      }
      case Workload::kStrongGet: {  // linearizable (ReadIndex)
        next_request()->mutable_strong()->mutable_get()->set_key(key_name(key));
        send(Pending{kStrong, key, now});
        return true;
      }
      case Workload::kStrongCas: {
        std::string seen = sh_.context_of(key);
        if (seen.empty()) {  // not known: read it first (linearizable)
          next_request()->mutable_strong()->mutable_get()->set_key(key_name(key));
          send(Pending{kStrong, key, now, kCasRead});
          return true;
        }
        send_cas(key, now, true, seen.substr(1));
        return true;
      }
      case Workload::kStrongTxn: {
        const std::string seen = sh_.context_of(key);
        const uint64_t rev = seen.empty() ? 0 : std::stoull(seen);
        auto* t = next_request()->mutable_strong()->mutable_txn();
        auto* c = t->add_compare();
        c->set_key(key_name(key));
        c->set_target(pb::Compare::MOD_REVISION);
        c->set_op(pb::Compare::EQUAL);
        c->set_number(rev);
        auto* put = t->add_success()->mutable_put();
        put->set_key(key_name(key));
        put->set_value(value_);
        t->add_failure()->mutable_get()->set_key(key_name(key));
        send(Pending{kStrong, key, now});
        return true;
      }
      case Workload::kLock: {
        // With --pipeline > 1, never two ops of one session on one lock (a
        // reacquire by the holder answers the same token, and the second
        // release would find the lock free).
        size_t lock_key = key;
        for (int tries = 0; locks_in_use_.count(lock_key) != 0 && tries < 64; ++tries)
          lock_key = static_cast<size_t>(rng_() % static_cast<uint64_t>(sh_.opt.keys));
        if (locks_in_use_.count(lock_key) != 0) return false;  // --keys too small for --pipeline: leave the slot empty
        locks_in_use_.insert(lock_key);
        auto* a = next_request()->mutable_strong()->mutable_lock_acquire();
        a->set_name(lock_name(lock_key));
        a->set_session_id(session_);
        a->set_wait_ms(sh_.opt.lock_wait_ms);
        send(Pending{kStrong, lock_key, now, kLockAcquire});
        return true;
      }
    }
    const int pick = static_cast<int>(rng_() % static_cast<uint64_t>(sh_.put_weight + sh_.get_weight));
    const Op op = pick < sh_.put_weight ? kPut : kGet;
    auto* req = next_request();
    if (op == kPut) {
      auto* p = req->mutable_put();
      p->set_key(key_name(key));
      p->set_value(value_);
      p->set_context(sh_.context_of(key));
      p->set_durability(sh_.durability);
    } else {
      req->mutable_get()->set_key(key_name(key));
    }
    send(Pending{op, key, now});
    return true;
  }

  static std::string lock_name(size_t i) { return "bench-lock:" + std::to_string(i); }

  // cas: "exists" -> CAS from `expected`; else create (expected version 0).
  void send_cas(size_t key, Clock::time_point op_start, bool exists, const std::string& expected) {
    const std::string v = fresh_value();
    auto* sr = next_request()->mutable_strong();
    if (exists) {
      auto* c = sr->mutable_cas();
      c->set_key(key_name(key));
      c->set_expected_value(expected);
      c->set_new_value(v);
    } else {
      auto* p = sr->mutable_put();
      p->set_key(key_name(key));
      p->set_value(v);
      p->set_has_expected_version(true);
      p->set_expected_version(0);
    }
    Pending p{kStrong, key, op_start, kCasWrite};
    p.new_value = v;
    send(std::move(p));
  }

  void flush() {
    if (writing_) return;
    std::string* next = &out_pending_;
    if (tls_) {  // every queued request into records at once
      if (connected_ && !out_pending_.empty()) {
        boost::system::error_code ec;
        if (!tls_->write(out_pending_, ec)) return tls_error(ec);
        out_pending_.clear();
      }
      next = &tls_->output();
    } else if (!connected_) {
      return;
    }
    if (next->empty()) return;
    writing_ = true;
    out_inflight_.swap(*next);
    next->clear();
    auto self = shared_from_this();
    const uint64_t gen = gen_;
    auto done = [self, gen](const boost::system::error_code& ec, size_t) {
      if (gen != self->gen_) return;
      self->writing_ = false;
      if (ec) return self->on_connection_error("write: " + ec.message());
      self->flush();
    };
    asio::async_write(socket_, asio::buffer(out_inflight_), std::move(done));
  }

  void read() {
    auto self = shared_from_this();
    const uint64_t gen = gen_;
    auto done = [self, gen](const boost::system::error_code& ec, size_t n) {
      if (gen != self->gen_) return;
      if (ec) {
        if (self->tls_ && !self->connected_ && ec == asio::error::eof)
          return self->tls_error(asio::ssl::error::stream_truncated);
        return self->on_connection_error(ec == asio::error::eof ? "connection closed by " + self->sh_.endpoint_names[self->endpoint_]
                                                                 : "read: " + ec.message());
      }
      if (self->tls_ && !self->connected_) {
        if (self->step_handshake(self->buf_.data(), n) && !self->connected_) self->read();
        return;  // on_connected() reads on
      }
      if (self->tls_) {
        // The raw bytes are in the session: buf_ takes the plaintext of
        // every complete record.
        self->tls_->feed(self->buf_.data(), n);
        const auto tec = self->tls_->read_all(self->buf_.data(), self->buf_.size(), [&](const char* plain, size_t got) {
          self->decoder_.feed(std::string_view(plain, got));
        });
        if (tec == asio::error::eof)
          return self->on_connection_error("connection closed by " + self->sh_.endpoint_names[self->endpoint_]);
        if (tec) return self->on_connection_error("read: " + stigmergy::internal::describe_tls_failure(
                                                             self->tls_->native_handle(), tec, !self->sh_.tls->agent.empty()));
      } else {
        self->decoder_.feed(std::string_view(self->buf_.data(), n));
      }
      pb::Envelope env;
      while (gen == self->gen_ && self->decoder_.next(env)) {
        if (env.has_response()) self->on_response(env.response());
      }
      if (gen != self->gen_) return;  // redirected while handling a reply
      if (self->decoder_.error() != stig::wire::FrameError::kNone) {
        return self->on_connection_error(std::string("bad frame: ") + stig::wire::frame_error_message(self->decoder_.error()));
      }
      if (!self->connected_) return;
      self->read();
      self->fill();
    };
    socket_.async_read_some(asio::buffer(buf_), std::move(done));
  }

  // NOT_LEADER: go to the leader it names, or (none known: an election may
  // be under way) try the next endpoint shortly.
  void on_not_leader(const pb::Response& r) {
    if (!r.leader_address().empty()) {
      for (size_t i = 0; i < sh_.endpoint_names.size(); ++i) {
        if (sh_.endpoint_names[i] == r.leader_address()) {
          sh_.leader.store(static_cast<int>(i));
          const int before = sh_.last_named_leader.exchange(static_cast<int>(i));
          if (before >= 0 && before != static_cast<int>(i)) sh_.leader_changes.fetch_add(1, std::memory_order_relaxed);
          return redirect(i, std::chrono::milliseconds(0));
        }
      }
      sh_.note_error("the leader " + r.leader_address() + " is not among --endpoints");
    }
    int expected = static_cast<int>(endpoint_);
    sh_.leader.compare_exchange_strong(expected, -1);
    redirect((endpoint_ + 1) % sh_.endpoints.size(), std::chrono::milliseconds(20));
  }

  void on_response(const pb::Response& r) {
    auto it = pending_.find(r.seq());
    if (it == pending_.end()) {
      if (r.error() != pb::OK) sh_.note_error("unsolicited error: " + r.error_message());
      return;
    }
    if (strong() && (r.error() == pb::NOT_LEADER || r.error() == pb::OUTCOME_UNKNOWN)) {
      // Not applied, or not known: kept, and sent again (same seq) to the leader.
      if (r.error() == pb::OUTCOME_UNKNOWN) {
        sh_.note_error("OUTCOME_UNKNOWN (retried on the next leader): " + r.error_message());
        pb::Response none;  // rediscover the leader from the next endpoint
        return on_not_leader(none);
      }
      return on_not_leader(r);
    }
    Pending p = std::move(it->second);
    pending_.erase(it);
    const auto now = Clock::now();
    if (strong()) {
      if (!on_strong_response(p, r)) return;  // the op goes on, or failed
    } else {
      if (r.error() != pb::OK) {
        record_error(p, pb::ErrorCode_Name(r.error()));
        sh_.note_error(pb::ErrorCode_Name(r.error()) + ": " + r.error_message());
        return;
      }
      if (p.op == kPut && r.has_put() && !sh_.opt.load) sh_.set_context(p.key, r.put().context());
      if (p.op == kGet && r.has_get() && !r.get().context().empty()) sh_.set_context(p.key, r.get().context());
    }
    sh_.done_ops[p.op].fetch_add(1, std::memory_order_relaxed);
    if (p.start >= sh_.measure_start && now <= sh_.measure_end) {
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - p.start).count();
      stats_.latency_us[p.op].push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
    }
  }

  void count(std::atomic<uint64_t>& what, const Pending& p) {
    if (p.start >= sh_.measure_start && Clock::now() <= sh_.measure_end) what.fetch_add(1, std::memory_order_relaxed);
  }

  // A strong reply: true when the op completed (counted and timed by the
  // caller); false when it failed (recorded here) or continues with another
  // request (sent here).
  bool on_strong_response(Pending& p, const pb::Response& r) {
    const bool conflict = r.error() == pb::CONFLICT;
    if (r.error() != pb::OK && !(conflict && (p.step == kCasWrite || p.step == kSingle))) {
      if (p.step == kSessionGrant) granting_ = false;
      if (p.step == kLockAcquire || p.step == kLockRelease) locks_in_use_.erase(p.key);
      record_error(p, pb::ErrorCode_Name(r.error()));
      sh_.note_error(pb::ErrorCode_Name(r.error()) + ": " + r.error_message());
      return false;
    }
    const pb::StrongResponse& s = r.strong();
    switch (p.step) {
      case kSingle:
        if (sh_.workload == Workload::kStrongTxn) {
          // Learn the key's mod revision: the put's on success, the get's on failure.
          uint64_t rev = 0;
          if (s.results_size() > 0 && s.results(0).found()) rev = s.results(0).kv().mod_revision();
          sh_.set_context(p.key, rev == 0 ? std::string() : std::to_string(rev));
          count(s.succeeded() && !conflict ? sh_.succeeded : sh_.conflicts, p);
        }
        return true;
      case kCasRead: {
        const bool exists = s.found();
        send_cas(p.key, p.start, exists, exists ? s.kv().value() : std::string());
        return false;
      }
      case kCasWrite:
        if (conflict) {
          sh_.set_context(p.key, std::string());  // read it again next time
          count(sh_.conflicts, p);
        } else {
          sh_.set_context(p.key, "=" + p.new_value);
          count(sh_.succeeded, p);
        }
        return true;
      case kLockAcquire: {
        auto* rel = next_request()->mutable_strong()->mutable_lock_release();
        rel->set_name(lock_name(p.key));
        rel->set_session_id(session_);
        rel->set_token(s.token());
        Pending next{kStrong, p.key, p.start, kLockRelease};
        next.token = s.token();
        send(std::move(next));
        return false;
      }
      case kLockRelease:
        locks_in_use_.erase(p.key);
        return true;
      case kSessionGrant:
        granting_ = false;
        session_ = s.session_id();
        return false;
    }
    return true;
  }

  void record_error(const Pending& p, const std::string& kind) {
    sh_.done_errors.fetch_add(1, std::memory_order_relaxed);
    if (p.start >= sh_.measure_start && p.start <= sh_.measure_end) {
      stats_.errors[p.op]++;
      stats_.error_kinds[kind]++;
    }
  }

  asio::io_context& io_;
  Shared& sh_;
  size_t index_;
  size_t endpoint_ = 0;
  tcp::socket socket_;
  std::unique_ptr<stig::wire::TlsSession> tls_;  // the current connection's TLS session; null: plain TCP
  asio::steady_timer retry_timer_;
  asio::steady_timer pace_timer_;            // --rate: wakes the client when its next op is due
  Clock::duration interval_{0};              // --rate: time between this client's ops (0: unpaced)
  Clock::time_point next_send_{};
  bool pacing_ = false;                      // pace_timer_ is armed
  std::mt19937_64 rng_;
  std::string client_id_;
  std::string value_;
  pb::Envelope env_;
  uint64_t seq_ = 0;
  uint64_t gen_ = 0;
  uint64_t writes_ = 0;
  uint64_t session_ = 0;  // lock workload
  std::set<size_t> locks_in_use_;  // lock workload: names this client's ops hold or wait for
  bool granting_ = false;
  bool connected_ = false;
  bool writing_ = false;
  std::string out_pending_, out_inflight_;
  stig::wire::FrameDecoder decoder_{64u << 20};
  std::array<char, 64 * 1024> buf_{};
  std::unordered_map<uint64_t, Pending> pending_;
  Stats stats_;
};

// strong-cas and strong-txn start from what is there, as etcd-bench's txn
// does: one paginated range of the bench keys on the leader (following
// NOT_LEADER) teaches each key's value and mod revision. Blocking, before the
// clients start; false (with a message) if no leader answered in time.
bool preload(Shared& sh, std::string& error) {
  asio::io_context io;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  size_t ep = 0;
  uint64_t seq = 0;
  std::string start_after;
  uint64_t revision = 0;
  while (Clock::now() < deadline) {
    tcp::socket sock(io);
    boost::system::error_code ec;
    sock.connect(sh.endpoints[ep], ec);
    if (ec) {
      error = "connect to " + sh.endpoint_names[ep] + ": " + ec.message();
      ep = (ep + 1) % sh.endpoints.size();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    // With TLS the requests below go through a session over `sock`.
    std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
    if (sh.tls) {
      tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(sock, sh.tls->ctx);
      tls->handshake(asio::ssl::stream_base::client, ec);
      if (ec) {
        error = "TLS with " + sh.endpoint_names[ep] + ": " +
                stigmergy::internal::describe_tls_failure(tls->native_handle(), ec, !sh.tls->agent.empty());
        ep = (ep + 1) % sh.endpoints.size();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
    }
    stig::wire::FrameDecoder decoder(64u << 20);
    bool moved = false;
    for (;;) {
      pb::Envelope env;
      env.set_protocol_version(stig::wire::kProtocolVersion);
      auto* req = env.mutable_request();
      req->set_client_id("stig-bench-preload");
      req->set_seq(++seq);
      auto* range = req->mutable_strong()->mutable_range();
      range->set_prefix("bench:");
      range->set_limit(10000);
      range->set_revision(revision);
      range->set_start_after(start_after);
      if (tls)
        asio::write(*tls, asio::buffer(stig::wire::encode_frame(env)), ec);
      else
        asio::write(sock, asio::buffer(stig::wire::encode_frame(env)), ec);
      if (ec) break;
      std::optional<pb::Response> resp;
      std::array<char, 65536> buf{};
      while (!resp) {
        const size_t n = tls ? tls->read_some(asio::buffer(buf), ec) : sock.read_some(asio::buffer(buf), ec);
        if (ec) break;
        decoder.feed(std::string_view(buf.data(), n));
        pb::Envelope in;
        while (decoder.next(in))
          if (in.has_response() && in.response().seq() == seq) resp = in.response();
      }
      if (!resp) break;
      if (resp->error() == pb::NOT_LEADER) {
        size_t next = (ep + 1) % sh.endpoints.size();
        for (size_t i = 0; i < sh.endpoint_names.size(); ++i)
          if (sh.endpoint_names[i] == resp->leader_address()) next = i;
        if (resp->leader_address().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        ep = next;
        moved = true;
        break;
      }
      if (resp->error() != pb::OK) {
        error = "range of the bench keys: " + pb::ErrorCode_Name(resp->error()) + ": " + resp->error_message();
        return false;
      }
      const auto& sr = resp->strong();
      if (revision == 0) revision = sr.revision();
      for (const auto& kv : sr.kvs()) {
        size_t i = 0;
        try {
          i = std::stoull(kv.key().substr(6));
        } catch (...) {
          continue;
        }
        if (i >= sh.contexts.size()) continue;
        sh.contexts[i] = sh.workload == Workload::kStrongTxn ? std::to_string(kv.mod_revision()) : "=" + kv.value();
      }
      if (!sr.more()) {
        sh.leader.store(static_cast<int>(ep));
        sh.last_named_leader.store(static_cast<int>(ep));
        return true;
      }
      start_after = sr.next_start_after();
    }
    if (!moved) ep = (ep + 1) % sh.endpoints.size();
  }
  if (error.empty()) error = "no leader answered within 20 s";
  return false;
}

// One event-loop thread and the clients it drives. Clients are declared after
// the io_context so they are destroyed first.
struct Worker {
  asio::io_context io{1};
  std::vector<std::shared_ptr<BenchClient>> clients;
  std::thread thread;
};


int usage_error(const std::string& msg) {
  std::cerr << "stig-bench: error: " << msg << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"stig-bench: load generator for a Stigmergy cluster (put/get mix, C concurrent clients)", "stig-bench"};
  app.add_option("--endpoints", opt.endpoints, "Comma-separated HOST:PORT list; clients are spread round-robin")
      ->capture_default_str();
  app.add_option("--clients,-c", opt.clients, "Concurrent clients (one connection each)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--duration,-d", opt.duration, "Measured time, e.g. 10s, 500ms, 1m")->capture_default_str();
  app.add_option("--warmup", opt.warmup, "Unmeasured warm-up before the measurement")->capture_default_str();
  app.add_option("--ratio", opt.ratio, "put:get weights, e.g. 50:50, 100:0, 0:100")->capture_default_str();
  app.add_option("--keys", opt.keys, "Number of distinct keys, chosen uniformly")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  app.add_option("--value-size", opt.value_size, "Bytes per put value")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--durability", opt.durability, "Put durability")
      ->check(CLI::IsMember({"local", "quorum", "all"}))
      ->capture_default_str();
  app.add_option("--pipeline,-P", opt.pipeline, "Requests in flight per client")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--rate", opt.rate,
                 "Target ops/s over all clients, each pacing an equal share (0: each client sends its next "
                 "request when a reply comes back); for comparing CPU per op at the same load")
      ->check(CLI::Range(0.0, 1e8))
      ->capture_default_str();
  app.add_option("--threads", opt.threads, "Event-loop threads driving the clients")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  auto* agent_opt = app.add_option("--agent", opt.agent, "Agent name recorded on writes (with --cert: the credential's)")
                        ->capture_default_str();
  for (auto [var, field] : {std::pair{"STIG_CA", &opt.ca}, std::pair{"STIG_CERT", &opt.cert},
                            std::pair{"STIG_KEY", &opt.key}})
    if (const char* e = std::getenv(var); e != nullptr && *e != '\0') *field = e;
  app.add_option("--ca", opt.ca, "The cluster's CA certificate; given, clients use TLS (default: $STIG_CA)");
  app.add_option("--cert", opt.cert, "Agent credential for TLS, CN agent:NAME (default: $STIG_CERT)");
  app.add_option("--key", opt.key, "The key of --cert (default: $STIG_KEY)");
  app.add_option("--seed", opt.seed, "Random seed (0: from the clock)");
  app.add_option("--workload,-w", opt.workload,
                 "lazy (the put/get mix of --ratio), or a strong-path workload sent to the Raft leader: strong-put, "
                 "strong-get (linearizable), "
                 "strong-cas (compare-and-set on the value last seen), strong-txn (if mod_revision == last seen then put "
                 "else get), lock (acquire + release of a random lock of --keys names, one session per client)")
      ->check(CLI::IsMember({"lazy", "strong-put", "strong-get", "strong-cas", "strong-txn", "lock"}))
      ->capture_default_str();
  app.add_option("--lock-wait", opt.lock_wait_ms, "lock: how long an acquire may wait for a held lock, ms")
      ->check(CLI::Range(1, 3600 * 1000))
      ->capture_default_str();
  app.add_flag("--json", opt.json, "Print the result as one JSON object on stdout");
  app.add_flag("--quiet,-q", opt.quiet, "No progress lines on stderr");
  app.add_flag("--load", opt.load,
               "Load the key space: put keys 0..--keys-1 once each (lazy path, --value-size bytes), then stop; "
               "no warm-up, --duration and --ratio are ignored, ops/s is over the whole load");
  app.footer(R"(Examples:
  stig-bench --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 --clients 50 --duration 10s
  stig-bench --clients 50 --ratio 100:0 --durability quorum --json
  stig-bench --clients 8 --pipeline 16 --ratio 0:100 --keys 1000
  stig-bench --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 --workload strong-put --clients 64)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(std::string(e.what()) + "; see 'stig-bench --help'");
  }

  auto sh = std::make_unique<Shared>();
  if (!opt.ca.empty()) {
    auto tls = stigmergy::internal::make_client_tls({opt.ca, opt.cert, opt.key});
    if (!tls) return usage_error(tls.error().message);
    sh->tls = *tls;
    // Act as the credential's agent unless one was named (the node refuses
    // another name unless the credential is the admin agent's).
    if (agent_opt->count() == 0 && !sh->tls->agent.empty()) opt.agent = sh->tls->agent;
  }
  sh->opt = opt;
  Clock::duration duration{}, warmup{};
  if (!parse_duration(opt.duration, duration) || duration <= Clock::duration::zero()) {
    return usage_error("--duration '" + opt.duration + "' is not a positive duration like 10s, 500ms or 1m");
  }
  if (!parse_duration(opt.warmup, warmup)) {
    return usage_error("--warmup '" + opt.warmup + "' is not a duration like 1s, 500ms or 0");
  }
  {
    const auto colon = opt.ratio.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument("no colon");
      size_t p1 = 0, p2 = 0;
      sh->put_weight = std::stoi(opt.ratio.substr(0, colon), &p1);
      sh->get_weight = std::stoi(opt.ratio.substr(colon + 1), &p2);
      if (p1 != colon || p2 != opt.ratio.size() - colon - 1 || sh->put_weight < 0 || sh->get_weight < 0 ||
          sh->put_weight + sh->get_weight <= 0) {
        throw std::invalid_argument("bad");
      }
    } catch (...) {
      return usage_error("--ratio '" + opt.ratio + "' is not PUT:GET weights like 50:50, 100:0 or 0:100");
    }
  }
  sh->workload = opt.workload == "strong-put"   ? Workload::kStrongPut
                 : opt.workload == "strong-get" ? Workload::kStrongGet
                 : opt.workload == "strong-cas" ? Workload::kStrongCas
                 : opt.workload == "strong-txn" ? Workload::kStrongTxn
                 : opt.workload == "lock"       ? Workload::kLock
                                                : Workload::kLazy;
  const bool strong = sh->workload != Workload::kLazy;
  kOpNames[kStrong] = opt.workload.c_str();
  sh->durability = opt.durability == "quorum" ? pb::DURABILITY_QUORUM
                   : opt.durability == "all"  ? pb::DURABILITY_ALL
                                              : pb::DURABILITY_LOCAL;
  auto eps = stigmergy::parse_endpoints(opt.endpoints);
  if (!eps) return usage_error(eps.error().message);
  {
    asio::io_context io;
    tcp::resolver resolver(io);
    for (const auto& ep : *eps) {
      boost::system::error_code ec;
      auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
      if (ec || results.empty()) return usage_error("cannot resolve " + ep.to_string() + ": " + ec.message());
      sh->endpoints.push_back(*results.begin());
      sh->endpoint_names.push_back(ep.to_string());
    }
  }
  if (!opt.load) sh->contexts.resize(static_cast<size_t>(opt.keys));  // --load never reads a context back
  if (sh->workload == Workload::kStrongCas || sh->workload == Workload::kStrongTxn) {
    std::string error;
    if (!preload(*sh, error)) {
      std::cerr << "stig-bench: error: reading the bench keys first: " << error << "\n";
      return 1;
    }
  }
  const uint64_t seed = opt.seed != 0 ? opt.seed : static_cast<uint64_t>(Clock::now().time_since_epoch().count());

  if (opt.load && strong) return usage_error("--load loads the lazy path; it takes no --workload");
  if (opt.load) {  // until every key is put: measured from the start, bounded by a day
    warmup = Clock::duration::zero();
    duration = std::chrono::hours(24);
  }
  const auto start = Clock::now();
  sh->measure_start = start + warmup;
  sh->measure_end = sh->measure_start + duration;

  const int nthreads = std::min(opt.threads, opt.clients);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < nthreads; ++t) workers.push_back(std::make_unique<Worker>());
  for (int i = 0; i < opt.clients; ++i) {
    auto& w = *workers[static_cast<size_t>(i % nthreads)];
    w.clients.push_back(std::make_shared<BenchClient>(w.io, *sh, static_cast<size_t>(i), seed * 7919 + static_cast<uint64_t>(i)));
  }
  for (auto& w : workers) {
    for (auto& c : w->clients) asio::post(w->io, [c] { c->start(); });
    w->thread = std::thread([&io = w->io] {
      auto guard = asio::make_work_guard(io);
      io.run();
    });
  }

  if (!opt.quiet) {
    if (strong) {
      std::cerr << "stig-bench: " << opt.clients << " clients on " << sh->endpoints.size() << " endpoint(s) (leader), "
                << opt.workload << ", " << opt.keys << " keys, " << opt.value_size << "-byte values, pipeline "
                << opt.pipeline << "\n";
    } else {
      std::cerr << "stig-bench: " << opt.clients << " clients on " << sh->endpoints.size() << " endpoint(s), "
                << (opt.load ? "loading every key once" : "put:get " + std::to_string(sh->put_weight) + ":" +
                                                              std::to_string(sh->get_weight))
                << ", " << opt.keys << " keys, " << opt.value_size
                << "-byte values, durability " << opt.durability << ", pipeline " << opt.pipeline
                << (opt.rate > 0 ? ", paced to " + std::to_string(static_cast<uint64_t>(opt.rate)) + " ops/s" : "") << "\n";
    }
  }
  uint64_t prev_ops = 0, prev_err = 0, prev_noted = 0;
  int second = 0;
  while (Clock::now() < sh->measure_end) {
    const auto next = start + std::chrono::seconds(++second);
    std::this_thread::sleep_until(std::min(next, sh->measure_end));
    const uint64_t puts = sh->done_ops[kPut].load(), gets = sh->done_ops[kGet].load();
    const uint64_t errs = sh->done_errors.load();
    const uint64_t ops = puts + gets + sh->done_ops[kStrong].load();
    if (!opt.quiet && Clock::now() >= next - std::chrono::milliseconds(5)) {
      const bool warming = Clock::now() < sh->measure_start + std::chrono::milliseconds(5);
      char line[256];
      std::snprintf(line, sizeof line, "[%3ds] %s %9llu ops/s  errors %llu  connected %d/%d", second,
                    warming ? "warm-up " : "measure ", static_cast<unsigned long long>(ops - prev_ops),
                    static_cast<unsigned long long>(errs - prev_err), sh->connected.load(), opt.clients);
      std::cerr << line;
      if (const uint64_t noted = sh->last_error_count.load(); noted != prev_noted) {
        prev_noted = noted;
        std::lock_guard<std::mutex> lock(sh->last_error_mu);
        std::cerr << "  last error: " << sh->last_error;
      }
      std::cerr << "\n";
    }
    prev_ops = ops;
    prev_err = errs;
    if (opt.load && puts + sh->done_errors.load() >= static_cast<uint64_t>(opt.keys)) break;
  }
  if (opt.load) duration = Clock::now() - start;  // rates are over the whole load

  // Stop issuing, let in-flight requests drain briefly, then stop the loops.
  sh->stopping.store(true);
  const auto drain_deadline = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < drain_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    bool idle = true;
    for (auto& w : workers) {
      std::atomic<bool> done{false};
      std::atomic<size_t> inflight{0};
      asio::post(w->io, [&] {
        size_t n = 0;
        for (auto& c : w->clients) n += c->in_flight();
        inflight = n;
        done = true;
      });
      while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (inflight.load() != 0) idle = false;
    }
    if (idle) break;
  }
  for (auto& w : workers) {
    asio::post(w->io, [&w] {
      for (auto& c : w->clients) c->close();
    });
    w->io.stop();
  }
  for (auto& w : workers) w->thread.join();

  Stats total;
  for (auto& w : workers) {
    for (auto& c : w->clients) total.merge(c->stats());
  }
  const double secs = std::chrono::duration<double>(duration).count();
  std::vector<uint32_t> all;
  for (int i = 0; i < kOps; ++i) all.insert(all.end(), total.latency_us[i].begin(), total.latency_us[i].end());
  Summary per_op[kOps];
  for (int i = 0; i < kOps; ++i) per_op[i] = summarize(total.latency_us[i], total.errors[i], secs);
  const Summary overall = summarize(all, total.errors[kPut] + total.errors[kGet] + total.errors[kStrong], secs);

  if (opt.json) {
    std::string out = "{";
    out += "\"endpoints\":" + std::to_string(sh->endpoints.size());
    out += ",\"clients\":" + std::to_string(opt.clients);
    out += ",\"pipeline\":" + std::to_string(opt.pipeline);
    out += ",\"rate\":" + std::to_string(static_cast<uint64_t>(opt.rate));
    out += ",\"threads\":" + std::to_string(nthreads);
    out += ",\"duration_s\":" + std::to_string(secs);
    out += ",\"ratio\":\"" + json_escape(opt.ratio) + "\"";
    out += ",\"keys\":" + std::to_string(opt.keys);
    out += ",\"value_size\":" + std::to_string(opt.value_size);
    if (strong) {
      out += ",\"workload\":\"" + opt.workload + "\",\"durability\":\"quorum\"";
      out += std::string(",\"") + kOpNames[kStrong] + "\":" + summary_json(per_op[kStrong]);
    } else {
      out += ",\"durability\":\"" + opt.durability + "\"";
      for (int i = 0; i < kStrong; ++i) out += std::string(",\"") + kOpNames[i] + "\":" + summary_json(per_op[i]);
    }
    out += ",\"all\":" + summary_json(overall);
    if (strong) {
      out += ",\"succeeded\":" + std::to_string(sh->succeeded.load());
      out += ",\"conflicts\":" + std::to_string(sh->conflicts.load());
      out += ",\"redirects\":" + std::to_string(sh->redirects.load());
      out += ",\"leader_changes_seen\":" + std::to_string(sh->leader_changes.load());
    }
    out += ",\"error_kinds\":" + stig::bench::error_kinds_json(total.error_kinds) + "}";
    std::cout << out << "\n";
  } else {
    std::printf("\n%-5s %10s %12s %9s %9s %9s %9s %9s %8s\n", "op", "ops", "ops/s", "mean us", "p50 us", "p99 us",
                "p999 us", "max us", "errors");
    auto row = [](const char* name, const Summary& s) {
      std::printf("%-5s %10llu %12.1f %9.1f %9.0f %9.0f %9.0f %9.0f %8llu\n", name, static_cast<unsigned long long>(s.ops),
                  s.ops_per_sec, s.mean, s.p50, s.p99, s.p999, s.max, static_cast<unsigned long long>(s.errors));
    };
    for (int i = 0; i < kOps; ++i) {
      if (per_op[i].ops > 0 || per_op[i].errors > 0) row(kOpNames[i], per_op[i]);
    }
    row("all", overall);
    if (strong) {
      std::printf("reconnections to follow the leader %llu, leader changes seen %llu\n",
                  static_cast<unsigned long long>(sh->redirects.load()),
                  static_cast<unsigned long long>(sh->leader_changes.load()));
    }
    if (sh->workload == Workload::kStrongCas || sh->workload == Workload::kStrongTxn) {
      std::printf("succeeded %llu, conflicts %llu\n", static_cast<unsigned long long>(sh->succeeded.load()),
                  static_cast<unsigned long long>(sh->conflicts.load()));
    }
    stig::bench::print_error_kinds(total.error_kinds);
  }
  if (overall.ops == 0) {
    std::string last;
    {
      std::lock_guard<std::mutex> lock(sh->last_error_mu);
      last = sh->last_error;
    }
    std::cerr << "stig-bench: error: no request succeeded during the measurement"
              << (last.empty() ? "" : " (last error: " + last + ")") << "\n";
    return 1;
  }
  return 0;
}
