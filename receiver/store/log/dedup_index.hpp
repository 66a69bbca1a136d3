#pragma once
// The de-duplication keys of the events in the log, in memory: which stored event, if any, a new
// event repeats. A key is kept as a 128-bit hash (MurmurHash3 x64/128 of the key text) and its
// receive time, 24 bytes in a queue in sequence order, plus 8 bytes of table; the sequence number
// is the key's place in the queue, so it costs nothing to store. Keys leave the index in whole
// blocks of 1 024 once the newest key of a block is older than the window (a key older than the
// window is never a match, even while its block stays); the index is rebuilt at start from the
// segments that the window still needs.
//
// At 32 bytes a key, a day's window of 1 M events costs 32 MiB.
//
// Not thread-safe: the store holds its lock around every call.

#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <vector>

namespace tdhook::receiver::log {

struct KeyHash {
  std::uint64_t a = 0, b = 0;
  bool operator==(const KeyHash&) const = default;
};
KeyHash hash_key(std::string_view key) noexcept;

class DedupIndex {
 public:
  explicit DedupIndex(std::int64_t window_ms);

  // The sequence number of a stored event with this key, received within the window before
  // `now_ms`.
  std::optional<std::uint64_t> find(const KeyHash& key, std::int64_t now_ms) const;
  // Adds the key of event `seq`, which must be the next sequence number after the last one
  // added (a gap, such as entries lost to damage, is filled with keys that match nothing). The
  // first call fixes where the index starts.
  void add(std::uint64_t seq, const KeyHash& key, std::int64_t received_at_ms);
  // Forgets blocks whose newest key is older than the window.
  void expire(std::int64_t now_ms);

  std::size_t size() const noexcept { return keys_.size(); }
  std::uint64_t next_seq() const noexcept { return first_seq_ + keys_.size(); }

 private:
  static constexpr std::size_t kBlock = 1024;
  static constexpr std::uint32_t kEmpty = 0xffffffffu;

  std::size_t home(const KeyHash& key) const noexcept { return key.a & (slots_.size() - 1); }
  void insert_slot(std::uint64_t seq);
  void erase_slot(std::uint64_t seq);
  void grow();
  // The queue position's seq as the table stores it: 32 bits, wrapping (the queue never holds
  // 2^32 keys, so a match is checked against the queue itself).
  std::uint64_t seq_of_slot(std::uint32_t slot) const noexcept;

  std::int64_t window_ms_;
  bool started_ = false;
  std::uint64_t first_seq_ = 0;
  std::deque<KeyHash> keys_;               // keys_[i] is the key of seq first_seq_ + i
  std::deque<std::int64_t> times_;         // and its receive time
  std::deque<std::int64_t> block_newest_;  // newest received_at of each block of kBlock keys
  std::vector<std::uint32_t> slots_;       // open addressing, linear probing: low 32 bits of seq
  std::size_t used_ = 0;
};

}  // namespace tdhook::receiver::log
