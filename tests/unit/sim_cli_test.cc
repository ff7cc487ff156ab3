// stig-sim's command line: exit codes, clear errors, --seeds with replay
// commands, byte-identical histories from the same flags. Runs the binary that
// sits next to this test binary (build/bin/); skips if it was not built.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out, err;
};

class SimCli : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = fs::read_symlink("/proc/self/exe").parent_path() / "stig-sim";
    if (!fs::exists(bin_)) GTEST_SKIP() << bin_ << " is not built";
    dir_ = fs::temp_directory_path() / ("stig-sim-cli-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  CliRun run(const std::string& args) {
    const std::string cmd = bin_.string() + " " + args + " >" + (dir_ / "out").string() + " 2>" + (dir_ / "err").string();
    CliRun r;
    const int st = std::system(cmd.c_str());
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(dir_ / "out");
    r.err = slurp(dir_ / "err");
    return r;
  }
  fs::path bin_, dir_;
};

TEST_F(SimCli, CleanRunPrintsOneSummaryLineAndExitsZero) {
  CliRun r = run("--nodes 3 --clients 4 --duration 3s --seed 4");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.out.rfind("seed 4: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("0 violations"), std::string::npos);
  EXPECT_NE(r.out.find("converged"), std::string::npos);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
}

TEST_F(SimCli, SameFlagsGiveByteIdenticalHistories) {
  const std::string a = (dir_ / "a.jsonl").string(), b = (dir_ / "b.jsonl").string();
  ASSERT_EQ(run("--duration 5s --seed 21 --history " + a).status, 0);
  ASSERT_EQ(run("--duration 5s --seed 21 --history " + b).status, 0);
  const std::string ha = slurp(a);
  EXPECT_GT(ha.size(), 10000u);
  EXPECT_EQ(ha, slurp(b));
}

TEST_F(SimCli, ViolationsExitOneWithReplayCommand) {
  // Summing counter merges break every run with counters (4/4 seeds in SimCatchesBug).
  CliRun r = run("--duration 10s --seed 2 --inject-bug counter-merge-sums");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("FAIL counters"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("replay: stig-sim --duration 10s --inject-bug counter-merge-sums --seed 2"), std::string::npos)
      << r.out;
}

TEST_F(SimCli, CoreInvariantAbortNamesTheSeedAndExitsOne) {
  CliRun r = run("--duration 20s --seed 1 --inject-bug forget-dot-counter");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("stigmergy invariant violated"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("a core invariant failed with seed 1; replay: stig-sim --duration 20s --inject-bug "
                       "forget-dot-counter --seed 1"),
            std::string::npos)
      << r.err;
}

TEST_F(SimCli, SeedsReportEachFailingSeedWithItsReplayCommand) {
  CliRun r = run("--seeds 1..3 --duration 20s --inject-bug forget-dot-counter");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("invariant"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("replay: stig-sim --duration 20s --inject-bug forget-dot-counter --seed "), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("seeds 1..3: 3 runs"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("seeds 3/3"), std::string::npos) << r.err;  // progress
  CliRun ok = run("--seeds 1..3 --duration 2s --nodes 3 --clients 3");
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_NE(ok.out.find("3 runs, 0 failing"), std::string::npos) << ok.out;
}

TEST_F(SimCli, BadFlagsAreOneClearLineAndExitTwo) {
  for (const auto& [args, needle] : std::vector<std::pair<std::string, std::string>>{
           {"--nemesis partition,meteor", "unknown nemesis 'meteor'"},
           {"--duration 5x", "unknown unit 'x'"},
           {"--seeds 9..1", "--seeds must be A..B"},
           {"--workload registers,queues", "unknown workload 'queues'"},
           {"--scenario /nonexistent/scenario.json", "cannot read scenario file"},
           {"--nodes 0", "--nodes"},
           {"--seeds 1..2 --history h.jsonl", "use them with --seed"},
       }) {
    CliRun r = run(args);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << " -> " << r.err;
    EXPECT_TRUE(r.out.empty()) << args;
  }
}

TEST_F(SimCli, ScenarioFileErrorsNameTheEvent) {
  const fs::path s = dir_ / "bad.json";
  std::ofstream(s) << R"({"events":[{"at":"1s","fault":"heal"},{"at":"2s","fault":"crash","node":"n7"}]})";
  CliRun r = run("--nodes 3 --scenario " + s.string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("event 2: node 'n7' is not in a cluster of 3"), std::string::npos) << r.err;
}

TEST_F(SimCli, ExampleScenariosRunClean) {
  const fs::path src = fs::path(STIG_SOURCE_DIR) / "examples";
  CliRun two = run("--nodes 3 --clients 0 --duration 4s --scenario " + (src / "sim-two-agents.json").string() +
                " --history " + (dir_ / "two.jsonl").string());
  EXPECT_EQ(two.status, 0) << two.out << two.err;
  const std::string h = slurp(dir_ / "two.jsonl");
  EXPECT_NE(h.find(R"("process":"supervisor","type":"ok","f":"get","key":"order-17","value":["shipped","cancelled"])"),
            std::string::npos)
      << h;
  CliRun tour = run("--nodes 5 --clients 6 --duration 40s --scenario " + (src / "sim-partition-tour.json").string());
  EXPECT_EQ(tour.status, 0) << tour.out << tour.err;
}

}  // namespace
