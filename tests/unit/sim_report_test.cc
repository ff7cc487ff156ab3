// The HTML report: self-contained, and rendered by headless Chromium without
// script errors into the timeline it promises.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "sim/report.h"
#include "sim/simulation.h"

namespace stig::sim {
namespace {

RunResult small_run() {
  SimOptions o;
  o.seed = 5;
  o.nodes = 3;
  o.clients = 4;
  o.duration_ms = 4000;
  EXPECT_EQ(parse_nemesis("partition=0.5,crash=0.5,clock=0.5,loss=0.5", o.nemesis), "");
  return run_simulation(o);
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(SimReport, IsSelfContained) {
  const std::string html = render_report(small_run(), "stig-sim --seed 5");
  EXPECT_EQ(html.find("<script src"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  // The only URL is the SVG namespace, which is a name, not a fetch.
  std::string rest = html;
  for (size_t p; (p = rest.find("http://www.w3.org/2000/svg")) != std::string::npos;) rest.erase(p, 26);
  EXPECT_EQ(rest.find("http://"), std::string::npos);
  EXPECT_NE(html.find("\"checks\""), std::string::npos);
  // Embedded data cannot close its tag early: exactly the two script tags close.
  size_t closes = 0;
  for (size_t p = 0; (p = html.find("</script>", p)) != std::string::npos; ++p) ++closes;
  EXPECT_EQ(closes, 2u);
}

TEST(SimReport, RendersInHeadlessChromiumWithoutScriptErrors) {
  const char* chromium = "/usr/bin/chromium";
  if (::access(chromium, X_OK) != 0)
    GTEST_SKIP() << "headless report check skipped: /usr/bin/chromium is missing (apt-get install chromium)";
  const RunResult r = small_run();
  size_t completed = 0;
  for (const auto& e : r.history.events())
    if (e.process != "nemesis" && e.type != EventType::kInvoke) ++completed;
  ASSERT_GT(completed, 10u);

  const auto dir = std::filesystem::temp_directory_path() / ("stig-sim-report-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto page = dir / "report.html";
  ASSERT_EQ(write_report(r, "stig-sim --seed 5", page.string()), "");
  const std::string cmd = std::string("timeout 120 ") + chromium +
                          " --headless --no-sandbox --disable-gpu --disable-background-networking"
                          " --disable-component-update --disable-sync --no-first-run --user-data-dir=" +
                          (dir / "profile").string() + " --enable-logging=stderr --v=0 --dump-dom file://" +
                          page.string() + " >" + (dir / "dom.html").string() + " 2>" + (dir / "log.txt").string();
  const int status = std::system(cmd.c_str());
  const std::string dom = slurp(dir / "dom.html");
  const std::string log = slurp(dir / "log.txt");
  ASSERT_EQ(status, 0) << "chromium failed:\n" << log;
  // Script errors show up as console messages on stderr.
  EXPECT_EQ(log.find("Uncaught"), std::string::npos) << log;
  EXPECT_FALSE(std::regex_search(log, std::regex("CONSOLE.*(Error|error)"))) << log;
  EXPECT_NE(dom.find("data-rendered=\"yes\""), std::string::npos);
  EXPECT_NE(dom.find("data-ops-drawn=\"" + std::to_string(completed) + "\""), std::string::npos)
      << "expected one bar per completed operation (" << completed << ")";
  EXPECT_NE(dom.find("class=\"op\""), std::string::npos);
  EXPECT_NE(dom.find("class=\"fault\""), std::string::npos);
  EXPECT_NE(dom.find("id=\"heal\""), std::string::npos);
  EXPECT_NE(dom.find(r.final_state.converged_after_ms ? "id=\"converged\"" : "id=\"not-converged\""), std::string::npos);
  EXPECT_NE(dom.find("lost-writes"), std::string::npos);  // the checker table was filled in
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace stig::sim
