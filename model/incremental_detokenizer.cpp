#include "model/incremental_detokenizer.hpp"

#include <algorithm>
#include <utility>

#include "model/utf8.hpp"

namespace kvserve {

incremental_detokenizer::incremental_detokenizer(std::shared_ptr<const tokenizer> tok,
                                                 std::vector<std::string> stop_strings,
                                                 bool skip_special_tokens)
    : tok_(std::move(tok)), skip_special_(skip_special_tokens) {
  for (std::string& s : stop_strings) {
    if (!s.empty()) stop_strings_.push_back(std::move(s));
  }
}

incremental_detokenizer::delta incremental_detokenizer::push(std::int32_t token) {
  if (stopped_) return {};
  if (!(skip_special_ && tok_->is_control(token))) pending_bytes_ += tok_->token_piece(token);
  const std::size_t n = utf8_complete_prefix(pending_bytes_);
  if (n > 0) {
    held_text_ += utf8_sanitize(std::string_view(pending_bytes_).substr(0, n));
    pending_bytes_.erase(0, n);
  }
  return release(false);
}

incremental_detokenizer::delta incremental_detokenizer::finish() {
  if (stopped_) return {};
  held_text_ += utf8_sanitize(pending_bytes_);
  pending_bytes_.clear();
  return release(true);
}

incremental_detokenizer::delta incremental_detokenizer::release(bool final) {
  delta d;
  // The earliest stop string wins; among those starting at the same place, the longest.
  std::size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& s : stop_strings_) {
    const std::size_t p = held_text_.find(s);
    if (p != std::string::npos &&
        (p < best || (p == best && best_stop != nullptr && s.size() > best_stop->size()))) {
      best = p;
      best_stop = &s;
    }
  }
  if (best_stop != nullptr) {
    d.text = held_text_.substr(0, best);
    d.stopped = true;
    d.stop = *best_stop;
    stopped_ = true;
    held_text_.clear();
    pending_bytes_.clear();
    emitted_ += d.text;
    return d;
  }
  // Hold back the longest tail that could still grow into a stop string.
  std::size_t hold = 0;
  if (!final) {
    for (const std::string& s : stop_strings_) {
      const std::size_t max_len = std::min(s.size() - 1, held_text_.size());
      for (std::size_t len = max_len; len > hold; --len) {
        if (held_text_.compare(held_text_.size() - len, len, s, 0, len) == 0) {
          hold = len;
          break;
        }
      }
    }
  }
  d.text = held_text_.substr(0, held_text_.size() - hold);
  held_text_.erase(0, held_text_.size() - hold);
  emitted_ += d.text;
  return d;
}

}  // namespace kvserve
