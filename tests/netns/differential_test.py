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
#   differential_test.py echo --port P                (internal) TCP+UDP echo in a workload
#   differential_test.py hold --targets JSON          (internal) long-lived client connections
#
# Seeded: the seed is printed; BULKHEAD_SEED=N replays a run. BULKHEAD_DIFF_SETS=N changes the
# number of random policy sets (default 3).
import json
import os
import random
import sys

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
# Named ports the generated policies use; some exist on no workload (they match nothing).
PORT_NAMES = ["http", "alt", "alt-udp", "echo", "nope"]

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
                          "ips": [f"10.211.0.{i + 2}", f"fd00:b4:d1ff::{i + 2:x}"]})
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

import subprocess  # noqa: E402


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
    import tempfile
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


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "gencheck" and len(argv) == 3:
        return gencheck(os.path.abspath(argv[2]))
    if cmd == "generate":
        return generate_cmd(argv[2:])
    print("usage: differential_test.py run|gencheck PATH/TO/bulkhead | generate [--sets N] DIR",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
