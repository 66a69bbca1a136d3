#include "store/log/state.hpp"

#include <map>

namespace tdhook::receiver::log {
namespace {

using detail::Query;
using detail::SqlFailure;
using detail::Statement;

constexpr const char* kSchema = R"sql(
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
PRAGMA busy_timeout=5000;
CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settled(sink TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(sink, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parked(kind TEXT NOT NULL, sink TEXT NOT NULL, seq INTEGER NOT NULL,
  attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, last_error TEXT NOT NULL,
  delivery_id TEXT NOT NULL, event TEXT NOT NULL, project_id TEXT NOT NULL,
  subscription_id TEXT NOT NULL, timestamp INTEGER NOT NULL, received_at INTEGER NOT NULL,
  record TEXT NOT NULL, original TEXT NOT NULL DEFAULT '', PRIMARY KEY(kind, sink, seq))
  WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parked_id ON parked(delivery_id);
CREATE TABLE IF NOT EXISTS attempts(sink TEXT NOT NULL, seq INTEGER NOT NULL,
  delivery_id TEXT NOT NULL, number INTEGER NOT NULL, started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL, ok INTEGER NOT NULL, error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_id ON attempts(delivery_id);
CREATE INDEX IF NOT EXISTS attempts_seq ON attempts(seq);
)sql";

constexpr const char* kParkedColumns =
    "sink, seq, attempts, next_at, last_error, delivery_id, event, project_id, subscription_id, "
    "timestamp, received_at, record, original";

Parked read_parked(const Query& q) {
  Parked p;
  p.sink = q.text(0);
  p.seq = static_cast<std::uint64_t>(q.integer(1));
  p.attempts = static_cast<int>(q.integer(2));
  p.next_at_ms = q.integer(3);
  p.last_error = q.text(4);
  p.delivery_id = q.text(5);
  p.event = q.text(6);
  p.project_id = q.text(7);
  p.subscription_id = q.text(8);
  p.timestamp_ms = q.integer(9);
  p.received_at_ms = q.integer(10);
  p.record = q.text(11);
  p.original = q.text(12);
  return p;
}

}  // namespace

detail::Statement* StateDb::prepare(const std::string& sql, SqlFailure& f) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return &it->second;
  Statement s;
  if (!db_.prepare(sql, s, f)) return nullptr;
  return &statements_.emplace(sql, std::move(s)).first->second;
}

Error StateDb::failure(const SqlFailure& f) const {
  return Error{ErrorCode::invalid_input, "state " + path_.string() + ": " + detail::describe(f)};
}

Result<std::unique_ptr<StateDb>> StateDb::open(const std::filesystem::path& path, bool& existed) {
  std::error_code ec;
  existed = std::filesystem::exists(path, ec);
  SqlFailure f;
  auto db = detail::Connection::open(
      path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, f);
  if (!db.is_open()) {
    return Error{ErrorCode::invalid_input, "state " + path.string() + ": " + detail::describe(f)};
  }
  if (!db.exec(kSchema, f)) {
    return Error{ErrorCode::invalid_input, "state " + path.string() + ": " + detail::describe(f)};
  }
  std::unique_ptr<StateDb> state(new StateDb(std::move(db)));
  state->path_ = path;
  if (auto added = state->add_original_column(); !added) return std::move(added).error();
  return state;
}

#define TDHOOK_PREPARE(var, sql)      \
  SqlFailure f;                       \
  Statement* var = prepare((sql), f); \
  if (var == nullptr) return failure(f)

// A state.db of an earlier version has no `original` column in `parked` (added with forward:
// sinks): added empty, as those deliveries kept none.
Status StateDb::add_original_column() {
  bool present = false;
  {
    TDHOOK_PREPARE(s, "SELECT count(*) FROM pragma_table_info('parked') WHERE name='original'");
    Query q(*s);
    const int rc = q.step();
    if (rc != SQLITE_ROW) return failure(db_.last_failure(rc));
    present = q.integer(0) != 0;
  }
  if (present) return Ok{};
  SqlFailure f;
  if (!db_.exec("ALTER TABLE parked ADD COLUMN original TEXT NOT NULL DEFAULT ''", f))
    return failure(f);
  return Ok{};
}

Result<LoadedSink> StateDb::load_sink(const std::string& sink) {
  LoadedSink out;
  {
    TDHOOK_PREPARE(s, "SELECT seq FROM cursors WHERE sink=?1");
    Query q(*s);
    q.bind(1, sink);
    const int rc = q.step();
    if (rc == SQLITE_ROW)
      out.cursor = static_cast<std::uint64_t>(q.integer(0));
    else if (rc != SQLITE_DONE)
      return failure(db_.last_failure(rc));
  }
  {
    TDHOOK_PREPARE(s, "SELECT seq FROM settled WHERE sink=?1 ORDER BY seq");
    Query q(*s);
    q.bind(1, sink);
    int rc = 0;
    while ((rc = q.step()) == SQLITE_ROW)
      out.settled.push_back(static_cast<std::uint64_t>(q.integer(0)));
    if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  }
  {
    TDHOOK_PREPARE(s, std::string("SELECT ") + kParkedColumns +
                          " FROM parked WHERE kind='waiting' AND sink=?1 ORDER BY seq");
    Query q(*s);
    q.bind(1, sink);
    int rc = 0;
    while ((rc = q.step()) == SQLITE_ROW) out.waiting.push_back(read_parked(q));
    if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  }
  return out;
}

Result<std::uint64_t> StateDb::max_seq() {
  TDHOOK_PREPARE(s,
                 "SELECT max(coalesce((SELECT max(seq) FROM cursors), 0), coalesce((SELECT "
                 "max(seq) + 1 FROM settled), 0), coalesce((SELECT max(seq) + 1 FROM parked), 0))");
  Query q(*s);
  const int rc = q.step();
  if (rc != SQLITE_ROW) return failure(db_.last_failure(rc));
  return static_cast<std::uint64_t>(q.integer(0));
}

Result<std::vector<std::string>> StateDb::sink_names() {
  TDHOOK_PREPARE(s,
                 "SELECT sink FROM cursors UNION SELECT sink FROM settled UNION SELECT sink FROM "
                 "parked ORDER BY 1");
  Query q(*s);
  std::vector<std::string> out;
  int rc = 0;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(q.text(0));
  if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  return out;
}

Status StateDb::apply(const StateChange& c) {
  if (c.empty()) return Ok{};
  SqlFailure f;
  detail::Transaction txn(db_);
  if (!txn.begin(f)) return failure(f);
  const auto run = [&](const std::string& sql, const auto& bind) -> bool {
    Statement* s = prepare(sql, f);
    if (s == nullptr) return false;
    Query q(*s);
    bind(q);
    const int rc = q.step();
    if (rc == SQLITE_DONE) return true;
    f = db_.last_failure(rc);
    return false;
  };
  const auto seq_arg = [](std::uint64_t seq) { return static_cast<std::int64_t>(seq); };
  bool ok = true;
  // Plain references, not structured bindings: clang 14 cannot capture those in a lambda.
  for (const auto& cursor : c.cursors) {
    const std::string& sink = cursor.first;
    const std::uint64_t seq = cursor.second;
    ok = ok && run("INSERT OR REPLACE INTO cursors(sink, seq) VALUES(?1, ?2)",
                   [&](Query& q) { q.bind(1, sink).bind(2, seq_arg(seq)); });
    ok = ok && run("DELETE FROM settled WHERE sink=?1 AND seq<?2",
                   [&](Query& q) { q.bind(1, sink).bind(2, seq_arg(seq)); });
  }
  for (const auto& settled : c.settled) {
    const std::string& sink = settled.first;
    const std::uint64_t seq = settled.second;
    ok = ok && run("INSERT OR IGNORE INTO settled(sink, seq) VALUES(?1, ?2)",
                   [&](Query& q) { q.bind(1, sink).bind(2, seq_arg(seq)); });
  }
  const auto put = [&](const char* kind, const Parked& p) {
    return run(std::string("INSERT OR REPLACE INTO parked(kind, ") + kParkedColumns +
                   ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
               [&](Query& q) {
                 q.bind(1, std::string_view(kind)).bind(2, p.sink).bind(3, seq_arg(p.seq));
                 q.bind(4, std::int64_t{p.attempts}).bind(5, p.next_at_ms).bind(6, p.last_error);
                 q.bind(7, p.delivery_id).bind(8, p.event).bind(9, p.project_id);
                 q.bind(10, p.subscription_id).bind(11, p.timestamp_ms).bind(12, p.received_at_ms);
                 q.bind(13, p.record).bind(14, p.original);
               });
  };
  const auto drop = [&](const char* kind, const std::pair<std::string, std::uint64_t>& key) {
    return run("DELETE FROM parked WHERE kind=?1 AND sink=?2 AND seq=?3", [&](Query& q) {
      q.bind(1, std::string_view(kind)).bind(2, key.first).bind(3, seq_arg(key.second));
    });
  };
  for (const auto& key : c.waiting_drop) ok = ok && drop("waiting", key);
  for (const auto& p : c.waiting_put) ok = ok && put("waiting", p);
  for (const auto& key : c.dead_drop) ok = ok && drop("dead", key);
  for (const auto& p : c.dead_put) ok = ok && put("dead", p);
  for (const auto& a : c.attempts) {
    ok = ok && run("INSERT INTO attempts(sink, seq, delivery_id, number, started_at, "
                   "finished_at, ok, error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                   [&](Query& q) {
                     q.bind(1, a.sink).bind(2, seq_arg(a.seq)).bind(3, a.delivery_id);
                     q.bind(4, std::int64_t{a.attempt.number}).bind(5, a.attempt.started_at_ms);
                     q.bind(6, a.attempt.finished_at_ms)
                         .bind(7, std::int64_t{a.attempt.ok ? 1 : 0})
                         .bind(8, a.attempt.error);
                   });
  }
  if (ok) ok = txn.commit(f);
  if (!ok) return failure(f);
  return Ok{};
}

Result<std::vector<Parked>> StateDb::dead(const std::optional<std::string>& sink,
                                          std::size_t limit) {
  TDHOOK_PREPARE(s, std::string("SELECT ") + kParkedColumns +
                        " FROM parked WHERE kind='dead' AND (?1 IS NULL OR sink=?1) ORDER BY "
                        "seq, sink LIMIT ?2");
  Query q(*s);
  if (sink)
    q.bind(1, *sink);
  else
    q.bind_null(1);
  q.bind(2, limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(limit));
  std::vector<Parked> out;
  int rc = 0;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(read_parked(q));
  if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  return out;
}

Result<std::vector<Parked>> StateDb::dead_of(const std::string& delivery_id) {
  TDHOOK_PREPARE(s, std::string("SELECT ") + kParkedColumns +
                        " FROM parked WHERE kind='dead' AND delivery_id=?1 ORDER BY sink");
  Query q(*s);
  q.bind(1, delivery_id);
  std::vector<Parked> out;
  int rc = 0;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(read_parked(q));
  if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  return out;
}

Result<std::int64_t> StateDb::dead_count(const std::optional<std::string>& sink) {
  TDHOOK_PREPARE(s, "SELECT count(*) FROM parked WHERE kind='dead' AND (?1 IS NULL OR sink=?1)");
  Query q(*s);
  if (sink)
    q.bind(1, *sink);
  else
    q.bind_null(1);
  const int rc = q.step();
  if (rc != SQLITE_ROW) return failure(db_.last_failure(rc));
  return q.integer(0);
}

Result<std::vector<AttemptRow>> StateDb::attempts_of(const std::string& delivery_id) {
  TDHOOK_PREPARE(s,
                 "SELECT sink, seq, number, started_at, finished_at, ok, error FROM attempts "
                 "WHERE delivery_id=?1 ORDER BY sink, number, rowid");
  Query q(*s);
  q.bind(1, delivery_id);
  std::vector<AttemptRow> out;
  int rc = 0;
  while ((rc = q.step()) == SQLITE_ROW) {
    AttemptRow a;
    a.sink = q.text(0);
    a.seq = static_cast<std::uint64_t>(q.integer(1));
    a.delivery_id = delivery_id;
    a.attempt = Attempt{static_cast<int>(q.integer(2)), q.integer(3), q.integer(4),
                        q.integer(5) != 0, q.text(6)};
    out.push_back(std::move(a));
  }
  if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  return out;
}

Status StateDb::forget_attempts_before(std::uint64_t seq) {
  TDHOOK_PREPARE(s,
                 "DELETE FROM attempts WHERE seq<?1 AND NOT EXISTS(SELECT 1 FROM parked p "
                 "WHERE p.seq=attempts.seq AND p.sink=attempts.sink)");
  Query q(*s);
  q.bind(1, static_cast<std::int64_t>(seq));
  const int rc = q.step();
  if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  return Ok{};
}

Result<std::int64_t> StateDb::purge_dead(std::int64_t before_ms) {
  TDHOOK_PREPARE(s, "DELETE FROM parked WHERE kind='dead' AND received_at<?1");
  Query q(*s);
  q.bind(1, before_ms);
  const int rc = q.step();
  if (rc != SQLITE_DONE) return failure(db_.last_failure(rc));
  return db_.changes();
}

#undef TDHOOK_PREPARE

}  // namespace tdhook::receiver::log
