// ReplicaDriver: runs one fuzz input (records.h) through a real
// replication::Replica, n1 of a 3-node cluster {n1, n2, n3}, the way a
// runtime would: step the input, take_output, step a Tick, take_output.
// Time only moves when a record says so, so every input replays exactly.
// Persists go to an in-memory disk that a restart record recovers from.
//
// Besides the core's own invariants (STIG_INVARIANT aborts) and the
// sanitizers, it checks what a node must never do on any input, and aborts
// with "fuzz oracle: ..." when it does:
//   - send a peer message or a reply that does not fit in a frame
//     (wire::kDefaultMaxFrameBytes) or does not decode back (e.g. invalid
//     UTF-8 in a string field: the receiver would drop the link);
//   - send a peer message to anyone but n2 or n3;
//   - reply to a client token it was never given;
//   - refuse, on restart, the state it persisted itself.
//
// With STIG_FUZZ_TRACE set in the environment it prints each record as it
// is applied (time, kind, the message in protobuf text format) to stderr:
// the first step in turning a crash input into a unit test.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <string>

#include "replication/key_space.h"
#include "replication/replica.h"
#include "tests/fuzz/records.h"
#include "wire/envelope.h"
#include "wire/frame.h"

namespace stig::fuzz {

namespace pb = stigmergy::v1;

[[noreturn]] inline void oracle_failed(const std::string& what) {
  std::fprintf(stderr, "fuzz oracle: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

class ReplicaDriver {
 public:
  // How kinds 1 and 2 are read: as peer messages (fuzz_peer) or as more
  // client requests (fuzz_client, where every byte attacks the client path).
  enum class Mode { kClientOnly, kClientAndPeers };

  explicit ReplicaDriver(Mode mode) : mode_(mode) {
    config_.self = "n1";
    config_.self_address = "127.0.0.1:7101";
    config_.peers = {{"n2", "127.0.0.1:7102"}, {"n3", "127.0.0.1:7103"}};
    start();
  }

  void run(const uint8_t* data, size_t size) {
    RecordReader reader(data, size);
    Record r;
    while (reader.next(r)) {
      advance(r.advance_ms);
      switch (r.kind) {
        case RecordKind::kClient: client(r.payload); break;
        case RecordKind::kPeerN2:
        case RecordKind::kPeerN3:
          if (mode_ == Mode::kClientOnly)
            client(r.payload);
          else
            peer(r.kind == RecordKind::kPeerN2 ? "n2" : "n3", r.payload);
          break;
        case RecordKind::kControl: control(r.payload); break;
      }
      step(replication::Tick{});
    }
  }

 private:
  static constexpr uint64_t kSeed = 1;
  static constexpr int64_t kWallEpochMs = 1767225600000;  // 2026-01-01T00:00:00Z

  void start() {
    replication::RecoveredEntries recovered;
    for (const auto& [k, v] : disk_) recovered.entries.emplace_back(k, v);
    try {
      replica_ = std::make_unique<replication::Replica>(config_, kSeed, recovered);
    } catch (const std::exception& e) {
      oracle_failed(std::string("the replica refused the state it persisted itself: ") + e.what());
    }
    step(replication::Tick{});
  }

  void advance(int64_t ms) {
    now_.mono += ms;
    now_.wall += ms;
  }

  void client(std::string_view payload) {
    pb::Request request;
    if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return trace("client", "(does not parse)");
    trace("client token " + std::to_string(last_token_ + 1), request.ShortDebugString());
    step(replication::ClientInput{++last_token_, std::move(request)});
  }

  void peer(const char* from, std::string_view payload) {
    pb::PeerMessage message;
    if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size())))
      return trace(std::string("peer ") + from, "(does not parse)");
    trace(std::string("peer ") + from, message.ShortDebugString());
    step(replication::PeerInput{from, std::move(message)});
  }

  void control(std::string_view payload) {
    if (payload.empty()) return trace("tick", "");
    const auto first = static_cast<uint8_t>(payload[0]);
    if (first & 1) {
      trace("restart", "");
      replica_.reset();  // everything persisted was "synced": the disk keeps it all
      start();
      return;
    }
    int64_t ms = 0;
    for (size_t i = 1; i < 4; ++i) ms = (ms << 8) | (i < payload.size() ? static_cast<uint8_t>(payload[i]) : 0);
    trace("advance " + std::to_string(ms) + " ms", "");
    advance(ms);
  }

  void trace(const std::string& what, const std::string& detail) const {
    static const bool on = std::getenv("STIG_FUZZ_TRACE") != nullptr;
    if (on) std::fprintf(stderr, "[mono %lld] %s %s\n", static_cast<long long>(now_.mono), what.c_str(), detail.c_str());
  }

  void step(replication::Input input) {
    replica_->step(now_, std::move(input));
    check(replica_->take_output());
  }

  void check(replication::Output out) {
    for (const auto& p : out.persist) replication::apply_persist(disk_, p);
    for (const auto& m : out.messages) {
      if (m.to != "n2" && m.to != "n3") oracle_failed("peer message addressed to '" + m.to + "'");
      std::string frame;
      wire::append_peer_frame(*m.message, frame);  // as stigd encodes it
      check_frame(frame, "peer message to " + m.to);
    }
    for (const auto& r : out.replies) {
      if (r.token == 0 || r.token > last_token_)
        oracle_failed("reply to client token " + std::to_string(r.token) + ", never given");
      std::string frame;
      wire::append_response_frame(r.response, frame);
      check_frame(frame, "reply (error " + std::to_string(r.response.error()) + " \"" +
                             escaped(r.response.error_message()) + "\")");
    }
  }

  // At most 200 bytes of `s`, with everything outside printable ASCII as \xNN.
  static std::string escaped(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 200; ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      char buf[8];
      std::snprintf(buf, sizeof buf, c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
      out += buf;
    }
    return s.size() > 200 ? out + "..." : out;
  }

  // The receiver's side of a frame: within the default limit, and decodes.
  static void check_frame(const std::string& frame, const std::string& what) {
    const size_t bytes = frame.size() - wire::kHeaderBytes;
    if (bytes > wire::kDefaultMaxFrameBytes)
      oracle_failed(what + " is " + std::to_string(bytes) + " bytes, above the frame limit of " +
                    std::to_string(wire::kDefaultMaxFrameBytes) + " (the receiver drops the link)");
    wire::FrameDecoder decoder;
    decoder.feed(frame);
    pb::Envelope back;
    if (!decoder.next(back))
      oracle_failed(what + " does not decode at the receiver: " + wire::frame_error_message(decoder.error()));
  }

  Mode mode_;
  replication::Config config_;
  std::unique_ptr<replication::Replica> replica_;
  std::map<std::string, std::string> disk_;
  replication::Now now_{1000000, kWallEpochMs};
  replication::ClientToken last_token_ = 0;
};

}  // namespace stig::fuzz
