#include "model/utf8.hpp"

namespace kvserve {
namespace {

/// Number of bytes of the well-formed prefix of a character starting at s[0] (1..4), and
/// whether that prefix is a complete character. A lead byte that can start nothing gives 0.
struct prefix_info {
  std::size_t valid_len;
  bool complete;
};

prefix_info scan(std::string_view s) {
  const auto b0 = static_cast<std::uint8_t>(s[0]);
  if (b0 < 0x80) return {1, true};
  std::size_t need = 0;
  std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0, false};
  }
  std::size_t len = 1;
  while (len < need && len < s.size()) {
    const auto b = static_cast<std::uint8_t>(s[len]);
    const std::uint8_t l = len == 1 ? lo : 0x80, h = len == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
    ++len;
  }
  return {len, len == need};
}

}  // namespace

std::string utf8_encode(std::uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

std::size_t utf8_decode_one(std::string_view s, std::uint32_t& cp) {
  if (s.empty()) return 0;
  const prefix_info p = scan(s);
  if (!p.complete) return 0;
  const auto b0 = static_cast<std::uint8_t>(s[0]);
  if (p.valid_len == 1) {
    cp = b0;
  } else {
    cp = b0 & (0x7F >> p.valid_len);
    for (std::size_t i = 1; i < p.valid_len; ++i) {
      cp = (cp << 6) | (static_cast<std::uint8_t>(s[i]) & 0x3F);
    }
  }
  return p.valid_len;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const prefix_info p = scan(s.substr(i));
    if (p.complete) {
      out.append(s.substr(i, p.valid_len));
      i += p.valid_len;
    } else {
      out.append("\xEF\xBF\xBD");
      i += p.valid_len == 0 ? 1 : p.valid_len;
    }
  }
  return out;
}

std::size_t utf8_complete_prefix(std::string_view s) {
  // Only the last three bytes can start an unfinished character.
  const std::size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (std::size_t i = from; i < s.size(); ++i) {
    const auto b = static_cast<std::uint8_t>(s[i]);
    if (b < 0x80 || (b & 0xC0) == 0x80) continue;  // ASCII or continuation
    const prefix_info p = scan(s.substr(i));
    if (!p.complete && p.valid_len > 0 && i + p.valid_len == s.size()) return i;
  }
  return s.size();
}

}  // namespace kvserve
