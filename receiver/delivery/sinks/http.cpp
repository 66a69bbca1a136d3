// http:, https: and forward: sinks: each delivery is one POST. An http sink sends the event
// record (the JSON every other sink gets); a forward: sink sends Tiledesk's notification as it
// came in (its body bytes and the headers a Tiledesk-verifying app reads), so that an app
// written for Tiledesk's webhooks works behind the receiver unchanged.
//
// cpp-httplib's client is not safe for concurrent requests: the sink keeps one client per
// delivery that may run at once (a slot), each with its own kept-alive connection. Its timeouts
// count per read or write, so a watchdog thread stops a slot's request once the attempt's
// http_timeout has passed (ClientImpl::stop() shuts the socket down from another thread).
#include <netdb.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "delivery/process.hpp"
#include "delivery/sink.hpp"
#include "store/record.hpp"

namespace tdhook::receiver {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kUserAgent = "tdhook-receiver/0.1";
// Bytes of an answer's body quoted in a failed delivery's error.
constexpr std::size_t kErrorQuote = 200;
// An answer's body is read up to this and then the connection is dropped: only its first bytes
// are kept, and reading on would only let a huge answer hold the slot.
constexpr std::size_t kAnswerReadLimit = 1024 * 1024;
// What a failure to connect is diagnosed with at most (connect_failure()).
constexpr milliseconds kDiagnoseBudget{2000};

// At most `most` bytes of `text` for an error message: on one line (control characters become
// spaces), valid UTF-8 (other bytes become '?'), never cut inside a character. The store keeps
// the error, and `tdhook spool ls --json` prints it as JSON.
std::string quote(std::string_view text, std::size_t most) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t n = 1;
    char replacement = 0;
    if (c < 0x20 || c == 0x7F) {
      replacement = ' ';
    } else if (c >= 0x80) {
      n = utf8_sequence_length(text, i);
      if (n == 0) {
        n = 1;
        replacement = '?';
      }
    }
    const std::size_t width = replacement != 0 ? 1 : n;
    if (out.size() + width > most) break;
    if (replacement != 0)
      out += replacement;
    else
      out.append(text.substr(i, n));
    i += n;
  }
  return out;
}

// Every occurrence of `secret` in `text` replaced: an app that echoes the x-hook-secret it was
// forwarded must not put it in the store, the log or the inspector.
void redact(std::string& text, std::string_view secret) {
  if (secret.empty()) return;
  constexpr std::string_view mask = "[x-hook-secret]";
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
    text.replace(at, secret.size(), mask);
    at += mask.size();
  }
}

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Why connecting to host:port failed, found by trying once more: cpp-httplib says only that it
// could not connect, and the errno it leaves is its own non-blocking connect's EINPROGRESS.
std::string connect_failure(const std::string& host, int port, milliseconds budget) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) return "cannot resolve " + host + ": " + ::gai_strerror(rc);
  const auto deadline = Clock::now() + budget;
  int last = 0;
  bool connects = false;
  for (const addrinfo* ai = found; ai != nullptr && !connects; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = errno;
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      connects = true;
    } else if (errno != EINPROGRESS) {
      last = errno;
    } else {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
      int err = 0;
      socklen_t len = sizeof err;
      if (ready <= 0) {
        last = ETIMEDOUT;
      } else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        last = errno;
      } else if (err != 0) {
        last = err;
      } else {
        connects = true;
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (connects) return "cannot connect (the connection failed, then worked when tried again)";
  if (last == ECONNREFUSED) return "connection refused";
  if (last == ETIMEDOUT) return "connect timeout";
  return std::string("cannot connect: ") + std::strerror(last != 0 ? last : EHOSTUNREACH);
}

// Whether `path` holds at least one PEM certificate.
Status check_ca_file(const std::string& path) {
  BIO* bio = BIO_new_file(path.c_str(), "r");
  if (bio == nullptr) {
    return Error{ErrorCode::invalid_config,
                 "cannot read the CA file " + path + ": " + std::strerror(errno)};
  }
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) {
    return Error{ErrorCode::invalid_config,
                 "the CA file " + path + " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"};
  }
  X509_free(cert);
  return Ok{};
}

class HttpSink final : public Sink {
 public:
  HttpSink(const SinkConfig& config, Url url, bool forward)
      : url_(std::move(url)),
        forward_(forward),
        timeout_(config.http_timeout),
        ca_(config.http_ca) {
    const int slots = std::max(1, sink_concurrency(config));
    for (int i = 0; i < slots; ++i) {
      auto slot = std::make_unique<Slot>();
      if (url_.tls) {
        auto client = std::make_unique<httplib::SSLClient>(url_.host, url_.port);
        client->enable_server_certificate_verification(true);
        if (!ca_.empty()) client->set_ca_cert_path(ca_.c_str());
        slot->ssl = client.get();
        slot->client = std::move(client);
      } else {
        slot->client = std::make_unique<httplib::ClientImpl>(url_.host, url_.port);
      }
      auto& c = *slot->client;
      c.set_keep_alive(true);
      // cpp-httplib writes the head and the body apart: with Nagle on, the body waits for the
      // app's (delayed, 40 ms) ACK of the head, and a slot delivers 22 events a second.
      c.set_tcp_nodelay(true);
      c.set_follow_location(false);
      c.set_url_encode(false);  // the URL goes as configured: its '+' stays a '+'
      c.set_connection_timeout(timeout_);
      c.set_read_timeout(timeout_);
      c.set_write_timeout(timeout_);
      free_.push_back(slot.get());
      slots_.push_back(std::move(slot));
    }
    watchdog_ = std::thread([this] { watch(); });
  }

  ~HttpSink() override {
    {
      const std::lock_guard lock(watch_mu_);
      stopping_ = true;
    }
    watch_cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
  }

  HttpSink(const HttpSink&) = delete;
  HttpSink& operator=(const HttpSink&) = delete;

  std::vector<DeliveryOutcome> deliver(const std::vector<Delivery>& batch) override {
    std::vector<DeliveryOutcome> outcomes;
    outcomes.reserve(batch.size());
    for (const auto& d : batch) {
      Slot& slot = acquire();
      DeliveryOutcome outcome;
      try {
        outcome = post(slot, d);
      } catch (const std::exception& e) {
        // Nothing of cpp-httplib's is to throw into the dispatcher: a failed delivery.
        outcome = DeliveryOutcome{false, std::string("http client error: ") + e.what(), {}};
      }
      release(slot);
      outcomes.push_back(std::move(outcome));
    }
    return outcomes;
  }

 private:
  struct Slot {
    std::unique_ptr<httplib::ClientImpl> client;
    httplib::SSLClient* ssl = nullptr;  // client, when https
    bool reused = false;  // its next request goes on a kept-alive connection (its thread only)
    std::mutex stop_mu;   // held by the watchdog while it stops this slot's request
    // watch_mu_:
    bool busy = false;
    bool timed_out = false;
    std::uint64_t generation = 0;  // one per attempt, so that a late stop hits no other
    Clock::time_point deadline;
  };

  Slot& acquire() {
    std::unique_lock lock(pool_mu_);
    // The dispatcher runs at most as many deliveries at once as there are slots.
    pool_cv_.wait(lock, [this] { return !free_.empty(); });
    Slot* slot = free_.back();
    free_.pop_back();
    return *slot;
  }

  void release(Slot& slot) {
    {
      const std::lock_guard lock(pool_mu_);
      free_.push_back(&slot);
    }
    pool_cv_.notify_one();
  }

  // The request's headers and body; an error when a forward: delivery has no original.
  Result<httplib::Request> request_for(const Delivery& d, std::string& secret) const {
    httplib::Request req;
    req.method = "POST";
    req.path = url_.path;
    const std::string attempt = std::to_string(d.attempts + 1);
    if (!forward_) {
      req.headers.emplace("Content-Type", "application/json");
      req.headers.emplace("User-Agent", kUserAgent);
      req.headers.emplace("X-Tdhook-Delivery-Id", env_safe(d.delivery_id));
      req.headers.emplace("X-Tdhook-Attempt", attempt);
      req.headers.emplace("X-Tdhook-Event", env_safe(d.event));
      req.body = d.record;
      return req;
    }
    if (d.original.empty()) {
      return Error{ErrorCode::invalid_input,
                   "no original request was kept for this event (it was stored before a "
                   "forward: sink was configured), so there is nothing to forward"};
    }
    const auto original = parse_original(d.original);
    if (!original) {
      return Error{ErrorCode::invalid_input, "the original request kept for this event is damaged"};
    }
    for (const auto& [name, value] : original->headers) {
      // Both made by the receiver's parser, which refuses line breaks in fields; checked all
      // the same, since a header is written as it is.
      if (name.find_first_of("\r\n:") != std::string_view::npos ||
          value.find_first_of("\r\n") != std::string_view::npos)
        continue;
      if (same_name(name, "x-hook-secret")) secret = std::string(value);
      req.headers.emplace(std::string(name), std::string(value));
    }
    // Tiledesk always sends one; without it cpp-httplib would name itself.
    if (!req.has_header("User-Agent")) req.headers.emplace("User-Agent", kUserAgent);
    req.headers.emplace("X-Tdhook-Delivery-Id", env_safe(d.delivery_id));
    req.headers.emplace("X-Tdhook-Attempt", attempt);
    req.body = std::string(original->body);
    return req;
  }

  DeliveryOutcome post(Slot& slot, const Delivery& d) {
    std::string secret;
    auto made = request_for(d, secret);
    if (!made) return DeliveryOutcome{false, made.error().detail, {}};
    const auto deadline = Clock::now() + timeout_;
    begin(slot, deadline);
    Answer answer;
    // A kept-alive connection that the server closed as the request went out fails at once,
    // without an answer: tried once more on a new connection, within the same attempt.
    for (int tries = 0; tries < 2; ++tries) {
      const bool reused = slot.reused;
      answer = exchange(slot, *made);
      const bool closed_early = answer.status == 0 && (answer.error == httplib::Error::Read ||
                                                       answer.error == httplib::Error::Write);
      if (!(reused && closed_early && !timed_out(slot) && Clock::now() < deadline)) break;
    }
    const bool late = end(slot);
    DeliveryOutcome outcome = judge(slot, answer, late, deadline);
    redact(outcome.error, secret);
    redact(outcome.output, secret);
    return outcome;
  }

  struct Answer {
    int status = 0;  // 0: no answer (error says why)
    httplib::Error error = httplib::Error::Success;
    std::string body;  // its first kOutputKept bytes
    std::string location;
  };

  Answer exchange(Slot& slot, const httplib::Request& made) {
    httplib::Request req = made;  // cpp-httplib adds its own headers to the one it sends
    Answer a;
    std::size_t read = 0;
    req.response_handler = [&a](const httplib::Response& res) {
      a.status = res.status;
      if (res.has_header("Location")) a.location = res.get_header_value("Location");
      return true;
    };
    req.content_receiver = [&a, &read](const char* data, std::size_t n, std::uint64_t,
                                       std::uint64_t) {
      if (a.body.size() < kOutputKept)
        a.body.append(data, std::min(n, kOutputKept - a.body.size()));
      read += n;
      return read <= kAnswerReadLimit;
    };
    httplib::Response res;
    const bool ok = slot.client->send(req, res, a.error);
    if (ok) {
      a.status = res.status;
      a.error = httplib::Error::Success;
    }
    // Kept alive unless the request failed (cpp-httplib closed it) or the server said close.
    slot.reused = ok && res.get_header_value("Connection") != "close";
    return a;
  }

  DeliveryOutcome judge(Slot& slot, const Answer& a, bool late, Clock::time_point deadline) const {
    DeliveryOutcome out;
    out.output = a.body;
    // An answer whose body was cut off (too long, or the watchdog) still has its status.
    if (a.status >= 200 && a.status <= 299) {
      out.ok = true;
      return out;
    }
    if (a.status != 0) {
      out.error = "HTTP " + std::to_string(a.status);
      if (is_redirect(a.status)) {
        out.error += " (redirects are not followed)";
        if (!a.location.empty()) out.error += ": Location " + quote(a.location, kErrorQuote);
      } else if (!a.body.empty()) {
        out.error += ": " + quote(a.body, kErrorQuote);
      }
      return out;
    }
    using httplib::Error;
    // The watchdog's stop shows as a closed connection; whichever the client says, an attempt
    // that failed once its deadline had passed ran out of time (CI saw the stop's reset win the
    // race with the watchdog's flag once).
    if (late || a.error == Error::ConnectionTimeout || Clock::now() >= deadline) {
      out.error = "timeout after " + format_seconds(timeout_);
      return out;
    }
    switch (a.error) {
      case Error::Connection: {
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        out.error = connect_failure(url_.host, url_.port,
                                    std::clamp(left, milliseconds(100), kDiagnoseBudget));
        break;
      }
      case Error::Read:
        out.error = "no answer: the connection was closed or reset";
        break;
      case Error::Write:
        out.error = "cannot send the request: the connection was closed or reset";
        break;
      case Error::SSLServerVerification: {
        const long verify = slot.ssl != nullptr ? slot.ssl->get_openssl_verify_result() : 0;
        out.error =
            verify != X509_V_OK
                ? std::string("certificate verification failed: ") +
                      X509_verify_cert_error_string(verify)
                : "certificate verification failed: the certificate is not for " + url_.host;
        break;
      }
      case Error::SSLConnection:
        out.error = "TLS handshake failed";
        break;
      case Error::SSLLoadingCerts:
        out.error = ca_.empty() ? "cannot load the system's CA certificates"
                                : "cannot load the CA certificates of " + ca_;
        break;
      default:
        out.error = "request failed: " + httplib::to_string(a.error);
        break;
    }
    return out;
  }

  // --- the watchdog ----------------------------------------------------------------------------

  void begin(Slot& slot, Clock::time_point deadline) {
    {
      const std::lock_guard lock(watch_mu_);
      slot.busy = true;
      slot.timed_out = false;
      slot.deadline = deadline;
      ++slot.generation;
    }
    watch_cv_.notify_all();
  }

  bool timed_out(Slot& slot) {
    const std::lock_guard lock(watch_mu_);
    return slot.timed_out;
  }

  // True when the watchdog stopped the attempt (its deadline passed).
  bool end(Slot& slot) {
    const std::lock_guard stop_lock(slot.stop_mu);  // a stop under way finishes first
    const std::lock_guard lock(watch_mu_);
    slot.busy = false;
    ++slot.generation;
    return slot.timed_out;
  }

  void watch() {
    ::pthread_setname_np(::pthread_self(), "tdhook-http");
    std::unique_lock lock(watch_mu_);
    while (!stopping_) {
      const auto now = Clock::now();
      auto next = Clock::time_point::max();
      std::vector<std::pair<Slot*, std::uint64_t>> expired;
      for (auto& slot : slots_) {
        if (!slot->busy || slot->timed_out) continue;
        if (slot->deadline <= now) {
          slot->timed_out = true;
          expired.emplace_back(slot.get(), slot->generation);
        } else {
          next = std::min(next, slot->deadline);
        }
      }
      if (!expired.empty()) {
        lock.unlock();
        for (auto [slot, generation] : expired) {
          const std::lock_guard stop_lock(slot->stop_mu);
          bool same = false;
          {
            const std::lock_guard again(watch_mu_);
            same = slot->busy && slot->generation == generation;
          }
          if (same) slot->client->stop();
        }
        lock.lock();
        continue;
      }
      if (next == Clock::time_point::max()) {
        watch_cv_.wait(lock);
      } else {
        watch_cv_.wait_until(lock, next);
      }
    }
  }

  Url url_;
  bool forward_;
  milliseconds timeout_;
  std::string ca_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<Slot*> free_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace

Result<Url> parse_http_url(std::string_view url) {
  const auto bad = [&](const std::string& why) {
    return Error{ErrorCode::invalid_config, "URL \"" + quote(url, 300) + "\": " + why};
  };
  if (!url.starts_with("https://") && !url.starts_with("http://"))
    return bad("expected http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH");
  for (const char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F)
      return bad("spaces, control characters and non-ASCII bytes must be percent-encoded");
  }
  auto parsed = parse_url(url);
  if (!parsed) return bad(parsed.error().detail);
  if (parsed->has_fragment) return bad("a #fragment is never sent");
  if (parsed->has_userinfo)
    return bad("user:password@ is not supported (the URL is the sink's name, in logs and metrics)");
  return parsed;
}

Result<std::unique_ptr<Sink>> make_http_sink(const SinkConfig& config, std::string_view url,
                                             bool forward) {
  auto parsed = parse_http_url(url);
  if (!parsed) return std::move(parsed).error();
  if (parsed->tls && !config.http_ca.empty()) {
    if (auto ca = check_ca_file(config.http_ca); !ca) return std::move(ca).error();
  }
  try {
    return std::unique_ptr<Sink>(std::make_unique<HttpSink>(config, std::move(*parsed), forward));
  } catch (const std::system_error& e) {
    return Error{ErrorCode::invalid_config, std::string("cannot start the http sink: ") + e.what()};
  }
}

}  // namespace tdhook::receiver
