#!/usr/bin/env python3
"""bench/run.sh's report: reads the measured values (name TAB JSON), prints the table (every figure beside its
baseline from the same run, with the ratio and the issue-12 target) and writes everything as JSON."""
import datetime
import json
import os
import platform
import sys

results_path, json_path, n, workers, soak = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
r = {}
with open(results_path) as f:
    for line in f:
        name, _, value = line.rstrip("\n").partition("\t")
        try:
            r[name] = json.loads(value)
        except ValueError:
            r[name] = {"na": f"unreadable measurement: {value[:80]!r}"}

rows = []


def na_reason(*names):
    for k in names:
        v = r.get(k)
        if v is None:
            return f"{k} not measured"
        if isinstance(v, dict) and "na" in v:
            return v["na"]
        if isinstance(v, dict) and v.get("ok") is False:
            return f"{k}: the run failed"
    return None


def row(figure, value, baseline, ratio="", target="", needs=()):
    why = na_reason(*needs)
    if why:
        rows.append((figure, f"n/a ({why})", baseline if isinstance(baseline, str) and "n/a" not in baseline else "", "", target))
    else:
        rows.append((figure, value(), baseline() if callable(baseline) else baseline, ratio() if callable(ratio) else ratio, target))


def met(ok):
    return "met" if ok else "NOT met"


def rate(k):
    return n / r[k]["wall_s"]


row("limit gpgme (alone, ed25519)", lambda: f"{r['limit.gpgme']['per_s']:.0f} sig/s",
    lambda: f"{r['limit.gpg-sign-loops']['loops']} `gpg --sign` loops: {r['limit.gpg-sign-loops']['per_s']:.0f} sig/s",
    lambda: f"{r['limit.gpgme']['per_s'] / r['limit.gpg-sign-loops']['per_s']:.2f}×", needs=("limit.gpgme", "limit.gpg-sign-loops"))
row("limit in-process (alone, ed25519)", lambda: f"{r['limit.in-process']['per_s']:.0f} sig/s",
    lambda: f"gpgme limit {r['limit.gpgme']['per_s']:.0f} sig/s",
    lambda: f"{r['limit.in-process']['per_s'] / r['limit.gpgme']['per_s']:.1f}×", needs=("limit.in-process", "limit.gpgme"))
for backend in ("gpgme", "in-process"):
    for proto in ("amqp1", "amqp091"):
        k = f"e2e.{backend}.{proto}"
        lim = f"limit.{backend}"
        target = ""
        if backend == "gpgme":
            target = "≥ 90 % of limit: " + (met(rate(k) / r[lim]["per_s"] >= 0.9) if not na_reason(k, lim) else "n/a")
        elif not na_reason(k, f"e2e.gpgme.{proto}"):
            ok = rate(k) >= 3000 and rate(k) >= 5 * rate(f"e2e.gpgme.{proto}")
            target = f"≥ 3000/s and ≥ 5× gpgme ({rate(k) / rate(f'e2e.gpgme.{proto}'):.1f}×): {met(ok)}"
        row(f"server end to end, {backend}, {proto}, {n} requests",
            lambda k=k: f"{rate(k):.0f} sig/s; CPU per request: server {r.get(k + '.server_cpu_ms_per_request', 'n/a')} ms"
                        f", its gpg processes {r.get(k + '.children_cpu_ms_per_request', 'n/a')} ms, RabbitMQ {r.get(k + '.broker_cpu_ms_per_request', 'n/a')} ms, "
                        f"requester {r[k]['cpu_s'] * 1000 / n:.2f} ms",
            lambda lim=lim: f"{backend} limit {r[lim]['per_s']:.0f} sig/s",
            lambda k=k, lim=lim: f"{rate(k) / r[lim]['per_s']:.2f}×", target, needs=(k, lim))
for kind in ("single", "batch"):
    for count in (1, 1000):
        s, p = f"requester.signbus.{kind}.{count}", f"requester.pubtools.{kind}.{count}"
        target = ""
        if not na_reason(s, p):
            cpu_ok = count != 1000 or r[p]["cpu_s"] >= 10 * r[s]["cpu_s"]
            target = f"{'≥ 10× less CPU, ' if count == 1000 else ''}RSS below: {met(cpu_ok and r[s]['rss_mib'] < r[p]['rss_mib'])}"
        row(f"requester, {count} reference(s), {kind}: wall / CPU / peak RSS",
            lambda s=s: f"{r[s]['wall_s']:.2f} s / {r[s]['cpu_s']:.2f} s / {r[s]['rss_mib']:.0f} MiB",
            lambda p=p: f"pubtools-sign 1.0.6: {r[p]['wall_s']:.2f} s / {r[p]['cpu_s']:.2f} s / {r[p]['rss_mib']:.0f} MiB",
            lambda s=s, p=p: f"CPU {r[p]['cpu_s'] / max(r[s]['cpu_s'], 0.001):.1f}× less, RSS {r[s]['rss_mib'] / r[p]['rss_mib']:.2f}×",
            target, needs=(s, p))
for backend in ("in-process", "gpgme"):
    k, lim, rtt = f"latency.{backend}.amqp1", f"limit.{backend}", "latency.broker_rtt.amqp1"
    row(f"latency, {backend}, 200 one-reference requests one at a time (p50 / p99)",
        lambda k=k: f"{r[k]['p50_ms']:.1f} / {r[k]['p99_ms']:.1f} ms",
        lambda lim=lim: f"one signature {r[lim]['single_p50_ms']:.2f} ms + one broker round trip {r[rtt]['p50_ms']:.2f} ms (p50)",
        lambda k=k, lim=lim: f"{r[k]['p50_ms'] / (r[lim]['single_p50_ms'] + r[rtt]['p50_ms']):.1f}× (p50)",
        needs=(k, lim, rtt))
for backend in ("gpgme", "in-process"):
    k = f"memory.inflight.{backend}"
    row(f"server RSS, {backend}, 1000 requests in flight (start / after the first request / peak / end)",
        lambda k=k: f"{r[k]['start_mib']} / {r[k]['after_first_mib']} / {r[k]['peak_mib']} / {r[k]['end_mib']} MiB", "target < 64 MiB", "",
        (met(r[k]["peak_mib"] < 64) if not na_reason(k) else ""), needs=(k,))
for k, what in (("memory.soak.in-process", "with the reply cache (default, 10,000 replies)"),
                ("memory.soak.in-process.no-cache", "without the reply cache (capacity 0)")):
    row(f"server RSS through a soak, {what} (in-process, 1000 in flight; start / after 10k requests / peak / end)",
        lambda k=k: f"{r[k]['start_mib']} / {r[k]['after_10k_mib']} / {r[k]['peak_mib']} / {r[k]['end_mib']} MiB over {r[k]['requests']} requests in {r[k]['seconds']} s",
        lambda: "flat: ±10 % of start", lambda k=k: f"end {r[k]['end_mib'] / r[k]['start_mib']:.2f}× start, {r[k]['end_mib'] / r[k]['after_10k_mib']:.2f}× after 10k; "
        f"after the first 2000: {min(r[k]['samples_mib'][1:])}–{max(r[k]['samples_mib'][1:])} MiB",
        (met(abs(r[k]["end_mib"] / r[k]["start_mib"] - 1) <= 0.1) if not na_reason(k) else ""), needs=(k,))
row("fairness (gpgme): singles while a 5000-claim batch signs (p50 / p99)",
    lambda: f"{r['fairness.gpgme.beside_batch']['p50_ms']:.0f} / {r['fairness.gpgme.beside_batch']['p99_ms']:.0f} ms",
    lambda: f"alone: {r['fairness.gpgme.alone']['p50_ms']:.1f} / {r['fairness.gpgme.alone']['p99_ms']:.1f} ms",
    lambda: f"p99 {r['fairness.gpgme.beside_batch']['p99_ms'] / r['fairness.gpgme.alone']['p99_ms']:.0f}×",
    needs=("fairness.gpgme.alone", "fairness.gpgme.beside_batch"))

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"\nsignbus bench/run.sh, {now}, {os.cpu_count()} cores, {platform.machine()}, ed25519, {workers} workers, "
      f"testenv RabbitMQ; soak {soak} requests; load average (1/5/15 min) before {r.get('load.before')}, "
      f"after {r.get('load.after')}\n")
print("| figure | signbus | baseline (same run) | ratio | target |")
print("|---|---|---|---|---|")
for figure, value, baseline, ratio, target in rows:
    print(f"| {figure} | {value} | {baseline} | {ratio} | {target} |")
with open(json_path, "w") as f:
    json.dump({"date": now, "cores": os.cpu_count(), "workers": workers, "n": n, "soak": soak, "measured": r,
               "table": [dict(zip(("figure", "signbus", "baseline", "ratio", "target"), x)) for x in rows]}, f, indent=1)
