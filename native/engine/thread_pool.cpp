#include "engine/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace st {

namespace {
// Busy-waits until `done()` or `limit` has passed: waking a sleeping thread
// costs more than the short waits a model step is full of.
template <typename Done>
void spin_briefly(Done done, std::chrono::microseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) {
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_ia32_pause();
#endif
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  const int extra = std::max(0, threads - 1);
  workers_.reserve(extra);
  for (int i = 0; i < extra; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_chunks = std::max<int64_t>(1, n / grain);
  // A few chunks per thread balance uneven items (problems of different sizes).
  const int64_t chunks = std::min<int64_t>(max_chunks, int64_t(size()) * 4);
  if (chunks <= 1 || workers_.empty()) {
    body(0, n);
    return;
  }
  std::lock_guard<std::mutex> run(run_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    n_ = n;
    chunks_ = chunks;
    chunk_ = (n + chunks - 1) / chunks;
    next_chunk_ = 0;
    finished_chunks_ = 0;
    ++generation_;
  }
  wake_.notify_all();
  for (;;) {
    int64_t c;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_chunk_ >= chunks_) break;
      c = next_chunk_++;
    }
    const int64_t begin = c * chunk_, end = std::min(n, begin + chunk_);
    if (begin < end) body(begin, end);
    std::lock_guard<std::mutex> lock(mutex_);
    ++finished_chunks_;
  }
  // The last chunks are usually microseconds from done.
  spin_briefly([&] { return finished_chunks_.load(std::memory_order_acquire) == chunks; }, std::chrono::microseconds(50));
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return finished_chunks_ == chunks_; });
  body_ = nullptr;
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    // A model step issues thousands of small parallel loops back to back.
    lock.unlock();
    spin_briefly([&] { return generation_.load(std::memory_order_acquire) != seen; }, std::chrono::microseconds(200));
    lock.lock();
    wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && next_chunk_ < chunks_); });
    if (stopping_) return;
    seen = generation_;
    while (next_chunk_ < chunks_) {
      const int64_t c = next_chunk_++;
      const auto* body = body_;
      const int64_t begin = c * chunk_, end = std::min(n_, begin + chunk_);
      lock.unlock();
      if (begin < end) (*body)(begin, end);
      lock.lock();
      if (++finished_chunks_ == chunks_) done_.notify_all();
    }
  }
}

ThreadPool& default_thread_pool() {
  static ThreadPool pool([] {
    if (const char* env = std::getenv("SPATIALTHINKER_THREADS")) {
      const int n = std::atoi(env);
      if (n > 0) return n;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }());
  return pool;
}

}  // namespace st
