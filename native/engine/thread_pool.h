#pragma once
// A fixed pool of worker threads for data-parallel loops. The engine owns one
// per process; every CPU kernel splits its outer loop through parallel_for.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace st {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls body(begin, end) on disjoint chunks covering [0, n), using the calling
  // thread as one of the workers. Chunks of at least `grain` items keep tiny
  // loops on one thread. Calls from several threads at once are serialised.
  void parallel_for(int64_t n, int64_t grain,
                    const std::function<void(int64_t, int64_t)>& body);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 0;
  int64_t next_chunk_ = 0;
  int64_t chunks_ = 0;
  // Written under mutex_; atomic so the caller can spin on it unlocked.
  std::atomic<int64_t> finished_chunks_{0};
  std::atomic<uint64_t> generation_{0};
  bool stopping_ = false;
};

// The process-wide pool, sized by SPATIALTHINKER_THREADS or the hardware.
ThreadPool& default_thread_pool();

}  // namespace st
