//! The running node: what the HTTP handlers, delivery workers and admin
//! commands share — identity, engine, store, the current configuration and
//! one runtime entry per configured peer (HTTPS client, concurrency permits,
//! the wake-up of its delivery worker).
//!
//! The configuration can be replaced while running (SIGHUP): peers added,
//! removed, disabled or re-keyed take effect at once; a bad file is refused
//! and the old configuration stays.

use crate::engine::{Engine, EngineError, Identity, PeerSignal, SendError, Wakers};
use guanxi_adapters::peer_client::{ClientError, PeerClient, Trust};
use guanxi_adapters::store::{Store, StoreError};
use guanxi_config::{Config, PeerConfig};
use guanxi_protocol::messages::Message;
use guanxi_protocol::state::StateError;
use guanxi_protocol::{NodeId, Sha256Hash};
use guanxi_protocol::{ReasonCode, RecordId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// One configured peer at run time.
pub struct PeerRuntime {
    pub config: PeerConfig,
    pub client: PeerClient,
    /// Limits requests from this peer handled at once.
    pub permits: Arc<Semaphore>,
}

/// The shared state of a running node.
pub struct Node {
    pub identity: Arc<Identity>,
    pub engine: Engine,
    pub store: Arc<Store>,
    /// Canonical bytes of the key document.
    key_document: std::sync::RwLock<Arc<Vec<u8>>>,
    config: RwLock<Arc<Config>>,
    peers: RwLock<Arc<HashMap<NodeId, Arc<PeerRuntime>>>>,
    /// Wake-ups of delivery workers, by peer (shared with the engine, which
    /// wakes a worker after queuing for its peer); kept across reloads.
    wakers: Arc<Wakers>,
    /// Notified (all waiters) whenever receipts for outgoing envelopes are stored.
    pub receipts_stored: Notify,
    /// How many rounds each timer has finished (metrics; tests wait on
    /// them instead of sleeping).
    pub ticks: Ticks,
    /// Federation requests being read before their sender is known.
    pub fed_admission: crate::inbox::Admission,
    /// The HTTPS server's open connections and their cap.
    pub connections: Arc<crate::server::Connections>,
    /// What the last full check of the store found damaged (`verify`),
    /// shown in `/readyz` and the staff inbox (read it with [`Node::damage`]).
    pub damage: std::sync::Mutex<Option<String>>,
    /// API and admin calls with an `Idempotency-Key` being handled.
    pub idempotency: crate::idempotency::InFlight,
    /// Re-reads the config file and applies it (SIGHUP, `guanxi reload`);
    /// set once the delivery workers run. `Ok` says what is in force.
    pub reloader: std::sync::OnceLock<Reloader>,
    /// Whether the node is healing after a restore (SPEC §22): it sends and
    /// accepts nothing until healed.
    pub healing: crate::heal::Healing,
}

/// Finished rounds of the node's timers (whether or not a round found work).
#[derive(Default)]
pub struct Ticks {
    pub lead_sweeper: std::sync::atomic::AtomicU64,
    pub mdf_expiry: std::sync::atomic::AtomicU64,
    pub warranty_relay: std::sync::atomic::AtomicU64,
    pub session_purge: std::sync::atomic::AtomicU64,
    pub mailer: std::sync::atomic::AtomicU64,
    pub library_fetch: std::sync::atomic::AtomicU64,
    pub journey: std::sync::atomic::AtomicU64,
}

impl Ticks {
    /// (timer name, rounds finished) for each timer.
    pub fn all(&self) -> [(&'static str, u64); 7] {
        use std::sync::atomic::Ordering::Relaxed;
        [
            ("lead_sweeper", self.lead_sweeper.load(Relaxed)),
            ("mdf_expiry", self.mdf_expiry.load(Relaxed)),
            ("warranty_relay", self.warranty_relay.load(Relaxed)),
            ("session_purge", self.session_purge.load(Relaxed)),
            ("mailer", self.mailer.load(Relaxed)),
            ("library_fetch", self.library_fetch.load(Relaxed)),
            ("journey", self.journey.load(Relaxed)),
        ]
    }
}

/// See [`Node::reloader`].
pub type Reloader = Box<dyn Fn() -> Result<String, String> + Send + Sync>;

fn trust_of(peer: &PeerConfig) -> Trust {
    let parse = |h: &Option<String>| h.as_deref().and_then(|h| h.parse::<Sha256Hash>().ok());
    match (
        parse(&peer.tls_cert_sha256),
        parse(&peer.tls_cert_sha256_also),
    ) {
        (Some(pin), Some(also)) => Trust::PinnedEither(pin, also),
        (Some(pin), None) => Trust::Pinned(pin),
        _ => Trust::WebPki,
    }
}

fn build_peers(
    config: &Config,
    old: &HashMap<NodeId, Arc<PeerRuntime>>,
) -> Result<HashMap<NodeId, Arc<PeerRuntime>>, ClientError> {
    let f = &config.federation;
    let mut peers = HashMap::new();
    for p in &config.peers {
        // Keep the client (and its connections) when nothing about TLS or the URL changed.
        let client = match old.get(&p.id) {
            Some(rt)
                if rt.config.url == p.url
                    && rt.config.tls_cert_sha256 == p.tls_cert_sha256
                    && rt.config.tls_cert_sha256_also == p.tls_cert_sha256_also =>
            {
                rt.client.clone()
            }
            _ => PeerClient::new(
                &p.url,
                &trust_of(p),
                Duration::from_secs(f.connect_timeout_seconds.into()),
                Duration::from_secs(f.request_timeout_seconds.into()),
            )?,
        };
        let permits = match old.get(&p.id) {
            Some(rt) if rt.config.id == p.id => rt.permits.clone(),
            _ => Arc::new(Semaphore::new(f.max_concurrent_per_peer as usize)),
        };
        peers.insert(
            p.id.clone(),
            Arc::new(PeerRuntime {
                config: p.clone(),
                client,
                permits,
            }),
        );
    }
    Ok(peers)
}

impl Node {
    /// Runs `f` on a read transaction on a blocking thread, so that store
    /// reads (page loads, API lists) never hold the async runtime's threads.
    pub async fn reading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&guanxi_adapters::store::Read) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store.read()?))
            .await
            .map_err(|e| StoreError::Db(format!("a read stopped: {e}")))?
    }

    /// What the last full check of the store found damaged, if anything.
    pub fn damage(&self) -> Option<String> {
        self.damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The node for `config`, with its peers' clients built.
    pub fn new(
        identity: Arc<Identity>,
        engine: Engine,
        store: Arc<Store>,
        key_document: Vec<u8>,
        config: Config,
    ) -> Result<Node, ClientError> {
        let peers = build_peers(&config, &HashMap::new())?;
        let wakers = engine.wakers();
        Ok(Node {
            identity,
            engine,
            store,
            key_document: std::sync::RwLock::new(Arc::new(key_document)),
            config: RwLock::new(Arc::new(config)),
            peers: RwLock::new(Arc::new(peers)),
            wakers,
            receipts_stored: Notify::new(),
            ticks: Ticks::default(),
            fed_admission: crate::inbox::Admission::default(),
            connections: Arc::default(),
            idempotency: Default::default(),
            damage: Default::default(),
            reloader: std::sync::OnceLock::new(),
            healing: Default::default(),
        })
    }

    /// The ids of the enabled peers in the current configuration.
    pub fn enabled_peers(&self) -> Vec<String> {
        self.config()
            .peers
            .iter()
            .filter(|p| p.enabled)
            .map(|p| p.id.to_string())
            .collect()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Every configured peer (enabled or not).
    pub fn peers(&self) -> Arc<HashMap<NodeId, Arc<PeerRuntime>>> {
        match self.peers.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One peer, if configured.
    pub fn peer(&self, id: &NodeId) -> Option<Arc<PeerRuntime>> {
        self.peers().get(id).cloned()
    }

    /// The signals of `peer`'s delivery worker.
    pub fn waker(&self, peer: &NodeId) -> Arc<PeerSignal> {
        self.wakers.get(peer)
    }

    /// Applies `message` to the record `subject` shared with the enabled peer
    /// `peer` and queues it (web and API actions on federated records). A
    /// refusal (unknown or disabled peer, or the state machine's) changes
    /// nothing.
    pub async fn send_to_peer(
        &self,
        peer: &str,
        subject: &str,
        message: Message,
    ) -> Result<Result<(), StateError>, EngineError> {
        let refuse = |code, message: String| Ok(Err(StateError { code, message }));
        let (Ok(peer), Ok(subject)) = (peer.parse::<NodeId>(), subject.parse::<RecordId>()) else {
            return refuse(ReasonCode::UnknownRecord, "no such record".into());
        };
        if !self
            .config()
            .peers
            .iter()
            .any(|p| p.enabled && p.id == peer)
        {
            return refuse(
                ReasonCode::NotAllowed,
                format!("{peer} is not an enabled peer in the configuration"),
            );
        }
        match self.engine.send(peer, subject, message).await {
            Ok(_) => Ok(Ok(())),
            Err(SendError::Refused(r)) => Ok(Err(r)),
            Err(SendError::Engine(e)) => Err(e),
        }
    }

    /// Wakes `peer`'s delivery worker (a message was queued for it).
    pub fn wake(&self, peer: &NodeId) {
        self.wakers.wake(peer);
    }

    /// `peer` showed it is alive (a valid request from it arrived): a worker
    /// backing off tries again at once (SPEC §8).
    pub fn heard_from(&self, peer: &NodeId) {
        self.wakers.heard(peer, crate::clock::now_ms());
    }

    /// Asks `peer`'s delivery worker to clear its halt, pause or backoff;
    /// the worker stores its own, newest delivery state.
    pub fn resume(&self, peer: &NodeId) {
        self.wakers.resume(peer);
    }

    /// Asks `peer`'s delivery worker to send nothing more until resumed.
    pub fn pause(&self, peer: &NodeId) {
        self.wakers.pause(peer);
    }

    /// The canonical bytes of this node's key document (`/fed/v1/keys`).
    pub fn key_document(&self) -> Arc<Vec<u8>> {
        match self.key_document.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the key document (a reloaded certificate).
    pub fn set_key_document(&self, document: Vec<u8>) {
        match self.key_document.write() {
            Ok(mut d) => *d = Arc::new(document),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(document),
        }
    }

    /// Replaces the configuration. The node id and the listen address cannot
    /// change while running; such a file is refused whole.
    pub fn replace_config(&self, mut new: Config) -> Result<(), String> {
        let old = self.config();
        // "Any free port": the URL keeps naming the port bound at start.
        if new.listen.port() == 0 && new.public_url == format!("https://{}", new.listen) {
            new.public_url = old.public_url.clone();
        }
        if new.node_id != old.node_id {
            return Err(format!(
                "node id changed from {} to {}: restart to change it",
                old.node_id, new.node_id
            ));
        }
        let peers = build_peers(&new, &self.peers()).map_err(|e| e.to_string())?;
        match self.peers.write() {
            Ok(mut p) => *p = Arc::new(peers),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(peers),
        }
        match self.config.write() {
            Ok(mut c) => *c = Arc::new(new),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
        }
        Ok(())
    }
}
