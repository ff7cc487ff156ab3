// Causal contexts as the client sees them.
//
// A node returns an opaque causal context with every get and put: the bytes of
// a serialized stigmergy.v1.VersionVector (one counter per replica node). A put
// or delete that carries it supersedes every version the context has seen;
// versions it has not seen survive as siblings.
//
// Users see contexts as text: base64url (RFC 4648 section 5) without padding,
// so they can be pasted into shells and URLs without quoting. The helpers here
// convert between the two forms and compare contexts for read-your-writes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "stigmergy/result.h"

namespace stigmergy {

// Context bytes -> text. The empty context encodes to the empty string.
std::string encode_context(std::string_view bytes);

// Text -> context bytes. Rejects, with a one-line message naming the problem:
// characters outside the base64url alphabet (including '=' padding and the
// '+' '/' of standard base64), an impossible length, non-canonical trailing
// bits, and bytes that are not a serialized version vector. The empty string
// decodes to the empty context ("no version seen").
Result<std::string> decode_context(std::string_view text);

// A version vector: node id -> counter. Absent entries are zero.
using VersionVector = std::map<std::string, uint64_t>;

// Parses context bytes (a serialized stigmergy.v1.VersionVector). The empty
// context parses to the empty vector.
Result<VersionVector> parse_context(std::string_view bytes);

// True when `a` has seen everything `b` has: a[n] >= b[n] for every node n.
// Every vector dominates the empty vector; equal vectors dominate each other.
bool dominates(const VersionVector& a, const VersionVector& b);

// Entry-wise maximum: everything seen by either.
VersionVector merge(const VersionVector& a, const VersionVector& b);

// Human form "{n1:3, n2:1}", for diagnostics.
std::string to_string(const VersionVector& vv);

}  // namespace stigmergy
