// The event stores on real files: storage, de-duplication, delivery state, as every Store
// promises it (each case run on the embedded log and on the old SQLite spool), then what is
// particular to each: the log's segments and retention, the spool's checkpoints and refusal of
// files that are not (or no longer) a spool.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/log/log_store.hpp"
#include "store/spool.hpp"
#include "support/files.hpp"

using namespace tdhook::receiver;
using tdhook::test::TempDir;

namespace {

constexpr std::int64_t kHour = 3600 * 1000;

NewEvent make_event(const std::string& id, std::int64_t received_at = 1000,
                    std::vector<std::string> sinks = {"stdout"}) {
  NewEvent e;
  e.delivery_id = id;
  e.dedup_key = "key-" + id;
  e.event = "lead.create";
  e.project_id = "p1";
  e.subscription_id = "s1";
  e.timestamp_ms = received_at - 5;
  e.received_at_ms = received_at;
  e.record = R"({"id":")" + id + R"(","event":"lead.create"})";
  e.sinks = std::move(sinks);
  return e;
}

std::unique_ptr<Spool> open_spool(const TempDir& dir, std::size_t max_pending = 100000) {
  SpoolOptions options;
  options.data_dir = dir / "data";
  options.dedup_window = std::chrono::milliseconds(kHour);
  options.max_pending = max_pending;
  auto spool = Spool::open(options);
  REQUIRE_MESSAGE(spool.ok(), (spool.ok() ? "" : spool.error().detail));
  return std::move(*spool);
}

// The two implementations of Store, for TEST_CASE_TEMPLATE.
struct LogKind {
  static constexpr bool records_first_attempts = false;  // only attempts after a failure
  static constexpr int pending_per_sink = 1;
  static constexpr bool new_events_due_at_once = true;  // whatever the clock says
  static std::unique_ptr<Store> open(const TempDir& dir, std::size_t max_pending = 100000) {
    LogStoreOptions options;
    options.store.data_dir = dir / "data";
    options.store.dedup_window = std::chrono::milliseconds(kHour);
    options.store.max_pending = max_pending;
    options.store.sinks = {"stdout", "file", "a", "b"};
    auto store = open_log_store(options, tdhook::receiver::Logger(LogLevel::error));
    REQUIRE_MESSAGE(store.ok(), (store.ok() ? "" : store.error().detail));
    return std::move(*store);
  }
};
struct SqliteKind {
  static constexpr bool records_first_attempts = true;
  static constexpr int pending_per_sink = 0;
  static constexpr bool new_events_due_at_once = false;
  static std::unique_ptr<Store> open(const TempDir& dir, std::size_t max_pending = 100000) {
    return open_spool(dir, max_pending);
  }
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Attempt attempt(int number, bool ok, std::string error = {}) {
  return Attempt{number, 100, 200, ok, std::move(error)};
}

std::int64_t count_rows(const std::filesystem::path& db_path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const std::int64_t n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

// Runs in a child process: stores events until RLIMIT_FSIZE makes a write fail, checks that the
// failure is reported and nothing half-stored remains, then lifts the limit and stores again.
int disk_full_scenario(const std::filesystem::path& data_dir) {
  signal(SIGXFSZ, SIG_IGN);  // get EFBIG from write() instead of being killed
  SpoolOptions options;
  options.data_dir = data_dir;
  auto opened = Spool::open(options);
  if (!opened) return 10;
  auto& spool = **opened;
  rlimit limit{};
  getrlimit(RLIMIT_FSIZE, &limit);
  const rlimit original = limit;
  limit.rlim_cur = 512 * 1024;
  if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 11;
  int stored = 0;
  PutResult last;
  for (int i = 0; i < 1000; ++i) {
    auto event = make_event("d" + std::to_string(i));
    event.record.append(16 * 1024, ' ');
    last = spool.put(std::move(event));
    if (last.outcome != PutOutcome::stored) break;
    ++stored;
  }
  if (last.outcome != PutOutcome::failed || last.error.empty()) return 12;
  if (spool.writable()) return 13;
  if (setrlimit(RLIMIT_FSIZE, &original) != 0) return 14;
  if (spool.put(make_event("after")).outcome != PutOutcome::stored) return 15;
  if (!spool.writable()) return 16;
  ListFilter all;
  all.limit = 0;
  auto rows = spool.list(all);
  if (!rows || rows->size() != static_cast<std::size_t>(stored) + 1) return 17;
  if (spool.pending_total() != stored + 1) return 18;
  return 0;
}

}  // namespace

TEST_SUITE("spool") {
  TEST_CASE_TEMPLATE("a stored event is due to its sinks, listed and shown with its record", Kind,
                     LogKind, SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir);
    const auto put = spool->put(make_event("d1", 1000, {"stdout", "file"}));
    REQUIRE(put.outcome == PutOutcome::stored);
    CHECK(put.delivery_id == "d1");
    // The log counts deliveries waiting (one per sink), the spool events waiting.
    CHECK(spool->pending_total() == Kind::pending_per_sink * 2 + !Kind::pending_per_sink);

    auto due = spool->due("stdout", 1000, 10);
    REQUIRE(due.ok());
    REQUIRE(due->size() == 1);
    CHECK(due->front().delivery_id == "d1");
    CHECK(due->front().record == R"({"id":"d1","event":"lead.create"})");
    CHECK(due->front().project_id == "p1");
    CHECK(due->front().subscription_id == "s1");
    CHECK(due->front().attempts == 0);
    if constexpr (Kind::new_events_due_at_once) {
      // The log: a new event is due at once, even to a clock set back before its receive time.
      CHECK(spool->due("stdout", 999, 10)->size() == 1);
      CHECK(spool->next_due("file") <= 999);
    } else {
      CHECK(spool->due("stdout", 999, 10)->empty());
      CHECK(spool->next_due("file") == 1000);
    }
    CHECK_FALSE(spool->next_due("other").has_value());

    auto rows = spool->list({});
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 2);
    CHECK(rows->at(0).sink == "file");
    CHECK(rows->at(1).sink == "stdout");
    CHECK(rows->at(0).state == DeliveryState::pending);

    auto details = spool->show("d1");
    REQUIRE(details.ok());
    CHECK(details->record == R"({"id":"d1","event":"lead.create"})");
    CHECK(details->deliveries.size() == 2);
    auto missing = spool->show("nope");
    REQUIRE_FALSE(missing.ok());
    CHECK(is_not_found(missing.error()));
  }

  TEST_CASE("the log lists the newest rows first when asked, reading only what it returns") {
    TempDir dir;
    auto store = LogKind::open(dir);
    for (int i = 1; i <= 6; ++i) {
      const auto sinks =
          i == 3 ? std::vector<std::string>{"a", "b"} : std::vector<std::string>{"a"};
      REQUIRE(store->put(make_event("d" + std::to_string(i), 1000 + i, sinks)).outcome ==
              PutOutcome::stored);
    }
    ListFilter filter;
    filter.newest_first = true;
    filter.limit = 3;
    auto rows = store->list(filter);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 3);
    CHECK(rows->at(0).delivery_id == "d6");
    CHECK(rows->at(1).delivery_id == "d5");
    CHECK(rows->at(2).delivery_id == "d4");
    // Before a time (inclusive), still newest first; an event's rows stay together.
    filter.until_ms = 1003;
    filter.limit = 10;
    rows = store->list(filter);
    REQUIRE(rows.ok());
    std::vector<std::string> seen;
    for (const auto& r : *rows) seen.push_back(r.delivery_id + "/" + r.sink);
    CHECK(seen == std::vector<std::string>{"d3/a", "d3/b", "d2/a", "d1/a"});
    // The default stays oldest first.
    filter = ListFilter{};
    filter.limit = 2;
    rows = store->list(filter);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 2);
    CHECK(rows->at(0).delivery_id == "d1");
    CHECK(rows->at(1).delivery_id == "d2");
  }

  TEST_CASE("the receiver's checkpoints keep every event and leave only the spool's files") {
    TempDir dir;
    SpoolOptions options;
    options.data_dir = dir / "data";
    options.dedup_window = std::chrono::milliseconds(kHour);
    options.writer_checkpoints = true;
    {
      auto opened = Spool::open(options);
      REQUIRE(opened.ok());
      auto& spool = **opened;
      for (int batch = 0; batch < 20; ++batch) {
        std::vector<NewEvent> events;
        for (int i = 0; i < 50; ++i) {
          auto e = make_event("b" + std::to_string(batch) + "-" + std::to_string(i));
          e.record += std::string(6000, ' ');  // a page and more, as a real event
          events.push_back(std::move(e));
        }
        for (const auto& r : spool.put_batch(std::move(events))) {
          REQUIRE(r.outcome == PutOutcome::stored);
        }
        spool.maintain(false);
      }
      spool.maintain(true);
      CHECK(spool.pending_total() == 1000);
      const auto due = spool.due("stdout", 1000, 2000);
      REQUIRE(due.ok());
      CHECK(due->size() == 1000);
    }
    // The sync probe timed at open is gone; what is left is SQLite's and the lock file.
    std::set<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir / "data")) {
      names.insert(entry.path().filename().string());
    }
    for (const auto& name : names) {
      CHECK_MESSAGE((name == "spool.db" || name == "spool.db-wal" || name == "spool.db-shm" ||
                     name == "spool.lock"),
                    name);
    }
    CHECK(names.count("spool.db") == 1);
    auto reopened = Spool::open(options);
    REQUIRE(reopened.ok());
    CHECK((*reopened)->pending_total() == 1000);
  }

  TEST_CASE_TEMPLATE("the same dedup key within the window is a duplicate and stores nothing", Kind,
                     LogKind, SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir);
    auto first = make_event("d1", 1000);
    auto retry = make_event("d2", 1000 + kHour - 1);
    retry.dedup_key = first.dedup_key;
    REQUIRE(spool->put(first).outcome == PutOutcome::stored);
    const auto dup = spool->put(retry);
    CHECK(dup.outcome == PutOutcome::duplicate);
    CHECK(dup.delivery_id == "d1");
    CHECK(spool->list({})->size() == 1);
    CHECK(spool->pending_total() == 1);
  }

  TEST_CASE_TEMPLATE("a dedup key seen before the window is stored again", Kind, LogKind,
                     SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir);
    auto first = make_event("d1", 1000);
    auto later = make_event("d2", 1000 + kHour + 1);
    later.dedup_key = first.dedup_key;
    REQUIRE(spool->put(first).outcome == PutOutcome::stored);
    const auto again = spool->put(later);
    CHECK(again.outcome == PutOutcome::stored);
    CHECK(again.delivery_id == "d2");
    // The key now points at the new occurrence.
    auto third = make_event("d3", 1000 + kHour + 2);
    third.dedup_key = first.dedup_key;
    CHECK(spool->put(third).delivery_id == "d2");
  }

  TEST_CASE_TEMPLATE("the dedup window survives closing and reopening the spool", Kind, LogKind,
                     SqliteKind) {
    TempDir dir;
    Kind::open(dir)->put(make_event("d1", 5000));
    auto spool = Kind::open(dir);
    auto retry = make_event("d9", 6000);
    retry.dedup_key = "key-d1";
    const auto put = spool->put(retry);
    CHECK(put.outcome == PutOutcome::duplicate);
    CHECK(put.delivery_id == "d1");
  }

  TEST_CASE_TEMPLATE(
      "put answers full once max_pending events wait, and stores again after delivery", Kind,
      LogKind, SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir, 2);
    REQUIRE(spool->put(make_event("d1")).outcome == PutOutcome::stored);
    REQUIRE(spool->put(make_event("d2")).outcome == PutOutcome::stored);
    CHECK(spool->put(make_event("d3")).outcome == PutOutcome::full);
    CHECK(spool->show("d3").ok() == false);
    auto due = spool->due("stdout", 1000, 1);
    REQUIRE(due->size() == 1);
    REQUIRE(spool->mark_delivered(due->front(), attempt(1, true)).ok());
    CHECK(spool->pending_total() == 1);
    CHECK(spool->put(make_event("d3")).outcome == PutOutcome::stored);
  }

  TEST_CASE_TEMPLATE("an event for no sink is stored as delivered and waits for nothing", Kind,
                     LogKind, SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir, 1);
    REQUIRE(spool->put(make_event("d1", 1000, {})).outcome == PutOutcome::stored);
    CHECK(spool->pending_total() == 0);
    ListFilter delivered;
    delivered.state = DeliveryState::delivered;
    CHECK(spool->list(delivered)->size() == 1);
    CHECK(spool->put(make_event("d2")).outcome == PutOutcome::stored);
  }

  TEST_CASE_TEMPLATE("a failed attempt is due again at its next attempt time, not before", Kind,
                     LogKind, SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir);
    REQUIRE(spool->put(make_event("d1", 1000)).outcome == PutOutcome::stored);
    auto due = spool->due("stdout", 1000, 10);
    REQUIRE(due->size() == 1);
    REQUIRE(spool->mark_failed(due->front(), attempt(1, false, "exit 3"), 5000, false).ok());
    CHECK(spool->due("stdout", 4999, 10)->empty());
    CHECK(spool->next_due("stdout") == 5000);
    auto again = spool->due("stdout", 5000, 10);
    REQUIRE(again->size() == 1);
    CHECK(again->front().attempts == 1);
    CHECK(spool->pending_total() == 1);
    auto rows = spool->list({});
    CHECK(rows->front().last_error == "exit 3");
    CHECK(rows->front().next_attempt_at_ms == 5000);
  }

  TEST_CASE_TEMPLATE("a dead delivery goes back to pending on retry, by id or all at once", Kind,
                     LogKind, SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir);
    for (const char* id : {"d1", "d2"}) {
      REQUIRE(spool->put(make_event(id)).outcome == PutOutcome::stored);
    }
    const auto failing = spool->due("stdout", 1000, 10);
    REQUIRE(failing.ok());
    for (const auto& d : *failing) {
      REQUIRE(spool->mark_failed(d, attempt(1, false, "boom"), 0, true).ok());
    }
    CHECK(spool->pending_total() == 0);
    CHECK(spool->counts(std::nullopt)->dead == 2);
    CHECK(spool->due("stdout", 1'000'000, 10)->empty());

    SUBCASE("by id") {
      auto n = spool->retry(std::string("d1"), false);
      REQUIRE(n.ok());
      CHECK(*n == 1);
      CHECK(spool->counts(std::string("stdout"))->dead == 1);
      auto ready = spool->due("stdout", now_ms(), 10);
      REQUIRE(ready->size() == 1);
      CHECK(ready->front().delivery_id == "d1");
      CHECK(spool->pending_total() == 1);
      auto missing = spool->retry(std::string("nope"), false);
      REQUIRE_FALSE(missing.ok());
      CHECK(is_not_found(missing.error()));
    }
    SUBCASE("all dead") {
      auto n = spool->retry(std::nullopt, true);
      REQUIRE(n.ok());
      CHECK(*n == 2);
      CHECK(spool->counts(std::nullopt)->pending == 2);
      CHECK(spool->pending_total() == 2);
    }
  }

  TEST_CASE_TEMPLATE("show lists every attempt of every sink", Kind, LogKind, SqliteKind) {
    TempDir dir;
    auto spool = Kind::open(dir);
    REQUIRE(spool->put(make_event("d1", 1000, {"a", "b"})).outcome == PutOutcome::stored);
    auto a = spool->due("a", 1000, 1)->front();
    REQUIRE(spool->mark_failed(a, attempt(1, false, "exit 1"), 1000, false).ok());
    REQUIRE(spool->mark_delivered(a, attempt(2, true)).ok());
    CHECK(spool->pending_total() == 1);
    REQUIRE(spool->mark_delivered(spool->due("b", 1000, 1)->front(), attempt(1, true)).ok());
    CHECK(spool->pending_total() == 0);
    auto details = spool->show("d1");
    REQUIRE(details.ok());
    // The log keeps the attempts of a delivery that failed at least once; a first attempt that
    // worked is the delivery's state alone.
    REQUIRE(details->attempts.size() == (Kind::records_first_attempts ? 3 : 2));
    CHECK(details->attempts[0].first == "a");
    CHECK(details->attempts[0].second.error == "exit 1");
    CHECK(details->attempts[1].second.ok);
    CHECK(details->deliveries[0].state == DeliveryState::delivered);
    CHECK(details->deliveries[0].attempts == 2);
  }

  TEST_CASE("purge removes delivered events older than the cutoff and expired dedup keys") {
    TempDir dir;
    auto spool = open_spool(dir);
    const std::int64_t now = now_ms();
    // "new" first: a put also expires old dedup keys, as of its own received_at.
    REQUIRE(spool->put(make_event("new", now)).outcome == PutOutcome::stored);
    REQUIRE(spool->put(make_event("old", 1000)).outcome == PutOutcome::stored);
    REQUIRE(spool->put(make_event("old-dead", 1000)).outcome == PutOutcome::stored);
    REQUIRE(spool->put(make_event("old-pending", 1000)).outcome == PutOutcome::stored);
    const auto due = spool->due("stdout", now, 10);
    REQUIRE(due.ok());
    for (const auto& d : *due) {
      if (d.delivery_id == "old-pending") continue;
      const bool dead = d.delivery_id == "old-dead";
      REQUIRE((dead ? spool->mark_failed(d, attempt(1, false, "x"), 0, true)
                    : spool->mark_delivered(d, attempt(1, true)))
                  .ok());
    }
    const auto db = dir / "data" / "spool.db";
    CHECK(count_rows(db, "SELECT count(*) FROM dedup") == 4);
    auto removed = spool->purge_delivered(now - 1000);
    REQUIRE(removed.ok());
    CHECK(*removed == 1);
    CHECK_FALSE(spool->show("old").ok());
    CHECK(spool->show("old-dead").ok());
    CHECK(spool->show("old-pending").ok());
    CHECK(spool->show("new").ok());
    CHECK(count_rows(db,
                     "SELECT count(*) FROM attempts WHERE event_row NOT IN "
                     "(SELECT row FROM events)") == 0);
    // Only the key received "now" is still inside the one-hour window.
    CHECK(count_rows(db, "SELECT count(*) FROM dedup") == 1);
    CHECK(spool->pending_total() == 1);
  }

  TEST_CASE_TEMPLATE("a reopened spool resumes what was pending", Kind, LogKind, SqliteKind) {
    TempDir dir;
    {
      auto spool = Kind::open(dir);
      for (const char* id : {"d1", "d2", "d3"}) {
        REQUIRE(spool->put(make_event(id)).outcome == PutOutcome::stored);
      }
      REQUIRE(spool->mark_delivered(spool->due("stdout", 1000, 1)->front(), attempt(1, true)).ok());
    }
    auto spool = Kind::open(dir);
    CHECK(spool->pending_total() == 2);
    auto due = spool->due("stdout", 1000, 10);
    REQUIRE(due->size() == 2);
    CHECK(due->at(0).delivery_id == "d2");
    CHECK(due->at(1).delivery_id == "d3");
  }

  TEST_CASE("a retry made by another process is counted in pending_total") {
    TempDir dir;
    auto receiver = open_spool(dir, 1);
    REQUIRE(receiver->put(make_event("d1")).outcome == PutOutcome::stored);
    REQUIRE(receiver
                ->mark_failed(receiver->due("stdout", 1000, 1)->front(), attempt(1, false, "x"), 0,
                              true)
                .ok());
    CHECK(receiver->pending_total() == 0);
    auto tool = open_spool(dir);
    REQUIRE(tool->retry(std::nullopt, true).ok());
    // The receiver notices the other writer at its next transaction.
    CHECK(receiver->put(make_event("d2")).outcome == PutOutcome::full);
    CHECK(receiver->pending_total() == 1);
  }

  TEST_CASE("a read-only spool lists but refuses to write") {
    TempDir dir;
    open_spool(dir)->put(make_event("d1"));
    SpoolOptions options;
    options.data_dir = dir / "data";
    options.read_only = true;
    auto spool = Spool::open(options);
    REQUIRE(spool.ok());
    CHECK((*spool)->list({})->size() == 1);
    CHECK((*spool)->pending_total() == 1);
    CHECK((*spool)->put(make_event("d2")).outcome == PutOutcome::failed);
    CHECK_FALSE((*spool)->retry(std::nullopt, true).ok());

    options.data_dir = dir / "nothing-here";
    auto none = Spool::open(options);
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().detail.find("no spool") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir / "nothing-here"));
  }

  TEST_CASE("a file of garbage is refused with its path and SQLite's reason, and left alone") {
    TempDir dir;
    std::filesystem::create_directories(dir / "data");
    const std::string garbage(10000, '\x5a');
    tdhook::test::write_file(dir / "data" / "spool.db", garbage);
    SpoolOptions options;
    options.data_dir = dir / "data";
    auto spool = Spool::open(options);
    REQUIRE_FALSE(spool.ok());
    CHECK(spool.error().code == tdhook::ErrorCode::invalid_config);
    CHECK(spool.error().detail.find((dir / "data" / "spool.db").string()) != std::string::npos);
    CHECK(spool.error().detail.find("not a database") != std::string::npos);
    CHECK(tdhook::test::read_file(dir / "data" / "spool.db") == garbage);
  }

  TEST_CASE("a spool with a damaged page fails the integrity check at open") {
    TempDir dir;
    {
      auto spool = open_spool(dir);
      for (int i = 0; i < 300; ++i) {
        REQUIRE(spool->put(make_event("d" + std::to_string(i))).outcome == PutOutcome::stored);
      }
    }
    const auto path = dir / "data" / "spool.db";
    auto bytes = tdhook::test::read_file(path);
    REQUIRE(bytes.size() > 8 * 4096);
    // Pages 3 to 6: b-tree pages of the tables, well past the header.
    for (std::size_t i = 2 * 4096; i < 6 * 4096; ++i) bytes[i] = static_cast<char>(i * 7 + 3);
    tdhook::test::write_file(path, bytes);
    SpoolOptions options;
    options.data_dir = dir / "data";
    auto spool = Spool::open(options);
    REQUIRE_FALSE(spool.ok());
    MESSAGE(spool.error().detail);
    CHECK(spool.error().detail.find(path.string()) != std::string::npos);
    CHECK(spool.error().detail.find("corrupt") != std::string::npos);
  }

  TEST_CASE("another application's SQLite database is not taken for a spool") {
    TempDir dir;
    std::filesystem::create_directories(dir / "data");
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir / "data" / "spool.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE notes(text)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    SpoolOptions options;
    options.data_dir = dir / "data";
    auto spool = Spool::open(options);
    REQUIRE_FALSE(spool.ok());
    CHECK(spool.error().detail.find("not a tdhook spool") != std::string::npos);
    CHECK(count_rows(dir / "data" / "spool.db", "PRAGMA user_version") == 0);
  }

  TEST_CASE("a data directory or spool file that cannot be used is a clear error") {
    TempDir dir;
    SpoolOptions options;
    SUBCASE("the data directory cannot be created") {
      tdhook::test::write_file(dir / "file", "x");
      options.data_dir = dir / "file" / "data";
      auto spool = Spool::open(options);
      REQUIRE_FALSE(spool.ok());
      CHECK(spool.error().detail.find("data directory") != std::string::npos);
    }
    SUBCASE("spool.db is a directory") {
      std::filesystem::create_directories(dir / "data" / "spool.db");
      options.data_dir = dir / "data";
      auto spool = Spool::open(options);
      REQUIRE_FALSE(spool.ok());
      CHECK(spool.error().detail.find("not a regular file") != std::string::npos);
    }
  }

  TEST_CASE("a full disk fails the put without storing, and the spool recovers with space") {
    TempDir dir;
    // The file size limit applies to the whole process: test in a child so no other test is hit.
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) _exit(disk_full_scenario(dir / "data"));
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    // Each exit code names the step of disk_full_scenario that went wrong.
    CHECK(WEXITSTATUS(status) == 0);
  }
}

TEST_SUITE("log store") {
  using tdhook::receiver::Logger;

  std::unique_ptr<Store> open_log(const TempDir& dir, std::uint64_t segment_bytes,
                                  std::size_t window_bytes, std::chrono::milliseconds dedup) {
    LogStoreOptions options;
    options.store.data_dir = dir / "data";
    options.store.dedup_window = dedup;
    options.store.sinks = {"stdout", "slow"};
    options.segment_bytes = segment_bytes;
    options.memory_window_bytes = window_bytes;
    auto store = open_log_store(options, Logger(LogLevel::error));
    REQUIRE_MESSAGE(store.ok(), (store.ok() ? "" : store.error().detail));
    return std::move(*store);
  }

  std::size_t segment_files(const TempDir& dir) {
    std::size_t n = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir / "data" / "log")) {
      n += f.path().extension() == ".log" ? 1 : 0;
    }
    return n;
  }

  void deliver_all(Store & store, const std::string& sink) {
    for (;;) {
      auto due = store.due(sink, now_ms(), 100);
      REQUIRE(due.ok());
      if (due->empty()) return;
      std::vector<Mark> marks;
      for (const auto& d : *due) marks.push_back(Mark{&d, attempt(1, true), 0, false});
      REQUIRE(store.mark_batch(marks).ok());
    }
  }

  TEST_CASE("segments roll at their size and go once every sink is past them and the window") {
    TempDir dir;
    auto store = open_log(dir, 4096, 1 << 20, std::chrono::milliseconds(1));
    const std::int64_t now = now_ms() - 10;
    for (int i = 0; i < 40; ++i) {
      auto e = make_event("d" + std::to_string(i), now, {"stdout", "slow"});
      e.record.append(500, ' ');
      REQUIRE(store->put(std::move(e)).outcome == PutOutcome::stored);
    }
    const std::size_t rolled = segment_files(dir);
    CHECK(rolled >= 5);
    deliver_all(*store, "stdout");
    store->maintain(true);
    CHECK(segment_files(dir) == rolled);  // "slow" has delivered nothing yet
    deliver_all(*store, "slow");
    store->maintain(true);
    CHECK(segment_files(dir) == 1);  // the one being written stays
    CHECK(store->pending_total() == 0);
    CHECK(store->disk_bytes() < 4096 + 4096);
  }

  TEST_CASE("a sink far behind reads from the log what the memory window no longer holds") {
    TempDir dir;
    auto store = open_log(dir, 64 << 20, 2048, std::chrono::milliseconds(kHour));
    for (int i = 0; i < 50; ++i) {
      auto e = make_event("d" + std::to_string(i), 1000, {"slow"});
      e.record.append(300, 'x');
      REQUIRE(store->put(std::move(e)).outcome == PutOutcome::stored);
    }
    auto due = store->due("slow", 1000, 100);
    REQUIRE(due.ok());
    REQUIRE(due->size() == 50);
    for (int i = 0; i < 50; ++i) {
      CHECK(due->at(i).delivery_id == "d" + std::to_string(i));
      CHECK(due->at(i).record.size() == make_event("d" + std::to_string(i)).record.size() + 300);
    }
  }

  TEST_CASE("completions past the cursor are kept across a reopen, and only the rest is due") {
    TempDir dir;
    {
      auto store = open_log(dir, 64 << 20, 1 << 20, std::chrono::milliseconds(kHour));
      for (const char* id : {"d1", "d2", "d3", "d4"}) {
        REQUIRE(store->put(make_event(id)).outcome == PutOutcome::stored);
      }
      auto due = store->due("stdout", 1000, 10);
      REQUIRE(due->size() == 4);
      // d2 and d4 finish first (concurrent exec runs); d1 and d3 are still running.
      REQUIRE(store->mark_delivered(due->at(1), attempt(1, true)).ok());
      REQUIRE(store->mark_delivered(due->at(3), attempt(1, true)).ok());
      CHECK(store->due("stdout", 1000, 10)->size() == 2);
    }
    auto store = open_log(dir, 64 << 20, 1 << 20, std::chrono::milliseconds(kHour));
    auto due = store->due("stdout", 1000, 10);
    REQUIRE(due->size() == 2);
    CHECK(due->at(0).delivery_id == "d1");
    CHECK(due->at(1).delivery_id == "d3");
    CHECK(store->pending_total() == 2);
  }

  TEST_CASE("a sink that has settled nothing yet keeps what waits for it across a reopen") {
    TempDir dir;
    {
      auto store = open_log(dir, 64 << 20, 1 << 20, std::chrono::milliseconds(kHour));
      REQUIRE(store->put(make_event("d1", 1000, {"slow"})).outcome == PutOutcome::stored);
    }
    auto store = open_log(dir, 64 << 20, 1 << 20, std::chrono::milliseconds(kHour));
    auto due = store->due("slow", 1000, 10);
    REQUIRE(due->size() == 1);
    CHECK(due->front().delivery_id == "d1");
  }

  TEST_CASE("a second opener of a data directory in use is refused as busy") {
    TempDir dir;
    auto store = open_log(dir, 64 << 20, 1 << 20, std::chrono::milliseconds(kHour));
    LogStoreOptions options;
    options.store.data_dir = dir / "data";
    auto second = open_log_store(options, Logger(LogLevel::error));
    REQUIRE_FALSE(second.ok());
    CHECK(is_store_busy(second.error()));
    store.reset();
    CHECK(open_log_store(options, Logger(LogLevel::error)).ok());
  }

  TEST_CASE("purge removes delivered segments before the cutoff and keeps pending and dead ones") {
    TempDir dir;
    auto store = open_log(dir, 1024, 1 << 20, std::chrono::milliseconds(kHour));
    for (int i = 0; i < 6; ++i) {
      auto e = make_event("old" + std::to_string(i), 1000, {"stdout"});
      e.record.append(600, ' ');
      REQUIRE(store->put(std::move(e)).outcome == PutOutcome::stored);
    }
    auto due = store->due("stdout", 1000, 10);
    REQUIRE(due->size() == 6);
    REQUIRE(store->mark_failed(due->at(0), attempt(1, false, "gone"), 0, true).ok());
    for (int i = 1; i < 5; ++i) REQUIRE(store->mark_delivered(due->at(i), attempt(1, true)).ok());
    auto removed = store->purge_delivered(now_ms());
    REQUIRE(removed.ok());
    CHECK(*removed >= 4);
    CHECK_FALSE(store->show("old1").ok());
    auto dead = store->show("old0");  // its record kept with the dead letter
    REQUIRE(dead.ok());
    CHECK(dead->record.find("old0") != std::string::npos);
    CHECK(store->show("old5").ok());  // still pending
    CHECK(store->pending_total() == 1);
    REQUIRE(store->retry(std::string("old0"), false).ok());
    auto again = store->due("stdout", now_ms(), 10);
    REQUIRE(again->size() == 2);
    CHECK(again->at(0).delivery_id == "old0");
    CHECK(again->at(0).attempts == 1);
  }
}
