#include "bench/serve/progress_bar.hpp"

#include <unistd.h>

#include <algorithm>

namespace kvserve::bench {

progress_bar::progress_bar(int total, bool enabled, std::FILE* out)
    : total_(std::max(total, 1)),
      enabled_(enabled),
      tty_(enabled && isatty(fileno(out)) != 0),
      out_(out) {}

std::string progress_bar::render(int done, int total, int failed, double elapsed_s, int width) {
  total = std::max(total, 1);
  done = std::clamp(done, 0, total);
  int filled = static_cast<int>(static_cast<long long>(done) * width / total);
  std::string bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(width - filled), ' ') + "] ";
  char tail[96];
  if (failed > 0) {
    std::snprintf(tail, sizeof tail, "%d/%d (%d failed) %.1fs", done, total, failed, elapsed_s);
  } else {
    std::snprintf(tail, sizeof tail, "%d/%d %.1fs", done, total, elapsed_s);
  }
  return bar + tail;
}

void progress_bar::update(int done, int failed, double elapsed_s) {
  if (!enabled_) return;
  if (tty_) {
    // At most ten redraws a second, and always the last one.
    if (done < total_ && last_draw_s_ >= 0 && elapsed_s - last_draw_s_ < 0.1) return;
    last_draw_s_ = elapsed_s;
    std::fprintf(out_, "\r%s", render(done, total_, failed, elapsed_s, 40).c_str());
    drawn_ = true;
  } else {
    int decile = static_cast<int>(static_cast<long long>(done) * 10 / total_);
    if (decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(out_, "%s\n", render(done, total_, failed, elapsed_s, 20).c_str());
  }
  std::fflush(out_);
}

void progress_bar::finish() {
  if (enabled_ && tty_ && drawn_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  drawn_ = false;
}

}  // namespace kvserve::bench
