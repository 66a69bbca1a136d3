// Self-test of the nats-server harness (support/nats_server.hpp): real nats-server processes
// with JetStream on 127.0.0.1, driven through the NATS C client (libnats).
#include <doctest/doctest.h>
#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "support/nats_server.hpp"
#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;

// One libnats connection and its JetStream context; reconnects quickly to any of `urls`.
class JsClient {
 public:
  explicit JsClient(const std::string& urls) {
    std::vector<std::string> servers;
    std::istringstream in(urls);
    for (std::string url; std::getline(in, url, ',');) servers.push_back(url);
    std::vector<const char*> server_ptrs;
    for (const auto& s : servers) server_ptrs.push_back(s.c_str());
    status_ = natsOptions_Create(&opts_);
    if (status_ == NATS_OK) {
      status_ = natsOptions_SetServers(opts_, server_ptrs.data(), static_cast<int>(servers.size()));
    }
    if (status_ == NATS_OK) status_ = natsOptions_SetTimeout(opts_, 2000);
    if (status_ == NATS_OK) status_ = natsOptions_SetMaxReconnect(opts_, 10000);
    if (status_ == NATS_OK) status_ = natsOptions_SetReconnectWait(opts_, 50);
    if (status_ == NATS_OK) status_ = natsConnection_Connect(&nc_, opts_);
    if (status_ == NATS_OK) status_ = natsConnection_JetStream(&js_, nc_, nullptr);
  }
  ~JsClient() {
    if (js_ != nullptr) jsCtx_Destroy(js_);
    if (nc_ != nullptr) natsConnection_Destroy(nc_);
    if (opts_ != nullptr) natsOptions_Destroy(opts_);
  }
  JsClient(const JsClient&) = delete;
  JsClient& operator=(const JsClient&) = delete;

  bool ok() const { return status_ == NATS_OK; }
  std::string error() const { return natsStatus_GetText(status_); }

  // Creates a file stream on `subject`; the JetStream error code (0 when none) on failure.
  natsStatus add_stream(const std::string& name, const std::string& subject, int replicas,
                        jsErrCode* code) {
    const char* subjects[] = {subject.c_str()};
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = name.c_str();
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Replicas = replicas;
    config.Storage = js_FileStorage;
    jsStreamInfo* info = nullptr;
    *code = static_cast<jsErrCode>(0);
    const auto s = js_AddStream(&info, js_, &config, nullptr, code);
    if (info != nullptr) jsStreamInfo_Destroy(info);
    return s;
  }

  struct Ack {
    std::uint64_t sequence = 0;
    bool duplicate = false;
  };
  // A JetStream publish with a Nats-Msg-Id; nullopt when it is not acknowledged in time.
  std::optional<Ack> publish(const std::string& subject, const std::string& data,
                             const std::string& msg_id, std::chrono::milliseconds wait) {
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MsgId = msg_id.c_str();
    options.MaxWait = wait.count();
    jsPubAck* ack = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    last_publish_ = js_Publish(&ack, js_, subject.c_str(), data.data(),
                               static_cast<int>(data.size()), &options, &code);
    if (last_publish_ != NATS_OK || ack == nullptr) {
      if (ack != nullptr) jsPubAck_Destroy(ack);
      return std::nullopt;
    }
    Ack out{ack->Sequence, ack->Duplicate};
    jsPubAck_Destroy(ack);
    return out;
  }
  std::string last_publish_error() const { return natsStatus_GetText(last_publish_); }

 private:
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  natsStatus status_ = NATS_OK;
  natsStatus last_publish_ = NATS_OK;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_SUITE("nats harness") {
  TEST_CASE("one node: JetStream stream, Nats-Msg-Id duplicates, data kept across a restart") {
    std::unique_ptr<NatsServer> server;
    REQUIRE_NOTHROW(server = std::make_unique<NatsServer>());
    INFO("nats-server log:\n", server->log_tail(4096));
    CHECK(server->running());
    CHECK(server->pid() > 0);
    CHECK(server->url() == "nats://127.0.0.1:" + std::to_string(server->port()));
    CHECK(server->healthy());
    const auto health = server->monitor_get("/healthz");
    REQUIRE(health);
    CHECK(health->find("\"ok\"") != std::string::npos);

    {
      JsClient client(server->url());
      REQUIRE_MESSAGE(client.ok(), client.error());
      jsErrCode code{};
      const auto added = client.add_stream("HARNESS1", "harness1.>", 1, &code);
      REQUIRE_MESSAGE(added == NATS_OK, natsStatus_GetText(added), " jsErrCode ", code);

      const auto first = client.publish("harness1.a", "one", "msg-1", 2s);
      REQUIRE_MESSAGE(first, client.last_publish_error());
      CHECK(first->sequence == 1);
      CHECK_FALSE(first->duplicate);
      const auto again = client.publish("harness1.a", "one again", "msg-1", 2s);
      REQUIRE_MESSAGE(again, client.last_publish_error());
      CHECK(again->duplicate);
      CHECK(again->sequence == 1);
      const auto second = client.publish("harness1.a", "two", "msg-2", 2s);
      REQUIRE_MESSAGE(second, client.last_publish_error());
      CHECK(second->sequence == 2);
      CHECK_FALSE(second->duplicate);
    }
    CHECK(server->stream_last_seq("HARNESS1") == 2u);

    // Same ports and store after a restart (SIGTERM) and after SIGKILL.
    const int port = server->port(), monitor = server->monitor_port();
    const pid_t before = server->pid();
    REQUIRE(server->stop());
    CHECK_FALSE(server->running());
    CHECK(server->pid() == -1);
    CHECK_FALSE(server->healthy());
    REQUIRE_NOTHROW(server->start());
    CHECK(server->pid() != before);
    CHECK(server->port() == port);
    CHECK(server->monitor_port() == monitor);
    CHECK(server->stream_last_seq("HARNESS1") == 2u);
    server->kill9();
    CHECK(server->last_exit() == 128 + 9);
    REQUIRE_NOTHROW(server->restart());
    CHECK(server->stream_last_seq("HARNESS1") == 2u);
    CHECK(server->log_tail(1 << 20).find("launch 3") != std::string::npos);
  }

  TEST_CASE("3-node cluster: R3 stream survives SIGKILL of its leader, the node rejoins") {
    std::unique_ptr<NatsCluster> cluster;
    REQUIRE_NOTHROW(cluster = std::make_unique<NatsCluster>(3));
    // The nodes' logs for a failing check (_MESSAGE arguments are formatted only on failure).
    const auto logs = [&] { return "nats-server logs:\n" + cluster->log_tails(3000); };
    REQUIRE(cluster->size() == 3);
    const auto t_form = std::chrono::steady_clock::now();
    REQUIRE_MESSAGE(cluster->wait_ready(15s), logs());
    MESSAGE("cluster ready (meta leader elected) ", seconds_since(t_form), " s after start");
    CHECK_MESSAGE(cluster->meta_leader().has_value(), logs());
    CHECK(cluster->urls() ==
          cluster->node(0).url() + "," + cluster->node(1).url() + "," + cluster->node(2).url());

    JsClient client(cluster->urls());
    REQUIRE_MESSAGE(client.ok(), client.error());
    // The meta leader may not have every peer in its view yet: retried, bounded in time.
    natsStatus added = NATS_OK;
    jsErrCode code{};
    REQUIRE_MESSAGE(poll_until(
                        [&] {
                          added = client.add_stream("HARNESS3", "harness3.>", 3, &code);
                          return added == NATS_OK;
                        },
                        10s),
                    natsStatus_GetText(added), " jsErrCode ", code, "\n", logs());
    std::optional<int> leader;
    REQUIRE_MESSAGE(
        poll_until([&] { return (leader = cluster->stream_leader("HARNESS3")).has_value(); }, 10s),
        logs());
    const auto before = client.publish("harness3.a", "before", "before-kill", 5s);
    REQUIRE_MESSAGE(before, client.last_publish_error(), "\n", logs());

    const int victim = *leader;
    cluster->kill9(victim);
    CHECK_FALSE(cluster->node(victim).running());
    const auto t_kill = std::chrono::steady_clock::now();
    std::optional<JsClient::Ack> after;
    int attempts = 0;
    auto next_attempt = t_kill;
    const bool acked = poll_until(
        [&] {
          // No responders is answered at once while there is no leader: one try per 20 ms.
          if (std::chrono::steady_clock::now() < next_attempt) return false;
          next_attempt = std::chrono::steady_clock::now() + 20ms;
          ++attempts;
          after = client.publish("harness3.a", "after", "after-kill", 1s);
          return after.has_value();
        },
        15s);
    REQUIRE_MESSAGE(acked, "no ack within 15 s of kill -9; last: ", client.last_publish_error(),
                    "\n", logs());
    MESSAGE("first ack ", seconds_since(t_kill), " s after kill -9 of the stream leader ",
            cluster->node(victim).name(), " (", attempts, " publish attempts)");
    CHECK(after->sequence == before->sequence + 1);
    std::optional<int> new_leader;
    CHECK_MESSAGE(
        poll_until([&] { return (new_leader = cluster->stream_leader("HARNESS3")).has_value(); },
                   10s),
        logs());
    CHECK(new_leader != victim);

    const auto t_restart = std::chrono::steady_clock::now();
    REQUIRE_NOTHROW(cluster->restart(victim));
    REQUIRE_MESSAGE(cluster->wait_ready(15s), logs());
    // The restarted node's replica caught up with what was acknowledged while it was away.
    CHECK_MESSAGE(cluster->wait_stream_synced("HARNESS3", 10s), logs());
    CHECK(cluster->node(victim).stream_last_seq("HARNESS3") == after->sequence);
    MESSAGE("node rejoined and caught up ", seconds_since(t_restart), " s after restart");
    CHECK(cluster->stream_leader("HARNESS3").has_value());
  }
}

}  // namespace tdhook::test
