// fuzz_peer: attacks the peer message path of the replication core.
//
// The input is a sequence of records (records.h) interleaving client
// requests (to build state worth attacking), stigmergy.v1.PeerMessage from
// n2 and from n3 (as PeerInput, the sender already authenticated by its
// hello, as in stigd), clock advances and restarts, all stepped into a real
// replica (n1 of n1, n2, n3). Finds: core invariants reachable from a peer
// (pushed states with impossible dots, collect graves named twice or from
// the future, malformed anti-entropy), sanitizer errors, replies and peer
// messages that do not fit in or decode from a frame (amplification), a
// replica refusing its own disk, and (with -timeout) merges that stall.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/record_mutator.h"
#include "tests/fuzz/replica_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stig::fuzz::ReplicaDriver driver(stig::fuzz::ReplicaDriver::Mode::kClientAndPeers);
  driver.run(data, size);
  return 0;
}

// Mutations that keep the records and their messages well-formed (record_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  return stig::fuzz::RecordMutator(/*peers=*/true, seed).mutate(data, size, max_size);
}
extern "C" size_t LLVMFuzzerCustomCrossOver(const uint8_t* a, size_t a_size, const uint8_t* b, size_t b_size,
                                            uint8_t* out, size_t max_size, unsigned int seed) {
  return stig::fuzz::RecordMutator(/*peers=*/true, seed).cross_over(a, a_size, b, b_size, out, max_size);
}
