//! AMQP 1.0 transport on fe2o3-amqp: the connection handle and the I/O thread that owns everything fe2o3.
//!
//! One TCP connection (TCP_NODELAY: without it every settled message waits for the peer's delayed ACK), one
//! session with anonymous-terminus senders (each message carries its address in `to`, as pubtools-sign sends),
//! and one receiver link and session per subscription with explicit settlement and automatic credit.
//! This file owns the [`Amqp1`] handle, the `Engine` it drives on its own thread, and closing. Beside it:
//! connecting through the failover list (`connect.rs`, SASL EXTERNAL in `sasl.rs`), the sender pool
//! (`publisher.rs`), receiver links (`consumer.rs`) and message conversion (`convert.rs`). No fe2o3 work may
//! run off the I/O thread, and nothing in this directory knows what the bodies mean.

mod connect;
mod consumer;
mod convert;
mod publisher;
mod sasl;

use super::{BrokerConfig, OutgoingMessage, Subscription, Topology, Transport, TransportError};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::Sender;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The fe2o3 objects of one connection; lives on the connection's I/O thread.
struct Engine {
    link: Mutex<Links>,
    senders: Vec<Mutex<Sender>>,
    next_sender: std::sync::atomic::AtomicUsize,
    publish_timeout: Duration,
    url: String,
}

struct Links {
    connection: ConnectionHandle<()>,
    /// Session for the anonymous senders.
    session: SessionHandle<()>,
    /// Sessions for receivers, one per subscription: a receiver's incoming transfers never share a session
    /// with outgoing publishes (fe2o3 0.14 was seen to stall a publish when both shared one session).
    receiver_sessions: Vec<SessionHandle<()>>,
    next_link: u64,
}

impl Engine {
    /// Ends every session and closes the connection.
    async fn close(&self) {
        let mut links = self.link.lock().await;
        for s in links.receiver_sessions.iter_mut() {
            let _ = s.end().await;
        }
        let _ = links.session.end().await;
        let _ = links.connection.close().await;
    }
}

/// A live AMQP 1.0 connection, driven by its own I/O thread.
///
/// fe2o3-amqp 0.14 hands a transfer to its session before it records the delivery as unsettled, so a broker
/// that settles fast enough (loopback, TCP_NODELAY, a busy machine) has its disposition dropped and the
/// publish never completes. Every fe2o3 task of a connection therefore runs on one current-thread runtime, and
/// each send is polled unconstrained: nothing else on that thread runs between the transfer leaving and its
/// entry being recorded. Closing (or dropping) the connection ends its subscriptions.
pub struct Amqp1 {
    commands: mpsc::UnboundedSender<Command>,
    url: String,
    round_trip: Duration,
}

enum Command {
    Publish(OutgoingMessage, oneshot::Sender<Result<(), TransportError>>),
    Subscribe(
        String,
        u32,
        oneshot::Sender<Result<Subscription, TransportError>>,
    ),
    Close(oneshot::Sender<()>),
}

fn io_thread_gone() -> TransportError {
    TransportError::Lost("the connection's I/O thread has stopped".into())
}

impl Amqp1 {
    /// Connects to the first URL in `cfg.urls` that accepts a connection, session and anonymous senders.
    pub async fn connect(cfg: &BrokerConfig, container_id: &str) -> Result<Self, TransportError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (commands, mut rx) = mpsc::unbounded_channel::<Command>();
        let round_trip = Duration::from_secs(cfg.publish_timeout_secs.max(1));
        let cfg = cfg.clone();
        let id = container_id.to_owned();
        std::thread::Builder::new()
            .name("signbus-amqp1".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(TransportError::Lost(format!("I/O runtime: {e}"))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let engine = match Engine::connect(&cfg, &id).await {
                        Ok(e) => std::sync::Arc::new(e),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(engine.url.clone()));
                    while let Some(cmd) = rx.recv().await {
                        let engine = engine.clone();
                        match cmd {
                            Command::Publish(m, done) => {
                                tokio::spawn(async move {
                                    let _ = done.send(engine.publish(m).await);
                                });
                            }
                            Command::Subscribe(address, prefetch, done) => {
                                tokio::spawn(async move {
                                    let _ = done.send(engine.subscribe(&address, prefetch).await);
                                });
                            }
                            Command::Close(done) => {
                                engine.close().await;
                                let _ = done.send(());
                                return;
                            }
                        }
                    }
                    engine.close().await;
                });
            })
            .map_err(|e| TransportError::Lost(format!("spawn I/O thread: {e}")))?;
        let url = ready_rx.await.map_err(|_| io_thread_gone())??;
        Ok(Amqp1 {
            commands,
            url,
            round_trip,
        })
    }

    /// How long one broker round trip may take (`broker.publish_timeout_secs`).
    pub(crate) fn round_trip_timeout(&self) -> Duration {
        self.round_trip
    }

    /// The (redacted) URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Transport for Amqp1 {
    /// AMQP 1.0 has no way to declare queues: an error that says how to do it instead.
    async fn declare(&self, topology: &Topology) -> Result<(), TransportError> {
        Err(TransportError::Attach {
            address: topology.queue.clone(),
            reason: "server.topology needs AMQP 0-9-1 (broker.protocol: amqp091); over AMQP 1.0 declare \
                     queues and bindings with the broker's definitions"
                .into(),
        })
    }

    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Publish(msg, done))
            .map_err(|_| io_thread_gone())?;
        wait.await.map_err(|_| io_thread_gone())?
    }

    async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(address.to_owned(), prefetch, done))
            .map_err(|_| io_thread_gone())?;
        wait.await.map_err(|_| io_thread_gone())?
    }

    async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}
