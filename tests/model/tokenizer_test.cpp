#include "model/tokenizer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "model/gguf_file.hpp"
#include "model/gguf_loader.hpp"
#include "test_model_path.hpp"

namespace kvserve {
namespace {

/// The default model's tokenizer, read once for the whole suite.
class SmolLm2Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = testing_support::default_model_path();
    auto file = gguf_file::open(path);
    if (!file) return;
    auto spec = tokenizer_spec_from_gguf(*file);
    if (!spec) return;
    auto tok = tokenizer::create(std::move(spec).value());
    if (tok) tok_ = *tok;
  }
  void SetUp() override {
    ASSERT_NE(tok_, nullptr) << "cannot read the tokenizer of "
                             << testing_support::default_model_path()
                             << " (run scripts/fetch_model)";
  }
  static inline std::shared_ptr<const tokenizer> tok_;
};

TEST_F(SmolLm2Tokenizer, MatchesTransformersOnGeneratedCorpus) {
  std::ifstream in(std::string(KVSERVE_TEST_DATA_DIR) + "/tokenizer_smollm2.json");
  ASSERT_TRUE(in) << "missing tests/data/tokenizer_smollm2.json";
  const nlohmann::json data = nlohmann::json::parse(in);
  const auto& cases = data.at("cases");
  ASSERT_GE(cases.size(), 2000u);
  std::map<std::string, std::pair<int, int>> per_category;  // matches, total
  int shown = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto expected = c.at("ids").get<std::vector<std::int32_t>>();
    const auto got = tok_->encode(text, false);
    auto& [ok, total] = per_category[c.at("category").get<std::string>()];
    ++total;
    if (got == expected) {
      ++ok;
    } else if (shown++ < 10) {
      ADD_FAILURE() << "ids differ for " << nlohmann::json(text).dump() << "\n  expected "
                    << nlohmann::json(expected).dump() << "\n  got      "
                    << nlohmann::json(got).dump();
    }
  }
  for (const auto& [category, counts] : per_category) {
    EXPECT_EQ(counts.first, counts.second) << "category " << category;
  }
}

TEST_F(SmolLm2Tokenizer, DecodeInvertsEncode) {
  std::ifstream in(std::string(KVSERVE_TEST_DATA_DIR) + "/tokenizer_smollm2.json");
  ASSERT_TRUE(in);
  const nlohmann::json data = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& c : data.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    // Bytes missing from the vocabulary (some C0 controls) become <|endoftext|> (UNK).
    if (c.at("category") == "controls") continue;
    EXPECT_EQ(tok_->decode(tok_->encode(text, false), false), text);
    ++checked;
  }
  EXPECT_GE(checked, 2000);
}

TEST_F(SmolLm2Tokenizer, SpecialTokensAndIds) {
  EXPECT_EQ(tok_->vocab_size(), 49152);
  EXPECT_EQ(tok_->bos_token_id(), 1);
  EXPECT_EQ(tok_->eos_token_id(), 2);
  EXPECT_EQ(tok_->token_to_id("<|im_end|>"), 2);
  EXPECT_EQ(tok_->token_to_id("<|im_start|>"), 1);
  EXPECT_FALSE(tok_->token_to_id("<|not a token|>").has_value());
  EXPECT_TRUE(tok_->is_special(1));
  EXPECT_FALSE(tok_->is_special(81));
  // <|im_end|> (EOS) and <|endoftext|> both end a turn.
  EXPECT_EQ(tok_->stop_token_ids(), (std::vector<std::int32_t>{0, 2}));
  const auto ids = tok_->encode("<|im_start|>user\nhi<|im_end|>", false);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok_->decode(ids, true), "user\nhi");
  EXPECT_EQ(tok_->decode(ids, false), "<|im_start|>user\nhi<|im_end|>");
  // The metadata says no BOS.
  EXPECT_EQ(tok_->encode("hi", true), tok_->encode("hi", false));
}

TEST_F(SmolLm2Tokenizer, PiecesAreRawBytes) {
  const auto ids = tok_->encode("é", false);
  std::string joined;
  for (std::int32_t id : ids) joined += tok_->token_piece(id);
  EXPECT_EQ(joined, "é");
  EXPECT_EQ(tok_->token_piece(tok_->token_to_id("Ġthe").value()), " the");
  EXPECT_EQ(tok_->token_text(tok_->token_to_id("Ġthe").value()), "Ġthe");
  EXPECT_EQ(tok_->token_piece(-1), "");
  EXPECT_EQ(tok_->token_piece(1 << 30), "");
}

TEST_F(SmolLm2Tokenizer, InvalidUtf8IsEncodedAndDecodedLossily) {
  // 0x80 and 0xE2 0x82 are in the vocabulary (0xFF and 0xFE are not: they would become UNK).
  const std::string bad = "ok\x80\x80 tail\xe2\x82";
  const auto ids = tok_->encode(bad, false);
  EXPECT_FALSE(ids.empty());
  std::string raw;
  for (std::int32_t id : ids) raw += tok_->token_piece(id);
  EXPECT_EQ(raw, bad);  // byte-level: nothing is lost
  EXPECT_EQ(tok_->decode(ids, false), "ok\xEF\xBF\xBD\xEF\xBF\xBD tail\xEF\xBF\xBD");
}

TEST_F(SmolLm2Tokenizer, LongPromptsEncode) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "The quick brown fox " + std::to_string(i) + " jumps. ";
  text += std::string(5000, ' ') + std::string(3000, 'a');
  const auto ids = tok_->encode(text, false);
  EXPECT_GT(ids.size(), 10000u);
  EXPECT_EQ(tok_->decode(ids, false), text);
}

// A tiny hand-made vocabulary: merges by rank, leftmost first on ties.
tokenizer_spec tiny_spec() {
  tokenizer_spec spec;
  // The 256 byte characters of GPT-2's alphabet first, then merged tokens.
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    if (printable) {
      std::string s;
      if (b < 0x80) {
        s.push_back(static_cast<char>(b));
      } else {
        s.push_back(static_cast<char>(0xC0 | (b >> 6)));
        s.push_back(static_cast<char>(0x80 | (b & 0x3F)));
      }
      spec.tokens.push_back(s);
    } else {
      spec.tokens.push_back("<byte" + std::to_string(b) + ">");  // replaced below
    }
  }
  // Non-printable bytes map to U+0100 + n in order.
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    if (!printable) {
      const int cp = 256 + n++;
      std::string s;
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      spec.tokens[static_cast<std::size_t>(b)] = s;
    }
  }
  spec.tokens.push_back("aa");     // 256
  spec.tokens.push_back("ab");     // 257
  spec.tokens.push_back("aab");    // 258
  spec.tokens.push_back("<|x|>");  // 259
  spec.merges = {"a b", "a a", "aa b"};
  spec.kinds.assign(spec.tokens.size(), token_kind::kNormal);
  spec.kinds[259] = token_kind::kControl;
  spec.eos_token_id = 259;
  return spec;
}

TEST(TinyTokenizer, MergesByRank) {
  auto tok = tokenizer::create(tiny_spec());
  ASSERT_TRUE(tok) << tok.error().message();
  // "aab": "a b" (rank 0) first -> a|ab; then no rule for (a, ab).
  EXPECT_EQ((*tok)->encode("aab", false), (std::vector<std::int32_t>{'a', 257}));
  // "aaa": "a a" leftmost -> aa|a.
  EXPECT_EQ((*tok)->encode("aaa", false), (std::vector<std::int32_t>{256, 'a'}));
  EXPECT_EQ((*tok)->encode("x<|x|>y", false), (std::vector<std::int32_t>{'x', 259, 'y'}));
  EXPECT_EQ((*tok)->stop_token_ids(), (std::vector<std::int32_t>{259}));
}

TEST(TinyTokenizer, IndividualDigitsSplitBeforeTheRegex) {
  tokenizer_spec spec = tiny_spec();
  const std::string space = spec.tokens[' '];  // "Ġ"
  spec.tokens.push_back(space + space);        // 260
  spec.kinds.push_back(token_kind::kNormal);
  spec.merges.push_back(space + " " + space);
  auto plain = tokenizer::create(spec);
  spec.individual_digits = true;
  auto digits = tokenizer::create(spec);
  ASSERT_TRUE(plain && digits);
  // GPT-2's regex keeps " 12" together, so the two spaces are not merged ...
  EXPECT_EQ((*plain)->encode("a  12", false), (std::vector<std::int32_t>{'a', ' ', ' ', '1', '2'}));
  // ... while HF's Digits pre-tokenizer splits the digits off first, leaving "a  ".
  EXPECT_EQ((*digits)->encode("a  12", false), (std::vector<std::int32_t>{'a', 260, '1', '2'}));
}

TEST(TinyTokenizer, RejectsBadSpecs) {
  tokenizer_spec bad = tiny_spec();
  bad.merges.push_back("a zz");
  auto r = tokenizer::create(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kCorruptData);
  tokenizer_spec bad_id = tiny_spec();
  bad_id.bos_token_id = 100000;
  EXPECT_FALSE(tokenizer::create(bad_id));
  EXPECT_FALSE(tokenizer::create(tokenizer_spec{}));
}

TEST(Pretokenizer, KnownNames) {
  EXPECT_EQ(pretokenizer_from_name("smollm").value(), pretokenizer_kind::kGpt2);
  EXPECT_EQ(pretokenizer_from_name("llama-bpe").value(), pretokenizer_kind::kLlama3);
  EXPECT_EQ(pretokenizer_from_name("qwen2").value(), pretokenizer_kind::kQwen2);
  auto r = pretokenizer_from_name("deepseek-coder");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kUnsupported);
}

}  // namespace
}  // namespace kvserve
