// SIGHUP reloads the secrets (and keys, and --events) without a restart (issue 14): a secret
// rotated under load never refuses a request signed with a configured secret, and a secrets
// file that does not load keeps the running ones.
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

using namespace tdhook::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* secret_a = "a1111111-2222-4333-8444-555555555555";
constexpr const char* secret_b = "b6666666-7777-4888-9999-000000000000";

// Posts events signed with one secret, one after another, until stopped; counts the answers.
class Sender {
 public:
  Sender(int port, std::string secret, int first_seq)
      : secret_(std::move(secret)), seq_(first_seq), thread_([this, port] { run(port); }) {}
  ~Sender() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::map<int, int> statuses() const {
    std::lock_guard lock(mu_);
    return statuses_;
  }
  int sent() const { return sent_.load(); }

 private:
  void run(int port) {
    httplib::Client client("127.0.0.1", port);
    client.set_keep_alive(true);
    client.set_read_timeout(30, 0);
    const auto sample = load_sample("lead.create");
    while (!stop_) {
      OrderedJson payload = sample.at("payload");
      payload["seq"] = seq_++;
      const auto body = sign_body(payload, sample.at("hook"), secret_, epoch_ms());
      const auto res = post_event(client, "/", body, secret_);
      std::lock_guard lock(mu_);
      ++statuses_[res ? res->status : 0];
      ++sent_;
    }
  }

  std::string secret_;
  int seq_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::map<int, int> statuses_;
  std::atomic<int> sent_{0};
  std::thread thread_;
};

std::size_t count_in(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_SUITE("receiver reload") {
  TEST_CASE(
      "a secret rotated with SIGHUP under load: nothing signed with a configured secret is "
      "refused, and a broken secrets file keeps the running ones") {
    TempDir dir;
    const auto secrets = dir / "secrets";
    const auto sink = dir / "events.ndjson";
    write_file(secrets, std::string(secret_a) + "\n");
    ReceiverProcess rx({"--listen", "127.0.0.1:0", "--data-dir", (dir / "data").string(),
                        "--secret-file", secrets.string(), "--sink", "file:" + sink.string()});
    REQUIRE(rx.wait_listening());
    const auto reloaded = [&](std::size_t times) {
      return poll_until(
          [&] { return count_in(rx.stderr_text(), "SIGHUP: reloaded secrets") >= times; });
    };

    // A alone; then A and B: A keeps working while B starts.
    Sender with_a(rx.port(), secret_a, 0);
    REQUIRE(poll_until([&] { return with_a.sent() >= 20; }));
    write_file(secrets, std::string(secret_a) + "\n" + secret_b + "\n");
    rx.signal(SIGHUP);
    REQUIRE(reloaded(1));
    Sender with_b(rx.port(), secret_b, 1000000);
    REQUIRE(poll_until([&] { return with_b.sent() >= 20 && with_a.sent() >= 60; }));
    with_a.stop();
    CHECK(with_a.statuses() == std::map<int, int>{{200, with_a.sent()}});

    // B alone: A is refused from then on, B never is.
    write_file(secrets, std::string(secret_b) + "\n");
    rx.signal(SIGHUP);
    REQUIRE(reloaded(2));
    {
      httplib::Client client("127.0.0.1", rx.port());
      const auto sample = load_sample("lead.create");
      OrderedJson payload = sample.at("payload");
      payload["seq"] = -1;
      const auto res = post_event(
          client, "/", sign_body(payload, sample.at("hook"), secret_a, epoch_ms()), secret_a);
      REQUIRE(res);
      CHECK(res->status == 401);
    }

    // A secrets file that does not load (empty) keeps B, says why, and is counted.
    const int before_broken = with_b.sent();
    write_file(secrets, "\n");
    rx.signal(SIGHUP);
    REQUIRE(poll_until(
        [&] { return rx.stderr_text().find("SIGHUP: reload failed") != std::string::npos; }));
    CHECK(metric(get_metrics(rx.port()), R"(tdhook_reloads_total{outcome="failed"})") == 1);
    CHECK(metric(get_metrics(rx.port()), R"(tdhook_reloads_total{outcome="ok"})") == 2);
    REQUIRE(poll_until([&] { return with_b.sent() >= before_broken + 20; }));
    with_b.stop();
    CHECK(with_b.statuses() == std::map<int, int>{{200, with_b.sent()}});

    // Every request answered 200 is in the sink; the secrets never reach the log.
    const std::size_t accepted = static_cast<std::size_t>(with_a.sent() + with_b.sent());
    CHECK(poll_until([&] { return count_lines_in(sink) == accepted; }, 30s));
    CHECK(rx.stderr_text().find(secret_a) == std::string::npos);
    CHECK(rx.stderr_text().find(secret_b) == std::string::npos);
    rx.signal(SIGTERM);
    CHECK(rx.wait_exit(30s) == 0);
  }

  TEST_CASE("SIGHUP reloads the --events filter of the config file") {
    TempDir dir;
    const auto config = dir / "tdhook.toml";
    const auto sink = dir / "events.ndjson";
    write_file(dir / "secret", std::string(receiver_secret) + "\n");
    const auto write_config = [&](const std::string& events) {
      write_file(config, "[receiver]\nevents = \"" + events + "\"\n");
    };
    write_config("lead.create");
    ReceiverProcess rx({"--config", config.string(), "--listen", "127.0.0.1:0", "--data-dir",
                        (dir / "data").string(), "--secret-file", (dir / "secret").string(),
                        "--sink", "file:" + sink.string()});
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    const auto post = [&](const std::string& name) {
      const auto res =
          post_event(client, "/", sign_sample(name, receiver_secret, epoch_ms()), receiver_secret);
      REQUIRE(res);
      return res->body;
    };
    CHECK(post("request.create").find(R"("stored":false)") != std::string::npos);
    write_config("request.*");
    rx.signal(SIGHUP);
    REQUIRE(poll_until(
        [&] { return rx.stderr_text().find("SIGHUP: reloaded secrets") != std::string::npos; }));
    CHECK(post("request.create").find(R"("id":)") != std::string::npos);
    CHECK(post("lead.create").find(R"("stored":false)") != std::string::npos);
    // A file that no longer parses keeps the running filter.
    write_file(config, "[receiver]\nevents = \n");
    rx.signal(SIGHUP);
    REQUIRE(poll_until(
        [&] { return rx.stderr_text().find("SIGHUP: reload failed") != std::string::npos; }));
    CHECK(rx.stderr_text().find("tdhook.toml") != std::string::npos);
    CHECK(post("request.create").find(R"("id":)") != std::string::npos);
    rx.signal(SIGTERM);
    CHECK(rx.wait_exit(30s) == 0);
  }
}
