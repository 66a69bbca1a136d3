// Delivery state (due, mark, retry, purge) and inspection (list, show, counts) of the spool.
#include <thread>

#include "store/sqlite/spool_impl.hpp"
#include "tdhook/pattern.hpp"

namespace tdhook::receiver {
namespace {

using detail::Query;
using detail::SqlFailure;

constexpr std::int64_t kPurgeChunk = 100;  // = the LIMIT of purge_select

Error read_only_error() { return Error{ErrorCode::invalid_input, "spool opened read-only"}; }

// Several queries that must see one state of the database (show(): an event purged between
// them would otherwise appear half).
class ReadSnapshot {
 public:
  explicit ReadSnapshot(detail::Connection& db) : db_(db) {
    SqlFailure ignored;
    active_ = db_.exec("BEGIN", ignored);
  }
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;
  ~ReadSnapshot() {
    SqlFailure ignored;
    if (active_ && db_.in_transaction()) db_.exec("COMMIT", ignored);
  }

 private:
  detail::Connection& db_;
  bool active_ = false;
};

bool step_done(detail::Connection& db, Query& q, SqlFailure& failure) {
  const int rc = q.step();
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return true;
  failure = db.last_failure(rc);
  return false;
}

DeliveryInfo read_info(const Query& q) {
  DeliveryInfo info;
  info.delivery_id = q.text(0);
  info.sink = q.text(1);
  info.event = q.text(2);
  info.project_id = q.text(3);
  info.timestamp_ms = q.integer(4);
  info.received_at_ms = q.integer(5);
  info.state = parse_state(q.text(6));
  info.attempts = static_cast<int>(q.integer(7));
  info.next_attempt_at_ms = q.integer(8);
  info.last_error = q.text(9);
  return info;
}

}  // namespace

Error Spool::Impl::sql_error(const SqlFailure& failure) const {
  return Error{ErrorCode::invalid_input,
               "spool " + path.string() + ": " + detail::describe(failure)};
}

bool Spool::Impl::sync_external_changes(SqlFailure& failure) {
  std::int64_t version = 0;
  {
    Query q(w.data_version);
    const int rc = q.step();
    if (rc != SQLITE_ROW) {
      failure = write_db.last_failure(rc);
      return false;
    }
    version = q.integer(0);
  }
  if (version == data_version) return true;
  // Another process committed (`tdhook spool retry` moves deliveries back to pending): recount.
  // Cheap: the deliveries_pending index holds the pending deliveries only.
  if (!recount_pending(failure)) return false;
  data_version = version;
  return true;
}

bool Spool::Impl::recount_pending(SqlFailure& failure) {
  Query q(w.count_pending);
  const int rc = q.step();
  if (rc != SQLITE_ROW) {
    failure = write_db.last_failure(rc);
    return false;
  }
  pending = q.integer(0);
  return true;
}

bool Spool::Impl::settle_event(std::int64_t event_row, SqlFailure& failure) {
  Query q(w.has_pending);
  q.bind(1, event_row);
  const int rc = q.step();
  if (rc != SQLITE_ROW) {
    failure = write_db.last_failure(rc);
    return false;
  }
  if (q.integer(0) == 0 && pending.load() > 0) pending.fetch_sub(1);
  return true;
}

bool Spool::Impl::mark_one(const Delivery& d, const Attempt& attempt, DeliveryState state,
                           std::int64_t next_attempt_at_ms, SqlFailure& failure) {
  std::int64_t changed = 0;
  {
    Query m(w.mark);
    m.bind(1, to_string(state)).bind(2, attempt.number).bind(3, next_attempt_at_ms);
    m.bind(4, attempt.ok ? std::string_view{} : std::string_view{attempt.error});
    m.bind(5, spool_now_ms()).bind(6, d.sink).bind(7, d.event_row);
    if (!step_done(write_db, m, failure)) return false;
    changed = write_db.changes();
  }
  {
    Query a(w.attempt_insert);
    a.bind(1, d.event_row).bind(2, d.sink).bind(3, attempt.number);
    a.bind(4, attempt.started_at_ms).bind(5, attempt.finished_at_ms);
    a.bind(6, attempt.ok ? 1 : 0).bind(7, attempt.error);
    if (!step_done(write_db, a, failure)) return false;
  }
  if (changed > 0 && state != DeliveryState::pending) return settle_event(d.event_row, failure);
  return true;
}

Status Spool::Impl::mark(const std::vector<Mark>& marks) {
  if (options.read_only) return read_only_error();
  std::lock_guard lock(write_mutex);
  FileLock file(write_lock_fd());
  SqlFailure failure;
  detail::Transaction txn(write_db);
  bool ok = txn.begin(failure) && sync_external_changes(failure);
  for (std::size_t i = 0; ok && i < marks.size(); ++i) {
    const auto& m = marks[i];
    const auto state = m.attempt.ok ? DeliveryState::delivered
                       : m.dead     ? DeliveryState::dead
                                    : DeliveryState::pending;
    ok = mark_one(*m.delivery, m.attempt, state, m.attempt.ok ? 0 : m.next_attempt_at_ms, failure);
  }
  if (ok) ok = txn.commit(failure);
  if (!ok) {
    data_version = -1;  // the in-memory count may have moved: re-read it next time
    writable = false;
    return sql_error(failure);
  }
  writable = true;
  return Ok{};
}

Status Spool::mark_batch(const std::vector<Mark>& marks) { return impl_->mark(marks); }

Result<std::int64_t> Spool::retry(const std::optional<std::string>& delivery_id, bool all_dead) {
  Impl& s = *impl_;
  if (s.options.read_only) return read_only_error();
  if (!delivery_id && !all_dead) {
    return Error{ErrorCode::invalid_input, "retry needs a delivery id or all dead deliveries"};
  }
  std::lock_guard lock(s.write_mutex);
  FileLock file(s.write_lock_fd());
  SqlFailure failure;
  detail::Transaction txn(s.write_db);
  if (!txn.begin(failure)) return s.sql_error(failure);
  const std::int64_t now = spool_now_ms();
  std::int64_t changed = 0;
  if (delivery_id) {
    std::int64_t row = 0;
    {
      Query q(s.w.event_row_of);
      q.bind(1, *delivery_id);
      const int rc = q.step();
      if (rc == SQLITE_DONE) return not_found_error(*delivery_id);
      if (rc != SQLITE_ROW) return s.sql_error(s.write_db.last_failure(rc));
      row = q.integer(0);
    }
    Query q(s.w.retry_one);
    q.bind(1, row).bind(2, now);
    if (!step_done(s.write_db, q, failure)) return s.sql_error(failure);
    changed += s.write_db.changes();
  }
  if (all_dead) {
    Query q(s.w.retry_dead);
    q.bind(1, now);
    if (!step_done(s.write_db, q, failure)) return s.sql_error(failure);
    changed += s.write_db.changes();
  }
  if (!s.recount_pending(failure) || !txn.commit(failure)) {
    s.data_version = -1;
    return s.sql_error(failure);
  }
  return changed;
}

namespace {

// Between two purge chunks, with the locks released (a receiver writing to this spool from
// another process takes them then: its busy handler looks every millisecond). Each chunk adds
// the pages it freed to the write-ahead log, which only the receiver checkpoints; purging much
// faster than it copies would make the log grow for nothing. So while the log is long, go
// slower.
void pace_purge(const std::atomic<int>& wal_frames) {
  constexpr int kLongLogFrames = 8192;  // 32 MiB of 4 KiB pages
  const bool long_log = wal_frames.load(std::memory_order_relaxed) > kLongLogFrames;
  std::this_thread::sleep_for(std::chrono::milliseconds(long_log ? 50 : 3));
}

}  // namespace

Result<std::int64_t> Spool::purge_delivered(std::int64_t older_than_ms) {
  Impl& s = *impl_;
  if (s.options.read_only) return read_only_error();
  std::int64_t removed = 0;
  bool dedup_done = false;
  for (bool first = true;; first = false) {
    if (!first) pace_purge(s.wal_frames);
    // One chunk per transaction, so that the receiver's puts are not held up for long.
    std::lock_guard lock(s.write_mutex);
    FileLock file(s.write_lock_fd());
    SqlFailure failure;
    detail::Transaction txn(s.write_db);
    if (!txn.begin(failure)) return s.sql_error(failure);
    std::vector<std::int64_t> rows;
    {
      Query q(s.w.purge_select);
      q.bind(1, older_than_ms);
      int rc = SQLITE_ROW;
      while ((rc = q.step()) == SQLITE_ROW) rows.push_back(q.integer(0));
      if (rc != SQLITE_DONE) return s.sql_error(s.write_db.last_failure(rc));
    }
    for (const auto row : rows) {
      for (auto* stmt : {&s.w.purge_attempts, &s.w.purge_deliveries, &s.w.purge_event}) {
        Query q(*stmt);
        q.bind(1, row);
        if (!step_done(s.write_db, q, failure)) return s.sql_error(failure);
      }
    }
    if (!dedup_done) {
      Query q(s.w.dedup_expire);
      q.bind(1, spool_now_ms() - s.options.dedup_window.count());
      if (!step_done(s.write_db, q, failure)) return s.sql_error(failure);
      dedup_done = true;
    }
    if (!txn.commit(failure)) return s.sql_error(failure);
    removed += static_cast<std::int64_t>(rows.size());
    if (static_cast<std::int64_t>(rows.size()) < kPurgeChunk) return removed;
  }
}

Result<std::vector<Delivery>> Spool::due(const std::string& sink, std::int64_t now_ms,
                                         std::size_t limit) {
  Impl& s = *impl_;
  std::lock_guard lock(s.read_mutex);
  Query q(s.r.due);
  q.bind(1, sink).bind(2, now_ms).bind(3, static_cast<std::int64_t>(limit));
  std::vector<Delivery> out;
  int rc = SQLITE_ROW;
  while ((rc = q.step()) == SQLITE_ROW) {
    Delivery d;
    d.event_row = q.integer(0);
    d.delivery_id = q.text(1);
    d.sink = q.text(2);
    d.event = q.text(3);
    d.project_id = q.text(4);
    d.subscription_id = q.text(5);
    d.timestamp_ms = q.integer(6);
    d.record = q.text(7);
    d.attempts = static_cast<int>(q.integer(8));
    d.received_at_ms = q.integer(9);
    out.push_back(std::move(d));
  }
  if (rc != SQLITE_DONE) return s.sql_error(s.read_db.last_failure(rc));
  return out;
}

std::optional<std::int64_t> Spool::next_due(const std::string& sink) {
  Impl& s = *impl_;
  std::lock_guard lock(s.read_mutex);
  Query q(s.r.next_due);
  q.bind(1, sink);
  if (q.step() != SQLITE_ROW || q.is_null(0)) return std::nullopt;
  return q.integer(0);
}

Result<std::vector<DeliveryInfo>> Spool::list(const ListFilter& filter) {
  Impl& s = *impl_;
  std::optional<PatternSet> events;
  if (filter.event_pattern) {
    auto parsed = PatternSet::parse(*filter.event_pattern);
    if (!parsed) return std::move(parsed).error();
    events = std::move(*parsed);
  }
  std::lock_guard lock(s.read_mutex);
  Query q(s.r.list);
  if (filter.state) q.bind(1, to_string(*filter.state));
  if (filter.sink) q.bind(2, *filter.sink);
  if (filter.since_ms) q.bind(3, *filter.since_ms);
  if (filter.until_ms) q.bind(4, *filter.until_ms);
  std::vector<DeliveryInfo> out;
  int rc = SQLITE_ROW;
  while ((filter.limit == 0 || out.size() < filter.limit) && (rc = q.step()) == SQLITE_ROW) {
    DeliveryInfo info = read_info(q);
    if (events && !events->matches(info.event)) continue;
    out.push_back(std::move(info));
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return s.sql_error(s.read_db.last_failure(rc));
  return out;
}

Result<Details> Spool::show(const std::string& delivery_id) {
  Impl& s = *impl_;
  std::lock_guard lock(s.read_mutex);
  ReadSnapshot snapshot(s.read_db);
  Details details;
  std::int64_t row = 0;
  {
    Query q(s.r.show_event);
    q.bind(1, delivery_id);
    const int rc = q.step();
    if (rc == SQLITE_DONE) return not_found_error(delivery_id);
    if (rc != SQLITE_ROW) return s.sql_error(s.read_db.last_failure(rc));
    row = q.integer(0);
    details.record = q.text(1);
  }
  Query deliveries(s.r.show_deliveries);
  deliveries.bind(1, row);
  int rc = SQLITE_ROW;
  while ((rc = deliveries.step()) == SQLITE_ROW)
    details.deliveries.push_back(read_info(deliveries));
  if (rc != SQLITE_DONE) return s.sql_error(s.read_db.last_failure(rc));
  Query attempts(s.r.show_attempts);
  attempts.bind(1, row);
  while ((rc = attempts.step()) == SQLITE_ROW) {
    Attempt a;
    a.number = static_cast<int>(attempts.integer(1));
    a.started_at_ms = attempts.integer(2);
    a.finished_at_ms = attempts.integer(3);
    a.ok = attempts.integer(4) != 0;
    a.error = attempts.text(5);
    details.attempts.emplace_back(attempts.text(0), std::move(a));
  }
  if (rc != SQLITE_DONE) return s.sql_error(s.read_db.last_failure(rc));
  return details;
}

Result<StoreCounts> Spool::counts(const std::optional<std::string>& sink) {
  Impl& s = *impl_;
  std::lock_guard lock(s.read_mutex);
  Query q(s.r.counts);
  if (sink) q.bind(1, *sink);
  StoreCounts counts;
  int rc = SQLITE_ROW;
  while ((rc = q.step()) == SQLITE_ROW) {
    const std::string state = q.text(0);
    const std::int64_t n = q.integer(1);
    if (state == "pending") counts.pending = n;
    if (state == "delivered") counts.delivered = n;
    if (state == "dead") counts.dead = n;
  }
  if (rc != SQLITE_DONE) return s.sql_error(s.read_db.last_failure(rc));
  return counts;
}

}  // namespace tdhook::receiver
