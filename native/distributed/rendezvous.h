#pragma once
// A process group's membership: rank 0 hosts the store, every rank connects
// to it, announces itself and waits for the others. It lives as long as the
// collectives' transport so that a failed collective can tell which ranks
// never reached it. Ending it never waits for the other ranks (it may run in
// a garbage collector's finalizer): a rank that needs rank 0's store after
// rank 0 ended is told that the store is gone.
#include <memory>
#include <string>
#include <vector>

#include "distributed/process_group.h"
#include "distributed/tcp_store.h"

namespace st::dist {

class Rendezvous {
 public:
  // Joins the group: returns once every rank has arrived, else throws
  // "rendezvous at HOST:PORT timed out after N s: ranks 1, 3 of 4 did not arrive".
  explicit Rendezvous(const GroupOptions& options);
  ~Rendezvous();
  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;

  TcpStoreClient& store() { return *client_; }
  const GroupOptions& options() const { return options_; }
  // "HOST:PORT"
  std::string where() const;

  // Every rank calls this at the same point: waits until all ranks have set
  // `phase`, else throws the rendezvous timeout naming the missing ranks.
  void arrive(const std::string& phase);

  // After collective number `sequence` failed here: records that this rank
  // reached it and waits briefly for the others to record the same. Returns
  // e.g. "rank 1 did not reach it", or "" when every rank did or the store
  // cannot tell (it is gone).
  std::string ranks_absent_from(const std::string& collective, uint64_t sequence);

 private:
  GroupOptions options_;
  std::unique_ptr<TcpStoreServer> server_;  // rank 0 only
  std::unique_ptr<TcpStoreClient> client_;
};

// "ranks 1, 3" / "rank 2"
std::string rank_list(const std::vector<int>& ranks);
// "3 s", "2.5 s"
std::string seconds(std::chrono::milliseconds ms);

}  // namespace st::dist
