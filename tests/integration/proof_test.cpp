// End-to-end, through the real daemon and retentionctl (issue 16): signed
// erasure receipts and audit checkpoints, checked by Ed25519 code that is
// not the daemon's (Python's `cryptography` package, and the `openssl`
// command line), with the canonical JSON of the spec written by Python's
// json.dumps; a tampered receipt fails; a checkpoint taken before the log
// is rewritten (edited and re-chained from the middle) is reported; and
// audit.tail's wait_ms.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/ctl/run_ctl.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

constexpr int kNotFound = -32001;
constexpr int kInvalidParams = -32602;

constexpr const char* kPolicy = R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"

[[categories]]
name = "prospect"
purpose = "Prospection"
legal_basis = "legitimate_interest"
phases = [ { action = "purge", at = "collected + 3 years" } ]

[[categories]]
name = "invoice"
purpose = "Accounting"
legal_basis = "legal_obligation"
erasable = false
phases = [ { action = "purge", at = "collected + 10 years" } ]
)toml";

// Verifies a signed object with Python's `cryptography`: argv[1] the
// object (JSON file), argv[2] the base64 public key. The canonical form is
// json.dumps as the spec states it. Prints "valid" or "invalid".
constexpr const char* kPythonVerify = R"py(import base64, json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
obj = json.load(open(sys.argv[1], encoding="utf-8"))
if "receipt" in obj:
    obj = obj["receipt"]
sig = base64.b64decode(obj.pop("signature"), validate=True)
msg = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(sys.argv[2], validate=True))
try:
    key.verify(sig, msg)
    print("valid")
except InvalidSignature:
    print("invalid")
)py";

// Rewrites entry argv[2]'s reason in the SQLite database argv[1] and
// re-chains every entry from there (the chain stays self-consistent: only
// a checkpoint taken before can tell). The entry format is the one of
// docs/protocol.md ("The audit log").
constexpr const char* kPythonRechain = R"py(import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
target = int(sys.argv[2])
db.execute("UPDATE audit SET reason = 'nothing to see here' WHERE seq = ?", (target,))
prev = db.execute("SELECT hash FROM audit WHERE seq = ?", (target - 1,)).fetchone()[0] if target > 1 else "0" * 64
cols = "seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash"
for row in db.execute("SELECT " + cols + " FROM audit WHERE seq >= ? ORDER BY seq", (target,)).fetchall():
    content = json.dumps(list(row), separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256((prev + "\n" + content).encode("utf-8")).hexdigest()
    db.execute("UPDATE audit SET hash = ? WHERE seq = ?", (h, row[0]))
    prev = h
db.commit()
)py";

class Proof : public ::testing::Test {
 protected:
  void SetUp() override {
    m_config = m_dir.path() / "policy.toml";
    write(m_config, kPolicy);
    write(m_dir.path() / "verify.py", kPythonVerify);
    write(m_dir.path() / "rechain.py", kPythonRechain);
    start();
  }

  // A state directory copied over another (a backup taken, or restored),
  // with the daemon stopped.
  static void copy_over(const std::filesystem::path& from, const std::filesystem::path& to) {
    std::filesystem::remove_all(to);
    std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
  }

  static void write(const std::filesystem::path& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }

  void start(std::vector<std::string> extra = {}) {
    m_client.reset();
    m_daemon.reset();
    std::vector<std::string> args{"--config", m_config.string(), "--now", "2026-06-01T00:00:00Z"};
    args.insert(args.end(), extra.begin(), extra.end());
    m_daemon = std::make_unique<DaemonProcess>(m_dir.path(), args);
    m_client = std::make_unique<Client>(m_daemon->socket());
  }
  // A start that must fail: its exit code and what it printed.
  CommandResult failed_start(const std::string& extra) {
    return run_command("timeout 20 " + retentiond_binary() + " --config " + m_config.string() + " --state-dir " +
                       (m_dir.path() / "state").string() + " --socket " + (m_dir.path() / "admin.sock").string() +
                       " --now 2026-06-01T00:00:00Z " + extra + " 2>&1");
  }
  // The copy of the log a shipper keeps: `retentionctl audit --follow --json`
  // until `timeout` ends it.
  std::filesystem::path ship_log(const std::string& name) {
    const auto file = m_dir.path() / name;
    const auto r = run_command("timeout 3 " + retentionctl_binary() + " --socket " + m_daemon->socket().string() +
                               " audit --follow --json > " + file.string());
    EXPECT_EQ(r.exit_code, 124) << r.output;
    return file;
  }
  std::set<std::string> keys_of_status() {
    std::set<std::string> keys;
    for (const auto& k : {"a1", "b1", "c1", "e1", "inv"}) {
      const json reply = m_client->call("record.get", {{"key", k}, {"include_archived", true}});
      if (reply.contains("result")) keys.insert(k);
    }
    return keys;
  }
  void stop() {
    m_client.reset();
    ASSERT_EQ(m_daemon->stop(SIGTERM), 0);
    m_daemon.reset();
  }

  json ok(const std::string& method, const json& params = nullptr) {
    const json reply = m_client->call(method, params);
    EXPECT_FALSE(reply.contains("error")) << method << ": " << reply.dump();
    return reply.value("result", json());
  }
  json error(const std::string& method, const json& params = nullptr) {
    const json reply = m_client->call(method, params);
    EXPECT_TRUE(reply.contains("error")) << method << ": " << reply.dump();
    return reply.value("error", json());
  }
  void put(const std::string& key, const std::string& subject, const std::string& category,
           const std::string& collected = "2026-05-01T00:00:00Z") {
    ok("record.put", {{"key", key}, {"subject", subject}, {"category", category},
                      {"dates", {{"collected", collected}}}, {"fields", {{"email", subject}, {"note", "secret value"}}}});
  }
  // One audit entry (record.put appends none): a hold placed.
  void audited(const std::string& target) {
    ok("hold.place", {{"category", "prospect"}, {"reason", "audit entry for the test: " + target}});
  }
  std::string pubkey() { return ok("status").at("signing_key").get<std::string>(); }

  // What Python's cryptography says of the signed object in `file`.
  std::string python_verdict(const std::filesystem::path& file, const std::string& key) {
    const auto r = run_command("python3 " + (m_dir.path() / "verify.py").string() + " " + file.string() + " " + key);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  }

  CtlResult ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--socket", m_daemon->socket().string()});
    return run_ctl(args);
  }

  TempDir m_dir;
  std::filesystem::path m_config;
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

TEST_F(Proof, ErasureReceiptIsVerifiedByAnIndependentImplementationAndATamperedOneIsNot) {
  // A non-ASCII key: the canonical form keeps it as UTF-8 (ensure_ascii=False).
  put("élève-prospect", "alice@example.com", "prospect");
  put("alice-invoice", "alice@example.com", "invoice");
  put("bob-prospect", "bob@example.com", "prospect");
  const json r = ok("subject.erase", {{"subject", "alice@example.com"}, {"reason", "art. 17 request"}});
  ASSERT_TRUE(r.contains("receipt")) << r.dump();
  const json& receipt = r["receipt"];

  // What it proves, against the log itself.
  const json tail = ok("audit.tail", {{"limit", 100}});
  const json& last = tail["entries"].back();
  EXPECT_EQ(receipt["audit_head"], (json{{"seq", last["seq"]}, {"hash", last["hash"]}}));
  ASSERT_EQ(receipt["erased"].size(), 1u);
  EXPECT_EQ(receipt["erased"][0]["key"], "élève-prospect");
  EXPECT_EQ(receipt["erased"][0]["category"], "prospect");
  EXPECT_EQ(receipt["erased"][0]["audit_seq"], last["seq"]);
  EXPECT_EQ(last["action"], "erase");
  EXPECT_EQ(last["key"], "élève-prospect");
  EXPECT_EQ(receipt["subject_ref"], last["subject_ref"]);
  ASSERT_EQ(receipt["retained"].size(), 1u);
  EXPECT_EQ(receipt["retained"][0]["key"], "alice-invoice");
  EXPECT_EQ(receipt["retained"][0]["reason"], "legal_obligation");
  EXPECT_EQ(receipt["retained"][0]["until"], "2036-05-01T00:00:00Z");
  EXPECT_EQ(receipt["policy_hash"], ok("status")["policy"]["hash"]);
  EXPECT_EQ(receipt["at"], last["at"]);
  // No raw subject, no field value.
  EXPECT_EQ(receipt.dump().find("alice@example.com"), std::string::npos);
  EXPECT_EQ(receipt.dump().find("secret value"), std::string::npos);

  const std::string key = pubkey();
  const auto file = m_dir.path() / "receipt.json";
  write(file, receipt.dump());
  EXPECT_EQ(python_verdict(file, key), "valid\n");
  EXPECT_EQ(ctl({"receipt", "verify", file.string(), "--pubkey", key}).exit_code, 0);

  // One byte changed: invalid for both.
  std::string tampered = receipt.dump();
  const auto at = tampered.find("2036-05-01");
  ASSERT_NE(at, std::string::npos);
  tampered[at + 3] = '7';
  write(file, tampered);
  EXPECT_EQ(python_verdict(file, key), "invalid\n");
  const auto bad = ctl({"receipt", "verify", file.string(), "--pubkey", key});
  EXPECT_EQ(bad.exit_code, 4) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("INVALID"), std::string::npos) << bad.out;

  // A dry run proves nothing and carries no receipt.
  EXPECT_FALSE(ok("subject.erase", {{"subject", "bob@example.com"}, {"reason", "r"}, {"dry_run", true}}).contains("receipt"));
}

TEST_F(Proof, RetentionctlWritesAReceiptAndVerifiesItWithThePrintedPublicKey) {
  put("p1", "carol@example.com", "prospect");
  const auto file = m_dir.path() / "r.json";
  const auto erased = ctl({"erase", "carol@example.com", "--reason", "request", "--receipt", file.string()});
  ASSERT_EQ(erased.exit_code, 0) << erased.err;
  const auto key = ctl({"pubkey"});
  ASSERT_EQ(key.exit_code, 0) << key.err;
  ASSERT_EQ(key.out, pubkey() + "\n");
  // Offline: the daemon stopped, only the public key.
  stop();
  const auto verified = run_ctl({"--socket", "/nonexistent", "receipt", "verify", file.string(), "--pubkey",
                                 key.out.substr(0, key.out.size() - 1)});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_EQ(python_verdict(file, key.out.substr(0, key.out.size() - 1)), "valid\n");
  // Another key: invalid.
  EXPECT_EQ(run_ctl({"receipt", "verify", file.string(), "--pubkey", std::string(43, 'A') + "="}).exit_code, 4);
}

TEST_F(Proof, APurgeByAPhaseHasAReceiptToo) {
  put("old", "dave@example.com", "prospect", "2020-01-01T00:00:00Z");
  put("young", "dave@example.com", "prospect");
  ok("sweep");
  const json receipt = ok("record.receipt", {{"key", "old"}});
  ASSERT_EQ(receipt["erased"].size(), 1u);
  EXPECT_EQ(receipt["erased"][0]["key"], "old");
  const json entries = ok("audit.tail", {{"key", "old"}})["entries"];
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back()["action"], "purge");
  EXPECT_EQ(receipt["erased"][0]["audit_seq"], entries.back()["seq"]);
  EXPECT_EQ(receipt["retained"], json::array());
  const auto file = m_dir.path() / "purge.json";
  write(file, receipt.dump());
  EXPECT_EQ(python_verdict(file, pubkey()), "valid\n");
  // A record still stored, or never seen: nothing to prove.
  EXPECT_EQ(error("record.receipt", {{"key", "young"}})["code"], kNotFound);
  EXPECT_EQ(error("record.receipt", {{"key", "never"}})["code"], kNotFound);
}

TEST_F(Proof, ACheckpointVerifiesWithOpensslAndRevealsAHistoryRewrittenSince) {
  for (int i = 0; i < 6; ++i) audited("k" + std::to_string(i));
  const json checkpoint = ok("audit.checkpoint");
  EXPECT_EQ(checkpoint["seq"], ok("audit.tail", {{"limit", 1}})["entries"][0]["seq"]);

  // openssl pkeyutl, with the raw key wrapped in its SubjectPublicKeyInfo
  // (RFC 8410: a fixed 12-byte prefix), over the canonical JSON.
  const auto dir = m_dir.path();
  write(dir / "cp.json", checkpoint.dump());
  const auto prep = run_command(
      "cd " + dir.string() + " && python3 -c '\n"
      "import base64, json, sys\n"
      "cp = json.load(open(\"cp.json\"))\n"
      "open(\"sig.bin\", \"wb\").write(base64.b64decode(cp.pop(\"signature\")))\n"
      "open(\"msg.bin\", \"wb\").write(json.dumps(cp, sort_keys=True, separators=(\",\", \":\"), ensure_ascii=False).encode())\n"
      "der = bytes.fromhex(\"302a300506032b6570032100\") + base64.b64decode(sys.argv[1])\n"
      "open(\"pub.der\", \"wb\").write(der)\n' " + pubkey());
  ASSERT_EQ(prep.exit_code, 0) << prep.output;
  const auto openssl = run_command("cd " + dir.string() +
                                   " && openssl pkeyutl -verify -pubin -keyform DER -inkey pub.der -rawin -in msg.bin "
                                   "-sigfile sig.bin");
  EXPECT_EQ(openssl.exit_code, 0) << openssl.output;
  EXPECT_NE(openssl.output.find("Signature Verified Successfully"), std::string::npos) << openssl.output;

  // The chain as it is extends it.
  json verified = ok("audit.verify", {{"full", true}, {"checkpoints", {checkpoint}}});
  EXPECT_EQ(verified["ok"], true);
  EXPECT_EQ(verified["checkpoints"][0]["extended"], true);
  EXPECT_EQ(verified["checkpoints"][0]["signature_valid"], true);
  write(dir / "cps.jsonl", checkpoint.dump() + "\n");
  EXPECT_EQ(ctl({"verify", "--full", "--checkpoint", (dir / "cps.jsonl").string()}).exit_code, 0);

  // More entries, then entry 3 edited and everything after it re-chained.
  audited("later");
  stop();
  const auto rechain = run_command("python3 " + (dir / "rechain.py").string() + " " +
                                   (dir / "state" / "retention.db").string() + " 3");
  ASSERT_EQ(rechain.exit_code, 0) << rechain.output;
  start();
  // The chain alone looks intact; the checkpoint says otherwise.
  EXPECT_EQ(ok("audit.verify", {{"full", true}})["ok"], true);
  verified = ok("audit.verify", {{"full", true}, {"checkpoints", {checkpoint}}});
  EXPECT_EQ(verified["ok"], false);
  EXPECT_EQ(verified["checkpoints"][0]["extended"], false);
  const auto broken = ctl({"verify", "--full", "--checkpoint", (dir / "cps.jsonl").string()});
  EXPECT_EQ(broken.exit_code, 4) << broken.out << broken.err;
  EXPECT_NE(broken.out.find("NOT extended"), std::string::npos) << broken.out;

  // A forged signature is reported as not this daemon's.
  json forged = checkpoint;
  forged["at"] = "2030-01-01T00:00:00Z";
  EXPECT_EQ(ok("audit.verify", {{"checkpoints", {forged}}})["checkpoints"][0]["signature_valid"], false);
  EXPECT_EQ(error("audit.verify", {{"checkpoints", {{{"seq", 1}}}}})["code"], kInvalidParams);
}

TEST_F(Proof, AuditTailWaitsForTheNextEntry) {
  audited("a");
  const std::int64_t head = ok("audit.tail", {{"limit", 1}})["entries"][0]["seq"].get<std::int64_t>();
  EXPECT_EQ(error("audit.tail", {{"wait_ms", 1000}})["code"], kInvalidParams);  // needs after
  EXPECT_EQ(error("audit.tail", {{"after", head}, {"wait_ms", 60001}})["code"], kInvalidParams);

  // Nothing comes: the answer, at the deadline, is empty.
  EXPECT_EQ(ok("audit.tail", {{"after", head}, {"wait_ms", 300}})["entries"], json::array());

  // An entry comes while a call waits: the call answers with it, early.
  // (Were the wait ignored, the call would answer at once, most often
  // before the entry exists: an empty page.)
  Client waiter(m_daemon->socket());
  waiter.send_line(json{{"jsonrpc", "2.0"}, {"id", 7}, {"method", "audit.tail"},
                        {"params", {{"after", head}, {"wait_ms", 30000}}}}.dump());
  audited("b");
  const auto line = waiter.read_line(std::chrono::seconds(25));
  ASSERT_TRUE(line.has_value());
  const json reply = json::parse(*line);
  ASSERT_TRUE(reply.contains("result")) << *line;
  ASSERT_EQ(reply["result"]["entries"].size(), 1u) << *line;
  EXPECT_EQ(reply["result"]["entries"][0]["action"], "hold.place");
  EXPECT_EQ(reply["result"]["entries"][0]["seq"], head + 1);
}

TEST_F(Proof, AuditFollowStreamsTheLogAsJsonLines) {
  audited("a");
  audited("b");
  // The follower's first line is its shell's pid (exec keeps it), then the
  // stream: what is there after --after, then what is appended.
  FILE* follow = ::popen(("echo $$; exec " + retentionctl_binary() + " --socket " + m_daemon->socket().string() +
                          " audit --follow --json --after 1")
                             .c_str(),
                         "r");
  ASSERT_NE(follow, nullptr);
  char buf[4096];
  const auto next_line = [&]() -> std::string { return ::fgets(buf, sizeof buf, follow) ? std::string(buf) : ""; };
  const pid_t pid = std::stoi(next_line());
  EXPECT_EQ(json::parse(next_line()).at("seq"), 2);
  audited("c");  // appended while it follows
  const std::string third = next_line();
  ASSERT_FALSE(third.empty());
  EXPECT_EQ(json::parse(third).at("seq"), 3);
  ::kill(pid, SIGTERM);
  ::pclose(follow);
  // Resuming a copy whose entry 2 is not the log's: refused.
  const auto other = run_command(retentionctl_binary() + " --socket " + m_daemon->socket().string() +
                                 " audit --follow --json --after 2 --after-hash " + std::string(64, '0') + " 2>&1");
  EXPECT_EQ(other.exit_code, 1) << other.output;
  EXPECT_NE(other.output.find("no longer holds seq 2 as this copy has it"), std::string::npos) << other.output;

  // A log restored to before the copy's end (here: another state) is not
  // silently continued: the follower stops and says why.
  stop();
  std::filesystem::remove_all(m_dir.path() / "state");
  start();
  const auto r = run_command(retentionctl_binary() + " --socket " + m_daemon->socket().string() +
                             " audit --follow --json --after 3 2>&1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no longer holds seq 3"), std::string::npos) << r.output;
}

TEST_F(Proof, TheSigningKeyIsPrivateAndSurvivesARestart) {
  const std::string before = pubkey();
  const auto path = m_daemon->state_dir() / "signing.key";
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const auto pem = run_command("openssl pkey -in " + path.string() + " -noout -text_pub");
  EXPECT_EQ(pem.exit_code, 0) << pem.output;
  EXPECT_NE(pem.output.find("ED25519"), std::string::npos) << pem.output;
  stop();
  start();
  EXPECT_EQ(pubkey(), before);
}

TEST_F(Proof, ErasuresSinceABackupAreRedoneFromTheShippedLogAfterItIsRestored) {
  put("a1", "alice@example.com", "prospect");
  put("b1", "bob@example.com", "prospect");
  put("c1", "carol@example.com", "prospect", "2020-01-01T00:00:00Z");  // overdue: purged once its hold goes
  put("e1", "eve@example.com", "prospect");
  put("inv", "alice@example.com", "invoice");
  const json hold = ok("hold.place", {{"key", "c1"}, {"reason", "litigation"}});
  ok("sweep");

  // The backup: the state directory of a stopped daemon.
  stop();
  const auto state = m_dir.path() / "state";
  const auto backup = m_dir.path() / "backup";
  copy_over(state, backup);
  start();

  // Since the backup: an erasure, a hold released and the purge it lets
  // through, a new hold, a record stored after the backup and erased.
  ok("subject.erase", {{"subject", "alice@example.com"}, {"reason", "art. 17 request"}});
  ok("hold.release", {{"id", hold["id"]}, {"reason", "case closed"}});
  ok("sweep");
  EXPECT_EQ(ok("record.explain", {{"key", "c1"}})["state"], "purged");
  ok("hold.place", {{"key", "b1"}, {"reason", "new litigation"}});
  put("late", "zoe@example.com", "prospect");
  ok("record.erase", {{"key", "late"}, {"reason", "request"}});
  const std::set<std::string> before_disaster = keys_of_status();
  EXPECT_EQ(before_disaster, (std::set<std::string>{"b1", "e1", "inv"}));
  const auto copy = ship_log("audit.jsonl");

  // The disaster: the backup restored. Alice and Carol are back.
  stop();
  copy_over(backup, state);
  start();
  EXPECT_EQ(keys_of_status(), (std::set<std::string>{"a1", "b1", "c1", "e1", "inv"}));
  const std::int64_t restored_head = ok("audit.tail", {{"limit", 1}})["entries"][0]["seq"].get<std::int64_t>();
  stop();
  // The residue approach, on the key that seals a1's and c1's values: in the
  // restored state it is in `keys` (the positive control); after the replay
  // it must be in no file of the state directory.
  const auto key_of = [&](const std::string& record) {
    const auto r = run_command("python3 -c '\n"
                               "import sqlite3, sys\n"
                               "slot = sqlite3.connect(sys.argv[1]).execute(\"SELECT slot FROM records WHERE key = ?\", (sys.argv[3],)).fetchone()[0]\n"
                               "f = open(sys.argv[2], \"rb\"); f.seek(slot * 32); print(f.read(32).hex())' " +
                               (state / "retention.db").string() + " " + (state / "keys").string() + " " + record);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output.substr(0, 64);
  };
  const auto files_holding = [&](const std::string& hex) {
    const auto r = run_command("python3 -c '\n"
                               "import os, sys\n"
                               "needle = bytes.fromhex(sys.argv[2])\n"
                               "for root, _, names in os.walk(sys.argv[1]):\n"
                               "    for n in names:\n"
                               "        if needle in open(os.path.join(root, n), \"rb\").read(): print(n)' " +
                               state.string() + " " + hex);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  };
  const std::string a1_key = key_of("a1"), c1_key = key_of("c1");
  ASSERT_NE(a1_key, std::string(64, '0'));
  EXPECT_EQ(files_holding(a1_key), "keys\n");
  EXPECT_EQ(files_holding(c1_key), "keys\n");

  // A copy that is not an intact chain, or of another history: refused, nothing changed.
  std::ifstream in(copy);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string tampered = text;
  const auto reason_at = tampered.find("case closed");
  ASSERT_NE(reason_at, std::string::npos);
  tampered.replace(reason_at, 4, "CASE");
  write(m_dir.path() / "tampered.jsonl", tampered);
  const auto refused = failed_start("--replay-audit " + (m_dir.path() / "tampered.jsonl").string());
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_NE(refused.output.find("not an intact chain"), std::string::npos) << refused.output;

  // A replay cut short, as a crash leaves it: its steps committed, then the
  // start fails before serving (the start-up guard refuses a policy that
  // drops a category still holding records). The copy given then holds the
  // first three entries only, so it stops after them.
  std::istringstream lines(text);
  std::string partial, line;
  for (int i = 0; i < 3 && std::getline(lines, line); ++i) partial += line + "\n";
  write(m_dir.path() / "partial.jsonl", partial);
  const std::string newsletter = R"toml(
[[categories]]
name = "newsletter"
purpose = "Newsletter"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 1 year" } ]
)toml";
  const std::string policy = kPolicy;
  write(m_config, policy.substr(0, policy.find("\n[[categories]]\nname = \"invoice\"")) + "\n" + newsletter);
  const auto cut = failed_start("--replay-audit " + (m_dir.path() / "partial.jsonl").string());
  EXPECT_NE(cut.exit_code, 0) << cut.output;
  EXPECT_NE(cut.output.find("category 'invoice' was removed"), std::string::npos) << cut.output;
  EXPECT_NE(cut.output.find("replay.done"), std::string::npos) << cut.output;
  EXPECT_NE(cut.output.find(" replayed=2 "), std::string::npos) << cut.output;
  // The policy changed since the backup: its adoption at start-up is
  // audited after the replay, which must come first, right after the
  // restored head.
  write(m_config, policy + newsletter);

  // The replay, resumed with the whole copy: the restored log is no longer
  // its prefix (the replay's own entries follow it), and that is expected.
  start({"--replay-audit", copy.string()});
  EXPECT_EQ(keys_of_status(), before_disaster);
  EXPECT_EQ(ok("record.explain", {{"key", "a1"}})["state"], "purged");
  EXPECT_EQ(ok("record.explain", {{"key", "c1"}})["state"], "purged");
  EXPECT_EQ(error("record.get", {{"key", "a1"}})["code"], kNotFound);
  // b1's hold is there again, c1's is gone.
  const json holds = ok("hold.list")["holds"];
  ASSERT_EQ(holds.size(), 1u) << holds.dump();
  EXPECT_EQ(holds[0]["target"], "b1");
  EXPECT_EQ(holds[0]["scope"], "key");
  // Each redone action is audited as a replay, after the restored head; the chain holds.
  const json entries = ok("audit.tail", {{"after", restored_head}, {"limit", 100}})["entries"];
  std::vector<std::string> replayed;
  for (const auto& e : entries) {
    replayed.push_back(e["action"].get<std::string>() + ":" + (e["key"].is_null() ? "" : e["key"].get<std::string>()));
    if (e["action"] == "config.reload") continue;  // the daemon's own, after the replay
    EXPECT_EQ(e["actor"], "replay") << e.dump();
    EXPECT_NE(e["reason"].get<std::string>().find("replay of seq "), std::string::npos) << e.dump();
  }
  EXPECT_EQ(replayed, (std::vector<std::string>{"erase:a1", "hold.release:c1", "purge:c1", "hold.place:b1",
                                                "config.reload:"}));
  EXPECT_EQ(ok("audit.verify", {{"full", true}})["ok"], true);
  EXPECT_EQ(ok("subject.export", {{"subject", "alice@example.com"}})["records"].size(), 1u);  // the invoice
  EXPECT_EQ(files_holding(a1_key), "");
  EXPECT_EQ(files_holding(c1_key), "");
  // b1 stays held: a sweep leaves it; nothing else is due.
  EXPECT_EQ(ok("sweep")["purged"], 0);

  // Replayed again once the daemon has moved on (a restart that kept the
  // option): refused, nothing changed; without it, the daemon starts.
  const auto head = ok("audit.tail", {{"limit", 1}})["entries"][0]["seq"];
  stop();
  const auto again = failed_start("--replay-audit " + copy.string());
  EXPECT_EQ(again.exit_code, 3) << again.output;
  EXPECT_NE(again.output.find("was replayed completely"), std::string::npos) << again.output;
  start();
  EXPECT_EQ(ok("audit.tail", {{"limit", 1}})["entries"][0]["seq"], head);
  EXPECT_EQ(keys_of_status(), before_disaster);
}

TEST_F(Proof, AReplayKeepsRestoresWithinTheUndoWindowAndNeverReleasesAnotherHold) {
  std::string policy = kPolicy;
  policy.replace(policy.find("[daemon]\n"), 9, "[daemon]\npurge_grace = \"30 days\"\n");
  write(m_config, policy);
  start();
  put("a1", "alice@example.com", "prospect");
  put("k1", "kim@example.com", "prospect");
  stop();
  const auto state = m_dir.path() / "state";
  const auto backup = m_dir.path() / "backup";
  copy_over(state, backup);
  start();

  // Since the backup: a1 erased, then restored within the undo window; a
  // hold on a subject (which the log cannot place again), a hold on k1 (its
  // id, in the replay, is the subject hold's), the subject hold released.
  ok("subject.erase", {{"subject", "alice@example.com"}, {"reason", "request"}});
  ok("record.restore", {{"key", "a1"}, {"reason", "erased by mistake"}});
  const json subject_hold = ok("hold.place", {{"subject", "kim@example.com"}, {"reason", "inquiry"}});
  const json key_hold = ok("hold.place", {{"key", "k1"}, {"reason", "litigation"}});
  ok("hold.release", {{"id", subject_hold["id"]}, {"reason", "inquiry closed"}});
  EXPECT_EQ(ok("record.explain", {{"key", "k1"}})["holds"], json::array({key_hold["id"]}));
  const auto copy = ship_log("audit.jsonl");

  stop();
  copy_over(backup, state);
  start({"--replay-audit", copy.string()});
  // a1 is back as it was, with its values; k1 is held, by a hold on k1.
  const json a1 = ok("record.get", {{"key", "a1"}});
  EXPECT_EQ(a1["state"], "active");
  EXPECT_EQ(a1["fields"]["note"], "secret value");
  const json holds = ok("hold.list")["holds"];
  ASSERT_EQ(holds.size(), 1u) << holds.dump();
  EXPECT_EQ(holds[0]["scope"], "key");
  EXPECT_EQ(holds[0]["target"], "k1");
  EXPECT_EQ(ok("record.explain", {{"key", "k1"}})["holds"].size(), 1u);
  EXPECT_EQ(ok("audit.verify", {{"full", true}})["ok"], true);

  // A backup taken after the replay, restored and replayed with a copy of
  // the log from then: a fresh replay from its head, not a resumed one.
  stop();
  copy_over(state, backup);
  start();
  ok("record.erase", {{"key", "k1"}, {"reason", "request"}});  // held: retained, no entry
  ok("hold.release", {{"id", holds[0]["id"]}, {"reason", "settled"}});
  ok("record.erase", {{"key", "k1"}, {"reason", "request"}});
  const auto second_copy = ship_log("audit2.jsonl");
  stop();
  copy_over(backup, state);
  start({"--replay-audit", second_copy.string()});
  EXPECT_EQ(ok("hold.list")["holds"], json::array());
  EXPECT_EQ(ok("record.explain", {{"key", "k1"}})["state"], "purged");
  EXPECT_EQ(ok("record.get", {{"key", "a1"}})["state"], "active");
}

}  // namespace
}  // namespace retentiond::testing
