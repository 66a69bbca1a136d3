#pragma once
// The embedded log store's insides (log_store.hpp says what it is): shared by log_store.cpp
// (write, deliver, settle), log_open.cpp (recovery at start, the import of an old spool.db)
// and log_inspect.cpp (ls, show, retry, purge, counts).

#include <atomic>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/log.hpp"
#include "store/log/dedup_index.hpp"
#include "store/log/log_store.hpp"
#include "store/log/segment.hpp"
#include "store/log/state.hpp"

namespace tdhook::receiver::log {

inline constexpr std::uint32_t kMissing = 0xffffffffu;  // an entry lost to damage
inline constexpr std::size_t kMaxSinks = 32;            // one bit each in an entry's mask

// Where each entry of one segment file is, and which configured sinks it is due to. 12 bytes
// an event, so the index of the whole retained log stays in memory.
struct SegmentIndex {
  std::uint64_t first_seq = 0;
  std::filesystem::path path;
  std::vector<std::uint32_t> offset, size, mask;
  std::uint64_t bytes = 0;  // the valid end
  std::int64_t newest_received = INT64_MIN, oldest_received = INT64_MAX;
  int fd = -1;  // for reads, opened on the first one
  std::uint64_t end_seq() const noexcept { return first_seq + offset.size(); }
  bool holds(std::uint64_t seq) const noexcept {
    return seq >= first_seq && seq < end_seq() && offset[seq - first_seq] != kMissing;
  }
};

using EntryPtr = std::shared_ptr<const Entry>;

// The event a parked delivery carries a copy of (its segment is gone), as the log would hold it.
inline EntryPtr entry_of(const Parked& p) {
  auto e = std::make_shared<Entry>();
  e->seq = p.seq;
  e->delivery_id = p.delivery_id;
  e->event = p.event;
  e->project_id = p.project_id;
  e->subscription_id = p.subscription_id;
  e->timestamp_ms = p.timestamp_ms;
  e->received_at_ms = p.received_at_ms;
  e->record = p.record;
  e->original = p.original;
  return e;
}

// A failed delivery that waits for its next attempt.
struct Waiting {
  int attempts = 0;
  std::int64_t next_at_ms = 0;
  std::string last_error;
  EntryPtr copy;  // the event, when its segment is gone (a dead letter sent back by retry)
};

struct SinkState {
  std::string name;
  std::uint32_t bit = 0;
  std::uint64_t cursor = 0;         // every event due to this sink before it is settled
  std::set<std::uint64_t> settled;  // settled events after the cursor (concurrent exec runs)
  std::map<std::uint64_t, Waiting> waiting;
  std::int64_t unsettled = 0;  // events due at or after the cursor and not settled
  std::int64_t pending() const noexcept {
    return unsettled + static_cast<std::int64_t>(waiting.size());
  }
};

class LogStore final : public Store {
 public:
  LogStore(const LogStoreOptions& options, const Logger& log);
  ~LogStore() override;

  // log_open.cpp
  Status open();
  Status import_old_spool();

  // log_store.cpp
  std::vector<PutResult> put_batch(std::vector<NewEvent> events) override;
  Result<std::vector<Delivery>> due(const std::string& sink, std::int64_t now_ms,
                                    std::size_t limit) override;
  std::optional<std::int64_t> next_due(const std::string& sink) override;
  Status mark_batch(const std::vector<Mark>& marks) override;
  std::int64_t pending_total() const noexcept override;
  bool writable() const noexcept override;
  std::uint64_t commits() const noexcept override { return commits_.load(); }
  std::uint64_t disk_bytes() const noexcept override { return disk_bytes_.load(); }
  std::uint64_t max_event_bytes() const noexcept override;
  void maintain(bool idle) noexcept override;
  void set_on_commit(std::function<void()> callback) override;

  // log_inspect.cpp
  Result<std::int64_t> retry(const std::optional<std::string>& delivery_id, bool all_dead) override;
  Result<std::int64_t> purge_delivered(std::int64_t older_than_ms) override;
  Result<std::vector<DeliveryInfo>> list(const ListFilter& filter) override;
  Result<Details> show(const std::string& delivery_id) override;
  Result<StoreCounts> counts(const std::optional<std::string>& sink) override;

 private:
  // log_open.cpp
  Status lock_data_dir();
  Status recover_segments(bool& any);
  Status load_sinks(bool state_existed, bool any_segment);

  // Everything below is guarded by mu_, except what says otherwise. apply_state() and every use
  // of state_ also need state_mu_.
  SegmentIndex* segment_of(std::uint64_t seq) noexcept;
  bool due_to(std::uint64_t seq, std::uint32_t bit) noexcept;
  std::uint32_t mask_of(const std::vector<std::string>& sinks) const;
  Result<EntryPtr> entry_at(std::uint64_t seq);
  SinkState* sink_named(const std::string& name) noexcept;
  void settle(SinkState& s, std::uint64_t seq, StateChange& change);
  void advance(SinkState& s);
  std::int64_t pending_locked() const noexcept;
  void publish(std::vector<EntryPtr>& entries, const std::vector<std::uint64_t>& offsets,
               const std::vector<KeyHash>& keys);
  Status apply_state(StateChange change);
  std::uint64_t low_water() const noexcept;
  // Returns the first sequence number still in a segment (attempts before it can be forgotten,
  // forget_attempts() with state_mu_ and without mu_).
  std::uint64_t remove_segments(std::int64_t now_ms, std::int64_t older_than_ms, bool keep_window,
                                std::int64_t* removed);
  void forget_attempts(std::uint64_t before) noexcept;  // state_mu_
  void trim_window();
  Status roll_segment(std::uint64_t first_seq);  // write_mu_
  Result<Details> show_locked(const std::string& delivery_id);
  Delivery delivery_of(const SinkState& s, const Entry& e, int attempts) const;
  DeliveryInfo info_of(const SinkState* s, const std::string& sink, const Entry& e) const;

  LogStoreOptions options_;
  Logger log_;
  std::filesystem::path dir_;  // <data-dir>/log
  int lock_fd_ = -1;

  std::mutex write_mu_;  // one put_batch at a time; guards active_ and buffer_
  std::unique_ptr<SegmentFile> active_;
  std::string buffer_;

  // state.db is written by the sinks' threads (mark_batch) and upkeep, and a write may wait for
  // a sync (SQLite's checkpoints). It has a lock of its own, taken before mu_ and held without
  // mu_ while SQLite works, so that put_batch (which needs only mu_) never waits for state.db:
  // with everything under mu_, answers waited for state.db's syncs behind a busy disk (p99 of
  // 15-40 ms with unique events at 30k/s, against 3 ms with the data directory on tmpfs).
  mutable std::mutex state_mu_;
  std::unique_ptr<StateDb> state_;  // state_mu_
  StateChange unwritten_;  // state_mu_: changes a failed apply kept, written before the next one
  mutable std::mutex mu_;
  std::map<std::uint64_t, SegmentIndex> segments_;  // by first seq
  SegmentIndex* last_hit_ = nullptr;
  DedupIndex dedup_;
  std::vector<SinkState> sinks_;
  std::unordered_map<std::string, std::size_t> sink_index_;
  std::uint64_t next_seq_ = 1;
  std::deque<EntryPtr> window_;  // the newest events, for the sinks, from memory
  std::uint64_t window_first_ = 1;
  std::size_t window_bytes_ = 0;
  std::int64_t last_upkeep_ms_ = 0;
  bool importing_ = false;  // the import of an old spool.db: --max-pending does not apply

  std::atomic<std::uint64_t> commits_{0}, disk_bytes_{0};
  std::atomic<std::int64_t> pending_cache_{0};
  mutable std::atomic<bool> writable_{true};
  mutable std::atomic<std::int64_t> last_probe_ms_{0};
  std::mutex callback_mu_;
  std::function<void()> on_commit_;
};

}  // namespace tdhook::receiver::log
