#include "stigmergy/text.h"

#include <algorithm>
#include <array>
#include <ctime>

namespace stigmergy {
namespace {

constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr char kStdAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string encode(std::string_view in, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t n = (uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) |
                       uint32_t{static_cast<unsigned char>(in[i + 2])};
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  const size_t rest = in.size() - i;
  if (rest == 1) {
    const uint32_t n = uint32_t{static_cast<unsigned char>(in[i])} << 16;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    const uint32_t n = (uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(in[i + 1])} << 8);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

std::array<int8_t, 256> make_table(const char* alphabet) {
  std::array<int8_t, 256> t{};
  t.fill(-1);
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
  return t;
}

std::string describe_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return std::string("'") + c + "'";
  static const char* hex = "0123456789abcdef";
  return std::string("byte 0x") + hex[u >> 4] + hex[u & 15];
}

// Decodes unpadded base64 text over `table`; `what` names the format in errors.
Result<std::string> decode(std::string_view in, const std::array<int8_t, 256>& table, const char* what) {
  if (in.size() % 4 == 1) {
    return make_error(ErrorCode::kInvalidArgument,
                      std::string("not valid ") + what + ": length " + std::to_string(in.size()) +
                          " is impossible (truncated?)");
  }
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const int8_t v = table[static_cast<unsigned char>(in[i])];
    if (v < 0) {
      return make_error(ErrorCode::kInvalidArgument, std::string("not valid ") + what + ": " +
                                                         describe_char(in[i]) + " at position " +
                                                         std::to_string(i + 1));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      std::string("not valid ") + what + ": last character has stray bits (truncated or altered?)");
  }
  return out;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) { return encode(bytes, kUrlAlphabet, false); }

Result<std::string> base64url_decode(std::string_view text) {
  static const auto table = make_table(kUrlAlphabet);
  return decode(text, table, "base64url");
}

std::string base64_encode(std::string_view bytes) { return encode(bytes, kStdAlphabet, true); }

Result<std::string> base64_decode(std::string_view text) {
  static const auto table = make_table(kStdAlphabet);
  if (text.size() % 4 == 0) {
    size_t pad = 0;
    while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
    text.remove_suffix(pad);
  }
  return decode(text, table, "base64");
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

std::string format_iso8601_ms(int64_t unix_ms) {
  int64_t secs = unix_ms / 1000;
  int64_t ms = unix_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace stigmergy

namespace stigmergy {
namespace {

// Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's algorithm.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

}  // namespace

Result<int64_t> parse_time_ms(std::string_view text) {
  const std::string shown(text);
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "bad time '" + shown + "': " + why +
                          " (expected RFC 3339 like 2024-05-01T12:34:56Z, or milliseconds since the epoch)");
  };
  if (text.empty()) return bad("empty");
  if (text.find_first_not_of("0123456789") == std::string_view::npos) {
    if (text.size() > 15) return bad("too large");
    int64_t v = 0;
    for (char c : text) v = v * 10 + (c - '0');
    return v;
  }
  size_t pos = 0;
  auto digits = [&](size_t n, int64_t& out) {
    if (pos + n > text.size()) return false;
    out = 0;
    for (size_t i = 0; i < n; ++i) {
      const char c = text[pos + i];
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    pos += n;
    return true;
  };
  auto expect = [&](std::string_view chars) {
    if (pos < text.size() && chars.find(text[pos]) != std::string_view::npos) {
      ++pos;
      return true;
    }
    return false;
  };
  int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!digits(4, y) || !expect("-") || !digits(2, mo) || !expect("-") || !digits(2, d)) return bad("date is not YYYY-MM-DD");
  if (!expect("Tt ")) return bad("missing 'T' between date and time");
  if (!digits(2, h) || !expect(":") || !digits(2, mi) || !expect(":") || !digits(2, s)) return bad("time is not HH:MM:SS");
  int64_t ms = 0;
  if (expect(".")) {
    int n = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (n < 3) ms = ms * 10 + (text[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0) return bad("no digits after '.'");
    for (; n < 3; ++n) ms *= 10;
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12) return bad("month out of range");
  const int dim = kDays[mo - 1] + (mo == 2 && is_leap(y) ? 1 : 0);
  if (d < 1 || d > dim) return bad("day out of range");
  if (h > 23 || mi > 59 || s > 60) return bad("time of day out of range");
  int64_t offset_min = 0;
  if (expect("Zz")) {
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const bool neg = text[pos] == '-';
    ++pos;
    int64_t oh = 0, om = 0;
    if (!digits(2, oh) || !expect(":") || !digits(2, om) || oh > 23 || om > 59) return bad("offset is not +HH:MM");
    offset_min = (neg ? -1 : 1) * (oh * 60 + om);
  } else {
    return bad("missing time zone ('Z' or +HH:MM)");
  }
  if (pos != text.size()) return bad("trailing characters");
  const int64_t secs = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 +
                       mi * 60 + std::min<int64_t>(s, 59) - offset_min * 60;
  return secs * 1000 + ms;
}

Result<int64_t> parse_duration_ms(std::string_view text) {
  const std::string shown(text);
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "bad duration '" + shown + "': " + why + " (expected e.g. 500ms, 10s, 2m, 1h; a bare number is seconds)");
  };
  size_t i = 0;
  double v = 0;
  bool any = false;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    v = v * 10 + (text[i] - '0');
    ++i;
    any = true;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    double scale = 0.1;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      v += (text[i] - '0') * scale;
      scale /= 10;
      ++i;
      any = true;
    }
  }
  if (!any) return bad(text.empty() ? "empty" : "not a number");
  const std::string_view unit = text.substr(i);
  double factor = 0;
  if (unit.empty() || unit == "s") {
    factor = 1000;
  } else if (unit == "ms") {
    factor = 1;
  } else if (unit == "m") {
    factor = 60000;
  } else if (unit == "h") {
    factor = 3600000;
  } else {
    return bad("unknown unit '" + std::string(unit) + "'");
  }
  const double ms = v * factor;
  if (ms > 1e15) return bad("too large");
  return static_cast<int64_t>(ms + 0.5);
}

}  // namespace stigmergy
