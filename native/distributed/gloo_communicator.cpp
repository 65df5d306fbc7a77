// The CPU process group: Gloo's collectives over its TCP transport, with the
// rendezvous store as Gloo's Store. Built when CMake finds Gloo (ST_WITH_GLOO);
// otherwise every entry point reports why it is missing.
#include <string>

#include "distributed/process_group.h"
#include "distributed/rendezvous.h"

#if defined(ST_WITH_GLOO)

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace st::dist {
namespace {

// Gloo's view of the rendezvous store.
class GlooStore final : public gloo::rendezvous::Store {
 public:
  GlooStore(TcpStoreClient& client, std::chrono::milliseconds timeout) : client_(client), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    client_.set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string value = client_.get(key, timeout_);
    return std::vector<char>(value.begin(), value.end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    const std::vector<std::string> missing = client_.wait(keys, timeout);
    if (!missing.empty())
      throw std::runtime_error("rendezvous at " + client_.address() + " timed out after " + seconds(timeout) +
                               " waiting for Gloo's key \"" + missing.front() + "\"");
  }

 private:
  TcpStoreClient& client_;
  std::chrono::milliseconds timeout_;
};

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

ReduceFn reduce_function(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return &gloo::sum<float>;
    case ReduceOp::Max: return &gloo::max<float>;
    case ReduceOp::Min: return &gloo::min<float>;
  }
  throw std::runtime_error("gloo: unknown reduce op");
}

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(std::unique_ptr<Rendezvous> group)
      : group_(std::move(group)), timeout_(group_->options().timeout) {
    const GroupOptions& o = group_->options();
    gloo::transport::tcp::attr attr;
    // GLOO_SOCKET_IFNAME names the interface, as in PyTorch; otherwise the
    // one this rank reaches rank 0's store through reaches the others too.
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname)
      attr.iface = ifname;
    else
      attr.hostname = group_->store().local_host();
    try {
      device_ = gloo::transport::tcp::CreateDevice(attr);
    } catch (const std::exception& e) {
      throw std::runtime_error("gloo: rank " + std::to_string(o.rank) + " cannot listen on " +
                               (attr.iface.empty() ? attr.hostname : "GLOO_SOCKET_IFNAME=" + attr.iface) + ": " +
                               first_line(e.what()));
    }
    context_ = std::make_shared<gloo::rendezvous::Context>(o.rank, o.world_size);
    context_->setTimeout(timeout_);
    GlooStore store(group_->store(), timeout_);
    gloo::rendezvous::PrefixStore prefixed("gloo", store);
    try {
      context_->connectFullMesh(prefixed, device_);
    } catch (const std::exception& e) {
      throw std::runtime_error("gloo: rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) +
                               " could not connect to the other ranks (from " +
                               (attr.iface.empty() ? attr.hostname : "interface " + attr.iface) + "): " + e.what());
    }
    // Every rank's transport is up before any rank returns (and may leave).
    group_->arrive("connected");
  }

  int rank() const override { return group_->options().rank; }
  int world_size() const override { return group_->options().world_size; }
  std::string backend_name() const override { return "gloo"; }
  std::chrono::milliseconds timeout() const override { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) override {
    std::lock_guard<std::mutex> lock(mutex_);
    timeout_ = timeout;
  }

  void all_reduce(float* data, int64_t count, ReduceOp op) override {
    run("all_reduce", count, op_name(op), [&](uint32_t tag) { all_reduce_unlocked(data, count, op, tag); });
  }

  // Gloo 0.5 has reduce-scatter only as its legacy halving-doubling class,
  // whose buffers are bound per instance and whose timeout is fixed at
  // connect time; its ring all-reduce has neither limit. Reducing the whole
  // input and keeping this rank's block also gives every element exactly the
  // bits all_reduce gives it, so a sharded optimiser sees the gradients the
  // unsharded one sees. It moves twice a reduce-scatter's bytes.
  void reduce_scatter(const float* in, float* out, int64_t count, ReduceOp op) override {
    run("reduce_scatter", count, op_name(op), [&](uint32_t tag) {
      std::vector<float> all(in, in + count * world_size());
      all_reduce_unlocked(all.data(), int64_t(all.size()), op, tag);
      std::memcpy(out, all.data() + int64_t(rank()) * count, size_t(count) * sizeof(float));
    });
  }

  void all_gather(const float* in, float* out, int64_t count) override {
    run("all_gather", count, nullptr, [&](uint32_t tag) {
      gloo::AllgatherOptions opts(context_);
      // The input may be this rank's block of the output already.
      std::vector<float> copy;
      const float* source = in;
      if (in == out + int64_t(rank()) * count) {
        copy.assign(in, in + count);
        source = copy.data();
      }
      opts.setInput(const_cast<float*>(source), size_t(count));
      opts.setOutput(out, size_t(count) * size_t(world_size()));
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::allgather(opts);
    });
  }

  void broadcast(float* data, int64_t count, int root) override {
    if (root < 0 || root >= world_size())
      throw std::runtime_error("gloo broadcast: root " + std::to_string(root) + " is not a rank of a world of " +
                               std::to_string(world_size()));
    run("broadcast", count, nullptr, [&](uint32_t tag) {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data, size_t(count));
      opts.setRoot(root);
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::broadcast(opts);
    });
  }

  void barrier() override {
    run("barrier", -1, nullptr, [&](uint32_t tag) {
      gloo::BarrierOptions opts(context_);
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    });
  }

 private:
  void all_reduce_unlocked(float* data, int64_t count, ReduceOp op, uint32_t tag) {
    gloo::AllreduceOptions opts(context_);
    opts.setOutput(data, size_t(count));
    opts.setReduceFunction(reduce_function(op));
    opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    opts.setTag(tag);
    opts.setTimeout(timeout_);
    gloo::allreduce(opts);
  }

  // One collective at a time (Gloo's context is not for concurrent calls on
  // the same slots), numbered so that a failure can say who never reached it.
  // count < 0: no payload (barrier).
  void run(const char* name, int64_t count, const char* op, const std::function<void(uint32_t)>& body) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!broken_.empty()) throw std::runtime_error("gloo process group is unusable after an earlier failure: " + broken_);
    if (count < 0 && count != -1) throw std::runtime_error(std::string("gloo ") + name + ": negative count");
    const uint64_t sequence = ++sequence_;
    if (count == 0) return;
    try {
      body(uint32_t(sequence));
    } catch (const std::exception& e) {
      const std::string what = std::string(name) + " #" + std::to_string(sequence);
      std::string message = "gloo " + what +
                            (count > 0 ? " (" + std::to_string(count) + " fp32" + (op ? std::string(", ") + op : "") + ")" : "") +
                            " on rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) +
                            " failed (timeout " + seconds(timeout_) + "): " + first_line(e.what());
      const std::string absent = group_->ranks_absent_from(what, sequence);
      if (!absent.empty()) message += "; " + absent;
      broken_ = message;
      throw std::runtime_error(message);
    }
  }

  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  std::unique_ptr<Rendezvous> group_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
  std::mutex mutex_;
  std::chrono::milliseconds timeout_;
  uint64_t sequence_ = 0;
  std::string broken_;
};

}  // namespace

std::unique_ptr<Communicator> make_gloo_communicator(std::unique_ptr<Rendezvous> group) {
  return std::make_unique<GlooCommunicator>(std::move(group));
}

bool gloo_compiled() { return true; }
std::string gloo_missing_reason() { return ""; }

}  // namespace st::dist

#else  // !ST_WITH_GLOO

#include <stdexcept>

namespace st::dist {

bool gloo_compiled() { return false; }

std::string gloo_missing_reason() {
#if defined(ST_GLOO_TURNED_OFF)
  return "this build of spatialthinker has no Gloo (it was built with SPATIALTHINKER_GLOO=OFF)";
#else
  return "this build of spatialthinker has no Gloo (its headers and libgloo were not found when the engine was "
         "compiled; install libgloo-dev and rebuild: npm run build:native)";
#endif
}

std::unique_ptr<Communicator> make_gloo_communicator(std::unique_ptr<Rendezvous>) {
  throw std::runtime_error(gloo_missing_reason());
}

}  // namespace st::dist

#endif
