#include "store/log/segment.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include "store/log/crc32c.hpp"

namespace tdhook::receiver::log {

namespace {

// The smallest payload: three 8-byte integers, five empty strings, no sinks, an empty record.
constexpr std::size_t kMinPayloadSize = 3 * 8 + 5 * 4 + 4 + 4;
// Scans read this much at a time: few system calls, and a bounded buffer however big the file.
constexpr std::size_t kReadSize = 1024 * 1024;
constexpr char kMagicBytes[4] = {
    static_cast<char>(kEntryMagic & 0xFFu), static_cast<char>((kEntryMagic >> 8) & 0xFFu),
    static_cast<char>((kEntryMagic >> 16) & 0xFFu), static_cast<char>(kEntryMagic >> 24)};
constexpr std::string_view kMagic(kMagicBytes, 4);
constexpr std::size_t kNameDigits = 20;
constexpr std::string_view kNameSuffix = ".log";

// Byte by byte rather than memcpy: the format is little-endian on every host (GCC turns these
// into one load or store on x86).
inline std::uint32_t get_u32(const unsigned char* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
inline std::uint64_t get_u64(const unsigned char* p) noexcept {
  return static_cast<std::uint64_t>(get_u32(p)) | static_cast<std::uint64_t>(get_u32(p + 4)) << 32;
}
inline void put_u32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v & 0xFFu), static_cast<char>((v >> 8) & 0xFFu),
                     static_cast<char>((v >> 16) & 0xFFu), static_cast<char>(v >> 24)};
  out.append(b, 4);
}
inline void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v & 0xFFFFFFFFu));
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
}
inline void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// Reads the payload's fields; every take fails rather than run past the payload's end.
class PayloadReader {
 public:
  PayloadReader(const unsigned char* p, std::size_t n) : p_(p), left_(n) {}
  std::size_t left() const noexcept { return left_; }
  bool u32(std::uint32_t& v) noexcept {
    if (left_ < 4) return false;
    v = get_u32(p_);
    skip(4);
    return true;
  }
  bool u64(std::uint64_t& v) noexcept {
    if (left_ < 8) return false;
    v = get_u64(p_);
    skip(8);
    return true;
  }
  bool str(std::string& s) {
    std::uint32_t n = 0;
    if (!u32(n) || n > left_) return false;
    s.assign(reinterpret_cast<const char*>(p_), n);
    skip(n);
    return true;
  }

 private:
  void skip(std::size_t n) noexcept {
    p_ += n;
    left_ -= n;
  }
  const unsigned char* p_;
  std::size_t left_;
};

std::size_t payload_size(const Entry& e) {
  std::size_t n = 3 * 8 + 5 * 4 + e.delivery_id.size() + e.dedup_key.size() + e.event.size() +
                  e.project_id.size() + e.subscription_id.size() + 4 + 4 + e.record.size();
  if (!e.original.empty()) n += 4 + e.original.size();
  for (const auto& s : e.sinks) n += 4 + s.size();
  return n;
}

Decoded fail(DecodeStatus status, std::string why, std::size_t size = 0) {
  return Decoded{status, size, std::move(why)};
}

Error sys_error(std::string what, int err) {
  return Error{ErrorCode::invalid_input, std::move(what) + ": " + std::strerror(err)};
}

// Closes a descriptor on every path out of a function.
class FdGuard {
 public:
  explicit FdGuard(int fd) noexcept : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// pread until `n` bytes or the end of the file; returns the bytes read, or -1 (errno set).
ssize_t pread_full(int fd, char* buf, std::size_t n, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

Status fsync_directory(const std::filesystem::path& dir) {
  const std::filesystem::path d = dir.empty() ? std::filesystem::path(".") : dir;
  FdGuard fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return sys_error("cannot open directory " + d.string(), errno);
  if (::fsync(fd.get()) != 0) return sys_error("cannot fsync directory " + d.string(), errno);
  return Ok{};
}

// The scan over any source of bytes. fetch(pos, want, view) sets `view` to the bytes from `pos`
// on, at least min(want, total - pos) of them (more when it has them), or returns false on an
// I/O error. Both scan_buffer (the bytes in memory) and scan_segment (a 1 MiB read buffer) run
// this, so the fuzzer exercises the very loop that reads the disk.
template <class Fetch>
bool scan_loop(std::uint64_t total, Fetch&& fetch, bool with_record, const EntryCallback& on_entry,
               ScanReport& report) {
  report.file_size = total;
  Entry entry;
  std::string_view view;
  // Decodes at `pos`, reading the rest of the entry when its header claims one that lies within
  // the source. After it, `incomplete` means the entry would run past the end.
  const auto decode_at = [&](std::uint64_t pos, Decoded& d) {
    if (!fetch(pos, kEntryHeaderSize, view)) return false;
    d = decode_entry(view, entry, with_record);
    if (d.status == DecodeStatus::incomplete && d.size > view.size() && d.size <= total - pos) {
      if (!fetch(pos, d.size, view)) return false;
      d = decode_entry(view, entry, with_record);
    }
    return true;
  };
  const auto emit = [&](std::uint64_t pos, const Decoded& d) {
    ++report.entries;
    report.valid_end = pos + d.size;
    on_entry(std::move(entry), pos, static_cast<std::uint32_t>(d.size));
  };

  std::uint64_t pos = 0;
  Decoded d;
  while (pos < total) {
    if (!decode_at(pos, d)) return false;
    if (d.status == DecodeStatus::ok) {
      emit(pos, d);
      pos += d.size;
      continue;
    }
    // Damaged at `pos`: the next magic at which a whole entry decodes ends the damage. Magic
    // bytes inside the damaged stretch (a record may hold anything) are tried in turn; the CRC
    // turns the false ones down.
    const std::uint64_t start = pos;
    std::string why = std::move(d.why);
    bool found = false;
    std::uint64_t p = start + 1;
    while (!found && total - p >= kMagic.size() && p < total) {
      if (!fetch(p, kMagic.size(), view)) return false;
      const auto at = view.find(kMagic);
      if (at == std::string_view::npos) {
        // The last three bytes may begin a magic that the next read completes.
        p += view.size() - (kMagic.size() - 1);
        continue;
      }
      const std::uint64_t candidate = p + at;
      if (!decode_at(candidate, d)) return false;
      if (d.status == DecodeStatus::ok) {
        report.damage.push_back(Damage{start, candidate - start, std::move(why)});
        emit(candidate, d);
        pos = candidate + d.size;
        found = true;
      } else {
        p = candidate + 1;
      }
    }
    if (!found) {
      // Nothing whole after `start`: what a crash in the middle of a write leaves.
      report.torn_tail = true;
      break;
    }
  }
  return true;
}

// fetch() for scan_loop over a file: a window of it, read kReadSize at a time (more only for an
// entry bigger than that), never past `total`.
class FileWindow {
 public:
  FileWindow(int fd, std::uint64_t total) : fd_(fd), total_(total) {}
  bool operator()(std::uint64_t pos, std::size_t want, std::string_view& view) {
    const std::size_t need =
        static_cast<std::size_t>(std::min<std::uint64_t>(want, total_ - std::min(pos, total_)));
    if (pos < base_ || pos + need > base_ + len_) {
      // Keep the bytes from `pos` that the window already holds; read after them.
      std::size_t kept = 0;
      if (pos >= base_ && pos < base_ + len_) {
        kept = static_cast<std::size_t>(base_ + len_ - pos);
        std::memmove(buf_.data(), buf_.data() + (pos - base_), kept);
      }
      const std::size_t target = static_cast<std::size_t>(
          std::min<std::uint64_t>(std::max(need, kReadSize), total_ - pos));
      if (buf_.size() < target) buf_.resize(target);
      const ssize_t got = pread_full(fd_, buf_.data() + kept, target - kept, pos + kept);
      if (got < 0) {
        errno_ = errno;
        return false;
      }
      base_ = pos;
      len_ = kept + static_cast<std::size_t>(got);
      if (len_ < need) {
        shrunk_ = true;  // the file is shorter than fstat said: someone truncated it meanwhile
        return false;
      }
    }
    view =
        std::string_view(buf_.data() + (pos - base_), static_cast<std::size_t>(base_ + len_ - pos));
    return true;
  }
  int error() const noexcept { return errno_; }
  bool shrunk() const noexcept { return shrunk_; }

 private:
  int fd_;
  std::uint64_t total_;
  std::string buf_;
  std::uint64_t base_ = 0;
  std::size_t len_ = 0;
  int errno_ = 0;
  bool shrunk_ = false;
};

}  // namespace

std::size_t encoded_size(const Entry& e) { return kEntryHeaderSize + payload_size(e); }

void encode_entry(const Entry& e, std::string& out) {
  const std::size_t payload = payload_size(e);
  assert(payload <= kMaxPayloadSize);
  const std::size_t start = out.size();
  out.reserve(start + kEntryHeaderSize + payload);
  put_u32(out, kEntryMagic);
  put_u32(out, static_cast<std::uint32_t>(payload));
  put_u32(out, 0);  // the CRC, once the payload is there
  put_u64(out, e.seq);
  put_u64(out, static_cast<std::uint64_t>(e.received_at_ms));
  put_u64(out, static_cast<std::uint64_t>(e.timestamp_ms));
  put_str(out, e.delivery_id);
  put_str(out, e.dedup_key);
  put_str(out, e.event);
  put_str(out, e.project_id);
  put_str(out, e.subscription_id);
  put_u32(out, static_cast<std::uint32_t>(e.sinks.size()));
  for (const auto& s : e.sinks) put_str(out, s);
  put_str(out, e.record);
  if (!e.original.empty()) put_str(out, e.original);
  const std::uint32_t crc = crc32c(out.data() + start + kEntryHeaderSize, payload);
  for (int i = 0; i < 4; ++i)
    out[start + 8 + static_cast<std::size_t>(i)] = static_cast<char>((crc >> (8 * i)) & 0xFFu);
}

Decoded decode_entry(std::string_view bytes, Entry& out, bool with_record) {
  if (bytes.empty()) return fail(DecodeStatus::incomplete, "no bytes");
  // A cut-off magic is judged on the bytes there are, so that garbage is corrupt at once.
  if (bytes.substr(0, kMagic.size()) != kMagic.substr(0, std::min(bytes.size(), kMagic.size())))
    return fail(DecodeStatus::corrupt, "bad magic");
  if (bytes.size() < kEntryHeaderSize)
    return fail(DecodeStatus::incomplete,
                "the header is cut off after " + std::to_string(bytes.size()) + " bytes");
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::uint32_t length = get_u32(p + 4);
  if (length > kMaxPayloadSize)
    return fail(DecodeStatus::corrupt,
                "payload length " + std::to_string(length) + " is above the 64 MiB limit");
  if (length < kMinPayloadSize)
    return fail(DecodeStatus::corrupt,
                "payload length " + std::to_string(length) + " is below the smallest entry's");
  const std::size_t size = kEntryHeaderSize + length;
  if (bytes.size() < size)
    return fail(DecodeStatus::incomplete,
                "the entry is cut off after " + std::to_string(bytes.size()) + " of its " +
                    std::to_string(size) + " bytes",
                size);
  const std::uint32_t crc = crc32c(p + kEntryHeaderSize, length);
  if (crc != get_u32(p + 8)) return fail(DecodeStatus::corrupt, "CRC mismatch");

  // The CRC matched, so what follows is what some writer wrote; it is checked all the same, so
  // that a buggy or hostile writer cannot make the reader run past the payload.
  PayloadReader r(p + kEntryHeaderSize, length);
  std::uint64_t received = 0, timestamp = 0;
  std::uint32_t sinks = 0, record = 0;
  if (!r.u64(out.seq) || !r.u64(received) || !r.u64(timestamp) || !r.str(out.delivery_id) ||
      !r.str(out.dedup_key) || !r.str(out.event) || !r.str(out.project_id) ||
      !r.str(out.subscription_id) || !r.u32(sinks))
    return fail(DecodeStatus::corrupt, "a field runs past the payload");
  out.received_at_ms = static_cast<std::int64_t>(received);
  out.timestamp_ms = static_cast<std::int64_t>(timestamp);
  // Each sink takes at least its 4-byte length: a count beyond that is refused before resize().
  if (sinks > r.left() / 4) return fail(DecodeStatus::corrupt, "too many sinks for the payload");
  out.sinks.resize(sinks);
  for (auto& s : out.sinks)
    if (!r.str(s)) return fail(DecodeStatus::corrupt, "a sink name runs past the payload");
  if (!r.u32(record)) return fail(DecodeStatus::corrupt, "the record length is missing");
  if (record > r.left()) return fail(DecodeStatus::corrupt, "the record runs past the payload");
  // The record ends the payload, or the original does, exactly: one byte string has one
  // encoding, which is what lets a reader trust that re-encoding an entry gives its bytes back.
  const std::size_t record_at = size - r.left();
  std::size_t original_at = 0;
  std::uint32_t original = 0;
  if (record < r.left()) {
    PayloadReader tail(p + record_at + record, r.left() - record);
    if (!tail.u32(original))
      return fail(DecodeStatus::corrupt, "bytes after the record are no original");
    if (original == 0) return fail(DecodeStatus::corrupt, "an empty original is stored");
    if (original != tail.left())
      return fail(DecodeStatus::corrupt, "the original length does not end the payload");
    original_at = size - original;
  }
  if (with_record) {
    out.record.assign(bytes.data() + record_at, record);
    out.original.assign(bytes.data() + original_at, original);
  } else {
    out.record.clear();
    out.original.clear();
  }
  return Decoded{DecodeStatus::ok, size, {}};
}

std::string segment_file_name(std::uint64_t first_seq) {
  std::string digits = std::to_string(first_seq);
  return std::string(kNameDigits - digits.size(), '0') + digits + std::string(kNameSuffix);
}

std::optional<std::uint64_t> parse_segment_file_name(std::string_view name) {
  if (name.size() != kNameDigits + kNameSuffix.size() || !name.ends_with(kNameSuffix))
    return std::nullopt;
  const char* first = name.data();
  const char* last = first + kNameDigits;
  if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  std::uint64_t seq = 0;
  const auto [end, ec] = std::from_chars(first, last, seq);
  if (ec != std::errc() || end != last) return std::nullopt;  // above u64
  return seq;
}

Result<std::vector<std::pair<std::uint64_t, std::filesystem::path>>> list_segments(
    const std::filesystem::path& dir) {
  std::vector<std::pair<std::uint64_t, std::filesystem::path>> out;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const auto seq = parse_segment_file_name(it->path().filename().native());
    if (!seq) continue;
    std::error_code type_ec;
    // Named like a segment but no file (a directory, a socket): refused, never passed over, or
    // the events it should hold would vanish without a word.
    if (!it->is_regular_file(type_ec)) {
      return Error{ErrorCode::invalid_input,
                   it->path().string() + " is named like a log segment but is not a file"};
    }
    out.emplace_back(*seq, it->path());
  }
  if (ec)
    return Error{ErrorCode::invalid_input, "cannot list " + dir.string() + ": " + ec.message()};
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::unique_ptr<SegmentFile>> SegmentFile::open(const std::filesystem::path& path,
                                                       std::uint64_t first_seq, bool create,
                                                       std::uint64_t valid_size, bool sync_dir) {
  if (create && valid_size != 0)
    return Error{ErrorCode::invalid_input, "a new segment " + path.string() + " has no valid end " +
                                               std::to_string(valid_size)};
  const int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
  FdGuard fd(::open(path.c_str(), flags, 0644));
  if (fd.get() < 0)
    return sys_error(std::string(create ? "cannot create " : "cannot open ") + path.string(),
                     errno);
  if (create && sync_dir) {
    if (auto s = fsync_directory(path.parent_path()); !s) {
      // Without the directory synced the name may not survive; a retry starts from no file.
      ::unlink(path.c_str());
      return std::move(s).error();
    }
  } else if (!create) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return sys_error("cannot stat " + path.string(), errno);
    if (static_cast<std::uint64_t>(st.st_size) != valid_size)
      return Error{ErrorCode::invalid_input,
                   path.string() + " is " + std::to_string(st.st_size) +
                       " bytes, not its valid end " + std::to_string(valid_size) +
                       " (a torn tail is truncated before the segment is opened)"};
  }
  return std::unique_ptr<SegmentFile>(new SegmentFile(path, fd.release(), first_seq, valid_size));
}

SegmentFile::~SegmentFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status SegmentFile::append(std::string_view bytes) {
  std::size_t done = 0;
  int err = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(size_ + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (n == 0) {  // not expected from a regular file; looping would spin
      err = EIO;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (err == 0) {
    size_ += done;
    return Ok{};
  }
  std::string detail = "cannot append " + std::to_string(bytes.size()) + " bytes to " +
                       path_.string() + " (" + std::to_string(done) +
                       " written): " + std::strerror(err);
  // What did get written is no whole entry; cut it off so the next append starts clean.
  while (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
    if (errno == EINTR) continue;
    detail += "; and cannot truncate it back to " + std::to_string(size_) +
              " bytes: " + std::strerror(errno);
    break;
  }
  return Error{ErrorCode::invalid_input, std::move(detail)};
}

Status SegmentFile::sync() {
  while (::fdatasync(fd_) != 0) {
    if (errno == EINTR) continue;
    // After a failed fdatasync the kernel may have dropped the dirty pages: the caller must not
    // take a later success as covering these bytes.
    return sys_error("cannot fdatasync " + path_.string(), errno);
  }
  return Ok{};
}

ScanReport scan_buffer(std::string_view bytes, bool with_record, const EntryCallback& on_entry) {
  ScanReport report;
  const auto fetch = [bytes](std::uint64_t pos, std::size_t, std::string_view& view) {
    view = bytes.substr(static_cast<std::size_t>(pos));
    return true;
  };
  scan_loop(bytes.size(), fetch, with_record, on_entry, report);
  return report;
}

Result<ScanReport> scan_segment(const std::filesystem::path& path, bool with_record,
                                const EntryCallback& on_entry) {
  FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return sys_error("cannot open " + path.string(), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error("cannot stat " + path.string(), errno);
  (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint: failure is harmless
  FileWindow window(fd.get(), static_cast<std::uint64_t>(st.st_size));
  ScanReport report;
  if (!scan_loop(static_cast<std::uint64_t>(st.st_size), window, with_record, on_entry, report)) {
    if (window.shrunk())
      return Error{ErrorCode::invalid_input, path.string() + " shrank while it was scanned"};
    return sys_error("cannot read " + path.string(), window.error());
  }
  return report;
}

Result<Entry> read_entry(int fd, std::uint64_t offset, std::uint32_t size) {
  const std::string at = "entry at offset " + std::to_string(offset);
  if (size < kEntryHeaderSize + kMinPayloadSize)
    return Error{ErrorCode::invalid_input, at + ": " + std::to_string(size) + " bytes is no entry"};
  std::string buf(size, '\0');
  const ssize_t got = pread_full(fd, buf.data(), size, offset);
  if (got < 0) return sys_error("cannot read the " + at, errno);
  if (static_cast<std::size_t>(got) < size)
    return Error{ErrorCode::invalid_input, at + ": the file ends after " + std::to_string(got) +
                                               " of its " + std::to_string(size) + " bytes"};
  Entry e;
  const Decoded d = decode_entry(buf, e, true);
  if (d.status != DecodeStatus::ok) return Error{ErrorCode::invalid_input, at + ": " + d.why};
  if (d.size != size)
    return Error{ErrorCode::invalid_input, at + " is " + std::to_string(d.size) +
                                               " bytes, not the " + std::to_string(size) +
                                               " expected"};
  return e;
}

Status truncate_file(const std::filesystem::path& path, std::uint64_t size) {
  while (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) {
    if (errno == EINTR) continue;
    return sys_error("cannot truncate " + path.string() + " to " + std::to_string(size) + " bytes",
                     errno);
  }
  return Ok{};
}

}  // namespace tdhook::receiver::log
