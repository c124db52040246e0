#include "http_gate.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fundus {

namespace {

using Clock = std::chrono::steady_clock;

// A connection between requests: owned by the gate while its next header arrives, by a worker while
// a request is answered.
struct Conn {
  int fd = -1;
  std::string client;   // peer address, for the per-client cap
  std::string pending;  // bytes of the next request read so far
  Clock::time_point deadline;
  bool partial = false;  // part of a header has arrived
  size_t served = 0;     // requests answered on this connection
};

bool header_complete(const std::string& data) {
  return data.find("\r\n\r\n") != std::string::npos || data.find("\n\n") != std::string::npos;
}

bool wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

std::string numeric_host(const sockaddr_storage& addr, socklen_t len, int* port) {
  char host[NI_MAXHOST] = "", serv[NI_MAXSERV] = "";
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "";
  if (port) *port = std::atoi(serv);
  return host;
}

std::string peer_address(int fd, int* port = nullptr) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  return numeric_host(addr, len, port);
}

// A last answer to a connection the gate gives up on (the caller closes it). Best effort: never blocks.
void send_last_answer(int fd, int status, const char* reason, const char* code, const char* message) {
  std::string body = std::string("{\"error\":{\"code\":\"") + code + "\",\"message\":\"" + message + "\"}}";
  std::string response = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\nConnection: close\r\n\r\n" + body;
  (void)::send(fd, response.data(), response.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  // Unread input would turn close() into a reset that can discard the answer before it is read.
  char scratch[4096];
  for (int i = 0; i < 16 && ::recv(fd, scratch, sizeof scratch, MSG_DONTWAIT) > 0; ++i) {}
}

// httplib::Stream over a connection, starting with the bytes the gate already read. Reads ahead in
// chunks (httplib reads headers a byte at a time); what is left after a request stays buffered.
class GateStream : public httplib::Stream {
 public:
  GateStream(int fd, std::string buffered, int read_ms, int write_ms)
      : fd_(fd), buf_(std::move(buffered)), read_ms_(read_ms), write_ms_(write_ms) {}

  bool is_readable() const override { return off_ < buf_.size() || wait_for(fd_, POLLIN, read_ms_); }
  bool is_writable() const override { return wait_for(fd_, POLLOUT, write_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    if (off_ == buf_.size()) {
      buf_.clear();
      off_ = 0;
      if (!wait_for(fd_, POLLIN, read_ms_)) return -1;
      if (size >= kChunk) return receive(ptr, size);
      buf_.resize(kChunk);
      ssize_t n = receive(buf_.data(), kChunk);
      buf_.resize(n > 0 ? size_t(n) : 0);
      if (n <= 0) return n;
    }
    size_t n = std::min(size, buf_.size() - off_);
    std::memcpy(ptr, buf_.data() + off_, n);
    off_ += n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    for (;;) {
      ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = peer_address(fd_, &port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ip = ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0 ? numeric_host(addr, len, &port) : "";
  }
  socket_t socket() const override { return fd_; }

  /// The bytes read beyond the last request (the start of the next one).
  std::string take_buffered() {
    std::string rest = buf_.substr(off_);
    buf_.clear();
    off_ = 0;
    return rest;
  }
  void put_back(std::string bytes) {
    buf_ = std::move(bytes);
    off_ = 0;
  }

 private:
  static constexpr size_t kChunk = 4096;
  ssize_t receive(char* ptr, size_t size) {
    for (;;) {
      ssize_t n = ::recv(fd_, ptr, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  int fd_;
  std::string buf_;
  size_t off_ = 0;
  int read_ms_, write_ms_;
};

}  // namespace

// httplib's task queue for one listen loop: enqueue() runs the accept loop's job inline (it only
// admits the socket), the gate thread and the workers do the rest.
class GatedHttpServer::Gate : public httplib::TaskQueue {
 public:
  explicit Gate(GatedHttpServer& server) : server_(server), limits_(server.limits_) {
    // Keep 64 descriptors for everything else (the store, the log, images being read).
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY) {
      const rlim_t fit = files.rlim_cur > 80 ? files.rlim_cur - 64 : 16;
      limits_.max_connections = int(std::min<rlim_t>(rlim_t(limits_.max_connections), fit));
    }
    if (::pipe(wake_) != 0) wake_[0] = wake_[1] = -1;
    for (int fd : wake_)
      if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    poller_ = std::thread([this] { poll_loop(); });
    for (int i = 0; i < limits_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  ~Gate() override {
    shutdown();
    for (int fd : wake_)
      if (fd >= 0) ::close(fd);
  }

  void enqueue(std::function<void()> fn) override { fn(); }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ && !poller_.joinable()) return;
      stopping_ = true;
    }
    Gate* self = this;
    server_.gate_.compare_exchange_strong(self, nullptr);  // the accept loop has ended
    wake();
    ready_cv_.notify_all();
    if (poller_.joinable()) poller_.join();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (Conn& c : waiting_) close_locked(c);
    waiting_.clear();
    for (Conn& c : ready_) close_locked(c);
    ready_.clear();
  }

  void admit(int fd) {
    std::string client = peer_address(fd);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    int& from_client = per_client_[client];
    if (open_ >= limits_.max_connections || from_client >= limits_.max_connections_per_client) {
      if (from_client == 0) per_client_.erase(client);
      ++server_.refused_;
      send_last_answer(fd, 503, "Service Unavailable", "too_many_connections",
                       "too many open connections from this client or in all; retry later");
      ::close(fd);
      return;
    }
    ++open_;
    ++from_client;
    Conn c;
    c.fd = fd;
    c.client = std::move(client);
    c.deadline = Clock::now() + std::chrono::milliseconds(limits_.header_timeout_ms);
    waiting_.push_back(std::move(c));
    wake();
  }

 private:
  void wake() {
    if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
  }

  // Caller holds mu_.
  void close_locked(Conn& c) {
    if (c.fd < 0) return;
    ::close(c.fd);
    c.fd = -1;
    --open_;
    auto it = per_client_.find(c.client);
    if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
  }

  void poll_loop() {
    std::vector<pollfd> fds;
    std::vector<char> scratch(16384);
    for (;;) {
      size_t n = 0;
      int timeout_ms = 1000;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) break;
        n = waiting_.size();
        fds.assign(n + 1, pollfd{});
        fds[0] = {wake_[0], POLLIN, 0};
        const auto now = Clock::now();
        for (size_t i = 0; i < n; ++i) {
          fds[i + 1] = {waiting_[i].fd, POLLIN, 0};
          auto left = std::chrono::duration_cast<std::chrono::milliseconds>(waiting_[i].deadline - now).count();
          timeout_ms = int(std::clamp<int64_t>(left + 1, 0, timeout_ms));
        }
      }
      int r = ::poll(fds.data(), nfds_t(n + 1), timeout_ms);
      if (r < 0 && errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (fds[0].revents & POLLIN)
        while (::read(wake_[0], scratch.data(), scratch.size()) > 0) {}
      std::lock_guard<std::mutex> lock(mu_);
      const auto now = Clock::now();
      for (size_t i = 0; i < n; ++i) {
        Conn& c = waiting_[i];
        if (r > 0 && (fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
          ssize_t got = ::recv(c.fd, scratch.data(), scratch.size(), MSG_DONTWAIT);
          if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_locked(c);  // the client went away
            continue;
          }
          if (got > 0) {
            if (!c.partial && c.served > 0)  // a keep-alive connection starts its next request
              c.deadline = now + std::chrono::milliseconds(limits_.header_timeout_ms);
            c.partial = true;
            c.pending.append(scratch.data(), size_t(got));
          }
          if (header_complete(c.pending)) {
            ready_.push_back(std::move(c));
            c.fd = -1;
            ready_cv_.notify_one();
            continue;
          }
          if (c.pending.size() > limits_.max_header_bytes) {
            send_last_answer(c.fd, 431, "Request Header Fields Too Large", "headers_too_large",
                             "request headers too large");
            close_locked(c);
            continue;
          }
        }
        if (now >= c.deadline) {
          if (c.partial) {  // idle ones asked nothing: closed without an answer
            ++server_.timeouts_;
            send_last_answer(c.fd, 408, "Request Timeout", "request_timeout",
                             "the request headers did not arrive in time");
          }
          close_locked(c);
        }
      }
      waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), [](const Conn& c) { return c.fd < 0; }),
                     waiting_.end());
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (Conn& c : waiting_) close_locked(c);  // stopping: nobody is waiting for an answer yet
    waiting_.clear();
  }

  void worker_loop() {
    for (;;) {
      Conn c;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_cv_.wait(lock, [&] { return !ready_.empty() || stopping_; });
        if (ready_.empty()) return;  // stopping, and every request whose header arrived was answered
        c = std::move(ready_.front());
        ready_.pop_front();
      }
      GateStream stream(c.fd, std::move(c.pending), limits_.read_timeout_ms, limits_.write_timeout_ms);
      bool keep = true;
      for (;;) {
        bool stopping = false;
        {
          std::lock_guard<std::mutex> lock(mu_);
          stopping = stopping_;
        }
        try {
          keep = server_.serve_one(stream, c.served, stopping);
        } catch (...) {  // handlers' exceptions are answered inside; this is out of memory or worse
          keep = false;
        }
        if (!keep) break;
        std::string rest = stream.take_buffered();
        if (header_complete(rest)) {  // pipelined: the next request is already here
          stream.put_back(std::move(rest));
          continue;
        }
        c.pending = std::move(rest);
        break;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (!keep || stopping_) {
        close_locked(c);
        continue;
      }
      c.partial = !c.pending.empty();
      c.deadline = Clock::now() +
                   std::chrono::milliseconds(c.partial ? limits_.header_timeout_ms : limits_.keep_alive_timeout_ms);
      waiting_.push_back(std::move(c));
      wake();
    }
  }

  GatedHttpServer& server_;
  GateLimits limits_;
  std::mutex mu_;
  std::condition_variable ready_cv_;
  std::vector<Conn> waiting_;  // between requests, polled by the gate thread
  std::deque<Conn> ready_;     // complete header, waiting for a worker
  std::map<std::string, int> per_client_;
  int open_ = 0;
  bool stopping_ = false;
  int wake_[2] = {-1, -1};
  std::thread poller_;
  std::vector<std::thread> workers_;
};

GatedHttpServer::GatedHttpServer(const GateLimits& limits) : limits_(limits) {
  // httplib sets these on accepted sockets and announces the keep-alive ones in its headers.
  set_read_timeout(limits.read_timeout_ms / 1000, (limits.read_timeout_ms % 1000) * 1000);
  set_write_timeout(limits.write_timeout_ms / 1000, (limits.write_timeout_ms % 1000) * 1000);
  set_keep_alive_timeout(std::max(1, limits.keep_alive_timeout_ms / 1000));
  set_keep_alive_max_count(limits.keep_alive_max_requests);
  new_task_queue = [this] {
    auto* gate = new Gate(*this);
    gate_ = gate;
    return gate;
  };
}

GatedHttpServer::~GatedHttpServer() = default;

void GatedHttpServer::widen_backlog(int backlog) {
  socket_t sock = svr_sock_;
  if (sock != INVALID_SOCKET) ::listen(sock, backlog);
}

bool GatedHttpServer::process_and_close_socket(socket_t sock) {
  Gate* gate = gate_;
  if (!gate) {
    ::close(sock);
    return false;
  }
  gate->admit(sock);
  return true;
}

bool GatedHttpServer::serve_one(httplib::Stream& stream, size_t& served, bool stopping) {
  const bool close_connection = stopping || served + 1 >= limits_.keep_alive_max_requests;
  bool connection_closed = false;
  const bool ok = process_request(stream, close_connection, connection_closed, nullptr);
  ++served;
  return ok && !connection_closed && !close_connection;
}

}  // namespace fundus
