//! The testenv broker's administration: its RabbitMQ management API (guest:guest), request queues declared and
//! deleted per test, and restarts.

use super::env::Env;
use super::http::{self, HttpError};
use std::process::Command;
use std::time::{Duration, Instant};

/// Calls the testenv broker's management API; returns the body. Panics on HTTP errors.
pub fn mgmt(env: &Env, method: &str, path: &str, body: &str) -> String {
    mgmt_at(env.get("SIGNBUS_MGMT_URL"), method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Calls a RabbitMQ management API at `base` (10 s at most); returns the body.
pub fn mgmt_at(base: &str, method: &str, path: &str, body: &str) -> Result<String, HttpError> {
    let body = (!body.is_empty()).then_some(body);
    http::call(
        method,
        &format!("{base}{path}"),
        body,
        Some(("guest", "guest")),
    )
    .map(|(_, text)| text)
}

/// Declares a request queue `name` (dead-lettering into `name.dead`) through the management API.
pub fn declare_request_queue(env: &Env, name: &str) {
    declare_queues(env, name, false);
}

/// As [`declare_request_queue`], durable: the queues survive a broker restart.
pub fn declare_durable_request_queue(env: &Env, name: &str) {
    declare_queues(env, name, true);
}

fn declare_queues(env: &Env, name: &str, durable: bool) {
    let dead = format!("{name}.dead");
    mgmt(
        env,
        "PUT",
        &format!("/api/queues/%2F/{dead}"),
        &format!(r#"{{"durable":{durable},"auto_delete":false}}"#),
    );
    let args = format!(
        r#"{{"durable":{durable},"auto_delete":false,"arguments":{{"x-dead-letter-exchange":"","x-dead-letter-routing-key":"{dead}"}}}}"#
    );
    mgmt(env, "PUT", &format!("/api/queues/%2F/{name}"), &args);
}

/// Deletes a queue (and its dead-letter queue).
pub fn delete_request_queue(env: &Env, name: &str) {
    mgmt(env, "DELETE", &format!("/api/queues/%2F/{name}"), "");
    mgmt(env, "DELETE", &format!("/api/queues/%2F/{name}.dead"), "");
}

/// Kills the testenv broker with SIGKILL, keeps it down for `down`, starts it again with its data, and waits
/// until it is ready (testenv/restart-broker.sh). Returns how long the broker was unavailable.
pub fn restart_broker(env: &Env, down: Duration) -> Duration {
    let script = std::path::Path::new(env.get("SIGNBUS_TESTENV_DIR"))
        .parent()
        .unwrap()
        .join("restart-broker.sh");
    let started = Instant::now();
    let out = Command::new(&script)
        .arg(down.as_secs().to_string())
        .output()
        .expect("restart-broker.sh runs");
    assert!(
        out.status.success(),
        "restart-broker.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}
