//! The engine: the only writer of the store.
//!
//! Every change goes through one thread that owns redb's write side. Jobs
//! (incoming envelopes, messages to send, receipts that came back, delivery
//! state) queue on a channel; the writer takes every job waiting, runs them in
//! order inside ONE write transaction, commits (one fsync for all: group
//! commit), and only then answers each job. So a receipt is never sent for an
//! envelope that is not durable, and a message is never queued without the
//! record change it announces, or the reverse.
//!
//! Every record change goes through `guanxi_protocol::state::apply`, for
//! incoming and outgoing messages alike.

use crate::clock::now_ms;
use crate::idempotency::Claim;
use guanxi_adapters::store::{Delivery, SeenId, Store, StoreError, Tables};
use guanxi_protocol::envelope::{EnvelopeFields, Millis, PROTOCOL_VERSION, SignedEnvelope};
use guanxi_protocol::messages::{BodyError, Message};
use guanxi_protocol::receipt::{ReceiptFields, Rejection, SignedReceipt};
use guanxi_protocol::state::authority::{Answer, Fault, Follow, Slot};
use guanxi_protocol::state::{self, Context, Record, StateError};
use guanxi_protocol::{EnvelopeError, NodeId, NodeKey, ReasonCode, RecordId, Sha256Hash};
use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use tokio::sync::{Notify, mpsc, oneshot};

/// Most jobs committed together.
const MAX_GROUP: usize = 1024;

/// This node: its id, its signing key (replaced by a rotation, SPEC §23)
/// and the public keys it signed with before.
pub struct Identity {
    pub id: NodeId,
    key: RwLock<Arc<NodeKey>>,
    retired: RwLock<Vec<guanxi_protocol::PublicKey>>,
}

impl Identity {
    /// The node `id` signing with `key`, having signed with `retired` before.
    pub fn new(id: NodeId, key: NodeKey, retired: Vec<guanxi_protocol::PublicKey>) -> Identity {
        Identity {
            id,
            key: RwLock::new(Arc::new(key)),
            retired: RwLock::new(retired),
        }
    }

    /// The key that signs from now on.
    pub fn key(&self) -> Arc<NodeKey> {
        match self.key.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The public key of this node with id `kid`: the current one or one
    /// it retired.
    pub fn own_key(&self, kid: &guanxi_protocol::KeyId) -> Option<guanxi_protocol::PublicKey> {
        let current = self.key().public();
        if &current.kid() == kid {
            return Some(current);
        }
        let retired = match self.retired.read() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        retired.iter().find(|k| &k.kid() == kid).copied()
    }

    /// Signs with `next` from now on; the current key joins the retired.
    pub fn rotate(&self, next: NodeKey) {
        let mut key = match self.key.write() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut retired = match self.retired.write() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        retired.push(key.public());
        *key = Arc::new(next);
    }
}

/// Why the engine could not do a job. The job changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing failed: {0}")]
    Sign(#[from] EnvelopeError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the engine has stopped")]
    Stopped,
    #[error("the write transaction failed, nothing was stored: {0}")]
    Failed(String),
    /// The call's `Idempotency-Key` was used by a call that committed first;
    /// this one did nothing (see `crate::idempotency`).
    #[error("this idempotency key was used by an earlier call")]
    Replayed,
    /// The node is healing after a restore (SPEC §22): it creates no
    /// envelope, consumes no seq and signs no receipt until healed.
    #[error("this node is healing after a restore and sends or accepts nothing until it is healed")]
    Healing,
    /// Healing found an item it cannot replay as it was first made.
    #[error("healing stopped: {0}")]
    Diverged(String),
}

/// Why a message could not be sent. Nothing was queued or changed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Refused(StateError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// An incoming envelope that passed the checks that need no store (SPEC §7
/// steps 1–6), with its body decoded (or the reason it could not be).
pub struct Inbound {
    pub envelope: SignedEnvelope,
    pub message: Result<Message, BodyError>,
    /// The receipt this envelope gets in the common case (accepted, next in
    /// its stream), signed ahead on a parallel thread; the engine uses it
    /// only when its decision is exactly that, and signs anew otherwise.
    pub presigned: Option<SignedReceipt>,
    /// Only while healing (SPEC §22): this node's own receipt for the
    /// envelope, fetched back from the peer: the decision the replay must
    /// reproduce, stored as it is instead of a new receipt.
    pub decided: Option<SignedReceipt>,
}

/// The engine's answer to one incoming envelope.
#[derive(Debug, Clone)]
pub struct InboundAnswer {
    /// 200 (accepted, business rejection, duplicate) or 409 (stream rejection).
    pub http_status: u16,
    /// The signed receipt's exact bytes.
    pub receipt: Vec<u8>,
}

impl InboundAnswer {
    /// Whether later envelopes of a batch may still be processed.
    pub fn continues(&self) -> bool {
        self.http_status == 200
    }
}

/// A message queued for a peer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub seq: u64,
    pub hash: Sha256Hash,
}

/// A receipt that came back for an outgoing envelope, already verified.
pub struct ReturnedReceipt {
    pub seq: u64,
    pub bytes: Vec<u8>,
    /// The version the peer, as the record's authority, placed it at.
    pub record_version: Option<u64>,
    /// A business rejection: its code, and code and message as one text.
    pub rejected: Option<(ReasonCode, String)>,
}

/// Local work on the store (accounts, sessions, the partner directory, lead
/// handling): runs in the writer's transaction like every other change. It
/// may run more than once (when another job of its group fails, the group
/// is rolled back and its jobs run again one by one), so it must not use up
/// what it captured.
type LocalWork =
    Box<dyn FnMut(&mut Act<'_, '_>) -> Result<Box<dyn Any + Send>, EngineError> + Send>;

/// What local work may do inside the writer's transaction: read and write
/// tables, send messages to peers, and apply messages of partners that have
/// no daemon — all committed together, or not at all.
pub struct Act<'a, 't> {
    pub tables: &'a mut Tables<'t>,
    identity: &'a Identity,
    hooks: &'a Hooks,
    /// The time of this group of jobs.
    pub now: Millis,
    effects: Effects,
}

/// What a group of jobs changed, acted on after its commit: the peers that
/// got new outgoing envelopes (their delivery workers are woken) and the
/// record families written (their versions are bumped, see
/// [`Engine::records_version`]).
#[derive(Default)]
struct Effects {
    queued: BTreeSet<NodeId>,
    families: BTreeSet<&'static str>,
    mail: bool,
    /// The key this node signs with once the group is committed (a
    /// rotation, SPEC §23).
    rotated: Option<NodeKey>,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.queued.extend(other.queued);
        self.families.extend(other.families);
        self.mail |= other.mail;
        if other.rotated.is_some() {
            self.rotated = other.rotated;
        }
    }
}

impl Act<'_, '_> {
    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.identity.id
    }

    /// From the commit of this transaction on, this node signs with `next`
    /// (SPEC §23); the envelopes queued in it were signed with the key it
    /// replaces.
    pub fn rotate_key(&mut self, next: NodeKey) {
        self.effects.rotated = Some(next);
    }

    /// This node's signing key (certifications it issues are signed in the
    /// transaction that records them).
    pub fn signing_key(&self) -> Arc<guanxi_protocol::NodeKey> {
        self.identity.key()
    }

    /// Applies `message` to the record `subject` shared with `peer` and queues
    /// it for delivery (as [`Engine::send`]). A refusal changes nothing.
    pub fn send(
        &mut self,
        peer: &NodeId,
        subject: &RecordId,
        message: &Message,
    ) -> Result<Result<Sent, StateError>, EngineError> {
        send(
            self.tables,
            self.identity,
            peer,
            subject,
            message,
            self.now,
            &mut self.effects,
        )
    }

    /// Applies a message exchanged with a partner that has no daemon: the
    /// record is kept under `key` (`web:<partner id>`) and no envelope is
    /// written. `from`/`to` are this node and the partner's id, either way
    /// round. A refusal changes nothing.
    pub fn apply_local(
        &mut self,
        key: &str,
        subject: &str,
        from: &NodeId,
        to: &NodeId,
        message: &Message,
    ) -> Result<Result<Option<Record>, StateError>, EngineError> {
        let ctx = Context {
            from: from.clone(),
            to: to.clone(),
            at: self.now,
        };
        let current = current_record(self.tables, key, subject, message)?;
        match state::apply(current.as_ref(), &ctx, message) {
            Ok(Some(record)) => {
                save_record(self.tables, &mut self.effects, key, subject, &record)?;
                let applied = Applied {
                    key,
                    subject,
                    from,
                    to,
                    message,
                    record: &record,
                    at: self.now,
                    seq: None,
                    replayed: false,
                };
                self.effects.mail |= (self.hooks.applied)(self.tables, &applied)?;
                Ok(Ok(Some(record)))
            }
            Ok(None) => Ok(Ok(None)),
            Err(refused) => Ok(Err(refused)),
        }
    }

    /// The record `subject` kept under `key` (a peer id or `web:<partner>`),
    /// as this node shows it (with its own unanswered requests applied).
    pub fn record(&self, key: &str, subject: &str) -> Result<Option<Record>, EngineError> {
        load_record(self.tables, key, subject)
    }

    /// The exact bytes of the envelope from `peer` that opened the record
    /// `subject` (a claim a partner filed), if the peer opened it.
    pub fn opening_envelope(
        &self,
        peer: &str,
        subject: &str,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        match load_sync(self.tables, peer, subject)?.opened {
            Some(seq) => Ok(self.tables.in_envelope(peer, seq)?),
            None => Ok(None),
        }
    }

    /// The record `subject` shared with `peer` as its authority confirmed it
    /// (SPEC §12.1), without this node's unanswered requests.
    pub fn confirmed(&self, peer: &str, subject: &str) -> Result<Option<Record>, EngineError> {
        Ok(load_slot(self.tables, peer, subject)?
            .0
            .confirmed()
            .cloned())
    }
}

enum Job {
    Local {
        work: LocalWork,
        claim: Option<Claim>,
        reply: oneshot::Sender<Result<Box<dyn Any + Send>, EngineError>>,
    },
    Inbound {
        items: Vec<Inbound>,
        reply: oneshot::Sender<Result<Vec<InboundAnswer>, EngineError>>,
    },
    Send {
        peer: NodeId,
        subject: RecordId,
        message: Box<Message>,
        claim: Option<Claim>,
        reply: oneshot::Sender<Result<Result<Sent, StateError>, EngineError>>,
    },
    /// Replays what peers gave back while healing (SPEC §22); `healed`
    /// ends the healing in the same transaction.
    Heal {
        steps: Vec<HealStep>,
        healed: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Delivered {
        peer: NodeId,
        receipts: Vec<ReturnedReceipt>,
        delivery: Delivery,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    SaveDelivery {
        peer: NodeId,
        delivery: Delivery,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Check whether a failed database can be written again.
    Probe,
}

/// One item of healing (SPEC §22), checked by the healer (`crate::heal`).
pub enum HealStep {
    /// An own envelope the peer consumed, with the peer's verified receipt.
    Sent {
        envelope: Box<SignedEnvelope>,
        receipt: ReturnedReceipt,
    },
    /// A peer's envelope, checked as on receipt, with this node's own
    /// receipt for it in `decided`.
    Received(Box<Inbound>),
}

/// What a peer's delivery worker listens to: wake-ups (new work, a sign of
/// life, an admin's resume), when the peer last showed it is alive, and an
/// admin's request to resume.
#[derive(Default)]
pub struct PeerSignal {
    pub notify: Notify,
    /// When a valid request from the peer last arrived (UTC ms).
    pub heard_at: std::sync::atomic::AtomicI64,
    /// An admin asked to clear a halt, a pause or a backoff.
    pub resume: std::sync::atomic::AtomicBool,
    /// An admin asked to pause delivery.
    pub pause: std::sync::atomic::AtomicBool,
    /// Notified by the worker once it stored a resumed or paused state.
    pub acknowledged: Notify,
}

/// The signals of delivery workers, by peer. The engine wakes a peer's
/// worker after every commit that queued envelopes for it, whoever queued
/// them (a peer's request, the web view, the API, a timer).
#[derive(Default)]
pub struct Wakers {
    peers: RwLock<HashMap<NodeId, Arc<PeerSignal>>>,
    /// Woken after every commit that queued mail (see `crate::mailer`).
    pub mail: Notify,
}

impl Wakers {
    /// The signal of `peer`'s delivery worker.
    pub fn get(&self, peer: &NodeId) -> Arc<PeerSignal> {
        if let Ok(w) = self.peers.read()
            && let Some(n) = w.get(peer)
        {
            return n.clone();
        }
        let mut w = match self.peers.write() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        w.entry(peer.clone()).or_default().clone()
    }

    /// Wakes `peer`'s delivery worker (new work for it).
    pub fn wake(&self, peer: &NodeId) {
        self.get(peer).notify.notify_one();
    }

    /// `peer` showed it is alive at `now`: a worker backing off tries again.
    pub fn heard(&self, peer: &NodeId, now: Millis) {
        let signal = self.get(peer);
        signal
            .heard_at
            .fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        signal.notify.notify_one();
    }

    /// An admin asks `peer`'s worker to clear its halt, pause or backoff.
    pub fn resume(&self, peer: &NodeId) {
        let signal = self.get(peer);
        signal
            .pause
            .store(false, std::sync::atomic::Ordering::SeqCst);
        signal
            .resume
            .store(true, std::sync::atomic::Ordering::SeqCst);
        signal.notify.notify_one();
    }

    /// An admin asks `peer`'s worker to stop sending until resumed.
    pub fn pause(&self, peer: &NodeId) {
        let signal = self.get(peer);
        signal
            .resume
            .store(false, std::sync::atomic::Ordering::SeqCst);
        signal
            .pause
            .store(true, std::sync::atomic::Ordering::SeqCst);
        signal.notify.notify_one();
    }
}

/// A counter per record family, bumped after every commit that wrote a
/// record of that family.
#[derive(Default)]
pub struct Versions(RwLock<HashMap<&'static str, u64>>);

impl Versions {
    fn bump(&self, family: &'static str) {
        let mut v = match self.0.write() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        *v.entry(family).or_insert(0) += 1;
    }

    fn get(&self, family: &str) -> u64 {
        match self.0.read() {
            Ok(v) => v.get(family).copied().unwrap_or(0),
            Err(poisoned) => poisoned.into_inner().get(family).copied().unwrap_or(0),
        }
    }
}

/// A business rule of this node beyond the state machines, checked on every
/// incoming message after its state machine accepted it (SPEC §7 step 9):
/// `Ok(Err(..))` rejects it with a signed rejection. The vendor's catalog
/// check of `order.place` is one. Given the message's context and subject.
pub type InboundRule = Arc<
    dyn Fn(&Tables<'_>, &Context, &str, &Message) -> Result<Result<(), StateError>, EngineError>
        + Send
        + Sync,
>;

/// A message that changed a shared record, as the engine applied it: from
/// a peer's daemon, or exchanged with a partner that has no daemon (its
/// users' actions and this node's answers to them). This node's own
/// messages to peers are not reported: the peer tells its own people.
pub struct Applied<'a> {
    /// The peer id or `web:<partner>` the record is kept under.
    pub key: &'a str,
    pub subject: &'a str,
    /// Who sent the message.
    pub from: &'a NodeId,
    pub to: &'a NodeId,
    pub message: &'a Message,
    /// The record after the message.
    pub record: &'a Record,
    pub at: Millis,
    /// The seq of the peer's envelope that carried it (`None` for a
    /// partner without a daemon).
    pub seq: Option<u64>,
    /// Replayed while healing (SPEC §22): it happened before the restore,
    /// and people were told then.
    pub replayed: bool,
}

/// Work done in the same transaction as every applied message (see
/// [`Applied`]): the node's notifications. Answers whether it queued mail
/// (the mailer is woken after the commit).
pub type AppliedHook =
    Arc<dyn Fn(&mut Tables<'_>, &Applied<'_>) -> Result<bool, EngineError> + Send + Sync>;

/// A peer's `key.rotate` received in its stream, signed by the key with
/// the given id (SPEC §23): checked and recorded (`crate::keys`), or
/// rejected.
pub type RotatedHook = Arc<
    dyn Fn(
            &NodeId,
            &guanxi_protocol::KeyId,
            Millis,
            &guanxi_protocol::messages::KeyRotate,
        ) -> Result<Result<(), StateError>, EngineError>
        + Send
        + Sync,
>;

/// A peer's `tls.pin` received in its stream (SPEC §24): recorded
/// (`crate::keys`), or rejected.
pub type RepinnedHook = Arc<
    dyn Fn(
            &NodeId,
            &guanxi_protocol::messages::TlsPin,
        ) -> Result<Result<(), StateError>, EngineError>
        + Send
        + Sync,
>;

/// What the engine runs beside the state machines.
#[derive(Clone)]
pub struct Hooks {
    pub rule: InboundRule,
    pub applied: AppliedHook,
    pub rotated: RotatedHook,
    pub repinned: RepinnedHook,
}

impl Hooks {
    /// No business rule and nothing done on applied messages (tests).
    pub fn none() -> Hooks {
        Hooks {
            rule: Arc::new(|_, _, _, _| Ok(Ok(()))),
            applied: Arc::new(|_, _| Ok(false)),
            rotated: Arc::new(|from, signer, created, rotate| {
                Ok(guanxi_protocol::rotation::check(from, signer, created, rotate).map(|_| ()))
            }),
            repinned: Arc::new(|_, _| Ok(Ok(()))),
        }
    }
}

/// A handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    wakers: Arc<Wakers>,
    versions: Arc<Versions>,
    storage: Arc<StorageHealth>,
}

/// Room the disk must have (a file of this size written and synced) before
/// the engine writes again after an I/O failure.
pub const STORAGE_HEADROOM: usize = 16 * 1024 * 1024;

/// Whether the database can be written, as the writer last found it.
#[derive(Default)]
pub struct StorageHealth(std::sync::Mutex<Option<StorageFault>>);

/// Why the database cannot be written, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFault {
    pub since: Millis,
    pub message: String,
}

impl StorageHealth {
    fn get(&self) -> Option<StorageFault> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, fault: Option<StorageFault>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }
}

impl Engine {
    /// Starts the writer thread over `store`. It stops when every handle is
    /// dropped, after finishing the jobs already queued.
    pub fn start(
        store: Arc<Store>,
        identity: Arc<Identity>,
        hooks: Hooks,
    ) -> (Engine, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(8192);
        let wakers = Arc::new(Wakers::default());
        let versions = Arc::new(Versions::default());
        let storage = Arc::new(StorageHealth::default());
        let writer_state = Writer {
            store,
            identity,
            wakers: wakers.clone(),
            versions: versions.clone(),
            hooks,
            storage: storage.clone(),
            last_probe: None,
        };
        let handle = std::thread::Builder::new()
            .name("guanxi-writer".into())
            .spawn(move || writer(writer_state, rx))
            .unwrap_or_else(|e| panic!("cannot start the writer thread: {e}"));
        (
            Engine {
                jobs: tx,
                wakers,
                versions,
                storage,
            },
            handle,
        )
    }

    /// Why the database cannot be written now, if it cannot (a full disk):
    /// `/readyz` and the staff inbox show it.
    pub fn storage_fault(&self) -> Option<StorageFault> {
        self.storage.get()
    }

    /// Whether the writer thread still takes jobs (`/readyz`).
    pub fn running(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// True while the database cannot be written: periodic tasks then keep
    /// quiet about their failures (the writer logged the cause once) and
    /// wait instead of retrying at once.
    pub fn storage_failed(&self) -> bool {
        self.storage.get().is_some()
    }

    /// While the database cannot be written, asks the writer to check
    /// whether the disk has room again (and to reopen the database if so);
    /// [`watch_storage`] does it every few seconds.
    pub fn probe_storage(&self) {
        if self.storage.get().is_some() {
            let _ = self.jobs.try_send(Job::Probe);
        }
    }

    /// How many commits so far wrote records of `family` (`lead`, `order`,
    /// ...): timers compare it to skip work when nothing changed.
    pub fn records_version(&self, family: &str) -> u64 {
        self.versions.get(family)
    }

    /// How many jobs wait in the channel (not yet taken by the writer).
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// The delivery workers' wake-ups.
    pub fn wakers(&self) -> Arc<Wakers> {
        self.wakers.clone()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Job,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(make(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Runs `work` in the writer's next transaction and returns its result
    /// after the commit. An `Err` from `work` aborts the whole group: use it
    /// for storage failures, and return business refusals inside `T`.
    pub async fn local<T: Send + 'static>(
        &self,
        mut work: impl FnMut(&mut Tables<'_>) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        self.act(move |a| work(a.tables)).await
    }

    /// Like [`Engine::local`], with the whole [`Act`]: the work may also send
    /// messages and apply web partners' messages, in the same transaction.
    /// Check every business rule before the first change: an `Err` aborts
    /// the group, a refusal returned inside `T` does not undo earlier writes.
    pub async fn act<T: Send + 'static>(
        &self,
        mut work: impl FnMut(&mut Act<'_, '_>) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let boxed: LocalWork =
            Box::new(move |a| work(a).map(|v| Box::new(v) as Box<dyn Any + Send>));
        let claim = crate::idempotency::take_claim();
        let result = self
            .call(|reply| Job::Local {
                work: boxed,
                claim,
                reply,
            })
            .await;
        crate::idempotency::settle(&result);
        result?
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| EngineError::Failed("local job returned another type".into()))
    }

    /// Processes incoming envelopes in order (SPEC §7 steps 7–11) and answers
    /// them after the commit. Stops after the first that gets a 409; the
    /// answers are for that prefix.
    pub async fn inbound(&self, items: Vec<Inbound>) -> Result<Vec<InboundAnswer>, EngineError> {
        self.call(|reply| Job::Inbound { items, reply }).await
    }

    /// Applies `message` to the record `subject` shared with `peer` and queues
    /// it for delivery, in one transaction. A message the state machine
    /// refuses changes nothing.
    pub async fn send(
        &self,
        peer: NodeId,
        subject: RecordId,
        message: Message,
    ) -> Result<Sent, SendError> {
        let claim = crate::idempotency::take_claim();
        let result = self
            .call(|reply| Job::Send {
                peer,
                subject,
                message: Box::new(message),
                claim,
                reply,
            })
            .await;
        crate::idempotency::settle(&result);
        match result? {
            Ok(sent) => Ok(sent),
            Err(refused) => Err(SendError::Refused(refused)),
        }
    }

    /// Queues storing receipts and the delivery state, returning at once;
    /// the returned channel answers after the commit. Jobs commit in the
    /// order they were queued.
    pub async fn enqueue_delivered(
        &self,
        peer: NodeId,
        receipts: Vec<ReturnedReceipt>,
        delivery: Delivery,
    ) -> Result<oneshot::Receiver<Result<(), EngineError>>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Delivered {
                peer,
                receipts,
                delivery,
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        Ok(answer)
    }

    /// Replays `steps` (SPEC §22) in one transaction; `healed` ends the
    /// healing with them. An item that does not replay as it was first
    /// made fails the whole job ([`EngineError::Diverged`]).
    pub async fn heal(&self, steps: Vec<HealStep>, healed: bool) -> Result<(), EngineError> {
        self.call(|reply| Job::Heal {
            steps,
            healed,
            reply,
        })
        .await
    }

    /// Stores the delivery state of the stream to `peer` (backoff, errors).
    pub async fn save_delivery(&self, peer: NodeId, delivery: Delivery) -> Result<(), EngineError> {
        self.call(|reply| Job::SaveDelivery {
            peer,
            delivery,
            reply,
        })
        .await
    }
}

/// What a job produced, waiting for the commit.
enum Done {
    Local(Box<dyn Any + Send>),
    Inbound(Vec<InboundAnswer>),
    Send(Result<Sent, StateError>),
    Unit,
    /// The job's idempotency key was already used: it did nothing.
    Replayed,
}

/// What the writer thread holds.
struct Writer {
    store: Arc<Store>,
    identity: Arc<Identity>,
    wakers: Arc<Wakers>,
    versions: Arc<Versions>,
    hooks: Hooks,
    storage: Arc<StorageHealth>,
    /// When the disk was last checked for room, while failed.
    last_probe: Option<std::time::Instant>,
}

fn writer(mut w: Writer, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let probe_asked = jobs.iter().any(|j| matches!(j, Job::Probe));
        jobs.retain(|j| !matches!(j, Job::Probe));
        // While the database cannot be written, nothing is tried until the
        // disk has room again: callers get the fault at once, and the log
        // is not flooded.
        if let Some(fault) = w.storage.get()
            && !w.recovered(probe_asked)
        {
            finish_failed(jobs, &fault);
            continue;
        }
        if jobs.is_empty() {
            continue;
        }
        let now = now_ms();
        let started = std::time::Instant::now();
        let size = jobs.len();
        if jobs.len() == 1 {
            let mut effects = Effects::default();
            let result = w.run(&mut jobs, now, &mut effects);
            crate::metrics::group_commit(size, started.elapsed());
            w.finish(jobs, result, &effects);
            continue;
        }
        let mut effects = Effects::default();
        let result = w.run(&mut jobs, now, &mut effects);
        crate::metrics::group_commit(size, started.elapsed());
        match result {
            Ok(done) => w.finish(jobs, Ok(done), &effects),
            Err(e) if is_io(&e) => w.finish(jobs, Err(e), &effects),
            Err(e) => {
                // One job's failure must not fail the others: nothing of the
                // group was stored, so each runs again in a transaction of
                // its own, and only the one at fault is answered with its
                // error.
                tracing::warn!(
                    "a group of {} jobs failed ({e}); running them one by one",
                    jobs.len()
                );
                for job in jobs {
                    let mut one = vec![job];
                    let mut effects = Effects::default();
                    let result = w.run(&mut one, now, &mut effects);
                    w.finish(one, result, &effects);
                }
            }
        }
    }
}

fn is_io(e: &EngineError) -> bool {
    matches!(e, EngineError::Store(s) if s.is_io())
}

/// Answers every job with the storage fault, running none.
fn finish_failed(jobs: Vec<Job>, fault: &StorageFault) {
    for job in jobs {
        answer(
            job,
            Err(EngineError::Store(StoreError::Io(format!(
                "writes are refused since {} UTC ms: {}",
                fault.since, fault.message
            )))),
        );
    }
}

impl Writer {
    fn run(
        &self,
        jobs: &mut [Job],
        now: Millis,
        effects: &mut Effects,
    ) -> Result<Vec<Done>, EngineError> {
        // A damaged file can make redb panic on a page: the group fails with
        // that error instead of taking the writer thread (and every later
        // write) down with it.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_group(&self.store, &self.identity, &self.hooks, jobs, now, effects)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            tracing::error!(
                "the database may be damaged: a write panicked inside the store ({what}); \
                 run `guanxi verify`"
            );
            Err(EngineError::Corrupt(format!(
                "a panic inside the store: {what}"
            )))
        })
    }

    /// Answers the jobs of a group; an I/O failure puts the node in the
    /// failed state (logged once) and reopens the database so that reads
    /// go on.
    fn finish(
        &mut self,
        jobs: Vec<Job>,
        result: Result<Vec<Done>, EngineError>,
        effects: &Effects,
    ) {
        if let Err(e) = &result
            && is_io(e)
        {
            let fault = StorageFault {
                since: now_ms(),
                message: e.to_string(),
            };
            tracing::error!(
                "the database cannot be written: {e}. Nothing is lost: what was acknowledged is \
                 stored, and what failed was refused to its sender. Writes are refused until the \
                 disk has {} MiB free again; the node checks every few seconds and recovers by itself \
                 (see /readyz)",
                STORAGE_HEADROOM / (1024 * 1024)
            );
            self.storage.set(Some(fault.clone()));
            self.last_probe = Some(std::time::Instant::now());
            if let Err(e) = self.store.reopen() {
                tracing::debug!("reopening the database after the failure: {e}");
            }
            finish_failed(jobs, &fault);
            return;
        }
        if result.is_ok()
            && let Some(next) = &effects.rotated
        {
            // Before the next group: everything queued after the
            // announcement is signed with the new key.
            self.identity.rotate(next.clone());
        }
        finish(jobs, result, effects, &self.wakers, &self.versions);
    }

    /// While failed: whether the disk has room again and the database is
    /// open for writing (checked at most once a second, or when asked).
    fn recovered(&mut self, asked: bool) -> bool {
        let due = self
            .last_probe
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
        if !asked && !due {
            return false;
        }
        self.last_probe = Some(std::time::Instant::now());
        let Some(fault) = self.storage.get() else {
            return true;
        };
        let dir = self
            .store
            .path()
            .parent()
            .unwrap_or(std::path::Path::new("."));
        if room_for(dir, STORAGE_HEADROOM).is_err() {
            return false;
        }
        if let Err(e) = self.store.reopen() {
            tracing::debug!("reopening the database: {e}");
            return false;
        }
        let seconds = (now_ms() - fault.since).max(0) / 1000;
        tracing::info!("the database can be written again (it could not for {seconds} s)");
        self.storage.set(None);
        true
    }
}

/// Writes, syncs and deletes a file of `bytes` in `dir`: whether the disk
/// has that much room (a sparse file would not tell).
fn room_for(dir: &std::path::Path, bytes: usize) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".space-probe");
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 1024 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n])?;
            left -= n;
        }
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Asks the writer every few seconds, while the database cannot be written,
/// whether it can be again (so a node recovers without traffic).
pub async fn watch_storage(engine: Engine, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => engine.probe_storage(),
        }
    }
}

/// Answers the jobs of a group after its commit (or its failure) and acts on
/// what it changed.
fn finish(
    jobs: Vec<Job>,
    result: Result<Vec<Done>, EngineError>,
    effects: &Effects,
    wakers: &Wakers,
    versions: &Versions,
) {
    match result {
        Ok(done) => {
            for (job, done) in jobs.into_iter().zip(done) {
                answer(job, Ok(done));
            }
            for family in &effects.families {
                versions.bump(family);
            }
            for peer in &effects.queued {
                wakers.wake(peer);
            }
            if effects.mail {
                wakers.mail.notify_one();
            }
        }
        // Healing's own refusals reach their one job as they are: expected
        // while healing (not a failure of the store), and the healer tells
        // a divergence from a failure to store.
        Err(e @ (EngineError::Healing | EngineError::Diverged(_))) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                answer(job, Err(e));
            }
        }
        Err(e) => {
            tracing::error!(
                "write transaction failed, {} job(s) answered with an error: {e}",
                jobs.len()
            );
            let message = e.to_string();
            for job in jobs {
                answer(job, Err(EngineError::Failed(message.clone())));
            }
        }
    }
}

fn run_group(
    store: &Store,
    identity: &Identity,
    hooks: &Hooks,
    jobs: &mut [Job],
    now: Millis,
    effects: &mut Effects,
) -> Result<Vec<Done>, EngineError> {
    store.transact(|w| {
        *effects = Effects::default();
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Job::Local {
                claim: Some(claim), ..
            }
            | Job::Send {
                claim: Some(claim), ..
            } = job
                && !crate::idempotency::claim(w, claim, now)?
            {
                done.push(Done::Replayed);
                continue;
            }
            done.push(match job {
                Job::Local { work, .. } => {
                    let mut act = Act {
                        tables: w,
                        identity,
                        hooks,
                        now,
                        effects: Effects::default(),
                    };
                    let value = work(&mut act)?;
                    effects.merge(act.effects);
                    Done::Local(value)
                }
                Job::Inbound { items, .. } => {
                    let mut answers = Vec::with_capacity(items.len());
                    for item in items {
                        let a = inbound(w, identity, hooks, item, now, effects)?;
                        let stop = !a.continues();
                        answers.push(a);
                        if stop {
                            break;
                        }
                    }
                    Done::Inbound(answers)
                }
                Job::Send {
                    peer,
                    subject,
                    message,
                    ..
                } => Done::Send(send(w, identity, peer, subject, message, now, effects)?),
                Job::Delivered {
                    peer,
                    receipts,
                    delivery,
                    ..
                } => {
                    for r in receipts {
                        w.put_out_receipt(
                            peer.as_str(),
                            r.seq,
                            &r.bytes,
                            r.rejected.as_ref().map(|(code, _)| code.as_str()),
                        )?;
                        answered(w, effects, peer, r, now)?;
                    }
                    w.put_delivery(peer.as_str(), delivery)?;
                    Done::Unit
                }
                Job::SaveDelivery { peer, delivery, .. } => {
                    w.put_delivery(peer.as_str(), delivery)?;
                    Done::Unit
                }
                Job::Heal { steps, healed, .. } => {
                    for step in steps.iter() {
                        match step {
                            HealStep::Sent { envelope, receipt } => {
                                replay_sent(w, identity, envelope, receipt, effects)?
                            }
                            HealStep::Received(item) => {
                                inbound(w, identity, hooks, item, now, effects)?;
                            }
                        }
                    }
                    if *healed {
                        w.end_healing()?;
                    }
                    Done::Unit
                }
                Job::Probe => Done::Unit,
            });
        }
        Ok(done)
    })
}

fn answer(job: Job, result: Result<Done, EngineError>) {
    // A dropped receiver means the caller gave up (timeout); the work is done
    // and durable regardless, and a retry will find it.
    match (job, result) {
        (Job::Local { reply, .. }, Ok(Done::Replayed)) => {
            drop(reply.send(Err(EngineError::Replayed)))
        }
        (Job::Send { reply, .. }, Ok(Done::Replayed)) => {
            drop(reply.send(Err(EngineError::Replayed)))
        }
        (Job::Local { reply, .. }, Ok(Done::Local(v))) => drop(reply.send(Ok(v))),
        (Job::Local { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
        (Job::Inbound { reply, .. }, Ok(Done::Inbound(a))) => drop(reply.send(Ok(a))),
        (Job::Send { reply, .. }, Ok(Done::Send(s))) => drop(reply.send(Ok(s))),
        (
            Job::Delivered { reply, .. }
            | Job::SaveDelivery { reply, .. }
            | Job::Heal { reply, .. },
            Ok(Done::Unit),
        ) => drop(reply.send(Ok(()))),
        (Job::Inbound { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
        (Job::Send { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
        (
            Job::Delivered { reply, .. }
            | Job::SaveDelivery { reply, .. }
            | Job::Heal { reply, .. },
            Err(e),
        ) => drop(reply.send(Err(e))),
        (Job::Probe, _) => {}
        (_, Ok(_)) => tracing::error!("engine produced an answer of the wrong shape"),
    }
}

fn load_record(w: &Tables<'_>, peer: &str, subject: &str) -> Result<Option<Record>, EngineError> {
    match w.record(peer, subject)? {
        Some(json) => serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| EngineError::Corrupt(format!("record ({peer}, {subject}): {e}"))),
        None => Ok(None),
    }
}

/// The record a message applies to; none is read for a message that
/// concerns no record (`ping`).
fn current_record(
    w: &Tables<'_>,
    peer: &str,
    subject: &str,
    message: &Message,
) -> Result<Option<Record>, EngineError> {
    if !message.concerns_record() {
        return Ok(None);
    }
    load_record(w, peer, subject)
}

fn save_record(
    w: &mut Tables<'_>,
    effects: &mut Effects,
    peer: &str,
    subject: &str,
    record: &Record,
) -> Result<(), EngineError> {
    let json = serde_json::to_vec(record).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    w.put_record(peer, subject, &json)?;
    effects.families.insert(record.family());
    crate::record_index::record_saved(w, peer, subject, record)?;
    crate::leads::index::record_saved(w, subject, record)
}

/// The authority bookkeeping of a record as stored (`record_sync`).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SyncDoc {
    version: u64,
    follow: Option<Follow>,
    /// The seq of the peer's envelope that opened the record, when the peer
    /// opened it (an index, so nobody scans a stream to find it).
    #[serde(default)]
    opened: Option<u64>,
}

/// What of a shared record is still this node's own, unconfirmed view
/// (SPEC §12.1): requests the authority has not answered, and the reason it
/// refused the request that opened the record, if it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unconfirmed {
    pub pending_requests: usize,
    pub refused: Option<String>,
}

/// [`Unconfirmed`] for the record `subject` shared with `peer`.
pub fn unconfirmed(
    read: &guanxi_adapters::store::Read,
    peer: &str,
    subject: &str,
) -> Result<Unconfirmed, EngineError> {
    let Some(json) = read.record_sync(peer, subject)? else {
        return Ok(Unconfirmed::default());
    };
    let sync: SyncDoc = serde_json::from_slice(&json)
        .map_err(|e| EngineError::Corrupt(format!("record_sync ({peer}, {subject}): {e}")))?;
    Ok(sync
        .follow
        .map_or_else(Unconfirmed::default, |f| Unconfirmed {
            pending_requests: f.pending.len(),
            refused: f.refused,
        }))
}

fn load_sync(w: &Tables<'_>, peer: &str, subject: &str) -> Result<SyncDoc, EngineError> {
    match w.record_sync(peer, subject)? {
        Some(json) => serde_json::from_slice(&json)
            .map_err(|e| EngineError::Corrupt(format!("record_sync ({peer}, {subject}): {e}"))),
        None => Ok(SyncDoc::default()),
    }
}

/// What this node keeps about the record `subject` shared with `peer`, and
/// the seq of the peer's envelope that opened it (if the peer did).
fn load_slot(
    w: &Tables<'_>,
    peer: &str,
    subject: &str,
) -> Result<(Slot, Option<u64>), EngineError> {
    let record = load_record(w, peer, subject)?;
    let sync = load_sync(w, peer, subject)?;
    let slot = Slot {
        record,
        version: sync.version,
        follow: sync.follow,
    };
    Ok((slot, sync.opened))
}

/// Stores `slot` and the seq of the peer's envelope that opened the record.
fn save_slot(
    w: &mut Tables<'_>,
    effects: &mut Effects,
    peer: &str,
    subject: &str,
    slot: Slot,
    opened: Option<u64>,
) -> Result<(), EngineError> {
    match &slot.record {
        Some(record) => save_record(w, effects, peer, subject, record)?,
        None => w.delete_record(peer, subject)?,
    }
    let sync = SyncDoc {
        version: slot.version,
        follow: slot.follow,
        opened,
    };
    let json = serde_json::to_vec(&sync).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    w.put_record_sync(peer, subject, &json)?;
    Ok(())
}

/// Logs what a follower could not apply of its authority's messages: the
/// two copies of the record differ from that version on.
fn report_faults(peer: &str, subject: &str, faults: &[Fault]) {
    for f in faults {
        tracing::error!(
            peer,
            subject,
            version = f.version,
            kind = %f.kind,
            "the authority's message does not apply to our copy: {}",
            f.error
        );
    }
}

fn reject(
    code: ReasonCode,
    message: impl Into<String>,
    expected_seq: Option<u64>,
) -> Option<Rejection> {
    Some(Rejection {
        code,
        message: message.into(),
        expected_seq,
    })
}

/// SPEC §7 steps 7–10 for one envelope, inside the group's transaction.
fn inbound(
    w: &mut Tables<'_>,
    identity: &Identity,
    hooks: &Hooks,
    item: &Inbound,
    now: Millis,
    effects: &mut Effects,
) -> Result<InboundAnswer, EngineError> {
    let env = &item.envelope;
    let f = env.fields();
    let peer = f.from.as_str();
    let stream = w.in_stream(peer)?;

    let decided = item.decided.as_ref();
    if decided.is_none() && w.healing()? {
        return Err(EngineError::Healing);
    }
    let diverged =
        |what: String| EngineError::Diverged(format!("{peer}'s envelope seq {}: {what}", f.seq));

    // Step 7: a retry gets the original receipt; the same id with other bytes is a conflict.
    if let Some(seen) = w.seen_id(&f.id)? {
        if decided.is_some() {
            return Err(diverged("its id was already consumed here".into()));
        }
        if seen.hash == env.hash.0
            && seen.peer == peer
            && let Some(receipt) = w.in_receipt(&seen.peer, seen.seq)?
        {
            return Ok(InboundAnswer {
                http_status: 200,
                receipt,
            });
        }
        let reason = reject(
            ReasonCode::IdConflict,
            format!("envelope id {} was already used with other bytes", f.id),
            None,
        );
        let receipt =
            ReceiptFields::for_envelope(env, stream.seq, reason, now).sign(&identity.key())?;
        return Ok(InboundAnswer {
            http_status: 409,
            receipt: receipt.bytes,
        });
    }

    // Step 8: the stream must continue exactly.
    let expected = stream.seq + 1;
    let prev_ok = f.prev.map(|h| h.0) == stream.hash;
    let stream_error = if f.seq > expected {
        Some((
            ReasonCode::SeqGap,
            format!("seq {} skips ahead; expected seq {expected}", f.seq),
        ))
    } else if f.seq < expected {
        Some((
            ReasonCode::ChainBroken,
            format!(
                "seq {} was already used by another envelope; expected seq {expected}",
                f.seq
            ),
        ))
    } else if !prev_ok {
        Some((
            ReasonCode::ChainBroken,
            format!(
                "prev does not match the hash of envelope seq {}",
                stream.seq
            ),
        ))
    } else if f.created < stream.created {
        Some((
            ReasonCode::ChainBroken,
            format!(
                "created {} is earlier than the previous envelope's {}: a stream's times never go back",
                f.created, stream.created
            ),
        ))
    } else {
        None
    };
    if let Some((code, message)) = stream_error {
        if decided.is_some() {
            return Err(diverged(format!("{}: {message}", code.as_str())));
        }
        let receipt = ReceiptFields::for_envelope(
            env,
            stream.seq,
            reject(code, message, Some(expected)),
            now,
        )
        .sign(&identity.key())?;
        return Ok(InboundAnswer {
            http_status: 409,
            receipt: receipt.bytes,
        });
    }

    // Step 9: the business rules. A failure is a rejection that consumes the seq.
    let mut placed = None;
    let reason = match (
        &item.message,
        decided.and_then(|d| d.receipt.fields.reason.as_ref()),
    ) {
        // Replaying a rejection this node signed: the seq is consumed and
        // no record changes, as when it was first decided.
        (_, Some(rejected)) => Some(rejected.clone()),
        (message, None) => match message {
            Err(BodyError::UnknownKind(kind)) => reject(
                ReasonCode::UnknownKind,
                format!("unknown kind {kind:?}"),
                None,
            ),
            Err(e @ BodyError::Field { .. }) => reject(ReasonCode::BadBody, e.to_string(), None),
            Ok(message) => {
                let ctx = Context {
                    from: f.from.clone(),
                    to: f.to.clone(),
                    at: f.created,
                };
                let subject = f.subject.as_str();
                if message.concerns_record() {
                    let (mut slot, opened) = load_slot(w, peer, subject)?;
                    match slot.receive(&identity.id, &ctx, message, f.record_version) {
                        Err(e) => reject(e.code, e.message, None),
                        Ok(received) => {
                            // This node's business rules judge requests it is
                            // the authority of; the authority's own messages
                            // are the record's truth. A replayed decision is
                            // not judged again (SPEC §22).
                            let ruled = match received.version {
                                Some(_) if decided.is_none() => {
                                    (hooks.rule)(w, &ctx, subject, message)?
                                }
                                _ => Ok(()),
                            };
                            match ruled {
                                Err(e) => reject(e.code, e.message, None),
                                Ok(()) => {
                                    report_faults(peer, subject, &received.faults);
                                    let opened = match received.version {
                                        Some(1) => Some(f.seq),
                                        _ => opened,
                                    };
                                    if received.refused.is_none()
                                        && let Some(record) = &slot.record
                                    {
                                        let applied = Applied {
                                            key: peer,
                                            subject,
                                            from: &f.from,
                                            to: &f.to,
                                            message,
                                            record,
                                            at: f.created,
                                            seq: Some(f.seq),
                                            replayed: decided.is_some(),
                                        };
                                        effects.mail |= (hooks.applied)(w, &applied)?;
                                    }
                                    save_slot(w, effects, peer, subject, slot, opened)?;
                                    placed = received.version;
                                    received.refused.map(|e| Rejection {
                                        code: e.code,
                                        message: e.message,
                                        expected_seq: None,
                                    })
                                }
                            }
                        }
                    }
                } else if f.record_version.is_some() {
                    reject(
                        ReasonCode::VersionConflict,
                        format!("{} concerns no record; record_version must be null", f.kind),
                        None,
                    )
                } else {
                    // Run for what it keeps (an attachment's file, a peer's
                    // new key) even when replaying; only a new decision
                    // follows its verdict.
                    let verdict = match message {
                        Message::KeyRotate(rotate) => {
                            (hooks.rotated)(&f.from, &env.envelope.sig.kid, f.created, rotate)?
                        }
                        Message::TlsPin(pin) => (hooks.repinned)(&f.from, pin)?,
                        _ => (hooks.rule)(w, &ctx, f.subject.as_str(), message)?,
                    };
                    match verdict {
                        Err(e) if decided.is_none() => reject(e.code, e.message, None),
                        _ => None,
                    }
                }
            }
        },
    };
    if let Some(d) = decided {
        let wanted = &d.receipt.fields;
        let got = reason.as_ref().map(|r| r.code.as_str());
        let had = wanted.reason.as_ref().map(|r| r.code.as_str());
        if got != had || placed != wanted.record_version {
            return Err(diverged(format!(
                "first decided {} at version {:?}, replayed {} at version {placed:?}",
                had.unwrap_or("accepted"),
                wanted.record_version,
                got.unwrap_or("accepted"),
            )));
        }
    }

    // Step 10: envelope, receipt and stream position in the same transaction.
    let rejected = reason.as_ref().map(|r| r.code.as_str());
    let receipt = if let Some(d) = decided {
        d.clone()
    } else {
        match (&reason, &item.presigned) {
            (None, Some(pre))
                if placed.is_none()
                    && pre.receipt.fields.high_water == f.seq
                    && pre.receipt.fields.reason.is_none()
                    && pre.receipt.sig.kid == identity.key().kid() =>
            {
                pre.clone()
            }
            _ => ReceiptFields::for_envelope(env, f.seq, reason.clone(), now)
                .with_record_version(placed)
                .sign(&identity.key())?,
        }
    };
    let seen = SeenId {
        peer: peer.to_string(),
        seq: f.seq,
        hash: env.hash.0,
    };
    w.put_in(
        &f.id,
        &seen,
        &env.bytes,
        &receipt.bytes,
        rejected,
        f.created,
    )?;
    Ok(InboundAnswer {
        http_status: 200,
        receipt: receipt.bytes,
    })
}

/// Applies a local message and queues its envelope, inside the group's transaction.
fn send(
    w: &mut Tables<'_>,
    identity: &Identity,
    peer: &NodeId,
    subject: &RecordId,
    message: &Message,
    now: Millis,
    effects: &mut Effects,
) -> Result<Result<Sent, StateError>, EngineError> {
    if w.healing()? {
        return Err(EngineError::Healing);
    }
    let stream = w.out_stream(peer.as_str())?;
    // A stream's times never go back, even when this node's clock does.
    let created = now.max(stream.created);
    let ctx = Context {
        from: identity.id.clone(),
        to: peer.clone(),
        at: created,
    };
    let seq = stream.seq + 1;
    let mut slot = if message.concerns_record() {
        Some(load_slot(w, peer.as_str(), subject.as_str())?)
    } else {
        None
    };
    let record_version = match &mut slot {
        Some((slot, _)) => match slot.send(&identity.id, &ctx, message, seq) {
            Ok(v) => v,
            Err(refused) => return Ok(Err(refused)),
        },
        None => None,
    };
    let fields = EnvelopeFields {
        v: PROTOCOL_VERSION,
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        from: identity.id.clone(),
        to: peer.clone(),
        seq,
        prev: stream.hash.map(Sha256Hash),
        created,
        kind: message.kind().to_string(),
        subject: subject.clone(),
        body: message.body().map_err(EnvelopeError::from)?,
        record_version,
    };
    let signed = match fields.sign(&identity.key()) {
        Ok(s) => s,
        Err(EnvelopeError::TooLarge { size }) => {
            return Ok(Err(StateError {
                code: ReasonCode::TooLarge,
                message: format!(
                    "the message would be {size} bytes, over the 1 MiB envelope limit"
                ),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some((slot, opened)) = slot {
        if slot.has_pending() && record_version.is_none() {
            w.put_out_pending(peer.as_str(), seq, subject.as_str())?;
        }
        save_slot(w, effects, peer.as_str(), subject.as_str(), slot, opened)?;
    }
    w.put_out(peer.as_str(), seq, signed.hash.0, &signed.bytes, created)?;
    effects.queued.insert(peer.clone());
    Ok(Ok(Sent {
        id: signed.fields().id.clone(),
        seq,
        hash: signed.hash,
    }))
}

/// Replays an own envelope a peer gave back while healing (SPEC §22): one
/// this node still holds must be the same bytes; a newer one must continue
/// the stream and be applied as when it was sent, giving the version it
/// names. Then the peer's receipt is taken as a returned receipt.
fn replay_sent(
    w: &mut Tables<'_>,
    identity: &Identity,
    envelope: &SignedEnvelope,
    receipt: &ReturnedReceipt,
    effects: &mut Effects,
) -> Result<(), EngineError> {
    let f = envelope.fields();
    let peer = &f.to;
    let diverged = |what: String| {
        EngineError::Diverged(format!("own envelope seq {} to {peer}: {what}", f.seq))
    };
    let stream = w.out_stream(peer.as_str())?;
    if f.seq <= stream.seq {
        if w.out_envelope(peer.as_str(), f.seq)?.as_deref() != Some(envelope.bytes.as_slice()) {
            return Err(diverged("this node holds other bytes at that seq".into()));
        }
    } else {
        if f.seq != stream.seq + 1 || f.prev.map(|h| h.0) != stream.hash {
            return Err(diverged(format!(
                "it does not continue the stream, which stands at seq {}",
                stream.seq
            )));
        }
        let message = decode_message(&f.kind, &f.body).map_err(|e| diverged(e.message.clone()))?;
        if message.concerns_record() {
            let ctx = Context {
                from: identity.id.clone(),
                to: peer.clone(),
                at: f.created,
            };
            if let Message::RecordHandover(h) = &message {
                // A store restored from before a hand-over (SPEC §25)
                // still holds the web partner's copy.
                crate::handover::forget_web_copy(
                    w,
                    &crate::records::web_key(h.was.as_str()),
                    f.subject.as_str(),
                    peer.as_str(),
                )?;
            }
            let (mut slot, opened) = load_slot(w, peer.as_str(), f.subject.as_str())?;
            match slot.send(&identity.id, &ctx, &message, f.seq) {
                Ok(version) if version == f.record_version => {
                    if slot.has_pending() && version.is_none() {
                        w.put_out_pending(peer.as_str(), f.seq, f.subject.as_str())?;
                    }
                    save_slot(w, effects, peer.as_str(), f.subject.as_str(), slot, opened)?;
                }
                Ok(version) => {
                    return Err(diverged(format!(
                        "it names version {:?}, the replay gives {version:?}",
                        f.record_version
                    )));
                }
                Err(refused) => {
                    return Err(diverged(format!(
                        "the replay refuses it: {}",
                        refused.message
                    )));
                }
            }
        } else if f.record_version.is_some() {
            return Err(diverged("it concerns no record but names a version".into()));
        }
        w.put_out(
            peer.as_str(),
            f.seq,
            envelope.hash.0,
            &envelope.bytes,
            f.created,
        )?;
    }
    w.put_out_receipt(
        peer.as_str(),
        receipt.seq,
        &receipt.bytes,
        receipt.rejected.as_ref().map(|(code, _)| code.as_str()),
    )?;
    answered(w, effects, peer, receipt, f.created)?;
    let mut delivery = w.delivery(peer.as_str())?;
    delivery.delivered_seq = delivery.delivered_seq.max(f.seq);
    w.put_delivery(peer.as_str(), &delivery)?;
    Ok(())
}

/// A peer's receipt for one of our envelopes: where the record's authority
/// placed it, or that it refused it (SPEC §12.1). A follower's copy is
/// rebuilt from the authority's order; a refused `order.place` leaves our
/// copy `refused` with the receipt's reason (§12).
fn answered(
    w: &mut Tables<'_>,
    effects: &mut Effects,
    peer: &NodeId,
    receipt: &ReturnedReceipt,
    now: Millis,
) -> Result<(), EngineError> {
    let Some(subject) = w.take_out_pending(peer.as_str(), receipt.seq)? else {
        return Ok(());
    };
    let subject = subject.as_str();
    let (mut slot, opened) = load_slot(w, peer.as_str(), subject)?;
    if !slot.has_pending() {
        return Ok(());
    }
    let answer = match (&receipt.rejected, receipt.record_version) {
        (Some((_, reason)), _) => Answer::Refused(reason.clone()),
        (None, Some(v)) => Answer::Placed(v),
        (None, None) => Answer::Received,
    };
    let faults = slot.answered(receipt.seq, &answer, now);
    report_faults(peer.as_str(), subject, &faults);
    save_slot(w, effects, peer.as_str(), subject, slot, opened)
}

/// Decodes a message from its kind and JSON body with the wire's checks; a
/// refusal names the field (`bad_body`), so every channel reports it alike.
pub fn decode_message(kind: &str, body: &serde_json::Value) -> Result<Message, StateError> {
    Message::decode(kind, body).map_err(|e| StateError {
        code: ReasonCode::BadBody,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guanxi_adapters::store::Doc;
    use guanxi_protocol::NodeKey;

    fn engine(dir: &std::path::Path) -> (Engine, Arc<Store>) {
        let store = Arc::new(Store::open(dir).expect("store"));
        let identity = Arc::new(Identity::new(
            "acme".parse().expect("id"),
            NodeKey::from_seed(&[3u8; 32]),
            Vec::new(),
        ));
        let (engine, _writer) = Engine::start(store.clone(), identity, Hooks::none());
        (engine, store)
    }

    /// A job that fails in a group takes nobody else with it: the group is
    /// rolled back and its jobs run again one by one.
    #[tokio::test]
    async fn one_failing_job_fails_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, store) = engine(dir.path());
        // Hold the writer inside a first job until the others have queued,
        // so that they commit as one group.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Mutex::new(held);
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let started = std::sync::Mutex::new(Some(started));
        let e = engine.clone();
        let blocker = tokio::spawn(async move {
            e.local(move |_| {
                if let Some(s) = started.lock().ok().and_then(|mut s| s.take()) {
                    let _ = s.send(());
                }
                let _ = held.lock().map(|h| h.recv());
                Ok(())
            })
            .await
        });
        let write = |key: &'static str| {
            let e = engine.clone();
            tokio::spawn(async move {
                e.local(move |t| {
                    t.put_doc(Doc::Setting, key, b"1")?;
                    Ok(())
                })
                .await
            })
        };
        // The writer runs the blocker before the others are sent.
        running.await.expect("the blocker runs");
        let good_before = write("before");
        let e = engine.clone();
        let bad = tokio::spawn(async move {
            e.local(|t| {
                t.put_doc(Doc::Setting, "bad", b"1")?;
                Err::<(), _>(EngineError::Corrupt("a damaged record".into()))
            })
            .await
        });
        let good_after = write("after");
        // Release the writer once all three wait in the channel.
        while engine.queued() < 3 {
            tokio::task::yield_now().await;
        }
        release.send(()).expect("release");
        blocker.await.expect("join").expect("blocker");
        good_before
            .await
            .expect("join")
            .expect("the job before commits");
        good_after
            .await
            .expect("join")
            .expect("the job after commits");
        let err = bad.await.expect("join").expect_err("the bad job fails");
        assert!(err.to_string().contains("damaged"), "{err}");
        let read = store.read().expect("read");
        assert!(read.doc(Doc::Setting, "before").expect("doc").is_some());
        assert!(read.doc(Doc::Setting, "after").expect("doc").is_some());
        assert!(
            read.doc(Doc::Setting, "bad").expect("doc").is_none(),
            "nothing of the bad job stays"
        );
    }

    /// While healing (SPEC §22) nothing is sent; a replayed envelope whose
    /// outcome is not the one this node signed stops the healing and
    /// stores nothing; the one it signed replays and ends the healing.
    #[tokio::test]
    async fn healing_replays_only_the_decisions_this_node_signed() {
        let dir = tempfile::tempdir().expect("tempdir");
        Store::open(dir.path())
            .expect("store")
            .mark_healing()
            .expect("mark");
        let (engine, store) = engine(dir.path());
        let (acme, globex) = (
            NodeKey::from_seed(&[3u8; 32]),
            NodeKey::from_seed(&[4u8; 32]),
        );
        let peer: NodeId = "globex".parse().expect("id");
        let ping = Message::decode("ping", &serde_json::json!({"note": ""})).expect("ping");
        let refused = engine
            .send(peer.clone(), "p-1".parse().expect("subject"), ping.clone())
            .await
            .expect_err("nothing is sent while healing");
        assert!(
            matches!(refused, SendError::Engine(EngineError::Healing)),
            "{refused}"
        );

        let body = serde_json::json!({"note": "on it"});
        let envelope = EnvelopeFields {
            v: PROTOCOL_VERSION,
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            from: peer.clone(),
            to: "acme".parse().expect("id"),
            seq: 1,
            prev: None,
            created: 1_795_000_000_000,
            kind: "lead.accept".into(),
            subject: "lead-x".parse().expect("subject"),
            body: body.clone(),
            record_version: None,
        }
        .sign(&globex)
        .expect("signs");
        let step = |reason: Option<Rejection>, version: Option<u64>| {
            let receipt = ReceiptFields::for_envelope(&envelope, 1, reason, 1_795_000_000_500)
                .with_record_version(version)
                .sign(&acme)
                .expect("signs");
            HealStep::Received(Box::new(Inbound {
                envelope: envelope.clone(),
                message: Message::decode("lead.accept", &body),
                presigned: None,
                decided: Some(receipt),
            }))
        };
        // Acme never had lead-x: a receipt saying it accepted it cannot be replayed.
        let err = engine
            .heal(vec![step(None, Some(2))], true)
            .await
            .expect_err("diverges");
        assert!(matches!(err, EngineError::Diverged(_)), "{err}");
        assert!(err.to_string().contains("first decided accepted"), "{err}");
        assert_eq!(
            store
                .read()
                .expect("read")
                .in_stream("globex")
                .expect("stream")
                .seq,
            0
        );
        assert!(store.healing().expect("meta"));

        // The rejection acme signed replays: the seq is consumed, the
        // receipt kept as it was, and the healing ends.
        let rejection = Rejection {
            code: ReasonCode::UnknownRecord,
            message: "no such lead".into(),
            expected_seq: None,
        };
        engine
            .heal(vec![step(Some(rejection), None)], true)
            .await
            .expect("replays");
        let read = store.read().expect("read");
        assert_eq!(read.in_stream("globex").expect("stream").seq, 1);
        assert!(!store.healing().expect("meta"));
        engine
            .send(peer, "p-1".parse().expect("subject"), ping)
            .await
            .expect("healed: sends again");
    }
}
