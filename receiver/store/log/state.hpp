#pragma once
// The log's small state, in <data-dir>/state.db (SQLite, WAL, synchronous=NORMAL): per sink a
// cursor (every event before it is settled), the few settled events past the cursor that
// concurrent exec runs leave, the failed deliveries waiting for their next attempt, the dead
// letters (each with a copy of its record and original, so that the log can drop its segment),
// and the attempts of every delivery that failed at least once.
//
// Why SQLite here and not for the events: these rows are small and rare (a cursor update per
// delivered batch, a row per failure), several of them change together (a dead letter, its
// attempt and the cursor past it), and `tdhook spool ls --state dead` wants to query them. A
// lost transaction (power cut under synchronous=NORMAL) moves a cursor back: events delivered
// again, never lost. The events themselves are the log's; nothing here is needed to keep one.
//
// Not thread-safe: the log store calls it under its own lock.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/sqlite/spool_sqlite.hpp"
#include "store/store.hpp"

namespace tdhook::receiver::log {

// A delivery that failed and waits for its next attempt, or a dead letter.
struct Parked {
  std::string sink;
  std::uint64_t seq = 0;
  int attempts = 0;
  std::int64_t next_at_ms = 0;  // waiting: when it is due; dead: when it died
  std::string last_error;
  // The event's header, and its record (and original, if any) when the log no longer holds it
  // (a dead letter, or one retried after its segment was removed); empty record = read it from
  // the log.
  std::string delivery_id, event, project_id, subscription_id;
  std::int64_t timestamp_ms = 0, received_at_ms = 0;
  std::string record;
  std::string original;
};

struct AttemptRow {
  std::string sink;
  std::uint64_t seq = 0;
  std::string delivery_id;
  Attempt attempt;
};

// What one mark_batch() (or retry, or import) changes, written in one transaction.
struct StateChange {
  std::vector<std::pair<std::string, std::uint64_t>> cursors;  // (sink, new cursor)
  std::vector<std::pair<std::string, std::uint64_t>> settled;  // settled past the cursor
  std::vector<Parked> waiting_put;                             // insert or replace
  std::vector<std::pair<std::string, std::uint64_t>> waiting_drop;
  std::vector<Parked> dead_put;
  std::vector<std::pair<std::string, std::uint64_t>> dead_drop;
  std::vector<AttemptRow> attempts;
  bool empty() const noexcept {
    return cursors.empty() && settled.empty() && waiting_put.empty() && waiting_drop.empty() &&
           dead_put.empty() && dead_drop.empty() && attempts.empty();
  }
};

struct LoadedSink {
  std::optional<std::uint64_t> cursor;
  std::vector<std::uint64_t> settled;
  std::vector<Parked> waiting;
};

class StateDb {
 public:
  // Opens or creates `path`. `existed` says whether the file was there before.
  static Result<std::unique_ptr<StateDb>> open(const std::filesystem::path& path, bool& existed);

  Result<LoadedSink> load_sink(const std::string& sink);
  // The highest seq any row names (a cursor may be one past the last event): the log's next
  // seq is never below it, so an event that is lost from the log's tail can never make a new
  // event look settled.
  Result<std::uint64_t> max_seq();
  Status apply(const StateChange& change);
  // Every sink that has a row here (a cursor, a settled event, a waiting or dead delivery):
  // what `tdhook spool` opens the store with when it has no configuration to read them from.
  Result<std::vector<std::string>> sink_names();

  Result<std::vector<Parked>> dead(const std::optional<std::string>& sink, std::size_t limit);
  Result<std::vector<Parked>> dead_of(const std::string& delivery_id);
  Result<std::int64_t> dead_count(const std::optional<std::string>& sink);
  Result<std::vector<AttemptRow>> attempts_of(const std::string& delivery_id);
  // Drops attempt rows of events before `seq` that are no longer waiting or dead.
  Status forget_attempts_before(std::uint64_t seq);
  // Dead letters received before `before_ms` (purge --dead): how many were removed.
  Result<std::int64_t> purge_dead(std::int64_t before_ms);

 private:
  explicit StateDb(detail::Connection db) : db_(std::move(db)) {}
  Status add_original_column();
  Error failure(const detail::SqlFailure& f) const;
  // Prepared once, by their text; destroyed before the connection.
  detail::Statement* prepare(const std::string& sql, detail::SqlFailure& f);
  detail::Connection db_;
  std::map<std::string, detail::Statement> statements_;
  std::filesystem::path path_;
};

}  // namespace tdhook::receiver::log
