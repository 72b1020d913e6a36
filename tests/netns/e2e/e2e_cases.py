#!/usr/bin/env python3
# The Kubernetes NetworkPolicy e2e cases of tests/netns/e2e/: reading a case (its policies and
# expected matrix), and the check that runs without root: for every case, the matrix of
# `bulkhead simulate --matrix` on the grid's cluster.yaml equals the expected one (for the ICMP
# cases, which have no port: the `otherProtocols` of `bulkhead simulate --connectivity`).
#
#   e2e_cases.py simulate PATH/TO/bulkhead     (ctest e2e_cases_simulate, label conformance)
#   e2e_cases.py lab PATH/TO/bulkhead          (ctest netns_e2e_cases, label netns, root): the
#       cases replayed in one lab of the grid (lab.yaml): per case its policies go into the
#       agent's directory, and the kernel's probe matrix (IPv4 and IPv6; TCP, UDP, SCTP on
#       the lab's raw-socket emulation, or ICMP/ICMPv6 echo) must equal the expected one (and
#       so must simulate's on the lab's own cluster inventory).
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))


class Case:
    def __init__(self, name, directory, protocol, port, lab, expected, order):
        self.name = name
        self.dir = directory
        self.policies = os.path.join(directory, "policies.yaml")
        self.protocol = protocol
        self.port = port
        self.lab = lab  # "yes" or "no (...)"
        self.expected = expected  # {(src, dst): True|False}, diagonal left out
        self.order = order  # workloads in the file's column order

    def lab_replayable(self):
        return self.lab == "yes"

    @property
    def icmp(self):
        return self.protocol == "ICMP"


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


def simulate_other_protocols(bulkhead, files):
    """`bulkhead simulate --connectivity -o json` on `files`: {(src, dst): bool}, whether each
    pair of workloads may use the protocols without ports (ICMP and ICMPv6 among them), and
    {(src, dst): what is allowed, as text} to explain a verdict."""
    cmd = [bulkhead, "simulate"]
    for f in files:
        cmd += ["-f", f]
    cmd += ["--connectivity", "-o", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr}")
    verdicts, allowed = {}, {}
    for c in json.loads(r.stdout)["connections"]:
        if "fromRange" in c or "toRange" in c:
            continue
        verdicts[(c["from"], c["to"])] = bool(c["otherProtocols"])
        allowed[(c["from"], c["to"])] = c["allowed"]
    return verdicts, allowed


def simulate_case(bulkhead, files, case):
    """simulate's verdicts for the case's protocol and port: {(src, dst): bool}, and a function
    (src, dst) -> why, for a report."""
    if case.icmp:
        verdicts, allowed = simulate_other_protocols(bulkhead, files)
        return verdicts, lambda s, d: (f"simulate --connectivity: {s} => {d}: "
                                       f"{allowed.get((s, d), 'no entry')}")
    verdicts, _ = simulate_matrix(bulkhead, files, case.protocol, case.port)
    return verdicts, lambda s, d: explain(bulkhead, files, s, d, case.protocol, case.port)


def explain(bulkhead, files, src, dst, protocol, port):
    cmd = [bulkhead, "simulate"]
    for f in files:
        cmd += ["-f", f]
    cmd += ["--from", src, "--to", dst, "--port", str(port), "--protocol", protocol]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (r.stdout + r.stderr).rstrip()


def word(allowed):
    return "allow" if allowed else "deny"


def flow(protocol, port):
    return protocol if protocol.upper().startswith("ICMP") else f"{protocol}/{port}"


def check_simulate(bulkhead):
    cluster = os.path.join(HERE, "cluster.yaml")
    failures = 0
    cases = load_cases()
    if not cases:
        print(f"FAIL: no cases under {HERE}", file=sys.stderr)
        return 1
    for case in cases:
        try:
            got, why = simulate_case(bulkhead, [cluster, case.policies], case)
        except (RuntimeError, ValueError) as e:
            print(f"FAIL {case.name}: {e}", file=sys.stderr)
            failures += 1
            continue
        diffs = []
        for (src, dst), want in sorted(case.expected.items()):
            if (src, dst) not in got:
                diffs.append(f"  {src} -> {dst}: missing from simulate's matrix")
            elif got[(src, dst)] != want:
                diffs.append(f"  {src} -> {dst} {flow(case.protocol, case.port)}: simulate "
                             f"{word(got[(src, dst)])}, expected {word(want)}\n" + why(src, dst))
        extra = {s for s, _ in got} - set(case.order)
        if extra:
            diffs.append(f"  simulate knows workloads the grid does not: {sorted(extra)}")
        if diffs:
            failures += 1
            print(f"FAIL {case.name} ({case.policies}):", file=sys.stderr)
            print("\n".join(diffs), file=sys.stderr)
        else:
            print(f"ok   {case.name}: {len(case.expected)} pairs {flow(case.protocol, case.port)}")
    print(f"{len(cases) - failures} of {len(cases)} e2e cases: simulate equals the expected matrix")
    return 1 if failures else 0


def probe_icmp_matrix(lab, timeout_ms=None):
    """The kernel's ICMP echo matrix in `lab` over IPv4 (ICMP) and IPv6 (ICMPv6), keyed like
    Lab.probe_matrix: {(family, "ICMP", 0): {(src, dst): allowed}}."""
    args = ["lab", "probe", "--name", lab.name, "--matrix", "--protocol", "icmp",
            "--family", "4,6", "-o", "json"]
    if timeout_ms:
        args += ["--timeout", str(timeout_ms)]
    r = lab.cmd(*args, check=False, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"`bulkhead {' '.join(args)}` exited {r.returncode}:\n"
                           f"{r.stderr.rstrip()}")
    out = {}
    for m in json.loads(r.stdout):
        out[(int(m["family"]), "ICMP", 0)] = {(s, d): v == "allow" for s, row in m["matrix"].items()
                                              for d, v in row.items()}
    return out


def probe_icmp_one(lab, src, dst, family):
    r = lab.cmd("lab", "probe", "--name", lab.name, "--from", src, "--to", dst, "--protocol",
                "icmp", "--family", str(family), "-o", "json", check=False)
    try:
        j = json.loads(r.stdout)
        return f"{j['result']} ({j['outcome']}{': ' + j['detail'] if j.get('detail') else ''}, " \
               f"{j['millis']:.0f} ms, to {j['address']})"
    except (json.JSONDecodeError, KeyError):
        return (r.stdout + r.stderr).strip()


def replay_in_lab(bulkhead):
    if os.geteuid() != 0:
        print("SKIPPED: replaying the e2e cases in the lab needs root (network namespaces, bpffs, "
              "TC); run it as root", file=sys.stderr)
        return 77
    import random
    import shutil
    import signal
    import tempfile
    sys.path.insert(0, os.path.dirname(HERE))
    import differential_test as dt

    def on_signal(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cases = load_cases()
    tmp = tempfile.mkdtemp(prefix="bh-e2e-")
    policies = os.path.join(tmp, "policies")
    os.makedirs(policies)
    policy_file = os.path.join(policies, "policies.yaml")
    with open(policy_file, "w", encoding="utf-8") as f:
        f.write("# no policy yet\n")
    name = f"e2e-{os.getpid()}-{random.SystemRandom().randrange(16**4):04x}"
    lab = dt.Lab(bulkhead, name, os.path.join(HERE, "lab.yaml"), policies)
    failures = 0
    replayed = skipped = 0
    current = None
    t0 = time.monotonic()

    def fail(msg):
        nonlocal failures
        failures += 1
        print("FAIL: " + msg, file=sys.stderr, flush=True)

    try:
        lab.up()
        for case in cases:
            if not case.lab_replayable():
                skipped += 1
                print(f"skip {case.name}: lab: {case.lab}")
                continue
            with open(case.policies, encoding="utf-8") as f:
                text = f.read()
            if text != current:
                old = lab.revision()
                dt.write_file_atomically(policy_file, text)
                lab.wait_revision_change(old)
                current = text
            paths = [policies, lab.cluster]
            sim, sim_why = simulate_case(bulkhead, paths, case)

            def probe(timeout_ms=None):
                if case.icmp:
                    return probe_icmp_matrix(lab, timeout_ms)
                return lab.probe_matrix([case.port], [case.protocol], [4, 6], timeout_ms)

            kernel = probe()
            again = None
            diffs = []
            for (fam, proto, port), km in sorted(kernel.items()):
                for (src, dst), want in sorted(case.expected.items()):
                    got = km.get((src, dst))
                    if got is None:
                        diffs.append(f"  {src} -> {dst}: not probed")
                        continue
                    if want and not got:
                        # One more matrix, never more: a lost datagram is not a verdict (a
                        # flow that passed where it should not is never probed again).
                        if again is None:
                            again = probe(timeout_ms=3000)
                        if again[(fam, proto, port)][(src, dst)]:
                            print(f"note: {case.name}: {src} -> {dst} {flow(proto, port)} "
                                  f"IPv{fam} connected when probed again")
                            got = True
                    if got != want or sim.get((src, dst)) != want:
                        if case.icmp:
                            seen = probe_icmp_one(lab, src, dst, fam)
                            kernel_proto = "icmp" if fam == 4 else "icmpv6"
                        else:
                            _, seen = lab.probe_one(src, dst, proto, port, fam)
                            kernel_proto = proto
                        diffs.append(
                            f"  {src} -> {dst} {flow(proto, port)} IPv{fam}: expected "
                            f"{word(want)}, kernel {word(got)} (again: {seen}), simulate "
                            f"{word(sim.get((src, dst)))}\n    simulate says:\n      " +
                            sim_why(src, dst).replace("\n", "\n      ") +
                            "\n    the agent's tables say:\n      " +
                            lab.explain(src, dst, kernel_proto, port).replace("\n", "\n      "))
            replayed += 1
            if diffs:
                fail(f"{case.name} ({case.policies}, {flow(case.protocol, case.port)}):\n" +
                     "\n".join(diffs[:12]) +
                     (f"\n  ... and {len(diffs) - 12} more" if len(diffs) > 12 else "") +
                     f"\n---- policies\n{text}---- end of policies")
            else:
                print(f"ok   {case.name}: {2 * len(case.expected)} flows "
                      f"{flow(case.protocol, case.port)} IPv4+IPv6 as expected")
    except (dt.LabError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        fail(str(e))
    finally:
        if not lab.down():
            fail("the lab was not removed completely")
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - t0
    print(f"{replayed - failures} of {replayed} replayed cases as expected in the lab; {skipped} "
          f"not replayable there ({took:.0f} s)")
    return 1 if failures or replayed == 0 else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "simulate":
        return check_simulate(os.path.abspath(argv[2]))
    if len(argv) == 3 and argv[1] == "lab":
        return replay_in_lab(os.path.abspath(argv[2]))
    print("usage: e2e_cases.py simulate|lab PATH/TO/bulkhead", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
