// Every bundled sample, signed as Tiledesk signs it, verifies and reads into its typed model.
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "tdhook/tdhook.hpp"

namespace {

const std::string kSecret = "7a3c1f0e-2b4d-4e6f-8a9b-0c1d2e3f4a5b";
const std::int64_t kNow = 1764150000000;

tdhook::Event sign_and_verify(const std::filesystem::path& file) {
  auto sample = nlohmann::ordered_json::parse(tdhook::test::read_file(file));
  std::string payload = sample["payload"].dump(), hook = sample["hook"].dump();
  tdhook::NotificationInput in{payload, hook, kNow - 1500, false};
  auto body = tdhook::build_notification(in, tdhook::SigningKey{tdhook::Algorithm::hs256, kSecret});
  REQUIRE_MESSAGE(body.ok(), body.error().detail);
  tdhook::VerifierOptions o;
  o.secrets = {kSecret};
  o.clock = [] { return kNow; };
  auto verifier = tdhook::Verifier::create(o);
  REQUIRE(verifier.ok());
  auto event = verifier->verify(std::optional<std::string_view>(kSecret), *body);
  REQUIRE_MESSAGE(event.ok(), event.error().detail);
  CHECK(event->name() == sample["hook"]["event"].get<std::string>());
  return std::move(event).value();
}

// The typed model each event's payload reads into; false when the event has none.
bool reads_typed(const tdhook::Event& e) {
  const std::string& n = e.name();
  auto starts = [&](const char* p) { return n.rfind(p, 0) == 0; };
  auto ok = [](const auto& r) {
    if (!r.ok()) FAIL_CHECK(r.error().detail);
    return r.ok();
  };
  if (n == "request.close") return ok(e.request_close());
  if (starts("request.")) return ok(e.request());
  if (starts("message.")) return ok(e.message());
  if (starts("lead.")) return ok(e.lead());
  if (starts("faqbot.")) return ok(e.faq_kb());
  if (starts("faq.")) return ok(e.faq());
  if (starts("project_user.")) return ok(e.project_user());
  if (starts("department.")) return ok(e.department());
  if (starts("group.")) return ok(e.group());
  if (starts("project.")) return ok(e.project());
  if (starts("user.")) return ok(e.user());
  if (starts("event.emit")) return ok(e.custom_event());
  if (n == "operator.select") return ok(e.operator_select());
  return false;
}

}  // namespace

TEST_SUITE("roundtrip") {
  TEST_CASE("every sample event signs, verifies and reads into its typed model") {
    int count = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator(tdhook::test::source_dir() / "samples/events")) {
      std::string name = entry.path().filename().string();
      if (name == "operator.select.response.json") continue;
      CAPTURE(name);
      auto event = sign_and_verify(entry.path());
      CHECK(reads_typed(event));
      ++count;
    }
    CHECK(count >= 14);
  }

  TEST_CASE("the fields an integrator reads survive the round trip") {
    auto dir = tdhook::test::source_dir() / "samples/events";
    auto lead = sign_and_verify(dir / "lead.create.json").lead();
    REQUIRE(lead.ok());
    CHECK(lead->email == "ada.lovelace@example.org");
    CHECK(lead->fullname == "Ada Lovelace");

    auto request = sign_and_verify(dir / "request.create.json").request();
    REQUIRE(request.ok());
    CHECK(request->status == tdhook::RequestStatus::assigned);
    CHECK(request->first_text.rfind("Hi, my order #100245", 0) == 0);
    REQUIRE(request->department);
    const auto* department = std::get_if<tdhook::Department>(&*request->department);
    REQUIRE(department != nullptr);
    CHECK(department->name == "Default Department");

    auto message = sign_and_verify(dir / "message.create.json").message();
    REQUIRE(message.ok());
    CHECK(message->sender == "655b7ed3b7e1c3d9503a10f3");
    CHECK(message->text->rfind("Hi Ada, I'm Marco.", 0) == 0);

    auto close = sign_and_verify(dir / "request.close.json").request_close();
    REQUIRE(close.ok());
    CHECK(close->status == tdhook::RequestStatus::closed);
    CHECK(close->messages.size() == 8);

    auto routing = sign_and_verify(dir / "operator.select.json").operator_select();
    REQUIRE(routing.ok());
    REQUIRE(routing->operators.size() == 1);
    CHECK(routing->operators[0].id_user == "655b7ed3b7e1c3d9503a10f3");
    CHECK(routing->department.name == "Sales");
    CHECK(routing->agents.size() == 2);

    auto typing = sign_and_verify(dir / "event.emit.typing.start.json").custom_event();
    REQUIRE(typing.ok());
    CHECK(typing->name == "typing.start");
  }
}
