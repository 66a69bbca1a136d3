#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "tdhook/event.hpp"
#include "tdhook/models.hpp"

using tdhook::ErrorCode;
using tdhook::RequestStatus;
using tdhook::test::read_file;

namespace {

const std::string kProject = "65533a0cb7e1c3d9503a10f1";
const std::string kRequestId =
    "support-group-65533a0cb7e1c3d9503a10f1-0d4c3b2a9f8e4d7c8b6a5f4e3d2c1b0a";
const std::string kMarco = "655b7ed3b7e1c3d9503a10f3";   // the agent's user id
const std::string kGiulia = "6553396ab7e1c3d9503a10f2";  // the owner's user id
const std::string kGuest = "0d4c3b2a-9f8e-4d7c-8b6a-5f4e3d2c1b0a";

std::filesystem::path sample_path(const std::string& name) {
  return std::filesystem::path(TDHOOK_SOURCE_DIR) / "samples/events" / (name + ".json");
}

tdhook::Event sample(const std::string& name) {
  auto event = tdhook::Event::parse(read_file(sample_path(name)));
  REQUIRE_MESSAGE(event.ok(), name);
  CHECK(event->name() == name);
  return std::move(event).value();
}

std::string sample_payload(const std::string& name) {
  return nlohmann::json::parse(read_file(sample_path(name)))["payload"].dump();
}

}  // namespace

TEST_SUITE("models") {
  TEST_CASE("lead.create gives the lead's e-mail, name and widget attributes") {
    auto lead = sample("lead.create").lead();
    REQUIRE(lead.ok());
    CHECK(lead->id == "65c0eed3a4c2e91b7d3a10fb");
    CHECK(lead->email.value_or("") == "ada.lovelace@example.org");
    CHECK(lead->fullname == "Ada Lovelace");
    CHECK(lead->lead_id == kGuest);
    CHECK(lead->status == 100);
    CHECK(lead->id_project == kProject);
    CHECK(lead->created_at == "2024-02-05T14:21:07.433Z");
    CHECK(lead->version == 0);
    CHECK(lead->tags.empty());
    CHECK_FALSE(lead->phone.has_value());
    auto attributes = nlohmann::json::parse(lead->attributes);
    CHECK(attributes["departmentName"] == "Default Department");
    CHECK(nlohmann::json::parse(lead->json)["lead_id"] == kGuest);
  }

  TEST_CASE(
      "request.create gives the status, first text and the populated lead, requester and "
      "department") {
    auto request = sample("request.create").request();
    REQUIRE(request.ok());
    CHECK(request->id == "65c0eed3a4c2e91b7d3a10fc");
    CHECK(request->request_id == kRequestId);
    CHECK(request->status == RequestStatus::assigned);
    CHECK(request->status_code == 200);
    CHECK(request->first_text ==
          "Hi, my order #100245 still shows 'processing' after 6 days. Can you check?");
    CHECK(request->ticket_id == 1042);
    CHECK(request->has_bot == true);
    CHECK(request->channel == "chat21");
    CHECK(request->channel_outbound == "chat21");
    CHECK(request->participants == std::vector<std::string>{"bot_6554a54db7e1c3d9503a10f7"});
    CHECK(request->requester_id == "65c0eed3a4c2e91b7d3a10fb");

    const auto* lead = tdhook::ref_object(request->lead);
    REQUIRE(lead != nullptr);
    CHECK(lead->email == "ada.lovelace@example.org");
    CHECK(lead->fullname == "Ada Lovelace");
    CHECK(tdhook::ref_id(request->lead) == "65c0eed3a4c2e91b7d3a10fb");

    const auto* department = tdhook::ref_object(request->department);
    REQUIRE(department != nullptr);
    CHECK(department->name == "Default Department");
    CHECK(department->routing == "assigned");
    CHECK(department->has_bot == true);
    CHECK(department->id_bot == "6554a54db7e1c3d9503a10f7");

    const auto* requester = tdhook::ref_object(request->requester);
    REQUIRE(requester != nullptr);
    CHECK(requester->role == "guest");
    CHECK(requester->role_type == 2);
    CHECK(requester->uuid_user == kGuest);
    CHECK_FALSE(requester->id_user.has_value());

    REQUIRE(request->participating_bots.size() == 1);
    CHECK(request->participating_bots[0].name == "Acme Support Bot");
    CHECK(request->participating_bots[0].type == "tilebot");
    CHECK(request->participating_agents.empty());
    CHECK(nlohmann::json::parse(request->snapshot)["availableAgentsCount"] == 1);
  }

  TEST_CASE("request.update gives the joined agent, the response times and the geo location") {
    auto request = sample("request.update").request();
    REQUIRE(request.ok());
    CHECK(request->status == RequestStatus::assigned);
    CHECK(request->working_status == "open");
    CHECK(request->waiting_time == 153449);
    CHECK(request->first_response_at == "2024-02-05T14:23:40.961Z");
    CHECK(request->participants == std::vector<std::string>{kMarco});
    CHECK(request->participants_agents == std::vector<std::string>{kMarco});
    REQUIRE(request->participating_agents.size() == 1);
    CHECK(request->participating_agents[0].firstname == "Marco");
    CHECK(request->participating_agents[0].email == "marco.rossi@acme-shop.example");
    CHECK(nlohmann::json::parse(request->location)["city"] == "Milan");
    CHECK(tdhook::ref_object(request->lead)->email == "ada.lovelace@example.org");
  }

  TEST_CASE("an unpopulated request.update gives lead, department and requester as bare ids") {
    auto payload = nlohmann::json::parse(sample_payload("request.update"));
    payload["lead"] = "65c0eed3a4c2e91b7d3a10fb";
    payload["department"] = "65533a0cb7e1c3d9503a10f6";
    payload["requester"] = "65c0eeb9a4c2e91b7d3a10fa";
    payload.erase("participatingAgents");
    payload.erase("participatingBots");
    payload.erase("id");
    payload.erase("requester_id");
    auto request = tdhook::parse_request(payload.dump());
    REQUIRE(request.ok());
    CHECK(tdhook::ref_object(request->lead) == nullptr);
    CHECK(tdhook::ref_id(request->lead) == "65c0eed3a4c2e91b7d3a10fb");
    CHECK(tdhook::ref_id(request->department) == "65533a0cb7e1c3d9503a10f6");
    CHECK(tdhook::ref_id(request->requester) == "65c0eeb9a4c2e91b7d3a10fa");
    CHECK(std::holds_alternative<std::string>(*request->department));
    CHECK_FALSE(request->requester_id.has_value());
    CHECK(request->participating_agents.empty());
    CHECK(request->status == RequestStatus::assigned);
  }

  TEST_CASE("message.create gives the text, the sender and the attached lean request") {
    auto message = sample("message.create").message();
    REQUIRE(message.ok());
    CHECK(message->id == "65c0ef8ca4c2e91b7d3a1103");
    CHECK(message->sender == kMarco);
    CHECK(message->sender_fullname == "Marco Rossi");
    CHECK(message->recipient == kRequestId);
    CHECK(message->text.value_or("").starts_with("Hi Ada, I'm Marco."));
    CHECK(message->type == "text");
    CHECK(message->channel_type == "group");
    CHECK(message->status == 200);
    CHECK(message->channel == "chat21");
    CHECK(message->metadata.empty());

    REQUIRE(message->request.has_value());
    const auto& request = *message->request;
    CHECK(request.id == "65c0eed3a4c2e91b7d3a10fc");
    CHECK(request.request_id == message->recipient);
    CHECK_FALSE(request.requester_id.has_value());  // lean: no virtuals
    CHECK(tdhook::ref_object(request.lead)->email == "ada.lovelace@example.org");
    const auto* department = tdhook::ref_object(request.department);
    REQUIRE(department != nullptr);
    REQUIRE(department->bot.has_value());
    CHECK(department->bot->name == "Acme Support Bot");
    CHECK_FALSE(department->has_bot.has_value());
  }

  TEST_CASE("request.close gives the closed request and its eight messages in order") {
    auto close = sample("request.close").request_close();
    REQUIRE(close.ok());
    CHECK(close->status == RequestStatus::closed);
    CHECK(close->status_code == 1000);
    CHECK(close->closed_by == kMarco);
    CHECK(close->closed_at == "2024-02-05T14:31:02.871Z");
    CHECK(close->duration == 595359);
    CHECK(close->transcript.value_or("").find("\r\n") != std::string::npos);
    REQUIRE(close->messages.size() == 8);
    const std::vector<std::string> senders = {
        kGuest, "bot_6554a54db7e1c3d9503a10f7", kGuest, "system", kMarco, kMarco, kGuest, "system"};
    for (std::size_t i = 0; i < senders.size(); ++i) {
      CAPTURE(i);
      CHECK(close->messages[i].sender == senders[i]);
      CHECK(close->messages[i].recipient == kRequestId);
      CHECK_FALSE(close->messages[i].request.has_value());
    }
    CHECK(close->messages[0].text == close->first_text);
    CHECK(close->messages[2].text == "agent");
    CHECK(close->messages[3].text == "Marco Rossi joined the group");
    CHECK(nlohmann::json::parse(close->messages[3].attributes)["subtype"] == "info");
    CHECK(close->messages[5].type == "image");
    CHECK(nlohmann::json::parse(close->messages[5].metadata)["name"] == "label-100245.png");
    CHECK(close->messages[6].text == "Great, thank you!");
    CHECK(close->messages[7].text == "Chat closed");

    SUBCASE("the same payload read as a plain request") {
      auto request = sample("request.close").request();
      REQUIRE(request.ok());
      CHECK(request->status == RequestStatus::closed);
    }
  }

  TEST_CASE("operator.select gives Tiledesk's operators, the agents, the department and group") {
    auto routing = sample("operator.select").operator_select();
    REQUIRE(routing.ok());
    REQUIRE(routing->operators.size() == 1);
    CHECK(routing->operators[0].id_user == kMarco);
    CHECK(routing->operators[0].json == R"({"id_user":")" + kMarco + R"("})");
    REQUIRE(routing->agents.size() == 2);
    CHECK(tdhook::ref_id(routing->agents[1].id_user) == kGiulia);
    CHECK(routing->agents[1].role == "owner");
    REQUIRE(routing->available_agents.size() == 1);
    CHECK(routing->available_agents[0].user_available == true);
    CHECK(routing->department.name == "Sales");
    CHECK(routing->department.routing == "assigned");
    REQUIRE(routing->group.size() == 1);
    CHECK(routing->group[0].name == "Sales team");
    CHECK(routing->group[0].members == std::vector<std::string>{kMarco, kGiulia});
    CHECK(routing->id_project == kProject);
    REQUIRE(routing->project.has_value());
    CHECK(routing->project->name == "Acme Shop");
    CHECK(routing->project->is_active_subscription == true);
    CHECK(routing->project->trial_days_left == -54);
    CHECK(routing->project->channels == std::vector<std::string>{"chat21"});
    CHECK(nlohmann::json::parse(routing->project->profile)["type"] == "payment");
    auto context = nlohmann::json::parse(routing->context);
    CHECK(context["request"]["departmentid"] == routing->department.id);
  }

  TEST_CASE("the operator.select response sample reads back with the owner as operator") {
    auto payload = read_file(sample_path("operator.select.response"));
    auto routing = tdhook::parse_operator_select(payload);
    REQUIRE(routing.ok());
    REQUIRE(routing->operators.size() == 1);
    CHECK(routing->operators[0].id_user == kGiulia);
    CHECK(routing->department.name == "Sales");
  }

  TEST_CASE("an operator that is a whole project_user object still gives its id_user") {
    auto payload = nlohmann::json::parse(sample_payload("operator.select"));
    auto populated = payload["agents"][0];
    populated["id_user"] = {{"_id", kMarco}, {"firstname", "Marco"}};
    payload["operators"] = {payload["agents"][1], populated, nlohmann::json::object()};
    auto routing = tdhook::parse_operator_select(payload.dump());
    REQUIRE(routing.ok());
    REQUIRE(routing->operators.size() == 3);
    CHECK(routing->operators[0].id_user == kGiulia);
    CHECK(routing->operators[1].id_user == kMarco);
    CHECK_FALSE(routing->operators[2].id_user.has_value());
    CHECK(nlohmann::json::parse(routing->operators[0].json)["role"] == "owner");
  }

  TEST_CASE("project_user.update gives the role, the availability and the populated user") {
    auto member = sample("project_user.update").project_user();
    REQUIRE(member.ok());
    CHECK(member->id == "655b7f77b7e1c3d9503a10f5");
    CHECK(member->role == "agent");
    CHECK(member->role_type == 1);
    CHECK(member->user_available == false);
    CHECK(member->is_busy == false);
    CHECK(member->profile_status == "inactive");
    CHECK(member->max_assigned_chat == -1);
    CHECK(member->number_assigned_requests == 2);
    REQUIRE(member->presence.has_value());
    CHECK(member->presence->status == "online");
    CHECK(tdhook::ref_id(member->id_user) == kMarco);
    const auto* user = tdhook::ref_object(member->id_user);
    REQUIRE(user != nullptr);
    CHECK(user->firstname == "Marco");
    CHECK(user->lastname == "Rossi");
    CHECK_FALSE(user->email.has_value());
  }

  TEST_CASE("department.create gives the name, the routing and the group") {
    auto department = sample("department.create").department();
    REQUIRE(department.ok());
    CHECK(department->id == "65c1fe7cb7e1c3d9503a10f9");
    CHECK(department->name == "Sales");
    CHECK(department->routing == "assigned");
    CHECK(department->description == "Pre-sales questions and quotes");
    CHECK(department->id_group == "6569b5a8b7e1c3d9503a10f8");
    CHECK(department->is_default == false);
    CHECK(department->status == 1);
    CHECK(department->has_bot == false);
    CHECK(department->groups == "[]");
    CHECK_FALSE(department->bot.has_value());
  }

  TEST_CASE("faq.create, faq.update and faq.delete give the intent's fields") {
    SUBCASE("create") {
      auto faq = sample("faq.create").faq();
      REQUIRE(faq.ok());
      CHECK(faq->id_faq_kb == "6554a54db7e1c3d9503a10f7");
      CHECK(faq->intent_display_name == "shipping_times");
      CHECK(faq->intent_id == "3f6b2c1e-5a7d-4e9b-8c0f-2d1e4a6b9c7d");
      CHECK(faq->question == "How long does shipping take?");
      CHECK(faq->enabled);
      CHECK_FALSE(faq->webhook_enabled);
      CHECK(faq->agents_available == false);
      CHECK(faq->topic == "default");
      CHECK(faq->status == "live");
      auto actions = nlohmann::json::parse(faq->actions);
      CHECK(actions[0]["_tdActionType"] == "reply");
    }
    SUBCASE("update") {
      auto faq = sample("faq.update").faq();
      REQUIRE(faq.ok());
      CHECK(faq->question.value_or("").find("\nWhen will my order arrive?") != std::string::npos);
      CHECK_FALSE(faq->agents_available.has_value());
    }
    SUBCASE("delete carries the last state") {
      auto faq = sample("faq.delete").faq();
      REQUIRE(faq.ok());
      CHECK(faq->intent_display_name == "shipping_times");
      CHECK(faq->updated_at == "2024-02-07T11:02:10.731Z");
    }
  }

  TEST_CASE("event.emit gives the custom event's name, attributes, member and caller") {
    auto event = sample("event.emit").custom_event();
    REQUIRE(event.ok());
    CHECK(event->name == "order.refund_requested");
    CHECK(event->status == "stardard");
    auto attributes = nlohmann::json::parse(event->attributes);
    CHECK(attributes["order_id"] == "100245");
    CHECK(attributes["amount"] == 59.9);
    REQUIRE(event->project_user.has_value());
    CHECK(event->project_user->role == "owner");
    const auto* user = tdhook::ref_object(event->project_user->id_user);
    REQUIRE(user != nullptr);
    CHECK(user->email == "giulia.bianchi@acme-shop.example");
    CHECK(nlohmann::json::parse(event->user)["_id"] == kGiulia);
  }

  TEST_CASE("event.emit.typing.start gives the typing attributes of a guest without caller") {
    auto event = sample("event.emit.typing.start").custom_event();
    REQUIRE(event.ok());
    CHECK(event->name == "typing.start");
    auto attributes = nlohmann::json::parse(event->attributes);
    CHECK(attributes["recipient_id"] == kRequestId);
    CHECK(attributes["writer_id"] == kGuest);
    CHECK(attributes["data"]["typing"] == true);
    REQUIRE(event->project_user.has_value());
    CHECK(event->project_user->role == "guest");
    CHECK(event->user.empty());
  }
}

TEST_SUITE("models") {
  TEST_CASE("the per-channel message events carry the same message and request") {
    for (const char* name :
         {"message.create.channel.chat21", "message.create.request.channel.chat21"}) {
      CAPTURE(name);
      auto message = sample(name).message();
      REQUIRE(message.ok());
      CHECK(message->sender == kMarco);
      CHECK(message->channel == "chat21");
      REQUIRE(message->request.has_value());
      CHECK(message->request->request_id == kRequestId);
    }
  }

  TEST_CASE("project_user.invite and delete give the invited member with a populated e-mail") {
    auto invite = sample("project_user.invite").project_user();
    REQUIRE(invite.ok());
    const auto* user = tdhook::ref_object(invite->id_user);
    REQUIRE(user != nullptr);
    CHECK(user->email == "giulia.bianchi@acme-shop.example");
    CHECK(invite->is_busy == false);
    auto removed = sample("project_user.delete").project_user();
    REQUIRE(removed.ok());
    CHECK(removed->status == "disabled");
    CHECK(removed->trashed == true);
    auto agent = sample("project_user.update.agent").project_user();
    REQUIRE(agent.ok());
    CHECK(agent->profile_status == "");
    CHECK(agent->user_available == true);
    CHECK(tdhook::ref_id(agent->id_user) == kMarco);
  }

  TEST_CASE("faqbot events give the bot, and its secret only through json") {
    auto bot = sample("faqbot.create").faq_kb();
    REQUIRE(bot.ok());
    CHECK(bot->name == "Returns Assistant");
    CHECK(bot->type == "tilebot");
    CHECK(bot->trained == false);
    CHECK(nlohmann::json::parse(bot->json).contains("secret"));
    auto deleted = sample("faqbot.delete").faq_kb();
    REQUIRE(deleted.ok());
    CHECK(deleted->trashed == true);
    CHECK(deleted->trashed_at == "2024-03-01T16:45:02.117Z");
  }

  TEST_CASE("group, department and project change events give their documents") {
    auto group = sample("group.create").group();
    REQUIRE(group.ok());
    CHECK(group->name == "Sales team");
    CHECK(group->members == std::vector<std::string>{kMarco});
    CHECK(sample("group.delete").group()->trashed == true);
    auto department = sample("department.update").department();
    REQUIRE(department.ok());
    CHECK(department->routing == "pooled");
    CHECK(department->online_msg == "A sales specialist will be with you shortly.");
    CHECK(sample("department.delete").department()->status == -1);
    auto project = sample("project.create").project();
    REQUIRE(project.ok());
    CHECK(project->name == "Acme Shop Support");
    CHECK(project->id_project == kProject);
    CHECK(project->is_active_subscription == false);
    CHECK(nlohmann::json::parse(project->profile)["type"] == "free");
    auto downgraded = sample("project.downgrade").project();
    REQUIRE(downgraded.ok());
    CHECK(downgraded->trial_expired == true);
    CHECK(downgraded->trial_days_left == -65);
    CHECK(sample("project.delete").project()->status == 0);
  }

  TEST_CASE("user.signup gives the user, and the password hash only through json") {
    auto user = sample("user.signup").user();
    REQUIRE(user.ok());
    CHECK(user->email == "luca.verdi@example.org");
    CHECK(user->firstname == "Luca");
    CHECK(user->emailverified == false);
    CHECK(nlohmann::json::parse(user->json).contains("password"));
  }
}
