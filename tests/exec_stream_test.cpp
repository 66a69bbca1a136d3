// The exec-stream sink: one long-lived consumer process per sink, record lines in, "ok ID" /
// "fail ID REASON" lines out. End-to-end through the real receiver binary (signed events over
// HTTP), and through a real spool and dispatcher where a test needs one big batch.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "delivery/dispatcher.hpp"
#include "support/dispatch_fixture.hpp"
#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using receiver::DeliveryState;
using receiver::SinkConfig;

std::string test_script(const std::string& name) {
  // exec: the script leads the process group, so its own exit status or signal is observed.
  return "exec bash " + (source_dir() / "tests/scripts" / name).string();
}
std::string sample_script(const std::string& name) {
  return (source_dir() / "samples/scripts" / name).string();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// How many times each delivery id appears in an NDJSON file. A consumer may be writing the last
// line right now (a shell writes a long line in pieces): only complete lines count.
std::map<std::string, int> id_counts(const std::filesystem::path& file) {
  std::map<std::string, int> counts;
  auto text = read_if_exists(file);
  text.erase(text.find_last_of('\n') == std::string::npos ? 0 : text.find_last_of('\n') + 1);
  for (const auto& line : lines_of(text)) {
    ++counts[json::parse(line).at("id").get<std::string>()];
  }
  return counts;
}

bool has_each_once(const std::filesystem::path& file, const std::set<std::string>& ids) {
  const auto counts = id_counts(file);
  if (counts.size() != ids.size()) return false;
  return std::all_of(counts.begin(), counts.end(),
                     [&](const auto& c) { return c.second == 1 && ids.count(c.first) == 1; });
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A process as /proc shows it: its parent, its process group and its state letter.
struct ProcInfo {
  pid_t pid = 0, ppid = 0, pgrp = 0;
  char state = '?';
};

std::vector<ProcInfo> processes() {
  std::vector<ProcInfo> all;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;  // gone meanwhile
    const auto close = stat.rfind(')');     // the command name may hold spaces and parentheses
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    ProcInfo p;
    p.pid = std::stoi(name);
    rest >> p.state >> p.ppid >> p.pgrp;
    all.push_back(p);
  }
  return all;
}

// Running (not zombie) members of a process group.
std::vector<pid_t> live_group_members(pid_t pgrp) {
  std::vector<pid_t> members;
  for (const auto& p : processes()) {
    if (p.pgrp == pgrp && p.state != 'Z' && p.state != 'X') members.push_back(p.pid);
  }
  return members;
}

bool alive(pid_t pid) {
  for (const auto& p : processes()) {
    if (p.pid == pid) return p.state != 'Z' && p.state != 'X';
  }
  return false;
}

std::vector<ProcInfo> children_of(pid_t parent) {
  std::vector<ProcInfo> children;
  for (const auto& p : processes()) {
    if (p.ppid == parent) children.push_back(p);
  }
  return children;
}

std::vector<std::string> with(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

// Posts `count` distinct signed events (the samples in turn); returns their delivery ids.
std::set<std::string> post_events(int port, int count) {
  httplib::Client client("127.0.0.1", port);
  const auto names = sample_event_names();
  REQUIRE_FALSE(names.empty());
  std::set<std::string> ids;
  auto ts = epoch_ms();
  for (int i = 0; i < count; ++i) {
    const auto& name = names[static_cast<std::size_t>(i) % names.size()];
    const auto res =
        post_event(client, "/", sign_sample(name, receiver_secret, ts++), receiver_secret);
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 200, name, ": ", res->body);
    ids.insert(json::parse(res->body).at("id").get<std::string>());
  }
  REQUIRE(ids.size() == static_cast<std::size_t>(count));
  return ids;
}

// A record as the receiver builds it: the delivery id first, `payload` as given.
std::string record(const std::string& id, const std::string& payload_json) {
  return R"({"id":")" + id +
         R"(","event":"lead.create","project_id":"65533a0cb7e1c3d9503a10f1",)"
         R"("subscription_id":"65ae3debc91f04aa2e3a1109","timestamp":1707142867470,)"
         R"("received_at":")" +
         iso8601_ms(epoch_ms()) +
         R"(","verified":"secret","hook":{"_id":"65ae3debc91f04aa2e3a1109","event":"lead.create"},)"
         R"("payload":)" +
         payload_json + "}";
}

SinkConfig stream_sink(const std::string& command) {
  auto config = receiver::parse_sink_spec("exec-stream:" + command);
  REQUIRE(config.ok());
  config->retry_base = 10ms;
  return *config;
}

}  // namespace

TEST_SUITE("exec-stream") {
  TEST_CASE("exec-stream specs are parsed, and one without a command is refused") {
    const auto ok = receiver::parse_sink_spec("exec-stream:./consumer.sh --flag");
    REQUIRE(ok.ok());
    CHECK(ok->name == "exec-stream:./consumer.sh --flag");
    const auto empty = receiver::parse_sink_spec("exec-stream: \t");
    REQUIRE_FALSE(empty.ok());
    CHECK(empty.error().code == ErrorCode::invalid_config);
    CHECK(empty.error().detail.find("exec-stream:COMMAND") != std::string::npos);
  }

  TEST_CASE("both sample consumers get every event exactly once from one long-lived process") {
    TempDir dir;
    const auto bash_out = dir / "bash.ndjson";
    const auto python_out = dir / "python.ndjson";
    const std::string bash_sink =
        "exec-stream:" + sample_script("stream-consumer.sh") + " " + bash_out.string();
    const std::string python_sink =
        "exec-stream:python3 " + sample_script("stream-consumer.py");  // file from the env
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", bash_sink, "--sink", python_sink,
                                                 "--pass-env", "TDHOOK_STREAM_FILE"}),
                       {"TDHOOK_STREAM_FILE=" + python_out.string()});
    REQUIRE(rx.wait_listening());
    const auto ids = post_events(rx.port(), 60);
    const bool both = poll_until(
        [&] { return has_each_once(bash_out, ids) && has_each_once(python_out, ids); }, 60s);
    INFO("receiver log: " << rx.stderr_text());
    REQUIRE(both);
    // Each line is the record exactly as the receiver built it.
    for (const auto& file : {bash_out, python_out}) {
      for (const auto& line : lines_of(read_file(file))) {
        const auto r = json::parse(line);
        CHECK(r.at("verified") == "secret+HS256");
        CHECK(r.at("hook").at("event") == r.at("event"));
      }
    }
    CHECK(read_file(bash_out).size() == read_file(python_out).size());
    // One process per sink for the 60 events, still running.
    const auto log = rx.stderr_text();
    CHECK(occurrences(log, R"("msg":"stream process started")") == 2);
    CHECK(occurrences(log, R"("msg":"stream process ended")") == 0);
    CHECK(occurrences(log, R"("msg":"delivery failed)") == 0);
    CHECK(log.find(receiver_secret) == std::string::npos);
  }

  TEST_CASE("a fail acknowledgement fails that delivery with its reason; the retry delivers once") {
    TempDir dir;
    const auto state = dir / "state";
    std::filesystem::create_directory(state);
    const std::string sink =
        "exec-stream:" + test_script("stream-fail-first.sh") + " " + state.string();
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink}));
    REQUIRE(rx.wait_listening());
    const auto ids = post_events(rx.port(), 20);
    const bool delivered = poll_until([&] { return has_each_once(state / "records", ids); }, 60s);
    INFO("receiver log: " << rx.stderr_text());
    REQUIRE(delivered);
    for (const auto& id : ids) CHECK(std::filesystem::exists(state / ("seen." + id)));
    // Each delivery failed once, with the consumer's reason, and was retried.
    REQUIRE(poll_until(
        [&] { return occurrences(rx.stderr_text(), R"("error":"not ready yet")") >= ids.size(); }));
    const auto log = rx.stderr_text();
    CHECK(occurrences(log, R"("msg":"delivery failed, will retry")") == ids.size());
    CHECK(occurrences(log, R"("error":"not ready yet")") == ids.size());
    CHECK(occurrences(log, R"("msg":"stream process started")") == 1);
  }

  TEST_CASE("a consumer killed in the middle of the stream is restarted and loses nothing") {
    TempDir dir;
    const auto state = dir / "state";
    std::filesystem::create_directory(state);
    const std::string sink =
        "exec-stream:" + test_script("stream-die-once.sh") + " " + state.string() + " 5";
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink}));
    REQUIRE(rx.wait_listening());
    const auto ids = post_events(rx.port(), 30);
    // The record it took and never acknowledged is delivered again, by the next process; every
    // acknowledged record is there exactly once.
    const auto settled = [&] {
      const std::string crashed = read_if_exists(state / "died");
      if (crashed.empty()) return false;
      const auto counts = id_counts(state / "records");
      if (counts.size() != ids.size()) return false;
      return std::all_of(counts.begin(), counts.end(), [&](const auto& c) {
        return ids.count(c.first) == 1 && c.second == (c.first == crashed ? 2 : 1);
      });
    };
    const bool done = poll_until(settled, 60s);
    INFO("receiver log: " << rx.stderr_text());
    INFO("crashed on: " << read_if_exists(state / "died"));
    std::string counts;
    for (const auto& [id, n] : id_counts(state / "records"))
      counts += id + " x" + std::to_string(n) + "\n";
    INFO("records:\n" << counts);
    REQUIRE(done);
    const auto pids = lines_of(read_file(state / "pids"));
    REQUIRE(pids.size() == 2);
    CHECK(pids[0] != pids[1]);
    CHECK_FALSE(alive(std::stoi(pids[0])));
    // The crash failed the deliveries it left unacknowledged, with the way it ended.
    CHECK(rx.stderr_text().find(R"("error":"stream process killed by signal 9")") !=
          std::string::npos);
    // The dead one was reaped: the receiver's only child is the new consumer.
    const auto children = children_of(rx.pid());
    REQUIRE(children.size() == 1);
    CHECK(children[0].pid == std::stoi(pids[1]));
    CHECK(children[0].state != 'Z');
  }

  TEST_CASE("a consumer that stops acknowledging is killed with its group at the exec timeout") {
    TempDir dir;
    const auto state = dir / "state";
    std::filesystem::create_directory(state);
    const std::string sink =
        "exec-stream:" + test_script("stream-hang-once.sh") + " " + state.string();
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink, "--exec-timeout", "1s"}));
    REQUIRE(rx.wait_listening());
    const auto ids = post_events(rx.port(), 5);
    const bool delivered = poll_until([&] { return has_each_once(state / "records", ids); }, 60s);
    INFO("receiver log: " << rx.stderr_text());
    REQUIRE(delivered);
    const auto log = rx.stderr_text();
    CHECK(log.find(R"("msg":"stream process hung; ending its process group")") !=
          std::string::npos);
    CHECK(log.find(R"("error":"no acknowledgement within 1s")") != std::string::npos);
    const auto pids = lines_of(read_file(state / "pids"));
    REQUIRE(pids.size() == 2);
    const pid_t hung = std::stoi(pids[0]);
    const pid_t sleeper = std::stoi(read_file(state / "sleep.pid"));
    CHECK_FALSE(alive(hung));
    CHECK_FALSE(alive(sleeper));  // its child went with the group
    CHECK(live_group_members(hung).empty());
  }

  TEST_CASE("stopping the receiver ends the consumer through end of input and leaves no process") {
    TempDir dir;
    const auto out = dir / "events.ndjson";
    const std::string sink =
        "exec-stream:" + sample_script("stream-consumer.sh") + " " + out.string();
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink}));
    REQUIRE(rx.wait_listening());
    const auto ids = post_events(rx.port(), 3);
    REQUIRE(poll_until([&] { return has_each_once(out, ids); }, 30s));
    const auto children = children_of(rx.pid());
    REQUIRE(children.size() == 1);
    const pid_t consumer = children[0].pid;
    CHECK(children[0].pgrp == consumer);  // its own process group
    rx.signal(SIGTERM);
    REQUIRE(rx.wait_exit(30s) == 0);
    INFO("receiver log: " << rx.stderr_text());
    CHECK_FALSE(alive(consumer));
    CHECK(live_group_members(consumer).empty());
    // It exited by itself on end of input, not by a signal.
    CHECK(rx.stderr_text().find(
              R"("why":"stopping","status":"stream process exited with status 0")") !=
          std::string::npos);
  }

  TEST_CASE("a consumer that ignores end of input and SIGTERM is killed at stop, within bounds") {
    TempDir dir;
    const auto out = dir / "events.ndjson";
    // Acknowledges, then outlives its input with SIGTERM ignored (inherited by its sleep).
    const std::string sink = "exec-stream:trap '' TERM; " + sample_script("stream-consumer.sh") +
                             " " + out.string() + "; sleep 600";
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink}));
    REQUIRE(rx.wait_listening());
    const auto ids = post_events(rx.port(), 2);
    REQUIRE(poll_until([&] { return has_each_once(out, ids); }, 30s));
    const auto children = children_of(rx.pid());
    REQUIRE(children.size() == 1);
    const pid_t consumer = children[0].pid;
    const auto stopping = std::chrono::steady_clock::now();
    rx.signal(SIGTERM);
    REQUIRE(rx.wait_exit(30s) == 0);
    INFO("receiver log: " << rx.stderr_text());
    // Two seconds to exit after end of input, two after SIGTERM: then SIGKILL.
    CHECK(std::chrono::steady_clock::now() - stopping < 15s);
    CHECK(live_group_members(consumer).empty());
    CHECK(rx.stderr_text().find(R"("status":"stream process killed by signal 9")") !=
          std::string::npos);
  }

  TEST_CASE("a batch far larger than a pipe streams through the python sample, each record once") {
    DispatchFixture f;
    const auto out = f.dir / "events.ndjson";
    const std::string command =
        "python3 " + sample_script("stream-consumer.py") + " " + out.string();
    const std::string name = "exec-stream:" + command;
    std::vector<std::string> records;
    const std::string filler(16 * 1024, 'x');
    for (int i = 0; i < 300; ++i) {
      const std::string id = "big-" + std::to_string(i);
      records.push_back(
          record(id, R"({"n":)" + std::to_string(i) + R"(,"note":")" + filler + R"("})"));
      f.put_record(id, "lead.create", records.back(), {name});
    }
    f.start({stream_sink(command)});
    const bool delivered =
        eventually([&] { return f.count(name, DeliveryState::delivered) == 300; }, 60s);
    INFO("receiver log: " << f.log_text());
    REQUIRE(delivered);
    auto got = lines_of(read_file(out));
    std::sort(got.begin(), got.end());
    std::sort(records.begin(), records.end());
    CHECK(got == records);
    CHECK(occurrences(f.log_text(), R"("msg":"stream process started")") == 1);
  }

  TEST_CASE("acknowledgements count in any order; noise on stdout and stderr is logged bounded") {
    DispatchFixture f;
    const std::string command = test_script("stream-noisy.sh") + " " + f.dir.path().string();
    const std::string name = "exec-stream:" + command;
    // Each record is echoed back on stdout: far more than a pipe holds, so the receiver must
    // read while it writes. The marker must never reach the log.
    const std::string marker = "payload-marker-" + std::string(12 * 1024, 'p');
    std::set<std::string> ids;
    for (int i = 0; i < 40; ++i) {  // one batch, an even count: the consumer acks in pairs
      const std::string id = "noisy-" + std::to_string(i);
      ids.insert(id);
      f.put_record(id, "lead.create", record(id, R"({"m":")" + marker + R"("})"), {name});
    }
    f.start({stream_sink(command)});
    const bool delivered =
        eventually([&] { return f.count(name, DeliveryState::delivered) == 40; }, 60s);
    const auto log = f.log_text();
    INFO("receiver log (cut): " << log.substr(0, 20000));
    REQUIRE(delivered);
    CHECK(has_each_once(f.dir / "records", ids));
    CHECK(log.find("payload-marker") == std::string::npos);
    CHECK(log.find(R"("msg":"stream: a line that is not an acknowledgement, ignored")") !=
          std::string::npos);
    CHECK(log.find(R"("msg":"stream: acknowledgement of no waiting delivery, ignored")") !=
          std::string::npos);
    CHECK(log.find(R"("delivery_id":"no-such-delivery-id")") != std::string::npos);
    CHECK(log.find(R"("msg":"stream: lines ignored in this batch")") != std::string::npos);
    // Stderr lines are logged, cut at 4 KiB.
    REQUIRE(occurrences(log, R"("msg":"stream process stderr")") >= 1);
    CHECK(log.find(R"("line_truncated":true)") != std::string::npos);
    CHECK(log.find(std::string(4096, 'e')) != std::string::npos);
    CHECK(log.find(std::string(4097, 'e')) == std::string::npos);
    CHECK(occurrences(log, R"("msg":"delivery failed)") == 0);
  }

  TEST_CASE("a consumer that dies at once fails deliveries with its status and restarts slower") {
    DispatchFixture f;
    const std::string command = "echo 'cannot connect to the CRM' >&2; exit 3";
    const std::string name = "exec-stream:" + command;
    SinkConfig config = stream_sink(command);
    config.retry_max = 4;
    f.put_record("doomed", "lead.create", record("doomed", "{}"), {name});
    f.start({config});
    const bool dead = eventually([&] { return f.count(name, DeliveryState::dead) == 1; }, 30s);
    const auto log = f.log_text();
    INFO("receiver log: " << log);
    REQUIRE(dead);
    CHECK(f.info("doomed", name).attempts == 4);
    CHECK(f.info("doomed", name).last_error == "stream process exited with status 3");
    CHECK(occurrences(log, R"("msg":"stream process started")") == 4);
    CHECK(occurrences(log, R"("line":"cannot connect to the CRM")") == 4);
    // The pause before each restart doubles while nothing gets acknowledged.
    for (const char* pause :
         {R"("restart_in_ms":100)", R"("restart_in_ms":200)", R"("restart_in_ms":400)"}) {
      CHECK_MESSAGE(log.find(pause) != std::string::npos, pause);
    }
  }

  TEST_CASE("the stream process gets the exec environment and none of the receiver's secrets") {
    DispatchFixture f;
    setenv("TDHOOK_SECRETS", "receiver-secret-value", 1);
    setenv("TDHOOK_STREAM_FILE", (f.dir / "events.ndjson").string().c_str(), 1);
    const std::string command =
        "env > " + (f.dir / "env").string() + "; exec " + sample_script("stream-consumer.sh");
    const std::string name = "exec-stream:" + command;
    SinkConfig config = stream_sink(command);
    config.pass_env = {"TDHOOK_STREAM_FILE"};
    f.put_record("env-1", "lead.create", record("env-1", "{}"), {name});
    f.start({config});
    const bool delivered = eventually([&] { return f.count(name, DeliveryState::delivered) == 1; });
    unsetenv("TDHOOK_SECRETS");
    unsetenv("TDHOOK_STREAM_FILE");
    INFO("receiver log: " << f.log_text());
    REQUIRE(delivered);
    const std::string env = read_file(f.dir / "env");
    CHECK(env.find("receiver-secret-value") == std::string::npos);
    CHECK(env.find("TDHOOK_SECRETS") == std::string::npos);
    CHECK(env.find("TDHOOK_STREAM_FILE=" + (f.dir / "events.ndjson").string() + "\n") !=
          std::string::npos);
    CHECK(env.find("PATH=") != std::string::npos);
    CHECK(has_each_once(f.dir / "events.ndjson", {"env-1"}));
  }
}

}  // namespace tdhook::test
