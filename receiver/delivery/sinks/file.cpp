#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "delivery/sink.hpp"

namespace tdhook::receiver {
namespace {

// Rotated files kept beside PATH: PATH.1 (newest) .. PATH.5.
constexpr int rotated_files_kept = 5;

std::string errno_text(std::string_view what) {
  return std::string(what) + ": " + std::strerror(errno);
}

class FileSink final : public Sink {
 public:
  FileSink(std::string path, std::uint64_t max_bytes, bool sync, const Logger& log)
      : path_(std::move(path)), max_bytes_(max_bytes), sync_(sync), log_(log) {}
  ~FileSink() override { close_file(); }
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  // Opens (or reopens) PATH for appending; the error text when it cannot.
  std::string open_file() {
    close_file();
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd_ < 0) return errno_text("open " + path_);
    struct stat st {};
    size_ = fstat(fd_, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    end_torn_line();
    return {};
  }

  // A crash (kill -9, power loss) can leave the file ending in part of a record. That record was
  // not marked delivered and will be written again; the next one must not be glued onto the
  // fragment, so the fragment gets its own (unparseable) line.
  void end_torn_line() {
    if (size_ == 0) return;
    const int rd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (rd < 0) return;
    char last = '\n';
    const bool read_ok = ::pread(rd, &last, 1, static_cast<off_t>(size_ - 1)) == 1;
    ::close(rd);
    if (read_ok && last != '\n' && ::write(fd_, "\n", 1) == 1) {
      ++size_;
      log_.warn("file sink ended in a partial record (a crash); it now ends its line",
                LogFields().add("path", path_));
    }
  }

  std::size_t batch_limit() const noexcept override { return kFileBatch; }

  void request_reopen() noexcept override { reopen_.store(true); }

  std::vector<DeliveryOutcome> deliver(const std::vector<Delivery>& batch) override {
    if (reopen_.exchange(false) || fd_ < 0) {
      if (std::string error = open_file(); !error.empty()) {
        return std::vector<DeliveryOutcome>(batch.size(), DeliveryOutcome{false, error});
      }
      log_.info("file sink opened", LogFields().add("path", path_));
    }
    std::vector<DeliveryOutcome> outcomes;
    outcomes.reserve(batch.size());
    if (max_bytes_ == 0) {
      append_all(batch, outcomes);
    } else {
      for (const auto& d : batch) outcomes.push_back(append(d.record));
    }
    // One sync for the whole batch: nothing is marked delivered before it is on disk.
    const bool any_written = std::any_of(outcomes.begin(), outcomes.end(),
                                         [](const DeliveryOutcome& o) { return o.ok; });
    if (sync_ && any_written && fdatasync(fd_) != 0) {
      const std::string error = errno_text("fdatasync " + path_);
      for (auto& o : outcomes) {
        if (o.ok) o = {false, error};
      }
    }
    return outcomes;
  }

 private:
  // Without rotation: the whole batch in one write.
  void append_all(const std::vector<Delivery>& batch, std::vector<DeliveryOutcome>& outcomes) {
    line_.clear();
    for (const auto& d : batch) {
      line_ += d.record;
      line_ += '\n';
    }
    if (!write_fully(fd_, line_)) {
      const DeliveryOutcome failed{false, errno_text("write " + path_)};
      // Cut the partial batch off, so that the retry does not leave broken lines in the file.
      if (ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        log_.warn("file sink cannot truncate a partial line", LogFields().add("path", path_));
      }
      outcomes.assign(batch.size(), failed);
      return;
    }
    size_ += line_.size();
    outcomes.assign(batch.size(), DeliveryOutcome{true, {}});
  }

  DeliveryOutcome append(const std::string& record) {
    line_.assign(record);
    line_ += '\n';
    if (max_bytes_ > 0 && size_ > 0 && size_ + line_.size() > max_bytes_) rotate();
    if (!write_fully(fd_, line_)) {
      DeliveryOutcome failed{false, errno_text("write " + path_)};
      // Cut a partial line off, so that the retry does not leave a broken line in the file.
      if (ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        log_.warn("file sink cannot truncate a partial line", LogFields().add("path", path_));
      }
      return failed;
    }
    size_ += line_.size();
    return {true, {}};
  }

  // PATH.4 -> PATH.5, ..., PATH -> PATH.1, then a fresh PATH. A failure keeps appending to the
  // current file: an oversized file is better than a lost event.
  void rotate() {
    if (fdatasync(fd_) != 0) return;  // the batch's sync reports the error
    for (int k = rotated_files_kept - 1; k >= 1; --k) {
      const std::string from = path_ + "." + std::to_string(k);
      const std::string to = path_ + "." + std::to_string(k + 1);
      if (std::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
        log_.warn("file sink rotation failed",
                  LogFields().add("path", from).add("error", std::strerror(errno)));
        return;
      }
    }
    if (std::rename(path_.c_str(), (path_ + ".1").c_str()) != 0) {
      log_.warn("file sink rotation failed",
                LogFields().add("path", path_).add("error", std::strerror(errno)));
      return;
    }
    if (std::string error = open_file(); !error.empty()) {
      log_.error("file sink cannot reopen after rotation", LogFields().add("error", error));
    }
  }

  void close_file() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::string path_;
  std::uint64_t max_bytes_;
  bool sync_;
  Logger log_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::string line_;
  std::atomic<bool> reopen_{false};
};

}  // namespace

Result<std::unique_ptr<Sink>> make_file_sink(const std::string& path, std::uint64_t max_bytes,
                                             bool sync, const Logger& log) {
  auto sink = std::make_unique<FileSink>(path, max_bytes, sync, log);
  if (std::string error = sink->open_file(); !error.empty()) {
    return Error{ErrorCode::invalid_config, "file sink: " + error};
  }
  return std::unique_ptr<Sink>(std::move(sink));
}

}  // namespace tdhook::receiver
