#pragma once
// The on-disk format of the event log: framed entries appended to segment files.
//
// An entry on disk:
//   u32 magic "TDH1" | u32 payload length | u32 CRC-32C of the payload | payload
// and its payload:
//   u64 seq | i64 received_at_ms | i64 timestamp_ms
//   | str delivery_id | str dedup_key | str event | str project_id | str subscription_id
//   | u32 count of sinks, then each sink as a str | u32 record length | record
//   [| u32 original length | original]
// where str is a u32 length and the bytes. The original (the request as Tiledesk sent it, kept
// for forward: sinks) is there only when it is not empty: an entry without one ends with its
// record, as every entry did before forward: sinks, so older segments read unchanged. A present
// but empty original and any byte after the original are refused, so that one entry has one
// encoding. Every integer is little-endian and fixed-width, so a
// file reads the same on any host. The magic lets a scan find the next entry after a damaged one
// (resync); the CRC tells a whole entry from a torn or rotted one.
//
// Segment files live in one directory and are named by the seq of their first entry, as 20
// zero-padded digits + ".log", so that sorting the names sorts the segments.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook::receiver::log {

// Stored little-endian like every integer, so a file's bytes read "TDH1" in a hex dump.
inline constexpr std::uint32_t kEntryMagic = 0x31484454u;
inline constexpr std::size_t kEntryHeaderSize = 12;  // magic, length, CRC
// No event comes near this (a record is bounded by the receiver's body limit); a length above
// it is a damaged header, refused before anything is allocated or read for it.
inline constexpr std::uint32_t kMaxPayloadSize = 64u * 1024 * 1024;

// One stored event as the log holds it.
struct Entry {
  std::uint64_t seq = 0;  // the store's sequence number, rising by one per event
  std::int64_t received_at_ms = 0;
  std::int64_t timestamp_ms = 0;  // Tiledesk's
  std::string delivery_id, dedup_key, event, project_id, subscription_id;
  std::vector<std::string> sinks;  // names of the sinks it is due to
  std::string record;              // the event record (JSON, no newline), often ~7 KB
  std::string original;            // NewEvent::original: "" unless a forward: sink is due to it

  bool operator==(const Entry&) const = default;
};

// Appends the framed entry to `out` (no allocation beyond growing `out`). Its payload must be at
// most kMaxPayloadSize (encoded_size(e) - kEntryHeaderSize): a larger one would be read back as
// corrupt, so the caller refuses such an event before it gets here.
void encode_entry(const Entry& e, std::string& out);
// Exact framed size of e (so a caller can reserve).
std::size_t encoded_size(const Entry& e);

enum class DecodeStatus { ok, incomplete, corrupt };
struct Decoded {
  DecodeStatus status = DecodeStatus::corrupt;
  // ok: bytes of the whole framed entry. incomplete: the framed size the header claims, when
  // `bytes` holds the whole header (so a reader knows how much more to read), else 0.
  std::size_t size = 0;
  std::string why;  // corrupt, incomplete: what is wrong, for logs
};
// Decodes the entry at the start of `bytes`. incomplete: `bytes` ends inside the entry (a torn
// tail if at end of file); corrupt: bad magic, impossible length, CRC mismatch or a malformed
// payload. with_record=false skips copying the record and the original (header-only scans);
// out.record and out.original are then empty. Every field of `out` is overwritten when ok; `out` is
// unspecified otherwise.
Decoded decode_entry(std::string_view bytes, Entry& out, bool with_record = true);

// "00000000000000000001.log" for 1.
std::string segment_file_name(std::uint64_t first_seq);
// The first seq a segment file name stands for; nullopt for any other name (exactly 20 digits
// then ".log", within u64).
std::optional<std::uint64_t> parse_segment_file_name(std::string_view name);
// Lists the segment files of `dir`, sorted by first seq. Other files are ignored.
Result<std::vector<std::pair<std::uint64_t, std::filesystem::path>>> list_segments(
    const std::filesystem::path& dir);

// An open segment file for appending (one writer thread). The descriptor is opened read-write,
// so that read_entry() can read the segment being written through fd().
class SegmentFile {
 public:
  // Opens `path` for append at `valid_size` (the valid end found by a scan). create=true creates
  // the file (failing if it exists; valid_size must then be 0) and, with sync_dir, fsyncs its
  // directory, so that the new name survives a power loss. create=false refuses a file whose size
  // is not valid_size: cutting a torn tail is the caller's decision (truncate_file), never done
  // here.
  static Result<std::unique_ptr<SegmentFile>> open(const std::filesystem::path& path,
                                                   std::uint64_t first_seq, bool create,
                                                   std::uint64_t valid_size, bool sync_dir = true);
  ~SegmentFile();
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;

  // Writes `bytes` at the end with as few write() calls as it takes (normally one), handling
  // partial writes and EINTR. On any failure (ENOSPC, EIO) truncates the file back to its size
  // before the call, so that no partial entry is left, and returns the error (detail names the
  // file and strerror).
  Status append(std::string_view bytes);
  Status sync();  // fdatasync

  std::uint64_t size() const noexcept { return size_; }
  std::uint64_t first_seq() const noexcept { return first_seq_; }
  int fd() const noexcept { return fd_; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  SegmentFile(std::filesystem::path path, int fd, std::uint64_t first_seq, std::uint64_t size)
      : path_(std::move(path)), fd_(fd), first_seq_(first_seq), size_(size) {}

  std::filesystem::path path_;
  int fd_;
  std::uint64_t first_seq_;
  std::uint64_t size_;
};

struct Damage {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::string why;
};
struct ScanReport {
  std::uint64_t valid_end = 0;  // offset just past the last whole entry
  std::uint64_t entries = 0;
  std::vector<Damage> damage;  // corrupt stretches skipped in the middle (resynced past)
  bool torn_tail = false;      // bytes after valid_end that are no whole entry (a crash mid-write)
  std::uint64_t file_size = 0;
};
using EntryCallback = std::function<void(Entry&&, std::uint64_t offset, std::uint32_t size)>;

// Reads the whole segment sequentially (1 MiB reads, not a read per entry) and calls
// on_entry(entry, offset, framed_size) for every whole, CRC-valid entry in order. After a
// corrupt entry it resyncs: it searches forward byte by byte for the next magic at which a whole
// entry decodes, records the skipped stretch in `damage`, and goes on; so a flipped byte in the
// middle loses only the entry it hits. Bytes at the end that form no whole entry (incomplete, or
// corrupt with no valid entry after them) set torn_tail (they are NOT in damage). Never reads
// past the file. with_record=false for header-only scans.
Result<ScanReport> scan_segment(const std::filesystem::path& path, bool with_record,
                                const EntryCallback& on_entry);
// The same scan over bytes in memory (scan_segment runs this very loop over its reads).
ScanReport scan_buffer(std::string_view bytes, bool with_record, const EntryCallback& on_entry);

// Reads and decodes the entry at `offset` of an open file descriptor (pread); corrupt → error
// with the offset and why.
Result<Entry> read_entry(int fd, std::uint64_t offset, std::uint32_t size);

// Cuts the file at `path` to `size` bytes (a torn tail that a scan found).
Status truncate_file(const std::filesystem::path& path, std::uint64_t size);

}  // namespace tdhook::receiver::log
