//! registries.d: one file's YAML through the same parser `load_dir` uses; it never panics, and for a file it
//! accepts, choosing the lookaside base to read from and to write to never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signbus::reference::Reference;
use signbus::verify::registries_d::RegistriesD;
use std::path::Path;

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = RegistriesD::from_yaml(text, Path::new("fuzz.yaml")) else {
        return;
    };
    let images = [
        "registry.example.com/ns/repo:1".to_owned(),
        "reg.example.com/ns/only-staging:1".to_owned(),
        format!("quay.io/a/b@{DIGEST}"),
        "busybox:latest".to_owned(),
        "localhost:5000/x:1".to_owned(),
    ];
    for image in &images {
        let image = Reference::parse_normalized(image).expect("fixed image parses");
        for write in [false, true] {
            if let Ok(Some(base)) = cfg.lookaside_base(&image, write) {
                assert!(!base.url.as_str().is_empty());
            }
        }
    }
});
