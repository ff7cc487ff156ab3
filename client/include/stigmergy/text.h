// Text helpers shared by the CLI, the benchmark and tests: base64, UTF-8
// validation and timestamps. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "stigmergy/result.h"

namespace stigmergy {

// Base64url (RFC 4648 section 5) without padding, and its strict decoder
// (rejects padding, foreign characters and non-canonical trailing bits).
std::string base64url_encode(std::string_view bytes);
Result<std::string> base64url_decode(std::string_view text);

// Standard base64 (RFC 4648 section 4) with padding, and its decoder (padding
// optional, whitespace not allowed).
std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

// True when `bytes` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF). Values that pass are shown as text, others as base64.
bool is_valid_utf8(std::string_view bytes);

// Milliseconds since the Unix epoch -> "2024-05-01T12:34:56.789Z" (UTC).
std::string format_iso8601_ms(int64_t unix_ms);

// A point in time given by a user: milliseconds since the Unix epoch (digits
// only) or RFC 3339 ("2024-05-01T12:34:56Z", "2024-05-01T14:34:56.789+02:00";
// 't', 'z' and a space for 'T' accepted). Returns ms since the epoch.
Result<int64_t> parse_time_ms(std::string_view text);

// A duration given by a user: a non-negative number with a unit, ms, s, m or
// h ("500ms", "10s", "1.5m"); a bare number is seconds. Returns milliseconds.
Result<int64_t> parse_duration_ms(std::string_view text);

}  // namespace stigmergy
