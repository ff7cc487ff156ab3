#include "wire/frame.h"

#include <algorithm>

namespace stig::wire {

const char* frame_error_message(FrameError e) {
  switch (e) {
    case FrameError::kNone: return "no error";
    case FrameError::kTooLarge: return "frame exceeds the maximum frame size";
    case FrameError::kEmpty: return "empty frame";
    case FrameError::kMalformed: return "frame body is not a valid Stigmergy envelope";
    case FrameError::kBadVersion: return "unsupported protocol version";
  }
  return "unknown frame error";
}

void append_frame(const stigmergy::v1::Envelope& env, std::string& out) {
  const size_t body = env.ByteSizeLong();
  const size_t start = out.size();
  out.resize(start + kHeaderBytes + body);
  auto* p = reinterpret_cast<unsigned char*>(out.data() + start);
  p[0] = static_cast<unsigned char>(body >> 24);
  p[1] = static_cast<unsigned char>(body >> 16);
  p[2] = static_cast<unsigned char>(body >> 8);
  p[3] = static_cast<unsigned char>(body);
  env.SerializeWithCachedSizesToArray(p + kHeaderBytes);
}

std::string encode_frame(const stigmergy::v1::Envelope& env) {
  std::string out;
  append_frame(env, out);
  return out;
}

uint32_t decode_length(const unsigned char* h) {
  return (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | uint32_t{h[3]};
}

FrameError check_length(uint32_t length, uint32_t max_frame_bytes) {
  if (length > max_frame_bytes) return FrameError::kTooLarge;
  if (length == 0) return FrameError::kEmpty;
  return FrameError::kNone;
}

FrameError decode_body(std::string_view body, stigmergy::v1::Envelope& env) {
  if (!env.ParseFromArray(body.data(), static_cast<int>(body.size()))) return FrameError::kMalformed;
  if (env.protocol_version() != kProtocolVersion) return FrameError::kBadVersion;
  if (env.body_case() == stigmergy::v1::Envelope::BODY_NOT_SET) return FrameError::kMalformed;
  return FrameError::kNone;
}

void FrameDecoder::feed(std::string_view bytes) {
  if (error_ == FrameError::kNone) {
    // The header of the frame in progress, from the buffer or these bytes.
    unsigned char header[kHeaderBytes];
    const size_t have = buffered();
    if (have + bytes.size() >= kHeaderBytes) {
      for (size_t i = 0; i < kHeaderBytes; ++i)
        header[i] = static_cast<unsigned char>(i < have ? buffer_[consumed_ + i] : bytes[i - have]);
      const uint32_t length = decode_length(header);
      const size_t whole = consumed_ + kHeaderBytes + length;
      // Only big frames within the limit: small ones fit the kept capacity,
      // and next() refuses an over-long one.
      if (length > kKeepCapacity && check_length(length, max_frame_bytes_) == FrameError::kNone &&
          buffer_.capacity() < whole)
        buffer_.reserve(std::max(whole, buffer_.size() + bytes.size()));
    }
  }
  buffer_.append(bytes);
}

bool FrameDecoder::next(stigmergy::v1::Envelope& env) {
  if (error_ != FrameError::kNone) return false;
  if (buffered() < kHeaderBytes) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
  const uint32_t length = decode_length(p);
  if ((error_ = check_length(length, max_frame_bytes_)) != FrameError::kNone) return false;
  if (buffered() < kHeaderBytes + length) return false;
  error_ = decode_body(std::string_view(buffer_.data() + consumed_ + kHeaderBytes, length), env);
  consumed_ += kHeaderBytes + length;
  if (consumed_ == buffer_.size()) {
    if (buffer_.capacity() > kKeepCapacity) {
      std::string().swap(buffer_);  // release a big frame's memory
    } else {
      buffer_.clear();
    }
    consumed_ = 0;
  } else if (consumed_ > (1u << 16) && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
    if (buffer_.capacity() > kKeepCapacity && buffer_.capacity() > 4 * buffer_.size()) buffer_.shrink_to_fit();
  }
  return error_ == FrameError::kNone;
}

size_t FrameDecoder::pending_frame_bytes() const {
  const size_t have = buffered();
  if (have < kHeaderBytes) return have;
  const uint32_t length = decode_length(reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_));
  return std::max(have, kHeaderBytes + length);
}

}  // namespace stig::wire
