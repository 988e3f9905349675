// request_state and prepare_submission without actors.

#include "actors/request_state.hpp"

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace kvserve {
namespace {

std::vector<std::int32_t> ids_of(const std::string& text) {
  std::vector<std::int32_t> ids;
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

TEST(request_state, streams_text_and_stops_at_a_stop_string) {
  auto tok = testing::make_byte_tokenizer();
  ASSERT_TRUE(tok);
  stop_criteria stop;
  stop.max_tokens = 100;
  const auto t0 = request_state::clock::now();
  request_state rs(tok, stop, {"END"}, -1, t0);
  EXPECT_EQ(rs.on_accepted(5, 4, t0).cached_prompt_tokens, 4);
  std::string text;
  bool stopped = false;
  for (std::int32_t id : ids_of("hello ENDworld")) {
    auto out = rs.on_tokens({id}, {}, {}, t0);
    if (out.event) text += out.event->text;
    if (out.stopped) {
      stopped = true;
      EXPECT_EQ(out.stop_string, "END");
    }
  }
  EXPECT_TRUE(stopped);
  auto fin = rs.on_finished("length", "", t0);
  if (fin.tail) text += fin.tail->text;
  EXPECT_EQ(text, "hello ");
  EXPECT_EQ(fin.finished.finish_reason, "stop");
  EXPECT_EQ(fin.finished.stop_reason, "END");
  EXPECT_EQ(fin.finished.usage.completion_tokens, 9);  // up to the D of END
  EXPECT_EQ(fin.finished.usage.cached_prompt_tokens, 4);
}

TEST(request_state, multibyte_characters_are_never_split) {
  auto tok = testing::make_byte_tokenizer();
  stop_criteria stop;
  request_state rs(tok, stop, {}, -1, request_state::clock::now());
  const std::string euro = "\xE2\x82\xAC";  // one character, three tokens
  std::vector<std::string> pieces;
  for (std::int32_t id : ids_of(euro + "a")) {
    auto out = rs.on_tokens({id}, {}, {}, request_state::clock::now());
    pieces.push_back(out.event ? out.event->text : "");
  }
  EXPECT_EQ(pieces[0], "");
  EXPECT_EQ(pieces[1], "");
  EXPECT_EQ(pieces[2], euro);
  EXPECT_EQ(pieces[3], "a");
}

TEST(request_state, eos_adds_no_text) {
  auto tok = testing::make_byte_tokenizer();
  stop_criteria stop;
  stop.eos_token_ids = {256};
  request_state rs(tok, stop, {}, -1, request_state::clock::now());
  auto a = rs.on_tokens({'o', 'k', 256}, {}, {}, request_state::clock::now());
  ASSERT_TRUE(a.event);
  EXPECT_EQ(a.event->text, "ok");
  EXPECT_EQ(a.event->token_ids.size(), 3u);
  EXPECT_EQ(rs.completion_tokens(), 3);
}

TEST(prepare_submission, prompt_forms_and_errors) {
  auto tok = testing::make_byte_tokenizer();
  engine_config config;
  config.seed = 77;
  generate_request r;
  r.prompt = std::string("abc");
  r.max_tokens = 4;
  auto s = prepare_submission(r, 9, config, 64, 257, tok.get(), nullptr);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->prompt, (std::vector<std::int32_t>{'a', 'b', 'c'}));
  EXPECT_EQ(s->sampling.seed, 77u);  // engine default
  EXPECT_EQ(s->stop.eos_token_ids, tok->stop_token_ids());
  r.seed_set = true;
  r.sampling.seed = 5;
  EXPECT_EQ(prepare_submission(r, 9, config, 64, 257, tok.get(), nullptr)->sampling.seed, 5u);

  r.prompt = std::vector<std::int32_t>{};
  EXPECT_EQ(prepare_submission(r, 9, config, 64, 257, tok.get(), nullptr).error().code(),
            status_code::kInvalidArgument);
  r.prompt = std::vector<std::int32_t>{1, 300};
  EXPECT_EQ(prepare_submission(r, 9, config, 64, 257, tok.get(), nullptr).error().code(),
            status_code::kInvalidArgument);
  r.prompt = std::vector<std::int32_t>(61, 1);  // 61 + 4 > 64
  EXPECT_EQ(prepare_submission(r, 9, config, 64, 257, tok.get(), nullptr).error().code(),
            status_code::kInvalidArgument);
  r.prompt = std::vector<chat_message>{{"user", "hi"}};
  EXPECT_EQ(prepare_submission(r, 9, config, 64, 257, tok.get(), nullptr).error().code(),
            status_code::kInvalidArgument);  // no chat template
  r.prompt = std::vector<std::int32_t>{1, 2};
  r.sampling.temperature = -1;
  EXPECT_EQ(prepare_submission(r, 9, config, 64, 257, tok.get(), nullptr).error().code(),
            status_code::kInvalidArgument);
}

}  // namespace
}  // namespace kvserve
