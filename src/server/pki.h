// The cluster's certificate authority: `bulkhead server init` creates it, the server's TLS
// certificate comes from it, and every agent that joins gets a client certificate from it
// (mutual TLS between agents and servers). ECDSA P-256 keys, SHA-256 signatures, PEM text.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace bulkhead::server {

struct KeyAndCert {
  std::string key_pem;   // PKCS#8 private key
  std::string cert_pem;  // X.509 certificate
};

// A self-signed CA certificate valid for `validity` from now.
absl::StatusOr<KeyAndCert> CreateCa(const std::string& common_name, absl::Duration validity);

enum class CertUsage { kServer, kClient };

// A new key and a certificate signed by `ca` for it. Server certificates carry the DNS
// names and IP addresses in `subject_alt_names` (an entry that parses as an IP address is
// one); client certificates identify an agent by their common name (its node name).
absl::StatusOr<KeyAndCert> IssueCert(const KeyAndCert& ca, const std::string& common_name,
                                     const std::vector<std::string>& subject_alt_names,
                                     CertUsage usage, absl::Duration validity);

// A certificate signing request made with a new key (the agent's side of a join: its key
// never leaves its host).
absl::StatusOr<KeyAndCert> CreateCsr(const std::string& common_name);  // cert_pem holds the CSR

// Signs a client certificate for the CSR, with the common name the server decides (the
// node name in the join request, never what the CSR says).
absl::StatusOr<std::string> SignClientCsr(const KeyAndCert& ca, const std::string& csr_pem,
                                          const std::string& common_name, absl::Duration validity);

// The common name of a certificate (PEM), for logs and to name the agent of a connection.
absl::StatusOr<std::string> CommonNameOf(const std::string& cert_pem);

// Writes `content` to `path` atomically (temp file with `mode`, fsync, rename): keys,
// certificates and tokens are whole or absent after a crash.
absl::Status WriteFileAtomic(const std::string& path, const std::string& content, int mode);

// SHA-256 of `data`, lower-case hex (token hashes).
std::string Sha256Hex(std::string_view data);

// `bytes` random bytes from the system's CSPRNG, lower-case hex.
std::string RandomHex(size_t bytes);

}  // namespace bulkhead::server
