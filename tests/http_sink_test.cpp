// http:, https: and forward: sinks, end to end: the real tdhook-receiver delivering to an HTTP
// app that runs inside the test (support/http_app.hpp). Also the sink specs they take, and the
// dispatcher's reports to a delivery observer (the inspector's feed).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "delivery/dispatcher.hpp"
#include "delivery/observer.hpp"
#include "store/log/log_store.hpp"
#include "store/record.hpp"
#include "support/dispatch_fixture.hpp"
#include "support/files.hpp"
#include "support/http_app.hpp"
#include "support/nats_server.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"
#include "support/tool_run.hpp"

extern char** environ;

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> with(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

// A distinct event, now (numbered_event, support/receiver_client.hpp).
std::string event_now(int seq) { return numbered_event(seq, epoch_ms() + seq); }

// Posts a notification; returns the delivery id the receiver answered with.
std::string post(int port, const std::string& body) {
  httplib::Client client("127.0.0.1", port);
  const auto res = post_event(client, "/", body, receiver_secret);
  REQUIRE(res);
  REQUIRE_MESSAGE(res->status == 200, res->body);
  return json::parse(res->body).at("id").get<std::string>();
}

// The dead letters `tdhook spool ls --state dead --json` lists (through the running receiver).
std::vector<json> dead_letters(const TempDir& dir) {
  const auto listed = run_tool(
      dir, {"spool", "--data-dir", (dir / "data").string(), "ls", "--state", "dead", "--json"});
  REQUIRE_MESSAGE(listed.code == 0, listed.err);
  return parse_ndjson(listed.out);
}

std::string last_error(const json& row) { return row.value("last_error", std::string()); }

// A self-signed certificate for 127.0.0.1, made with the openssl command.
void make_cert(const TempDir& dir) {
  const std::string make =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      "-keyout '" +
      (dir / "key.pem").string() + "' -out '" + (dir / "cert.pem").string() + "' 2>/dev/null";
  REQUIRE(std::system(make.c_str()) == 0);
}

}  // namespace

TEST_SUITE("http sink specs") {
  using receiver::parse_sink_spec;
  using receiver::sink_concurrency;
  using receiver::sink_in_order;

  TEST_CASE("http, https and forward URLs are sink specs; anything else about them is refused") {
    for (const std::string spec :
         {"http://127.0.0.1:8080/hook", "https://crm.example.com/tiledesk?key=1", "http://h",
          "https://[::1]:8443/x", "forward:https://app.example.com/webhook",
          "app=forward:http://localhost:3000/", "crm=https://crm.example.com/in"}) {
      const auto config = parse_sink_spec(spec);
      CHECK_MESSAGE(config.ok(), spec, ": ", config ? "" : config.error().detail);
    }
    CHECK(parse_sink_spec("crm=https://crm.example.com/in")->name == "crm");
    CHECK(parse_sink_spec("https://crm.example.com/in")->name == "https://crm.example.com/in");
    for (const auto& [spec, why] : std::vector<std::pair<std::string, std::string>>{
             {"http:", "unknown sink"},
             {"http:127.0.0.1/x", "unknown sink"},
             {"ftp://host/x", "unknown sink"},
             {"http://", "no host"},
             {"http:///path", "no host"},
             {"http://host:/x", "empty port"},
             {"http://host:0/x", "1..65535"},
             {"http://host:70000/x", "1..65535"},
             {"http://host:8o/x", "not a number"},
             {"https://user:pass@host/x", "user:password@"},
             {"http://host/a b", "percent-encoded"},
             {"http://host/x#frag", "fragment"},
             {"http://ho$t/x", "host name"},
             {"http://[::1/x", "closing ]"},
             {"forward:", "http:// or https://"},
             {"forward:file:/tmp/x", "http:// or https://"},
             {"forward:http://host:99999/", "1..65535"}}) {
      const auto config = parse_sink_spec(spec);
      REQUIRE_MESSAGE(!config.ok(), spec);
      CHECK(config.error().code == ErrorCode::invalid_config);
      CHECK_MESSAGE(config.error().detail.find(why) != std::string::npos, spec, ": ",
                    config.error().detail);
    }
    // The list of sink kinds names the new ones.
    const auto unknown = parse_sink_spec("nope");
    CHECK(unknown.error().detail.find("forward:URL") != std::string::npos);
  }

  TEST_CASE("an http sink runs http_concurrency deliveries at once; in order only with 1") {
    auto http = *parse_sink_spec("https://h/x");
    CHECK(sink_concurrency(http) == 8);
    CHECK_FALSE(sink_in_order(http));
    http.http_concurrency = 3;
    http.exec_concurrency = 1;  // not an exec sink's business
    CHECK(sink_concurrency(http) == 3);
    http.http_concurrency = 1;
    CHECK(sink_concurrency(http) == 1);
    CHECK(sink_in_order(http));
    auto forward = *parse_sink_spec("forward:http://h/x");
    forward.http_concurrency = 5;
    CHECK(sink_concurrency(forward) == 5);
    auto exec = *parse_sink_spec("exec:./x.sh");
    exec.exec_concurrency = 4;
    exec.http_concurrency = 2;
    CHECK(sink_concurrency(exec) == 4);
    for (const char* spec : {"stdout", "file:/tmp/x", "exec-stream:./x"}) {
      auto config = *parse_sink_spec(spec);
      config.exec_concurrency = 8;
      config.http_concurrency = 8;
      CHECK(sink_concurrency(config) == 1);
      CHECK(sink_in_order(config));
    }
  }
}

TEST_SUITE("http sink") {
  TEST_CASE("a 200 delivers: the app gets the record a file sink gets, with the tdhook headers") {
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    const auto file = dir / "events.ndjson";
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", app.url("/hook?via=tdhook+x"), "--sink",
                                                 "file:" + file.string()}));
    REQUIRE(rx.wait_listening());
    const std::string id = post(rx.port(), event_now(1));
    REQUIRE(poll_until([&] { return app.count() == 1 && count_lines_in(file) == 1; }));
    const auto seen = app.requests().at(0);
    std::string line = read_file(file);
    REQUIRE(!line.empty());
    line.pop_back();  // the newline
    CHECK(seen.body == line);
    CHECK(seen.path == "/hook");
    CHECK(seen.query == "via=tdhook x");  // the + went as it was, not as %2B
    CHECK(seen.header("Content-Type") == "application/json");
    CHECK(seen.header("User-Agent") == "tdhook-receiver/0.1");
    CHECK(seen.header("X-Tdhook-Delivery-Id") == id);
    CHECK(seen.header("X-Tdhook-Attempt") == "1");
    CHECK(seen.header("X-Tdhook-Event") == "lead.create");
    CHECK(json::parse(seen.body).at("id") == id);
    const std::string sink = "tdhook_deliveries_total{sink=\"" + app.url("/hook?via=tdhook+x");
    CHECK(poll_until([&] {
      httplib::Client client("127.0.0.1", rx.port());
      const auto res = client.Get("/metrics");
      return res && res->body.find(sink + "\",outcome=\"delivered\"} 1") != std::string::npos;
    }));
    CHECK(app.count() == 1);  // delivered once
  }

  TEST_CASE("one slot delivers back to back: no request waits for the app's delayed ACK") {
    // cpp-httplib writes a request's head and body apart; with Nagle on, the body waited for
    // the app's ACK of the head, which Linux delays by 40 ms: 22 deliveries a second per slot.
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    ReceiverProcess rx(
        with(receiver_args(dir), {"--sink", app.url("/hook"), "--http-concurrency", "1"}));
    REQUIRE(rx.wait_listening());
    constexpr int events = 200;
    const auto started = std::chrono::steady_clock::now();
    for (int i = 1; i <= events; ++i) REQUIRE(!post(rx.port(), event_now(i)).empty());
    REQUIRE(poll_until([&] { return app.count() == events; }, 30s));
    const auto took = std::chrono::steady_clock::now() - started;
    MESSAGE(events, " deliveries on one connection in ",
            std::chrono::duration_cast<std::chrono::milliseconds>(took).count(), " ms");
    CHECK(took < 4s);  // 200 x 44 ms = 8.8 s with the stall
  }

  TEST_CASE("a 500 is a failed attempt, retried: delivered at the second attempt") {
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    std::atomic<int> calls{0};
    app.set_handler([&](const httplib::Request&, httplib::Response& res) {
      if (calls++ == 0) {
        res.status = 500;
        res.set_content("database\r\ndown\x01 " + std::string(400, 'x'), "text/plain");
      } else {
        res.status = 204;
      }
    });
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", app.url("/"), "--retry-base", "100ms"}));
    REQUIRE(rx.wait_listening());
    const std::string id = post(rx.port(), event_now(2));
    REQUIRE(poll_until([&] { return app.count() == 2; }));
    const auto seen = app.requests();
    CHECK(seen[0].header("X-Tdhook-Attempt") == "1");
    CHECK(seen[1].header("X-Tdhook-Attempt") == "2");
    CHECK(seen[0].header("X-Tdhook-Delivery-Id") == id);
    CHECK(seen[1].header("X-Tdhook-Delivery-Id") == id);
    CHECK(seen[0].body == seen[1].body);
    // The error quotes the start of the answer, on one line.
    const std::string quoted = "HTTP 500: database  down  " + std::string(184, 'x');
    REQUIRE(poll_until([&] { return rx.stderr_text().find(quoted + "\"") != std::string::npos; }));
    const auto shown =
        run_tool(dir, {"spool", "--data-dir", (dir / "data").string(), "show", id, "--json"});
    REQUIRE(shown.code == 0);
    CHECK(shown.out.find(quoted) != std::string::npos);
    CHECK(poll_until([&] { return dead_letters(dir).empty() && app.count() == 2; }));
  }

  TEST_CASE("an app slower than --http-timeout times out each attempt, then is dead-lettered") {
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
    app.set_handler([&](const httplib::Request&, httplib::Response& res) {
      // Answers (200) only when the test lets it, long after the sink's timeout.
      std::unique_lock lock(mu);
      cv.wait_for(lock, 10s, [&] { return released; });
      res.set_content("late", "text/plain");
    });
    ReceiverProcess rx(
        with(receiver_args(dir), {"--sink", app.url("/slow"), "--http-timeout", "300ms",
                                  "--retry-max", "2", "--retry-base", "50ms"}));
    REQUIRE(rx.wait_listening());
    const auto started = std::chrono::steady_clock::now();
    post(rx.port(), event_now(3));
    std::vector<json> dead;
    REQUIRE(poll_until(
        [&] {
          dead = dead_letters(dir);
          return !dead.empty();
        },
        15s));
    const auto took = std::chrono::steady_clock::now() - started;
    {
      const std::lock_guard lock(mu);
      released = true;
    }
    cv.notify_all();
    REQUIRE(dead.size() == 1);
    CHECK(last_error(dead[0]) == "timeout after 0.3s");
    CHECK(dead[0].value("attempts", 0) == 2);
    CHECK(app.count() == 2);
    // Two attempts of 0.3 s and a retry delay: far less than the app's 10 s.
    CHECK(took < 5s);
  }

  TEST_CASE("a refused connection is dead-lettered; spool retry --dead delivers once it listens") {
    TempDir dir;
    const int port = unused_port();
    REQUIRE(port > 0);
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/hook";
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", url, "--retry-max", "2"}));
    REQUIRE(rx.wait_listening());
    const std::string id = post(rx.port(), event_now(4));
    std::vector<json> dead;
    REQUIRE(poll_until([&] {
      dead = dead_letters(dir);
      return !dead.empty();
    }));
    REQUIRE(dead.size() == 1);
    CHECK(last_error(dead[0]) == "connection refused");
    CHECK(dead[0].value("id", std::string()) == id);

    HttpApp app(port);
    REQUIRE(app.running());
    const auto retried =
        run_tool(dir, {"spool", "--data-dir", (dir / "data").string(), "retry", "--dead"});
    CHECK_MESSAGE(retried.code == 0, retried.err);
    REQUIRE(poll_until([&] { return app.count() == 1; }));
    const auto seen = app.requests().at(0);
    CHECK(seen.header("X-Tdhook-Delivery-Id") == id);
    CHECK(seen.header("X-Tdhook-Attempt") == "3");  // two failed before it
    CHECK(poll_until([&] { return dead_letters(dir).empty(); }));
  }

  TEST_CASE("a redirect is not followed: the attempt fails, naming the Location") {
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    const std::string elsewhere = app.url("/elsewhere");
    app.set_handler([&](const httplib::Request& req, httplib::Response& res) {
      if (req.path == "/elsewhere") return;  // 200: what following it would deliver to
      res.status = 302;
      res.set_header("Location", elsewhere);
    });
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", app.url("/moved"), "--retry-max", "1"}));
    REQUIRE(rx.wait_listening());
    post(rx.port(), event_now(5));
    std::vector<json> dead;
    REQUIRE(poll_until([&] {
      dead = dead_letters(dir);
      return !dead.empty();
    }));
    CHECK(last_error(dead.at(0)) == "HTTP 302 (redirects are not followed): Location " + elsewhere);
    const auto seen = app.requests();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].path == "/moved");
  }

  TEST_CASE("forward: sends Tiledesk's bytes and headers as they came, and never logs the secret") {
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    const auto file = dir / "events.ndjson";
    ReceiverProcess rx(
        with(receiver_args(dir), {"--sink", "forward:" + app.url("/tiledesk"), "--sink",
                                  "file:" + file.string(), "--log-level", "debug"}));
    REQUIRE(rx.wait_listening());
    // Spacing and key order of its own, as only the original bytes keep them.
    const std::string body = "  " + event_now(6) + "\n";
    httplib::Client client("127.0.0.1", rx.port());
    const httplib::Headers headers{{"User-Agent", "tiledesk-webhooks/2.1 (test)"},
                                   {"Origin", "https://panel.tiledesk.com"},
                                   {"x-hook-secret", receiver_secret}};
    const auto res = client.Post("/", headers, body, "application/json; charset=utf-8");
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 200, res->body);
    const std::string id = json::parse(res->body).at("id").get<std::string>();
    REQUIRE(poll_until([&] { return app.count() == 1 && count_lines_in(file) == 1; }));
    const auto seen = app.requests().at(0);
    CHECK(seen.path == "/tiledesk");
    CHECK(seen.body == body);
    CHECK(seen.header("Content-Type") == "application/json; charset=utf-8");
    CHECK(seen.header("x-hook-secret") == receiver_secret);
    CHECK(seen.header("User-Agent") == "tiledesk-webhooks/2.1 (test)");
    CHECK(seen.header("Origin") == "https://panel.tiledesk.com");
    CHECK(seen.header("X-Tdhook-Delivery-Id") == id);
    CHECK(seen.header("X-Tdhook-Attempt") == "1");
    CHECK(seen.header("X-Tdhook-Event").empty());  // only what Tiledesk sent, and the two ids
    // The file sink got the record, not the original.
    CHECK(json::parse(read_file(file)).at("id") == id);

    // An app that fails and echoes the secret: the error keeps the answer, not the secret.
    app.set_handler([](const httplib::Request& req, httplib::Response& answer) {
      answer.status = 401;
      answer.set_content("bad secret " + req.get_header_value("x-hook-secret"), "text/plain");
    });
    post(rx.port(), event_now(7));
    REQUIRE(poll_until([&] {
      return rx.stderr_text().find("HTTP 401: bad secret [x-hook-secret]") != std::string::npos;
    }));
    CHECK(rx.stderr_text().find(receiver_secret) == std::string::npos);
  }

  TEST_CASE("a forward: sink given an event stored without its original fails, saying why") {
    TempDir dir;
    const int port = unused_port();
    REQUIRE(port > 0);
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
    {
      // The sink "app" posts records at first; the event is stored without its original.
      ReceiverProcess rx(with(receiver_args(dir), {"--sink", "app=" + url, "--retry-max", "1"}));
      REQUIRE(rx.wait_listening());
      post(rx.port(), event_now(8));
      REQUIRE(poll_until([&] { return dead_letters(dir).size() == 1; }));
      rx.signal(SIGTERM);
      REQUIRE(rx.wait_exit() == 0);
    }
    HttpApp app(port);
    REQUIRE(app.running());
    ReceiverProcess rx(
        with(receiver_args(dir), {"--sink", "app=forward:" + url, "--retry-max", "1"}));
    REQUIRE(rx.wait_listening());
    CHECK(run_tool(dir, {"spool", "--data-dir", (dir / "data").string(), "retry", "--dead"}).code ==
          0);
    std::vector<json> dead;
    REQUIRE(poll_until([&] {
      dead = dead_letters(dir);
      return dead.size() == 1 && last_error(dead[0]) != "connection refused";
    }));
    CHECK(last_error(dead[0]).find("no original request was kept") != std::string::npos);
    CHECK(app.count() == 0);
  }

  TEST_CASE(
      "a dead forward: delivery keeps its original: retried after a restart, it forwards "
      "the same bytes") {
    TempDir dir;
    const int port = unused_port();
    REQUIRE(port > 0);
    const std::string sink = "forward:http://127.0.0.1:" + std::to_string(port) + "/in";
    const std::string body = event_now(9) + "  ";
    {
      ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink, "--retry-max", "1"}));
      REQUIRE(rx.wait_listening());
      httplib::Client client("127.0.0.1", rx.port());
      const auto res = post_event(client, "/", body, receiver_secret);
      REQUIRE(res);
      REQUIRE(res->status == 200);
      REQUIRE(poll_until([&] { return dead_letters(dir).size() == 1; }));
      rx.signal(SIGTERM);
      REQUIRE(rx.wait_exit() == 0);
    }
    HttpApp app(port);
    REQUIRE(app.running());
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink}));
    REQUIRE(rx.wait_listening());
    CHECK(run_tool(dir, {"spool", "--data-dir", (dir / "data").string(), "retry", "--dead"}).code ==
          0);
    REQUIRE(poll_until([&] { return app.count() == 1; }));
    const auto seen = app.requests().at(0);
    CHECK(seen.body == body);
    CHECK(seen.header("x-hook-secret") == receiver_secret);
    CHECK(seen.header("User-Agent") == "tiledesk-webhooks");
    CHECK(seen.header("X-Tdhook-Attempt") == "2");
  }

  TEST_CASE(
      "tdhook spool show prints a forward: event's original, secret and token masked, through "
      "the running receiver and with it stopped; an event no forward: sink took has none") {
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    const auto data = (dir / "data").string();
    const auto file = dir / "events.ndjson";
    const std::string body = event_now(10);
    const std::string token = json::parse(body).at("token").get<std::string>();
    REQUIRE(token.size() > 40);
    const std::string signature = token.substr(token.rfind('.') + 1);
    REQUIRE(signature.size() > 20);
    std::string masked_body = body;
    const auto token_at = masked_body.find('"' + token + '"');
    REQUIRE(token_at != std::string::npos);
    masked_body.replace(token_at, token.size() + 2,
                        "\"(hidden: the token, " + std::to_string(token.size()) + " characters)\"");
    // post_event's headers, in the order they are kept (record.hpp), the secret masked.
    const std::string original =
        "POST (the receiver's --path) HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "x-hook-secret: (hidden, " +
        std::to_string(std::string(receiver_secret).size()) +
        " characters)\r\n"
        "User-Agent: tiledesk-webhooks\r\n"
        "Origin: http://localhost:3000\r\n"
        "\r\n" +
        masked_body;
    const std::string heading =
        "original request (kept for forward: sinks; secret and token masked)\n";
    // `tdhook spool show ID` and `--json`: neither holds the secret nor the token.
    auto show = [&](const std::string& id) {
      const auto human = run_tool(dir, {"spool", "--data-dir", data, "show", id});
      const auto as_json = run_tool(dir, {"spool", "--data-dir", data, "show", id, "--json"});
      REQUIRE_MESSAGE(human.code == 0, human.err);
      REQUIRE_MESSAGE(as_json.code == 0, as_json.err);
      for (const auto* run : {&human, &as_json}) {
        CHECK(run->out.find(receiver_secret) == std::string::npos);
        CHECK(run->out.find(token) == std::string::npos);
        CHECK(run->out.find(signature) == std::string::npos);
      }
      return std::make_pair(human.out, json::parse(as_json.out));
    };
    auto check_forwarded = [&](const std::string& id) {
      const auto [human, details] = show(id);
      const auto at = human.find(heading + original + "\n\n");
      CHECK_MESSAGE(at != std::string::npos, human);
      CHECK(human.find("\"id\": \"" + id + "\"") < at);  // after the record
      CHECK(at < human.find("SINK"));                    // before the deliveries
      CHECK(details.at("original") == original);
      CHECK(details.at("record").at("id") == id);
    };
    auto check_plain = [&](const std::string& id) {
      const auto [human, details] = show(id);
      CHECK(human.find("original request") == std::string::npos);
      CHECK(human.find("x-hook-secret") == std::string::npos);
      CHECK(human.find("\"id\": \"" + id + "\"") != std::string::npos);
      CHECK(details.at("original").is_null());
      CHECK(details.at("record").at("id") == id);
    };

    std::string forwarded;
    {
      ReceiverProcess rx(with(receiver_args(dir), {"--sink", "forward:" + app.url("/in")}));
      REQUIRE(rx.wait_listening());
      httplib::Client client("127.0.0.1", rx.port());
      const auto res = post_event(client, "/", body, receiver_secret);
      REQUIRE(res);
      REQUIRE_MESSAGE(res->status == 200, res->body);
      forwarded = json::parse(res->body).at("id").get<std::string>();
      REQUIRE(poll_until([&] { return app.count() == 1; }));
      CHECK(app.requests().at(0).header("x-hook-secret") == receiver_secret);  // kept whole
      REQUIRE(fs::exists(dir / "data" / "admin.sock"));  // the tool asks the receiver
      check_forwarded(forwarded);
      rx.signal(SIGTERM);
      REQUIRE(rx.wait_exit() == 0);
    }
    REQUIRE_FALSE(fs::exists(dir / "data" / "admin.sock"));  // the tool opens the store
    check_forwarded(forwarded);

    // Without a forward: sink nothing is kept beside the record.
    std::string plain;
    {
      ReceiverProcess rx(with(receiver_args(dir), {"--sink", "file:" + file.string()}));
      REQUIRE(rx.wait_listening());
      plain = post(rx.port(), event_now(11));
      REQUIRE(poll_until([&] { return count_lines_in(file) == 1; }));
      REQUIRE(fs::exists(dir / "data" / "admin.sock"));
      check_plain(plain);
      check_forwarded(forwarded);  // kept across the restart
      rx.signal(SIGTERM);
      REQUIRE(rx.wait_exit() == 0);
    }
    check_plain(plain);
  }

  TEST_CASE("--http-concurrency 4 has four requests in flight at once, never more") {
    TempDir dir;
    HttpApp app;
    REQUIRE(app.running());
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0, most = 0;
    bool barrier_met = false;
    app.set_handler([&](const httplib::Request&, httplib::Response& res) {
      std::unique_lock lock(mu);
      most = std::max(most, ++in_flight);
      if (in_flight >= 4) barrier_met = true;
      cv.notify_all();
      // Held until four are in here together (a barrier, once), or answered 503 after 5 s.
      const bool met = cv.wait_for(lock, 5s, [&] { return barrier_met; });
      --in_flight;
      if (!met) res.status = 503;
    });
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", app.url("/"), "--http-concurrency", "4",
                                                 "--retry-max", "1"}));
    REQUIRE(rx.wait_listening());
    for (int i = 0; i < 6; ++i) post(rx.port(), event_now(10 + i));
    REQUIRE(poll_until([&] { return app.count() == 6; }, 20s));
    CHECK(poll_until([&] {
      httplib::Client client("127.0.0.1", rx.port());
      const auto res = client.Get("/metrics");
      return res && res->body.find("outcome=\"delivered\"} 6") != std::string::npos;
    }));
    const std::lock_guard lock(mu);
    CHECK(barrier_met);
    CHECK(most == 4);
    CHECK(dead_letters(dir).empty());
  }

  TEST_CASE("https: the server's certificate is verified, against --http-ca or the system's CAs") {
    TempDir dir;
    make_cert(dir);
    HttpApp app((dir / "cert.pem").string(), (dir / "key.pem").string());
    REQUIRE(app.running());
    SUBCASE("with --http-ca the self-signed server is trusted") {
      ReceiverProcess rx(with(receiver_args(dir), {"--sink", app.url("/secure"), "--http-ca",
                                                   (dir / "cert.pem").string()}));
      REQUIRE(rx.wait_listening());
      const std::string id = post(rx.port(), event_now(20));
      REQUIRE(poll_until([&] { return app.count() == 1; }));
      CHECK(app.requests()[0].header("X-Tdhook-Delivery-Id") == id);
    }
    SUBCASE("without it the certificate is refused, and nothing is sent") {
      ReceiverProcess rx(
          with(receiver_args(dir), {"--sink", app.url("/secure"), "--retry-max", "1"}));
      REQUIRE(rx.wait_listening());
      post(rx.port(), event_now(21));
      std::vector<json> dead;
      REQUIRE(poll_until([&] {
        dead = dead_letters(dir);
        return !dead.empty();
      }));
      CHECK(last_error(dead[0]).find("certificate verification failed") != std::string::npos);
      CHECK(last_error(dead[0]).find("self") != std::string::npos);  // self-signed
      CHECK(app.count() == 0);
    }
    SUBCASE("a --http-ca that holds no certificate is refused at start") {
      write_file(dir / "empty.pem", "not a certificate\n");
      ReceiverProcess rx(with(receiver_args(dir), {"--sink", app.url("/secure"), "--http-ca",
                                                   (dir / "empty.pem").string()}));
      const auto code = rx.wait_exit();
      REQUIRE(code.has_value());
      CHECK(*code != 0);
      CHECK(rx.stderr_text().find("holds no PEM certificate") != std::string::npos);
    }
  }
}

TEST_SUITE("log store originals") {
  using namespace receiver;

  std::unique_ptr<Store> open_store(const TempDir& dir) {
    LogStoreOptions options;
    options.store.data_dir = dir / "data";
    options.store.sinks = {"fwd", "plain"};
    options.segment_bytes = 1;        // a segment per batch, so that one can go
    options.memory_window_bytes = 1;  // records read back from the segments, not memory
    auto store = open_log_store(options, Logger(LogLevel::error, -1));
    REQUIRE_MESSAGE(store.ok(), (store.ok() ? "" : store.error().detail));
    return std::move(*store);
  }

  NewEvent event(const std::string& id, std::string original, std::vector<std::string> sinks) {
    NewEvent e;
    e.delivery_id = id;
    e.dedup_key = "k-" + id;
    e.event = "lead.create";
    e.received_at_ms = now_ms() - 1000;
    e.record = R"({"id":")" + id + R"("})";
    e.sinks = std::move(sinks);
    e.original = std::move(original);
    return e;
  }

  Delivery only_due(Store & store, const std::string& sink) {
    auto due = store.due(sink, now_ms() + 1000, 10);
    REQUIRE(due.ok());
    REQUIRE(due->size() == 1);
    return due->front();
  }

  TEST_CASE("an original goes from put to due, a dead letter, show and a retry, across restarts") {
    TempDir dir;
    const std::string original = build_original(
        {{"Content-Type", "application/json"}, {"x-hook-secret", "s3"}}, "{\"hook\":{}}  ");
    {
      auto store = open_store(dir);
      REQUIRE(store->put(event("a", original, {"fwd", "plain"})).outcome == PutOutcome::stored);
      REQUIRE(store->put(event("b", "", {"plain"})).outcome == PutOutcome::stored);
      const Delivery a = only_due(*store, "fwd");
      CHECK(a.delivery_id == "a");
      CHECK(a.original == original);
      // A failure waits; read back from the segment after a restart, it still has it.
      Attempt failed{1, now_ms(), now_ms(), false, "HTTP 500"};
      REQUIRE(store->mark_batch({Mark{&a, failed, now_ms(), false}}).ok());
    }
    {
      auto store = open_store(dir);
      const Delivery a = only_due(*store, "fwd");
      CHECK(a.original == original);
      CHECK(a.attempts == 1);
      Attempt failed{2, now_ms(), now_ms(), false, "HTTP 500"};
      REQUIRE(store->mark_batch({Mark{&a, failed, 0, true}}).ok());  // dead
      // Every sink is past the first segment now: it goes, and the dead letter's copy remains.
      auto due = store->due("plain", now_ms(), 10);
      REQUIRE(due.ok());
      CHECK(due->size() == 2);
      std::vector<Mark> marks;
      for (const auto& d : *due) marks.push_back(Mark{&d, Attempt{1, 0, 0, true, ""}, 0, false});
      REQUIRE(store->mark_batch(marks).ok());
      REQUIRE(store->put(event("c", "", {"plain"})).outcome == PutOutcome::stored);
      auto purged = store->purge_delivered(now_ms() + 60000);
      REQUIRE(purged.ok());
      CHECK(*purged >= 1);
      auto shown = store->show("a");
      REQUIRE(shown.ok());
      CHECK(shown->original == original);
      auto plain = store->show("c");  // b went with its segment
      REQUIRE(plain.ok());
      CHECK(plain->original.empty());
    }
    auto store = open_store(dir);
    auto retried = store->retry(std::string("a"), false);
    REQUIRE(retried.ok());
    CHECK(*retried == 1);
    const Delivery a = only_due(*store, "fwd");
    CHECK(a.original == original);
    CHECK(a.record == R"({"id":"a"})");
  }
}

TEST_SUITE("nats store originals") {
  TEST_CASE(
      "a NATS store keeps the original of a forward: delivery through a dead letter and "
      "its retry; its record stays the record") {
    std::unique_ptr<NatsServer> server;
    REQUIRE_NOTHROW(server = std::make_unique<NatsServer>());
    TempDir dir;
    const int port = unused_port();
    REQUIRE(port > 0);
    auto args =
        with(receiver_args(dir),
             {"--store", server->url(), "--sink",
              "fwd=forward:http://127.0.0.1:" + std::to_string(port) + "/in", "--retry-max", "1"});
    ReceiverProcess rx(args);
    REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
    const std::string body = event_now(30) + "\n";
    httplib::Client client("127.0.0.1", rx.port());
    const httplib::Headers headers{{"User-Agent", "tiledesk-webhooks/2.1"},
                                   {"x-hook-secret", receiver_secret}};
    const auto res = client.Post("/", headers, body, "application/json");
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 200, res->body);
    const std::string id = json::parse(res->body).at("id").get<std::string>();
    const auto tool = [&](std::vector<std::string> more) {
      std::vector<std::string> argv{"spool", "--store", server->url()};
      argv.insert(argv.end(), more.begin(), more.end());
      return run_tool(dir, argv);
    };
    REQUIRE(poll_until(
        [&] {
          const auto listed = tool({"ls", "--state", "dead", "--json"});
          return listed.code == 0 && listed.out.find("connection refused") != std::string::npos;
        },
        15s));
    // `show` reads the dead letter: its record is the record alone, the original kept apart.
    const auto shown = tool({"show", id, "--json"});
    REQUIRE_MESSAGE(shown.code == 0, shown.err);
    const auto details = json::parse(shown.out);
    REQUIRE(details.at("record").is_object());
    CHECK(details.at("record").at("id") == id);

    HttpApp app(port);
    REQUIRE(app.running());
    CHECK(tool({"retry", "--dead"}).code == 0);
    REQUIRE(poll_until([&] { return app.count() == 1; }, 15s));
    const auto seen = app.requests().at(0);
    CHECK(seen.body == body);
    CHECK(seen.header("x-hook-secret") == receiver_secret);
    CHECK(seen.header("User-Agent") == "tiledesk-webhooks/2.1");
    CHECK(seen.header("Content-Type") == "application/json");
    CHECK(seen.header("X-Tdhook-Delivery-Id") == id);
    CHECK(seen.header("X-Tdhook-Attempt") == "2");
  }
}

TEST_SUITE("delivery observer") {
  // A report as seen: the dispatcher's views are valid during the call only.
  struct Report {
    std::string delivery_id, sink, event;
    receiver::Attempt attempt;
    std::string output;
    bool dead = false;
    std::int64_t next_attempt_at_ms = 0;
  };

  // Collects what the dispatcher reports.
  class Recorder final : public receiver::DeliveryObserver {
   public:
    void on_attempt(const receiver::AttemptReport& report) noexcept override {
      const auto& a = report.attempt;
      const std::lock_guard lock(mu_);
      reports_.push_back(Report{
          std::string(report.delivery_id), std::string(report.sink), std::string(report.event),
          receiver::Attempt{a.number, a.started_at_ms, a.finished_at_ms, a.ok,
                            std::string(a.error)},
          std::string(report.output), report.dead, report.next_attempt_at_ms});
    }
    std::vector<Report> reports() const {
      const std::lock_guard lock(mu_);
      return reports_;
    }

   private:
    mutable std::mutex mu_;
    std::vector<Report> reports_;
  };

  TEST_CASE("every settled attempt is reported with the script's output tail, dead or not") {
    DispatchFixture f;
    Recorder recorder;
    auto failing =
        *receiver::parse_sink_spec("fails=exec:printf '%05000d' 0; echo; echo last words; exit 3");
    failing.retry_max = 2;
    failing.retry_base = 10ms;
    failing.exec_concurrency = 1;  // the inline path
    auto working = *receiver::parse_sink_spec("works=exec:echo fine");
    working.exec_concurrency = 4;  // the workers' path
    f.put("ev-1", {"fails", "works"});
    receiver::Logger quiet(receiver::LogLevel::error, -1);
    auto dispatcher =
        receiver::Dispatcher::start(*f.spool, {failing, working}, quiet, f.metrics, &recorder);
    REQUIRE(dispatcher.ok());
    REQUIRE(poll_until([&] { return recorder.reports().size() == 3; }));
    (*dispatcher)->stop();
    std::vector<Report> fails, works;
    for (const auto& r : recorder.reports()) (r.sink == "fails" ? fails : works).push_back(r);
    REQUIRE(fails.size() == 2);
    REQUIRE(works.size() == 1);
    for (const auto& r : fails) {
      CHECK(r.delivery_id == "ev-1");
      CHECK(r.event == "lead.create");
      CHECK_FALSE(r.attempt.ok);
      CHECK(r.attempt.error == "exit status 3");
      CHECK(r.output.size() == 2048);  // the last 2 KiB
      CHECK(r.output.ends_with("0\nlast words\n"));
    }
    CHECK(fails[0].attempt.number == 1);
    CHECK_FALSE(fails[0].dead);
    CHECK(fails[0].next_attempt_at_ms >= fails[0].attempt.finished_at_ms);
    CHECK(fails[1].attempt.number == 2);
    CHECK(fails[1].dead);
    CHECK(fails[1].next_attempt_at_ms == 0);
    CHECK(works[0].attempt.ok);
    CHECK(works[0].attempt.number == 1);
    CHECK(works[0].output == "fine\n");
    CHECK(works[0].next_attempt_at_ms == 0);
  }
}

}  // namespace tdhook::test
