// `tdhook spool` as a real process, against a store filled through the Store API as a receiver
// would have filled it: once with that store still open in this process and served on
// <data-dir>/admin.sock (as a running receiver serves it: the tool must go through the socket),
// once with no process holding it (the tool opens the store itself).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/admin.hpp"
#include "store/log/log_store.hpp"
#include "support/files.hpp"
#include "support/tool_run.hpp"

extern char** environ;

using namespace tdhook::receiver;
using tdhook::test::spool_tool;
using tdhook::test::TempDir;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<nlohmann::json> ndjson(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

NewEvent event(const std::string& id, const std::string& name, std::int64_t received_at,
               std::vector<std::string> sinks) {
  NewEvent e;
  e.delivery_id = id;
  e.dedup_key = id;
  e.event = name;
  e.project_id = "p1";
  e.subscription_id = "s1";
  e.timestamp_ms = received_at;
  e.received_at_ms = received_at;
  e.record = R"({"id":")" + id + R"(","event":")" + name + R"(","payload":{"n":1}})";
  e.sinks = std::move(sinks);
  return e;
}

// What a receiver would leave: "lead" delivered to stdout and pending for file (one failed
// attempt), "req" pending, "msg" dead after two attempts, "old" delivered two days ago (alone
// in its segment, so that a purge can remove it).
struct Filled {
  TempDir dir;
  std::filesystem::path data_path = dir / "data";
  std::string data_dir = data_path.string();
  std::int64_t now = now_ms();
  Logger log{LogLevel::warn};
  bool served;
  std::unique_ptr<Store> opened;
  std::unique_ptr<AdminServer> admin;

  // served: the store stays open here and answers on admin.sock; otherwise it is closed once
  // filled, and store() opens it again for the checks after a tool run.
  explicit Filled(bool serve) : served(serve) {
    store();
    const std::int64_t two_days = 2 * 24 * 3600 * 1000LL;
    REQUIRE(opened->put(event("old", "lead.create", now - two_days, {"stdout"})).outcome ==
            PutOutcome::stored);
    REQUIRE(opened->put(event("lead", "lead.create", now, {"stdout", "file"})).outcome ==
            PutOutcome::stored);
    REQUIRE(opened->put(event("req", "request.create", now, {"stdout"})).outcome ==
            PutOutcome::stored);
    REQUIRE(opened->put(event("msg", "message.create", now, {"file"})).outcome ==
            PutOutcome::stored);
    settle("stdout", [&](const Delivery& d) {
      if (d.delivery_id == "req") return;
      REQUIRE(opened->mark_delivered(d, Attempt{1, now, now + 3, true, {}}).ok());
    });
    settle("file", [&](const Delivery& d) {
      const bool dead = d.delivery_id == "msg";
      if (dead) {
        REQUIRE(opened->mark_failed(d, Attempt{1, now, now + 5, false, "exit 1"}, now, false).ok());
      }
      REQUIRE(opened
                  ->mark_failed(d, Attempt{dead ? 2 : 1, now, now + 5, false, "exit 7\nboom"},
                                now + 3600 * 1000, dead)
                  .ok());
    });
    if (served) {
      auto started = AdminServer::start(*opened, admin_socket_path(data_path), log);
      REQUIRE_MESSAGE(started.ok(), started.error().detail);
      admin = std::move(*started);
    } else {
      close();
    }
  }
  ~Filled() { close(); }

  // The store, opened again after a tool run when this process had closed it.
  Store& store() {
    if (!opened) {
      LogStoreOptions options;
      options.store.data_dir = data_path;
      options.store.sinks = {"stdout", "file", "x"};
      options.segment_bytes = 1;  // one event a segment
      auto store = open_log_store(options, log);
      REQUIRE_MESSAGE(store.ok(), store.error().detail);
      opened = std::move(*store);
    }
    return *opened;
  }
  void close() {
    if (admin) admin->stop();
    admin.reset();
    opened.reset();
  }

  template <class F>
  void settle(const std::string& sink, F&& f) {
    auto due = opened->due(sink, now, 100);
    REQUIRE(due.ok());
    for (const auto& d : *due) f(d);
  }
};

// Runs the enclosing test case twice: once with the store held (the tool goes through
// admin.sock), once without (the tool opens the store itself).
#define FOR_BOTH_WAYS(served)                                                        \
  bool served = false;                                                               \
  SUBCASE("with the store held by a process, through admin.sock") { served = true; } \
  SUBCASE("with no process holding the store") { served = false; }

}  // namespace

TEST_SUITE("spool") {
  TEST_CASE("tdhook spool ls prints a table, and NDJSON with --json") {
    FOR_BOTH_WAYS(served);
    Filled f(served);
    auto table = spool_tool(f.dir, {"--data-dir", f.data_dir, "ls"});
    CHECK(table.code == 0);
    CHECK(table.out.find("RECEIVED") == 0);
    for (const char* text : {"old", "lead", "req", "msg", "dead", "exit 7 boom", "pending"}) {
      CHECK_MESSAGE(table.out.find(text) != std::string::npos, text);
    }

    auto json = spool_tool(f.dir, {"ls", "--data-dir", f.data_dir, "--json"});
    REQUIRE(json.code == 0);
    const auto rows = ndjson(json.out);
    REQUIRE(rows.size() == 5);  // old, lead x2, req, msg
    CHECK(rows[0]["id"] == "old");
    CHECK(rows[0]["state"] == "delivered");
    CHECK(rows[4]["id"] == "msg");
    CHECK(rows[4]["state"] == "dead");
    CHECK(rows[4]["attempts"] == 2);
    CHECK(rows[4]["last_error"] == "exit 7\nboom");
  }

  TEST_CASE("tdhook spool ls filters by state, event pattern, sink, time and count") {
    FOR_BOTH_WAYS(served);
    Filled f(served);
    auto ids = [&](std::vector<std::string> args) {
      args.insert(args.begin(), {"ls", "--json", "--data-dir", f.data_dir});
      auto run = spool_tool(f.dir, args);
      REQUIRE_MESSAGE(run.code == 0, run.err);
      std::string out;
      for (const auto& row : ndjson(run.out)) {
        out += row["id"].get<std::string>() + ":" + row["sink"].get<std::string>() + " ";
      }
      return out;
    };
    CHECK(ids({"--state", "dead"}) == "msg:file ");
    CHECK(ids({"--state", "pending"}) == "lead:file req:stdout ");
    CHECK(ids({"--event", "request.*,lead.create.**"}) == "req:stdout ");
    CHECK(ids({"--event", "message.*"}) == "msg:file ");
    CHECK(ids({"--sink", "file"}) == "lead:file msg:file ");
    CHECK(ids({"--since", "1h"}) == "lead:file lead:stdout req:stdout msg:file ");
    CHECK(ids({"--since", "2000-01-01"}).find("old:stdout") == 0);
    CHECK(ids({"--since", "2999-01-01T00:00:00Z"}).empty());
    CHECK(ids({"--limit", "2"}) == "old:stdout lead:file ");
  }

  TEST_CASE("tdhook spool show prints the record, each sink and every attempt") {
    FOR_BOTH_WAYS(served);
    Filled f(served);
    auto run = spool_tool(f.dir, {"--data-dir", f.data_dir, "show", "msg"});
    REQUIRE(run.code == 0);
    CHECK(run.out.find("\"event\": \"message.create\"") != std::string::npos);  // pretty
    CHECK(run.out.find("dead") != std::string::npos);
    CHECK(run.out.find("exit 1") != std::string::npos);
    CHECK(run.out.find("exit 7 boom") != std::string::npos);

    auto json = spool_tool(f.dir, {"--data-dir", f.data_dir, "show", "lead", "--json"});
    REQUIRE(json.code == 0);
    const auto details = nlohmann::json::parse(json.out);
    CHECK(details["record"]["id"] == "lead");
    CHECK(details["deliveries"].size() == 2);
    // The log store keeps the attempts of deliveries that failed at least once (state.hpp):
    // file's failure, not stdout's success.
    CHECK(details["attempts"].size() == 1);

    auto missing = spool_tool(f.dir, {"--data-dir", f.data_dir, "show", "nope"});
    CHECK(missing.code == 1);
    CHECK(missing.err.find("nope") != std::string::npos);
  }

  TEST_CASE(
      "tdhook spool show prints a kept original as HTTP/1.1 text, the secret and the token "
      "masked, and nothing of one it cannot read") {
    FOR_BOTH_WAYS(served);
    const std::string secret = "8d2e4c1a-secret-value";
    const std::string token = "eyJhbGciOi.eyJwYXkiOjF9.c2lnbmF0dXJl";
    const std::string body = R"({"timestamp":1,"payload":{"n":1},"token":")" + token + R"("})";
    const std::string masked_body =
        R"J({"timestamp":1,"payload":{"n":1},"token":"(hidden: the token, 36 characters)"})J";
    TempDir dir;
    const auto data = dir / "data";
    Logger log{LogLevel::warn};
    auto open = [&] {
      LogStoreOptions options;
      options.store.data_dir = data;
      options.store.sinks = {"fwd"};
      auto store = open_log_store(options, log);
      REQUIRE_MESSAGE(store.ok(), store.error().detail);
      return std::move(*store);
    };
    {
      auto store = open();
      auto kept = [&](const std::string& id, std::string original) {
        auto e = event(id, "lead.create", now_ms(), {"fwd"});
        e.original = std::move(original);
        REQUIRE(store->put(std::move(e)).outcome == PutOutcome::stored);
      };
      // As build_original() (store/record.hpp) keeps it; a User-Agent with a byte that is not
      // UTF-8 crosses the admin socket unchanged.
      kept("fwd", "Content-Type: application/json\r\nx-hook-secret: " + secret +
                      "\r\nUser-Agent: tiledesk \xe9\r\n\r\n" + body);
      kept("torn", "x-hook-secret: " + secret);  // no end of the header: not what is stored
      kept("plain", "");
    }
    std::unique_ptr<Store> held;
    std::unique_ptr<AdminServer> admin;
    if (served) {
      held = open();
      auto started = AdminServer::start(*held, admin_socket_path(data), log);
      REQUIRE_MESSAGE(started.ok(), started.error().detail);
      admin = std::move(*started);
    }
    auto show = [&](const std::string& id, bool json) {
      std::vector<std::string> args{"--data-dir", data.string(), "show", id};
      if (json) args.emplace_back("--json");
      auto run = spool_tool(dir, args);
      REQUIRE_MESSAGE(run.code == 0, run.err);
      CHECK(run.out.find(secret) == std::string::npos);
      CHECK(run.out.find(token) == std::string::npos);
      CHECK(run.out.find("c2lnbmF0dXJl") == std::string::npos);  // the token's signature
      return run.out;
    };
    const std::string head =
        "POST (the receiver's --path) HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "x-hook-secret: (hidden, 21 characters)\r\n";

    const auto human = show("fwd", false);
    const auto record_at = human.find("\"event\": \"lead.create\"");
    const auto original_at =
        human.find("original request (kept for forward: sinks; secret and token masked)\n" + head +
                   "User-Agent: tiledesk \xe9\r\n\r\n" + masked_body + "\n\n");
    const auto sinks_at = human.find("SINK");
    CHECK(record_at < original_at);
    CHECK(original_at != std::string::npos);
    CHECK(original_at < sinks_at);
    CHECK(sinks_at != std::string::npos);
    const auto json = nlohmann::json::parse(show("fwd", true));
    // JSON text holds no stray byte: U+FFFD stands for it.
    CHECK(json.at("original") == head + "User-Agent: tiledesk \xef\xbf\xbd\r\n\r\n" + masked_body);
    CHECK(json.at("record").at("id") == "fwd");

    const auto torn = show("torn", false);
    CHECK(torn.find("original request: kept, but unreadable (36 bytes); not shown") !=
          std::string::npos);
    CHECK(torn.find("x-hook-secret") == std::string::npos);
    CHECK(nlohmann::json::parse(show("torn", true)).at("original").is_null());

    const auto plain = show("plain", false);
    CHECK(plain.find("original request") == std::string::npos);
    CHECK(plain.find("SINK") != std::string::npos);
    const auto plain_json = nlohmann::json::parse(show("plain", true));
    CHECK(plain_json.at("original").is_null());
    CHECK(plain_json.at("record").at("id") == "plain");
  }

  TEST_CASE("tdhook spool retry makes dead deliveries pending") {
    FOR_BOTH_WAYS(served);
    for (const bool by_id : {true, false}) {
      CAPTURE(by_id);
      Filled f(served);
      auto unknown = spool_tool(f.dir, {"--data-dir", f.data_dir, "retry", "nope"});
      CHECK(unknown.code == 1);
      auto delivered = spool_tool(f.dir, {"--data-dir", f.data_dir, "retry", "old"});
      CHECK(delivered.code == 1);
      auto run = by_id ? spool_tool(f.dir, {"--data-dir", f.data_dir, "retry", "msg"})
                       : spool_tool(f.dir, {"--data-dir", f.data_dir, "retry", "--dead"});
      REQUIRE_MESSAGE(run.code == 0, run.err);
      CHECK(run.out.find("1 delivery") == 0);
      auto due = f.store().due("file", now_ms(), 10);
      REQUIRE(due.ok());
      REQUIRE(due->size() == 1);
      CHECK(due->front().delivery_id == "msg");
      CHECK(f.store().counts(std::nullopt)->dead == 0);
      REQUIRE(f.store().put(event("new", "lead.create", f.now, {"stdout"})).outcome ==
              PutOutcome::stored);
      CHECK(f.store().pending_total() == 4);  // lead(file), req, msg, new
    }
  }

  TEST_CASE("tdhook spool purge removes delivered events older than the age given") {
    FOR_BOTH_WAYS(served);
    Filled f(served);
    auto run =
        spool_tool(f.dir, {"--data-dir", f.data_dir, "purge", "--delivered", "--older-than", "1d"});
    REQUIRE_MESSAGE(run.code == 0, run.err);
    CHECK(run.out == "purged 1 event\n");
    CHECK_FALSE(f.store().show("old").ok());
    CHECK(f.store().show("lead").ok());
    if (!served) f.close();  // the tool is to open it again itself
    auto again =
        spool_tool(f.dir, {"--data-dir", f.data_dir, "purge", "--delivered", "--older-than", "1s"});
    // The others are still pending or dead.
    CHECK_MESSAGE(again.out == "purged 0 events\n", again.err);
  }

  TEST_CASE("tdhook spool exits 2 on usage and configuration errors") {
    Filled f(false);
    const std::string dir = f.data_dir;
    std::vector<std::vector<std::string>> cases = {
        {"--data-dir", dir, "ls", "--state", "lost"},
        {"--data-dir", dir, "ls", "--since", "yesterday"},
        {"--data-dir", dir, "ls", "--event", "request..create"},
        {"--data-dir", dir, "purge", "--delivered", "--older-than", "7 days"},
        {"--data-dir", dir, "purge", "--older-than", "7d"},
        {"--data-dir", dir, "retry"},
        {"--data-dir", dir, "retry", "msg", "--dead"},
        {"--data-dir", (f.dir / "elsewhere").string(), "ls"},
        {"--data-dir", (f.dir / "elsewhere").string(), "retry", "--dead"},
        {"--data-dir", dir},
    };
    for (const auto& args : cases) {
      auto run = spool_tool(f.dir, args);
      CHECK_MESSAGE(run.code == 2, args.back(), ": ", run.err);
      CHECK_FALSE(run.err.empty());
    }
    CHECK_FALSE(std::filesystem::exists(f.dir / "elsewhere"));

    std::filesystem::create_directories(f.dir / "bad");
    tdhook::test::write_file(f.dir / "bad" / "state.db", std::string(8192, 'x'));
    auto garbage = spool_tool(f.dir, {"--data-dir", (f.dir / "bad").string(), "ls"});
    CHECK(garbage.code == 2);
    CHECK(garbage.err.find("not a database") != std::string::npos);
  }

  TEST_CASE("tdhook spool retry and purge go through a busy receiver's admin socket") {
    Filled f(true);
    std::atomic<bool> stop{false};
    std::atomic<int> stored{0}, failed{0};
    // A receiver taking events the whole time the tool writes.
    std::thread receiver([&] {
      // Bounded and paced: the store here starts a segment file for every event.
      for (int i = 0; !stop && i < 3000; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        const auto r =
            f.store().put(event("live" + std::to_string(i), "lead.create", f.now, {"x"}));
        (r.outcome == PutOutcome::stored ? stored : failed).fetch_add(1);
      }
    });
    auto retry = spool_tool(f.dir, {"--data-dir", f.data_dir, "retry", "--dead"});
    auto purge =
        spool_tool(f.dir, {"--data-dir", f.data_dir, "purge", "--delivered", "--older-than", "1d"});
    auto ls = spool_tool(f.dir, {"--data-dir", f.data_dir, "ls", "--json", "--limit", "0"});
    stop = true;
    receiver.join();
    CHECK_MESSAGE(retry.code == 0, retry.err);
    CHECK_MESSAGE(purge.code == 0, purge.err);
    CHECK_MESSAGE(ls.code == 0, ls.err);
    CHECK(purge.out == "purged 1 event\n");
    CHECK(failed == 0);
    CHECK(stored > 0);
    CHECK(f.store().counts(std::string("x"))->pending == stored);
    CHECK(f.store().pending_total() == stored + 3);  // + lead(file), req, msg
  }
}
