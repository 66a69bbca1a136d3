#include "inspect/views.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>

#include "store/record.hpp"
#include "tdhook/token.hpp"

namespace tdhook::receiver::inspect {
namespace {

// Bodies up to this size are read for the event they claim (refused requests), in summaries.
constexpr std::size_t kClaimedBodyLimit = 64 * 1024;

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string iso(std::int64_t ms) { return ms > 0 ? format_iso8601_ms(ms) : std::string(); }

// Parses JSON text that a sender made: nullopt when it is not JSON or nests too deep.
std::optional<Json> parse_json(std::string_view text) {
  if (!json_depth_within(text, kMaxJsonDepth)) return std::nullopt;
  auto value = Json::parse(text.begin(), text.end(), nullptr, false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

std::string string_at(const Json& object, std::string_view key) {
  if (!object.is_object()) return {};
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The end of the JSON string that starts at text[i] (the index of its closing quote), or npos.
std::size_t string_end(std::string_view text, std::size_t i) noexcept {
  for (std::size_t j = i + 1; j < text.size(); ++j) {
    if (text[j] == '\\') {
      ++j;
    } else if (text[j] == '"') {
      return j;
    }
  }
  return std::string_view::npos;
}

// Whether the JSON string literal `quoted` (quotes included) spells `word` (ASCII), escapes
// decoded.
bool spells(std::string_view quoted, std::string_view word) {
  std::string decoded;
  for (std::size_t i = 1; i + 1 < quoted.size(); ++i) {
    char c = quoted[i];
    if (c == '\\' && i + 1 < quoted.size() - 1) {
      const char e = quoted[++i];
      if (e == 'u' && i + 4 < quoted.size() - 1) {
        unsigned v = 0;
        for (int k = 1; k <= 4; ++k) {
          const char h = quoted[i + static_cast<std::size_t>(k)];
          v = v * 16 +
              static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(h))
                                        ? h - '0'
                                        : (std::tolower(static_cast<unsigned char>(h)) - 'a' + 10));
        }
        i += 4;
        if (v > 0x7f) return false;
        c = static_cast<char>(v);
      } else {
        c = e;
      }
    }
    decoded.push_back(c);
    if (decoded.size() > word.size()) return false;
  }
  return decoded == word;
}

// --- the checks ----------------------------------------------------------------------------------

struct CheckDef {
  std::string_view id;
  std::string_view title;
};

// In the order the receiver makes them: the HTTP front (server.cpp), then the verifier
// (lib/src/verify.cpp, DESIGN.md "Checks run in this order"), then the intake's decisions.
constexpr std::array<CheckDef, 16> kChecks{{
    {"request", "a POST on the receiver's path, within its HTTP limits"},
    {"content_type", "Content-Type is application/json"},
    {"secret_header", "an x-hook-secret header is present"},
    {"secret", "x-hook-secret equals a configured secret"},
    {"body_json", "the body is a JSON object"},
    {"envelope", "the envelope has timestamp, payload and hook, with their types, no key twice"},
    {"token_present", "the body has a token"},
    {"token_shape", "the token is a JWT: three base64url parts, a JSON header and claims"},
    {"algorithm", "a configured key uses the token's algorithm"},
    {"signature", "a configured key verifies the token's signature"},
    {"claims", "iss, sub and aud are Tiledesk's, iat is present"},
    {"hook_match", "the token's _id, event and id_project are the body's hook"},
    {"freshness", "the token's iat and the body's timestamp are within --max-age of now"},
    {"event_filter", "the event is one of --events"},
    {"routing", "a sink's filter takes the event"},
    {"stored", "stored durably, once"},
}};

std::size_t check_index(std::string_view id) {
  for (std::size_t i = 0; i < kChecks.size(); ++i) {
    if (kChecks[i].id == id) return i;
  }
  return 0;
}

// The check a reason code names.
std::string_view check_of(std::string_view reason) {
  struct Pair {
    std::string_view reason, check;
  };
  static constexpr Pair pairs[] = {
      {"unsupported_media_type", "content_type"},
      {"missing_secret_header", "secret_header"},
      {"secret_mismatch", "secret"},
      {"malformed_body", "body_json"},
      {"malformed_envelope", "envelope"},
      {"missing_token", "token_present"},
      {"token_malformed", "token_shape"},
      {"token_alg_not_allowed", "algorithm"},
      {"token_bad_signature", "signature"},
      {"token_claims_mismatch", "claims"},
      {"token_hook_mismatch", "hook_match"},
      {"stale", "freshness"},
      {"filtered", "event_filter"},
      {"no_sink", "routing"},
      {"stored", "stored"},
      {"duplicate", "stored"},
      {"spool_full", "stored"},
      {"spool_failed", "stored"},
      {"store_unavailable", "stored"},
  };
  for (const auto& p : pairs) {
    if (p.reason == reason) return p.check;
  }
  return "request";
}

// One sentence: why the request was not taken, and what to do.
std::string explanation_of(std::string_view reason, int status, const ViewContext& context) {
  if (reason == "unsupported_media_type")
    return "the Content-Type header is not application/json: Tiledesk always sends JSON, so "
           "this request did not come from Tiledesk";
  if (reason == "missing_secret_header")
    return "the request has no x-hook-secret header: Tiledesk sends the subscription's secret in "
           "it (a sender that only signs tokens needs --mode token)";
  if (reason == "secret_mismatch")
    return "the x-hook-secret header holds another secret than the ones configured: check the "
           "subscription's secret against --secret-file";
  if (reason == "malformed_body")
    return "the body is not a JSON object: it was cut off or is not a Tiledesk notification";
  if (reason == "malformed_envelope")
    return "the JSON is not a Tiledesk notification: timestamp, payload or hook is missing, has "
           "the wrong type, or a key appears twice";
  if (reason == "missing_token")
    return "the body has no token: Tiledesk signs every notification, so this one did not come "
           "from Tiledesk (--mode header checks the secret header only)";
  if (reason == "token_malformed")
    return "the token is not a well-formed JWT: it was damaged on the way or made by hand";
  if (reason == "token_alg_not_allowed")
    return "no configured key uses the token's algorithm (\"none\" never passes): a global "
           "subscription needs its key (--global-key or --global-secret-file)";
  if (reason == "token_bad_signature")
    return "the token was signed with another secret than the ones configured: check the "
           "subscription's secret";
  if (reason == "token_claims_mismatch")
    return "the token's issuer, subject or audience is not what Tiledesk puts there: it was not "
           "made by Tiledesk for a subscription";
  if (reason == "token_hook_mismatch")
    return "the token was made for another hook than the one in the body: the body was changed "
           "after signing, or it is a retry that carries another subscription's hook";
  if (reason == "stale")
    return "the notification is more than --max-age (" + std::to_string(context.max_age_s) +
           " s) away from the receiver's clock: a replay of an old notification, or a clock "
           "out of sync (check NTP on both sides)";
  if (reason == "filtered")
    return "the event is not one of --events (" + context.events_text +
           "): it was verified and answered 200, but not stored";
  if (reason == "no_sink")
    return "no sink's filter takes this event: it was verified and answered 200, but not stored";
  if (reason == "duplicate")
    return "a retry of an event already stored: answered 200 without storing or delivering it "
           "again";
  if (reason == "spool_full")
    return "more than --max-pending deliveries wait: answered 503 so that Tiledesk retries "
           "later; check why the sinks are behind";
  if (reason == "spool_failed" || reason == "store_unavailable")
    return "the store could not write the event: answered 503 so that Tiledesk retries; see "
           "the receiver's log";
  if (reason == "not_found")
    return "the request was not sent to the receiver's --path: check the subscription's target "
           "URL";
  if (reason == "method_not_allowed")
    return "Tiledesk sends POST: this request used another method";
  if (reason == "body_too_large")
    return "the body is larger than --max-body: raise it if notifications are that large";
  if (status == 408) return "the request was not sent in time (--read-timeout)";
  return "the request could not be read as HTTP/1.1 (" + std::string(reason) +
         "): it did not come from Tiledesk";
}

enum class Mode { both, header, token, none };

Mode mode_of(const ViewContext& context) {
  if (context.no_verify) return Mode::none;
  if (context.mode == "header") return Mode::header;
  if (context.mode == "token") return Mode::token;
  return Mode::both;
}

bool skipped(std::string_view id, Mode mode) {
  const bool header_check = id == "secret_header" || id == "secret";
  const bool token_check = id == "token_present" || id == "token_shape" || id == "algorithm" ||
                           id == "signature" || id == "claims" || id == "hook_match";
  switch (mode) {
    case Mode::none:
      return header_check || token_check || id == "freshness";
    case Mode::header:
      return token_check;
    case Mode::token:
      return header_check;
    case Mode::both:
      return false;
  }
  return false;
}

struct CheckResult {
  Json list = Json::array();
  std::optional<std::size_t> failed;  // index into kChecks
  bool signature_checked = false;
};

CheckResult run_checks(std::string_view reason, int status, const ViewContext& context) {
  CheckResult out;
  const Mode mode = mode_of(context);
  const std::size_t decided = check_index(check_of(reason));
  const bool accepted = status == 200;
  // A refusal (and a filtered or unrouted event) fails at its check; a stored event passes all.
  const bool fails = !accepted || reason == "filtered" || reason == "no_sink";
  if (fails) out.failed = decided;
  for (std::size_t i = 0; i < kChecks.size(); ++i) {
    const auto& def = kChecks[i];
    Json item;
    item["id"] = def.id;
    item["title"] = def.title;
    std::string state;
    if (skipped(def.id, mode)) {
      state = "skipped";
    } else if (out.failed && i == *out.failed) {
      state = "failed";
      item["explanation"] = explanation_of(reason, status, context);
    } else if (out.failed && i > *out.failed) {
      state = "not_run";
    } else {
      state = "passed";
      if (def.id == "stored" && reason == "duplicate") {
        item["explanation"] = explanation_of(reason, status, context);
      }
    }
    if (def.id == "freshness" && mode == Mode::header)
      item["title"] =
          "the body's timestamp is "
          "within --max-age of now";
    if (def.id == "signature") out.signature_checked = state == "passed";
    item["state"] = state;
    out.list.push_back(std::move(item));
  }
  return out;
}

// --- the token -----------------------------------------------------------------------------------

// A part of the token decoded on its own (tdhook/token.hpp), so that a damaged part does not hide
// the others.
Json decoded_part(std::string_view part) {
  auto bytes = tdhook::base64url_decode(part);
  if (!bytes) return Json{{"error", "not base64url"}};
  if (auto value = parse_json(*bytes); value && value->is_object()) return *value;
  Json out;
  out["error"] = "not a JSON object";
  out["text"] = bytes->substr(0, 2048);
  return out;
}

Json token_view(const Json& body, bool signature_checked) {
  if (!body.is_object()) return nullptr;
  const auto it = body.find("token");
  if (it == body.end()) return nullptr;
  Json out;
  if (!it->is_string()) {
    out["error"] = "the token is not a string";
    return out;
  }
  const auto& token = it->get_ref<const std::string&>();
  out["length"] = token.size();
  const auto first = token.find('.');
  const auto second = first == std::string::npos ? first : token.find('.', first + 1);
  if (second == std::string::npos || token.find('.', second + 1) != std::string::npos) {
    out["error"] = "not three parts separated by dots";
  } else {
    out["header"] = decoded_part(std::string_view(token).substr(0, first));
    auto claims = decoded_part(std::string_view(token).substr(first + 1, second - first - 1));
    if (claims.is_object()) {
      const auto iat = claims.find("iat");
      if (iat != claims.end() && iat->is_number()) {
        const double seconds = iat->get<double>();
        if (std::isfinite(seconds) && seconds > 0 && seconds < 1e11) {
          out["iat_time"] = iso(static_cast<std::int64_t>(seconds * 1000));
        }
      }
    }
    out["claims"] = std::move(claims);
  }
  out["signature"] = signature_checked ? "checked" : "not checked";
  return out;
}

// --- pieces of a detail ----------------------------------------------------------------------

Json headers_view(const std::vector<std::pair<std::string, std::string>>& headers) {
  Json out = Json::array();
  for (const auto& [name, value] : headers) {
    out.push_back(Json::array({name, is_sensitive_header(name) ? masked(value) : value}));
  }
  return out;
}

Json body_view(std::string_view body, std::size_t size, bool read) {
  Json out;
  out["read"] = read;
  out["size"] = size;
  out["kept"] = body.size();
  out["truncated"] = body.size() < size;
  const auto raw = body_without_token(body);
  const auto parsed = parse_json(raw);
  out["json"] = parsed.has_value();
  out["text"] = parsed ? dump(*parsed, 2) : raw;
  out["raw"] = raw;
  return out;
}

// What the copy commands need: the hook's fields and the payload.
Json copy_view(const Json& envelope, const ViewContext& context) {
  Json out;
  out["receiver_url"] = context.receiver_url;
  out["secret_file"] = context.secret_file;
  if (!envelope.is_object()) return out;
  const auto hook = envelope.find("hook");
  if (hook != envelope.end() && hook->is_object()) {
    out["event"] = string_at(*hook, "event");
    out["subscription_id"] = string_at(*hook, "_id");
    out["project_id"] = string_at(*hook, "id_project");
    out["target"] = string_at(*hook, "target");
  }
  const auto payload = envelope.find("payload");
  if (payload != envelope.end()) out["payload"] = dump(*payload, 2);
  return out;
}

Json progress_json(const SinkProgress& p) {
  Json out;
  out["sink"] = p.sink;
  out["state"] = to_string(p.state);
  out["attempts"] = p.attempts;
  if (p.latency_ms >= 0) out["latency_ms"] = p.latency_ms;
  if (!p.last_error.empty() && p.state != SinkState::delivered) out["last_error"] = p.last_error;
  if (p.next_attempt_at_ms > 0) out["next_attempt_at"] = iso(p.next_attempt_at_ms);
  return out;
}

std::string_view stored_state(const DeliveryInfo& d) {
  if (d.state == DeliveryState::pending && d.attempts > 0) return "retrying";
  return to_string(d.state);
}

Json attempt_json(std::string_view sink, int number, std::int64_t started, std::int64_t finished,
                  bool ok, std::string_view error, const std::string* output) {
  Json out;
  out["sink"] = sink;
  out["number"] = number;
  out["started_at"] = iso(started);
  out["duration_ms"] = finished >= started ? finished - started : 0;
  out["ok"] = ok;
  out["error"] = error;
  if (output != nullptr) out["output"] = *output;
  return out;
}

// "Name: value" lines of a raw request: sensitive values masked, Content-Length fitted to the
// body as shown (its token masked).
template <class Headers>
std::string raw_text(std::string_view line, const Headers& headers, std::string_view body,
                     bool with_body) {
  std::string out(line);
  const auto shown = with_body ? body_without_token(body) : std::string();
  for (const auto& [name, value] : headers) {
    std::string text;
    if (is_sensitive_header(name)) {
      text = masked(value);
    } else if (with_body && iequals(name, "content-length")) {
      text = std::to_string(shown.size());
    } else {
      text = std::string(value);
    }
    out += std::string(name) + ": " + text + "\r\n";
  }
  out += "\r\n";
  out += shown;
  return out;
}

}  // namespace

std::string dump(const Json& value, int indent) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

std::string_view outcome_of(int status, std::string_view reason) noexcept {
  if (status == 200) {
    if (reason == "duplicate") return "duplicate";
    if (reason == "filtered") return "filtered";
    if (reason == "no_sink") return "no_sink";
    return "stored";
  }
  return "refused";
}

std::string masked(std::string_view value) {
  return "(hidden, " + std::to_string(value.size()) + " characters)";
}

bool is_sensitive_header(std::string_view name) noexcept {
  return iequals(name, "x-hook-secret") || iequals(name, "authorization") ||
         iequals(name, "cookie") || iequals(name, "proxy-authorization");
}

bool json_depth_within(std::string_view text, int max_depth) noexcept {
  int depth = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      const auto end = string_end(text, i);
      if (end == std::string_view::npos) return true;  // not JSON: the parser says so
      i = end;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string body_without_token(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  std::vector<char> open;  // '{' or '['
  bool expect_key = false, token_key = false, mask_value = false;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '"') {
      auto end = string_end(body, i);
      if (end == std::string_view::npos) end = body.size() - 1;
      const auto literal = body.substr(i, end - i + 1);
      if (!open.empty() && open.back() == '{' && expect_key) {
        token_key = open.size() == 1 && spells(literal, "token");
        expect_key = false;
        out.append(literal);
      } else if (mask_value) {
        const std::size_t inner = literal.size() >= 2 ? literal.size() - 2 : 0;
        out += '"';
        out += "(hidden: the token, " + std::to_string(inner) + " characters)";
        out += '"';
        mask_value = false;
      } else {
        out.append(literal);
      }
      i = end;
      continue;
    }
    if (c == ':') {
      mask_value = token_key;
      token_key = false;
    } else if (c == '{' || c == '[') {
      open.push_back(c);
      expect_key = c == '{';
      mask_value = false;
    } else if (c == '}' || c == ']') {
      if (!open.empty()) open.pop_back();
      expect_key = false;
      mask_value = false;
    } else if (c == ',') {
      expect_key = !open.empty() && open.back() == '{';
      mask_value = false;
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      mask_value = false;
    }
    out.push_back(c);
  }
  return out;
}

EventNames names_of(const KeptRequest& r) {
  EventNames out{r.event, r.project_id, false};
  if (out.event.empty() && r.body_read && !r.body.empty() && r.body.size() <= kClaimedBodyLimit) {
    // A refused request: what its body claims to be (not verified).
    if (auto body = parse_json(r.body); body && body->is_object()) {
      const auto hook = body->find("hook");
      if (hook != body->end() && hook->is_object()) {
        out.event = string_at(*hook, "event");
        out.project_id = string_at(*hook, "id_project");
        out.claimed = !out.event.empty() || !out.project_id.empty();
      }
    }
  }
  return out;
}

Json summary(const Snapshot& snapshot) {
  const auto& kept = snapshot.kept;
  const auto& r = kept.request;
  Json out;
  out["id"] = std::to_string(snapshot.id);
  out["time"] = iso(r.received_at_ms);
  out["received_at_ms"] = r.received_at_ms;
  out["method"] = r.method;
  out["target"] = r.target;
  out["remote"] = r.remote;
  out["status"] = r.status;
  out["reason"] = r.reason;
  out["outcome"] = outcome_of(r.status, r.reason);
  auto names = names_of(r);
  out["event"] = std::move(names.event);
  out["project_id"] = std::move(names.project_id);
  out["claimed"] = names.claimed;
  out["delivery_id"] = r.delivery_id;
  out["detail"] = r.detail;
  out["from_store"] = false;
  out["replay_of"] = kept.replay_of;
  Json sinks = Json::array();
  for (const auto& p : snapshot.progress) sinks.push_back(progress_json(p));
  out["sinks"] = std::move(sinks);
  return out;
}

Json store_summary(const std::vector<DeliveryInfo>& rows) {
  Json out;
  const auto& first = rows.front();
  out["id"] = first.delivery_id;
  out["time"] = iso(first.received_at_ms);
  out["received_at_ms"] = first.received_at_ms;
  out["method"] = "POST";
  out["target"] = "";
  out["remote"] = "";
  out["status"] = 200;
  out["reason"] = "stored";
  out["outcome"] = "stored";
  out["event"] = first.event;
  out["project_id"] = first.project_id;
  out["claimed"] = false;
  out["delivery_id"] = first.delivery_id;
  out["detail"] = "";
  out["from_store"] = true;
  out["replay_of"] = "";
  Json sinks = Json::array();
  for (const auto& d : rows) {
    if (d.sink.empty()) continue;
    Json s;
    s["sink"] = d.sink;
    s["state"] = stored_state(d);
    s["attempts"] = d.attempts;
    if (!d.last_error.empty() && d.state != DeliveryState::delivered)
      s["last_error"] = d.last_error;
    if (d.state == DeliveryState::pending && d.next_attempt_at_ms > 0 && d.attempts > 0) {
      s["next_attempt_at"] = iso(d.next_attempt_at_ms);
    }
    sinks.push_back(std::move(s));
  }
  out["sinks"] = std::move(sinks);
  return out;
}

Json detail(const Snapshot* snapshot, const Details* stored, std::string_view store_error,
            const ViewContext& context) {
  Json out;
  const Kept* kept = snapshot != nullptr ? &snapshot->kept : nullptr;
  const int status = kept != nullptr ? kept->request.status : 200;
  const std::string reason = kept != nullptr ? kept->request.reason : "stored";
  Json envelope;  // the body (or the stored record) as JSON, for the token and the copies
  if (kept != nullptr) {
    const auto& r = kept->request;
    out["id"] = std::to_string(snapshot->id);
    out["summary"] = summary(*snapshot);
    Json request;
    request["available"] = true;
    request["line"] = r.method.empty() ? std::string() : r.method + " " + r.target + " HTTP/1.1";
    request["method"] = r.method;
    request["target"] = r.target;
    request["remote"] = r.remote;
    request["received_at"] = iso(r.received_at_ms);
    request["headers"] = headers_view(r.headers);
    request["body"] = body_view(r.body, kept->body_size, r.body_read);
    out["request"] = std::move(request);
    out["detail"] = r.detail;
    out["replay_of"] = kept->replay_of;
    out["duplicate_of"] = reason == "duplicate" ? r.delivery_id : std::string();
    if (auto body = parse_json(r.body)) envelope = std::move(*body);
  } else if (stored != nullptr) {
    std::vector<DeliveryInfo> rows = stored->deliveries;
    if (rows.empty()) rows.push_back(DeliveryInfo{});
    out["id"] = rows.front().delivery_id;
    out["summary"] = store_summary(rows);
    Json request;
    request["available"] = false;
    if (auto original = parse_original(stored->original)) {
      // A forward: sink's copy of the request: its Tiledesk headers and exact body.
      request["available"] = true;
      request["line"] = "";
      std::vector<std::pair<std::string, std::string>> headers;
      for (const auto& [name, value] : original->headers) headers.emplace_back(name, value);
      request["headers"] = headers_view(headers);
      request["body"] = body_view(original->body, original->body.size(), true);
      if (auto body = parse_json(original->body)) envelope = std::move(*body);
    }
    out["request"] = std::move(request);
    out["detail"] = "";
    out["replay_of"] = "";
    out["duplicate_of"] = "";
  }
  auto checks = run_checks(reason, status, context);
  out["checks"] = checks.list;
  if (checks.failed) {
    out["failed_check"] = kChecks[*checks.failed].id;
    out["explanation"] = explanation_of(reason, status, context);
  } else {
    out["failed_check"] = nullptr;
    out["explanation"] =
        reason == "duplicate" ? Json(explanation_of(reason, status, context)) : Json(nullptr);
  }
  out["token"] = token_view(envelope, checks.signature_checked);
  // The event record, its deliveries and attempts.
  Json record = nullptr;
  if (stored != nullptr) {
    const auto text = body_without_token(stored->record);
    auto parsed = parse_json(text);
    record = parsed ? dump(*parsed, 2) : text;
    if (!envelope.is_object() && parsed) envelope = *parsed;
  }
  out["record"] = std::move(record);
  if (!store_error.empty()) out["store_error"] = store_error;
  Json deliveries = Json::array();
  Json attempts = Json::array();
  const std::vector<SinkProgress> none;
  const auto& progress = snapshot != nullptr ? snapshot->progress : none;
  auto progress_for = [&](std::string_view sink) -> const SinkProgress* {
    for (const auto& p : progress) {
      if (p.sink == sink) return &p;
    }
    return nullptr;
  };
  if (stored != nullptr && !stored->deliveries.empty()) {
    for (const auto& d : stored->deliveries) {
      if (d.sink.empty()) continue;
      Json item;
      item["sink"] = d.sink;
      item["state"] = stored_state(d);
      item["attempts"] = d.attempts;
      const auto* p = progress_for(d.sink);
      if (p != nullptr && p->latency_ms >= 0) item["latency_ms"] = p->latency_ms;
      if (!d.last_error.empty() && d.state != DeliveryState::delivered)
        item["last_error"] = d.last_error;
      if (d.state == DeliveryState::pending && d.attempts > 0 && d.next_attempt_at_ms > 0)
        item["next_attempt_at"] = iso(d.next_attempt_at_ms);
      deliveries.push_back(std::move(item));
    }
  } else {
    for (const auto& p : progress) deliveries.push_back(progress_json(p));
  }
  // Attempts: the inspector's own (with the output's tail) where it saw them, else the store's.
  std::vector<std::string> seen;
  for (const auto& p : progress) {
    for (const auto& a : p.history) {
      attempts.push_back(attempt_json(p.sink, a.number, a.started_at_ms, a.finished_at_ms, a.ok,
                                      a.error, &a.output));
    }
    if (!p.history.empty()) seen.push_back(p.sink);
  }
  if (stored != nullptr) {
    for (const auto& [sink, a] : stored->attempts) {
      if (std::find(seen.begin(), seen.end(), sink) != seen.end()) continue;
      attempts.push_back(
          attempt_json(sink, a.number, a.started_at_ms, a.finished_at_ms, a.ok, a.error, nullptr));
    }
  }
  out["deliveries"] = std::move(deliveries);
  out["attempts"] = std::move(attempts);
  out["copy"] = copy_view(envelope, context);
  const bool has_event = reason == "stored" || reason == "duplicate";
  out["can_replay"] = has_event && stored != nullptr;
  return out;
}

std::string raw_request(const Kept& kept) {
  const auto& r = kept.request;
  const std::string line = r.method.empty() ? "(the request line could not be read)\r\n"
                                            : r.method + " " + r.target + " HTTP/1.1\r\n";
  return raw_text(line, r.headers, r.body, r.body_read);
}

std::optional<std::string> raw_original(const std::string& original, std::string_view path) {
  const auto parsed = parse_original(original);
  if (!parsed) return std::nullopt;
  return raw_text("POST " + std::string(path) + " HTTP/1.1\r\n", parsed->headers, parsed->body,
                  true);
}

}  // namespace tdhook::receiver::inspect
