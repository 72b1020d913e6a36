// Tokens, roles and the audit log over a real store; the CA and certificates.
#include "server/auth.h"

#include <gtest/gtest.h>

#include "server/audit.h"
#include "server/pki.h"
#include "test_store.h"

namespace bulkhead::server {
namespace {

TEST(RolesTest, PermissionMatrix) {
  EXPECT_TRUE(Allows(Role::kViewer, Permission::kReadPolicy));
  EXPECT_FALSE(Allows(Role::kViewer, Permission::kWritePolicy));
  EXPECT_FALSE(Allows(Role::kViewer, Permission::kReadAudit));
  EXPECT_TRUE(Allows(Role::kEditor, Permission::kWritePolicy));
  EXPECT_FALSE(Allows(Role::kEditor, Permission::kManageTokens));
  EXPECT_FALSE(Allows(Role::kEditor, Permission::kReadAudit));
  EXPECT_TRUE(Allows(Role::kAuditor, Permission::kReadAudit));
  EXPECT_FALSE(Allows(Role::kAuditor, Permission::kWritePolicy));
  EXPECT_TRUE(Allows(Role::kAdmin, Permission::kManageTokens));
  EXPECT_EQ(ParseRole("auditor"), Role::kAuditor);
  EXPECT_EQ(ParseRole("root"), std::nullopt);
}

class TokenStoreTest : public ::testing::Test {
 protected:
  testing::TempStore store_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  TokenStore tokens_{store_.get(), [this] { return now_; }};
};

TEST_F(TokenStoreTest, CreateAuthenticateRevoke) {
  auto t = tokens_.Create("ci", Role::kEditor, absl::ZeroDuration(), "admin");
  ASSERT_TRUE(t.ok()) << t.status();
  auto who = tokens_.Authenticate(*t);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->name, "ci");
  EXPECT_EQ(who->role, Role::kEditor);
  EXPECT_EQ(tokens_.Create("ci", Role::kViewer, absl::ZeroDuration(), "admin").status().code(),
            absl::StatusCode::kAlreadyExists);
  // A wrong secret of the right shape, a malformed one, a revoked one.
  std::string wrong = *t;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_EQ(tokens_.Authenticate(wrong).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tokens_.Authenticate("hello").status().code(), absl::StatusCode::kUnauthenticated);
  ASSERT_TRUE(tokens_.Revoke("ci").ok());
  EXPECT_EQ(tokens_.Authenticate(*t).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tokens_.Revoke("ci").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tokens_.Create("Bad Name", Role::kViewer, absl::ZeroDuration(), "a").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TokenStoreTest, ExpiryAndList) {
  auto t = tokens_.Create("short", Role::kViewer, absl::Minutes(5), "admin");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(tokens_.Authenticate(*t).ok());
  now_ += absl::Minutes(6);
  auto expired = tokens_.Authenticate(*t);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);
  auto list = tokens_.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "short");
}

TEST_F(TokenStoreTest, JoinTokens) {
  EXPECT_FALSE(tokens_.CreateJoinToken(absl::ZeroDuration(), "admin").ok());
  auto j = tokens_.CreateJoinToken(absl::Hours(1), "admin");
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE(tokens_.CheckJoinToken(*j).ok());
  // An API token is not a join token and the other way round.
  EXPECT_FALSE(tokens_.Authenticate(*j).ok());
  now_ += absl::Hours(2);
  EXPECT_EQ(tokens_.CheckJoinToken(*j).code(), absl::StatusCode::kUnauthenticated);
}

TEST(AuditLogTest, AppendAndQueryNewestFirst) {
  testing::TempStore store;
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  AuditLog log(store.get(), [&] { return now; });
  for (int i = 0; i < 5; ++i) {
    AuditEntry e;
    e.actor = i % 2 == 0 ? "alice" : "bob";
    e.action = "apply";
    e.outcome = i == 4 ? "denied" : "ok";
    e.detail = std::to_string(i);
    ASSERT_TRUE(log.Append(e).ok());
    now += absl::Seconds(1);
  }
  auto all = log.Query({});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].detail, "4");
  AuditQuery q;
  q.actor = "alice";
  q.limit = 2;
  auto alice = log.Query(q);
  ASSERT_TRUE(alice.ok());
  ASSERT_EQ(alice->size(), 2u);
  EXPECT_EQ((*alice)[0].detail, "4");
  EXPECT_EQ((*alice)[1].detail, "2");
  AuditQuery since;
  since.since = absl::FromUnixSeconds(1'800'000'003);
  EXPECT_EQ(log.Query(since)->size(), 2u);
  AuditQuery denied;
  denied.outcome = "denied";
  EXPECT_EQ(log.Query(denied)->size(), 1u);
}

TEST(PkiTest, CaIssuesServerAndClientCertificates) {
  auto ca = CreateCa("bulkhead test CA", absl::Hours(24));
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_NE(ca->cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  auto server = IssueCert(*ca, "server", {"localhost", "127.0.0.1", "::1"}, CertUsage::kServer,
                          absl::Hours(24));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(*CommonNameOf(server->cert_pem), "server");
  auto csr = CreateCsr("whatever-the-agent-says");
  ASSERT_TRUE(csr.ok());
  auto client = SignClientCsr(*ca, csr->cert_pem, "node-1", absl::Hours(24));
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*CommonNameOf(*client), "node-1");  // the server names it, not the CSR
  EXPECT_FALSE(SignClientCsr(*ca, "not a csr", "n", absl::Hours(1)).ok());
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(RandomHex(8).size(), 16u);
  EXPECT_NE(RandomHex(8), RandomHex(8));
}

}  // namespace
}  // namespace bulkhead::server
