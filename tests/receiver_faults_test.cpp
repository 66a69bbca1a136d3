// Fault injection against the real tdhook-receiver: a full disk under the spool and under a
// file sink (small tmpfs mounts), spool files that cannot be used at start, and a wall clock
// that jumps (libfaketime). Every case checks that nothing answered 200 is lost.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
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

#include "store/spool.hpp"
#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

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

// A lead.create notification whose payload carries `seq`, so that each one is a distinct
// occurrence and can be found in a sink. `pad` bytes of padding make records that large.
std::string numbered_event(int seq, std::int64_t timestamp_ms, std::size_t pad = 0) {
  const auto sample = load_sample("lead.create");
  OrderedJson payload = sample.at("payload");
  payload["seq"] = seq;
  if (pad > 0) payload["pad"] = std::string(pad, 'p');
  return sign_body(payload, sample.at("hook"), receiver_secret, timestamp_ms);
}

// seq -> how many records of the sink carry it.
std::map<int, int> seqs_in(const std::string& ndjson) {
  std::map<int, int> seen;
  for (const auto& record : parse_ndjson(ndjson)) {
    if (record.at("payload").contains("seq")) ++seen[record.at("payload").at("seq").get<int>()];
  }
  return seen;
}

int metric(const std::string& text, const std::string& series) {
  const auto at = text.find(series + " ");
  if (at == std::string::npos) return 0;
  return std::atoi(text.c_str() + at + series.size() + 1);
}

std::string get_metrics(int port) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/metrics");
  return res ? res->body : std::string();
}

int healthz_status(int port) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/healthz");
  return res ? res->status : 0;
}

struct ToolRun {
  int code = -1;
  std::string out, err;
};

// `tdhook ARGS...`, stdout and stderr captured in files of `dir`.
ToolRun run_tool(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), TDHOOK_TOOL_BIN);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto out = dir / "tool.out", err = dir / "tool.err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return ToolRun{WEXITSTATUS(status), read_file(out), read_file(err)};
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

// A spool with `n` events stored, closed again.
void make_spool(const fs::path& data_dir, int n) {
  receiver::SpoolOptions options;
  options.data_dir = data_dir;
  auto spool = receiver::Spool::open(options);
  REQUIRE(spool.ok());
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
    REQUIRE((*spool)->put(std::move(e)).outcome == receiver::PutOutcome::stored);
  }
}

// The receiver must refuse to start on `data_dir`: non-zero exit, never listening, an error that
// names `named` on stderr containing `reason`.
void expect_refused(const TempDir& dir, const fs::path& data_dir, const fs::path& named,
                    const std::string& reason) {
  ReceiverProcess rx(with(base_args(dir, data_dir), {"--sink", "stdout"}));
  const auto code = rx.wait_exit(30s);
  REQUIRE(code);
  const std::string err = rx.stderr_text();
  INFO("stderr: " << err);
  CHECK(*code != 0);
  CHECK_FALSE(has_listened(rx));
  CHECK(err.find("tdhook-receiver: cannot open the spool: spool " + named.string()) !=
        std::string::npos);
  CHECK(err.find(reason) != std::string::npos);
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

  TEST_CASE("a spool that cannot be used at start stops the receiver with the file named") {
    TempDir dir;
    const auto data = dir / "data";
    const auto db = data / "spool.db";
    fs::create_directories(data);

    SUBCASE("garbage in place of the spool database, left as it was") {
      const std::string garbage(20000, 'Z');
      write_file(db, garbage);
      expect_refused(dir, data, db, "not a database");
      CHECK(read_file(db) == garbage);
    }
    SUBCASE("a spool truncated to half its size, left as it was") {
      make_spool(data, 400);
      auto bytes = read_file(db);
      REQUIRE(bytes.size() > 64 * 1024);
      bytes.resize(bytes.size() / 2);
      write_file(db, bytes);
      expect_refused(dir, data, db, "corrupt");
      CHECK(read_file(db) == bytes);
    }
    SUBCASE("a database with the spool's identity and other tables, left as it was") {
      sqlite3* handle = nullptr;
      REQUIRE(sqlite3_open(db.c_str(), &handle) == SQLITE_OK);
      REQUIRE(sqlite3_exec(handle,
                           "PRAGMA application_id=1952737387; PRAGMA user_version=1;"
                           "CREATE TABLE events(row INTEGER PRIMARY KEY, blob TEXT);"
                           "INSERT INTO events(blob) VALUES('precious');",
                           nullptr, nullptr, nullptr) == SQLITE_OK);
      sqlite3_close(handle);
      const std::string before = read_file(db);
      expect_refused(dir, data, db, "not the schema of a tdhook spool");
      CHECK(read_file(db) == before);
    }
    SUBCASE("the database gone but its write-ahead log still there") {
      // As a crash leaves it: the events committed since the last checkpoint are in the log.
      {
        const auto elsewhere = dir / "elsewhere";
        receiver::SpoolOptions options;
        options.data_dir = elsewhere;
        auto spool = receiver::Spool::open(options);
        REQUIRE(spool.ok());
        receiver::NewEvent e;
        e.delivery_id = "in-the-log";
        e.event = "lead.create";
        e.record = "{}";
        e.sinks = {"stdout"};
        REQUIRE((*spool)->put(std::move(e)).outcome == receiver::PutOutcome::stored);
        fs::copy_file(elsewhere / "spool.db-wal", data / "spool.db-wal");
      }
      const std::string log = read_file(data / "spool.db-wal");
      REQUIRE(log.size() > 0);
      expect_refused(dir, data, db, "write-ahead log");
      CHECK_FALSE(fs::exists(db));
      CHECK(read_file(data / "spool.db-wal") == log);
    }
    SUBCASE("a data directory on a read-only file system") {
      Tmpfs disk(dir / "ro", 8 * 1024 * 1024);
      REQUIRE_MESSAGE(disk.mounted(), disk.error());
      SUBCASE("empty") {
        REQUIRE(disk.remount_read_only());
        expect_refused(dir, disk.path(), disk / "spool.db",
                       "cannot create it: Read-only file system");
      }
      SUBCASE("with a spool in it") {
        make_spool(disk.path(), 10);
        const std::string before = read_file(disk / "spool.db");
        REQUIRE(disk.remount_read_only());
        expect_refused(dir, disk.path(), disk / "spool.db",
                       "cannot write in its directory: Read-only file system");
        CHECK(read_file(disk / "spool.db") == before);
      }
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

    receiver::SpoolOptions options;
    options.data_dir = dir / "data";
    options.read_only = true;
    auto spool = receiver::Spool::open(options);
    REQUIRE(spool.ok());
    const auto rows = (*spool)->list({});
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 1);
    // The script has written the record; the receiver records the attempt just after.
    std::optional<receiver::Details> details;
    REQUIRE(poll_until([&] {
      auto shown = (*spool)->show(rows->at(0).delivery_id);
      if (!shown.ok() || shown->deliveries.at(0).state != receiver::DeliveryState::delivered)
        return false;
      details = std::move(*shown);
      return true;
    }));
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
    rx.signal(SIGTERM);
    CHECK(rx.wait_exit(30s) == 0);
  }
}

}  // namespace tdhook::test
