#pragma once
/// Small UTF-8 helpers shared by the tokenizer and the streaming detokenizer.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvserve {

/// UTF-8 of a code point (no validation of surrogates).
std::string utf8_encode(std::uint32_t cp);

/// Decodes the well-formed character at the start of `s` into `cp` and returns its length,
/// or 0 when `s` does not start with a complete, well-formed character.
std::size_t utf8_decode_one(std::string_view s, std::uint32_t& cp);

/// Replaces every ill-formed subsequence by U+FFFD, one per maximal subpart (as Rust's
/// String::from_utf8_lossy and so Hugging Face decoding do).
std::string utf8_sanitize(std::string_view s);

/// Length of the longest prefix of `s` that does not end inside a character that further
/// bytes could still complete: everything but an incomplete (so far valid) trailing sequence.
std::size_t utf8_complete_prefix(std::string_view s);

}  // namespace kvserve
