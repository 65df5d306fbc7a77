// The rendezvous store's wire protocol: every message is a 4-byte length and
// a payload; a payload is a one-byte operation and its fields, strings as a
// 4-byte length and bytes, integers little-endian as the hosts are.
#include "distributed/tcp_store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace st::dist {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kSet = 'S', kGet = 'G', kAdd = 'A', kWait = 'W', kSetAndWait = 'J';
constexpr char kOk = 'K', kTimedOut = 'T';
// Replies to a waiting request may come as late as its own timeout; the
// connection is given this much more before the store counts as gone.
constexpr Milliseconds kReplySlack{10000};
// Set and add are answered at once.
constexpr Milliseconds kImmediateReply{30000};
// How long a stopping server gives its waiting requests to answer.
constexpr Milliseconds kDrainReplies{2000};
// No key or value the rendezvous exchanges comes near this; a larger length
// is a stray connection speaking something else.
constexpr uint32_t kMaxMessageBytes = 64u << 20;

std::string errno_text() { return std::strerror(errno); }

std::string seconds_text(Milliseconds ms) {
  const double s = double(ms.count()) / 1000.0;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, s == double(int64_t(s)) ? "%.0f" : "%.1f", s);
  return buffer;
}

class Writer {
 public:
  explicit Writer(char op) { bytes_.push_back(op); }
  Writer& str(const std::string& s) {
    u32(uint32_t(s.size()));
    bytes_ += s;
    return *this;
  }
  Writer& u32(uint32_t v) { return raw(&v, sizeof v); }
  Writer& i64(int64_t v) { return raw(&v, sizeof v); }
  const std::string& bytes() const { return bytes_; }

 private:
  Writer& raw(const void* p, size_t n) {
    bytes_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string bytes_;
};

class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}
  char op() { return take(1)[0]; }
  std::string str() {
    const uint32_t n = u32();
    return take(n);
  }
  uint32_t u32() { return pod<uint32_t>(); }
  int64_t i64() { return pod<int64_t>(); }

 private:
  template <typename T>
  T pod() {
    T v;
    std::memcpy(&v, take(sizeof v).data(), sizeof v);
    return v;
  }
  std::string take(size_t n) {
    if (n > bytes_.size() - at_) throw std::runtime_error("rendezvous store: truncated message");
    std::string s = bytes_.substr(at_, n);
    at_ += n;
    return s;
  }
  const std::string& bytes_;
  size_t at_ = 0;
};

// Sends all of `bytes`; false when the peer is gone.
bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += size_t(n);
  }
  return true;
}

bool send_frame(int fd, const std::string& payload) {
  const uint32_t n = uint32_t(payload.size());
  return send_all(fd, std::string(reinterpret_cast<const char*>(&n), sizeof n) + payload);
}

enum class ReadResult { Ok, Closed, TimedOut };

// Reads exactly n bytes before `deadline` (none: wait as long as it takes).
ReadResult read_exact(int fd, char* out, size_t n, const Clock::time_point* deadline) {
  size_t got = 0;
  while (got < n) {
    if (deadline) {
      const auto left = std::chrono::duration_cast<Milliseconds>(*deadline - Clock::now()).count();
      if (left <= 0) return ReadResult::TimedOut;
      pollfd p{fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, int(std::min<int64_t>(left, 1 << 30)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) return ReadResult::TimedOut;
      if (ready < 0) return ReadResult::Closed;
    }
    const ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return ReadResult::Closed;
    got += size_t(r);
  }
  return ReadResult::Ok;
}

ReadResult read_frame(int fd, std::string& payload, const Clock::time_point* deadline) {
  uint32_t n = 0;
  ReadResult r = read_exact(fd, reinterpret_cast<char*>(&n), sizeof n, deadline);
  if (r != ReadResult::Ok) return r;
  if (n > kMaxMessageBytes) return ReadResult::Closed;
  payload.assign(n, '\0');
  return read_exact(fd, payload.data(), n, deadline);
}

// The IPv4 addresses host resolves to (the rendezvous runs over IPv4, as
// MASTER_ADDR is in practice).
std::vector<sockaddr_in> resolve(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) throw std::runtime_error("cannot resolve the rendezvous host \"" + host + "\": " + gai_strerror(rc));
  std::vector<sockaddr_in> out;
  for (addrinfo* a = found; a; a = a->ai_next) out.push_back(*reinterpret_cast<sockaddr_in*>(a->ai_addr));
  ::freeaddrinfo(found);
  if (out.empty()) throw std::runtime_error("cannot resolve the rendezvous host \"" + host + "\": no IPv4 address");
  return out;
}

}  // namespace

// ------------------------------------------------------------------ server

TcpStoreServer::TcpStoreServer(const std::string& host, int port) {
  const std::string where = host + ":" + std::to_string(port);
  sockaddr_in address = resolve(host, port).front();
  // A loopback MASTER_ADDR (127.x.y.z, localhost) keeps the store on this
  // machine; any other listens on every interface, as torchrun's store does:
  // a host name may resolve here to an address the other nodes cannot reach
  // (Debian maps the machine's own name to 127.0.1.1).
  in_addr literal{};
  const bool loopback = host == "localhost" || (::inet_pton(AF_INET, host.c_str(), &literal) == 1 && (ntohl(literal.s_addr) >> 24) == 127);
  if (!loopback) address.sin_addr.s_addr = htonl(INADDR_ANY);
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("rank 0 cannot open a socket for the rendezvous store: " + errno_text());
  const int yes = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(listen_fd_, 1024) != 0) {
    const std::string reason = errno_text();
    ::close(listen_fd_);
    throw std::runtime_error("rank 0 cannot host the rendezvous store at " + where + ": " + reason +
                             " (is another job using MASTER_PORT " + std::to_string(port) + "?)");
  }
  socklen_t length = sizeof address;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(address.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  ::shutdown(listen_fd_, SHUT_RDWR);
  std::vector<std::thread> handlers;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    stopping_ = true;
    changed_.notify_all();
    // The waiting requests answer as soon as they see stopping_; a reply is
    // one small send, so this is short unless a peer stopped reading.
    changed_.wait_for(lock, kDrainReplies, [&] { return waiting_ == 0; });
    for (int fd : connections_)
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    handlers.swap(handlers_);
  }
  for (std::thread& t : handlers) t.join();
  for (int fd : connections_)
    if (fd >= 0) ::close(fd);
  ::close(listen_fd_);
}

void TcpStoreServer::accept_loop() {
  while (!stopping_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    const int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    connections_.push_back(fd);
    handlers_.emplace_back([this, fd] { serve(fd); });
  }
}

void TcpStoreServer::serve(int fd) {
  std::string payload;
  while (!stopping_ && read_frame(fd, payload, nullptr) == ReadResult::Ok) {
    std::string reply;
    // A waiting request counts in waiting_ until its reply is sent.
    bool counted = false;
    auto uncount = [&] {
      if (!counted) return;
      std::lock_guard<std::mutex> lock(mutex_);
      --waiting_;
      changed_.notify_all();
    };
    try {
      Reader in(payload);
      const char op = in.op();
      std::unique_lock<std::mutex> lock(mutex_);
      if (op == kSet) {
        std::string key = in.str();
        values_[key] = in.str();
        changed_.notify_all();
        reply = Writer(kOk).bytes();
      } else if (op == kAdd) {
        const std::string key = in.str();
        const int64_t delta = in.i64();
        auto it = values_.find(key);
        const int64_t value = (it == values_.end() ? 0 : std::stoll(it->second)) + delta;
        values_[key] = std::to_string(value);
        changed_.notify_all();
        reply = Writer(kOk).i64(value).bytes();
      } else if (op == kGet) {
        const auto deadline = Clock::now() + Milliseconds(in.i64());
        const std::string key = in.str();
        ++waiting_;
        counted = true;
        changed_.wait_until(lock, deadline, [&] { return stopping_ || values_.count(key) > 0; });
        reply = values_.count(key) ? Writer(kOk).str(values_[key]).bytes() : Writer(kTimedOut).bytes();
      } else if (op == kWait || op == kSetAndWait) {
        if (op == kSetAndWait) {
          std::string key = in.str();
          values_[key] = in.str();
          changed_.notify_all();
        }
        const auto deadline = Clock::now() + Milliseconds(in.i64());
        std::vector<std::string> keys(in.u32());
        for (std::string& k : keys) k = in.str();
        auto all_set = [&] {
          for (const std::string& k : keys)
            if (!values_.count(k)) return false;
          return true;
        };
        ++waiting_;
        counted = true;
        changed_.wait_until(lock, deadline, [&] { return stopping_ || all_set(); });
        std::vector<std::string> missing;
        for (const std::string& k : keys)
          if (!values_.count(k)) missing.push_back(k);
        Writer out(kOk);
        out.u32(uint32_t(missing.size()));
        for (const std::string& k : missing) out.str(k);
        reply = out.bytes();
      } else {
        break;  // not our protocol: drop the connection
      }
    } catch (const std::exception&) {
      uncount();
      break;
    }
    const bool sent = send_frame(fd, reply);
    uncount();
    if (!sent) break;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (int& c : connections_)
    if (c == fd) {
      ::close(fd);
      c = -1;
    }
}

// ------------------------------------------------------------------ client

TcpStoreClient::TcpStoreClient(const std::string& host, int port, Milliseconds timeout)
    : address_(host + ":" + std::to_string(port)) {
  const auto deadline = Clock::now() + timeout;
  std::string last_error = "no attempt";
  while (true) {
    for (sockaddr_in address : resolve(host, port)) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw std::runtime_error("cannot open a socket to the rendezvous store: " + errno_text());
      if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
        const int yes = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        sockaddr_in local{};
        socklen_t length = sizeof local;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
        char text[INET_ADDRSTRLEN] = {0};
        ::inet_ntop(AF_INET, &local.sin_addr, text, sizeof text);
        local_host_ = text;
        fd_ = fd;
        return;
      }
      last_error = errno_text();
      ::close(fd);
    }
    if (Clock::now() >= deadline)
      throw std::runtime_error("could not reach the rendezvous store at " + address_ + " within " +
                               seconds_text(timeout) + " s: " + last_error + " (is rank 0 running, and MASTER_ADDR/MASTER_PORT the same on every rank?)");
    std::this_thread::sleep_for(Milliseconds(50));
  }
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string TcpStoreClient::request(const std::string& message, Milliseconds reply_within) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0) throw std::runtime_error("the rendezvous store at " + address_ + " went away earlier (rank 0 ended?)");
  const auto deadline = Clock::now() + reply_within;
  std::string reply;
  ReadResult r = send_frame(fd_, message) ? read_frame(fd_, reply, &deadline) : ReadResult::Closed;
  if (r == ReadResult::Ok) return reply;
  ::close(fd_);
  fd_ = -1;
  throw std::runtime_error(r == ReadResult::Closed
                               ? "lost the connection to the rendezvous store at " + address_ + " (rank 0 ended?)"
                               : "the rendezvous store at " + address_ + " did not answer within " +
                                     seconds_text(reply_within) + " s");
}

void TcpStoreClient::set(const std::string& key, const std::string& value) {
  request(Writer(kSet).str(key).str(value).bytes(), kImmediateReply);
}

std::string TcpStoreClient::get(const std::string& key, Milliseconds timeout) {
  const std::string reply = request(Writer(kGet).i64(timeout.count()).str(key).bytes(), timeout + kReplySlack);
  Reader in(reply);
  if (in.op() != kOk)
    throw std::runtime_error("rendezvous at " + address_ + " timed out after " + seconds_text(timeout) +
                             " s waiting for key \"" + key + "\"");
  return in.str();
}

int64_t TcpStoreClient::add(const std::string& key, int64_t delta) {
  const std::string reply = request(Writer(kAdd).str(key).i64(delta).bytes(), kImmediateReply);
  Reader in(reply);
  in.op();
  return in.i64();
}

namespace {

std::string wait_message(Writer out, const std::vector<std::string>& keys, Milliseconds timeout) {
  out.i64(timeout.count()).u32(uint32_t(keys.size()));
  for (const std::string& k : keys) out.str(k);
  return out.bytes();
}

std::vector<std::string> missing_keys(const std::string& reply) {
  Reader in(reply);
  in.op();
  std::vector<std::string> missing(in.u32());
  for (std::string& k : missing) k = in.str();
  return missing;
}

}  // namespace

std::vector<std::string> TcpStoreClient::wait(const std::vector<std::string>& keys, Milliseconds timeout) {
  return missing_keys(request(wait_message(Writer(kWait), keys, timeout), timeout + kReplySlack));
}

std::vector<std::string> TcpStoreClient::set_and_wait(const std::string& key, const std::string& value,
                                                      const std::vector<std::string>& keys, Milliseconds timeout) {
  Writer head(kSetAndWait);
  head.str(key).str(value);
  return missing_keys(request(wait_message(head, keys, timeout), timeout + kReplySlack));
}

}  // namespace st::dist
