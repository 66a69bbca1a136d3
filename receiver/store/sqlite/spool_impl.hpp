#pragma once
// Spool::Impl, shared by spool.cpp (open, put and group commit) and spool_query.cpp (delivery
// state, listing, retry, purge). Internal to the spool.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/spool.hpp"
#include "store/sqlite/spool_sqlite.hpp"

namespace tdhook::receiver {

// Statements of the write connection, prepared once at open.
struct WriteStatements {
  detail::Statement dedup_find, dedup_put, dedup_expire;
  detail::Statement event_insert, delivery_insert;
  detail::Statement mark, attempt_insert, has_pending, count_pending, data_version;
  detail::Statement event_row_of, retry_one, retry_dead;
  detail::Statement purge_select, purge_attempts, purge_deliveries, purge_event;
};

// Statements of the read connection.
struct ReadStatements {
  detail::Statement due, next_due, list, show_event, show_deliveries, show_attempts, counts;
};

// A put() waiting for the group commit that holds its event.
struct PutWaiter {
  NewEvent event;
  PutResult result;
  bool done = false;
};

// PRAGMA user_version of the spools this code reads and writes.
inline constexpr std::int64_t kSpoolSchemaVersion = 1;

struct Spool::Impl {
  SpoolOptions options;
  std::filesystem::path path;

  // Writes (put batches, marks, retry, purge) are serialised on the write connection.
  std::mutex write_mutex;
  detail::Connection write_db;
  WriteStatements w;
  std::int64_t data_version = -1;  // of write_db; changes when another process commits

  std::mutex read_mutex;
  detail::Connection read_db;
  ReadStatements r;

  std::atomic<std::int64_t> pending{0};  // events with at least one pending delivery
  std::atomic<bool> writable{true};
  std::atomic<std::int64_t> last_probe_ms{0};  // steady clock, of probe_writable()
  std::atomic<std::uint64_t> commits{0};
  std::int64_t last_dedup_expiry_ms = 0;

  // Checkpoints (SpoolOptions::writer_checkpoints): frames in the write-ahead log after
  // write_db's last commit (its WAL hook).
  std::atomic<int> wal_frames{0};
  // What one fdatasync of a small write costs on the spool's disk, measured at open (0 when it
  // could not be), and the steady-clock microseconds before which no small checkpoint starts
  // (Spool::maintain; only the writer thread reads and writes it).
  std::int64_t sync_cost_us = 0;
  std::int64_t next_small_checkpoint_us = 0;
  // <data-dir>/spool.lock: a checkpoint and another process's write transaction never overlap
  // (SQLite before 3.51.3 can corrupt the database when a checkpoint starts while another
  // connection's commit restarts the log: the "WAL-reset bug"). -1 when read-only.
  int lock_fd = -1;
  // The lock file for this opener's write transactions: `tdhook spool` takes it for each, the
  // receiver only for its checkpoints (its own writes and checkpoints share write_mutex).
  int write_lock_fd() const noexcept { return options.writer_checkpoints ? -1 : lock_fd; }

  std::mutex callback_mutex;
  std::function<void()> on_commit;

  // spool.cpp
  void write_batch(std::vector<PutWaiter*>& batch) noexcept;
  // True when at least one event of the batch was stored and committed.
  bool write_batch_transaction(std::vector<PutWaiter*>& batch);
  // Stores one event inside the open batch transaction. False on an SQLite failure that must
  // abort the whole batch; per-event outcomes (duplicate, full) are set in `waiter.result`.
  bool put_one(PutWaiter& waiter, detail::SqlFailure& failure);
  bool expire_dedup(std::int64_t now_ms, detail::SqlFailure& failure);
  // After a write failed: whether the disk has room again and a small write works (at most one
  // try a second; in between, the last answer).
  bool probe_writable() noexcept;

  // spool_query.cpp
  // Re-reads the pending count if another process (`tdhook spool retry`) changed the database.
  // Call inside a write transaction.
  bool sync_external_changes(detail::SqlFailure& failure);
  bool recount_pending(detail::SqlFailure& failure);
  // After a delivery of `event_row` left the pending state: one fewer pending event if it was
  // the event's last pending delivery.
  bool settle_event(std::int64_t event_row, detail::SqlFailure& failure);
  // Records outcomes in one transaction.
  Status mark(const std::vector<Mark>& marks);
  bool mark_one(const Delivery& d, const Attempt& attempt, DeliveryState state,
                std::int64_t next_attempt_at_ms, detail::SqlFailure& failure);
  Error sql_error(const detail::SqlFailure& failure) const;
};

// Holds <data-dir>/spool.lock exclusively for its lifetime (nothing when fd < 0).
class FileLock {
 public:
  explicit FileLock(int fd) noexcept;
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

// The busy handler of every spool connection: retries a lock every millisecond for 10 s.
int spool_busy_handler(void* unused, int tries);

std::int64_t spool_now_ms();
// Every statement the spool uses, prepared on its connection.
bool prepare_write_statements(detail::Connection& db, WriteStatements& w,
                              detail::SqlFailure& failure);
bool prepare_read_statements(detail::Connection& db, ReadStatements& r,
                             detail::SqlFailure& failure);
DeliveryState parse_state(std::string_view text) noexcept;

}  // namespace tdhook::receiver
