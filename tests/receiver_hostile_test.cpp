// Hostile clients against the real tdhook-receiver: slowloris, bodies too large to read,
// thousands of connections, malformed HTTP. Black-box: raw sockets, status codes, and what
// /proc shows of the receiver process. Every case runs over plain HTTP and over TLS (one
// connection path in the receiver, so one set of limits: issue 16); the TLS-only hostile
// clients (slow and never-finished handshakes) are in receiver_tls_test.cpp.
#include <doctest/doctest.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <thread>

#include "support/files.hpp"
#include "support/raw_client.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"
#include "support/tls_client.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

std::vector<std::string> with(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

milliseconds since(SteadyClock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t);
}

// Distinct lead.create occurrences (one timestamp each), signed as Tiledesk signs them.
std::vector<std::string> signed_bodies(int count) {
  std::vector<std::string> bodies;
  const auto ts = epoch_ms();
  for (int i = 0; i < count; ++i) {
    bodies.push_back(sign_sample("lead.create", receiver_secret, ts + i));
  }
  return bodies;
}

struct LegitRun {
  int attempted = 0;
  int answered_in_time = 0;  // 200 within `bound`
  milliseconds slowest{0};
  std::string failures;  // "status/elapsed" of the others
};

// Each body on a fresh connection, one after another. Stops once `budget` is spent, so a
// receiver that hangs costs the test seconds, not minutes; requests never sent count as failed.
LegitRun send_legit(Wire wire, int port, const std::vector<std::string>& bodies, milliseconds bound,
                    milliseconds budget) {
  LegitRun run;
  const auto started = SteadyClock::now();
  for (const auto& body : bodies) {
    if (since(started) > budget) break;
    const auto ex = exchange(wire, port, tiledesk_request(body, receiver_secret), 2 * bound);
    ++run.attempted;
    run.slowest = std::max(run.slowest, ex.elapsed);
    if (ex.status == 200 && ex.elapsed < bound) {
      ++run.answered_in_time;
    } else {
      run.failures += std::to_string(ex.status) + "/" + std::to_string(ex.elapsed.count()) + "ms ";
    }
  }
  return run;
}

int healthz_status(Wire wire, int port) {
  return exchange(wire, port,
                  "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 3s)
      .status;
}

// --- slowloris ----------------------------------------------------------------------------------

struct SlowConnection {
  Conn socket;
  SteadyClock::time_point opened, next_byte, ended;
  std::size_t sent = 0;
  bool connected = false;
  bool ready = false;  // connected, and over TLS the handshake done
  bool done = false;
  ReadState how = ReadState::open;
  std::string answer;  // what the server sent before closing (a 408, or nothing)
};

// A request head that never ends: one byte of it goes out per second.
char slow_byte(std::size_t i) {
  static const std::string start =
      "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: ";
  return i < start.size() ? start[i] : 'a';
}

struct SlowlorisState {
  std::atomic<bool> all_dribbling{false};  // every connection open and past its second byte
  std::atomic<int> open{0};
};

// Drives every connection from one poll loop until the server has closed them all or
// `deadline`: the one-byte-per-second pace is the attack itself.
void drive_slowloris(std::vector<SlowConnection>& conns, SteadyClock::time_point deadline,
                     SlowlorisState& state) {
  std::vector<pollfd> fds;
  std::vector<std::size_t> index;
  const auto finish = [](SlowConnection& c, ReadState how) {
    c.done = true;
    c.how = how;
    c.ended = SteadyClock::now();
    c.socket.reset();
  };
  while (true) {
    const auto now = SteadyClock::now();
    auto wake = now + 200ms;
    fds.clear();
    index.clear();
    bool dribbling = true;
    for (std::size_t i = 0; i < conns.size(); ++i) {
      auto& c = conns[i];
      if (c.done) {
        dribbling = false;
        continue;
      }
      if (c.ready && c.next_byte <= now) {
        const char byte = slow_byte(c.sent);
        const auto n = c.socket.send_available(std::string_view(&byte, 1));
        if (n < 0) {
          finish(c, ReadState::reset);
          dribbling = false;
          continue;
        }
        if (n == 1) {
          ++c.sent;
          c.next_byte += 1s;
        }
      }
      dribbling = dribbling && c.ready && c.sent >= 2;
      if (c.ready) wake = std::min(wake, c.next_byte);
      const short events = !c.connected ? POLLOUT : c.ready ? POLLIN : c.socket.wanted();
      fds.push_back(pollfd{c.socket.fd(), static_cast<short>(POLLIN | events), 0});
      index.push_back(i);
    }
    state.open.store(static_cast<int>(fds.size()));
    if (dribbling) state.all_dribbling.store(true);
    if (fds.empty() || now >= deadline) return;
    const auto timeout = std::clamp<long long>(
        std::chrono::duration_cast<milliseconds>(std::min(wake, deadline) - now).count(), 0, 200);
    if (::poll(fds.data(), fds.size(), static_cast<int>(timeout)) <= 0) continue;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      auto& c = conns[index[k]];
      const auto ev = fds[k].revents;
      if (ev == 0) continue;
      if (!c.connected) {
        if (connect_error(c.socket.fd()) != 0) {
          finish(c, ReadState::reset);
          continue;
        }
        c.connected = true;
      }
      if (!c.ready) {
        const int step = c.socket.handshake_step();
        if (step < 0) finish(c, ReadState::reset);
        if (step != 1) continue;
        c.ready = true;
        c.next_byte = SteadyClock::now();
      }
      if ((ev & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const auto how = c.socket.read_available(c.answer);
        if (how != ReadState::open) finish(c, how);
      }
    }
  }
}

// A JSON error body, when the server sent a body at all.
void check_error_body(const std::string& response, const std::string& what) {
  const auto body = body_of(response);
  if (body.empty()) return;
  CHECK_MESSAGE(header_of(response, "Content-Type").starts_with("application/json"), what);
  const auto parsed = json::parse(body, nullptr, false);
  REQUIRE_MESSAGE(parsed.is_object(), what, ": ", body);
  CHECK_MESSAGE(parsed.value("ok", true) == false, what, ": ", body);
  CHECK_MESSAGE(parsed.contains("error"), what, ": ", body);
}

std::string to_hex(std::size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%zx", n);
  return buf;
}

std::string chunked(const std::string& body, std::size_t pieces) {
  std::string out;
  const auto step = body.size() / pieces + 1;
  for (std::size_t at = 0; at < body.size(); at += step) {
    const auto piece = body.substr(at, step);
    out += to_hex(piece.size()) + "\r\n" + piece + "\r\n";
  }
  return out + "0\r\n\r\n";
}

std::string chunked_head(const std::string& extra = "") {
  return "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-hook-secret: " +
         std::string(receiver_secret) + "\r\nTransfer-Encoding: chunked\r\n" + extra + "\r\n";
}

// 300 slowloris connections do not delay signed requests, and time out themselves
void slowloris(Wire wire) {
  INFO("over ", to_string(wire));
  constexpr int slow_count = 300;
  constexpr auto read_timeout = 6s;  // the receiver's header timeout, short for the test
  constexpr auto margin = 4s;
  TempDir dir;
  ReceiverProcess rx(with(with_wire(receiver_args(dir), wire, dir), {"--read-timeout", "6s"}));
  REQUIRE(rx.wait_listening());
  const auto bodies = signed_bodies(50);

  std::vector<SlowConnection> conns(slow_count);
  for (auto& c : conns) {
    c.socket = connect_started(rx.port(), wire);
    REQUIRE(c.socket.valid());
    c.opened = SteadyClock::now();
  }
  SlowlorisState state;
  std::thread driver(
      [&] { drive_slowloris(conns, conns.back().opened + read_timeout + margin, state); });

  const bool under_attack = poll_until([&] { return state.all_dribbling.load(); }, 5s);
  LegitRun legit;
  int open_after_legit = 0;
  if (under_attack) {
    legit = send_legit(wire, rx.port(), bodies, 1000ms, 10s);
    open_after_legit = state.open.load();
  }
  driver.join();

  CHECK_MESSAGE(under_attack, "the slow connections never all got going");
  CHECK(open_after_legit == slow_count);  // the check ran while every slow client was still on
  CHECK(legit.attempted == 50);
  CHECK_MESSAGE(legit.answered_in_time == 50, "answered 200 in < 1 s: ", legit.answered_in_time,
                "/50; slowest ", legit.slowest.count(), " ms; others: ", legit.failures);

  int still_open = 0, late = 0, got_408 = 0;
  milliseconds longest{0};
  for (const auto& c : conns) {
    if (!c.done) {
      ++still_open;
      continue;
    }
    const auto lived = std::chrono::duration_cast<milliseconds>(c.ended - c.opened);
    longest = std::max(longest, lived);
    if (lived > read_timeout + margin) ++late;
    if (status_of(c.answer) == 408) ++got_408;
  }
  CHECK_MESSAGE(still_open == 0, still_open, " slow connections still open after ",
                (read_timeout + margin).count(), " s");
  CHECK(late == 0);
  MESSAGE("slowloris: slowest legit request ", legit.slowest.count(), " ms; slow connections ",
          "closed after at most ", longest.count(), " ms, ", got_408, " of them with a 408");
  CHECK(healthz_status(wire, rx.port()) == 200);
}

// a 1 GB body announced with Expect: 100-continue gets 413 at once, never 100
void expect_continue_too_large(Wire wire) {
  INFO("over ", to_string(wire));
  TempDir dir;
  ReceiverProcess rx(with_wire(receiver_args(dir), wire, dir));
  REQUIRE(rx.wait_listening());

  auto s = connect_wire(rx.port(), wire);
  REQUIRE(s.valid());
  const auto started = SteadyClock::now();
  REQUIRE(send_all(s,
                   "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   "x-hook-secret: " +
                       std::string(receiver_secret) +
                       "\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n",
                   started + 2s));
  std::string text;
  (void)read_until(s, text, started + 3s,
                   [](const std::string& t) { return has_complete_response(t); });
  CHECK_MESSAGE(status_of(text) == 413, text);
  CHECK(since(started) < 2s);
  check_error_body(text, "413");
  // Nothing of the body was sent, and the connection cannot carry another request.
  const auto end =
      read_until(s, text, SteadyClock::now() + 3s, [](const std::string&) { return false; });
  CHECK(end != ReadState::open);

  // The same header on a signed event within the limit: 100 Continue, then 200 for the body.
  {
    const auto body = signed_bodies(1).front();
    const auto request =
        tiledesk_request(body, receiver_secret, "Expect: 100-continue\r\nConnection: close\r\n");
    auto c = connect_wire(rx.port(), wire);
    REQUIRE(c.valid());
    const auto sent_at = SteadyClock::now();
    REQUIRE(send_all(c, std::string_view(request).substr(0, request.size() - body.size()),
                     sent_at + 2s));
    std::string interim;
    (void)read_until(c, interim, sent_at + 3s,
                     [](const std::string& t) { return t.find("\r\n\r\n") != std::string::npos; });
    REQUIRE_MESSAGE(status_of(interim) == 100, interim);
    CHECK(since(sent_at) < 2s);
    REQUIRE(send_all(c, body, SteadyClock::now() + 2s));
    std::string rest = interim.substr(interim.find("\r\n\r\n") + 4);
    (void)read_until(c, rest, SteadyClock::now() + 3s,
                     [](const std::string& t) { return has_complete_response(t); });
    CHECK_MESSAGE(status_of(rest) == 200, rest);
  }
}

// a chunked body past --max-body is cut off with 413 and the server stops reading
void chunked_too_large(Wire wire) {
  INFO("over ", to_string(wire));
  TempDir dir;
  ReceiverProcess rx(with(with_wire(receiver_args(dir), wire, dir), {"--max-body", "64KiB"}));
  REQUIRE(rx.wait_listening());

  // A chunked event under the limit is accepted: the 413 below is about size, not chunking.
  const auto body = signed_bodies(1).front();
  const auto small =
      exchange(wire, rx.port(), chunked_head("Connection: close\r\n") + chunked(body, 3));
  CHECK_MESSAGE(small.status == 200, small.text);

  auto s = connect_wire(rx.port(), wire);
  REQUIRE(s.valid());
  const auto started = SteadyClock::now();
  REQUIRE(send_all(s, chunked_head(), started + 2s));
  const std::string chunk = to_hex(16384) + "\r\n" + std::string(16384, ' ') + "\r\n";
  constexpr std::size_t give_up_after = 50u << 20;
  std::size_t pushed = 0, offset = 0;
  std::string answer;
  bool peer_gone = false;  // the server reset the connection or refused more bytes
  bool saw_eof = false;
  while (!peer_gone && pushed < give_up_after && since(started) < 10s) {
    // After EOF only writability matters (a reset shows as POLLERR).
    pollfd p{s.fd(), static_cast<short>(saw_eof ? POLLOUT : (POLLIN | POLLOUT)), 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (!saw_eof && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const auto how = s.read_available(answer);
      if (how == ReadState::reset) peer_gone = true;
      if (how == ReadState::eof) saw_eof = true;
    }
    if (!peer_gone && (p.revents & POLLOUT) != 0) {
      // Keeps pushing after the answer: the point is whether the server keeps reading.
      const auto n = s.send_available(std::string_view(chunk).substr(offset));
      if (n < 0) {
        peer_gone = true;
      } else {
        pushed += static_cast<std::size_t>(n);
        offset = (offset + static_cast<std::size_t>(n)) % chunk.size();
      }
    }
  }
  const auto elapsed = since(started);
  CHECK_MESSAGE(status_of(answer) == 413, answer);
  check_error_body(answer, "413");
  CHECK_MESSAGE(peer_gone, "still accepting bytes after ", pushed, " bytes");
  CHECK(pushed < (16u << 20));
  CHECK(elapsed < 5s);
  MESSAGE("chunked past --max-body 64KiB: connection ",
          std::string(saw_eof ? "closed (EOF), then " : ""), "reset after the client pushed ",
          pushed, " bytes in ", elapsed.count(), " ms");
  CHECK(healthz_status(wire, rx.port()) == 200);
}

// 3000 idle and 3000 half-sent connections leave the receiver answering, and leak no fd
void idle_and_half_sent(Wire wire) {
  INFO("over ", to_string(wire));
  constexpr std::size_t idle = 3000;
  const auto fd_limit = raise_fd_limit(16384);
  REQUIRE(fd_limit >= idle + 256);
  // The half-sent ones need a second 3000 descriptors, which a tight hard limit may not allow.
  const std::size_t half = fd_limit >= 2 * idle + 256 ? 3000 : 0;
  TempDir dir;
  // Longer than the test: the connections stay open until the test closes them.
  ReceiverProcess rx(with(with_wire(receiver_args(dir), wire, dir), {"--read-timeout", "60s"}));
  REQUIRE(rx.wait_listening());
  const auto bodies = signed_bodies(41);
  REQUIRE(exchange(wire, rx.port(), tiledesk_request(bodies[40], receiver_secret)).status == 200);
  REQUIRE(healthz_status(wire, rx.port()) == 200);
  const auto baseline = open_fd_count(rx.pid());
  REQUIRE(baseline > 0);

  const auto half_request = tiledesk_request(bodies[0], receiver_secret);
  auto conns = open_many(
      rx.port(), wire, idle + half,
      [&](std::size_t i) -> std::string {
        if (i < idle) return {};
        // Half of them stop inside the head, half inside the body.
        return i % 2 == 0 ? half_request.substr(0, 40)
                          : half_request.substr(0, half_request.size() - 100);
      },
      20s);
  const auto connected = count_valid(conns);
  CHECK(connected == idle + half);
  if (half == 0) {
    MESSAGE("RLIMIT_NOFILE ", fd_limit, ": only the 3000 idle connections");
  }
  const auto peak_fds = open_fd_count(rx.pid());

  CHECK(process_running(rx.pid()));
  const std::vector<std::string> during(bodies.begin(), bodies.begin() + 20);
  const auto legit = send_legit(wire, rx.port(), during, 1000ms, 6s);
  CHECK_MESSAGE(legit.answered_in_time == 20, "answered 200 in < 1 s: ", legit.answered_in_time,
                "/20; slowest ", legit.slowest.count(), " ms; others: ", legit.failures);
  CHECK(healthz_status(wire, rx.port()) == 200);
  const auto closed_by_server = reap_closed(conns);
  MESSAGE((idle + half), " connections: ", connected, " connected, receiver fds ", baseline, " -> ",
          peak_fds, "; ", closed_by_server, " closed by the server while held; slowest legit ",
          legit.slowest.count(), " ms");

  for (auto& c : conns) c.reset();
  // A little slack: the spool and the logger may open a descriptor of their own meanwhile.
  const bool back = poll_until([&] { return open_fd_count(rx.pid()) <= baseline + 8; }, 15s);
  CHECK_MESSAGE(back, "receiver fds: ", open_fd_count(rx.pid()), ", baseline ", baseline);
  CHECK(process_running(rx.pid()));
  const std::vector<std::string> after(bodies.begin() + 20, bodies.begin() + 40);
  const auto again = send_legit(wire, rx.port(), after, 1000ms, 6s);
  CHECK(again.answered_in_time == 20);
  CHECK(healthz_status(wire, rx.port()) == 200);
}

// connections beyond --max-connections are closed at once, and the receiver recovers
void connection_cap(Wire wire) {
  INFO("over ", to_string(wire));
  constexpr std::size_t cap = 200, count = 600;
  REQUIRE(raise_fd_limit(4096) >= count + 256);
  TempDir dir;
  ReceiverProcess rx(with(with_wire(receiver_args(dir), wire, dir),
                          {"--max-connections", "200", "--read-timeout", "60s"}));
  REQUIRE(rx.wait_listening());
  const auto bodies = signed_bodies(11);
  REQUIRE(exchange(wire, rx.port(), tiledesk_request(bodies[10], receiver_secret)).status == 200);
  const auto baseline = open_fd_count(rx.pid());

  auto conns = open_many(
      rx.port(), wire, count, [](std::size_t) { return std::string(); }, 10s);
  std::size_t closed = 0;
  const bool refused = poll_until(
      [&] {
        closed += reap_closed(conns);
        return closed >= count - cap;
      },
      10s);
  CHECK_MESSAGE(refused, closed, " of ", count, " closed by the server");
  CHECK(count_valid(conns) <= cap);
  CHECK(process_running(rx.pid()));
  MESSAGE("--max-connections 200: ", closed, " of ", count, " connections closed, ",
          count_valid(conns), " held; receiver fds ", open_fd_count(rx.pid()));

  for (auto& c : conns) c.reset();
  CHECK(poll_until([&] { return open_fd_count(rx.pid()) <= baseline + 8; }, 15s));
  const std::vector<std::string> after(bodies.begin(), bodies.begin() + 10);
  const auto legit = send_legit(wire, rx.port(), after, 1000ms, 6s);
  CHECK_MESSAGE(legit.answered_in_time == 10, legit.failures);
  CHECK(healthz_status(wire, rx.port()) == 200);
}

// malformed HTTP gets a 4xx with a JSON error, and the receiver stays healthy
void malformed_http(Wire wire) {
  INFO("over ", to_string(wire));
  TempDir dir;
  ReceiverProcess rx(with_wire(receiver_args(dir), wire, dir));
  REQUIRE(rx.wait_listening());
  const auto body = signed_bodies(1).front();
  const auto length = std::to_string(body.size());
  const std::string secret = receiver_secret;
  // Most cases carry a valid signed event, so a lenient parser would answer 200.
  const auto request = [&](const std::string& fields, const std::string& tail) {
    return "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "x-hook-secret: " +
           secret + "\r\n" + fields + "\r\n" + tail;
  };
  const auto with_length = [&](const std::string& fields) {
    return request("Content-Length: " + length + "\r\n" + fields, body);
  };
  std::string bare_lf = with_length("");
  for (std::size_t at = bare_lf.find("\r\n"); at < bare_lf.size() - body.size();
       at = bare_lf.find("\r\n", at)) {
    bare_lf.erase(at, 1);
  }
  std::string many_fields;
  for (int i = 0; i < 200; ++i) many_fields += "X-Field-" + std::to_string(i) + ": v\r\n";
  const auto chunked_body = chunked(body, 2);

  struct Case {
    const char* name;
    std::string request;
    int also_allowed = 0;  // a non-4xx status that is also a right answer
  };
  const std::vector<Case> cases = {
      {"garbage request line", "GARBAGE\r\n\r\n"},
      {"request line without a version", "POST /\r\nHost: x\r\n\r\n"},
      {"bad HTTP version",
       "POST / HTTP/1.x\r\nHost: x\r\nContent-Length: " + length + "\r\n\r\n" + body},
      {"not HTTP", "POST / HTXP/1.1\r\nHost: x\r\n\r\n"},
      {"HTTP/3.0", "POST / HTTP/3.0\r\nHost: x\r\n\r\n", 505},
      {"header line without a colon", with_length("NoColonHere\r\n")},
      {"space before the colon", request("Content-Length : " + length + "\r\n", body)},
      {"NUL in a header value",
       with_length(std::string("Origin: http://local") + '\0' + "host:3000\r\n")},
      {"bare LF line ends", bare_lf},
      {"obs-fold", with_length("User-Agent: tiledesk-\r\n webhooks\r\n")},
      {"Content-Length not a number", request("Content-Length: 12ab\r\n", body)},
      {"Content-Length negative", request("Content-Length: -1\r\n", body)},
      {"Content-Length twice, differently",
       request("Content-Length: " + length +
                   "\r\nContent-Length: " + std::to_string(body.size() + 5) + "\r\n",
               body)},
      {"Content-Length and Transfer-Encoding",
       request("Content-Length: " + std::to_string(chunked_body.size()) +
                   "\r\nTransfer-Encoding: chunked\r\n",
               chunked_body)},
      {"unsupported transfer coding", request("Transfer-Encoding: gzip\r\n", "0\r\n\r\n"), 501},
      {"invalid chunk size",
       request("Transfer-Encoding: chunked\r\n", "zz\r\n" + body + "\r\n0\r\n\r\n")},
      {"request line longer than 16 KiB",
       "POST /" + std::string(16 * 1024, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"a 40 KiB header", with_length("X-Big: " + std::string(40 * 1024, 'b') + "\r\n")},
      {"200 header fields", with_length(many_fields)},
  };
  std::string observed;
  for (const auto& c : cases) {
    const auto ex = exchange(wire, rx.port(), c.request, 3s);
    const bool client_error = ex.status >= 400 && ex.status <= 499;
    CHECK_MESSAGE((client_error || (c.also_allowed != 0 && ex.status == c.also_allowed)), c.name,
                  ": ", ex.status, " ", ex.text.substr(0, 200));
    if (ex.status != 0) check_error_body(ex.text, c.name);
    observed += std::string(c.name) + " " + std::to_string(ex.status) + "; ";
  }
  MESSAGE("malformed HTTP: ", observed);

  CHECK(process_running(rx.pid()));
  CHECK(healthz_status(wire, rx.port()) == 200);
  const auto after = exchange(wire, rx.port(), tiledesk_request(signed_bodies(1).front(), secret));
  CHECK_MESSAGE(after.status == 200, after.text);
}

}  // namespace

TEST_SUITE("receiver hostile clients") {
  TEST_CASE("300 slowloris connections do not delay signed requests, and time out themselves") {
    slowloris(Wire::plain);
  }
  TEST_CASE(
      "300 slowloris connections do not delay signed requests, and time out themselves (over "
      "TLS)") {
    slowloris(Wire::tls);
  }

  TEST_CASE("a 1 GB body announced with Expect: 100-continue gets 413 at once, never 100") {
    expect_continue_too_large(Wire::plain);
  }
  TEST_CASE(
      "a 1 GB body announced with Expect: 100-continue gets 413 at once, never 100 (over TLS)") {
    expect_continue_too_large(Wire::tls);
  }

  TEST_CASE("a chunked body past --max-body is cut off with 413 and the server stops reading") {
    chunked_too_large(Wire::plain);
  }
  TEST_CASE(
      "a chunked body past --max-body is cut off with 413 and the server stops reading (over "
      "TLS)") {
    chunked_too_large(Wire::tls);
  }

  TEST_CASE(
      "3000 idle and 3000 half-sent connections leave the receiver answering, and leak no fd") {
    idle_and_half_sent(Wire::plain);
  }
  TEST_CASE(
      "3000 idle and 3000 half-sent connections leave the receiver answering, and leak no fd (over "
      "TLS)") {
    idle_and_half_sent(Wire::tls);
  }

  TEST_CASE("connections beyond --max-connections are closed at once, and the receiver recovers") {
    connection_cap(Wire::plain);
  }
  TEST_CASE(
      "connections beyond --max-connections are closed at once, and the receiver recovers (over "
      "TLS)") {
    connection_cap(Wire::tls);
  }

  TEST_CASE("malformed HTTP gets a 4xx with a JSON error, and the receiver stays healthy") {
    malformed_http(Wire::plain);
  }
  TEST_CASE(
      "malformed HTTP gets a 4xx with a JSON error, and the receiver stays healthy (over TLS)") {
    malformed_http(Wire::tls);
  }
}

}  // namespace tdhook::test
