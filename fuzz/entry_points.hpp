#pragma once
// The fuzzed entry points, shared by the libFuzzer targets (fuzz/fuzz_*.cpp, clang) and by
// tests/fuzz_regression_test.cpp (gcc, the normal test binary), so that every seed and every
// input that once crashed goes through exactly the same code in both.
//
// Each entry point takes arbitrary bytes, runs them through the library (or the receiver's and
// tools' readers) and returns a Report. A crash, a sanitizer report or an uncaught exception is
// a finding; so is a non-empty Report::problem: an oracle below saw an inconsistent answer
// (an error without a detail, an unexpected error code, a byte span that is not the value it
// claims to be, a claim that an independent JSON parser reads differently, a pattern that
// matches where the documented rules say it must not, ...).
//
// Keys and secrets are the test fixtures' (tests/fixtures/keys, verify-vectors.json), read from
// TDHOOK_SOURCE_DIR, so that seeds signed with them reach every check of the verifier.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base64.hpp"
#include "config/config.hpp"
#include "config/config_file.hpp"
#include "http/http_parser.hpp"
#include "http_request.hpp"
#include "jws.hpp"
#include "jws_sign.hpp"
#include "store/log/segment.hpp"
#include "tdhook/event.hpp"
#include "tdhook/models.hpp"
#include "tdhook/pattern.hpp"
#include "tdhook/sign.hpp"
#include "tdhook/verify.hpp"

#ifndef TDHOOK_SOURCE_DIR
#error "TDHOOK_SOURCE_DIR must name the source tree (the fixtures' keys are read from it)"
#endif

namespace tdhook::fuzz {

// The fixtures' subscription secrets, global HS256 secret and clock (verify-vectors.json).
inline constexpr std::string_view kSecret = "56c189c8-33ae-4930-bd98-410a12aa45ce";
inline constexpr std::string_view kSecret2 = "0060287d-9486-4f00-a4db-a254f998dbd1";
inline constexpr std::string_view kGlobalSecret = "global-shared-secret-for-tests";
inline constexpr std::int64_t kNowMs = 1764150000000;
// The hook the JWS target wraps its tokens in (the one of valid_hs256_lead_create).
inline constexpr std::string_view kHookId = "5c879fb4f1ae6600173b8c75";
inline constexpr std::string_view kHookEvent = "lead.create";
inline constexpr std::string_view kHookProject = "5b55e806c93dde00143163dd";

struct Report {
  std::string problem;    // empty: every oracle agreed
  bool accepted = false;  // the entry point's main call succeeded (for the tests' sanity checks)
};

namespace oracle {

using nlohmann::json;

inline void note(Report& r, const std::string& what) {
  if (r.problem.empty()) r.problem = what;
}

// nlohmann's reading of `text`, or a discarded value when it refuses it (then no oracle that
// needs it applies: simdjson and nlohmann differ on a few edge cases, such as big integers).
inline json parse_json(std::string_view text) {
  return json::parse(text.begin(), text.end(), nullptr, false);
}

inline const json* member(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

inline bool string_member_is(const json& object, const char* key, std::string_view want) {
  const json* v = member(object, key);
  return v != nullptr && v->is_string() && v->get_ref<const std::string&>() == want;
}

inline std::string read_source_file(const char* relative) {
  std::ifstream in(std::string(TDHOOK_SOURCE_DIR) + "/" + relative, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// An error must carry a code from `allowed` and a detail for humans.
template <class T, std::size_t N>
void check_error(Report& r, const Result<T>& result, const char* call,
                 const ErrorCode (&allowed)[N]) {
  if (result.ok()) return;
  const Error& e = result.error();
  bool known = false;
  for (ErrorCode c : allowed) known |= e.code == c;
  if (!known)
    note(r, std::string(call) + ": unexpected error code " + std::string(to_string(e.code)));
  if (e.detail.empty()) note(r, std::string(call) + ": error without a detail");
}

inline constexpr ErrorCode kVerifyCodes[] = {ErrorCode::missing_secret_header,
                                             ErrorCode::secret_mismatch,
                                             ErrorCode::malformed_body,
                                             ErrorCode::malformed_envelope,
                                             ErrorCode::missing_token,
                                             ErrorCode::token_malformed,
                                             ErrorCode::token_alg_not_allowed,
                                             ErrorCode::token_bad_signature,
                                             ErrorCode::token_claims_mismatch,
                                             ErrorCode::token_hook_mismatch,
                                             ErrorCode::stale};
inline constexpr ErrorCode kParseCodes[] = {ErrorCode::malformed_body,
                                            ErrorCode::malformed_envelope};
inline constexpr ErrorCode kModelCodes[] = {ErrorCode::payload_mismatch};
inline constexpr ErrorCode kConfigCodes[] = {ErrorCode::invalid_config};
inline constexpr ErrorCode kInputCodes[] = {ErrorCode::invalid_input};

// The keys a verifier may hold: every algorithm the library supports, from the test fixtures.
inline std::vector<GlobalKey> fixture_global_keys() {
  const std::string rsa = read_source_file("tests/fixtures/keys/rs256-public.pem");
  return {{Algorithm::rs256, rsa},
          {Algorithm::rs384, rsa},
          {Algorithm::rs512, rsa},
          {Algorithm::ps256, rsa},
          {Algorithm::es256, read_source_file("tests/fixtures/keys/es256-public.pem")},
          {Algorithm::es384, read_source_file("tests/fixtures/keys/es384-public.pem")},
          {Algorithm::hs256, std::string(kGlobalSecret)}};
}

inline Verifier make_verifier(VerifyMode mode, std::int64_t max_age_s, bool global_keys) {
  VerifierOptions o;
  o.secrets = {std::string(kSecret), std::string(kSecret2)};
  if (global_keys) o.global_keys = fixture_global_keys();
  o.mode = mode;
  o.max_age = std::chrono::seconds(max_age_s);
  o.clock = [] { return kNowMs; };
  auto v = Verifier::create(std::move(o));
  if (!v) {
    // Only a missing fixture gets here; every input would then look like a finding.
    std::fprintf(stderr, "fuzz: cannot create the verifier: %s\n", v.error().detail.c_str());
    std::abort();
  }
  return std::move(v).value();
}

struct Verifiers {
  Verifier both = make_verifier(VerifyMode::both, 300, false);
  Verifier token_global = make_verifier(VerifyMode::token_only, 300, true);
  Verifier header_only = make_verifier(VerifyMode::header_only, 0, false);
};

inline const Verifiers& verifiers() {
  static const Verifiers v;
  return v;
}

// Every typed accessor: a model either reads or fails cleanly, and what it keeps as `json` is
// the payload, compacted.
// `checked` is the last model json found equal to the payload: models keep the same compact
// text, so it is parsed again only when it differs.
template <class T>
void check_model(Report& r, const Result<T>& model, const char* name, const json& payload,
                 std::string& checked) {
  check_error(r, model, name, kModelCodes);
  if (!model.ok() || payload.is_discarded() || model->json == checked) return;
  const json kept = parse_json(model->json);
  if (kept.is_discarded() || kept != payload)
    note(r, std::string(name) + "(): its json is not the payload");
  else
    checked = model->json;
}

inline void check_models(Report& r, const Event& e, const json& payload) {
  std::string checked;
  check_model(r, e.request(), "request", payload, checked);
  check_model(r, e.message(), "message", payload, checked);
  check_model(r, e.lead(), "lead", payload, checked);
  check_model(r, e.faq(), "faq", payload, checked);
  check_model(r, e.faq_kb(), "faq_kb", payload, checked);
  check_model(r, e.project_user(), "project_user", payload, checked);
  check_model(r, e.department(), "department", payload, checked);
  check_model(r, e.group(), "group", payload, checked);
  check_model(r, e.project(), "project", payload, checked);
  check_model(r, e.user(), "user", payload, checked);
  check_model(r, e.custom_event(), "custom_event", payload, checked);
  check_model(r, e.operator_select(), "operator_select", payload, checked);
  check_model(r, e.request_close(), "request_close", payload, checked);
}

// An accepted envelope, read again by nlohmann: the same hook, timestamp, and byte spans that
// hold exactly the payload, hook and token values.
inline void check_event(Report& r, const Event& e, std::string_view body) {
  if (e.body() != body) note(r, "Event::body() is not the body");
  if (e.name().empty() || e.name() != e.hook().event)
    note(r, "event name is empty or not hook.event");
  const json whole = parse_json(body);
  json payload(json::value_t::discarded);
  if (!whole.is_discarded()) {
    const json* hook = member(whole, "hook");
    const json* p = member(whole, "payload");
    const json* ts = member(whole, "timestamp");
    if (!whole.is_object() || hook == nullptr || p == nullptr || ts == nullptr) {
      note(r, "an accepted envelope lacks hook, payload or timestamp for nlohmann");
      return;
    }
    payload = *p;
    if (!string_member_is(*hook, "_id", e.hook().id) ||
        !string_member_is(*hook, "event", e.hook().event) ||
        !string_member_is(*hook, "id_project", e.hook().project_id))
      note(r, "hook _id, event or id_project read differently by nlohmann");
    if (!ts->is_number() || *ts != json(e.timestamp())) note(r, "timestamp read differently");
    if (parse_json(e.payload_json()) != *p) note(r, "payload_json() is not the payload value");
    if (parse_json(e.hook_json()) != *hook) note(r, "hook_json() is not the hook value");
    const json* token = member(whole, "token");
    if (token != nullptr && token->is_string() && e.token().find('\\') == std::string_view::npos &&
        e.token() != token->get_ref<const std::string&>())
      note(r, "token() is not the token value");
  }
  check_models(r, e, payload);
}

inline bool same_envelope(const Event& a, const Event& b) {
  return a.body() == b.body() && a.hook().id == b.hook().id && a.hook().event == b.hook().event &&
         a.hook().project_id == b.hook().project_id && a.hook().target == b.hook().target &&
         a.hook().version == b.hook().version && a.timestamp() == b.timestamp() &&
         a.payload_json() == b.payload_json() && a.hook_json() == b.hook_json() &&
         a.token() == b.token();
}

// A verified token, read again by nlohmann: the claims the verifier accepted are Tiledesk's and
// name the body's hook; the header names the algorithm that verified it.
inline void check_verified_token(Report& r, const Event& e, std::int64_t max_age_s) {
  auto parts = detail::split_compact_jws(e.token());
  if (!parts) {
    note(r, "a verified token does not split");
    return;
  }
  const json header = parse_json(parts->header);
  const json claims = parse_json(parts->claims);
  if (header.is_discarded() || claims.is_discarded()) return;
  const auto& v = e.verification();
  if (!v.token_alg || !string_member_is(header, "alg", to_string(*v.token_alg)))
    note(r, "the header's alg is not the algorithm that verified the token");
  if (member(header, "crit") != nullptr) note(r, "a header with crit was accepted");
  const json* id = member(claims, "_id");
  if (id == nullptr || !id->is_string()) {
    note(r, "a verified token has no string _id");
    return;
  }
  const std::string aud = v.global_key
                              ? std::string("https://tiledesk.com")
                              : "https://tiledesk.com/subscriptions/" + id->get<std::string>();
  if (!string_member_is(claims, "iss", "https://tiledesk.com") ||
      !string_member_is(claims, "sub", "subscription") || !string_member_is(claims, "aud", aud))
    note(r, "a verified token's iss, sub or aud is not Tiledesk's");
  if (!string_member_is(claims, "_id", e.hook().id) ||
      !string_member_is(claims, "event", e.hook().event) ||
      !string_member_is(claims, "id_project", e.hook().project_id))
    note(r, "a verified token does not name the body's hook");
  const json* iat = member(claims, "iat");
  if (iat == nullptr || !iat->is_number()) {
    note(r, "a verified token has no numeric iat");
  } else if (max_age_s > 0) {
    const double age_ms = static_cast<double>(kNowMs) - iat->get<double>() * 1000.0;
    if (age_ms > max_age_s * 1000.0 || -age_ms > max_age_s * 1000.0)
      note(r, "a stale token was accepted");
  }
}

// Strict base64url as RFC 4648 §5 and RFC 7515 want it, written independently of base64.cpp.
inline std::optional<std::string> reference_base64url(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = -1;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '-')
      v = 62;
    else if (c == '_')
      v = 63;
    if (v < 0) return std::nullopt;
    acc = ((acc << 6) | static_cast<std::uint32_t>(v)) & 0xFFFFFu;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFFu));
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

// JSON string escaping for a token put back into a body (raw bytes otherwise kept).
inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(u));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

inline std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const auto at = text.find(sep);
    out.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return out;
    text.remove_prefix(at + 1);
  }
}

inline std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// pattern.hpp's rules, written again from its comment: the parsed segments of a valid set.
inline std::optional<std::vector<std::vector<std::string_view>>> reference_patterns(
    std::string_view text) {
  std::vector<std::vector<std::string_view>> out;
  const auto items = split(text, ',');
  for (std::size_t n = 0; n < items.size(); ++n) {
    const auto item = trim_blanks(items[n]);
    if (item.empty()) {
      // "a,,b" and ",a" name an empty pattern; a final comma ("a,") is tolerated, as is "".
      if (n + 1 != items.size()) return std::nullopt;
      continue;
    }
    auto segments = split(item, '.');
    for (std::size_t i = 0; i < segments.size(); ++i) {
      const auto s = segments[i];
      if (s.empty()) return std::nullopt;
      if (s == "**" && i + 1 != segments.size()) return std::nullopt;
      if (s != "*" && s != "**" && s.find('*') != std::string_view::npos) return std::nullopt;
    }
    out.push_back(std::move(segments));
  }
  return out;
}

inline bool reference_match(const std::vector<std::string_view>& pattern,
                            const std::vector<std::string_view>& event) {
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == "**") return event.size() > i;
    if (i >= event.size()) return false;
    if (pattern[i] != "*" && pattern[i] != event[i]) return false;
  }
  return event.size() == pattern.size();
}

// The config reader takes a file name: the input goes into a memory file, reached as
// /proc/self/fd/N, rewritten for every input.
class MemoryFile {
 public:
  MemoryFile() : fd_(::memfd_create("tdhook-fuzz-config", MFD_CLOEXEC)) {}
  ~MemoryFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  bool write(std::string_view text) {
    if (fd_ < 0 || ::ftruncate(fd_, 0) != 0) return false;
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n =
          ::pwrite(fd_, text.data() + done, text.size() - done, static_cast<off_t>(done));
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

}  // namespace oracle

// 1. The envelope: Event::parse, Verifier::verify in its three modes, the typed models.
inline Report envelope(std::string_view body) {
  using namespace oracle;
  Report r;
  const auto& v = verifiers();
  const auto parsed = Event::parse(body);
  check_error(r, parsed, "Event::parse", kParseCodes);
  if (parsed.ok()) check_event(r, *parsed, body);
  r.accepted = parsed.ok();

  const Headers headers = {{"Content-Type", "application/json"},
                           {"X-Hook-Secret", std::string(kSecret)}};
  struct Run {
    const char* name;
    Result<Event> result;
    std::int64_t max_age_s;
  };
  Run runs[] = {{"verify(both)", v.both.verify(headers, body), 300},
                {"verify(token, global keys)", v.token_global.verify(std::nullopt, body), 300},
                {"verify(header)", v.header_only.verify(kSecret, body), 0}};
  for (const auto& run : runs) {
    check_error(r, run.result, run.name, kVerifyCodes);
    if (!parsed.ok()) {
      // The secret is right, so the first failing check is the envelope's, with the same code.
      if (run.result.ok() || run.result.error().code != parsed.error().code)
        note(r, std::string(run.name) + " does not fail as Event::parse does");
      continue;
    }
    if (!run.result.ok()) continue;
    const Event& e = *run.result;
    if (!same_envelope(e, *parsed)) note(r, std::string(run.name) + " reads another envelope");
    if (e.verification().describe().empty()) note(r, "empty verification description");
    if (e.verification().token_alg) check_verified_token(r, e, run.max_age_s);
  }
  // A wrong secret is refused before anything is parsed.
  auto wrong = v.both.verify(std::string_view("not-the-secret"), body);
  if (wrong.ok() || wrong.error().code != ErrorCode::secret_mismatch)
    note(r, "a wrong x-hook-secret was not refused first");
  return r;
}

// 2. The compact JWS decoder and the signature and claim checks. Two forms of input:
//   - a token (anything not starting with '{'): split and decoded, every key tries it, and it is
//     verified inside an envelope built around the fuzz hook;
//   - '{' header JSON, '\n', claims JSON: encoded and signed here with the subscription secret,
//     so that the header and claims parsers behind a valid signature get fuzzed too.
inline Report jws(std::string_view input) {
  using namespace oracle;
  Report r;
  std::string token;
  const bool signed_here = !input.empty() && input.front() == '{';
  if (signed_here) {
    const auto nl = input.find('\n');
    const auto header = input.substr(0, nl);
    const auto claims = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);
    std::string signing_input =
        detail::base64url_encode(header) + "." + detail::base64url_encode(claims);
    auto sig = detail::jws_sign(SigningKey{Algorithm::hs256, std::string(kSecret)}, signing_input);
    if (!sig) {
      note(r, "jws_sign failed with the subscription secret");
      return r;
    }
    token = signing_input + "." + detail::base64url_encode(*sig);
  } else {
    token = std::string(input);
  }

  const auto split_token = detail::split_compact_jws(token);
  r.accepted = split_token.has_value();
  // The reference: three dot-separated parts, each strict base64url, header and claims not empty.
  const auto parts = split(token, '.');
  std::optional<std::string> ref[3];
  if (parts.size() == 3)
    for (int i = 0; i < 3; ++i) ref[i] = reference_base64url(parts[i]);
  const bool ref_ok =
      parts.size() == 3 && ref[0] && ref[1] && ref[2] && !ref[0]->empty() && !ref[1]->empty();
  if (ref_ok != split_token.has_value()) {
    note(r, split_token ? "split_compact_jws accepted a token that is not strict compact JWS"
                        : "split_compact_jws refused a strict compact JWS");
  } else if (split_token) {
    if (split_token->header != *ref[0] || split_token->claims != *ref[1] ||
        split_token->signature != *ref[2])
      note(r, "split_compact_jws decoded a part differently");
    if (split_token->signing_input !=
        std::string_view(token).substr(0, parts[0].size() + 1 + parts[1].size()))
      note(r, "signing_input is not the first two parts");
    if (detail::base64url_encode(split_token->header) != parts[0])
      note(r, "base64url_encode(decode(header)) is not the header");
  }

  // Every key tries the token; only the subscription secret's HMAC may verify a token signed here.
  static const auto keys = [] {
    std::vector<std::unique_ptr<detail::VerifyKey>> out;
    for (const auto& g : fixture_global_keys()) {
      auto k = g.alg == Algorithm::hs256 ? detail::VerifyKey::hmac(g.alg, g.material, true)
                                         : detail::VerifyKey::public_key(g.alg, g.material);
      if (k) out.push_back(std::move(k).value());
    }
    auto k = detail::VerifyKey::hmac(Algorithm::hs256, kSecret, false);
    if (k) out.push_back(std::move(k).value());
    return out;
  }();
  if (split_token) {
    for (const auto& k : keys) {
      const bool ok = k->verify(split_token->signing_input, split_token->signature);
      const bool subscription_key = k->alg() == Algorithm::hs256 && !k->global();
      if (signed_here && subscription_key && !ok)
        note(r, "the secret's HMAC refused its own signature");
      if (signed_here && !subscription_key && ok)
        note(r, "another key verified a token signed with the secret");
    }
  }

  const std::string body = "{\"timestamp\":" + std::to_string(kNowMs - 1000) +
                           ",\"payload\":{},\"hook\":{\"_id\":\"" + std::string(kHookId) +
                           "\",\"event\":\"" + std::string(kHookEvent) + "\",\"id_project\":\"" +
                           std::string(kHookProject) + "\"},\"token\":" + json_quote(token) + "}";
  const auto& v = verifiers();
  auto both = v.both.verify(kSecret, body);
  auto global = v.token_global.verify(std::nullopt, body);
  check_error(r, both, "verify(both)", kVerifyCodes);
  check_error(r, global, "verify(token, global keys)", kVerifyCodes);
  if (both.ok()) check_verified_token(r, *both, 300);
  if (global.ok()) check_verified_token(r, *global, 300);
  // The global verifier holds the subscription secrets too (first), and more keys.
  if (both.ok() && !global.ok())
    note(r, "a token the subscription secret verifies fails with more keys");
  return r;
}

namespace oracle {

struct Decoded {
  receiver::ChunkedDecoder::Status status = receiver::ChunkedDecoder::Status::more;
  std::string body;
  std::size_t used = 0;
};

// `body` through a ChunkedDecoder whole and fed a byte at a time, which must read the same.
// Returns the whole reading.
inline Decoded check_chunked_pieces(Report& r, std::string_view body, receiver::Syntax syntax,
                                    std::uint64_t max_body = 64 * 1024) {
  using receiver::ChunkedDecoder;
  ChunkedDecoder whole(max_body, syntax), pieces(max_body, syntax);
  Decoded a;
  std::string b;
  a.status = whole.feed(body, a.body, a.used);
  auto status_pieces = ChunkedDecoder::Status::more;
  std::size_t pos = 0;
  while (pos < body.size() && status_pieces == ChunkedDecoder::Status::more) {
    std::size_t used = 0;
    status_pieces = pieces.feed(body.substr(pos, 1), b, used);
    if (used == 0) break;
    pos += used;
  }
  if (a.used > body.size() || a.body.size() > max_body) note(r, "chunked: out of bounds");
  if (a.status == ChunkedDecoder::Status::done &&
      (status_pieces != ChunkedDecoder::Status::done || a.body != b || a.used != pos))
    note(r, "a chunked body reads differently fed a byte at a time");
  if (a.status == ChunkedDecoder::Status::error &&
      (status_pieces != ChunkedDecoder::Status::error ||
       whole.error().status != pieces.error().status))
    note(r, "a chunked body refused whole but not in pieces");
  return a;
}

}  // namespace oracle

// 3. The raw HTTP request reader of `tdhook verify` (receiver/http's lenient syntax; and the
// response-head and chunked readers of the sender), then the verification `tdhook verify` does
// with what it read.
inline Report http_request(std::string_view text) {
  using namespace oracle;
  Report r;
  const auto req = tools::parse_raw_request(text);
  check_error(r, req, "parse_raw_request", kInputCodes);
  r.accepted = req.ok();
  if (!req.ok()) {
    if (req.error().detail.find(kSecret) != std::string::npos)
      note(r, "a parse error quotes the secret");
  } else {
    const auto& head = req->head;
    if (head.method.empty() || head.target.empty() || head.minor_version < 0 ||
        head.minor_version > 9)
      note(r, "an accepted request line lacks a method or a target, or has a bad version");
    for (const auto& [name, value] : head.fields)
      if (name.empty() || name.find(':') != std::string::npos)
        note(r, "an accepted header has an invalid name");
    if (req->body.size() > text.size()) note(r, "the body is longer than the request");
    const auto* length = head.find("content-length");
    if (length && !head.find("transfer-encoding") &&
        req->body.size() != std::stoull(std::string(*length)))
      note(r, "the body is not Content-Length bytes");
    auto event = verifiers().both.verify(head.fields, req->body);
    check_error(r, event, "verify", kVerifyCodes);
    if (event.ok()) {
      // What `tdhook verify` prints (verify_cmd.cpp): must not throw on any bytes.
      nlohmann::ordered_json line;
      line["ok"] = true;
      line["event"] = event->name();
      line["subscription"] = event->hook().id;
      line["timestamp"] = event->timestamp();
      line["verified"] = event->verification().describe();
      (void)line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  // The same text as the head of a response, as the sender reads it, and as a chunked body.
  receiver::HttpResponseHead response;
  const auto parsed = receiver::parse_response_head(text, {}, response);
  if (parsed.state == receiver::HeadParse::State::complete &&
      (parsed.consumed > text.size() || response.status < 0 || response.status > 999))
    note(r, "a response head past the text, or its status out of range");
  if (parsed.state == receiver::HeadParse::State::error &&
      (parsed.error.reason.empty() || parsed.error.detail.empty()))
    note(r, "a response refused without a reason");
  check_chunked_pieces(r, text, receiver::Syntax::lenient);
  return r;
}

// 4. Event patterns: the first line is a comma-separated pattern set, every further line an
// event name matched against it, and against pattern.hpp's rules written again here.
inline Report pattern(std::string_view input) {
  using namespace oracle;
  Report r;
  const auto nl = input.find('\n');
  const auto set_text = input.substr(0, nl);
  const auto events = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);
  const auto set = PatternSet::parse(set_text);
  check_error(r, set, "PatternSet::parse", kConfigCodes);
  r.accepted = set.ok();
  const auto ref = reference_patterns(set_text);
  if (ref.has_value() != set.ok()) {
    note(r, set.ok() ? "PatternSet::parse accepted a set the rules refuse"
                     : "PatternSet::parse refused a set the rules accept");
    return r;
  }
  if (!set.ok()) return r;
  if (set->patterns().size() != ref->size()) {
    note(r, "PatternSet::parse kept another number of patterns");
    return r;
  }
  for (const auto& p : set->patterns()) {
    auto again = EventPattern::parse(p.text());
    if (!again) note(r, "a pattern of a set does not parse alone");
  }
  for (auto event : split(events, '\n')) {
    const bool got = set->matches(event);
    // Names with an empty segment ("a..b", "a.") never come from Tiledesk; the rules say nothing
    // about them, so only the absence of a crash is checked for those.
    const auto segments = split(event, '.');
    bool well_formed = true;
    for (auto s : segments) well_formed &= !s.empty();
    if (!well_formed) continue;
    bool want = ref->empty();
    for (const auto& p : *ref) want |= reference_match(p, segments);
    if (got != want)
      note(r, got ? "a pattern matched an event it must not"
                  : "a pattern missed an event it must match");
  }
  return r;
}

namespace oracle {

// A TOML basic string (or quoted key) holding `s`: control characters escaped, the rest kept.
inline std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(u));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// The reader's document written back as TOML, by other code than the reader's: read again, it
// must give the same document.
inline std::string toml_written(const receiver::TomlDocument& doc) {
  using Kind = receiver::TomlValue::Kind;
  std::string out;
  for (const auto& table : doc.tables) {
    out += table.array_element ? "[[" + toml_quote(table.name) + "]]\n"
                               : "[" + toml_quote(table.name) + "]\n";
    for (const auto& [key, v] : table.entries) {
      out += toml_quote(key) + " = ";
      if (v.kind == Kind::string) out += toml_quote(v.text);
      if (v.kind == Kind::integer) out += std::to_string(v.integer);
      if (v.kind == Kind::boolean) out += v.boolean ? "true" : "false";
      if (v.kind == Kind::array) {
        out += "[";
        for (const auto& item : v.items) out += toml_quote(item) + ", ";
        out += "]";
      }
      out += "\n";
    }
  }
  return out;
}

inline bool same_toml(const receiver::TomlDocument& a, const receiver::TomlDocument& b) {
  if (a.tables.size() != b.tables.size()) return false;
  for (std::size_t t = 0; t < a.tables.size(); ++t) {
    const auto &x = a.tables[t], &y = b.tables[t];
    if (x.name != y.name || x.array_element != y.array_element ||
        x.entries.size() != y.entries.size())
      return false;
    for (std::size_t e = 0; e < x.entries.size(); ++e) {
      const auto& [xk, xv] = x.entries[e];
      const auto& [yk, yv] = y.entries[e];
      if (xk != yk || xv.kind != yv.kind || xv.text != yv.text || xv.integer != yv.integer ||
          xv.boolean != yv.boolean || xv.items != yv.items)
        return false;
    }
  }
  return true;
}

// The byte offset of `column` (1-based, in UTF-8 code points, as toml++ counts) in `line`.
inline std::size_t byte_of_column(std::string_view line, int column) {
  int seen = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xc0) == 0x80) continue;
    if (++seen == column) return i;
  }
  return std::string_view::npos;
}

// A TOML integer's text ("+1_000", "-5", "0xff", "0o17", "0b101"), read without toml++.
inline std::optional<std::int64_t> reread_integer(std::string_view token) {
  std::string digits;
  for (char c : token)
    if (c != '_') digits += c;
  std::string_view d = digits;
  if (d.starts_with('+')) d.remove_prefix(1);
  int base = 10;
  if (d.size() > 2 && d[0] == '0' && (d[1] == 'x' || d[1] == 'o' || d[1] == 'b')) {
    base = d[1] == 'x' ? 16 : d[1] == 'o' ? 8 : 2;
    d.remove_prefix(2);
  }
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(d.data(), d.data() + d.size(), v, base);
  if (ec != std::errc() || end != d.data() + d.size()) return std::nullopt;
  return v;
}

}  // namespace oracle

// 5. The receiver's configuration file: the TOML reader (toml++ and the shape the receiver
// takes), then the whole of load_config (the [receiver] and [[sink]] tables into a Config) on
// the same text.
inline Report config(std::string_view text) {
  using namespace oracle;
  Report r;
  const auto doc = receiver::parse_toml(text, "fuzz.toml");
  check_error(r, doc, "parse_toml", kConfigCodes);
  r.accepted = doc.ok();
  auto lines = split(text, '\n');
  // toml++ skips a byte order mark: columns on the first line count from after it.
  if (lines.front().starts_with("\xef\xbb\xbf")) lines.front().remove_prefix(3);
  if (!doc.ok()) {
    // "fuzz.toml:LINE:COLUMN: what", LINE in the file.
    std::string_view detail = doc.error().detail;
    int line = 0, column = 0;
    bool placed = detail.starts_with("fuzz.toml:");
    if (placed) {
      detail.remove_prefix(10);
      auto [after_line, ec1] = std::from_chars(detail.data(), detail.data() + detail.size(), line);
      placed =
          ec1 == std::errc() && after_line < detail.data() + detail.size() && *after_line == ':';
      if (placed) {
        detail.remove_prefix(static_cast<std::size_t>(after_line + 1 - detail.data()));
        auto [after_col, ec2] =
            std::from_chars(detail.data(), detail.data() + detail.size(), column);
        detail.remove_prefix(static_cast<std::size_t>(after_col - detail.data()));
        placed = ec2 == std::errc() && detail.starts_with(": ") && detail.size() > 2;
      }
    }
    if (!placed) note(r, "a TOML error does not say FILE:LINE:COLUMN: what");
    if (placed && (line < 1 || static_cast<std::size_t>(line) > lines.size() || column < 1))
      note(r, "a TOML error's line or column is outside the file");
    return r;
  }
  for (const auto& table : doc->tables) {
    if (table.line < 1 || static_cast<std::size_t>(table.line) > lines.size())
      note(r, "a table's line number is outside the file");
    for (std::size_t i = 0; i < table.entries.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j)
        if (table.entries[i].first == table.entries[j].first)
          note(r, "a TOML table kept a key twice");
      const auto& value = table.entries[i].second;
      if (value.line < 1 || static_cast<std::size_t>(value.line) > lines.size()) {
        note(r, "a value's line number is outside the file");
        continue;
      }
      // An integer is on one line from its column on: read it again from there.
      if (value.kind != receiver::TomlValue::Kind::integer) continue;
      auto line = lines[static_cast<std::size_t>(value.line) - 1];
      const auto at = byte_of_column(line, value.column);
      if (at == std::string_view::npos) {
        note(r, "an integer's column is outside its line");
        continue;
      }
      line.remove_prefix(at);
      std::size_t n = 0;
      while (n < line.size() && (std::isalnum(static_cast<unsigned char>(line[n])) != 0 ||
                                 line[n] == '_' || line[n] == '+' || line[n] == '-'))
        ++n;
      if (reread_integer(line.substr(0, n)) != value.integer)
        note(r, "a TOML integer was read as another number");
    }
  }
  const auto again = receiver::parse_toml(toml_written(*doc), "fuzz.toml");
  if (!again.ok() || !same_toml(*doc, *again))
    note(r, "the TOML document written back reads differently");
  static MemoryFile file;
  if (!file.write(text)) {
    note(r, "cannot write the memory file");
    return r;
  }
  const std::string path = file.path();
  const char* argv[] = {"tdhook-receiver", "--config", path.c_str()};
  receiver::Config loaded;
  std::ostringstream out, err;
  const auto outcome = receiver::load_config(3, argv, loaded, out, err);
  if (!outcome.run) {
    if (outcome.exit_code != 2 || !err.str().starts_with("tdhook-receiver: "))
      note(r, "load_config refused a file without its one-line error");
    return r;
  }
  if (loaded.sinks.empty()) note(r, "a loaded config has no sink");
  if (loaded.port < 0 || loaded.port > 65535) note(r, "port out of range");
  if (loaded.path.empty() || loaded.path.front() != '/') note(r, "path does not start with /");
  if (loaded.threads < 1) note(r, "no threads");
  // Durations are read as "30s" (at most 10^15 ms, parse_duration) or as integer seconds: none
  // may come out negative or beyond that bound.
  const auto duration_ok = [](std::chrono::milliseconds d) {
    return d.count() >= 0 && d.count() <= 1000000000000000LL;
  };
  bool durations = duration_ok(loaded.read_timeout) && duration_ok(loaded.write_timeout) &&
                   duration_ok(loaded.dedup_window) && duration_ok(loaded.reply_timeout) &&
                   loaded.keys.max_age_s >= 0;
  for (const auto& sink : loaded.sinks)
    durations = durations && duration_ok(sink.exec_timeout) && duration_ok(sink.retry_base);
  if (!durations) note(r, "a duration was read as a negative or out-of-range value");
  if (!loaded.events_text.empty() && !PatternSet::parse(loaded.events_text))
    note(r, "events kept although they do not parse");
  return r;
}

// 6. The receiver's own HTTP/1.1 parser (receiver/http/http_parser.hpp, strict), which faces the
// network: the request head, whole and cut one byte short; then the rest as a chunked body, fed
// whole and fed a byte at a time, which must read the same. Whatever strict accepts, lenient
// (`tdhook verify`'s syntax) must accept and read the same way.
inline Report http_server(std::string_view input) {
  using namespace oracle;
  using receiver::ChunkedDecoder;
  using receiver::HeadParse;
  Report r;
  receiver::HttpLimits limits;
  limits.max_body = 64 * 1024;
  receiver::HttpRequestHead head;
  const auto parsed = receiver::parse_request_head(input, limits, head);
  if (parsed.state == HeadParse::State::complete) {
    r.accepted = true;
    if (parsed.consumed > input.size() || parsed.consumed < 4) note(r, "head length out of range");
    if (head.method.empty() || head.target.empty()) note(r, "a head without method or target");
    if (head.chunked && head.find("content-length") != nullptr)
      note(r, "Content-Length and Transfer-Encoding both accepted");
    if (!head.chunked && head.find("transfer-encoding") != nullptr)
      note(r, "a Transfer-Encoding accepted but not applied");
    for (const auto& [name, value] : head.fields) {
      if (name.empty() || value.find_first_of("\r\n") != std::string::npos ||
          value.find('\0') != std::string::npos)
        note(r, "an accepted header field holds a line break or NUL");
    }
    receiver::HttpRequestHead shorter;
    if (receiver::parse_request_head(input.substr(0, parsed.consumed - 1), limits, shorter).state ==
        HeadParse::State::complete)
      note(r, "a head complete one byte before its end");
    receiver::HttpRequestHead loose;
    const auto relaxed =
        receiver::parse_request_head(input, limits, loose, receiver::Syntax::lenient);
    if (relaxed.state != HeadParse::State::complete || relaxed.consumed != parsed.consumed ||
        loose.method != head.method || loose.target != head.target ||
        loose.minor_version != head.minor_version || loose.fields != head.fields ||
        loose.chunked != head.chunked || loose.content_length != head.content_length ||
        loose.expect_continue != head.expect_continue || loose.keep_alive != head.keep_alive)
      note(r, "a head the strict syntax reads, the lenient one reads differently");
  } else if (parsed.state == HeadParse::State::error) {
    if (parsed.error.status < 400 || parsed.error.status > 505 || parsed.error.reason.empty())
      note(r, "a refusal without a 4xx/5xx status and a reason");
  }
  const auto body =
      parsed.state == HeadParse::State::complete ? input.substr(parsed.consumed) : input;
  const auto strict = check_chunked_pieces(r, body, receiver::Syntax::strict, limits.max_body);
  const auto lenient = check_chunked_pieces(r, body, receiver::Syntax::lenient, limits.max_body);
  if (strict.status == ChunkedDecoder::Status::done &&
      (lenient.status != ChunkedDecoder::Status::done || lenient.body != strict.body ||
       lenient.used != strict.used))
    note(r, "a chunked body the strict syntax reads, the lenient one reads differently");
  return r;
}

// 7. The event log's entry framing (receiver/store/log/segment.hpp): the input is a segment
// file's bytes, scanned as recovery scans them (scan_buffer, the loop scan_segment runs over its
// reads), with and without records, and through a real file descriptor.
inline Report segment(std::string_view input) {
  using namespace oracle;
  namespace lg = receiver::log;
  Report r;
  struct Seen {
    lg::Entry entry;
    std::uint64_t offset;
    std::uint32_t size;
  };
  const auto scan = [](std::string_view bytes, bool with_record, std::vector<Seen>& seen) {
    return lg::scan_buffer(bytes, with_record,
                           [&seen](lg::Entry&& e, std::uint64_t offset, std::uint32_t size) {
                             seen.push_back({std::move(e), offset, size});
                           });
  };
  std::vector<Seen> full;
  const lg::ScanReport report = scan(input, true, full);
  r.accepted = !full.empty();
  if (report.file_size != input.size()) note(r, "file_size is not the input's size");
  if (report.valid_end > input.size()) note(r, "valid_end is past the end");
  if (report.entries != full.size()) note(r, "entries is not the number of entries reported");
  if (report.torn_tail != (report.valid_end < input.size()))
    note(r, "torn_tail disagrees with valid_end");

  // Entries and damage tile [0, valid_end) in order: each damage stretch ends where an entry
  // starts, and every entry re-encodes to exactly its bytes.
  std::uint64_t end = 0;
  std::size_t next_damage = 0;
  std::string encoded;
  for (const auto& s : full) {
    if (next_damage < report.damage.size() && report.damage[next_damage].offset == end) {
      const auto& d = report.damage[next_damage++];
      if (d.length == 0 || d.why.empty()) note(r, "an empty or unexplained damage stretch");
      end += d.length;
    }
    if (s.offset != end) {
      note(r, "entries and damage do not tile the valid part");
      break;
    }
    if (s.size > input.size() - s.offset) {
      note(r, "an entry runs past the end");
      break;
    }
    const auto bytes = input.substr(static_cast<std::size_t>(s.offset), s.size);
    encoded.clear();
    lg::encode_entry(s.entry, encoded);
    if (encoded != bytes) note(r, "an entry does not re-encode to its bytes");
    if (lg::encoded_size(s.entry) != s.size) note(r, "encoded_size is not the entry's size");
    end = s.offset + s.size;
  }
  if (next_damage != report.damage.size()) note(r, "damage not followed by an entry");
  if (end != report.valid_end) note(r, "valid_end is not the end of the last entry");

  lg::Entry first;
  const auto d = lg::decode_entry(input, first);
  const bool first_ok = !full.empty() && full.front().offset == 0;
  if ((d.status == lg::DecodeStatus::ok) != first_ok ||
      (first_ok && (d.size != full.front().size || !(first == full.front().entry))))
    note(r, "decode_entry and the scan read the first entry differently");
  if (d.status != lg::DecodeStatus::ok && d.why.empty()) note(r, "a refusal without a why");

  // Header-only: the same entries, without records or originals.
  std::vector<Seen> headers;
  const auto header_report = scan(input, false, headers);
  bool same = headers.size() == full.size() && header_report.valid_end == report.valid_end &&
              header_report.damage.size() == report.damage.size();
  for (std::size_t i = 0; same && i < headers.size(); ++i) {
    auto want = full[i].entry;
    want.record.clear();
    want.original.clear();
    same = headers[i].offset == full[i].offset && headers[i].size == full[i].size &&
           headers[i].entry == want;
  }
  if (!same) note(r, "with_record=false reads other entries");

  // Cut at valid_end (what the store does to a torn tail): the same entries, nothing torn.
  if (report.torn_tail) {
    std::vector<Seen> cut;
    const auto cut_report =
        scan(input.substr(0, static_cast<std::size_t>(report.valid_end)), true, cut);
    if (cut_report.torn_tail || cut.size() != full.size() ||
        cut_report.damage.size() != report.damage.size())
      note(r, "the valid part alone scans differently");
  }

  // The same bytes as a file: scan_segment and read_entry agree with the scan in memory.
  static MemoryFile file;
  if (!file.write(input)) {
    note(r, "cannot write the memory file");
    return r;
  }
  std::size_t n = 0;
  bool file_same = true;
  const auto on_disk = lg::scan_segment(
      file.path(), true, [&](lg::Entry&& e, std::uint64_t offset, std::uint32_t size) {
        file_same = file_same && n < full.size() && full[n].offset == offset &&
                    full[n].size == size && full[n].entry == e;
        ++n;
      });
  if (!on_disk.ok() || !file_same || n != full.size() || on_disk->valid_end != report.valid_end ||
      on_disk->torn_tail != report.torn_tail)
    note(r, "scan_segment reads the file differently from scan_buffer");
  const int fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    for (const auto& s : full) {
      const auto e = lg::read_entry(fd, s.offset, s.size);
      if (!e.ok() || !(*e == s.entry)) note(r, "read_entry does not read a scanned entry");
    }
    // An offset inside an entry is refused with its offset named, or reads another whole entry.
    if (!full.empty()) {
      const auto e = lg::read_entry(fd, full.front().offset + 1, full.front().size);
      if (!e.ok() && e.error().detail.find("offset") == std::string::npos)
        note(r, "read_entry's error does not name the offset");
    }
    ::close(fd);
  }
  return r;
}

}  // namespace tdhook::fuzz
