// tdhook-receiver's synchronous replies (--reply), with samples/scripts/operator-select.sh.
#include <doctest/doctest.h>
#include <signal.h>

#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

struct Answer {
  int status = 0;
  std::string body;
  std::string content_type;
  std::chrono::milliseconds elapsed{0};
};

Answer post_operator_select(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30, 0);
  const auto started = std::chrono::steady_clock::now();
  const auto res = post_event(
      client, "/", sign_sample("operator.select", receiver_secret, epoch_ms()), receiver_secret);
  Answer out;
  out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  if (res) {
    out.status = res->status;
    out.body = res->body;
    out.content_type = res->get_header_value("Content-Type");
  }
  return out;
}

}  // namespace

TEST_SUITE("receiver") {
  TEST_CASE("operator.select with operator-select.sh answers the payload with the chosen agent") {
    TempDir dir;
    const auto script = (source_dir() / "samples/scripts/operator-select.sh").string();
    auto args = receiver_args(dir);
    args.insert(args.end(), {"--sink", "stdout", "--reply", "operator.select=" + script});
    const auto payload = json::parse(load_sample("operator.select").at("payload").dump());

    SUBCASE("the first available agent by default") {
      ReceiverProcess rx(args);
      REQUIRE(rx.wait_listening());
      const auto answer = post_operator_select(rx.port());
      REQUIRE(answer.status == 200);
      CHECK(answer.content_type == "application/json");
      const auto body = json::parse(answer.body);
      CHECK(body.at("operators") == json::parse(R"([{"id_user":"655b7ed3b7e1c3d9503a10f3"}])"));
      CHECK(body.at("department") == payload.at("department"));
      CHECK(body.at("agents") == payload.at("agents"));
      // Replied to, and stored and delivered as usual.
      CHECK(rx.wait_stdout(
          [](const std::string& s) { return s.find("operator.select") != std::string::npos; },
          10s));
    }
    SUBCASE("the agent named by an environment variable passed with --pass-env") {
      args.insert(args.end(), {"--pass-env", "TDHOOK_OPERATOR_ID"});
      ReceiverProcess rx(args, {"TDHOOK_OPERATOR_ID=6553396ab7e1c3d9503a10f2"});
      REQUIRE(rx.wait_listening());
      const auto answer = post_operator_select(rx.port());
      REQUIRE(answer.status == 200);
      const auto expected =
          json::parse(read_file(source_dir() / "samples/events/operator.select.response.json"));
      CHECK(json::parse(answer.body).at("operators") == expected.at("operators"));
    }
  }

  TEST_CASE("a broken reply command gives 200 {} within the reply timeout") {
    TempDir dir;
    write_file(dir / "fails.sh", "cat >/dev/null\necho '{\"operators\":[]}'\nexit 1\n");
    write_file(dir / "garbage.sh", "cat >/dev/null\necho 'operators: nobody'\n");
    write_file(dir / "array.sh", "cat >/dev/null\necho '[1,2]'\n");
    write_file(dir / "hangs.sh", "echo $$ > \"$PIDFILE\"\nsleep 1000 &\nwait\n");
    std::string script;
    SUBCASE("exit status 1") { script = "fails.sh"; }
    SUBCASE("output that is not JSON") { script = "garbage.sh"; }
    SUBCASE("JSON that is not an object") { script = "array.sh"; }
    SUBCASE("a command that never ends") { script = "hangs.sh"; }
    auto args = receiver_args(dir);
    args.insert(args.end(),
                {"--sink", "stdout", "--reply-timeout", "700ms", "--pass-env", "PIDFILE", "--reply",
                 "operator.*=/bin/sh " + (dir / script).string()});
    ReceiverProcess rx(args, {"PIDFILE=" + (dir / "pid").string()});
    REQUIRE(rx.wait_listening());
    const auto answer = post_operator_select(rx.port());
    CHECK(answer.status == 200);
    CHECK(answer.body == "{}");
    CHECK(answer.elapsed < 700ms + 3s);
    // The reason is logged by the receiver's thread around the time it answers: wait for it.
    CHECK(poll_until([&] { return rx.stderr_text().find("reply failed") != std::string::npos; }));
    if (script == "hangs.sh") {
      CHECK(answer.elapsed >= 650ms);
      const auto pid = std::stoi(read_file(dir / "pid"));
      // The whole process group was killed: the shell and its sleeping child.
      CHECK(poll_until([&] { return ::kill(pid, 0) != 0; }, 5s));
    }
  }
}

}  // namespace tdhook::test
