// Rendering untrusted bytes (keys, elements, node ids, client ids) inside
// one-line, human-readable messages.
//
// Keys and values are bytes, but error messages travel in the protobuf
// `string` field error_message, which must be valid UTF-8 or the whole reply
// fails to parse at the client. printable() guarantees valid UTF-8 with no
// control characters and a bounded length, whatever the input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace stig::replication {

// Valid UTF-8 passes through; control characters, backslashes and bytes that
// are not part of valid UTF-8 are written as \xNN. Input longer than
// `max_bytes` is cut (at a character boundary) and marked with "...(N bytes)".
std::string printable(std::string_view bytes, size_t max_bytes = 128);

// Replaces every byte that is not part of valid UTF-8 with \xNN and every
// control character (newlines included) with a space: a one-line message
// that is safe for a protobuf `string` field. Already-valid text is unchanged.
std::string one_line_utf8(std::string_view text);

}  // namespace stig::replication
