#include "store/log/dedup_index.hpp"

#include <cstring>

namespace tdhook::receiver::log {
namespace {

std::uint64_t rotl(std::uint64_t x, int r) noexcept { return (x << r) | (x >> (64 - r)); }

std::uint64_t fmix(std::uint64_t k) noexcept {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

std::uint64_t load64(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

// MurmurHash3_x64_128 (Austin Appleby's public-domain algorithm), seed 0. The keys are made by
// the receiver from an authenticated event (hook id, timestamp, SipHash of the payload), so a
// fast non-cryptographic hash is enough: two occurrences share a hash with odds of about n^2 /
// 2^129.
KeyHash hash_key(std::string_view key) noexcept {
  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  const std::size_t len = key.size();
  const std::size_t nblocks = len / 16;
  std::uint64_t h1 = 0, h2 = 0;
  constexpr std::uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
  for (std::size_t i = 0; i < nblocks; ++i) {
    std::uint64_t k1 = load64(data + i * 16), k2 = load64(data + i * 16 + 8);
    k1 *= c1;
    k1 = rotl(k1, 31);
    k1 *= c2;
    h1 ^= k1;
    h1 = rotl(h1, 27);
    h1 += h2;
    h1 = h1 * 5 + 0x52dce729;
    k2 *= c2;
    k2 = rotl(k2, 33);
    k2 *= c1;
    h2 ^= k2;
    h2 = rotl(h2, 31);
    h2 += h1;
    h2 = h2 * 5 + 0x38495ab5;
  }
  const unsigned char* tail = data + nblocks * 16;
  std::uint64_t k1 = 0, k2 = 0;
  const std::size_t rest = len & 15;
  for (std::size_t i = rest; i > 8; --i) k2 ^= std::uint64_t(tail[i - 1]) << ((i - 9) * 8);
  if (rest > 8) {
    k2 *= c2;
    k2 = rotl(k2, 33);
    k2 *= c1;
    h2 ^= k2;
  }
  for (std::size_t i = rest < 8 ? rest : 8; i > 0; --i)
    k1 ^= std::uint64_t(tail[i - 1]) << ((i - 1) * 8);
  if (rest > 0) {
    k1 *= c1;
    k1 = rotl(k1, 31);
    k1 *= c2;
    h1 ^= k1;
  }
  h1 ^= len;
  h2 ^= len;
  h1 += h2;
  h2 += h1;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h1 += h2;
  h2 += h1;
  return KeyHash{h1, h2};
}

DedupIndex::DedupIndex(std::int64_t window_ms) : window_ms_(window_ms), slots_(1024, kEmpty) {}

std::uint64_t DedupIndex::seq_of_slot(std::uint32_t slot) const noexcept {
  return first_seq_ + static_cast<std::uint32_t>(slot - static_cast<std::uint32_t>(first_seq_));
}

std::optional<std::uint64_t> DedupIndex::find(const KeyHash& key, std::int64_t now_ms) const {
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = home(key);; i = (i + 1) & mask) {
    const std::uint32_t slot = slots_[i];
    if (slot == kEmpty) return std::nullopt;
    const std::uint64_t seq = seq_of_slot(slot);
    // An older occurrence past the window is no match; a newer one of the same key may follow.
    if (keys_[seq - first_seq_] == key && times_[seq - first_seq_] >= now_ms - window_ms_) {
      return seq;
    }
  }
}

void DedupIndex::add(std::uint64_t seq, const KeyHash& key, std::int64_t received_at_ms) {
  if (!started_) {
    started_ = true;
    first_seq_ = seq;
  }
  if (seq < next_seq()) return;  // already there (a caller replaying what it added)
  while (next_seq() < seq) {     // a gap: placeholders, never in the table
    if (keys_.size() % kBlock == 0) block_newest_.push_back(received_at_ms);
    keys_.push_back(KeyHash{});
    times_.push_back(received_at_ms);
  }
  if (keys_.size() % kBlock == 0) block_newest_.push_back(received_at_ms);
  keys_.push_back(key);
  times_.push_back(received_at_ms);
  auto& newest = block_newest_.back();
  if (received_at_ms > newest) newest = received_at_ms;
  if ((used_ + 1) * 2 > slots_.size()) grow();
  insert_slot(seq);
}

void DedupIndex::insert_slot(std::uint64_t seq) {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = home(keys_[seq - first_seq_]);
  while (slots_[i] != kEmpty) i = (i + 1) & mask;
  slots_[i] = static_cast<std::uint32_t>(seq);
  ++used_;
}

// Backward-shift deletion: the table never holds tombstones, so lookups stay short.
void DedupIndex::erase_slot(std::uint64_t seq) {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = home(keys_[seq - first_seq_]);
  while (slots_[i] != static_cast<std::uint32_t>(seq)) {
    if (slots_[i] == kEmpty) return;
    i = (i + 1) & mask;
  }
  for (std::size_t j = (i + 1) & mask; slots_[j] != kEmpty; j = (j + 1) & mask) {
    const std::size_t k = home(keys_[seq_of_slot(slots_[j]) - first_seq_]);
    // Move j's entry into the hole at i unless its home lies cyclically in (i, j].
    const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    slots_[i] = slots_[j];
    i = j;
  }
  slots_[i] = kEmpty;
  --used_;
}

void DedupIndex::grow() {
  std::vector<std::uint32_t> old(slots_.size() * 2, kEmpty);
  old.swap(slots_);
  used_ = 0;
  for (const std::uint32_t slot : old) {
    if (slot != kEmpty) insert_slot(seq_of_slot(slot));
  }
}

void DedupIndex::expire(std::int64_t now_ms) {
  const std::int64_t cutoff = now_ms - window_ms_;
  while (block_newest_.size() > 1 && block_newest_.front() < cutoff) {
    for (std::size_t i = 0; i < kBlock; ++i) {
      if (!(keys_[i] == KeyHash{})) erase_slot(first_seq_ + i);
    }
    keys_.erase(keys_.begin(), keys_.begin() + kBlock);
    times_.erase(times_.begin(), times_.begin() + kBlock);
    block_newest_.pop_front();
    first_seq_ += kBlock;
  }
}

}  // namespace tdhook::receiver::log
