// Workloads: what simulated clients ask the cluster to do.
//
// A Workload names a family of operations and makes one ClientWorkload per
// client; the ClientWorkload picks the next request (from the shared random
// generator) and learns from each reply (e.g. the causal context to write
// with next). Adding a workload = one class and one line in make_workload();
// the strong-path and saga workloads plug in the same way.
//
// Guarantees: requests depend only on the random draws and the replies seen,
// so a seed replays exactly. Keys of different workloads never collide.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sim/random.h"
#include "stigmergy.pb.h"

namespace stig::sim {

struct WorkloadOptions {
  int keys = 4;           // keys per workload (few keys: more contention, more siblings)
  int set_elements = 8;   // distinct elements per set
  double quorum_writes = 0.1;  // fraction of writes asking for quorum durability
  // The strong workload pads each value it writes to this many bytes (its
  // unique prefix kept): bigger Raft entries, so fewer fit one APPEND.
  int strong_value_bytes = 0;
};

class ClientWorkload {
 public:
  virtual ~ClientWorkload() = default;
  // The next request: the op only (client id, seq and agent are the client's).
  virtual stigmergy::v1::Request next(SimRandom& random) = 0;
  // The reply to a request this workload made; nullptr when the outcome is
  // unknown (every attempt timed out).
  virtual void on_reply(const stigmergy::v1::Request& request, const stigmergy::v1::Response* reply) {
    (void)request;
    (void)reply;
  }
};

class Workload {
 public:
  virtual ~Workload() = default;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<ClientWorkload> for_client(int client) const = 0;
};

// "registers" | "counters" | "sets" | "retries" (the lazy path; retries:
// mostly quorum writes of all three types on keys of their own, so writes
// time out and are retried on another node) | "strong" (CAS
// registers, expected-version writes, transactions, linearizable and stale
// reads) | "locks" (sessions, lock contention, fenced writes to a shared
// key) | "acl" (access control on: client c1 is the admin agent and grants
// every other client cK write on "acl-cK/"; the others write lazy and
// strong keys under their own prefix and under "acl-shared/", which nobody
// is granted, so about half their writes must be refused; run it alone, as
// access control refuses the other workloads' keys); nullptr for an
// unknown name.
std::unique_ptr<Workload> make_workload(const std::string& name, const WorkloadOptions& options);
// The workloads that run together on any cluster (the real-cluster nemesis
// test and the fuzz corpus mix them all); "acl" is not among them, as it
// needs access control on and refuses the others' keys.
std::vector<std::string> workload_names();

// The acl workload's admin agent (client c1), and the prefix a client's
// writes are granted on: "acl-c3/" for c3.
inline constexpr const char* kAclAdminAgent = "agent-c1";
std::string acl_prefix_of(const std::string& client);

}  // namespace stig::sim
