// Framing: wire::FrameDecoder / encode_frame, and node's zero-copy envelope
// encoders (which must produce frames the decoder reads like any other).
#include <gtest/gtest.h>

#include <string>

#include "wire/envelope.h"
#include "wire/frame.h"

namespace {

namespace pb = stigmergy::v1;
using stig::wire::FrameDecoder;
using stig::wire::FrameError;

pb::Envelope put_request(uint64_t seq, const std::string& key, const std::string& value) {
  pb::Envelope env;
  env.set_protocol_version(stig::wire::kProtocolVersion);
  auto* req = env.mutable_request();
  req->set_client_id("c1");
  req->set_seq(seq);
  req->set_agent("tester");
  req->mutable_put()->set_key(key);
  req->mutable_put()->set_value(value);
  return env;
}

std::string header(uint32_t n) {
  std::string h(4, '\0');
  h[0] = static_cast<char>(n >> 24);
  h[1] = static_cast<char>(n >> 16);
  h[2] = static_cast<char>(n >> 8);
  h[3] = static_cast<char>(n);
  return h;
}

TEST(Frame, RoundTrip) {
  const pb::Envelope in = put_request(7, "order/1", std::string("shipped\0!", 9));
  const std::string bytes = stig::wire::encode_frame(in);
  ASSERT_EQ(bytes.size(), 4 + in.ByteSizeLong());
  EXPECT_EQ(stig::wire::decode_length(reinterpret_cast<const unsigned char*>(bytes.data())), in.ByteSizeLong());

  FrameDecoder d;
  d.feed(bytes);
  pb::Envelope out;
  ASSERT_TRUE(d.next(out));
  EXPECT_EQ(out.SerializeAsString(), in.SerializeAsString());
  EXPECT_EQ(d.error(), FrameError::kNone);
  EXPECT_EQ(d.buffered(), 0u);
  EXPECT_FALSE(d.next(out));  // nothing more
  EXPECT_EQ(d.error(), FrameError::kNone);
}

TEST(Frame, ManyFramesInOneFeed) {
  std::string bytes;
  for (uint64_t i = 1; i <= 50; ++i) stig::wire::append_frame(put_request(i, "k" + std::to_string(i), "v"), bytes);
  FrameDecoder d;
  d.feed(bytes);
  pb::Envelope out;
  for (uint64_t i = 1; i <= 50; ++i) {
    ASSERT_TRUE(d.next(out)) << i;
    EXPECT_EQ(out.request().seq(), i);
  }
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kNone);
}

TEST(Frame, OversizedLengthRejectedBeforeBody) {
  FrameDecoder d(1024);
  d.feed(header(1025));  // only the header: no body was ever sent
  pb::Envelope out;
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kTooLarge);
  // A huge declared length is refused just the same, without allocating it.
  FrameDecoder big;
  big.feed(header(0xFFFFFFFFu));
  EXPECT_FALSE(big.next(out));
  EXPECT_EQ(big.error(), FrameError::kTooLarge);
  EXPECT_EQ(stig::wire::check_length(stig::wire::kDefaultMaxFrameBytes, stig::wire::kDefaultMaxFrameBytes),
            FrameError::kNone);
  EXPECT_EQ(stig::wire::check_length(stig::wire::kDefaultMaxFrameBytes + 1, stig::wire::kDefaultMaxFrameBytes),
            FrameError::kTooLarge);
}

TEST(Frame, ErrorIsSticky) {
  FrameDecoder d(16);
  d.feed(header(17));
  pb::Envelope out;
  EXPECT_FALSE(d.next(out));
  d.feed(stig::wire::encode_frame(put_request(1, "k", "v")));
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kTooLarge);
}

TEST(Frame, TruncatedFrameWaitsForMoreBytes) {
  const std::string bytes = stig::wire::encode_frame(put_request(3, "key", std::string(100, 'x')));
  FrameDecoder d;
  pb::Envelope out;
  d.feed(std::string_view(bytes).substr(0, 2));  // half a header
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kNone);
  d.feed(std::string_view(bytes).substr(2, bytes.size() - 3));  // all but the last byte
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kNone);
  d.feed(std::string_view(bytes).substr(bytes.size() - 1));
  ASSERT_TRUE(d.next(out));
  EXPECT_EQ(out.request().seq(), 3u);
}

TEST(Frame, SplitByteFeeding) {
  std::string bytes;
  for (uint64_t i = 1; i <= 5; ++i) stig::wire::append_frame(put_request(i, "key", std::string(i * 37, 'v')), bytes);
  FrameDecoder d;
  pb::Envelope out;
  uint64_t seen = 0;
  for (char c : bytes) {
    d.feed(std::string_view(&c, 1));
    while (d.next(out)) EXPECT_EQ(out.request().seq(), ++seen);
    ASSERT_EQ(d.error(), FrameError::kNone);
  }
  EXPECT_EQ(seen, 5u);
  EXPECT_EQ(d.buffered(), 0u);
}

// Big frames are sized from their header (feed reads it from the buffer, the
// new bytes, or both): chunks of every alignment, a header split across two
// feeds, a small frame behind a big one in the same feed, and a big frame
// after part of the buffer was consumed.
TEST(Frame, BigFramesInChunksOfEveryAlignment) {
  std::string bytes;
  stig::wire::append_frame(put_request(1, "small", "x"), bytes);
  stig::wire::append_frame(put_request(2, "big", std::string(300'000, 'b')), bytes);
  stig::wire::append_frame(put_request(3, "small", "y"), bytes);
  stig::wire::append_frame(put_request(4, "bigger", std::string(700'000, 'c')), bytes);
  for (size_t chunk : {1u, 2u, 3u, 5u, 4096u, 65'537u, 1'000'000u, 2'000'000u}) {
    FrameDecoder d;
    pb::Envelope out;
    uint64_t seen = 0;
    for (size_t i = 0; i < bytes.size(); i += chunk) {
      d.feed(std::string_view(bytes).substr(i, chunk));
      while (d.next(out)) {
        ++seen;
        ASSERT_EQ(out.request().seq(), seen) << "chunk " << chunk;
        const size_t expected_size = seen == 2 ? 300'000 : seen == 4 ? 700'000 : 1;
        EXPECT_EQ(out.request().put().value().size(), expected_size);
      }
      ASSERT_EQ(d.error(), FrameError::kNone) << "chunk " << chunk;
    }
    EXPECT_EQ(seen, 4u) << "chunk " << chunk;
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(Frame, GarbageBytesAreMalformed) {
  FrameDecoder d;
  std::string body(32, '\xff');  // not a protobuf: varint that never ends
  d.feed(header(static_cast<uint32_t>(body.size())) + body);
  pb::Envelope out;
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kMalformed);
}

TEST(Frame, EnvelopeWithoutBodyIsMalformed) {
  pb::Envelope env;
  env.set_protocol_version(stig::wire::kProtocolVersion);
  FrameDecoder d;
  d.feed(stig::wire::encode_frame(env));
  pb::Envelope out;
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kMalformed);
}

TEST(Frame, WrongVersionIsBadVersion) {
  pb::Envelope env = put_request(1, "k", "v");
  env.set_protocol_version(99);
  FrameDecoder d;
  d.feed(stig::wire::encode_frame(env));
  pb::Envelope out;
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kBadVersion);
  // A frame that parses but never set a version is refused too.
  env.set_protocol_version(0);
  FrameDecoder d0;
  d0.feed(stig::wire::encode_frame(env));
  EXPECT_FALSE(d0.next(out));
  EXPECT_EQ(d0.error(), FrameError::kBadVersion);
}

TEST(Frame, ZeroLengthFrameIsAnError) {
  FrameDecoder d;
  d.feed(header(0));
  pb::Envelope out;
  EXPECT_FALSE(d.next(out));
  EXPECT_EQ(d.error(), FrameError::kEmpty);
}

TEST(Frame, ErrorMessagesAreOneLine) {
  for (auto e : {FrameError::kNone, FrameError::kTooLarge, FrameError::kEmpty, FrameError::kMalformed,
                 FrameError::kBadVersion}) {
    const std::string m = stig::wire::frame_error_message(e);
    EXPECT_FALSE(m.empty());
    EXPECT_EQ(m.find('\n'), std::string::npos);
  }
}

// node's encoders write Envelope{version, peer|response} without building an
// Envelope: the bytes must equal what protobuf writes for that Envelope.
TEST(WireEnvelope, PeerFrameMatchesProtobufEncoding) {
  pb::PeerMessage msg;
  msg.set_from("n1");
  auto* push = msg.mutable_push();
  push->set_batch_id(42);
  pb::KeyState ks;
  ks.set_key("order/1");
  auto* sib = ks.add_siblings();
  sib->set_dot_node("n1");
  sib->set_dot_counter(3);
  sib->set_value(std::string(300, 'x'));  // multi-byte length varint
  push->add_states(ks.SerializeAsString());

  pb::Envelope env;
  env.set_protocol_version(stig::wire::kProtocolVersion);
  *env.mutable_peer() = msg;
  const std::string expected = stig::wire::encode_frame(env);

  stig::wire::SharedFrame frame = stig::wire::encode_peer_frame(msg);
  EXPECT_EQ(*frame, expected);

  FrameDecoder d;
  d.feed(*frame);
  pb::Envelope out;
  ASSERT_TRUE(d.next(out));
  ASSERT_TRUE(out.has_peer());
  EXPECT_EQ(out.peer().push().batch_id(), 42u);
  pb::KeyState decoded;
  ASSERT_TRUE(decoded.ParseFromString(out.peer().push().states(0)));
  EXPECT_EQ(decoded.siblings(0).value().size(), 300u);
}

TEST(WireEnvelope, ResponseFrameMatchesProtobufEncoding) {
  for (const std::string& value : {std::string(), std::string("v"), std::string(70000, 'y')}) {
    pb::Response r;
    r.set_seq(9);
    r.set_node("n2");
    if (!value.empty()) {
      r.mutable_get()->set_key("k");
      r.mutable_get()->add_versions()->set_value(value);
    }
    pb::Envelope env;
    env.set_protocol_version(stig::wire::kProtocolVersion);
    *env.mutable_response() = r;
    std::string got = "prefix";
    stig::wire::append_response_frame(r, got);
    EXPECT_EQ(got, "prefix" + stig::wire::encode_frame(env));
  }
}

TEST(WireEnvelope, RequestFrameMatchesProtobufEncoding) {
  pb::Request r;
  r.set_client_id("c1");
  r.set_seq(300);
  r.mutable_put()->set_key("order/2");
  r.mutable_put()->set_value(std::string(200, 'z'));
  pb::Envelope env;
  env.set_protocol_version(stig::wire::kProtocolVersion);
  *env.mutable_request() = r;
  EXPECT_EQ(*stig::wire::encode_request_frame(r), stig::wire::encode_frame(env));
  EXPECT_EQ(*stig::wire::encode_response_frame(pb::Response()), [] {
    pb::Envelope e;
    e.set_protocol_version(stig::wire::kProtocolVersion);
    e.mutable_response();
    return stig::wire::encode_frame(e);
  }());
}

TEST(WireEnvelope, EmptyPeerMessageStillDecodes) {
  pb::PeerMessage msg;  // every field default: body of length 0
  auto frame = stig::wire::encode_peer_frame(msg);
  FrameDecoder d;
  d.feed(*frame);
  pb::Envelope out;
  ASSERT_TRUE(d.next(out));
  EXPECT_TRUE(out.has_peer());
}

}  // namespace
