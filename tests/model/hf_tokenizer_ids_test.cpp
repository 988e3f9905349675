// The tokenizer.json reader sizes its token table by the largest id: ids far beyond the tokens
// defined are rejected as corrupt data (a fuzzer found one id of 134 million asking for a 4 GB
// table), while the small gaps real tokenizers leave are accepted.

#include <gtest/gtest.h>

#include <string>

#include "model/hf_tokenizer.hpp"

namespace kvserve {
namespace {

/// A byte-level BPE tokenizer.json with the 256 byte tokens plus one added token `added_id`.
std::string tokenizer_json(long long last_vocab_id, long long added_id) {
  std::string vocab;
  for (int i = 0; i < 255; ++i)
    vocab += "\"t" + std::to_string(i) + "\": " + std::to_string(i) + ", ";
  vocab += "\"t255\": " + std::to_string(last_vocab_id);
  return R"({"model": {"type": "BPE", "vocab": {)" + vocab +
         R"(}, "merges": []}, "added_tokens": [{"id": )" + std::to_string(added_id) +
         R"(, "content": "<|end|>", "special": true}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
            "decoder": {"type": "ByteLevel"}})";
}

TEST(hf_tokenizer_ids, an_id_far_beyond_the_defined_tokens_is_corrupt_data) {
  auto far = hf_tokenizer_from_json(tokenizer_json(134444446, 256), "", "test");
  ASSERT_FALSE(far.is_ok());
  EXPECT_EQ(far.error().code(), status_code::kCorruptData);
  EXPECT_NE(far.error().message().find("134444446"), std::string::npos) << far.error().message();
  auto far_added = hf_tokenizer_from_json(tokenizer_json(255, 1 << 29), "", "test");
  ASSERT_FALSE(far_added.is_ok());
  EXPECT_EQ(far_added.error().code(), status_code::kCorruptData);
}

TEST(hf_tokenizer_ids, small_gaps_between_ids_are_accepted) {
  // Added token at 1,000: 743 unused ids in between, as padded vocabularies have.
  auto gap = hf_tokenizer_from_json(tokenizer_json(255, 1000), "", "test");
  ASSERT_TRUE(gap.is_ok()) << gap.error().message();
  EXPECT_EQ(gap->spec.tokens.size(), 1001u);
  EXPECT_EQ(gap->spec.tokens[1000], "<|end|>");
}

}  // namespace
}  // namespace kvserve
