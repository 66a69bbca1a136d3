#pragma once
// Client-side helpers for the receiver's end-to-end tests: sample events signed as Tiledesk
// signs them, posting, raw HTTP over a socket, NDJSON parsing.
#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "support/files.hpp"

namespace tdhook::test {

using OrderedJson = nlohmann::ordered_json;

inline constexpr const char* receiver_secret = "5f1b0f3e-8c2a-4d6b-9e7f-1a2b3c4d5e6f";

// The notification samples (samples/events/*.json, without the reply sample), sorted.
std::vector<std::string> sample_event_names();
OrderedJson load_sample(const std::string& name);  // "lead.create"

// The body Tiledesk would send for `payload`/`hook` at `timestamp_ms`, signed with `secret`.
std::string sign_body(const OrderedJson& payload, const OrderedJson& hook,
                      const std::string& secret, std::int64_t timestamp_ms);
std::string sign_sample(const std::string& name, const std::string& secret,
                        std::int64_t timestamp_ms);

std::int64_t epoch_ms();

// A lead.create notification whose payload carries `seq`, so that each one is a distinct
// occurrence that can be found in a sink. `pad` bytes of padding make records that large.
std::string numbered_event(int seq, std::int64_t timestamp_ms, std::size_t pad = 0);

// POST with Tiledesk's headers; `secret` empty = no x-hook-secret header.
httplib::Result post_event(httplib::Client& client, const std::string& path,
                           const std::string& body, const std::string& secret,
                           const std::string& content_type = "application/json");

struct RawResponse {
  int status = 0;  // 0: no response
  std::string text;
  std::chrono::milliseconds elapsed{0};
};
// Writes `request` on a new connection to 127.0.0.1:port and reads until the response headers
// (and Content-Length bytes of body) arrived, EOF or `timeout`.
RawResponse raw_exchange(int port, const std::string& request,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5));

// GET /metrics of the receiver on 127.0.0.1:port ("" when it does not answer).
std::string get_metrics(int port);
// A series' value on a /metrics page (`series` with its labels, as printed); nullopt when the
// page has no such series.
std::optional<long long> metric(const std::string& text, const std::string& series);

std::vector<nlohmann::json> parse_ndjson(const std::string& text);
std::size_t count_lines_in(const std::filesystem::path& file);  // 0 if missing
std::string read_if_exists(const std::filesystem::path& file);  // "" if missing

// The usual receiver arguments: loopback port 0, data dir and secret file in `dir`.
std::vector<std::string> receiver_args(const TempDir& dir);

}  // namespace tdhook::test
