//! The import rules of the library, checked: each top-level module may import only the modules listed for it in
//! [`ALLOWED`], which is the layer diagram of ARCHITECTURE.md written as data. A new `use crate::…` that points
//! sideways or up fails `every_import_follows_the_layer_diagram`; change the diagram (and this table) on purpose
//! or move the code.
#![cfg(test)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Module → the modules it may import (besides itself). Leaves import nothing from the crate.
const ALLOWED: &[(&str, &[&str])] = &[
    // The two ends.
    (
        "server",
        &[
            "config",
            "transport",
            "signing",
            "wire",
            "claim",
            "metrics",
            "digest",
            "backoff",
            "cosign",
            "reference",
        ],
    ),
    (
        "requester",
        &[
            "transport",
            "wire",
            "claim",
            "reference",
            "digest",
            "backoff",
            // cosign signatures, native or over the bus, attached through the registry client.
            "cosign",
            "registry",
            "signing",
        ],
    ),
    // Checking and publishing images.
    ("store", &["verify", "reference", "digest"]),
    (
        "verify",
        &[
            "claim",
            "reference",
            "digest",
            "strict_json",
            "tls",
            "cosign",
            "registry",
        ],
    ),
    // Cosign signatures and the registry they live in (signing only for its `Passphrase` secret type).
    (
        "cosign",
        &[
            "registry",
            "reference",
            "digest",
            "strict_json",
            "simple_signing",
            "signing",
            "tls",
        ],
    ),
    ("registry", &["tls", "signing", "reference", "digest"]),
    // Server configuration: shapes the lower layers own.
    ("config", &["transport", "signing", "wire", "cosign"]),
    // Moving bytes; signing bytes.
    ("transport", &["tls", "cert", "backoff"]),
    ("signing", &[]),
    // Formats.
    ("wire", &["digest", "strict_json", "reference"]),
    ("claim", &["digest", "reference", "simple_signing"]),
    ("simple_signing", &["strict_json"]),
    ("reference", &["digest"]),
    // Leaves.
    ("metrics", &[]),
    ("tls", &[]),
    ("cert", &[]),
    ("digest", &[]),
    ("strict_json", &[]),
    ("backoff", &[]),
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules `source` names through `crate::`, outside its `#[cfg(test)]` module (tests may reach
/// anywhere to build their fixtures).
fn imports(source: &str) -> BTreeSet<String> {
    let code = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `signbus_crate::`
        }
        let name: String = code[at + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_import_follows_the_layer_diagram() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        // The binary's edge (main, cli*) may use everything; lib.rs and this file only declare; test files
        // (`tests.rs`, `*_tests.rs`) may reach anywhere to build their fixtures.
        let name = rel.file_name().unwrap_or_default().to_string_lossy();
        if top == "main" || top.starts_with("cli") || top == "lib" || top == "layers" {
            continue;
        }
        if name.ends_with("tests.rs") {
            continue;
        }
        seen.insert(top.clone());
        let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == top) else {
            broken.push(format!(
                "{}: module {top} is not in the layer table",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for used in imports(&text) {
            if used != top && !allowed.contains(&used.as_str()) {
                broken.push(format!("{}: {top} imports {used}", rel.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layer diagram:\n{}",
        broken.join("\n")
    );
    for (m, _) in ALLOWED {
        assert!(
            seen.contains(*m),
            "the layer table names {m}, which is no module"
        );
    }
}

#[test]
fn the_import_scan_finds_paths_and_skips_tests() {
    let src = "use crate::wire::Schema;\nfn f() { crate::claim::x(); my_crate::no(); }\n\
               #[cfg(test)]\nmod tests { use crate::server::X; }";
    let found: Vec<String> = imports(src).into_iter().collect();
    assert_eq!(found, ["claim", "wire"]);
}
