#!/usr/bin/env python3
# netns test of a `bulkhead lab` with several hosts (issue #4): 3 hosts, each a netns with its
# own bridge, agent and workloads, joined by the lab's routed underlay; the differential test's
# 9 workloads spread so that every namespace and app spans hosts. Checks: pod source addresses
# survive the underlay (no masquerade); the kernel's matrix (TCP+UDP, ports 80 and 8080, IPv4
# and IPv6) equals `bulkhead simulate --matrix` for a fixed set of policies that select across
# hosts and for a random set; a policy change flips a cross-host verdict on every agent; `lab
# down` leaves nothing. Runs with the lab's server (agents joined to `bulkhead server` in the
# core netns, policies applied over REST with `lab apply`), then the fixed set and its flip
# with standalone agents, then `lab up` killed -9 midway and `lab down`. Reuses differential_test.py's lab, generator and probes.
#
#   multihost_test.py PATH/TO/bulkhead     (root; bulkhead-cni next to it; ctest label netns)
#
# Seeded: the seed is printed; BULKHEAD_SEED=N replays the random set.
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("differential", os.path.join(HERE,
                                                                            "differential_test.py"))
diff = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diff)

HOSTS = ["host-1", "host-2", "host-3"]
FAMILIES = [4, 6]
PROTOCOLS = ["TCP", "UDP"]
PORTS = diff.PROBE_PORTS
SOURCE_CHECK_PORT = 9099  # our own listener, before any policy exists

# Fixed policies that select across hosts (placement: workload i of diff.WORKLOADS on host
# i % 3, so dev/web, prod/web, ops/monitor are on host-1; dev/api, prod/api, ops/backup on
# host-2; dev/db, prod/db, ops/web on host-3):
#  - prod/db takes TCP 8080 from prod/api (host-2 -> host-3) and nothing else;
#  - dev namespace default-denies ingress, then dev/api takes TCP 80 and UDP 8080 from pods
#    labelled role=admin in any namespace (ops/monitor on host-1, ops/backup on host-2);
#  - prod/web takes everything from namespaces labelled team=red (dev and ops, all hosts).
FIXED = [
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "db-from-api", "namespace": "prod"},
     "spec": {"podSelector": {"matchLabels": {"app": "db"}},
              "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                           "ports": [{"port": 8080, "protocol": "TCP"}]}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "deny-all", "namespace": "dev"},
     "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "api-from-admins", "namespace": "dev"},
     "spec": {"podSelector": {"matchLabels": {"app": "api"}},
              "ingress": [{"from": [{"namespaceSelector": {},
                                     "podSelector": {"matchLabels": {"role": "admin"}}}],
                           "ports": [{"port": 80, "protocol": "TCP"},
                                     {"port": 8080, "protocol": "UDP"}]}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "web-from-red", "namespace": "prod"},
     "spec": {"podSelector": {"matchLabels": {"app": "web"}},
              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]}},
]
# The re-apply: db-from-api now takes port 80 instead of 8080, so prod/api -> prod/db TCP/8080
# (host-2 -> host-3) goes from allowed to denied and TCP/80 from denied to allowed.
FLIP = ("prod/api", "prod/db")


def flipped(docs):
    out = json.loads(json.dumps(docs))
    out[0]["spec"]["ingress"][0]["ports"] = [{"port": 80, "protocol": "TCP"}]
    return out


class MultiHostRun:
    """One lab of 3 hosts with `mode` as its control plane: "server" (one bulkhead server in
    the lab, policies applied over REST with `lab apply`) or "standalone" (agents watch the
    policy dir)."""

    def __init__(self, bulkhead, seed, mode, full):
        self.bh = bulkhead
        self.seed = seed
        self.mode = mode
        self.full = full  # also the source-address check and a random set
        self.rng = random.Random(seed)
        self.failures = 0
        self.tmp = tempfile.mkdtemp(prefix="bh-multihost-")
        self.name = f"mh{os.getpid() % 10000:04d}{mode[:2]}{self.rng.randrange(256):02x}"
        self.lab = None
        self.policy_file = None
        self.t0 = time.monotonic()

    def log(self, msg):
        print(f"[{time.monotonic() - self.t0:5.1f} s] {msg}", flush=True)

    def fail(self, msg):
        self.failures += 1
        print("FAIL: " + msg, file=sys.stderr, flush=True)

    # -- the lab --
    def lab_file(self):
        doc = diff.lab_doc(self.name, random.Random(0))
        doc["spec"]["hosts"] = HOSTS
        for w in doc["spec"]["namespaces"]:
            w.pop("mode", None)
        for i, w in enumerate(doc["spec"]["workloads"]):
            w["host"] = HOSTS[i % len(HOSTS)]
        path = os.path.join(self.tmp, "lab.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(diff.to_yaml(doc))
        return path

    def host_of(self, workload):
        for w in self.lab.status["workloads"]:
            if w["workload"] == workload:
                return w["host"]
        raise diff.LabError(f"no workload {workload}")

    def revisions(self):
        st = self.lab.refresh()
        return {h["name"]: (h["agent"]["revision"] if h["agent"]["ready"] else None,
                            h["agent"]["error"]) for h in st["hosts"]}

    def write_policies(self, docs, label):
        """Writes the set and waits until every host's agent applied a new revision."""
        before = self.revisions()
        diff.write_file_atomically(self.policy_file, diff.set_text(docs, self.seed, label))
        if self.mode == "server":
            r = self.lab.cmd("lab", "apply", "--name", self.name)
            self.log(f"[{label}] lab apply: {' '.join(r.stdout.split())}")
            words = r.stdout.split()
            want = int(words[words.index("revision") + 1].rstrip(")"))
            self.wait_enforced(want, label)
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = self.revisions()
            if all(now[h][0] not in (None, "", before[h][0]) for h in now):
                self.log(f"[{label}] every agent applied it: "
                         + ", ".join(f"{h} {now[h][0]}" for h in sorted(now)))
                return
            errors = [f"{h}: {e}" for h, (_, e) in now.items() if e]
            if errors:
                raise diff.LabError(f"[{label}] an agent refused the policies: {errors}")
            time.sleep(0.1)
        raise diff.LabError(f"[{label}] not every agent applied the policies within 30 s: "
                            f"{self.revisions()}")

    def wait_enforced(self, revision, label):
        """Server mode: every agent enforces the server's `revision` (its acked state)."""
        deadline = time.monotonic() + 30
        while True:
            got = {}
            for h in self.lab.status["hosts"]:
                r = self.lab.cmd("agent", "status", "--socket", h["agent_socket"], "-o", "json",
                                 check=False, timeout=10)
                try:
                    srv = json.loads(r.stdout).get("server", {})
                    got[h["name"]] = (srv.get("enforced_revision"), srv.get("last_error"))
                except json.JSONDecodeError:
                    got[h["name"]] = (None, r.stderr.strip())
            if all(e == revision for e, _ in got.values()):
                self.log(f"[{label}] every agent enforces server revision {revision}")
                return
            if time.monotonic() > deadline:
                raise diff.LabError(f"[{label}] not every agent enforces server revision "
                                    f"{revision} within 30 s: {got}")
            time.sleep(0.1)

    # -- checks --
    def check_topology(self):
        st = self.lab.status
        hosts = {h["name"]: h for h in st["hosts"]}
        if sorted(hosts) != HOSTS:
            self.fail(f"hosts {sorted(hosts)}, want {HOSTS}")
        if not st["core_netns"]:
            self.fail("no core netns in the lab's status")
        if st["control_plane"] != self.mode:
            self.fail(f"control plane {st['control_plane']}, want {self.mode}")
        if self.mode == "server" and not st["server"]["running"]:
            self.fail(f"the lab's server does not run: {st['server']}")
        r = self.lab.cmd("lab", "status", "--name", self.name, check=False)
        if r.returncode != 0 or f"host {HOSTS[2]}:" not in r.stdout:
            self.fail(f"lab status exited {r.returncode} (want 0, healthy):\n{r.stdout}{r.stderr}")
        for name, h in hosts.items():
            if not (h["agent"]["ready"] and h["agent"]["endpoints"] == 3):
                self.fail(f"agent of {name}: {h['agent']} (want ready with 3 endpoints)")
        for w in st["workloads"]:
            want = HOSTS[[f"{ns}/{n}" for ns, n, _, _ in diff.WORKLOADS].index(w["workload"])
                         % 3]
            if w["host"] != want:
                self.fail(f"{w['workload']} runs on {w['host']}, want {want}")
            # Its addresses come from its host's share of the subnets.
            subnets = hosts[w["host"]]["subnets"]
            for ip in w["ips"]:
                if not any(in_subnet(ip, s) for s in subnets):
                    self.fail(f"{w['workload']} has {ip}, outside {w['host']}'s {subnets}")

    def check_source_addresses(self):
        """No policy yet (all allowed): a listener in one host's workload sees the other
        host's pod address as the source, over IPv4 and IPv6 (nothing masquerades)."""
        pairs = [("dev/web", "dev/api"), ("ops/backup", "prod/db"), ("dev/db", "ops/monitor")]
        for src, dst in pairs:
            if self.host_of(src) == self.host_of(dst):
                self.fail(f"{src} and {dst} are on one host: the check needs two")
            for fam in FAMILIES:
                dst_ip, src_ip = self.lab.address(dst, fam), self.lab.address(src, fam)
                seen = self.peer_seen(src, dst, dst_ip, fam)
                if seen != src_ip:
                    self.fail(f"{src} ({self.host_of(src)}) -> {dst} ({self.host_of(dst)}) "
                              f"IPv{fam}: the destination saw source {seen!r}, want {src_ip}")
        self.log(f"source addresses kept across hosts ({len(pairs)} pairs, IPv4 and IPv6)")

    def peer_seen(self, src, dst, dst_ip, fam):
        af = "AF_INET6" if fam == 6 else "AF_INET"
        server = self.lab.in_netns(dst, [sys.executable, "-c", f"""
import socket, sys
s = socket.socket(socket.{af}, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(({dst_ip!r}, {SOURCE_CHECK_PORT})); s.listen(1); s.settimeout(10)
print("ready", flush=True)
c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""], stdout=subprocess.PIPE, text=True)
        try:
            if server.stdout.readline().strip() != "ready":
                return None
            client = self.lab.in_netns(src, [sys.executable, "-c", f"""
import socket
c = socket.create_connection(({dst_ip!r}, {SOURCE_CHECK_PORT}), timeout=5)
print(c.recv(100).decode())
"""], stdout=subprocess.PIPE, text=True)
            out, _ = client.communicate(timeout=15)
            return out.strip() or None
        finally:
            server.kill()
            server.wait()

    def compare(self, stage, must_cross=True):
        """The kernel's matrix equals simulate's off the diagonal; returns simulate's verdicts
        {(fam, proto, port): {(src, dst): allowed}} on the cross-host pairs."""
        t0 = time.monotonic()
        paths = [os.path.dirname(self.policy_file), self.lab.cluster]
        sim = {(p, port): diff.simulate_matrix(self.bh, paths, p, port)
               for p in PROTOCOLS for port in PORTS}
        kernel = self.lab.probe_matrix(PORTS, PROTOCOLS, FAMILIES)
        mismatches = []
        cross_allowed = cross_denied = 0
        for (fam, proto, port), km in sorted(kernel.items()):
            for (s, d), k in sorted(km.items()):
                if s == d:
                    continue
                want = sim[(proto, port)][(s, d)]
                if self.host_of(s) != self.host_of(d):
                    cross_allowed += want
                    cross_denied += not want
                if k != want:
                    mismatches.append((s, d, proto, port, fam, want, k))
        # A datagram may be lost: a kernel "blocked" where simulate allows is probed once more.
        if any(m[5] for m in mismatches):
            again = self.lab.probe_matrix(PORTS, PROTOCOLS, FAMILIES, timeout_ms=3000)
            mismatches = [m for m in mismatches
                          if not (m[5] and again[(m[4], m[2], m[3])][(m[0], m[1])])]
        self.log(f"[{stage}] {len(FAMILIES) * len(PROTOCOLS) * len(PORTS)} matrices: "
                 f"cross-host {cross_allowed} allowed, {cross_denied} denied by simulate; "
                 f"{len(mismatches)} disagree with the kernel ({time.monotonic() - t0:.1f} s)")
        for s, d, proto, port, fam, want, got in mismatches[:20]:
            self.fail(f"[{stage}] {s} ({self.host_of(s)}) -> {d} ({self.host_of(d)}) "
                      f"{proto}/{port} IPv{fam}: simulate {diff.word(want)}, kernel "
                      f"{diff.word(got)}")
        if mismatches:
            with open(self.policy_file, encoding="utf-8") as f:
                print(f"---- policies of [{stage}]\n{f.read()}---- end", file=sys.stderr)
        if must_cross and not (cross_allowed and cross_denied):
            self.fail(f"[{stage}] the policies must allow some and deny some cross-host flows "
                      f"(allowed {cross_allowed}, denied {cross_denied})")
        return {k: v for k, v in sim.items()}

    # -- the run --
    def run(self):
        self.log(f"multihost test: lab {self.name}, BULKHEAD_SEED={self.seed}")
        policies = os.path.join(self.tmp, "policies")
        os.mkdir(policies)
        self.policy_file = os.path.join(policies, "set.yaml")
        diff.write_file_atomically(self.policy_file, "# (no policy yet)\n")
        self.lab = diff.Lab(self.bh, self.name, self.lab_file(), policies, log=self.log)
        t = time.monotonic()
        self.lab.up_done = True  # from here on, down() has something to remove
        self.lab.cmd("lab", "up", "-f", self.lab.lab_file, "--policies", policies, "--name",
                     self.name, "--control-plane", self.mode, "-o", "json", timeout=300)
        self.lab.refresh()
        self.log(f"lab {self.name} ({self.mode}): up in {time.monotonic() - t:.1f} s")
        self.check_topology()
        if self.full:
            self.check_source_addresses()

        self.write_policies(FIXED, "fixed")
        sim = self.compare("fixed")
        if self.host_of(FLIP[0]) == self.host_of(FLIP[1]):
            self.fail(f"{FLIP} must be on two hosts")
        if not sim[("TCP", 8080)][FLIP] or sim[("TCP", 80)][FLIP]:
            self.fail(f"[fixed] simulate: {FLIP} should be allowed on TCP/8080, denied on TCP/80")

        self.write_policies(flipped(FIXED), "flipped")
        sim = self.compare("flipped")
        if sim[("TCP", 8080)][FLIP] or not sim[("TCP", 80)][FLIP]:
            self.fail(f"[flipped] simulate: {FLIP} should be denied on TCP/8080, allowed on "
                      "TCP/80")
        # Single probes of the flipped flow, by the lab's own exit codes.
        for fam in FAMILIES:
            for port, want in ((8080, False), (80, True)):
                ok, seen = self.lab.probe_one(FLIP[0], FLIP[1], "TCP", port, fam)
                if ok != want:
                    self.fail(f"[flipped] probe {FLIP[0]} -> {FLIP[1]} TCP/{port} IPv{fam}: "
                              f"{seen}, want {diff.word(want)}")

        if self.full:
            docs = diff.generate_set(self.rng)
            self.write_policies(docs, "random")
            self.compare("random", must_cross=False)

    def cleanup(self):
        ok = True
        if self.lab:
            t = time.monotonic()
            ok = self.lab.down()
            self.log(f"down in {time.monotonic() - t:.1f} s")
            left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                               text=True).stdout.split()
                    if n.startswith(f"bhlab-{self.name}_")]
            for path in (f"/run/bulkhead/lab/{self.name}", f"/sys/fs/bpf/bulkhead/lab-{self.name}"):
                if os.path.exists(path):
                    left.append(path)
            if left:
                self.fail(f"left after lab down: {left}")
                # Keep the machine clean anyway.
                for n in left:
                    if not n.startswith("/"):
                        subprocess.run(["ip", "netns", "del", n], check=False)
                    else:
                        shutil.rmtree(n, ignore_errors=True)
                ok = False
        shutil.rmtree(self.tmp, ignore_errors=True)
        if not ok:
            self.failures += 1


def killed_up(bulkhead, seed):
    """`lab up` of 3 hosts killed with -9 once its server and agents run, then `lab down`:
    nothing of the lab is left (netns, state, pins, the server and agent processes)."""
    name = f"mh{os.getpid() % 10000:04d}k{random.Random(seed).randrange(256):02x}"
    tmp = tempfile.mkdtemp(prefix="bh-multihost-k-")
    failures = []
    try:
        run = MultiHostRun(bulkhead, seed, "server", False)
        run.name = name
        shutil.rmtree(run.tmp, ignore_errors=True)
        run.tmp = tmp
        os.mkdir(os.path.join(tmp, "policies"))
        lab = run.lab_file()
        up = subprocess.Popen([bulkhead, "lab", "up", "-f", lab, "--policies",
                               os.path.join(tmp, "policies"), "--name", name],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = up.stderr.readline()
            if not line:
                break
            seen += line
            if "ready, revision" in line:  # the server and (at least) one agent run
                break
        up.kill()
        up.wait()
        if "ready, revision" not in seen:
            failures.append(f"lab up never got to its agents:\n{seen}")
        r = subprocess.run([bulkhead, "lab", "down", "--name", name], capture_output=True,
                           text=True, check=False)
        if r.returncode != 0:
            failures.append(f"lab down after a killed up exited {r.returncode}:\n{r.stderr}")
    finally:
        left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True).stdout.split()
                if n.startswith(f"bhlab-{name}_")]
        left += [p for p in (f"/run/bulkhead/lab/{name}", f"/sys/fs/bpf/bulkhead/lab-{name}")
                 if os.path.exists(p)]
        left += [f"process {p}" for p in subprocess.run(
            ["pgrep", "-f", f"/run/bulkhead/lab/{name}/"], capture_output=True,
            text=True).stdout.split()]
        if left:
            failures.append(f"left after lab down of the killed up: {left}")
            subprocess.run([bulkhead, "lab", "down", "--name", name], capture_output=True,
                           check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL: " + f, file=sys.stderr, flush=True)
    print(f"killed up then down: {'ok' if not failures else 'FAILED'}", flush=True)
    return len(failures)


def in_subnet(ip, cidr):
    import ipaddress
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


def main(argv):
    if len(argv) != 2:
        print(__doc__ or "usage: multihost_test.py PATH/TO/bulkhead", file=sys.stderr)
        return 2
    bulkhead = os.path.abspath(argv[1])
    if os.geteuid() != 0:
        print("SKIPPED: the multi-host lab test needs root (network namespaces, bpffs, TC); "
              "run it as root", file=sys.stderr)
        return 77
    if not os.access(os.path.join(os.path.dirname(bulkhead), "bulkhead-cni"), os.X_OK):
        print(f"FAIL: bulkhead-cni is not built next to {bulkhead}", file=sys.stderr)
        return 1
    seed = diff.seed_from_env()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    failures = 0
    # The server (the default with several hosts) in full; the standalone fallback with the
    # fixed set and its flip.
    for mode, full in (("server", True), ("standalone", False)):
        run = MultiHostRun(bulkhead, seed, mode, full)
        try:
            run.run()
        except (diff.LabError, RuntimeError, subprocess.SubprocessError, KeyboardInterrupt) as e:
            run.fail(str(e))
        finally:
            run.cleanup()
        failures += run.failures
        run.log(f"{mode}: " + ("ok" if run.failures == 0 else f"{run.failures} failures"))
    failures += killed_up(bulkhead, seed)
    print("PASS" if failures == 0 else f"FAILED: {failures} failures", flush=True)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
