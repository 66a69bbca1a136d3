#pragma once
// The inspector's page: receiver/inspect/web/*, built into the binary by
// receiver/inspect/embed.cmake (a generated inspect_assets.cpp in the build tree).

#include <string_view>

namespace tdhook::receiver::inspect::assets {

std::string_view index_html() noexcept;
std::string_view app_js() noexcept;
std::string_view style_css() noexcept;
std::string_view login_html() noexcept;

}  // namespace tdhook::receiver::inspect::assets
