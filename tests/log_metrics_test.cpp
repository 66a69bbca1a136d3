#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "doctest/doctest.h"
#include "support/files.hpp"

using tdhook::receiver::LogFields;
using tdhook::receiver::Logger;
using tdhook::receiver::LogLevel;
using tdhook::receiver::Metrics;
using tdhook::test::read_file;
using tdhook::test::TempDir;

namespace {

// Runs `write` with a logger on a scratch file; returns what it wrote.
template <class F>
std::string logged(LogLevel min_level, F write) {
  TempDir dir;
  const int fd = ::open((dir / "log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  write(Logger(min_level, fd));
  ::close(fd);
  return read_file(dir / "log");
}

}  // namespace

TEST_SUITE("log") {
  TEST_CASE("a log line is one JSON object with a UTC millisecond timestamp and typed fields") {
    const std::string text = logged(LogLevel::info, [](const Logger& log) {
      log.warn("script \"failed\"", LogFields()
                                        .add("output", "line 1\nline 2\t\x01 \xff\xfe end")
                                        .add("attempt", 3)
                                        .add("ratio", 0.5)
                                        .add("truncated", true));
    });
    REQUIRE(text.size() > 1);
    CHECK(text.back() == '\n');
    CHECK(text.find('\n') == text.size() - 1);
    const auto line = nlohmann::json::parse(text);  // throws on invalid JSON or UTF-8
    CHECK(line["level"] == "warn");
    CHECK(line["msg"] == "script \"failed\"");
    CHECK(line["output"] == "line 1\nline 2\t\x01 \xef\xbf\xbd\xef\xbf\xbd end");
    CHECK(line["attempt"] == 3);
    CHECK(line["ratio"] == 0.5);
    CHECK(line["truncated"] == true);
    CHECK(std::regex_match(line["ts"].get<std::string>(),
                           std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  }

  TEST_CASE("lines below the minimum level are not written") {
    const std::string text = logged(LogLevel::warn, [](const Logger& log) {
      log.info("quiet");
      log.debug("quieter");
      CHECK_FALSE(log.enabled(LogLevel::info));
    });
    CHECK(text.empty());
  }

  TEST_CASE("log levels are parsed by name") {
    LogLevel level = LogLevel::info;
    CHECK(tdhook::receiver::parse_log_level("debug", level));
    CHECK(level == LogLevel::debug);
    CHECK(tdhook::receiver::parse_log_level("error", level));
    CHECK(level == LogLevel::error);
    CHECK_FALSE(tdhook::receiver::parse_log_level("loud", level));
    CHECK(level == LogLevel::error);
  }
}

TEST_SUITE("metrics") {
  TEST_CASE("metrics render in the Prometheus text format with HELP and TYPE lines") {
    Metrics m;
    m.count_request(200, "stored");
    m.count_request(401, "secret_mismatch");
    m.count_request(401, "secret_mismatch");
    m.count_stored();
    m.count_duplicate();
    m.count_delivery("file:out.ndjson", "delivered");
    m.set_spool_pending(7);
    const std::string text = m.render();
    CHECK(text.find("# TYPE tdhook_requests_total counter\n") != std::string::npos);
    CHECK(text.find("tdhook_requests_total{status=\"401\",reason=\"secret_mismatch\"} 2\n") !=
          std::string::npos);
    CHECK(text.find("tdhook_events_stored_total 1\n") != std::string::npos);
    CHECK(text.find("tdhook_events_duplicate_total 1\n") != std::string::npos);
    CHECK(
        text.find("tdhook_deliveries_total{sink=\"file:out.ndjson\",outcome=\"delivered\"} 1\n") !=
        std::string::npos);
    CHECK(text.find("# TYPE tdhook_spool_pending gauge\ntdhook_spool_pending 7\n") !=
          std::string::npos);
    for (const char* family : {"tdhook_requests_total", "tdhook_events_stored_total",
                               "tdhook_deliveries_total", "tdhook_delivery_latency_seconds"}) {
      CHECK(text.find(std::string("# HELP ") + family + " ") != std::string::npos);
    }
  }

  TEST_CASE("the latency histogram has cumulative buckets, +Inf, sum and count per sink") {
    Metrics m;
    m.observe_delivery_latency("stdout", 0.003);
    m.observe_delivery_latency("stdout", 0.2);
    m.observe_delivery_latency("stdout", 1000);
    const std::string text = m.render();
    const std::string b = "tdhook_delivery_latency_seconds_bucket{sink=\"stdout\",le=";
    CHECK(text.find(b + "\"0.001\"} 0\n") != std::string::npos);
    CHECK(text.find(b + "\"0.005\"} 1\n") != std::string::npos);
    CHECK(text.find(b + "\"0.5\"} 2\n") != std::string::npos);
    CHECK(text.find(b + "\"60\"} 2\n") != std::string::npos);
    CHECK(text.find(b + "\"+Inf\"} 3\n") != std::string::npos);
    CHECK(text.find("tdhook_delivery_latency_seconds_count{sink=\"stdout\"} 3\n") !=
          std::string::npos);
    CHECK(text.find("tdhook_delivery_latency_seconds_sum{sink=\"stdout\"} 1000.203\n") !=
          std::string::npos);
  }

  TEST_CASE("label values are escaped") {
    Metrics m;
    m.count_delivery("exec:echo \"a\\b\"\nx", "retried");
    CHECK(m.render().find(R"(sink="exec:echo \"a\\b\"\nx",outcome="retried"} 1)") !=
          std::string::npos);
  }
}
