// Crash-test child: loops compare-and-swap transactions that write two related keys (A and B,
// same counter value) and reports each acknowledged "REVISION VALUE" line on stdout, until it
// is killed. Usage: store_crash_writer STORE_URL KEY_PREFIX
#include <unistd.h>

#include <cstdio>
#include <string>

#include "store/store.h"

int main(int argc, char** argv) {
  using bulkhead::store::Op;
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s STORE_URL KEY_PREFIX\n", argv[0]);
    return 2;
  }
  auto store = bulkhead::store::OpenStore(argv[1]);
  if (!store.ok()) {
    std::fprintf(stderr, "crash writer: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  const std::string a = std::string(argv[2]) + "a";
  const std::string b = std::string(argv[2]) + "b";
  for (;;) {
    auto current = (*store)->Get(a);
    if (!current.ok()) {
      std::fprintf(stderr, "crash writer: %s\n", std::string(current.status().message()).c_str());
      return 1;
    }
    int64_t mod = current->kvs.empty() ? 0 : current->kvs[0].mod_revision;
    long long value = current->kvs.empty() ? 0 : std::stoll(current->kvs[0].value);
    std::string next = std::to_string(value + 1);
    auto txn = (*store)->Txn({{a, mod}}, {Op::Put(a, next), Op::Put(b, next)});
    if (!txn.ok()) {
      std::fprintf(stderr, "crash writer: %s\n", std::string(txn.status().message()).c_str());
      return 1;
    }
    if (!txn->succeeded) continue;
    // Reported only once Txn returned: an acknowledged, durable revision.
    std::string line = std::to_string(txn->revision) + " " + next + "\n";
    if (write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      return 1;  // the parent is gone
    }
  }
}
