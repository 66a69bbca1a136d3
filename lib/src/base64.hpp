#pragma once
// Strict base64url (RFC 4648 §5) without padding, as JWS compact serialization uses it.
#include <optional>
#include <string>
#include <string_view>

namespace tdhook::detail {

std::string base64url_encode(std::string_view bytes);
// Rejects '=', '+', '/', whitespace, a length of 4k+1, and non-zero trailing bits.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace tdhook::detail
