#include "distributed/data_parallel.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace st::dist {

ShardSplit split_evenly(int64_t total, int world) {
  if (world < 1) throw std::invalid_argument("split_evenly: world size " + std::to_string(world) + " < 1");
  ShardSplit s;
  s.total = total;
  s.world = world;
  s.shard = (total + world - 1) / world;
  return s;
}

std::vector<FlatPiece> flat_pieces(const std::vector<std::pair<float*, int64_t>>& arrays) {
  std::vector<FlatPiece> out;
  int64_t at = 0;
  for (const auto& [data, size] : arrays) {
    out.push_back({data, at, size});
    at += size;
  }
  return out;
}

void all_reduce_arrays(Backend& backend, Communicator& comm, const std::vector<std::pair<float*, int64_t>>& arrays,
                       int64_t bucket_elements) {
  if (comm.world_size() == 1) return;
  bucket_elements = std::max<int64_t>(bucket_elements, 1);
  DeviceArray bucket;
  std::vector<std::pair<float*, int64_t>> packed;  // the arrays in the bucket now
  int64_t filled = 0;
  auto flush = [&] {
    if (packed.empty()) return;
    comm.all_reduce(bucket.get().f32("all-reduce bucket"), filled, ReduceOp::Sum);
    int64_t at = 0;
    for (const auto& [data, size] : packed) {
      backend.copy(data, bucket.get() + at, size);
      at += size;
    }
    packed.clear();
    filled = 0;
  };
  for (auto it = arrays.rbegin(); it != arrays.rend(); ++it) {
    const auto [data, size] = *it;
    if (size == 0) continue;
    if (size >= bucket_elements) {
      // In place: no copy through the bucket for the large arrays.
      for (int64_t first = 0; first < size; first += bucket_elements)
        comm.all_reduce(data + first, std::min(bucket_elements, size - first), ReduceOp::Sum);
      continue;
    }
    if (filled + size > bucket_elements) flush();
    if (!bucket.get()) bucket = DeviceArray(backend, bucket_elements, Storage::F32);
    backend.copy(bucket.get() + filled, data, size);
    packed.emplace_back(data, size);
    filled += size;
  }
  flush();
}

std::vector<double> all_reduce_doubles(Backend& backend, Communicator& comm, const std::vector<double>& values,
                                       ReduceOp op) {
  const int world = comm.world_size();
  if (world == 1 || values.empty()) return values;
  static_assert(sizeof(double) == 2 * sizeof(float), "a double travels as two floats");
  const int64_t count = int64_t(values.size()) * 2;
  std::vector<float> host_in(size_t(count), 0.0f), host_out(size_t(count * world), 0.0f);
  std::memcpy(host_in.data(), values.data(), values.size() * sizeof(double));
  DeviceArray in(backend, count, Storage::F32), out(backend, count * world, Storage::F32);
  backend.upload(in.get(), host_in.data(), count);
  comm.all_gather(in.get().f32("scalars"), out.get().f32("scalars"), count);
  backend.download(host_out.data(), out.get(), count * world);
  std::vector<double> result(values.size());
  std::memcpy(result.data(), host_out.data(), values.size() * sizeof(double));  // rank 0's
  for (int r = 1; r < world; ++r) {
    std::vector<double> theirs(values.size());
    std::memcpy(theirs.data(), host_out.data() + int64_t(r) * count, values.size() * sizeof(double));
    for (size_t i = 0; i < values.size(); ++i) {
      switch (op) {
        case ReduceOp::Sum: result[i] += theirs[i]; break;
        case ReduceOp::Max: result[i] = std::max(result[i], theirs[i]); break;
        case ReduceOp::Min: result[i] = std::min(result[i], theirs[i]); break;
      }
    }
  }
  return result;
}

void all_gather_ranges(Backend& backend, Communicator& comm, const std::vector<FlatPiece>& pieces,
                       const ShardSplit& split, int64_t chunk_elements) {
  const int world = comm.world_size();
  if (world == 1 || split.shard == 0) return;
  const int me = comm.rank();
  const int64_t chunk = std::min(std::max<int64_t>(chunk_elements, 1), split.shard);
  DeviceArray send(backend, chunk, Storage::F32), received(backend, chunk * world, Storage::F32);
  for (int64_t c = 0; c < split.shard; c += chunk) {
    const int64_t n = std::min(chunk, split.shard - c);
    // This rank's values of [begin + c, begin + c + n), the padding left as it is.
    const int64_t lo = split.begin(me) + c, hi = std::min(split.end(me), lo + n);
    for_each_overlap(pieces, lo, hi, [&](const FlatPiece& p, int64_t first, int64_t count) {
      backend.copy(send.get() + (p.offset + first - lo), p.data + first, count);
    });
    comm.all_gather(send.get().f32("all-gather chunk"), received.get().f32("all-gather chunk"), n);
    for (int r = 0; r < world; ++r) {
      if (r == me) continue;
      const int64_t rlo = split.begin(r) + c, rhi = std::min(split.end(r), rlo + n);
      const float* from = received.get().f32("all-gather chunk") + int64_t(r) * n;
      for_each_overlap(pieces, rlo, rhi, [&](const FlatPiece& p, int64_t first, int64_t count) {
        backend.copy(p.data + first, from + (p.offset + first - rlo), count);
      });
    }
  }
}

}  // namespace st::dist
