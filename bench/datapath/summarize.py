#!/usr/bin/env python3
"""Tables of the datapath traffic benchmark (bench/datapath/run.sh) from its results.jsonl.

Every figure is the median over rounds; every ratio is the median over rounds of the figure
divided by "none" (no filtering) measured in the same round at the same N, so that drift of a
noisy machine hits both sides of a ratio alike. CPU cost per operation is the machine's system,
softirq and irq time (from /proc/stat) plus the agent's user time (its system time is already
in the machine's), divided by the operations.

Usage: summarize.py RESULTS.jsonl          (markdown tables and the goals on stdout)
       summarize.py --metrics PID < TEXT   (Prometheus text -> JSON, plus the PID's VmRSS)
"""
import json
import re
import statistics
import sys
from collections import defaultdict

CONFIG_ORDER = ["none", "iptables-legacy", "iptables-nft", "nft", "bulkhead"]
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
    """CPU seconds the system under test spent: kernel (all CPUs) plus the agent's user time."""
    return rec["cpu_sys_s"] + rec["cpu_softirq_s"] + rec["cpu_irq_s"] + rec["watched_user_s"]


def figures(recs):
    """One run of one configuration: test records -> named figures."""
    by = {r["test"]: r for r in recs}
    f = {}
    if "connect" in by:
        c = by["connect"]
        f["conn_s"] = c["ops"] / c["wall_s"]
        f["conn_failed"] = c["failed"]
        if c["ops"]:
            f["us_conn"] = sut_cpu(c) / c["ops"] * 1e6
    if "udp-flood" in by and "udp-sink" in by:
        fl, sk = by["udp-flood"], by["udp-sink"]
        f["kpps"] = sk["pps"] / 1e3
        f["udp_loss"] = 1 - sk["packets"] / fl["sent"] if fl["sent"] else 0
        if sk["packets"]:
            f["ns_pkt"] = sut_cpu(fl) / sk["packets"] * 1e9
    if "rr" in by:
        rr = by["rr"]
        f["p50"] = rr["p50_us"]
        f["p99"] = rr["p99_us"]
        f["us_rr"] = sut_cpu(rr) / rr["ops"] * 1e6
    if "stream" in by:
        st = by["stream"]
        f["gbit"] = st["gbit_s"]
        f["s_gb"] = sut_cpu(st) / (st["bytes"] / 1e9)
    if "meta" in by:
        m = by["meta"]
        f["setup_s"] = m["setup_s"]
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
    for line in open(path):
        line = line.strip()
        if line:
            r = json.loads(line)
            runs[(r["round"], r["config"], r["n"])].append(r)
    figs = {k: figures(v) for k, v in runs.items()}
    rounds = sorted({k[0] for k in figs})
    ns = sorted({k[2] for k in figs})
    configs = [c for c in CONFIG_ORDER if any(k[1] == c for k in figs)]
    configs += sorted({k[1] for k in figs} - set(configs))

    def median(cfg, n, key):
        vals = [figs[(r, cfg, n)][key] for r in rounds
                if (r, cfg, n) in figs and key in figs[(r, cfg, n)]]
        return statistics.median(vals) if vals else None

    def ratio(cfg, n, key, base_cfg="none", base_n=None):
        """Median over rounds of cfg/base measured in the same round."""
        vals = []
        for r in rounds:
            a = figs.get((r, cfg, n), {}).get(key)
            b = figs.get((r, base_cfg, n if base_n is None else base_n), {}).get(key)
            if a is not None and b:
                vals.append(a / b)
        return statistics.median(vals) if vals else None

    has_none = "none" in configs

    def cell(cfg, n, key, digits=None):
        v = fmt(median(cfg, n, key), digits)
        if has_none and cfg != "none":
            rt = ratio(cfg, n, key)
            v += f" ({fmt(rt, 2)}×)" if rt is not None else ""
        return v

    print("### Traffic figures (median; in parentheses: × no filtering in the same round)\n")
    print("| N | filter | new conn/s | UDP kpps | RR p50 µs | RR p99 µs | TCP Gbit/s |")
    print("|---|---|---|---|---|---|---|")
    for n in ns:
        for cfg in configs:
            if not any(k[1] == cfg and k[2] == n for k in figs):
                continue
            print(f"| {n:,} | {cfg} | {cell(cfg, n, 'conn_s')} | {cell(cfg, n, 'kpps')} | "
                  f"{cell(cfg, n, 'p50')} | {cell(cfg, n, 'p99')} | {cell(cfg, n, 'gbit')} |")
    print()
    print("### CPU per operation (kernel sys+softirq+irq of the machine, plus the agent's user "
          "time; median; × no filtering)\n")
    print("| N | filter | µs/conn | ns/UDP packet | µs/RR round trip | CPU s/GB (TCP) |")
    print("|---|---|---|---|---|---|")
    for n in ns:
        for cfg in configs:
            if not any(k[1] == cfg and k[2] == n for k in figs):
                continue
            print(f"| {n:,} | {cfg} | {cell(cfg, n, 'us_conn')} | {cell(cfg, n, 'ns_pkt')} | "
                  f"{cell(cfg, n, 'us_rr')} | {cell(cfg, n, 's_gb')} |")
    print()
    print("### Side figures (median)\n")
    print("| N | filter | setup s | failed connects | UDP loss | agent RSS MB | events sent/lost "
          "(last round) | datapath drops (last round) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in ns:
        for cfg in configs:
            last = figs.get((rounds[-1], cfg, n))
            if last is None:
                continue
            ev = drops = "–"
            if "events_sent" in last:
                ev = f"{last['events_sent']:,.0f}/{last['events_lost']:,.0f}"
                drops = ", ".join(f"{drop_name(k)} {v:,.0f}"
                                  for k, v in sorted(last["drops"].items())) or "0"
            loss = median(cfg, n, "udp_loss")
            print(f"| {n:,} | {cfg} | {fmt(median(cfg, n, 'setup_s'), 2)} | "
                  f"{fmt(median(cfg, n, 'conn_failed'), 0)} | "
                  f"{'–' if loss is None else f'{loss * 100:.1f}%'} | "
                  f"{fmt(median(cfg, n, 'rss_mb'), 1)} | {ev} | {drops} |")
    print()

    if not has_none or "bulkhead" not in configs:
        return
    print("### Goals (Bulkhead)\n")
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
            parts.append(f"N={n:,}: {rt:.2f}× {'met' if ok else 'MISSED'}")
        goal = f"≥ {GOAL}×" if higher_better else f"≤ {1 / GOAL:.3f}×"
        print(f"- {label} vs no filtering ({goal}): " + "; ".join(parts))
    if len(ns) > 1:
        lo, hi = ns[0], ns[-1]
        parts = []
        for key, label, _ in checks:
            a, b = median("bulkhead", lo, key), median("bulkhead", hi, key)
            if a and b:
                parts.append(f"{label} {b / a:.2f}×")
        print(f"- flat across N (Bulkhead at N={hi:,} / at N={lo:,}, medians): " + ", ".join(parts))
        for cfg in ("iptables-legacy", "iptables-nft"):
            if cfg in configs:
                parts = []
                for key, label, _ in checks:
                    a, b = median(cfg, lo, key), median(cfg, hi, key)
                    if a and b:
                        parts.append(f"{label} {b / a:.2f}×")
                print(f"- for comparison, {cfg} at N={hi:,} / at N={lo:,}: " + ", ".join(parts))
    hi = ns[-1]
    for cfg in ("iptables-legacy", "iptables-nft", "nft"):
        if cfg in configs:
            rt = ratio("bulkhead", hi, "conn_s", base_cfg=cfg)
            cost = ratio("bulkhead", hi, "us_conn", base_cfg=cfg)
            if rt is not None:
                verdict = ("met" if rt >= 5 else "MISSED") if cfg.startswith("iptables") else "no goal"
                print(f"- new conn/s vs {cfg} at N={hi:,} (goal ≥ 5× for iptables): {rt:.2f}× "
                      f"({verdict}); CPU per connection {cost:.2f}× {cfg}'s")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--metrics":
        metrics_json(sys.argv[2])
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
