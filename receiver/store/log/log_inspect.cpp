// What `tdhook spool` asks of the log store: ls, show, counts, retry, purge. These read the
// index in memory and the segments on disk; none of them is on the hot path.
#include <algorithm>
#include <set>

#include "store/log/log_store_impl.hpp"
#include "store/record.hpp"
#include "tdhook/pattern.hpp"

namespace tdhook::receiver::log {
namespace {

// The millisecond time at the front of a UUID v7 (new_delivery_id()), if `id` is one.
std::optional<std::int64_t> uuid7_time(std::string_view id) {
  if (id.size() != 36 || id[8] != '-' || id[14] != '7') return std::nullopt;
  std::int64_t ms = 0;
  for (std::size_t i = 0; i < 13; ++i) {
    if (i == 8) continue;
    const char c = id[i];
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return std::nullopt;
    ms = ms * 16 + v;
  }
  return ms;
}

DeliveryInfo info_of_parked(const Parked& p, DeliveryState state) {
  DeliveryInfo info;
  info.delivery_id = p.delivery_id;
  info.sink = p.sink;
  info.event = p.event;
  info.project_id = p.project_id;
  info.timestamp_ms = p.timestamp_ms;
  info.received_at_ms = p.received_at_ms;
  info.state = state;
  info.attempts = p.attempts;
  info.next_attempt_at_ms = state == DeliveryState::dead ? 0 : p.next_at_ms;
  info.last_error = p.last_error;
  return info;
}

struct Row {
  std::uint64_t seq;
  DeliveryInfo info;
};

}  // namespace

DeliveryInfo LogStore::info_of(const SinkState* s, const std::string& sink, const Entry& e) const {
  DeliveryInfo info;
  info.delivery_id = e.delivery_id;
  info.sink = sink;
  info.event = e.event;
  info.project_id = e.project_id;
  info.timestamp_ms = e.timestamp_ms;
  info.received_at_ms = e.received_at_ms;
  info.state = DeliveryState::delivered;
  info.attempts = 1;
  if (s == nullptr) return info;
  if (auto w = s->waiting.find(e.seq); w != s->waiting.end()) {
    info.state = DeliveryState::pending;
    info.attempts = w->second.attempts;
    info.next_attempt_at_ms = w->second.next_at_ms;
    info.last_error = w->second.last_error;
  } else if (e.seq >= s->cursor && s->settled.count(e.seq) == 0) {
    info.state = DeliveryState::pending;
    info.attempts = 0;
    info.next_attempt_at_ms = e.received_at_ms;
  }
  return info;
}

Result<std::vector<DeliveryInfo>> LogStore::list(const ListFilter& filter) {
  auto wanted = ListMatcher::make(filter);
  if (!wanted) return std::move(wanted).error();
  const std::size_t limit = wanted->limit();
  std::lock_guard state_lock(state_mu_);
  std::lock_guard lock(mu_);
  std::vector<Row> rows;
  std::set<std::pair<std::string, std::uint64_t>> dead_keys;
  {
    auto dead = state_->dead(filter.sink, 0);
    if (!dead) return std::move(dead).error();
    for (const auto& p : *dead) {
      dead_keys.emplace(p.sink, p.seq);
      auto info = info_of_parked(p, DeliveryState::dead);
      if ((*wanted)(info)) rows.push_back(Row{p.seq, std::move(info)});
    }
  }
  if (!filter.state || *filter.state != DeliveryState::dead) {
    std::size_t from_log = 0;
    // The rows of one event; false on a read error (in `failure`).
    std::optional<Error> failure;
    const auto visit = [&](const SegmentIndex& seg, std::uint64_t seq) {
      const std::size_t i = seq - seg.first_seq;
      if (seg.offset[i] == kMissing) return true;
      EntryPtr entry;
      if (seg.mask[i] == 0 && !filter.sink) {
        // An event for no sink: stored, and delivered to nobody at once.
        auto read = entry_at(seq);
        if (!read) return failure = std::move(read).error(), false;
        auto info = info_of(nullptr, "", **read);
        if ((*wanted)(info)) {
          rows.push_back(Row{seq, std::move(info)});
          ++from_log;
        }
        return true;
      }
      for (const auto& s : sinks_) {
        if ((seg.mask[i] & s.bit) == 0 || dead_keys.count({s.name, seq}) != 0) continue;
        if (filter.sink && s.name != *filter.sink) continue;
        if (!entry) {
          auto read = entry_at(seq);
          if (!read) return failure = std::move(read).error(), false;
          entry = *read;
        }
        auto info = info_of(&s, s.name, *entry);
        if (!(*wanted)(info)) continue;
        rows.push_back(Row{seq, std::move(info)});
        ++from_log;
      }
      return true;
    };
    if (filter.newest_first) {
      for (auto it = segments_.rbegin(); it != segments_.rend() && from_log < limit; ++it) {
        const auto& seg = it->second;
        for (std::uint64_t seq = seg.end_seq(); seq > seg.first_seq && from_log < limit; --seq) {
          if (!visit(seg, seq - 1)) return std::move(*failure);
        }
      }
    } else {
      for (const auto& [first, seg] : segments_) {
        for (std::uint64_t seq = seg.first_seq; seq < seg.end_seq() && from_log < limit; ++seq) {
          if (!visit(seg, seq)) return std::move(*failure);
        }
      }
    }
    // Waiting deliveries whose segment is gone (sent back from the dead letters).
    for (const auto& s : sinks_) {
      for (const auto& [seq, w] : s.waiting) {
        if (!w.copy || segment_of(seq) != nullptr) continue;
        auto info = info_of(&s, s.name, *w.copy);
        if ((*wanted)(info)) rows.push_back(Row{seq, std::move(info)});
      }
    }
  }
  std::sort(rows.begin(), rows.end(), [&filter](const Row& a, const Row& b) {
    if (a.seq != b.seq) return filter.newest_first ? a.seq > b.seq : a.seq < b.seq;
    return a.info.sink < b.info.sink;
  });
  std::vector<DeliveryInfo> out;
  for (auto& r : rows) {
    if (out.size() >= limit) break;
    out.push_back(std::move(r.info));
  }
  return out;
}

Result<Details> LogStore::show(const std::string& delivery_id) {
  std::lock_guard state_lock(state_mu_);
  std::lock_guard lock(mu_);
  return show_locked(delivery_id);
}

Result<Details> LogStore::show_locked(const std::string& delivery_id) {
  auto dead = state_->dead_of(delivery_id);
  if (!dead) return std::move(dead).error();
  EntryPtr entry;
  for (const auto& e : window_) {
    if (e->delivery_id == delivery_id) entry = e;
  }
  for (const auto& s : sinks_) {
    for (const auto& [seq, w] : s.waiting) {
      if (!entry && w.copy && w.copy->delivery_id == delivery_id) entry = w.copy;
    }
  }
  if (!entry) {
    // The segments whose receive times could hold the id's time (a UUID v7 carries it), or
    // every segment for an id of another form.
    const auto t = uuid7_time(delivery_id);
    constexpr std::int64_t slack = 60 * 1000;
    for (auto& item : segments_) {
      SegmentIndex& seg = item.second;  // not a structured binding: captured below
      if (entry) break;
      if (t && (*t < seg.oldest_received - slack || *t > seg.newest_received + slack)) continue;
      auto scanned = scan_segment(seg.path, false, [&](Entry&& e, std::uint64_t, std::uint32_t) {
        if (!entry && e.delivery_id == delivery_id && seg.holds(e.seq)) {
          entry = std::make_shared<const Entry>(std::move(e));
        }
      });
      if (!scanned) return std::move(scanned).error();
    }
    if (entry) {
      auto full = entry_at(entry->seq);
      if (!full) return std::move(full).error();
      entry = *full;
    }
  }
  Details details;
  if (entry) {
    details.record = entry->record;
    details.original = entry->original;
  } else if (!dead->empty()) {
    details.record = dead->front().record;
    details.original = dead->front().original;
  } else {
    return not_found_error(delivery_id);
  }
  auto attempts = state_->attempts_of(delivery_id);
  if (!attempts) return std::move(attempts).error();
  for (const auto& a : *attempts) details.attempts.emplace_back(a.sink, a.attempt);
  std::set<std::string> listed;
  for (const auto& p : *dead) {
    details.deliveries.push_back(info_of_parked(p, DeliveryState::dead));
    listed.insert(p.sink);
  }
  if (entry) {
    const std::uint32_t mask = mask_of(entry->sinks);
    for (const auto& s : sinks_) {
      if ((mask & s.bit) == 0 || listed.count(s.name) != 0) continue;
      auto info = info_of(&s, s.name, *entry);
      if (info.state == DeliveryState::delivered) {
        for (const auto& a : *attempts) {
          if (a.sink == s.name) info.attempts = std::max(info.attempts, a.attempt.number);
        }
      }
      details.deliveries.push_back(std::move(info));
    }
  }
  std::sort(details.deliveries.begin(), details.deliveries.end(),
            [](const DeliveryInfo& a, const DeliveryInfo& b) { return a.sink < b.sink; });
  return details;
}

Result<StoreCounts> LogStore::counts(const std::optional<std::string>& sink) {
  std::lock_guard state_lock(state_mu_);
  std::lock_guard lock(mu_);
  StoreCounts c;
  auto dead = state_->dead_count(sink);
  if (!dead) return std::move(dead).error();
  c.dead = *dead;
  for (const auto& s : sinks_) {
    if (sink && s.name != *sink) continue;
    c.pending += s.pending();
    std::int64_t due_retained = 0;
    for (const auto& [first, seg] : segments_) {
      for (std::size_t i = 0; i < seg.mask.size(); ++i) {
        if (seg.offset[i] != kMissing && (seg.mask[i] & s.bit) != 0) ++due_retained;
      }
    }
    auto dead_here = state_->dead_count(s.name);
    if (!dead_here) return std::move(dead_here).error();
    c.delivered += std::max<std::int64_t>(0, due_retained - s.pending() - *dead_here);
  }
  return c;
}

Result<std::int64_t> LogStore::retry(const std::optional<std::string>& delivery_id, bool all_dead) {
  if (!delivery_id && !all_dead) {
    return Error{ErrorCode::invalid_input, "retry needs a delivery id or all dead deliveries"};
  }
  std::lock_guard state_lock(state_mu_);
  std::unique_lock lock(mu_);
  const std::int64_t now = now_ms();
  StateChange change;
  std::int64_t moved = 0;
  bool found = false;
  std::vector<Parked> dead;
  if (all_dead) {
    auto rows = state_->dead(std::nullopt, 0);
    if (!rows) return std::move(rows).error();
    dead = std::move(*rows);
  } else {
    auto rows = state_->dead_of(*delivery_id);
    if (!rows) return std::move(rows).error();
    dead = std::move(*rows);
  }
  for (auto& p : dead) {
    found = true;
    SinkState* s = sink_named(p.sink);
    if (s == nullptr) continue;  // a sink no longer configured: left dead
    Waiting w{p.attempts, now, p.last_error, {}};
    const SegmentIndex* seg = segment_of(p.seq);
    Parked waiting = p;
    waiting.next_at_ms = now;
    if (seg == nullptr || !seg->holds(p.seq)) {
      w.copy = entry_of(p);
    } else {
      waiting.record.clear();
      waiting.original.clear();
    }
    change.dead_drop.emplace_back(p.sink, p.seq);
    change.waiting_put.push_back(std::move(waiting));
    s->waiting[p.seq] = std::move(w);
    ++moved;
  }
  if (delivery_id) {
    // A delivery that waits for its next attempt is due now.
    for (auto& s : sinks_) {
      for (auto& [seq, w] : s.waiting) {
        const bool same = w.copy ? w.copy->delivery_id == *delivery_id : false;
        if (!same) {
          auto e = entry_at(seq);
          if (!e || (*e)->delivery_id != *delivery_id) continue;
        }
        found = true;
        if (w.next_at_ms <= now) continue;
        w.next_at_ms = now;
        auto e = entry_at(seq);
        Parked p;
        p.sink = s.name;
        p.seq = seq;
        p.attempts = w.attempts;
        p.next_at_ms = now;
        p.last_error = w.last_error;
        const Entry& ev = w.copy ? *w.copy : **e;
        p.delivery_id = ev.delivery_id;
        p.event = ev.event;
        p.project_id = ev.project_id;
        p.subscription_id = ev.subscription_id;
        p.timestamp_ms = ev.timestamp_ms;
        p.received_at_ms = ev.received_at_ms;
        if (w.copy) {
          p.record = w.copy->record;
          p.original = w.copy->original;
        }
        change.waiting_put.push_back(std::move(p));
        ++moved;
      }
    }
    if (!found) {
      // Known, yet nothing to retry (delivered or pending): 0. Unknown: not found.
      auto shown = show_locked(*delivery_id);
      if (!shown) return std::move(shown).error();
    }
  }
  pending_cache_.store(pending_locked());
  lock.unlock();
  if (auto applied = apply_state(std::move(change)); !applied) return std::move(applied).error();
  return moved;
}

Result<std::int64_t> LogStore::purge_delivered(std::int64_t older_than_ms) {
  std::lock_guard state_lock(state_mu_);
  std::int64_t removed = 0;
  std::uint64_t first_kept = 0;
  {
    std::lock_guard lock(mu_);
    first_kept = remove_segments(now_ms(), older_than_ms, false, &removed);
  }
  forget_attempts(first_kept);
  return removed;
}

}  // namespace tdhook::receiver::log
