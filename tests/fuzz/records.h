// The input format of the replica fuzzers (fuzz_client, fuzz_peer): a
// sequence of records, each one thing that happens to replica n1.
//
//   byte 0     op: bits 0-1 the kind, bits 2-7 a clock advance (see below)
//   bytes 1-3  payload length L, big-endian (a shorter rest is taken as is)
//   L bytes    payload
//
// Kinds: 0 a client request (a serialized stigmergy.v1.Request), 1 a peer
// message from n2, 2 a peer message from n3 (serialized
// stigmergy.v1.PeerMessage), 3 a control record. Before the record is applied
// both clocks move forward by (op >> 2) * 25 ms (0..1575 ms). A control
// record whose payload starts with an even byte moves the clocks forward by
// a further bytes[1..3] (big-endian) ms, up to about 4.6 hours (long enough
// for every timeout and the tombstone grace); an odd first byte restarts the
// replica from what it persisted. An empty control payload is just a tick.
//
// Header-only: the fuzzers read it, stig-fuzz-corpus writes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace stig::fuzz {

enum class RecordKind : uint8_t { kClient = 0, kPeerN2 = 1, kPeerN3 = 2, kControl = 3 };

constexpr int64_t kAdvanceUnitMs = 25;
constexpr int64_t kMaxOpAdvanceMs = 63 * kAdvanceUnitMs;
constexpr size_t kRecordHeaderBytes = 4;

struct Record {
  RecordKind kind;
  int64_t advance_ms;  // before the record is applied
  std::string_view payload;
};

// Splits the fuzzer's bytes into records; never fails, never copies.
class RecordReader {
 public:
  RecordReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool next(Record& r) {
    if (pos_ >= size_) return false;
    const uint8_t op = data_[pos_++];
    size_t length = 0;
    for (int i = 0; i < 3; ++i) length = (length << 8) | (pos_ < size_ ? data_[pos_++] : 0);
    if (length > size_ - pos_) length = size_ - pos_;
    r.kind = static_cast<RecordKind>(op & 3);
    r.advance_ms = static_cast<int64_t>(op >> 2) * kAdvanceUnitMs;
    r.payload = std::string_view(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Appends one record; `advance_ms` is rounded down to the 25 ms unit and
// must be at most kMaxOpAdvanceMs (longer waits: append_advance first).
inline void append_record(std::string& out, RecordKind kind, int64_t advance_ms, std::string_view payload) {
  const auto units = static_cast<uint8_t>(advance_ms / kAdvanceUnitMs);
  out.push_back(static_cast<char>((units << 2) | static_cast<uint8_t>(kind)));
  const size_t n = payload.size();
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(payload);
}

// A control record moving the clocks forward by `ms` (< 2^24).
inline void append_advance(std::string& out, int64_t ms) {
  const std::string payload{'\0', static_cast<char>(ms >> 16), static_cast<char>(ms >> 8), static_cast<char>(ms)};
  append_record(out, RecordKind::kControl, 0, payload);
}

// A control record restarting the replica from its persisted state.
inline void append_restart(std::string& out) { append_record(out, RecordKind::kControl, 0, std::string_view("\x01", 1)); }

}  // namespace stig::fuzz
