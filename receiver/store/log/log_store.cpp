// The log store's hot path: a batch of events written with one append (group commit), handed to
// the sinks from memory, and settled per sink by a cursor.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "store/log/log_store_impl.hpp"
#include "store/record.hpp"

namespace tdhook::receiver {
namespace log {
namespace {

struct KeyHashHasher {
  std::size_t operator()(const KeyHash& k) const noexcept { return k.a ^ (k.b * 31); }
};

PutResult put_failed(std::string why) { return PutResult{PutOutcome::failed, {}, std::move(why)}; }

// Room left in an entry's payload for what is not the record or the original (put_batch).
constexpr std::size_t kHeaderRoom = 64 * 1024;

// A retained event counts for every sink it is due to; an event for no sink waits for nothing.
constexpr std::int64_t kUpkeepEveryMs = 1000;

}  // namespace

LogStore::LogStore(const LogStoreOptions& options, const Logger& log)
    : options_(options),
      log_(log),
      dir_(options.store.data_dir / "log"),
      dedup_(options.store.dedup_window.count()) {}

LogStore::~LogStore() {
  for (auto& [first, seg] : segments_) {
    if (seg.fd >= 0) ::close(seg.fd);
  }
  active_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

SegmentIndex* LogStore::segment_of(std::uint64_t seq) noexcept {
  if (last_hit_ != nullptr && seq >= last_hit_->first_seq && seq < last_hit_->end_seq()) {
    return last_hit_;
  }
  auto it = segments_.upper_bound(seq);
  if (it == segments_.begin()) return nullptr;
  --it;
  if (seq >= it->second.end_seq()) return nullptr;
  last_hit_ = &it->second;
  return last_hit_;
}

bool LogStore::due_to(std::uint64_t seq, std::uint32_t bit) noexcept {
  const SegmentIndex* seg = segment_of(seq);
  if (seg == nullptr) return false;
  const std::size_t i = seq - seg->first_seq;
  return seg->offset[i] != kMissing && (seg->mask[i] & bit) != 0;
}

std::uint32_t LogStore::mask_of(const std::vector<std::string>& sinks) const {
  std::uint32_t mask = 0;
  for (const auto& name : sinks) {
    auto it = sink_index_.find(name);
    if (it != sink_index_.end()) mask |= sinks_[it->second].bit;
  }
  return mask;
}

SinkState* LogStore::sink_named(const std::string& name) noexcept {
  auto it = sink_index_.find(name);
  return it == sink_index_.end() ? nullptr : &sinks_[it->second];
}

Result<EntryPtr> LogStore::entry_at(std::uint64_t seq) {
  if (seq >= window_first_ && seq < window_first_ + window_.size()) {
    return window_[seq - window_first_];
  }
  SegmentIndex* seg = segment_of(seq);
  if (seg == nullptr || !seg->holds(seq)) {
    return Error{ErrorCode::invalid_input,
                 "event " + std::to_string(seq) + " is no longer in the log"};
  }
  if (seg->fd < 0) {
    seg->fd = ::open(seg->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (seg->fd < 0) {
      return Error{ErrorCode::invalid_input,
                   "cannot open " + seg->path.string() + ": " + std::strerror(errno)};
    }
  }
  const std::size_t i = seq - seg->first_seq;
  auto entry = read_entry(seg->fd, seg->offset[i], seg->size[i]);
  if (!entry) {
    return Error{ErrorCode::invalid_input, seg->path.string() + ": " + entry.error().detail};
  }
  return EntryPtr(std::make_shared<const Entry>(std::move(*entry)));
}

// Deliveries waiting, summed over the sinks: the number of events waiting when there is one
// sink, and an upper bound of it otherwise (what --max-pending bounds).
std::int64_t LogStore::pending_locked() const noexcept {
  std::int64_t total = 0;
  for (const auto& s : sinks_) total += s.pending();
  return total;
}

std::int64_t LogStore::pending_total() const noexcept { return pending_cache_.load(); }

bool LogStore::writable() const noexcept {
  if (writable_.load()) return true;
  // After a failed write: the next batch tries again anyway; this answers /healthz in between,
  // at most once a second, from the free space of the file system.
  const std::int64_t now = now_ms();
  if (now - last_probe_ms_.load() < 1000) return false;
  last_probe_ms_.store(now);
  struct statvfs vfs {};
  if (::statvfs(options_.store.data_dir.c_str(), &vfs) == 0 &&
      static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize >= (1u << 20)) {
    writable_.store(true);
    return true;
  }
  return false;
}

void LogStore::set_on_commit(std::function<void()> callback) {
  std::lock_guard lock(callback_mu_);
  on_commit_ = std::move(callback);
}

Status LogStore::roll_segment(std::uint64_t first_seq) {
  // The new name is synced into the directory only where the data itself is synced: a crash of
  // the process keeps the directory entry, and a sync of the directory behind a busy disk (an
  // ext4 journal commit) held up every answer of the batch for tens of milliseconds.
  auto file = SegmentFile::open(dir_ / segment_file_name(first_seq), first_seq, true, 0,
                                options_.store.durability == Durability::power);
  if (!file) return std::move(file).error();
  {
    std::lock_guard lock(mu_);
    SegmentIndex idx;
    idx.first_seq = first_seq;
    idx.path = (*file)->path();
    segments_.emplace(first_seq, std::move(idx));
    last_hit_ = nullptr;
  }
  active_ = std::move(*file);
  return Ok{};
}

std::vector<PutResult> LogStore::put_batch(std::vector<NewEvent> events) {
  std::lock_guard write_lock(write_mu_);
  std::vector<PutResult> results(events.size());
  std::vector<KeyHash> keys(events.size());
  std::vector<std::size_t> to_store;
  std::vector<std::pair<std::size_t, std::size_t>> repeats;  // (event, earlier event in batch)
  std::uint64_t first_seq = 0;
  {
    std::lock_guard lock(mu_);
    // The window is judged on each event's own receive time (now, in the receiver).
    std::int64_t newest = 0;
    for (const auto& e : events) newest = std::max(newest, e.received_at_ms);
    dedup_.expire(newest);
    std::unordered_map<KeyHash, std::size_t, KeyHashHasher> in_batch;
    const std::int64_t room =
        static_cast<std::int64_t>(options_.store.max_pending) - pending_locked();
    std::int64_t taken = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      keys[i] = hash_key(events[i].dedup_key);
      if (auto seq = dedup_.find(keys[i], events[i].received_at_ms)) {
        auto first = entry_at(*seq);
        results[i] = PutResult{PutOutcome::duplicate, first ? (*first)->delivery_id : "", {}};
        continue;
      }
      if (auto it = in_batch.find(keys[i]); it != in_batch.end()) {
        repeats.emplace_back(i, it->second);
        continue;
      }
      // The log's entry limit, with room for the header fields (ids, sink names): only a
      // --max-body far above the default comes near it, with the original kept besides.
      if (events[i].record.size() + events[i].original.size() > max_event_bytes()) {
        results[i] = put_failed("the event is too large for the event log (" +
                                std::to_string(events[i].record.size()) + " bytes of record, " +
                                std::to_string(events[i].original.size()) + " of original)");
        continue;
      }
      const std::int64_t waits = std::popcount(mask_of(events[i].sinks));
      if (waits > 0 && taken + waits > room && !importing_) {
        results[i] = PutResult{PutOutcome::full, {}, "max pending reached"};
        continue;
      }
      taken += waits;
      in_batch.emplace(keys[i], i);
      to_store.push_back(i);
    }
    first_seq = next_seq_;
  }
  if (!to_store.empty()) {
    std::vector<EntryPtr> entries;
    std::vector<std::uint64_t> offsets;
    std::vector<KeyHash> stored_keys;
    entries.reserve(to_store.size());
    std::size_t bytes = 0;
    for (std::size_t k = 0; k < to_store.size(); ++k) {
      NewEvent& e = events[to_store[k]];
      auto entry = std::make_shared<Entry>();
      entry->seq = first_seq + k;
      entry->received_at_ms = e.received_at_ms;
      entry->timestamp_ms = e.timestamp_ms;
      entry->delivery_id = std::move(e.delivery_id);
      entry->dedup_key = std::move(e.dedup_key);
      entry->event = std::move(e.event);
      entry->project_id = std::move(e.project_id);
      entry->subscription_id = std::move(e.subscription_id);
      entry->sinks = std::move(e.sinks);
      entry->record = std::move(e.record);
      entry->original = std::move(e.original);
      bytes += encoded_size(*entry);
      stored_keys.push_back(keys[to_store[k]]);
      entries.push_back(std::move(entry));
    }
    Status written = Ok{};
    if (!active_ || (active_->size() > 0 && active_->size() + bytes > options_.segment_bytes)) {
      written = roll_segment(first_seq);
    }
    if (written) {
      buffer_.clear();
      buffer_.reserve(bytes);
      const std::uint64_t base = active_->size();
      for (const auto& entry : entries) {
        offsets.push_back(base + buffer_.size());
        encode_entry(*entry, buffer_);
      }
      written = active_->append(buffer_);
      if (buffer_.capacity() > (4u << 20)) buffer_ = std::string();  // after a burst
    }
    Status synced = Ok{};
    if (written && options_.store.durability == Durability::power) {
      // Written but not known to be on the disk: published (a retry is a duplicate of it, and
      // it is delivered), yet answered as failed, since the promise of `power` was not kept.
      synced = active_->sync();
    }
    if (!written) {
      writable_.store(false);
      last_probe_ms_.store(now_ms());
      log_.error("log: cannot write events; answering 503 until the disk takes writes again",
                 LogFields()
                     .add("events", static_cast<std::int64_t>(to_store.size()))
                     .add("error", written.error().detail));
      for (const std::size_t i : to_store) results[i] = put_failed(written.error().detail);
      for (const auto& [i, earlier] : repeats) results[i] = results[earlier];
      return results;
    }
    writable_.store(true);
    for (std::size_t k = 0; k < to_store.size(); ++k) {
      results[to_store[k]] = synced ? PutResult{PutOutcome::stored, entries[k]->delivery_id, {}}
                                    : put_failed(synced.error().detail);
    }
    {
      std::lock_guard lock(mu_);
      publish(entries, offsets, stored_keys);
    }
    commits_.fetch_add(1);
  }
  for (const auto& [i, earlier] : repeats) {
    results[i] = results[earlier];
    if (results[i].outcome == PutOutcome::stored) results[i].outcome = PutOutcome::duplicate;
  }
  if (!to_store.empty()) {
    std::function<void()> callback;
    {
      std::lock_guard lock(callback_mu_);
      callback = on_commit_;
    }
    if (callback) callback();
  }
  return results;
}

void LogStore::publish(std::vector<EntryPtr>& entries, const std::vector<std::uint64_t>& offsets,
                       const std::vector<KeyHash>& keys) {
  SegmentIndex& seg = segments_.rbegin()->second;
  for (std::size_t k = 0; k < entries.size(); ++k) {
    const Entry& e = *entries[k];
    const std::uint32_t mask = mask_of(e.sinks);
    seg.offset.push_back(static_cast<std::uint32_t>(offsets[k]));
    seg.size.push_back(static_cast<std::uint32_t>(encoded_size(e)));
    seg.mask.push_back(mask);
    seg.newest_received = std::max(seg.newest_received, e.received_at_ms);
    seg.oldest_received = std::min(seg.oldest_received, e.received_at_ms);
    dedup_.add(e.seq, keys[k], e.received_at_ms);
    for (auto& s : sinks_) {
      if ((mask & s.bit) != 0) ++s.unsettled;
    }
    if (window_.empty()) window_first_ = e.seq;
    window_bytes_ += e.record.size() + e.original.size();
    window_.push_back(std::move(entries[k]));
  }
  seg.bytes = active_->size();
  std::uint64_t total = 0;
  for (const auto& [first, s] : segments_) total += s.bytes;
  disk_bytes_.store(total);
  next_seq_ += entries.size();
  for (auto& s : sinks_) advance(s);  // past new events that are not due to it
  trim_window();
  pending_cache_.store(pending_locked());
}

// Forgets the oldest records in memory once every sink is past them, or when the window is
// over its size (a sink that far behind reads the log instead).
void LogStore::trim_window() {
  std::uint64_t needed = next_seq_;
  for (const auto& s : sinks_) needed = std::min(needed, s.cursor);
  while (!window_.empty() &&
         (window_first_ < needed || window_bytes_ > options_.memory_window_bytes)) {
    window_bytes_ -= window_.front()->record.size() + window_.front()->original.size();
    window_.pop_front();
    ++window_first_;
  }
  if (window_.empty()) window_first_ = next_seq_;
}

Delivery LogStore::delivery_of(const SinkState& s, const Entry& e, int attempts) const {
  Delivery d;
  d.event_row = static_cast<std::int64_t>(e.seq);
  d.delivery_id = e.delivery_id;
  d.sink = s.name;
  d.event = e.event;
  d.project_id = e.project_id;
  d.subscription_id = e.subscription_id;
  d.timestamp_ms = e.timestamp_ms;
  d.record = e.record;
  d.original = e.original;
  d.attempts = attempts;
  d.received_at_ms = e.received_at_ms;
  return d;
}

Result<std::vector<Delivery>> LogStore::due(const std::string& sink, std::int64_t now_ms,
                                            std::size_t limit) {
  std::lock_guard lock(mu_);
  SinkState* s = sink_named(sink);
  if (s == nullptr) return std::vector<Delivery>{};
  std::vector<Delivery> out;
  // Failed deliveries whose time has come, then new ones from the cursor: oldest first.
  for (const auto& [seq, w] : s->waiting) {
    if (out.size() >= limit) break;
    if (w.next_at_ms > now_ms) continue;
    EntryPtr entry = w.copy;
    if (!entry) {
      auto read = entry_at(seq);
      if (!read) return std::move(read).error();
      entry = *read;
    }
    out.push_back(delivery_of(*s, *entry, w.attempts));
  }
  for (std::uint64_t seq = s->cursor; seq < next_seq_ && out.size() < limit; ++seq) {
    if (!due_to(seq, s->bit) || s->settled.count(seq) != 0) continue;
    // A new event is due at once, whatever the wall clock says of its receive time: set back
    // an hour after the event came in, it must not hold the event back for that hour.
    auto entry = entry_at(seq);
    if (!entry) return std::move(entry).error();
    out.push_back(delivery_of(*s, **entry, 0));
  }
  return out;
}

std::optional<std::int64_t> LogStore::next_due(const std::string& sink) {
  std::lock_guard lock(mu_);
  SinkState* s = sink_named(sink);
  if (s == nullptr) return std::nullopt;
  std::optional<std::int64_t> next;
  if (s->unsettled > 0) next = 0;  // new events are due at once (see due())
  for (const auto& [seq, w] : s->waiting) {
    if (!next || w.next_at_ms < *next) next = w.next_at_ms;
  }
  return next;
}

void LogStore::advance(SinkState& s) {
  while (s.cursor < next_seq_) {
    if (!due_to(s.cursor, s.bit)) {
      ++s.cursor;
      continue;
    }
    auto it = s.settled.find(s.cursor);
    if (it == s.settled.end()) break;
    s.settled.erase(it);
    ++s.cursor;
  }
}

void LogStore::settle(SinkState& s, std::uint64_t seq, StateChange& change) {
  --s.unsettled;
  if (seq == s.cursor) {
    ++s.cursor;
    advance(s);
  } else {
    s.settled.insert(seq);
    change.settled.emplace_back(s.name, seq);
  }
}

Status LogStore::apply_state(StateChange change) {
  // What a failed apply kept goes first, so that the file catches up with memory in order.
  if (!unwritten_.empty()) {
    auto& u = unwritten_;
    const auto append = [](auto& to, auto& from) {
      to.insert(to.begin(), std::make_move_iterator(from.begin()),
                std::make_move_iterator(from.end()));
    };
    append(change.settled, u.settled);
    append(change.waiting_drop, u.waiting_drop);
    append(change.waiting_put, u.waiting_put);
    append(change.dead_drop, u.dead_drop);
    append(change.dead_put, u.dead_put);
    append(change.attempts, u.attempts);
    append(change.cursors, u.cursors);
    u = StateChange{};
  }
  auto applied = state_->apply(change);
  if (!applied) unwritten_ = std::move(change);
  return applied;
}

Status LogStore::mark_batch(const std::vector<Mark>& marks) {
  std::lock_guard state_lock(state_mu_);
  std::unique_lock lock(mu_);
  StateChange change;
  std::set<SinkState*> touched;
  for (const auto& m : marks) {
    const Delivery& d = *m.delivery;
    SinkState* s = sink_named(d.sink);
    if (s == nullptr) continue;  // a sink no longer configured
    const auto seq = static_cast<std::uint64_t>(d.event_row);
    auto w = s->waiting.find(seq);
    const bool was_waiting = w != s->waiting.end();
    // Settled already (an outcome recorded twice): nothing more to do.
    if (!was_waiting && (seq < s->cursor || s->settled.count(seq) != 0)) continue;
    touched.insert(s);
    const auto key = std::make_pair(s->name, seq);
    if (!m.attempt.ok || m.attempt.number > 1 || was_waiting) {
      change.attempts.push_back(AttemptRow{s->name, seq, d.delivery_id, m.attempt});
    }
    if (m.attempt.ok) {
      if (was_waiting) {
        s->waiting.erase(w);
        change.waiting_drop.push_back(key);
      } else {
        settle(*s, seq, change);
      }
      continue;
    }
    Parked p;
    p.sink = s->name;
    p.seq = seq;
    p.attempts = m.attempt.number;
    p.last_error = m.attempt.error;
    p.delivery_id = d.delivery_id;
    p.event = d.event;
    p.project_id = d.project_id;
    p.subscription_id = d.subscription_id;
    p.timestamp_ms = d.timestamp_ms;
    p.received_at_ms = d.received_at_ms;
    if (m.dead) {
      // A dead letter keeps its record, so that the log can let go of its segment.
      p.next_at_ms = m.attempt.finished_at_ms;
      p.record = d.record;
      p.original = d.original;
      if (was_waiting) {
        s->waiting.erase(w);
        change.waiting_drop.push_back(key);
      } else {
        settle(*s, seq, change);
      }
      change.dead_put.push_back(std::move(p));
      continue;
    }
    p.next_at_ms = m.next_attempt_at_ms;
    if (was_waiting) {
      w->second.attempts = m.attempt.number;
      w->second.next_at_ms = m.next_attempt_at_ms;
      w->second.last_error = m.attempt.error;
      if (w->second.copy) {
        p.record = w->second.copy->record;
        p.original = w->second.copy->original;
      }
    } else {
      settle(*s, seq, change);
      s->waiting.emplace(seq, Waiting{m.attempt.number, m.next_attempt_at_ms, m.attempt.error, {}});
    }
    change.waiting_put.push_back(std::move(p));
  }
  for (SinkState* s : touched) change.cursors.emplace_back(s->name, s->cursor);
  trim_window();
  pending_cache_.store(pending_locked());
  lock.unlock();
  return apply_state(std::move(change));
}

std::uint64_t LogStore::max_event_bytes() const noexcept { return kMaxPayloadSize - kHeaderRoom; }

void LogStore::maintain(bool idle) noexcept {
  const std::int64_t now = now_ms();
  // Between two batches the writer thread does not wait for a sink's state.db write: the upkeep
  // is done at the next chance instead.
  std::unique_lock state_lock(state_mu_, std::defer_lock);
  if (idle) {
    state_lock.lock();
  } else if (!state_lock.try_lock()) {
    return;
  }
  std::uint64_t first_kept = 0;
  {
    std::lock_guard lock(mu_);
    if (!idle && now - last_upkeep_ms_ < kUpkeepEveryMs) return;
    last_upkeep_ms_ = now;
    dedup_.expire(now);
    // While state.db is behind memory (a failed write), no segment goes: the cursors that
    // would let it go are not durable yet.
    if (unwritten_.empty()) first_kept = remove_segments(now, INT64_MAX, true, nullptr);
  }
  if (!unwritten_.empty()) {
    (void)apply_state(StateChange{});
    return;
  }
  forget_attempts(first_kept);
}

void LogStore::forget_attempts(std::uint64_t before) noexcept {
  try {
    (void)state_->forget_attempts_before(before);
  } catch (const std::exception& e) {
    log_.error("log: upkeep failed", LogFields().add("error", e.what()));
  }
}

std::uint64_t LogStore::low_water() const noexcept {
  std::uint64_t low = next_seq_;
  for (const auto& s : sinks_) {
    low = std::min(low, s.cursor);
    for (const auto& [seq, w] : s.waiting) {
      if (!w.copy) {
        low = std::min(low, seq);
        break;  // ordered: the first is the lowest
      }
    }
  }
  return low;
}

// Removes whole segments, oldest first, that every sink is past, that are older than
// `older_than_ms`, and (keep_window) whose keys the de-duplication window no longer needs. Never
// the segment being written.
std::uint64_t LogStore::remove_segments(std::int64_t now_ms, std::int64_t older_than_ms,
                                        bool keep_window, std::int64_t* removed) {
  const std::uint64_t low = low_water();
  const std::int64_t window_cutoff = now_ms - options_.store.dedup_window.count();
  while (segments_.size() > 1) {
    auto it = segments_.begin();
    SegmentIndex& seg = it->second;
    if (active_ && seg.first_seq == active_->first_seq()) break;
    if (seg.end_seq() > low) break;
    if (seg.newest_received >= older_than_ms) break;
    if (keep_window && seg.newest_received >= window_cutoff) break;
    if (seg.fd >= 0) ::close(seg.fd);
    std::error_code ec;
    std::filesystem::remove(seg.path, ec);
    if (ec) {
      log_.error("log: cannot remove a delivered segment",
                 LogFields().add("file", seg.path.string()).add("error", ec.message()));
      break;
    }
    if (removed != nullptr) {
      *removed += static_cast<std::int64_t>(std::count_if(seg.offset.begin(), seg.offset.end(),
                                                          [](auto o) { return o != kMissing; }));
    }
    log_.debug("log: segment removed", LogFields().add("file", seg.path.string()));
    disk_bytes_.fetch_sub(std::min(disk_bytes_.load(), seg.bytes));
    segments_.erase(it);
    last_hit_ = nullptr;
  }
  return segments_.empty() ? next_seq_ : segments_.begin()->second.first_seq;
}

}  // namespace log
}  // namespace tdhook::receiver
