#pragma once
// What the inspector's API answers, built from what the recorder kept and what the store holds:
// summaries for the list, a request's detail (headers with the secret masked, the body, the
// token decoded, the verification checks with the first failing one explained), the raw request.
//
// Never in any answer: the x-hook-secret value (nor Authorization, Cookie), the token (the body's
// `token`, the record's with --keep-token) or its signature. Bodies are as the sender made them,
// so every JSON text here is written with invalid UTF-8 replaced, and nested no deeper than
// kMaxJsonDepth before it is parsed.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "inspect/recorder.hpp"
#include "store/store.hpp"

namespace tdhook::receiver::inspect {

using Json = nlohmann::ordered_json;

inline constexpr int kMaxJsonDepth = 128;

// What the inspector says about the receiver's configuration.
struct ViewContext {
  std::string mode = "both";  // --mode: both, header, token
  bool no_verify = false;
  std::int64_t max_age_s = 300;
  std::string events_text;   // --events ("" = all)
  std::string path = "/";    // --path
  std::string receiver_url;  // where the copy commands send: http://127.0.0.1:8080/
  std::string secret_file;   // the first --secret-file, for the copy commands ("" = none)
};

// JSON text that never throws: invalid UTF-8 is replaced.
std::string dump(const Json& value, int indent = -1);

// stored, duplicate, filtered, no_sink, or refused.
std::string_view outcome_of(int status, std::string_view reason) noexcept;

// "(hidden, 36 characters)"
std::string masked(std::string_view value);
bool is_sensitive_header(std::string_view name) noexcept;

// Whether `text` nests arrays and objects no deeper than `max_depth` (strings skipped).
bool json_depth_within(std::string_view text, int max_depth) noexcept;
// The body with its top-level "token" string replaced by masked(token); as is otherwise.
std::string body_without_token(std::string_view body);

// The event and project of a request: the verified ones, or for a refused request what its body
// claims (bodies up to 64 KiB are read).
struct EventNames {
  std::string event, project_id;
  bool claimed = false;  // read from a body that was not verified
};
EventNames names_of(const KeptRequest& request);

// A kept request's summary: the list's row and the Server-Sent Events' data.
Json summary(const Snapshot& snapshot);
// The summary of a stored event no longer kept in memory: its rows of Store::list.
Json store_summary(const std::vector<DeliveryInfo>& rows);

// A request's detail: `snapshot` when kept, `stored` when the store has its event.
Json detail(const Snapshot* snapshot, const Details* stored, std::string_view store_error,
            const ViewContext& context);

// The request as received, as HTTP/1.1 text (the secret and the token masked).
std::string raw_request(const Kept& kept);
// The same from a stored original (forward: sinks keep it); nullopt when there is none.
std::optional<std::string> raw_original(const std::string& original, std::string_view path);

}  // namespace tdhook::receiver::inspect
