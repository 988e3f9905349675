#pragma once
// Locates the default model for tests: KVSERVE_SOURCE_DIR/models (CI fetches it during setup).

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "model/model_loader.hpp"

namespace kvserve::testing_support {

inline std::string default_model_path() {
  return std::string(KVSERVE_SOURCE_DIR) + "/models/" + std::string(kDefaultModelFileName);
}

}  // namespace kvserve::testing_support

/// Fails the test (not skips: CI must have the model) when the default model is missing.
#define KVSERVE_REQUIRE_DEFAULT_MODEL(path_var)                                       \
  const std::string path_var = ::kvserve::testing_support::default_model_path();      \
  if (!std::filesystem::exists(path_var)) {                                           \
    FAIL() << "default model missing at " << path_var << ": run scripts/fetch_model"; \
  }
