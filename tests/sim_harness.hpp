#pragma once
// Test harness for `tdhook sim`: the simulator served in this process on 127.0.0.1:0, a tiny
// receiver (an httplib server whose answers a test scripts), and a runner for real processes.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sim_api.hpp"
#include "sim_fire.hpp"
#include "sim_store.hpp"
#include "support/files.hpp"

namespace tdhook::test::sim {

using tdhook::tools::sim::Json;
using Clock = std::chrono::steady_clock;

constexpr const char* project_a = "65533a0cb7e1c3d9503a10f1";
constexpr const char* project_b = "65533a0cb7e1c3d9503a10aa";

// Polls `done` until it holds or `limit` passes.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return done();
}

inline void serve_in_thread(httplib::Server& server, int& port, std::thread& thread) {
  port = server.bind_to_any_port("127.0.0.1");
  REQUIRE(port > 0);
  thread = std::thread([&server] { server.listen_after_bind(); });
  REQUIRE(eventually([&] { return server.is_running(); }));
}

struct Received {
  std::string body, secret, user_agent, path;
  Clock::time_point at;
};

// A webhook target. `answer(n, req, res)` decides the n-th (0-based) answer; default 200 "ok".
class TestReceiver {
 public:
  using Answer = std::function<void(int, const httplib::Request&, httplib::Response&)>;
  explicit TestReceiver(Answer answer = {}) : answer_(std::move(answer)) {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      int n = 0;
      {
        std::lock_guard lock(mutex_);
        n = static_cast<int>(received_.size());
        received_.push_back({req.body, req.get_header_value("x-hook-secret"),
                             req.get_header_value("User-Agent"), req.path, Clock::now()});
      }
      if (answer_) {
        answer_(n, req, res);
      } else {
        res.set_content("ok", "text/plain");
      }
    });
    serve_in_thread(server_, port_, thread_);
  }
  ~TestReceiver() {
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Received> received() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return received_.size();
  }

 private:
  Answer answer_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mutex_;
  std::vector<Received> received_;
};

struct SimSetup {
  bool compat = false;
  std::vector<std::pair<std::string, std::string>> users = {{"user", "password"}};
  std::vector<std::string> projects;
  double retry_scale = 0.01;
  std::string db = ":memory:";
};

// The simulator in this process; its log goes to a file the test can read.
class SimHarness {
 public:
  explicit SimHarness(const SimSetup& setup = {}) {
    log_fd_ = ::open((dir_ / "sim.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    REQUIRE(log_fd_ >= 0);
    log_ = std::make_unique<tools::sim::Log>(log_fd_);
    auto store = tools::sim::Store::open(setup.db);
    REQUIRE(store.ok());
    store_ = std::move(*store);
    tools::sim::FireOptions fire;
    fire.compat = setup.compat;
    fire.retry_scale = setup.retry_scale;
    firer_ = std::make_unique<tools::sim::Firer>(*store_, fire, *log_);
    tools::sim::ApiOptions api;
    api.users = setup.users;
    api.projects = setup.projects;
    api.compat = setup.compat;
    api.samples_dir = std::string(TDHOOK_SOURCE_DIR) + "/samples/events";
    server_ = std::make_unique<tools::sim::SimServer>(*store_, *firer_, api, *log_);
    auto port = server_->bind("127.0.0.1", 0);
    REQUIRE(port.ok());
    port_ = *port;
    thread_ = std::thread([this] { server_->run(); });
    REQUIRE(eventually([&] { return server_->is_running(); }));
  }
  ~SimHarness() {
    server_->stop();
    thread_.join();
    firer_.reset();
    ::close(log_fd_);
  }
  int port() const { return port_; }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log_text() const { return read_file(dir_ / "sim.log"); }
  std::unique_ptr<httplib::Client> client(bool auth = true) const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(std::chrono::seconds(30));
    if (auth) c->set_basic_auth("user", "password");
    return c;
  }
  // POST /v3/<project>/subscriptions; the parsed 200 body.
  Json create(const std::string& project, const std::string& event, const std::string& target) {
    auto res =
        client()->Post(("/v3/" + project + "/subscriptions").c_str(),
                       Json{{"event", event}, {"target", target}}.dump(), "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    return Json::parse(res->body);
  }
  Json put(const std::string& project, const std::string& id, const Json& body) {
    auto res = client()->Put(("/v3/" + project + "/subscriptions/" + id).c_str(), body.dump(),
                             "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    return Json::parse(res->body);
  }
  // POST /_sim/<project>/fire, waiting for the deliveries.
  Json fire(const std::string& project, const Json& body) {
    auto res =
        client()->Post(("/_sim/" + project + "/fire").c_str(), body.dump(), "application/json");
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 200, res->body);
    return Json::parse(res->body);
  }

 private:
  TempDir dir_;
  int log_fd_ = -1;
  std::unique_ptr<tools::sim::Log> log_;
  std::unique_ptr<tools::sim::Store> store_;
  std::unique_ptr<tools::sim::Firer> firer_;
  std::unique_ptr<tools::sim::SimServer> server_;
  std::thread thread_;
  int port_ = 0;
};

// Runs `command` through the shell; stdout, the exit status, and stderr in `err_file`.
struct ShellResult {
  int status = -1;
  std::string out;
};
inline ShellResult shell(const std::string& command) {
  ShellResult r;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int raw = ::pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

// A child process with stdout and stderr in files; killed (SIGTERM, then SIGKILL) on
// destruction.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::filesystem::path& out,
        const std::filesystem::path& err)
      : err_(err) {
    // Everything the child needs is prepared before fork(): only async-signal-safe calls after.
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(o, 1);
      ::dup2(e, 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    REQUIRE(pid_ > 0);
  }
  ~Child() { stop(); }
  // The port of the {"msg":"listening","addr":"HOST:PORT"} line on stderr, 0 if none came.
  int listening_port() const {
    int port = 0;
    eventually([&] {
      std::string text;
      try {
        text = read_file(err_);
      } catch (const std::exception&) {
        return false;
      }
      const auto at = text.find("\"msg\":\"listening\"");
      if (at == std::string::npos) return false;
      const auto addr = text.find("\"addr\":\"127.0.0.1:", at);
      if (addr == std::string::npos) return false;
      port = std::stoi(text.substr(addr + 18));
      return true;
    });
    return port;
  }
  // SIGTERM, then waits (SIGKILL after 10 s); the exit status, -1 if killed by a signal.
  int stop() {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGTERM);
    int raw = 0;
    if (!eventually([&] { return ::waitpid(pid_, &raw, WNOHANG) == pid_; })) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &raw, 0);
    }
    pid_ = 0;
    status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    return status_;
  }

 private:
  pid_t pid_ = 0;
  int status_ = -1;
  std::filesystem::path err_;
};

}  // namespace tdhook::test::sim
