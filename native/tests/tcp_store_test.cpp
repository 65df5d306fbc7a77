// Checks of the rendezvous store and the rendezvous itself (native/distributed/),
// run by test/distributed-store.test.ts. Prints "ok NAME" or "FAIL NAME: why"
// per check; exits 1 when any failed.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "distributed/process_group.h"
#include "distributed/rendezvous.h"
#include "distributed/tcp_store.h"

using namespace st::dist;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

int failures = 0;

void check(const std::string& name, const std::function<std::string()>& body) {
  std::string problem;
  try {
    problem = body();
  } catch (const std::exception& e) {
    problem = std::string("threw: ") + e.what();
  }
  if (problem.empty()) {
    std::printf("ok %s\n", name.c_str());
  } else {
    std::printf("FAIL %s: %s\n", name.c_str(), problem.c_str());
    ++failures;
  }
  std::fflush(stdout);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A port nothing listens on right now (the kernel's pick, released).
int free_port() {
  TcpStoreServer probe("127.0.0.1", 0);
  return probe.port();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

int main() {
  check("set, get and add", [] {
    TcpStoreServer server("127.0.0.1", 0);
    TcpStoreClient a("127.0.0.1", server.port(), milliseconds(2000));
    TcpStoreClient b("127.0.0.1", server.port(), milliseconds(2000));
    a.set("key", std::string("v\0w", 3));
    const std::string got = b.get("key", milliseconds(1000));
    if (got != std::string("v\0w", 3)) return "get returned \"" + got + "\"";
    if (a.add("counter", 5) != 5 || b.add("counter", -2) != 3) return std::string("add is not cumulative");
    return std::string();
  });

  check("get waits for a key set later", [] {
    TcpStoreServer server("127.0.0.1", 0);
    TcpStoreClient reader("127.0.0.1", server.port(), milliseconds(2000));
    std::thread writer([port = server.port()] {
      std::this_thread::sleep_for(milliseconds(300));
      TcpStoreClient w("127.0.0.1", port, milliseconds(2000));
      w.set("late", "here");
    });
    const auto start = Clock::now();
    const std::string got = reader.get("late", milliseconds(5000));
    writer.join();
    if (got != "here") return "got \"" + got + "\"";
    if (seconds_since(start) < 0.25) return std::string("get returned before the key was set");
    return std::string();
  });

  check("wait returns the missing keys at its timeout", [] {
    TcpStoreServer server("127.0.0.1", 0);
    TcpStoreClient c("127.0.0.1", server.port(), milliseconds(2000));
    c.set("a", "");
    const auto start = Clock::now();
    const std::vector<std::string> missing = c.wait({"a", "b", "c"}, milliseconds(500));
    const double took = seconds_since(start);
    if (missing != std::vector<std::string>{"b", "c"}) return std::string("missing keys are not b, c");
    if (took < 0.45 || took > 3) return "waited " + std::to_string(took) + " s for a 0.5 s timeout";
    if (!c.wait({"a"}, milliseconds(500)).empty()) return std::string("a key that is set counts as missing");
    return std::string();
  });

  check("get of a key never set fails at its timeout, naming the key", [] {
    TcpStoreServer server("127.0.0.1", 0);
    TcpStoreClient c("127.0.0.1", server.port(), milliseconds(2000));
    const std::string e = error_of([&] { c.get("nccl/unique_id", milliseconds(300)); });
    if (e.find("timed out after 0.3 s") == std::string::npos || e.find("nccl/unique_id") == std::string::npos) return "error: " + e;
    return std::string();
  });

  check("concurrent adds from many clients are exact", [] {
    TcpStoreServer server("127.0.0.1", 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([port = server.port()] {
        TcpStoreClient c("127.0.0.1", port, milliseconds(2000));
        for (int i = 0; i < 100; ++i) c.add("n", 1);
      });
    for (auto& t : threads) t.join();
    TcpStoreClient c("127.0.0.1", server.port(), milliseconds(2000));
    const int64_t n = c.add("n", 0);
    return n == 800 ? std::string() : "800 adds of 1 gave " + std::to_string(n);
  });

  check("a client with no store to reach fails at its timeout, naming the address", [] {
    const int port = free_port();
    const auto start = Clock::now();
    const std::string e = error_of([&] { TcpStoreClient c("127.0.0.1", port, milliseconds(500)); });
    const std::string where = "127.0.0.1:" + std::to_string(port);
    if (e.find("could not reach the rendezvous store at " + where + " within 0.5 s") == std::string::npos) return "error: " + e;
    if (seconds_since(start) > 3) return std::string("took too long");
    return std::string();
  });

  check("a store that goes away ends a waiting client at once", [] {
    auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0);
    TcpStoreClient c("127.0.0.1", server->port(), milliseconds(2000));
    std::thread stopper([&] {
      std::this_thread::sleep_for(milliseconds(200));
      server.reset();
    });
    const auto start = Clock::now();
    std::string e;
    std::vector<std::string> missing;
    try {
      missing = c.wait({"never"}, milliseconds(20000));
    } catch (const std::exception& x) {
      e = x.what();
    }
    stopper.join();
    if (seconds_since(start) > 5) return std::string("the client waited on after the store stopped");
    if (e.empty() && missing.empty()) return std::string("the wait succeeded");
    return std::string();
  });

  check("rendezvous timeout names the ranks that did not arrive", [] {
    const int port = free_port();
    std::vector<std::string> errors(4);
    std::vector<std::thread> ranks;
    for (int r : {0, 2})
      ranks.emplace_back([&, r] {
        GroupOptions o;
        o.rank = r;
        o.world_size = 4;
        o.master_addr = "127.0.0.1";
        o.master_port = port;
        o.timeout = milliseconds(1000);
        errors[size_t(r)] = error_of([&] { Rendezvous join(o); });
      });
    for (auto& t : ranks) t.join();
    const std::string expected = "rendezvous at 127.0.0.1:" + std::to_string(port) + " timed out after 1 s: ranks 1, 3 of 4 did not arrive";
    for (int r : {0, 2})
      if (errors[size_t(r)] != expected) return "rank " + std::to_string(r) + ": \"" + errors[size_t(r)] + "\"";
    return std::string();
  });

  check("rendezvous of a full world returns on every rank", [] {
    const int port = free_port();
    std::atomic<int> joined{0};
    std::vector<std::string> errors(3);
    std::vector<std::thread> ranks;
    for (int r = 0; r < 3; ++r)
      ranks.emplace_back([&, r] {
        // Rank 0 last: the others retry until its store is up.
        if (r != 0) std::this_thread::sleep_for(milliseconds(0));
        else std::this_thread::sleep_for(milliseconds(300));
        GroupOptions o;
        o.rank = r;
        o.world_size = 3;
        o.master_addr = "127.0.0.1";
        o.master_port = port;
        o.timeout = milliseconds(5000);
        errors[size_t(r)] = error_of([&] {
          Rendezvous join(o);
          ++joined;
        });
      });
    for (auto& t : ranks) t.join();
    for (int r = 0; r < 3; ++r)
      if (!errors[size_t(r)].empty()) return "rank " + std::to_string(r) + ": " + errors[size_t(r)];
    return joined == 3 ? std::string() : std::string("not every rank joined");
  });

  check("a second store on a port in use is refused, naming it", [] {
    TcpStoreServer first("127.0.0.1", 0);
    const std::string e = error_of([&] { TcpStoreServer second("127.0.0.1", first.port()); });
    if (e.find("cannot host the rendezvous store at 127.0.0.1:" + std::to_string(first.port())) == std::string::npos) return "error: " + e;
    return std::string();
  });

  check("a world of one needs no store", [] {
    GroupOptions o;
    o.master_port = 1;  // nothing listens there; nothing may try
    auto comm = make_process_group(o);
    float x[2] = {1.5f, -2.0f}, gathered[2] = {0, 0};
    comm->all_reduce(x, 2, ReduceOp::Sum);
    comm->all_gather(x, gathered, 2);
    comm->barrier();
    if (comm->backend_name() != "single" || x[0] != 1.5f || gathered[1] != -2.0f) return std::string("not the identity");
    return std::string();
  });

  return failures == 0 ? 0 : 1;
}
