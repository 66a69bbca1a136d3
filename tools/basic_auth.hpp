#pragma once
// Base64 with the standard alphabet and padding (RFC 4648 §4), as HTTP Basic authentication
// (RFC 7617) writes user:password: `tdhook send` and the simulator's deliveries turn a URL's
// userinfo into it (delivery.cpp), the simulator's API reads it (sim_api.cpp). On OpenSSL's
// EVP_EncodeBlock and EVP_DecodeBlock. Tokens use base64url instead: tdhook/token.hpp.

#include <optional>
#include <string>
#include <string_view>

namespace tdhook::tools {

// "user:p@ss" -> "dXNlcjpwQHNz"; padded with '=' to a multiple of 4 characters.
std::string base64_encode(std::string_view bytes);

// The bytes of `text`: nullopt when it is empty, not a multiple of 4 characters long, or not
// base64 as EVP_DecodeBlock reads it.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace tdhook::tools
