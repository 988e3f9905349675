#include "model/chat_template.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace kvserve {
namespace {

// Conversations rendered by the real Jinja templates (scripts/make_chat_template_fixtures.py).
TEST(ChatTemplate, MatchesJinjaRendering) {
  std::ifstream in(std::string(KVSERVE_TEST_DATA_DIR) + "/chat_templates.json");
  ASSERT_TRUE(in) << "missing tests/data/chat_templates.json";
  const nlohmann::json data = nlohmann::json::parse(in);
  ASSERT_EQ(data.size(), 3u);
  for (const auto& t : data) {
    auto tmpl =
        chat_template::from_jinja(t.at("template").get<std::string>(),
                                  t.at("bos").get<std::string>(), t.at("eos").get<std::string>());
    ASSERT_TRUE(tmpl) << tmpl.error().message();
    EXPECT_STREQ(to_string(tmpl->family()), t.at("family").get<std::string>().c_str());
    for (const auto& c : t.at("cases")) {
      std::vector<chat_message> messages;
      for (const auto& m : c.at("messages")) {
        messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
      }
      EXPECT_EQ(tmpl->apply(messages, c.at("add_generation_prompt").get<bool>()),
                c.at("expected").get<std::string>())
          << t.at("family") << " " << c.at("messages").dump();
    }
  }
}

TEST(ChatTemplate, SmolLm2DefaultSystemPromptIsDetected) {
  auto t = chat_template::from_jinja(
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
      "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->default_system().has_value());
  EXPECT_EQ(*t->default_system(), "Be brief.");
  EXPECT_EQ(t->apply({{"user", "x"}}, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nx<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, PlainChatMlHasNoDefaultSystem) {
  auto t = chat_template::from_jinja(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->default_system().has_value());
  EXPECT_EQ(t->apply({{"user", "x"}}, false), "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplate, EmptyTemplateFallsBackToChatMlAndUnknownIsUnsupported) {
  auto empty = chat_template::from_jinja("");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->family(), chat_template_family::kChatMl);
  auto unknown = chat_template::from_jinja("{{ messages[0]['content'] }}");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), status_code::kUnsupported);
}

}  // namespace
}  // namespace kvserve
