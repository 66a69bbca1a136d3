// Crash safety of the receiver's event log, end to end against the real tdhook-receiver:
// SIGKILL in the middle of a stream of retrying senders, segments damaged while the receiver is
// stopped (a torn last entry, a flipped byte), state.db gone, a full disk under the log, and the
// upgrade from an old SQLite spool.db. Every case checks that nothing answered 200 is lost.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "base/log.hpp"
#include "store/log/log_store.hpp"
#include "store/log/segment.hpp"
#include "store/spool.hpp"
#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> crash_args(const TempDir& dir, const fs::path& data_dir,
                                    std::initializer_list<std::string> more) {
  write_file(dir / "secret", std::string(receiver_secret) + "\n");
  std::vector<std::string> args{"--listen",        "127.0.0.1:0",   "--data-dir",
                                data_dir.string(), "--secret-file", (dir / "secret").string()};
  args.insert(args.end(), more);
  return args;
}

int post_numbered(int port, int seq) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30, 0);
  const auto res = post_event(client, "/", numbered_event(seq, epoch_ms()), receiver_secret);
  return res ? res->status : 0;
}

// What a sink holds: seq -> how many of its records carry it, and the lines that are no record
// (a file sink ends a line that a crash cut off; it is no delivery).
struct SinkContent {
  std::map<int, int> seqs;
  std::size_t broken_lines = 0;
};
SinkContent sink_content(const fs::path& file) {
  SinkContent out;
  std::istringstream in(read_if_exists(file));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto record = json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.is_object() || !record.contains("payload") ||
        !record.at("payload").is_object()) {
      ++out.broken_lines;
      continue;
    }
    const auto& payload = record.at("payload");
    if (payload.contains("seq")) ++out.seqs[payload.at("seq").get<int>()];
  }
  return out;
}
std::map<int, int> seqs_in(const fs::path& file) { return sink_content(file).seqs; }

int healthz_status(int port) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/healthz");
  return res ? res->status : 0;
}

int retried(int port, const std::string& sink) {
  return static_cast<int>(metric(get_metrics(port), R"(tdhook_deliveries_total{sink=")" + sink +
                                                        R"(",outcome="retried"})")
                              .value_or(0));
}

// The receiver's JSON log lines whose message contains `text`.
std::vector<json> log_lines(const std::string& stderr_text, const std::string& text) {
  std::vector<json> out;
  std::istringstream in(stderr_text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    auto parsed = json::parse(line, nullptr, false);
    if (parsed.is_discarded() || !parsed.contains("msg") || !parsed.at("msg").is_string()) continue;
    if (parsed.at("msg").get<std::string>().find(text) != std::string::npos) {
      out.push_back(std::move(parsed));
    }
  }
  return out;
}

void stop(ReceiverProcess& rx) {
  rx.signal(SIGTERM);
  const auto code = rx.wait_exit(30s);
  INFO("receiver log: " << rx.stderr_text());
  REQUIRE(code);
  CHECK(*code == 0);
}

// An exec sink that fails until <state>/fixed exists, then appends each record to
// <state>/records: its deliveries stay pending (with failed attempts) until the test fixes it.
std::string fail_until_fixed(const fs::path& state) {
  fs::create_directories(state);
  return "exec:sh " + (source_dir() / "tests" / "scripts" / "fail-until-fixed.sh").string() + " " +
         state.string();
}

// One whole entry of a segment file as a scan finds it.
struct EntryAt {
  std::uint64_t offset = 0;
  std::uint32_t size = 0;
  std::uint64_t seq = 0;
  int payload_seq = -1;  // the numbered event's seq, -1 for another record
};

struct SegmentScan {
  std::vector<EntryAt> entries;
  receiver::log::ScanReport report;
};

SegmentScan scan(const fs::path& segment) {
  SegmentScan out;
  auto report = receiver::log::scan_segment(
      segment, true, [&](receiver::log::Entry&& e, std::uint64_t offset, std::uint32_t size) {
        EntryAt at{offset, size, e.seq, -1};
        const auto record = json::parse(e.record, nullptr, false);
        if (!record.is_discarded() && record.contains("payload") &&
            record.at("payload").is_object() && record.at("payload").contains("seq")) {
          at.payload_seq = record.at("payload").at("seq").get<int>();
        }
        out.entries.push_back(at);
      });
  REQUIRE_MESSAGE(report.ok(), report.error().detail);
  out.report = *report;
  return out;
}

std::vector<fs::path> segments_of(const fs::path& data_dir) {
  auto listed = receiver::log::list_segments(data_dir / "log");
  REQUIRE_MESSAGE(listed.ok(), listed.error().detail);
  std::vector<fs::path> out;
  for (const auto& [first, path] : *listed) out.push_back(path);
  return out;
}

// The store of a stopped receiver, opened as `tdhook spool` opens it.
std::unique_ptr<receiver::Store> inspect(const fs::path& data_dir, std::vector<std::string> sinks) {
  // What the store logs while it is opened here (a damaged entry again) is no news.
  static const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  static const receiver::Logger quiet(receiver::LogLevel::error, null_fd);
  receiver::LogStoreOptions options;
  options.store.data_dir = data_dir;
  options.store.sinks = std::move(sinks);
  options.for_inspection = true;
  auto store = receiver::open_log_store(options, quiet);
  REQUIRE_MESSAGE(store.ok(), store.error().detail);
  return std::move(*store);
}

// A tmpfs of `bytes` mounted on `dir` for one test, unmounted before the directory is removed.
class Tmpfs {
 public:
  Tmpfs(fs::path dir, std::size_t bytes) : dir_(std::move(dir)) {
    fs::create_directories(dir_);
    const std::string options = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      error_ =
          "mount -t tmpfs -o " + options + " tmpfs " + dir_.string() + ": " + std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  fs::path operator/(const std::string& name) const { return dir_ / name; }

  // Writes a filler file until the file system says ENOSPC.
  void fill() {
    const int fd =
        ::open((dir_ / "filler").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    const std::string block(64 * 1024, 'f');
    std::size_t size = block.size();
    while (size > 0) {
      if (::write(fd, block.data(), size) > 0) continue;
      REQUIRE(errno == ENOSPC);
      size /= 2;  // the last pages, down to the last byte
    }
    ::close(fd);
  }
  void unfill() { fs::remove(dir_ / "filler"); }

 private:
  fs::path dir_;
  bool mounted_ = false;
  std::string error_;
};

// Senders as Tiledesk's, but patient: each thread posts its own numbered events one after
// another, each until it is answered 200, against whatever port the receiver listens on now
// (0: none is up), with a short pause after a refusal or a broken connection.
class PatientSenders {
 public:
  PatientSenders(int threads, int per_thread) : per_thread_(per_thread) {
    for (int t = 0; t < threads; ++t) threads_.emplace_back([this, t] { run(t); });
  }
  ~PatientSenders() { join(); }
  PatientSenders(const PatientSenders&) = delete;
  PatientSenders& operator=(const PatientSenders&) = delete;

  void set_port(int port) { port_ = port; }
  int accepted_count() const { return accepted_count_.load(); }
  bool done() const { return finished_.load() == static_cast<int>(threads_.size()); }
  void join() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::set<int> accepted() const {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  int failures() const { return failures_.load(); }
  int duplicate_answers() const { return duplicate_answers_.load(); }

 private:
  void run(int t) {
    std::unique_ptr<httplib::Client> client;
    int client_port = 0;
    for (int i = 0; i < per_thread_ && !stop_; ++i) {
      const int seq = t * per_thread_ + i;
      const std::string body = numbered_event(seq, epoch_ms());  // the same bytes at each retry
      while (!stop_) {
        const int port = port_.load();
        if (port == 0) {
          std::this_thread::sleep_for(5ms);  // the pause of a sender between its retries
          continue;
        }
        if (!client || client_port != port) {
          client = std::make_unique<httplib::Client>("127.0.0.1", port);
          client->set_connection_timeout(1, 0);
          client->set_read_timeout(10, 0);
          client_port = port;
        }
        const auto res = post_event(*client, "/", body, receiver_secret);
        if (res && res->status == 200) {
          if (res->body.find("\"duplicate\":true") != std::string::npos) ++duplicate_answers_;
          std::lock_guard lock(mu_);
          accepted_.insert(seq);
          ++accepted_count_;
          break;
        }
        ++failures_;
        client.reset();
        std::this_thread::sleep_for(10ms);  // the pause of a sender between its retries
      }
    }
    ++finished_;
  }

  int per_thread_;
  std::atomic<int> port_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_count_{0}, finished_{0}, failures_{0}, duplicate_answers_{0};
  mutable std::mutex mu_;
  std::set<int> accepted_;
  std::vector<std::thread> threads_;
};

// The events of an old spool.db: a record that the sinks can tell apart by its seq.
std::string old_record(const std::string& id, int seq) {
  return R"({"id":")" + id + R"(","event":"lead.create","payload":{"seq":)" + std::to_string(seq) +
         "}}";
}

}  // namespace

TEST_SUITE("store crash safety") {
  TEST_CASE(
      "SIGKILL five times during 2000 events from retrying senders loses no event answered 200") {
    constexpr int threads = 4, per_thread = 500, total = threads * per_thread, kills = 5;
    TempDir dir;
    // The file sink keeps up with the stream; the exec sink (a process per event) lags behind
    // it, so that each kill leaves events stored and answered but not delivered yet.
    const auto sink_file = dir / "events.ndjson";
    const auto slow_file = dir / "slow.ndjson";
    const auto args = crash_args(
        dir, dir / "data",
        {"--sink", "file:" + sink_file.string(), "--sink", "exec:cat >> " + slow_file.string(),
         "--exec-concurrency", "32", "--retry-base", "50ms"});
    std::mt19937 rng(std::random_device{}());
    const auto started = std::chrono::steady_clock::now();

    PatientSenders senders(threads, per_thread);
    std::vector<std::string> logs;
    std::size_t undelivered_at_kills = 0;
    for (int round = 0; round < kills; ++round) {
      ReceiverProcess rx(args);
      REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
      senders.set_port(rx.port());
      // A moment at random within this round's share of the stream.
      const int from = round * total / (kills + 1) + total / 40;
      const int to = (round + 1) * total / (kills + 1);
      const int at = std::uniform_int_distribution<int>(from, to)(rng);
      const bool reached = poll_until([&] { return senders.accepted_count() >= at; }, 30s);
      if (!reached)
        FAIL("round " << round << ": stuck at " << senders.accepted_count() << " of " << at
                      << " events; receiver log: " << rx.stderr_text());
      rx.signal(SIGKILL);
      REQUIRE(rx.wait_exit(10s) == 128 + SIGKILL);
      senders.set_port(0);
      const auto accepted = senders.accepted();
      const auto fast = seqs_in(sink_file), slow = seqs_in(slow_file);
      std::size_t fast_behind = 0, slow_behind = 0;
      for (const int seq : accepted) {
        fast_behind += fast.count(seq) == 0;
        slow_behind += slow.count(seq) == 0;
      }
      undelivered_at_kills += fast_behind + slow_behind;
      MESSAGE("round " << round << ": SIGKILL after " << accepted.size()
                       << " events answered 200; not delivered yet: " << fast_behind
                       << " to the file sink, " << slow_behind << " to the exec sink");
      logs.push_back(rx.stderr_text());
    }
    // Else the kills tested nothing that the log had to keep.
    CHECK(undelivered_at_kills > 0);

    ReceiverProcess rx(args);
    REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
    senders.set_port(rx.port());
    const bool all_sent = poll_until([&] { return senders.done(); }, 30s);
    senders.join();
    CHECK_MESSAGE(all_sent, "only " << senders.accepted_count() << " of " << total
                                    << " answered 200; receiver log: " << rx.stderr_text());
    const auto accepted = senders.accepted();
    CHECK(accepted.size() == static_cast<std::size_t>(total));

    const auto missing = [&](const fs::path& file) {
      const auto seen = seqs_in(file);
      std::vector<int> lost;
      for (const int seq : accepted) {
        if (seen.count(seq) == 0) lost.push_back(seq);
      }
      return lost;
    };
    poll_until([&] { return missing(sink_file).empty() && missing(slow_file).empty(); }, 40s);
    for (const auto& file : {sink_file, slow_file}) {
      const auto lost = missing(file);
      const auto content = sink_content(file);
      std::size_t duplicates = 0, delivered_twice = 0;
      std::vector<int> phantoms;
      for (const auto& [seq, times] : content.seqs) {
        if (accepted.count(seq) == 0) phantoms.push_back(seq);
        if (times > 1) {
          duplicates += static_cast<std::size_t>(times - 1);
          ++delivered_twice;
        }
      }
      MESSAGE(file.filename().string()
              << ": " << content.seqs.size() << " distinct events, " << duplicates
              << " duplicate records of " << delivered_twice << " events (at least once), "
              << content.broken_lines << " lines cut by a kill");
      CHECK_MESSAGE(phantoms.empty(), phantoms.size() << " delivered, never answered 200");
      std::ostringstream first_lost;
      for (std::size_t i = 0; i < lost.size() && i < 20; ++i) first_lost << lost[i] << ' ';
      CHECK_MESSAGE(lost.empty(),
                    file.filename().string()
                        << ": " << lost.size() << " events answered 200 never reached it: "
                        << first_lost.str() << "\nlast receiver log: " << rx.stderr_text());
    }
    MESSAGE(accepted.size() << " events answered 200 (" << senders.duplicate_answers()
                            << " as duplicates of a stored retry, " << senders.failures()
                            << " failed posts retried) in "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - started)
                                   .count()
                            << " ms");
    // The restarts found no damaged entry in the middle of a segment.
    logs.push_back(rx.stderr_text());
    for (const auto& log : logs) CHECK(log_lines(log, "damaged entry").empty());
    stop(rx);
    for (const auto& segment : segments_of(dir / "data")) {
      const auto s = scan(segment);
      CHECK_MESSAGE(s.report.damage.empty(), segment);
      CHECK_FALSE_MESSAGE(s.report.torn_tail, segment);
    }
  }

  TEST_CASE(
      "a torn last entry is cut and logged with its file and offset, every whole entry before it "
      "is delivered, and new events are stored after it") {
    TempDir dir;
    const auto data = dir / "data";
    const auto state = dir / "state";
    const std::string sink = fail_until_fixed(state);
    const auto args =
        crash_args(dir, data, {"--sink", sink, "--retry-base", "100ms", "--retry-max", "1000"});
    {
      ReceiverProcess rx(args);
      REQUIRE(rx.wait_listening());
      for (int seq = 0; seq < 5; ++seq) REQUIRE(post_numbered(rx.port(), seq) == 200);
      REQUIRE(poll_until([&] { return retried(rx.port(), sink) >= 5; }, 30s));
      stop(rx);
    }
    const auto segments = segments_of(data);
    REQUIRE(segments.size() == 1);
    const auto segment = segments.back();
    const auto before = scan(segment);
    REQUIRE(before.entries.size() == 5);
    const EntryAt last = before.entries.back();
    REQUIRE(last.payload_seq == 4);
    fs::resize_file(segment, last.offset + last.size / 2);

    ReceiverProcess rx(args);
    REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
    const auto torn = log_lines(rx.stderr_text(), "torn tail");
    INFO("receiver log: " << rx.stderr_text());
    REQUIRE(torn.size() == 1);
    CHECK(torn[0].value("file", "") == segment.string());
    CHECK(torn[0].value("offset", std::int64_t{-1}) == static_cast<std::int64_t>(last.offset));
    CHECK(torn[0].value("bytes", std::int64_t{-1}) == static_cast<std::int64_t>(last.size / 2));
    CHECK(log_lines(rx.stderr_text(), "damaged entry").empty());

    write_file(state / "fixed", "");
    CHECK(post_numbered(rx.port(), 10) == 200);
    CHECK(post_numbered(rx.port(), 11) == 200);
    const std::map<int, int> expected{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {10, 1}, {11, 1}};
    const bool delivered = poll_until(
        [&] {
          const auto seen = seqs_in(state / "records");
          return std::all_of(expected.begin(), expected.end(),
                             [&](const auto& kv) { return seen.count(kv.first) != 0; });
        },
        30s);
    CHECK(delivered);
    const auto content = sink_content(state / "records");
    CHECK(content.seqs == expected);  // the torn one is gone: no part of it was delivered
    CHECK(content.broken_lines == 0);
    stop(rx);

    // The segment was cut at the end of its last whole entry and is whole; the new events are
    // stored after the entries kept (in it or in a segment after it), with new sequence numbers.
    CHECK(fs::file_size(segment) >= last.offset);
    std::vector<EntryAt> kept;
    for (const auto& path : segments_of(data)) {
      const auto s = scan(path);
      CHECK_MESSAGE(s.report.damage.empty(), path);
      CHECK_FALSE_MESSAGE(s.report.torn_tail, path);
      kept.insert(kept.end(), s.entries.begin(), s.entries.end());
    }
    REQUIRE(kept.size() == 6);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(kept[i].offset == before.entries[i].offset);
      CHECK(kept[i].payload_seq == static_cast<int>(i));
    }
    CHECK(kept[4].payload_seq == 10);
    CHECK(kept[5].payload_seq == 11);
    CHECK(kept[4].seq > before.entries[3].seq);
    CHECK(kept[5].seq > kept[4].seq);
    const auto store = inspect(data, {sink});
    const auto counts = store->counts(sink);
    REQUIRE(counts.ok());
    CHECK(counts->pending == 0);
    CHECK(counts->dead == 0);
  }

  TEST_CASE(
      "a flipped byte inside the 2nd of 4 pending entries is logged as an error with its offset, "
      "and only that event is missing") {
    TempDir dir;
    const auto data = dir / "data";
    const auto state = dir / "state";
    const std::string sink = fail_until_fixed(state);
    const auto args =
        crash_args(dir, data, {"--sink", sink, "--retry-base", "100ms", "--retry-max", "1000"});
    {
      ReceiverProcess rx(args);
      REQUIRE(rx.wait_listening());
      for (int seq = 0; seq < 4; ++seq) REQUIRE(post_numbered(rx.port(), seq) == 200);
      REQUIRE(poll_until([&] { return retried(rx.port(), sink) >= 4; }, 30s));
      stop(rx);
    }
    const auto segments = segments_of(data);
    REQUIRE(segments.size() == 1);
    const auto segment = segments.back();
    const auto before = scan(segment);
    REQUIRE(before.entries.size() == 4);
    const EntryAt hit = before.entries[1];
    REQUIRE(hit.payload_seq == 1);
    {
      std::string bytes = read_file(segment);
      bytes[hit.offset + hit.size / 2] = static_cast<char>(bytes[hit.offset + hit.size / 2] ^ 0x5a);
      write_file(segment, bytes);
    }

    ReceiverProcess rx(args);
    REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
    INFO("receiver log: " << rx.stderr_text());
    const auto damaged = log_lines(rx.stderr_text(), "damaged entry");
    REQUIRE(damaged.size() == 1);
    CHECK(damaged[0].value("level", "") == "error");
    CHECK(damaged[0].value("file", "") == segment.string());
    CHECK(damaged[0].value("offset", std::int64_t{-1}) == static_cast<std::int64_t>(hit.offset));
    CHECK(damaged[0].value("bytes", std::int64_t{-1}) == static_cast<std::int64_t>(hit.size));
    CHECK(log_lines(rx.stderr_text(), "torn tail").empty());

    write_file(state / "fixed", "");
    CHECK(post_numbered(rx.port(), 10) == 200);
    const std::map<int, int> expected{{0, 1}, {2, 1}, {3, 1}, {10, 1}};
    const bool delivered = poll_until(
        [&] {
          const auto seen = seqs_in(state / "records");
          return std::all_of(expected.begin(), expected.end(),
                             [&](const auto& kv) { return seen.count(kv.first) != 0; });
        },
        30s);
    CHECK(delivered);
    stop(rx);
    CHECK(seqs_in(state / "records") == expected);
    // Nothing is left to deliver that could still bring the damaged one (or anything else).
    const auto store = inspect(data, {sink});
    const auto counts = store->counts(sink);
    REQUIRE(counts.ok());
    CHECK(counts->pending == 0);
  }

  TEST_CASE(
      "a missing state.db is logged and every event the log retains is delivered again, none "
      "lost") {
    TempDir dir;
    const auto data = dir / "data";
    const auto state = dir / "state";
    const std::string sink = fail_until_fixed(state);
    const auto args =
        crash_args(dir, data, {"--sink", sink, "--retry-base", "100ms", "--retry-max", "1000"});
    {
      ReceiverProcess rx(args);
      REQUIRE(rx.wait_listening());
      write_file(state / "fixed", "");
      for (int seq = 0; seq < 3; ++seq) REQUIRE(post_numbered(rx.port(), seq) == 200);
      REQUIRE(poll_until(
          [&] {
            return metric(get_metrics(rx.port()), R"(tdhook_deliveries_total{sink=")" + sink +
                                                      R"(",outcome="delivered"})") == 3;
          },
          30s));
      fs::remove(state / "fixed");
      for (int seq = 3; seq < 6; ++seq) REQUIRE(post_numbered(rx.port(), seq) == 200);
      REQUIRE(poll_until([&] { return retried(rx.port(), sink) >= 3; }, 30s));
      stop(rx);
    }
    REQUIRE(seqs_in(state / "records") == std::map<int, int>{{0, 1}, {1, 1}, {2, 1}});
    REQUIRE(fs::exists(data / "state.db"));
    for (const char* name : {"state.db", "state.db-wal", "state.db-shm"}) fs::remove(data / name);

    ReceiverProcess rx(args);
    REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
    INFO("receiver log: " << rx.stderr_text());
    const auto missing = log_lines(rx.stderr_text(), "state.db was missing");
    REQUIRE(missing.size() == 1);
    CHECK(missing[0].value("level", "") == "error");
    write_file(state / "fixed", "");
    CHECK(post_numbered(rx.port(), 10) == 200);
    const bool again = poll_until(
        [&] {
          const auto seen = seqs_in(state / "records");
          for (int seq = 0; seq < 3; ++seq) {
            if (seen.count(seq) == 0 || seen.at(seq) < 2) return false;
          }
          for (const int seq : {3, 4, 5, 10}) {
            if (seen.count(seq) == 0) return false;
          }
          return true;
        },
        30s);
    CHECK(again);
    stop(rx);
    const auto seen = seqs_in(state / "records");
    // Delivered before and once again; the pending ones and the new one once.
    CHECK(seen == std::map<int, int>{{0, 2}, {1, 2}, {2, 2}, {3, 1}, {4, 1}, {5, 1}, {10, 1}});
    CHECK(fs::exists(data / "state.db"));
  }

  TEST_CASE(
      "a full disk under the log answers 503, /healthz recovers without a restart, and the log "
      "holds no partial entry") {
    TempDir dir;
    Tmpfs disk(dir / "disk", 16 * 1024 * 1024);
    if (!disk.mounted()) {
      MESSAGE("skipped: " << disk.error() << " (needs root with CAP_SYS_ADMIN)");
      return;
    }
    const auto data = disk / "data";
    const auto sink_file = dir / "events.ndjson";  // on the ordinary disk: it keeps working
    const auto args = crash_args(dir, data, {"--sink", "file:" + sink_file.string()});
    ReceiverProcess rx(args);
    REQUIRE(rx.wait_listening());

    std::map<int, std::pair<int, std::string>> answers;  // seq -> status, Retry-After
    int seq = 0;
    const auto post_until = [&](int status, int want) {
      httplib::Client client("127.0.0.1", rx.port());
      client.set_read_timeout(30, 0);
      int got = 0;
      return poll_until(
          [&] {
            const auto res =
                post_event(client, "/", numbered_event(seq, epoch_ms()), receiver_secret);
            answers[seq] = res ? std::make_pair(res->status, res->get_header_value("Retry-After"))
                               : std::make_pair(0, std::string());
            ++seq;
            got += res && res->status == status;
            return got >= want;
          },
          60s);
    };
    REQUIRE(post_until(200, 20));
    disk.fill();
    const bool refused = post_until(503, 5);
    if (!refused) FAIL("no 503 after the disk filled; receiver log: " << rx.stderr_text());
    CHECK(healthz_status(rx.port()) == 503);
    CHECK(!log_lines(rx.stderr_text(), "log: cannot write events").empty());

    // With room again and no event posted, /healthz sees it.
    disk.unfill();
    CHECK(poll_until([&] { return healthz_status(rx.port()) == 200; }, 10s));
    CHECK(post_until(200, 20));

    std::set<int> accepted;
    for (const auto& [s, a] : answers) {
      CHECK_MESSAGE((a.first == 200 || a.first == 503), "seq " << s << ": " << a.first);
      if (a.first == 200) accepted.insert(s);
      if (a.first == 503) CHECK(!a.second.empty());
    }
    const bool all_there = poll_until(
        [&] {
          const auto seen = seqs_in(sink_file);
          return std::all_of(accepted.begin(), accepted.end(),
                             [&](int s) { return seen.count(s) == 1; });
        },
        30s);
    CHECK(all_there);
    for (const auto& [s, times] : seqs_in(sink_file)) {
      CHECK_MESSAGE(times == 1, "seq " << s << " delivered " << times << " times");
      CHECK_MESSAGE(accepted.count(s) == 1, "seq " << s << " delivered, never answered 200");
    }
    stop(rx);

    // The writes that ENOSPC refused left nothing behind: every entry in the log is whole and
    // is an event answered 200.
    std::set<int> logged;
    for (const auto& segment : segments_of(data)) {
      const auto s = scan(segment);
      CHECK_MESSAGE(s.report.damage.empty(), segment);
      CHECK_FALSE_MESSAGE(s.report.torn_tail, segment);
      for (const auto& e : s.entries) logged.insert(e.payload_seq);
    }
    CHECK(logged == accepted);
    ReceiverProcess again(args);
    REQUIRE(again.wait_listening());
    CHECK(log_lines(again.stderr_text(), "torn tail").empty());
    CHECK(log_lines(again.stderr_text(), "damaged").empty());
    stop(again);
  }

  TEST_CASE(
      "an old spool.db is imported once: every pending delivery is delivered exactly once, the "
      "dead ones stay dead with their last error") {
    TempDir dir;
    const auto data = dir / "data";
    const auto file_a = dir / "a.ndjson", file_b = dir / "b.ndjson";
    const std::string sink_a = "file:" + file_a.string(), sink_b = "file:" + file_b.string();
    const std::int64_t now = epoch_ms();
    // old-0..4: pending for both sinks, old-1 and old-2 after a failed attempt for a;
    // old-5: dead for a, pending for b; old-6: dead for a only; old-7: delivered to a.
    {
      receiver::SpoolOptions options;
      options.data_dir = data;
      auto spool = receiver::Spool::open(options);
      REQUIRE_MESSAGE(spool.ok(), spool.error().detail);
      const auto put = [&](int n, std::vector<std::string> sinks) {
        receiver::NewEvent e;
        e.delivery_id = "old-" + std::to_string(n);
        e.dedup_key = "key-" + std::to_string(n);
        e.event = "lead.create";
        e.project_id = "p";
        e.subscription_id = "s";
        e.timestamp_ms = now - 60000;
        e.received_at_ms = now - 60000 + n;
        e.record = old_record(e.delivery_id, n);
        e.sinks = std::move(sinks);
        REQUIRE((*spool)->put(std::move(e)).outcome == receiver::PutOutcome::stored);
      };
      for (int n = 0; n < 6; ++n) put(n, {sink_a, sink_b});
      put(6, {sink_a});
      put(7, {sink_a});
      auto due = (*spool)->due(sink_a, now, 100);
      REQUIRE(due.ok());
      REQUIRE(due->size() == 8);
      for (const auto& d : *due) {
        const receiver::Attempt failed{1, now - 1000, now - 900, false,
                                       "exit 7 boom " + d.delivery_id};
        if (d.delivery_id == "old-1" || d.delivery_id == "old-2") {
          REQUIRE((*spool)->mark_failed(d, failed, now - 10, false).ok());
        } else if (d.delivery_id == "old-5" || d.delivery_id == "old-6") {
          REQUIRE((*spool)->mark_failed(d, failed, 0, true).ok());
        } else if (d.delivery_id == "old-7") {
          REQUIRE((*spool)
                      ->mark_delivered(d, receiver::Attempt{1, now - 800, now - 700, true, ""})
                      .ok());
        }
      }
      const auto counts = (*spool)->counts(sink_a);
      REQUIRE(counts.ok());
      REQUIRE(counts->pending == 5);
      REQUIRE(counts->dead == 2);
    }
    REQUIRE(fs::exists(data / "spool.db"));

    const auto args = crash_args(dir, data, {"--sink", sink_a, "--sink", sink_b});
    const std::map<int, int> want_a{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}};
    const std::map<int, int> want_b{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}};
    {
      ReceiverProcess rx(args);
      REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
      INFO("receiver log: " << rx.stderr_text());
      const auto imported = log_lines(rx.stderr_text(), "imported the old SQLite spool");
      REQUIRE(imported.size() == 1);
      CHECK(imported[0].value("events", std::int64_t{-1}) == 7);  // old-0..6; old-7 was done
      CHECK(imported[0].value("dead", std::int64_t{-1}) == 2);
      CHECK(log_lines(rx.stderr_text(), "not configured").empty());
      // A new event after the import: the file sinks deliver in order, so once it is there every
      // imported one before it is too.
      REQUIRE(post_numbered(rx.port(), 100) == 200);
      CHECK(poll_until(
          [&] { return seqs_in(file_a).count(100) == 1 && seqs_in(file_b).count(100) == 1; }, 30s));
      stop(rx);
    }
    auto seen_a = seqs_in(file_a), seen_b = seqs_in(file_b);
    seen_a.erase(100);
    seen_b.erase(100);
    CHECK(seen_a == want_a);
    CHECK(seen_b == want_b);
    CHECK_FALSE(fs::exists(data / "spool.db"));
    std::vector<std::string> renamed;
    for (const auto& entry : fs::directory_iterator(data)) {
      const auto name = entry.path().filename().string();
      if (name.starts_with("spool.db.imported-")) renamed.push_back(name);
    }
    CHECK(renamed.size() == 1);
    {
      const auto store = inspect(data, {sink_a, sink_b});
      receiver::ListFilter dead;
      dead.state = receiver::DeliveryState::dead;
      const auto rows = store->list(dead);
      REQUIRE_MESSAGE(rows.ok(), rows.error().detail);
      std::map<std::string, receiver::DeliveryInfo> by_id;
      for (const auto& r : *rows) by_id[r.delivery_id] = r;
      CHECK(rows->size() == 2);
      for (const char* id : {"old-5", "old-6"}) {
        REQUIRE_MESSAGE(by_id.count(id) == 1, id);
        CHECK(by_id[id].sink == sink_a);
        CHECK(by_id[id].last_error == std::string("exit 7 boom ") + id);
        CHECK(by_id[id].attempts == 1);
      }
      // A delivery that had failed before the upgrade keeps that attempt beside its success.
      const auto shown = store->show("old-1");
      REQUIRE_MESSAGE(shown.ok(), shown.error().detail);
      bool old_failure = false, success = false;
      for (const auto& [sink, a] : shown->attempts) {
        if (sink != sink_a) continue;
        old_failure = old_failure || (!a.ok && a.error == "exit 7 boom old-1");
        success = success || a.ok;
      }
      CHECK(old_failure);
      CHECK(success);
      const auto counts_a = store->counts(sink_a), counts_b = store->counts(sink_b);
      REQUIRE(counts_a.ok());
      REQUIRE(counts_b.ok());
      CHECK(counts_a->pending == 0);
      CHECK(counts_b->pending == 0);
    }

    // A second start imports nothing again and delivers nothing again.
    ReceiverProcess rx(args);
    REQUIRE_MESSAGE(rx.wait_listening(), rx.stderr_text());
    CHECK(log_lines(rx.stderr_text(), "imported the old").empty());
    REQUIRE(post_numbered(rx.port(), 101) == 200);
    CHECK(poll_until(
        [&] { return seqs_in(file_a).count(101) == 1 && seqs_in(file_b).count(101) == 1; }, 30s));
    stop(rx);
    seen_a = seqs_in(file_a);
    seen_b = seqs_in(file_b);
    seen_a.erase(100);
    seen_a.erase(101);
    seen_b.erase(100);
    seen_b.erase(101);
    CHECK(seen_a == want_a);
    CHECK(seen_b == want_b);
    CHECK_FALSE(fs::exists(data / "spool.db"));
  }
}

}  // namespace tdhook::test
