#pragma once
/// A progress bar on stderr for long runs: redrawn in place on a terminal, a line every 10%
/// otherwise (logs stay readable). Not thread-safe: the benchmark drives it from one thread.

#include <cstdio>
#include <string>

namespace kvserve::bench {

class progress_bar {
 public:
  /// `enabled` false: prints nothing.
  progress_bar(int total, bool enabled, std::FILE* out = stderr);
  /// Records `done` finished requests (of which `failed` failed) at time `elapsed_s`.
  void update(int done, int failed, double elapsed_s);
  /// Ends the bar's line.
  void finish();

  /// The text of the bar, e.g. "[#####     ] 50/100 (2 failed) 12.3s"; pure, for tests.
  static std::string render(int done, int total, int failed, double elapsed_s, int width);

 private:
  int total_;
  bool enabled_;
  bool tty_;
  std::FILE* out_;
  int last_decile_ = -1;
  double last_draw_s_ = -1;
  bool drawn_ = false;
};

}  // namespace kvserve::bench
