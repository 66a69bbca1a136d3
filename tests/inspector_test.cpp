// End-to-end tests of the inspector (--inspect): the real receiver, real HTTP on loopback, the
// inspector's JSON API and its event stream. Nothing the API answers may hold the subscription
// secret or a token.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include "inspect/recorder.hpp"
#include "inspect/views.hpp"
#include "support/files.hpp"
#include "support/raw_client.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* wrong_secret = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

std::vector<std::string> inspected(const TempDir& dir, std::initializer_list<std::string> more) {
  auto args = receiver_args(dir);
  args.insert(args.end(),
              {"--inspect", "127.0.0.1:0", "--sink", "file:" + (dir / "events.ndjson").string()});
  args.insert(args.end(), more);
  return args;
}

// The token of a signed body, and its signature part.
std::string token_of(const std::string& body) { return json::parse(body).at("token"); }
std::string signature_of(const std::string& body) {
  const auto token = token_of(body);
  return token.substr(token.rfind('.') + 1);
}

json get_json(httplib::Client& client, const std::string& path, int expected = 200) {
  const auto res = client.Get(path.c_str());
  REQUIRE_MESSAGE(res, "no answer to ", path);
  CHECK_MESSAGE(res->status == expected, path, ": ", res->body);
  CHECK(res->get_header_value("Content-Type").starts_with("application/json"));
  return json::parse(res->body);
}

// The JSON body of a raw HTTP answer.
json body_of(const RawResponse& res) {
  const auto at = res.text.find("\r\n\r\n");
  REQUIRE(at != std::string::npos);
  return json::parse(res.text.substr(at + 4));
}

RawResponse raw_get(int port, const std::string& target, const std::string& extra = {}) {
  return raw_exchange(port, "GET " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n" +
                                extra + "Connection: close\r\n\r\n");
}

void expect_json_error(const RawResponse& res, int status, const std::string& what) {
  CHECK_MESSAGE(res.status == status, what, ": ", res.text.substr(0, 300));
  if (res.status != status) return;
  CHECK_MESSAGE(res.text.find("Content-Type: application/json") != std::string::npos, what);
  const auto body = body_of(res);
  CHECK(body.at("ok") == false);
  CHECK(body.at("error").is_string());
}

const json* find_by_reason(const json& list, const std::string& reason) {
  for (const auto& item : list.at("requests")) {
    if (item.at("reason") == reason) return &item;
  }
  return nullptr;
}

// A raw connection to the event stream.
class EventStream {
 public:
  explicit EventStream(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    const std::string request =
        "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
        "\r\nAccept: text/event-stream\r\n\r\n";
    connected_ = ::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) ==
                 static_cast<ssize_t>(request.size());
  }
  ~EventStream() { ::close(fd_); }
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  bool connected() const { return connected_; }
  const std::string& text() const { return text_; }

  // Reads until `needle` has arrived (after `from`), the stream ends or `timeout` passes.
  bool read_until(const std::string& needle, std::chrono::milliseconds timeout,
                  std::size_t from = 0) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[8192];
    while (text_.find(needle, from) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      text_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string text_;
};

}  // namespace

TEST_SUITE("inspector") {
  TEST_CASE("inspector: the body's token is masked wherever the top-level object puts it") {
    using receiver::inspect::body_without_token;
    const auto masked = [](const std::string& body, const std::string& secret) {
      const auto out = body_without_token(body);
      CHECK_MESSAGE(out.find(secret) == std::string::npos, body, " -> ", out);
      return out;
    };
    const std::string expected = R"x({"a":1,"token":"(hidden: the token, 11 characters)"})x";
    CHECK(masked(R"({"a":1,"token":"abc.def.ghi"})", "abc.def.ghi") == expected);
    masked(R"({"token" : "x1.y1.z1", "token":"p2.q2.r2"})", "x1.y1.z1");
    masked(R"({"token" : "x1.y1.z1", "token":"p2.q2.r2"})", "p2.q2.r2");
    masked(R"({"\u0074oken":"s3.e3.c3"})", "s3.e3.c3");
    masked(R"({"a":"}\"{","token":"t4.t4.t4"})", "t4.t4.t4");
    masked(R"({"token":"unterminated.t5)", "unterminated.t5");
    // Not the envelope's token: left as it is.
    CHECK(body_without_token(R"({"payload":{"token":"keep"}})") ==
          R"({"payload":{"token":"keep"}})");
    CHECK(body_without_token(R"(["token","keep"])") == R"(["token","keep"])");
    CHECK(body_without_token(R"({"token":123})") == R"({"token":123})");
    CHECK(body_without_token("not json at all") == "not json at all");
    CHECK(receiver::inspect::json_depth_within("[[[]]]", 3));
    CHECK_FALSE(receiver::inspect::json_depth_within("[[[[]]]]", 3));
    CHECK(receiver::inspect::json_depth_within(R"(["[[[[[["])", 1));
    // The token is decoded part by part (tdhook::base64url_decode, tests/sign_test.cpp): a part
    // that is not base64url ('+' and '/' are base64's standard alphabet, '=' its padding) is
    // said so, beside the parts that are.
    receiver::inspect::Snapshot snapshot;
    snapshot.id = 1;
    snapshot.kept.request.status = 401;
    snapshot.kept.request.reason = "token_malformed";
    snapshot.kept.request.body = R"({"token":"eyJhIjoxfQ.ey+/.c2ln"})";
    snapshot.kept.request.body_read = true;
    const auto token = receiver::inspect::detail(&snapshot, nullptr, "", {}).at("token");
    CHECK(token.at("header").dump() == R"({"a":1})");
    CHECK(token.at("claims").dump() == R"({"error":"not base64url"})");
    snapshot.kept.request.body = R"({"token":"eyJhIjoxfQ==.e30.c2ln"})";
    const auto padded = receiver::inspect::detail(&snapshot, nullptr, "", {}).at("token");
    CHECK(padded.at("header").dump() == R"({"error":"not base64url"})");
    CHECK(padded.at("claims").dump() == "{}");
  }

  // A stored request as the intake reports it: views into strings the test holds.
  struct Reported {
    std::string delivery_id;
    std::vector<std::string> sinks{"a", "b"};
    std::string body = std::string(100, 'x');
    std::vector<std::pair<std::string, std::string>> headers{{"Content-Type", "application/json"}};

    void to(receiver::RequestObserver& observer) const {
      receiver::ObservedRequest r;
      r.received_at_ms = 1000;
      r.method = "POST";
      r.target = "/";
      r.headers = headers;
      r.sinks = sinks;
      r.body = body;
      r.body_read = true;
      r.event = "lead.create";
      const auto ticket = observer.begin(r);
      observer.settle(ticket, receiver::ObservedOutcome{200, "stored", {}, delivery_id});
    }
  };

  TEST_CASE("inspector: the recorder keeps the last requests and their deliveries' progress") {
    using namespace receiver::inspect;
    Recorder recorder(3);
    auto attempt = [](const std::string& delivery_id, const std::string& sink, bool ok, bool dead) {
      receiver::AttemptReport report;
      report.delivery_id = delivery_id;
      report.sink = sink;
      report.received_at_ms = 1000;
      report.attempt = receiver::ReportedAttempt{1, 1010, 1020, ok, ok ? "" : "exit status 3"};
      report.output = "the script said something";
      report.dead = dead;
      report.next_attempt_at_ms = dead ? 0 : 5000;
      return report;
    };
    // An attempt reported before its request (the dispatcher was quicker than the intake).
    recorder.on_attempt(attempt("d1", "a", true, false));
    Reported{"d1"}.to(recorder);
    auto first = recorder.get(1);
    REQUIRE(first);
    CHECK(first->kept.request.delivery_id == "d1");
    CHECK(first->kept.request.headers.at(0).second == "application/json");
    REQUIRE(first->progress.size() == 2);
    CHECK(first->progress[0].state == SinkState::delivered);
    CHECK(first->progress[0].latency_ms == 20);
    CHECK(first->progress[1].state == SinkState::pending);
    recorder.on_attempt(attempt("d1", "b", false, false));
    first = recorder.get(1);
    CHECK(first->progress[1].state == SinkState::retrying);
    CHECK(first->progress[1].last_error == "exit status 3");
    CHECK(first->progress[1].history.at(0).output == "the script said something");
    recorder.on_attempt(attempt("d1", "b", false, true));
    CHECK(recorder.get(1)->progress[1].state == SinkState::dead);
    CHECK(recorder.find_stored("d1") == std::optional<std::uint64_t>(1));
    // A reader's copy of the first request outlives the ring's wrapping.
    const auto held = recorder.get(1);
    for (int i = 2; i <= 5; ++i) Reported{"d" + std::to_string(i)}.to(recorder);
    CHECK(recorder.newest() == 5);
    CHECK_FALSE(recorder.get(2));
    CHECK_FALSE(recorder.find_stored("d1"));
    CHECK(held->kept.request.delivery_id == "d1");
    // The slot reused by request 4 starts with no progress of its own.
    const auto four = recorder.get(4);
    REQUIRE(four);
    CHECK(four->kept.request.delivery_id == "d4");
    REQUIRE(four->progress.size() == 2);
    CHECK(four->progress[0].state == SinkState::pending);
    CHECK(four->progress[1].history.empty());
    const auto listed = recorder.requests_before(0, 100);
    REQUIRE(listed.size() == 3);
    CHECK(listed[0].id == 5);
    CHECK(listed[2].id == 3);
    CHECK(recorder.requests_before(5, 100).size() == 2);
    CHECK(recorder.requests_before(0, 2).size() == 2);
    // A summary's copy leaves out the body of a verified event.
    CHECK(recorder.get(5, Recorder::Body::summary)->kept.request.body.empty());
    // A body over the kept size is cut; its size is remembered.
    Reported big{"d6"};
    big.body = std::string(recorder.body_cap() + 10, 'y');
    big.to(recorder);
    const auto six = recorder.get(6);
    REQUIRE(six);
    CHECK(six->kept.request.body.size() == recorder.body_cap());
    CHECK(six->kept.body_size == recorder.body_cap() + 10);
    // A ticket of 0 (nothing kept) is settled without effect.
    recorder.settle(0, receiver::ObservedOutcome{200, "stored", {}, "d7"});
    CHECK(recorder.newest() == 6);
    CHECK(recorder.dropped() == 0);
  }

  TEST_CASE("inspector: a request read while others are written is whole, its body its own") {
    using namespace receiver::inspect;
    constexpr std::size_t keep = 16;
    Recorder recorder(keep);
    // Each request's body, headers and sink name its delivery id; lengths vary, so that a slot's
    // buffers are reused for larger and smaller requests.
    auto writer = [&](int from) {
      for (int i = 0; i < 20000; ++i) {
        const auto id = "w" + std::to_string(from) + "-" + std::to_string(i);
        Reported r{id};
        r.body = "{\"id\":\"" + id + "\",\"pad\":\"" +
                 std::string(static_cast<std::size_t>(i % 700), 'p') + "\"}";
        r.headers = {{"X-Id", id}, {"Content-Length", std::to_string(r.body.size())}};
        r.sinks = {"sink-" + id};
        r.to(recorder);
        receiver::AttemptReport report;
        report.delivery_id = id;
        report.sink = r.sinks[0];
        report.attempt = receiver::ReportedAttempt{1, 1, 2, true, {}};
        report.output = id;
        recorder.on_attempt(report);
      }
    };
    std::thread first(writer, 1), second(writer, 2);
    std::size_t checked = 0, mismatched = 0;
    auto whole = [&](const Snapshot& s) {
      const auto& r = s.kept.request;
      const auto& id = r.delivery_id;
      const auto frame = id.size() + 18;  // {"id":"ID","pad":""}
      bool ok = r.body.size() >= frame && r.body == "{\"id\":\"" + id + "\",\"pad\":\"" +
                                                        std::string(r.body.size() - frame, 'p') +
                                                        "\"}";
      ok = ok && s.kept.body_size == r.body.size();
      ok = ok && r.headers.size() == 2 && r.headers[0].second == id &&
           r.headers[1].second == std::to_string(r.body.size());
      ok = ok && r.sinks == std::vector<std::string>{"sink-" + id};
      ok = ok && s.progress.size() == 1 && s.progress[0].sink == "sink-" + id;
      if (ok && !s.progress[0].history.empty()) ok = s.progress[0].history[0].output == id;
      ++checked;
      if (!ok) ++mismatched;
    };
    while (recorder.newest() < 40000) {
      const auto newest = recorder.newest();
      for (std::uint64_t id = newest > keep ? newest - keep + 1 : 1; id <= newest; ++id) {
        if (auto s = recorder.get(id)) whole(*s);
      }
      for (const auto& s : recorder.requests_before(0, keep)) whole(s);
    }
    first.join();
    second.join();
    CHECK(checked > 0);
    CHECK(mismatched == 0);
    CHECK(recorder.dropped() == 0);
    CHECK(recorder.requests_before(0, 100).size() == keep);
  }

  TEST_CASE("inspector: stored, duplicate, filtered and refused requests; detail, raw, replay") {
    TempDir dir;
    ReceiverProcess rx(inspected(dir, {"--events", "lead.create,request.*"}));
    REQUIRE(rx.wait_listening());
    REQUIRE(rx.wait_inspector());
    httplib::Client receiver("127.0.0.1", rx.port());
    httplib::Client api("127.0.0.1", rx.inspector_port());

    const auto ts = epoch_ms();
    const auto good = sign_sample("lead.create", receiver_secret, ts);
    const auto refused = sign_sample("request.create", receiver_secret, ts + 1);
    const auto filtered = sign_sample("faq.create", receiver_secret, ts + 2);
    auto answer = post_event(receiver, "/", good, receiver_secret);
    REQUIRE(answer);
    REQUIRE(answer->status == 200);
    const std::string delivery_id = json::parse(answer->body).at("id");
    answer = post_event(receiver, "/", good, receiver_secret);  // a retry: the same body
    REQUIRE(answer);
    CHECK(answer->status == 200);
    answer = post_event(receiver, "/", refused, wrong_secret);
    REQUIRE(answer);
    CHECK(answer->status == 401);
    answer = post_event(receiver, "/", filtered, receiver_secret);
    REQUIRE(answer);
    CHECK(answer->status == 200);
    REQUIRE(poll_until([&] { return count_lines_in(dir / "events.ndjson") >= 1; }));

    // Everything the inspector answers, to be searched for secrets and tokens.
    std::string served;
    auto list = get_json(api, "/api/requests");
    served += list.dump();
    REQUIRE(list.at("requests").size() == 4);
    // Newest first.
    CHECK(list["requests"][0]["outcome"] == "filtered");
    CHECK(list["requests"][1]["outcome"] == "refused");
    CHECK(list["requests"][2]["outcome"] == "duplicate");
    CHECK(list["requests"][3]["outcome"] == "stored");
    const auto* stored = find_by_reason(list, "stored");
    const auto* dup = find_by_reason(list, "duplicate");
    const auto* mismatch = find_by_reason(list, "secret_mismatch");
    const auto* out = find_by_reason(list, "filtered");
    REQUIRE(stored);
    REQUIRE(dup);
    REQUIRE(mismatch);
    REQUIRE(out);
    CHECK(stored->at("event") == "lead.create");
    CHECK(stored->at("delivery_id") == delivery_id);
    CHECK(stored->at("status") == 200);
    CHECK(stored->at("from_store") == false);
    CHECK(stored->at("sinks").size() == 1);
    CHECK(dup->at("delivery_id") == delivery_id);
    CHECK(mismatch->at("status") == 401);
    CHECK(mismatch->at("outcome") == "refused");
    CHECK(mismatch->at("event") == "request.create");  // what the body claims
    CHECK(mismatch->at("claimed") == true);
    CHECK(out->at("event") == "faq.create");
    CHECK(out->at("status") == 200);

    SUBCASE("filters") {
      auto only = [&](const std::string& query) {
        auto l = get_json(api, "/api/requests?" + query);
        served += l.dump();
        std::vector<std::string> reasons;
        for (const auto& item : l.at("requests")) reasons.push_back(item.at("reason"));
        return reasons;
      };
      CHECK(only("outcome=refused") == std::vector<std::string>{"secret_mismatch"});
      CHECK(only("outcome=secret_mismatch") == std::vector<std::string>{"secret_mismatch"});
      CHECK(only("outcome=duplicate") == std::vector<std::string>{"duplicate"});
      CHECK(only("outcome=filtered") == std::vector<std::string>{"filtered"});
      CHECK(only("outcome=stored") == std::vector<std::string>{"stored"});
      CHECK(only("event=faq.*") == std::vector<std::string>{"filtered"});
      CHECK(only("event=lead.create&outcome=stored") == std::vector<std::string>{"stored"});
      CHECK(only("q=" + delivery_id) == std::vector<std::string>{"duplicate", "stored"});
      // Bodies are searched: the lead's (stored, duplicate) and the refused request's.
      CHECK(only("q=ada.lovelace%40example.org").size() == 3);
      CHECK(only("limit=1").size() == 1);
      const auto first = get_json(api, "/api/requests?limit=2");
      const std::string before = first.at("requests")[1].at("id");
      CHECK(only("before=" + before) == std::vector<std::string>{"duplicate", "stored"});
      // A search never tells what the token holds.
      CHECK(only("q=" + signature_of(good)).empty());
    }

    SUBCASE("the refusal's detail: masked secret, claims, the failing check") {
      auto d = get_json(api, "/api/requests/" + mismatch->at("id").get<std::string>());
      served += d.dump();
      CHECK(d.at("failed_check") == "secret");
      CHECK(d.at("explanation").get<std::string>().find("another secret") != std::string::npos);
      bool masked = false;
      for (const auto& h : d.at("request").at("headers")) {
        if (h[0] == "x-hook-secret") masked = h[1] == "(hidden, 36 characters)";
      }
      CHECK(masked);
      std::map<std::string, std::string> states;
      for (const auto& c : d.at("checks")) states[c.at("id")] = c.at("state");
      CHECK(states["content_type"] == "passed");
      CHECK(states["secret_header"] == "passed");
      CHECK(states["secret"] == "failed");
      CHECK(states["signature"] == "not_run");
      // The token is decoded (its claims are the hook), its signature not checked.
      const auto& token = d.at("token");
      CHECK(token.at("signature") == "not checked");
      CHECK(token.at("header").at("alg") == "HS256");
      CHECK(token.at("claims").at("iss") == "https://tiledesk.com");
      CHECK(token.at("claims").at("event") == "request.create");
      CHECK(d.at("record").is_null());
      CHECK(d.at("can_replay") == false);
      const auto replay =
          api.Post(("/api/requests/" + mismatch->at("id").get<std::string>() + "/replay").c_str());
      REQUIRE(replay);
      CHECK(replay->status == 409);
      CHECK(json::parse(replay->body).at("error") == "not_stored");
    }

    SUBCASE("the stored event's detail and raw download") {
      auto d = get_json(api, "/api/requests/" + stored->at("id").get<std::string>());
      served += d.dump();
      CHECK(d.at("failed_check").is_null());
      for (const auto& c : d.at("checks")) {
        const std::string id = c.at("id");
        CHECK_MESSAGE(c.at("state") == "passed", id);
      }
      CHECK(d.at("token").at("signature") == "checked");
      CHECK(d.at("token").at("claims").at("_id") == "65ae3debc91f04aa2e3a1109");
      const auto record = json::parse(d.at("record").get<std::string>());
      CHECK(record.at("id") == delivery_id);
      CHECK(record.at("event") == "lead.create");
      CHECK(d.at("deliveries").size() == 1);
      CHECK(d.at("can_replay") == true);
      // The same event by its delivery id.
      auto by_id = get_json(api, "/api/requests/" + delivery_id);
      served += by_id.dump();
      CHECK(by_id.at("id") == stored->at("id"));
      // The duplicate points at it.
      auto dd = get_json(api, "/api/requests/" + dup->at("id").get<std::string>());
      served += dd.dump();
      CHECK(dd.at("duplicate_of") == delivery_id);
      CHECK(dd.at("explanation").get<std::string>().find("already stored") != std::string::npos);
      // The filtered event: the event filter is the check that decided.
      auto fd = get_json(api, "/api/requests/" + out->at("id").get<std::string>());
      served += fd.dump();
      CHECK(fd.at("failed_check") == "event_filter");

      for (const auto& which : {stored, mismatch}) {
        const auto raw =
            api.Get(("/api/requests/" + which->at("id").get<std::string>() + "/raw").c_str());
        REQUIRE(raw);
        CHECK(raw->status == 200);
        CHECK(raw->get_header_value("Content-Disposition").starts_with("attachment"));
        CHECK(raw->body.starts_with("POST / HTTP/1.1\r\n"));
        CHECK(raw->body.find("x-hook-secret: (hidden, 36 characters)") != std::string::npos);
        CHECK(raw->body.find("\"payload\":") != std::string::npos);
        served += raw->body;
      }
    }

    SUBCASE("replay: a new delivery reaches the file sink") {
      const auto res =
          api.Post(("/api/requests/" + stored->at("id").get<std::string>() + "/replay").c_str());
      REQUIRE(res);
      REQUIRE_MESSAGE(res->status == 200, res->body);
      const auto body = json::parse(res->body);
      const std::string replayed = body.at("delivery_id");
      CHECK(replayed != delivery_id);
      CHECK(body.at("replay_of") == delivery_id);
      REQUIRE(poll_until([&] { return count_lines_in(dir / "events.ndjson") >= 2; }));
      const auto records = parse_ndjson(read_file(dir / "events.ndjson"));
      REQUIRE(records.size() == 2);
      CHECK(records[1].at("id") == replayed);
      CHECK(records[1].at("payload") == records[0].at("payload"));
      // Listed first, as a replay of the stored event; replayed again by its delivery id.
      auto l = get_json(api, "/api/requests?limit=1");
      CHECK(l["requests"][0]["replay_of"] == delivery_id);
      CHECK(l["requests"][0]["delivery_id"] == replayed);
      const auto again = api.Post(("/api/requests/" + replayed + "/replay").c_str());
      REQUIRE(again);
      CHECK(again->status == 200);
      REQUIRE(poll_until([&] { return count_lines_in(dir / "events.ndjson") >= 3; }));
      const auto missing = api.Post("/api/requests/424242/replay");
      REQUIRE(missing);
      CHECK(missing->status == 404);
    }

    // Never the secrets (the right one or the wrong one), never a token or its signature.
    CHECK(served.find(receiver_secret) == std::string::npos);
    CHECK(served.find(wrong_secret) == std::string::npos);
    for (const auto* body : {&good, &refused, &filtered}) {
      CHECK(served.find(token_of(*body)) == std::string::npos);
      CHECK(served.find(signature_of(*body)) == std::string::npos);
    }
    const auto log = rx.stderr_text();
    CHECK(log.find(receiver_secret) == std::string::npos);
    CHECK(log.find(signature_of(good)) == std::string::npos);
  }

  TEST_CASE("inspector: past --inspect-keep the oldest go, the newest are listed in order") {
    TempDir dir;
    ReceiverProcess rx(inspected(dir, {"--inspect-keep", "5"}));
    REQUIRE(rx.wait_listening());
    REQUIRE(rx.wait_inspector());
    httplib::Client receiver("127.0.0.1", rx.port());
    httplib::Client api("127.0.0.1", rx.inspector_port());
    const auto ts = epoch_ms();
    std::vector<std::string> ids;
    for (int i = 0; i < 8; ++i) {
      const auto answer = post_event(
          receiver, "/", sign_sample("lead.create", receiver_secret, ts + i), receiver_secret);
      REQUIRE(answer);
      REQUIRE(answer->status == 200);
      ids.push_back(json::parse(answer->body).at("id"));
    }
    const auto list = get_json(api, "/api/requests");
    CHECK(list.at("newest") == "8");
    std::vector<std::string> numbers, kept_ids, evicted;
    for (const auto& item : list.at("requests")) {
      if (item.at("from_store") == true) {
        evicted.push_back(item.at("delivery_id"));
      } else {
        numbers.push_back(item.at("id"));
        kept_ids.push_back(item.at("delivery_id"));
      }
    }
    // The last five in memory, newest first; the three before them only in the store.
    CHECK(numbers == std::vector<std::string>{"8", "7", "6", "5", "4"});
    CHECK(kept_ids == std::vector<std::string>{ids[7], ids[6], ids[5], ids[4], ids[3]});
    // (From the store newest first by time, then by id: UUIDs of one millisecond are in no order.)
    std::vector<std::string> oldest{ids[0], ids[1], ids[2]};
    std::sort(oldest.begin(), oldest.end());
    std::sort(evicted.begin(), evicted.end());
    CHECK(evicted == oldest);
    // The detail of a number no longer kept is a JSON 404; a kept one is its own request.
    const auto gone = raw_get(rx.inspector_port(), "/api/requests/1");
    expect_json_error(gone, 404, "an evicted request");
    if (gone.status == 404) CHECK(body_of(gone).at("error") == "not_found");
    const auto four = get_json(api, "/api/requests/4");
    CHECK(four.at("summary").at("delivery_id") == ids[3]);
    CHECK(four.at("request").at("available") == true);
    // By its delivery id, an evicted stored event comes from the store.
    const auto first = get_json(api, "/api/requests/" + ids[0]);
    CHECK(first.at("summary").at("from_store") == true);
  }

  TEST_CASE("inspector: a detail read while requests pour in is one request's, body and all") {
    TempDir dir;
    ReceiverProcess rx(inspected(dir, {"--inspect-keep", "20"}));
    REQUIRE(rx.wait_listening());
    REQUIRE(rx.wait_inspector());
    httplib::Client api("127.0.0.1", rx.inspector_port());
    constexpr int total = 300;
    std::atomic<int> posted{0};
    std::thread poster([&] {
      httplib::Client receiver("127.0.0.1", rx.port());
      const auto ts = epoch_ms();
      for (int i = 0; i < total; ++i) {
        post_event(receiver, "/", sign_sample("lead.create", receiver_secret, ts + i),
                   receiver_secret);
        posted.fetch_add(1);
      }
    });
    int details = 0;
    while (posted.load() < total) {
      const auto list = get_json(api, "/api/requests?limit=20");
      for (const auto& item : list.at("requests")) {
        if (item.at("from_store") == true) continue;
        const std::string number = item.at("id");
        const auto res = api.Get(("/api/requests/" + number).c_str());
        REQUIRE(res);
        if (res->status == 404) continue;  // evicted meanwhile
        REQUIRE(res->status == 200);
        const auto d = json::parse(res->body);
        CHECK(d.at("id") == number);
        CHECK(d.at("summary").at("id") == number);
        // The body kept in memory and the record the store holds under the request's delivery id
        // are the same event.
        const auto body = json::parse(d.at("request").at("body").at("raw").get<std::string>());
        const auto record = json::parse(d.at("record").get<std::string>());
        CHECK(record.at("id") == d.at("summary").at("delivery_id"));
        CHECK(body.at("timestamp") == record.at("timestamp"));
        ++details;
      }
    }
    poster.join();
    CHECK(details > 0);
    MESSAGE(details, " details read while ", total, " requests were posted");
  }

  TEST_CASE("inspector: bad input gets a JSON 4xx and the inspector stays up") {
    TempDir dir;
    ReceiverProcess rx(inspected(dir, {}));
    REQUIRE(rx.wait_listening());
    REQUIRE(rx.wait_inspector());
    const int port = rx.inspector_port();
    httplib::Client receiver("127.0.0.1", rx.port());
    REQUIRE(post_event(receiver, "/", sign_sample("lead.create", receiver_secret, epoch_ms()),
                       receiver_secret));

    expect_json_error(raw_get(port, "/api/requests/%00"), 400, "a NUL id");
    expect_json_error(raw_get(port, "/api/requests/" + std::string(5000, '7')), 400, "a long id");
    expect_json_error(raw_get(port, "/api/requests/" + std::string(5000, 'x') + "/raw"), 400,
                      "a long id, raw");
    expect_json_error(raw_get(port, "/api/requests/..%2F..%2Fetc%2Fpasswd"), 400, "../ encoded");
    expect_json_error(raw_get(port, "/api/requests/../../etc/passwd"), 400, "../ plain");
    expect_json_error(raw_get(port, "/api/requests/-1"), 400, "a negative id");
    expect_json_error(raw_get(port, "/api/requests/0"), 400, "id 0");
    expect_json_error(raw_get(port, "/api/requests/99999999999999999999999"), 400, "overflow");
    expect_json_error(raw_get(port, "/api/requests/123456"), 404, "an id not kept");
    expect_json_error(raw_get(port, "/api/requests/0190a8c4-5b2e-7c3d-8e4f-a1b2c3d4e5f6"), 404,
                      "an unknown delivery id");
    expect_json_error(raw_get(port, "/api/requests/1/nope"), 404, "an unknown action");
    expect_json_error(raw_get(port, "/api/requests?limit=-1"), 400, "limit=-1");
    expect_json_error(raw_get(port, "/api/requests?limit=0"), 400, "limit=0");
    expect_json_error(raw_get(port, "/api/requests?limit=1001"), 400, "limit=1001");
    expect_json_error(raw_get(port, "/api/requests?limit=99999999999999999999999"), 400,
                      "a huge limit");
    expect_json_error(raw_get(port, "/api/requests?limit=abc"), 400, "limit=abc");
    expect_json_error(raw_get(port, "/api/requests?before=x"), 400, "before=x");
    expect_json_error(raw_get(port, "/api/requests?event=a..b"), 400, "a bad pattern");
    expect_json_error(raw_get(port, "/api/requests?outcome=%3Cscript%3E"), 400, "a bad outcome");
    expect_json_error(raw_get(port, "/api/requests?q=" + std::string(300, 'a')), 400, "a long q");
    expect_json_error(raw_get(port, "/api/requests?q=" + std::string(100 * 1024, 'a')), 414,
                      "a 100 KB query string");
    expect_json_error(raw_get(port, "/api/nope"), 404, "an unknown API path");
    expect_json_error(raw_get(port, "/nope"), 404, "an unknown page");
    expect_json_error(raw_get(port, "/api/requests", "X-Big: " + std::string(20000, 'h') + "\r\n"),
                      431, "a huge header");
    expect_json_error(raw_exchange(port,
                                   "DELETE /api/requests/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "Connection: close\r\n\r\n"),
                      405, "DELETE");
    expect_json_error(raw_exchange(port,
                                   "POST /api/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "Content-Length: 0\r\nConnection: close\r\n\r\n"),
                      405, "POST on the list");
    // DNS rebinding: a Host that is not loopback; another origin's POST.
    expect_json_error(raw_exchange(port,
                                   "GET /api/requests HTTP/1.1\r\nHost: evil.example\r\n"
                                   "Connection: close\r\n\r\n"),
                      403, "a foreign Host");
    expect_json_error(
        raw_exchange(port, "POST /api/requests/1/replay HTTP/1.1\r\nHost: 127.0.0.1:" +
                               std::to_string(port) +
                               "\r\nOrigin: http://evil.example\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n"),
        403, "another origin's POST");
    // Garbage instead of HTTP.
    const auto garbage = raw_exchange(port, std::string(3000, '\x01') + "\r\n\r\n");
    CHECK(garbage.status != 200);

    // Hostile bodies on the receiver's side: nested 100 000 deep, invalid UTF-8, a duplicated
    // token key. Their details are still JSON, and neither token is served.
    httplib::Client api("127.0.0.1", port);
    const auto nested = post_event(receiver, "/", std::string(100000, '['), receiver_secret);
    REQUIRE(nested);
    CHECK(nested->status == 400);
    REQUIRE(post_event(receiver, "/", "{\"payload\":\"\xff\xfe\xc3\"}", receiver_secret));
    REQUIRE(post_event(receiver, "/",
                       R"({"timestamp":1,"payload":{},"hook":{},"token":"aaa.bbb.first",)"
                       R"("token":"ccc.ddd.second"})",
                       receiver_secret));
    for (int id = 2; id <= 4; ++id) {
      const auto d = get_json(api, "/api/requests/" + std::to_string(id));
      CHECK(d.at("request").at("body").at("json") == (id == 4));
      const auto text = d.dump();
      CHECK(text.find("first") == std::string::npos);
      CHECK(text.find("second") == std::string::npos);
      const auto raw = api.Get(("/api/requests/" + std::to_string(id) + "/raw").c_str());
      REQUIRE(raw);
      CHECK(raw->status == 200);
      CHECK(raw->body.find("first") == std::string::npos);
      CHECK(raw->body.find("second") == std::string::npos);
    }

    // Still up, and still answering.
    const auto list = get_json(api, "/api/requests");
    CHECK(list.at("requests").size() == 4);
    CHECK(get_json(api, "/api/info").at("ok") == true);
    const auto page = api.Get("/");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->get_header_value("Content-Type").starts_with("text/html"));
    CHECK(page->body.find("tdhook") != std::string::npos);
    CHECK(page->get_header_value("Content-Security-Policy").find("default-src 'none'") !=
          std::string::npos);
    for (const char* asset : {"/app.js", "/style.css"}) {
      const auto res = api.Get(asset);
      REQUIRE(res);
      CHECK_MESSAGE(res->status == 200, asset);
      CHECK(!res->body.empty());
    }
  }

  TEST_CASE("inspector: token mode") {
    TempDir dir;
    const std::string token = "insp-7f3c9a1e5b2d4c6a8e0f1a2b3c4d5e6f";
    write_file(dir / "inspect-token", token + "\n");
    ReceiverProcess rx(inspected(dir, {"--inspect-token-file", (dir / "inspect-token").string()}));
    REQUIRE(rx.wait_listening());
    REQUIRE(rx.wait_inspector());
    const int port = rx.inspector_port();
    httplib::Client api("127.0.0.1", port);

    auto res = api.Get("/api/requests");
    REQUIRE(res);
    CHECK(res->status == 401);
    CHECK(json::parse(res->body).at("error") == "unauthorized");
    res = api.Get("/api/stream");
    REQUIRE(res);
    CHECK(res->status == 401);
    res = api.Get("/api/requests", {{"Authorization", "Bearer wrong-token"}});
    REQUIRE(res);
    CHECK(res->status == 401);
    res = api.Get("/api/requests", {{"Authorization", "Bearer " + token}});
    REQUIRE(res);
    CHECK(res->status == 200);
    // The page sends a browser to the login form.
    res = api.Get("/");
    REQUIRE(res);
    CHECK(res->status == 303);
    CHECK(res->get_header_value("Location") == "/login");
    res = api.Get("/login");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body.find("name=\"token\"") != std::string::npos);

    // The form: a wrong token, then the right one sets an HttpOnly, SameSite=Strict cookie.
    res = api.Post("/login", "token=nope", "application/x-www-form-urlencoded");
    REQUIRE(res);
    CHECK(res->status == 401);
    CHECK(res->get_header_value("Set-Cookie").empty());
    res = api.Post("/login", "token=" + token, "application/x-www-form-urlencoded");
    REQUIRE(res);
    CHECK(res->status == 303);
    const auto cookie = res->get_header_value("Set-Cookie");
    CHECK(cookie.find("HttpOnly") != std::string::npos);
    CHECK(cookie.find("SameSite=Strict") != std::string::npos);
    CHECK(cookie.find(token) == std::string::npos);
    const auto session = cookie.substr(0, cookie.find(';'));
    res = api.Get("/api/requests", {{"Cookie", session}});
    REQUIRE(res);
    CHECK(res->status == 200);
    res = api.Get("/", {{"Cookie", session}});
    REQUIRE(res);
    CHECK(res->status == 200);
    res = api.Get("/api/requests", {{"Cookie", "tdhook_inspector=0123456789abcdef"}});
    REQUIRE(res);
    CHECK(res->status == 401);

    // The one-time link: /login?token=...
    res = api.Get(("/login?token=" + token).c_str());
    REQUIRE(res);
    CHECK(res->status == 303);
    const auto link_cookie = res->get_header_value("Set-Cookie");
    CHECK(link_cookie.starts_with("tdhook_inspector="));
    res = api.Get("/api/info", {{"Cookie", link_cookie.substr(0, link_cookie.find(';'))}});
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(json::parse(res->body).at("token_mode") == true);

    rx.signal(SIGTERM);
    CHECK(rx.wait_exit() == 0);
    CHECK(rx.stderr_text().find(token) == std::string::npos);
  }

  TEST_CASE("inspector: the configuration is checked (exit 2)") {
    TempDir dir;
    auto exit_of = [&](std::initializer_list<std::string> more) {
      ReceiverProcess rx(inspected(dir, more));
      return rx.wait_exit();
    };
    write_file(dir / "empty-token", "\n");
    CHECK(exit_of({"--inspect-token-file", (dir / "empty-token").string()}) == 2);
    CHECK(exit_of({"--inspect-token-file", (dir / "missing").string()}) == 2);
    CHECK(exit_of({"--inspect", "0.0.0.0:0"}) == 2);  // not loopback, no token
    // A port in use.
    ReceiverProcess first(inspected(dir, {}));
    REQUIRE(first.wait_listening());
    REQUIRE(first.wait_inspector());
    TempDir other;
    auto args = receiver_args(other);
    args.insert(args.end(), {"--inspect", "127.0.0.1:" + std::to_string(first.inspector_port())});
    ReceiverProcess second(args);
    CHECK(second.wait_exit() == 2);
    CHECK(second.stderr_text().find("cannot start the inspector") != std::string::npos);
  }

  TEST_CASE("inspector: the event stream sends each new request and lets SIGTERM stop") {
    TempDir dir;
    ReceiverProcess rx(inspected(dir, {}));
    REQUIRE(rx.wait_listening());
    REQUIRE(rx.wait_inspector());
    EventStream first(rx.inspector_port());
    EventStream second(rx.inspector_port());
    REQUIRE(first.connected());
    REQUIRE(second.connected());
    REQUIRE(first.read_until("event: hello", 5s));
    REQUIRE(second.read_until("event: hello", 5s));
    CHECK(first.text().find("Content-Type: text/event-stream") != std::string::npos);

    httplib::Client receiver("127.0.0.1", rx.port());
    const auto answer = post_event(
        receiver, "/", sign_sample("lead.create", receiver_secret, epoch_ms()), receiver_secret);
    REQUIRE(answer);
    REQUIRE(answer->status == 200);
    const std::string id = json::parse(answer->body).at("id");
    for (auto* stream : {&first, &second}) {
      REQUIRE(stream->read_until("event: request", 10s));
      REQUIRE(stream->read_until(id, 10s));
      CHECK(stream->text().find(R"("reason":"stored")") != std::string::npos);
    }
    // A refusal too.
    const auto at = first.text().size();
    REQUIRE(post_event(receiver, "/", "{}", wrong_secret));
    REQUIRE(first.read_until("secret_mismatch", 10s, at));

    // SIGTERM with two streams open: each ends with its last chunk and the receiver stops at
    // once.
    CHECK(first.text().find("Transfer-Encoding: chunked") != std::string::npos);
    const auto started = std::chrono::steady_clock::now();
    rx.signal(SIGTERM);
    for (auto* stream : {&first, &second}) {
      CHECK_FALSE(stream->read_until("no such text", 5s));  // reads to the end
      CHECK(stream->text().ends_with("\r\n0\r\n\r\n"));
    }
    CHECK(rx.wait_exit(10s) == 0);
    CHECK(std::chrono::steady_clock::now() - started < 5s);
  }

  TEST_CASE("inspector: idle, slow and streaming clients do not hold up the page") {
    TempDir dir;
    raise_fd_limit(2048);
    ReceiverProcess rx(inspected(dir, {}));
    REQUIRE(rx.wait_listening());
    REQUIRE(rx.wait_inspector());
    const int port = rx.inspector_port();
    const auto info = "GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

    // 300 connections that send nothing, 50 that send half a head, 32 event streams: the
    // limit. (A server with a thread per connection stalls here.)
    std::vector<RawSocket> idle, slow;
    for (int i = 0; i < 300; ++i) idle.push_back(connect_to(port));
    const auto slow_started = std::chrono::steady_clock::now();
    for (int i = 0; i < 50; ++i) {
      slow.push_back(connect_to(port));
      REQUIRE(slow.back().valid());
      REQUIRE(send_all(slow.back().fd(), "GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                       std::chrono::steady_clock::now() + 2s));
    }
    std::vector<std::unique_ptr<EventStream>> streams;
    for (int i = 0; i < 32; ++i) {
      streams.push_back(std::make_unique<EventStream>(port));
      REQUIRE(streams.back()->connected());
      REQUIRE(streams.back()->read_until("event: hello", 5s));
    }
    const auto answered = exchange(port, info, 2s);
    CHECK_MESSAGE(answered.status == 200, answered.text.substr(0, 200));
    CHECK(answered.elapsed < 1s);

    // The 33rd stream is refused; once ten streams are closed, new ones are served at once.
    const auto refused = exchange(port,
                                  "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Connection: close\r\n\r\n",
                                  2s);
    CHECK(refused.status == 503);
    CHECK(refused.text.find("too_many_streams") != std::string::npos);
    streams.resize(22);
    bool reopened = false;
    for (int attempt = 0; attempt < 50 && !reopened; ++attempt) {
      // The receiver sees the closes as they come: poll until a place is free.
      auto next = std::make_unique<EventStream>(port);
      reopened = next->read_until("event: hello", 2s);
      if (reopened) streams.push_back(std::move(next));
    }
    CHECK(reopened);

    // Every stream gets a new request.
    httplib::Client receiver("127.0.0.1", rx.port());
    const auto posted = post_event(
        receiver, "/", sign_sample("lead.create", receiver_secret, epoch_ms()), receiver_secret);
    REQUIRE(posted);
    const std::string id = json::parse(posted->body).at("id");
    for (auto& stream : streams) CHECK(stream->read_until(id, 10s));

    // The half heads are answered 408 at the read timeout (5 s) and closed.
    for (auto& socket : slow) {
      std::string text;
      const auto end = read_until(socket.fd(), text, slow_started + 10s,
                                  [](const std::string& t) { return has_complete_response(t); });
      CHECK(status_of(text) == 408);
      CHECK(end != ReadState::reset);
    }
    CHECK(std::chrono::steady_clock::now() - slow_started >= 4s);
    CHECK(exchange(port, info, 2s).status == 200);
  }
}

}  // namespace tdhook::test
