#include "model/tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <queue>
#include <unordered_map>
#include <utility>

#include "model/utf8.hpp"

namespace kvserve {
namespace {

// Unicode White_Space, as the Hugging Face pre-tokenizers' `\s` (Oniguruma) matches it;
// PCRE2's own `\s` differs on U+0085 and U+180E.
constexpr const char* kWs =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

std::string pattern_for(pretokenizer_kind kind) {
  const std::string ws = kWs;
  const std::string s = "[" + ws + "]";
  const std::string not_s = "[^" + ws + "]";
  const std::string not_s_l_n = "[^" + ws + "\\p{L}\\p{N}]";
  switch (kind) {
    case pretokenizer_kind::kGpt2:
      return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?" + not_s_l_n + "+|" + s + "+(?!" +
             not_s + ")|" + s + "+";
    case pretokenizer_kind::kLlama3:
    case pretokenizer_kind::kQwen2: {
      const std::string digits = kind == pretokenizer_kind::kLlama3 ? "\\p{N}{1,3}" : "\\p{N}";
      return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" + digits + "| ?" +
             not_s_l_n + "+[\\r\\n]*|" + s + "*[\\r\\n]+|" + s + "+(?!" + not_s + ")|" + s + "+";
    }
  }
  return {};
}

/// GPT-2's reversible byte <-> printable-character mapping.
struct byte_alphabet {
  std::array<std::string, 256> byte_to_char;  // UTF-8 of the character for each byte
  std::unordered_map<std::uint32_t, std::uint8_t> char_to_byte;

  byte_alphabet() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const std::uint32_t cp =
          printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(256 + n++);
      byte_to_char[static_cast<std::size_t>(b)] = utf8_encode(cp);
      char_to_byte[cp] = static_cast<std::uint8_t>(b);
    }
  }
};

const byte_alphabet& alphabet() {
  static const byte_alphabet a;
  return a;
}

/// Raw bytes of a vocabulary string in GPT-2's alphabet; characters outside it stay as UTF-8.
std::string alphabet_to_bytes(std::string_view token) {
  std::string out;
  std::size_t i = 0;
  while (i < token.size()) {
    std::uint32_t cp = 0;
    const std::size_t len = utf8_decode_one(token.substr(i), cp);
    if (len == 0) {  // invalid UTF-8 in the vocabulary: keep the byte
      out.push_back(token[i++]);
      continue;
    }
    auto it = alphabet().char_to_byte.find(cp);
    if (it != alphabet().char_to_byte.end()) {
      out.push_back(static_cast<char>(it->second));
    } else {
      out.append(token.substr(i, len));
    }
    i += len;
  }
  return out;
}

struct pair_hash {
  std::size_t operator()(std::uint64_t v) const noexcept { return std::hash<std::uint64_t>{}(v); }
};

std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
         static_cast<std::uint32_t>(b);
}

struct merge_rule {
  std::int32_t rank;
  std::int32_t result;
};

const std::string kEmpty;

/// pcre2_match, retried without JIT when the JIT stack runs out (very long runs of one class);
/// < 0 only for "no match" or a real failure.
int match_at(const pcre2_code* re, PCRE2_SPTR subject, std::size_t length, std::size_t pos,
             pcre2_match_data* md) {
  int rc = pcre2_match(re, subject, length, pos, 0, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(re, subject, length, pos, PCRE2_NO_JIT, md, nullptr);
  return rc;
}

}  // namespace

struct tokenizer::impl {
  tokenizer_spec spec;
  std::vector<std::string> pieces;
  std::unordered_map<std::string, std::int32_t> vocab;
  std::unordered_map<std::uint64_t, merge_rule, pair_hash> merges;
  std::array<std::int32_t, 256> byte_token{};  // token of each single byte
  std::vector<std::int32_t> stop_ids;
  /// Tokens matched literally in text, longest first.
  std::vector<std::pair<std::string, std::int32_t>> specials;
  std::array<bool, 256> special_first_byte{};
  pcre2_code* regex = nullptr;
  pcre2_code* digit_regex = nullptr;  // only with individual_digits

  ~impl() {
    if (regex != nullptr) pcre2_code_free(regex);
    if (digit_regex != nullptr) pcre2_code_free(digit_regex);
  }

  token_kind kind(std::int32_t id) const {
    if (spec.kinds.empty()) return token_kind::kNormal;
    return spec.kinds[static_cast<std::size_t>(id)];
  }

  void bpe(std::string_view word, std::vector<std::int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<std::int32_t>& out) const;
  void encode_split(std::string_view text, std::vector<std::int32_t>& out) const;
};

/// Merges one pre-token by rank, lowest first and leftmost on ties, as HF's BPE does: a
/// doubly linked list of symbols and a heap of candidate pairs, O(n log n).
void tokenizer::impl::bpe(std::string_view word, std::vector<std::int32_t>& out) const {
  // One symbol per byte; bytes missing from the vocabulary become (fused) unknown tokens.
  std::vector<std::int32_t> id;
  id.reserve(word.size());
  bool last_unknown = false;
  for (char ch : word) {
    const std::int32_t t = byte_token[static_cast<std::uint8_t>(ch)];
    if (t >= 0) {
      id.push_back(t);
      last_unknown = false;
    } else if (spec.unknown_token_id && !last_unknown) {
      id.push_back(*spec.unknown_token_id);
      last_unknown = true;
    }
  }
  const int n = static_cast<int>(id.size());
  if (n <= 1) {
    out.insert(out.end(), id.begin(), id.end());
    return;
  }
  std::vector<int> prev(static_cast<std::size_t>(n)), next(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    prev[static_cast<std::size_t>(i)] = i - 1;
    next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct cand {
    std::int32_t rank;
    int pos;
    std::int32_t left, right;  // ids when queued: a stale entry no longer matches
    bool operator>(const cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<cand, std::vector<cand>, std::greater<>> heap;
  auto push = [&](int pos) {
    if (pos < 0) return;
    const int nx = next[static_cast<std::size_t>(pos)];
    if (nx < 0) return;
    auto it =
        merges.find(pair_key(id[static_cast<std::size_t>(pos)], id[static_cast<std::size_t>(nx)]));
    if (it != merges.end()) {
      heap.push({it->second.rank, pos, id[static_cast<std::size_t>(pos)],
                 id[static_cast<std::size_t>(nx)]});
    }
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  std::vector<bool> dead(static_cast<std::size_t>(n), false);
  while (!heap.empty()) {
    const cand c = heap.top();
    heap.pop();
    const auto p = static_cast<std::size_t>(c.pos);
    if (dead[p] || next[p] < 0) continue;
    const auto q = static_cast<std::size_t>(next[p]);
    if (id[p] != c.left || id[q] != c.right) continue;
    id[p] = merges.at(pair_key(c.left, c.right)).result;
    dead[q] = true;
    next[p] = next[q];
    if (next[q] >= 0) prev[static_cast<std::size_t>(next[q])] = c.pos;
    push(prev[p]);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = next[static_cast<std::size_t>(i)])
    out.push_back(id[static_cast<std::size_t>(i)]);
}

/// Splits single digits off first when the spec asks for it, then pre-tokenises the rest.
void tokenizer::impl::encode_split(std::string_view text, std::vector<std::int32_t>& out) const {
  if (digit_regex == nullptr) {
    encode_plain(text, out);
    return;
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(digit_regex, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t pos = 0;
  while (pos < text.size()) {
    const int rc = match_at(digit_regex, subject, text.size(), pos, md);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    encode_plain(text.substr(pos, ov[0] - pos), out);
    bpe(text.substr(ov[0], ov[1] - ov[0]), out);
    pos = ov[1];
  }
  pcre2_match_data_free(md);
  encode_plain(text.substr(pos), out);
}

/// Pre-tokenises text without special tokens and merges each piece. Bytes the regex does not
/// cover (gaps, invalid UTF-8) become pieces of their own, as HF's "isolated" split does.
void tokenizer::impl::encode_plain(std::string_view text, std::vector<std::int32_t>& out) const {
  if (text.empty()) return;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t pos = 0, gap_start = 0;
  while (pos < text.size()) {
    const int rc = match_at(regex, subject, text.size(), pos, md);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const std::size_t start = ov[0], end = ov[1];
    if (end == start) {  // empty match cannot happen with these patterns; guard anyway
      pos = start + 1;
      continue;
    }
    if (start > gap_start) bpe(text.substr(gap_start, start - gap_start), out);
    bpe(text.substr(start, end - start), out);
    pos = gap_start = end;
  }
  if (gap_start < text.size()) bpe(text.substr(gap_start), out);
  pcre2_match_data_free(md);
}

tokenizer::tokenizer(std::unique_ptr<impl> impl) : impl_(std::move(impl)) {}
tokenizer::~tokenizer() = default;

result<pretokenizer_kind> pretokenizer_from_name(std::string_view pre) {
  static const std::array<std::string_view, 12> gpt2_like = {
      "default",   "gpt2", "gpt-2", "smollm", "starcoder", "refact",
      "codeshell", "olmo", "jais",  "bloom",  "",          "mpt"};
  for (std::string_view n : gpt2_like) {
    if (pre == n) return pretokenizer_kind::kGpt2;
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "smaug-bpe") {
    return pretokenizer_kind::kLlama3;
  }
  if (pre == "qwen2" || pre == "qwen2.5") return pretokenizer_kind::kQwen2;
  return status(status_code::kUnsupported,
                "pre-tokenizer '" + std::string(pre) + "' is not supported");
}

result<std::shared_ptr<const tokenizer>> tokenizer::create(tokenizer_spec spec) {
  auto im = std::make_unique<impl>();
  const std::size_t n = spec.tokens.size();
  if (n == 0 || n > (1u << 30)) {
    return status(status_code::kCorruptData, "tokenizer: empty or oversized vocabulary");
  }
  if (!spec.kinds.empty() && spec.kinds.size() != n) {
    return status(status_code::kCorruptData, "tokenizer: token kinds do not match the tokens");
  }
  auto check_id = [&](const std::optional<std::int32_t>& id) {
    return !id || (*id >= 0 && static_cast<std::size_t>(*id) < n);
  };
  if (!check_id(spec.bos_token_id) || !check_id(spec.eos_token_id) ||
      !check_id(spec.unknown_token_id)) {
    return status(status_code::kCorruptData, "tokenizer: BOS, EOS or UNK id out of range");
  }
  im->pieces.reserve(n);
  im->vocab.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto id = static_cast<std::int32_t>(i);
    im->vocab.emplace(spec.tokens[i], id);  // the first of duplicate strings wins, as HF
    const token_kind k = spec.kinds.empty() ? token_kind::kNormal : spec.kinds[i];
    const bool literal = k == token_kind::kControl || k == token_kind::kUserDefined;
    im->pieces.push_back(literal ? spec.tokens[i] : alphabet_to_bytes(spec.tokens[i]));
    if (literal && !spec.tokens[i].empty()) {
      im->specials.emplace_back(spec.tokens[i], id);
      im->special_first_byte[static_cast<std::uint8_t>(spec.tokens[i][0])] = true;
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = im->vocab.find(alphabet().byte_to_char[static_cast<std::size_t>(b)]);
    im->byte_token[static_cast<std::size_t>(b)] = it == im->vocab.end() ? -1 : it->second;
  }
  im->merges.reserve(spec.merges.size());
  for (std::size_t r = 0; r < spec.merges.size(); ++r) {
    const std::string& m = spec.merges[r];
    const std::size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) {
      return status(status_code::kCorruptData, "tokenizer: malformed merge '" + m + "'");
    }
    const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
    auto l = im->vocab.find(left), rr = im->vocab.find(right), res = im->vocab.find(left + right);
    if (l == im->vocab.end() || rr == im->vocab.end() || res == im->vocab.end()) {
      return status(status_code::kCorruptData,
                    "tokenizer: merge '" + m + "' uses a token not in the vocabulary");
    }
    im->merges.emplace(pair_key(l->second, rr->second),
                       merge_rule{static_cast<std::int32_t>(r), res->second});
  }
  // Longest first, so that matching at a position prefers the longest special token.
  std::stable_sort(im->specials.begin(), im->specials.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  std::vector<std::int32_t> stops;
  if (spec.eos_token_id) stops.push_back(*spec.eos_token_id);
  for (std::int32_t id : spec.extra_stop_token_ids) {
    if (id >= 0 && static_cast<std::size_t>(id) < n) stops.push_back(id);
  }
  for (const char* name : {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
                           "<|endoftext|>", "<|end|>", "<end_of_turn>"}) {
    auto it = im->vocab.find(name);
    if (it != im->vocab.end() &&
        (spec.kinds.empty() ||
         spec.kinds[static_cast<std::size_t>(it->second)] == token_kind::kControl)) {
      stops.push_back(it->second);
    }
  }
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
  im->stop_ids = std::move(stops);

  const std::string pattern = pattern_for(spec.pretokenizer);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  im->regex =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (im->regex == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return status(status_code::kInternal,
                  std::string("tokenizer: pre-tokenizer regex: ") + reinterpret_cast<char*>(buf));
  }
  pcre2_jit_compile(im->regex, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter
  if (spec.individual_digits) {
    const char* digit = "\\p{N}";
    im->digit_regex =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(digit), PCRE2_ZERO_TERMINATED,
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
    if (im->digit_regex == nullptr) {
      return status(status_code::kInternal, "tokenizer: digit regex does not compile");
    }
    pcre2_jit_compile(im->digit_regex, PCRE2_JIT_COMPLETE);
  }
  im->spec = std::move(spec);
  return std::shared_ptr<const tokenizer>(new tokenizer(std::move(im)));
}

std::vector<std::int32_t> tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens && impl_->spec.add_bos && impl_->spec.bos_token_id) {
    out.push_back(*impl_->spec.bos_token_id);
  }
  // Special tokens split the text first (leftmost, then longest), as HF's added vocabulary.
  std::size_t start = 0, pos = 0;
  while (pos < text.size()) {
    std::int32_t found = -1;
    std::size_t found_len = 0;
    if (impl_->special_first_byte[static_cast<std::uint8_t>(text[pos])]) {
      for (const auto& [s, id] : impl_->specials) {
        if (text.compare(pos, s.size(), s) == 0) {
          found = id;
          found_len = s.size();
          break;
        }
      }
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    impl_->encode_split(text.substr(start, pos - start), out);
    out.push_back(found);
    pos += found_len;
    start = pos;
  }
  impl_->encode_split(text.substr(start), out);
  if (add_special_tokens && impl_->spec.add_eos && impl_->spec.eos_token_id) {
    out.push_back(*impl_->spec.eos_token_id);
  }
  return out;
}

std::string tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (std::int32_t id : ids) {
    if (id < 0 || static_cast<std::size_t>(id) >= impl_->pieces.size()) continue;
    if (skip_special_tokens && is_control(id)) continue;
    bytes += impl_->pieces[static_cast<std::size_t>(id)];
  }
  return utf8_sanitize(bytes);
}

int tokenizer::vocab_size() const { return static_cast<int>(impl_->pieces.size()); }
std::optional<std::int32_t> tokenizer::bos_token_id() const { return impl_->spec.bos_token_id; }
std::optional<std::int32_t> tokenizer::eos_token_id() const { return impl_->spec.eos_token_id; }
const std::vector<std::int32_t>& tokenizer::stop_token_ids() const { return impl_->stop_ids; }

const std::string& tokenizer::token_piece(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->pieces.size()) return kEmpty;
  return impl_->pieces[static_cast<std::size_t>(id)];
}

const std::string& tokenizer::token_text(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->spec.tokens.size()) return kEmpty;
  return impl_->spec.tokens[static_cast<std::size_t>(id)];
}

bool tokenizer::is_special(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->pieces.size()) return false;
  const token_kind k = impl_->kind(id);
  return k == token_kind::kControl || k == token_kind::kUserDefined;
}

bool tokenizer::is_control(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->pieces.size()) return false;
  return impl_->kind(id) == token_kind::kControl;
}

std::optional<std::int32_t> tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

}  // namespace kvserve
