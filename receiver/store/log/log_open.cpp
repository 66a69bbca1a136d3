// Opening the log store: the data directory's lock, the segments scanned (torn tails cut,
// damaged entries skipped and logged), the de-duplication keys rebuilt, each sink's cursor
// loaded; and, once, the import of an old SQLite spool.db.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "store/log/log_store_impl.hpp"
#include "store/record.hpp"

namespace tdhook::receiver {
namespace {

constexpr std::string_view kBusy = "busy: ";

Error io_error(const std::string& what, int err) {
  return Error{ErrorCode::invalid_input, what + ": " + std::strerror(err)};
}

}  // namespace

bool is_store_busy(const Error& error) noexcept {
  return error.code == ErrorCode::invalid_input && error.detail.starts_with(kBusy);
}

Result<std::vector<std::string>> stored_sink_names(const std::filesystem::path& data_dir) {
  const auto path = data_dir / "state.db";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::vector<std::string>();
  bool existed = false;
  auto state = log::StateDb::open(path, existed);
  if (!state) return std::move(state).error();
  return (*state)->sink_names();
}

Result<std::unique_ptr<Store>> open_log_store(const LogStoreOptions& options, const Logger& log) {
  if (options.store.sinks.size() > log::kMaxSinks) {
    return Error{ErrorCode::invalid_config,
                 "at most " + std::to_string(log::kMaxSinks) + " sinks can be configured"};
  }
  auto store = std::make_unique<log::LogStore>(options, log);
  if (auto opened = store->open(); !opened) return std::move(opened).error();
  if (!options.for_inspection) {
    if (auto imported = store->import_old_spool(); !imported) return std::move(imported).error();
  }
  return std::unique_ptr<Store>(std::move(store));
}

namespace log {

Status LogStore::lock_data_dir() {
  const auto path = options_.store.data_dir / "store.lock";
  lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return io_error("cannot open " + path.string(), errno);
  while (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      return Error{ErrorCode::invalid_input,
                   std::string(kBusy) +
                       "another process (a running tdhook-receiver?) has the "
                       "store in " +
                       options_.store.data_dir.string() + " open"};
    }
    return io_error("cannot lock " + path.string(), errno);
  }
  return Ok{};
}

Status LogStore::open() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    return Error{ErrorCode::invalid_input, "cannot create " + dir_.string() + ": " + ec.message()};
  }
  if (auto locked = lock_data_dir(); !locked) return locked;
  for (std::size_t i = 0; i < options_.store.sinks.size(); ++i) {
    SinkState s;
    s.name = options_.store.sinks[i];
    s.bit = 1u << i;
    sink_index_.emplace(s.name, sinks_.size());
    sinks_.push_back(std::move(s));
  }
  bool existed = false;
  auto state = StateDb::open(options_.store.data_dir / "state.db", existed);
  if (!state) return std::move(state).error();
  state_ = std::move(*state);
  bool any = false;
  if (auto scanned = recover_segments(any); !scanned) return scanned;
  auto floor = state_->max_seq();
  if (!floor) return std::move(floor).error();
  next_seq_ = std::max({next_seq_, *floor, std::uint64_t{1}});
  if (auto loaded = load_sinks(existed, any); !loaded) return loaded;
  // Every sink's cursor is written now, before any event is taken: a sink that has settled
  // nothing yet must not look new at the next start (that would skip what waits for it).
  {
    StateChange cursors;
    for (const auto& s : sinks_) cursors.cursors.emplace_back(s.name, s.cursor);
    if (auto written = state_->apply(cursors); !written) return written;
  }
  window_first_ = next_seq_;
  // Appends go on at the end of the last segment while it has room.
  if (!segments_.empty()) {
    SegmentIndex& last = segments_.rbegin()->second;
    if (last.bytes < options_.segment_bytes && last.end_seq() == next_seq_) {
      auto file = SegmentFile::open(last.path, last.first_seq, false, last.bytes);
      if (!file) return std::move(file).error();
      active_ = std::move(*file);
    }
  }
  dedup_.expire(now_ms());
  std::uint64_t total = 0;
  for (const auto& [first, seg] : segments_) total += seg.bytes;
  disk_bytes_.store(total);
  pending_cache_.store(pending_locked());
  return Ok{};
}

Status LogStore::recover_segments(bool& any) {
  auto listed = list_segments(dir_);
  if (!listed) return std::move(listed).error();
  any = !listed->empty();
  for (std::size_t n = 0; n < listed->size(); ++n) {
    const auto& [first, path] = (*listed)[n];
    const bool last = n + 1 == listed->size();
    SegmentIndex idx;
    idx.first_seq = first;
    idx.path = path;
    std::uint64_t out_of_order = 0;
    auto report =
        scan_segment(path, false, [&](Entry&& e, std::uint64_t offset, std::uint32_t size) {
          const std::uint64_t expected = idx.end_seq();
          if (e.seq < expected) {
            ++out_of_order;  // a stale copy of an earlier entry: never a new event
            return;
          }
          while (idx.end_seq() < e.seq) {
            idx.offset.push_back(kMissing);
            idx.size.push_back(0);
            idx.mask.push_back(0);
          }
          idx.offset.push_back(static_cast<std::uint32_t>(offset));
          idx.size.push_back(size);
          idx.mask.push_back(mask_of(e.sinks));
          idx.newest_received = std::max(idx.newest_received, e.received_at_ms);
          idx.oldest_received = std::min(idx.oldest_received, e.received_at_ms);
          dedup_.add(e.seq, hash_key(e.dedup_key), e.received_at_ms);
        });
    if (!report) return std::move(report).error();
    for (const auto& d : report->damage) {
      log_.error("log: damaged entry skipped (its event is lost; every whole entry is kept)",
                 LogFields()
                     .add("file", path.string())
                     .add("offset", static_cast<std::int64_t>(d.offset))
                     .add("bytes", static_cast<std::int64_t>(d.length))
                     .add("why", d.why));
    }
    if (out_of_order > 0) {
      log_.error("log: entries out of sequence skipped",
                 LogFields()
                     .add("file", path.string())
                     .add("count", static_cast<std::int64_t>(out_of_order)));
    }
    if (report->torn_tail) {
      const auto cut = static_cast<std::int64_t>(report->file_size - report->valid_end);
      if (last && !options_.for_inspection) {
        log_.warn(
            "log: torn tail cut at the last whole entry (a write the process did not "
            "finish; never answered 200)",
            LogFields()
                .add("file", path.string())
                .add("offset", static_cast<std::int64_t>(report->valid_end))
                .add("bytes", cut));
        if (auto cut_ok = truncate_file(path, report->valid_end); !cut_ok) return cut_ok;
      } else {
        log_.error("log: segment ends in a partial entry",
                   LogFields()
                       .add("file", path.string())
                       .add("offset", static_cast<std::int64_t>(report->valid_end))
                       .add("bytes", cut));
      }
    }
    idx.bytes = report->valid_end;
    next_seq_ = std::max(next_seq_, idx.end_seq());
    // Only the last segment can take appends; an empty one that is not last is just removed.
    if (idx.offset.empty() && !last && !options_.for_inspection) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
      continue;
    }
    segments_.emplace(first, std::move(idx));
  }
  return Ok{};
}

Status LogStore::load_sinks(bool state_existed, bool any_segment) {
  const std::uint64_t first_retained =
      segments_.empty() ? next_seq_ : segments_.begin()->second.first_seq;
  bool warned = false;
  for (auto& s : sinks_) {
    auto loaded = state_->load_sink(s.name);
    if (!loaded) return std::move(loaded).error();
    if (loaded->cursor) {
      s.cursor = std::max(*loaded->cursor, first_retained);
    } else if (!state_existed && any_segment) {
      // The state file is gone but events are not: every retained event is due again (at
      // least once, never lost).
      if (!warned) {
        log_.error(
            "log: state.db was missing; every event the log retains is delivered again to "
            "every sink",
            LogFields().add("from_seq", static_cast<std::int64_t>(first_retained)));
        warned = true;
      }
      s.cursor = first_retained;
    } else {
      s.cursor = next_seq_;  // a new sink: the events from now on
    }
    for (const std::uint64_t seq : loaded->settled) {
      if (seq > s.cursor) s.settled.insert(seq);
    }
    for (auto& p : loaded->waiting) {
      Waiting w{p.attempts, p.next_at_ms, p.last_error, {}};
      if (!p.record.empty()) {
        w.copy = entry_of(p);
      } else {
        const SegmentIndex* seg = segment_of(p.seq);
        if (seg == nullptr || !seg->holds(p.seq)) continue;  // lost with its segment
      }
      if (p.seq >= s.cursor) s.settled.insert(p.seq);  // a waiting event is settled for the cursor
      s.waiting.emplace(p.seq, std::move(w));
    }
    advance(s);
    for (std::uint64_t seq = s.cursor; seq < next_seq_; ++seq) {
      if (due_to(seq, s.bit) && s.settled.count(seq) == 0) ++s.unsettled;
    }
  }
  return Ok{};
}

}  // namespace log
}  // namespace tdhook::receiver
