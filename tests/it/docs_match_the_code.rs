//! The README cannot drift from the code: its metrics table names every metric the server registers and every
//! label value it emits (and nothing else), its server configuration reference covers every key the server
//! accepts (and nothing else), and the commands and flags it shows are the ones `signbus --help` prints.
//! No broker needed: everything is read from the library and the binary.

use crate::support::Args;
use signbus::config::ServerConfig;
use signbus::metrics::Metrics;
use signbus::server::handler::{Outcome, RejectReason};
use signbus::wire::RequestType;
use std::collections::BTreeSet;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The backticked spans of `text`.
fn ticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The table rows (lines starting with `| `) of the README section that starts with the line `heading`, up to
/// the next line starting with `stop`.
fn rows<'a>(readme: &'a str, heading: &str, stop: &str) -> Vec<&'a str> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let end = rest.find(stop).unwrap_or(rest.len());
    rest[..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect()
}

/// The first cell of a table row.
fn first_cell(row: &str) -> &str {
    row.split('|').nth(1).unwrap_or_default()
}

#[test]
fn the_metrics_table_lists_every_metric_and_label_value_the_server_emits() {
    let readme = readme();
    let table: Vec<&str> = rows(&readme, "### Health endpoints and metrics", "\n### ")
        .into_iter()
        .filter(|r| first_cell(r).contains("`signbus_"))
        .collect();
    assert!(!table.is_empty(), "no metrics table");
    let metrics = Metrics::new();
    // Every label value the code can emit: request types, outcomes, dead-letter reasons.
    let types: Vec<&str> = RequestType::ALL
        .iter()
        .map(|t| t.as_str())
        .chain(["unknown"])
        .collect();
    let outcomes: Vec<&str> = Outcome::ALL
        .iter()
        .map(|o| o.as_str())
        .chain([signbus::server::REJECTED, signbus::server::RELEASED])
        .collect();
    let reasons: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    for t in &types {
        metrics.requests_received.with_label_values(&[t]).inc();
    }
    for o in &outcomes {
        metrics.requests.with_label_values(&["batch", "k", o]).inc();
    }
    for r in &reasons {
        metrics.dead_lettered.with_label_values(&[r]).inc();
    }
    let registered: BTreeSet<String> = metrics
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert!(registered.len() >= 12, "{registered:?}");
    let documented: BTreeSet<String> = table
        .iter()
        .flat_map(|r| ticked(first_cell(r)))
        .map(|t| t.split('{').next().unwrap().to_owned())
        .collect();
    let missing: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "metrics missing from README: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "README documents metrics that do not exist: {stale:?}"
    );
    let row = |name: &str| {
        *table
            .iter()
            .find(|r| ticked(first_cell(r)).iter().any(|t| t.starts_with(name)))
            .unwrap()
    };
    for (metric, values) in [
        ("signbus_requests_received_total", &types),
        ("signbus_requests_total", &outcomes),
        ("signbus_dead_lettered_total", &reasons),
    ] {
        let spans = ticked(row(metric));
        let undocumented: Vec<_> = values.iter().filter(|v| !spans.contains(v)).collect();
        assert!(
            undocumented.is_empty(),
            "{metric}: label values missing from README: {undocumented:?}"
        );
    }
}

/// A minimal valid server configuration, as YAML.
const BASE: &str =
    "{broker: {urls: ['amqp://x']}, server: {listen_to: /q}, signing: {keys: [{id: k}]}}";

/// The member names serde says a struct at `path` accepts, found by offering it an unknown member; `None` when
/// what is at `path` is not a struct (a scalar, an enum, a list of scalars).
fn members_at(path: &[String]) -> Option<Vec<String>> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(BASE).unwrap();
    let mut at = &mut doc;
    for seg in path {
        let (name, list) = match seg.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (seg.as_str(), false),
        };
        let map = at.as_mapping_mut().unwrap();
        let key = serde_yaml::Value::String(name.to_owned());
        if list {
            let items = map.entry(key).or_insert(serde_yaml::Value::Null);
            if items.as_sequence().is_none_or(|s| s.is_empty()) {
                *items = serde_yaml::Value::Sequence(vec![Default::default()]);
            }
            let seq = items.as_sequence_mut().unwrap();
            if !seq[0].is_mapping() {
                seq[0] = serde_yaml::Value::Mapping(Default::default());
            }
            at = &mut seq[0];
        } else {
            let entry = map.entry(key).or_insert(serde_yaml::Value::Null);
            if !entry.is_mapping() {
                *entry = serde_yaml::Value::Mapping(Default::default());
            }
            at = entry;
        }
    }
    at.as_mapping_mut()
        .unwrap()
        .insert("zz_probe".into(), 1.into());
    let yaml = serde_yaml::to_string(&doc).unwrap();
    let err = ServerConfig::from_yaml(&yaml).err()?.message;
    if !(err.contains("unknown field") && err.contains("zz_probe")) {
        return None;
    }
    let expected = &err[err.find("expected").unwrap_or(err.len())..];
    // serde's message: expected `one of `a`, `b`, …`: the member names are the identifiers between backticks.
    Some(
        expected
            .split('`')
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned)
            .collect(),
    )
}

/// Every configuration path the server accepts (`a.b`, `a.list[].c`), structs and leaves, from the code.
fn accepted_paths(path: Vec<String>, out: &mut Vec<(String, bool)>) {
    let Some(members) = members_at(&path) else {
        return;
    };
    for m in members {
        let mut as_struct = path.clone();
        as_struct.push(m.clone());
        let mut as_list = path.clone();
        as_list.push(format!("{m}[]"));
        let (child, is_struct) = if members_at(&as_struct).is_some() {
            (as_struct, true)
        } else if members_at(&as_list).is_some() {
            (as_list, true)
        } else {
            (as_struct, false)
        };
        out.push((child.join("."), is_struct));
        if is_struct {
            accepted_paths(child, out);
        }
    }
}

#[test]
fn the_configuration_reference_covers_every_server_key_and_nothing_else() {
    let mut accepted = Vec::new();
    accepted_paths(Vec::new(), &mut accepted);
    let names: Vec<&str> = accepted.iter().map(|(p, _)| p.as_str()).collect();
    for sure in [
        "broker.urls",
        "broker.tls.ca_cert",
        "signing.keys[].id",
        "authorization.grants[].types",
    ] {
        assert!(names.contains(&sure), "the probe missed {sure}: {names:?}");
    }
    let readme = readme();
    let table = rows(&readme, "### Server (`signbus serve", "#### Authorization");
    let documented: Vec<(&str, &str)> = table
        .iter()
        .flat_map(|r| ticked(first_cell(r)).into_iter().map(move |t| (t, *r)))
        .collect();
    let bare = |p: &str| p.replace("[]", "");
    // Nothing documented that the server does not accept.
    for (d, _) in &documented {
        assert!(
            accepted.iter().any(|(p, _)| bare(p) == bare(d)),
            "README documents `{d}`, which the server does not accept"
        );
    }
    // Every leaf documented: in its own row, or by name in the row of a documented ancestor.
    let mut missing = Vec::new();
    for (path, is_struct) in &accepted {
        if *is_struct {
            continue;
        }
        let leaf = path.rsplit('.').next().unwrap().replace("[]", "");
        let covered = documented.iter().any(|(d, row)| {
            let d = bare(d);
            let p = bare(path);
            p == d
                || (p.starts_with(&format!("{d}."))
                    && row
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .any(|w| w == leaf))
        });
        if !covered {
            missing.push(path.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "configuration keys missing from README: {missing:?}"
    );
}

#[test]
fn the_commands_and_flags_the_readme_shows_are_the_ones_the_binary_has() {
    let (code, help, _) = Args::new("--help").run();
    assert_eq!(code, 0);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 6, "{help}");
    let readme = readme();
    for c in &commands {
        assert!(
            readme.contains(&format!("signbus {c}")),
            "README never shows `signbus {c}`"
        );
    }
    // Every `signbus <command> … --flag` line in the README uses a command and flags that exist.
    for line in readme.lines() {
        let Some(at) = line.find("signbus ") else {
            continue;
        };
        let words: Vec<&str> = line[at + 8..].split_whitespace().collect();
        let Some(cmd) = words.first() else { continue };
        if !commands.iter().any(|c| c == cmd) {
            continue;
        }
        let (code, sub_help, _) = Args::new(cmd).flag("--help").run();
        assert_eq!(code, 0);
        for w in &words[1..] {
            let flag = w
                .trim_start_matches(['[', '(', '`'])
                .split(['=', ']', ')', '`', ','])
                .next()
                .unwrap();
            if flag.starts_with("--") && flag.len() > 2 {
                assert!(
                    sub_help.contains(flag),
                    "README shows `signbus {cmd} … {flag}`, which `signbus {cmd} --help` does not list:\n{line}"
                );
            }
        }
    }
}
