//! policy.json: `Policy::parse` never panics; for a policy it accepts, choosing the requirements for an image
//! and checking a signed identity against each `signedBy` rule never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signbus::reference::Reference;
use signbus::verify::policy::{Policy, Requirement};

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = Policy::parse(data) else {
        return;
    };
    let images = [
        "registry.example.com/ns/repo:1".to_owned(),
        "registry.example.com:5000/ns/sub/repo:v1".to_owned(),
        format!("quay.io/a/b@{DIGEST}"),
        "busybox:latest".to_owned(),
        "localhost/x:1".to_owned(),
    ];
    let signed = [
        "registry.example.com/ns/repo:1",
        "registry.redhat.io/ubi9:1",
        "quay.io/a/b:v1",
        "docker.io/library/busybox:latest",
        "localhost/x",
        "not a reference",
    ];
    for image in &images {
        let image = Reference::parse_normalized(image).expect("fixed image parses");
        let (reqs, scope) = policy.requirements_for(&image);
        assert!(!reqs.is_empty(), "empty requirement list for {scope}");
        let _ = scope.to_string();
        for req in reqs {
            let _ = req.kind();
            if let Requirement::SignedBy(by) = req {
                let _ = by.identity.to_string();
                for s in signed {
                    let _ = by.identity.check(&image, s);
                }
            }
        }
    }
});
