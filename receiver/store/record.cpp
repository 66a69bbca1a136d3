#include "store/record.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

namespace tdhook::receiver {
namespace {

// A JSON string. The values written here (ids, event names, timestamps) are plain ASCII; anything
// else (controls, quotes, non-ASCII that may be invalid UTF-8) takes nlohmann's escaper.
void append_json_string(std::string& out, std::string_view text) {
  const bool plain = std::all_of(text.begin(), text.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (!plain) {
    out += nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  out += '"';
  out += text;
  out += '"';
}

// Raw JSON may be pretty-printed; a raw newline can only be whitespace between tokens (JSON
// forbids it inside strings), so turning it into a space keeps the value and the NDJSON framing.
void append_raw_json(std::string& out, std::string_view json) {
  const auto start = out.size();
  out += json;
  for (const char c : {'\n', '\r'}) {
    char* p = out.data() + start;
    char* const end = out.data() + out.size();
    while ((p = static_cast<char*>(std::memchr(p, c, static_cast<std::size_t>(end - p)))) !=
           nullptr) {
      *p++ = ' ';
    }
  }
}

constexpr char hex_digits[] = "0123456789abcdef";

std::string to_hex(const unsigned char* data, std::size_t size) {
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += hex_digits[data[i] >> 4];
    out += hex_digits[data[i] & 0x0f];
  }
  return out;
}

// The payload's fingerprint for de-duplication: SipHash-2-4 with a 128-bit output (OpenSSL's
// EVP_MAC), about five times faster than SHA-256 on a payload of a few KB. The key is fixed, so
// keys stay equal across restarts; this is not a security boundary: only a sender that passes
// verification can store anything, and a collision needs an equal hook id and timestamp too.
std::string payload_fingerprint(std::string_view data) {
  struct Mac {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
    ~Mac() { EVP_MAC_free(mac); }
  };
  static const Mac siphash;
  static constexpr unsigned char key[16] = {'t', 'd', 'h', 'o', 'o', 'k', '-', 'd',
                                            'e', 'd', 'u', 'p', '-', 'v', '2', '!'};
  struct Ctx {
    EVP_MAC_CTX* ctx = siphash.mac != nullptr ? EVP_MAC_CTX_new(siphash.mac) : nullptr;
    ~Ctx() { EVP_MAC_CTX_free(ctx); }
  };
  thread_local const Ctx local;
  std::size_t size = 16;
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                               OSSL_PARAM_construct_end()};
  std::array<unsigned char, 16> digest{};
  std::size_t written = 0;
  if (local.ctx != nullptr && EVP_MAC_init(local.ctx, key, sizeof key, params) == 1 &&
      EVP_MAC_update(local.ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) ==
          1 &&
      EVP_MAC_final(local.ctx, digest.data(), &written, digest.size()) == 1) {
    return "s" + to_hex(digest.data(), written);
  }
  // No SipHash in this OpenSSL: SHA-256, slower but as good.
  unsigned int md_size = 0;
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  if (EVP_Digest(data.data(), data.size(), md.data(), &md_size, EVP_sha256(), nullptr) != 1) {
    return {};
  }
  return to_hex(md.data(), md_size);
}

}  // namespace

std::string build_record(const Event& event, const RecordOptions& options) {
  const auto hook = event.hook_json();
  const auto payload = event.payload_json();
  std::string out;
  out.reserve(hook.size() + payload.size() + 320 + (options.keep_token ? event.token().size() : 0));
  out += R"({"id":)";
  append_json_string(out, options.delivery_id);
  out += R"(,"event":)";
  append_json_string(out, event.name());
  out += R"(,"project_id":)";
  append_json_string(out, event.hook().project_id);
  out += R"(,"subscription_id":)";
  append_json_string(out, event.hook().id);
  out += R"(,"timestamp":)";
  out += std::to_string(event.timestamp());
  out += R"(,"received_at":")";
  out += format_iso8601_ms(options.received_at_ms);
  out += R"(","verified":)";
  append_json_string(out, options.verified);
  out += R"(,"hook":)";
  append_raw_json(out, hook);
  out += R"(,"payload":)";
  append_raw_json(out, payload.empty() ? std::string_view("null") : payload);
  if (options.keep_token && !event.token().empty()) {
    out += R"(,"token":)";
    append_json_string(out, event.token());
  }
  out += '}';
  return out;
}

std::string dedup_key(const Event& event) {
  std::string key = event.hook().id;
  key += '|';
  key += std::to_string(event.timestamp());
  key += '|';
  key += payload_fingerprint(event.payload_json());
  return key;
}

std::string new_delivery_id() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data() + 6, 10) != 1) {
    // The CSPRNG failing is near impossible; uniqueness still matters more than secrecy here.
    const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    for (std::size_t i = 6; i < bytes.size(); ++i) {
      bytes[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(t) >> ((i % 8) * 8));
    }
  }
  // UUID v7 (RFC 9562): 48 bits of Unix milliseconds first, then random bits. Ids of successive
  // events sort by time, so the spool's unique index on them grows at its end instead of taking a
  // write on a random page of the index for every event.
  const auto ms = static_cast<std::uint64_t>(now_ms());
  for (int i = 0; i < 6; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x70);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);
  const auto hex = to_hex(bytes.data(), bytes.size());
  return hex.substr(0, 8) + '-' + hex.substr(8, 4) + '-' + hex.substr(12, 4) + '-' +
         hex.substr(16, 4) + '-' + hex.substr(20);
}

std::string format_iso8601_ms(std::int64_t ms_since_epoch) {
  auto seconds = static_cast<std::time_t>(ms_since_epoch / 1000);
  auto millis = ms_since_epoch % 1000;
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[80];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(millis));
  return text;
}

namespace {
bool same_name(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}
}  // namespace

std::string build_original(const std::vector<std::pair<std::string, std::string>>& fields,
                           std::string_view body) {
  std::string out;
  std::size_t size = body.size() + 2;
  for (const auto& [name, value] : fields) size += name.size() + value.size() + 4;
  out.reserve(size);
  for (const auto wanted : kForwardedHeaders) {
    for (const auto& [name, value] : fields) {
      if (!same_name(name, wanted)) continue;
      // The parser refuses CR and LF in fields; a value that has one anyway is not kept.
      if (value.find_first_of("\r\n") != std::string::npos) break;
      out.append(name).append(": ").append(value).append("\r\n");
      break;  // the first occurrence, as HttpRequestHead::find() reads it
    }
  }
  out.append("\r\n").append(body);
  return out;
}

std::optional<OriginalRequest> parse_original(std::string_view text) {
  OriginalRequest out;
  for (;;) {
    const auto end = text.find("\r\n");
    if (end == std::string_view::npos) return std::nullopt;
    const auto line = text.substr(0, end);
    text.remove_prefix(end + 2);
    if (line.empty()) break;
    const auto colon = line.find(": ");
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    out.headers.emplace_back(line.substr(0, colon), line.substr(colon + 2));
  }
  out.body = text;
  return out;
}

std::int64_t now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tdhook::receiver
