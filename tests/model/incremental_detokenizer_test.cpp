#include "model/incremental_detokenizer.hpp"

#include <gtest/gtest.h>

#include "model/gguf_file.hpp"
#include "model/gguf_loader.hpp"
#include "test_model_path.hpp"

namespace kvserve {
namespace {

class IncrementalDetokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto file = gguf_file::open(testing_support::default_model_path());
    if (!file) return;
    auto spec = tokenizer_spec_from_gguf(*file);
    if (!spec) return;
    auto tok = tokenizer::create(std::move(spec).value());
    if (tok) tok_ = *tok;
  }
  void SetUp() override {
    ASSERT_NE(tok_, nullptr) << "cannot read the default model's tokenizer (scripts/fetch_model)";
  }

  /// Streams `ids` and checks every delta ends on a UTF-8 character boundary.
  static std::string stream(incremental_detokenizer& d, const std::vector<std::int32_t>& ids) {
    std::string out;
    for (std::int32_t id : ids) {
      auto delta = d.push(id);
      // A delta is valid UTF-8 on its own: decoding its bytes changes nothing.
      EXPECT_EQ(delta.text, sanitize(delta.text));
      out += delta.text;
      if (delta.stopped) break;
    }
    return out;
  }
  static std::string sanitize(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
      const auto b = static_cast<unsigned char>(s[i]);
      const std::size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
      bool ok = b < 0x80 || (b >= 0xC2 && b <= 0xF4);
      for (std::size_t k = 1; ok && k < len; ++k) {
        ok = i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
      }
      out += ok ? s.substr(i, len) : "?";
      i += ok ? len : 1;
    }
    return out;
  }

  static inline std::shared_ptr<const tokenizer> tok_;
};

TEST_F(IncrementalDetokenizer, NeverEmitsHalfACharacter) {
  const std::string text = "héllo 😀 日本語 👨‍👩‍👧‍👦 done";
  const auto ids = tok_->encode(text, false);
  incremental_detokenizer d(tok_);
  std::string out = stream(d, ids);
  out += d.finish().text;
  EXPECT_EQ(out, text);
  EXPECT_EQ(d.text(), text);
}

TEST_F(IncrementalDetokenizer, EmojiBytesArriveSplitAcrossTokens) {
  // 😀 is split over two tokens in this vocabulary: nothing is emitted after the first.
  const auto ids = tok_->encode("😀", false);
  ASSERT_GE(ids.size(), 2u);
  incremental_detokenizer d(tok_);
  EXPECT_EQ(d.push(ids[0]).text, "");
  std::string rest;
  for (std::size_t i = 1; i < ids.size(); ++i) rest += d.push(ids[i]).text;
  EXPECT_EQ(rest, "😀");
}

TEST_F(IncrementalDetokenizer, IncompleteTailBecomesReplacementAtFinish) {
  const auto ids = tok_->encode("😀", false);
  incremental_detokenizer d(tok_);
  EXPECT_EQ(d.push(ids[0]).text, "");
  EXPECT_EQ(d.finish().text, "\xEF\xBF\xBD");
}

TEST_F(IncrementalDetokenizer, SkipsSpecialTokens) {
  const auto ids = tok_->encode("<|im_start|>hi<|im_end|>", false);
  incremental_detokenizer skip(tok_);
  std::string a = stream(skip, ids) + skip.finish().text;
  EXPECT_EQ(a, "hi");
  incremental_detokenizer keep(tok_, {}, false);
  std::string b = stream(keep, ids) + keep.finish().text;
  EXPECT_EQ(b, "<|im_start|>hi<|im_end|>");
}

TEST_F(IncrementalDetokenizer, StopStringTruncatesAndHoldsBackPrefixes) {
  const std::string text = "The answer is 42. END of story";
  const auto ids = tok_->encode(text, false);
  incremental_detokenizer d(tok_, {"END", "never"});
  std::string out;
  bool stopped = false;
  for (std::int32_t id : ids) {
    auto delta = d.push(id);
    out += delta.text;
    // Nothing that could begin "END" is ever shown.
    EXPECT_EQ(out.find('E'), std::string::npos);
    if (delta.stopped) {
      stopped = true;
      ASSERT_TRUE(delta.stop.has_value());
      EXPECT_EQ(*delta.stop, "END");
      break;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(out, "The answer is 42. ");
  EXPECT_TRUE(d.stopped());
  EXPECT_EQ(d.push(ids[0]).text, "");
  EXPECT_EQ(d.finish().text, "");
}

TEST_F(IncrementalDetokenizer, StopStringSpanningTokens) {
  // A stop string made of pieces of several tokens, found as soon as its last byte arrives.
  const std::string text = "alpha beta gamma delta";
  const auto ids = tok_->encode(text, false);
  incremental_detokenizer d(tok_, {"ta gam"});
  std::string out = stream(d, ids);
  EXPECT_TRUE(d.stopped());
  EXPECT_EQ(out, "alpha be");
}

TEST_F(IncrementalDetokenizer, HeldPrefixIsReleasedWhenItDiverges) {
  const auto ids = tok_->encode("a <b c", false);
  incremental_detokenizer d(tok_, {"<b>"});
  std::string out = stream(d, ids);
  EXPECT_FALSE(d.stopped());
  out += d.finish().text;
  EXPECT_EQ(out, "a <b c");
}

TEST_F(IncrementalDetokenizer, PartialStopAtEndIsReleasedByFinish) {
  const auto ids = tok_->encode("wait for it <st", false);
  incremental_detokenizer d(tok_, {"<stop>"});
  std::string out = stream(d, ids);
  EXPECT_EQ(out, "wait for it ");
  EXPECT_EQ(d.finish().text, "<st");
  EXPECT_FALSE(d.stopped());
}

}  // namespace
}  // namespace kvserve
