// The one architectural rule (shared/DESIGN.md): replication/ is a
// deterministic core with no I/O. This test reads its sources and fails on
// any include of sockets, threads, files, Asio or RocksDB, and on any read of
// a clock or of ambient randomness.
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

namespace {

std::vector<std::string> violations_in(const std::string& text) {
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(R"(#\s*include\s*[<"](boost/asio|asio|rocksdb/|thread>|mutex>|future>|condition_variable>|)"
                  R"(sys/socket|netinet/|arpa/|unistd\.h|fcntl\.h|fstream>|filesystem>|cstdio>.*fopen|spdlog/))"),
       "I/O, thread or storage include"},
      {std::regex(R"((steady_clock|system_clock|high_resolution_clock)\s*::\s*now)"), "clock read"},
      {std::regex(R"(std::random_device|[^_a-z]rand\s*\(|srand\s*\(|getenv\s*\(|time\s*\(\s*(nullptr|NULL|0)\s*\))"),
       "ambient randomness, environment or time"},
      {std::regex(R"(std::(cout|cerr|clog)\b|[^f]printf\s*\()"), "console output"},
  };
  std::vector<std::string> found;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    for (const auto& [re, what] : rules)
      if (std::regex_search(line, re)) found.push_back("line " + std::to_string(n) + ": " + what + ": " + line);
  }
  return found;
}

TEST(Architecture, RulesCatchForbiddenCode) {
  EXPECT_FALSE(violations_in("#include <boost/asio.hpp>").empty());
  EXPECT_FALSE(violations_in("#include <thread>").empty());
  EXPECT_FALSE(violations_in("auto t = std::chrono::steady_clock::now();").empty());
  EXPECT_FALSE(violations_in("std::random_device rd;").empty());
  EXPECT_FALSE(violations_in("const char* h = getenv(\"HOME\");").empty());
  EXPECT_TRUE(violations_in("#include <chrono>\nstd::chrono::milliseconds d{5};").empty());
}

int check_dir(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(STIG_SOURCE_DIR) / name;
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream f(entry.path());
    std::stringstream ss;
    ss << f.rdbuf();
    ++files;
    for (const auto& v : violations_in(ss.str())) ADD_FAILURE() << entry.path().string() << " " << v;
  }
  return files;
}

TEST(Architecture, ReplicationCoreHasNoIo) { EXPECT_GT(check_dir("replication"), 5); }

// The release ordering shared by stigd and stig-sim is logic too: the
// runtimes do the I/O around it.
TEST(Architecture, RuntimeSharedLogicHasNoIo) { EXPECT_GE(check_dir("runtime"), 2); }

}  // namespace
