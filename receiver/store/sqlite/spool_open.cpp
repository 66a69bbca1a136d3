// Opening the spool: identity and integrity checks, schema creation, prepared statements.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include "store/sqlite/spool_impl.hpp"

namespace tdhook::receiver {
namespace {

using detail::Connection;
using detail::SqlFailure;

// Written to the database header so that another application's SQLite file is never taken for
// (and turned into) a spool.
constexpr std::int64_t kApplicationId = 0x7464686b;  // "tdhk"
constexpr std::int64_t kSchemaVersion = kSpoolSchemaVersion;

constexpr const char* kSchema = R"sql(
CREATE TABLE events(
  row INTEGER PRIMARY KEY,
  delivery_id TEXT NOT NULL UNIQUE,
  event TEXT NOT NULL,
  project_id TEXT NOT NULL,
  subscription_id TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  record TEXT NOT NULL);
CREATE INDEX events_received ON events(received_at);
CREATE TABLE deliveries(
  event_row INTEGER NOT NULL,
  sink TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (sink, event_row)) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries(sink, state, next_attempt_at);
CREATE INDEX deliveries_event ON deliveries(event_row, state);
CREATE INDEX deliveries_pending ON deliveries(event_row) WHERE state='pending';
CREATE TABLE attempts(
  event_row INTEGER NOT NULL,
  sink TEXT NOT NULL,
  number INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  error TEXT NOT NULL);
CREATE INDEX attempts_event ON attempts(event_row);
CREATE TABLE dedup(
  key TEXT PRIMARY KEY,
  delivery_id TEXT NOT NULL,
  received_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX dedup_received ON dedup(received_at);
)sql";

// Added after the first release of the schema (same version: older spools get it at their next
// start, and an older tdhook keeps it up to date like any index). It holds only the pending
// deliveries, so counting the pending events reads a few pages, not the whole table.
constexpr const char* kPendingIndex =
    "CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(event_row) "
    "WHERE state='pending'";

Error open_error(const std::filesystem::path& path, const std::string& what) {
  return Error{ErrorCode::invalid_config, "spool " + path.string() + ": " + what};
}

bool single_integer(Connection& db, const char* sql, std::int64_t& out, SqlFailure& failure) {
  detail::Statement stmt;
  if (!db.prepare(sql, stmt, failure)) return false;
  detail::Query q(stmt);
  const int rc = q.step();
  if (rc != SQLITE_ROW) {
    failure = db.last_failure(rc);
    return false;
  }
  out = q.integer(0);
  return true;
}

// PRAGMA quick_check: "ok", or one row per problem found.
Status integrity(Connection& db, const std::filesystem::path& path) {
  detail::Statement stmt;
  SqlFailure failure;
  if (!db.prepare("PRAGMA quick_check(5)", stmt, failure)) {
    return open_error(path, "integrity check failed: " + detail::describe(failure));
  }
  detail::Query q(stmt);
  std::string problems;
  int rc = SQLITE_ROW;
  while ((rc = q.step()) == SQLITE_ROW) {
    std::string line = q.text(0);
    std::replace(line.begin(), line.end(), '\n', ' ');  // one error line, for logs
    if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
  }
  if (rc != SQLITE_DONE) {
    return open_error(path, "corrupted: " + detail::describe(db.last_failure(rc)));
  }
  if (!problems.empty()) return open_error(path, "corrupted: " + problems);
  return Ok{};
}

// Checks that the file is ours (or empty) and of a version we know, without writing anything.
// Sets `fresh` when the schema must be created.
Status identify(Connection& db, const std::filesystem::path& path, bool& fresh) {
  SqlFailure failure;
  std::int64_t app_id = 0, version = 0, objects = 0;
  if (!single_integer(db, "PRAGMA application_id", app_id, failure) ||
      !single_integer(db, "PRAGMA user_version", version, failure) ||
      !single_integer(db, "SELECT count(*) FROM sqlite_schema", objects, failure)) {
    if (failure.code == SQLITE_CORRUPT) {
      return open_error(path, "corrupted: " + detail::describe(failure));
    }
    return open_error(path, "not a readable tdhook spool: " + detail::describe(failure));
  }
  if (app_id == 0 && version == 0 && objects == 0) {
    fresh = true;
    return Ok{};
  }
  if (app_id != kApplicationId) {
    return open_error(path, "an SQLite database that is not a tdhook spool; refusing to use it");
  }
  if (version > kSchemaVersion) {
    return open_error(path, "written by a newer tdhook (schema version " + std::to_string(version) +
                                ", this one knows " + std::to_string(kSchemaVersion) + ")");
  }
  if (version < 1) return open_error(path, "incomplete tdhook spool (no schema version)");
  return Ok{};
}

// SQLite answers with the mode in force, which stays the old one where WAL is impossible (some
// network file systems): the spool's concurrency with `tdhook spool` relies on WAL.
Status enable_wal(Connection& db, const std::filesystem::path& path) {
  SqlFailure failure;
  detail::Statement wal;
  if (!db.prepare("PRAGMA journal_mode=WAL", wal, failure)) {
    return open_error(path, "cannot switch to WAL mode: " + detail::describe(failure));
  }
  detail::Query q(wal);
  if (const int rc = q.step(); rc != SQLITE_ROW) {
    return open_error(path, "cannot switch to WAL mode: " + detail::describe(db.last_failure(rc)));
  }
  if (q.text(0) != "wal") {
    return open_error(path, "cannot use WAL mode here (journal mode stays " + q.text(0) + ")");
  }
  return Ok{};
}

Status configure(Connection& db, const SpoolOptions& options, const std::filesystem::path& path) {
  SqlFailure failure;
  if (auto s = enable_wal(db, path); !s) return s;
  const char* sync = options.durability == Durability::power ? "PRAGMA synchronous=FULL"
                                                             : "PRAGMA synchronous=NORMAL";
  // 8 MiB of page cache: the pages a batch touches stay in memory between batches. The log file is
  // never truncated inside a commit: a log grown by a burst or a purge would be cut back in the
  // commit of some waiting requests (100 ms and more for a few hundred MiB). The receiver empties
  // it when idle (Spool::maintain).
  if (!db.exec(sync, failure) || !db.exec("PRAGMA journal_size_limit=-1", failure) ||
      !db.exec("PRAGMA cache_size=-8192", failure)) {
    return open_error(path, detail::describe(failure));
  }
  return Ok{};
}

Status create_schema(Connection& db, const std::filesystem::path& path) {
  SqlFailure failure;
  detail::Transaction txn(db);
  const std::string version = "PRAGMA user_version=" + std::to_string(kSchemaVersion) +
                              "; PRAGMA application_id=" + std::to_string(kApplicationId);
  if (!txn.begin(failure) || !db.exec(kSchema, failure) || !db.exec(version.c_str(), failure) ||
      !txn.commit(failure)) {
    return open_error(path, "cannot create the schema: " + detail::describe(failure));
  }
  return Ok{};
}

Result<Connection> connect(const std::filesystem::path& path, bool read_only) {
  SqlFailure failure;
  const int flags =
      (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;
  Connection db = Connection::open(path, flags, failure);
  if (!db.is_open()) return open_error(path, "cannot open: " + detail::describe(failure));
  // SQLite quietly opens a file it may not write read-only; the receiver would then answer 503
  // to every event instead of refusing to start.
  if (!read_only && sqlite3_db_readonly(db.get(), "main") == 1) {
    return open_error(path, "cannot open for writing (read-only file or file system)");
  }
  // `tdhook spool retry|purge` and the receiver write to the same file: wait for the lock (up
  // to 10 s), never fail. SQLite's own busy timeout sleeps in growing steps of up to 100 ms,
  // and a writer that wakes just after another process's commit finds its next transaction
  // begun: every answer waiting on the receiver's commit would wait that long. Looking again
  // every millisecond takes the lock in the gap between two purge chunks.
  sqlite3_busy_handler(db.get(), spool_busy_handler, nullptr);
  return db;
}

// What fdatasync of one small write costs in `dir` (the cheapest of three, in microseconds): the
// fixed price of every checkpoint, which paces them (Spool::maintain). 0 when it cannot tell.
std::int64_t measure_sync_us(const std::filesystem::path& dir) {
  const auto probe = dir / "spool.sync-probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 0;
  const std::string page(4096, '\0');
  std::int64_t best = 0;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (::pwrite(fd, page.data(), page.size(), 0) != static_cast<ssize_t>(page.size()) ||
        ::fdatasync(fd) != 0) {
      best = 0;
      break;
    }
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    best = i == 0 ? us : std::min<std::int64_t>(best, us);
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return best;
}

}  // namespace

int spool_busy_handler(void*, int tries) {
  if (tries >= 10000) return 0;
  ::usleep(1000);
  return 1;
}

Result<std::unique_ptr<Spool>> Spool::open(const SpoolOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->path = options.data_dir / "spool.db";
  const auto& path = impl->path;
  std::error_code ec;
  if (options.read_only) {
    if (!std::filesystem::is_regular_file(path, ec)) {
      return open_error(path, "no spool here (the file does not exist or is not a regular file)");
    }
  } else {
    std::filesystem::create_directories(options.data_dir, ec);
    if (ec) return open_error(path, "cannot create the data directory: " + ec.message());
    const bool exists = std::filesystem::exists(path, ec);
    if (exists && !std::filesystem::is_regular_file(path, ec)) {
      return open_error(path, "not a regular file");
    }
    // SQLite would say "unable to open database file", or quietly open the file read-only.
    // access() also reports a read-only file system to root, who ignores permissions. The
    // directory must take new files too: the write-ahead log and its index live beside.
    if (::access(options.data_dir.c_str(), W_OK) != 0) {
      return open_error(path, (exists ? "cannot write in its directory: " : "cannot create it: ") +
                                  std::string(std::strerror(errno)));
    }
    if (exists && ::access(path.c_str(), W_OK) != 0) {
      return open_error(path, "cannot write it: " + std::string(std::strerror(errno)));
    }
    // Committed events may live in the write-ahead log alone. A new spool.db beside it would
    // not match the log, and SQLite would discard the log: refuse rather than start empty.
    const auto wal = std::filesystem::path(path.string() + "-wal");
    if (!exists && std::filesystem::file_size(wal, ec) > 0 && !ec) {
      return open_error(path, "missing, but its write-ahead log " + wal.string() +
                                  " holds data; restore the spool or move the log away");
    }
  }

  auto main_db = connect(path, options.read_only);
  if (!main_db) return std::move(main_db).error();
  bool fresh = false;
  if (auto s = identify(*main_db, path, fresh); !s) return std::move(s).error();
  if (fresh && options.read_only) return open_error(path, "empty file, not a tdhook spool");
  if (options.check_integrity) {
    if (auto s = integrity(*main_db, path); !s) return std::move(s).error();
  }
  SqlFailure failure;
  // An existing spool's tables are checked (by preparing every statement on them) before
  // anything is written to the file, WAL mode included.
  if (!options.read_only && !fresh && !prepare_write_statements(*main_db, impl->w, failure)) {
    return open_error(path, "not the schema of a tdhook spool (version " +
                                std::to_string(kSchemaVersion) + "): " + detail::describe(failure));
  }
  if (!options.read_only) {
    if (auto s = configure(*main_db, options, path); !s) return std::move(s).error();
    if (fresh) {
      if (auto s = create_schema(*main_db, path); !s) return std::move(s).error();
    } else if (!main_db->exec(kPendingIndex, failure)) {
      return open_error(path,
                        "cannot add the pending-deliveries index: " + detail::describe(failure));
    }
  }

  if (options.read_only) {
    impl->read_db = std::move(*main_db);
  } else {
    impl->write_db = std::move(*main_db);
    if ((fresh && !prepare_write_statements(impl->write_db, impl->w, failure)) ||
        !impl->sync_external_changes(failure)) {
      return open_error(path, detail::describe(failure));
    }
    auto reader = connect(path, true);
    if (!reader) return std::move(reader).error();
    impl->read_db = std::move(*reader);
  }
  if (!prepare_read_statements(impl->read_db, impl->r, failure)) {
    return open_error(path, "not the schema of a tdhook spool (version " +
                                std::to_string(kSchemaVersion) + "): " + detail::describe(failure));
  }
  if (!options.read_only) {
    // No checkpoint inside commits (SQLite's auto-checkpoint is its WAL hook, replaced here):
    // the receiver checkpoints between batches (Spool::maintain), `tdhook spool` never does
    // while another connection is open (SQLite checkpoints at the close of the last one).
    sqlite3_wal_hook(
        impl->write_db.get(),
        [](void* arg, sqlite3*, const char*, int frames) {
          static_cast<std::atomic<int>*>(arg)->store(frames, std::memory_order_relaxed);
          return SQLITE_OK;
        },
        &impl->wal_frames);
    const auto lock_path = options.data_dir / "spool.lock";
    impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (impl->lock_fd < 0) {
      return open_error(
          path, "cannot open its lock file " + lock_path.string() + ": " + std::strerror(errno));
    }
    if (options.writer_checkpoints) impl->sync_cost_us = measure_sync_us(options.data_dir);
  }
  if (options.read_only) {
    // Only for pending_total(); a read-only spool never changes it.
    std::int64_t pending = 0;
    if (!single_integer(impl->read_db,
                        "SELECT count(DISTINCT event_row) FROM deliveries WHERE state='pending'",
                        pending, failure)) {
      return open_error(path, detail::describe(failure));
    }
    impl->pending = pending;
    impl->writable = false;
  }
  return std::unique_ptr<Spool>(new Spool(std::move(impl)));
}

}  // namespace tdhook::receiver
