//! Debian 13's cosign 2.5 and the trixie chroot holding skopeo 1.18: the independent cosign implementations the
//! cosign tests check signbus against. `testenv/test.sh` fetches them with `testenv/cosign-tools.sh` and exports
//! `SIGNBUS_TEST_COSIGN` and `SIGNBUS_TEST_COSIGN_ROOTFS`; a test that needs them fails (never skips) when they
//! are not there.

use std::path::PathBuf;
use std::process::Command;

/// The path an environment variable names, panicking with how to get it when it is unset.
fn from_env(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run the tests with testenv/test.sh, or export what testenv/cosign-tools.sh prints"
        )
    })
}

/// The cosign binary named by `SIGNBUS_TEST_COSIGN`, checked to run.
pub fn bin() -> PathBuf {
    let path = from_env("SIGNBUS_TEST_COSIGN");
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

/// The trixie chroot named by `SIGNBUS_TEST_COSIGN_ROOTFS`, checked to hold skopeo 1.18 (run it with
/// `chroot <rootfs> skopeo …`; see [`super::sigstore::SigBed::skopeo`]).
pub fn rootfs() -> PathBuf {
    let root = from_env("SIGNBUS_TEST_COSIGN_ROOTFS");
    assert!(
        root.join("usr/bin/skopeo").exists(),
        "{}/usr/bin/skopeo missing: rebuild the chroot with testenv/cosign-tools.sh",
        root.display()
    );
    root
}
