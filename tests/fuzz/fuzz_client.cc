// fuzz_client: attacks the client request path of the replication core.
//
// The input is a sequence of records (records.h): each client record is a
// serialized stigmergy.v1.Request stepped into a real replica (n1 of n1, n2,
// n3) as a ClientInput, exactly as stigd does after decoding a frame; here
// peer records are read as client requests too, and control records move the
// clocks or restart the replica from its own disk. Finds: core invariants
// reachable from a client (contexts claiming impossible dots, sibling and
// size limits, retries and the dedup cache), sanitizer errors, replies that
// do not fit in or decode from a frame, a replica refusing its own disk.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/record_mutator.h"
#include "tests/fuzz/replica_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stig::fuzz::ReplicaDriver driver(stig::fuzz::ReplicaDriver::Mode::kClientOnly);
  driver.run(data, size);
  return 0;
}

// Mutations that keep the records and their messages well-formed (record_mutator.h).
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  return stig::fuzz::RecordMutator(/*peers=*/false, seed).mutate(data, size, max_size);
}
extern "C" size_t LLVMFuzzerCustomCrossOver(const uint8_t* a, size_t a_size, const uint8_t* b, size_t b_size,
                                            uint8_t* out, size_t max_size, unsigned int seed) {
  return stig::fuzz::RecordMutator(/*peers=*/false, seed).cross_over(a, a_size, b, b_size, out, max_size);
}
