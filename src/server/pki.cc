// The cluster CA with OpenSSL 3: keys, certificates and CSRs as PEM.
#include "server/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bulkhead::server {
namespace {

// RAII owners of OpenSSL objects.
struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Free>;

// The last OpenSSL error, for messages.
std::string SslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return absl::StrCat(what, ": ", buf);
}

absl::StatusOr<Owned<EVP_PKEY>> NewKey() {
  Owned<EVP_PKEY> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return absl::InternalError(SslError("generating an EC P-256 key"));
  return key;
}

std::string ToPem(EVP_PKEY* key) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string ToPem(X509* cert) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string ToPem(X509_REQ* req) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<Owned<EVP_PKEY>> KeyFromPem(const std::string& pem) {
  Owned<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Owned<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError(SslError("reading a private key"));
  return key;
}

absl::StatusOr<Owned<X509>> CertFromPem(const std::string& pem) {
  Owned<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Owned<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return absl::InvalidArgumentError(SslError("reading a certificate"));
  return cert;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Owned<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return absl::InternalError(
        SslError(absl::StrCat("adding extension ", OBJ_nid2sn(nid), "=", value)));
  }
  return absl::OkStatus();
}

// A certificate for `pubkey` with a random serial, `cn`, valid from an hour ago (clock skew
// between hosts) for `validity`, issued by `issuer` (nullptr: self-issued).
absl::StatusOr<Owned<X509>> NewCert(EVP_PKEY* pubkey, const std::string& cn, X509* issuer,
                                    absl::Duration validity) {
  Owned<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return absl::InternalError(SslError("serial"));
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), absl::ToInt64Seconds(validity));
  X509_set_pubkey(cert.get(), pubkey);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("bulkhead"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  return cert;
}

bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

absl::StatusOr<std::string> Finish(X509* cert, X509* ca_cert, EVP_PKEY* ca_key, CertUsage usage,
                                   const std::vector<std::string>& sans) {
  absl::Status s = AddExtension(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE");
  if (s.ok()) s = AddExtension(cert, ca_cert, NID_key_usage, "critical,digitalSignature");
  if (s.ok()) {
    s = AddExtension(cert, ca_cert, NID_ext_key_usage,
                     usage == CertUsage::kServer ? "serverAuth" : "clientAuth");
  }
  if (s.ok()) s = AddExtension(cert, ca_cert, NID_subject_key_identifier, "hash");
  if (s.ok()) s = AddExtension(cert, ca_cert, NID_authority_key_identifier, "keyid:always");
  if (s.ok() && !sans.empty()) {
    std::vector<std::string> entries;
    entries.reserve(sans.size());
    for (const std::string& n : sans) entries.push_back((IsIp(n) ? "IP:" : "DNS:") + n);
    s = AddExtension(cert, ca_cert, NID_subject_alt_name, absl::StrJoin(entries, ","));
  }
  if (!s.ok()) return s;
  if (X509_sign(cert, ca_key, EVP_sha256()) == 0) {
    return absl::InternalError(SslError("signing a certificate"));
  }
  return ToPem(cert);
}

}  // namespace

absl::StatusOr<KeyAndCert> CreateCa(const std::string& common_name, absl::Duration validity) {
  absl::StatusOr<Owned<EVP_PKEY>> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<Owned<X509>> cert = NewCert(key->get(), common_name, nullptr, validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  absl::Status s = AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  if (s.ok()) s = AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (s.ok()) s = AddExtension(c, c, NID_subject_key_identifier, "hash");
  if (!s.ok()) return s;
  if (X509_sign(c, key->get(), EVP_sha256()) == 0) {
    return absl::InternalError(SslError("signing the CA certificate"));
  }
  return KeyAndCert{ToPem(key->get()), ToPem(c)};
}

absl::StatusOr<KeyAndCert> IssueCert(const KeyAndCert& ca, const std::string& common_name,
                                     const std::vector<std::string>& subject_alt_names,
                                     CertUsage usage, absl::Duration validity) {
  absl::StatusOr<Owned<EVP_PKEY>> ca_key = KeyFromPem(ca.key_pem);
  if (!ca_key.ok()) return ca_key.status();
  absl::StatusOr<Owned<X509>> ca_cert = CertFromPem(ca.cert_pem);
  if (!ca_cert.ok()) return ca_cert.status();
  absl::StatusOr<Owned<EVP_PKEY>> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<Owned<X509>> cert = NewCert(key->get(), common_name, ca_cert->get(), validity);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> pem =
      Finish(cert->get(), ca_cert->get(), ca_key->get(), usage, subject_alt_names);
  if (!pem.ok()) return pem.status();
  return KeyAndCert{ToPem(key->get()), *std::move(pem)};
}

absl::StatusOr<KeyAndCert> CreateCsr(const std::string& common_name) {
  absl::StatusOr<Owned<EVP_PKEY>> key = NewKey();
  if (!key.ok()) return key.status();
  Owned<X509_REQ> req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_REQ_set_pubkey(req.get(), key->get());
  if (X509_REQ_sign(req.get(), key->get(), EVP_sha256()) == 0) {
    return absl::InternalError(SslError("signing a CSR"));
  }
  return KeyAndCert{ToPem(key->get()), ToPem(req.get())};
}

absl::StatusOr<std::string> SignClientCsr(const KeyAndCert& ca, const std::string& csr_pem,
                                          const std::string& common_name, absl::Duration validity) {
  Owned<BIO> bio(BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size())));
  Owned<X509_REQ> req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return absl::InvalidArgumentError(SslError("csr: not a PEM certificate request"));
  Owned<EVP_PKEY> pub(X509_REQ_get_pubkey(req.get()));
  if (!pub || X509_REQ_verify(req.get(), pub.get()) != 1) {
    return absl::InvalidArgumentError(SslError("csr: its signature does not verify"));
  }
  absl::StatusOr<Owned<EVP_PKEY>> ca_key = KeyFromPem(ca.key_pem);
  if (!ca_key.ok()) return ca_key.status();
  absl::StatusOr<Owned<X509>> ca_cert = CertFromPem(ca.cert_pem);
  if (!ca_cert.ok()) return ca_cert.status();
  absl::StatusOr<Owned<X509>> cert = NewCert(pub.get(), common_name, ca_cert->get(), validity);
  if (!cert.ok()) return cert.status();
  return Finish(cert->get(), ca_cert->get(), ca_key->get(), CertUsage::kClient, {});
}

absl::StatusOr<std::string> CommonNameOf(const std::string& cert_pem) {
  absl::StatusOr<Owned<X509>> cert = CertFromPem(cert_pem);
  if (!cert.ok()) return cert.status();
  char buf[256];
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert->get()), NID_commonName, buf,
                                    sizeof(buf));
  if (n < 0) return absl::InvalidArgumentError("certificate has no common name");
  return std::string(buf, static_cast<size_t>(n));
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& content, int mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return absl::UnavailableError(absl::StrCat(tmp, ": ", std::strerror(errno)));
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat(tmp, ": ", std::strerror(e)));
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0 || ::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(tmp, ": ", std::strerror(e)));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    // The CSPRNG failing is not an input error: nothing secure can be made without it.
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : buf) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace bulkhead::server
