#!/usr/bin/env python3
# Source of the Kubernetes NetworkPolicy e2e cases under tests/netns/e2e/: writes each case's
# policy manifests and its expected reachability matrix (from upstream semantics, never from
# our evaluator), plus the grid's lab file and its simulate-only cluster inventory.
#
# The cases are those of tests/unit/engine/evaluator_k8s_test.cc (the upstream e2e grid:
# namespaces x, y, z with label ns=<name>, pods a, b, c with label pod=<name>, pods b also
# tier=web, every pod serving TCP, UDP and SCTP on 80 and 81 under named ports
# serve-<port>-<proto>). Expectations are written as the upstream suite writes them: a rule
# per case over (source, destination). The two ICMP cases have protocol ICMP and port 0 (an
# echo request; ICMPv6 over IPv6 in the lab).
#
#   make_cases.py write [DIR]   (re)write every file under DIR (default: this script's folder)
#   make_cases.py check [DIR]   exit 1 when a file under DIR differs from what `write` makes
import os
import sys

NAMESPACES = ["x", "y", "z"]
PODS = ["a", "b", "c"]
GRID = [f"{n}/{p}" for n in NAMESPACES for p in PODS]

# Named ports exist for 80 and 81 of every protocol, in the lab as in the inventory.
NAMED_PORTS = [(f"serve-{port}-{proto.lower()}", port, proto)
               for proto in ("TCP", "UDP", "SCTP") for port in (80, 81)]
# Ports the lab's servers answer: the named ones (SCTP emulated on raw sockets, docs/lab.md),
# plus 82/TCP and 5353/UDP for the range and protocol-wide cases.
LAB_PORTS = [(port, proto, name) for name, port, proto in NAMED_PORTS] + \
    [(82, "TCP", None), (5353, "UDP", None)]


def ns_of(w):
    return w.split("/")[0]


def pod_of(w):
    return w.split("/")[1]


def pod_labels(pod):
    labels = {"pod": pod}
    if pod == "b":
        labels["tier"] = "web"
    return labels


# ---- policy manifests, written by hand-sized helpers (the same shapes as the C++ builder) ----

def netpol(ns, name, pod_selector, types, ingress=None, egress=None):
    """A NetworkPolicy as YAML text. pod_selector and rules are YAML flow snippets."""
    lines = ["apiVersion: networking.k8s.io/v1", "kind: NetworkPolicy",
             f"metadata: {{name: {name}, namespace: \"{ns}\"}}", "spec:",
             f"  podSelector: {pod_selector}", f"  policyTypes: [{', '.join(types)}]"]
    for key, rules in (("ingress", ingress), ("egress", egress)):
        if rules is None:
            continue
        if not rules:
            lines.append(f"  {key}: []")
            continue
        lines.append(f"  {key}:")
        for rule in rules:
            lines.append(f"  - {rule}")
    return "\n".join(lines) + "\n"


def to_xa(rules, name="allow-to-a"):
    return netpol("x", name, "{matchLabels: {pod: a}}", ["Ingress"], ingress=rules)


def egress_of_xa(rules):
    return netpol("x", "egress", "{matchLabels: {pod: a}}", ["Egress"], egress=rules)


ALL = lambda s, d: True  # noqa: E731


def to_xa_only_from(ok):
    return lambda s, d: d != "x/a" or ok(s)


# Each case: name, what it shows, policy documents, protocol, port, expectation.
CASES = [
    ("NoPolicyAllowsAll", "without any policy every pod reaches every pod", [], "TCP", 80, ALL),
    ("DefaultDenyIngress", "a policy selecting every pod of x with no ingress rules isolates them",
     [netpol("x", "deny", "{}", ["Ingress"])], "TCP", 80, lambda s, d: ns_of(d) != "x"),
    ("DefaultDenyEgress", "an egress-only policy with no rules denies all egress of x",
     [netpol("x", "deny", "{}", ["Egress"])], "TCP", 80, lambda s, d: ns_of(s) != "x"),
    ("DefaultDenyBoth", "both directions of x denied: nothing leaves or enters x",
     [netpol("x", "deny", "{}", ["Ingress", "Egress"])], "UDP", 81,
     lambda s, d: ns_of(s) != "x" and ns_of(d) != "x"),
    ("AllowAllIngressRuleWithoutPeers", "a rule without from allows every source, on top of a deny-all",
     [netpol("x", "deny", "{}", ["Ingress"]), to_xa(["{}"])], "TCP", 80,
     lambda s, d: ns_of(d) != "x" or d == "x/a"),
    ("PodSelectorOnlyPeerIsSameNamespace", "a podSelector-only peer selects pods of the policy's namespace",
     [to_xa(["from: [{podSelector: {matchLabels: {pod: b}}}]"])], "TCP", 80,
     to_xa_only_from(lambda s: s == "x/b")),
    ("EmptyPodSelectorPeerIsWholeSameNamespace", "podSelector: {} as a peer is every pod of the policy's namespace",
     [to_xa(["from: [{podSelector: {}}]"])], "TCP", 80, to_xa_only_from(lambda s: ns_of(s) == "x")),
    ("NamespaceSelectorOnlyPeerIsAllPodsOfMatchingNamespaces",
     "a namespaceSelector-only peer is every pod of the matching namespaces",
     [to_xa(['from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]'])], "TCP", 80,
     to_xa_only_from(lambda s: ns_of(s) == "y")),
    ("EmptyNamespaceSelectorIsEveryPod", "namespaceSelector: {} is every pod of every namespace",
     [to_xa(["from: [{namespaceSelector: {}}]"])], "TCP", 80, ALL),
    ("NamespaceMatchExpressionIn", "namespace matchExpressions with In",
     [to_xa(['from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: ["y", "z"]}]}}]'])],
     "TCP", 80, to_xa_only_from(lambda s: ns_of(s) != "x")),
    ("NamespaceMatchExpressionNotIn", "namespace matchExpressions with NotIn (x itself included)",
     [to_xa(['from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: ["y"]}]}}]'])],
     "TCP", 80, to_xa_only_from(lambda s: ns_of(s) != "y")),
    ("PodMatchExpressionExists", "pod matchExpressions with Exists, in every namespace",
     [to_xa(["from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]"])],
     "TCP", 80, to_xa_only_from(lambda s: pod_of(s) == "b")),
    ("PodMatchExpressionDoesNotExist", "pod matchExpressions with DoesNotExist, in every namespace",
     [to_xa(["from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]"])],
     "TCP", 80, to_xa_only_from(lambda s: pod_of(s) != "b")),
    ("PodMatchExpressionInSameNamespace", "pod matchExpressions with In, policy's namespace only",
     [to_xa(["from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [c]}]}}]"])],
     "TCP", 80, to_xa_only_from(lambda s: s == "x/c")),
    ("BothSelectorsInOnePeerAreAnd", "namespaceSelector and podSelector in one peer must both match",
     [to_xa(['from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]'])],
     "TCP", 80, to_xa_only_from(lambda s: s == "y/b")),
    ("TwoPeersAreOr", "two peers of one rule: either matches",
     [to_xa(['from: [{namespaceSelector: {matchLabels: {ns: "y"}}}, {podSelector: {matchLabels: {pod: b}}}]'])],
     "TCP", 80, to_xa_only_from(lambda s: ns_of(s) == "y" or s == "x/b")),
    ("StackedPoliciesAreUnion", "two policies selecting one pod: the union of their rules allows",
     [to_xa(["from: [{podSelector: {matchLabels: {pod: b}}}]"], "p1"),
      to_xa(['from: [{namespaceSelector: {matchLabels: {ns: "z"}}}]'], "p2")],
     "TCP", 80, to_xa_only_from(lambda s: s == "x/b" or ns_of(s) == "z")),
    ("NumberedPortMatches", "a numbered port allows that port",
     [to_xa(["ports: [{port: 81}]"])], "TCP", 81, ALL),
    ("NumberedPortOtherPortDenied", "a numbered port does not allow another port",
     [to_xa(["ports: [{port: 81}]"])], "TCP", 80, to_xa_only_from(lambda s: False)),
    ("NamedPortMatches", "a named port resolves to the destination's port of that name",
     [to_xa(["ports: [{port: serve-81-tcp}]"])], "TCP", 81, ALL),
    ("NamedPortOtherPortDenied", "a named port does not allow other ports",
     [to_xa(["ports: [{port: serve-81-tcp}]"])], "TCP", 80, to_xa_only_from(lambda s: False)),
    ("NamedPortOfOtherProtocolDenied", "a named port must match in protocol too",
     [to_xa(["ports: [{port: serve-81-udp, protocol: TCP}]"])], "TCP", 81,
     to_xa_only_from(lambda s: False)),
    ("NamedUdpPort", "a named UDP port allows that UDP port",
     [to_xa(["ports: [{port: serve-81-udp, protocol: UDP}]"])], "UDP", 81, ALL),
    ("EndPortRangeInside", "port with endPort allows the range, end included",
     [to_xa(["ports: [{port: 80, endPort: 81}]"])], "TCP", 81, ALL),
    ("EndPortRangeOutside", "port with endPort does not allow a port above the range",
     [to_xa(["ports: [{port: 80, endPort: 81}]"])], "TCP", 82, to_xa_only_from(lambda s: False)),
    ("TcpRuleDoesNotAllowUdp", "a TCP port does not allow UDP on the same port",
     [to_xa(["ports: [{port: 80, protocol: TCP}]"])], "UDP", 80, to_xa_only_from(lambda s: False)),
    ("TcpRuleDoesNotAllowSctp", "a TCP port does not allow SCTP on the same port",
     [to_xa(["ports: [{port: 80, protocol: TCP}]"])], "SCTP", 80, to_xa_only_from(lambda s: False)),
    ("SctpRuleAllowsSctp", "an SCTP port allows SCTP",
     [to_xa(["ports: [{port: 80, protocol: SCTP}]"])], "SCTP", 80, ALL),
    ("ProtocolWithoutPortAllowsEveryPort", "a port entry with only a protocol allows every port of it",
     [to_xa(["ports: [{protocol: UDP}]"])], "UDP", 5353, ALL),
    ("RuleWithoutPortsAllowsIcmp", "a rule without ports allows every protocol, ICMP included",
     [to_xa(["from: [{podSelector: {}}]"])], "ICMP", 0,
     to_xa_only_from(lambda s: ns_of(s) == "x")),
    ("RuleWithPortsDoesNotAllowIcmp", "a rule with ports allows only those: no ICMP",
     [to_xa(["ports: [{port: 80, protocol: TCP}, {protocol: UDP}]"])], "ICMP", 0,
     to_xa_only_from(lambda s: False)),
    ("EgressIsolationLeavesIngressOpen", "x/a may reach only y; its ingress stays open",
     [egress_of_xa(['to: [{namespaceSelector: {matchLabels: {ns: "y"}}}]'])], "TCP", 80,
     lambda s, d: s != "x/a" or ns_of(d) == "y"),
    ("IngressIsolationLeavesEgressOpen", "x/a takes only x/b; its egress stays open",
     [to_xa(["from: [{podSelector: {matchLabels: {pod: b}}}]"])], "UDP", 80,
     lambda s, d: d != "x/a" or s == "x/b"),
    ("EgressNamedPortResolvedAtDestination", "an egress named port resolves at the destination",
     [egress_of_xa(["ports: [{port: serve-81-udp, protocol: UDP}]"])], "UDP", 81, ALL),
    ("EgressNamedPortOtherPortDenied", "an egress named port allows no other port",
     [egress_of_xa(["ports: [{port: serve-81-udp, protocol: UDP}]"])], "UDP", 80,
     lambda s, d: s != "x/a"),
    ("PolicyTypesEgressWithoutRulesDeniesEgress",
     "policyTypes [Ingress, Egress] with only ingress rules denies all egress",
     [netpol("y", "both", "{matchLabels: {pod: c}}", ["Ingress", "Egress"], ingress=["{}"])],
     "TCP", 80, lambda s, d: s != "y/c"),
]


def lab_port_served(proto, port):
    # Every workload's kernel answers ICMP echo requests.
    return proto == "ICMP" or any((p, pr) == (port, proto) for p, pr, _ in LAB_PORTS)


def expected_text(name, what, proto, port, want, lab_note):
    out = [f"# {name}: {what}.",
           "# Expected reachability under upstream Kubernetes NetworkPolicy semantics (written by",
           "# make_cases.py from the case's rule, not from our evaluator). Rows are sources,",
           "# columns destinations; + reachable, - blocked, . a pod to itself (not compared:",
           "# such traffic never leaves the pod, and upstream e2e treats it as always allowed).",
           *(["# ICMP: an echo request (ICMPv6 over IPv6); port 0: it has none."]
             if proto == "ICMP" else []),
           f"protocol: {proto}", f"port: {port}", f"lab: {lab_note}",
           "from\\to " + " ".join(f"{w:>3}" for w in GRID)]
    for s in GRID:
        cells = []
        for d in GRID:
            cells.append("  ." if s == d else ("  +" if want(s, d) else "  -"))
        out.append(f"{s:<7} " + " ".join(cells))
    return "\n".join(out) + "\n"


def policy_text(name, what, docs):
    head = f"# e2e case {name}: {what}.\n"
    if not docs:
        return head + "# (no policy)\n"
    return head + "---\n".join(docs)


def lab_text():
    lines = ["# The upstream NetworkPolicy e2e grid as a bulkhead lab: namespaces x, y, z (label ns),",
             "# pods a, b, c (label pod; b also tier=web), serving TCP, UDP and SCTP on the e2e",
             "# ports, named serve-<port>-<protocol> on 80 and 81 (as in cluster.yaml).",
             "apiVersion: bulkhead.io/v1alpha1", "kind: Lab", "metadata: {name: e2e-grid}",
             "spec:", "  namespaces:"]
    for n in NAMESPACES:
        lines.append(f"  - {{name: \"{n}\", labels: {{ns: \"{n}\"}}}}")
    lines.append("  workloads:")
    for n in NAMESPACES:
        for p in PODS:
            labels = ", ".join(f"{k}: {v}" for k, v in pod_labels(p).items())
            lines.append(f"  - namespace: \"{n}\"")
            lines.append(f"    name: {p}")
            lines.append(f"    labels: {{{labels}}}")
            lines.append("    ports:")
            for port, proto, pname in LAB_PORTS:
                lines.append("    - " + (f"{{name: {pname}, " if pname else "{") +
                             f"port: {port}, protocol: {proto}}}")
    return "\n".join(lines) + "\n"


def cluster_text():
    lines = ["# The e2e grid as an Inventory, for `bulkhead simulate` without a lab (addresses as in",
             "# evaluator_k8s_test.cc; named ports serve-<port>-<protocol> on 80 and 81).",
             "apiVersion: bulkhead.io/v1alpha1", "kind: Inventory", "metadata: {name: e2e-grid}",
             "spec:", "  namespaces:"]
    for n in NAMESPACES:
        lines.append(f"  - {{name: \"{n}\", labels: {{ns: \"{n}\"}}}}")
    lines.append("  workloads:")
    for i, n in enumerate(NAMESPACES):
        for j, p in enumerate(PODS):
            labels = ", ".join(f"{k}: {v}" for k, v in pod_labels(p).items())
            lines.append(f"  - namespace: \"{n}\"")
            lines.append(f"    name: {p}")
            lines.append(f"    labels: {{{labels}}}")
            lines.append(f"    ips: [10.0.{i}.{j + 1}, 'fd00::{i}:{j + 1}']")
            lines.append("    ports:")
            for pname, port, proto in NAMED_PORTS:
                lines.append(f"    - {{name: {pname}, port: {port}, protocol: {proto}}}")
    return "\n".join(lines) + "\n"


def files():
    out = {"lab.yaml": lab_text(), "cluster.yaml": cluster_text()}
    for name, what, docs, proto, port, want in CASES:
        lab_note = "yes" if lab_port_served(proto, port) else f"no (the lab serves no {proto}/{port})"
        out[f"{name}/policies.yaml"] = policy_text(name, what, docs)
        out[f"{name}/expected.txt"] = expected_text(name, what, proto, port, want, lab_note)
    return out


def main(argv):
    if len(argv) < 2 or argv[1] not in ("write", "check"):
        print("usage: make_cases.py write|check [DIR]", file=sys.stderr)
        return 2
    root = argv[2] if len(argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    want = files()
    if argv[1] == "write":
        for rel, text in want.items():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        print(f"wrote {len(want)} files under {root}")
        return 0
    stale = []
    for rel, text in want.items():
        path = os.path.join(root, rel)
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    stale.append(rel)
        except OSError:
            stale.append(rel)
    case_dirs = {c[0] for c in CASES}
    for entry in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, entry)) and entry not in case_dirs and entry != "__pycache__":
            stale.append(entry + "/ (not a case of make_cases.py)")
    if stale:
        print("e2e case files differ from make_cases.py (run `make_cases.py write`):", file=sys.stderr)
        for s in stale:
            print("  " + s, file=sys.stderr)
        return 1
    print(f"{len(want)} e2e files match make_cases.py")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
