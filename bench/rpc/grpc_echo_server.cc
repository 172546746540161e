// gRPC C++ async unary echo server for bench/rpc: one completion queue
// polled by the main thread (the process is pinned to one CPU anyway).
// Prints "ready port=N" once listening; runs until SIGTERM/SIGINT.
//
//   grpc_echo_server [port]
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "echo.grpc.pb.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

// One call in its three states (the canonical async server pattern).
class Call {
 public:
  Call(bench::Echo::AsyncService* svc, grpc::ServerCompletionQueue* cq)
      : svc_(svc), cq_(cq), responder_(&ctx_) {
    svc_->RequestSay(&ctx_, &req_, &responder_, cq_, cq_, this);
  }
  void Proceed(bool ok) {
    if (state_ == kRequested && ok) {
      new Call(svc_, cq_);  // keep a request posted for the next call
      resp_.set_payload(req_.payload());
      state_ = kFinish;
      responder_.Finish(resp_, grpc::Status::OK, this);
      return;
    }
    delete this;  // answered, or the queue is shutting down
  }

 private:
  enum State { kRequested, kFinish };
  bench::Echo::AsyncService* svc_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext ctx_;
  bench::Msg req_, resp_;
  grpc::ServerAsyncResponseWriter<bench::Msg> responder_;
  State state_ = kRequested;
};

}  // namespace

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 0;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  bench::Echo::AsyncService svc;
  grpc::ServerBuilder b;
  int bound = 0;
  b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                     &bound);
  b.RegisterService(&svc);
  b.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::ServerCompletionQueue> cq = b.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "grpc_echo_server: cannot listen on port %d\n", port);
    return 1;
  }
  std::printf("ready port=%d\n", bound);
  std::fflush(stdout);
  // Several posted requests so 50 calls in flight never wait for a post.
  for (int i = 0; i < 64; i++) new Call(&svc, cq.get());
  void* tag;
  bool ok;
  while (!g_stop.load()) {
    auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(200);
    auto st = cq->AsyncNext(&tag, &ok, deadline);
    if (st == grpc::CompletionQueue::GOT_EVENT)
      static_cast<Call*>(tag)->Proceed(ok);
    else if (st == grpc::CompletionQueue::SHUTDOWN)
      break;
  }
  server->Shutdown(std::chrono::system_clock::now());
  cq->Shutdown();
  while (cq->Next(&tag, &ok)) static_cast<Call*>(tag)->Proceed(false);
  return 0;
}
