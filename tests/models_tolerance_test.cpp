// The typed models on payloads that are not the samples: misfits give payload_mismatch with the
// field named, and the variations Tiledesk really sends (§9) are read, not rejected.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "tdhook/event.hpp"
#include "tdhook/models.hpp"

using tdhook::ErrorCode;
using tdhook::test::read_file;

namespace {

nlohmann::json payload_of(const std::string& name) {
  auto path = std::filesystem::path(TDHOOK_SOURCE_DIR) / "samples/events" / (name + ".json");
  return nlohmann::json::parse(read_file(path))["payload"];
}

template <class T>
std::string mismatch_detail(const tdhook::Result<T>& result) {
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ErrorCode::payload_mismatch);
  return result.error().detail;
}

// Reads an event's payload with the model its name calls for.
std::string model_error(const tdhook::Event& e) {
  const std::string& n = e.name();
  auto err = [](const auto& r) { return r.ok() ? std::string() : r.error().detail; };
  if (n == "request.close") return err(e.request_close());
  if (n.starts_with("request.")) return err(e.request());
  if (n.starts_with("message.")) return err(e.message());
  if (n.starts_with("lead.")) return err(e.lead());
  if (n.starts_with("faq.")) return err(e.faq());
  if (n.starts_with("project_user.")) return err(e.project_user());
  if (n.starts_with("department.")) return err(e.department());
  if (n.starts_with("event.emit")) return err(e.custom_event());
  if (n == "operator.select") return err(e.operator_select());
  if (n.starts_with("faqbot.")) return err(e.faq_kb());
  if (n.starts_with("group.")) return err(e.group());
  if (n.starts_with("project.")) return err(e.project());
  if (n == "user.signup") return err(e.user());
  return "no model for " + n;
}

}  // namespace

TEST_SUITE("models") {
  TEST_CASE("every sample event parses into the model its event name calls for") {
    int count = 0;
    for (const auto& entry : std::filesystem::directory_iterator(
             std::filesystem::path(TDHOOK_SOURCE_DIR) / "samples/events")) {
      auto body = read_file(entry.path());
      if (!nlohmann::json::parse(body).contains("hook")) continue;  // the reply sample
      auto event = tdhook::Event::parse(body);
      REQUIRE_MESSAGE(event.ok(), entry.path().string());
      CAPTURE(event->name());
      CHECK(model_error(*event) == "");
      ++count;
    }
    CHECK(count >= 31);
  }

  TEST_CASE("a payload that is not an object is a payload_mismatch") {
    CHECK(mismatch_detail(tdhook::parse_lead("[1,2]")) == "lead: expected an object, got array");
    CHECK(mismatch_detail(tdhook::parse_request("null")) ==
          "request: expected an object, got null");
    CHECK(mismatch_detail(tdhook::parse_message("\"text\"")) ==
          "message: expected an object, got string");
  }

  TEST_CASE("a payload of another model is a payload_mismatch naming the missing field") {
    auto event = tdhook::Event::parse(
        read_file(std::filesystem::path(TDHOOK_SOURCE_DIR) / "samples/events/lead.create.json"));
    REQUIRE(event.ok());
    CHECK(mismatch_detail(event->request()) == "request.request_id: required field is missing");
    CHECK(mismatch_detail(event->operator_select()) ==
          "operator_select.operators: required field is missing");
    CHECK(mismatch_detail(event->message()) == "message.sender: required field is missing");
  }

  TEST_CASE("a required field that is missing, null or of the wrong type is named in the error") {
    auto payload = payload_of("request.create");
    SUBCASE("missing") {
      payload.erase("first_text");
      CHECK(mismatch_detail(tdhook::parse_request(payload.dump())) ==
            "request.first_text: required field is missing");
    }
    SUBCASE("null") {
      payload["status"] = nullptr;
      CHECK(mismatch_detail(tdhook::parse_request(payload.dump())) ==
            "request.status: required field is missing");
    }
    SUBCASE("wrong type") {
      payload["status"] = "200";
      CHECK(mismatch_detail(tdhook::parse_request(payload.dump())) ==
            "request.status: expected an integer, got string");
    }
    SUBCASE("wrong type deep inside a populated reference") {
      payload["lead"]["email"] = 42;
      CHECK(mismatch_detail(tdhook::parse_request(payload.dump())) ==
            "request.lead.email: expected a string, got number");
    }
    SUBCASE("a reference that is neither an id nor an object") {
      payload["department"] = true;
      CHECK(mismatch_detail(tdhook::parse_request(payload.dump())) ==
            "request.department: expected an object or an id string, got boolean");
    }
    SUBCASE("an element of a list") {
      payload["participatingBots"][0].erase("name");
      CHECK(mismatch_detail(tdhook::parse_request(payload.dump())) ==
            "request.participatingBots[0].name: required field is missing");
    }
  }

  TEST_CASE("request.close without its messages is a payload_mismatch") {
    auto payload = payload_of("request.close");
    payload.erase("messages");
    CHECK(mismatch_detail(tdhook::parse_request_close(payload.dump())) ==
          "request.messages: required field is missing");
    payload["messages"] = {{{"_id", "x"}, {"recipient", "r"}}};
    CHECK(mismatch_detail(tdhook::parse_request_close(payload.dump())) ==
          "request.messages[0].sender: required field is missing");
  }

  TEST_CASE("invalid JSON and a payload nested 100000 levels deep end in a clean error") {
    CHECK(mismatch_detail(tdhook::parse_lead("{\"_id\":")).starts_with("lead: not valid JSON: "));
    CHECK(mismatch_detail(tdhook::parse_lead("")).starts_with("lead: not valid JSON: "));
    std::string deep = "{\"_id\":\"x\",\"attributes\":" + std::string(100000, '[') +
                       std::string(100000, ']') + "}";
    auto detail = mismatch_detail(tdhook::parse_lead(deep));
    CHECK(detail.starts_with("lead: not valid JSON: "));
    CHECK(detail.find("deep") != std::string::npos);
    // The thread's parser is still usable afterwards.
    CHECK(tdhook::parse_lead(R"({"_id":"x"})").ok());
  }

  TEST_CASE("unknown fields stay reachable through json") {
    auto payload = payload_of("lead.create");
    payload["crm_score"] = 7;
    payload["attributes"]["vip"] = true;
    auto lead = tdhook::parse_lead(payload.dump());
    REQUIRE(lead.ok());
    auto json = nlohmann::json::parse(lead->json);
    CHECK(json["crm_score"] == 7);
    CHECK(json == payload);
    CHECK(nlohmann::json::parse(lead->attributes)["vip"] == true);
  }

  TEST_CASE("explicit nulls, missing virtuals and schema defaults are tolerated") {
    auto lead = tdhook::parse_lead(R"({"_id":"l1","email":null,"fullname":null,"tags":null,
                                        "attributes":null})");
    REQUIRE(lead.ok());
    CHECK_FALSE(lead->email.has_value());
    CHECK(lead->tags.empty());
    CHECK(lead->attributes == "null");
    CHECK(lead->properties.empty());

    auto message = tdhook::parse_message(R"({"_id":"m1","sender":"s","recipient":"r"})");
    REQUIRE(message.ok());
    CHECK(message->type == "text");
    CHECK(message->channel_type == "group");
    CHECK(message->status == 200);
    CHECK_FALSE(message->request.has_value());

    auto request =
        tdhook::parse_request(R"({"_id":"r1","request_id":"q","status":42,"first_text":"hi"})");
    REQUIRE(request.ok());
    CHECK(request->status == tdhook::RequestStatus::unknown);
    CHECK(request->status_code == 42);
    CHECK_FALSE(request->lead.has_value());
    CHECK(tdhook::ref_id(request->lead).empty());
    CHECK(tdhook::ref_object(request->department) == nullptr);
  }

  TEST_CASE("isActiveSubscription sent as an empty string reads as not active") {
    auto project = payload_of("operator.select")["project"];
    project["isActiveSubscription"] = "";
    auto parsed = tdhook::parse_project(project.dump());
    REQUIRE(parsed.ok());
    CHECK(parsed->is_active_subscription == false);
    project["isActiveSubscription"] = "yes";
    CHECK(mismatch_detail(tdhook::parse_project(project.dump())) ==
          "project.isActiveSubscription: expected a boolean, got string");
  }

  TEST_CASE("integral numbers written as doubles are read as integers") {
    auto lead = tdhook::parse_lead(R"({"_id":"l1","status":100.0,"__v":0})");
    REQUIRE(lead.ok());
    CHECK(lead->status == 100);
    CHECK(mismatch_detail(tdhook::parse_lead(R"({"_id":"l1","status":1.5})")) ==
          "lead.status: expected an integer, got number");
  }

  TEST_CASE("users and groups parse on their own") {
    auto user = tdhook::parse_user(R"({"_id":"u1","email":"a@b.c","password":"$2a$10$x"})");
    REQUIRE(user.ok());
    CHECK(user->email == "a@b.c");
    auto group = tdhook::parse_group(payload_of("operator.select")["group"][0].dump());
    REQUIRE(group.ok());
    CHECK(group->name == "Sales team");
    CHECK(group->enabled == true);
    auto bot = tdhook::parse_faq_kb(payload_of("request.create")["participatingBots"][0].dump());
    REQUIRE(bot.ok());
    CHECK(bot->slug == "acme-support-bot");
    CHECK(bot->score == 0.0);
  }
}
