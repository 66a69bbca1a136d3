// Fault injection against the real tdhook-receiver: a full disk under the store and under a
// file sink (small tmpfs mounts), store files that cannot be used at start, and a wall clock
// that jumps (libfaketime). Every case checks that nothing answered 200 is lost.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "base/log.hpp"
#include "store/log/log_store.hpp"
#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"
#include "support/tool_run.hpp"

extern char** environ;

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

// A tmpfs of `bytes` mounted on `dir` for one test, unmounted (even when the test fails) before
// the directory is removed. These tests run as root (as on CI); a refused mount is a failure of
// the environment that must be seen, never a silent skip.
class Tmpfs {
 public:
  Tmpfs(fs::path dir, std::size_t bytes)
      : dir_(std::move(dir)), options_("size=" + std::to_string(bytes)) {
    fs::create_directories(dir_);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options_.c_str()) != 0) {
      const int err = errno;
      error_ = std::string("mount -t tmpfs -o ") + options_ + " " + dir_.string() + ": " +
               std::strerror(err) +
               (err == EPERM ? " (these fault-injection tests must run as root, with "
                               "CAP_SYS_ADMIN, as they do on CI)"
                             : "");
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
  const fs::path& path() const { return dir_; }
  fs::path operator/(const std::string& name) const { return dir_ / name; }

  bool remount_read_only() {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, options_.c_str()) == 0;
  }

  // Writes a filler file until the file system says ENOSPC; returns the bytes written.
  std::size_t fill() {
    const int fd =
        ::open((dir_ / "filler").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    const std::string block(64 * 1024, 'f');
    std::size_t written = 0;
    std::size_t size = block.size();
    while (size > 0) {
      const auto n = ::write(fd, block.data(), size);
      if (n > 0) {
        written += static_cast<std::size_t>(n);
        continue;
      }
      REQUIRE(errno == ENOSPC);
      size /= 2;  // the last pages, down to the last byte
    }
    ::close(fd);
    return written;
  }
  void unfill() { fs::remove(dir_ / "filler"); }

 private:
  fs::path dir_;
  std::string options_;
  bool mounted_ = false;
  std::string error_;
};

std::vector<std::string> base_args(const TempDir& dir, const fs::path& data_dir) {
  write_file(dir / "secret", std::string(receiver_secret) + "\n");
  return {"--listen",        "127.0.0.1:0",   "--data-dir",
          data_dir.string(), "--secret-file", (dir / "secret").string()};
}

std::vector<std::string> with(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

// seq -> how many records of the sink carry it.
std::map<int, int> seqs_in(const std::string& ndjson) {
  std::map<int, int> seen;
  for (const auto& record : parse_ndjson(ndjson)) {
    if (record.at("payload").contains("seq")) ++seen[record.at("payload").at("seq").get<int>()];
  }
  return seen;
}

int healthz_status(int port) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/healthz");
  return res ? res->status : 0;
}

// One answer of the receiver to a numbered event.
struct Answer {
  int seq = 0;
  int status = 0;  // 0: no answer
  std::string retry_after;
  std::string body;
};

// Posts numbered events one after another from its own thread until stopped.
class Sender {
 public:
  explicit Sender(int port) : port_(port), thread_([this] { run(); }) {}
  ~Sender() { stop(); }
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Answer> answers() const {
    std::lock_guard lock(mu_);
    return answers_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return answers_.size();
  }
  // Answers with `status` among those from index `from` on.
  std::size_t count(int status, std::size_t from = 0) const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (std::size_t i = from; i < answers_.size(); ++i) n += answers_[i].status == status;
    return n;
  }

 private:
  void run() {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(30, 0);
    for (int seq = 0; !stop_; ++seq) {
      const auto res = post_event(client, "/", numbered_event(seq, epoch_ms()), receiver_secret);
      Answer a{seq, 0, {}, {}};
      if (res) a = Answer{seq, res->status, res->get_header_value("Retry-After"), res->body};
      std::lock_guard lock(mu_);
      answers_.push_back(std::move(a));
    }
  }

  int port_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<Answer> answers_;
  std::thread thread_;
};

bool has_listened(const ReceiverProcess& rx) {
  return rx.stderr_text().find("\"msg\":\"listening\"") != std::string::npos;
}

// A store with `n` events stored for the sink "stdout", closed again.
void make_store(const fs::path& data_dir, int n) {
  const receiver::Logger quiet(receiver::LogLevel::error);
  receiver::LogStoreOptions options;
  options.store.data_dir = data_dir;
  options.store.sinks = {"stdout"};
  auto store = receiver::open_log_store(options, quiet);
  REQUIRE_MESSAGE(store.ok(), store.error().detail);
  for (int i = 0; i < n; ++i) {
    receiver::NewEvent e;
    e.delivery_id = "d" + std::to_string(i);
    e.dedup_key = "k" + std::to_string(i);
    e.event = "lead.create";
    e.project_id = "p";
    e.subscription_id = "s";
    e.received_at_ms = epoch_ms();
    e.record = R"({"n":)" + std::to_string(i) + R"(,"pad":")" + std::string(500, 'x') + "\"}";
    e.sinks = {"stdout"};
    REQUIRE((*store)->put(std::move(e)).outcome == receiver::PutOutcome::stored);
  }
}

// The store of a stopped receiver, opened as `tdhook spool` opens it.
std::unique_ptr<receiver::Store> inspect_store(const fs::path& data_dir,
                                               std::vector<std::string> sinks) {
  static const receiver::Logger quiet(receiver::LogLevel::error);
  receiver::LogStoreOptions options;
  options.store.data_dir = data_dir;
  options.store.sinks = std::move(sinks);
  options.for_inspection = true;
  auto store = receiver::open_log_store(options, quiet);
  REQUIRE_MESSAGE(store.ok(), store.error().detail);
  return std::move(*store);
}

// Every file under `root` (or `root` itself when it is a file) with its bytes; directories as
// "<directory>".
std::map<std::string, std::string> data_dir_files(const fs::path& root) {
  std::map<std::string, std::string> out;
  if (fs::is_regular_file(root)) {
    out[""] = read_file(root);
    return out;
  }
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const auto name = fs::relative(entry.path(), root).string();
    out[name] = entry.is_directory() ? std::string("<directory>") : read_file(entry.path());
  }
  return out;
}

// The receiver must refuse to start on `data_dir`: non-zero exit, never listening, an error on
// stderr that names `named` and contains `reason`; every file that was there is left as it was.
void expect_refused(const TempDir& dir, const fs::path& data_dir, const fs::path& named,
                    const std::string& reason) {
  const auto before = data_dir_files(data_dir);
  ReceiverProcess rx(with(base_args(dir, data_dir), {"--sink", "stdout"}));
  std::optional<int> code;
  poll_until([&] { return has_listened(rx) || (code = rx.wait_exit(0ms)).has_value(); }, 30s);
  const std::string err = rx.stderr_text();
  INFO("stderr: " << err);
  CHECK_FALSE(has_listened(rx));
  REQUIRE(code);
  CHECK(*code != 0);
  CHECK(err.find("tdhook-receiver: cannot open the store: ") != std::string::npos);
  CHECK(err.find(named.string()) != std::string::npos);
  CHECK(err.find(reason) != std::string::npos);
  const auto after = data_dir_files(data_dir);
  for (const auto& [name, bytes] : before) {
    const auto now = after.find(name);
    CHECK_MESSAGE(now != after.end(), name << " is gone");
    if (now != after.end()) CHECK_MESSAGE(now->second == bytes, name << " was changed");
  }
}

const char* find_libfaketime() {
  for (const char* path : {"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                           "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                           "/usr/lib/faketime/libfaketime.so.1"}) {
    if (fs::exists(path)) return path;
  }
  return nullptr;
}

// The receiver under libfaketime: its wall clock is the real one plus the offset written in
// `offset_file` ("+3600", "-3600"), read again at every call; its monotonic clock stays real, as
// when an administrator or NTP sets the clock.
std::vector<std::string> faketime_env(const fs::path& offset_file) {
  const char* lib = find_libfaketime();
  REQUIRE_MESSAGE(lib != nullptr,
                  "libfaketime.so.1 not found: install the Debian package faketime "
                  "(scripts/install-deps)");
  write_file(offset_file, "+0\n");
  return {std::string("LD_PRELOAD=") + lib, "FAKETIME_TIMESTAMP_FILE=" + offset_file.string(),
          "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"};
}

std::string script(const std::string& name) {
  return "sh " + (source_dir() / "tests" / "scripts" / name).string();
}

}  // namespace

TEST_SUITE("receiver faults") {
  TEST_CASE(
      "a full spool disk answers 503 with Retry-After, recovers without a restart, and every "
      "event answered 200 reaches the sink exactly once") {
    TempDir dir;
    Tmpfs disk(dir / "disk", 16 * 1024 * 1024);
    REQUIRE_MESSAGE(disk.mounted(), disk.error());
    // The sink writes on the ordinary disk, so it keeps working while the spool's disk is full.
    // It holds its first delivery until `gate` exists: that delivery ends while the disk is full,
    // when the spool cannot record it.
    const auto out = dir / "out";
    fs::create_directories(out);
    const auto sink_file = out / "records";
    const std::string sink = "exec:cd " + out.string() +
                             " && while [ ! -e gate ]; do sleep 0.05; done && cat >> records";
    ReceiverProcess rx(with(base_args(dir, disk / "data"),
                            {"--sink", sink, "--exec-timeout", "300s", "--retry-base", "50ms"}));
    REQUIRE(rx.wait_listening());
    Sender sender(rx.port());
    REQUIRE(poll_until([&] { return sender.count(200) >= 20; }, 30s));

    disk.fill();
    const std::size_t filled_at = sender.size();
    const bool refused = poll_until([&] { return sender.count(503, filled_at) >= 5; }, 60s);
    if (!refused) FAIL("no 503 after the disk filled; receiver log: " << rx.stderr_text());
    CHECK(poll_until([&] { return healthz_status(rx.port()) == 503; }, 10s));
    const std::string during = get_metrics(rx.port());
    CHECK(metric(during, R"(tdhook_requests_total{status="503",reason="spool_failed"})") >= 5);
    CHECK(::kill(rx.pid(), 0) == 0);

    write_file(out / "gate", "");
    const bool unrecorded = poll_until(
        [&] {
          const std::string log = rx.stderr_text();
          for (auto at = log.find("\"msg\":\"spool: cannot"); at != std::string::npos;
               at = log.find("\"msg\":\"spool: cannot", at + 1)) {
            const auto end = log.find('\n', at);
            if (log.substr(at, end - at).find("disk is full") != std::string::npos) return true;
          }
          return false;
        },
        30s);
    if (!unrecorded) FAIL("no delivery ended while the disk was full; log: " << rx.stderr_text());

    disk.unfill();
    const std::size_t freed_at = sender.size();
    CHECK(poll_until([&] { return sender.count(200, freed_at) >= 20; }, 30s));
    CHECK(poll_until([&] { return healthz_status(rx.port()) == 200; }, 10s));
    sender.stop();

    const auto answers = sender.answers();
    std::set<int> accepted, refused_seqs;
    for (const auto& a : answers) {
      CHECK_MESSAGE((a.status == 200 || a.status == 503), "seq " << a.seq << ": " << a.status);
      if (a.status == 200) accepted.insert(a.seq);
      if (a.status == 503) {
        refused_seqs.insert(a.seq);
        CHECK(a.retry_after.size() > 0);
        CHECK(json::parse(a.body) == json{{"ok", false}, {"error", "spool_failed"}});
      }
    }
    MESSAGE(accepted.size() << " events answered 200, " << refused_seqs.size() << " answered 503");
    // Exactly once: outcomes the spool could not record while full were kept by the receiver
    // and recorded later, not delivered again.
    const bool all_there = poll_until(
        [&] {
          const auto seen = seqs_in(read_if_exists(sink_file));
          return std::all_of(accepted.begin(), accepted.end(),
                             [&](int s) { return seen.count(s) == 1; });
        },
        60s);
    CHECK(all_there);
    for (const auto& [seq, times] : seqs_in(read_if_exists(sink_file))) {
      CHECK_MESSAGE(times == 1, "seq " << seq << " delivered " << times << " times");
      CHECK_MESSAGE(accepted.count(seq) == 1, "seq " << seq << " delivered, never answered 200");
    }
    rx.signal(SIGTERM);
    CHECK(rx.wait_exit(30s) == 0);
  }

  TEST_CASE("a store that cannot be used at start stops the receiver with the file named") {
    TempDir dir;
    const auto data = dir / "data";

    SUBCASE("garbage in place of state.db, left as it was") {
      make_store(data, 10);
      write_file(data / "state.db", std::string(20000, 'Z'));
      for (const char* name : {"state.db-wal", "state.db-shm"}) fs::remove(data / name);
      expect_refused(dir, data, data / "state.db", "not a database");
    }
    SUBCASE("a file where the data directory should be, left as it was") {
      write_file(data, "precious\n");
      expect_refused(dir, data, data, "Not a directory");
      CHECK(read_file(data) == "precious\n");
    }
    SUBCASE("a file where log/ should be, left as it was") {
      fs::create_directories(data);
      write_file(data / "log", "precious\n");
      expect_refused(dir, data, data / "log", "Not a directory");
    }
    SUBCASE("a directory where a segment should be") {
      // The events of the segment are due (state.db says so) but there is no file to read them
      // from: starting without them would lose them without a word.
      make_store(data, 10);
      const auto segment = data / "log" / "00000000000000000001.log";
      REQUIRE(fs::is_regular_file(segment));
      fs::rename(segment, dir / "elsewhere.log");
      fs::create_directory(segment);
      expect_refused(dir, data, segment, "");
    }
    SUBCASE("a data directory on a read-only file system") {
      Tmpfs disk(dir / "ro", 8 * 1024 * 1024);
      REQUIRE_MESSAGE(disk.mounted(), disk.error());
      SUBCASE("empty") {
        REQUIRE(disk.remount_read_only());
        expect_refused(dir, disk.path(), disk.path(), "Read-only file system");
      }
      SUBCASE("with a store in it") {
        make_store(disk.path(), 10);
        REQUIRE(disk.remount_read_only());
        expect_refused(dir, disk.path(), disk.path(), "Read-only file system");
      }
    }
    SUBCASE("another receiver holding the store") {
      ReceiverProcess first(with(base_args(dir, data), {"--sink", "stdout"}));
      REQUIRE(first.wait_listening());
      ReceiverProcess second(with(base_args(dir, data), {"--sink", "stdout"}));
      std::optional<int> code;
      poll_until([&] { return has_listened(second) || (code = second.wait_exit(0ms)).has_value(); },
                 30s);
      const std::string err = second.stderr_text();
      INFO("stderr of the second: " << err);
      CHECK_FALSE(has_listened(second));
      REQUIRE(code);
      CHECK(*code != 0);
      CHECK(err.find("tdhook-receiver: cannot open the store: ") != std::string::npos);
      CHECK(err.find("another process") != std::string::npos);
      CHECK(err.find(data.string()) != std::string::npos);
      // The first one goes on undisturbed.
      httplib::Client client("127.0.0.1", first.port());
      const auto res = post_event(client, "/", numbered_event(1, epoch_ms()), receiver_secret);
      REQUIRE(res);
      CHECK(res->status == 200);
      CHECK(
          first.wait_stdout([](const std::string& out) { return seqs_in(out).size() == 1; }, 30s));
      first.signal(SIGTERM);
      CHECK(first.wait_exit(30s) == 0);
    }
  }

  TEST_CASE(
      "a file sink on a full disk retries, dead-letters with the error and counts it; with space "
      "back, tdhook spool retry delivers every event once") {
    TempDir dir;
    Tmpfs disk(dir / "sinkdisk", 1024 * 1024);
    REQUIRE_MESSAGE(disk.mounted(), disk.error());
    const auto sink_file = disk / "events.ndjson";
    const std::string sink = "file:" + sink_file.string();
    ReceiverProcess rx(with(base_args(dir, dir / "data"),
                            {"--sink", sink, "--retry-max", "3", "--retry-base", "50ms"}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    // Records larger than a page: none fits in what is left of the file's last page.
    constexpr std::size_t pad = 6000;
    for (int seq = 0; seq < 3; ++seq) {
      REQUIRE(
          post_event(client, "/", numbered_event(seq, epoch_ms(), pad), receiver_secret)->status ==
          200);
    }
    REQUIRE(poll_until([&] { return count_lines_in(sink_file) == 3; }, 30s));

    disk.fill();
    for (int seq = 3; seq < 8; ++seq) {
      REQUIRE(
          post_event(client, "/", numbered_event(seq, epoch_ms(), pad), receiver_secret)->status ==
          200);
    }
    const std::string dead_series =
        R"(tdhook_deliveries_total{sink=")" + sink + R"(",outcome="dead"})";
    const bool dead =
        poll_until([&] { return metric(get_metrics(rx.port()), dead_series) == 5; }, 60s);
    INFO("receiver log: " << rx.stderr_text().substr(0, 4000));
    REQUIRE(dead);
    const std::string metrics = get_metrics(rx.port());
    CHECK(metric(metrics, R"(tdhook_deliveries_total{sink=")" + sink + R"(",outcome="retried"})") ==
          10);
    CHECK(metric(metrics,
                 R"(tdhook_deliveries_total{sink=")" + sink + R"(",outcome="delivered"})") == 3);
    const auto listed = run_tool(
        dir, {"spool", "--data-dir", (dir / "data").string(), "ls", "--state", "dead", "--json"});
    REQUIRE(listed.code == 0);
    const auto rows = parse_ndjson(listed.out);
    CHECK(rows.size() == 5);
    for (const auto& row : rows) {
      CHECK(row.dump().find("No space left on device") != std::string::npos);
    }
    CHECK(seqs_in(read_file(sink_file)).size() == 3);

    disk.unfill();
    const auto retried =
        run_tool(dir, {"spool", "--data-dir", (dir / "data").string(), "retry", "--dead"});
    CHECK(retried.code == 0);
    CHECK(poll_until([&] { return count_lines_in(sink_file) >= 8; }, 30s));
    const auto seen = seqs_in(read_file(sink_file));  // parses every line: none was cut
    CHECK(seen ==
          std::map<int, int>{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}});
    CHECK(poll_until(
        [&] {
          return metric(get_metrics(rx.port()), R"(tdhook_deliveries_total{sink=")" + sink +
                                                    R"(",outcome="delivered"})") == 8;
        },
        10s));
  }

  TEST_CASE(
      "a file sink whose file was replaced by a directory dead-letters with the reason, and "
      "delivers every event once it is a file again") {
    TempDir dir;
    const auto sink_file = dir / "events.ndjson";
    const std::string sink = "file:" + sink_file.string();
    ReceiverProcess rx(with(base_args(dir, dir / "data"),
                            {"--sink", sink, "--retry-max", "2", "--retry-base", "50ms"}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    REQUIRE(post_event(client, "/", numbered_event(0, epoch_ms()), receiver_secret)->status == 200);
    REQUIRE(poll_until([&] { return count_lines_in(sink_file) == 1; }, 30s));

    // As a careless logrotate could leave it; SIGHUP makes the sink reopen the path.
    fs::rename(sink_file, dir / "events.ndjson.1");
    fs::create_directory(sink_file);
    rx.signal(SIGHUP);
    // The signal is handled on its own thread: an event posted before that would go to the old
    // file.
    REQUIRE(poll_until([&] {
      return rx.stderr_text().find("SIGHUP: reopening file sinks") != std::string::npos;
    }));
    REQUIRE(post_event(client, "/", numbered_event(1, epoch_ms()), receiver_secret)->status == 200);
    const std::string dead_series =
        R"(tdhook_deliveries_total{sink=")" + sink + R"(",outcome="dead"})";
    const bool dead =
        poll_until([&] { return metric(get_metrics(rx.port()), dead_series) == 1; }, 30s);
    INFO("metrics: " << get_metrics(rx.port()) << "\nreceiver log: " << rx.stderr_text());
    REQUIRE(dead);
    const auto listed = run_tool(
        dir, {"spool", "--data-dir", (dir / "data").string(), "ls", "--state", "dead", "--json"});
    REQUIRE(listed.code == 0);
    CHECK(listed.out.find("Is a directory") != std::string::npos);

    fs::remove(sink_file);
    CHECK(run_tool(dir, {"spool", "--data-dir", (dir / "data").string(), "retry", "--dead"}).code ==
          0);
    CHECK(poll_until([&] { return count_lines_in(sink_file) == 1; }, 30s));
    CHECK(seqs_in(read_file(sink_file)) == std::map<int, int>{{1, 1}});
    CHECK(seqs_in(read_file(dir / "events.ndjson.1")) == std::map<int, int>{{0, 1}});
  }

  TEST_CASE("tokens are judged against the receiver's clock when it jumps an hour either way") {
    TempDir dir;
    const auto offset = dir / "clock";
    ReceiverProcess rx(with(base_args(dir, dir / "data"), {"--sink", "stdout"}),
                       faketime_env(offset));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    constexpr std::int64_t hour = 3600 * 1000;
    const auto post = [&](int seq, std::int64_t timestamp) {
      const auto res = post_event(client, "/", numbered_event(seq, timestamp), receiver_secret);
      REQUIRE(res);
      return res->status;
    };
    const std::string stale = R"(tdhook_requests_total{status="401",reason="stale"})";
    CHECK(post(0, epoch_ms()) == 200);

    write_file(offset, "+3600\n");
    CHECK(post(1, epoch_ms()) == 401);
    CHECK(metric(get_metrics(rx.port()), stale) == 1);
    CHECK(post(2, epoch_ms() + hour) == 200);

    write_file(offset, "-3600\n");
    CHECK(post(3, epoch_ms()) == 401);
    CHECK(post(4, epoch_ms() + hour) == 401);
    CHECK(metric(get_metrics(rx.port()), stale) == 3);
    CHECK(post(5, epoch_ms() - hour) == 200);

    CHECK(rx.wait_stdout([](const std::string& out) { return seqs_in(out).size() >= 3; }, 30s));
    CHECK(seqs_in(rx.stdout_text()) == std::map<int, int>{{0, 1}, {2, 1}, {5, 1}});
    rx.signal(SIGTERM);
    CHECK(rx.wait_exit(30s) == 0);
  }

  TEST_CASE("an event received before the wall clock is set back an hour is delivered at once") {
    TempDir dir;
    const auto offset = dir / "clock";
    const auto gate = dir / "gate";
    fs::create_directories(gate);
    // One delivery at a time: while the first event's script waits at the gate, the second is
    // stored and waits in the log, received an hour ahead of the clock it is delivered by.
    ReceiverProcess rx(with(base_args(dir, dir / "data"),
                            {"--sink", "exec:" + script("wait-for-gate.sh") + " " + gate.string(),
                             "--exec-concurrency", "1"}),
                       faketime_env(offset));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    constexpr std::int64_t hour = 3600 * 1000;
    REQUIRE(post_event(client, "/", numbered_event(0, epoch_ms()), receiver_secret)->status == 200);
    REQUIRE(poll_until([&] { return count_lines_in(gate / "started") == 1; }, 30s));

    write_file(offset, "+3600\n");
    REQUIRE(
        post_event(client, "/", numbered_event(1, epoch_ms() + hour), receiver_secret)->status ==
        200);
    write_file(offset, "-3600\n");
    write_file(gate / "open", "");
    const bool both = poll_until([&] { return count_lines_in(gate / "records") == 2; }, 30s);
    INFO("receiver log: " << rx.stderr_text());
    CHECK(both);
    CHECK(seqs_in(read_file(gate / "records")) == std::map<int, int>{{0, 1}, {1, 1}});
    rx.signal(SIGTERM);
    CHECK(rx.wait_exit(30s) == 0);
  }

  TEST_CASE("a retry waiting when the wall clock jumps an hour is not delayed by an hour") {
    TempDir dir;
    const auto offset = dir / "clock";
    const auto state = dir / "state";
    fs::create_directories(state);
    const std::string sink = "exec:" + script("fail-until-fixed.sh") + " " + state.string();
    // First retry 2 to 4 s after the first failure, by the receiver's steady time.
    ReceiverProcess rx(with(base_args(dir, dir / "data"),
                            {"--sink", sink, "--retry-base", "4s", "--retry-max", "5"}),
                       faketime_env(offset));
    REQUIRE(rx.wait_listening());
    std::string jump;
    SUBCASE("back") { jump = "-3600"; }
    SUBCASE("forward") { jump = "+3600"; }
    httplib::Client client("127.0.0.1", rx.port());
    REQUIRE(post_event(client, "/", numbered_event(0, epoch_ms()), receiver_secret)->status == 200);
    REQUIRE(poll_until(
        [&] { return rx.stderr_text().find("delivery failed, will retry") != std::string::npos; },
        30s));

    write_file(offset, jump + "\n");
    write_file(state / "fixed", "");
    const auto jumped = std::chrono::steady_clock::now();
    const bool delivered = poll_until([&] { return count_lines_in(state / "records") == 1; }, 60s);
    if (!delivered) FAIL("not delivered within 60 s; receiver log: " << rx.stderr_text());
    MESSAGE("clock " << jump << "s: delivered "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - jumped)
                            .count()
                     << " ms after the jump");
    CHECK(std::chrono::steady_clock::now() - jumped < 30s);
    CHECK(seqs_in(read_file(state / "records")) == std::map<int, int>{{0, 1}});

    // The script has written the record; the receiver records the attempt just after, then
    // counts it. The store is looked at once the receiver has let go of it.
    CHECK(poll_until(
        [&] {
          return metric(get_metrics(rx.port()), R"(tdhook_deliveries_total{sink=")" + sink +
                                                    R"(",outcome="delivered"})") == 1;
        },
        30s));
    rx.signal(SIGTERM);
    CHECK(rx.wait_exit(30s) == 0);
    const auto store = inspect_store(dir / "data", {sink});
    const auto rows = store->list({});
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 1);
    auto shown = store->show(rows->at(0).delivery_id);
    REQUIRE_MESSAGE(shown.ok(), shown.error().detail);
    REQUIRE(shown->deliveries.size() == 1);
    CHECK(shown->deliveries.at(0).state == receiver::DeliveryState::delivered);
    const auto details = std::optional<receiver::Details>(std::move(*shown));
    REQUIRE(details->attempts.size() >= 2);
    const auto& first = details->attempts.front().second;
    const auto& last = details->attempts.back().second;
    CHECK(last.ok);
    // The attempt that delivered ran on the jumped clock: the jump came before it.
    if (jump[0] == '-') {
      CHECK(last.started_at_ms < first.finished_at_ms - 3500 * 1000);
    } else {
      CHECK(last.started_at_ms > first.finished_at_ms + 3500 * 1000);
    }
  }
}

}  // namespace tdhook::test
