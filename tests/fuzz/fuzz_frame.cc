// fuzz_frame: attacks the wire framing (wire/frame.h) that stigd, the
// client and the simulator share.
//
// The input is a raw TCP byte stream. It is fed to wire::FrameDecoder three
// ways: all at once, in chunks of varying size (as reads deliver it), and
// all at once to a decoder with a 64-byte frame limit; each pops envelopes
// until it needs more bytes or fails. The input is also handed whole to
// decode_body. Finds: sanitizer errors in the decoder or the protobuf parse,
// and any disagreement: chunking must not change the envelopes popped or the
// final error, a smaller limit must only cut the sequence short, a failed
// decoder must stay failed, pending_frame_bytes() must announce the frame in
// progress within the limit, a popped envelope must re-encode to a frame
// that decodes to the same bytes, and the envelope-free encoders stigd uses
// (wire/envelope.h) must write exactly the bytes encode_frame writes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "wire/envelope.h"
#include "wire/frame.h"

namespace {

namespace pb = stigmergy::v1;
using stig::wire::FrameDecoder;
using stig::wire::FrameError;

[[noreturn]] void oracle_failed(const char* what) {
  std::fprintf(stderr, "fuzz oracle: %s\n", what);
  std::abort();
}

void check_round_trip(const pb::Envelope& env) {
  const std::string frame = stig::wire::encode_frame(env);
  FrameDecoder d;
  d.feed(frame);
  pb::Envelope back;
  if (!d.next(back)) oracle_failed("a decoded envelope does not decode again after encode_frame");
  if (back.SerializeAsString() != env.SerializeAsString()) oracle_failed("an envelope changed across a round trip");
  if (d.buffered() != 0) oracle_failed("encode_frame wrote more than one frame");

  // The same frame from the inner message alone (wire/envelope.h).
  pb::Envelope plain;
  plain.set_protocol_version(stig::wire::kProtocolVersion);
  std::string direct;
  switch (env.body_case()) {
    case pb::Envelope::kRequest:
      *plain.mutable_request() = env.request();
      stig::wire::append_request_frame(env.request(), direct);
      break;
    case pb::Envelope::kResponse:
      *plain.mutable_response() = env.response();
      stig::wire::append_response_frame(env.response(), direct);
      break;
    case pb::Envelope::kPeer:
      *plain.mutable_peer() = env.peer();
      stig::wire::append_peer_frame(env.peer(), direct);
      break;
    case pb::Envelope::BODY_NOT_SET: return;
  }
  if (direct != stig::wire::encode_frame(plain))
    oracle_failed("append_*_frame (wire/envelope.h) and encode_frame disagree on the bytes of a frame");
}

// Pops every envelope available; returns their serializations.
void pop_all(FrameDecoder& d, std::vector<std::string>& out) {
  pb::Envelope env;
  while (d.next(env)) {
    if (env.protocol_version() != stig::wire::kProtocolVersion || env.body_case() == pb::Envelope::BODY_NOT_SET)
      oracle_failed("the decoder returned an envelope decode_body would refuse");
    out.push_back(env.SerializeAsString());
    env.Clear();
  }
  if (d.error() != FrameError::kNone && d.next(env)) oracle_failed("a failed decoder returned another frame");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // Whole input at once.
  FrameDecoder whole;
  whole.feed(input);
  std::vector<std::string> a;
  pop_all(whole, a);

  // In chunks of 1..64 bytes, from a generator seeded by the input size.
  FrameDecoder chunked;
  std::vector<std::string> b;
  uint64_t x = size * 0x9E3779B97F4A7C15ull + 1;
  for (size_t pos = 0; pos < size;) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const size_t n = std::min<size_t>(size - pos, 1 + x % 64);
    chunked.feed(input.substr(pos, n));
    pos += n;
    pop_all(chunked, b);
    if (chunked.buffered() > pos) oracle_failed("the decoder buffers more than it was fed");
    // Between frames the decoder holds less than one frame; the one in
    // progress is announced whole, and never above the limit.
    if (chunked.error() == FrameError::kNone) {
      const size_t pending = chunked.pending_frame_bytes();
      if (pending < chunked.buffered() || (chunked.buffered() == 0) != (pending == 0) ||
          pending > stig::wire::kHeaderBytes + stig::wire::kDefaultMaxFrameBytes)
        oracle_failed("pending_frame_bytes() disagrees with what is buffered");
    }
  }
  if (a != b) oracle_failed("chunked feeding popped different envelopes than feeding all at once");
  if (whole.error() != chunked.error()) oracle_failed("chunked feeding ended with a different error");

  // A small frame limit only cuts the sequence short.
  FrameDecoder small(64);
  small.feed(input);
  std::vector<std::string> c;
  pop_all(small, c);
  if (c.size() > a.size() || !std::equal(c.begin(), c.end(), a.begin()))
    oracle_failed("a smaller frame limit changed the envelopes popped");
  if (c.size() < a.size() && small.error() != FrameError::kTooLarge)
    oracle_failed("a smaller frame limit stopped early without kTooLarge");

  for (const auto& s : a) {
    pb::Envelope env;
    if (!env.ParseFromString(s)) oracle_failed("a popped envelope does not parse from its own serialization");
    check_round_trip(env);
  }

  // The body parser on its own.
  pb::Envelope env;
  if (stig::wire::decode_body(input, env) == FrameError::kNone) check_round_trip(env);
  return 0;
}
