// Exec hardening against the real tdhook-receiver: what an exec or reply script can see of the
// receiver's secrets, what event data can do to a shell command, and what is left of a script's
// process group after the exec timeout.
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "base/log.hpp"
#include "store/log/log_store.hpp"
#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> with(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

std::string script(const std::string& name) {
  return "sh " + (source_dir() / "tests" / "scripts" / name).string();
}

// A Prometheus label value as /metrics writes it.
std::string label(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

int delivered(int port, const std::string& sink, const std::string& outcome = "delivered") {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/metrics");
  if (!res) return -1;
  return static_cast<int>(metric(res->body, R"(tdhook_deliveries_total{sink=")" + label(sink) +
                                                R"(",outcome=")" + outcome + "\"}")
                              .value_or(0));
}

// Processes of process group `pgid` that still run (zombies do not: they wait for a parent that
// may not reap them, PID 1 in some containers).
std::vector<int> running_in_group(int pgid) {
  std::vector<int> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;  // gone meanwhile
    const auto close_paren = line.rfind(')');
    if (close_paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0, group = 0;
    if (std::sscanf(line.c_str() + close_paren + 1, " %c %d %d", &state, &ppid, &group) != 3)
      continue;
    if (group == pgid && state != 'Z') pids.push_back(std::stoi(name));
  }
  return pids;
}

// The one event that a stopped receiver's store holds for `sink`, opened as `tdhook spool`
// opens it.
std::optional<receiver::Details> stored_details(const fs::path& data_dir, const std::string& sink) {
  const receiver::Logger quiet(receiver::LogLevel::error);
  receiver::LogStoreOptions options;
  options.store.data_dir = data_dir;
  options.store.sinks = {sink};
  options.for_inspection = true;
  auto store = receiver::open_log_store(options, quiet);
  REQUIRE_MESSAGE(store.ok(), store.error().detail);
  const auto rows = (*store)->list({});
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 1);
  auto details = (*store)->show(rows->at(0).delivery_id);
  REQUIRE_MESSAGE(details.ok(), details.error().detail);
  return std::move(*details);
}

}  // namespace

TEST_SUITE("exec hardening") {
  TEST_CASE(
      "exec and reply scripts see none of the receiver's secrets in their environment, argv or "
      "open files") {
    TempDir dir;
    const auto out = dir / "out";
    fs::create_directories(out);
    const std::string env_secret = "9d3c7e1a-2b4f-4e6a-8c0d-aa11bb22cc33";
    const std::string aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const std::string sink = "exec:" + script("dump-context.sh") + " " + out.string() + " sink";
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink, "--reply",
                                                 "lead.create=" + script("dump-context.sh") + " " +
                                                     out.string() + " reply"}),
                       {"TDHOOK_SECRETS=" + env_secret, "AWS_SECRET_ACCESS_KEY=" + aws_secret});
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    const auto first = post_event(
        client, "/", sign_sample("lead.create", receiver_secret, epoch_ms()), receiver_secret);
    REQUIRE(first);
    CHECK(first->status == 200);
    CHECK(first->body == "{}\n");  // the reply script ran
    // The secret from the environment is in force: it is really there to be leaked.
    const auto second =
        post_event(client, "/", sign_sample("request.create", env_secret, epoch_ms()), env_secret);
    REQUIRE(second);
    CHECK(second->status == 200);
    REQUIRE(poll_until([&] { return delivered(rx.port(), sink) == 2; }, 30s));

    const std::string secret_file = (dir / "secret").string();
    for (const char* who : {"sink", "reply"}) {
      for (const char* what : {"env", "environ", "argv", "cmdline", "fds", "stdin"}) {
        const std::string text = read_file(out / (std::string(who) + "." + what));
        INFO(who << "." << what << ":\n" << text);
        CHECK(text.find(receiver_secret) == std::string::npos);
        CHECK(text.find(env_secret) == std::string::npos);
        CHECK(text.find(aws_secret) == std::string::npos);
        CHECK(text.find("TDHOOK_SECRETS") == std::string::npos);
        CHECK(text.find("AWS_SECRET_ACCESS_KEY") == std::string::npos);
        CHECK(text.find(secret_file) == std::string::npos);
      }
      // The dumps are real: the script saw its own variables, its stdin and its argv.
      CHECK(read_file(out / (std::string(who) + ".environ")).find("TDHOOK_EVENT=") !=
            std::string::npos);
      CHECK(read_file(out / (std::string(who) + ".cmdline")).find("dump-context.sh") !=
            std::string::npos);
      CHECK(read_file(out / (std::string(who) + ".stdin")).find("\"event\":\"") !=
            std::string::npos);
    }
    // Nor are they in the receiver's own command line or log.
    const std::string cmdline = read_file("/proc/" + std::to_string(rx.pid()) + "/cmdline");
    CHECK(cmdline.find(receiver_secret) == std::string::npos);
    CHECK(cmdline.find(env_secret) == std::string::npos);
    const std::string log = rx.stderr_text();
    CHECK(log.find(receiver_secret) == std::string::npos);
    CHECK(log.find(env_secret) == std::string::npos);
    CHECK(log.find(aws_secret) == std::string::npos);
  }

  TEST_CASE(
      "hostile event data reaches a shell-snippet exec sink byte-intact on stdin, is never run, "
      "and TDHOOK variables carry it only escaped") {
    TempDir dir;
    const auto out = dir / "out";
    fs::create_directories(out);
    // A careless snippet on purpose: unquoted expansions and an eval of the variables.
    const std::string sink =
        "exec:cd " + out.string() +
        " && cat > stdin.$TDHOOK_DELIVERY_ID && env > env.$TDHOOK_DELIVERY_ID && "
        "echo $TDHOOK_EVENT $TDHOOK_PROJECT_ID $TDHOOK_SUBSCRIPTION_ID > "
        "unquoted.$TDHOOK_DELIVERY_ID"
        " && eval \"echo $TDHOOK_EVENT $TDHOOK_PROJECT_ID $TDHOOK_SUBSCRIPTION_ID\" > "
        "eval.$TDHOOK_DELIVERY_ID; true";
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());

    // "pwned" is created in `out` by anything that runs it.
    const std::string nasty =
        "$(touch pwned) `touch pwned` '\"; touch pwned; echo \"' \n; touch pwned #\r\n";
    const auto sample = load_sample("lead.create");
    OrderedJson payload = sample.at("payload");
    payload["fullname"] = nasty;
    payload["nul"] = "before\0after $(touch pwned)"s;
    payload["attributes"]["note"] = "a;b|c&d>e<f*g?h[i]~j{k}";
    OrderedJson hook = sample.at("hook");
    hook["event"] = "lead.create$(touch pwned)`touch pwned`;touch pwned\n'\"\0x"s;
    hook["_id"] = "65ae3debc91f04aa2e3a1109 $(touch pwned)";
    hook["id_project"] = "65533a0cb7e1c3d9503a10f1;touch pwned";
    const std::string body = sign_body(payload, hook, receiver_secret, epoch_ms());
    const auto res = post_event(client, "/", body, receiver_secret);
    REQUIRE(res);
    REQUIRE(res->status == 200);
    const std::string id = json::parse(res->body).at("id");
    REQUIRE(poll_until([&] { return delivered(rx.port(), sink) == 1; }, 30s));

    CHECK_FALSE(fs::exists(out / "pwned"));
    const std::string got = read_file(out / ("stdin." + id));
    // One line, the bytes of payload and hook exactly as sent (escapes included).
    CHECK(got.find('\n') == got.size() - 1);
    CHECK(got.find('\0') == std::string::npos);
    CHECK(got.find(payload.dump()) != std::string::npos);
    CHECK(got.find(hook.dump()) != std::string::npos);
    const auto record = json::parse(got);
    CHECK(record.at("payload") == json::parse(payload.dump()));
    CHECK(record.at("event") == hook["event"].get<std::string>());

    const std::string event_escaped =
        "lead.create%24%28touch%20pwned%29%60touch%20pwned%60%3Btouch%20pwned%0A%27%22%00x";
    const std::string project_escaped = "65533a0cb7e1c3d9503a10f1%3Btouch%20pwned";
    const std::string subscription_escaped = "65ae3debc91f04aa2e3a1109%20%24%28touch%20pwned%29";
    const std::string env = read_file(out / ("env." + id));
    INFO("env:\n" << env);
    CHECK(env.find("\nTDHOOK_EVENT=" + event_escaped + "\n") != std::string::npos);
    CHECK(env.find("\nTDHOOK_PROJECT_ID=" + project_escaped + "\n") != std::string::npos);
    CHECK(env.find("\nTDHOOK_SUBSCRIPTION_ID=" + subscription_escaped + "\n") != std::string::npos);
    CHECK(env.find("touch pwned") == std::string::npos);
    const std::string expanded =
        event_escaped + " " + project_escaped + " " + subscription_escaped + "\n";
    CHECK(read_file(out / ("unquoted." + id)) == expanded);
    CHECK(read_file(out / ("eval." + id)) == expanded);
  }

  TEST_CASE(
      "at the exec timeout a script's whole process group dies, grandchildren included, and the "
      "delivery fails with a timeout reason") {
    TempDir dir;
    const auto state = dir / "state";
    fs::create_directories(state);
    std::string mode;
    SUBCASE("grandchildren that end on SIGTERM") { mode = "plain"; }
    SUBCASE("a script and grandchildren that ignore SIGTERM") { mode = "ignore-term"; }
    const std::string sink =
        "exec:" + script("hang-with-grandchildren.sh") + " " + state.string() + " " + mode;
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink, "--exec-timeout", "500ms",
                                                 "--retry-max", "2", "--retry-base", "50ms"}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    REQUIRE(post_event(client, "/", sign_sample("lead.create", receiver_secret, epoch_ms()),
                       receiver_secret)
                ->status == 200);

    // While the first attempt runs, its group holds the script and its grandchildren.
    REQUIRE(poll_until([&] { return fs::exists(state / "pgid.1"); }, 30s));
    const int first_group = std::stoi(read_file(state / "pgid.1"));
    const auto members = running_in_group(first_group);
    CHECK(members.size() >= 3);

    const bool dead = poll_until([&] { return delivered(rx.port(), sink, "dead") == 1; }, 60s);
    INFO("receiver log: " << rx.stderr_text());
    REQUIRE(dead);
    CHECK(delivered(rx.port(), sink, "retried") == 1);
    for (const char* attempt : {"pgid.1", "pgid.2"}) {
      REQUIRE(fs::exists(state / attempt));
      const int group = std::stoi(read_file(state / attempt));
      CHECK_MESSAGE(poll_until([&] { return running_in_group(group).empty(); }, 10s),
                    attempt << ": still running in group " << group);
    }

    rx.signal(SIGTERM);
    REQUIRE(rx.wait_exit(30s) == 0);
    const auto details = stored_details(dir / "data", sink);
    REQUIRE(details->attempts.size() == 2);
    for (const auto& [name, a] : details->attempts) {
      CHECK_FALSE(a.ok);
      CHECK(a.error == "timeout after 0.5s");
      // Ended at the timeout (plus the SIGTERM grace), not when `sleep 1000` would have.
      CHECK(a.finished_at_ms - a.started_at_ms < 10000);
    }
    REQUIRE(details->deliveries.size() == 1);
    CHECK(details->deliveries[0].state == receiver::DeliveryState::dead);
    CHECK(details->deliveries[0].last_error == "timeout after 0.5s");
  }
}

}  // namespace tdhook::test
