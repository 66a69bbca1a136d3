// The admin socket (admin.hpp): the server's poll() loop, the request decoding, and the client.
#include "store/admin.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <vector>

#include <simdjson.h>

#include "base/base64.hpp"
#include "tdhook/pattern.hpp"

namespace tdhook::receiver {
namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// Answers are built from the store's strings; a script's error output may hold bytes that are
// not UTF-8, which must not make dump() throw.
std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string errno_text(int err) { return std::strerror(err); }

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// A Unix socket address for `path`. sun_path holds 107 bytes; a longer path (a deep data
// directory) is reached through the directory's descriptor, /proc/self/fd/N/admin.sock, which
// Linux resolves like any path. `dir_fd` must stay open while the address is used.
struct UnixAddress {
  sockaddr_un addr{};
  socklen_t len = 0;
  int dir_fd = -1;
  UnixAddress() = default;
  UnixAddress(const UnixAddress&) = delete;
  UnixAddress& operator=(const UnixAddress&) = delete;
  ~UnixAddress() { close_fd(dir_fd); }
};

Status make_address(const std::filesystem::path& path, UnixAddress& out) {
  std::string text = path.string();
  if (text.size() >= sizeof(out.addr.sun_path)) {
    const auto dir = path.parent_path();
    out.dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (out.dir_fd < 0) {
      return Error{ErrorCode::invalid_input,
                   "cannot open " + dir.string() + ": " + errno_text(errno)};
    }
    text = "/proc/self/fd/" + std::to_string(out.dir_fd) + "/" + path.filename().string();
    if (text.size() >= sizeof(out.addr.sun_path)) {
      return Error{ErrorCode::invalid_input, "socket name too long: " + path.string()};
    }
  }
  out.addr.sun_family = AF_UNIX;
  std::memcpy(out.addr.sun_path, text.data(), text.size());
  out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() + 1);
  return Ok{};
}

// ---- requests --------------------------------------------------------------------------------

Error bad_request(const std::string& why) {
  return Error{ErrorCode::invalid_input, "bad admin request: " + why};
}

// Refuses keys the op does not know: a misspelt filter must not widen a retry or a purge.
Status only_keys(const Json& req, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : req.items()) {
    bool known = key == "op";
    for (const auto a : allowed) known = known || key == a;
    if (!known) return bad_request("unknown key \"" + key + "\"");
  }
  return Ok{};
}

Result<std::optional<std::string>> opt_string(const Json& req, const char* key) {
  const auto it = req.find(key);
  if (it == req.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return bad_request(std::string("\"") + key + "\" must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<std::int64_t>> opt_integer(const Json& req, const char* key,
                                                std::int64_t min) {
  const auto it = req.find(key);
  if (it == req.end() || it->is_null()) return std::optional<std::int64_t>();
  if (!it->is_number_integer() ||
      (it->is_number_unsigned() &&
       it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))) {
    return bad_request(std::string("\"") + key + "\" must be an integer");
  }
  const auto v = it->get<std::int64_t>();
  if (v < min)
    return bad_request(std::string("\"") + key + "\" must be at least " + std::to_string(min));
  return std::optional<std::int64_t>(v);
}

Result<bool> opt_bool(const Json& req, const char* key) {
  const auto it = req.find(key);
  if (it == req.end() || it->is_null()) return false;
  if (!it->is_boolean()) return bad_request(std::string("\"") + key + "\" must be true or false");
  return it->get<bool>();
}

std::optional<DeliveryState> state_named(std::string_view name) {
  for (const auto s : {DeliveryState::pending, DeliveryState::delivered, DeliveryState::dead}) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

Json info_json(const DeliveryInfo& d) {
  return {{"id", d.delivery_id},
          {"sink", d.sink},
          {"event", d.event},
          {"project_id", d.project_id},
          {"timestamp_ms", d.timestamp_ms},
          {"received_at_ms", d.received_at_ms},
          {"state", to_string(d.state)},
          {"attempts", d.attempts},
          {"next_attempt_at_ms", d.next_attempt_at_ms},
          {"last_error", d.last_error}};
}

Json ok_answer() { return Json{{"ok", true}}; }

Json error_answer(const Error& e) {
  return Json{{"ok", false}, {"code", std::string(to_string(e.code))}, {"error", e.detail}};
}

// The answer to one parsed request, or the error to send.
Result<Json> serve(Store& store, const Json& req, const Logger* log) {
  if (!req.is_object()) return bad_request("not a JSON object");
  const auto op_it = req.find("op");
  if (op_it == req.end() || !op_it->is_string()) return bad_request("no \"op\" string");
  const auto op = op_it->get<std::string>();

  if (op == "list") {
    if (auto k = only_keys(req, {"state", "event", "sink", "since_ms", "until_ms", "limit"}); !k) {
      return std::move(k).error();
    }
    ListFilter filter;
    auto state = opt_string(req, "state");
    auto event = opt_string(req, "event");
    auto sink = opt_string(req, "sink");
    auto since = opt_integer(req, "since_ms", INT64_MIN);
    auto until = opt_integer(req, "until_ms", INT64_MIN);
    auto limit = opt_integer(req, "limit", 0);
    for (const Error* e : {state ? nullptr : &state.error(), event ? nullptr : &event.error(),
                           sink ? nullptr : &sink.error(), since ? nullptr : &since.error(),
                           until ? nullptr : &until.error(), limit ? nullptr : &limit.error()}) {
      if (e != nullptr) return *e;
    }
    if (*state) {
      filter.state = state_named(**state);
      if (!filter.state) return bad_request("\"state\" must be pending, delivered or dead");
    }
    if (*event) {
      // Checked here for a clear answer, whatever the store does with a bad pattern.
      if (auto patterns = PatternSet::parse(**event); !patterns) {
        return bad_request("\"event\": " + patterns.error().detail);
      }
    }
    filter.event_pattern = *event;
    filter.sink = *sink;
    filter.since_ms = *since;
    filter.until_ms = *until;
    if (*limit) filter.limit = static_cast<std::size_t>(**limit);
    auto rows = store.list(filter);
    if (!rows) return std::move(rows).error();
    Json out = ok_answer();
    out["deliveries"] = Json::array();
    for (const auto& d : *rows) out["deliveries"].push_back(info_json(d));
    return out;
  }

  if (op == "show") {
    if (auto k = only_keys(req, {"id"}); !k) return std::move(k).error();
    auto id = opt_string(req, "id");
    if (!id) return std::move(id).error();
    if (!*id) return bad_request("show needs an \"id\"");
    auto details = store.show(**id);
    if (!details) return std::move(details).error();
    Json out = ok_answer();
    out["record"] = details->record;
    out["deliveries"] = Json::array();
    for (const auto& d : details->deliveries) out["deliveries"].push_back(info_json(d));
    out["attempts"] = Json::array();
    for (const auto& [sink, a] : details->attempts) {
      out["attempts"].push_back({{"sink", sink},
                                 {"number", a.number},
                                 {"started_at_ms", a.started_at_ms},
                                 {"finished_at_ms", a.finished_at_ms},
                                 {"ok", a.ok},
                                 {"error", a.error}});
    }
    // As stored, secret and token included: the socket is the service user's, as the store
    // files are. A header value with bytes that are not UTF-8 would not survive a JSON string.
    if (!details->original.empty()) {
      if (simdjson::validate_utf8(details->original.data(), details->original.size())) {
        out["original"] = details->original;
      } else {
        out["original_base64"] = base64_encode(details->original);
      }
    }
    return out;
  }

  if (op == "retry") {
    if (auto k = only_keys(req, {"id", "all_dead"}); !k) return std::move(k).error();
    auto id = opt_string(req, "id");
    if (!id) return std::move(id).error();
    auto all_dead = opt_bool(req, "all_dead");
    if (!all_dead) return std::move(all_dead).error();
    if (!*id && !*all_dead) return bad_request("retry needs an \"id\" or \"all_dead\":true");
    auto n = store.retry(*id, *all_dead);
    if (!n) return std::move(n).error();
    if (log != nullptr) {
      log->info(
          "admin: retry",
          LogFields().add("id", id->value_or("")).add("all_dead", *all_dead).add("count", *n));
    }
    Json out = ok_answer();
    out["count"] = *n;
    return out;
  }

  if (op == "purge") {
    if (auto k = only_keys(req, {"older_than_ms"}); !k) return std::move(k).error();
    auto older = opt_integer(req, "older_than_ms", INT64_MIN);
    if (!older) return std::move(older).error();
    if (!*older) return bad_request("purge needs \"older_than_ms\"");
    auto n = store.purge_delivered(**older);
    if (!n) return std::move(n).error();
    if (log != nullptr) {
      log->info("admin: purge", LogFields().add("older_than_ms", **older).add("count", *n));
    }
    Json out = ok_answer();
    out["count"] = *n;
    return out;
  }

  if (op == "counts") {
    if (auto k = only_keys(req, {"sink"}); !k) return std::move(k).error();
    auto sink = opt_string(req, "sink");
    if (!sink) return std::move(sink).error();
    auto c = store.counts(*sink);
    if (!c) return std::move(c).error();
    Json out = ok_answer();
    out["pending"] = c->pending;
    out["delivered"] = c->delivered;
    out["dead"] = c->dead;
    return out;
  }

  return bad_request("unknown op \"" + op + "\" (list, show, retry, purge, counts)");
}

// ---- the server's connections ----------------------------------------------------------------

struct Connection {
  int fd = -1;
  std::string in, out;
  std::size_t out_sent = 0;
  Clock::time_point last_active = Clock::now();
  bool closing = false;  // close once `out` is sent
};

// Best effort, on a socket that is about to be closed.
void send_now(int fd, const std::string& line) {
  (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::string refusal(const std::string& why) {
  return dump(error_answer(Error{ErrorCode::invalid_input, why})) + "\n";
}

// Moves whole request lines of c.in to answers in c.out, one at a time: the next request is
// read once the answer to this one is sent, so neither buffer grows without bound.
void take_requests(Connection& c, Store& store, const Logger& log, bool at_eof) {
  while (c.out.empty() && !c.closing) {
    const auto nl = c.in.find('\n');
    if (nl == std::string::npos) {
      if (c.in.size() > AdminServer::kMaxRequestBytes) {
        c.out = refusal("request line over " + std::to_string(AdminServer::kMaxRequestBytes) +
                        " bytes refused");
        c.in.clear();
        c.closing = true;
        return;
      }
      if (!at_eof) return;
      if (c.in.empty()) {
        c.closing = true;
        return;
      }
      c.in += '\n';  // a last request without its newline
      continue;
    }
    std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    if (line.size() > AdminServer::kMaxRequestBytes) {
      c.out = refusal("request line over " + std::to_string(AdminServer::kMaxRequestBytes) +
                      " bytes refused");
      c.closing = true;
      return;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    c.out = AdminServer::answer(store, line, &log) + "\n";
    c.out_sent = 0;
  }
}

}  // namespace

std::filesystem::path admin_socket_path(const std::filesystem::path& data_dir) {
  return data_dir / "admin.sock";
}

std::string AdminServer::answer(Store& store, std::string_view request_line, const Logger* log) {
  try {
    const auto req = Json::parse(request_line, nullptr, false);
    if (req.is_discarded()) return dump(error_answer(bad_request("not JSON")));
    auto out = serve(store, req, log);
    return dump(out ? *out : error_answer(out.error()));
  } catch (const std::exception& e) {
    // A store that throws (std::bad_alloc) or an unforeseen JSON type error: one answer, and
    // the receiver goes on.
    return dump(error_answer(
        Error{ErrorCode::invalid_input, std::string("admin request failed: ") + e.what()}));
  }
}

Result<std::unique_ptr<AdminServer>> AdminServer::start(Store& store,
                                                        const std::filesystem::path& socket_path,
                                                        const Logger& log) {
  std::unique_ptr<AdminServer> server(new AdminServer(store, socket_path, log));
  const auto fail = [&](const std::string& what, int err) {
    return Error{ErrorCode::invalid_input,
                 "admin socket " + socket_path.string() + ": " + what + ": " + errno_text(err)};
  };
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error{ErrorCode::invalid_input, "admin socket " + socket_path.string() +
                                                 ": a file that is not a socket is "
                                                 "in the way"};
    }
    // Left by a receiver that was killed: we hold the store, so nobody serves it any more.
    if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
      return fail("cannot remove the stale socket", errno);
    }
  } else if (errno != ENOENT) {
    return fail("cannot stat", errno);
  }
  UnixAddress addr;
  if (auto made = make_address(socket_path, addr); !made) return std::move(made).error();
  server->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (server->listen_fd_ < 0) return fail("socket", errno);
  if (::bind(server->listen_fd_, reinterpret_cast<const sockaddr*>(&addr.addr), addr.len) != 0) {
    return fail("bind", errno);
  }
  server->bound_ = true;
  // Before listen(): until then a connect is refused, so nobody reaches it with wider rights.
  if (::chmod(socket_path.c_str(), 0600) != 0) {
    return fail("chmod", errno);
  }
  if (::listen(server->listen_fd_, static_cast<int>(kMaxConnections)) != 0) {
    return fail("listen", errno);
  }
  server->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (server->wake_fd_ < 0) {
    return fail("eventfd", errno);
  }
  server->thread_ = std::thread([s = server.get()] { s->run(); });
  return server;
}

AdminServer::~AdminServer() {
  stop();
  close_fd(listen_fd_);
  close_fd(wake_fd_);
}

void AdminServer::stop() {
  if (stopping_.exchange(true)) return;
  if (thread_.joinable()) {
    const std::uint64_t one = 1;
    // Fails only if the counter would overflow, and then the thread is awake anyway. Named, not
    // cast to void: with _FORTIFY_SOURCE (the package's build) glibc's write() must be used.
    [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  close_fd(listen_fd_);
  if (bound_) ::unlink(path_.c_str());
  bound_ = false;
}

void AdminServer::run() {
  std::vector<Connection> conns;
  std::vector<pollfd> fds;
  while (!stopping_.load()) {
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const auto& c : conns) {
      fds.push_back({c.fd, static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
    }
    const int ready = ::poll(fds.data(), fds.size(), 1000);
    if (ready < 0 && errno != EINTR) {
      log_.error("admin: poll failed; the admin socket stops",
                 LogFields().add("error", errno_text(errno)));
      break;
    }
    if (stopping_.load()) break;
    const auto now = Clock::now();
    // Connections first: fds[2 + i] is conns[i] until the list changes below.
    for (std::size_t i = 0; i < conns.size(); ++i) {
      Connection& c = conns[i];
      const short rev = ready > 0 ? fds[2 + i].revents : 0;
      bool eof = false;
      if ((rev & POLLIN) != 0) {
        char buf[16384];
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
          c.in.append(buf, static_cast<std::size_t>(n));
          c.last_active = now;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          eof = true;
        }
      } else if ((rev & (POLLHUP | POLLERR)) != 0) {
        eof = c.out.empty();  // with an answer pending, the send below finds out
      }
      if (c.out.empty()) take_requests(c, store_, log_, eof);
      if (!c.out.empty() && ((rev & (POLLOUT | POLLHUP | POLLERR)) != 0 || c.out_sent == 0)) {
        const ssize_t n = ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          c.out_sent += static_cast<std::size_t>(n);
          c.last_active = now;
          if (c.out_sent == c.out.size()) {
            c.out.clear();
            c.out_sent = 0;
            take_requests(c, store_, log_, false);  // requests that came with this one
          }
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          c.closing = true;  // the client went away before its answer
          c.out.clear();
        }
      }
      if ((c.closing && c.out.empty()) || now - c.last_active > kIdleTimeout) close_fd(c.fd);
    }
    std::erase_if(conns, [](const Connection& c) { return c.fd < 0; });

    if (ready > 0 && (fds[1].revents & POLLIN)) {
      while (true) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
          if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            log_.warn("admin: accept failed", LogFields().add("error", errno_text(errno)));
          }
          break;
        }
        if (conns.size() >= kMaxConnections) {
          int keep = fd;
          send_now(fd, refusal("too many admin connections (" + std::to_string(kMaxConnections) +
                               "); try again"));
          close_fd(keep);
          continue;
        }
        Connection c;
        c.fd = fd;
        c.last_active = now;
        conns.push_back(std::move(c));
      }
    }
  }
  for (auto& c : conns) close_fd(c.fd);
}

// ---- the client ------------------------------------------------------------------------------

namespace {

std::optional<ErrorCode> code_named(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(ErrorCode::invalid_input); ++i) {
    const auto code = static_cast<ErrorCode>(i);
    if (to_string(code) == name) return code;
  }
  return std::nullopt;
}

Error unavailable(const char* what) {
  return Error{ErrorCode::invalid_input,
               std::string(what) + " is not available through the admin socket"};
}

DeliveryInfo info_of(const Json& j) {
  DeliveryInfo d;
  d.delivery_id = j.at("id").get<std::string>();
  d.sink = j.at("sink").get<std::string>();
  d.event = j.at("event").get<std::string>();
  d.project_id = j.at("project_id").get<std::string>();
  d.timestamp_ms = j.at("timestamp_ms").get<std::int64_t>();
  d.received_at_ms = j.at("received_at_ms").get<std::int64_t>();
  const auto state = state_named(j.at("state").get<std::string>());
  if (!state) throw std::runtime_error("unknown state");
  d.state = *state;
  d.attempts = j.at("attempts").get<int>();
  d.next_attempt_at_ms = j.at("next_attempt_at_ms").get<std::int64_t>();
  d.last_error = j.at("last_error").get<std::string>();
  return d;
}

// Sends `req`, and returns the answer when it says ok, or its error; `decode` reads the rest.
template <class T, class F>
Result<T> call(const RemoteStore& remote, const std::filesystem::path& path, const Json& req,
               F&& decode) {
  auto line = remote.exchange(dump(req));
  if (!line) return std::move(line).error();
  const auto bad = [&](const std::string& why) {
    return Error{ErrorCode::invalid_input,
                 "unexpected answer from the receiver at " + path.string() + ": " + why};
  };
  try {
    const auto answer = Json::parse(*line, nullptr, false);
    if (answer.is_discarded() || !answer.is_object()) return bad("not a JSON object");
    const auto ok = answer.find("ok");
    if (ok == answer.end() || !ok->is_boolean()) return bad("no \"ok\"");
    if (!ok->get<bool>()) {
      const auto name = answer.value("code", std::string());
      return Error{code_named(name).value_or(ErrorCode::invalid_input),
                   answer.value("error", std::string("(no detail)"))};
    }
    return decode(answer);
  } catch (const std::exception& e) {
    return bad(e.what());
  }
}

}  // namespace

Result<std::string> RemoteStore::exchange(const std::string& request) const {
  const std::string where = "the receiver's admin socket " + path_.string();
  const auto fail = [&](const std::string& what) {
    return Error{ErrorCode::invalid_input, where + ": " + what};
  };
  UnixAddress addr;
  if (auto made = make_address(path_, addr); !made) return std::move(made).error();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(std::string("socket: ") + errno_text(errno));
  struct Closer {
    int& fd;
    ~Closer() { close_fd(fd); }
  } closer{fd};
  // A listener whose backlog is full (a receiver that hangs) blocks connect() and send() up to
  // this long on a Unix socket.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr.addr), addr.len) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return fail(
          "no such socket (the process that holds the store serves none: a receiver "
          "still starting, or not a receiver)");
    }
    if (err == ECONNREFUSED) {
      return fail("nothing listens (a receiver that is starting or stopping?)");
    }
    if (err == EAGAIN || err == EINPROGRESS || err == ETIMEDOUT) {
      return fail("the receiver does not accept connections (timed out after " +
                  std::to_string(timeout_.count()) + " ms)");
    }
    return fail(std::string("connect: ") + errno_text(err));
  }
  const std::string line = request + "\n";
  for (std::size_t sent = 0; sent < line.size();) {
    const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(std::string("send: ") + errno_text(errno));
    sent += static_cast<std::size_t>(n);
  }
  const auto deadline = Clock::now() + timeout_;
  std::string in;
  char buf[65536];
  while (true) {
    const auto nl = in.find('\n');
    if (nl != std::string::npos) {
      in.resize(nl);
      return in;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return fail("no answer within " + std::to_string(timeout_.count() / 1000) +
                  " s (is the receiver hanging?)");
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno != EINTR) return fail(std::string("poll: ") + errno_text(errno));
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail(std::string("recv: ") + errno_text(errno));
    if (n == 0) return fail("the connection closed before an answer");
    in.append(buf, static_cast<std::size_t>(n));
  }
}

std::vector<PutResult> RemoteStore::put_batch(std::vector<NewEvent> events) {
  std::vector<PutResult> out(events.size());
  for (auto& r : out) r.error = unavailable("put_batch").detail;
  return out;
}

Result<std::vector<Delivery>> RemoteStore::due(const std::string&, std::int64_t, std::size_t) {
  return unavailable("due");
}

std::optional<std::int64_t> RemoteStore::next_due(const std::string&) { return std::nullopt; }

Status RemoteStore::mark_batch(const std::vector<Mark>&) { return unavailable("mark_batch"); }

Result<std::int64_t> RemoteStore::retry(const std::optional<std::string>& delivery_id,
                                        bool all_dead) {
  Json req{{"op", "retry"}};
  if (delivery_id) req["id"] = *delivery_id;
  if (all_dead) req["all_dead"] = true;
  return call<std::int64_t>(*this, path_, req,
                            [](const Json& a) { return a.at("count").get<std::int64_t>(); });
}

Result<std::int64_t> RemoteStore::purge_delivered(std::int64_t older_than_ms) {
  return call<std::int64_t>(*this, path_, Json{{"op", "purge"}, {"older_than_ms", older_than_ms}},
                            [](const Json& a) { return a.at("count").get<std::int64_t>(); });
}

Result<std::vector<DeliveryInfo>> RemoteStore::list(const ListFilter& filter) {
  Json req{{"op", "list"}, {"limit", filter.limit}};
  if (filter.state) req["state"] = std::string(to_string(*filter.state));
  if (filter.event_pattern) req["event"] = *filter.event_pattern;
  if (filter.sink) req["sink"] = *filter.sink;
  if (filter.since_ms) req["since_ms"] = *filter.since_ms;
  if (filter.until_ms) req["until_ms"] = *filter.until_ms;
  return call<std::vector<DeliveryInfo>>(*this, path_, req, [](const Json& a) {
    std::vector<DeliveryInfo> rows;
    for (const auto& d : a.at("deliveries")) rows.push_back(info_of(d));
    return rows;
  });
}

Result<Details> RemoteStore::show(const std::string& delivery_id) {
  return call<Details>(*this, path_, Json{{"op", "show"}, {"id", delivery_id}}, [](const Json& a) {
    Details d;
    d.record = a.at("record").get<std::string>();
    for (const auto& j : a.at("deliveries")) d.deliveries.push_back(info_of(j));
    for (const auto& j : a.at("attempts")) {
      Attempt at;
      at.number = j.at("number").get<int>();
      at.started_at_ms = j.at("started_at_ms").get<std::int64_t>();
      at.finished_at_ms = j.at("finished_at_ms").get<std::int64_t>();
      at.ok = j.at("ok").get<bool>();
      at.error = j.at("error").get<std::string>();
      d.attempts.emplace_back(j.at("sink").get<std::string>(), std::move(at));
    }
    // Neither key: none kept, or a receiver older than the key.
    if (const auto o = a.find("original"); o != a.end() && !o->is_null()) {
      d.original = o->get<std::string>();
    } else if (const auto b = a.find("original_base64"); b != a.end() && !b->is_null()) {
      auto bytes = base64_decode(b->get<std::string>());
      if (!bytes) throw std::runtime_error("\"original_base64\" is not base64");
      d.original = std::move(*bytes);
    }
    return d;
  });
}

Result<StoreCounts> RemoteStore::counts(const std::optional<std::string>& sink) {
  Json req{{"op", "counts"}};
  if (sink) req["sink"] = *sink;
  return call<StoreCounts>(*this, path_, req, [](const Json& a) {
    StoreCounts c;
    c.pending = a.at("pending").get<std::int64_t>();
    c.delivered = a.at("delivered").get<std::int64_t>();
    c.dead = a.at("dead").get<std::int64_t>();
    return c;
  });
}

}  // namespace tdhook::receiver
