#include "wire/envelope.h"

#include <google/protobuf/io/coded_stream.h>

#include "wire/frame.h"

namespace stig::wire {
namespace {

using google::protobuf::io::CodedOutputStream;

constexpr uint32_t kVersionTag = (1u << 3) | 0;  // Envelope.protocol_version, varint
constexpr uint32_t kRequestField = 2;            // Envelope.request
constexpr uint32_t kResponseField = 3;           // Envelope.response
constexpr uint32_t kPeerField = 4;               // Envelope.peer

// Envelope{protocol_version, <field> = msg}: exactly what protobuf itself
// writes for that Envelope (fields in number order, version 1 is non-zero).
void append_wrapped(uint32_t field, const google::protobuf::MessageLite& msg, std::string& out) {
  static_assert(kProtocolVersion != 0, "proto3 omits a zero version; the layout below assumes it is present");
  const size_t inner = msg.ByteSizeLong();
  const uint32_t tag = (field << 3) | 2;  // length-delimited
  const size_t body = CodedOutputStream::VarintSize32(kVersionTag) + CodedOutputStream::VarintSize32(kProtocolVersion) +
                      CodedOutputStream::VarintSize32(tag) + CodedOutputStream::VarintSize32(static_cast<uint32_t>(inner)) +
                      inner;
  const size_t start = out.size();
  out.resize(start + kHeaderBytes + body);
  auto* p = reinterpret_cast<uint8_t*>(out.data() + start);
  p[0] = static_cast<uint8_t>(body >> 24);
  p[1] = static_cast<uint8_t>(body >> 16);
  p[2] = static_cast<uint8_t>(body >> 8);
  p[3] = static_cast<uint8_t>(body);
  p += kHeaderBytes;
  p = CodedOutputStream::WriteVarint32ToArray(kVersionTag, p);
  p = CodedOutputStream::WriteVarint32ToArray(kProtocolVersion, p);
  p = CodedOutputStream::WriteVarint32ToArray(tag, p);
  p = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(inner), p);
  msg.SerializeWithCachedSizesToArray(p);
}

}  // namespace

void append_peer_frame(const stigmergy::v1::PeerMessage& msg, std::string& out) {
  append_wrapped(kPeerField, msg, out);
}

void append_response_frame(const stigmergy::v1::Response& msg, std::string& out) {
  append_wrapped(kResponseField, msg, out);
}

void append_request_frame(const stigmergy::v1::Request& msg, std::string& out) {
  append_wrapped(kRequestField, msg, out);
}

SharedFrame encode_peer_frame(const stigmergy::v1::PeerMessage& msg) {
  auto frame = std::make_shared<std::string>();
  append_peer_frame(msg, *frame);
  return frame;
}

SharedFrame encode_request_frame(const stigmergy::v1::Request& msg) {
  auto frame = std::make_shared<std::string>();
  append_request_frame(msg, *frame);
  return frame;
}

SharedFrame encode_response_frame(const stigmergy::v1::Response& msg) {
  auto frame = std::make_shared<std::string>();
  append_response_frame(msg, *frame);
  return frame;
}

}  // namespace stig::wire
