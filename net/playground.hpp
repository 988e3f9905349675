#pragma once
/// The playground page served at GET / (net/playground/index.html, embedded at build time).

#include <string_view>

namespace kvserve::net {

/// The page's HTML, with its CSS and JavaScript inline.
std::string_view playground_html();

}  // namespace kvserve::net
