#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "delivery/sink.hpp"

namespace tdhook::receiver {
namespace {

// Two stdout sinks (different filters) share fd 1: a record larger than PIPE_BUF would otherwise
// interleave with the other sink's line.
std::mutex& fd_write_mutex() {
  static std::mutex mu;
  return mu;
}

class StdoutSink final : public Sink {
 public:
  explicit StdoutSink(int fd) : fd_(fd) {}

  std::size_t batch_limit() const noexcept override { return kStdoutBatch; }

  std::vector<DeliveryOutcome> deliver(const std::vector<Delivery>& batch) override {
    std::vector<DeliveryOutcome> outcomes;
    outcomes.reserve(batch.size());
    for (const auto& d : batch) {
      line_.assign(d.record);
      line_ += '\n';
      const std::lock_guard lock(fd_write_mutex());
      if (write_fully(fd_, line_)) {
        outcomes.push_back({true, {}});
      } else {
        outcomes.push_back({false, std::string("write to stdout: ") + std::strerror(errno)});
      }
    }
    return outcomes;
  }

 private:
  int fd_;
  std::string line_;
};

}  // namespace

bool write_fully(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        // Someone made the shared fd non-blocking (a shell pipeline can): wait for room.
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, -1) >= 0 || errno == EINTR) continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::unique_ptr<Sink> make_stdout_sink(int fd) { return std::make_unique<StdoutSink>(fd); }

}  // namespace tdhook::receiver
