#pragma once
// The SQLite spool of tdhook <= 0.4 (<data-dir>/spool.db, WAL mode), behind the Store interface.
// The embedded event log (store/log/) replaced it on the hot path: each 6.7 KB record went
// through B-tree pages, five indexes, the write-ahead log and its checkpoint, and was read back
// for delivery. A receiver that finds a spool.db imports what was pending or dead there
// (store/log/log_import.cpp); tests drive it as a Store.
//
// put_batch() is one transaction (one sync) for the batch.

#include "store/store.hpp"

namespace tdhook::receiver {

struct SpoolOptions {
  std::filesystem::path data_dir;  // created if missing
  Durability durability = Durability::process;
  std::chrono::milliseconds dedup_window{24 * 3600 * 1000};
  std::size_t max_pending = 100000;  // put() answers full beyond this
  bool read_only = false;            // for `tdhook spool ls/show`, and the import
  // PRAGMA quick_check at open. On a large spool it is a read of several seconds.
  bool check_integrity = true;
  // The writing thread checkpoints the write-ahead log between batches (maintain()) instead of
  // SQLite doing it inside the commit that crosses its threshold, and the log file is never
  // truncated inside a commit. Other openers never checkpoint while another connection is open.
  bool writer_checkpoints = false;
};

class Spool final : public Store {
 public:
  static Result<std::unique_ptr<Spool>> open(const SpoolOptions& options);
  ~Spool() override;

  std::vector<PutResult> put_batch(std::vector<NewEvent> events) override;
  Result<std::vector<Delivery>> due(const std::string& sink, std::int64_t now_ms,
                                    std::size_t limit) override;
  std::optional<std::int64_t> next_due(const std::string& sink) override;
  Status mark_batch(const std::vector<Mark>& marks) override;
  Result<std::int64_t> retry(const std::optional<std::string>& delivery_id, bool all_dead) override;
  Result<std::int64_t> purge_delivered(std::int64_t older_than_ms) override;
  Result<std::vector<DeliveryInfo>> list(const ListFilter& filter) override;
  Result<Details> show(const std::string& delivery_id) override;
  Result<StoreCounts> counts(const std::optional<std::string>& sink) override;
  std::int64_t pending_total() const noexcept override;
  // While false, each call (at most one a second) tries a small write when the file system has
  // room, so that /healthz sees the disk come back without waiting for the next event.
  bool writable() const noexcept override;
  std::uint64_t commits() const noexcept override;
  // With writer_checkpoints: copies the write-ahead log into the database once it has grown,
  // so that the log starts again from its beginning, and empties the log file when idle.
  void maintain(bool idle) noexcept override;
  void set_on_commit(std::function<void()> callback) override;

 private:
  struct Impl;
  explicit Spool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tdhook::receiver
