#include "http/transport.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace tdhook::receiver {

IoResult PlainTransport::read(char* buf, std::size_t size) {
  while (true) {
    const auto n = ::recv(fd_, buf, size, 0);
    if (n > 0) return {IoStatus::done, static_cast<std::size_t>(n)};
    if (n == 0) return {IoStatus::closed, 0};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoStatus::want_read, 0};
    return {IoStatus::failed, 0};
  }
}

IoResult PlainTransport::write(const char* data, std::size_t size) {
  while (true) {
    const auto n = ::send(fd_, data, size, MSG_NOSIGNAL);
    if (n >= 0) return {IoStatus::done, static_cast<std::size_t>(n)};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoStatus::want_write, 0};
    return {IoStatus::failed, 0};
  }
}

void PlainTransport::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

}  // namespace tdhook::receiver
