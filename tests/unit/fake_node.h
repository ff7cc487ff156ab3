// FakeNode: a stand-in for a stigd node in client tests (tests/unit only).
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/asio.h"
#include "stigmergy.pb.h"
#include "wire/frame.h"

namespace stig::testing {

namespace fake_node_pb = ::stigmergy::v1;

// A node stand-in on 127.0.0.1: accepts connections and answers each request
// with handler(request). A handler returning nullopt leaves the request
// unanswered (to provoke timeouts). Records every request it saw.
class FakeNode {
 public:
  using Handler = std::function<std::optional<fake_node_pb::Response>(const fake_node_pb::Request&)>;

  explicit FakeNode(std::string id, Handler handler)
      : id_(std::move(id)), handler_(std::move(handler)), acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakeNode() {
    io_.stop();
    thread_.join();
  }

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }
  std::vector<fake_node_pb::Request> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  struct Conn {
    boost::asio::ip::tcp::socket socket;
    stig::wire::FrameDecoder decoder;
    std::array<char, 4096> buf{};
    explicit Conn(boost::asio::io_context& io) : socket(io) {}
  };

  void accept() {
    auto conn = std::make_shared<Conn>(io_);
    acceptor_.async_accept(conn->socket, [this, conn](boost::system::error_code ec) {
      if (ec) return;
      read(conn);
      accept();
    });
  }

  void read(std::shared_ptr<Conn> conn) {
    conn->socket.async_read_some(boost::asio::buffer(conn->buf), [this, conn](boost::system::error_code ec, size_t n) {
      if (ec) return;
      conn->decoder.feed(std::string_view(conn->buf.data(), n));
      fake_node_pb::Envelope env;
      while (conn->decoder.next(env)) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          seen_.push_back(env.request());
        }
        auto resp = handler_(env.request());
        if (!resp) continue;
        resp->set_seq(env.request().seq());
        resp->set_node(id_);
        fake_node_pb::Envelope out;
        out.set_protocol_version(stig::wire::kProtocolVersion);
        *out.mutable_response() = *resp;
        auto frame = std::make_shared<std::string>(stig::wire::encode_frame(out));
        boost::asio::async_write(conn->socket, boost::asio::buffer(*frame), [frame](boost::system::error_code, size_t) {});
      }
      read(conn);
    });
  }

  std::string id_;
  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<fake_node_pb::Request> seen_;
};

}  // namespace stig::testing
