// Token sampling on the device (backend/sampling_rule.h): one block per row
// of logits finds the row's maximum, the fixed-point total weight, the top-k
// / top-p threshold by a radix select over the rank keys, and the drawn
// token by a block-wide scan of the kept weights. Only the token ids and
// their log-probs are copied back, never the [rows x vocab] logits.
//
// Every sum is over integers (fixed-point weights), so the kernel is
// deterministic and gives the CPU backend's sums whatever the order.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.cuh"
#include "backend/sampling_rule.h"

namespace st::cuda {
namespace {

using u64 = unsigned long long;  // the type CUDA's 64-bit atomics and shuffles take
constexpr int kThreads = 256;
constexpr int kDigitBits = 8, kBins = 1 << kDigitBits;

struct SampleSettings {
  bool greedy;
  double inv_t;
  bool limit_k, limit_p;
  int64_t top_k;
  double top_p;
};

__device__ inline u64 weight_of(float logit, double max_logit, double inv_t) {
  return sampling::fixed_weight(exp((double(logit) - max_logit) * inv_t));
}

// The row's maximum and its lowest index (NaN never wins).
__device__ void block_argmax(const float* row, int64_t vocab, float* best_value, int64_t* best_index) {
  __shared__ float values[32];
  __shared__ int64_t indices[32];
  float v = -INFINITY;
  int64_t at = vocab;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (row[i] > v || (row[i] == v && i < at)) {
      v = row[i];
      at = i;
    }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, v, offset);
    const int64_t oi = __shfl_xor_sync(kFullMask, at, offset);
    if (ov > v || (ov == v && oi < at)) {
      v = ov;
      at = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0) {
    values[warp] = v;
    indices[warp] = at;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < warps; ++w)
      if (values[w] > v || (values[w] == v && indices[w] < at)) {
        v = values[w];
        at = indices[w];
      }
    // All -inf (or NaN): token 0, as the CPU's first-greater scan gives.
    if (at >= vocab) at = 0;
    *best_value = v;
    *best_index = at;
  }
  __syncthreads();
}

__global__ void sample_kernel(const float* logits, int64_t rows, int64_t vocab, SampleSettings settings,
                              const u64* seeds, const u64* counters, int32_t* tokens, float* logprobs) {
  __shared__ float max_value;
  __shared__ int64_t max_index;
  __shared__ u64 sums[32];
  __shared__ unsigned counts[kBins];
  __shared__ u64 masses[kBins];
  __shared__ u64 prefix, prefix_mask, count_above, mass_above;
  __shared__ u64 scan[kThreads];
  __shared__ u64 target_weight;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = logits + r * vocab;
    block_argmax(row, vocab, &max_value, &max_index);
    const double max_logit = max_value;
    u64 mine = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mine += weight_of(row[i], max_logit, settings.inv_t);
    const u64 total = block_sum(mine, sums);
    const double log_total = sampling::log_fixed(total);

    // The threshold rank key, by 8 bits at a time from the top: per digit,
    // the count and weight of the candidates under the prefix found so far,
    // then the first digit (from the highest) where the kept count reaches
    // top_k or the kept weight reaches top_p of the total.
    if (threadIdx.x == 0) {
      prefix = 0;
      prefix_mask = 0;
      count_above = 0;
      mass_above = 0;
    }
    __syncthreads();
    const bool truncate = !settings.greedy && total > 0 && (settings.limit_k || settings.limit_p);
    for (int shift = 64 - kDigitBits; truncate && shift >= 0; shift -= kDigitBits) {
      for (int b = threadIdx.x; b < kBins; b += blockDim.x) {
        counts[b] = 0;
        masses[b] = 0;
      }
      __syncthreads();
      const u64 want = prefix, mask = prefix_mask;
      for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
        const u64 key = sampling::rank_key(row[i], i);
        if ((key & mask) != want) continue;
        const int bin = int((key >> shift) & (kBins - 1));
        atomicAdd(&counts[bin], 1u);
        atomicAdd(&masses[bin], weight_of(row[i], max_logit, settings.inv_t));
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        u64 count = count_above, mass = mass_above;
        int chosen = -1, lowest = -1;
        for (int b = kBins - 1; b >= 0; --b) {
          if (counts[b] == 0) continue;
          lowest = b;
          const u64 c = count + counts[b], m = mass + masses[b];
          if ((settings.limit_k && int64_t(c) >= settings.top_k) ||
              (settings.limit_p && sampling::reaches_top_p(m, total, settings.top_p))) {
            chosen = b;
            break;
          }
          count = c;
          mass = m;
        }
        if (chosen < 0) chosen = lowest;  // not reached: keep everything under the prefix
        count_above = count;
        mass_above = mass;
        prefix |= u64(chosen) << shift;
        prefix_mask |= u64(kBins - 1) << shift;
      }
      __syncthreads();
    }
    const u64 threshold = truncate ? prefix : 0;

    // The draw: each thread's contiguous chunk of the vocabulary, its kept
    // weight, an exclusive scan over threads, and the chunk holding the
    // target walks it in token order.
    const int64_t chunk = (vocab + blockDim.x - 1) / blockDim.x;
    const int64_t begin = min(vocab, int64_t(threadIdx.x) * chunk), end = min(vocab, begin + chunk);
    u64 kept = 0;
    if (!settings.greedy)
      for (int64_t i = begin; i < end; ++i)
        if (sampling::rank_key(row[i], i) >= threshold) kept += weight_of(row[i], max_logit, settings.inv_t);
    scan[threadIdx.x] = kept;
    __syncthreads();
    if (threadIdx.x == 0) {
      u64 running = 0;
      for (unsigned t = 0; t < blockDim.x; ++t) {
        const u64 v = scan[t];
        scan[t] = running;
        running += v;
      }
      if (settings.greedy || running == 0) {
        tokens[r] = int32_t(max_index);
        logprobs[r] = float((max_logit - max_logit) * settings.inv_t - log_total);
        target_weight = ~u64(0);
      } else {
        target_weight = sampling::scaled_draw(sampling::draw_bits(seeds[r], counters[r]), running);
      }
    }
    __syncthreads();
    const u64 target = target_weight, start = scan[threadIdx.x];
    if (target != ~u64(0) && start <= target && target < start + kept) {
      u64 running = start;
      for (int64_t i = begin; i < end; ++i) {
        if (sampling::rank_key(row[i], i) < threshold) continue;
        running += weight_of(row[i], max_logit, settings.inv_t);
        if (running > target) {
          tokens[r] = int32_t(i);
          logprobs[r] = float((double(row[i]) - max_logit) * settings.inv_t - log_total);
          break;
        }
      }
    }
    __syncthreads();  // shared state is reused by the block's next row
  }
}

SampleSettings settings_of(const SamplingOptions& options, int64_t vocab, const char* op) {
  if (vocab <= 0 || vocab > sampling::kMaxVocab)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": the vocabulary size " + std::to_string(vocab) +
                                " is outside [1, " + std::to_string(sampling::kMaxVocab) + "]");
  SampleSettings settings;
  settings.greedy = options.greedy || options.temperature <= 0.0;
  settings.inv_t = settings.greedy ? 1.0 : 1.0 / options.temperature;
  settings.limit_k = options.top_k > 0 && options.top_k < vocab;
  settings.limit_p = options.top_p < 1.0;
  settings.top_k = options.top_k;
  settings.top_p = options.top_p;
  return settings;
}

// The draw kernel over device seeds, counters and outputs.
void launch_sample(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SampleSettings& settings,
                   const uint64_t* seeds, const uint64_t* counters, int32_t* tokens, float* logprobs, cudaStream_t s) {
  static_assert(sizeof(u64) == sizeof(uint64_t), "64-bit seeds");
  ST_LAUNCH(sample_kernel, unsigned(std::min<int64_t>(rows, 65535)), kThreads, 0, s)(
      logits.f32("sample_tokens: logits"), rows, vocab, settings, reinterpret_cast<const u64*>(seeds),
      reinterpret_cast<const u64*>(counters), tokens, logprobs);
  check_launch("sample_tokens");
}

}  // namespace

void sample_tokens_at(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                      const uint64_t* seeds, const uint64_t* counters, int32_t* tokens, float* logprobs,
                      cudaStream_t s) {
  if (rows <= 0) return;
  launch_sample(logits, rows, vocab, settings_of(options, vocab, "sample_tokens"), seeds, counters, tokens, logprobs, s);
}

void sample_tokens(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                   const uint64_t* host_seeds, const uint64_t* host_counters, int32_t* host_tokens,
                   float* host_logprobs, cudaStream_t s) {
  const char* op = "sample_tokens";
  if (rows <= 0) return;
  const SampleSettings settings = settings_of(options, vocab, op);  // refuses a bad vocabulary before any copy
  Temp<u64> seeds(2 * rows, s, op);  // seeds, then counters
  Temp<int32_t> tokens(rows, s, op);
  Temp<float> logprobs(rows, s, op);
  copy_to_device(seeds.get(), reinterpret_cast<const u64*>(host_seeds), rows, s, op);
  copy_to_device(seeds.get() + rows, reinterpret_cast<const u64*>(host_counters), rows, s, op);
  launch_sample(logits, rows, vocab, settings, reinterpret_cast<const uint64_t*>(seeds.get()),
                reinterpret_cast<const uint64_t*>(seeds.get() + rows), tokens.get(), logprobs.get(), s);
  check(cudaMemcpyAsync(host_tokens, tokens.get(), size_t(rows) * sizeof(int32_t), cudaMemcpyDeviceToHost, s), op);
  check(cudaMemcpyAsync(host_logprobs, logprobs.get(), size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost, s), op);
  check(cudaStreamSynchronize(s), op);
}

}  // namespace st::cuda
