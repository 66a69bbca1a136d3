// `tdhook sim`: Tiledesk's subscription REST API as documented (reference §5), firing with
// Tiledesk's wire format and retry policy (§1-§3), operator.select decisions (§4.3), the
// --compat quirks, and state kept across restarts.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <regex>
#include <set>

#include "sim_harness.hpp"
#include "tdhook/verify.hpp"

namespace {

using namespace tdhook::test::sim;
using tdhook::test::read_file;
using tdhook::test::TempDir;

std::vector<std::string> keys_of(const Json& j) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  return keys;
}

const std::regex uuid_v4("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
const std::regex iso_ms(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");

// The header `name` in curl -v's stderr ("< name: value").
std::string curl_header(const std::string& verbose, const std::string& name) {
  std::smatch m;
  const std::regex line("< " + name + ": ([^\r\n]*)", std::regex::icase);
  return std::regex_search(verbose, m, line) ? m[1].str() : "";
}

tdhook::Result<tdhook::Event> verify(const Received& r, const std::string& secret,
                                     bool global = false) {
  tdhook::VerifierOptions o;
  o.secrets = {secret};
  if (global) o.global_keys = {{tdhook::Algorithm::hs256, "nodeauthsecret"}};
  auto v = tdhook::Verifier::create(o);
  REQUIRE(v.ok());
  return v->verify(std::optional<std::string_view>(r.secret), r.body);
}

// A port nothing listens on: bound once to learn a free number, then closed.
int closed_port_number() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

TEST_SUITE("sim.api") {
  TEST_CASE("the curl commands of Tiledesk's documentation work unchanged against the simulator") {
    SimHarness sim({false, {{"andrea.leo@f21.it", "123456"}}, {}, 0.01, ":memory:"});
    TempDir dir;
    const std::string api = sim.base() + "/v3/" + project_a + "/subscriptions";
    const std::string err = (dir / "curl.err").string();
    auto create = shell(
        "curl -v -X POST -H 'Content-Type:application/json' -u andrea.leo@f21.it:123456 -d "
        "'{\"event\":\"message.create\", \"target\":\"https://webhook.site/3a1b\"}' " +
        api + " 2>" + err);
    REQUIRE(create.status == 0);
    const Json created = Json::parse(create.out);
    CHECK(keys_of(created) == std::vector<std::string>{"secret", "global", "_id", "target", "event",
                                                       "id_project", "createdBy", "createdAt",
                                                       "updatedAt", "__v"});
    CHECK(created["global"] == false);
    CHECK(created["event"] == "message.create");
    CHECK(created["id_project"] == project_a);
    CHECK(created["__v"] == 0);
    CHECK(std::regex_match(created["secret"].get<std::string>(), uuid_v4));
    CHECK(std::regex_match(created["createdAt"].get<std::string>(), iso_ms));
    CHECK(tdhook::tools::sim::is_object_id(created["_id"].get<std::string>()));
    const std::string verbose = read_file(err);
    CHECK(verbose.find("< HTTP/1.1 200") != std::string::npos);
    CHECK(curl_header(verbose, "x-hook-secret") == created["secret"]);
    const std::string id = created["_id"];

    auto list = shell("curl -v -X GET -u andrea.leo@f21.it:123456 " + api + " 2>" + err);
    const Json listed = Json::parse(list.out);
    REQUIRE(listed.size() == 1);
    CHECK(keys_of(listed[0]) == std::vector<std::string>{"_id", "target", "event", "id_project",
                                                         "createdBy", "createdAt", "updatedAt",
                                                         "__v"});
    auto get = shell("curl -v -X GET -u andrea.leo@f21.it:123456 " + api + "/" + id + " 2>" + err);
    CHECK(Json::parse(get.out) == listed[0]);
    auto del =
        shell("curl -v -X DELETE -u andrea.leo@f21.it:123456 " + api + "/" + id + " 2>" + err);
    CHECK(Json::parse(del.out) == listed[0]);
    auto again = shell("curl -s -X DELETE -u andrea.leo@f21.it:123456 " + api + "/" + id);
    CHECK(again.out == "null");
    auto gone = shell("curl -s -w ' %{http_code}' -u andrea.leo@f21.it:123456 " + api + "/" + id);
    CHECK(gone.out == R"({"success":false,"msg":"Object not found."} 404)");
  }

  TEST_CASE("the API answers 401 with the Users realm without valid Basic credentials") {
    SimHarness sim;
    const std::string path = std::string("/") + project_a + "/subscriptions";
    auto none = sim.client(false)->Get(path.c_str());
    REQUIRE(none);
    CHECK(none->status == 401);
    CHECK(none->body == "Unauthorized");
    CHECK(none->get_header_value("WWW-Authenticate") == "Basic realm=\"Users\"");
    auto wrong = sim.client(false);
    wrong->set_basic_auth("user", "wrong");
    CHECK(wrong->Get(path.c_str())->status == 401);
    auto upper = sim.client(false);
    upper->set_basic_auth("USER", "password");  // e-mails are lowercased by Tiledesk
    CHECK(upper->Get(path.c_str())->status == 200);
    // The header as written: base64 of user:password, '=' padded; the scheme in any case.
    for (const auto& [header, status] :
         std::vector<std::pair<std::string, int>>{{"Basic dXNlcjpwYXNzd29yZA==", 200},
                                                  {"basic  dXNlcjpwYXNzd29yZA== ", 200},
                                                  {"Basic dXNlcjpwYXNzd29yZA", 401},
                                                  {"Basic dXNlcjpwYXNzd29yZA=", 401},
                                                  {"Basic dXNlcjpwYXNzd29yZA-=", 401},
                                                  {"Bearer dXNlcjpwYXNzd29yZA==", 401}}) {
      CAPTURE(header);
      auto raw = sim.client(false);
      const auto res = raw->Get(path.c_str(), httplib::Headers{{"Authorization", header}});
      REQUIRE(res);
      CHECK(res->status == status);
    }
    CHECK(
        sim.client()
            ->Post(("/_sim/" + std::string(project_a) + "/fire").c_str(), "{}", "application/json")
            ->status == 400);
    CHECK(
        sim.client(false)
            ->Post(("/_sim/" + std::string(project_a) + "/fire").c_str(), "{}", "application/json")
            ->status == 401);
  }

  TEST_CASE("project ids are checked before authentication, as Tiledesk's middleware does") {
    SimHarness sim({false, {{"user", "password"}}, {project_a}, 0.01, ":memory:"});
    auto bad = sim.client(false)->Get("/api/not-an-id/subscriptions");
    REQUIRE(bad);
    CHECK(bad->status == 400);
    CHECK(bad->body == R"({"error":"Invalid project id: not-an-id"})");
    auto unknown = sim.client()->Get((std::string("/v2/") + project_b + "/subscriptions").c_str());
    CHECK(unknown->status == 400);
    CHECK(unknown->body ==
          std::string(R"({"error":"Project not found with id: )") + project_b + "\"}");
    CHECK(sim.client()->Get((std::string("/v2/") + project_a + "/subscriptions").c_str())->status ==
          200);
  }

  TEST_CASE("get, put and delete answer Tiledesk's errors for bad and unknown ids") {
    SimHarness sim;
    const std::string api = std::string("/") + project_a + "/subscriptions/";
    auto c = sim.client();
    CHECK(c->Get((api + "xyz").c_str())->body ==
          R"({"success":false,"msg":"Error getting object."})");
    CHECK(c->Get((api + "xyz").c_str())->status == 500);
    CHECK(c->Put((api + "xyz").c_str(), "{}", "application/json")->status == 500);
    CHECK(c->Delete((api + "xyz").c_str())->body ==
          R"({"success":false,"msg":"Error deleting object."})");
    auto missing = c->Post(("/" + std::string(project_a) + "/subscriptions").c_str(),
                           R"({"event":"lead.create"})", "application/json");
    CHECK(missing->status == 500);
    CHECK(missing->body == R"({"success":false,"msg":"Error saving object."})");
    CHECK(c->Post((api + "test").c_str(), "{}", "application/json")->status == 500);
  }

  TEST_CASE("every subscription gets its own random secret, and a duplicate create answers it") {
    SimHarness sim;
    const Json a = sim.create(project_a, "lead.create", "http://127.0.0.1:9/a");
    const Json b = sim.create(project_a, "lead.create", "http://127.0.0.1:9/b");
    CHECK(a["secret"] != b["secret"]);
    auto dup = sim.client()->Post(("/" + std::string(project_a) + "/subscriptions").c_str(),
                                  R"({"event":"lead.create","target":"http://127.0.0.1:9/b"})",
                                  "application/json");
    REQUIRE(dup->status == 200);
    const Json d = Json::parse(dup->body);
    CHECK(d["_id"] == b["_id"]);
    CHECK(d["secret"] == b["secret"]);
    CHECK(dup->get_header_value("x-hook-secret") == b["secret"]);
    CHECK_FALSE(d.contains("global"));
  }

  TEST_CASE("PUT upserts an unknown id with only the given fields, without a secret") {
    SimHarness sim;
    const std::string id = "65ae3debc91f04aa2e3a1109";
    const Json up = sim.put(project_a, id, {{"event", "lead.create"}, {"bogus", 1}});
    CHECK(up["_id"] == id);
    CHECK(up["event"] == "lead.create");
    CHECK_FALSE(up.contains("target"));
    CHECK_FALSE(up.contains("bogus"));
    CHECK_FALSE(up.contains("secret"));
  }
}

TEST_SUITE("sim.fire") {
  TEST_CASE("a firing reaches the target in Tiledesk's wire format, verifiable with the secret") {
    SimHarness sim;
    TestReceiver receiver;
    const Json sub = sim.create(project_a, "lead.create", receiver.url());
    const Json report = sim.fire(project_a, {{"sample", "lead.create"}});
    CHECK(report["finished"] == true);
    REQUIRE(report["deliveries"].size() == 1);
    CHECK(report["deliveries"][0]["subscription_id"] == sub["_id"]);
    CHECK(report["deliveries"][0]["final_status"] == 200);
    REQUIRE(receiver.count() == 1);
    const Received r = receiver.received()[0];
    CHECK(r.user_agent == "tiledesk-webhooks");
    CHECK(r.secret == sub["secret"]);
    auto event = verify(r, sub["secret"]);
    REQUIRE_MESSAGE(event.ok(), (event.ok() ? "" : event.error().detail));
    CHECK(event->name() == "lead.create");
    CHECK(event->hook().id == sub["_id"]);
    const Json body = Json::parse(r.body);
    CHECK(keys_of(body) == std::vector<std::string>{"timestamp", "payload", "hook", "token"});
    CHECK(body["hook"] == Json::parse(sim.client()
                                          ->Get(("/" + std::string(project_a) + "/subscriptions/" +
                                                 sub["_id"].get<std::string>())
                                                    .c_str())
                                          ->body));
    CHECK(body["payload"]["fullname"] == "Ada Lovelace");
  }

  TEST_CASE("only subscriptions of the exact event and project, or global ones, receive it") {
    SimHarness sim;
    TestReceiver receiver;
    sim.create(project_a, "request.create", receiver.url("/exact"));
    sim.create(project_a, "request.create.simple", receiver.url("/other-event"));
    sim.create(project_b, "request.create", receiver.url("/other-project"));
    const Json global = sim.create(project_b, "request.create", receiver.url("/global"));
    sim.put(project_b, global["_id"], {{"global", true}});
    const Json report = sim.fire(project_a, {{"event", "request.create"}, {"payload", {{"a", 1}}}});
    CHECK(report["deliveries"].size() == 2);
    std::set<std::string> paths;
    for (const auto& r : receiver.received()) paths.insert(r.path);
    CHECK(paths == std::set<std::string>{"/exact", "/global"});
    for (const auto& r : receiver.received()) {
      if (r.path != "/global") continue;
      auto event = verify(r, global["secret"], true);
      REQUIRE_MESSAGE(event.ok(), (event.ok() ? "" : event.error().detail));
      CHECK(event->verification().global_key);
      CHECK(event->hook().project_id == project_b);
    }
  }

  TEST_CASE("a PUT that rotates the secret changes what the next firing sends") {
    SimHarness sim;
    TestReceiver receiver;
    const Json sub = sim.create(project_a, "faq.create", receiver.url());
    const std::string fresh = "11111111-2222-4333-8444-555555555555";
    const Json put = sim.put(project_a, sub["_id"], {{"secret", fresh}});
    CHECK_FALSE(put.contains("secret"));
    sim.fire(project_a, {{"sample", "faq.create"}});
    REQUIRE(receiver.count() == 1);
    const Received r = receiver.received()[0];
    CHECK(r.secret == fresh);
    CHECK(verify(r, fresh).ok());
    CHECK(verify(r, sub["secret"]).error().code == tdhook::ErrorCode::secret_mismatch);
  }

  TEST_CASE("history pages hold 40 deliveries, newest first, with Tiledesk's fields") {
    SimHarness sim;
    TestReceiver receiver([](int, const httplib::Request&, httplib::Response& res) {
      res.set_content(R"("request caught")", "application/json");
    });
    sim.create(project_a, "event.emit", receiver.url());
    for (int i = 0; i < 45; ++i) {
      sim.fire(project_a, {{"event", "event.emit"}, {"payload", {{"n", i}}}});
    }
    const std::string path = "/" + std::string(project_a) + "/subscriptions/history";
    const Json page0 = Json::parse(sim.client()->Get(path.c_str())->body);
    const Json page1 = Json::parse(sim.client()->Get((path + "?page=1").c_str())->body);
    REQUIRE(page0.size() == 40);
    REQUIRE(page1.size() == 5);
    CHECK(Json::parse(page0[0]["jsonRequest"].get<std::string>())["payload"]["n"] == 44);
    CHECK(Json::parse(page1[4]["jsonRequest"].get<std::string>())["payload"]["n"] == 0);
    CHECK(keys_of(page0[0]) == std::vector<std::string>{"_id", "event", "target", "response",
                                                        "body", "jsonRequest", "err", "id_project",
                                                        "createdAt", "updatedAt", "__v"});
    CHECK(page0[0]["body"] == R"("request caught")");
    CHECK(page0[0]["err"].is_null());
    const Json response = Json::parse(page0[0]["response"].get<std::string>());
    CHECK(response["statusCode"] == 200);
    CHECK(response["request"]["headers"]["x-hook-secret"] == "[redacted]");
  }

  TEST_CASE("500 twice then 200 gives three attempts at Tiledesk's delays, times the scale") {
    SimHarness sim;
    TestReceiver receiver([](int n, const httplib::Request&, httplib::Response& res) {
      res.status = n < 2 ? 500 : 200;
    });
    sim.create(project_a, "lead.create", receiver.url());
    const Json report = sim.fire(project_a, {{"sample", "lead.create"}});
    const Json attempts = report["deliveries"][0]["attempts"];
    REQUIRE(attempts.size() == 3);
    CHECK(receiver.count() == 3);
    CHECK(attempts[2]["status"] == 200);
    const auto gap = [&](int i) {
      return attempts[i]["started_ms"].get<double>() - attempts[i - 1]["finished_ms"].get<double>();
    };
    const auto delay = [&](int i) { return attempts[i]["delay_ms"].get<double>(); };
    // The delays drawn are Tiledesk's [2 s, 3 s) and [4 s, 5 s), times 0.01; each retry starts no
    // sooner than its delay after the failed attempt ended. How much later depends on the
    // machine's load, so only a gross overrun (a second) is an error.
    CHECK(delay(0) == 0.0);
    CHECK(delay(1) >= 20.0);
    CHECK(delay(1) < 30.0);
    CHECK(delay(2) >= 40.0);
    CHECK(delay(2) < 50.0);
    CHECK(gap(1) >= delay(1) - 0.1);
    CHECK(gap(2) >= delay(2) - 0.1);
    CHECK(gap(1) < delay(1) + 1000.0);
    CHECK(gap(2) < delay(2) + 1000.0);
    const auto bodies = receiver.received();
    CHECK(bodies[0].body == bodies[2].body);  // byte-identical retries
  }

  TEST_CASE("a 400 is final and a refused connection is retried") {
    SimHarness sim;
    TestReceiver receiver(
        [](int, const httplib::Request&, httplib::Response& res) { res.status = 400; });
    sim.create(project_a, "lead.create", receiver.url());
    const int closed_port = closed_port_number();
    sim.create(project_a, "lead.create",
               "http://127.0.0.1:" + std::to_string(closed_port) + "/refused");
    const Json report = sim.fire(project_a, {{"sample", "lead.create"}});
    REQUIRE(report["deliveries"].size() == 2);
    for (const auto& d : report["deliveries"]) {
      if (d["target"] == receiver.url()) {
        CHECK(d["attempts"].size() == 1);
        CHECK(d["final_status"] == 400);
      } else {
        CHECK(d["attempts"].size() == 3);
        CHECK(d["final_status"] == 0);
        CHECK(d["attempts"][0]["error"].get<std::string>().find("ECONNREFUSED") !=
              std::string::npos);
      }
    }
    const Json history = Json::parse(
        sim.client()->Get(("/" + std::string(project_a) + "/subscriptions/history").c_str())->body);
    REQUIRE(history.size() == 2);
    int transport = 0;
    for (const auto& row : history) {
      if (row["err"].is_string()) {
        ++transport;
        CHECK(row["err"].get<std::string>().rfind("Error: connect ECONNREFUSED", 0) == 0);
        CHECK_FALSE(row.contains("response"));
      }
    }
    CHECK(transport == 1);
  }

  TEST_CASE("an async firing answers before the deliveries end") {
    SimHarness sim;
    std::atomic<bool> release{false};
    TestReceiver receiver([&](int, const httplib::Request&, httplib::Response&) {
      eventually([&] { return release.load(); });
    });
    sim.create(project_a, "lead.create", receiver.url());
    const Json report = sim.fire(project_a, {{"sample", "lead.create"}, {"async", true}});
    CHECK(report["finished"] == false);
    CHECK(report["deliveries"].size() == 1);
    release = true;
    CHECK(eventually(
        [&] { return sim.log_text().find("\"msg\":\"attempt\"") != std::string::npos; }));
  }
}

TEST_SUITE("sim.operator_select") {
  std::string echo_with_owner(const httplib::Request& req) {
    Json payload = Json::parse(req.body)["payload"];
    payload["operators"] = Json::array({{{"id_user", "6553396ab7e1c3d9503a10f2"}}});
    return payload.dump();
  }

  TEST_CASE("an echo with new operators replaces the routing result, and the log says so") {
    SimHarness sim;
    TestReceiver receiver([](int, const httplib::Request& req, httplib::Response& res) {
      res.set_content(echo_with_owner(req), "application/json");
    });
    sim.create(project_a, "operator.select", receiver.url());
    const Json report = sim.fire(project_a, {{"sample", "operator.select"}});
    REQUIRE(report.contains("operator_select"));
    CHECK(report["operator_select"]["decision"] == "replaced");
    CHECK(report["operator_select"]["operators"][0]["id_user"] == "6553396ab7e1c3d9503a10f2");
    CHECK_FALSE(report["operator_select"].contains("warnings"));
    CHECK(sim.log_text().find(R"("msg":"operator.select","decision":"replaced")") !=
          std::string::npos);
  }

  TEST_CASE("an answer without operators keeps Tiledesk's default") {
    SimHarness sim;
    TestReceiver receiver([](int, const httplib::Request&, httplib::Response& res) {
      res.set_content("{}", "application/json");
    });
    sim.create(project_a, "operator.select", receiver.url());
    const Json report = sim.fire(project_a, {{"sample", "operator.select"}});
    CHECK(report["operator_select"]["decision"] == "default");
    CHECK_FALSE(report["operator_select"].contains("operators"));
  }

  TEST_CASE("a 500 carrying operators still replaces the result, after the retries") {
    SimHarness sim;
    TestReceiver receiver([](int, const httplib::Request& req, httplib::Response& res) {
      res.status = 500;
      res.set_content(echo_with_owner(req), "text/plain");
    });
    sim.create(project_a, "operator.select", receiver.url());
    const Json report = sim.fire(project_a, {{"sample", "operator.select"}});
    CHECK(receiver.count() == 3);
    CHECK(report["operator_select"]["decision"] == "replaced");
  }

  TEST_CASE("with no operator.select subscription the default is kept") {
    SimHarness sim;
    const Json report = sim.fire(project_a, {{"sample", "operator.select"}});
    CHECK(report["deliveries"].empty());
    CHECK(report["operator_select"]["decision"] == "default");
  }
}

TEST_SUITE("sim.compat") {
  TEST_CASE("with --compat every subscription of the process shares one secret") {
    SimHarness sim({true, {{"user", "password"}}, {}, 0.01, ":memory:"});
    const Json a = sim.create(project_a, "lead.create", "http://127.0.0.1:9/a");
    const Json b = sim.create(project_b, "request.create", "http://127.0.0.1:9/b");
    CHECK(a["secret"] == b["secret"]);
  }

  TEST_CASE("with --compat a duplicate create answers the first subscription of the event") {
    SimHarness sim({true, {{"user", "password"}}, {}, 0.01, ":memory:"});
    const Json first = sim.create(project_a, "lead.create", "http://127.0.0.1:9/first");
    sim.create(project_a, "lead.create", "http://127.0.0.1:9/second");
    auto dup = sim.client()->Post(("/" + std::string(project_a) + "/subscriptions").c_str(),
                                  R"({"event":"lead.create","target":"http://127.0.0.1:9/second"})",
                                  "application/json");
    REQUIRE(dup->status == 200);
    const Json d = Json::parse(dup->body);
    CHECK(d["_id"] == first["_id"]);
    CHECK(d["target"] == "http://127.0.0.1:9/first");
    CHECK(d["secret"] == first["secret"]);
    CHECK_FALSE(d.contains("global"));
    CHECK(dup->get_header_value("x-hook-secret") == first["secret"]);
  }

  TEST_CASE("with --compat a retry carries the last subscription's hook and token") {
    for (const bool compat : {true, false}) {
      CAPTURE(compat);
      SimHarness sim({compat, {{"user", "password"}}, {}, 0.01, ":memory:"});
      TestReceiver flaky([](int n, const httplib::Request&, httplib::Response& res) {
        res.status = n == 0 ? 500 : 200;
      });
      TestReceiver steady;
      const Json first = sim.create(project_a, "lead.create", flaky.url());
      const Json last = sim.create(project_a, "lead.create", steady.url());
      sim.fire(project_a, {{"sample", "lead.create"}});
      const auto got = flaky.received();
      REQUIRE(got.size() == 2);
      CHECK(Json::parse(got[0].body)["hook"]["_id"] == first["_id"]);
      CHECK(got[1].secret == first["secret"]);
      const Json retry_hook = Json::parse(got[1].body)["hook"];
      CHECK(retry_hook["_id"] == (compat ? last["_id"] : first["_id"]));
      if (compat) {
        CHECK(got[1].body == steady.received().at(0).body);
      } else {
        CHECK(got[1].body == got[0].body);
      }
    }
  }
}

TEST_SUITE("sim.process") {
  TEST_CASE("the simulator keeps its subscriptions across a restart with --data-dir") {
    TempDir dir;
    const std::vector<std::string> args = {TDHOOK_TOOL_BIN, "sim",          "--listen",
                                           "127.0.0.1:0",   "--data-dir",   (dir / "data").string(),
                                           "--user",        "user:password"};
    std::string id;
    {
      Child sim(args, dir / "out1", dir / "err1");
      const int port = sim.listening_port();
      REQUIRE(port > 0);
      httplib::Client c("127.0.0.1", port);
      c.set_basic_auth("user", "password");
      auto res =
          c.Post((std::string("/") + project_a + "/subscriptions").c_str(),
                 R"({"event":"lead.create","target":"http://127.0.0.1:9/x"})", "application/json");
      REQUIRE(res);
      id = Json::parse(res->body)["_id"];
      CHECK(sim.stop() == 0);
    }
    Child sim(args, dir / "out2", dir / "err2");
    const int port = sim.listening_port();
    REQUIRE(port > 0);
    httplib::Client c("127.0.0.1", port);
    c.set_basic_auth("user", "password");
    auto res = c.Get((std::string("/") + project_a + "/subscriptions/" + id).c_str());
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(Json::parse(res->body)["target"] == "http://127.0.0.1:9/x");
  }

  TEST_CASE("tdhook sim fire fires a sample on a running simulator from the command line") {
    SimHarness sim;
    TestReceiver receiver;
    sim.create(project_a, "request.create", receiver.url());
    auto out = shell(std::string(TDHOOK_TOOL_BIN) + " sim fire --to " + sim.base() + " --project " +
                     project_a + " --sample request.create --user user:password");
    CHECK(out.status == 0);
    CHECK(receiver.count() == 1);
    const Json report = Json::parse(out.out);
    CHECK(report["deliveries"][0]["final_status"] == 200);
    auto bad = shell(std::string(TDHOOK_TOOL_BIN) + " sim fire --to " + sim.base() + " --project " +
                     project_a + " --sample no.such.sample --user user:password 2>/dev/null");
    CHECK(bad.status == 1);
  }
}
