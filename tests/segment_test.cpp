// The event log's on-disk format: entry framing, CRC-32C, segment files, and the scan that
// recovers after a crash (torn tails) or a damaged byte (resync past the entry it hit).
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "store/log/crc32c.hpp"
#include "store/log/segment.hpp"
#include "support/files.hpp"

namespace fs = std::filesystem;
using namespace tdhook::receiver::log;
using tdhook::test::read_file;
using tdhook::test::TempDir;
using tdhook::test::write_file;

namespace {

Entry make_entry(std::uint64_t seq, std::size_t record_size = 7000) {
  Entry e;
  e.seq = seq;
  e.received_at_ms = 1764150000000 + static_cast<std::int64_t>(seq);
  e.timestamp_ms = 1764149999000 - static_cast<std::int64_t>(seq);
  e.delivery_id = "d-" + std::to_string(seq);
  e.dedup_key = "k-" + std::to_string(seq * 7);
  e.event = "request.create";
  e.project_id = "5b55e806c93dde00143163dd";
  e.subscription_id = "5c879fb4f1ae6600173b8c75";
  e.sinks = {"stdout", "archive"};
  e.record = "{\"n\":" + std::to_string(seq) + ",\"pad\":\"";
  while (e.record.size() + 2 < record_size)
    e.record += static_cast<char>('a' + e.record.size() % 26);
  e.record += "\"}";
  return e;
}

// `payload` framed as an entry: magic, length and a CRC that matches it.
std::string framed(const std::string& payload) {
  std::string bytes = "TDH1";
  for (std::uint32_t v : {static_cast<std::uint32_t>(payload.size()), crc32c(payload)})
    for (int i = 0; i < 4; ++i) bytes += static_cast<char>((v >> (8 * i)) & 0xFFu);
  return bytes + payload;
}

struct Seen {
  Entry entry;
  std::uint64_t offset;
  std::uint32_t size;
};

// Every entry a scan reports, with where it says the entry is.
struct Collector {
  std::vector<Seen> seen;
  EntryCallback callback() {
    return [this](Entry&& e, std::uint64_t offset, std::uint32_t size) {
      seen.push_back({std::move(e), offset, size});
    };
  }
};

// Three entries and where each starts.
struct Encoded {
  std::string bytes;
  std::vector<std::uint64_t> offsets;
  std::vector<Entry> entries;
};
Encoded encode_all(std::vector<Entry> entries) {
  Encoded out;
  for (auto& e : entries) {
    out.offsets.push_back(out.bytes.size());
    encode_entry(e, out.bytes);
  }
  out.entries = std::move(entries);
  return out;
}

// A 1 MiB tmpfs mounted for the life of the object (root only); mounted() says whether it is.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=1m") == 0;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  bool mounted() const { return mounted_; }

 private:
  fs::path dir_;
  bool mounted_ = false;
};

}  // namespace

TEST_SUITE("log segment") {
  TEST_CASE("crc32c gives the published check values, in hardware and in software alike") {
    CHECK(crc32c(std::string_view("123456789")) == 0xE3069283u);
    CHECK(crc32c_software("123456789", 9) == 0xE3069283u);
    const std::string zeros(32, '\0');
    CHECK(crc32c(zeros) == 0x8A9136AAu);
    CHECK(crc32c_software(zeros.data(), zeros.size()) == 0x8A9136AAu);
    CHECK(crc32c(std::string(32, '\xFF')) == 0x62A8AB43u);
    CHECK(crc32c(std::string_view()) == 0u);
    // A CRC carried from one piece to the next is the CRC of the whole.
    CHECK(crc32c(std::string_view("6789"), crc32c(std::string_view("12345"))) == 0xE3069283u);
    MESSAGE("crc32c uses the crc32 instruction: " << crc32c_uses_hardware());

    std::string data(300, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + 7);
    for (std::size_t start = 0; start < 8; ++start)
      for (std::size_t n = 0; start + n <= data.size(); n += 13)
        REQUIRE(crc32c(data.data() + start, n) == crc32c_software(data.data() + start, n));
  }

  TEST_CASE("entries with empty and with large fields read back as they were written") {
    Entry empty;
    Entry large = make_entry(42, 200000);
    large.seq = std::numeric_limits<std::uint64_t>::max();
    large.received_at_ms = -1;
    large.timestamp_ms = std::numeric_limits<std::int64_t>::min();
    large.delivery_id = std::string(70000, 'x');
    large.sinks = {"", std::string(5000, 's'), "exec:/bin/true"};
    large.record[10] = '\0';  // bytes, not C strings
    for (const Entry* e : {&empty, &large}) {
      std::string bytes = "prefix";
      encode_entry(*e, bytes);
      REQUIRE(bytes.size() == 6 + encoded_size(*e));
      const std::string_view framed = std::string_view(bytes).substr(6);
      Entry back = make_entry(7);  // decoding overwrites every field
      const Decoded d = decode_entry(framed, back);
      REQUIRE(d.status == DecodeStatus::ok);
      CHECK(d.size == framed.size());
      CHECK(back == *e);

      Entry header_only = make_entry(8);
      REQUIRE(decode_entry(framed, header_only, false).status == DecodeStatus::ok);
      CHECK(header_only.record.empty());
      header_only.record = e->record;
      CHECK(header_only == *e);
    }
    // The magic is the first four bytes on disk.
    std::string bytes;
    encode_entry(empty, bytes);
    CHECK(bytes.substr(0, 4) == "TDH1");
  }

  TEST_CASE("a segment cut at every byte of its last entry reads every earlier entry, torn") {
    TempDir dir;
    const Encoded enc = encode_all({make_entry(1), make_entry(2), make_entry(3, 1500)});
    const std::uint64_t last = enc.offsets[2];
    const fs::path path = dir / segment_file_name(1);
    for (std::uint64_t cut = last; cut < enc.bytes.size(); ++cut) {
      const std::string_view bytes = std::string_view(enc.bytes).substr(0, cut);
      Collector c;
      const ScanReport r = scan_buffer(bytes, true, c.callback());
      REQUIRE(c.seen.size() == 2);
      CHECK(r.entries == 2);
      CHECK(r.valid_end == last);
      CHECK(r.torn_tail == (cut > last));
      CHECK(r.damage.empty());
      CHECK(r.file_size == cut);
      // The same through the file, every 97th cut (a file per cut is slower).
      if ((cut - last) % 97 == 0 || cut + 1 == enc.bytes.size()) {
        write_file(path, std::string(bytes));
        Collector f;
        const auto scanned = scan_segment(path, true, f.callback());
        REQUIRE(scanned.ok());
        CHECK(scanned->entries == 2);
        CHECK(scanned->valid_end == last);
        CHECK(scanned->torn_tail == (cut > last));
        CHECK(scanned->damage.empty());
        REQUIRE(f.seen.size() == 2);
        CHECK(f.seen[1].entry == enc.entries[1]);
        CHECK(f.seen[1].offset == enc.offsets[1]);
      }
    }
    // After the caller truncates the torn tail, the segment scans clean and takes appends.
    write_file(path, enc.bytes.substr(0, last + 100));
    REQUIRE(truncate_file(path, last).ok());
    const auto clean = scan_segment(path, false, [](Entry&&, std::uint64_t, std::uint32_t) {});
    REQUIRE(clean.ok());
    CHECK_FALSE(clean->torn_tail);
    CHECK(clean->file_size == last);
    auto file = SegmentFile::open(path, 1, false, last);
    REQUIRE(file.ok());
    REQUIRE((*file)->append(std::string_view(enc.bytes).substr(last)).ok());
    CHECK(read_file(path) == enc.bytes);
  }

  TEST_CASE("a flipped byte in the middle entry of three loses only that entry") {
    const Encoded enc = encode_all({make_entry(1), make_entry(2, 600), make_entry(3)});
    const std::uint64_t second = enc.offsets[1];
    const std::uint64_t second_size = enc.offsets[2] - second;
    for (std::uint64_t at = second; at < enc.offsets[2]; ++at) {
      std::string bytes = enc.bytes;
      bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
      Collector c;
      const ScanReport r = scan_buffer(bytes, true, c.callback());
      REQUIRE_MESSAGE(c.seen.size() == 2, "byte " << at - second << " of the entry");
      CHECK(c.seen[0].entry == enc.entries[0]);
      CHECK(c.seen[1].entry == enc.entries[2]);
      CHECK(c.seen[1].offset == enc.offsets[2]);
      REQUIRE(r.damage.size() == 1);
      CHECK(r.damage[0].offset == second);
      CHECK(r.damage[0].length == second_size);
      CHECK_FALSE(r.damage[0].why.empty());
      CHECK_FALSE(r.torn_tail);
      CHECK(r.valid_end == bytes.size());
    }
    // Through a file too, with the flip in the payload.
    TempDir dir;
    std::string bytes = enc.bytes;
    bytes[second + 100] = static_cast<char>(bytes[second + 100] ^ 1);
    write_file(dir / "s.log", bytes);
    Collector c;
    const auto r = scan_segment(dir / "s.log", true, c.callback());
    REQUIRE(r.ok());
    REQUIRE(r->damage.size() == 1);
    CHECK(r->damage[0].offset == second);
    CHECK(r->damage[0].why == "CRC mismatch");
    CHECK(r->entries == 2);
  }

  TEST_CASE("garbage after the last entry is a torn tail, not damage") {
    const Encoded enc = encode_all({make_entry(1), make_entry(2)});
    for (const std::string& garbage :
         {std::string(1, 'x'), std::string(4096, '\0'), std::string("TDH1"),
          std::string("TDH1\x40\x00\x00\x00garbage", 15), std::string(100000, '\xA5')}) {
      Collector c;
      const ScanReport r = scan_buffer(enc.bytes + garbage, true, c.callback());
      CHECK(c.seen.size() == 2);
      CHECK(r.valid_end == enc.bytes.size());
      CHECK(r.torn_tail);
      CHECK(r.damage.empty());
    }
    // Garbage between entries is damage, since a whole entry follows it.
    const std::string middle =
        enc.bytes.substr(0, enc.offsets[1]) + "TDH1 junk" + enc.bytes.substr(enc.offsets[1]);
    const ScanReport r = scan_buffer(middle, false, [](Entry&&, std::uint64_t, std::uint32_t) {});
    CHECK(r.entries == 2);
    REQUIRE(r.damage.size() == 1);
    CHECK(r.damage[0].offset == enc.offsets[1]);
    CHECK(r.damage[0].length == 9);
    CHECK_FALSE(r.torn_tail);
  }

  TEST_CASE("a payload length of 0xFFFFFFFF is refused as corrupt, not followed") {
    std::string bytes;
    encode_entry(make_entry(1), bytes);
    for (int i = 4; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = '\xFF';
    Entry e;
    const Decoded d = decode_entry(bytes, e);
    CHECK(d.status == DecodeStatus::corrupt);
    CHECK(d.why.find("64 MiB") != std::string::npos);
    // Lengths below the smallest entry, and a header whose fields overrun a CRC-valid payload.
    bytes[4] = '\x01';
    bytes[5] = bytes[6] = bytes[7] = '\0';
    CHECK(decode_entry(bytes, e).status == DecodeStatus::corrupt);
    CHECK(decode_entry(std::string_view("TDH"), e).status == DecodeStatus::incomplete);
    CHECK(decode_entry(std::string_view("TDX"), e).status == DecodeStatus::corrupt);
    CHECK(decode_entry(std::string_view(), e).status == DecodeStatus::incomplete);

    TempDir dir;
    write_file(dir / "s.log", bytes);
    const auto r = scan_segment(dir / "s.log", true, [](Entry&&, std::uint64_t, std::uint32_t) {});
    REQUIRE(r.ok());
    CHECK(r->entries == 0);
    CHECK(r->torn_tail);
    CHECK(r->valid_end == 0);
    const int fd = ::open((dir / "s.log").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const auto read = read_entry(fd, 0, static_cast<std::uint32_t>(bytes.size()));
    ::close(fd);
    REQUIRE_FALSE(read.ok());
    CHECK(read.error().detail.find("offset 0") != std::string::npos);
  }

  TEST_CASE("a payload whose fields overrun it is corrupt even with a matching CRC") {
    // A hand-made payload: seq and times, then a delivery_id length far beyond the payload.
    std::string payload(24, '\0');
    payload += std::string("\xF0\xFF\x00\x00", 4);
    payload += std::string(48, 'p');
    const std::uint32_t crc = crc32c(payload);
    std::string bytes = "TDH1";
    for (std::uint32_t v : {static_cast<std::uint32_t>(payload.size()), crc})
      for (int i = 0; i < 4; ++i) bytes += static_cast<char>((v >> (8 * i)) & 0xFFu);
    bytes += payload;
    Entry e;
    const Decoded d = decode_entry(bytes, e);
    CHECK(d.status == DecodeStatus::corrupt);
    CHECK(d.why.find("past the payload") != std::string::npos);
  }

  TEST_CASE("an entry keeps its original after the record; header-only reads copy neither") {
    Entry e = make_entry(5, 3000);
    e.original = "Content-Type: application/json\r\nx-hook-secret: s\r\n\r\n{\"a\":1}";
    e.original += '\0';  // bytes, not a C string
    Entry plain = e;
    plain.original.clear();
    CHECK(encoded_size(e) == encoded_size(plain) + 4 + e.original.size());
    std::string bytes;
    encode_entry(e, bytes);
    REQUIRE(bytes.size() == encoded_size(e));
    Entry back = make_entry(9);
    back.original = "stale";
    const Decoded d = decode_entry(bytes, back);
    REQUIRE(d.status == DecodeStatus::ok);
    CHECK(d.size == bytes.size());
    CHECK(back == e);
    Entry header_only;
    REQUIRE(decode_entry(bytes, header_only, false).status == DecodeStatus::ok);
    CHECK(header_only.record.empty());
    CHECK(header_only.original.empty());
    header_only.record = e.record;
    header_only.original = e.original;
    CHECK(header_only == e);
    // Without an original the entry ends with its record, as before: nothing is added.
    Entry plain_back = e;
    std::string plain_bytes;
    encode_entry(plain, plain_bytes);
    REQUIRE(decode_entry(plain_bytes, plain_back).status == DecodeStatus::ok);
    CHECK(plain_back == plain);
    CHECK(plain_back.original.empty());
    // Both kinds side by side in one segment, as a log written across the change holds them.
    Collector c;
    const auto report = scan_buffer(plain_bytes + bytes + plain_bytes, true, c.callback());
    CHECK(report.damage.empty());
    CHECK_FALSE(report.torn_tail);
    REQUIRE(c.seen.size() == 3);
    CHECK(c.seen[0].entry == plain);
    CHECK(c.seen[1].entry == e);
    CHECK(c.seen[2].entry == plain);
  }

  TEST_CASE("an entry written before originals existed still reads, byte for byte") {
    // The format of the first version, written out by hand: the record ends the payload.
    const Entry e = make_entry(77, 500);
    std::string payload;
    const auto u32 = [&payload](std::uint32_t v) {
      for (int i = 0; i < 4; ++i) payload += static_cast<char>((v >> (8 * i)) & 0xFFu);
    };
    const auto u64 = [&u32](std::uint64_t v) {
      u32(static_cast<std::uint32_t>(v & 0xFFFFFFFFu));
      u32(static_cast<std::uint32_t>(v >> 32));
    };
    const auto str = [&](const std::string& text) {
      u32(static_cast<std::uint32_t>(text.size()));
      payload += text;
    };
    u64(e.seq);
    u64(static_cast<std::uint64_t>(e.received_at_ms));
    u64(static_cast<std::uint64_t>(e.timestamp_ms));
    for (const auto* f :
         {&e.delivery_id, &e.dedup_key, &e.event, &e.project_id, &e.subscription_id})
      str(*f);
    u32(static_cast<std::uint32_t>(e.sinks.size()));
    for (const auto& sink : e.sinks) str(sink);
    str(e.record);
    const std::string old = framed(payload);
    Entry back;
    back.original = "stale";
    const Decoded d = decode_entry(old, back);
    REQUIRE(d.status == DecodeStatus::ok);
    CHECK(back == e);
    CHECK(back.original.empty());
    std::string again;
    encode_entry(back, again);
    CHECK(again == old);  // one entry, one encoding
  }

  TEST_CASE(
      "an empty original that is present, and bytes after the record or original, are "
      "refused") {
    Entry e = make_entry(3, 400);
    std::string plain;
    encode_entry(e, plain);
    const std::string payload = plain.substr(kEntryHeaderSize);
    Entry out;
    // A present but empty original: the same entry would have two encodings.
    Decoded d = decode_entry(framed(payload + std::string(4, '\0')), out);
    CHECK(d.status == DecodeStatus::corrupt);
    CHECK(d.why.find("empty original") != std::string::npos);
    // Fewer bytes after the record than an original's length takes.
    d = decode_entry(framed(payload + "xyz"), out);
    CHECK(d.status == DecodeStatus::corrupt);
    CHECK(d.why.find("after the record") != std::string::npos);
    // An original length that does not end the payload, short or long.
    for (const std::uint32_t length : {2u, 9u}) {
      std::string tail;
      for (int i = 0; i < 4; ++i) tail += static_cast<char>((length >> (8 * i)) & 0xFFu);
      tail += "abcde";
      d = decode_entry(framed(payload + tail), out);
      CHECK(d.status == DecodeStatus::corrupt);
      CHECK(d.why.find("original length") != std::string::npos);
    }
    // A record length that runs past the payload is still refused.
    std::string cut = payload;
    cut.resize(cut.size() - 1);
    d = decode_entry(framed(cut), out);
    CHECK(d.status == DecodeStatus::corrupt);
    // An original with a byte after it.
    e.original = "Content-Type: application/json\r\n\r\n{}";
    std::string with;
    encode_entry(e, with);
    d = decode_entry(framed(with.substr(kEntryHeaderSize) + "!"), out);
    CHECK(d.status == DecodeStatus::corrupt);
    REQUIRE(decode_entry(with, out).status == DecodeStatus::ok);
    CHECK(out == e);
  }

  TEST_CASE("scan_segment reads files bigger than its read buffer as scan_buffer reads memory") {
    TempDir dir;
    std::vector<Entry> entries;
    for (std::uint64_t s = 1; s <= 300; ++s) entries.push_back(make_entry(s, 7000 + s * 13));
    entries.push_back(make_entry(301, 1536 * 1024));  // bigger than one read
    entries.push_back(make_entry(302));
    Encoded enc = encode_all(std::move(entries));
    // Damage in the entry that straddles the first 1 MiB read, and garbage at the end.
    std::size_t straddling = 0;
    while (enc.offsets[straddling + 1] <= 1024 * 1024) ++straddling;
    const std::size_t hit = enc.offsets[straddling] + 20;
    enc.bytes[hit] = static_cast<char>(enc.bytes[hit] ^ 0x80);
    enc.bytes += "TDH1";
    write_file(dir / "big.log", enc.bytes);
    for (bool with_record : {true, false}) {
      Collector mem, disk;
      const ScanReport want = scan_buffer(enc.bytes, with_record, mem.callback());
      const auto got = scan_segment(dir / "big.log", with_record, disk.callback());
      REQUIRE(got.ok());
      CHECK(want.entries == 301);
      CHECK(got->entries == want.entries);
      CHECK(got->valid_end == want.valid_end);
      CHECK(got->torn_tail);
      REQUIRE(got->damage.size() == 1);
      CHECK(got->damage[0].offset == enc.offsets[straddling]);
      REQUIRE(disk.seen.size() == mem.seen.size());
      for (std::size_t i = 0; i < disk.seen.size(); ++i) {
        REQUIRE(disk.seen[i].offset == mem.seen[i].offset);
        REQUIRE(disk.seen[i].size == mem.seen[i].size);
        REQUIRE(disk.seen[i].entry == mem.seen[i].entry);
      }
      CHECK(disk.seen.back().entry.record.size() ==
            (with_record ? enc.entries.back().record.size() : 0));
    }
  }

  TEST_CASE("a segment file takes appends at its end and read_entry reads each entry back") {
    TempDir dir;
    const fs::path path = dir / segment_file_name(5);
    auto created = SegmentFile::open(path, 5, true, 0);
    REQUIRE(created.ok());
    SegmentFile& file = **created;
    CHECK(file.first_seq() == 5);
    CHECK(file.path() == path);
    std::vector<std::pair<std::uint64_t, std::uint32_t>> where;
    std::string batch;
    for (std::uint64_t s = 5; s < 10; ++s) {
      batch.clear();
      encode_entry(make_entry(s), batch);
      where.emplace_back(file.size(), static_cast<std::uint32_t>(batch.size()));
      REQUIRE(file.append(batch).ok());
    }
    REQUIRE(file.sync().ok());
    CHECK(file.size() == fs::file_size(path));
    for (std::size_t i = 0; i < where.size(); ++i) {
      const auto e = read_entry(file.fd(), where[i].first, where[i].second);
      REQUIRE(e.ok());
      CHECK(*e == make_entry(5 + i));
    }
    // Not at an entry's start, or with the wrong size: an error naming the offset.
    const auto off = read_entry(file.fd(), where[1].first + 1, where[1].second);
    REQUIRE_FALSE(off.ok());
    CHECK(off.error().detail.find("offset " + std::to_string(where[1].first + 1)) !=
          std::string::npos);
    CHECK_FALSE(read_entry(file.fd(), where[1].first, where[1].second - 1).ok());
    CHECK_FALSE(read_entry(file.fd(), where[4].first, where[4].second + 1).ok());

    // create refuses an existing file; reopening needs the size a scan found.
    CHECK_FALSE(SegmentFile::open(path, 5, true, 0).ok());
    const auto wrong = SegmentFile::open(path, 5, false, file.size() - 1);
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().detail.find(path.string()) != std::string::npos);
    auto again = SegmentFile::open(path, 5, false, file.size());
    REQUIRE(again.ok());
    batch.clear();
    encode_entry(make_entry(10), batch);
    REQUIRE((*again)->append(batch).ok());
    const auto r = scan_segment(path, true, [](Entry&&, std::uint64_t, std::uint32_t) {});
    REQUIRE(r.ok());
    CHECK(r->entries == 6);
    CHECK_FALSE(r->torn_tail);
    CHECK_FALSE(SegmentFile::open(dir / "missing" / "x.log", 1, true, 0).ok());
  }

  TEST_CASE("an append to a full filesystem leaves the file at its size before the append") {
    TempDir dir;
    SmallTmpfs tmpfs(dir / "small");
    if (!tmpfs.mounted()) {
      MESSAGE("skipped: cannot mount a 1 MiB tmpfs (needs root)");
      return;
    }
    const fs::path path = dir / "small" / segment_file_name(1);
    auto opened = SegmentFile::open(path, 1, true, 0);
    REQUIRE(opened.ok());
    SegmentFile& file = **opened;
    std::string one;
    encode_entry(make_entry(1), one);
    REQUIRE(file.append(one).ok());
    // One append bigger than the whole filesystem: a partial write, then ENOSPC.
    std::string huge;
    encode_entry(make_entry(2, 2 * 1024 * 1024), huge);
    const auto failed = file.append(huge);
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().detail.find(path.string()) != std::string::npos);
    CHECK(failed.error().detail.find(std::strerror(ENOSPC)) != std::string::npos);
    CHECK(file.size() == one.size());
    CHECK(fs::file_size(path) == one.size());
    // Filling it entry by entry: the append that does not fit leaves every earlier one whole.
    std::uint64_t seq = 2;
    std::uint64_t before = 0;
    tdhook::Status s = tdhook::Ok{};
    while (s.ok()) {
      before = file.size();
      std::string e;
      encode_entry(make_entry(seq++), e);
      s = file.append(e);
    }
    CHECK(file.size() == before);
    CHECK(fs::file_size(path) == before);
    const auto r = scan_segment(path, false, [](Entry&&, std::uint64_t, std::uint32_t) {});
    REQUIRE(r.ok());
    CHECK(r->entries == seq - 2);
    CHECK_FALSE(r->torn_tail);
    CHECK(r->valid_end == before);
  }

  TEST_CASE("segment file names are the first seq in 20 digits and parse back") {
    CHECK(segment_file_name(1) == "00000000000000000001.log");
    CHECK(segment_file_name(0) == "00000000000000000000.log");
    CHECK(segment_file_name(std::numeric_limits<std::uint64_t>::max()) ==
          "18446744073709551615.log");
    for (std::uint64_t seq : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1234567890123},
                              std::numeric_limits<std::uint64_t>::max()})
      CHECK(parse_segment_file_name(segment_file_name(seq)) == seq);
    for (const char* other :
         {"1.log", "0000000000000000001.log", "000000000000000000001.log",
          "0000000000000000000a.log", "18446744073709551616.log", "99999999999999999999.log",
          "00000000000000000001.log.tmp", "00000000000000000001.LOG", "00000000000000000001",
          "+0000000000000000001.log", " 0000000000000000001.log", ""})
      CHECK_MESSAGE(!parse_segment_file_name(other), other);
  }

  TEST_CASE("list_segments lists only the segment files, sorted by first seq") {
    TempDir dir;
    for (std::uint64_t seq : {10, 3, 1000, 1}) write_file(dir / segment_file_name(seq), "");
    write_file(dir / "notes.txt", "");
    write_file(dir / (segment_file_name(2) + ".tmp"), "");
    write_file(dir / "7.log", "");
    const auto listed = list_segments(dir.path());
    REQUIRE(listed.ok());
    std::vector<std::uint64_t> seqs;
    for (const auto& [seq, path] : *listed) {
      seqs.push_back(seq);
      CHECK(path == dir / segment_file_name(seq));
    }
    CHECK(seqs == std::vector<std::uint64_t>{1, 3, 10, 1000});
    CHECK_FALSE(list_segments(dir / "missing").ok());
    // A directory named like a segment is refused, naming it: its events would vanish.
    fs::create_directory(dir / segment_file_name(4));
    const auto refused = list_segments(dir.path());
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().detail.find(segment_file_name(4)) != std::string::npos);
  }
}
