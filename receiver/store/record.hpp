#pragma once
// The event record (what every sink receives) and the de-duplication key of an event.
//
// The record is one JSON object on one line:
//   {"id":…,"event":…,"project_id":…,"subscription_id":…,"timestamp":…,"received_at":…,
//    "verified":…,"hook":{…},"payload":{…}}            (+ "token" only with --keep-token)
// `hook` and `payload` are spliced from the received bytes rather than re-serialized: it is
// faster, and a consumer sees exactly what Tiledesk sent (key order, number spelling).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tdhook/event.hpp"

namespace tdhook::receiver {

struct RecordOptions {
  std::string_view delivery_id;
  std::int64_t received_at_ms = 0;
  std::string_view verified;  // Verification::describe(), or "none" under --no-verify
  bool keep_token = false;
};

std::string build_record(const Event& event, const RecordOptions& options);

// hook._id, timestamp and a 128-bit fingerprint (SipHash-2-4) of the exact payload bytes:
// Tiledesk's retries are byte-identical, and two occurrences never share all three.
std::string dedup_key(const Event& event);

// A UUID v7: the time in milliseconds, then 74 random bits (OpenSSL CSPRNG).
std::string new_delivery_id();

// 2024-02-05T14:21:07.512Z
std::string format_iso8601_ms(std::int64_t ms_since_epoch);

// The request as Tiledesk sent it, for forward: sinks (and the inspector's raw download): the
// header fields a Tiledesk-verifying app reads, as received (name case kept), then the exact
// body bytes. Stored as "Name: value\r\n"... "\r\n" body.
inline constexpr std::string_view kForwardedHeaders[] = {"Content-Type", "x-hook-secret",
                                                         "User-Agent", "Origin"};
std::string build_original(const std::vector<std::pair<std::string, std::string>>& fields,
                           std::string_view body);
struct OriginalRequest {
  std::vector<std::pair<std::string_view, std::string_view>> headers;  // in stored order
  std::string_view body;
};
// nullopt when `text` is not what build_original() makes (empty included).
std::optional<OriginalRequest> parse_original(std::string_view text);

// Milliseconds since the Unix epoch, from the system clock.
std::int64_t now_ms() noexcept;

}  // namespace tdhook::receiver
