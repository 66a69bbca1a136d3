#include "inspect/inspector.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "http/http_loop.hpp"
#include "http/url.hpp"
#include "inspect/assets.hpp"
#include "store/record.hpp"
#include "tdhook/pattern.hpp"

namespace tdhook::receiver::inspect {
namespace {

using Clock = std::chrono::steady_clock;
using Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

constexpr std::string_view kCookie = "tdhook_inspector";
constexpr std::size_t kMaxStreams = 32;  // Server-Sent-Events streams at once
constexpr std::size_t kWorkers = 4;      // threads for the answers that read the store
constexpr std::size_t kMaxSessions = 64;
constexpr std::size_t kMaxLimit = 1000;
constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kListChunk = 64;  // kept requests copied at a time for the list
constexpr std::size_t kMaxParam = 256;
constexpr auto kHeartbeat = std::chrono::seconds(15);
constexpr auto kPace = std::chrono::milliseconds(100);

Digest sha256(std::string_view text) {
  Digest d{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d.data());
  return d;
}

bool same_digest(const Digest& a, const Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hex(const unsigned char* bytes, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 15];
  }
  return out;
}

std::string trim(std::string text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

bool lower_equals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool contains_folded(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return true;
  const auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                              [](char x, char y) {
                                return std::tolower(static_cast<unsigned char>(x)) ==
                                       std::tolower(static_cast<unsigned char>(y));
                              });
  return it != haystack.end();
}

// The host part of a Host header or of an authority: "[::1]:8081" -> "::1".
std::string_view host_part(std::string_view authority) {
  if (authority.starts_with('[')) {
    const auto end = authority.find(']');
    return end == std::string_view::npos ? authority : authority.substr(1, end - 1);
  }
  return authority.substr(0, authority.find(':'));
}

// Percent-decoding; '+' is a space in a query or a form, not in a path.
std::string percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+' && plus_is_space) {
      out += ' ';
    } else if (c == '%' && i + 2 < text.size() &&
               std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      unsigned v = 0;
      std::from_chars(text.data() + i + 1, text.data() + i + 3, v, 16);
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

// The value of `name` in an application/x-www-form-urlencoded body.
std::optional<std::string> form_value(std::string_view body, std::string_view name) {
  std::size_t at = 0;
  while (at <= body.size()) {
    auto end = body.find('&', at);
    if (end == std::string_view::npos) end = body.size();
    const auto pair = body.substr(at, end - at);
    const auto eq = pair.find('=');
    if (eq != std::string_view::npos && percent_decode(pair.substr(0, eq), true) == name) {
      return percent_decode(pair.substr(eq + 1), true);
    }
    at = end + 1;
  }
  return std::nullopt;
}

// A request as the routes read it: the decoded path, the query's parameters (decoded, in order)
// and the fields.
struct Request {
  HttpRequest http;
  std::string path;
  std::vector<std::pair<std::string, std::string>> params;

  explicit Request(HttpRequest&& request) : http(std::move(request)) {
    const std::string_view target = http.head.target;
    const auto question = target.find('?');
    path = percent_decode(target.substr(0, question), false);
    if (question == std::string_view::npos) return;
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const auto item = query.substr(0, amp);
      if (!item.empty()) {
        const auto eq = item.find('=');
        params.emplace_back(percent_decode(item.substr(0, eq), true),
                            eq == std::string_view::npos
                                ? std::string()
                                : percent_decode(item.substr(eq + 1), true));
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }

  const std::string& method() const { return http.head.method; }
  bool has_header(std::string_view name) const { return http.head.find(name) != nullptr; }
  std::string header(std::string_view name) const {
    const auto* value = http.head.find(name);
    return value != nullptr ? *value : std::string();
  }
  const std::string* param(std::string_view name) const {
    for (const auto& [key, value] : params) {
      if (key == name) return &value;
    }
    return nullptr;
  }
};

// The id in a path: the inspector's number of a request, or a delivery id (UUID).
struct RequestId {
  std::uint64_t number = 0;  // 0: a delivery id
  std::string delivery_id;
};

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::optional<RequestId> parse_request_id(std::string_view s) {
  if (!s.empty() && s.size() <= 19 &&
      std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end != s.data() + s.size() || n == 0) return std::nullopt;
    return RequestId{n, {}};
  }
  if (is_uuid(s)) return RequestId{0, std::string(s)};
  return std::nullopt;
}

// The millisecond time at the front of a UUID v7.
std::optional<std::int64_t> uuid_time(std::string_view id) {
  if (!is_uuid(id) || id[14] != '7') return std::nullopt;
  std::int64_t ms = 0;
  for (std::size_t i = 0; i < 13; ++i) {
    if (i == 8) continue;
    const char c = id[i];
    ms = ms * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return ms;
}

struct ListQuery {
  std::optional<PatternSet> events;
  std::string outcome;
  std::string text;
  std::size_t limit = kDefaultLimit;
  std::optional<RequestId> before;
};

// The stored events the store lists (several rows each, one per sink), newest first.
struct StoredEvent {
  std::string delivery_id;
  std::int64_t received_at_ms = 0;
  std::vector<DeliveryInfo> rows;
};

bool newer(const StoredEvent& a, const StoredEvent& b) {
  return a.received_at_ms != b.received_at_ms ? a.received_at_ms > b.received_at_ms
                                              : a.delivery_id > b.delivery_id;
}

// Stored events received before `until_ms` that `keep` takes, newest first, at most
// `want`: read from the store newest first, a page of rows at a time, so that a page costs the
// rows it reads and not the store's size (the embedded log reads from its end).
Result<std::vector<StoredEvent>> stored_before(
    Store& store, const std::optional<std::string>& events, std::int64_t until_ms, std::size_t want,
    const std::function<bool(const StoredEvent&)>& keep) {
  constexpr std::size_t kRowsPerPass = 2000;
  constexpr int kMaxPasses = 10;
  std::map<std::string, StoredEvent> found;
  std::size_t kept = 0;
  until_ms -= 1;  // ListFilter::until_ms is inclusive
  for (int pass = 0; pass < kMaxPasses && kept < want; ++pass) {
    ListFilter filter;
    filter.event_pattern = events;
    filter.until_ms = until_ms;
    filter.limit = kRowsPerPass;
    filter.newest_first = true;
    auto rows = store.list(filter);
    if (!rows) return std::move(rows).error();
    for (auto& row : *rows) {
      auto& e = found[row.delivery_id];
      e.delivery_id = row.delivery_id;
      e.received_at_ms = row.received_at_ms;
      const bool dup = std::any_of(e.rows.begin(), e.rows.end(),
                                   [&](const DeliveryInfo& d) { return d.sink == row.sink; });
      if (!dup) e.rows.push_back(std::move(row));
    }
    kept = 0;
    for (const auto& [id, e] : found) kept += keep(e) ? 1 : 0;
    if (rows->size() < kRowsPerPass) break;
    // On from the oldest row seen: its millisecond comes again (rows are merged by id above); a
    // page made of one millisecond alone goes on before it.
    const auto oldest = rows->back().received_at_ms;
    until_ms = oldest < until_ms ? oldest : oldest - 1;
  }
  std::vector<StoredEvent> out;
  for (auto& [id, e] : found) {
    if (keep(e)) out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), newer);
  if (out.size() > want) out.resize(want);
  return out;
}

}  // namespace

struct Inspector::Impl final : HttpHandler {
  InspectorOptions options;
  Recorder& recorder;
  Store& store;
  std::function<void()> wake;
  const Logger& log;
  std::unique_ptr<HttpLoop> loop;
  std::thread thread;  // runs the loop
  std::thread pump;    // writes the event streams
  std::atomic<bool> stopped{false};
  int port = 0;
  std::optional<Digest> token;  // SHA-256 of the token (token mode)
  std::mutex sessions_mu;
  std::deque<Digest> sessions;  // SHA-256 of the session cookies handed out

  Impl(const InspectorOptions& o, Recorder& r, Store& s, std::function<void()> w, const Logger& l)
      : options(o), recorder(r), store(s), wake(std::move(w)), log(l) {}

  // --- answers -------------------------------------------------------------------------------

  static void json(HttpResponse& res, int status, const Json& body) {
    res.status = status;
    res.body = dump(body);
    res.content_type = "application/json; charset=utf-8";
  }

  static void redirect(HttpResponse& res, std::string location) {
    res.status = 303;
    res.body.clear();
    res.content_type = "text/plain; charset=utf-8";
    res.headers.emplace_back("Location", std::move(location));
  }

  static void error(HttpResponse& res, int status, std::string_view code,
                    std::string_view message) {
    Json body;
    body["ok"] = false;
    body["error"] = code;
    body["message"] = message;
    json(res, status, body);
  }

  static void page(HttpResponse& res, std::string_view body, const char* type) {
    res.status = 200;
    res.headers.emplace_back("Content-Security-Policy",
                             "default-src 'none'; script-src 'self'; style-src 'self'; img-src "
                             "'self' data:; connect-src 'self'; form-action 'self'; "
                             "frame-ancestors 'none'; base-uri 'none'");
    res.body.assign(body);
    res.content_type = type;
  }

  // --- who may ask ---------------------------------------------------------------------------

  bool host_allowed(const Request& req) const {
    if (token) return true;  // the token decides
    if (!req.has_header("Host")) return true;
    return is_loopback_host(host_part(req.header("Host")));
  }

  // A request that changes something comes from the page itself (or from no page: a script).
  static bool same_origin(const Request& req) {
    if (!req.has_header("Origin")) return true;
    const auto origin = req.header("Origin");
    const auto scheme = origin.find("://");
    if (scheme == std::string::npos) return false;
    return origin.substr(scheme + 3) == req.header("Host");
  }

  bool has_session(const Request& req) {
    const auto cookies = req.header("Cookie");
    std::string_view rest = cookies;
    while (!rest.empty()) {
      const auto end = rest.find(';');
      auto item = rest.substr(0, end);
      while (item.starts_with(' ')) item.remove_prefix(1);
      if (item.size() > kCookie.size() + 1 && item.starts_with(kCookie) &&
          item[kCookie.size()] == '=') {
        const auto digest = sha256(item.substr(kCookie.size() + 1));
        std::lock_guard lock(sessions_mu);
        bool match = false;
        for (const auto& s : sessions) match |= same_digest(s, digest);
        if (match) return true;
      }
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
    }
    return false;
  }

  bool authorized(const Request& req) {
    if (!token) return true;
    const auto auth = req.header("Authorization");
    if (auth.size() > 7 && lower_equals(std::string_view(auth).substr(0, 7), "bearer ")) {
      if (same_digest(sha256(trim(auth.substr(7))), *token)) return true;
    }
    return has_session(req);
  }

  bool token_matches(std::string_view given) const {
    return token && !given.empty() && same_digest(sha256(given), *token);
  }

  std::string new_session() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) return {};
    const auto value = hex(bytes, sizeof bytes);
    std::lock_guard lock(sessions_mu);
    sessions.push_back(sha256(value));
    if (sessions.size() > kMaxSessions) sessions.pop_front();
    return value;
  }

  void login_page(HttpResponse& res, int status, std::string_view message) {
    std::string html(assets::login_html());
    const std::string marker = "<!--message-->";
    if (const auto at = html.find(marker); at != std::string::npos) {
      std::string escaped;
      for (const char c : message) escaped += c == '<' ? std::string("&lt;") : std::string(1, c);
      html.replace(at, marker.size(), escaped);
    }
    page(res, html, "text/html; charset=utf-8");
    res.status = status;
  }

  void login(const Request& req, HttpResponse& res, const std::string* given) {
    if (!token) return redirect(res, "/");
    if (given == nullptr) {
      if (authorized(req)) return redirect(res, "/");
      return login_page(res, 200, "");
    }
    if (!token_matches(*given)) {
      log.warn("inspector: a wrong token was given", LogFields().add("remote", req.http.remote));
      return login_page(res, 401, "That is not the inspector's token.");
    }
    const auto session = new_session();
    if (session.empty()) return error(res, 500, "internal_error", "no random bytes for a session");
    redirect(res, "/");
    res.headers.emplace_back(
        "Set-Cookie", std::string(kCookie) + "=" + session + "; Path=/; HttpOnly; SameSite=Strict");
  }

  // --- the API -------------------------------------------------------------------------------

  std::optional<ListQuery> parse_list_query(const Request& req, HttpResponse& res) {
    ListQuery q;
    auto param = [&](const char* name) -> std::optional<std::string> {
      const auto* value = req.param(name);
      if (value == nullptr) return std::nullopt;
      return *value;
    };
    for (const auto& [name, value] : req.params) {
      if (value.size() > kMaxParam) {
        error(res, 400, "bad_query", "a query parameter is longer than 256 characters");
        return std::nullopt;
      }
    }
    if (auto limit = param("limit")) {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(limit->data(), limit->data() + limit->size(), n);
      if (limit->empty() || ec != std::errc() || end != limit->data() + limit->size() || n < 1 ||
          n > kMaxLimit) {
        error(res, 400, "bad_limit", "limit is a number from 1 to 1000");
        return std::nullopt;
      }
      q.limit = n;
    }
    if (auto before = param("before"); before && !before->empty()) {
      q.before = parse_request_id(*before);
      if (!q.before) {
        error(res, 400, "bad_before", "before is a request number or a delivery id");
        return std::nullopt;
      }
    }
    if (auto event = param("event"); event && !event->empty()) {
      auto parsed = PatternSet::parse(*event);
      if (!parsed) {
        error(res, 400, "bad_event", "event is a pattern such as lead.create or request.*");
        return std::nullopt;
      }
      q.events = std::move(*parsed);
    }
    if (auto outcome = param("outcome"); outcome && !outcome->empty()) {
      if (outcome->size() > 64 || !std::all_of(outcome->begin(), outcome->end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
          })) {
        error(res, 400, "bad_outcome",
              "outcome is stored, duplicate, filtered, refused or a reason code");
        return std::nullopt;
      }
      q.outcome = *outcome;
    }
    if (auto text = param("q")) q.text = *text;
    return q;
  }

  static bool outcome_matches(std::string_view wanted, int status, std::string_view reason) {
    if (wanted.empty()) return true;
    const auto outcome = outcome_of(status, reason);
    if (wanted == "stored" || wanted == "duplicate" || wanted == "filtered" ||
        wanted == "no_sink" || wanted == "refused") {
      return outcome == wanted;
    }
    return reason == wanted;
  }

  static bool text_matches(std::string_view text, const KeptRequest& r, const EventNames& names) {
    if (text.empty()) return true;
    for (std::string_view field :
         {std::string_view(names.event), std::string_view(names.project_id),
          std::string_view(r.delivery_id), std::string_view(r.reason), std::string_view(r.detail),
          std::string_view(r.target), std::string_view(r.remote)}) {
      if (contains_folded(field, text)) return true;
    }
    // The body without its token: a search must not tell what the token holds.
    return r.body_read && contains_folded(body_without_token(r.body), text);
  }

  void list(const Request& req, HttpResponse& res) {
    auto query = parse_list_query(req, res);
    if (!query) return;
    Json items = Json::array();
    std::size_t count = 0;
    std::int64_t until_ms = recorder.covered_since_ms();
    bool ring_exhausted = true;
    // Kept in memory: newest first, copied a few at a time (the copy holds up the receiver's
    // requests, the JSON does not).
    if (!query->before || query->before->number != 0) {
      const auto body = query->text.empty() ? Recorder::Body::summary : Recorder::Body::full;
      auto before = query->before ? query->before->number : 0;
      while (ring_exhausted) {
        const auto chunk = recorder.requests_before(before, kListChunk, body);
        if (chunk.empty()) break;
        for (const auto& snap : chunk) {
          const auto& r = snap.kept.request;
          if (!outcome_matches(query->outcome, r.status, r.reason)) continue;
          const auto names = names_of(r);
          if (query->events && !query->events->matches(names.event)) continue;
          if (!text_matches(query->text, r, names)) continue;
          if (count == query->limit) {
            ring_exhausted = false;
            break;
          }
          items.push_back(summary(snap));
          ++count;
        }
        before = chunk.back().id;
      }
    }
    // Stored events older than what memory covers.
    std::string store_error;
    const bool stored_wanted = query->outcome.empty() || query->outcome == "stored";
    if (ring_exhausted && count < query->limit && stored_wanted) {
      std::optional<std::string> before_id;
      if (query->before && query->before->number == 0) {
        before_id = query->before->delivery_id;
        if (auto t = uuid_time(*before_id)) until_ms = std::min(until_ms, *t + 1);
      }
      // A few seconds past the boundary: a request's time and its event's differ by a little.
      until_ms += before_id ? 0 : 5000;
      std::optional<std::string> pattern;
      if (const auto* event = req.param("event"); event != nullptr && !event->empty())
        pattern = *event;
      const auto text = query->text;
      auto keep = [&](const StoredEvent& e) {
        if (before_id && e.delivery_id >= *before_id) return false;
        if (recorder.find_stored(e.delivery_id)) return false;  // listed from memory
        if (text.empty()) return true;
        const auto& d = e.rows.front();
        return contains_folded(d.event, text) || contains_folded(d.project_id, text) ||
               contains_folded(d.delivery_id, text);
      };
      auto stored = stored_before(store, pattern, until_ms, query->limit - count, keep);
      if (!stored) {
        store_error = stored.error().detail;
      } else {
        for (const auto& e : *stored) items.push_back(store_summary(e.rows));
      }
    }
    Json body;
    body["ok"] = true;
    body["newest"] = std::to_string(recorder.newest());
    body["requests"] = std::move(items);
    if (!store_error.empty()) body["store_error"] = store_error;
    json(res, 200, body);
  }

  // The kept request an id names, and the stored event's details when there is one.
  struct Found {
    std::optional<Snapshot> snapshot;
    std::optional<Details> details;
    std::string store_error;
    std::string delivery_id;  // of the stored event, if any
  };

  std::optional<Found> find(const RequestId& id, HttpResponse& res) {
    Found f;
    if (id.number != 0) {
      f.snapshot = recorder.get(id.number);
      if (!f.snapshot) {
        error(res, 404, "not_found",
              "no request " + std::to_string(id.number) +
                  " in memory (the inspector keeps the last --inspect-keep)");
        return std::nullopt;
      }
      const auto& r = f.snapshot->kept.request;
      if ((r.reason == "stored" || r.reason == "duplicate" ||
           !f.snapshot->kept.replay_of.empty()) &&
          !r.delivery_id.empty()) {
        f.delivery_id = r.delivery_id;
      }
    } else {
      f.delivery_id = id.delivery_id;
      if (const auto number = recorder.find_stored(id.delivery_id)) {
        f.snapshot = recorder.get(*number);
      }
    }
    if (!f.delivery_id.empty()) {
      auto shown = store.show(f.delivery_id);
      if (shown) {
        f.details = std::move(*shown);
      } else if (is_not_found(shown.error())) {
        if (!f.snapshot) {
          error(res, 404, "not_found", "no stored event has the delivery id " + f.delivery_id);
          return std::nullopt;
        }
        f.store_error = "the store no longer holds this event";
      } else {
        f.store_error = shown.error().detail;
      }
    }
    return f;
  }

  void detail_of(const RequestId& id, HttpResponse& res) {
    auto found = find(id, res);
    if (!found) return;
    auto body =
        detail(found->snapshot ? &*found->snapshot : nullptr,
               found->details ? &*found->details : nullptr, found->store_error, options.view);
    body["ok"] = true;
    json(res, 200, body);
  }

  void raw_of(const RequestId& id, HttpResponse& res) {
    auto found = find(id, res);
    if (!found) return;
    std::optional<std::string> text;
    if (found->snapshot && found->snapshot->kept.replay_of.empty()) {
      text = raw_request(found->snapshot->kept);
    } else if (found->details) {
      text = raw_original(found->details->original, options.view.path);
    }
    if (!text) {
      return error(res, 404, "no_request",
                   "the request itself is not kept: only its event record is in the store");
    }
    const std::string name = id.number != 0 ? std::to_string(id.number) : id.delivery_id;
    res.status = 200;
    res.headers.emplace_back("Content-Disposition",
                             "attachment; filename=\"request-" + name + ".http\"");
    res.body = std::move(*text);
    res.content_type = "text/plain; charset=utf-8";
  }

  void replay(const RequestId& id, HttpResponse& res) {
    auto found = find(id, res);
    if (!found) return;
    if (found->delivery_id.empty()) {
      const auto& r = found->snapshot->kept.request;
      return error(res, 409, "not_stored",
                   "only a stored event can be replayed: this request was " +
                       std::string(outcome_of(r.status, r.reason)) + " (" + r.reason + ")");
    }
    if (!found->details) {
      return error(
          res, 409, "not_in_store",
          found->store_error.empty() ? "the store does not hold this event" : found->store_error);
    }
    const auto& details = *found->details;
    std::vector<std::string> sinks;
    for (const auto& d : details.deliveries) {
      if (!d.sink.empty() && std::find(sinks.begin(), sinks.end(), d.sink) == sinks.end())
        sinks.push_back(d.sink);
    }
    if (sinks.empty()) return error(res, 409, "no_sink", "the event was due to no sink");
    const std::string prefix = "{\"id\":\"" + found->delivery_id + "\"";
    if (!details.record.starts_with(prefix)) {
      return error(res, 500, "bad_record", "the stored record does not start with its id");
    }
    NewEvent event;
    event.delivery_id = new_delivery_id();
    event.dedup_key = "inspector-replay:" + event.delivery_id;
    event.record = "{\"id\":\"" + event.delivery_id + "\"" + details.record.substr(prefix.size());
    event.received_at_ms = now_ms();
    event.original = details.original;
    event.sinks = sinks;
    const auto& first = details.deliveries.front();
    event.event = first.event;
    event.project_id = first.project_id;
    event.timestamp_ms = first.timestamp_ms;
    if (json_depth_within(details.record, kMaxJsonDepth)) {
      const auto record = Json::parse(details.record, nullptr, false);
      if (record.is_object()) {
        if (auto it = record.find("subscription_id"); it != record.end() && it->is_string())
          event.subscription_id = it->get<std::string>();
      }
    }
    const auto put = store.put(event);
    if (put.outcome != PutOutcome::stored) {
      const bool full = put.outcome == PutOutcome::full;
      return error(res, put.outcome == PutOutcome::duplicate ? 409 : 503,
                   full                                   ? "spool_full"
                   : put.outcome == PutOutcome::duplicate ? "duplicate"
                                                          : "spool_failed",
                   put.error.empty() ? "the store did not take the replay" : put.error);
    }
    if (wake) wake();
    ObservedRequest observed;
    observed.received_at_ms = event.received_at_ms;
    observed.remote = "inspector";
    observed.event = event.event;
    observed.project_id = event.project_id;
    observed.sinks = sinks;
    const auto detail = "replay of " + found->delivery_id;
    const auto number = recorder.add_replay(
        observed, ObservedOutcome{200, "stored", detail, event.delivery_id}, found->delivery_id);
    log.info("inspector: replay stored", LogFields()
                                             .add("id", event.delivery_id)
                                             .add("replay_of", found->delivery_id)
                                             .add("event", event.event));
    Json body;
    body["ok"] = true;
    body["id"] = std::to_string(number);
    body["delivery_id"] = event.delivery_id;
    body["replay_of"] = found->delivery_id;
    json(res, 200, body);
  }

  void info(HttpResponse& res) {
    Json body;
    body["ok"] = true;
    body["receiver_url"] = options.view.receiver_url;
    body["secret_file"] = options.view.secret_file;
    body["mode"] = options.view.no_verify ? "none" : options.view.mode;
    body["events"] = options.view.events_text;
    body["keep"] = recorder.keep();
    body["dropped"] = recorder.dropped();
    body["newest"] = std::to_string(recorder.newest());
    body["token_mode"] = token.has_value();
    json(res, 200, body);
  }

  // --- Server-Sent Events ------------------------------------------------------------------
  // Each stream is a ResponseStream on the loop; one thread (pump) waits for the recorder's
  // changes and writes every stream what it has not seen yet, paced (kPace) and with a heartbeat.

  struct Client {
    std::shared_ptr<ResponseStream> out;
    Cursor cursor;
    Clock::time_point heartbeat_due;
  };
  std::mutex clients_mu;
  std::condition_variable clients_cv;
  std::vector<Client> clients;

  std::string event_text(std::string_view name, const Snapshot& snap) const {
    return "event: " + std::string(name) + "\ndata: " + dump(summary(snap)) + "\n\n";
  }

  void stream(HttpResponse& res) {
    auto out = std::make_shared<ResponseStream>();
    Cursor cursor;
    {
      std::lock_guard lock(clients_mu);
      std::erase_if(clients, [](const Client& c) { return !c.out->open(); });
      if (clients.size() >= kMaxStreams)
        return error(res, 503, "too_many_streams", "too many event streams are open");
      cursor = recorder.cursor();
      clients.push_back(Client{out, cursor, Clock::now() + kHeartbeat});
    }
    clients_cv.notify_all();
    res.status = 200;
    res.content_type = "text/event-stream";
    res.headers.emplace_back("X-Accel-Buffering", "no");
    res.body = "retry: 2000\n: connected\n\nevent: hello\ndata: {\"newest\":\"" +
               std::to_string(cursor.request) + "\"}\n\n";
    res.stream = std::move(out);
  }

  // One round for every stream: what it has not seen, or a heartbeat when one is due.
  void write_streams() {
    const auto now = Clock::now();
    std::map<std::pair<bool, std::uint64_t>, std::string> texts;  // (update?, id): built once
    auto text_of = [&](bool update, std::uint64_t id) -> const std::string& {
      auto [it, fresh] = texts.try_emplace({update, id});
      if (fresh) {
        if (auto snap = recorder.get(id, Recorder::Body::summary))
          it->second = event_text(update ? "update" : "request", *snap);
      }
      return it->second;
    };
    std::lock_guard lock(clients_mu);
    for (auto& c : clients) {
      const auto changes = recorder.poll(c.cursor);
      std::string out;
      if (changes.gap) out += "event: reset\ndata: {}\n\n";
      for (const auto id : changes.added) out += text_of(false, id);
      for (const auto id : changes.updated) out += text_of(true, id);
      if (out.empty() && now >= c.heartbeat_due) out = ": heartbeat\n\n";
      if (out.empty()) continue;
      if (c.out->write(out)) c.heartbeat_due = now + kHeartbeat;
    }
    std::erase_if(clients, [](const Client& c) { return !c.out->open(); });
  }

  void run_pump() {
    Cursor cursor = recorder.cursor();
    auto last_round = Clock::now() - kPace;
    while (true) {
      Clock::time_point deadline;
      {
        std::unique_lock lock(clients_mu);
        if (clients.empty()) {
          // No stream: nothing waits on the recorder, so that requests do not wake this thread.
          clients_cv.wait(lock, [&] { return stopped.load() || !clients.empty(); });
          cursor = recorder.cursor();  // each stream has its own; this one only wakes the pump
        }
        if (stopped.load()) break;
        deadline = Clock::now() + kHeartbeat;
        for (const auto& c : clients) deadline = std::min(deadline, c.heartbeat_due);
      }
      const auto changes = recorder.wait(cursor, deadline, last_round + kPace);
      if (changes.stopped || stopped.load()) break;
      last_round = Clock::now();
      write_streams();
    }
    std::lock_guard lock(clients_mu);
    for (auto& c : clients) c.out->end();
    clients.clear();
  }

  // --- routing -------------------------------------------------------------------------------

  static void common_headers(HttpResponse& res) {
    res.headers.emplace_back("X-Content-Type-Options", "nosniff");
    res.headers.emplace_back("Referrer-Policy",
                             "same-origin");  // "no-referrer" makes a form's Origin "null"
    res.headers.emplace_back("Cache-Control", "no-store");
    res.headers.emplace_back("X-Frame-Options", "DENY");
  }

  // Answers what needs neither the store nor the recorder's copies here; returns false for the
  // API paths that do (they go to a worker: route_api).
  bool route(const Request& req, HttpResponse& res, bool& read_only) {
    read_only = req.method() == "GET" || req.method() == "HEAD";
    if (!host_allowed(req)) {
      error(res, 403, "forbidden_host",
            "the inspector answers only to a Host header that names loopback (give "
            "--inspect-token-file to serve other names)");
      return true;
    }
    if (!read_only && !same_origin(req)) {
      error(res, 403, "forbidden_origin", "a request from another origin");
      return true;
    }
    const std::string& path = req.path;
    if (path == "/login") {
      if (req.method() == "POST") {
        const auto given = form_value(req.http.body, "token");
        const std::string value = given.value_or("");
        login(req, res, &value);
      } else if (!read_only) {
        error(res, 405, "method_not_allowed", "GET or POST");
      } else if (const auto* given = req.param("token")) {
        login(req, res, given);
      } else {
        login(req, res, nullptr);
      }
      return true;
    }
    if (path == "/style.css" && read_only) {
      page(res, assets::style_css(), "text/css; charset=utf-8");
      return true;
    }
    const bool api = path.starts_with("/api/") || path == "/api";
    if (!authorized(req)) {
      if (api) {
        error(res, 401, "unauthorized",
              "give Authorization: Bearer TOKEN (the first line of --inspect-token-file)");
      } else {
        redirect(res, "/login");
      }
      return true;
    }
    if (!api) {
      if (!read_only) {
        error(res, 405, "method_not_allowed", "the page takes GET");
      } else if (path == "/" || path == "/index.html") {
        page(res, assets::index_html(), "text/html; charset=utf-8");
      } else if (path == "/app.js") {
        page(res, assets::app_js(), "text/javascript; charset=utf-8");
      } else {
        error(res, 404, "not_found", "no such page");
      }
      return true;
    }
    if (path == "/api/stream" || path == "/api/info") {
      if (!read_only) {
        error(res, 405, "method_not_allowed", "this takes GET");
      } else if (path == "/api/info") {
        info(res);
      } else {
        stream(res);
      }
      return true;
    }
    return false;
  }

  // --- HttpHandler ---------------------------------------------------------------------------

  std::optional<HttpResponse> on_head(const HttpRequestHead&, std::string_view) override {
    return std::nullopt;  // bodies are small (64 KiB at most) and read whole
  }

  void handle(HttpRequest& request, Responder respond) override {
    Request req(std::move(request));
    HttpResponse res;
    bool read_only = true;
    try {
      if (route(req, res, read_only)) {
        common_headers(res);
        return respond(std::move(res));
      }
    } catch (...) {
      HttpResponse failed;
      error(failed, 500, "internal_error", "the inspector failed to answer");
      common_headers(failed);
      return respond(std::move(failed));
    }
    // The store's reads and writes may block: a worker answers.
    loop->run_blocking(
        [this, http = std::move(req.http), read_only, respond = std::move(respond)]() mutable {
          HttpResponse answer;
          try {
            route_api(Request(std::move(http)), answer, read_only);
          } catch (...) {
            answer = HttpResponse{};
            error(answer, 500, "internal_error", "the inspector failed to answer");
          }
          common_headers(answer);
          respond(std::move(answer));
        });
  }

  HttpResponse on_error(const HttpError& failure, std::string_view) override {
    HttpResponse res;
    error(res, failure.status, failure.reason, failure.detail);
    common_headers(res);
    return res;
  }

  void route_api(const Request& req, HttpResponse& res, bool read_only) {
    const std::string_view path = req.path;
    if (path == "/api/requests") {
      if (!read_only) return error(res, 405, "method_not_allowed", "this takes GET");
      return list(req, res);
    }
    constexpr std::string_view prefix = "/api/requests/";
    if (!path.starts_with(prefix)) return error(res, 404, "not_found", "no such API path");
    auto rest = path.substr(prefix.size());
    std::string_view action;
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
      action = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
    }
    const auto id = parse_request_id(rest);
    if (!id) {
      return error(res, 400, "bad_id", "an id is a request number or a delivery id (a UUID)");
    }
    if (action.empty()) {
      if (!read_only) return error(res, 405, "method_not_allowed", "this takes GET");
      return detail_of(*id, res);
    }
    if (action == "raw") {
      if (!read_only) return error(res, 405, "method_not_allowed", "this takes GET");
      return raw_of(*id, res);
    }
    if (action == "replay") {
      if (req.method() != "POST") return error(res, 405, "method_not_allowed", "replay takes POST");
      return replay(*id, res);
    }
    error(res, 404, "not_found", "no such API path");
  }

  // --- setup ---------------------------------------------------------------------------------

  Status read_token() {
    if (options.token_file.empty()) return Ok{};
    std::ifstream in(options.token_file, std::ios::binary);
    if (!in) {
      return Error{ErrorCode::invalid_config,
                   "cannot read --inspect-token-file " + options.token_file};
    }
    std::string line;
    std::getline(in, line);
    line = trim(std::move(line));
    if (line.empty()) {
      return Error{ErrorCode::invalid_config, "--inspect-token-file " + options.token_file +
                                                  " is empty (its first line is "
                                                  "the token)"};
    }
    token = sha256(line);
    return Ok{};
  }

  Status setup() {
    if (auto st = read_token(); !st) return st;
    if (!token && !is_loopback_host(options.host)) {
      return Error{ErrorCode::invalid_config,
                   "--inspect on " + options.host + " needs --inspect-token-file"};
    }
    HttpLoopOptions o;
    o.host = options.host;
    o.port = options.port;
    o.limits.max_request_line = 8 * 1024;  // 414 beyond: a query is short
    o.limits.max_head = 16 * 1024;         // 431 beyond
    o.limits.max_body = 64 * 1024;         // 413 beyond: the login form is the only body
    o.read_timeout = std::chrono::seconds(5);
    o.write_timeout = std::chrono::seconds(5);
    o.keep_alive_timeout = std::chrono::seconds(5);
    o.loops = 1;  // a developer's browser
    o.workers = kWorkers;
    o.max_connections = 1024;  // idle ones are closed after the read timeout
    auto bound = HttpLoop::bind(o, *this);
    if (!bound) {
      return Error{ErrorCode::invalid_config, "cannot listen on " + options.host + ":" +
                                                  std::to_string(options.port) +
                                                  " for the inspector (in use or not available)"};
    }
    loop = std::move(*bound);
    port = loop->port();
    return Ok{};
  }
};

Inspector::Inspector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Inspector::~Inspector() { stop(); }

Result<std::unique_ptr<Inspector>> Inspector::start(const InspectorOptions& options,
                                                    Recorder& recorder, Store& store,
                                                    std::function<void()> wake, const Logger& log) {
  auto impl = std::make_unique<Impl>(options, recorder, store, std::move(wake), log);
  if (auto st = impl->setup(); !st) return std::move(st).error();
  auto* raw = impl.get();
  impl->thread = std::thread([raw] {
    if (!raw->loop->run()) raw->log.error("inspector: its event loop failed");
  });
  impl->pump = std::thread([raw] { raw->run_pump(); });
  return std::unique_ptr<Inspector>(new Inspector(std::move(impl)));
}

int Inspector::port() const noexcept { return impl_->port; }

std::string Inspector::url() const {
  const auto& host = impl_->options.host;
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(impl_->port) + "/";
}

void Inspector::stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  // The streams end first (their last chunk), then the loop drains what is left.
  impl_->recorder.stop_streams();
  {
    // Under the lock, so that the pump cannot miss `stopped` between its check and its wait.
    std::lock_guard lock(impl_->clients_mu);
  }
  impl_->clients_cv.notify_all();
  if (impl_->pump.joinable()) impl_->pump.join();
  impl_->loop->shutdown();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace tdhook::receiver::inspect
