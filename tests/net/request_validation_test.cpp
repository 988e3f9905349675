// The bad-input table of issue 6, point 2, for the parsers: every case with its expected
// error code and a fragment of its message. Connection-level cases (API key, sizes, binary
// frames, connection limit, overload, slow and vanishing clients) are in server_test.cpp.

#include <gtest/gtest.h>

#include "net/openai_codec.hpp"
#include "net/ws_protocol.hpp"

namespace kvserve::net {
namespace {

struct bad_case {
  const char* name;
  const char* body;
  const char* code;
  const char* message_fragment;
};

request_bounds small_bounds() {
  request_bounds b;
  b.max_model_len = 64;
  return b;
}

std::ostream& operator<<(std::ostream& os, const bad_case& c) { return os << c.name; }

class ws_bad_input : public ::testing::TestWithParam<bad_case> {};

TEST_P(ws_bad_input, is_rejected_with_its_code) {
  const bad_case& c = GetParam();
  std::string id;
  auto r = parse_ws_message(c.body, small_bounds(), 100, &id);
  ASSERT_FALSE(r.ok()) << c.body;
  EXPECT_EQ(r.error.code, c.code);
  EXPECT_NE(r.error.message.find(c.message_fragment), std::string::npos) << r.error.message;
}

INSTANTIATE_TEST_SUITE_P(
    table, ws_bad_input,
    ::testing::Values(
        bad_case{"malformed_json", R"({"type":"start",)", "invalid_json", "malformed"},
        bad_case{"not_an_object", R"([1,2])", "invalid_json", "object"},
        bad_case{"no_type", R"({"id":"a"})", "invalid_argument", "type"},
        bad_case{"unknown_type", R"({"type":"launch","id":"a"})", "unknown_type", "launch"},
        bad_case{"missing_id", R"({"type":"start","prompt":"hi"})", "invalid_argument", "'id'"},
        bad_case{"empty_id", R"({"type":"cancel","id":""})", "invalid_argument", "'id'"},
        bad_case{"no_prompt", R"({"type":"start","id":"a"})", "invalid_argument", "exactly one"},
        bad_case{"two_prompts", R"({"type":"start","id":"a","prompt":"x","messages":[]})",
                 "invalid_argument", "exactly one"},
        bad_case{"empty_prompt", R"({"type":"start","id":"a","prompt":""})", "invalid_argument",
                 "non-empty"},
        bad_case{"prompt_not_string", R"({"type":"start","id":"a","prompt":5})", "invalid_argument",
                 "string"},
        bad_case{"bad_role",
                 R"({"type":"start","id":"a","messages":[{"role":"bot","content":"x"}]})",
                 "invalid_argument", "role"},
        bad_case{"token_out_of_vocab", R"({"type":"start","id":"a","prompt_token_ids":[1,100]})",
                 "invalid_argument", "vocabulary"},
        bad_case{"negative_token", R"({"type":"start","id":"a","prompt_token_ids":[-1]})",
                 "invalid_argument", "vocabulary"},
        bad_case{
            "prompt_longer_than_max_model_len",
            R"({"type":"start","id":"a","prompt_token_ids":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]})",
            "invalid_argument", "max_model_len"},
        bad_case{"temperature_negative",
                 R"({"type":"start","id":"a","prompt":"x","temperature":-1})", "invalid_argument",
                 "temperature"},
        bad_case{"temperature_string",
                 R"({"type":"start","id":"a","prompt":"x","temperature":"hot"})",
                 "invalid_argument", "temperature"},
        bad_case{"top_p_zero", R"({"type":"start","id":"a","prompt":"x","top_p":0})",
                 "invalid_argument", "top_p"},
        bad_case{"top_p_above_one", R"({"type":"start","id":"a","prompt":"x","top_p":1.5})",
                 "invalid_argument", "top_p"},
        bad_case{"top_k_below", R"({"type":"start","id":"a","prompt":"x","top_k":-2})",
                 "invalid_argument", "top_k"},
        bad_case{"min_p_above", R"({"type":"start","id":"a","prompt":"x","min_p":2})",
                 "invalid_argument", "min_p"},
        bad_case{"presence_penalty",
                 R"({"type":"start","id":"a","prompt":"x","presence_penalty":3})",
                 "invalid_argument", "presence_penalty"},
        bad_case{"frequency_penalty",
                 R"({"type":"start","id":"a","prompt":"x","frequency_penalty":-3})",
                 "invalid_argument", "frequency_penalty"},
        bad_case{"repetition_penalty_zero",
                 R"({"type":"start","id":"a","prompt":"x","repetition_penalty":0})",
                 "invalid_argument", "repetition_penalty"},
        bad_case{"max_tokens_zero", R"({"type":"start","id":"a","prompt":"x","max_tokens":0})",
                 "invalid_argument", "max_tokens"},
        bad_case{"max_tokens_over_model_len",
                 R"({"type":"start","id":"a","prompt":"x","max_tokens":65})", "invalid_argument",
                 "max_tokens"},
        bad_case{"max_tokens_fraction",
                 R"({"type":"start","id":"a","prompt":"x","max_tokens":1.5})", "invalid_argument",
                 "integer"},
        bad_case{"min_tokens_over_max",
                 R"({"type":"start","id":"a","prompt":"x","max_tokens":4,"min_tokens":5})",
                 "invalid_argument", "min_tokens"},
        bad_case{"ignore_eos_not_bool",
                 R"({"type":"start","id":"a","prompt":"x","ignore_eos":"yes"})", "invalid_argument",
                 "ignore_eos"},
        bad_case{"n_two", R"({"type":"start","id":"a","prompt":"x","n":2})", "invalid_argument",
                 "'n'"},
        bad_case{"logprobs_too_many", R"({"type":"start","id":"a","prompt":"x","logprobs":21})",
                 "invalid_argument", "logprobs"},
        bad_case{"stop_empty_string", R"({"type":"start","id":"a","prompt":"x","stop":[""]})",
                 "invalid_argument", "stop"},
        bad_case{
            "stop_too_many",
            R"({"type":"start","id":"a","prompt":"x","stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]})",
            "invalid_argument", "stop"},
        bad_case{"stop_token_ids_bad",
                 R"({"type":"start","id":"a","prompt":"x","stop_token_ids":["x"]})",
                 "invalid_argument", "stop_token_ids"},
        bad_case{"cache_salt_empty", R"({"type":"start","id":"a","prompt":"x","cache_salt":""})",
                 "invalid_argument", "cache_salt"},
        bad_case{"retention_without_tokens",
                 R"({"type":"start","id":"a","prompt":"x","retention":{"priority":90}})",
                 "invalid_argument", "num_tokens"},
        bad_case{"retain_system_prompt_on_text",
                 R"({"type":"start","id":"a","prompt":"x","retain_system_prompt":{}})",
                 "invalid_argument", "messages"},
        bad_case{"timeout_zero", R"({"type":"start","id":"a","prompt":"x","timeout_ms":0})",
                 "invalid_argument", "timeout_ms"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ws_protocol, parses_a_full_start_message) {
  std::string id;
  auto r = parse_ws_message(
      R"({"type":"start","id":"s1","messages":[{"role":"system","content":"be brief"},
          {"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":0,"top_k":5,
          "top_p":0.9,"min_p":0.1,"seed":7,"max_tokens":12,"min_tokens":2,"ignore_eos":true,
          "stop":["\n\n"],"stop_token_ids":[3],"logprobs":2,"cache_salt":"tenant-a",
          "retention":{"num_tokens":8,"priority":90,"duration_ms":60000},"timeout_ms":5000})",
      small_bounds(), 100, &id);
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(id, "s1");
  const auto& start = std::get<ws_start>(*r.value);
  const generate_request& req = start.request;
  const auto& msgs = std::get<std::vector<chat_message>>(req.prompt);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[1].content, "hi");
  EXPECT_EQ(req.sampling.temperature, 0.0f);
  EXPECT_EQ(req.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(req.sampling.top_p, 0.9f);
  EXPECT_EQ(req.sampling.seed, 7u);
  EXPECT_TRUE(req.seed_set);
  EXPECT_EQ(req.max_tokens, 12);
  EXPECT_EQ(req.sampling.min_tokens, 2);
  EXPECT_TRUE(req.sampling.ignore_eos);
  EXPECT_EQ(req.stop, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(req.stop_token_ids, std::vector<std::int32_t>{3});
  EXPECT_EQ(req.sampling.logprobs, 2);
  EXPECT_EQ(req.cache_salt, "tenant-a");
  ASSERT_TRUE(req.retention.has_value());
  EXPECT_EQ(req.retention->num_tokens, 8);
  EXPECT_EQ(req.retention->priority, 90);
  EXPECT_EQ(req.retention->duration, std::chrono::milliseconds{60000});
  EXPECT_EQ(req.timeout, std::chrono::milliseconds{5000});
}

TEST(ws_protocol, cancel_and_ping) {
  auto c = parse_ws_message(R"({"type":"cancel","id":"x"})", small_bounds(), 100, nullptr);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(std::get<ws_cancel>(*c.value).id, "x");
  auto p = parse_ws_message(R"({"type":"ping"})", small_bounds(), 100, nullptr);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(std::holds_alternative<ws_ping>(*p.value));
}

TEST(ws_protocol, error_frames_carry_the_id_when_known) {
  std::string id;
  auto r = parse_ws_message(R"({"type":"start","id":"q","prompt":"x","top_p":7})", small_bounds(),
                            100, &id);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(id, "q");
  auto frame = nlohmann::json::parse(encode_ws_error(id, r.error));
  EXPECT_EQ(frame["type"], "error");
  EXPECT_EQ(frame["id"], "q");
  EXPECT_EQ(frame["code"], "invalid_argument");
}

class openai_bad_input : public ::testing::TestWithParam<std::tuple<bool, bad_case>> {};

TEST_P(openai_bad_input, is_rejected_with_its_code) {
  auto [chat, c] = GetParam();
  auto r =
      parse_openai_request(chat ? openai_endpoint::kChatCompletions : openai_endpoint::kCompletions,
                           c.body, small_bounds(), 100, "served");
  ASSERT_FALSE(r.ok()) << c.body;
  EXPECT_EQ(r.error.code, c.code);
  EXPECT_NE(r.error.message.find(c.message_fragment), std::string::npos) << r.error.message;
}

INSTANTIATE_TEST_SUITE_P(
    completions, openai_bad_input,
    ::testing::Combine(
        ::testing::Values(false),
        ::testing::Values(
            bad_case{"malformed", R"({"prompt": "x)", "invalid_json", "malformed"},
            bad_case{"no_prompt", R"({"max_tokens":3})", "invalid_argument", "prompt"},
            bad_case{"batched", R"({"prompt":["a","b"]})", "invalid_argument", "batched"},
            bad_case{"wrong_model", R"({"model":"gpt-9","prompt":"x"})", "model_not_found",
                     "gpt-9"},
            bad_case{"suffix", R"({"prompt":"x","suffix":"y"})", "invalid_argument", "suffix"},
            bad_case{"logprobs_bool", R"({"prompt":"x","logprobs":true})", "invalid_argument",
                     "logprobs"},
            bad_case{"echo_logprobs_stream",
                     R"({"prompt":"x","echo":true,"logprobs":1,"stream":true})", "invalid_argument",
                     "echo"},
            bad_case{"stream_options_not_object", R"({"prompt":"x","stream_options":1})",
                     "invalid_argument", "stream_options"},
            bad_case{"top_k_string", R"({"prompt":"x","top_k":"5"})", "invalid_argument",
                     "top_k"})),
    [](const auto& info) { return std::string(std::get<1>(info.param).name); });

INSTANTIATE_TEST_SUITE_P(
    chat, openai_bad_input,
    ::testing::Combine(
        ::testing::Values(true),
        ::testing::Values(
            bad_case{"no_messages", R"({"model":"served"})", "invalid_argument", "messages"},
            bad_case{"empty_messages", R"({"messages":[]})", "invalid_argument", "messages"},
            bad_case{"image_part",
                     R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
                     "invalid_argument", "text"},
            bad_case{"top_logprobs_without_logprobs",
                     R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})",
                     "invalid_argument", "top_logprobs"},
            bad_case{"max_completion_tokens_zero",
                     R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":0})",
                     "invalid_argument", "max_completion_tokens"})),
    [](const auto& info) { return std::string(std::get<1>(info.param).name); });

}  // namespace
}  // namespace kvserve::net
