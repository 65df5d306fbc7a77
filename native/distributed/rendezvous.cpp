#include "distributed/rendezvous.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace st::dist {

std::string seconds(std::chrono::milliseconds ms) {
  const double s = double(ms.count()) / 1000.0;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, s == double(int64_t(s)) ? "%.0f s" : "%.1f s", s);
  return buffer;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

namespace {

std::vector<std::string> rank_keys(const std::string& phase, int world_size) {
  std::vector<std::string> keys;
  for (int r = 0; r < world_size; ++r) keys.push_back(phase + "/" + std::to_string(r));
  return keys;
}

std::vector<int> ranks_of(const std::vector<std::string>& keys) {
  std::vector<int> ranks;
  for (const std::string& k : keys) ranks.push_back(std::stoi(k.substr(k.rfind('/') + 1)));
  std::sort(ranks.begin(), ranks.end());
  return ranks;
}

// How long a rank whose collective failed waits for the others to say they
// reached it too: the others' own timeouts run out at about the same time
// (they entered the collective at about the same time), so a short grace
// tells a rank that never arrived from one that failed with us.
std::chrono::milliseconds absence_grace(std::chrono::milliseconds timeout) {
  return std::min(std::chrono::milliseconds(2000), timeout / 4);
}

}  // namespace

Rendezvous::Rendezvous(const GroupOptions& options) : options_(options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw std::runtime_error("process group: rank " + std::to_string(options.rank) + " is not in a world of " +
                             std::to_string(options.world_size));
  if (options.master_port < 0 || options.master_port > 65535)
    throw std::runtime_error("process group: master port " + std::to_string(options.master_port) + " is not a TCP port");
  if (options.rank == 0) server_ = std::make_unique<TcpStoreServer>(options.master_addr, options.master_port);
  const int port = server_ ? server_->port() : options.master_port;
  options_.master_port = port;
  try {
    client_ = std::make_unique<TcpStoreClient>(options.master_addr, port, options.timeout);
  } catch (const std::exception& e) {
    throw std::runtime_error("rendezvous: rank " + std::to_string(options.rank) + " of " +
                             std::to_string(options.world_size) + " " + e.what());
  }
  arrive("arrived");
}

Rendezvous::~Rendezvous() {
  client_.reset();
  server_.reset();  // answers the requests still waiting first (TcpStoreServer)
}

std::string Rendezvous::where() const { return options_.master_addr + ":" + std::to_string(options_.master_port); }

void Rendezvous::arrive(const std::string& phase) {
  const std::vector<std::string> missing =
      client_->set_and_wait(phase + "/" + std::to_string(options_.rank), "", rank_keys(phase, options_.world_size), options_.timeout);
  if (missing.empty()) return;
  throw std::runtime_error("rendezvous at " + where() + " timed out after " + seconds(options_.timeout) + ": " +
                           rank_list(ranks_of(missing)) + " of " + std::to_string(options_.world_size) +
                           " did not arrive" + (phase == "arrived" ? "" : " (at " + phase + ")"));
}

std::string Rendezvous::ranks_absent_from(const std::string& collective, uint64_t sequence) {
  const std::string phase = "reached/" + std::to_string(sequence);
  try {
    const std::vector<std::string> missing = client_->set_and_wait(
        phase + "/" + std::to_string(options_.rank), "", rank_keys(phase, options_.world_size), absence_grace(options_.timeout));
    if (missing.empty()) return "";
    const std::vector<int> ranks = ranks_of(missing);
    return rank_list(ranks) + (ranks.size() == 1 ? " did not reach " : " did not reach ") + collective;
  } catch (const std::exception&) {
    return options_.rank == 0 ? "" : "the rendezvous store on rank 0 is gone (rank 0 ended?)";
  }
}

}  // namespace st::dist
