// The fuzz targets' entry points (fuzz/entry_points.hpp) over every input that once crashed one
// (fuzz/regressions/<target>/), every hand-made seed (fuzz/corpus/<target>/) and every seed
// derived from the samples and fixtures (fuzz/seeds.hpp), in the normal test binary: each input
// must be accepted or refused with a clean error, and every oracle of the entry point must agree.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "../fuzz/entry_points.hpp"
#include "../fuzz/seeds.hpp"
#include "support/files.hpp"

namespace fs = std::filesystem;
using tdhook::test::read_file;
using tdhook::test::source_dir;

namespace {

using Entry = tdhook::fuzz::Report (*)(std::string_view);

const std::map<std::string, Entry>& entries() {
  static const std::map<std::string, Entry> all = {{"envelope", tdhook::fuzz::envelope},
                                                   {"jws", tdhook::fuzz::jws},
                                                   {"http_request", tdhook::fuzz::http_request},
                                                   {"pattern", tdhook::fuzz::pattern},
                                                   {"config", tdhook::fuzz::config},
                                                   {"http_server", tdhook::fuzz::http_server},
                                                   {"segment", tdhook::fuzz::segment}};
  return all;
}

std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

struct Tally {
  int inputs = 0, accepted = 0;
};

// Runs one input; a finding fails the test with the input's name and the oracle's words.
void run(const std::string& target, const std::string& name, const std::string& input,
         Tally& tally) {
  const auto entry = entries().find(target);
  REQUIRE_MESSAGE(entry != entries().end(),
                  "no fuzz target named " << target << " (" << name << ")");
  const auto report = entry->second(input);
  CHECK_MESSAGE(report.problem.empty(), target << "/" << name << ": " << report.problem);
  ++tally.inputs;
  tally.accepted += report.accepted ? 1 : 0;
}

// Every seed of `target`: the committed ones and the derived ones.
Tally run_seeds(const std::string& target) {
  Tally tally;
  for (const auto& path : files_under(source_dir() / "fuzz/corpus" / target))
    run(target, path.filename().string(), read_file(path), tally);
  for (const auto& seed : tdhook::fuzz::derive_seeds(source_dir()))
    if (seed.target == target) run(target, seed.name, seed.content, tally);
  return tally;
}

}  // namespace

TEST_SUITE("fuzz regressions") {
  TEST_CASE("every input saved in fuzz/regressions goes through its target's checks cleanly") {
    // fuzz/regressions/<target>/<input>: the directory names the entry point.
    Tally tally;
    const fs::path root = source_dir() / "fuzz/regressions";
    for (const auto& path : files_under(root)) {
      const auto relative = fs::relative(path, root);
      REQUIRE_MESSAGE(std::distance(relative.begin(), relative.end()) == 2,
                      "expected fuzz/regressions/<target>/<input>, got " << relative.string());
      run(relative.begin()->string(), relative.string(), read_file(path), tally);
    }
    CHECK(tally.inputs >= 1);
  }

  TEST_CASE("the envelope target's seeds parse and verify, or fail with a verification error") {
    const Tally t = run_seeds("envelope");
    CHECK(t.inputs >= 60);
    CHECK(t.accepted >= 40);       // the samples, signed and not, and the valid vectors
    CHECK(t.accepted < t.inputs);  // not_json, missing_hook, ...
  }

  TEST_CASE("the jws target's seeds split, sign and verify, or are refused as malformed") {
    const Tally t = run_seeds("jws");
    CHECK(t.inputs >= 60);
    CHECK(t.accepted >= 50);
    CHECK(t.accepted < t.inputs);  // four parts, padding, trailing bits
  }

  TEST_CASE("the http_request target's seeds read as requests or fail with invalid_input") {
    const Tally t = run_seeds("http_request");
    CHECK(t.inputs >= 30);
    CHECK(t.accepted >= 25);
    CHECK(t.accepted < t.inputs);  // the garbage_* fixtures
  }

  TEST_CASE("the http_server target's seeds parse as the receiver's event loop reads them") {
    const Tally t = run_seeds("http_server");
    CHECK(t.inputs >= 30);
    CHECK(t.accepted >= 25);
    CHECK(t.accepted < t.inputs);  // the garbage_* fixtures
  }

  TEST_CASE("the segment target's seeds scan as the event log's recovery reads them") {
    const Tally t = run_seeds("segment");
    CHECK(t.inputs >= 30);
    CHECK(t.accepted >= 30);  // every seed holds at least one whole entry
  }

  TEST_CASE("the pattern target's seeds match as pattern.hpp's rules say") {
    const Tally t = run_seeds("pattern");
    CHECK(t.inputs >= 8);
    CHECK(t.accepted >= 6);
    CHECK(t.accepted < t.inputs);  // a..b, re*, ** in the middle
  }

  TEST_CASE("the config target's seeds load as a configuration or fail with FILE:LINE") {
    const Tally t = run_seeds("config");
    CHECK(t.inputs >= 4);
    CHECK(t.accepted >= 3);
    CHECK(t.accepted < t.inputs);
  }
}
