// Framing of the Stigmergy wire protocol: 4-byte big-endian length, then one
// serialized stigmergy.v1.Envelope.
//
// Pure functions with no I/O, so the real runtime, the client, the simulator
// and fuzzers share one implementation. A length above the configured maximum
// is rejected before any body is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stigmergy.pb.h"

namespace stig::wire {

constexpr uint32_t kProtocolVersion = 1;
constexpr uint32_t kDefaultMaxFrameBytes = 4u << 20;  // 4 MiB
constexpr size_t kHeaderBytes = 4;

enum class FrameError {
  kNone,
  kTooLarge,     // declared length above the maximum
  kEmpty,        // zero-length frame
  kMalformed,    // body does not parse as an Envelope
  kBadVersion,   // protocol_version this build does not speak
};

// One line naming what was wrong, for logs and error replies.
const char* frame_error_message(FrameError e);

// Appends header and body of `env` to `out` (one buffer: one gathered write).
void append_frame(const stigmergy::v1::Envelope& env, std::string& out);
std::string encode_frame(const stigmergy::v1::Envelope& env);

// Reads the body length from a 4-byte header.
uint32_t decode_length(const unsigned char* header);

// Checks a declared length against the maximum before the body is read.
FrameError check_length(uint32_t length, uint32_t max_frame_bytes);

// Parses one frame body into `env`.
FrameError decode_body(std::string_view body, stigmergy::v1::Envelope& env);

// Incremental decoder over a byte stream: feed bytes, pop whole frames. Once
// it reports an error it stays in that state (the connection must be closed).
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Once a frame's header is in, the buffer is sized for the whole frame at
  // once rather than doubled as its body arrives (doubling copies a 4 MiB
  // frame a dozen times and, with an allocator that keeps freed blocks for
  // reuse, holds up to twice the frame while it trickles in).
  void feed(std::string_view bytes);

  // Returns true and fills `env` when a whole frame is available; false when
  // more bytes are needed or an error occurred (see error()).
  bool next(stigmergy::v1::Envelope& env);

  FrameError error() const { return error_; }
  size_t buffered() const { return buffer_.size() - consumed_; }
  // Bytes the frame in progress will occupy once complete (header plus the
  // declared body), or buffered() while its header is incomplete; 0 when
  // nothing is buffered. Lets a host budget memory before the body arrives.
  size_t pending_frame_bytes() const;

 private:
  // Capacity kept after the buffer empties; a larger one (a big frame) is
  // released so an idle connection does not hold a frame's worth of memory.
  static constexpr size_t kKeepCapacity = 64 * 1024;

  uint32_t max_frame_bytes_;
  std::string buffer_;
  size_t consumed_ = 0;
  FrameError error_ = FrameError::kNone;
};

}  // namespace stig::wire
