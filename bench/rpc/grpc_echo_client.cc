// gRPC C++ async unary echo load client for bench/rpc: DEPTH calls kept in
// flight on ONE channel (one HTTP/2 connection), driven by one completion
// queue. Warm-up, then a measured window: calls/s, latency p50/p99 from every
// sample, and the server's CPU time per call (/proc/PID/stat).
//
//   grpc_echo_client --port N [--payload B] [--depth D] [--seconds S]
//                    [--warmup S] [--server-pid PID]
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "echo.grpc.pb.h"

namespace {

struct Slot {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientAsyncResponseReader<bench::Msg>> rpc;
  bench::Msg resp;
  grpc::Status status;
  uint64_t t0 = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, depth = 1, server_pid = 0;
  size_t payload = 64;
  double seconds = 5, warmup = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--payload")) payload = std::strtoul(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--depth")) depth = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--warmup")) warmup = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--server-pid")) server_pid = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (port <= 0 || depth < 1) {
    std::fprintf(stderr, "usage: grpc_echo_client --port N [--payload B] [--depth D] ...\n");
    return 2;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // A channel of its own: never share a subchannel (connection) with anyone.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "grpc_echo_client: cannot connect to port %d\n", port);
    return 1;
  }
  auto stub = bench::Echo::NewStub(channel);
  grpc::CompletionQueue cq;
  bench::Msg req;
  req.set_payload(std::string(payload, 'x'));

  std::vector<Slot> slots(depth);
  auto issue = [&](Slot& s) {
    s.ctx = std::make_unique<grpc::ClientContext>();  // not reusable
    s.t0 = brpc_now_ns();
    s.rpc = stub->PrepareAsyncSay(s.ctx.get(), req, &cq);
    s.rpc->StartCall();
    s.rpc->Finish(&s.resp, &s.status, &s);
  };

  struct brpc_samples samples = {};
  samples.cap = 50u << 20;
  samples.v = static_cast<uint32_t*>(std::malloc(samples.cap * sizeof(uint32_t)));
  uint64_t start = brpc_now_ns();
  uint64_t t_measure = start + (uint64_t)(warmup * 1e9);
  uint64_t t_end = t_measure + (uint64_t)(seconds * 1e9);
  bool measuring = false, ended = false;
  uint64_t m0 = 0, m1 = 0, cpu0 = 0, cpu1 = 0, calls = 0, errors = 0;
  int in_flight = depth;
  for (auto& s : slots) issue(s);
  void* tag;
  bool ok;
  while (in_flight > 0 && cq.Next(&tag, &ok)) {
    Slot& s = *static_cast<Slot*>(tag);
    uint64_t now = brpc_now_ns();
    if (!measuring && now >= t_measure) {
      measuring = true;
      m0 = now;
      cpu0 = brpc_proc_cpu_ns(server_pid);
    }
    if (!ended && now >= t_end) {
      ended = true;
      m1 = now;
      cpu1 = brpc_proc_cpu_ns(server_pid);
    }
    bool good = ok && s.status.ok() && s.resp.payload().size() == payload;
    if (!good && errors < 3)
      std::fprintf(stderr, "call failed: %s\n", s.status.error_message().c_str());
    if (measuring && !ended) {
      calls++;
      if (!good) errors++;
      brpc_add(&samples, now - s.t0);
    }
    if (!ended && good) {
      issue(s);
      continue;
    }
    if (!good) errors += !(measuring && !ended);  // counted above inside the window
    // A failed call is not repeated: its slot retires, as in rill_rpc_load.
    if (--in_flight == 0 && !ended) {
      ended = true;
      m1 = now;
      cpu1 = brpc_proc_cpu_ns(server_pid);
    }
  }
  brpc_report("grpc", payload, depth, calls, errors, m1 - m0, &samples, cpu1 - cpu0);
  std::free(samples.v);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return errors ? 1 : 0;
}
