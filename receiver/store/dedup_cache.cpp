#include "store/dedup_cache.hpp"

#include <algorithm>
#include <functional>

namespace tdhook::receiver {

DedupCache::DedupCache(std::size_t capacity, std::chrono::milliseconds window)
    : shard_capacity_(std::max<std::size_t>(1, capacity / kShards)), window_ms_(window.count()) {}

DedupCache::Shard& DedupCache::shard_of(const std::string& key) const {
  return shards_[std::hash<std::string>{}(key) % kShards];
}

std::optional<std::string> DedupCache::find(const std::string& key, std::int64_t now_ms) const {
  Shard& shard = shard_of(key);
  const std::lock_guard lock(shard.mutex);
  const auto it = shard.entries.find(key);
  // The spool's rule: a duplicate when the first occurrence was received within the window.
  if (it == shard.entries.end() || it->second.received_at_ms < now_ms - window_ms_) {
    return std::nullopt;
  }
  return it->second.delivery_id;
}

void DedupCache::remember(const std::string& key, std::string_view delivery_id,
                          std::int64_t received_at_ms) {
  Shard& shard = shard_of(key);
  const std::lock_guard lock(shard.mutex);
  auto [it, inserted] = shard.entries.try_emplace(key);
  // A key stored again after its window ran out: the newer occurrence is the one that counts.
  it->second = Entry{std::string(delivery_id), received_at_ms};
  if (!inserted) return;
  shard.order.push_back(key);
  while (shard.order.size() > shard_capacity_) {
    shard.entries.erase(shard.order.front());
    shard.order.pop_front();
  }
}

std::size_t DedupCache::size() const {
  std::size_t n = 0;
  for (const auto& shard : shards_) {
    const std::lock_guard lock(shard.mutex);
    n += shard.entries.size();
  }
  return n;
}

}  // namespace tdhook::receiver
