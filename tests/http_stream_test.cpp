// Streamed answers on the receiver's own HTTP loop (http/http_loop.hpp, ResponseStream): the
// inspector's Server-Sent Events ride on them. A real loop on 127.0.0.1 port 0, a handler of the
// test's that answers GET /stream with a stream, and raw sockets as clients.
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "http/http_loop.hpp"
#include "support/raw_client.hpp"

namespace tdhook::test {
namespace {

using namespace std::chrono_literals;
using receiver::HttpError;
using receiver::HttpLoop;
using receiver::HttpLoopOptions;
using receiver::HttpRequest;
using receiver::HttpRequestHead;
using receiver::HttpResponse;
using receiver::Responder;
using receiver::ResponseStream;
using SteadyClock = std::chrono::steady_clock;

// Answers GET /stream with a stream (its first chunk "hello"), anything else 404; keeps the
// streams for the test to write to.
class StreamHandler final : public receiver::HttpHandler {
 public:
  std::optional<HttpResponse> on_head(const HttpRequestHead&, std::string_view) override {
    return std::nullopt;
  }
  void handle(HttpRequest& request, Responder respond) override {
    if (request.head.path() != "/stream") {
      return respond(HttpResponse{404, "text/plain", "no", {}, false, nullptr});
    }
    auto stream = std::make_shared<ResponseStream>();
    {
      std::lock_guard lock(mu_);
      streams_.push_back(stream);
    }
    cv_.notify_all();
    HttpResponse res;
    res.content_type = "text/event-stream";
    res.body = "hello";
    res.stream = std::move(stream);
    respond(std::move(res));
  }
  HttpResponse on_error(const HttpError& error, std::string_view) override {
    return HttpResponse{error.status, "text/plain", std::string(error.reason), {}, true, nullptr};
  }

  // The n-th stream handed out (from 0), once there is one.
  std::shared_ptr<ResponseStream> stream(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 5s, [&] { return streams_.size() > n; });
    return streams_.size() > n ? streams_[n] : nullptr;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<ResponseStream>> streams_;
};

// A loop serving `handler` on a thread of its own until the end of the scope.
struct Served {
  StreamHandler handler;
  std::unique_ptr<HttpLoop> loop;
  std::thread thread;
  std::atomic<bool> ran_ok{false};

  Served() {
    HttpLoopOptions options;
    options.loops = 1;
    options.workers = 1;
    options.write_timeout = 3s;
    auto bound = HttpLoop::bind(options, handler);
    REQUIRE(bound);
    loop = std::move(*bound);
    thread = std::thread([this] { ran_ok = loop->run(); });
  }
  ~Served() {
    loop->shutdown();
    thread.join();
  }
  Served(const Served&) = delete;
  Served& operator=(const Served&) = delete;

  int port() const { return loop->port(); }
};

const std::string get_stream = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";

bool contains(const std::string& text, std::string_view what) {
  return text.find(what) != std::string::npos;
}

}  // namespace

TEST_SUITE("http loop streams") {
  TEST_CASE("a streamed answer is chunked, written as it comes, and ends with its last chunk") {
    Served served;
    auto socket = connect_to(served.port());
    REQUIRE(socket.valid());
    REQUIRE(send_all(socket.fd(), get_stream, SteadyClock::now() + 2s));
    auto stream = served.handler.stream(0);
    REQUIRE(stream);
    std::string text;
    read_until(socket.fd(), text, SteadyClock::now() + 5s,
               [](const std::string& t) { return contains(t, "5\r\nhello\r\n"); });
    CHECK(text.starts_with("HTTP/1.1 200 "));
    CHECK(header_of(text, "Transfer-Encoding") == "chunked");
    CHECK(header_of(text, "Content-Length").empty());
    CHECK(header_of(text, "Connection") == "close");
    CHECK(text.ends_with("\r\n\r\n5\r\nhello\r\n"));

    // Each write is a chunk of its own, sent at once.
    CHECK(stream->write("event: a\n\n"));
    read_until(socket.fd(), text, SteadyClock::now() + 5s,
               [](const std::string& t) { return contains(t, "a\r\nevent: a\n\n\r\n"); });
    CHECK(text.ends_with("a\r\nevent: a\n\n\r\n"));
    CHECK(stream->write(""));  // nothing, and no empty chunk (that would end the body)
    CHECK(stream->write(std::string(300, 'x')));
    stream->end();
    CHECK_FALSE(stream->open());
    CHECK_FALSE(stream->write("late"));
    const auto end = read_until(socket.fd(), text, SteadyClock::now() + 5s,
                                [](const std::string&) { return false; });
    CHECK(end == ReadState::eof);
    CHECK(text.ends_with("12c\r\n" + std::string(300, 'x') + "\r\n0\r\n\r\n"));
    CHECK_FALSE(contains(text, "late"));
  }

  TEST_CASE("a client that closes ends its stream: write says so") {
    Served served;
    {
      auto socket = connect_to(served.port());
      REQUIRE(send_all(socket.fd(), get_stream, SteadyClock::now() + 2s));
      std::string text;
      read_until(socket.fd(), text, SteadyClock::now() + 5s,
                 [](const std::string& t) { return contains(t, "hello"); });
      REQUIRE(contains(text, "hello"));
    }  // closed
    auto stream = served.handler.stream(0);
    REQUIRE(stream);
    const auto deadline = SteadyClock::now() + 5s;
    while (stream->open() && SteadyClock::now() < deadline) std::this_thread::yield();
    CHECK_FALSE(stream->open());
    CHECK_FALSE(stream->write("after the close"));
    while (served.loop->connections() != 0 && SteadyClock::now() < deadline)
      std::this_thread::yield();
    CHECK(served.loop->connections() == 0);
  }

  // Writes 64 KiB chunks, each once the loop took the one before and `behind()` (bytes written
  // and not yet read by the client) is at most 512 KiB, until the stream is over, `most` bytes
  // are written or 20 s pass; returns the bytes written.
  std::size_t write_paced(ResponseStream & stream, std::size_t most,
                          const std::function<std::size_t(std::size_t)>& behind) {
    const std::string chunk(64 * 1024, 'e');
    std::size_t written = 0;
    const auto deadline = SteadyClock::now() + 20s;
    while (written < most && SteadyClock::now() < deadline && stream.write(chunk)) {
      written += chunk.size();
      while ((stream.pending() != 0 || behind(written) > 512 * 1024) && stream.open() &&
             SteadyClock::now() < deadline)
        std::this_thread::yield();
    }
    return written;
  }

  TEST_CASE("a client that stops reading is dropped once 1 MiB waits for it; a reader is not") {
    Served served;
    // A reader takes 32 MiB, written as fast as it reads (never more than 512 KiB behind).
    auto reader = connect_to(served.port());
    REQUIRE(send_all(reader.fd(), get_stream, SteadyClock::now() + 2s));
    auto read_stream = served.handler.stream(0);
    REQUIRE(read_stream);
    std::atomic<bool> reading{true};
    std::atomic<std::size_t> received{0};
    std::thread drain([&] {
      std::string text;
      while (reading.load()) {
        read_until(reader.fd(), text, SteadyClock::now() + 100ms,
                   [](const std::string& t) { return t.size() > 64 * 1024; });
        received += text.size();
        text.clear();
      }
    });
    const auto to_reader = write_paced(*read_stream, 32u * 1024 * 1024, [&](std::size_t written) {
      const std::size_t got = received.load();
      return written > got ? written - got : 0;
    });
    CHECK(to_reader == 32u * 1024 * 1024);
    CHECK(read_stream->open());
    reading = false;
    drain.join();
    CHECK(received.load() > 32u * 1024 * 1024 - 512 * 1024);

    // A client that reads nothing: the kernel's buffers take a few MiB (the sender's grows on
    // loopback), then 1 MiB waits in the loop and the connection is dropped.
    auto stalled = connect_to(served.port());
    int small = 4096;
    ::setsockopt(stalled.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    REQUIRE(send_all(stalled.fd(), get_stream, SteadyClock::now() + 2s));
    auto stream = served.handler.stream(1);
    REQUIRE(stream);
    const auto written = write_paced(*stream, 64u * 1024 * 1024, [](std::size_t) { return 0; });
    CHECK_FALSE(stream->open());
    CHECK(written < 64u * 1024 * 1024);
    MESSAGE("a client reading nothing was dropped after ", written / 1024, " KiB");
    CHECK(read_stream->open());  // the other one goes on
  }

  TEST_CASE("shutdown ends an open stream with its last chunk, and run() returns") {
    auto served = std::make_unique<Served>();
    auto socket = connect_to(served->port());
    REQUIRE(send_all(socket.fd(), get_stream, SteadyClock::now() + 2s));
    auto stream = served->handler.stream(0);
    REQUIRE(stream);
    std::string text;
    read_until(socket.fd(), text, SteadyClock::now() + 5s,
               [](const std::string& t) { return contains(t, "hello\r\n"); });
    const auto started = SteadyClock::now();
    served->loop->shutdown();
    const auto end = read_until(socket.fd(), text, SteadyClock::now() + 5s,
                                [](const std::string&) { return false; });
    CHECK(end == ReadState::eof);
    CHECK(text.ends_with("5\r\nhello\r\n0\r\n\r\n"));
    CHECK_FALSE(stream->open());
    served.reset();  // joins run()
    CHECK(SteadyClock::now() - started < 3s);
  }

  TEST_CASE("HEAD of a stream gets the head alone") {
    Served served;
    const auto answer = exchange(served.port(), "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n", 5s);
    CHECK(answer.status == 200);
    CHECK(header_of(answer.text, "Transfer-Encoding") == "chunked");
    CHECK(answer.text.ends_with("\r\n\r\n"));
    CHECK_FALSE(contains(answer.text, "hello"));
    auto stream = served.handler.stream(0);
    REQUIRE(stream);
    CHECK_FALSE(stream->open());
  }
}

}  // namespace tdhook::test
