#pragma once
// Makes the tiny random HF model folder with scripts/make_tiny_hf_model.py (pure Python, run at
// test time) under a fresh temporary folder.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kvserve::testing_support {

/// Runs the generator; returns the folder, or "" (with a test failure) when it fails.
inline std::string make_tiny_hf_model(const std::string& tag, const std::string& args = "") {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("kvserve_tiny_hf_" + tag + "_" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(dir, ec);
  const std::string cmd = "python3 '" + std::string(KVSERVE_SOURCE_DIR) +
                          "/scripts/make_tiny_hf_model.py' --out '" + dir.string() + "' " + args;
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << "failed: " << cmd;
    return {};
  }
  return dir.string();
}

}  // namespace kvserve::testing_support
