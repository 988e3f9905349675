#pragma once
// Reading one sample out of a Prometheus text exposition, for the monitoring tests.

#include <cmath>
#include <sstream>
#include <string>

namespace kvserve::testing {

/// The value of the sample line `series` (name plus labels exactly as rendered), or NaN.
inline double sample(const std::string& text, const std::string& series) {
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nan("");
}

}  // namespace kvserve::testing
