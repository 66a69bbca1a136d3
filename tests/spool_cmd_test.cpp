// `tdhook spool` as a real process, against a spool filled through the Spool API (as a running
// receiver would have filled it, and with that spool still open).
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

#include "store/spool.hpp"
#include "support/files.hpp"

extern char** environ;

using namespace tdhook::receiver;
using tdhook::test::TempDir;

namespace {

struct Run {
  int code = -1;
  std::string out, err;
};

// Runs `tdhook spool ARGS...` with stdout and stderr captured in files of `dir`.
Run tool(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), {TDHOOK_TOOL_BIN, "spool"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto out = dir / "tool.out", err = dir / "tool.err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return Run{WEXITSTATUS(status), tdhook::test::read_file(out), tdhook::test::read_file(err)};
}

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
// attempt), "req" pending, "msg" dead after two attempts, "old" delivered two days ago.
struct Filled {
  TempDir dir;
  std::unique_ptr<Spool> spool;
  std::string data_dir;
  std::int64_t now = now_ms();

  Filled() {
    SpoolOptions options;
    options.data_dir = dir / "data";
    data_dir = options.data_dir.string();
    auto opened = Spool::open(options);
    REQUIRE(opened.ok());
    spool = std::move(*opened);
    const std::int64_t two_days = 2 * 24 * 3600 * 1000LL;
    REQUIRE(spool->put(event("old", "lead.create", now - two_days, {"stdout"})).outcome ==
            PutOutcome::stored);
    REQUIRE(spool->put(event("lead", "lead.create", now, {"stdout", "file"})).outcome ==
            PutOutcome::stored);
    REQUIRE(spool->put(event("req", "request.create", now, {"stdout"})).outcome ==
            PutOutcome::stored);
    REQUIRE(spool->put(event("msg", "message.create", now, {"file"})).outcome ==
            PutOutcome::stored);
    settle("stdout", [&](const Delivery& d) {
      if (d.delivery_id == "req") return;
      REQUIRE(spool->mark_delivered(d, Attempt{1, now, now + 3, true, {}}).ok());
    });
    settle("file", [&](const Delivery& d) {
      const bool dead = d.delivery_id == "msg";
      if (dead) {
        REQUIRE(spool->mark_failed(d, Attempt{1, now, now + 5, false, "exit 1"}, now, false).ok());
      }
      REQUIRE(spool
                  ->mark_failed(d, Attempt{dead ? 2 : 1, now, now + 5, false, "exit 7\nboom"},
                                now + 3600 * 1000, dead)
                  .ok());
    });
  }

  template <class F>
  void settle(const std::string& sink, F&& f) {
    auto due = spool->due(sink, now, 100);
    REQUIRE(due.ok());
    for (const auto& d : *due) f(d);
  }
};

}  // namespace

TEST_SUITE("spool") {
  TEST_CASE("tdhook spool ls prints a table, and NDJSON with --json") {
    Filled f;
    auto table = tool(f.dir, {"--data-dir", f.data_dir, "ls"});
    CHECK(table.code == 0);
    CHECK(table.out.find("RECEIVED") == 0);
    for (const char* text : {"old", "lead", "req", "msg", "dead", "exit 7 boom", "pending"}) {
      CHECK_MESSAGE(table.out.find(text) != std::string::npos, text);
    }

    auto json = tool(f.dir, {"ls", "--data-dir", f.data_dir, "--json"});
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
    Filled f;
    auto ids = [&](std::vector<std::string> args) {
      args.insert(args.begin(), {"ls", "--json", "--data-dir", f.data_dir});
      auto run = tool(f.dir, args);
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
    Filled f;
    auto run = tool(f.dir, {"--data-dir", f.data_dir, "show", "msg"});
    REQUIRE(run.code == 0);
    CHECK(run.out.find("\"event\": \"message.create\"") != std::string::npos);  // pretty
    CHECK(run.out.find("dead") != std::string::npos);
    CHECK(run.out.find("exit 1") != std::string::npos);
    CHECK(run.out.find("exit 7 boom") != std::string::npos);

    auto json = tool(f.dir, {"--data-dir", f.data_dir, "show", "lead", "--json"});
    REQUIRE(json.code == 0);
    const auto details = nlohmann::json::parse(json.out);
    CHECK(details["record"]["id"] == "lead");
    CHECK(details["deliveries"].size() == 2);
    CHECK(details["attempts"].size() == 2);

    auto missing = tool(f.dir, {"--data-dir", f.data_dir, "show", "nope"});
    CHECK(missing.code == 1);
    CHECK(missing.err.find("nope") != std::string::npos);
  }

  TEST_CASE("tdhook spool retry makes dead deliveries pending beside an open spool") {
    Filled f;
    auto unknown = tool(f.dir, {"--data-dir", f.data_dir, "retry", "nope"});
    CHECK(unknown.code == 1);
    auto delivered = tool(f.dir, {"--data-dir", f.data_dir, "retry", "old"});
    CHECK(delivered.code == 1);

    SUBCASE("by id") {
      auto run = tool(f.dir, {"--data-dir", f.data_dir, "retry", "msg"});
      REQUIRE_MESSAGE(run.code == 0, run.err);
      CHECK(run.out.find("1 delivery") == 0);
    }
    SUBCASE("every dead one") {
      auto run = tool(f.dir, {"--data-dir", f.data_dir, "retry", "--dead"});
      REQUIRE_MESSAGE(run.code == 0, run.err);
    }
    auto due = f.spool->due("file", now_ms(), 10);
    REQUIRE(due.ok());
    REQUIRE(due->size() == 1);
    CHECK(due->front().delivery_id == "msg");
    CHECK(f.spool->counts(std::nullopt)->dead == 0);
    // The open spool (the receiver) sees the other writer's change in its pending count.
    REQUIRE(f.spool->put(event("new", "lead.create", f.now, {"stdout"})).outcome ==
            PutOutcome::stored);
    CHECK(f.spool->pending_total() == 4);  // lead(file), req, msg, new
  }

  TEST_CASE("tdhook spool purge removes delivered events older than the age given") {
    Filled f;
    auto run =
        tool(f.dir, {"--data-dir", f.data_dir, "purge", "--delivered", "--older-than", "1d"});
    REQUIRE_MESSAGE(run.code == 0, run.err);
    CHECK(run.out == "purged 1 event\n");
    CHECK_FALSE(f.spool->show("old").ok());
    CHECK(f.spool->show("lead").ok());
    auto again =
        tool(f.dir, {"--data-dir", f.data_dir, "purge", "--delivered", "--older-than", "1s"});
    CHECK(again.out == "purged 0 events\n");  // the others are still pending or dead
  }

  TEST_CASE("tdhook spool exits 2 on usage and configuration errors") {
    Filled f;
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
      auto run = tool(f.dir, args);
      CHECK_MESSAGE(run.code == 2, args.back(), ": ", run.err);
      CHECK_FALSE(run.err.empty());
    }
    CHECK_FALSE(std::filesystem::exists(f.dir / "elsewhere"));

    std::filesystem::create_directories(f.dir / "bad");
    tdhook::test::write_file(f.dir / "bad" / "spool.db", std::string(8192, 'x'));
    auto garbage = tool(f.dir, {"--data-dir", (f.dir / "bad").string(), "ls"});
    CHECK(garbage.code == 2);
    CHECK(garbage.err.find("not a database") != std::string::npos);
  }

  TEST_CASE("tdhook spool retry and purge wait for a busy receiver instead of failing") {
    Filled f;
    std::atomic<bool> stop{false};
    std::atomic<int> stored{0}, failed{0};
    // A receiver taking events the whole time the tool writes.
    std::thread receiver([&] {
      for (int i = 0; !stop; ++i) {
        const auto r = f.spool->put(event("live" + std::to_string(i), "lead.create", f.now, {"x"}));
        (r.outcome == PutOutcome::stored ? stored : failed).fetch_add(1);
      }
    });
    auto retry = tool(f.dir, {"--data-dir", f.data_dir, "retry", "--dead"});
    auto purge =
        tool(f.dir, {"--data-dir", f.data_dir, "purge", "--delivered", "--older-than", "1d"});
    auto ls = tool(f.dir, {"--data-dir", f.data_dir, "ls", "--json", "--limit", "0"});
    stop = true;
    receiver.join();
    CHECK_MESSAGE(retry.code == 0, retry.err);
    CHECK_MESSAGE(purge.code == 0, purge.err);
    CHECK_MESSAGE(ls.code == 0, ls.err);
    CHECK(purge.out == "purged 1 event\n");
    CHECK(failed == 0);
    CHECK(stored > 0);
    CHECK(f.spool->counts(std::string("x"))->pending == stored);
    CHECK(f.spool->pending_total() == stored + 3);  // + lead(file), req, msg
  }
}
