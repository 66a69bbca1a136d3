// The samples of samples/scripts and samples/config, exercised: jq one-liners, the systemd unit.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <sstream>

#include "store/record.hpp"
#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "tdhook/event.hpp"

using namespace tdhook::test;

namespace {

// The commands of the ```sh blocks: each starts at a comment line, continuation lines joined.
// Commands that start a receiver are left out (they need a live one).
std::vector<std::string> jq_commands(const std::string& markdown) {
  std::vector<std::string> out;
  std::istringstream in(markdown);
  std::string line, current;
  bool in_block = false;
  auto flush = [&] {
    if (!current.empty() && current.find("tdhook-receiver") == std::string::npos)
      out.push_back(current);
    current.clear();
  };
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      flush();
      in_block = line == "```sh";
      continue;
    }
    if (!in_block) continue;
    if (line.rfind("#", 0) == 0) {
      flush();
      continue;
    }
    if (!line.empty()) current += line + "\n";
  }
  flush();
  return out;
}

}  // namespace

TEST_SUITE("samples") {
  TEST_CASE("every jq command of jq-examples.md runs on real records") {
    TempDir dir;
    std::string records;
    int n = 0;
    for (const auto& name : sample_event_names()) {
      auto event = tdhook::Event::parse(sign_sample(name, receiver_secret, epoch_ms()));
      REQUIRE(event.ok());
      const std::string id = "00000000-0000-4000-8000-" + std::to_string(100000000000 + n++);
      records +=
          tdhook::receiver::build_record(*event, {id, epoch_ms(), "secret+HS256", false}) + "\n";
    }
    write_file(dir / "events.ndjson", records);
    const auto commands = jq_commands(read_file(source_dir() / "samples/scripts/jq-examples.md"));
    REQUIRE(commands.size() >= 5);
    for (const auto& command : commands) {
      CAPTURE(command);
      write_file(dir / "cmd.sh", "set -eo pipefail\ncd '" + dir.path().string() + "'\n" + command);
      const int status = std::system(
          ("bash '" + (dir / "cmd.sh").string() + "' > '" + (dir / "out.txt").string() + "' 2>&1")
              .c_str());
      CHECK_MESSAGE(WIFEXITED(status), read_file(dir / "out.txt"));
      CHECK_MESSAGE(WEXITSTATUS(status) == 0, read_file(dir / "out.txt"));
    }
  }
}

TEST_SUITE("samples") {
  TEST_CASE("the systemd unit passes systemd-analyze verify with the built receiver") {
    TempDir dir;
    std::string unit = read_file(source_dir() / "samples/config/tdhook-receiver.service");
    const std::string installed = "/usr/local/bin/tdhook-receiver";
    REQUIRE(unit.find(installed) != std::string::npos);
    // ExecStartPre, ExecStart and ExecReload all name it.
    const std::string built = TDHOOK_RECEIVER_BIN;
    for (auto at = unit.find(installed); at != std::string::npos;
         at = unit.find(installed, at + built.size()))
      unit.replace(at, installed.size(), built);
    write_file(dir / "tdhook-receiver.service", unit);
    // The man pages its Documentation= names are checked in the package (tests/package).
    const std::string command = "systemd-analyze verify --man=no '" +
                                (dir / "tdhook-receiver.service").string() + "' > '" +
                                (dir / "out.txt").string() + "' 2>&1";
    const int status = std::system(command.c_str());
    CHECK_MESSAGE(WIFEXITED(status), read_file(dir / "out.txt"));
    CHECK_MESSAGE(WEXITSTATUS(status) == 0, read_file(dir / "out.txt"));
  }
}
