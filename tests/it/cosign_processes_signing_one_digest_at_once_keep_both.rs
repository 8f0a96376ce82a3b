//! Two `signbus cosign-container-sign` processes signing the same digest at the same moment, each with its own
//! key, against a real registry: both signatures end up in the `.sig` tag and both verify with `cosign verify`.
//! No lock spans processes; the attacher's read-back after each write (and its bounded re-append) is what keeps a
//! concurrent writer from dropping a layer.

use crate::support::cosign_cli::{Bench, PASSWORD};
use crate::support::run::signbus;

#[test]
fn two_processes_signing_one_digest_at_once_both_keep_their_signature() {
    let b = Bench::start();
    let config = b.native_config();
    let keys = [b.signbus_key("first"), b.signbus_key("second")];
    for round in 0..3 {
        let tag = format!("v{round}");
        let digest = b.push("test/race", &tag);
        let reference = format!("{}:{tag}", b.repo("test/race"));
        let children: Vec<_> = keys
            .iter()
            .map(|key| {
                signbus()
                    .arg("cosign-container-sign")
                    .arg("--config-file")
                    .arg(&config)
                    .arg("--signing-key")
                    .arg(key)
                    .args(["--digest", &digest, "--reference", &reference])
                    .env("COSIGN_PASSWORD", PASSWORD)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let layers = b.signatures("test/race", &digest);
        assert_eq!(
            layers.len(),
            2,
            "round {round}: a concurrent writer dropped a layer"
        );
        for key in &keys {
            let public = key.with_extension("pub");
            let image = format!("{}@{digest}", b.repo("test/race"));
            let (code, out, err) = b.cosign_verify(public.to_str().unwrap(), &image);
            assert_eq!(code, 0, "round {round}: {out}{err}");
        }
    }
}
