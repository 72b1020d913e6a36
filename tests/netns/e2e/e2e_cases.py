#!/usr/bin/env python3
# The Kubernetes NetworkPolicy e2e cases of tests/netns/e2e/: reading a case (its policies and
# expected matrix), and the check that runs without root: for every case, the matrix of
# `bulkhead simulate --matrix` on the grid's cluster.yaml equals the expected one.
#
#   e2e_cases.py simulate PATH/TO/bulkhead     (ctest e2e_cases_simulate, label conformance)
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class Case:
    def __init__(self, name, directory, protocol, port, lab, expected, order):
        self.name = name
        self.dir = directory
        self.policies = os.path.join(directory, "policies.yaml")
        self.protocol = protocol
        self.port = port
        self.lab = lab  # "yes", "named-ports ..." or "no (...)"
        self.expected = expected  # {(src, dst): True|False}, diagonal left out
        self.order = order  # workloads in the file's column order

    def lab_replayable(self, lab_has_named_ports):
        if self.lab == "yes":
            return True
        return self.lab.startswith("named-ports") and lab_has_named_ports


def parse_expected(path):
    """Reads an expected.txt: header lines `key: value`, then the grid (see make_cases.py)."""
    header = {}
    columns = None
    cells = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if columns is None and line.startswith("from\\to"):
                columns = line.split()[1:]
                continue
            if columns is None:
                key, sep, value = line.partition(":")
                if not sep:
                    raise ValueError(f"{path}:{lineno}: expected `key: value` or the grid header")
                header[key.strip()] = value.strip()
                continue
            parts = line.split()
            src, marks = parts[0], parts[1:]
            if len(marks) != len(columns):
                raise ValueError(f"{path}:{lineno}: {len(marks)} cells for {len(columns)} columns")
            for dst, mark in zip(columns, marks):
                if mark == ".":
                    if src != dst:
                        raise ValueError(f"{path}:{lineno}: '.' is only for a pod to itself")
                    continue
                if mark not in "+-":
                    raise ValueError(f"{path}:{lineno}: cell {mark!r} is not +, - or .")
                cells[(src, dst)] = mark == "+"
    for key in ("protocol", "port", "lab"):
        if key not in header:
            raise ValueError(f"{path}: no `{key}:` line")
    if columns is None:
        raise ValueError(f"{path}: no grid")
    return header, columns, cells


def load_cases(root=HERE):
    cases = []
    for entry in sorted(os.listdir(root)):
        d = os.path.join(root, entry)
        exp = os.path.join(d, "expected.txt")
        if not os.path.isfile(exp):
            continue
        header, columns, cells = parse_expected(exp)
        cases.append(Case(entry, d, header["protocol"], int(header["port"]), header["lab"], cells,
                          columns))
    return cases


def simulate_matrix(bulkhead, files, protocol, port):
    """`bulkhead simulate --matrix -o json` on `files`: ({(src, dst): bool}, raw json)."""
    cmd = [bulkhead, "simulate"]
    for f in files:
        cmd += ["-f", f]
    cmd += ["--matrix", "--port", str(port), "--protocol", protocol, "-o", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr}")
    doc = json.loads(r.stdout)
    out = {}
    for src, row in doc["matrix"].items():
        for dst, verdict in row.items():
            out[(src, dst)] = verdict == "allow"
    return out, doc


def explain(bulkhead, files, src, dst, protocol, port):
    cmd = [bulkhead, "simulate"]
    for f in files:
        cmd += ["-f", f]
    cmd += ["--from", src, "--to", dst, "--port", str(port), "--protocol", protocol]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (r.stdout + r.stderr).rstrip()


def word(allowed):
    return "allow" if allowed else "deny"


def check_simulate(bulkhead):
    cluster = os.path.join(HERE, "cluster.yaml")
    failures = 0
    cases = load_cases()
    if not cases:
        print(f"FAIL: no cases under {HERE}", file=sys.stderr)
        return 1
    for case in cases:
        try:
            got, _ = simulate_matrix(bulkhead, [cluster, case.policies], case.protocol, case.port)
        except (RuntimeError, ValueError) as e:
            print(f"FAIL {case.name}: {e}", file=sys.stderr)
            failures += 1
            continue
        diffs = []
        for (src, dst), want in sorted(case.expected.items()):
            if (src, dst) not in got:
                diffs.append(f"  {src} -> {dst}: missing from simulate's matrix")
            elif got[(src, dst)] != want:
                diffs.append(f"  {src} -> {dst} {case.protocol}/{case.port}: simulate "
                             f"{word(got[(src, dst)])}, expected {word(want)}\n" +
                             explain(bulkhead, [cluster, case.policies], src, dst, case.protocol,
                                     case.port))
        extra = {s for s, _ in got} - set(case.order)
        if extra:
            diffs.append(f"  simulate knows workloads the grid does not: {sorted(extra)}")
        if diffs:
            failures += 1
            print(f"FAIL {case.name} ({case.policies}):", file=sys.stderr)
            print("\n".join(diffs), file=sys.stderr)
        else:
            print(f"ok   {case.name}: {len(case.expected)} pairs {case.protocol}/{case.port}")
    print(f"{len(cases) - failures} of {len(cases)} e2e cases: simulate equals the expected matrix")
    return 1 if failures else 0


def main(argv):
    if len(argv) != 3 or argv[1] != "simulate":
        print("usage: e2e_cases.py simulate PATH/TO/bulkhead", file=sys.stderr)
        return 2
    return check_simulate(os.path.abspath(argv[2]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
