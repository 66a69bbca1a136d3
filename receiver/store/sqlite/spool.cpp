// Spool::put_batch: one transaction for a batch of events.
//
// One WAL commit costs far more than an insert (about 38 us alone, 15 us each when 32 share
// one), so concurrent put() calls share transactions: each caller queues its event; a caller
// that finds no leader becomes the leader, takes everything queued, writes it in one
// transaction and wakes the others. Whoever queued while a leader was writing is taken by the
// next leader, so a batch grows with the load and a lone caller never waits for company.
#include <pthread.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <filesystem>
#include <thread>
#include <utility>

#include "store/sqlite/spool_impl.hpp"

namespace tdhook::receiver {
namespace {

// The writer checkpoints once the write-ahead log holds this many frames (4 KiB pages: 256 KiB,
// a batch or two of events). The answers of the next batch wait for each checkpoint: measured
// with unique 6.7 KB events at ~9k/s (wrk -c32, keep-alive), p99 was 31 ms with 4 096 frames,
// 12 ms with 1 024 and 6 ms with 64, at the same throughput.
constexpr int kCheckpointFrames = 64;
// But each checkpoint also syncs the log and the database (two fdatasync, whatever its size): on
// a disk where a sync takes milliseconds, checkpoints that small would spend the writer's time
// syncing (measured with 3 ms syncs: 2.4k events/s instead of 6.7k). So small checkpoints are
// spaced by at least 4 x 2 syncs (Impl::sync_cost_us, measured at open): their syncs take at
// most a quarter of the time. A log of kCheckpointFramesAlways frames is checkpointed anyway.
constexpr int kCheckpointFramesAlways = 1024;
constexpr std::int64_t kSyncShare = 4;
// A log longer than this (16 MiB) that is wholly copied gets a RESTART checkpoint (see maintain).
constexpr int kRestartFrames = 4096;
// When idle, a log file larger than this is emptied.
constexpr std::uintmax_t kLogSizeKeptBytes = 64ULL * 1024 * 1024;
// Expired dedup keys are purged from the put path at most this often.
constexpr std::int64_t kDedupExpiryIntervalMs = 60 * 1000;
// After a failed write (disk full), writable() tries a write at most this often (and not within
// this time of a failed put), and only with at least this much room on the file system: a write
// that fits in space freed by a failed transaction would otherwise report a disk that is still
// full as writable.
constexpr std::int64_t kProbeIntervalMs = 1000;
constexpr unsigned long long kProbeMinFreeBytes = 1024 * 1024;

// A TRUNCATE or RESTART checkpoint that does not wait for readers (the spool's busy handler
// would, and every writer with it): busy means the next round tries again.
int checkpoint_without_waiting(sqlite3* db, int mode, int* log_frames, int* copied) {
  sqlite3_busy_handler(db, nullptr, nullptr);
  const int rc = sqlite3_wal_checkpoint_v2(db, nullptr, mode, log_frames, copied);
  sqlite3_busy_handler(db, spool_busy_handler, nullptr);
  return rc;
}

PutResult failed(std::string error) { return PutResult{PutOutcome::failed, {}, std::move(error)}; }

std::int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t steady_ms() { return steady_us() / 1000; }

}  // namespace

Spool::Spool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Spool::~Spool() {
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
}

// Under a steady load SQLite only starts the log again from its beginning when a write
// transaction begins with every frame copied into the database, and a checkpoint in another
// connection than the writer's would race with that restart (see lock_fd). So the writer's own
// connection checkpoints, between two batches, in small steps: each copies a few hundred KiB,
// a pause the next batch's answers wait for. A reader still on an old snapshot only postpones the
// restart. When idle, a log file grown by a burst or a purge is emptied.
void Spool::maintain(bool idle) noexcept {
  Impl& s = *impl_;
  if (!s.options.writer_checkpoints || s.options.read_only) return;
  const int frames = s.wal_frames.load(std::memory_order_relaxed);
  std::error_code ec;
  const auto log_size = idle ? std::filesystem::file_size(s.path.string() + "-wal", ec) : 0;
  const bool truncate = idle && !ec && log_size > kLogSizeKeptBytes;
  if (!truncate && frames < (idle ? 1 : kCheckpointFrames)) return;
  if (!idle && frames < kCheckpointFramesAlways && steady_us() < s.next_small_checkpoint_us) {
    return;
  }
  std::lock_guard lock(s.write_mutex);
  FileLock file(s.lock_fd);
  int log_frames = 0, copied = 0;
  int rc = SQLITE_OK;
  if (truncate) {
    // A reader on an old snapshot makes it busy, and the next idle round tries again.
    rc = checkpoint_without_waiting(s.write_db.get(), SQLITE_CHECKPOINT_TRUNCATE, &log_frames,
                                    &copied);
  } else {
    rc = sqlite3_wal_checkpoint_v2(s.write_db.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                   &log_frames, &copied);
    if (rc == SQLITE_OK && log_frames == copied && log_frames >= kRestartFrames) {
      // Everything is copied, yet the log has not started again for a while: a reader was on
      // it each time a transaction could have restarted it (under a purge, often). RESTART,
      // without waiting, succeeds when no reader is on the log now, and then the next
      // transaction restarts it for sure.
      checkpoint_without_waiting(s.write_db.get(), SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
    }
  }
  if (rc == SQLITE_OK && log_frames == copied) s.wal_frames.store(0, std::memory_order_relaxed);
  s.next_small_checkpoint_us = steady_us() + kSyncShare * 2 * s.sync_cost_us;
}

FileLock::FileLock(int fd) noexcept : fd_(fd) {
  if (fd_ < 0) return;
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      fd_ = -1;  // no lock to be had (never on a local file): go on as SQLite alone would
      return;
    }
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::flock(fd_, LOCK_UN);
}

std::vector<PutResult> Spool::put_batch(std::vector<NewEvent> events) {
  std::vector<PutResult> results;
  if (impl_->options.read_only) {
    results.assign(events.size(), failed("spool opened read-only"));
    return results;
  }
  std::vector<PutWaiter> waiters(events.size());
  std::vector<PutWaiter*> batch;
  batch.reserve(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    waiters[i].event = std::move(events[i]);
    batch.push_back(&waiters[i]);
  }
  impl_->write_batch(batch);
  results.reserve(waiters.size());
  for (auto& waiter : waiters) results.push_back(std::move(waiter.result));
  return results;
}

void Spool::Impl::write_batch(std::vector<PutWaiter*>& batch) noexcept {
  bool stored_any = false;
  try {
    stored_any = write_batch_transaction(batch);
  } catch (const std::exception& e) {
    // The transaction rolled back in its destructor (only allocation can throw here).
    for (auto* waiter : batch) waiter->result = failed(std::string("internal error: ") + e.what());
    return;
  }
  if (!stored_any) return;
  try {
    std::function<void()> callback;
    {
      std::lock_guard lock(callback_mutex);
      callback = on_commit;
    }
    if (callback) callback();
  } catch (...) {
    // A wake-up that failed is made up for by the dispatcher's own polling.
  }
}

bool Spool::Impl::write_batch_transaction(std::vector<PutWaiter*>& batch) {
  std::lock_guard lock(write_mutex);
  FileLock file(write_lock_fd());
  detail::SqlFailure failure;
  detail::Transaction txn(write_db);
  bool ok = txn.begin(failure) && sync_external_changes(failure);
  const std::int64_t pending_before = pending.load();
  for (std::size_t i = 0; ok && i < batch.size(); ++i) ok = put_one(*batch[i], failure);
  if (ok) ok = txn.commit(failure);
  if (!ok) {
    txn.rollback();
    // The transaction is gone as a whole: no caller may believe its event was stored.
    pending = pending_before;
    writable = false;
    // The next probe no sooner than a second from now: the disk has just said no.
    last_probe_ms = steady_ms();
    const std::string error = detail::describe(failure);
    for (auto* waiter : batch) waiter->result = failed(error);
    return false;
  }
  writable = true;
  commits.fetch_add(1);
  bool stored_any = false;
  for (auto* waiter : batch) stored_any |= waiter->result.outcome == PutOutcome::stored;
  return stored_any;
}

bool Spool::Impl::put_one(PutWaiter& waiter, detail::SqlFailure& failure) {
  const NewEvent& ev = waiter.event;
  if (!ev.dedup_key.empty()) {
    detail::Query find(w.dedup_find);
    find.bind(1, ev.dedup_key);
    const int rc = find.step();
    if (rc == SQLITE_ROW) {
      if (find.integer(1) >= ev.received_at_ms - options.dedup_window.count()) {
        waiter.result = PutResult{PutOutcome::duplicate, find.text(0), {}};
        return true;
      }
    } else if (rc != SQLITE_DONE) {
      failure = write_db.last_failure(rc);
      return false;
    }
  }
  std::vector<std::string> sinks = ev.sinks;
  std::sort(sinks.begin(), sinks.end());
  sinks.erase(std::unique(sinks.begin(), sinks.end()), sinks.end());
  if (!sinks.empty() && pending.load() >= static_cast<std::int64_t>(options.max_pending)) {
    waiter.result = PutResult{PutOutcome::full, {}, "spool full"};
    return true;
  }

  {
    detail::Query insert(w.event_insert);
    insert.bind(1, ev.delivery_id).bind(2, ev.event).bind(3, ev.project_id);
    insert.bind(4, ev.subscription_id).bind(5, ev.timestamp_ms).bind(6, ev.received_at_ms);
    insert.bind(7, ev.record);
    const int rc = insert.step();
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
      // The caller's bug, not the disk's: this event fails, the batch goes on.
      waiter.result = failed("delivery id " + ev.delivery_id + " is already in the spool");
      return true;
    }
    if (rc != SQLITE_DONE) {
      failure = write_db.last_failure(rc);
      return false;
    }
  }
  const std::int64_t row = write_db.last_insert_rowid();
  const std::int64_t now = spool_now_ms();
  for (const auto& sink : sinks) {
    detail::Query insert(w.delivery_insert);
    insert.bind(1, row).bind(2, sink).bind(3, ev.received_at_ms).bind(4, now);
    if (const int rc = insert.step(); rc != SQLITE_DONE) {
      failure = write_db.last_failure(rc);
      return false;
    }
  }
  if (!ev.dedup_key.empty()) {
    detail::Query put(w.dedup_put);
    put.bind(1, ev.dedup_key).bind(2, ev.delivery_id).bind(3, ev.received_at_ms);
    if (const int rc = put.step(); rc != SQLITE_DONE) {
      failure = write_db.last_failure(rc);
      return false;
    }
  }
  if (!sinks.empty()) pending.fetch_add(1);
  waiter.result = PutResult{PutOutcome::stored, ev.delivery_id, {}};
  if (ev.received_at_ms - last_dedup_expiry_ms >= kDedupExpiryIntervalMs) {
    return expire_dedup(ev.received_at_ms, failure);
  }
  return true;
}

bool Spool::Impl::expire_dedup(std::int64_t now_ms, detail::SqlFailure& failure) {
  last_dedup_expiry_ms = now_ms;
  detail::Query expire(w.dedup_expire);
  expire.bind(1, now_ms - options.dedup_window.count());
  if (const int rc = expire.step(); rc != SQLITE_DONE) {
    failure = write_db.last_failure(rc);
    return false;
  }
  return true;
}

bool Spool::Impl::probe_writable() noexcept {
  const std::int64_t now = steady_ms();
  std::int64_t last = last_probe_ms.load();
  if (now - last < kProbeIntervalMs || !last_probe_ms.compare_exchange_strong(last, now)) {
    return writable.load();
  }
  struct statvfs fs {};
  if (statvfs(path.parent_path().c_str(), &fs) != 0 ||
      static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize < kProbeMinFreeBytes) {
    return false;
  }
  // A writer holds the lock: its own outcome will set the flag.
  std::unique_lock lock(write_mutex, std::try_to_lock);
  if (!lock.owns_lock()) return writable.load();
  FileLock file(write_lock_fd());
  try {
    detail::SqlFailure failure;
    detail::Transaction txn(write_db);
    // Rewrites the header page with the value it has: a real write, nothing changes.
    const std::string rewrite = "PRAGMA user_version=" + std::to_string(kSpoolSchemaVersion);
    if (txn.begin(failure) && write_db.exec(rewrite.c_str(), failure) && txn.commit(failure)) {
      writable = true;
    }
  } catch (...) {
    // Allocation failed: not writable as far as we know.
  }
  return writable.load();
}

std::int64_t Spool::pending_total() const noexcept { return impl_->pending.load(); }
bool Spool::writable() const noexcept {
  if (impl_->writable.load()) return true;
  return !impl_->options.read_only && impl_->probe_writable();
}
std::uint64_t Spool::commits() const noexcept { return impl_->commits.load(); }

void Spool::set_on_commit(std::function<void()> callback) {
  std::lock_guard lock(impl_->callback_mutex);
  impl_->on_commit = std::move(callback);
}

}  // namespace tdhook::receiver
