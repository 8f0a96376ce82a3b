//! An in-memory broker for tests: queues by address, settlements recorded, connections that can be cut.
//!
//! [`MemoryBroker`] stands in for RabbitMQ where a test proves what the *consume loop* promises — a reply is
//! published before its request is accepted, a drain answers what it took, a lost connection releases what was
//! not answered — in milliseconds and without a broker. It implements the same [`Transport`] and [`Connect`]
//! traits as the real protocols and hands out deliveries through the same consumer driver, so settle-once and
//! release-on-drop hold here as they do there. It is compiled for tests and the `memory-transport` feature only;
//! it never replaces the broker tests, which prove the protocols themselves.

use super::delivery::{spawn_consumer, ConsumerLink, LinkEvent};
use super::{
    Connect, IncomingMessage, OutgoingMessage, Settlement, Subscription, Topology, Transport,
    TransportError,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Something that happened on the broker, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message was published to an address (its body).
    Published { address: String, body: String },
    /// A delivery from an address was accepted (its body).
    Accepted { address: String, body: String },
    /// A delivery was rejected (dead-lettered).
    Rejected { address: String, body: String },
    /// A delivery was released (queued again, delivery count raised).
    Released { address: String, body: String },
}

#[derive(Default)]
struct State {
    queues: HashMap<String, VecDeque<IncomingMessage>>,
    events: Vec<Event>,
    /// Connection generation: connections of an older generation are cut.
    generation: u64,
    /// Addresses whose publishes are refused as unroutable.
    unroutable: Vec<String>,
    /// Generations cut "silently": a settlement on them never answers.
    silent: Vec<u64>,
}

/// How long the consumer driver waits for a settlement here (nothing here takes long, unless a cut was silent).
const ROUND_TRIP: std::time::Duration = std::time::Duration::from_secs(1);

/// The broker: shared by every connection a test opens.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `message` on `address` as if a requester had published it.
    pub fn enqueue(&self, address: &str, message: IncomingMessage) {
        self.lock()
            .queues
            .entry(address.to_owned())
            .or_default()
            .push_back(message);
        self.arrived.notify_waiters();
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Messages waiting on `address` (not delivered, or released).
    pub fn queued(&self, address: &str) -> usize {
        self.lock().queues.get(address).map_or(0, VecDeque::len)
    }

    /// Publishes to `address` fail as unroutable from now on.
    pub fn refuse_publishes_to(&self, address: &str) {
        self.lock().unroutable.push(address.to_owned());
    }

    /// Cuts every open connection: their subscriptions end, their unsettled deliveries go back to their queues
    /// and their publishes fail; new connections work.
    pub fn cut_connections(&self) {
        self.lock().generation += 1;
        self.arrived.notify_waiters();
    }

    /// Cuts every open connection as a protocol library sometimes sees a dead one: as [`cut_connections`],
    /// except that its subscriptions neither deliver nor end and its settlements never answer (as lapin was
    /// seen to do after its I/O task died); what it held goes back to its queue when it is dropped.
    ///
    /// [`cut_connections`]: Self::cut_connections
    pub fn cut_connections_silently(&self) {
        let mut s = self.lock();
        let cut = s.generation;
        s.silent.push(cut);
        drop(s);
        self.cut_connections();
    }

    /// A connector opening connections to this broker.
    pub fn connector(&self) -> MemoryConnector {
        MemoryConnector {
            broker: self.clone(),
        }
    }

    fn requeue(&self, address: &str, mut message: IncomingMessage) {
        message.delivery_count += 1;
        let mut s = self.lock();
        let body = String::from_utf8_lossy(&message.body).into_owned();
        s.events.push(Event::Released {
            address: address.to_owned(),
            body,
        });
        s.queues
            .entry(address.to_owned())
            .or_default()
            .push_front(message);
        drop(s);
        self.arrived.notify_waiters();
    }
}

/// Opens [`MemoryConnection`]s.
#[derive(Clone)]
pub struct MemoryConnector {
    broker: MemoryBroker,
}

impl Connect for MemoryConnector {
    type Conn = MemoryConnection;

    async fn connect(&self) -> Result<MemoryConnection, TransportError> {
        let generation = self.broker.lock().generation;
        Ok(MemoryConnection {
            broker: self.broker.clone(),
            generation,
        })
    }
}

/// One connection; cut when the broker's generation moves on.
pub struct MemoryConnection {
    broker: MemoryBroker,
    generation: u64,
}

impl MemoryConnection {
    fn alive(&self) -> bool {
        self.broker.lock().generation == self.generation
    }
}

impl Transport for MemoryConnection {
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        if !self.alive() {
            return Err(TransportError::Lost("connection cut".into()));
        }
        let mut s = self.broker.lock();
        if s.unroutable.contains(&msg.address) {
            return Err(TransportError::Unroutable {
                address: msg.address,
            });
        }
        s.events.push(Event::Published {
            address: msg.address.clone(),
            body: msg.body.clone(),
        });
        s.queues
            .entry(msg.address.clone())
            .or_default()
            .push_back(IncomingMessage {
                body: msg.body.into_bytes(),
                properties: msg.properties,
                reply_to: msg.reply_to,
                user_id: msg.user_id,
                ..Default::default()
            });
        drop(s);
        self.broker.arrived.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        if !self.alive() {
            return Err(TransportError::Lost("connection cut".into()));
        }
        let link = MemoryLink {
            broker: self.broker.clone(),
            generation: self.generation,
            address: address.to_owned(),
            prefetch: prefetch.max(1) as usize,
            unsettled: Arc::new(Mutex::new(Vec::new())),
            flowing: true,
        };
        Ok(spawn_consumer(link, address, ROUND_TRIP))
    }

    async fn declare(&self, _topology: &Topology) -> Result<(), TransportError> {
        Ok(())
    }

    async fn close(&self) {}
}

/// A consumer on one address.
struct MemoryLink {
    broker: MemoryBroker,
    generation: u64,
    address: String,
    prefetch: usize,
    /// Messages handed out and not yet settled: released to the queue when the connection is cut.
    unsettled: Arc<Mutex<Vec<(u64, IncomingMessage)>>>,
    flowing: bool,
}

impl MemoryLink {
    fn give_back_unsettled(&self) {
        let taken = std::mem::take(&mut *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, m) in taken {
            self.broker.requeue(&self.address, m);
        }
    }
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ConsumerLink for MemoryLink {
    type Handle = u64;

    async fn recv(&mut self) -> LinkEvent<u64> {
        loop {
            let arrived = self.broker.arrived.notified();
            // Some(silently) when this link's connection was cut.
            let cut = {
                let mut s = self.broker.lock();
                if s.generation != self.generation {
                    Some(s.silent.contains(&self.generation))
                } else {
                    let room = self.unsettled.lock().map_or(0, |u| u.len()) < self.prefetch;
                    let next = if self.flowing && room {
                        s.queues
                            .get_mut(&self.address)
                            .and_then(VecDeque::pop_front)
                    } else {
                        None
                    };
                    if let Some(m) = next {
                        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Ok(mut u) = self.unsettled.lock() {
                            u.push((id, m.clone()));
                        }
                        return LinkEvent::Message(m, id);
                    }
                    None
                }
            };
            match cut {
                // The library has not noticed: nothing more comes, and nothing says why.
                Some(true) => return std::future::pending().await,
                Some(false) => {
                    self.give_back_unsettled();
                    return LinkEvent::Ended("connection cut".into());
                }
                None => arrived.await,
            }
        }
    }

    async fn settle(&mut self, handle: u64, s: &Settlement) -> Result<(), TransportError> {
        let taken = {
            let mut u = self.unsettled.lock().unwrap_or_else(|e| e.into_inner());
            let at = u.iter().position(|(id, _)| *id == handle);
            at.map(|i| u.remove(i).1)
        };
        let Some(message) = taken else {
            return Err(TransportError::Lost("delivery no longer held".into()));
        };
        let (now, silent) = {
            let s = self.broker.lock();
            (s.generation, s.silent.contains(&self.generation))
        };
        if now != self.generation {
            self.broker.requeue(&self.address, message);
            if silent {
                std::future::pending::<()>().await;
            }
            return Err(TransportError::Lost("connection cut".into()));
        }
        let address = self.address.clone();
        let body = String::from_utf8_lossy(&message.body).into_owned();
        match s {
            Settlement::Accept => self
                .broker
                .lock()
                .events
                .push(Event::Accepted { address, body }),
            Settlement::Reject { .. } => self
                .broker
                .lock()
                .events
                .push(Event::Rejected { address, body }),
            Settlement::Release => self.broker.requeue(&self.address, message),
        }
        self.broker.arrived.notify_waiters();
        Ok(())
    }

    async fn stop_flow(&mut self) {
        self.flowing = false;
    }

    async fn close(self) {
        self.give_back_unsettled();
    }
}

impl Drop for MemoryLink {
    fn drop(&mut self) {
        // A link dropped without closing (its connection died): the broker redelivers what it held.
        self.give_back_unsettled();
    }
}
