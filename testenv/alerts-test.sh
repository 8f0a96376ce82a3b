#!/usr/bin/env bash
# Checks the operations files: the Prometheus alerting rules (`promtool check rules`), their unit tests (one
# firing and one quiet case per alert, `promtool test rules`), the Grafana dashboard (valid JSON), and that
# rules, tests and dashboard name only metrics, labels and label values signbus really exports
# (deploy/check-metric-names.py, which reads src/metrics.rs and src/server/outcome.rs). No broker, no build;
# a few seconds. promtool comes from Debian's prometheus package (testenv/deps.sh package).
set -euo pipefail
cd "$(dirname "$0")/.."

testenv/deps.sh package
promtool check rules deploy/prometheus/signbus-rules.yml
promtool test rules deploy/prometheus/signbus-rules.test.yml
python3 -m json.tool deploy/grafana/signbus.json >/dev/null
python3 deploy/check-metric-names.py
echo "alerts-test.sh: rules, rule tests, dashboard and metric names OK"
