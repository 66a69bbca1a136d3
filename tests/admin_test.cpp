// The admin socket (store/admin.hpp): its answers to good and hostile requests, its limits, the
// client's errors; and `tdhook spool` against a real running receiver (through the socket), and
// against the same data directory once the receiver is gone (the store opened directly).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "store/admin.hpp"
#include "store/log/log_store.hpp"
#include "store/record.hpp"
#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"
#include "support/tool_run.hpp"

extern char** environ;

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using receiver::AdminServer;
using receiver::RemoteStore;
using Json = nlohmann::json;

receiver::NewEvent event(const std::string& id, std::int64_t at) {
  receiver::NewEvent e;
  e.delivery_id = id;
  e.dedup_key = id;
  e.event = "lead.create";
  e.project_id = "p1";
  e.subscription_id = "s1";
  e.timestamp_ms = at;
  e.received_at_ms = at;
  e.record = R"({"id":")" + id + R"(","event":"lead.create"})";
  e.sinks = {"a"};
  return e;
}

// A log store in a scratch directory holding one pending event, "e1" for sink "a".
struct OpenStore {
  TempDir dir;
  std::filesystem::path data = dir / "data";
  std::filesystem::path socket = receiver::admin_socket_path(data);
  receiver::Logger log{receiver::LogLevel::warn};
  std::unique_ptr<receiver::Store> store;
  OpenStore() {
    receiver::LogStoreOptions options;
    options.store.data_dir = data;
    options.store.sinks = {"a"};
    auto opened = receiver::open_log_store(options, log);
    REQUIRE_MESSAGE(opened.ok(), opened.error().detail);
    store = std::move(*opened);
    REQUIRE(store->put(event("e1", epoch_ms())).outcome == receiver::PutOutcome::stored);
  }
};

// A client socket connected to `path`, or -1.
int connect_to(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.string().size() < sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.string().size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A socket file at `path` that nobody listens on: what a receiver killed with -9 leaves.
void leave_stale_socket(const std::filesystem::path& path, bool and_listen = false,
                        int* keep = nullptr) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.string().size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  if (and_listen) REQUIRE(::listen(fd, 4) == 0);
  if (keep != nullptr) {
    *keep = fd;
  } else {
    ::close(fd);
  }
}

void send_all(int fd, const std::string& data) {
  for (std::size_t sent = 0; sent < data.size();) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server closed: the caller reads what it answered
    sent += static_cast<std::size_t>(n);
  }
}

// One answer line; "" at EOF or after `timeout`. `rest` keeps what came after the line.
std::string read_line(int fd, std::string& rest, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto nl = rest.find('\n');
    if (nl != std::string::npos) {
      std::string line = rest.substr(0, nl);
      rest.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return "";
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return "";
    rest.append(buf, static_cast<std::size_t>(n));
  }
}

bool at_eof(int fd) {
  std::string rest;
  return read_line(fd, rest, 5s).empty() && rest.empty();
}

// Requests that must each get {"ok":false,...}, never a crash nor silence.
const std::vector<std::string>& garbage_requests() {
  static const std::vector<std::string> lines = {
      "hello",
      "{",
      "[1,2,3]",
      "null",
      "42",
      R"({})",
      R"({"op":5})",
      R"({"op":"drop_everything"})",
      R"({"op":"show"})",
      R"({"op":"show","id":7})",
      R"({"op":"retry"})",
      R"({"op":"retry","id":["e1"]})",
      R"({"op":"retry","all_dead":"yes"})",
      R"({"op":"purge"})",
      R"({"op":"purge","older_than_ms":"1d"})",
      R"({"op":"purge","older_than_ms":1.5})",
      R"({"op":"purge","older_than_ms":18446744073709551615})",
      R"({"op":"list","limit":-1})",
      R"({"op":"list","state":"lost"})",
      R"({"op":"list","state":null,"sinc_ms":1})",
      R"({"op":"list","event":"request..create"})",
      R"({"op":"counts","sink":{}})",
      "{\"op\":\"show\",\"id\":\"\xff\xfe\"}",
      std::string("{\"op\":\"list\"\0}", 14),
  };
  return lines;
}

void check_error_answer(const std::string& request, const std::string& answer) {
  CAPTURE(request);
  CAPTURE(answer);
  const auto j = Json::parse(answer, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  CHECK(j.at("ok") == false);
  CHECK(j.at("code").is_string());
  CHECK_FALSE(j.at("error").get<std::string>().empty());
}

std::vector<std::string> with(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

}  // namespace

TEST_SUITE("admin") {
  TEST_CASE("admin requests: every op answers, and every malformed request gets an error") {
    OpenStore s;
    auto ask = [&](const std::string& line) {
      return Json::parse(AdminServer::answer(*s.store, line));
    };
    const auto counts = ask(R"({"op":"counts"})");
    CHECK(counts.at("ok") == true);
    CHECK(counts.at("pending") == 1);
    CHECK(ask(R"({"op":"counts","sink":"a"})").at("pending") == 1);
    const auto list = ask(R"({"op":"list","state":"pending","sink":"a","limit":10})");
    REQUIRE(list.at("ok") == true);
    REQUIRE(list.at("deliveries").size() == 1);
    CHECK(list.at("deliveries")[0].at("id") == "e1");
    CHECK(list.at("deliveries")[0].at("state") == "pending");
    const auto show = ask(R"({"op":"show","id":"e1"})");
    REQUIRE(show.at("ok") == true);
    CHECK(show.at("record") == R"({"id":"e1","event":"lead.create"})");  // byte for byte
    const auto missing = ask(R"({"op":"show","id":"nope"})");
    CHECK(missing.at("ok") == false);
    CHECK(missing.at("code") == "invalid_input");
    CHECK(receiver::is_not_found(
        Error{ErrorCode::invalid_input, missing.at("error").get<std::string>()}));
    CHECK(ask(R"({"op":"retry","all_dead":true})").at("count") == 0);
    CHECK(ask(R"({"op":"purge","older_than_ms":0})").at("ok") == true);

    for (const auto& line : garbage_requests()) {
      check_error_answer(line, AdminServer::answer(*s.store, line));
    }
    CHECK(s.store->pending_total() == 1);  // nothing a bad request did changed the store
  }

  TEST_CASE("RemoteStore over the socket: each Store method, not-found kept, hot path refused") {
    OpenStore s;
    auto server = AdminServer::start(*s.store, s.socket, s.log);
    REQUIRE_MESSAGE(server.ok(), server.error().detail);
    struct stat st {};
    REQUIRE(::lstat(s.socket.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);

    RemoteStore remote(s.socket);
    auto rows = remote.list(receiver::ListFilter{});
    REQUIRE_MESSAGE(rows.ok(), rows.error().detail);
    REQUIRE(rows->size() == 1);
    CHECK(rows->front().delivery_id == "e1");
    CHECK(rows->front().sink == "a");
    auto details = remote.show("e1");
    REQUIRE(details.ok());
    CHECK(details->record == R"({"id":"e1","event":"lead.create"})");
    auto missing = remote.show("nope");
    REQUIRE_FALSE(missing.ok());
    CHECK(receiver::is_not_found(missing.error()));
    CHECK(remote.counts(std::string("a"))->pending == 1);
    CHECK(*remote.retry(std::nullopt, true) == 0);
    CHECK(remote.purge_delivered(0).ok());

    auto due = remote.due("a", epoch_ms(), 10);
    REQUIRE_FALSE(due.ok());
    CHECK(due.error().detail.find("not available through the admin socket") != std::string::npos);
    CHECK(remote.put(event("e2", epoch_ms())).outcome == receiver::PutOutcome::failed);
    CHECK_FALSE(remote.mark_batch({}).ok());

    (*server)->stop();
    CHECK_FALSE(std::filesystem::exists(s.socket));
    auto after = remote.counts(std::nullopt);
    REQUIRE_FALSE(after.ok());
    CHECK(after.error().detail.find(s.socket.string()) != std::string::npos);
  }

  TEST_CASE(
      "show carries a kept original as stored, byte for byte; RemoteStore reads it, and reads "
      "none from an answer without it") {
    OpenStore s;
    const std::string body = R"({"hook":{"event":"lead.create"},"token":"eyJ.x.sig"})";
    const std::string original = receiver::build_original(
        {{"Content-Type", "application/json"}, {"x-hook-secret", "s3cr3t"}}, body);
    // obs-text in a header value: the parser lets it through, JSON strings cannot carry it.
    const std::string latin1 = receiver::build_original(
        {{"x-hook-secret", "s3cr3t"}, {"User-Agent", "tiledesk \xe9t\xe9"}}, body);
    auto with_original = [](std::string id, std::string kept) {
      auto e = event(id, epoch_ms());
      e.original = std::move(kept);
      return e;
    };
    // f2 to f4: three lengths, for base64 with each padding.
    const std::vector<std::pair<std::string, std::string>> kept = {
        {"f1", original}, {"f2", latin1}, {"f3", latin1 + " "}, {"f4", latin1 + "  "}};
    for (const auto& [id, bytes] : kept) {
      REQUIRE(s.store->put(with_original(id, bytes)).outcome == receiver::PutOutcome::stored);
    }
    auto ask = [&](const std::string& line) {
      return Json::parse(AdminServer::answer(*s.store, line));
    };
    const auto f1 = ask(R"({"op":"show","id":"f1"})");
    REQUIRE(f1.at("ok") == true);
    CHECK(f1.at("original") == original);
    CHECK_FALSE(f1.contains("original_base64"));
    const auto f2 = ask(R"({"op":"show","id":"f2"})");
    REQUIRE(f2.at("ok") == true);
    CHECK_FALSE(f2.contains("original"));
    CHECK(f2.at("original_base64")
              .get<std::string>()
              .find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") ==
          std::string::npos);
    const auto e1 = ask(R"({"op":"show","id":"e1"})");  // none kept
    REQUIRE(e1.at("ok") == true);
    CHECK_FALSE(e1.contains("original"));
    CHECK_FALSE(e1.contains("original_base64"));

    {
      auto server = AdminServer::start(*s.store, s.socket, s.log);
      REQUIRE_MESSAGE(server.ok(), server.error().detail);
      RemoteStore remote(s.socket);
      for (const auto& [id, bytes] : kept) {
        CAPTURE(id);
        auto shown = remote.show(id);
        REQUIRE_MESSAGE(shown.ok(), shown.error().detail);
        CHECK(shown->original == bytes);
        CHECK(shown->original == s.store->show(id)->original);
      }
      auto none = remote.show("e1");
      REQUIRE(none.ok());
      CHECK(none->original.empty());
    }

    // A receiver that answers without the key (older than it), or with a broken one: one
    // connection each, answered by hand.
    for (const auto& [answer, readable] : std::vector<std::pair<Json, bool>>{
             {Json::parse(AdminServer::answer(*s.store, R"({"op":"show","id":"e1"})")), true},
             {[&] {
                auto a = Json::parse(AdminServer::answer(*s.store, R"({"op":"show","id":"f1"})"));
                a.erase("original");
                return a;
              }(),
              true},
             {[&] {
                auto a = f2;
                a["original_base64"] = "not base64!";
                return a;
              }(),
              false}}) {
      CAPTURE(answer.dump());
      int listening = -1;
      leave_stale_socket(s.socket, true, &listening);
      std::string request;
      std::thread old_receiver([&, line = answer.dump() + "\n"] {
        pollfd p{listening, POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) return;  // the client is gone: it failed already
        const int fd = ::accept(listening, nullptr, nullptr);
        if (fd < 0) return;
        std::string rest;
        request = read_line(fd, rest);
        send_all(fd, line);
        ::close(fd);
      });
      auto shown = RemoteStore(s.socket).show("f1");
      old_receiver.join();
      ::close(listening);
      std::filesystem::remove(s.socket);
      CHECK(Json::parse(request).at("op") == "show");
      if (readable) {
        REQUIRE_MESSAGE(shown.ok(), shown.error().detail);
        CHECK(shown->original.empty());
        CHECK(shown->record == answer.at("record").get<std::string>());
      } else {
        REQUIRE_FALSE(shown.ok());
        CHECK(shown.error().detail.find("original_base64") != std::string::npos);
      }
    }
  }

  TEST_CASE(
      "the admin socket: several requests a connection, lines over 64 KiB refused, a cap "
      "on connections, and it keeps serving") {
    OpenStore s;
    auto server = AdminServer::start(*s.store, s.socket, s.log);
    REQUIRE_MESSAGE(server.ok(), server.error().detail);

    const int fd = connect_to(s.socket);
    REQUIRE(fd >= 0);
    send_all(
        fd,
        "{\"op\":\"counts\"}\r\n\n{\"op\":\"list\"}\n{oops\n{\"op\":\"counts\",\"sink\":\"a\"}");
    ::shutdown(fd, SHUT_WR);  // the last request has no newline: EOF ends it
    std::string rest;
    CHECK(Json::parse(read_line(fd, rest)).at("pending") == 1);
    CHECK(Json::parse(read_line(fd, rest)).at("deliveries").size() == 1);
    check_error_answer("{oops", read_line(fd, rest));
    CHECK(Json::parse(read_line(fd, rest)).at("pending") == 1);
    CHECK(at_eof(fd));
    ::close(fd);

    const int big = connect_to(s.socket);
    REQUIRE(big >= 0);
    send_all(big, std::string(70 * 1024, 'x'));
    rest.clear();
    const auto refused = read_line(big, rest);
    check_error_answer("70 KiB", refused);
    CHECK(refused.find("65536") != std::string::npos);
    CHECK(at_eof(big));
    ::close(big);

    std::vector<int> idle;
    for (std::size_t i = 0; i < AdminServer::kMaxConnections; ++i) {
      idle.push_back(connect_to(s.socket));
      REQUIRE(idle.back() >= 0);
    }
    // The server has accepted them all once one of them is answered.
    send_all(idle.back(), "{\"op\":\"counts\"}\n");
    rest.clear();
    CHECK(Json::parse(read_line(idle.back(), rest)).at("ok") == true);
    const int extra = connect_to(s.socket);
    REQUIRE(extra >= 0);
    rest.clear();
    const auto full = read_line(extra, rest);
    check_error_answer("(one connection too many)", full);
    CHECK(full.find("too many") != std::string::npos);
    ::close(extra);
    for (const int i : idle) ::close(i);

    RemoteStore remote(s.socket);
    CHECK(poll_until([&] { return remote.counts(std::nullopt).ok(); }));
  }

  TEST_CASE("a stale socket file is replaced at start; a file that is not a socket is kept") {
    OpenStore s;
    leave_stale_socket(s.socket);
    REQUIRE(std::filesystem::exists(s.socket));
    {
      auto server = AdminServer::start(*s.store, s.socket, s.log);
      REQUIRE_MESSAGE(server.ok(), server.error().detail);
      CHECK(RemoteStore(s.socket).counts(std::nullopt).ok());
    }
    CHECK_FALSE(std::filesystem::exists(s.socket));

    write_file(s.socket, "not a socket");
    auto refused = AdminServer::start(*s.store, s.socket, s.log);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().detail.find(s.socket.string()) != std::string::npos);
    CHECK(read_file(s.socket) == "not a socket");
  }

  TEST_CASE("RemoteStore names the socket when no receiver answers on it") {
    TempDir dir;
    const auto path = dir / "admin.sock";
    auto missing = RemoteStore(path).counts(std::nullopt);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().detail.find(path.string()) != std::string::npos);

    leave_stale_socket(path);
    auto stale = RemoteStore(path).list(receiver::ListFilter{});
    REQUIRE_FALSE(stale.ok());
    CHECK(stale.error().detail.find(path.string()) != std::string::npos);
    CHECK(stale.error().detail.find("nothing listens") != std::string::npos);
    std::filesystem::remove(path);

    int hung = -1;  // listens, never accepts, never answers
    leave_stale_socket(path, true, &hung);
    const auto started = std::chrono::steady_clock::now();
    auto silent = RemoteStore(path, 300ms).purge_delivered(0);
    const auto took = std::chrono::steady_clock::now() - started;
    ::close(hung);
    REQUIRE_FALSE(silent.ok());
    CHECK(silent.error().detail.find(path.string()) != std::string::npos);
    CHECK(silent.error().detail.find("no answer") != std::string::npos);
    CHECK(took < 5s);
  }

  TEST_CASE(
      "tdhook spool against a running receiver goes through admin.sock: an exec sink's dead "
      "letters, retried while it runs, are delivered; with the receiver stopped the same "
      "commands open the store") {
    TempDir dir;
    const auto data = (dir / "data").string();
    const auto ok_file = dir / "ok", out_file = dir / "out.ndjson";
    // Fails until `ok` exists.
    const std::string sink =
        "exec:[ -f " + ok_file.string() + " ] && /bin/cat >> " + out_file.string();
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", sink, "--retry-max", "2"}));
    REQUIRE(rx.wait_listening());
    httplib::Client client("127.0.0.1", rx.port());
    const auto names = sample_event_names();
    REQUIRE(names.size() >= 2);
    std::vector<std::string> ids;
    for (int i = 0; i < 2; ++i) {
      const auto res = post_event(
          client, "/", sign_sample(names[static_cast<std::size_t>(i)], receiver_secret, epoch_ms()),
          receiver_secret);
      REQUIRE(res);
      REQUIRE_MESSAGE(res->status == 200, res->body);
      ids.push_back(Json::parse(res->body).at("id").get<std::string>());
    }
    auto rows_in = [&](std::vector<std::string> args) {
      args.insert(args.begin(), {"--data-dir", data, "ls", "--json"});
      const auto run = spool_tool(dir, args);
      INFO(run.err);
      REQUIRE(run.code == 0);
      return parse_ndjson(run.out);
    };
    const bool dead = poll_until([&] { return rows_in({"--state", "dead"}).size() == 2; }, 30s);
    INFO("receiver log: " << rx.stderr_text().substr(0, 4000));
    REQUIRE(dead);
    CHECK(std::filesystem::exists(dir / "data" / "admin.sock"));
    for (const auto& row : rows_in({"--state", "dead"})) CHECK(row.at("attempts") == 2);

    const auto shown = spool_tool(dir, {"--data-dir", data, "show", ids[0], "--json"});
    REQUIRE_MESSAGE(shown.code == 0, shown.err);
    const auto details = Json::parse(shown.out);
    CHECK(details.at("deliveries").size() == 1);
    CHECK(details.at("deliveries")[0].at("state") == "dead");
    CHECK(details.at("attempts").size() == 2);
    CHECK(spool_tool(dir, {"--data-dir", data, "show", "no-such-id"}).code == 1);

    write_file(ok_file, "");
    const auto retried = spool_tool(dir, {"--data-dir", data, "retry", "--dead"});
    REQUIRE_MESSAGE(retried.code == 0, retried.err);
    CHECK(retried.out.find("2 deliveries back to pending") == 0);
    // The receiver itself did it, while running.
    CHECK(rx.stderr_text().find("admin: retry") != std::string::npos);
    CHECK(poll_until([&] { return count_lines_in(out_file) == 2; }, 30s));
    CHECK(poll_until([&] { return rows_in({"--state", "dead"}).empty(); }));
    const auto purged =
        spool_tool(dir, {"--data-dir", data, "purge", "--delivered", "--older-than", "1d"});
    CHECK_MESSAGE(purged.code == 0, purged.err);
    CHECK(purged.out == "purged 0 events\n");

    rx.signal(SIGTERM);
    REQUIRE(rx.wait_exit(30s) == 0);
    CHECK_FALSE(std::filesystem::exists(dir / "data" / "admin.sock"));

    // No receiver: the tool opens the store itself and sees the same deliveries.
    const auto after = rows_in({});
    REQUIRE(after.size() == 2);
    for (const auto& row : after) {
      CHECK(row.at("state") == "delivered");
      // Its attempts (the two failures at least) are kept with it.
      const auto details_of =
          spool_tool(dir, {"--data-dir", data, "show", row.at("id").get<std::string>(), "--json"});
      REQUIRE_MESSAGE(details_of.code == 0, details_of.err);
      CHECK(Json::parse(details_of.out).at("attempts").size() >= 2);
    }
    const auto shown_after = spool_tool(dir, {"--data-dir", data, "show", ids[1]});
    CHECK_MESSAGE(shown_after.code == 0, shown_after.err);
    const auto again = spool_tool(dir, {"--data-dir", data, "retry", ids[1]});
    CHECK(again.code == 1);  // delivered: nothing to retry
    CHECK(spool_tool(dir, {"--data-dir", data, "retry", "--dead"}).out.find("0 deliveries") == 0);
    CHECK(
        spool_tool(dir, {"--data-dir", data, "purge", "--delivered", "--older-than", "1d"}).code ==
        0);

    // And the store the tool opened and closed is the receiver's again.
    ReceiverProcess next(with(receiver_args(dir), {"--sink", "stdout"}));
    REQUIRE(next.wait_listening());
  }

  TEST_CASE("a stale admin.sock left by kill -9 does not stop the next receiver") {
    TempDir dir;
    const auto socket = dir / "data" / "admin.sock";
    {
      ReceiverProcess rx(with(receiver_args(dir), {"--sink", "stdout"}));
      REQUIRE(rx.wait_listening());
      REQUIRE(poll_until([&] { return std::filesystem::exists(socket); }));
      rx.signal(SIGKILL);
      REQUIRE(rx.wait_exit().has_value());
    }
    REQUIRE(std::filesystem::exists(socket));  // nobody removed it
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", "stdout"}));
    REQUIRE(rx.wait_listening());
    const auto ls = spool_tool(dir, {"--data-dir", (dir / "data").string(), "ls"});
    CHECK_MESSAGE(ls.code == 0, ls.err);
    CHECK(rx.stderr_text().find("no admin socket") == std::string::npos);
  }

  TEST_CASE(
      "garbage on a running receiver's admin socket gets error answers; the receiver stays "
      "healthy") {
    TempDir dir;
    ReceiverProcess rx(with(receiver_args(dir), {"--sink", "stdout"}));
    REQUIRE(rx.wait_listening());
    const auto socket = dir / "data" / "admin.sock";
    const int fd = connect_to(socket);
    REQUIRE(fd >= 0);
    std::string rest;
    for (const auto& line : garbage_requests()) {
      send_all(fd, line + "\n");
      check_error_answer(line, read_line(fd, rest));
    }
    send_all(fd, std::string(100 * 1024, '{') + "\n");
    check_error_answer("100 KiB", read_line(fd, rest));
    ::close(fd);
    const int quiet = connect_to(socket);  // connects and goes away without a word
    REQUIRE(quiet >= 0);
    ::close(quiet);

    httplib::Client client("127.0.0.1", rx.port());
    const auto res = post_event(
        client, "/", sign_sample("lead.create", receiver_secret, epoch_ms()), receiver_secret);
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(rx.wait_stdout([](const std::string& s) { return !s.empty(); }, 10s));
    const auto ls = spool_tool(dir, {"--data-dir", (dir / "data").string(), "ls", "--json"});
    CHECK_MESSAGE(ls.code == 0, ls.err);
    CHECK(parse_ndjson(ls.out).size() == 1);
  }
}

}  // namespace tdhook::test
