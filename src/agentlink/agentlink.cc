// Join and the Sync session of an agent (agentlink.h).
#include "agentlink/agentlink.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "bulkhead/v1/agent.grpc.pb.h"
#include "server/agent_trust.h"
#include "server/pki.h"

namespace bulkhead::agentlink {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

constexpr int kMaxMessageBytes = 1 << 30;

grpc::ChannelArguments ChannelArgs(const std::string& tls_server_name, absl::Duration keepalive) {
  grpc::ChannelArguments args;
  if (!tls_server_name.empty()) args.SetSslTargetNameOverride(tls_server_name);
  // A snapshot carries the whole policy set the node needs: gRPC's default 4 MiB limit is
  // some thousand policies.
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  if (keepalive > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(absl::ToInt64Milliseconds(keepalive)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  return args;
}

// --- conversions between the API's messages and the library's types ---

PolicyObject FromProto(const v1::PolicyObject& p) {
  return PolicyObject{ObjectRef{p.group(), p.kind(), p.namespace_(), p.name()}, p.api_version(),
                      p.json()};
}

ObjectRef FromProto(const v1::ObjectRef& r) {
  return ObjectRef{r.group(), r.kind(), r.namespace_(), r.name()};
}

Endpoint FromProto(const v1::Endpoint& p) {
  Endpoint e;
  e.node = p.node();
  e.namespace_name = p.namespace_();
  e.name = p.name();
  e.labels.insert(p.labels().begin(), p.labels().end());
  e.service_account = p.service_account();
  e.ips.assign(p.ips().begin(), p.ips().end());
  for (const v1::NamedPort& np : p.named_ports()) {
    e.named_ports.push_back(NamedPort{np.name(), np.port(), np.protocol()});
  }
  return e;
}

EndpointRef FromProto(const v1::EndpointRef& r) {
  return EndpointRef{r.node(), r.namespace_(), r.name()};
}

v1::Endpoint ToProto(const Endpoint& e) {
  v1::Endpoint p;
  p.set_namespace_(e.namespace_name);
  p.set_name(e.name);
  p.mutable_labels()->insert(e.labels.begin(), e.labels.end());
  p.set_service_account(e.service_account);
  for (const std::string& ip : e.ips) p.add_ips(ip);
  for (const NamedPort& np : e.named_ports) {
    v1::NamedPort* q = p.add_named_ports();
    q->set_name(np.name);
    q->set_port(np.port);
    q->set_protocol(np.protocol);
  }
  return p;
}

// The agent's own endpoints by "namespace/name".
std::string OwnKey(const Endpoint& e) { return absl::StrCat(e.namespace_name, "/", e.name); }

}  // namespace

std::string ObjectRef::Key() const {
  return absl::StrCat(group, "/", kind, "/", namespace_name, "/", name);
}
std::string Endpoint::Key() const { return absl::StrCat(node, "/", namespace_name, "/", name); }
std::string EndpointRef::Key() const { return absl::StrCat(node, "/", namespace_name, "/", name); }

absl::StatusOr<std::string> ServerTarget(const std::string& server) {
  std::string s = server;
  for (const char* scheme : {"grpcs://", "https://"}) {
    if (s.rfind(scheme, 0) == 0) s = s.substr(std::strlen(scheme));
  }
  while (!s.empty() && s.back() == '/') s.pop_back();
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size() ||
      s.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server '", server, "' must be HOST:PORT of the server's agent (gRPC) listener"));
  }
  return s;
}

absl::StatusOr<std::string> DiscoverCa(const std::string& server, const std::string& token,
                                       absl::Duration timeout) {
  absl::StatusOr<server::JoinTokenParts> parts = server::ParseJoinToken(token);
  if (!parts.ok()) return parts.status();
  absl::StatusOr<std::string> target = ServerTarget(server);
  if (!target.ok()) return target.status();
  // The server is not verified here: what it says is checked by the MAC below.
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_verify_server_certs(false);
  tls.set_check_call_host(false);
  tls.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  auto channel = grpc::CreateCustomChannel(*target, grpc::experimental::TlsCredentials(tls),
                                           grpc::ChannelArguments());
  auto stub = v1::AgentService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(timeout));
  v1::DiscoverRequest req;
  req.set_token_id(parts->id);
  v1::DiscoverResponse resp;
  grpc::Status st = stub->Discover(&ctx, req, &resp);
  if (!st.ok()) return FromGrpc(st, absl::StrCat("discovering the cluster CA at ", *target));
  std::string expected = server::CaMac(server::Sha256Hex(parts->secret), resp.ca_pem());
  if (!server::SameMac(expected, resp.ca_mac())) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the CA that ", *target,
        " sent is not vouched for by this join token (MAC mismatch): a wrong token, or "
        "someone between this host and the server"));
  }
  if (absl::StatusOr<std::string> cn = server::CommonNameOf(resp.ca_pem()); !cn.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the server's CA is not a certificate: ", cn.status().message()));
  }
  return resp.ca_pem();
}

absl::StatusOr<Credentials> Join(const JoinOptions& options) {
  if (absl::Status s = server::ValidateNodeName(options.node_name); !s.ok()) return s;
  if (absl::StatusOr<server::JoinTokenParts> p = server::ParseJoinToken(options.token); !p.ok()) {
    return p.status();
  }
  absl::StatusOr<std::string> target = ServerTarget(options.server);
  if (!target.ok()) return target.status();
  Credentials c;
  c.node_name = options.node_name;
  if (!options.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFile(options.ca_file);
    if (!ca.ok()) return ca.status();
    c.ca_pem = *std::move(ca);
  } else {
    absl::StatusOr<std::string> ca = DiscoverCa(options.server, options.token, options.timeout);
    if (!ca.ok()) return ca.status();
    c.ca_pem = *std::move(ca);
  }
  absl::StatusOr<server::KeyAndCert> csr = server::CreateCsr(options.node_name);
  if (!csr.ok()) return csr.status();
  c.key_pem = csr->key_pem;

  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = c.ca_pem;
  auto channel = grpc::CreateCustomChannel(*target, grpc::SslCredentials(tls),
                                           ChannelArgs(options.tls_server_name, {}));
  auto stub = v1::AgentService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(options.timeout));
  v1::JoinRequest req;
  req.set_token(options.token);
  req.set_node_name(options.node_name);
  req.set_csr_pem(csr->cert_pem);
  v1::JoinResponse resp;
  grpc::Status st = stub->Join(&ctx, req, &resp);
  if (!st.ok()) return FromGrpc(st, absl::StrCat("joining ", *target));
  c.cert_pem = resp.cert_pem();

  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(options.state_dir, ": ", ec.message()));
  ::chmod(options.state_dir.c_str(), 0700);
  StateFiles files(options.state_dir);
  // The certificate last: a state dir with agent.crt is a complete one.
  for (auto [path, content] :
       {std::pair{files.ca(), &c.ca_pem}, {files.key(), &c.key_pem}, {files.cert(), &c.cert_pem}}) {
    if (absl::Status s = server::WriteFileAtomic(path, *content, 0600); !s.ok()) return s;
  }
  return c;
}

absl::StatusOr<Credentials> LoadCredentials(const std::string& state_dir) {
  StateFiles files(state_dir);
  if (!std::filesystem::exists(files.cert())) {
    return absl::NotFoundError(
        absl::StrCat(state_dir, " holds no agent credentials (", files.cert(), "): join first"));
  }
  Credentials c;
  for (auto [path, out] :
       {std::pair{files.ca(), &c.ca_pem}, {files.key(), &c.key_pem}, {files.cert(), &c.cert_pem}}) {
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) return text.status();
    *out = *std::move(text);
  }
  absl::StatusOr<std::string> cn = server::CommonNameOf(c.cert_pem);
  if (!cn.ok()) {
    return absl::DataLossError(absl::StrCat(files.cert(), ": ", cn.status().message()));
  }
  c.node_name = *std::move(cn);
  return c;
}

absl::Duration Backoff(int failures, absl::Duration initial, absl::Duration max, double jitter,
                       double random01) {
  absl::Duration d = initial;
  for (int i = 1; i < failures && d < max; ++i) d *= 2;
  d = std::min(d, max);
  return d * (1.0 - jitter + 2.0 * jitter * random01);
}

Usage ProcessUsage() {
  Usage u;
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    u.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (statm >> size >> resident) {
    u.rss_bytes = resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  }
  return u;
}

class SyncClient::Impl {
 public:
  Impl(SyncOptions options, SyncCallbacks callbacks)
      : options_(std::move(options)),
        callbacks_(std::move(callbacks)),
        rng_(std::random_device{}()) {}

  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (thread_.joinable() || stopping_) return;
    thread_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

  absl::Status SetEndpoints(std::vector<Endpoint> endpoints) {
    std::map<std::string, Endpoint> next;
    for (Endpoint& e : endpoints) {
      server::EndpointFields f;
      f.namespace_name = e.namespace_name;
      f.name = e.name;
      for (const std::string& ip : e.ips) f.ips.push_back(ip);
      for (const NamedPort& p : e.named_ports)
        f.named_ports.push_back({p.name, p.port, p.protocol});
      if (absl::Status s = server::ValidateEndpointFields(f); !s.ok()) return s;
      e.node.clear();
      std::string key = OwnKey(e);
      if (!next.emplace(key, std::move(e)).second) {
        return absl::InvalidArgumentError(absl::StrCat("endpoint ", key, " is listed twice"));
      }
    }
    std::lock_guard<std::mutex> lock(write_mu_);
    if (stream_ != nullptr) {
      v1::AgentMessage m;
      v1::EndpointChanges* c = m.mutable_endpoints();
      for (const auto& [key, e] : next) {
        auto it = sent_.find(key);
        v1::Endpoint p = ToProto(e);
        if (it == sent_.end() || ToProto(it->second).SerializeAsString() != p.SerializeAsString()) {
          *c->add_upserts() = std::move(p);
        }
      }
      for (const auto& [key, e] : sent_) {
        if (next.count(key) > 0) continue;
        v1::EndpointRef* r = c->add_deletes();
        r->set_namespace_(e.namespace_name);
        r->set_name(e.name);
      }
      if (c->upserts_size() > 0 || c->deletes_size() > 0) stream_->Write(m);
      sent_ = next;
    }
    own_ = std::move(next);
    return absl::OkStatus();
  }

  absl::Status SetIdentityKeys(std::set<std::string> keys) {
    size_t i = 0;
    for (const std::string& k : keys) {
      if (absl::Status s = server::ValidateIdentityKey(k, absl::StrCat("keys[", i, "]")); !s.ok())
        return s;
      ++i;
    }
    std::lock_guard<std::mutex> lock(write_mu_);
    identity_keys_ = std::move(keys);
    identity_keys_set_ = true;
    if (stream_ != nullptr) stream_->Write(IdentityKeysMessage());
    return absl::OkStatus();
  }

  std::map<std::string, uint32_t> identity_pins() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pins_;
  }

  void Ack(int64_t revision, const absl::Status& result) {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (result.ok()) {
      std::lock_guard<std::mutex> s(mu_);
      enforced_ = revision;
    }
    if (stream_ == nullptr) return;
    v1::AgentMessage m;
    m.mutable_ack()->set_revision(revision);
    m.mutable_ack()->set_ok(result.ok());
    m.mutable_ack()->set_error(std::string(result.message()));
    stream_->Write(m);
  }

  void ReportStatus(const Usage& usage) {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (stream_ == nullptr) return;
    v1::AgentMessage m;
    m.mutable_status()->set_cpu_seconds(usage.cpu_seconds);
    m.mutable_status()->set_rss_bytes(usage.rss_bytes);
    m.mutable_status()->set_endpoints(static_cast<uint32_t>(own_.size()));
    stream_->Write(m);
  }

  Stats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    Stats s = stats_;
    s.enforced = enforced_;
    return s;
  }
  PolicyState policy() const {
    std::lock_guard<std::mutex> lock(mu_);
    return policy_;
  }
  std::map<std::string, Endpoint> endpoints() const {
    std::lock_guard<std::mutex> lock(mu_);
    return endpoints_;
  }

 private:
  void Loop() {
    int failures = 0;
    while (true) {
      absl::Status why = Session();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stats_.connected) failures = 0;  // it had a session: start the backoff over
        stats_.connected = false;
        ++stats_.failures;
        stats_.last_error = why;
        if (stopping_) return;
      }
      if (callbacks_.on_connection) callbacks_.on_connection(false, why);
      ++failures;
      absl::Duration wait = Backoff(failures, options_.initial_backoff, options_.max_backoff,
                                    options_.jitter, std::uniform_real_distribution<>(0, 1)(rng_));
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, absl::ToChronoNanoseconds(wait), [this] { return stopping_; });
      if (stopping_) return;
    }
  }

  // One stream, from connect to its end; returns why it ended.
  absl::Status Session() {
    absl::StatusOr<std::string> target = ServerTarget(options_.server);
    if (!target.ok()) return target.status();
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = options_.credentials.ca_pem;
    tls.pem_private_key = options_.credentials.key_pem;
    tls.pem_cert_chain = options_.credentials.cert_pem;
    // A new channel per attempt: its connection attempt starts now, not after gRPC's own
    // reconnect backoff, so this loop's backoff is the only one.
    auto channel =
        grpc::CreateCustomChannel(*target, grpc::SslCredentials(tls),
                                  ChannelArgs(options_.tls_server_name, options_.keepalive));
    auto stub = v1::AgentService::NewStub(channel);
    grpc::ClientContext ctx;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return absl::CancelledError("stopped");
      ctx_ = &ctx;
    }
    std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>> stream =
        stub->Sync(&ctx);
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      v1::AgentMessage hello;
      v1::Hello* h = hello.mutable_hello();
      {
        std::lock_guard<std::mutex> s(mu_);
        h->set_enforced_revision(enforced_);
      }
      h->set_version(options_.version);
      for (const auto& [key, e] : own_) *h->add_endpoints() = ToProto(e);
      // The keys follow the Hello on every stream: a server (maybe another replica) learns
      // what this node holds from them alone.
      if (stream->Write(hello) && (!identity_keys_set_ || stream->Write(IdentityKeysMessage()))) {
        stream_ = stream.get();
        sent_ = own_;
      }
    }
    v1::ServerMessage m;
    absl::Status refused;
    while (stream->Read(&m)) {
      if (m.has_refusal()) {
        refused = absl::Status(
            static_cast<absl::StatusCode>(m.refusal().code()),
            absl::StrCat("sync with ", *target, ": the server refused: ", m.refusal().message()));
        continue;
      }
      Apply(m);
    }
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      stream_ = nullptr;
    }
    grpc::Status st = stream->Finish();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ctx_ = nullptr;
    }
    if (!refused.ok()) return refused;
    if (st.ok()) return absl::UnavailableError("the server ended the stream");
    return FromGrpc(st, absl::StrCat("sync with ", *target));
  }

  // Applies one message to the state (only this thread changes it) and calls back.
  void Apply(const v1::ServerMessage& m) {
    if (m.has_snapshot()) {
      PolicyUpdate u;
      u.snapshot = true;
      u.revision = m.snapshot().revision();
      PolicyState next;
      next.revision = u.revision;
      for (const v1::PolicyObject& p : m.snapshot().objects()) {
        PolicyObject o = FromProto(p);
        next.objects[o.ref.Key()] = o;
        u.upserts.push_back(std::move(o));
      }
      EndpointUpdate eu;
      eu.snapshot = true;
      std::map<std::string, Endpoint> eps;
      for (const v1::Endpoint& p : m.snapshot().endpoints()) {
        Endpoint e = FromProto(p);
        eps[e.Key()] = e;
        eu.upserts.push_back(std::move(e));
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        policy_ = std::move(next);
        endpoints_ = std::move(eps);
        stats_.connected = true;
        ++stats_.sessions;
        stats_.last_error = absl::OkStatus();
      }
      if (callbacks_.on_connection) callbacks_.on_connection(true, absl::OkStatus());
      if (callbacks_.on_endpoints) callbacks_.on_endpoints(eu, endpoints_);
      if (callbacks_.on_policy) callbacks_.on_policy(u, policy_);
    } else if (m.has_delta()) {
      PolicyUpdate u;
      u.revision = m.delta().revision();
      for (const v1::PolicyObject& p : m.delta().upserts()) u.upserts.push_back(FromProto(p));
      for (const v1::ObjectRef& r : m.delta().deletes()) u.deletes.push_back(FromProto(r));
      {
        std::lock_guard<std::mutex> lock(mu_);
        policy_.revision = u.revision;
        for (const ObjectRef& r : u.deletes) policy_.objects.erase(r.Key());
        for (const PolicyObject& o : u.upserts) policy_.objects[o.ref.Key()] = o;
      }
      if (callbacks_.on_policy) callbacks_.on_policy(u, policy_);
    } else if (m.has_endpoints()) {
      EndpointUpdate u;
      for (const v1::Endpoint& p : m.endpoints().upserts()) u.upserts.push_back(FromProto(p));
      for (const v1::EndpointRef& r : m.endpoints().deletes()) u.deletes.push_back(FromProto(r));
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const EndpointRef& r : u.deletes) endpoints_.erase(r.Key());
        for (const Endpoint& e : u.upserts) endpoints_[e.Key()] = e;
      }
      if (callbacks_.on_endpoints) callbacks_.on_endpoints(u, endpoints_);
    } else if (m.has_identities()) {
      std::map<std::string, uint32_t> pins;
      for (const v1::IdentityPin& p : m.identities().pins()) pins[p.key()] = p.number();
      {
        std::lock_guard<std::mutex> lock(mu_);
        pins_ = pins;
      }
      if (callbacks_.on_identities) callbacks_.on_identities(pins);
    }
  }

  // Under write_mu_.
  v1::AgentMessage IdentityKeysMessage() const {
    v1::AgentMessage m;
    for (const std::string& k : identity_keys_) m.mutable_identity_keys()->add_keys(k);
    return m;
  }

  const SyncOptions options_;
  const SyncCallbacks callbacks_;
  std::mt19937_64 rng_;
  std::thread thread_;

  mutable std::mutex mu_;  // below, and the state's copies for other threads
  std::condition_variable cv_;
  bool stopping_ = false;
  grpc::ClientContext* ctx_ = nullptr;
  int64_t enforced_ = 0;
  Stats stats_;
  PolicyState policy_;  // written by the session thread under mu_, read by it without
  std::map<std::string, Endpoint> endpoints_;
  std::map<std::string, uint32_t> pins_;  // the server's last IdentityPins

  std::mutex write_mu_;  // one writer on the stream at a time; the endpoints below
  grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>* stream_ = nullptr;
  std::map<std::string, Endpoint> own_;   // what the agent has
  std::map<std::string, Endpoint> sent_;  // what this stream's server has
  std::set<std::string> identity_keys_;
  bool identity_keys_set_ = false;  // SetIdentityKeys was called: send them on every stream
};

SyncClient::SyncClient(SyncOptions options, SyncCallbacks callbacks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(callbacks))) {}
SyncClient::~SyncClient() { Stop(); }
void SyncClient::Start() { impl_->Start(); }
void SyncClient::Stop() { impl_->Stop(); }
absl::Status SyncClient::SetEndpoints(std::vector<Endpoint> endpoints) {
  return impl_->SetEndpoints(std::move(endpoints));
}
void SyncClient::Ack(int64_t revision, const absl::Status& result) { impl_->Ack(revision, result); }
void SyncClient::ReportStatus(const Usage& usage) { impl_->ReportStatus(usage); }
absl::Status SyncClient::SetIdentityKeys(std::set<std::string> keys) {
  return impl_->SetIdentityKeys(std::move(keys));
}
std::map<std::string, uint32_t> SyncClient::identity_pins() const { return impl_->identity_pins(); }
SyncClient::Stats SyncClient::stats() const { return impl_->stats(); }
PolicyState SyncClient::policy() const { return impl_->policy(); }
std::map<std::string, Endpoint> SyncClient::endpoints() const { return impl_->endpoints(); }

}  // namespace bulkhead::agentlink
