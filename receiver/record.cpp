#include "record.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

namespace tdhook::receiver {
namespace {

void append_json_string(std::string& out, std::string_view text) {
  out += nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Raw JSON may be pretty-printed; a raw newline can only be whitespace between tokens (JSON
// forbids it inside strings), so turning it into a space keeps the value and the NDJSON framing.
void append_raw_json(std::string& out, std::string_view json) {
  const auto start = out.size();
  out += json;
  for (auto i = start; i < out.size(); ++i) {
    if (out[i] == '\n' || out[i] == '\r') out[i] = ' ';
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

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1) {
    return {};
  }
  return to_hex(digest.data(), size);
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
  key += sha256_hex(event.payload_json());
  return key;
}

std::string new_delivery_id() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    // The CSPRNG failing is near impossible; uniqueness still matters more than secrecy here.
    const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      bytes[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(t) >> ((i % 8) * 8));
    }
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);
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

std::int64_t now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tdhook::receiver
