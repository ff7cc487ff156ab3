// The one way node/ includes Boost.Asio.
//
// Boost 1.74's Asio uses std::exchange and friends without including
// <utility> itself; with g++ 12 that breaks the coroutine headers unless
// <utility> comes first. Every file under node/ includes this header instead
// of <boost/asio.hpp>, so the order is fixed in one place.
#pragma once

#include <utility>

#include <boost/asio.hpp>

namespace stig::node {
namespace asio = boost::asio;
using tcp = boost::asio::ip::tcp;
}  // namespace stig::node
