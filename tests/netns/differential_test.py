#!/usr/bin/env python3
# netns differential test: random policy sets over a lab of 9 workloads in 3 namespaces; the
# kernel's verdicts on real TCP and UDP (IPv4 and IPv6, two ports) must equal
# `bulkhead simulate --matrix` on the same files, also after a policy update (connections that
# lost their allow are cut, the others survive) and across an agent kill -9 and restart.
# Also holds the random policy generator and its check without root.
#
#   differential_test.py run PATH/TO/bulkhead         the netns test (root; ctest label netns)
#   differential_test.py gencheck PATH/TO/bulkhead    generated sets are valid (no root)
#   differential_test.py generate [--sets N] DIR      writes a lab, its cluster and N sets
#   differential_test.py echo --port P[,P...]         (internal) TCP+UDP echo in a workload
#   differential_test.py hold                         (internal) long-lived connections, driven
#                                                     by JSON lines on stdin
#
# Seeded: the seed is printed; BULKHEAD_SEED=N replays a run. BULKHEAD_DIFF_SETS=N changes the
# number of random policy sets (default 3). BULKHEAD_DIFF_TOPOLOGY=static runs on a stand-in
# topology instead of `bulkhead lab` (development only; tests/netns/README.md).
import json
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True

# ----------------------------------------------------------------------------------------------
# The lab of the differential test.
# ----------------------------------------------------------------------------------------------

NAMESPACES = [
    ("dev", {"env": "dev", "team": "red"}),
    ("prod", {"env": "prod", "team": "blue", "pci": "true"}),
    ("ops", {"env": "ops", "team": "red"}),
]
# namespace, name, labels, service account
WORKLOADS = [
    ("dev", "web", {"app": "web", "tier": "front"}, "web"),
    ("dev", "api", {"app": "api", "tier": "back"}, "api"),
    ("dev", "db", {"app": "db", "tier": "back"}, "default"),
    ("prod", "web", {"app": "web", "tier": "front"}, "web"),
    ("prod", "api", {"app": "api", "tier": "back", "pci": "true"}, "api"),
    ("prod", "db", {"app": "db", "tier": "back", "pci": "true"}, "db"),
    ("ops", "monitor", {"app": "monitor", "role": "admin"}, "monitor"),
    ("ops", "backup", {"app": "backup", "role": "admin"}, "default"),
    ("ops", "web", {"app": "web", "tier": "front"}, "web"),
]
APPS = ["web", "api", "db", "monitor", "backup"]
SERVICE_ACCOUNTS = ["web", "api", "db", "monitor", "default"]
# The lab's servers answer TCP and UDP on these; the matrices are probed on each.
PROBE_PORTS = [80, 8080]
# Our own echo servers (this script's `echo`) hold the long-lived connections here.
HOLD_PORT = 9000
# Named ports the generated policies use; "nope" exists on no workload (it matches nothing).
PORT_NAMES = ["http", "alt", "alt-udp", "echo", "nope"]
# Named ports of the workloads by app: one name stands for different numbers (and protocols)
# on different workloads, so a named-port rule resolves per destination. The lab has no named
# ports yet (Lab files cannot declare them); the static topology and gencheck use these.
NAMED_PORTS = {
    "web": [("http", 80, "TCP"), ("alt", 8080, "TCP")],
    "api": [("http", 8080, "TCP"), ("echo", 9000, "TCP"), ("alt-udp", 8080, "UDP")],
    "db": [("alt", 80, "TCP"), ("echo", 9000, "UDP")],
    "monitor": [("alt-udp", 80, "UDP"), ("echo", 9000, "TCP")],
    "backup": [],
}

V4_SUBNET = "10.211.0.0/24"
V6_SUBNET = "fd00:b4:d1ff::/64"
# CIDRs for ipBlock / networks peers: some cover the lab's workloads (which an ipBlock never
# selects: workloads are selected by labels), some are entirely outside.
CIDRS_V4 = ["10.211.0.0/16", "10.0.0.0/8", "0.0.0.0/0", "192.0.2.0/24", "10.211.0.0/24"]
CIDRS_V6 = ["fd00:b4:d1ff::/48", "::/0", "2001:db8::/32", "fd00::/8"]
EXCEPTS = {
    "10.211.0.0/16": ["10.211.0.0/24", "10.211.0.128/25"],
    "10.0.0.0/8": ["10.211.0.0/16"],
    "0.0.0.0/0": ["10.0.0.0/8", "192.0.2.0/24"],
    "10.211.0.0/24": ["10.211.0.0/28"],
    "fd00:b4:d1ff::/48": ["fd00:b4:d1ff::/64"],
    "::/0": ["fd00::/8"],
    "fd00::/8": ["fd00:b4::/32"],
}


def named_ports_of(labels):
    return [{"name": n, "port": p, "protocol": pr} for n, p, pr in NAMED_PORTS[labels["app"]]]


def workload_ids():
    return [f"{ns}/{name}" for ns, name, _, _ in WORKLOADS]


# ----------------------------------------------------------------------------------------------
# A small YAML writer: block style for structure, flow style for small leaves; every string
# double-quoted (JSON escapes are valid YAML), so "y", "on" or "80" stay strings.
# ----------------------------------------------------------------------------------------------

def _flow(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def _emit(v, indent):
    pad = " " * indent
    lines = []
    if isinstance(v, dict):
        for k, x in v.items():
            f = _flow(x)
            rows = isinstance(x, list) and len(x) > 1 and any(isinstance(i, dict) for i in x)
            if not x or not isinstance(x, (dict, list)) or (len(f) + indent + len(k) < 90
                                                             and not rows):
                lines.append(f"{pad}{k}: {f}")
            elif isinstance(x, list):
                lines.append(f"{pad}{k}:")
                lines.extend(_emit(x, indent))
            else:
                lines.append(f"{pad}{k}:")
                lines.extend(_emit(x, indent + 2))
    elif isinstance(v, list):
        for x in v:
            f = _flow(x)
            if not isinstance(x, dict) or len(f) + indent < 88:
                lines.append(f"{pad}- {f}")
            else:
                sub = _emit(x, indent + 2)
                sub[0] = f"{pad}- " + sub[0].lstrip()
                lines.extend(sub)
    else:
        lines.append(pad + _flow(v))
    return lines


def to_yaml(doc):
    return "\n".join(_emit(doc, 0)) + "\n"


def to_yaml_stream(docs):
    return "---\n".join(to_yaml(d) for d in docs)


# ----------------------------------------------------------------------------------------------
# Lab file and the equivalent Inventory (for simulate without a lab).
# ----------------------------------------------------------------------------------------------

def lab_doc(name, rng):
    """The Lab. One namespace may run in audit or learn mode (chosen by the seed)."""
    modes = {}
    if rng.random() < 0.25:
        modes[rng.choice(NAMESPACES)[0]] = rng.choice(["audit", "learn"])
    namespaces = []
    for ns, labels in NAMESPACES:
        entry = {"name": ns, "labels": dict(labels)}
        if ns in modes:
            entry["mode"] = modes[ns]
        namespaces.append(entry)
    workloads = []
    for ns, name_, labels, sa in WORKLOADS:
        ports = [{"port": p, "protocol": proto} for p in PROBE_PORTS for proto in ("TCP", "UDP")]
        workloads.append({"namespace": ns, "name": name_, "labels": dict(labels),
                          "serviceAccount": sa, "ports": ports})
    return {"apiVersion": "bulkhead.io/v1alpha1", "kind": "Lab", "metadata": {"name": name},
            "spec": {"ipv4Subnet": V4_SUBNET, "ipv6Subnet": V6_SUBNET, "namespaces": namespaces,
                     "workloads": workloads}}


def cluster_doc(lab):
    """An Inventory with the lab's namespaces and workloads at made-up addresses in its subnets
    (what simulate needs when no lab runs: verdicts do not depend on the addresses)."""
    spec = lab["spec"]
    workloads = []
    for i, w in enumerate(spec["workloads"]):
        workloads.append({"name": w["name"], "namespace": w["namespace"], "labels": w["labels"],
                          "serviceAccount": w["serviceAccount"],
                          "ips": [f"10.211.0.{i + 2}", f"fd00:b4:d1ff::{i + 2:x}"],
                          "ports": named_ports_of(w["labels"])})
    return {"apiVersion": "bulkhead.io/v1alpha1", "kind": "Inventory",
            "metadata": {"name": lab["metadata"]["name"]},
            "spec": {"namespaces": spec["namespaces"], "workloads": workloads}}


# ----------------------------------------------------------------------------------------------
# The random policy generator. Every set it makes must load without errors (gencheck proves
# it with `bulkhead simulate`); it aims at a mix of allowed and denied flows.
# ----------------------------------------------------------------------------------------------

class Generator:
    def __init__(self, rng):
        self.rng = rng
        self.priorities = set()
        self.names = set()
        self.banp = False

    def pick(self, weighted):
        """weighted: [(weight, value or callable)]."""
        total = sum(w for w, _ in weighted)
        x = self.rng.uniform(0, total)
        for w, v in weighted:
            x -= w
            if x <= 0:
                return v() if callable(v) else v
        v = weighted[-1][1]
        return v() if callable(v) else v

    def name(self, stem):
        for i in range(1, 1000):
            n = f"{stem}-{i}"
            if n not in self.names:
                self.names.add(n)
                return n
        raise RuntimeError("out of names")

    # -- selectors --
    def pod_selector(self):
        r = self.rng
        return self.pick([
            (3, lambda: {}),
            (4, lambda: {"matchLabels": {"app": r.choice(APPS)}}),
            (2, lambda: {"matchLabels": {"tier": r.choice(["front", "back"])}}),
            (1, lambda: {"matchLabels": {"app": "web", "tier": "front"}}),
            (2, lambda: {"matchExpressions": [{"key": "app", "operator": "In",
                                               "values": sorted(r.sample(APPS, 2))}]}),
            (1, lambda: {"matchExpressions": [{"key": "app", "operator": "NotIn",
                                               "values": [r.choice(APPS)]}]}),
            (1, lambda: {"matchExpressions": [{"key": "role", "operator": "Exists"}]}),
            (1, lambda: {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            (1, lambda: {"matchLabels": {"pci": "true"}}),
            (1, lambda: {"matchLabels": {"tier": "back"},
                         "matchExpressions": [{"key": "pci", "operator": "DoesNotExist"}]}),
            (0.5, lambda: {"matchLabels": {"app": "nothing"}}),
        ])

    def ns_selector(self):
        r = self.rng
        names = [n for n, _ in NAMESPACES]
        return self.pick([
            (3, lambda: {}),
            (3, lambda: {"matchLabels": {"env": r.choice(names)}}),
            (2, lambda: {"matchLabels": {"team": r.choice(["red", "blue"])}}),
            (2, lambda: {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                               "operator": "In",
                                               "values": sorted(r.sample(names, 2))}]}),
            (1, lambda: {"matchExpressions": [{"key": "env", "operator": "NotIn",
                                               "values": [r.choice(names)]}]}),
            (1, lambda: {"matchExpressions": [{"key": "pci", "operator": "Exists"}]}),
            (1, lambda: {"matchExpressions": [{"key": "pci", "operator": "DoesNotExist"}]}),
        ])

    def cidr_peer(self):
        cidr = self.rng.choice(CIDRS_V4 + CIDRS_V6)
        block = {"cidr": cidr}
        if cidr in EXCEPTS and self.rng.random() < 0.5:
            block["except"] = [self.rng.choice(EXCEPTS[cidr])]
        return block

    # -- ports --
    def np_port(self):
        r = self.rng
        proto = lambda: r.choice(["TCP", "UDP"])  # noqa: E731
        return self.pick([
            (4, lambda: {"port": r.choice(PROBE_PORTS + [HOLD_PORT])}),
            (4, lambda: {"protocol": proto(), "port": r.choice(PROBE_PORTS + [HOLD_PORT])}),
            (1, lambda: {"protocol": proto()}),
            (2, lambda: {"protocol": proto(), "port": 80, "endPort": 8080}),
            (2, lambda: {"protocol": proto(), "port": 8000, "endPort": 9000}),
            (1, lambda: {"port": 81, "endPort": 65535}),
            (1, lambda: {"protocol": proto(), "port": 8081, "endPort": 8999}),
            (1, lambda: {"port": 443}),
            (1, lambda: {"protocol": "SCTP", "port": r.choice(PROBE_PORTS)}),
            (2, lambda: {"protocol": proto(), "port": r.choice(PORT_NAMES)}),
        ])

    def np_ports(self):
        if self.rng.random() < 0.4:
            return None
        return [self.np_port() for _ in range(self.rng.choice([1, 1, 2, 3]))]

    def anp_port(self):
        r = self.rng
        proto = lambda: r.choice(["TCP", "UDP"])  # noqa: E731
        return self.pick([
            (4, lambda: {"portNumber": {"protocol": proto(),
                                        "port": r.choice(PROBE_PORTS + [HOLD_PORT])}}),
            (2, lambda: {"portRange": {"protocol": proto(), "start": 80, "end": 8080}}),
            (2, lambda: {"portRange": {"protocol": proto(), "start": 8080, "end": 9000}}),
            (1, lambda: {"portRange": {"protocol": proto(), "start": 1, "end": 79}}),
            (1, lambda: {"namedPort": r.choice(PORT_NAMES)}),
            (1, lambda: {"portNumber": {"protocol": "SCTP", "port": 80}}),
        ])

    def anp_ports(self):
        if self.rng.random() < 0.45:
            return None
        return [self.anp_port() for _ in range(self.rng.choice([1, 1, 2]))]

    # -- namespace-tier kinds --
    def np_peer(self, native):
        r = self.rng
        choices = [
            (4, lambda: {"podSelector": self.pod_selector()}),
            (4, lambda: {"namespaceSelector": self.ns_selector()}),
            (3, lambda: {"namespaceSelector": self.ns_selector(),
                         "podSelector": self.pod_selector()}),
            (1.5, lambda: {"ipBlock": self.cidr_peer()}),
        ]
        if native:
            choices += [
                (1, lambda: {"serviceAccount": r.choice(SERVICE_ACCOUNTS)}),
                (1, lambda: {"namespaceSelector": self.ns_selector(),
                             "serviceAccount": r.choice(SERVICE_ACCOUNTS)}),
            ]
        return self.pick(choices)

    def np_rule(self, direction, native):
        key = "from" if direction == "ingress" else "to"
        rule = {}
        shape = self.rng.random()
        if shape < 0.15:
            pass  # every peer
        elif shape < 0.2:
            rule[key] = []  # an empty list is every peer too
        else:
            rule[key] = [self.np_peer(native) for _ in range(self.rng.choice([1, 1, 2]))]
        ports = self.np_ports()
        if ports is not None:
            rule["ports"] = ports
        return rule

    def network_policy(self, native):
        r = self.rng
        ns = r.choice(NAMESPACES)[0]
        kind = "BulkheadPolicy" if native else "NetworkPolicy"
        doc = {"apiVersion": "bulkhead.io/v1alpha1" if native else "networking.k8s.io/v1",
               "kind": kind,
               "metadata": {"name": self.name("bp" if native else "np"), "namespace": ns},
               "spec": {}}
        spec = doc["spec"]
        if native and r.random() < 0.3:
            spec["description"] = "generated"
        spec["podSelector"] = self.pod_selector()
        types = self.pick([(3, None), (3, ["Ingress"]), (2, ["Egress"]),
                           (3, ["Ingress", "Egress"])])
        if types is not None:
            spec["policyTypes"] = types
        ingress_on = types is None or "Ingress" in types
        egress_on = types is not None and "Egress" in types
        if types is None and r.random() < 0.4:
            egress_on = True  # defaulting adds Egress when egress has rules
        for direction, on in (("ingress", ingress_on), ("egress", egress_on)):
            if not on:
                continue
            n = r.choice([0, 1, 1, 2, 2, 3])
            if types is None and direction == "egress":
                n = max(n, 1)
            rules = []
            for i in range(n):
                rule = self.np_rule(direction, native)
                if native:
                    if r.random() < 0.3:
                        rule = {"action": "Deny", **rule}
                    elif r.random() < 0.3:
                        rule = {"action": "Allow", **rule}
                    if r.random() < 0.3:
                        rule = {"name": f"{direction}-{i}", **rule}
                rules.append(rule)
            if rules or r.random() < 0.5:
                spec[direction] = rules
        if native and r.random() < 0.15:
            spec["mode"] = "audit"
        elif not native and r.random() < 0.05:
            doc["metadata"]["annotations"] = {"bulkhead.io/mode": "audit"}
        return doc

    # -- cluster-scoped kinds --
    def anp_peer(self, direction, native):
        choices = [
            (4, lambda: {"namespaces": self.ns_selector()}),
            (4, lambda: {"pods": {"namespaceSelector": self.ns_selector(),
                                  "podSelector": self.pod_selector()}}),
        ]
        if direction == "egress" or native:
            choices.append((1.5, lambda: {"networks": sorted({self.rng.choice(CIDRS_V4 + CIDRS_V6)
                                                              for _ in range(2)})}))
        return self.pick(choices)

    def subject(self):
        return self.pick([
            (2, lambda: {"namespaces": self.ns_selector()}),
            (3, lambda: {"pods": {"namespaceSelector": self.ns_selector(),
                                  "podSelector": self.pod_selector()}}),
        ])

    def admin_rules(self, direction, actions, native):
        key = "from" if direction == "ingress" else "to"
        rules = []
        for i in range(self.rng.choice([1, 1, 2, 3])):
            rule = {"name": f"{direction}-{i}", "action": self.rng.choice(actions),
                    key: [self.anp_peer(direction, native)
                          for _ in range(self.rng.choice([1, 1, 2]))]}
            ports = self.anp_ports()
            if ports is not None:
                rule["ports"] = ports
            rules.append(rule)
        return rules

    def priority(self):
        while True:
            p = self.rng.randint(0, 1000)
            if p not in self.priorities:
                self.priorities.add(p)
                return p

    def admin_like(self, kind):
        r = self.rng
        baseline = kind == "BaselineAdminNetworkPolicy" or (
            kind == "BulkheadClusterPolicy" and r.random() < 0.4)
        actions = ["Allow", "Deny"] if baseline else ["Allow", "Deny", "Pass"]
        native = kind == "BulkheadClusterPolicy"
        api = "bulkhead.io/v1alpha1" if native else "policy.networking.k8s.io/v1alpha1"
        name = "default" if kind == "BaselineAdminNetworkPolicy" else self.name(
            "bcp" if native else "anp")
        spec = {}
        if native:
            spec["tier"] = "baseline" if baseline else "admin"
        if not baseline:
            spec["priority"] = self.priority()
        spec["subject"] = self.subject()
        directions = self.pick([(2, ["ingress"]), (2, ["egress"]), (1, ["ingress", "egress"])])
        for d in directions:
            spec[d] = self.admin_rules(d, actions, native)
        if native and r.random() < 0.15:
            spec["mode"] = "audit"
        return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}

    def default_deny(self):
        r = self.rng
        doc = {"apiVersion": "bulkhead.io/v1alpha1", "kind": "DefaultDeny",
               "metadata": {"name": self.name("zero-trust")}, "spec": {}}
        spec = doc["spec"]
        if r.random() < 0.4:
            doc["metadata"]["namespace"] = r.choice(NAMESPACES)[0]
        elif r.random() < 0.6:
            spec["namespaceSelector"] = self.ns_selector()
        if r.random() < 0.5:
            spec["podSelector"] = self.pod_selector()
        types = self.pick([(2, None), (2, ["Ingress"]), (2, ["Egress"]),
                           (1, ["Ingress", "Egress"])])
        if types is not None:
            spec["policyTypes"] = types
        if r.random() < 0.15:
            spec["mode"] = "audit"
        return doc

    def policy(self):
        kinds = [(8, "NetworkPolicy"), (4, "BulkheadPolicy"), (3, "AdminNetworkPolicy"),
                 (2, "BulkheadClusterPolicy"), (2, "DefaultDeny")]
        if not self.banp:
            kinds.append((1.5, "BaselineAdminNetworkPolicy"))
        kind = self.pick(kinds)
        if kind == "NetworkPolicy":
            return self.network_policy(native=False)
        if kind == "BulkheadPolicy":
            return self.network_policy(native=True)
        if kind == "DefaultDeny":
            return self.default_deny()
        if kind == "BaselineAdminNetworkPolicy":
            self.banp = True
        return self.admin_like(kind)

    def policy_set(self, n=None):
        n = n if n is not None else self.rng.randint(2, 6)
        return [self.policy() for _ in range(n)]


def generate_set(rng, n=None):
    return Generator(rng).policy_set(n)


def mutate_set(rng, docs):
    """A policy update: some policies dropped, some added, the rest kept as they are. Names
    and priorities of the kept ones stay reserved, so the result is valid too."""
    g = Generator(rng)
    kept = []
    for d in docs:
        if rng.random() < 0.35:
            continue
        kept.append(d)
        g.names.add(d["metadata"]["name"])
        if "priority" in d.get("spec", {}):
            g.priorities.add(d["spec"]["priority"])
        if d["kind"] == "BaselineAdminNetworkPolicy":
            g.banp = True
    added = [g.policy() for _ in range(rng.randint(1, 3))]
    return kept + added


def set_text(docs, seed, label):
    head = f"# {label}: generated by tests/netns/differential_test.py, BULKHEAD_SEED={seed}\n"
    if not docs:
        return head + "# (no policy)\n"
    return head + to_yaml_stream(docs)


# ----------------------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------------------

def simulate_matrix(bulkhead, paths, protocol, port):
    """simulate --matrix on `paths`: {(src, dst): True when allowed}. Raises with simulate's
    diagnostics when the files do not load."""
    cmd = [bulkhead, "simulate"]
    for p in paths:
        cmd += ["-f", p]
    cmd += ["--matrix", "--port", str(port), "--protocol", protocol.upper(), "-o", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {r.returncode}:\n{r.stderr.rstrip()}")
    doc = json.loads(r.stdout)
    return {(s, d): v == "allow" for s, row in doc["matrix"].items() for d, v in row.items()}


def simulate_explain(bulkhead, paths, src, dst, protocol, port):
    cmd = [bulkhead, "simulate"]
    for p in paths:
        cmd += ["-f", p]
    cmd += ["--from", src, "--to", dst, "--port", str(port), "--protocol", protocol.upper()]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (r.stdout + r.stderr).rstrip()


def write_file_atomically(path, text):
    """One rename, so a watcher sees the old content or the new one, never a mix."""
    tmp = os.path.join(os.path.dirname(os.path.dirname(path)), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# gencheck: the generator's sets are valid and varied (no root; ctest label unit)
# ----------------------------------------------------------------------------------------------

def gencheck(bulkhead, sets=30, first_seed=1):
    rng = random.Random(0)
    lab = lab_doc("gencheck", rng)
    failures = 0
    kinds = {}
    allowed = total = 0
    all_allow_sets = all_deny_sets = 0
    with tempfile.TemporaryDirectory(prefix="bh-gencheck-") as tmp:
        cluster = os.path.join(tmp, "cluster.yaml")
        with open(cluster, "w", encoding="utf-8") as f:
            f.write(to_yaml(cluster_doc(lab)))
        policies = os.path.join(tmp, "policies.yaml")
        for seed in range(first_seed, first_seed + sets):
            srng = random.Random(seed)
            docs = generate_set(srng)
            updated = mutate_set(srng, docs)
            for label, d in (("set", docs), ("update", updated)):
                with open(policies, "w", encoding="utf-8") as f:
                    f.write(set_text(d, seed, label))
                for doc in d:
                    kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
                set_allowed = set_total = 0
                try:
                    for proto in ("TCP", "UDP"):
                        for port in PROBE_PORTS + [HOLD_PORT]:
                            m = simulate_matrix(bulkhead, [cluster, policies], proto, port)
                            for (s, dd), ok in m.items():
                                if s != dd:
                                    set_total += 1
                                    set_allowed += ok
                except RuntimeError as e:
                    failures += 1
                    print(f"FAIL: seed {seed} {label}: the generated set does not load:\n{e}\n"
                          f"---- the set\n{set_text(d, seed, label)}", file=sys.stderr)
                    continue
                allowed += set_allowed
                total += set_total
                all_allow_sets += set_allowed == set_total
                all_deny_sets += set_allowed == 0
    print(f"{2 * sets} generated sets (seeds {first_seed}..{first_seed + sets - 1}, each with "
          f"its update): {failures} invalid")
    print("kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    if total:
        print(f"flows allowed: {allowed} of {total} ({100.0 * allowed / total:.0f}%); "
              f"sets allowing everything: {all_allow_sets}, denying everything: {all_deny_sets}")
    # Variety: every kind appears, and both verdicts are common. These hold for the fixed
    # seeds of the ctest; a generator change that breaks them makes the differential test weak.
    want_kinds = {"NetworkPolicy", "BulkheadPolicy", "AdminNetworkPolicy",
                  "BaselineAdminNetworkPolicy", "BulkheadClusterPolicy", "DefaultDeny"}
    missing = want_kinds - set(kinds)
    if missing:
        print(f"FAIL: no generated set has {sorted(missing)}", file=sys.stderr)
        failures += 1
    if total and not 0.2 <= allowed / total <= 0.8:
        print("FAIL: the generated sets are lopsided (allowed share outside 20-80%)",
              file=sys.stderr)
        failures += 1
    return 1 if failures else 0


def generate_cmd(args):
    """generate [--sets N] DIR: the lab, its cluster and N sets (with their updates)."""
    sets = 3
    if args[:1] == ["--sets"]:
        sets = int(args[1])
        args = args[2:]
    if len(args) != 1:
        print("usage: differential_test.py generate [--sets N] DIR", file=sys.stderr)
        return 2
    out = args[0]
    seed = seed_from_env()
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    lab = lab_doc("diff", rng)
    with open(os.path.join(out, "lab.yaml"), "w", encoding="utf-8") as f:
        f.write(to_yaml(lab))
    with open(os.path.join(out, "cluster.yaml"), "w", encoding="utf-8") as f:
        f.write(to_yaml(cluster_doc(lab)))
    for i in range(sets):
        docs = generate_set(rng)
        for label, d in ((f"set{i + 1}", docs), (f"set{i + 1}-update", mutate_set(rng, docs))):
            os.makedirs(os.path.join(out, label), exist_ok=True)
            with open(os.path.join(out, label, "policies.yaml"), "w", encoding="utf-8") as f:
                f.write(set_text(d, seed, label))
    print(f"seed {seed}: wrote the lab and {sets} sets under {out}")
    return 0


def seed_from_env():
    s = os.environ.get("BULKHEAD_SEED")
    if s:
        return int(s)
    return random.SystemRandom().randrange(1, 2**31)


# ----------------------------------------------------------------------------------------------
# Inside a workload's netns: an echo server, and a client that holds long-lived connections.
# ----------------------------------------------------------------------------------------------

def echo_server(ports):
    """TCP and UDP echo on [::]:port for each port, both families (dual-stack sockets).
    Prints "ready" once all listen."""
    sel = selectors.DefaultSelector()
    listeners = []
    for port, kind in [(p, k) for p in ports for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM)]:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        if kind == socket.SOCK_STREAM:
            s.listen(512)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listen" if kind == socket.SOCK_STREAM else "udp")
        listeners.append(s)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            try:
                if key.data == "listen":
                    c, _ = s.accept()
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, "conn")
                elif key.data == "udp":
                    data, peer = s.recvfrom(2048)
                    s.sendto(data, peer)
                else:
                    data = s.recv(4096)
                    if not data:
                        sel.unregister(s)
                        s.close()
                    else:
                        s.send(data)  # small lines: the send buffer always has room
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                if key.data == "conn":
                    sel.unregister(s)
                    s.close()


def hold_client():
    """Long-lived connections from this netns, driven by JSON lines on stdin:
      {"op": "open", "targets": [{"id", "proto", "dst", "port"}], "timeout": S}
        -> {"opened": {id: "ok" | "failed: why"}}   (TCP connect, or a UDP exchange)
      {"op": "check", "token": T, "timeout": S}
        -> {"checked": {id: "alive" | "dead" | "closed: why"}}   (T echoed on each, in time?)
    Every connection keeps its 5-tuple for its whole life."""
    conns = {}  # id -> socket

    def exchange(targets, token, timeout):
        """Sends token+id on each, waits until each echoes it or the time is up."""
        sel = selectors.DefaultSelector()
        want = {}
        result = {}
        bufs = {}
        for i in targets:
            s = conns.get(i)
            if s is None:
                continue
            msg = f"{token}-{i}\n".encode()
            try:
                s.send(msg)
            except OSError as e:
                result[i] = f"closed: {e.strerror or e}"
                continue
            want[i] = msg
            bufs[i] = b""
            sel.register(s, selectors.EVENT_READ, i)
        deadline = time.monotonic() + timeout
        while want and time.monotonic() < deadline:
            for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
                i = key.data
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    result[i] = f"closed: {e.strerror or e}"
                    sel.unregister(s)
                    want.pop(i, None)
                    continue
                if not data and s.type == socket.SOCK_STREAM:
                    result[i] = "closed: the peer closed it"
                    sel.unregister(s)
                    want.pop(i, None)
                    continue
                bufs[i] += data
                if want.get(i) and want[i] in bufs[i]:
                    result[i] = "alive"
                    sel.unregister(s)
                    del want[i]
        for i in want:
            result[i] = "dead"
            sel.unregister(conns[i])
        sel.close()
        return result

    for line in sys.stdin:
        req = json.loads(line)
        timeout = float(req.get("timeout", 2.0))
        if req["op"] == "open":
            opened = {}
            pending = {}
            sel = selectors.DefaultSelector()
            for t in req["targets"]:
                fam = socket.AF_INET6 if ":" in t["dst"] else socket.AF_INET
                kind = socket.SOCK_STREAM if t["proto"] == "tcp" else socket.SOCK_DGRAM
                s = socket.socket(fam, kind)
                s.setblocking(False)
                try:
                    s.connect((t["dst"], int(t["port"])))
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    opened[t["id"]] = f"failed: {e.strerror or e}"
                    s.close()
                    continue
                if kind == socket.SOCK_STREAM:
                    pending[t["id"]] = s
                    sel.register(s, selectors.EVENT_WRITE, t["id"])
                else:
                    conns[t["id"]] = s
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
                    s = key.fileobj
                    sel.unregister(s)
                    del pending[key.data]
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        opened[key.data] = f"failed: {os.strerror(err)}"
                        s.close()
                    else:
                        conns[key.data] = s
            for i, s in pending.items():
                opened[i] = "failed: connect timed out"
                s.close()
            sel.close()
            # A connection is open when one exchange went through (UDP: the only proof).
            new = [t["id"] for t in req["targets"] if t["id"] in conns and t["id"] not in opened]
            for i, r in exchange(new, "open", timeout).items():
                if r == "alive":
                    opened[i] = "ok"
                else:
                    opened[i] = "failed: " + ("no echo" if r == "dead" else r)
                    conns.pop(i).close()
            print(json.dumps({"opened": opened}), flush=True)
        elif req["op"] == "check":
            print(json.dumps({"checked": exchange(list(conns), req["token"], timeout)}),
                  flush=True)
        else:
            print(json.dumps({"error": f"unknown op {req['op']}"}), flush=True)


# ----------------------------------------------------------------------------------------------
# The lab, driven through `bulkhead lab` (docs/lab.md) and the agent's local API.
# ----------------------------------------------------------------------------------------------

class LabError(RuntimeError):
    pass


class Lab:
    """One `bulkhead lab` brought up for a test; `down()` removes it (also after failures)."""

    def __init__(self, bulkhead, name, lab_file, policies_dir, log=print):
        self.bh = bulkhead
        self.name = name
        self.lab_file = lab_file
        self.policies_dir = policies_dir
        self.log = log
        self.status = None
        self.up_done = False

    def cmd(self, *args, check=True, timeout=120):
        r = subprocess.run([self.bh, *args], capture_output=True, text=True, timeout=timeout,
                           check=False)
        if check and r.returncode != 0:
            raise LabError(f"`bulkhead {' '.join(args)}` exited {r.returncode}:\n"
                           f"{(r.stdout + r.stderr).rstrip()}")
        return r

    def up(self):
        self.up_done = True  # from here on, down() has something to remove
        t0 = time.monotonic()
        self.cmd("lab", "up", "-f", self.lab_file, "--policies", self.policies_dir, "--name",
                 self.name, "-o", "json", timeout=300)
        self.refresh()
        self.log(f"lab {self.name}: up in {time.monotonic() - t0:.1f} s, "
                 f"{len(self.status['workloads'])} workloads, agent pid {self.agent_pid()}")

    def refresh(self):
        r = self.cmd("lab", "status", "--name", self.name, "-o", "json", check=False)
        try:
            self.status = json.loads(r.stdout)
        except json.JSONDecodeError as e:
            raise LabError(f"`bulkhead lab status` printed no JSON ({e}):\n{r.stdout}{r.stderr}")
        return self.status

    def down(self):
        if not self.up_done:
            return True
        r = self.cmd("lab", "down", "--name", self.name, check=False, timeout=300)
        if r.returncode != 0:
            self.log(f"lab down failed:\n{(r.stdout + r.stderr).rstrip()}")
            return False
        return True

    # -- facts --
    @property
    def cluster(self):
        return self.status["cluster_inventory"]

    @property
    def agent_socket(self):
        return self.status["agent_socket"]

    def workloads(self):
        return sorted(w["workload"] for w in self.status["workloads"])

    def netns_path(self, workload):
        for w in self.status["workloads"]:
            if w["workload"] == workload:
                ns = w["netns"]
                return ns if ns.startswith("/") else f"/run/netns/{ns}"
        raise LabError(f"no workload {workload}")

    def address(self, workload, family):
        for w in self.status["workloads"]:
            if w["workload"] == workload:
                for ip in w["ips"]:
                    if (":" in ip) == (family == 6):
                        return ip
        raise LabError(f"{workload} has no IPv{family} address")

    def host_netns_path(self):
        ns = self.status["host_netns"]
        return ns if ns.startswith("/") else f"/run/netns/{ns}"

    def agent_pid(self):
        return self.status["agent"]["pid"]

    # -- the agent --
    def agent_status(self):
        r = self.cmd("agent", "status", "--socket", self.agent_socket, "-o", "json", check=False,
                     timeout=10)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError:
            return None

    def revision(self):
        st = self.agent_status()
        return st.get("revision") if st else None

    def wait_revision_change(self, old, timeout=20.0):
        """Waits until the agent has applied a revision other than `old`; returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            st = self.agent_status()
            if st and st.get("ready") and st.get("revision") not in (None, "", old):
                return st["revision"]
            if st and st.get("last_error"):
                last = st["last_error"]
            time.sleep(0.05)
        raise LabError(f"the agent did not apply a new revision within {timeout:.0f} s "
                       f"(still {old}; last error: {last or 'none'})")

    def explain(self, src, dst, protocol, port):
        r = self.cmd("explain", "--socket", self.agent_socket, "--from", src, "--to", dst, "--port",
                     str(port), "--protocol", protocol.lower(), check=False, timeout=10)
        return (r.stdout + r.stderr).rstrip()

    # -- probes --
    def probe_matrix(self, ports, protocols, families, timeout_ms=None):
        """{(family, PROTO, port): {(src, dst): allowed}} from one concurrent `lab probe
        --matrix`; diagonal included (a workload to itself never leaves its netns)."""
        args = ["lab", "probe", "--name", self.name, "--matrix",
                "--port", ",".join(str(p) for p in ports),
                "--protocol", ",".join(p.lower() for p in protocols),
                "--family", ",".join(str(f) for f in families), "-o", "json"]
        if timeout_ms:
            args += ["--timeout", str(timeout_ms)]
        try:
            # Every probe has its own timeout (1 s by default): a minute means a hung prober.
            r = self.cmd(*args, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            raise LabError(f"`bulkhead {' '.join(args)}` did not finish within 60 s: the lab's "
                           "prober hung (no verdict was read)") from None
        if r.returncode != 0:
            raise LabError(f"`bulkhead {' '.join(args)}` exited {r.returncode}:\n"
                           f"{r.stderr.rstrip()}")
        doc = json.loads(r.stdout)
        if isinstance(doc, dict):
            doc = [dict(doc, family=families[0])]
        out = {}
        for m in doc:
            key = (int(m["family"]), m["protocol"].upper(), int(m["port"]))
            out[key] = {(s, d): v == "allow" for s, row in m["matrix"].items()
                        for d, v in row.items()}
        return out

    def probe_one(self, src, dst, protocol, port, family):
        """(allowed, what the probe saw) for one flow."""
        r = self.cmd("lab", "probe", "--name", self.name, "--from", src, "--to", dst, "--port",
                     str(port), "--protocol", protocol.lower(), "--family", str(family),
                     "-o", "json", check=False)
        try:
            j = json.loads(r.stdout)
            seen = f"{j['result']} ({j['outcome']}{': ' + j['detail'] if j.get('detail') else ''}, "\
                   f"{j['millis']:.0f} ms, to {j['address']})"
        except (json.JSONDecodeError, KeyError):
            seen = (r.stdout + r.stderr).strip()
        return r.returncode == 0, seen

    def in_netns(self, workload, argv, **kw):
        return subprocess.Popen(["nsenter", f"--net={self.netns_path(workload)}", *argv], **kw)


class StaticTopology(Lab):
    """A stand-in for `bulkhead lab` (BULKHEAD_DIFF_TOPOLOGY=static): workloads in netns behind
    a router netns, the standalone agent on a static Inventory (netns + hostInterface), this
    script's echo servers and probes. For developing the test where the lab is broken or
    missing; the ctest always uses the lab."""

    def __init__(self, bulkhead, name, lab_file_doc, policies_dir, log=print):
        super().__init__(bulkhead, name, None, policies_dir, log)
        self.doc = lab_file_doc
        self.tag = f"bhd{os.getpid() % 100000}"
        self.dir = os.path.join(os.path.dirname(policies_dir), "static")
        self.procs = []
        self.netns = []
        self.agent = None

    def sh(self, *argv):
        r = subprocess.run(argv, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise LabError(f"`{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()}")

    def ns(self, n, *argv):
        self.sh("nsenter", f"--net=/run/netns/{n}", *argv)

    def up(self):
        self.up_done = True
        os.makedirs(os.path.join(self.dir, "bpffs"), exist_ok=True)
        router = f"{self.tag}r"
        self.sh("ip", "netns", "add", router)
        self.netns.append(router)
        self.ns(router, "ip", "link", "set", "lo", "up")
        self.ns(router, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
        workloads = []
        ports = [p for p in PROBE_PORTS]
        spec = self.doc["spec"]
        for i, w in enumerate(spec["workloads"]):
            n, h = f"{self.tag}w{i}", f"{self.tag}h{i}"
            v4, v6 = f"10.211.0.{i + 2}", f"fd00:b4:d1ff::{i + 2:x}"
            self.sh("ip", "netns", "add", n)
            self.netns.append(n)
            self.ns(n, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.accept_dad=0")
            self.sh("ip", "link", "add", h, "netns", router, "type", "veth", "peer", "name",
                    "eth0", "netns", n)
            self.ns(n, "ip", "link", "set", "lo", "up")
            self.ns(n, "ip", "addr", "add", f"{v4}/32", "dev", "eth0")
            self.ns(n, "ip", "-6", "addr", "add", f"{v6}/128", "dev", "eth0", "nodad")
            self.ns(n, "ip", "link", "set", "eth0", "up")
            self.ns(n, "ip", "route", "add", "default", "dev", "eth0")
            self.ns(router, "sysctl", "-qw", f"net.ipv4.conf.{h}.proxy_arp=1",
                    f"net.ipv4.conf.{h}.rp_filter=0", f"net.ipv4.neigh.{h}.proxy_delay=0")
            self.ns(router, "ip", "-6", "addr", "add", "fe80::1/64", "dev", h, "nodad")
            self.ns(router, "ip", "link", "set", h, "up")
            self.ns(n, "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
            self.ns(router, "ip", "route", "add", f"{v4}/32", "dev", h)
            self.ns(router, "ip", "-6", "route", "add", f"{v6}/128", "dev", h)
            wid = f"{w['namespace']}/{w['name']}"
            workloads.append({"workload": wid, "netns": n, "ips": [v4, v6], "host_interface": h,
                              "inv": {"name": w["name"], "namespace": w["namespace"],
                                      "labels": w["labels"],
                                      "serviceAccount": w["serviceAccount"], "ips": [v4, v6],
                                      "ports": named_ports_of(w["labels"]),
                                      "netns": n, "hostInterface": h}})
            p = subprocess.Popen(["nsenter", f"--net=/run/netns/{n}", sys.executable,
                                  os.path.abspath(__file__), "echo", "--port",
                                  ",".join(str(x) for x in ports)],
                                 stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            if p.stdout.readline().strip() != "ready":
                raise LabError(f"echo server in {n} did not start")
        inv = {"apiVersion": "bulkhead.io/v1alpha1", "kind": "Inventory",
               "metadata": {"name": "static"},
               "spec": {"namespaces": spec["namespaces"],
                        "workloads": [w["inv"] for w in workloads]}}
        inventory = os.path.join(self.dir, "inventory.yaml")
        with open(inventory, "w", encoding="utf-8") as f:
            f.write(to_yaml(inv))
        self.sh("mount", "-t", "bpf", "bpf", os.path.join(self.dir, "bpffs"))
        self.status = {"cluster_inventory": inventory, "agent_socket":
                       os.path.join(self.dir, "agent.sock"), "host_netns": router,
                       "agent_log": os.path.join(self.dir, "agent.log"),
                       "workloads": workloads, "agent": {}}
        argv = [self.bh, "agent", "--policies", self.policies_dir, "--inventory", inventory,
                "--state-dir", os.path.join(self.dir, "state"), "--pin-root",
                os.path.join(self.dir, "bpffs", "bulkhead"), "--socket", self.agent_socket]
        log = open(self.status["agent_log"], "ab")  # noqa: SIM115
        self.agent = subprocess.Popen(["nsenter", f"--net=/run/netns/{router}", *argv],
                                      stdout=log, stderr=log, start_new_session=True)
        log.close()
        for _ in range(200):
            st = self.agent_status()
            if st and st.get("ready"):
                break
            time.sleep(0.1)
        else:
            raise LabError("the agent did not become ready")
        self.status["agent"]["pid"] = self.agent.pid
        self.log(f"static topology {self.tag}: {len(workloads)} workloads, agent pid "
                 f"{self.agent.pid}")

    def refresh(self):
        return self.status

    def down(self):
        for p in self.procs:
            p.kill()
        for n in self.netns:
            r = subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        if self.agent and self.agent.poll() is None:
            self.agent.kill()
        for n in self.netns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        subprocess.run(["umount", os.path.join(self.dir, "bpffs")], capture_output=True)
        return True

    def probe_matrix(self, ports, protocols, families, timeout_ms=None):
        ws = self.workloads()
        procs = {}
        for s in ws:
            targets = [{"id": f"{f}|{pr}|{po}|{d}", "proto": pr.lower(),
                        "dst": self.address(d, f), "port": po}
                       for f in families for pr in protocols for po in ports for d in ws]
            p = self.in_netns(s, [sys.executable, os.path.abspath(__file__), "hold"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            p.stdin.write(json.dumps({"op": "open", "targets": targets,
                                      "timeout": (timeout_ms or 1000) / 1000}) + "\n")
            p.stdin.close()
            procs[s] = p
        out = {}
        for s, p in procs.items():
            resp = json.loads(p.stdout.readline())
            p.wait()
            for cid, r in resp["opened"].items():
                f, pr, po, d = cid.split("|")
                out.setdefault((int(f), pr.upper(), int(po)), {})[(s, d)] = r == "ok"
        return out

    def probe_one(self, src, dst, protocol, port, family):
        m = self.probe_matrix([port], [protocol], [family], 2000)
        ok = m[(family, protocol.upper(), port)][(src, dst)]
        return ok, "connected" if ok else "blocked"


class HoldClients:
    """One `hold` client per source workload: long-lived TCP and UDP connections."""

    def __init__(self, lab, script):
        self.lab = lab
        self.procs = {}
        for w in lab.workloads():
            self.procs[w] = lab.in_netns(w, [sys.executable, script, "hold"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, bufsize=1)

    def _ask(self, w, req):
        p = self.procs[w]
        p.stdin.write(json.dumps(req) + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if not line:
            raise LabError(f"the hold client in {w} died")
        return json.loads(line)

    def _all(self, reqs):
        """Sends every request first, then reads: the clients work in parallel."""
        for w, req in reqs.items():
            self.procs[w].stdin.write(json.dumps(req) + "\n")
            self.procs[w].stdin.flush()
        out = {}
        for w in reqs:
            line = self.procs[w].stdout.readline()
            if not line:
                raise LabError(f"the hold client in {w} died")
            out[w] = json.loads(line)
        return out

    def open(self, conns):
        """conns: [(src, dst, proto, family)] -> {conn: "ok" | "failed: ..."}."""
        reqs = {}
        for src, dst, proto, fam in conns:
            reqs.setdefault(src, {"op": "open", "targets": [], "timeout": 3})
            reqs[src]["targets"].append({"id": f"{proto}{fam}:{dst}", "proto": proto,
                                         "dst": self.lab.address(dst, fam), "port": HOLD_PORT})
        out = {}
        for src, resp in self._all(reqs).items():
            for cid, res in resp["opened"].items():
                proto, rest = cid[:3], cid[3:]
                fam, dst = rest.split(":", 1)
                out[(src, dst, proto, int(fam))] = res
        return out

    def check(self, token):
        """{conn: "alive" | "dead" | "closed: ..."} for every open connection."""
        out = {}
        resps = self._all({w: {"op": "check", "token": token, "timeout": 2}
                           for w in self.procs})
        for src, resp in resps.items():
            for cid, res in resp["checked"].items():
                proto, rest = cid[:3], cid[3:]
                fam, dst = rest.split(":", 1)
                out[(src, dst, proto, int(fam))] = res
        return out

    def close(self):
        for p in self.procs.values():
            try:
                p.stdin.close()
            except OSError:
                pass
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = {}


def word(allowed):
    return "allow" if allowed else "deny"


class DifferentialRun:
    FAMILIES = [4, 6]
    PROTOCOLS = ["TCP", "UDP"]
    MAX_DETAILS = 12  # fully explained mismatches per stage; the rest are counted

    def __init__(self, bulkhead, seed, sets):
        self.bh = bulkhead
        self.seed = seed
        self.sets = sets
        self.rng = random.Random(seed)
        self.failures = 0
        self.tmp = None
        self.lab = None
        self.echo = []
        self.holds = None
        self.restarted_agent = None
        self.policy_file = None
        self.compared = 0

    def log(self, msg):
        print(msg, flush=True)

    def fail(self, msg):
        self.failures += 1
        print("FAIL: " + msg, file=sys.stderr, flush=True)

    def simulate_paths(self):
        return [self.lab.policies_dir, self.lab.cluster]

    def show_policies(self, stage):
        with open(self.policy_file, encoding="utf-8") as f:
            text = f.read()
        print(f"---- policies of stage '{stage}' ({self.policy_file}, BULKHEAD_SEED={self.seed})\n"
              f"{text}---- end of policies", file=sys.stderr, flush=True)

    # -- stages --
    def write_policies(self, docs, label):
        old = self.lab.revision() if self.lab else None
        write_file_atomically(self.policy_file, set_text(docs, self.seed, label))
        if self.lab:
            rev = self.lab.wait_revision_change(old)
            self.log(f"[{label}] the agent applied revision {rev}")

    def check_matrices(self, stage, families=None, ports=None, agent_up=True):
        """The kernel's verdicts for every ordered pair against simulate's; returns the
        number of mismatches. Kernel 'blocked' where simulate allows is probed once more
        (a lost datagram is not a verdict); kernel 'connected' where simulate denies never is."""
        families = families or self.FAMILIES
        ports = ports or PROBE_PORTS
        t0 = time.monotonic()
        sim = {(proto, port): simulate_matrix(self.bh, self.simulate_paths(), proto, port)
               for proto in self.PROTOCOLS for port in ports}
        kernel = self.lab.probe_matrix(ports, self.PROTOCOLS, families)
        mismatches = []
        compared = allowed = 0
        for (fam, proto, port), km in sorted(kernel.items()):
            sm = sim[(proto, port)]
            for (s, d), k_allowed in sorted(km.items()):
                if s == d:
                    continue
                if (s, d) not in sm:
                    self.fail(f"[{stage}] simulate has no verdict for {s} -> {d}")
                    continue
                compared += 1
                allowed += sm[(s, d)]
                if k_allowed != sm[(s, d)]:
                    mismatches.append((s, d, proto, port, fam, sm[(s, d)], k_allowed))
        real = [m for m in mismatches if not m[5]]
        blocked = [m for m in mismatches if m[5]]
        if blocked:
            # One more matrix (3 s per probe), never more: a flow that connects in it was a
            # lost datagram.
            again = self.lab.probe_matrix(ports, self.PROTOCOLS, families, timeout_ms=3000)
            for m in blocked:
                s, d, proto, port, fam = m[:5]
                if again[(fam, proto, port)][(s, d)]:
                    self.log(f"[{stage}] note: {s} -> {d} {proto}/{port} IPv{fam} was blocked in "
                             "the matrix, connected when probed again")
                else:
                    real.append(m)
        self.compared += compared
        self.log(f"[{stage}] {compared} flows (IPv{'+'.join(map(str, families))}, "
                 f"{'+'.join(self.PROTOCOLS)}, ports {','.join(map(str, ports))}): "
                 f"{allowed} allowed, {compared - allowed} denied by simulate; "
                 f"{len(real)} disagree with the kernel ({time.monotonic() - t0:.1f} s)")
        if real:
            self.report(stage, real, agent_up)
        return len(real)

    def report(self, stage, mismatches, agent_up):
        self.fail(f"[{stage}] the kernel and simulate disagree on {len(mismatches)} flows "
                  f"(BULKHEAD_SEED={self.seed})")
        self.show_policies(stage)
        for i, (s, d, proto, port, fam, want, got) in enumerate(mismatches):
            head = (f"[{stage}] {s} -> {d} {proto}/{port} IPv{fam}: simulate {word(want)}, "
                    f"kernel {word(got)}")
            if i >= 5 * self.MAX_DETAILS:
                print(f"[{stage}] ... and {len(mismatches) - i} more", file=sys.stderr)
                break
            if i >= self.MAX_DETAILS:
                print(head, file=sys.stderr)
                continue
            _, seen = self.lab.probe_one(s, d, proto, port, fam)
            print(f"{head}\n  kernel probe again: {seen}\n  simulate says:\n    " +
                  simulate_explain(self.bh, self.simulate_paths(), s, d, proto, port)
                  .replace("\n", "\n    "), file=sys.stderr)
            if agent_up:
                print("  the agent's tables say:\n    " +
                      self.lab.explain(s, d, proto, port).replace("\n", "\n    "),
                      file=sys.stderr)
        sys.stderr.flush()

    def hold_verdicts(self):
        """Simulate's verdicts on HOLD_PORT: {(src, dst, proto): allowed}, proto lower-case."""
        out = {}
        for proto in self.PROTOCOLS:
            for (s, d), ok in simulate_matrix(self.bh, self.simulate_paths(), proto,
                                              HOLD_PORT).items():
                if s != d:
                    out[(s, d, proto.lower())] = ok
        return out

    def open_allowed(self, stage, verdicts):
        """Opens a long-lived connection for every pair simulate allows on HOLD_PORT."""
        conns = [(s, d, p, fam) for (s, d, p), ok in sorted(verdicts.items()) if ok
                 for fam in self.FAMILIES]
        opened = self.holds.open(conns)
        bad = [(c, r) for c, r in sorted(opened.items()) if r != "ok"]
        for (s, d, p, fam), r in bad[:self.MAX_DETAILS]:
            self.fail(f"[{stage}] {s} -> {d} {p.upper()}/{HOLD_PORT} IPv{fam}: simulate allows "
                      f"it, but the connection did not open ({r})\n  simulate says:\n    " +
                      simulate_explain(self.bh, self.simulate_paths(), s, d, p, HOLD_PORT)
                      .replace("\n", "\n    "))
        if bad:
            self.show_policies(stage)
        self.log(f"[{stage}] opened {len(opened) - len(bad)} long-lived connections "
                 f"(TCP and UDP, IPv4 and IPv6, port {HOLD_PORT})")
        return [c for c, r in opened.items() if r == "ok"]

    def check_held(self, stage, expect_alive, token):
        """expect_alive: {conn: True (must answer) | False (must be cut)}."""
        got = self.holds.check(token)
        wrong = []
        for conn, alive in sorted(expect_alive.items()):
            state = got.get(conn, "closed: not held")
            if alive and state != "alive":
                wrong.append((conn, "should be alive", state))
            elif not alive and state == "alive":
                wrong.append((conn, "should be cut", state))
        n_alive = sum(1 for a in expect_alive.values() if a)
        self.log(f"[{stage}] {len(expect_alive)} held connections: {n_alive} must answer, "
                 f"{len(expect_alive) - n_alive} must be cut; {len(wrong)} wrong")
        for (s, d, p, fam), want, state in wrong[:self.MAX_DETAILS]:
            self.fail(f"[{stage}] held {p.upper()} {s} -> {d}:{HOLD_PORT} IPv{fam} {want}, "
                      f"but is {state}\n  simulate says:\n    " +
                      simulate_explain(self.bh, self.simulate_paths(), s, d, p, HOLD_PORT)
                      .replace("\n", "\n    "))
        if wrong:
            self.show_policies(stage)
        return not wrong

    # -- the agent's kill -9 and restart --
    def agent_argv(self, pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]

    def restart_agent(self, argv, log_path):
        log = open(log_path, "ab")  # noqa: SIM115 (handed to the child)
        self.restarted_agent = subprocess.Popen(
            ["nsenter", f"--net={self.lab.host_netns_path()}", *argv], stdout=log,
            stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    # -- the whole run --
    def run(self):
        self.log(f"differential test: BULKHEAD_SEED={self.seed} ({self.sets} random policy sets)")
        self.tmp = tempfile.mkdtemp(prefix="bh-diff-")
        name = f"diff-{os.getpid()}-{self.rng.randrange(16**4):04x}"
        lab = lab_doc(name, self.rng)
        modes = [f"{n['name']}={n['mode']}" for n in lab["spec"]["namespaces"] if "mode" in n]
        lab_file = os.path.join(self.tmp, "lab.yaml")
        with open(lab_file, "w", encoding="utf-8") as f:
            f.write(to_yaml(lab))
        policies = os.path.join(self.tmp, "policies")
        os.makedirs(policies)
        self.policy_file = os.path.join(policies, "policies.yaml")
        sets = [generate_set(self.rng) for _ in range(self.sets)]
        self.write_policies(sets[0], "set 1")
        if os.environ.get("BULKHEAD_DIFF_TOPOLOGY") == "static":
            self.lab = StaticTopology(self.bh, name, lab, policies, self.log)
        else:
            self.lab = Lab(self.bh, name, lab_file, policies, self.log)
        self.lab.up()
        self.log(f"lab {name}: namespace modes: {', '.join(modes) or 'all enforce'}")
        workloads = self.lab.workloads()
        if len(workloads) < 9:
            self.fail(f"the lab has {len(workloads)} workloads, not 9")
        script = os.path.abspath(__file__)
        for w in workloads:
            p = self.lab.in_netns(w, [sys.executable, script, "echo", "--port", str(HOLD_PORT)],
                                  stdout=subprocess.PIPE, text=True)
            self.echo.append(p)
            if p.stdout.readline().strip() != "ready":
                raise LabError(f"the echo server in {w} did not start")
        self.holds = HoldClients(self.lab, script)

        # 1. the first set
        self.check_matrices("set 1")

        # 2. a policy update: held connections that lose their allow are cut, others survive
        before = self.hold_verdicts()
        held = self.open_allowed("set 1, before the update", before)
        update, lost, kept = None, [], []
        for _ in range(40):
            cand = mutate_set(self.rng, sets[0])
            with open(self.candidate_file(), "w", encoding="utf-8") as f:
                f.write(set_text(cand, self.seed, "candidate"))
            after = self._verdicts_of(cand)
            lost = [c for c in held if not after[c[:3]]]
            kept = [c for c in held if after[c[:3]]]
            if lost and kept:
                update = cand
                break
            update = cand
        if not (lost and kept):
            self.log("[update] note: no update among 40 candidates both cuts and keeps a held "
                     "connection; using the last one")
        self.write_policies(update, "set 1, updated")
        self.check_held("set 1, updated", {c: c in kept for c in held}, "upd")
        self.check_matrices("set 1, updated")

        # 3. kill -9 of the agent: enforcement and held connections go on; restart adopts
        self.holds.close()
        self.holds = HoldClients(self.lab, script)
        now = self.hold_verdicts()
        held = self.open_allowed("before kill -9", now)
        rev = self.lab.revision()
        self.lab.refresh()
        pid = self.lab.agent_pid()
        argv = self.agent_argv(pid)
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                break
            time.sleep(0.05)
        if self.lab.agent_status() is not None:
            self.fail("the agent still answers after kill -9")
        self.log(f"[kill -9] agent pid {pid} killed at revision {rev}")
        self.check_held("agent down", {c: True for c in held}, "down")
        self.check_matrices("agent down", agent_up=False)
        self.restart_agent(argv, self.lab.status["agent_log"])
        rounds = 0
        t0 = time.monotonic()
        while True:
            # Probe while the agent starts: no denied flow may pass in any round.
            ready = (self.lab.agent_status() or {}).get("ready", False)
            self.check_matrices(f"agent restarting, round {rounds + 1}", families=[4, 6],
                                agent_up=False)
            rounds += 1
            if ready or time.monotonic() - t0 > 30:
                break
        st = self.lab.agent_status()
        if not st or not st.get("ready"):
            self.fail("the restarted agent is not ready after 30 s")
        else:
            self.log(f"[restart] agent ready at revision {st.get('revision')} after {rounds} "
                     f"probe rounds")
            if st.get("revision") != rev:
                self.fail(f"the revision changed across the restart: {rev} -> {st.get('revision')}")
        self.check_held("after the restart", {c: True for c in held}, "restarted")
        self.check_matrices("after the restart")
        self.holds.close()
        self.holds = None

        # 4. the other random sets
        for i, docs in enumerate(sets[1:], start=2):
            self.write_policies(docs, f"set {i}")
            self.check_matrices(f"set {i}")

    def candidate_file(self):
        return os.path.join(self.tmp, "candidate.yaml")

    def _verdicts_of(self, docs):
        del docs  # written to candidate_file() by the caller
        path = self.candidate_file()
        out = {}
        for proto in self.PROTOCOLS:
            for (s, d), ok in simulate_matrix(self.bh, [path, self.lab.cluster], proto,
                                              HOLD_PORT).items():
                if s != d:
                    out[(s, d, proto.lower())] = ok
        return out

    def cleanup(self):
        if self.holds:
            self.holds.close()
        for p in self.echo:
            p.terminate()
        for p in self.echo:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        ok = True
        if self.lab:
            ok = self.lab.down()
        if self.restarted_agent and self.restarted_agent.poll() is None:
            self.restarted_agent.kill()
            self.restarted_agent.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return ok


def run_cmd(bulkhead):
    if os.geteuid() != 0:
        print("SKIPPED: the netns differential test needs root (network namespaces, bpffs, TC); "
              "run it as root", file=sys.stderr)
        return 77
    for tool in ("nsenter",):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            print(f"FAIL: {tool} is not installed", file=sys.stderr)
            return 1
    seed = seed_from_env()
    sets = int(os.environ.get("BULKHEAD_DIFF_SETS", "3"))

    def on_signal(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    r = DifferentialRun(bulkhead, seed, max(1, sets))
    t0 = time.monotonic()
    try:
        r.run()
    except (LabError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        r.fail(f"{e}")
    finally:
        if not r.cleanup():
            r.fail("the lab was not removed completely")
    took = time.monotonic() - t0
    if r.failures:
        print(f"FAILED: {r.failures} problems; replay with BULKHEAD_SEED={seed} ({took:.0f} s)",
              file=sys.stderr)
        return 1
    print(f"PASS: {r.compared} flows compared with simulate, BULKHEAD_SEED={seed} ({took:.0f} s)")
    return 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "run" and len(argv) == 3:
        return run_cmd(os.path.abspath(argv[2]))
    if cmd == "gencheck" and len(argv) == 3:
        return gencheck(os.path.abspath(argv[2]))
    if cmd == "generate":
        return generate_cmd(argv[2:])
    if cmd == "echo" and len(argv) == 4 and argv[2] == "--port":
        echo_server([int(p) for p in argv[3].split(",")])
        return 1
    if cmd == "hold" and len(argv) == 2:
        hold_client()
        return 0
    print("usage: differential_test.py run|gencheck PATH/TO/bulkhead | generate [--sets N] DIR",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
