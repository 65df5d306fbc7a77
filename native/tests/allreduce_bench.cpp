// Times the process group's all-reduce on host memory, the path a CPU
// model's gradients take (no JavaScript in the loop). Started once per rank
// by `spatialthinker launch` (bench/distributed.ts): reads RANK, WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT; rank 0 prints one JSON line per payload size:
//   {"bytes": B, "iterations": K, "seconds": mean seconds per all-reduce}
// Arguments: payload sizes in bytes (multiples of 4).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/process_group.h"

using namespace st::dist;

static int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v) throw std::runtime_error(std::string(name) + " is not set (start this under spatialthinker launch)");
  return std::atoi(v);
}

int main(int argc, char** argv) {
  try {
    GroupOptions o;
    o.rank = env_int("RANK");
    o.world_size = env_int("WORLD_SIZE");
    o.master_addr = std::getenv("MASTER_ADDR") ? std::getenv("MASTER_ADDR") : "127.0.0.1";
    o.master_port = env_int("MASTER_PORT");
    auto comm = make_process_group(o);
    for (int a = 1; a < argc; ++a) {
      const int64_t bytes = std::atoll(argv[a]);
      const int64_t count = bytes / 4;
      std::vector<float> data(size_t(count), 1.0f);
      comm->all_reduce(data.data(), count, ReduceOp::Sum);  // warm-up: connections, pages
      // Enough iterations for about half a second, agreed by every rank
      // (rank 0's estimate, broadcast) so that all make the same calls.
      auto start = std::chrono::steady_clock::now();
      comm->all_reduce(data.data(), count, ReduceOp::Sum);
      float iterations = float(std::max<int64_t>(
          3, int64_t(0.5 / std::max(1e-6, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()))));
      if (iterations > 2000) iterations = 2000;
      comm->broadcast(&iterations, 1, 0);
      comm->barrier();
      start = std::chrono::steady_clock::now();
      for (int i = 0; i < int(iterations); ++i) comm->all_reduce(data.data(), count, ReduceOp::Sum);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iterations;
      if (o.rank == 0) {
        std::printf("{\"bytes\": %lld, \"iterations\": %d, \"seconds\": %.9g}\n", (long long)bytes, int(iterations), seconds);
        std::fflush(stdout);
      }
    }
    comm->barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "allreduce_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
