#include "delivery/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "doctest/doctest.h"
#include "support/files.hpp"

using namespace std::chrono_literals;
using tdhook::receiver::build_environment;
using tdhook::receiver::ProcessOptions;
using tdhook::receiver::ProcessResult;
using tdhook::receiver::run_process;
using tdhook::test::read_file;
using tdhook::test::TempDir;

namespace {

ProcessResult run(const std::string& command, const std::string& input = {},
                  std::chrono::milliseconds timeout = 10s) {
  ProcessOptions options;
  options.command = command;
  options.input = input;
  options.timeout = timeout;
  options.environment = build_environment({}, {});
  auto result = run_process(options);
  REQUIRE(result.ok());
  return *result;
}

// Gone, or a zombie waiting for a parent that does not reap (PID 1 in some containers): either
// way the process no longer runs.
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && line.size() > close_paren + 2 &&
         line[close_paren + 2] == 'Z';
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);  // polling interval, not a wait for an event
  }
  return condition();
}

long max_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

}  // namespace

TEST_SUITE("process") {
  TEST_CASE("a command reads its input on stdin and its exit status is reported") {
    const auto r = run("cat; exit 3", "hello\nworld\n");
    CHECK(r.output == "hello\nworld\n");
    CHECK(r.exit_status == 3);
    CHECK_FALSE(r.ok());
    CHECK(r.describe(10s) == "exit status 3");
    CHECK(run("true").ok());
    CHECK(run("true").describe(10s).empty());
  }

  TEST_CASE("stdout and stderr are both captured") {
    const auto r = run("echo out; echo err >&2");
    CHECK(r.output == "out\nerr\n");
    CHECK(r.output_bytes == 8);
  }

  TEST_CASE("a command killed by a signal is reported as such") {
    const auto r = run("kill -9 $$");
    CHECK(r.term_signal == 9);
    CHECK(r.describe(10s) == "killed by signal 9");
  }

  TEST_CASE("a path and plain words run without a shell; anything else goes through /bin/sh") {
    // Direct: the program is the process we started, a child of ours; its words arrive as-is.
    const auto direct = run("/bin/cat /proc/self/stat");
    std::istringstream fields(direct.output);
    std::string pid, name, state, ppid;
    fields >> pid >> name >> state >> ppid;
    CHECK(pid == std::to_string(direct.pid));
    CHECK(ppid == std::to_string(::getpid()));
    CHECK(name == "(cat)");
    CHECK(run("/bin/echo a=b --x=1,2 @x:y%z").output == "a=b --x=1,2 @x:y%z\n");
    // Through the shell: the command we started is sh, and cat is its child.
    const auto shell = run("/bin/cat /proc/self/stat | /bin/cat");
    std::istringstream shell_fields(shell.output);
    shell_fields >> pid >> name >> state >> ppid;
    CHECK(pid != std::to_string(shell.pid));
    CHECK(run("/bin/echo $((1 + 2)) ~nobody-here*").output.starts_with("3 "));
    CHECK(run("X=1 /bin/sh -c 'echo $X'").output == "1\n");
    CHECK(run("echo builtin").output == "builtin\n");  // no '/': the shell's own echo
    // A script without a #! line is run by the shell, as before.
    TempDir dir;
    const auto script = dir / "no-shebang";
    {
      std::ofstream out(script);
      out << "echo ran without shebang; exit 4\n";
    }
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    const auto r = run(script.string());
    CHECK(r.output == "ran without shebang\n");
    CHECK(r.exit_status == 4);
    // A missing program is a failure to start, not a crash.
    ProcessOptions missing;
    missing.command = (dir / "missing").string() + " arg";
    missing.environment = build_environment({}, {});
    const auto not_there = run_process(missing);
    CHECK_FALSE(not_there.ok());
  }

  TEST_CASE("input with shell metacharacters reaches the script verbatim and is never run") {
    TempDir dir;
    const std::string marker = (dir / "executed").string();
    const std::string payload = "{\"a\":\"$(touch " + marker + ")\",\"b\":\"`touch " + marker +
                                "`\",\"c\":\"'\\\"; touch " + marker + "; echo \\\"\"}\nline 2\n";
    ProcessOptions options;
    options.command = "cat > \"$OUT\"; printf '%s' \"$TDHOOK_EVENT\" > \"$OUT.env\"";
    options.input = payload;
    options.environment = build_environment(
        {}, {"OUT=" + (dir / "got").string(), "TDHOOK_EVENT=$(touch " + marker + ")`id`"});
    auto r = run_process(options);
    REQUIRE(r.ok());
    CHECK(r->ok());
    CHECK(read_file(dir / "got") == payload);
    CHECK(read_file(dir / "got.env") == "$(touch " + marker + ")`id`");
    CHECK_FALSE(std::filesystem::exists(marker));
  }

  TEST_CASE("a script that sleeps forever is killed with its children at the timeout") {
    TempDir dir;
    const std::string pid_file = (dir / "child.pid").string();
    SUBCASE("the script and its child take SIGTERM") {
      const auto r = run("sleep 1000 & echo $! > " + pid_file + "; sleep 1000", {}, 300ms);
      CHECK(r.timed_out);
      CHECK(r.describe(300ms) == "timeout after 0.3s");
      const auto child = static_cast<pid_t>(std::stol(read_file(pid_file)));
      CHECK(eventually([&] { return process_gone(child); }));
      CHECK(process_gone(r.pid));
    }
    SUBCASE("a script that ignores SIGTERM gets SIGKILL after the grace") {
      ProcessOptions options;
      options.command = "trap '' TERM; sleep 1000 & echo $! > " + pid_file + "; wait";
      options.timeout = 200ms;
      options.kill_grace = 200ms;
      options.environment = build_environment({}, {});
      const auto started = std::chrono::steady_clock::now();
      auto r = run_process(options);
      REQUIRE(r.ok());
      CHECK(r->timed_out);
      CHECK(r->describe(options.timeout) == "timeout after 0.2s");
      CHECK(std::chrono::steady_clock::now() - started < 5s);
      const auto child = static_cast<pid_t>(std::stol(read_file(pid_file)));
      CHECK(eventually([&] { return process_gone(child); }));
    }
  }

  TEST_CASE("a script printing 100 MB keeps only the output limit in memory") {
    const long rss_before = max_rss_kib();
    ProcessOptions options;
    options.command = "head -c 100000000 /dev/zero";
    options.output_limit = 4096;
    options.environment = build_environment({}, {});
    auto r = run_process(options);
    REQUIRE(r.ok());
    CHECK(r->ok());
    CHECK(r->output.size() == 4096);
    CHECK(r->output_bytes == 100000000);
    CHECK(max_rss_kib() - rss_before < 32 * 1024);
  }

  TEST_CASE("a script that exits without reading a large input is not an error of ours") {
    const auto r = run("exit 0", std::string(4 * 1024 * 1024, 'x'));
    CHECK(r.ok());
  }

  TEST_CASE("the child environment holds only the allow-list, pass-env names and extras") {
    setenv("TDHOOK_SECRETS", "top-secret-value", 1);
    setenv("TDHOOK_TEST_PASSED", "passed-value", 1);
    ProcessOptions options;
    options.command = "env";
    options.environment = build_environment({"TDHOOK_TEST_PASSED", "NOT_SET_ANYWHERE"},
                                            {"TDHOOK_EVENT=lead.create", "PATH=/bin"});
    auto r = run_process(options);
    unsetenv("TDHOOK_SECRETS");
    unsetenv("TDHOOK_TEST_PASSED");
    REQUIRE(r.ok());
    CHECK(r->output.find("top-secret-value") == std::string::npos);
    CHECK(r->output.find("TDHOOK_TEST_PASSED=passed-value\n") != std::string::npos);
    CHECK(r->output.find("TDHOOK_EVENT=lead.create\n") != std::string::npos);
    CHECK(r->output.find("PATH=/bin\n") != std::string::npos);
    const std::set<std::string> allowed = {
        "PATH",         "HOME", "LANG",  "TZ", "TDHOOK_TEST_PASSED",
        "TDHOOK_EVENT", "PWD",  "SHLVL", "_",  "OLDPWD"};
    std::istringstream lines(r->output);
    for (std::string line; std::getline(lines, line);) {
      CHECK_MESSAGE(allowed.count(line.substr(0, line.find('='))) == 1, line);
    }
  }

  TEST_CASE("the child inherits no file descriptor of ours but its stdio") {
    // Deliberately without O_CLOEXEC, and high enough not to collide with a directory fd of ls.
    const int opened = ::open("/dev/null", O_RDONLY);
    REQUIRE(opened >= 0);
    const int leaked = fcntl(opened, F_DUPFD, 50);
    ::close(opened);
    REQUIRE(leaked >= 50);
    const auto r = run("ls /proc/$$/fd");
    ::close(leaked);
    std::istringstream names(r.output);
    std::set<std::string> fds;
    for (std::string fd; names >> fd;) fds.insert(fd);
    CHECK(fds.count(std::to_string(leaked)) == 0);
    CHECK(fds.count("0") == 1);
  }

  TEST_CASE("the child leads its own process group") {
    const auto r = run("cut -d' ' -f5 /proc/$$/stat");
    CHECK(r.output == std::to_string(r.pid) + "\n");
  }
}
