#pragma once
// A process group's membership: rank 0 hosts the store, every rank connects
// to it, announces itself and waits for the others. It outlives the
// collectives' transport so that a failed collective can tell which ranks
// never reached it, and so that rank 0 keeps the store up until every rank
// has left.
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
  // Rank 0 waits (within the timeout) for the other ranks to leave before it
  // stops the store, unless the group failed.
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

  // No clean exit to wait for: the group failed.
  void mark_failed() { failed_ = true; }

 private:
  GroupOptions options_;
  std::unique_ptr<TcpStoreServer> server_;  // rank 0 only
  std::unique_ptr<TcpStoreClient> client_;
  bool failed_ = false;
};

// "ranks 1, 3" / "rank 2"
std::string rank_list(const std::vector<int>& ranks);
// "3 s", "2.5 s"
std::string seconds(std::chrono::milliseconds ms);

}  // namespace st::dist
