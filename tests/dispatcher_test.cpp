#include "delivery/dispatcher.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "doctest/doctest.h"
#include "support/dispatch_fixture.hpp"
#include "support/files.hpp"

using namespace std::chrono_literals;
using tdhook::receiver::DeliveryState;
using tdhook::receiver::parse_sink_spec;
using tdhook::receiver::SinkConfig;
using tdhook::test::DispatchFixture;
using tdhook::test::eventually;
using tdhook::test::read_file;
using tdhook::test::source_dir;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

SinkConfig sink(const std::string& spec) {
  auto config = parse_sink_spec(spec);
  REQUIRE(config.ok());
  config->retry_base = 10ms;
  return *config;
}

std::string script(const std::string& name) {
  return "sh " + (source_dir() / "tests" / "scripts" / name).string();
}

// Puts `runs` events for barrier.sh, which fails every run that does not find `runs` runs started
// at once, and expects all of them delivered: the sink ran that many scripts side by side.
// `configure` adjusts (or checks) the sink's configuration first.
void expect_runs_at_once(int runs, const std::function<void(SinkConfig&)>& configure) {
  DispatchFixture f;
  const std::string name =
      "exec:" + script("barrier.sh") + " " + f.dir.path().string() + " " + std::to_string(runs);
  SinkConfig config = sink(name);
  configure(config);
  config.retry_max = 1;  // a run that did not see the others at once is dead at once
  for (int i = 0; i < runs; ++i) f.put("ev-" + std::to_string(i), {name});
  f.start({config});
  const bool delivered =
      eventually([&] { return f.count(name, DeliveryState::delivered) == runs; }, 10s);
  INFO("receiver log: " << f.log_text());
  REQUIRE(delivered);
  CHECK(f.count(name, DeliveryState::dead) == 0);
}

}  // namespace

TEST_SUITE("dispatcher") {
  TEST_CASE("sink specs are parsed, and bad ones refused with a reason") {
    SUBCASE("stdout") { CHECK(parse_sink_spec("stdout")->name == "stdout"); }
    SUBCASE("file") { CHECK(parse_sink_spec("file:/tmp/x.ndjson")->spec == "file:/tmp/x.ndjson"); }
    SUBCASE("exec") { CHECK(parse_sink_spec("exec:./x.sh --flag")->name == "exec:./x.sh --flag"); }
    SUBCASE("file without a path") {
      CHECK(parse_sink_spec("file:").error().code == tdhook::ErrorCode::invalid_config);
    }
    SUBCASE("exec without a command") { CHECK_FALSE(parse_sink_spec("exec:  ").ok()); }
    SUBCASE("exec-stream") { CHECK(parse_sink_spec("exec-stream:./x")->name == "exec-stream:./x"); }
    SUBCASE("unknown kind") { CHECK_FALSE(parse_sink_spec("redis:localhost").ok()); }
  }

  TEST_CASE("start refuses two sinks with one name and a file that cannot be opened") {
    DispatchFixture f;
    SUBCASE("duplicate name") { CHECK_FALSE(f.try_start({sink("stdout"), sink("stdout")}).ok()); }
    SUBCASE("missing directory") {
      const auto r = f.try_start({sink("file:" + (f.dir / "no/such/dir/x.ndjson").string())});
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().detail.find("No such file") != std::string::npos);
    }
  }

  TEST_CASE("records reach the file sink exactly once, in arrival order, one per line") {
    DispatchFixture f;
    const std::string path = (f.dir / "events.ndjson").string();
    const std::string name = "file:" + path;
    std::vector<std::string> records;
    for (int i = 0; i < 10; ++i) records.push_back(f.put("early-" + std::to_string(i), {name}));
    auto& d = f.start({sink(name)});
    for (int i = 0; i < 90; ++i) records.push_back(f.put("late-" + std::to_string(i), {name}));
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 100; }));
    d.stop();
    CHECK(lines_of(read_file(path)) == records);
    CHECK(f.metrics.render().find(R"(tdhook_deliveries_total{sink=")" + name +
                                  R"(",outcome="delivered"} 100)") != std::string::npos);
    CHECK(f.metrics.render().find(R"(tdhook_delivery_latency_seconds_count{sink=")" + name +
                                  R"("} 100)") != std::string::npos);
  }

  TEST_CASE("a file left ending in a cut record (a crash) gets its next record on a new line") {
    DispatchFixture f;
    const std::string path = (f.dir / "events.ndjson").string();
    const std::string name = "file:" + path;
    tdhook::test::write_file(path, "{\"id\":\"whole\"}\n{\"id\":\"cut sh");
    const std::string record = f.put("after-crash", {name});
    auto& d = f.start({sink(name)});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 1; }));
    d.stop();
    CHECK(read_file(path) == "{\"id\":\"whole\"}\n{\"id\":\"cut sh\n" + record + "\n");
  }

  TEST_CASE("records reach the stdout sink exactly once, one per line") {
    DispatchFixture f;
    const std::string captured = (f.dir / "stdout").string();
    std::vector<std::string> records;
    for (int i = 0; i < 20; ++i) records.push_back(f.put("ev-" + std::to_string(i), {"stdout"}));
    std::cout.flush();
    std::fflush(stdout);
    const int saved = dup(1);
    const int out = ::open(captured.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(out >= 0);
    dup2(out, 1);
    auto& d = f.start({sink("stdout")});
    const bool delivered =
        eventually([&] { return f.count("stdout", DeliveryState::delivered) == 20; });
    d.stop();
    dup2(saved, 1);
    ::close(saved);
    ::close(out);
    REQUIRE(delivered);
    CHECK(lines_of(read_file(captured)) == records);
  }

  TEST_CASE("a file sink reopened after a rename (logrotate) writes to the new file") {
    DispatchFixture f;
    const std::string path = (f.dir / "events.ndjson").string();
    const std::string name = "file:" + path;
    auto& d = f.start({sink(name)});
    const std::string first = f.put("first", {name});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 1; }));
    std::filesystem::rename(path, path + ".rotated");
    d.reopen_files();
    const std::string second = f.put("second", {name});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 2; }));
    CHECK(read_file(path + ".rotated") == first + "\n");
    CHECK(read_file(path) == second + "\n");
  }

  TEST_CASE("a file sink rotates by size and keeps every record exactly once") {
    DispatchFixture f;
    const std::string path = (f.dir / "events.ndjson").string();
    const std::string name = "file:" + path;
    std::vector<std::string> records;
    for (int i = 0; i < 9; ++i) records.push_back(f.put("ev-" + std::to_string(i), {name}));
    SinkConfig config = sink(name);
    config.file_max_bytes = 3 * (records[0].size() + 1);  // three lines per file
    f.start({config});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 9; }));
    // Oldest first: .2, .1, then the live file.
    std::vector<std::string> all;
    for (const auto& file : {path + ".2", path + ".1", path}) {
      const std::string content = read_file(file);
      CHECK(content.size() <= config.file_max_bytes);
      for (auto& line : lines_of(content)) all.push_back(line);
    }
    CHECK(all == records);
    CHECK_FALSE(std::filesystem::exists(path + ".3"));
  }

  TEST_CASE("a file sink that cannot write retries, then dead-letters, and does not crash") {
    DispatchFixture f;
    const std::string name = "file:/dev/full";
    SinkConfig config = sink(name);
    config.retry_max = 3;
    const std::string id = "full";
    f.put(id, {name});
    f.start({config});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::dead) == 1; }));
    const auto info = f.info(id, name);
    CHECK(info.attempts == 3);
    CHECK(info.last_error.find("No space left on device") != std::string::npos);
    CHECK(f.metrics.render().find(R"(outcome="retried"} 2)") != std::string::npos);
    CHECK(f.metrics.render().find(R"(outcome="dead"} 1)") != std::string::npos);
  }

  TEST_CASE("a script that fails twice and then succeeds delivers once, at the third attempt") {
    DispatchFixture f;
    const std::string name = "exec:" + script("fail-twice.sh") + " " + f.dir.path().string();
    const std::string record = f.put("lead-1", {name});
    f.start({sink(name)});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 1; }));
    CHECK(read_file(f.dir / "record") == record + "\n");
    CHECK(read_file(f.dir / "attempt") == "3\n");
    CHECK(read_file(f.dir / "count") == "3\n");
    const auto details = f.spool->show("lead-1");
    REQUIRE(details.ok());
    REQUIRE(details->attempts.size() == 3);
    CHECK(details->attempts[0].second.error == "exit status 1");
    CHECK_FALSE(details->attempts[1].second.ok);
    CHECK(details->attempts[2].second.ok);
    CHECK(f.log_text().find("fail-twice: failing on run 2") != std::string::npos);
  }

  TEST_CASE(
      "a script that always fails ends dead with its exit status; fixed and retried, it delivers "
      "once") {
    DispatchFixture f;
    const std::string name = "exec:" + script("fail-until-fixed.sh") + " " + f.dir.path().string();
    SinkConfig config = sink(name);
    config.retry_max = 3;
    const std::string record = f.put("lead-2", {name});
    auto& d = f.start({config});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::dead) == 1; }));
    CHECK(f.info("lead-2", name).last_error == "exit status 7");
    CHECK(f.info("lead-2", name).attempts == 3);

    tdhook::test::write_file(f.dir / "fixed", "");
    REQUIRE(f.spool->retry(std::string("lead-2"), false).ok());
    d.wake();
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 1; }));
    CHECK(read_file(f.dir / "records") == record + "\n");
  }

  TEST_CASE("a script that outlives the exec timeout is killed and the attempt fails") {
    DispatchFixture f;
    const std::string name = "exec:sleep 1000";
    SinkConfig config = sink(name);
    config.retry_max = 1;
    config.exec_timeout = 200ms;
    f.put("slow", {name});
    const auto started = std::chrono::steady_clock::now();
    f.start({config});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::dead) == 1; }));
    CHECK(std::chrono::steady_clock::now() - started < 5s);
    CHECK(f.info("slow", name).last_error == "timeout after 0.2s");
  }

  TEST_CASE("exec_concurrency 1 hands events to the script in arrival order") {
    DispatchFixture f;
    const std::string out = (f.dir / "order").string();
    const std::string name = "exec:printf '%s\\n' \"$TDHOOK_DELIVERY_ID\" >> " + out;
    std::vector<std::string> ids;
    for (int i = 0; i < 8; ++i) {
      ids.push_back("ev-" + std::to_string(i));
      f.put(ids.back(), {name});
    }
    SinkConfig config = sink(name);
    config.exec_concurrency = 1;
    f.start({config});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 8; }));
    CHECK(lines_of(read_file(out)) == ids);
  }

  TEST_CASE("by default an exec sink runs eight scripts at once") {
    expect_runs_at_once(8, [](SinkConfig& config) { CHECK(config.exec_concurrency == 8); });
  }

  TEST_CASE("exec_concurrency leaves file and exec-stream sinks alone: in arrival order") {
    DispatchFixture f;
    const std::string path = (f.dir / "events.ndjson").string();
    const std::string file_name = "file:" + path;
    const std::string stream_out = (f.dir / "stream.ndjson").string();
    const std::string stream_name =
        "exec-stream:python3 " +
        (source_dir() / "samples" / "scripts" / "stream-consumer.py").string() + " " + stream_out;
    std::vector<std::string> records;
    for (int i = 0; i < 200; ++i) {
      records.push_back(f.put("ev-" + std::to_string(i), {file_name, stream_name}));
    }
    SinkConfig file = sink(file_name);
    SinkConfig stream = sink(stream_name);
    file.exec_concurrency = stream.exec_concurrency = 32;
    auto& d = f.start({file, stream});
    REQUIRE(eventually(
        [&] {
          return f.count(file_name, DeliveryState::delivered) == 200 &&
                 f.count(stream_name, DeliveryState::delivered) == 200;
        },
        20s));
    d.stop();
    CHECK(lines_of(read_file(path)) == records);
    CHECK(lines_of(read_file(stream_out)) == records);
  }

  TEST_CASE("exec_concurrency 3 runs three scripts at once") {
    expect_runs_at_once(3, [](SinkConfig& config) { config.exec_concurrency = 3; });
  }

  TEST_CASE("stop lets the running script finish and leaves the rest pending") {
    DispatchFixture f;
    const std::string started = (f.dir / "started").string();
    const std::string name = "exec:touch " + started + "; sleep 0.3";
    for (int i = 0; i < 3; ++i) f.put("ev-" + std::to_string(i), {name});
    SinkConfig config = sink(name);
    config.exec_concurrency = 1;
    auto& d = f.start({config});
    REQUIRE(eventually([&] { return std::filesystem::exists(started); }));
    d.stop();
    CHECK(f.count(name, DeliveryState::delivered) == 1);
    CHECK(f.count(name, DeliveryState::pending) == 2);
  }

  TEST_CASE("the script gets the TDHOOK variables and none of the receiver's secrets") {
    DispatchFixture f;
    setenv("TDHOOK_SECRETS", "receiver-secret-value", 1);
    setenv("TDHOOK_TEST_PASS", "passed-on", 1);
    const std::string name = "exec:env > " + (f.dir / "env").string();
    SinkConfig config = sink(name);
    config.pass_env = {"TDHOOK_TEST_PASS"};
    f.put("env-1", {name});
    f.start({config});
    const bool delivered = eventually([&] { return f.count(name, DeliveryState::delivered) == 1; });
    unsetenv("TDHOOK_SECRETS");
    unsetenv("TDHOOK_TEST_PASS");
    REQUIRE(delivered);
    const std::string env = read_file(f.dir / "env");
    CHECK(env.find("receiver-secret-value") == std::string::npos);
    CHECK(env.find("TDHOOK_SECRETS") == std::string::npos);
    for (const char* expected :
         {"TDHOOK_TEST_PASS=passed-on\n", "TDHOOK_EVENT=lead.create\n",
          "TDHOOK_DELIVERY_ID=env-1\n", "TDHOOK_PROJECT_ID=65533a0cb7e1c3d9503a10f1\n",
          "TDHOOK_SUBSCRIPTION_ID=65ae3debc91f04aa2e3a1109\n", "TDHOOK_TIMESTAMP=1707142867470\n",
          "TDHOOK_ATTEMPT=1\n"}) {
      CHECK_MESSAGE(env.find(expected) != std::string::npos, expected);
    }
  }

  TEST_CASE("a record full of shell metacharacters reaches the script verbatim, never executed") {
    DispatchFixture f;
    const std::string marker = (f.dir / "executed").string();
    const std::string name = "exec:cat > " + (f.dir / "got").string();
    const nlohmann::json payload = {
        {"text", "$(touch " + marker + ") `touch " + marker + "` '\"; touch " + marker + "; \""},
        {"lines", "one\ntwo\r\nthree"},
        {"dollar", "${HOME} $0 $$ \\ %s %n"}};
    const std::string record = f.put("meta-1", {name}, payload.dump(), "lead.create");
    f.start({sink(name)});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 1; }));
    CHECK(read_file(f.dir / "got") == record + "\n");
    CHECK_FALSE(std::filesystem::exists(marker));
  }

  TEST_CASE("a script printing 100 MB is delivered and only a bounded part reaches the log") {
    DispatchFixture f;
    const std::string name = "exec:head -c 100000000 /dev/zero | tr '\\0' x";
    SinkConfig config = sink(name);
    config.exec_output_limit = 1024;
    f.put("loud", {name});
    f.start({config});
    REQUIRE(eventually([&] { return f.count(name, DeliveryState::delivered) == 1; }, 30s));
    const std::string log = f.log_text();
    CHECK(log.find(R"("output_bytes":100000000)") != std::string::npos);
    CHECK(log.find(R"("output_truncated":true)") != std::string::npos);
    CHECK(log.find(std::string(1024, 'x')) != std::string::npos);
    CHECK(log.find(std::string(1025, 'x')) == std::string::npos);
  }
}
