// Internal to the client library: what the strong-path calls (strong.cc)
// need from the connection machinery (client.cc). Not a public header.
#pragma once

#include <chrono>

#include "stigmergy.pb.h"
#include "stigmergy/client.h"

namespace stigmergy::internal {

// Sends one strong request to the leader with discovery, hint following and
// retries under one request id (Client::Impl::call_strong). `extra_wait` is
// added to the attempt timeout and the overall deadline (a lock acquire's
// wait). `write`: a lost answer makes the outcome unknown. A response is
// returned only when OK; node errors come back as Errors.
Result<stigmergy::v1::Response> strong_call(Client::Impl& impl, const stigmergy::v1::StrongRequest& request,
                                            std::chrono::milliseconds extra_wait, bool write);

}  // namespace stigmergy::internal
