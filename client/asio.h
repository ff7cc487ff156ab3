// The one way client/ and bench/ include Boost.Asio.
//
// Boost 1.74's Asio needs <utility> before <boost/asio.hpp> with g++ 12 in
// C++20 mode; including it through this header keeps that in one place.
#pragma once

#include <utility>

#include <boost/asio.hpp>
