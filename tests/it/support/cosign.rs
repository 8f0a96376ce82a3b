//! Debian 13's cosign 2.5, the independent cosign implementation the cosign tests check signbus against.
//! `testenv/test.sh` fetches it with `testenv/cosign-tools.sh` and exports `SIGNBUS_TEST_COSIGN`; a test that
//! needs it fails (never skips) when it is not there.

use std::path::PathBuf;
use std::process::Command;

/// The cosign binary named by `SIGNBUS_TEST_COSIGN`, checked to run.
pub fn bin() -> PathBuf {
    let path = std::env::var_os("SIGNBUS_TEST_COSIGN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
            "SIGNBUS_TEST_COSIGN is not set: run the tests with testenv/test.sh, or export what \
             testenv/cosign-tools.sh prints"
        )
        });
    let out = Command::new(&path)
        .arg("version")
        .output()
        .unwrap_or_else(|e| panic!("SIGNBUS_TEST_COSIGN={}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} version failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    path
}
