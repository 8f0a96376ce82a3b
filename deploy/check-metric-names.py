#!/usr/bin/env python3
"""Checks that the alert rules, their tests and the Grafana dashboard only use metrics signbus exports.

    deploy/check-metric-names.py        (run by testenv/alerts-test.sh; exits 1 naming every problem)

What exists is read from the source, not from a list kept here: the metric names and label names registered in
src/metrics.rs (histograms also expose _bucket{le}, _sum and _count), the `outcome` values (Outcome::as_str in
src/server/outcome.rs, plus `rejected` and `released` from src/server/mod.rs) and the dead-letter `reason` values
(RejectReason::as_str). Checked: every `signbus_*` name in deploy/prometheus/*.yml and in every string of
deploy/grafana/signbus.json, every label matcher `name{label="value"}` on those metrics (the label must be one
the metric has, or job/instance which Prometheus adds; outcome and reason values must be real), and that each
file uses at least one metric. Prometheus's own `up` is the one other series allowed.
"""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
METRICS_RS = ROOT / "src/metrics.rs"
HANDLER_RS = ROOT / "src/server/outcome.rs"
SERVER_RS = ROOT / "src/server/mod.rs"
RULES = sorted((ROOT / "deploy/prometheus").glob("*.yml"))
DASHBOARD = ROOT / "deploy/grafana/signbus.json"
SCRAPE_LABELS = {"job", "instance"}


def registered():
    """{series name: set of label names} for every series src/metrics.rs exposes."""
    text = METRICS_RS.read_text()
    text = text.split("#[cfg(test)]")[0]
    series = {}
    # counter_vec("name", "help", &["a", "b"]) / gauge("name", ...) / histogram(...) / counter(...) /
    # IntGaugeVec::new(Opts::new("name", ...), &["a"])
    call = re.compile(
        r'\b(counter_vec|gauge|histogram|counter|Opts::new)\(\s*"(signbus_[a-z0-9_]+)"\s*,\s*"(?:[^"\\]|\\.)*"\s*'
        r'(?:,\s*&\[([^\]]*)\])?\s*,?\s*\)(?:,\s*&\[([^\]]*)\])?',
        re.S,
    )
    for kind, name, labels, vec_labels in call.findall(text):
        names = set(re.findall(r'"([a-z_]+)"', (labels or "") + (vec_labels or "")))
        if kind == "histogram":
            series[name] = names  # the family, as descriptions name it
            series[name + "_bucket"] = names | {"le"}
            series[name + "_sum"] = names
            series[name + "_count"] = names
        else:
            series[name] = names
    if len(series) < 10:
        sys.exit(f"check-metric-names: found only {sorted(series)} in {METRICS_RS}; has its shape changed?")
    return series


def label_values():
    """{label: set of values} for the labels whose values alerts select on."""
    handler = HANDLER_RS.read_text()
    outcomes = set(re.findall(r'Outcome::\w+ => "([a-z_]+)"', handler))
    server = SERVER_RS.read_text()
    for settled in ("rejected", "released"):
        if f'"{settled}"' in server:
            outcomes.add(settled)
    reasons = set(re.findall(r'RejectReason::\w+ => "([a-z_]+)"', handler))
    if "signed" not in outcomes or not reasons:
        sys.exit("check-metric-names: could not read Outcome / RejectReason labels from outcome.rs")
    return {"outcome": outcomes, "reason": reasons}


def texts(path):
    """The strings of a file that may name metrics: the whole text for YAML, every JSON string otherwise."""
    if path.suffix == ".json":
        out = []

        def walk(v):
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)

        walk(json.loads(path.read_text()))
        return out
    return [path.read_text()]


def check(path, series, values):
    problems = []
    used = set()
    for text in texts(path):
        for name in re.findall(r"\bsignbus_[a-z0-9_]+", text):
            used.add(name)
            if name not in series:
                problems.append(f"{name} is not a metric signbus exports")
        for name, matchers in re.findall(r"\b(signbus_[a-z0-9_]+|up)\s*\{([^}]*)\}", text):
            allowed = series.get(name, set()) | SCRAPE_LABELS
            for label, op, value in re.findall(r'([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
                if label not in allowed:
                    problems.append(f"{name} has no label {label} (it has {sorted(allowed)})")
                elif label in values and op in ("=", "!=") and value not in values[label]:
                    problems.append(f'{name}{{{label}="{value}"}}: {label} is one of {sorted(values[label])}')
    if not used:
        problems.append("uses no signbus metric at all")
    return [f"{path.relative_to(ROOT)}: {p}" for p in problems], used


def main():
    series = registered()
    values = label_values()
    problems, used = [], set()
    for path in RULES + [DASHBOARD]:
        p, u = check(path, series, values)
        problems += p
        used |= u
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    families = sorted({re.sub(r"_(bucket|sum|count)$", "", n) for n in used})
    print(f"check-metric-names: {len(RULES) + 1} files use {len(families)} metrics, all exported: {', '.join(families)}")


if __name__ == "__main__":
    main()
