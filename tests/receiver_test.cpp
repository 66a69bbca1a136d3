// End-to-end tests of tdhook-receiver: the real binary, real HTTP on loopback, real sinks.
#include <doctest/doctest.h>
#include <signal.h>

#include <map>
#include <set>

#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* generic_401 = R"({"ok":false,"error":"unauthorized"})";

std::vector<std::string> with(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

bool file_has_lines(const std::filesystem::path& file, std::size_t n) {
  return count_lines_in(file) >= n;
}

}  // namespace

TEST_SUITE("receiver") {
  TEST_CASE("every sample event signed as Tiledesk signs it reaches stdout and a file once") {
    TempDir dir;
    const auto out_file = dir / "events.ndjson";
    ReceiverProcess rx(
        with(receiver_args(dir), {"--sink", "stdout", "--sink", "file:" + out_file.string()}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    const auto names = sample_event_names();
    REQUIRE(names.size() >= 10);
    std::map<std::string, std::string> id_of;  // delivery id -> sample name
    auto ts = epoch_ms();
    for (const auto& name : names) {
      const auto res =
          post_event(client, "/", sign_sample(name, receiver_secret, ts++), receiver_secret);
      REQUIRE(res);
      CHECK_MESSAGE(res->status == 200, name, ": ", res->body);
      const auto answer = json::parse(res->body);
      CHECK(answer.at("ok") == true);
      id_of[answer.at("id").get<std::string>()] = name;
    }
    REQUIRE(id_of.size() == names.size());
    REQUIRE(rx.wait_stdout(
        [&](const std::string& s) {
          return std::count(s.begin(), s.end(), '\n') >= static_cast<long>(names.size());
        },
        10s));
    REQUIRE(poll_until([&] { return file_has_lines(out_file, names.size()); }));
    for (const auto& text : {rx.stdout_text(), read_file(out_file)}) {
      const auto records = parse_ndjson(text);
      CHECK(records.size() == names.size());
      std::set<std::string> seen;
      for (const auto& r : records) {
        const auto id = r.at("id").get<std::string>();
        CHECK(seen.insert(id).second);
        REQUIRE(id_of.count(id) == 1);
        const auto sample = json::parse(load_sample(id_of[id]).dump());
        CHECK(r.at("event") == sample.at("hook").at("event"));
        CHECK(r.at("project_id") == sample.at("hook").at("id_project"));
        CHECK(r.at("subscription_id") == sample.at("hook").at("_id"));
        CHECK(r.at("timestamp").is_number_integer());
        CHECK(r.at("received_at").get<std::string>().size() == 24);
        CHECK(r.at("verified") == "secret+HS256");
        CHECK(r.at("hook") == sample.at("hook"));
        CHECK(r.at("payload") == sample.at("payload"));
        CHECK_FALSE(r.contains("token"));
      }
      CHECK(seen.size() == names.size());
    }
    CHECK(rx.stderr_text().find(receiver_secret) == std::string::npos);
  }

  TEST_CASE("refused requests get their status code, one generic 401 body, and reach no sink") {
    TempDir dir;
    const auto out_file = dir / "events.ndjson";
    ReceiverProcess rx(
        with(receiver_args(dir), {"--sink", "stdout", "--sink", "file:" + out_file.string(),
                                  "--max-body", "64KiB", "--max-age", "300"}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    const auto good = sign_sample("lead.create", receiver_secret, epoch_ms());
    const auto other_key =
        sign_sample("lead.create", "another-secret-of-the-same-length-xxxx", epoch_ms());
    const auto stale = sign_sample("lead.create", receiver_secret, epoch_ms() - 3600 * 1000);
    std::vector<std::string> tokens;
    for (const auto* body : {&good, &other_key, &stale}) {
      tokens.push_back(json::parse(*body).at("token").get<std::string>());
    }

    auto expect = [&](httplib::Result res, int status) {
      REQUIRE(res);
      CHECK(res->status == status);
      if (status == 401) CHECK(res->body == generic_401);
    };
    expect(post_event(client, "/", good, "wrong-secret"), 401);
    expect(post_event(client, "/", good, ""), 401);
    expect(post_event(client, "/", other_key, receiver_secret), 401);
    expect(post_event(client, "/", stale, receiver_secret), 401);
    expect(post_event(client, "/", "{not json", receiver_secret), 400);
    expect(post_event(client, "/", R"({"timestamp":"x","payload":{},"hook":{}})", receiver_secret),
           400);
    expect(post_event(client, "/", good, receiver_secret, "text/plain"), 415);
    expect(client.Get("/"), 405);
    expect(client.Put("/", good, "application/json"), 405);
    expect(post_event(client, "/elsewhere", good, receiver_secret), 404);

    SUBCASE("an oversized body is refused from its Content-Length, before it is sent") {
      const auto raw =
          raw_exchange(rx.port(),
                       "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "x-hook-secret: " +
                           std::string(receiver_secret) +
                           "\r\nContent-Length: 1073741824\r\n\r\n{\"timestamp\":");
      CHECK(raw.status == 413);
      CHECK(raw.elapsed < 2s);
      httplib::Client big("127.0.0.1", rx.port());
      const auto res = post_event(big, "/", std::string(200 * 1024, ' ') + good, receiver_secret);
      REQUIRE(res);
      CHECK(res->status == 413);
    }
    SUBCASE("charset parameters are fine") {
      expect(post_event(client, "/", good, receiver_secret, "application/json; charset=utf-8"),
             200);
    }
    // A marker event: once it is in the sinks, nothing refused before it can be there.
    const auto marker = sign_sample("request.create", receiver_secret, epoch_ms());
    expect(post_event(client, "/", marker, receiver_secret), 200);
    REQUIRE(poll_until([&] {
      const auto has = [](const std::string& text) {
        return text.find("\"event\":\"request.create\"") != std::string::npos;
      };
      return has(read_if_exists(out_file)) && has(rx.stdout_text());
    }));
    const auto in_file = parse_ndjson(read_file(out_file));
    for (const auto& records : {in_file, parse_ndjson(rx.stdout_text())}) {
      bool has_marker = false;
      for (const auto& r : records) {
        has_marker = has_marker || r.at("event") == "request.create";
        CHECK((r.at("event") == "request.create" || r.at("event") == "lead.create"));
      }
      CHECK(has_marker);
      CHECK(records.size() <= 2);  // the marker, and the charset subcase's lead
    }
    const auto log = rx.stderr_text();
    for (const char* reason : {"secret_mismatch", "missing_secret_header", "token_bad_signature",
                               "stale", "malformed_body", "malformed_envelope",
                               "unsupported_media_type", "method_not_allowed", "not_found"}) {
      CHECK_MESSAGE(log.find(std::string("\"reason\":\"") + reason + "\"") != std::string::npos,
                    reason);
    }
    CHECK(log.find(receiver_secret) == std::string::npos);
    for (const auto& token : tokens) CHECK(log.find(token) == std::string::npos);
  }

  TEST_CASE("the same body sent three times is stored and delivered once") {
    TempDir dir;
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", "stdout"}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    const auto body = sign_sample("message.create", receiver_secret, epoch_ms());
    std::set<std::string> ids;
    for (int i = 0; i < 3; ++i) {
      const auto res = post_event(client, "/", body, receiver_secret);
      REQUIRE(res);
      CHECK(res->status == 200);
      const auto answer = json::parse(res->body);
      ids.insert(answer.at("id").get<std::string>());
      CHECK(answer.value("duplicate", false) == (i > 0));
    }
    CHECK(ids.size() == 1);
    const auto marker = sign_sample("lead.create", receiver_secret, epoch_ms());
    REQUIRE(post_event(client, "/", marker, receiver_secret)->status == 200);
    REQUIRE(rx.wait_stdout(
        [](const std::string& s) { return s.find("lead.create") != std::string::npos; }, 10s));
    const auto records = parse_ndjson(rx.stdout_text());
    CHECK(records.size() == 2);
  }

  TEST_CASE("a retry is a duplicate after a restart, and a new occurrence once the window passed") {
    TempDir dir;
    write_file(dir / "secret", std::string(receiver_secret) + "\n");
    const auto sink = dir / "events.ndjson";
    write_file(dir / "rx.toml",
               "[receiver]\nlisten = \"127.0.0.1:0\"\nsecret_file = [\"" +
                   (dir / "secret").string() + "\"]\ndata_dir = \"" + (dir / "data").string() +
                   "\"\ndedup_window = \"1500ms\"\n\n[[sink]]\nspec = \"file:" + sink.string() +
                   "\"\n");
    const auto body = sign_sample("message.create", receiver_secret, epoch_ms());
    std::string first_id;
    {
      ReceiverProcess rx({"--config", (dir / "rx.toml").string()});
      REQUIRE(rx.wait_listening());
      httplib::Client client("127.0.0.1", rx.port());
      const auto stored = post_event(client, "/", body, receiver_secret);
      REQUIRE(stored);
      REQUIRE(stored->status == 200);
      first_id = json::parse(stored->body).at("id").get<std::string>();
      // Answered from the receiver's memory of recent keys.
      const auto again = json::parse(post_event(client, "/", body, receiver_secret)->body);
      CHECK(again.value("duplicate", false));
      CHECK(again.at("id") == first_id);
      REQUIRE(poll_until([&] { return count_lines_in(sink) >= 1; }));
      ::kill(rx.pid(), SIGTERM);
      REQUIRE(rx.wait_exit());
    }
    ReceiverProcess rx({"--config", (dir / "rx.toml").string()});
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    // A new process remembers nothing: the spool answers, with the first occurrence's id.
    const auto after_restart = json::parse(post_event(client, "/", body, receiver_secret)->body);
    std::string second_id = after_restart.at("id").get<std::string>();
    if (after_restart.value("duplicate", false)) {
      CHECK(second_id == first_id);
      // Once the window has passed, the same bytes are a new occurrence, stored and delivered.
      REQUIRE(poll_until(
          [&] {
            const auto res = post_event(client, "/", body, receiver_secret);
            if (!res || res->status != 200) return false;
            const auto answer = json::parse(res->body);
            second_id = answer.at("id").get<std::string>();
            return !answer.value("duplicate", false);
          },
          20s));
    }
    CHECK(second_id != first_id);
    REQUIRE(poll_until([&] { return count_lines_in(sink) >= 2; }));
    const auto records = parse_ndjson(read_file(sink));
    REQUIRE(records.size() == 2);
    CHECK(records[0].at("id") == first_id);
    CHECK(records[1].at("id") == second_id);
  }

  TEST_CASE("--no-verify accepts unauthenticated events and marks their records as not verified") {
    TempDir dir;
    ReceiverProcess rx(
        {"--listen", "127.0.0.1:0", "--data-dir", (dir / "data").string(), "--no-verify"});
    REQUIRE(rx.wait_listening());
    CHECK(rx.stderr_text().find("--no-verify") != std::string::npos);
    httplib::Client client("127.0.0.1", rx.port());
    auto sample = load_sample("lead.create");
    sample["timestamp"] = epoch_ms();
    const auto res = post_event(client, "/", sample.dump(), "");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(post_event(client, "/", "[1,2]", "")->status == 400);
    REQUIRE(rx.wait_stdout([](const std::string& s) { return s.find('\n') != std::string::npos; },
                           10s));
    const auto records = parse_ndjson(rx.stdout_text());
    REQUIRE(records.size() == 1);
    CHECK(records[0].at("verified") == "none");
    CHECK(records[0].at("event") == "lead.create");
  }

  TEST_CASE("the receiver refuses to start without a secret, and starts with TDHOOK_SECRETS") {
    TempDir dir;
    const std::vector<std::string> args{"--listen", "127.0.0.1:0", "--data-dir",
                                        (dir / "data").string()};
    ReceiverProcess refused(args);
    const auto code = refused.wait_exit();
    REQUIRE(code);
    CHECK(*code != 0);
    CHECK(refused.stderr_text().find("no secret configured") != std::string::npos);
    ReceiverProcess started(args, {std::string("TDHOOK_SECRETS=") + receiver_secret});
    CHECK(started.wait_listening());
  }

  TEST_CASE("/healthz and /metrics report the receiver's state") {
    TempDir dir;
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", "stdout"}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    const auto health = client.Get("/healthz");
    REQUIRE(health);
    CHECK(health->status == 200);
    CHECK(json::parse(health->body).at("ok") == true);
    REQUIRE(post_event(client, "/", sign_sample("lead.create", receiver_secret, epoch_ms()),
                       receiver_secret)
                ->status == 200);
    REQUIRE(post_event(client, "/", "{", "wrong")->status == 401);
    const auto metrics = client.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->status == 200);
    CHECK(metrics->get_header_value("Content-Type") == "text/plain; version=0.0.4");
    CHECK(metrics->body.find("tdhook_events_stored_total 1") != std::string::npos);
    CHECK(metrics->body.find(R"(tdhook_requests_total{status="401",reason="secret_mismatch"} 1)") !=
          std::string::npos);
    CHECK(metrics->body.find("tdhook_spool_pending") != std::string::npos);
    // The one event stored is in a segment on disk: a record of some kilobytes, framed.
    const auto at = metrics->body.find("\ntdhook_store_bytes ");
    REQUIRE(at != std::string::npos);
    CHECK(std::stoll(metrics->body.substr(at + 20)) > 500);
  }

  TEST_CASE("a config file gives two sinks their own filters, and flags override it") {
    TempDir dir;
    write_file(dir / "secret", std::string(receiver_secret) + "\n");
    const auto leads = dir / "leads.ndjson", requests = dir / "requests.ndjson";
    write_file(dir / "rx.toml",
               "# two sinks\n[receiver]\nlisten = \"127.0.0.1:0\"\npath = \"/from-file\"\n"
               "secret_file = [\"" +
                   (dir / "secret").string() +
                   "\"]\n"
                   "data_dir = \"" +
                   (dir / "data").string() +
                   "\"\nretry_base = \"50ms\"\n\n"
                   "[[sink]]\nspec = \"file:" +
                   leads.string() +
                   "\"\nevents = \"lead.*\"\n\n"
                   "[[sink]]  # requests only\nspec = 'file:" +
                   requests.string() +
                   "'\n"
                   "events = [\"request.create\", \"request.update\"]\n");
    ReceiverProcess rx({"--config", (dir / "rx.toml").string(), "--path", "/from-flag"});
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    auto ts = epoch_ms();
    CHECK(post_event(client, "/from-file", sign_sample("lead.create", receiver_secret, ts),
                     receiver_secret)
              ->status == 404);
    for (const char* name : {"lead.create", "request.create", "request.update", "faq.create"}) {
      CHECK(post_event(client, "/from-flag", sign_sample(name, receiver_secret, ts++),
                       receiver_secret)
                ->status == 200);
    }
    REQUIRE(
        poll_until([&] { return count_lines_in(leads) >= 1 && count_lines_in(requests) >= 2; }));
    const auto lead_records = parse_ndjson(read_file(leads));
    const auto request_records = parse_ndjson(read_file(requests));
    REQUIRE(lead_records.size() == 1);
    CHECK(lead_records[0].at("event") == "lead.create");
    REQUIRE(request_records.size() == 2);
    CHECK(request_records[0].at("event").get<std::string>().starts_with("request."));
    CHECK(request_records[1].at("event").get<std::string>().starts_with("request."));
  }

  TEST_CASE("a config file error names the file and the line, and the receiver does not start") {
    TempDir dir;
    write_file(dir / "bad.toml", "[receiver]\n# fine\nmax_body = \"8 MiB\"\n");
    ReceiverProcess rx({"--config", (dir / "bad.toml").string()});
    const auto code = rx.wait_exit();
    REQUIRE(code);
    CHECK(*code == 2);
    CHECK(rx.stderr_text().find("bad.toml:3: max_body") != std::string::npos);
  }
}

}  // namespace tdhook::test
