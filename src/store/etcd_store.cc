// The etcd store: etcd v3's JSON gateway (POST /v3/kv/range, /v3/kv/txn, /v3/kv/compaction,
// streaming /v3/watch) over libcurl, with failover between members and a deadline per request.
//
// Every request carries the gRPC metadata "hasleader: true" (the gateway forwards
// Grpc-Metadata-* headers), so a member without a leader refuses at once ("etcdserver: no
// leader") instead of blocking until etcd's own timeout; such a refusal is safe to retry on
// another member because nothing was proposed.
#include "store/etcd_store.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "store/txn_check.h"

namespace bulkhead::store {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Pause between two rounds over every member (an election takes about a second).
constexpr auto kRoundPause = std::chrono::milliseconds(100);
// Idle handles kept for connection reuse.
constexpr size_t kMaxPooledHandles = 8;

void CurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

int64_t Millis(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::string Base64(std::string_view bytes) {
  return absl::Base64Escape(absl::string_view(bytes.data(), bytes.size()));
}

// etcd's gateway writes int64 as strings; numbers are accepted too. Missing means 0.
int64_t JsonInt(const json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  int64_t value = 0;
  if (it->is_string() && absl::SimpleAtoi(it->get<std::string>(), &value)) return value;
  return 0;
}

bool JsonBool(const json& object, const char* field) {
  auto it = object.find(field);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

absl::StatusOr<std::string> JsonBytes(const json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end()) return std::string();
  std::string bytes;
  if (!it->is_string() || !absl::Base64Unescape(it->get<std::string>(), &bytes)) {
    return absl::InternalError(absl::StrCat("etcd answered a field '", field, "' not in base64"));
  }
  return bytes;
}

absl::StatusOr<KeyValue> ParseKv(const json& j) {
  KeyValue kv;
  absl::StatusOr<std::string> key = JsonBytes(j, "key");
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> value = JsonBytes(j, "value");
  if (!value.ok()) return value.status();
  kv.key = std::move(*key);
  kv.value = std::move(*value);
  kv.create_revision = JsonInt(j, "create_revision");
  kv.mod_revision = JsonInt(j, "mod_revision");
  kv.version = JsonInt(j, "version");
  return kv;
}

// The range etcd reads for [begin, end): its keys may not be empty, and "\0" as range_end
// means "no upper bound".
void SetRange(json& request, std::string_view begin, std::string_view end) {
  request["key"] = Base64(begin.empty() ? std::string_view("\0", 1) : begin);
  request["range_end"] = Base64(end.empty() ? std::string_view("\0", 1) : end);
}

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

size_t AppendToString(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

SlistPtr JsonHeaders() {
  curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
  list = curl_slist_append(list, "Grpc-Metadata-hasleader: true");
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip for large bodies
  return SlistPtr(list);
}

// Options every request shares: no proxy (members are addressed directly, and a proxy from
// the environment must never see store traffic), no signals (threads).
void SetCommonOptions(CURL* h, const std::string& url, const std::string& body,
                      const curl_slist* headers, std::string* response, int64_t connect_ms) {
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, response);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(1, connect_ms)));
}

// How one attempt on one member ended.
struct Attempt {
  enum Kind {
    kOk,       // `body` holds the answer
    kRetry,    // not sent, or refused before anything was proposed: try another member
    kUnknown,  // sent and no answer: the outcome of a write is unknown
    kFinal,    // the member answered with an error that another member would repeat
  };
  Kind kind = kRetry;
  json body;
  std::string error;    // kRetry, kUnknown: why
  absl::Status status;  // kFinal
};

// An error the gateway answered ({"error","message","code"}; watch: {"error":{...}}).
Attempt GatewayError(const std::string& endpoint, const json& body) {
  int code = 2;
  std::string message;
  const json& error = body.at("error");
  if (error.is_object()) {
    code = static_cast<int>(JsonInt(error, "grpc_code"));
    message = error.value("message", "");
  } else {
    code = static_cast<int>(JsonInt(body, "code"));
    message = body.value("message", error.is_string() ? error.get<std::string>() : "");
  }
  Attempt a;
  a.error = absl::StrCat(endpoint, ": ", message);
  if (code == 14 || code == 8) {
    // Refusals before a proposal; anything else Unavailable (e.g. "request timed out",
    // "leader changed") may have been proposed and committed later.
    for (const char* refused : {"no leader", "not capable", "too many requests",
                                "not enough started members", "unhealthy cluster"}) {
      if (absl::StrContains(message, refused)) return a;
    }
    if (code == 14) {
      a.kind = Attempt::kUnknown;
      return a;
    }
  }
  a.kind = Attempt::kFinal;
  // Limits of the cluster's configuration, which SQLite does not have: say which flag.
  std::string hint;
  if (absl::StrContains(message, "too many operations in txn")) {
    hint = " (etcd's --max-txn-ops, 128 by default)";
  } else if (absl::StrContains(message, "request is too large")) {
    hint = " (etcd's --max-request-bytes, 1.5 MiB by default)";
  }
  a.status =
      absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat("etcd ", a.error, hint));
  return a;
}

// The state of one watch, shared by its handle and its thread (which may outlive the store
// and, when the handle is destroyed from a callback, the handle).
struct WatchShared {
  std::vector<std::string> endpoints;
  size_t first_endpoint = 0;
  int timeout_ms = 0;
  std::string begin;
  std::string end;
  std::string describe;
  WatchCallback callback;

  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  CURLM* multi = nullptr;  // the transfer in progress, to wake it up on stop
  enum class Phase { kStarting, kCreated, kFailed } phase = Phase::kStarting;
  absl::Status failure;  // kFailed
  std::thread thread;
};

class EtcdWatch : public IWatch {
 public:
  explicit EtcdWatch(std::shared_ptr<WatchShared> shared) : shared_(std::move(shared)) {}
  ~EtcdWatch() override {
    {
      std::lock_guard lock(shared_->mu);
      shared_->stop = true;
      if (shared_->multi != nullptr) curl_multi_wakeup(shared_->multi);
    }
    shared_->cv.notify_all();
    if (std::this_thread::get_id() == shared_->thread.get_id()) {
      shared_->thread.detach();  // destroyed from its callback: the thread ends on return
    } else if (shared_->thread.joinable()) {
      shared_->thread.join();
    }
  }
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

 private:
  std::shared_ptr<WatchShared> shared_;
};

// One watch stream on one member: how it ended.
struct StreamEnd {
  enum Kind { kStopped, kCompacted, kEnded, kFailed } kind = kFailed;
  std::string error;    // kEnded, kFailed
  absl::Status status;  // kCompacted
};

class WatchRunner {
 public:
  WatchRunner(std::shared_ptr<WatchShared> shared, int64_t start)
      : s_(std::move(shared)), next_(start) {}

  // Streams from member to member until stopped, compacted, or none answers for the timeout.
  void Run() {
    const size_t n = s_->endpoints.size();
    size_t index = s_->first_endpoint;
    std::vector<std::string> errors;
    Clock::time_point failing_since = Clock::now();
    size_t failures_in_row = 0;
    for (;;) {
      const Clock::time_point stream_started = Clock::now();
      StreamEnd end = Stream(s_->endpoints[index % n]);
      switch (end.kind) {
        case StreamEnd::kStopped:
          return;
        case StreamEnd::kCompacted:
          Fail(end.status);
          return;
        case StreamEnd::kEnded: {  // it was streaming: start over on the next member
          errors.clear();
          failures_in_row = 0;
          ++index;
          // A stream that ends as soon as it starts must not become a busy loop.
          bool brief = Clock::now() - stream_started < std::chrono::seconds(1);
          failing_since = Clock::now();
          if (brief) {
            std::unique_lock lock(s_->mu);
            if (s_->cv.wait_for(lock, kRoundPause, [&] { return s_->stop; })) return;
          }
          continue;
        }
        case StreamEnd::kFailed:
          errors.push_back(end.error);
          ++failures_in_row;
          ++index;
          break;
      }
      if (Clock::now() - failing_since >= std::chrono::milliseconds(s_->timeout_ms)) {
        Fail(absl::UnavailableError(
            absl::StrCat(s_->describe, ": watch: no quorum or unreachable for ", s_->timeout_ms,
                         " ms (", absl::StrJoin(errors, "; "), ")")));
        return;
      }
      if (failures_in_row % n == 0) {
        std::unique_lock lock(s_->mu);
        if (s_->cv.wait_for(lock, kRoundPause, [&] { return s_->stop; })) return;
      }
    }
  }

 private:
  // Reports an error: from Watch() before creation, from the callback after.
  void Fail(absl::Status status) {
    std::unique_lock lock(s_->mu);
    if (s_->phase == WatchShared::Phase::kStarting) {
      s_->phase = WatchShared::Phase::kFailed;
      s_->failure = std::move(status);
      s_->cv.notify_all();
      return;
    }
    if (s_->stop) return;
    lock.unlock();
    s_->callback(std::move(status));
  }

  void Created() {
    std::lock_guard lock(s_->mu);
    if (s_->phase == WatchShared::Phase::kStarting) {
      s_->phase = WatchShared::Phase::kCreated;
      s_->cv.notify_all();
    }
  }

  // Handles one line of the stream; returns an end when the stream is over.
  std::optional<StreamEnd> OnLine(const std::string& endpoint, std::string_view line,
                                  bool& created) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return StreamEnd{StreamEnd::kFailed, absl::StrCat(endpoint, ": unreadable answer"), {}};
    }
    if (j.contains("error")) {
      Attempt a = GatewayError(endpoint, j);
      return StreamEnd{created ? StreamEnd::kEnded : StreamEnd::kFailed, a.error, {}};
    }
    const json& result = j.value("result", json::object());
    if (JsonBool(result, "canceled")) {
      int64_t compacted = JsonInt(result, "compact_revision");
      if (compacted > 0) {
        return StreamEnd{
            StreamEnd::kCompacted,
            {},
            absl::OutOfRangeError(absl::StrCat(s_->describe, ": watch from revision ", next_,
                                               ", compacted (history starts at ", compacted, ")"))};
      }
      return StreamEnd{created ? StreamEnd::kEnded : StreamEnd::kFailed,
                       absl::StrCat(endpoint, ": watch canceled: ",
                                    result.value("cancel_reason", "no reason given")),
                       {}};
    }
    if (JsonBool(result, "created")) {
      created = true;
      // "From now on": the revision the member had when it created the watch.
      if (next_ == 0) next_ = JsonInt(result.value("header", json::object()), "revision") + 1;
      Created();
    }
    auto events = result.find("events");
    if (events == result.end() || !events->is_array() || events->empty()) return std::nullopt;
    std::vector<Event> batch;
    for (const json& e : *events) {
      absl::StatusOr<KeyValue> kv = ParseKv(e.value("kv", json::object()));
      if (!kv.ok()) return StreamEnd{StreamEnd::kEnded, std::string(kv.status().message()), {}};
      Event event;
      event.type = e.value("type", "PUT") == "DELETE" ? Event::Type::kDelete : Event::Type::kPut;
      event.kv = std::move(*kv);
      next_ = std::max(next_, event.kv.mod_revision + 1);
      batch.push_back(std::move(event));
    }
    {
      std::lock_guard lock(s_->mu);
      if (s_->stop) return StreamEnd{StreamEnd::kStopped, {}, {}};
    }
    // The handle's destructor joins this thread, so no callback runs after it returns.
    s_->callback(std::move(batch));
    return std::nullopt;
  }

  StreamEnd Stream(const std::string& endpoint) {
    json create;
    SetRange(create, s_->begin, s_->end);
    if (next_ > 0) create["start_revision"] = std::to_string(next_);
    std::string body = json{{"create_request", create}}.dump();
    std::string url = absl::StrCat("http://", endpoint, "/v3/watch");
    std::string buffer;
    SlistPtr headers = JsonHeaders();
    EasyPtr easy(curl_easy_init());
    MultiPtr multi(curl_multi_init());
    if (!easy || !multi) return StreamEnd{StreamEnd::kFailed, "curl: out of memory", {}};
    SetCommonOptions(easy.get(), url, body, headers.get(), &buffer, s_->timeout_ms);
    curl_easy_setopt(easy.get(), CURLOPT_TCP_KEEPALIVE, 1L);
    curl_multi_add_handle(multi.get(), easy.get());
    {
      std::lock_guard lock(s_->mu);
      if (s_->stop) {
        curl_multi_remove_handle(multi.get(), easy.get());
        return StreamEnd{StreamEnd::kStopped, {}, {}};
      }
      s_->multi = multi.get();
    }
    const Clock::time_point create_deadline =
        Clock::now() + std::chrono::milliseconds(s_->timeout_ms);
    bool created = false;
    StreamEnd result;
    for (;;) {
      int running = 0;
      curl_multi_perform(multi.get(), &running);
      std::optional<StreamEnd> end;
      for (size_t nl; !end && (nl = buffer.find('\n')) != std::string::npos;) {
        std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        if (!line.empty()) end = OnLine(endpoint, line, created);
      }
      if (end) {
        result = std::move(*end);
        break;
      }
      if (running == 0) {
        CURLcode rc = CURLE_OK;
        int left = 0;
        while (CURLMsg* m = curl_multi_info_read(multi.get(), &left)) {
          if (m->msg == CURLMSG_DONE) rc = m->data.result;
        }
        result =
            StreamEnd{created ? StreamEnd::kEnded : StreamEnd::kFailed,
                      absl::StrCat(endpoint, ": ",
                                   rc == CURLE_OK ? "watch stream closed" : curl_easy_strerror(rc)),
                      {}};
        break;
      }
      if (!created && Clock::now() >= create_deadline) {
        result = StreamEnd{StreamEnd::kFailed,
                           absl::StrCat(endpoint, ": no answer within ", s_->timeout_ms, " ms"),
                           {}};
        break;
      }
      curl_multi_poll(multi.get(), nullptr, 0, 1000, nullptr);
      std::lock_guard lock(s_->mu);
      if (s_->stop) {
        result = StreamEnd{StreamEnd::kStopped, {}, {}};
        break;
      }
    }
    {
      std::lock_guard lock(s_->mu);
      s_->multi = nullptr;
    }
    curl_multi_remove_handle(multi.get(), easy.get());
    return result;
  }

  std::shared_ptr<WatchShared> s_;
  int64_t next_;  // the first revision not delivered yet (0 until created "from now")
};

class EtcdStore : public IStore {
 public:
  EtcdStore(std::vector<std::string> endpoints, const StoreOptions& options)
      : endpoints_(std::move(endpoints)), options_(options) {
    CurlGlobalInit();
  }

  absl::StatusOr<Range> GetRange(std::string_view begin, std::string_view end,
                                 const ReadOptions& options) override {
    if (absl::Status s = internal::CheckRead(options); !s.ok()) return s;
    json request;
    SetRange(request, begin, end);
    if (options.limit > 0) request["limit"] = std::to_string(options.limit);
    if (options.at_revision > 0) request["revision"] = std::to_string(options.at_revision);
    if (options.descending) {
      request["sort_order"] = "DESCEND";
      request["sort_target"] = "KEY";
    }
    absl::StatusOr<json> answer = Post("/v3/kv/range", request, /*idempotent=*/true);
    if (!answer.ok()) return Annotate(answer.status(), "read");
    Range range;
    range.revision = JsonInt(answer->value("header", json::object()), "revision");
    range.more = JsonBool(*answer, "more");
    for (const json& j : answer->value("kvs", json::array())) {
      absl::StatusOr<KeyValue> kv = ParseKv(j);
      if (!kv.ok()) return kv.status();
      range.kvs.push_back(std::move(*kv));
    }
    return range;
  }

  absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& conditions,
                                const std::vector<Op>& ops) override {
    if (absl::Status s = internal::CheckTxn(conditions, ops); !s.ok()) return s;
    json compare = json::array();
    for (const Compare& c : conditions) {
      compare.push_back({{"key", Base64(c.key)},
                         {"target", "MOD"},
                         {"result", "EQUAL"},
                         {"mod_revision", std::to_string(c.mod_revision)}});
    }
    json success = json::array();
    for (const Op& op : ops) {
      if (op.kind == Op::Kind::kPut) {
        success.push_back(
            {{"request_put", {{"key", Base64(op.key)}, {"value", Base64(op.value)}}}});
        continue;
      }
      json del;
      internal::KeyRange range = internal::DeleteRange(op);
      SetRange(del, range.begin, range.end);
      success.push_back({{"request_delete_range", del}});
    }
    json request = {{"compare", compare}, {"success", success}};
    absl::StatusOr<json> answer = Post("/v3/kv/txn", request, /*idempotent=*/false);
    if (!answer.ok()) return Annotate(answer.status(), "transaction");
    TxnResult result;
    result.succeeded = JsonBool(*answer, "succeeded");
    result.revision = JsonInt(answer->value("header", json::object()), "revision");
    return result;
  }

  absl::StatusOr<std::unique_ptr<IWatch>> Watch(std::string prefix, int64_t start_revision,
                                                WatchCallback callback) override {
    if (start_revision < 0) {
      return absl::InvalidArgumentError("store: watch from a negative revision");
    }
    auto shared = std::make_shared<WatchShared>();
    shared->endpoints = endpoints_;
    shared->first_endpoint = preferred_.load();
    shared->timeout_ms = options_.request_timeout_ms;
    shared->end = PrefixEnd(prefix);
    shared->begin = std::move(prefix);
    shared->describe = Describe();
    shared->callback = std::move(callback);
    // The thread keeps its own reference: it may outlive the handle (see ~EtcdWatch).
    shared->thread =
        std::thread([runner = WatchRunner(shared, start_revision)]() mutable { runner.Run(); });
    std::unique_lock lock(shared->mu);
    shared->cv.wait(lock, [&] { return shared->phase != WatchShared::Phase::kStarting; });
    if (shared->phase == WatchShared::Phase::kFailed) {
      absl::Status failure = shared->failure;
      lock.unlock();
      shared->thread.join();
      return failure;
    }
    lock.unlock();
    return std::make_unique<EtcdWatch>(std::move(shared));
  }

  absl::Status Compact(int64_t revision) override {
    if (revision <= 0) return absl::OkStatus();
    json request = {{"revision", std::to_string(revision)}};
    absl::StatusOr<json> answer = Post("/v3/kv/compaction", request, /*idempotent=*/true);
    if (answer.ok()) return absl::OkStatus();
    // Compacting again to an older revision is a no-op (etcd calls it an error).
    if (absl::IsOutOfRange(answer.status()) &&
        absl::StrContains(answer.status().message(), "has been compacted")) {
      return absl::OkStatus();
    }
    return Annotate(answer.status(), "compact");
  }

  std::string Describe() const override {
    return absl::StrCat("etcd://", absl::StrJoin(endpoints_, ","));
  }

 private:
  absl::Status Annotate(const absl::Status& status, absl::string_view what) const {
    return absl::Status(status.code(),
                        absl::StrCat("store ", Describe(), ": ", what, ": ", status.message()));
  }

  EasyPtr TakeHandle() {
    {
      std::lock_guard lock(pool_mu_);
      if (!pool_.empty()) {
        EasyPtr h = std::move(pool_.back());
        pool_.pop_back();
        curl_easy_reset(h.get());  // keeps its live connection
        return h;
      }
    }
    return EasyPtr(curl_easy_init());
  }

  void ReturnHandle(EasyPtr h) {
    std::lock_guard lock(pool_mu_);
    if (pool_.size() < kMaxPooledHandles) pool_.push_back(std::move(h));
  }

  Attempt PostOnce(const std::string& endpoint, const std::string& path, const std::string& body,
                   int64_t timeout_ms) {
    Attempt a;
    EasyPtr h = TakeHandle();
    if (!h) {
      a.error = "curl: out of memory";
      return a;
    }
    std::string response;
    SlistPtr headers = JsonHeaders();
    std::string url = absl::StrCat("http://", endpoint, path);
    SetCommonOptions(h.get(), url, body, headers.get(), &response,
                     std::min<int64_t>(timeout_ms, 1000));
    curl_easy_setopt(h.get(), CURLOPT_TIMEOUT_MS,
                     static_cast<long>(std::max<int64_t>(1, timeout_ms)));
    CURLcode rc = curl_easy_perform(h.get());
    long http = 0;
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &http);
    curl_off_t pretransfer = 0;
    curl_easy_getinfo(h.get(), CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    ReturnHandle(std::move(h));
    if (rc != CURLE_OK) {
      a.error = absl::StrCat(endpoint, ": ", curl_easy_strerror(rc));
      // Not connected, or connected but nothing sent yet: another member may take it.
      bool unsent = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                    (rc == CURLE_OPERATION_TIMEDOUT && pretransfer == 0);
      a.kind = unsent ? Attempt::kRetry : Attempt::kUnknown;
      return a;
    }
    json answer = json::parse(response, nullptr, /*allow_exceptions=*/false);
    if (http == 404) {
      a.kind = Attempt::kFinal;
      a.status = absl::UnimplementedError(
          absl::StrCat(endpoint, " does not serve ", path, " (not an etcd v3.4+ gateway?)"));
      return a;
    }
    if (answer.is_discarded() || !answer.is_object()) {
      a.kind = Attempt::kUnknown;
      a.error = absl::StrCat(endpoint, ": unreadable answer (HTTP ", http, ")");
      return a;
    }
    if (answer.contains("error")) return GatewayError(endpoint, answer);
    a.kind = Attempt::kOk;
    a.body = std::move(answer);
    return a;
  }

  // Sends one request to the members in turn (starting with the one that answered last) until
  // one answers or the request timeout passes. A request that may have reached a member
  // without an answer is retried only if `idempotent`.
  absl::StatusOr<json> Post(const std::string& path, const json& request, bool idempotent) {
    const std::string body = request.dump();
    const Clock::time_point deadline =
        Clock::now() + std::chrono::milliseconds(options_.request_timeout_ms);
    const size_t n = endpoints_.size();
    std::vector<std::string> errors(n);
    const size_t first = preferred_.load();
    for (;;) {
      for (size_t i = 0; i < n; ++i) {
        size_t index = (first + i) % n;
        int64_t remaining = Millis(deadline - Clock::now());
        if (remaining <= 0) break;
        // A follower whose leader just died holds requests until etcd's own timeout (about
        // 7 s): a read gives each member a share of the time so that it can move on, a write
        // gets all of it (it cannot be retried once sent).
        int64_t attempt_ms =
            idempotent
                ? std::min(remaining, std::max<int64_t>(500, options_.request_timeout_ms / 4))
                : remaining;
        Attempt a = PostOnce(endpoints_[index], path, body, attempt_ms);
        switch (a.kind) {
          case Attempt::kOk:
            preferred_.store(index);
            return std::move(a.body);
          case Attempt::kFinal:
            return a.status;
          case Attempt::kUnknown:
            if (!idempotent) {
              return absl::UnavailableError(absl::StrCat(
                  a.error, "; the outcome is unknown (sent, no answer): re-read before retrying"));
            }
            errors[index] = a.error;
            break;
          case Attempt::kRetry:
            errors[index] = a.error;
            break;
        }
      }
      if (Clock::now() + kRoundPause >= deadline) break;
      std::this_thread::sleep_for(kRoundPause);
    }
    std::vector<std::string> seen;
    for (const std::string& e : errors) {
      if (!e.empty()) seen.push_back(e);
    }
    return absl::UnavailableError(
        absl::StrCat("no quorum or unreachable: no etcd member of ", absl::StrJoin(endpoints_, ","),
                     " answered within ", options_.request_timeout_ms, " ms (",
                     absl::StrJoin(seen, "; "), ")", idempotent ? "" : "; nothing was written"));
  }

  const std::vector<std::string> endpoints_;
  const StoreOptions options_;
  std::atomic<size_t> preferred_{0};  // the member that answered last
  std::mutex pool_mu_;
  std::vector<EasyPtr> pool_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IStore>> OpenEtcdStore(const std::vector<std::string>& endpoints,
                                                      const StoreOptions& options) {
  if (endpoints.empty()) return absl::InvalidArgumentError("store: no etcd endpoint");
  if (options.request_timeout_ms <= 0) {
    return absl::InvalidArgumentError("store: request timeout must be positive");
  }
  auto store = std::make_unique<EtcdStore>(endpoints, options);
  // One read proves that a member answers with a leader.
  ReadOptions probe;
  probe.limit = 1;
  if (absl::StatusOr<Range> r = store->GetRange("bulkhead/", "bulkhead0", probe); !r.ok()) {
    return r.status();
  }
  return store;
}

}  // namespace bulkhead::store
