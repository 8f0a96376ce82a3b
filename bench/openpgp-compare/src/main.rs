//! Signs a claim-sized payload as a binary signed message with rPGP and with Sequoia (OpenSSL backend), on 1 and
//! 2 threads, and prints signatures/s for each; writes one signature of each to `$OUT` (default /tmp) for
//! checking with `gpg --verify`.
use std::io::Write as _;
use std::time::{Duration, Instant};

const CLAIM: &[u8] = br#"{"critical":{"identity":{"docker-reference":"registry.example.com/namespace/repository:1.0"},"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"type":"atomic container signature"},"optional":{"creator":"signbus"}}"#;

fn rpgp_key(armored: &[u8]) -> pgp::composed::SignedSecretKey {
    use pgp::composed::Deserializable as _;
    pgp::composed::SignedSecretKey::from_armor_single(armored)
        .expect("rpgp key")
        .0
}

fn rpgp_sign(key: &pgp::composed::SignedSecretKey) -> Vec<u8> {
    let mut b = pgp::composed::MessageBuilder::from_bytes("", CLAIM.to_vec());
    b.sign(
        &key.primary_key,
        pgp::types::Password::empty(),
        pgp::crypto::hash::HashAlgorithm::Sha256,
    );
    b.to_vec(rand_core::OsRng).expect("rpgp sign")
}

fn sequoia_key(armored: &[u8]) -> sequoia_openpgp::crypto::KeyPair {
    use sequoia_openpgp::parse::Parse as _;
    let cert = sequoia_openpgp::Cert::from_bytes(armored).expect("sequoia cert");
    cert.primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .expect("secret")
        .into_keypair()
        .expect("keypair")
}

fn sequoia_sign(pair: &sequoia_openpgp::crypto::KeyPair) -> Vec<u8> {
    use sequoia_openpgp::serialize::stream::{LiteralWriter, Message, Signer};
    let mut out = Vec::new();
    let m = Message::new(&mut out);
    let m = Signer::new(m, pair.clone())
        .expect("signer")
        .hash_algo(sequoia_openpgp::types::HashAlgorithm::SHA256)
        .expect("hash")
        .build()
        .expect("build");
    let mut w = LiteralWriter::new(m).build().expect("literal");
    w.write_all(CLAIM).expect("write");
    w.finalize().expect("finalize");
    out
}

fn rate(threads: usize, f: &(dyn Fn() -> Vec<u8> + Sync)) -> f64 {
    let span = Duration::from_secs(3);
    let started = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while started.elapsed() < span {
                        assert!(!f().is_empty());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let out = std::env::var("OUT").unwrap_or_else(|_| "/tmp".into());
    for path in std::env::args().skip(1) {
        let armored = std::fs::read(&path).expect("key file");
        let rk = rpgp_key(&armored);
        let sk = sequoia_key(&armored);
        let name = std::path::Path::new(&path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        std::fs::write(format!("{out}/{name}.rpgp.sig"), rpgp_sign(&rk)).unwrap();
        std::fs::write(format!("{out}/{name}.sequoia.sig"), sequoia_sign(&sk)).unwrap();
        for threads in [1, 2] {
            let r = rate(threads, &|| rpgp_sign(&rk));
            let s = rate(threads, &|| sequoia_sign(&sk));
            println!("{name}\t{threads} thread(s)\trpgp {r:.0}/s\tsequoia(openssl) {s:.0}/s");
        }
    }
}
