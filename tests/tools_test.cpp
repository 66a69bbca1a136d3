// GCC 12 at -O2 reports potential null dereferences inside nlohmann/json's and CLI11's inlined
// code (false positives in the libraries' headers, not in this file).
#pragma GCC diagnostic ignored "-Wnull-dereference"

// The `tdhook` command line as a real process: verify (every shared vector, golden outputs,
// CRLF/LF files, garbage), sign (verifiable bodies, every sample, a runnable curl command), send
// (tampering, summary of a small load run) and events.
#include <doctest/doctest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "delivery/process.hpp"
#include "sign_cmd.hpp"
#include "support/files.hpp"
#include "tdhook/event.hpp"
#include "tdhook/models.hpp"
#include "tdhook/verify.hpp"

using namespace std::chrono_literals;
using Json = nlohmann::json;
using tdhook::test::read_file;
using tdhook::test::source_dir;
using tdhook::test::TempDir;
using tdhook::test::write_file;

namespace {

constexpr const char* kSecret = "56c189c8-33ae-4930-bd98-410a12aa45ce";

struct ToolRun {
  int exit_status = -1;
  int term_signal = 0;
  std::string out;  // stdout only
  std::string err;
};

ToolRun run_tool(const TempDir& dir, const std::vector<std::string>& args,
                 const std::string& input = {}, const std::vector<std::string>& env = {}) {
  std::string command = "exec " + tdhook::tools::shell_quote(TDHOOK_TOOL_BIN);
  for (const auto& arg : args) command += " " + tdhook::tools::shell_quote(arg);
  const auto err_path = dir / "stderr.txt";
  command += " 2>" + tdhook::tools::shell_quote(err_path.string());
  tdhook::receiver::ProcessOptions options;
  options.command = command;
  options.input = input;
  options.timeout = 60s;
  options.output_limit = 32u << 20;
  options.environment = tdhook::receiver::build_environment({}, env);
  auto result = tdhook::receiver::run_process(options);
  REQUIRE(result.ok());
  REQUIRE_FALSE(result->timed_out);
  ToolRun run{result->exit_status, result->term_signal, result->output, {}};
  if (std::filesystem::exists(err_path)) run.err = read_file(err_path);
  return run;
}

// An HTTP receiver on 127.0.0.1, port chosen by the system, served from a thread.
class TestServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  explicit TestServer(Handler handler) {
    server_.Post(".*", std::move(handler));
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    REQUIRE(server_.is_running());
  }
  ~TestServer() {
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& path = "/hooks/tiledesk") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

tdhook::Verifier make_verifier(const std::string& secret) {
  tdhook::VerifierOptions options;
  options.secrets = {secret};
  auto verifier = tdhook::Verifier::create(options);
  REQUIRE(verifier.ok());
  return *verifier;
}

Json parse_line(const std::string& out) {
  const auto json = Json::parse(out, nullptr, false);
  INFO("output: " << out);
  REQUIRE_FALSE(json.is_discarded());
  return json;
}

// A vector's request as a raw HTTP/1.1 request file, with CRLF or LF line ends.
std::string raw_request(const Json& request, bool crlf) {
  const std::string eol = crlf ? "\r\n" : "\n";
  const std::string body = request["body"];
  std::string text = request.value("method", "POST") + " /hooks/tiledesk HTTP/1.1" + eol;
  for (const auto& [name, value] : request["headers"].items()) {
    text += name + ": " + value.get<std::string>() + eol;
  }
  // With LF files, leave Content-Length out: the rest of the file is the body.
  if (crlf) text += "content-length: " + std::to_string(body.size()) + eol;
  return text + eol + body;
}

std::vector<std::string> vector_args(const Json& vector, const TempDir& dir) {
  const auto& config = vector["config"];
  std::string secrets;
  for (const auto& s : config["secrets"]) secrets += s.get<std::string>() + "\n";
  write_file(dir / "secrets", secrets);
  std::vector<std::string> args = {"verify",
                                   "--secret-file",
                                   (dir / "secrets").string(),
                                   "--now",
                                   std::to_string(config["now_ms"].get<std::int64_t>()),
                                   "--max-age",
                                   std::to_string(config["max_age_s"].get<std::int64_t>())};
  int index = 0;
  for (const auto& key : config.value("global_keys", Json::array())) {
    const auto path = dir / ("global" + std::to_string(index++));
    if (key.contains("pem")) {
      write_file(path, key["pem"].get<std::string>());
      args.insert(args.end(),
                  {"--global-key", key["alg"].get<std::string>() + ":" + path.string()});
    } else {
      write_file(path, key["secret"].get<std::string>() + "\n");
      args.insert(args.end(), {"--global-secret-file", path.string()});
    }
  }
  return args;
}

Json load_vectors() {
  return Json::parse(read_file(source_dir() / "tests/fixtures/verify-vectors.json"))["vectors"];
}

std::string requests_dir() { return (source_dir() / "tests/fixtures/requests").string(); }

std::vector<std::string> fixture_args(const std::string& file) {
  return {"verify", "--secret-file", requests_dir() + "/secret.txt",
          "--now",  "1764150000000", requests_dir() + "/" + file};
}

}  // namespace

TEST_SUITE("tdhook verify") {
  TEST_CASE("every shared vector gives its expected outcome and error code through tdhook verify") {
    const auto vectors = load_vectors();
    REQUIRE(vectors.size() >= 20);
    int index = 0;
    for (const auto& vector : vectors) {
      const std::string name = vector["name"];
      CAPTURE(name);
      TempDir dir;
      auto args = vector_args(vector, dir);
      const bool crlf = index++ % 2 == 0;
      CAPTURE(crlf);
      write_file(dir / "request.http", raw_request(vector["request"], crlf));
      args.push_back((dir / "request.http").string());
      const auto run = run_tool(dir, args);
      CAPTURE(run.out);
      CAPTURE(run.err);
      const auto line = parse_line(run.out);
      const bool expect_ok = vector["expect"]["ok"];
      CHECK(line["ok"] == expect_ok);
      CHECK(run.exit_status == (expect_ok ? 0 : 1));
      if (!expect_ok) CHECK(line["error"] == vector["expect"]["error"]);
      CHECK(run.out.find(kSecret) == std::string::npos);
    }
  }

  TEST_CASE("verify's JSON output matches the golden files") {
    const std::map<std::string, std::string> cases = {
        {"valid_hs256_lead_create", "verify_ok.json"},
        {"missing_secret_header", "verify_missing_secret_header.json"},
        {"token_alg_none", "verify_token_alg_none.json"},
        {"stale_token", "verify_stale.json"}};
    for (const auto& vector : load_vectors()) {
      const auto it = cases.find(vector["name"]);
      if (it == cases.end()) continue;
      CAPTURE(it->first);
      TempDir dir;
      auto args = vector_args(vector, dir);
      write_file(dir / "request.http", raw_request(vector["request"], true));
      args.push_back((dir / "request.http").string());
      const auto run = run_tool(dir, args);
      CHECK(run.out == read_file(source_dir() / "tests/fixtures/golden" / it->second));
    }
    TempDir dir;
    const auto garbage = run_tool(dir, fixture_args("garbage_no_colon.http"));
    CHECK(garbage.out == read_file(source_dir() / "tests/fixtures/golden/verify_garbage.json"));
  }

  TEST_CASE("request files with CRLF, LF, mixed-case headers and chunked bodies all verify") {
    for (const char* file : {"lead_create_crlf.http", "lead_create_lf.http",
                             "lead_create_header_case.http", "lead_create_chunked.http"}) {
      CAPTURE(file);
      TempDir dir;
      const auto run = run_tool(dir, fixture_args(file));
      CAPTURE(run.err);
      CHECK(run.exit_status == 0);
      const auto line = parse_line(run.out);
      CHECK(line["ok"] == true);
      CHECK(line["event"] == "lead.create");
      CHECK(line["subscription"] == "5c879fb4f1ae6600173b8c75");
      CHECK(line["project"] == "5b55e806c93dde00143163dd");
    }
  }

  TEST_CASE("verify reads the request from stdin when the file is -") {
    TempDir dir;
    const auto request = read_file(requests_dir() + "/lead_create_crlf.http");
    auto args = fixture_args("-");
    args.back() = "-";
    const auto run = run_tool(dir, args, request);
    CHECK(run.exit_status == 0);
    CHECK(parse_line(run.out)["ok"] == true);
  }

  TEST_CASE("garbage request files end in exit 2 with a JSON error, never a crash") {
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(requests_dir())) {
      const auto name = entry.path().filename().string();
      if (name.rfind("garbage_", 0) == 0) files.push_back(name);
    }
    REQUIRE(files.size() >= 8);
    for (const auto& file : files) {
      CAPTURE(file);
      TempDir dir;
      const auto run = run_tool(dir, fixture_args(file));
      CHECK(run.term_signal == 0);
      CHECK(run.exit_status == 2);
      const auto line = parse_line(run.out);
      CHECK(line["ok"] == false);
      CHECK(line["error"] == "invalid_input");
      CHECK_FALSE(line["detail"].get<std::string>().empty());
    }
  }

  TEST_CASE("verify without any secret or key is a configuration error") {
    TempDir dir;
    const auto run = run_tool(dir, {"verify", requests_dir() + "/lead_create_crlf.http"});
    CHECK(run.exit_status == 2);
    CHECK(parse_line(run.out)["error"] == "invalid_config");
  }

  TEST_CASE("TDHOOK_SECRETS supplies secrets when no secret file is given") {
    TempDir dir;
    const auto run = run_tool(
        dir, {"verify", "--now", "1764150000000", requests_dir() + "/lead_create_crlf.http"}, {},
        {std::string("TDHOOK_SECRETS=other-secret, ") + kSecret});
    CHECK(run.exit_status == 0);
  }

  TEST_CASE("an unknown option is a usage error (exit 2)") {
    TempDir dir;
    CHECK(run_tool(dir, {"verify", "--no-such-option", "x"}).exit_status == 2);
    CHECK(run_tool(dir, {"verify", "--mode", "sideways", "x"}).exit_status == 2);
  }
}

TEST_SUITE("tdhook sign") {
  TEST_CASE("sign --sample lead.create prints a body that the library's Verifier accepts") {
    TempDir dir;
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const auto run = run_tool(
        dir, {"sign", "--sample", "lead.create", "--secret-file", (dir / "secret").string()});
    CAPTURE(run.err);
    REQUIRE(run.exit_status == 0);
    REQUIRE(run.out.back() == '\n');
    const auto body = run.out.substr(0, run.out.size() - 1);
    CHECK(body.rfind("{\"timestamp\":", 0) == 0);
    const auto event =
        make_verifier(kSecret).verify(std::optional<std::string_view>(kSecret), body);
    REQUIRE(event.ok());
    CHECK(event->name() == "lead.create");
    const auto lead = event->lead();
    REQUIRE(lead.ok());
    CHECK(lead->email.value_or("") == "ada.lovelace@example.org");
  }

  TEST_CASE("sign with a fixed --timestamp is deterministic and carries that timestamp") {
    TempDir dir;
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const std::vector<std::string> args = {
        "sign",        "--sample",     "request.create", "--secret-file", (dir / "secret").string(),
        "--timestamp", "1707142867650"};
    const auto first = run_tool(dir, args);
    const auto second = run_tool(dir, args);
    REQUIRE(first.exit_status == 0);
    CHECK(first.out == second.out);
    CHECK(first.out.rfind("{\"timestamp\":1707142867650,", 0) == 0);
    // The token is the reference's worked example (§2.4) for this hook, secret and clock.
    const auto secret_ref = "5f1b0f3e-8c2a-4d6b-9e7f-1a2b3c4d5e6f";
    write_file(dir / "secret", std::string(secret_ref) + "\n");
    const auto ref = run_tool(dir, args);
    CHECK(ref.out.find("\"token\":\"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.") != std::string::npos);
    CHECK(ref.out.find(".fjhJOmRXQepZBODMrprZj_vR2BXSMQqlRbQZApLGb_M\"}") != std::string::npos);
  }

  TEST_CASE("every bundled sample that tdhook events lists signs and verifies") {
    TempDir dir;
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const auto events = run_tool(dir, {"events"});
    REQUIRE(events.exit_status == 0);
    std::vector<std::string> names;
    std::istringstream lines(events.out);
    for (std::string line; std::getline(lines, line);) {
      CHECK(line.find("(no description)") == std::string::npos);
      names.push_back(line.substr(0, line.find(' ')));
    }
    for (const char* required :
         {"lead.create", "request.close", "faqbot.create", "group.delete", "project_user.invite",
          "project.downgrade", "user.signup", "message.create.channel.chat21"}) {
      CHECK(std::find(names.begin(), names.end(), required) != names.end());
    }
    const auto verifier = make_verifier(kSecret);
    for (const auto& name : names) {
      CAPTURE(name);
      const auto run =
          run_tool(dir, {"sign", "--sample", name, "--secret-file", (dir / "secret").string()});
      REQUIRE(run.exit_status == 0);
      const auto event = verifier.verify(std::optional<std::string_view>(kSecret), run.out);
      REQUIRE(event.ok());
      CHECK(event->name() == name);
    }
  }

  TEST_CASE("sign --event with --payload builds a fresh hook in Tiledesk's key order") {
    TempDir dir;
    write_file(dir / "secret", std::string(kSecret) + "\n");
    write_file(dir / "payload.json", "{\"name\":\"Zoë\",\"n\":1.50}");
    const auto run = run_tool(
        dir, {"sign", "--event", "custom.thing", "--payload", (dir / "payload.json").string(),
              "--secret-file", (dir / "secret").string(), "--project-id",
              "65533a0cb7e1c3d9503a10aa", "--target", "https://x.example/h"});
    REQUIRE(run.exit_status == 0);
    CHECK(run.out.find("\"payload\":{\"name\":\"Zoë\",\"n\":1.5}") != std::string::npos);
    const auto hook_at = run.out.find("\"hook\":{\"_id\":\"");
    REQUIRE(hook_at != std::string::npos);
    const auto hook = Json::parse(run.out)["hook"];
    CHECK(hook["event"] == "custom.thing");
    CHECK(hook["id_project"] == "65533a0cb7e1c3d9503a10aa");
    CHECK(hook["target"] == "https://x.example/h");
    CHECK(hook["_id"].get<std::string>().size() == 24);
    const auto order = run.out.substr(hook_at);
    CHECK(order.find("\"target\"") < order.find("\"event\""));
    CHECK(order.find("\"event\"") < order.find("\"id_project\""));
    CHECK(order.find("\"updatedAt\"") < order.find("\"__v\""));
  }

  TEST_CASE("sign without a secret, or with a sample that does not exist, is a usage error") {
    TempDir dir;
    CHECK(run_tool(dir, {"sign", "--sample", "lead.create"}).exit_status == 2);
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const auto run = run_tool(
        dir, {"sign", "--sample", "no.such.event", "--secret-file", (dir / "secret").string()});
    CHECK(run.exit_status == 2);
    CHECK(run.err.find("no sample") != std::string::npos);
  }

  TEST_CASE("sign --curl prints a command that delivers a verifiable notification") {
    TempDir dir;
    tdhook::receiver::ProcessOptions probe;
    probe.command = "command -v curl";
    probe.environment = tdhook::receiver::build_environment({}, {});
    const auto has_curl = tdhook::receiver::run_process(probe);
    REQUIRE(has_curl.ok());
    if (!has_curl->ok()) {
      MESSAGE("curl is not installed: the curl command is not run");
      return;
    }
    std::mutex mutex;
    std::string body, secret, user_agent;
    TestServer server([&](const httplib::Request& req, httplib::Response& res) {
      const std::lock_guard lock(mutex);
      body = req.body;
      secret = req.get_header_value("x-hook-secret");
      user_agent = req.get_header_value("User-Agent");
      res.set_content("{\"received\":true}", "application/json");
    });
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const auto sign = run_tool(dir, {"sign", "--sample", "message.create", "--secret-file",
                                     (dir / "secret").string(), "--curl", server.url()});
    REQUIRE(sign.exit_status == 0);
    CHECK(sign.out.rfind("curl ", 0) == 0);
    tdhook::receiver::ProcessOptions curl;
    curl.command = sign.out;
    curl.environment = tdhook::receiver::build_environment({}, {});
    const auto ran = tdhook::receiver::run_process(curl);
    REQUIRE(ran.ok());
    CHECK(ran->exit_status == 0);
    CHECK(ran->output.find("200") != std::string::npos);
    const std::lock_guard lock(mutex);
    CHECK(secret == kSecret);
    CHECK(user_agent == "tiledesk-webhooks");
    const auto event = make_verifier(kSecret).verify(std::optional<std::string_view>(secret), body);
    REQUIRE(event.ok());
    CHECK(event->name() == "message.create");
  }
}

TEST_SUITE("tdhook send") {
  TEST_CASE("send prints the status, the indented JSON answer and the time taken") {
    TempDir dir;
    TestServer server([](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"operators\":[{\"id_user\":\"u1\"}]}", "application/json");
    });
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const auto run = run_tool(dir, {"send", "--to", server.url(), "--event", "lead.create",
                                    "--secret-file", (dir / "secret").string()});
    CAPTURE(run.err);
    CHECK(run.exit_status == 0);
    CHECK(run.out.rfind("200 OK  lead.create  delivered in ", 0) == 0);
    CHECK(run.out.find(" ms\n") != std::string::npos);
    CHECK(run.out.find("{\n  \"operators\": [\n") != std::string::npos);
  }

  TEST_CASE("send turns the URL's user:password into the exact Basic Authorization header") {
    TempDir dir;
    std::mutex mutex;
    std::vector<std::string> seen;
    TestServer server([&](const httplib::Request& req, httplib::Response& res) {
      const std::lock_guard lock(mutex);
      seen.push_back(req.get_header_value("Authorization"));
      res.set_content("{}", "application/json");
    });
    write_file(dir / "secret", std::string(kSecret) + "\n");
    // Percent-decoded first; base64 with '=' padding (two, one, none) and '+' and '/'.
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"u:pwd", "Basic dTpwd2Q="},
        {"ab:c", "Basic YWI6Yw=="},
        {"user:p%40ss", "Basic dXNlcjpwQHNz"},
        {"%FB%FF:%FF", "Basic +/86/w=="},
    };
    for (const auto& [userinfo, expected] : cases) {
      CAPTURE(userinfo);
      const std::string url = server.url();
      const auto to = "http://" + userinfo + "@" + url.substr(std::string("http://").size());
      const auto run = run_tool(dir, {"send", "--to", to, "--event", "lead.create", "--secret-file",
                                      (dir / "secret").string()});
      CAPTURE(run.err);
      CHECK(run.exit_status == 0);
      const std::lock_guard lock(mutex);
      REQUIRE_FALSE(seen.empty());
      CHECK(seen.back() == expected);
    }
  }

  TEST_CASE("each --tamper produces the rejection it names at a verifying receiver") {
    TempDir dir;
    const auto verifier = make_verifier(kSecret);
    std::mutex mutex;
    std::vector<std::string> codes;
    TestServer server([&](const httplib::Request& req, httplib::Response& res) {
      tdhook::Headers headers(req.headers.begin(), req.headers.end());
      const auto event = verifier.verify(headers, req.body);
      const std::lock_guard lock(mutex);
      codes.push_back(event.ok() ? "ok" : std::string(tdhook::to_string(event.error().code)));
      res.status = event.ok() ? 200 : 401;
    });
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"none", "ok"},
        {"wrong-secret", "secret_mismatch"},
        {"no-secret", "missing_secret_header"},
        {"bad-signature", "token_bad_signature"},
        {"alg-none", "token_alg_not_allowed"},
        {"stale", "stale"},
        {"future", "stale"},
        {"hook-mismatch", "token_hook_mismatch"},
        {"duplicate-key", "malformed_envelope"}};
    for (const auto& [tamper, expected] : cases) {
      CAPTURE(tamper);
      const auto run =
          run_tool(dir, {"send", "--to", server.url(), "--sample", "request.update",
                         "--secret-file", (dir / "secret").string(), "--tamper", tamper});
      CHECK(run.exit_status == (expected == "ok" ? 0 : 1));
      const std::lock_guard lock(mutex);
      REQUIRE_FALSE(codes.empty());
      CHECK(codes.back() == expected);
    }
  }

  TEST_CASE("send --count --concurrency delivers N distinct occurrences and summarizes them") {
    TempDir dir;
    std::mutex mutex;
    std::set<std::int64_t> timestamps;
    int received = 0;
    TestServer server([&](const httplib::Request& req, httplib::Response& res) {
      const auto body = Json::parse(req.body, nullptr, false);
      const std::lock_guard lock(mutex);
      ++received;
      if (!body.is_discarded()) timestamps.insert(body["timestamp"].get<std::int64_t>());
      res.status = received % 5 == 0 ? 503 : 200;
    });
    write_file(dir / "secret", std::string(kSecret) + "\n");
    for (const bool keep_alive : {false, true}) {
      CAPTURE(keep_alive);
      {
        const std::lock_guard lock(mutex);
        received = 0;
        timestamps.clear();
      }
      std::vector<std::string> args = {"send",
                                       "--to",
                                       server.url(),
                                       "--sample",
                                       "lead.create",
                                       "--secret-file",
                                       (dir / "secret").string(),
                                       "--count",
                                       "20",
                                       "--concurrency",
                                       "4"};
      if (keep_alive) args.push_back("--keep-alive");
      const auto run = run_tool(dir, args);
      CAPTURE(run.out);
      CAPTURE(run.err);
      CHECK(run.exit_status == 1);  // some answers were 503
      CHECK(run.out.rfind("sent 20 lead.create in ", 0) == 0);
      CHECK(run.out.find("status: 200 x 16 503 x 4\n") != std::string::npos);
      CHECK(run.out.find("errors: 0\n") != std::string::npos);
      CHECK(run.out.find("latency: p50 ") != std::string::npos);
      const std::lock_guard lock(mutex);
      CHECK(received == 20);
      CHECK(timestamps.size() == 20);
    }
  }

  TEST_CASE("send to a closed port reports the transport error and exits 1") {
    TempDir dir;
    write_file(dir / "secret", std::string(kSecret) + "\n");
    const auto run = run_tool(dir, {"send", "--to", "http://127.0.0.1:1/", "--sample",
                                    "lead.create", "--secret-file", (dir / "secret").string()});
    CHECK(run.exit_status == 1);
    CHECK(run.out.find("ECONNREFUSED") != std::string::npos);
  }
}
