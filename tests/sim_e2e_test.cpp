// End to end: the real `tdhook sim` and the real tdhook-receiver with an exec sink. Every sample
// event fired by the simulator reaches the script, verified with its subscription's secret.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <set>

#include "sim_harness.hpp"

namespace {

using namespace tdhook::test::sim;
using tdhook::test::read_file;
using tdhook::test::TempDir;
using tdhook::test::write_file;
namespace fs = std::filesystem;

// sample name -> event name, for every sample that is a notification.
std::map<std::string, std::string> sample_events() {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::directory_iterator(fs::path(TDHOOK_SOURCE_DIR) / "samples/events")) {
    if (entry.path().extension() != ".json") continue;
    const Json doc = Json::parse(read_file(entry.path()));
    if (!doc.contains("hook")) continue;  // operator.select.response.json is a reply
    out[entry.path().stem().string()] = doc["hook"]["event"].get<std::string>();
  }
  return out;
}

std::size_t records_in(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".json" ? 1 : 0;
  return n;
}

}  // namespace

TEST_SUITE("sim.e2e") {
  TEST_CASE("every sample event fired by tdhook sim reaches tdhook-receiver's script verified") {
    TempDir dir;
    const auto samples = sample_events();
    REQUIRE(samples.size() >= 10);
    Child sim({TDHOOK_TOOL_BIN, "sim", "--memory", "--listen", "127.0.0.1:0", "--user",
               "user:password", "--retry-scale", "0.01"},
              dir / "sim.out", dir / "sim.err");
    const int sim_port = sim.listening_port();
    REQUIRE(sim_port > 0);
    httplib::Client api("127.0.0.1", sim_port);
    api.set_basic_auth("user", "password");
    api.set_read_timeout(std::chrono::seconds(30));

    // The receiver needs the secrets at start and they come from the create answers: create
    // first with a placeholder target, start the receiver, then PUT the real target.
    const std::string subs = std::string("/v3/") + project_a + "/subscriptions";
    std::set<std::string> events;
    std::vector<std::string> ids;
    std::string secrets;
    for (const auto& [name, event] : samples) {
      if (!events.insert(event).second) continue;
      auto res =
          api.Post(subs.c_str(), Json{{"event", event}, {"target", "http://127.0.0.1:9/"}}.dump(),
                   "application/json");
      REQUIRE(res);
      REQUIRE(res->status == 200);
      const Json created = Json::parse(res->body);
      ids.push_back(created["_id"]);
      secrets += created["secret"].get<std::string>() + "\n";
    }
    write_file(dir / "secrets", secrets);
    fs::create_directories(dir / "out");
    // Written aside, then renamed: a file in out/ is always a whole record.
    const std::string out = (dir / "out").string();
    const std::string sink = "exec:cat > '" + out + "'/.\"$TDHOOK_DELIVERY_ID\" && mv '" + out +
                             "'/.\"$TDHOOK_DELIVERY_ID\" '" + out +
                             "'/\"$TDHOOK_DELIVERY_ID\".json";
    Child receiver(
        {TDHOOK_RECEIVER_BIN, "--listen", "127.0.0.1:0", "--secret-file",
         (dir / "secrets").string(), "--data-dir", (dir / "spool").string(), "--sink", sink},
        dir / "receiver.out", dir / "receiver.err");
    const int receiver_port = receiver.listening_port();
    REQUIRE_MESSAGE(receiver_port > 0, read_file(dir / "receiver.err"));
    const std::string target = "http://127.0.0.1:" + std::to_string(receiver_port) + "/";
    for (const auto& id : ids) {
      auto res =
          api.Put((subs + "/" + id).c_str(), Json{{"target", target}}.dump(), "application/json");
      REQUIRE(res);
      REQUIRE(res->status == 200);
    }

    for (const auto& [name, event] : samples) {
      CAPTURE(name);
      auto res = api.Post((std::string("/_sim/") + project_a + "/fire").c_str(),
                          Json{{"sample", name}}.dump(), "application/json");
      REQUIRE(res);
      REQUIRE(res->status == 200);
      const Json report = Json::parse(res->body);
      REQUIRE(report["deliveries"].size() == 1);
      CHECK(report["deliveries"][0]["final_status"] == 200);
    }
    REQUIRE_MESSAGE(eventually([&] { return records_in(dir / "out") == samples.size(); }),
                    read_file(dir / "receiver.err"));
    std::multiset<std::string> delivered;
    for (const auto& e : fs::directory_iterator(dir / "out")) {
      if (e.path().extension() != ".json") continue;
      const Json record = Json::parse(read_file(e.path()));
      CHECK(record["verified"] == "secret+HS256");
      CHECK(record["project_id"] == project_a);
      delivered.insert(record["event"].get<std::string>());
    }
    std::multiset<std::string> expected;
    for (const auto& [name, event] : samples) expected.insert(event);
    CHECK(delivered == expected);
    CHECK(receiver.stop() == 0);
    CHECK(sim.stop() == 0);
  }
}
