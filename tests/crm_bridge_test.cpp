// samples/scripts/crm-bridge.sh against a fake CRM on 127.0.0.1: the sample as an operator runs
// it, through a real spool and dispatcher, with the receiver's retries.
#include <httplib.h>

#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "delivery/dispatcher.hpp"
#include "delivery/process.hpp"
#include "doctest/doctest.h"
#include "support/dispatch_fixture.hpp"
#include "support/files.hpp"

using namespace std::chrono_literals;
using tdhook::receiver::DeliveryState;
using tdhook::test::DispatchFixture;
using tdhook::test::eventually;
using tdhook::test::read_file;
using tdhook::test::source_dir;

namespace {

constexpr const char* crm_token = "crm-token-7f3a9c";

struct Post {
  std::string body, authorization, idempotency_key, content_type;
};

// Records every POST; answers 500 to the first `failures` of them, 201 afterwards.
class FakeCrm {
 public:
  explicit FakeCrm(std::size_t failures) : failures_(failures) {
    server_.Post("/api/contacts", [this](const httplib::Request& req, httplib::Response& res) {
      const std::lock_guard lock(mu_);
      posts_.push_back({req.body, req.get_header_value("Authorization"),
                        req.get_header_value("Idempotency-Key"),
                        req.get_header_value("Content-Type")});
      if (posts_.size() <= failures_) {
        res.status = 500;
        res.set_content(R"({"error":"database unavailable"})", "application/json");
      } else {
        res.status = 201;
        res.set_content(R"({"id":42})", "application/json");
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    REQUIRE(eventually([this] { return server_.is_running(); }));
  }
  ~FakeCrm() {
    server_.stop();
    thread_.join();
  }
  FakeCrm(const FakeCrm&) = delete;
  FakeCrm& operator=(const FakeCrm&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/api/contacts"; }
  std::vector<Post> posts() {
    const std::lock_guard lock(mu_);
    return posts_;
  }

 private:
  httplib::Server server_;
  std::size_t failures_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Post> posts_;
};

// The event record the receiver builds for samples/events/<event>.json.
std::string record_for(const std::string& event, const std::string& id) {
  const auto body =
      nlohmann::json::parse(read_file(source_dir() / "samples/events" / (event + ".json")));
  return nlohmann::json{{"id", id},
                        {"event", event},
                        {"project_id", body["hook"]["id_project"]},
                        {"subscription_id", body["hook"]["_id"]},
                        {"timestamp", body["timestamp"]},
                        {"received_at", "2024-02-05T14:21:07.500Z"},
                        {"verified", "secret"},
                        {"hook", body["hook"]},
                        {"payload", body["payload"]}}
      .dump();
}

std::string bridge_command() {
  return "bash " + (source_dir() / "samples/scripts/crm-bridge.sh").string();
}

}  // namespace

TEST_SUITE("samples") {
  TEST_CASE(
      "crm-bridge.sh posts each lead as a contact and fails on a non-2xx answer so the receiver "
      "retries") {
    FakeCrm crm(1);
    DispatchFixture f;
    setenv("CRM_URL", crm.url().c_str(), 1);
    setenv("CRM_TOKEN", crm_token, 1);
    const std::string name = "exec:" + bridge_command();
    auto config = tdhook::receiver::parse_sink_spec(name);
    REQUIRE(config.ok());
    config->retry_base = 10ms;
    config->pass_env = {"CRM_URL", "CRM_TOKEN"};
    f.put_record("lead-77", "lead.create", record_for("lead.create", "lead-77"), {name});
    f.start({*config});
    const bool delivered = eventually([&] { return f.count(name, DeliveryState::delivered) == 1; });
    unsetenv("CRM_URL");
    unsetenv("CRM_TOKEN");
    REQUIRE(delivered);

    CHECK(f.info("lead-77", name).attempts == 2);
    const auto posts = crm.posts();
    REQUIRE(posts.size() == 2);
    CHECK(posts[0].body == posts[1].body);
    const auto contact = nlohmann::json::parse(posts[1].body);
    CHECK(contact["name"] == "Ada Lovelace");
    CHECK(contact["email"] == "ada.lovelace@example.org");
    CHECK(contact["external_id"] == "65c0eed3a4c2e91b7d3a10fb");
    CHECK(contact["tiledesk_project_id"] == "65533a0cb7e1c3d9503a10f1");
    CHECK(posts[1].authorization == std::string("Bearer ") + crm_token);
    CHECK(posts[1].idempotency_key == "lead-77");
    CHECK(posts[1].content_type == "application/json");

    const std::string log = f.log_text();
    CHECK(log.find("the CRM answered HTTP 500") != std::string::npos);
    CHECK(log.find(crm_token) == std::string::npos);
  }

  TEST_CASE("crm-bridge.sh skips events other than lead.create without calling the CRM") {
    FakeCrm crm(0);
    tdhook::receiver::ProcessOptions options;
    options.command = bridge_command();
    options.input = record_for("request.create", "req-1") + "\n";
    options.environment =
        tdhook::receiver::build_environment({}, {"CRM_URL=" + crm.url(), "CRM_TOKEN=x"});
    const auto r = tdhook::receiver::run_process(options);
    REQUIRE(r.ok());
    CHECK(r->ok());
    CHECK(crm.posts().empty());
  }

  TEST_CASE("crm-bridge.sh refuses to run without CRM_URL") {
    tdhook::receiver::ProcessOptions options;
    options.command = bridge_command();
    options.input = record_for("lead.create", "lead-1") + "\n";
    options.environment = tdhook::receiver::build_environment({}, {"CRM_TOKEN=x"});
    const auto r = tdhook::receiver::run_process(options);
    REQUIRE(r.ok());
    CHECK_FALSE(r->ok());
    CHECK(r->output.find("CRM_URL is not set") != std::string::npos);
  }
}
