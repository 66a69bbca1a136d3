#pragma once
// Recently committed de-duplication keys, in memory, so that a retry of an event already in the
// spool is answered by the event loop itself: verified, fingerprinted, looked up here, answered
// 200 "duplicate" without waking the spool writer or building a record. Only keys whose event
// has committed are remembered, so a hit is always safe to answer; a miss (evicted, or stored
// before a restart) falls through to the spool's own lookup, which stays the authority.
//
// Thread-safe: the event loops look up, the spool writer's completions remember.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tdhook::receiver {

class DedupCache {
 public:
  // Keeps about `capacity` keys (the oldest are forgotten first); `window` as the spool's.
  DedupCache(std::size_t capacity, std::chrono::milliseconds window);

  // The delivery id stored for `key`, when it was received within the window before `now_ms`.
  std::optional<std::string> find(const std::string& key, std::int64_t now_ms) const;
  // `key` was committed with `delivery_id`, received at `received_at_ms`.
  void remember(const std::string& key, std::string_view delivery_id, std::int64_t received_at_ms);

  std::size_t size() const;

 private:
  struct Entry {
    std::string delivery_id;
    std::int64_t received_at_ms = 0;
  };
  // Sharded by the key's hash: the loops and the writer rarely meet on one mutex.
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Entry> entries;
    std::deque<std::string> order;  // insertion order, for eviction
  };
  static constexpr std::size_t kShards = 8;
  Shard& shard_of(const std::string& key) const;

  std::size_t shard_capacity_;
  std::int64_t window_ms_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace tdhook::receiver
