#pragma once
// Base64 with the standard alphabet and padding (RFC 4648 §4), on OpenSSL's EVP_EncodeBlock and
// EVP_DecodeBlock: HTTP Basic authentication (RFC 7617) in the tools (`tdhook send` and the
// simulator's deliveries write a URL's userinfo with it, the simulator's API reads it), and the
// admin socket's originals that are not UTF-8 (store/admin.cpp). Tokens use base64url instead:
// tdhook/token.hpp.

#include <optional>
#include <string>
#include <string_view>

namespace tdhook::receiver {

// "user:p@ss" -> "dXNlcjpwQHNz"; padded with '=' to a multiple of 4 characters.
std::string base64_encode(std::string_view bytes);

// The bytes of `text`: nullopt when it is empty, not a multiple of 4 characters long, or not
// base64 as EVP_DecodeBlock reads it.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace tdhook::receiver
