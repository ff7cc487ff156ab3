// Frame encoding without building an Envelope: the one codec stigd, the
// client, stig-sim and the tests share.
//
// append_frame() (frame.h) needs a whole Envelope, which would mean copying
// each Request, Response or PeerMessage into one. These helpers write the same bytes
// (4-byte length + Envelope{protocol_version = wire::kProtocolVersion, body})
// straight from the inner message, so a batch bound for N peers is serialized
// once and never copied. The output parses with wire::FrameDecoder like any
// other frame (tests/unit/frame_test.cc checks this).
#pragma once

#include <memory>
#include <string>

#include "stigmergy.pb.h"

namespace stig::wire {

// Appends a frame holding Envelope{peer = msg}.
void append_peer_frame(const stigmergy::v1::PeerMessage& msg, std::string& out);
// Appends a frame holding Envelope{response = msg}.
void append_response_frame(const stigmergy::v1::Response& msg, std::string& out);
// Appends a frame holding Envelope{request = msg}.
void append_request_frame(const stigmergy::v1::Request& msg, std::string& out);

// One immutable encoded frame, shared by every peer queue it is sent to.
using SharedFrame = std::shared_ptr<const std::string>;
SharedFrame encode_peer_frame(const stigmergy::v1::PeerMessage& msg);
SharedFrame encode_request_frame(const stigmergy::v1::Request& msg);
SharedFrame encode_response_frame(const stigmergy::v1::Response& msg);

}  // namespace stig::wire
