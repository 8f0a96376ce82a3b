//! Signing throughput of the gpgme pool, against baselines measured in the same run.
//!
//! Run with `cargo bench --bench signing_pool` after `testenv/up.sh` (it uses testenv's throwaway keys).
//! Prints signatures/s for: a fresh gpgme context per signature (the naive baseline), and the pool with 1, 2
//! and 4 workers; ratios are against the 1-worker pool. Expect: the pool beats the per-signature context, and
//! workers beyond the core count add nothing.

use signbus::signing::gpgme_pool::resolve_keys;
use signbus::signing::{KeyConfig, SignMode, Signer, SigningPool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const N: usize = 300;

fn env_var(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testenv/.run/env");
    let text = std::fs::read_to_string(&path).expect("run testenv/up.sh first");
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{name} not in {}", path.display()))
}

fn naive(home: &str, fpr: &str) -> f64 {
    let started = Instant::now();
    for i in 0..N {
        let mut ctx = gpgme::Context::from_protocol(gpgme::Protocol::OpenPgp).unwrap();
        ctx.set_engine_home_dir(home).unwrap();
        ctx.set_armor(false);
        ctx.set_pinentry_mode(gpgme::PinentryMode::Loopback)
            .unwrap();
        let key = ctx.get_secret_key(fpr).unwrap();
        ctx.add_signer(&key).unwrap();
        let mut out = Vec::new();
        ctx.sign_normal(format!("claim {i}").as_bytes(), &mut out)
            .unwrap();
        assert!(!out.is_empty());
    }
    N as f64 / started.elapsed().as_secs_f64()
}

fn pool(rt: &tokio::runtime::Runtime, home: &str, fpr: &str, workers: usize) -> f64 {
    let keys = resolve_keys(
        Some(home.as_ref()),
        &[KeyConfig {
            id: fpr.into(),
            name: None,
            aliases: vec![],
            passphrase_file: None,
            passphrase_credential: None,
            secret_key_file: None,
        }],
    )
    .unwrap();
    let pool =
        Arc::new(SigningPool::gpgme(Some(home.into()), keys, Default::default(), workers).unwrap());
    let rate = rt.block_on(async {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..N {
            let (pool, fpr) = (pool.clone(), fpr.to_owned());
            set.spawn(async move {
                pool.sign(&fpr, SignMode::Normal, format!("claim {i}").into_bytes())
                    .await
                    .unwrap()
            });
        }
        while let Some(r) = set.join_next().await {
            assert!(!r.unwrap().is_empty());
        }
        N as f64 / started.elapsed().as_secs_f64()
    });
    if let Ok(p) = Arc::try_unwrap(pool) {
        p.shutdown();
    }
    rate
}

fn main() {
    let home = env_var("GNUPGHOME");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (label, fpr) in [
        ("ed25519", env_var("SIGNBUS_TEST_KEY")),
        ("rsa4096", env_var("SIGNBUS_TEST_KEY_RSA")),
    ] {
        let one = pool(&rt, &home, &fpr, 1);
        let naive = naive(&home, &fpr);
        println!("{label}: {N} signatures each, {cores} cores");
        println!(
            "  new context per signature : {naive:8.1} sig/s  ({:.2}x of 1-worker pool)",
            naive / one
        );
        println!("  pool, 1 worker            : {one:8.1} sig/s  (1.00x)");
        for w in [2, 4] {
            let r = pool(&rt, &home, &fpr, w);
            println!(
                "  pool, {w} workers           : {r:8.1} sig/s  ({:.2}x)",
                r / one
            );
        }
    }
}
