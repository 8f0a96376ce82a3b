//! What `cosign-container-sign` prints: pubtools-sign 1.0.6's JSON document (Python `json.dumps` layout) or its
//! `--raw` lines, plus which way each signature was made.
//!
//! The document has pubtools-sign's members in its order — `signer_result`, `operation_results` (one text per
//! signature: cosign's stderr, or signbus's `Pushing signature to: <repo>`), `operation`, `signing_keys` — and
//! one more, `signed_with`: for each entry of `operation_results`, `signbus` (made natively) or `cosign_bin`.
//! With `--raw`, stdout is pubtools-sign's (each result printed as Python's `print` does), and each signature
//! gets a stderr line `signed_with <signbus|cosign_bin>: <repo@digest>`.
//!
//! On purpose unlike pubtools-sign: a failed signature makes the status `error` (pubtools-sign says `failed`)
//! and the exit code 1 (pubtools-sign exits 0).

use super::super::output::{python_dumps, Rendered};
use super::plan::SignInput;
use super::run::Outcome;
use serde_json::{json, Map, Value};

/// Renders the outcomes of a run (one per job, in the plan's order).
pub fn render(input: &SignInput, outcomes: &[Outcome], raw: bool) -> Rendered {
    let failed = outcomes.iter().any(|o| !o.ok);
    let error_message: String = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.text.as_str())
        .collect();
    let status = if failed { "error" } else { "ok" };
    let exit_code = i32::from(failed);
    let markers: String = outcomes
        .iter()
        .map(|o| format!("signed_with {}: {}\n", o.way.name(), o.target))
        .collect();
    if raw {
        // pubtools-sign: on error only the error message (on stderr); else each result through print().
        let (stdout, stderr) = if failed {
            (String::new(), format!("{markers}{error_message}\n"))
        } else {
            let lines = outcomes.iter().map(|o| format!("{}\n", o.text)).collect();
            (lines, markers)
        };
        return Rendered {
            stdout,
            stderr,
            exit_code,
        };
    }
    let mut top = Map::new();
    top.insert(
        "signer_result".into(),
        json!({"status": status, "error_message": error_message}),
    );
    top.insert(
        "operation_results".into(),
        outcomes
            .iter()
            .map(|o| Value::from(o.text.as_str()))
            .collect(),
    );
    top.insert(
        "operation".into(),
        json!({
            "digests": input.digests,
            "references": input.references,
            "signing_key_names": [],
            "signing_keys": input.signing_keys,
            "task_id": "",
            "requester": "",
        }),
    );
    top.insert("signing_keys".into(), json!(input.signing_keys));
    top.insert(
        "signed_with".into(),
        outcomes.iter().map(|o| Value::from(o.way.name())).collect(),
    );
    let mut stdout = python_dumps(&Value::Object(top));
    stdout.push('\n');
    let stderr = if failed {
        let n = outcomes.iter().filter(|o| !o.ok).count();
        format!("error: {n} of {} signatures failed\n", outcomes.len())
    } else {
        String::new()
    };
    Rendered {
        stdout,
        stderr,
        exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Fallback, Way};
    use super::*;

    fn outcome(ok: bool, way: Way) -> Outcome {
        Outcome {
            text: if ok {
                "Pushing signature to: r.io/a\n".into()
            } else {
                "Error: boom\n".into()
            },
            ok,
            way,
            target: "r.io/a@sha256:x".into(),
        }
    }

    fn input() -> SignInput {
        SignInput {
            digests: vec!["sha256:x".into()],
            references: vec!["r.io/a:1".into()],
            identities: vec![],
            signing_keys: vec!["k".into()],
        }
    }

    #[test]
    fn the_document_has_pubtools_signs_members_in_order_and_says_how_each_was_made() {
        let r = render(
            &input(),
            &[
                outcome(true, Way::Native),
                outcome(true, Way::CosignBin(Fallback::KeyUri)),
            ],
            false,
        );
        assert_eq!(
            r.stdout,
            "{\"signer_result\": {\"status\": \"ok\", \"error_message\": \"\"}, \"operation_results\": \
             [\"Pushing signature to: r.io/a\\n\", \"Pushing signature to: r.io/a\\n\"], \"operation\": \
             {\"digests\": [\"sha256:x\"], \"references\": [\"r.io/a:1\"], \"signing_key_names\": [], \
             \"signing_keys\": [\"k\"], \"task_id\": \"\", \"requester\": \"\"}, \"signing_keys\": [\"k\"], \
             \"signed_with\": [\"signbus\", \"cosign_bin\"]}\n"
        );
        assert_eq!(r.exit_code, 0);
    }

    #[test]
    fn a_failure_is_an_error_with_exit_1_in_both_forms() {
        let outs = [outcome(true, Way::Native), outcome(false, Way::Native)];
        let r = render(&input(), &outs, false);
        assert!(r
            .stdout
            .contains(r#""status": "error", "error_message": "Error: boom\n""#));
        assert_eq!(r.exit_code, 1);
        let r = render(&input(), &outs, true);
        assert_eq!(r.stdout, "");
        assert!(r.stderr.ends_with("Error: boom\n\n"), "{}", r.stderr);
        assert_eq!(r.exit_code, 1);
        let r = render(&input(), &outs[..1], true);
        assert_eq!(r.stdout, "Pushing signature to: r.io/a\n\n");
        assert_eq!(r.stderr, "signed_with signbus: r.io/a@sha256:x\n");
    }
}
