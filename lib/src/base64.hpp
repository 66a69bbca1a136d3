#pragma once
// Strict base64url (RFC 4648 §5) without padding, as JWS compact serialization uses it.
#include <optional>
#include <string>
#include <string_view>

namespace tdhook::detail {

std::string base64url_encode(std::string_view bytes);
// Rejects '=', '+', '/', whitespace, a length of 4k+1, and non-zero trailing bits.
std::optional<std::string> base64url_decode(std::string_view text);
// The same into `out` (its capacity reused); false, with `out` unspecified, where the above
// gives nullopt.
bool base64url_decode_into(std::string_view text, std::string& out);

}  // namespace tdhook::detail
