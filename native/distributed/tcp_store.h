#pragma once
// The rendezvous key-value store, as torchrun's c10d TCPStore: rank 0 hosts
// it (TcpStoreServer, a listening thread and one thread per connection), and
// every rank, rank 0 included, talks to it through a TcpStoreClient. Ranks
// exchange their transport addresses and the NCCL unique id through it.
//
// Every call that waits takes a deadline and throws std::runtime_error when
// it passes; a store that goes away (rank 0 ended) is an error at once, never
// a hang.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace st::dist {

using Milliseconds = std::chrono::milliseconds;

class TcpStoreServer {
 public:
  // Listens on host:port (host resolved; port 0 picks a free one, see port());
  // on every interface unless host is a loopback address or localhost.
  // Throws naming the address when it cannot listen.
  TcpStoreServer(const std::string& host, int port);
  // Answers the requests still waiting (their keys as they stand, as at a
  // timeout) before it closes the connections: rank 0 ending its rendezvous
  // early lets the other ranks report which ranks were missing, not only that
  // the store went away.
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  int port() const { return port_; }

 private:
  void accept_loop();
  void serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::map<std::string, std::string> values_;
  std::vector<int> connections_;
  std::vector<std::thread> handlers_;
  int waiting_ = 0;  // requests blocked in get or wait
};

class TcpStoreClient {
 public:
  // Connects to host:port, retrying until `timeout` passes (rank 0 may not
  // be listening yet); then throws "could not reach the rendezvous store at
  // host:port within N s: <reason>".
  TcpStoreClient(const std::string& host, int port, Milliseconds timeout);
  ~TcpStoreClient();
  TcpStoreClient(const TcpStoreClient&) = delete;
  TcpStoreClient& operator=(const TcpStoreClient&) = delete;

  void set(const std::string& key, const std::string& value);
  // Waits for the key to be set, up to `timeout`.
  std::string get(const std::string& key, Milliseconds timeout);
  // Atomically adds delta to the integer stored at key (absent: 0) and
  // returns the new value.
  int64_t add(const std::string& key, int64_t delta);
  // Waits until every key is set; returns the keys still missing when
  // `timeout` passed (empty: all arrived).
  std::vector<std::string> wait(const std::vector<std::string>& keys, Milliseconds timeout);
  // set, then wait, in one request: once any rank's wait is answered, every
  // other rank's request is already in the server, which answers it even
  // when it stops next (rank 0 may end right after the last rendezvous).
  std::vector<std::string> set_and_wait(const std::string& key, const std::string& value,
                                        const std::vector<std::string>& keys, Milliseconds timeout);

  // "host:port", for messages.
  const std::string& address() const { return address_; }
  // The local address of this connection: the interface that routes to the
  // store, which the collectives' transport then listens on.
  const std::string& local_host() const { return local_host_; }

 private:
  std::string request(const std::string& message, Milliseconds reply_within);

  int fd_ = -1;
  std::string address_;
  std::string local_host_;
  std::mutex mutex_;  // one request at a time on the connection
};

}  // namespace st::dist
