// The upgrade from tdhook's SQLite spool: a receiver started on a data directory that holds a
// spool.db takes every delivery still pending or dead there into the log (with its attempts),
// then renames the file, so that nothing accepted before the upgrade is lost.
//
// The log's entries are synced before the state that names them is written and before the old
// file is renamed. A crash in between imports again at the next start: events delivered twice,
// never lost. The old de-duplication keys are not imported (a Tiledesk retry of an event
// received before the upgrade, within its last seconds, is stored again).
#include <map>

#include "store/log/log_store_impl.hpp"
#include "store/record.hpp"
#include "store/spool.hpp"

namespace tdhook::receiver::log {
namespace {

struct OldEvent {
  std::string record;
  DeliveryInfo first;  // event, project, times
  std::vector<DeliveryInfo> pending, dead;
  std::vector<std::pair<std::string, Attempt>> attempts;
};

Result<std::map<std::string, OldEvent>> read_old_spool(Spool& spool) {
  std::map<std::string, OldEvent> events;
  for (const auto state : {DeliveryState::pending, DeliveryState::dead}) {
    ListFilter filter;
    filter.state = state;
    filter.limit = 0;
    auto rows = spool.list(filter);
    if (!rows) return std::move(rows).error();
    for (auto& row : *rows) {
      if (row.sink.empty()) continue;
      OldEvent& e = events[row.delivery_id];
      (state == DeliveryState::pending ? e.pending : e.dead).push_back(row);
    }
  }
  for (auto& [id, e] : events) {
    auto details = spool.show(id);
    if (!details) return std::move(details).error();
    e.record = std::move(details->record);
    e.attempts = std::move(details->attempts);
    e.first = !e.pending.empty() ? e.pending.front() : e.dead.front();
  }
  return events;
}

Parked parked_of(const DeliveryInfo& d, std::uint64_t seq) {
  Parked p;
  p.sink = d.sink;
  p.seq = seq;
  p.attempts = d.attempts;
  p.next_at_ms = d.next_attempt_at_ms;
  p.last_error = d.last_error;
  p.delivery_id = d.delivery_id;
  p.event = d.event;
  p.project_id = d.project_id;
  p.timestamp_ms = d.timestamp_ms;
  p.received_at_ms = d.received_at_ms;
  return p;
}

}  // namespace

Status LogStore::import_old_spool() {
  const auto old_path = options_.store.data_dir / "spool.db";
  std::error_code ec;
  if (!std::filesystem::exists(old_path, ec)) return Ok{};
  SpoolOptions so;
  so.data_dir = options_.store.data_dir;
  so.dedup_window = options_.store.dedup_window;
  so.check_integrity = false;
  auto spool = Spool::open(so);
  if (!spool) {
    return Error{ErrorCode::invalid_input,
                 "cannot import the old spool " + old_path.string() + ": " + spool.error().detail};
  }
  auto old = read_old_spool(**spool);
  spool->reset();
  if (!old) {
    return Error{ErrorCode::invalid_input,
                 "cannot import the old spool " + old_path.string() + ": " + old.error().detail};
  }
  // Pending deliveries become events in the log, due to the sinks they were pending for; an
  // event whose every delivery is dead is logged too (for no sink), so that its dead letters
  // name a seq like any other.
  std::vector<NewEvent> batch;
  std::vector<const OldEvent*> order;
  std::int64_t unknown_sinks = 0;
  for (const auto& [id, e] : *old) {
    NewEvent n;
    n.delivery_id = id;
    n.dedup_key = "import:" + id;
    n.event = e.first.event;
    n.project_id = e.first.project_id;
    n.timestamp_ms = e.first.timestamp_ms;
    n.received_at_ms = e.first.received_at_ms;
    n.record = e.record;
    for (const auto& d : e.pending) {
      n.sinks.push_back(d.sink);
      if (sink_named(d.sink) == nullptr) ++unknown_sinks;
    }
    batch.push_back(std::move(n));
    order.push_back(&e);
  }
  std::uint64_t first_seq = 0;
  {
    std::lock_guard lock(mu_);
    first_seq = next_seq_;
  }
  importing_ = true;
  auto results = put_batch(std::move(batch));
  importing_ = false;
  for (const auto& r : results) {
    if (r.outcome != PutOutcome::stored) {
      return Error{ErrorCode::invalid_input,
                   "cannot import the old spool " + old_path.string() + ": " + r.error};
    }
  }
  if (active_) {
    if (auto synced = active_->sync(); !synced) return synced;
  }
  StateChange change;
  std::int64_t pending = 0, dead = 0;
  {
    std::lock_guard state_lock(state_mu_);
    std::lock_guard lock(mu_);
    for (std::size_t k = 0; k < order.size(); ++k) {
      const OldEvent& e = *order[k];
      const std::uint64_t seq = first_seq + k;
      for (const auto& d : e.pending) {
        ++pending;
        SinkState* s = sink_named(d.sink);
        if (s == nullptr || d.attempts == 0) continue;
        // Failed before the upgrade: it keeps its attempts and its next attempt time.
        settle(*s, seq, change);
        s->waiting.emplace(seq, Waiting{d.attempts, d.next_attempt_at_ms, d.last_error, {}});
        change.waiting_put.push_back(parked_of(d, seq));
      }
      for (const auto& d : e.dead) {
        ++dead;
        Parked p = parked_of(d, seq);
        p.record = e.record;
        change.dead_put.push_back(std::move(p));
      }
      for (const auto& [sink, a] : e.attempts) {
        change.attempts.push_back(AttemptRow{sink, seq, e.first.delivery_id, a});
      }
    }
    for (auto& s : sinks_) change.cursors.emplace_back(s.name, s.cursor);
    pending_cache_.store(pending_locked());
    if (auto applied = apply_state(std::move(change)); !applied) return applied;
  }
  const std::string suffix = ".imported-" + std::to_string(now_ms());
  for (const char* name : {"spool.db", "spool.db-wal", "spool.db-shm"}) {
    const auto from = options_.store.data_dir / name;
    if (!std::filesystem::exists(from, ec)) continue;
    std::filesystem::rename(from, options_.store.data_dir / (std::string(name) + suffix), ec);
    if (ec) {
      return Error{ErrorCode::invalid_input, "imported the old spool but cannot rename " +
                                                 from.string() + ": " + ec.message()};
    }
  }
  std::filesystem::remove(options_.store.data_dir / "spool.lock", ec);
  log_.info("imported the old SQLite spool into the log",
            LogFields()
                .add("events", static_cast<std::int64_t>(order.size()))
                .add("pending", pending)
                .add("dead", dead)
                .add("renamed_to", "spool.db" + suffix));
  if (unknown_sinks > 0) {
    log_.warn(
        "imported deliveries pending for sinks that are not configured now: they wait in the "
        "log and are not delivered",
        LogFields().add("count", unknown_sinks));
  }
  return Ok{};
}

}  // namespace tdhook::receiver::log
