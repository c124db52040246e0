#include "test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "fundus/core/io.h"

namespace fundus::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/fundus-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* made = ::mkdtemp(buf.data());
  if (!made) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = made;
}

TempDir::~TempDir() {
  if (!std::getenv("FUNDUS_KEEP_TEST_DIRS")) run_command("rm -rf " + shell_quote(path_));
}

std::string source_dir() { return FUNDUS_SOURCE_DIR; }
std::string shared_dir() {
  const char* env = std::getenv("FUNDUS_SHARED_DIR");
  return env && *env ? env : FUNDUS_SHARED_DIR;
}

std::string shared_dataset(const std::string& name) {
  std::string dir = shared_dir() + "/data/" + name;
  return file_exists(dir + "/labels.csv") ? dir : "";
}

std::string shared_model(const std::string& file) {
  std::string path = shared_dir() + "/models/" + file;
  return file_exists(path) ? path : "";
}

std::string nested_json(int depth) {
  std::string text;
  for (int i = 0; i < depth; ++i) text += "{\"a\":";
  return text + "1" + std::string(size_t(depth), '}');
}

void run_sql(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK) << db_path;
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string message = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << db_path << ": " << message;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

CommandResult run_command(const std::string& command) {
  CommandResult r;
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

CommandResult run_cli(const std::string& args) {
  return run_command("FUNDUS_QUIET=1 " + shell_quote(FUNDUS_CLI) + " " + args);
}

bool python_oracle_available() {
  static int available = -1;
  if (available < 0) {
    auto r = run_command(shell_quote(FUNDUS_PYTHON) + " -c 'import torch, torchvision'");
    available = r.exit_code == 0 ? 1 : 0;
  }
  return available == 1;
}

CommandResult run_python(const std::string& script, const std::string& args) {
  TempDir dir;
  std::string path = dir.file("oracle.py");
  {
    std::ofstream out(path);
    out << script;
  }
  auto r = run_command(shell_quote(FUNDUS_PYTHON) + " " + shell_quote(path) + " " + args);
  EXPECT_EQ(r.exit_code, 0) << "python oracle failed:\n" << r.output;
  return r;
}

int closed_local_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  if (fd >= 0) ::close(fd);
  EXPECT_TRUE(ok) << "cannot bind a port on 127.0.0.1";
  return ntohs(a.sin_port);
}

}  // namespace fundus::test
