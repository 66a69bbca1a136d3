#include "inspect/recorder.hpp"

#include <algorithm>
#include <functional>

#include "store/record.hpp"

namespace tdhook::receiver::inspect {
namespace {

// Every kept body together stays under about this much; each one keeps at least the first
// kMinBodyCap bytes.
constexpr std::size_t kBodyBudget = 128u * 1024 * 1024;
constexpr std::size_t kMinBodyCap = 16u * 1024;
constexpr std::size_t kMaxBodyCap = 8u * 1024 * 1024;

std::size_t body_cap_for(std::size_t keep) {
  return std::clamp(kBodyBudget / std::max<std::size_t>(keep, 1), kMinBodyCap, kMaxBodyCap);
}

std::size_t index_size_for(std::size_t keep) {
  std::size_t n = 64;
  while (n < keep * 2) n *= 2;
  return n;
}

std::uint64_t hash_id(std::string_view id) noexcept {
  const auto h = static_cast<std::uint64_t>(std::hash<std::string_view>{}(id));
  return h == 0 ? 1 : h;  // 0 marks an empty cell
}

SinkProgress progress_for(std::string_view sink) {
  SinkProgress p;
  p.sink = sink;
  return p;
}

std::string_view tail_of(std::string_view text, std::size_t limit) noexcept {
  return text.size() <= limit ? text : text.substr(text.size() - limit);
}

// Copies `text` into `to`, keeping its memory unless it is far larger than needed.
void assign_kept(std::string& to, std::string_view text) {
  constexpr std::size_t kSlack = 64 * 1024;
  if (to.capacity() > kSlack && to.capacity() > 4 * text.size()) std::string().swap(to);
  to.assign(text);
}

// One attempt's outcome in what a sink made of its request so far (in place: strings keep their
// memory).
void apply(SinkProgress& p, const AttemptReport& report) {
  const auto& attempt = report.attempt;
  const auto error = attempt.error.substr(0, Recorder::kKeptOutput);
  p.attempts = std::max(p.attempts, attempt.number);
  if (attempt.ok) {
    p.state = SinkState::delivered;
    p.latency_ms = std::max<std::int64_t>(0, attempt.finished_at_ms - report.received_at_ms);
    p.next_attempt_at_ms = 0;
  } else {
    p.state = report.dead ? SinkState::dead : SinkState::retrying;
    p.last_error.assign(error);
    p.next_attempt_at_ms = report.dead ? 0 : report.next_attempt_at_ms;
  }
  if (p.history.size() >= Recorder::kKeptAttempts) p.history.erase(p.history.begin());
  auto& view = p.history.emplace_back();
  view.number = attempt.number;
  view.started_at_ms = attempt.started_at_ms;
  view.finished_at_ms = attempt.finished_at_ms;
  view.ok = attempt.ok;
  view.error.assign(error);
  view.output.assign(tail_of(report.output, Recorder::kKeptOutput));
}

}  // namespace

std::string_view to_string(SinkState state) noexcept {
  switch (state) {
    case SinkState::pending:
      return "pending";
    case SinkState::delivered:
      return "delivered";
    case SinkState::retrying:
      return "retrying";
    case SinkState::dead:
      return "dead";
  }
  return "pending";
}

SinkProgress* Recorder::ProgressList::find(std::string_view sink) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    if (items[i].sink == sink) return &items[i];
  }
  return nullptr;
}

// The next item, reset: its strings and history keep their memory.
SinkProgress& Recorder::ProgressList::add(std::string_view sink) {
  if (count == items.size()) items.emplace_back();
  SinkProgress& p = items[count];
  p.sink.assign(sink);
  p.state = SinkState::pending;
  p.attempts = 0;
  p.latency_ms = -1;
  p.last_error.clear();
  p.next_attempt_at_ms = 0;
  p.history.clear();
  ++count;
  return p;
}

Recorder::Recorder(std::size_t keep)
    : keep_(std::max<std::size_t>(keep, 1)),
      body_cap_(body_cap_for(keep_)),
      started_ms_(now_ms()),
      pool_(kPool),
      ring_(keep_),
      index_(index_size_for(keep_)),
      early_(kEarly),
      progress_log_(kProgressLog) {
  free_.reserve(kPool);
  for (std::size_t i = kPool; i > 0; --i) free_.push_back(i - 1);
}

Recorder::~Recorder() = default;

// Ids name slots one to one: the slot of an id above newest_ - keep_ has not been reused.
bool Recorder::in_ring(std::uint64_t id) const noexcept {
  return id != 0 && id <= newest_ && newest_ - id < keep_;
}

void Recorder::index_insert(std::uint64_t hash, std::uint64_t id) noexcept {
  const std::size_t mask = index_.size() - 1;
  Cell* victim = nullptr;
  for (std::size_t i = 0; i < kProbes; ++i) {
    Cell& cell = index_[(hash + i) & mask];
    if (cell.id == 0 || !in_ring(cell.id)) {
      victim = &cell;
      break;
    }
    if (victim == nullptr || cell.id < victim->id) victim = &cell;
  }
  *victim = Cell{hash, id};
}

std::optional<std::uint64_t> Recorder::index_find(std::string_view delivery_id) const noexcept {
  if (delivery_id.empty()) return std::nullopt;
  const auto hash = hash_id(delivery_id);
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = 0; i < kProbes; ++i) {
    const Cell& cell = index_[(hash + i) & mask];
    if (cell.hash != hash || !in_ring(cell.id)) continue;
    const Entry& e = slot_of(cell.id).entry;
    if (e.view(e.delivery_id) == delivery_id) return cell.id;
  }
  return std::nullopt;
}

// --- the hot path ------------------------------------------------------------------------------

// Copies the request into `e`'s buffers (their memory is kept: no allocation once warm).
void Recorder::fill(Entry& e, const ObservedRequest& r) const {
  e.received_at_ms = r.received_at_ms;
  e.status = 0;
  e.body_read = r.body_read;
  e.body_size = r.body.size();
  e.text.clear();
  e.remote = e.add(r.remote);
  e.method = e.add(r.method);
  e.target = e.add(r.target);
  e.event = e.add(r.event);
  e.project_id = e.add(r.project_id);
  e.headers.clear();
  for (const auto& [name, value] : r.headers) {
    e.headers.push_back(e.add(name));
    e.headers.push_back(e.add(value));
  }
  e.sinks.clear();
  for (const auto& sink : r.sinks) e.sinks.push_back(e.add(sink));
  e.reason = e.detail = e.delivery_id = e.replay_of = Piece{e.text.size(), 0};
  // Cut here, so that the ring's memory stays bounded (bodies this large are rare).
  assign_kept(e.body, r.body.substr(0, body_cap_));
}

RequestObserver::Ticket Recorder::begin(const ObservedRequest& request) noexcept {
  std::size_t index = 0;
  {
    std::lock_guard lock(pool_mu_);
    if (free_.empty()) {
      ++dropped_;
      return 0;
    }
    index = free_.back();
    free_.pop_back();
  }
  try {
    fill(pool_[index], request);
  } catch (...) {
    release(index);  // out of memory: not kept
    return 0;
  }
  return index + 1;
}

void Recorder::release(std::size_t index) noexcept {
  std::lock_guard lock(pool_mu_);
  free_.push_back(index);  // never reallocates: reserved for every entry
}

void Recorder::settle(Ticket ticket, const ObservedOutcome& outcome) noexcept {
  file(ticket, outcome, {});
}

// The outcome into the ticket's entry, the entry into the ring; returns the request's id.
std::uint64_t Recorder::file(Ticket ticket, const ObservedOutcome& outcome,
                             std::string_view replay_of) noexcept {
  if (ticket == 0 || ticket > pool_.size()) return 0;
  const auto index = static_cast<std::size_t>(ticket - 1);
  Entry& e = pool_[index];
  try {
    e.status = outcome.status;
    e.reason = e.add(outcome.reason);
    e.detail = e.add(outcome.detail);
    e.delivery_id = e.add(outcome.delivery_id);
    e.replay_of = e.add(replay_of);
  } catch (...) {
    release(index);  // out of memory: not kept
    return 0;
  }
  std::uint64_t id = 0;
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    id = publish(e);
    wake = listeners_ > 0;
  }
  release(index);  // it holds the evicted request's buffers now, for the next request
  if (wake) changed_.notify_all();
  return id;
}

// Under mu_: `entry` goes into the next slot by swapping buffers (no copy, no free); `entry`
// gets what the slot held.
std::uint64_t Recorder::publish(Entry& entry) noexcept {
  const std::uint64_t id = newest_ + 1;
  Slot& slot = slot_of(id);
  std::swap(slot.entry, entry);
  slot.progress.count = 0;
  slot.id = id;
  newest_ = id;
  const Entry& e = slot.entry;
  const auto delivery_id = e.view(e.delivery_id);
  if (!delivery_id.empty() && (e.view(e.reason) == "stored" || e.replay_of.size != 0)) {
    const auto hash = hash_id(delivery_id);
    index_insert(hash, id);
    if (early_count_ > 0) take_early(hash, slot);
  }
  return id;
}

// Under mu_: attempts on `slot`'s event that came before its request (the lists are swapped: the
// slot's own is empty and is the cell's from now on).
void Recorder::take_early(std::uint64_t hash, Slot& slot) noexcept {
  const std::size_t mask = kEarly - 1;
  const auto delivery_id = slot.entry.view(slot.entry.delivery_id);
  for (std::size_t i = 0; i < kProbes; ++i) {
    Early& e = early_[(hash + i) & mask];
    if (e.hash != hash || e.delivery_id != delivery_id) continue;
    std::swap(slot.progress, e.progress);
    e.hash = 0;
    e.progress.count = 0;
    --early_count_;
    return;
  }
}

std::uint64_t Recorder::add_replay(const ObservedRequest& request, const ObservedOutcome& outcome,
                                   std::string_view replay_of) noexcept {
  return file(begin(request), outcome, replay_of);
}

std::uint64_t Recorder::dropped() const {
  std::lock_guard lock(pool_mu_);
  return dropped_;
}

// --- the dispatcher's reports --------------------------------------------------------------

// Under mu_: the cell of `delivery_id`'s early attempts; a new one (the oldest of its probes
// makes room) when there is none.
Recorder::Early& Recorder::early_cell(std::string_view delivery_id) {
  const auto hash = hash_id(delivery_id);
  const std::size_t mask = kEarly - 1;
  for (std::size_t i = 0; i < kProbes; ++i) {
    Early& e = early_[(hash + i) & mask];
    if (e.hash == hash && e.delivery_id == delivery_id) return e;
  }
  Early* cell = nullptr;
  for (std::size_t i = 0; i < kProbes && cell == nullptr; ++i) {
    Early& e = early_[(hash + i) & mask];
    if (e.hash == 0) cell = &e;
  }
  if (cell == nullptr) {
    cell = &early_[hash & mask];
    for (std::size_t i = 1; i < kProbes; ++i) {
      Early& e = early_[(hash + i) & mask];
      if (e.stamp < cell->stamp) cell = &e;
    }
    --early_count_;
  }
  cell->hash = hash;
  cell->delivery_id.assign(delivery_id);
  cell->progress.count = 0;
  ++early_count_;
  return *cell;
}

void Recorder::on_attempt(const AttemptReport& report) noexcept {
  try {
    bool wake = false;
    {
      std::lock_guard lock(mu_);
      const auto id = index_find(report.delivery_id);
      if (!id) {
        // Its request may not be settled yet: kept for settle() (the oldest make room).
        Early& cell = early_cell(report.delivery_id);
        cell.stamp = ++early_stamp_;
        auto* p = cell.progress.find(report.sink);
        apply(p != nullptr ? *p : cell.progress.add(report.sink), report);
        return;
      }
      Slot& slot = slot_of(*id);
      if (slot.progress.count == 0) {
        for (const auto& sink : slot.entry.sinks) slot.progress.add(slot.entry.view(sink));
      }
      auto* p = slot.progress.find(report.sink);
      apply(p != nullptr ? *p : slot.progress.add(report.sink), report);
      ++progress_seq_;
      progress_log_[progress_seq_ % kProgressLog] = *id;
      wake = listeners_ > 0;
    }
    if (wake) changed_.notify_all();
  } catch (...) {
    // Out of memory: this attempt is not shown; delivery goes on.
  }
}

// --- readers ---------------------------------------------------------------------------------

std::uint64_t Recorder::newest() const {
  std::lock_guard lock(mu_);
  return newest_;
}

std::int64_t Recorder::covered_since_ms() const {
  std::lock_guard lock(mu_);
  if (newest_ < keep_) return started_ms_;
  return slot_of(newest_ - keep_ + 1).entry.received_at_ms;
}

// Under mu_: every sink the request is due to, in order (pending until reported), then any
// other reported.
std::vector<SinkProgress> Recorder::progress_of(const Slot& slot) const {
  const Entry& e = slot.entry;
  const auto& progress = slot.progress;
  std::vector<SinkProgress> out;
  out.reserve(e.sinks.size());
  for (const auto& piece : e.sinks) {
    const auto sink = e.view(piece);
    const auto* begin = progress.items.data();
    const auto* end = begin + progress.count;
    const auto* p = std::find_if(begin, end, [&](const SinkProgress& s) { return s.sink == sink; });
    out.push_back(p != end ? *p : progress_for(sink));
  }
  for (std::size_t i = 0; i < progress.count; ++i) {
    const auto& p = progress.items[i];
    const bool due = std::any_of(e.sinks.begin(), e.sinks.end(),
                                 [&](const Piece& piece) { return e.view(piece) == p.sink; });
    if (!due) out.push_back(p);
  }
  return out;
}

// Under mu_: the slot's request, copied out.
Snapshot Recorder::copy_of(const Slot& slot, Body body) const {
  const Entry& e = slot.entry;
  Snapshot out;
  out.id = slot.id;
  auto& r = out.kept.request;
  r.received_at_ms = e.received_at_ms;
  r.remote = e.view(e.remote);
  r.method = e.view(e.method);
  r.target = e.view(e.target);
  r.headers.reserve(e.headers.size() / 2);
  for (std::size_t i = 0; i + 1 < e.headers.size(); i += 2)
    r.headers.emplace_back(e.view(e.headers[i]), e.view(e.headers[i + 1]));
  if (body == Body::full || e.event.size == 0) r.body = e.body;
  r.body_read = e.body_read;
  r.status = e.status;
  r.reason = e.view(e.reason);
  r.detail = e.view(e.detail);
  r.delivery_id = e.view(e.delivery_id);
  r.event = e.view(e.event);
  r.project_id = e.view(e.project_id);
  r.sinks.reserve(e.sinks.size());
  for (const auto& piece : e.sinks) r.sinks.emplace_back(e.view(piece));
  out.kept.body_size = e.body_size;
  out.kept.replay_of = e.view(e.replay_of);
  out.progress = progress_of(slot);
  return out;
}

std::vector<Snapshot> Recorder::requests_before(std::uint64_t before, std::size_t count,
                                                Body body) const {
  std::vector<Snapshot> out;
  std::lock_guard lock(mu_);
  std::uint64_t id = before == 0 || before > newest_ + 1 ? newest_ : before - 1;
  out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>({id, keep_, count})));
  for (; id != 0 && in_ring(id) && out.size() < count; --id)
    out.push_back(copy_of(slot_of(id), body));
  return out;
}

std::optional<Snapshot> Recorder::get(std::uint64_t id, Body body) const {
  std::lock_guard lock(mu_);
  if (!in_ring(id)) return std::nullopt;
  return copy_of(slot_of(id), body);
}

std::optional<std::uint64_t> Recorder::find_stored(std::string_view delivery_id) const {
  std::lock_guard lock(mu_);
  return index_find(delivery_id);
}

Cursor Recorder::cursor() const {
  std::lock_guard lock(mu_);
  return Cursor{newest_, progress_seq_};
}

Changes Recorder::wait(Cursor& cursor, std::chrono::steady_clock::time_point deadline,
                       std::chrono::steady_clock::time_point not_before) {
  Changes out;
  std::unique_lock lock(mu_);
  // Pacing first (only the stop ends it early), then the wait for something new: only that
  // one counts as listening, so that requests do not wake a stream that paces.
  changed_.wait_until(lock, std::min(not_before, deadline), [&] { return stopping_; });
  ++listeners_;
  changed_.wait_until(lock, deadline, [&] {
    return stopping_ || newest_ != cursor.request || progress_seq_ != cursor.progress;
  });
  --listeners_;
  if (stopping_) {
    out.stopped = true;
    return out;
  }
  collect(cursor, out);
  return out;
}

Changes Recorder::poll(Cursor& cursor) const {
  Changes out;
  std::lock_guard lock(mu_);
  out.stopped = stopping_;
  if (!stopping_) collect(cursor, out);
  return out;
}

void Recorder::collect(Cursor& cursor, Changes& out) const {
  if (newest_ - cursor.request > kMaxChangesPerWake ||
      progress_seq_ - cursor.progress > kProgressLog / 2) {
    out.gap = true;
  } else {
    for (auto id = cursor.request + 1; id <= newest_; ++id) {
      if (in_ring(id)) out.added.push_back(id);
    }
    for (auto seq = cursor.progress + 1; seq <= progress_seq_; ++seq) {
      const auto id = progress_log_[seq % kProgressLog];
      if (id > cursor.request && id <= newest_) continue;  // sent as new, with its progress
      if (std::find(out.updated.begin(), out.updated.end(), id) == out.updated.end()) {
        out.updated.push_back(id);
      }
    }
  }
  cursor = Cursor{newest_, progress_seq_};
}

void Recorder::stop_streams() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
}

}  // namespace tdhook::receiver::inspect
