#include "net/playground.hpp"

namespace kvserve::net {

namespace {
// Generated from net/playground/index.html by net/embed_file.cmake.
constexpr unsigned char kPlaygroundHtml[] = {
#include "playground_html.inc"
};
}  // namespace

std::string_view playground_html() {
  return {reinterpret_cast<const char*>(kPlaygroundHtml), sizeof(kPlaygroundHtml)};
}

}  // namespace kvserve::net
