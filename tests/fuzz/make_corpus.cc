// stig-fuzz-corpus: writes the fuzzers' seed corpus from real traffic.
//
// Runs small simulations of three real replicas (sim/: the simulated
// network, disks and clients with the registers, counters and sets
// workloads, plus a partition, a crash, loss and duplication) and records
// everything replica n1 receives, with its timing, and every frame to or
// from n1. Windows of that traffic become seeds:
//   OUT/corpus/frame/   1-4 consecutive frames as they cross the wire
//   OUT/corpus/client/  client requests to n1 (every client talks to n1, so
//                       the contexts are ones n1 handed out)
//   OUT/corpus/peer/    n1's whole input: requests, peer messages from n2 and
//                       n3, clock advances, its restart
// in the record format of records.h. It also writes hand-made seeds for the
// inputs of issue 6 (OUT/corpus/*/issue6-*), and those too large for a
// corpus (OUT/regressions/peer/issue6-*) that scripts/fuzz only replays; the
// ones that crash the core as of issue 6 go to both.
// Deterministic: the same build writes the same files.
//
// Usage: stig-fuzz-corpus --out DIR   (DIR = tests/fuzz to refresh the repository's)
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "replication/key_state.h"
#include "replication/write_ids.h"
#include "sim/client.h"
#include "sim/history.h"
#include "sim/network.h"
#include "sim/node.h"
#include "sim/random.h"
#include "sim/scheduler.h"
#include "sim/workload.h"
#include "tests/fuzz/records.h"
#include "wire/frame.h"

namespace {

namespace pb = stigmergy::v1;
namespace fs = std::filesystem;
using stig::fuzz::RecordKind;

std::string name_of(int node) { return "n" + std::to_string(node + 1); }

template <typename Body>
std::string frame_of(const Body& body, Body* (pb::Envelope::*mutable_body)()) {
  pb::Envelope env;
  env.set_protocol_version(stig::wire::kProtocolVersion);
  *(env.*mutable_body)() = body;
  return stig::wire::encode_frame(env);
}

// What n1 received (in order, with the simulated time) and every frame it
// sent or received.
struct Traffic {
  struct In {
    int64_t time;
    RecordKind kind;
    std::string payload;  // empty for a restart
    bool restart = false;
  };
  std::vector<In> n1;
  std::vector<std::string> frames;
};

// One simulation of `duration_ms` with 4 clients. With `only_n1` every client
// talks to n1 and nothing is faulted, so n1 is the only writer.
Traffic simulate(uint64_t seed, bool only_n1, int64_t duration_ms) {
  using namespace stig;
  constexpr int kNodes = 3, kClients = 4;
  Traffic traffic;
  sim::Scheduler sched;
  sim::SimRandom random(seed);
  sim::History history;
  std::vector<std::unique_ptr<sim::SimNode>> nodes;
  std::vector<std::unique_ptr<sim::SimClient>> clients;

  sim::Network net(sched, random, kNodes, sim::NetworkOptions{}, [&](int from, int to, pb::PeerMessage m) {
    if (to == 0 && nodes[0]->up()) {
      traffic.n1.push_back({sched.now(), from == 1 ? RecordKind::kPeerN2 : RecordKind::kPeerN3, m.SerializeAsString()});
      traffic.frames.push_back(frame_of(m, &pb::Envelope::mutable_peer));
    }
    nodes[static_cast<size_t>(to)]->deliver(replication::PeerInput{name_of(from), std::move(m)});
  });
  for (int i = 0; i < kNodes; ++i) {
    replication::Config c;
    c.self = name_of(i);
    c.self_address = "sim:" + c.self;
    for (int p = 0; p < kNodes; ++p)
      if (p != i) c.peers.push_back({name_of(p), "sim:" + name_of(p)});
    nodes.push_back(std::make_unique<sim::SimNode>(
        i, c, sched, random, sim::NodeOptions{},
        [&](int from, const replication::Outbound& m) {
          int to = 0;
          std::from_chars(m.to.data() + 1, m.to.data() + m.to.size(), to);
          if (from == 0) traffic.frames.push_back(frame_of(*m.message, &pb::Envelope::mutable_peer));
          net.send(from, to - 1, m.message);
        },
        [&](int from, replication::Reply r) {
          if (from == 0) traffic.frames.push_back(frame_of(r.response, &pb::Envelope::mutable_response));
          auto shared = std::make_shared<replication::Reply>(std::move(r));
          sched.after(random.range(1, 3), [&, shared] {
            const int c = sim::SimClient::client_of(shared->token);
            clients[static_cast<size_t>(c)]->on_reply(shared->token, shared->response);
          });
        }));
  }
  sim::WorkloadOptions wo;
  wo.quorum_writes = 0.3;
  std::vector<std::unique_ptr<sim::Workload>> workloads;
  for (const auto& w : sim::workload_names()) workloads.push_back(sim::make_workload(w, wo));
  for (int c = 0; c < kClients; ++c) {
    std::vector<std::unique_ptr<sim::ClientWorkload>> per;
    for (const auto& w : workloads) per.push_back(w->for_client(c));
    clients.push_back(std::make_unique<sim::SimClient>(
        c, kNodes, sched, random, history, std::move(per), sim::ClientOptions{},
        [&](int node, replication::ClientToken token, const pb::Request& request) {
          const int to = only_n1 ? 0 : node;
          sched.after(random.range(1, 3), [&, to, token, request] {
            sim::SimNode& n = *nodes[static_cast<size_t>(to)];
            if (!n.up()) return;
            if (to == 0) {
              traffic.n1.push_back({sched.now(), RecordKind::kClient, request.SerializeAsString()});
              traffic.frames.push_back(frame_of(request, &pb::Envelope::mutable_request));
            }
            n.deliver(replication::ClientInput{token, request});
          });
        }));
  }

  for (auto& n : nodes) n->start();
  for (auto& c : clients) c->start();
  if (!only_n1) {
    const int64_t d = duration_ms;
    sched.at(d * 3 / 10, [&] {  // isolate n1: writes on both sides, repaired by anti-entropy
      for (int p = 1; p < kNodes; ++p) net.block(0, p), net.block(p, 0);
    });
    sched.at(d * 5 / 10, [&] { net.heal_links(); });
    sched.at(d * 6 / 10, [&] { nodes[2]->crash(); });
    sched.at(d * 7 / 10, [&] { nodes[2]->start(); });
    sched.at(d * 75 / 100, [&] { net.set_faults(sim::LinkFaults{0.05, 0.05, true, 0, 0}); });
    sched.at(d * 85 / 100, [&] { net.set_faults(sim::LinkFaults{}); });
    sched.at(d * 9 / 10, [&] { nodes[0]->crash(); });
    sched.at(d * 93 / 100, [&] {
      nodes[0]->start();
      traffic.n1.push_back({sched.now(), RecordKind::kControl, {}, true});
    });
  }
  sched.run_until(duration_ms);
  for (auto& c : clients) c->stop();
  sched.run_until(duration_ms + 5000);  // quiet: anti-entropy and tombstone collection
  return traffic;
}

// Records [begin, end) of n1's input, timed relative to the record before.
std::string window(const std::vector<Traffic::In>& in, size_t begin, size_t end) {
  std::string out;
  int64_t last = begin == 0 ? 0 : in[begin - 1].time;
  for (size_t i = begin; i < end; ++i) {
    int64_t gap = in[i].time - last;
    last = in[i].time;
    if (gap > stig::fuzz::kMaxOpAdvanceMs) {
      stig::fuzz::append_advance(out, gap);
      gap = 0;
    }
    if (in[i].restart) {
      stig::fuzz::append_advance(out, gap);
      stig::fuzz::append_restart(out);
    } else {
      stig::fuzz::append_record(out, in[i].kind, gap, in[i].payload);
    }
  }
  return out;
}

void write_file(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// Windows of n1's input: up to `count` files of at most `max_bytes`, starting
// at the beginning and then at evenly spread records.
void write_windows(const fs::path& dir, const std::string& prefix, const std::vector<Traffic::In>& in, int count,
                   size_t max_bytes) {
  for (int w = 0; w < count && !in.empty(); ++w) {
    const size_t begin = w == 0 ? 0 : in.size() * static_cast<size_t>(w) / static_cast<size_t>(count);
    size_t end = begin, bytes = 0;
    while (end < in.size() && bytes + in[end].payload.size() + 8 <= max_bytes) bytes += in[end++].payload.size() + 8;
    char name[64];
    std::snprintf(name, sizeof name, "%s-%03d", prefix.c_str(), w);
    write_file(dir / name, window(in, begin, end));
  }
}

// --- hand-made inputs (issue 6) ------------------------------------------------

std::string hex(const char* h) {
  std::string out;
  for (; h[0] && h[1]; h += 2) out.push_back(static_cast<char>(std::stoi(std::string(h, 2), nullptr, 16)));
  return out;
}

std::string context(std::initializer_list<std::pair<const char*, uint64_t>> entries) {
  pb::VersionVector vv;
  for (const auto& [node, counter] : entries) {
    auto* e = vv.add_entries();
    e->set_node(node);
    e->set_counter(counter);
  }
  return vv.SerializeAsString();
}

pb::Request req(const std::string& client, uint64_t seq) {
  pb::Request r;
  r.set_client_id(client);
  r.set_seq(seq);
  r.set_agent("fuzzer");
  return r;
}
std::string put(uint64_t seq, const std::string& key, const std::string& value, const std::string& ctx = "") {
  pb::Request r = req("hand", seq);
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  r.mutable_put()->set_context(ctx);
  return r.SerializeAsString();
}
std::string del(uint64_t seq, const std::string& key, const std::string& ctx) {
  pb::Request r = req("hand", seq);
  r.mutable_del()->set_key(key);
  r.mutable_del()->set_context(ctx);
  return r.SerializeAsString();
}
std::string get(const std::string& key) {
  pb::Request r = req("hand", 0);
  r.mutable_get()->set_key(key);
  return r.SerializeAsString();
}
std::string counter_add(uint64_t seq, const std::string& key, int64_t delta) {
  pb::Request r = req("hand", seq);
  r.mutable_counter_add()->set_key(key);
  r.mutable_counter_add()->set_delta(delta);
  return r.SerializeAsString();
}
std::string peer(const pb::PeerMessage& m) { return m.SerializeAsString(); }

pb::KeyState grave(const std::string& key, const std::string& ctx_bytes) {
  pb::KeyState g;
  g.set_key(key);
  g.set_type(pb::REGISTER);
  g.mutable_context()->ParseFromString(ctx_bytes);
  return g;
}

void write_hand_seeds(const fs::path& out) {
  using stig::fuzz::append_record;
  const fs::path client = out / "corpus/client", peer_dir = out / "corpus/peer", regress = out / "regressions/peer";
  // Inputs that crash the core as of issue 6 are also regressions, replayed on every run.
  auto crasher = [&](const fs::path& corpus_file, const std::string& bytes) {
    write_file(corpus_file, bytes);
    write_file(out / "regressions" / corpus_file.parent_path().filename() / corpus_file.filename(), bytes);
  };
  const auto C = RecordKind::kClient, N2 = RecordKind::kPeerN2, N3 = RecordKind::kPeerN3;
  std::string s;

  // 1. A client context claiming {n2: 2^64-1} (the stig command),
  //    then writes to the key; and the same claim about n1 itself.
  s.clear();
  append_record(s, C, 0, put(1, "a", "v", hex("0a0f0a026e3210ffffffffffffffffff01")));
  append_record(s, C, 25, get("a"));
  append_record(s, C, 25, put(2, "a", "w"));
  stig::fuzz::append_restart(s);
  append_record(s, C, 25, put(3, "a", "x"));
  write_file(client / "issue6-1-context-n2-max", s);
  s.clear();
  append_record(s, C, 0, put(1, "a", "v", context({{"n1", UINT64_MAX}})));
  append_record(s, C, 25, put(2, "a", "w"));
  append_record(s, C, 25, put(3, "b", "w"));
  write_file(client / "issue6-1-context-n1-max", s);

  // 2. A peer push whose context names the receiver (n1) at 2^64-1, then writes.
  {
    pb::KeyState st;
    st.set_key("a");
    st.set_type(pb::REGISTER);
    st.mutable_context()->ParseFromString(context({{"n1", UINT64_MAX}, {"n2", 1}}));
    auto* sib = st.add_siblings();
    sib->set_dot_node("n2");
    sib->set_dot_counter(1);
    sib->set_value("v");
    sib->set_modified_by("fuzzer");
    pb::PeerMessage m;
    m.set_from("n2");
    m.mutable_push()->set_batch_id(1);
    m.mutable_push()->add_states(st.SerializeAsString());
    s.clear();
    append_record(s, N2, 0, peer(m));
    append_record(s, C, 25, put(1, "a", "w"));
    append_record(s, C, 25, put(2, "b", "w"));
    crasher(peer_dir / "issue6-2-push-context-n1-max", s);
  }

  // 3. A collect naming the same grave twice: put k, delete it with the
  //    put's context, then collect {graves: [G, G]} with G the delete's context.
  {
    pb::PeerMessage m;
    m.set_from("n2");
    *m.mutable_collect()->add_graves() = grave("k", context({{"n1", 2}}));
    *m.mutable_collect()->add_graves() = grave("k", context({{"n1", 2}}));
    s.clear();
    append_record(s, C, 0, put(1, "k", "v"));
    append_record(s, C, 25, del(2, "k", context({{"n1", 1}})));
    append_record(s, N2, 25, peer(m));
    append_record(s, C, 25, put(3, "k", "w"));
    crasher(peer_dir / "issue6-3-collect-same-grave-twice", s);
    // The same with a live key: the graves cover the put itself.
    pb::PeerMessage live;
    live.set_from("n3");
    *live.mutable_collect()->add_graves() = grave("k", context({{"n1", 1}}));
    *live.mutable_collect()->add_graves() = grave("k", context({{"n1", 1}}));
    s.clear();
    append_record(s, C, 0, put(1, "k", "v"));
    append_record(s, N3, 25, peer(live));
    crasher(peer_dir / "issue6-3-collect-live-key-twice", s);
  }

  // 4. A collect grave naming the receiver's dot 10^12 (the hex), then
  //    a put of that key.
  {
    pb::PeerMessage m;
    m.set_from("n2");
    m.mutable_collect()->add_graves()->ParseFromString(hex("0a0b70782f67726176652d6e311a0d0a0b0a026e311080a094a58d1d"));
    s.clear();
    append_record(s, N2, 0, peer(m));
    append_record(s, C, 25, put(1, "px/grave-n1", "v"));
    append_record(s, C, 25, get("px/grave-n1"));
    crasher(peer_dir / "issue6-4-collect-future-dot", s);
  }

  // 5. Anti-entropy asking for too much: an ae_level at level 2 naming index 0
  //    over and over, each asking for 16 children. The corpus has a small
  //    one; the regression asks for a reply above the 4 MiB frame limit.
  for (const int repeats : {2000, 30000}) {
    pb::PeerMessage m;
    m.set_from("n2");
    auto* level = m.mutable_ae_level();
    level->set_session(1);
    level->set_level(2);
    for (int i = 0; i < repeats; ++i) level->add_indices(0), level->add_hashes(1);
    s.clear();
    append_record(s, C, 0, put(1, "k", "v"));
    append_record(s, N2, 25, peer(m));
    write_file(repeats < 10000 ? peer_dir / "issue6-5-ae-level-repeated-index"
                               : regress / "issue6-5-ae-level-reply-above-frame-limit",
               s);
  }

  // 6. Quadratic merges: a push whose context has many entries (20,000 in
  //    the regressions, about 260 KB as in the issue), and a counter with as
  //    many, then writes to them and anti-entropy rounds.
  for (const int entries : {300, 20000}) {
    char node[16];
    pb::KeyState st;
    st.set_key("wide");
    st.set_type(pb::REGISTER);
    for (int i = 0; i < entries; ++i) {
      std::snprintf(node, sizeof node, "x%06d", i);
      auto* e = st.mutable_context()->add_entries();
      e->set_node(node);
      e->set_counter(1);
    }
    auto* sib = st.add_siblings();
    sib->set_dot_node("x000000");
    sib->set_dot_counter(1);
    sib->set_value("v");
    pb::KeyState ctr;
    ctr.set_key("wide-counter");
    ctr.set_type(pb::COUNTER);
    for (int i = 0; i < entries; ++i) {
      std::snprintf(node, sizeof node, "x%06d", i);
      auto* e = ctr.add_counter();
      e->set_node(node);
      e->set_increments(1);
    }
    for (const pb::KeyState* state : {&st, &ctr}) {
      pb::PeerMessage m;
      m.set_from("n2");
      m.mutable_push()->set_batch_id(1);
      m.mutable_push()->add_states(state->SerializeAsString());
      s.clear();
      append_record(s, N2, 0, peer(m));
      append_record(s, C, 25, state == &st ? put(1, "wide", "w") : counter_add(1, "wide-counter", 1));
      stig::fuzz::append_advance(s, 3000);  // anti-entropy rounds with the wide key
      const std::string what = state == &st ? "context" : "counter";
      write_file(entries < 1000 ? peer_dir / ("issue6-6-push-wide-" + what)
                                : regress / ("issue6-6-push-20000-entry-" + what),
                 s);
    }
  }

  // 7. A counter add of 0 after an add of 1 (changes only metadata).
  s.clear();
  append_record(s, C, 0, counter_add(1, "ck", 1));
  append_record(s, C, 25, counter_add(2, "ck", 0));
  append_record(s, C, 1000, counter_add(3, "ck", 0));
  write_file(client / "issue6-7-counter-add-zero", s);

  // 8. Invalid UTF-8 in a key that ends up in an error message.
  s.clear();
  append_record(s, C, 0, put(1, "\xff", "v"));
  append_record(s, C, 25, counter_add(2, "\xff", 1));
  append_record(s, C, 25, put(3, std::string(5000, '\xfe'), "v"));
  crasher(client / "issue6-8-invalid-utf8-key", s);

  // 9. Retries with fresh client ids and a retry of an old seq.
  s.clear();
  for (int i = 0; i < 20; ++i) {
    pb::Request r = req("client-" + std::to_string(i), 1);
    r.mutable_put()->set_key("k");
    r.mutable_put()->set_value(std::string(64, 'v'));
    append_record(s, C, 0, r.SerializeAsString());
  }
  append_record(s, C, 0, put(5, "k", "v"));
  append_record(s, C, 0, put(5, "k", "v"));
  append_record(s, C, 0, put(4, "k", "v"));
  write_file(client / "issue6-9-retries", s);

  // 10. Write ids (issue 8): a peer's counter carrying them, a retry found
  //     through them, retries naming earlier nodes (one past the cluster
  //     size), and a set remove recorded for an absent element.
  {
    pb::KeyState ctr;
    ctr.set_key("rk");
    ctr.set_type(pb::COUNTER);
    stig::replication::counter_add(ctr, "n2", 5, stig::replication::WriteMeta{"agent", 1});
    stig::replication::record_write(ctr, "n2", 7, "hand", 1, 5, stig::replication::kWritePinned);
    stig::replication::record_write(ctr, "n2", 9, "other", 1, 0, 0);
    pb::PeerMessage m;
    m.set_from("n2");
    m.mutable_push()->set_batch_id(1);
    m.mutable_push()->add_states(ctr.SerializeAsString());
    s.clear();
    append_record(s, N2, 0, peer(m));
    pb::Request retry;
    retry.ParseFromString(counter_add(1, "rk", 5));
    retry.set_attempt(2);
    auto* t = retry.add_tried();
    t->set_node("n2");
    t->set_horizon(3);
    append_record(s, C, 25, retry.SerializeAsString());
    retry.ParseFromString(counter_add(2, "rk", 1));
    retry.set_attempt(3);
    for (const char* n : {"n1", "n2", "n3", "n4"}) retry.add_tried()->set_node(n);
    append_record(s, C, 25, retry.SerializeAsString());
    pb::Request rm = req("hand", 3);
    rm.mutable_set_remove()->set_key("rs");
    rm.mutable_set_remove()->set_element("absent");
    append_record(s, C, 25, rm.SerializeAsString());
    write_file(peer_dir / "issue8-3-write-ids", s);
  }

  // Frames: the context inside a real request frame, and frames that
  // declare too much, nothing, or another protocol version.
  {
    pb::Request r;
    r.ParseFromString(put(1, "a", "v", hex("0a0f0a026e3210ffffffffffffffffff01")));
    write_file(out / "corpus/frame/issue6-1-request", frame_of(r, &pb::Envelope::mutable_request));
    write_file(out / "corpus/frame/hand-too-large", std::string("\x00\x40\x00\x01", 4) + "x");
    write_file(out / "corpus/frame/hand-empty", std::string(4, '\0'));
    pb::Envelope env;
    env.set_protocol_version(2);
    *env.mutable_request() = r;
    write_file(out / "corpus/frame/hand-version-2", stig::wire::encode_frame(env));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--out") {
    std::fprintf(stderr, "usage: stig-fuzz-corpus --out DIR  (writes DIR/corpus/<target>/ and DIR/regressions/)\n");
    return 2;
  }
  const fs::path out = argv[2];
  size_t files = 0;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const std::string tag = "sim-s" + std::to_string(seed);
    const Traffic all = simulate(seed, false, 12000);
    write_windows(out / "corpus/peer", tag, all.n1, 30, 3000);
    const Traffic mine = simulate(seed, true, 6000);
    write_windows(out / "corpus/client", tag, mine.n1, 20, 2000);
    // Frames: 1-4 consecutive ones, from evenly spread points of the run.
    const auto& frames = all.frames;
    for (int w = 0; w < 25 && !frames.empty(); ++w) {
      const size_t begin = frames.size() * static_cast<size_t>(w) / 25;
      std::string bytes;
      for (size_t i = begin; i < frames.size() && i < begin + 1 + static_cast<size_t>(w % 4); ++i)
        if (bytes.size() + frames[i].size() <= 4096) bytes += frames[i];
      char name[64];
      std::snprintf(name, sizeof name, "%s-%03d", tag.c_str(), w);
      write_file(out / "corpus/frame" / name, bytes);
    }
    files += 30 + 20 + 25;
  }
  write_hand_seeds(out);
  std::printf("stig-fuzz-corpus: wrote %zu simulated seeds and the issue 6 seeds under %s\n", files, out.c_str());
  return 0;
}
