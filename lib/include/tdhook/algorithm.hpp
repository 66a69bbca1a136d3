#pragma once
// JWS algorithms that libtdhook signs and verifies. Tiledesk signs subscription tokens with
// HS256 (key = the subscription secret text); global subscriptions may use any of these with a
// key configured on the Tiledesk server. `none` is not an Algorithm: it never verifies.

#include <optional>
#include <string_view>

namespace tdhook {

enum class Algorithm { hs256, rs256, rs384, rs512, es256, es384, ps256 };

// "HS256", "RS256", ... exactly as they appear in a JWT header.
std::string_view to_string(Algorithm alg) noexcept;

// Parses the exact, case-sensitive JWT name ("HS256"); nullopt for anything else, including
// "none", "hs256" and names with spaces.
std::optional<Algorithm> algorithm_from_string(std::string_view name) noexcept;

}  // namespace tdhook
