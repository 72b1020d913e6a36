// The `bulkhead lab` command line without root: input errors and usage errors exit 2 with a
// message naming what is wrong, before anything is made.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out;  // stdout and stderr
};

Result Bulkhead(const std::string& args) {
  Result r;
  const std::string cmd = std::string(BULKHEAD_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool Contains(const Result& r, const std::string& s) { return r.out.find(s) != std::string::npos; }

class LabCli : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bh-lab-cli-" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "policies");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    return (dir_ / name).string();
  }
  fs::path dir_;
};

TEST_F(LabCli, InvalidLabFileMakesNothing) {
  std::string lab = Write("bad.yaml",
                          "apiVersion: bulkhead.io/v1alpha1\nkind: Lab\nmetadata: {name: cli-bad}\n"
                          "spec:\n  namespaces: [{name: x}]\n  workloads:\n"
                          "  - {namespace: x, name: a, ports: [{port: 0}]}\n");
  auto r = Bulkhead("lab up -f " + lab + " --policies " + (dir_ / "policies").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(Contains(r, lab + ":7:44: error: Lab cli-bad: spec.workloads[0].ports[0].port: port "
                                "0 is out of range 1-65535"))
      << r.out;
  EXPECT_TRUE(Contains(r, "nothing was made")) << r.out;
  EXPECT_FALSE(fs::exists("/run/bulkhead/lab/cli-bad"));
}

TEST_F(LabCli, InvalidName) {
  std::string lab =
      Write("ok.yaml",
            "apiVersion: bulkhead.io/v1alpha1\nkind: Lab\nmetadata: {name: ok}\n"
            "spec:\n  namespaces: [{name: x}]\n  workloads: [{namespace: x, name: a}]\n");
  auto r = Bulkhead("lab up -f " + lab + " --policies " + (dir_ / "policies").string() +
                    " --name Not_Valid");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(Contains(r, "--name: invalid lab name \"Not_Valid\"")) << r.out;
  r = Bulkhead("lab status --name Not_Valid");
  EXPECT_EQ(r.code, 2) << r.out;
}

TEST_F(LabCli, ProbeUsage) {
  auto r = Bulkhead("lab probe --port 80");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "choose --from and --to (one flow) or --matrix (every pair)")) << r.out;
  r = Bulkhead("lab probe --matrix --from x/a --port 80");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "--matrix cannot be used with --from/--to")) << r.out;
  r = Bulkhead("lab probe --from x/a --port 80");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "--from and --to go together")) << r.out;
  r = Bulkhead("lab probe --from x/a --to x/b --port 80,81");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "lists are for --matrix")) << r.out;
  r = Bulkhead("lab probe --from x/a --to x/b --port 80 --protocol gre");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(Contains(r, "gre")) << r.out;
  r = Bulkhead("lab probe --from x/a --to x/b");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(Contains(r, "--port is required (except for icmp)")) << r.out;
  r = Bulkhead("lab probe --from x/a --to x/b --protocol icmp --port 80");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(Contains(r, "--port: icmp has no ports")) << r.out;
  r = Bulkhead("lab probe --matrix --protocol tcp,icmp");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(Contains(r, "--port is required (except for icmp)")) << r.out;
  r = Bulkhead("lab probe --from x/a --to x/b --port 70000");
  EXPECT_EQ(r.code, 2) << r.out;
  r = Bulkhead("lab probe --from x/a --to x/b --port 80 --name no-such-lab-zz9");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "lab no-such-lab-zz9: no state file")) << r.out;
}

TEST_F(LabCli, StatusAndDownOfALabThatDoesNotExist) {
  auto r = Bulkhead("lab status --name no-such-lab-zz9");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "no state file")) << r.out;
  r = Bulkhead("lab down --name no-such-lab-zz9");
  if (::geteuid() == 0) {
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(Contains(r, "No lab no-such-lab-zz9: nothing to remove")) << r.out;
  } else {
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(Contains(r, "needs root")) << r.out;
  }
}

TEST_F(LabCli, ServeRefusesBadArguments) {
  auto r = Bulkhead("lab serve --workload x/a --address not-an-ip --port 80/TCP");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "--address \"not-an-ip\" is not an address")) << r.out;
  r = Bulkhead("lab serve --workload x/a --address 127.0.0.1 --port 80/ICMP");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r, "--port \"80/ICMP\" is not PORT/TCP|UDP|SCTP")) << r.out;
  // Hidden from help: an implementation detail of `lab up`.
  // (A listed subcommand starts its line: "  serve  ...".)
  EXPECT_FALSE(Contains(Bulkhead("lab --help"), "\n  serve "));
  EXPECT_TRUE(Contains(Bulkhead("lab --help"), "\n  probe "));
}

}  // namespace
