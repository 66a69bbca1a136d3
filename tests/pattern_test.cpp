#include <doctest/doctest.h>

#include "tdhook/pattern.hpp"

using tdhook::EventPattern;
using tdhook::PatternSet;

namespace {
bool match(const char* pattern, const char* event) {
  auto p = EventPattern::parse(pattern);
  REQUIRE_MESSAGE(p.ok(), pattern);
  return p->matches(event);
}
}  // namespace

TEST_SUITE("pattern") {
  TEST_CASE("an exact name matches only itself") {
    CHECK(match("lead.create", "lead.create"));
    CHECK_FALSE(match("lead.create", "lead.created"));
    CHECK_FALSE(match("lead.create", "lead"));
    CHECK_FALSE(match("lead.create", "lead.create.x"));
  }

  TEST_CASE("* matches exactly one segment") {
    CHECK(match("request.*", "request.create"));
    CHECK(match("request.*", "request.close"));
    CHECK_FALSE(match("request.*", "request"));
    CHECK_FALSE(match("request.*", "request.create.simple"));
    CHECK(match("*.create", "faq.create"));
    CHECK_FALSE(match("*.create", "faq.update"));
    CHECK_FALSE(match("request.*", "request."));
  }

  TEST_CASE("a final ** matches all the remaining segments, at least one") {
    CHECK(match("message.create.**", "message.create.channel.whatsapp"));
    CHECK(match("message.create.**", "message.create.request.channel.chat21"));
    CHECK_FALSE(match("message.create.**", "message.create"));
    CHECK(match("**", "lead.create"));
    CHECK(match("**", "operator.select"));
    CHECK(match("event.emit.**", "event.emit.typing.start"));
  }

  TEST_CASE("malformed patterns are configuration errors") {
    for (const char* bad :
         {"", ".", "a..b", ".a", "a.", "**.a", "a.**.b", "re*", "*x.y", "a.b**"}) {
      CAPTURE(bad);
      auto p = EventPattern::parse(bad);
      REQUIRE_FALSE(p.ok());
      CHECK(p.error().code == tdhook::ErrorCode::invalid_config);
    }
  }

  TEST_CASE("a comma-separated set matches when any pattern does, and an empty set matches all") {
    auto set = PatternSet::parse("lead.create, request.*,message.create.**");
    REQUIRE(set.ok());
    CHECK(set->patterns().size() == 3);
    CHECK(set->matches("lead.create"));
    CHECK(set->matches("request.update"));
    CHECK(set->matches("message.create.channel.telegram"));
    CHECK_FALSE(set->matches("message.create"));
    CHECK_FALSE(set->matches("faq.create"));
    auto all = PatternSet::parse("");
    REQUIRE(all.ok());
    CHECK(all->empty());
    CHECK(all->matches("anything.at.all"));
    CHECK_FALSE(PatternSet::parse("lead.create,,faq.*").ok());
    CHECK_FALSE(PatternSet::parse("lead.create,re*").ok());
  }
}
