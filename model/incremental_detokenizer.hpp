#pragma once
/// Streaming detokenisation: token ids go in one at a time, text comes out that never ends in
/// half a UTF-8 character and never shows a stop string (or a prefix that might become one).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/tokenizer.hpp"

namespace kvserve {

/// One request's detokeniser. Not thread-safe; owned by the request that streams the text.
class incremental_detokenizer {
 public:
  /// What one push() or finish() produced.
  struct delta {
    std::string text;                 ///< newly completed text, possibly empty
    bool stopped = false;             ///< a stop string matched: stop generating
    std::optional<std::string> stop;  ///< which stop string matched
  };

  /// `stop_strings`: empty strings are ignored. Special (control) tokens add no text when
  /// `skip_special_tokens`.
  incremental_detokenizer(std::shared_ptr<const tokenizer> tok,
                          std::vector<std::string> stop_strings = {},
                          bool skip_special_tokens = true);

  /// Adds a token. After a stop string matched, further pushes return nothing.
  delta push(std::int32_t token);

  /// End of generation: returns the held-back text (an incomplete UTF-8 tail becomes U+FFFD,
  /// as HF decodes it; a partial stop-string prefix is released as text).
  delta finish();

  /// All text emitted so far (the output, truncated before a matched stop string).
  const std::string& text() const { return emitted_; }
  bool stopped() const { return stopped_; }

 private:
  delta release(bool final);

  std::shared_ptr<const tokenizer> tok_;
  std::vector<std::string> stop_strings_;
  bool skip_special_;
  std::string pending_bytes_;  ///< bytes not yet a complete UTF-8 character
  std::string held_text_;      ///< complete text held back as a possible stop-string prefix
  std::string emitted_;
  bool stopped_ = false;
};

}  // namespace kvserve
