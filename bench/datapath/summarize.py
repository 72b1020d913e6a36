#!/usr/bin/env python3
"""Tables of the datapath traffic benchmark (bench/datapath/run.sh) from its results.jsonl.

Every figure is the median over rounds; every ratio is the median over rounds of the figure
divided by the median of the same round's runs without filtering ("none", run once per N in each
round), so that drift of a noisy machine hits both sides of a ratio alike. CPU cost per operation
comes two ways: machine-wide (system, softirq and irq time from /proc/stat, plus the agent's user
time) and from our processes only (see own_cpu), which other users of the machine do not inflate.

Usage: summarize.py RESULTS.jsonl          (markdown tables and the goals on stdout)
       summarize.py --metrics PID < TEXT   (Prometheus text -> JSON, plus the PID's VmRSS)
"""
import json
import os
import re
import statistics
import sys
from collections import defaultdict

CONFIG_ORDER = ["none", "iptables-legacy", "iptables-nft", "nft", "bulkhead", "bulkhead-noev"]
GOAL = 0.95


def metrics_json(pid):
    out = {}
    for line in sys.stdin.read().splitlines():
        m = re.match(r"^(bulkhead_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
    except OSError:
        pass
    print(json.dumps(out))


def sut_cpu(rec):
    """CPU seconds of the system under test, machine-wide: the kernel on all CPUs (whoever it
    worked for) plus the agent's user time (its system time is already in the kernel's)."""
    return rec["cpu_sys_s"] + rec["cpu_softirq_s"] + rec["cpu_irq_s"] + rec["agent_user_s"]


def own_cpu(rec):
    """CPU seconds of the system under test, from our processes only: the system time of the
    load generator, the server, the UDP sink and ksoftirqd (the packet path, filters included,
    runs in their context), plus all of the agent's time."""
    return rec["own_sys_s"] + rec["agent_user_s"] + rec["agent_sys_s"]


def foreign_share(rec):
    """The share of the machine's CPU that user-space work other than ours (other users' builds,
    tests) took during the load: what decides a rate on a shared machine."""
    cpus = rec.get("cpus") or os.cpu_count() or 1
    other = rec["cpu_user_s"] - rec["own_user_s"] - rec["agent_user_s"]
    return max(0.0, other) / (cpus * rec["wall_s"])


def all_cpu(rec):
    """CPU seconds of everything the benchmark ran during the load, user and system time."""
    return rec["own_user_s"] + rec["own_sys_s"] + rec["agent_user_s"] + rec["agent_sys_s"]


def figures(recs):
    """One run of one configuration: test records -> named figures."""
    by = {r["test"]: r for r in recs}
    f = {}
    if "connect" in by:
        c = by["connect"]
        f["conn_s"] = c["ops"] / c["wall_s"]
        f["foreign_conn"] = foreign_share(c)
        f["conn_failed"] = c["failed"]
        if c["ops"]:
            f["us_conn"] = sut_cpu(c) / c["ops"] * 1e6
            f["own_us_conn"] = own_cpu(c) / c["ops"] * 1e6
            f["cap_conn"] = c["ops"] / all_cpu(c)
    if "udp-flood" in by and "udp-sink" in by:
        fl, sk = by["udp-flood"], by["udp-sink"]
        f["kpps"] = sk["pps"] / 1e3
        f["foreign_udp"] = foreign_share(fl)
        f["udp_loss"] = 1 - sk["packets"] / fl["sent"] if fl["sent"] else 0
        if sk["packets"]:
            f["ns_pkt"] = sut_cpu(fl) / sk["packets"] * 1e9
            f["own_ns_pkt"] = own_cpu(fl) / sk["packets"] * 1e9
            f["cap_pkt"] = sk["packets"] / all_cpu(fl)
    if "rr" in by:
        rr = by["rr"]
        f["p50"] = rr["p50_us"]
        f["p99"] = rr["p99_us"]
        f["us_rr"] = sut_cpu(rr) / rr["ops"] * 1e6
        f["own_us_rr"] = own_cpu(rr) / rr["ops"] * 1e6
        f["cap_rr"] = rr["ops"] / all_cpu(rr)
    if "stream" in by:
        st = by["stream"]
        f["gbit"] = st["gbit_s"]
        f["foreign_stream"] = foreign_share(st)
        f["s_gb"] = sut_cpu(st) / (st["bytes"] / 1e9)
        f["own_s_gb"] = own_cpu(st) / (st["bytes"] / 1e9)
        f["cap_gb"] = st["bytes"] / 1e9 / all_cpu(st)
    if "meta" in by:
        m = by["meta"]
        f["setup_s"] = m["setup_s"]
        if "load1" in m:
            f["load1"] = m["load1"]
        if "agent" in m:
            a = m["agent"]
            f["rss_mb"] = a.get("rss_kb", 0) / 1024
            f["events_sent"] = a.get('bulkhead_datapath_events_total{result="sent"}', 0)
            f["events_lost"] = a.get('bulkhead_datapath_events_total{result="lost"}', 0)
            drops = {k: v for k, v in a.items()
                     if k.startswith('bulkhead_datapath_packets_total{outcome="drop_') and v}
            f["drops"] = drops
            f["agent_cpu_s"] = a.get("bulkhead_agent_cpu_seconds_total", 0)
    return f


def drop_name(key):
    m = re.search(r"drop_([a-z_]+)", key)
    return m.group(1) if m else key


def fmt(x, digits=None):
    if x is None:
        return "–"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:,.{digits}f}"


def main(path):
    runs = defaultdict(list)  # (round, config, n) -> records
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                runs[(r["round"], r["config"], r["n"])].append(r)
    figs = {k: figures(v) for k, v in runs.items()}
    rounds = sorted({k[0] for k in figs})
    ns = sorted({k[2] for k in figs})
    configs = [c for c in CONFIG_ORDER if any(k[1] == c for k in figs)]
    configs += sorted({k[1] for k in figs} - set(configs))
    filters = [c for c in configs if c != "none"]
    has_none = "none" in configs

    def values(cfg, n, key):
        """The figure of every round (all N for "none": it does not depend on N)."""
        return [f[key] for (r, c, m), f in figs.items()
                if c == cfg and (n is None or m == n) and key in f]

    def values_all(key):
        return [f[key] for f in figs.values() if key in f]

    def median(cfg, n, key):
        vals = values(cfg, n, key)
        return statistics.median(vals) if vals else None

    def base(r, key, cfg="none", n=None):
        """The baseline of round r: the median of its runs of cfg (of every N for none)."""
        vals = [f[key] for (rr, c, m), f in figs.items()
                if rr == r and c == cfg and (n is None or m == n) and key in f]
        return statistics.median(vals) if vals else None

    def ratios(cfg, n, key, base_cfg="none"):
        """cfg's figure / the same round's baseline, for every round that has both."""
        vals = []
        for r in rounds:
            a = figs.get((r, cfg, n), {}).get(key)
            b = base(r, key, base_cfg, None if base_cfg == "none" else n)
            if a is not None and b:
                vals.append(a / b)
        return vals

    def ratio(cfg, n, key, base_cfg="none"):
        """Median over rounds of cfg's figure / the same round's baseline."""
        vals = ratios(cfg, n, key, base_cfg)
        return statistics.median(vals) if vals else None

    def spread(cfg, n, key, base_cfg="none"):
        vals = ratios(cfg, n, key, base_cfg)
        return f"[{min(vals):.2f}–{max(vals):.2f}]" if len(vals) > 1 else ""

    def cell(cfg, n, key, digits=None):
        v = fmt(median(cfg, n, key), digits)
        if has_none and cfg != "none":
            rt = ratio(cfg, n, key)
            v += f" ({fmt(rt, 2)}×)" if rt is not None else ""
        return v

    def rows(keys):
        if has_none:
            print("| all | none | " + " | ".join(cell("none", None, k) for k in keys) + " |")
        for n in ns:
            for cfg in filters:
                if (rounds[-1], cfg, n) in figs or any(k[1] == cfg and k[2] == n for k in figs):
                    print(f"| {n:,} | {cfg} | " + " | ".join(cell(cfg, n, k) for k in keys) + " |")
        print()

    print("Figures are medians over rounds (\"none\": over every run, it does not depend on N); "
          "in parentheses the median over rounds of the figure divided by the median of the "
          "same round's runs without filtering.\n")
    print("#### Traffic\n")
    print("| N | filter | new conn/s | UDP kpps | RR p50 µs | RR p99 µs | TCP Gbit/s |")
    print("|---|---|---|---|---|---|---|")
    rows(["conn_s", "kpps", "p50", "p99", "gbit"])
    print("#### Capacity: operations per CPU-second of everything the benchmark ran (load "
          "generator, server, sink, ksoftirqd and agent; user and system time; median; × no "
          "filtering). On a machine whose CPUs other work holds, this is the rate each filter "
          "reaches relative to the others when the loads are bound by CPU, as they are on 2 "
          "cores.\n")
    print("| N | filter | conn/CPU-s | UDP packets/CPU-s | RR/CPU-s | GB/CPU-s (TCP) |")
    print("|---|---|---|---|---|---|")
    rows(["cap_conn", "cap_pkt", "cap_rr", "cap_gb"])
    print("#### CPU per operation, machine-wide (system + softirq + irq time of all CPUs, plus "
          "the agent's user time)\n")
    print("| N | filter | µs/conn | ns/UDP packet | µs/RR round trip | CPU s/GB (TCP) |")
    print("|---|---|---|---|---|---|")
    rows(["us_conn", "ns_pkt", "us_rr", "s_gb"])
    print("#### CPU per operation, our processes (system time of load generator, server, sink "
          "and ksoftirqd, plus all of the agent's time)\n")
    print("| N | filter | µs/conn | ns/UDP packet | µs/RR round trip | CPU s/GB (TCP) |")
    print("|---|---|---|---|---|---|")
    rows(["own_us_conn", "own_ns_pkt", "own_us_rr", "own_s_gb"])

    print("#### Side figures\n")
    print("| N | filter | set-up s | failed connects | UDP loss | agent RSS MB | agent events "
          "sent/lost | datapath drops |")
    print("|---|---|---|---|---|---|---|---|")
    for n in ns:
        for cfg in configs:
            have = [r for r in rounds if (r, cfg, n) in figs]
            if not have:
                continue
            last = figs[(have[-1], cfg, n)]
            ev = drops = "–"
            if "events_sent" in last:  # cumulative over one agent's life: the last round's
                ev = f"{last['events_sent']:,.0f}/{last['events_lost']:,.0f}"
                drops = ", ".join(f"{drop_name(k)} {v:,.0f}"
                                  for k, v in sorted(last["drops"].items())) or "0"
            loss = median(cfg, n, "udp_loss")
            print(f"| {n:,} | {cfg} | {fmt(median(cfg, n, 'setup_s'), 2)} | "
                  f"{fmt(median(cfg, n, 'conn_failed'), 0)} | "
                  f"{'–' if loss is None else f'{loss * 100:.1f}%'} | "
                  f"{fmt(median(cfg, n, 'rss_mb'), 1)} | {ev} | {drops} |")
    print()
    print("Agent events and drops are those of the last round's agent over its whole run (the "
          "probe of the denied port included).\n")
    loads = values_all("load1")
    if loads:
        print(f"Load average (1 min) after each configuration: {min(loads):.1f} to {max(loads):.1f}, "
              f"median {statistics.median(loads):.1f}.\n")

    if not has_none or "bulkhead" not in configs:
        return
    print("#### Goals (Bulkhead)\n")
    print("Medians over rounds of the same-round ratio, in brackets the lowest and highest round.\n")
    # Throughput figures must reach 0.95× no filtering; latency must stay within 1/0.95×.
    checks = [("conn_s", "new conn/s", True), ("kpps", "UDP pps", True),
              ("gbit", "TCP Gbit/s", True), ("p50", "RR p50", False), ("p99", "RR p99", False)]
    for key, label, higher_better in checks:
        parts = []
        for n in ns:
            rt = ratio("bulkhead", n, key)
            if rt is None:
                continue
            ok = rt >= GOAL if higher_better else rt <= 1 / GOAL
            parts.append(f"N={n:,}: {rt:.2f}× {spread('bulkhead', n, key)} "
                         f"{'met' if ok else 'MISSED'}")
        goal = f"≥ {GOAL}×" if higher_better else f"≤ {1 / GOAL:.3f}×"
        print(f"- {label} vs no filtering (goal {goal}): " + "; ".join(parts))
    # The same goals on capacity (operations per CPU-second), which other work on a shared
    # machine disturbs far less than the rates.
    for key, label in [("cap_conn", "new connections"), ("cap_pkt", "UDP packets"),
                       ("cap_gb", "TCP bytes"), ("cap_rr", "RR round trips")]:
        parts = []
        for n in ns:
            rt = ratio("bulkhead", n, key)
            if rt is not None:
                parts.append(f"N={n:,}: {rt:.2f}× {spread('bulkhead', n, key)} "
                             f"{'met' if rt >= GOAL else 'MISSED'}")
        print(f"- capacity for {label} vs no filtering (goal ≥ {GOAL}×): " + "; ".join(parts))
    if len(ns) > 1:
        lo, hi = ns[0], ns[-1]
        for cfg in filters:
            parts = []
            for key, label, _ in checks + [("own_us_conn", "CPU/conn", False),
                                           ("own_ns_pkt", "CPU/packet", False)]:
                a, b = median(cfg, lo, key), median(cfg, hi, key)
                if a and b:
                    parts.append(f"{label} {b / a:.2f}×")
            print(f"- across N, {cfg} at N={hi:,} / at N={lo:,}: " + ", ".join(parts))
    hi = ns[-1]
    for cfg in ("iptables-legacy", "iptables-nft", "nft"):
        if cfg in configs:
            rt = ratio("bulkhead", hi, "conn_s", base_cfg=cfg)
            cost = ratio("bulkhead", hi, "own_us_conn", base_cfg=cfg)
            if rt is not None:
                verdict = ("met" if rt >= 5 else "MISSED") if cfg.startswith("iptables") else "no goal"
                cap = ratio("bulkhead", hi, "cap_conn", base_cfg=cfg)
                print(f"- new conn/s, Bulkhead / {cfg} at N={hi:,} (goal ≥ 5× iptables): {rt:.2f}× "
                      f"{spread('bulkhead', hi, 'conn_s', cfg)} ({verdict}); capacity "
                      f"{fmt(cap, 2)}× {spread('bulkhead', hi, 'cap_conn', cfg)}; CPU per "
                      f"connection (our processes) {fmt(cost, 2)}× {cfg}'s")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--metrics":
        metrics_json(sys.argv[2])
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
