// LazyPath: the lazy (eventually consistent) path of one node: the
// version-vectored key store, eager push, anti-entropy, tombstone
// collection, durability-waiting writes and the client retry cache.
//
// Replica routes it the lazy client requests, the lazy peer messages and
// every tick, and merges its output with the other paths'. It guarantees
// what docs/lazy-path.md says: every acknowledged write survives, replicas
// converge, a retried request is applied once.
//
// Internal header. Client operations live in lazy_client.cc, the peer
// protocol (push, acks, anti-entropy, tombstone collection) in lazy_peer.cc,
// lifecycle, timers and output assembly in lazy_path.cc.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "replication/client_sessions.h"
#include "replication/config.h"
#include "replication/failure_detector.h"
#include "replication/key_state.h"
#include "replication/replica.h"
#include "replication/rng.h"
#include "replication/store.h"
#include "replication/timer_set.h"

namespace stig::replication {

class LazyPath {
 public:
  LazyPath(const Config& config, uint64_t seed, const RecoveredState& recovered);

  void step(const Now& now, const Input& input);
  // What was decided since the last call; Output::id is left to Replica.
  Output take_output();

  const Config& config() const { return config_; }
  const KeyStore& store() const { return store_; }
  size_t retry_cache_clients() const { return sessions_.clients(); }
  size_t retry_cache_bytes() const { return sessions_.bytes(); }
  uint64_t dot_counter() const { return dot_counter_; }
  uint64_t pushes_adopted() const { return pushes_adopted_; }

 private:

  // A quorum/all write waiting for peers' acknowledgements.
  struct PendingWrite {
    ClientToken token;
    std::string client_id;
    uint64_t seq;
    std::string typed_key;
    pb::Response response;
    size_t needed;  // peer acks required (the coordinator counts as one replica more)
    std::set<NodeId> acked;
  };

  // --- client side (lazy_client.cc)
  void on_client(ClientToken token, const pb::Request& request);
  void handle_get(ClientToken token, const pb::Request& request);
  void handle_register_write(ClientToken token, const pb::Request& request, bool is_delete);
  void handle_counter_add(ClientToken token, const pb::Request& request);
  void handle_counter_get(ClientToken token, const pb::Request& request);
  void handle_set_write(ClientToken token, const pb::Request& request, bool is_add);
  void handle_set_get(ClientToken token, const pb::Request& request);
  void handle_cluster_status(ClientToken token, const pb::Request& request);
  // Returns false (after replying with the error) when the key's name is bad
  // or the key exists with another type.
  bool check_key(ClientToken token, const pb::Request& request, const std::string& key, pb::ValueType type);
  // A mutation whose write id (client id, seq) the key holds, because it was
  // applied here or on a peer whose state reached this node, is answered as
  // the retry it is (with the key's current state and the durability asked
  // for); a retry this node cannot check (a node it was sent to has cut
  // newer write ids of the key than the client's horizon for it) is refused
  // with RETRY_UNKNOWN. Returns true if it answered. docs/lazy-path.md "Retries".
  // `tk` is the key's typed key and `e` its entry (nullptr: none here).
  bool answer_known_write(ClientToken token, const pb::Request& request, const std::string& key,
                          const std::string& tk, const KeyEntry* e, pb::ValueType type, pb::Durability durability);
  // Whether this request's write id is recorded with the key (it has a
  // client id, and no test fault turns write ids off).
  bool records_write_ids(const pb::Request& request) const;
  // kWriteRetry or kWritePinned for writes at risk of being applied twice, else 0.
  static uint8_t write_id_flags(const pb::Request& request, pb::Durability durability);
  // Answers a mutation now (local) or once enough peers stored it.
  void finish_write(ClientToken token, const pb::Request& request, const std::string& typed_key,
                    pb::Response response, pb::Durability durability);
  // Answers a mutation (and retries of it waiting meanwhile) and remembers
  // the answer for later retries, without the sibling values it carries.
  void complete_write(ClientToken token, const std::string& client_id, uint64_t seq, pb::Response response);
  // Answers a retry of a completed mutation from its remembered answer,
  // refilling a put's versions from the key's current siblings that the
  // remembered context covers.
  void answer_retry(ClientToken token, pb::Response remembered);
  void reply_error(ClientToken token, const pb::Request& request, pb::ErrorCode code, std::string message);
  pb::Response make_response(const pb::Request& request) const;
  uint64_t next_dot();
  // Replies with an error and returns false once this node's dot counter is
  // at kMaxDotCounter (it would otherwise wrap).
  bool check_dots_left(ClientToken token, const pb::Request& request);

  // --- peer side (lazy_peer.cc)
  void on_peer(const NodeId& from, const pb::PeerMessage& message);
  void handle_push(const NodeId& from, const pb::PushBatch& push);
  void handle_push_ack(const NodeId& from, const pb::PushAck& ack);
  void handle_ae_level(const NodeId& from, const pb::AeTreeLevel& level);
  void handle_ae_keys(const NodeId& from, const pb::AeKeys& keys);
  void handle_collect(const pb::Collect& collect);  // graves: see Collect in the proto
  // Joins a peer's state of one key. Returns false (and logs nothing: the
  // core has no log) if the state is malformed; it is then ignored.
  // Consumes `remote` (its key and type stay readable).
  // `base_hash` (a push's, else 0): the hash of the key's state on the
  // sender before the changes `remote` carries. If this node holds exactly
  // that state, settled, `remote` descends from it and replaces it as it
  // is: the merge would give the same state, at the cost of parsing ours.
  bool merge_remote(const NodeId& from, pb::KeyState&& remote, uint64_t base_hash = 0);
  // Everything a peer's state must satisfy before the core acts on it: the
  // structural invariants, a key within the limit, only nodes of this
  // cluster (which bounds contexts and counters by the cluster size) and no
  // more siblings than the nodes together could have made.
  Status check_peer_state(const pb::KeyState& state) const;
  // Records the dots a state or grave from a peer (or the disk) has seen:
  // raises what this node knows each node has issued, and adopts dots of its
  // own it had forgotten (its disk was lost), so they are never reissued.
  void learn_context(const pb::VersionVector& context);
  void learn_dot(std::string_view node, uint64_t counter);
  // learn_context, plus the dots of the state's write ids.
  void learn_state(const pb::KeyState& state);
  // A client's context cut down to what this node has seen each node issue:
  // a context can never claim a dot that does not exist here, so it cannot
  // hide later writes or push a counter to its limit. What it claimed beyond
  // that is treated as unseen, so a write with it makes a sibling rather
  // than losing a version. Fails only for nodes outside the cluster. Sets
  // `cut` when it changed anything.
  Status clamp_client_context(pb::VersionVector& ctx, bool& cut) const;
  // merge_state, or a deliberately wrong merge when a test fault is on.
  bool merge_keys(pb::KeyState& local, pb::KeyState&& remote) const;
  void note_tombstone_seen(const NodeId& peer, const std::string& typed_key, uint64_t peer_hash);
  void collect_tombstones();
  void start_anti_entropy();
  void flush_push();

  // --- plumbing (lazy_path.cc)
  void settle();
  void run_timers();
  void send(const NodeId& to, pb::PeerMessage message);
  void broadcast(pb::PeerMessage message);
  void reply(ClientToken token, pb::Response&& response);
  bool is_peer(const NodeId& id) const;

  Config config_;
  Rng rng_;
  Now now_;
  Output out_;
  KeyStore store_;
  FailureDetector detector_;
  ClientSessions sessions_;
  std::vector<NodeId> peers_;  // sorted

  uint64_t dot_counter_ = 0;  // last dot issued by this node, any key
  // Highest dot of each peer seen in any state or grave here (self: dot_counter_).
  std::map<NodeId, uint64_t> known_dots_;
  bool dot_counter_dirty_ = false;
  // Something released with the current output relies on its persists being
  // synced: a client write's reply, or an acknowledgement to a peer.
  bool needs_sync_ = false;

  // A key changed by clients since the last push: what the push will carry.
  struct PendingPush {
    uint64_t base_hash = 0;  // the key's hash as of the settle before its first change (PushBatch.base_hashes)
    std::string bytes;       // its state as settle serialized it (empty until then)
  };
  // Queues the key of `entry` (null: none) for the next push.
  void note_push(const std::string& typed_key, const KeyEntry* entry);
  std::map<std::string, PendingPush, std::less<>> pending_push_;  // by typed key
  uint64_t pushes_adopted_ = 0;
  std::vector<uint64_t> unbatched_writes_;  // pending writes whose key is not yet in a push
  std::map<uint64_t, PendingWrite> pending_writes_;
  std::map<uint64_t, std::vector<uint64_t>> batch_writes_;  // push batch -> pending writes in it
  uint64_t next_write_id_ = 1;
  uint64_t next_batch_id_ = 1;
  uint64_t next_ae_session_ = 1;
  std::set<std::string> gc_candidates_;  // tombstone-only keys with a new acknowledgement

  // Contexts of collected tombstones, kept (and persisted) for
  // tombstone_grace_ms: a copy of the key arriving late is cut down to what
  // the deletion had not seen. -1 expiry: recovered, timed from the next step.
  struct Grave {
    pb::VersionVector context;
    MonoTime expires = -1;
  };
  std::map<std::string, Grave> graveyard_;  // typed key -> grave
  // Erases a settled tombstone-only key, leaving its grave.
  void bury(const std::string& typed_key);
  void remember_grave(const std::string& typed_key, const pb::VersionVector& context);
  // The entry for a key about to be written or merged: new keys start from
  // their grave's context, if any, so stale copies stay covered.
  KeyEntry& create_or_find(pb::ValueType type, const std::string& key);
  // Erases expired graves and arms the grave timer at the next expiry.
  void expire_graves();
  // Fires one due timer.
  void fire(const Timer& timer);
  void give_up_waiting(uint64_t write_id);

  // Every deadline: heartbeat, anti-entropy, write and batch expiries,
  // graves, the retry cache. wake_at is its earliest.
  TimerSet timers_;
  bool anti_entropy_started_ = false;  // the first round only schedules the next
  bool graves_timed_ = false;           // recovered graves got their expiry at the first step
};

}  // namespace stig::replication
