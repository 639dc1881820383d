//! Delivery workers: one per enabled peer, sending the outgoing stream in seq
//! order with one request in flight, batching up to 100 envelopes when there
//! is a backlog, resending the stored bytes until a verified receipt comes
//! back.
//!
//! Failures back off exponentially (1 s doubling, × a random factor in
//! [0.8, 1.4], capped at 1 hour); the state is persisted, so a restart neither
//! resets nor stampedes. A wake-up (a new message queued, or any valid request
//! from the peer) ends the wait at once. A peer that reports a broken stream
//! (`seq_gap`, `chain_broken`, `id_conflict`) halts its stream for an admin:
//! nothing is ever skipped or dropped.

use crate::clock::now_ms;
use crate::engine::{PeerSignal, ReturnedReceipt};
use crate::node::{Node, PeerRuntime};
use guanxi_adapters::store::Delivery;
use guanxi_protocol::canonical;
use guanxi_protocol::envelope::MAX_BATCH;
use guanxi_protocol::receipt::{ReceiptStatus, SignedReceipt};
use guanxi_protocol::{NodeId, ReasonCode, Sha256Hash};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// First retry delay.
const BASE_DELAY_MS: i64 = 1_000;
/// The wait before asking a peer that is healing (SPEC §22) again.
const HEALING_RETRY_MS: i64 = 2_000;
/// Longest retry delay.
const MAX_DELAY_MS: i64 = 3_600_000;

/// The delay before retry number `attempts` (1 = first retry), before jitter.
pub fn backoff_ms(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(32);
    BASE_DELAY_MS.saturating_mul(1i64 << exp).min(MAX_DELAY_MS)
}

/// The longest wait after an outage of `outage_ms` so far: a tenth of it,
/// at least a minute. A peer back after ten minutes down is tried again
/// within a minute; one down for a day within about two and a half hours
/// (then the one-hour cap of [`backoff_ms`] applies).
pub fn outage_cap_ms(outage_ms: i64) -> i64 {
    (outage_ms / 10).max(60_000)
}

/// `delay` × a random factor in [0.8, 1.4], still capped at one hour.
fn jitter(delay: i64) -> i64 {
    let mut b = [0u8; 4];
    let r = if getrandom::fill(&mut b).is_ok() {
        u32::from_le_bytes(b)
    } else {
        u32::MAX / 2
    };
    let factor_permille = 800 + i64::from(r % 601);
    (delay * factor_permille / 1000).min(MAX_DELAY_MS)
}

/// Runs and supervises one worker per enabled peer; follows config reloads.
pub struct Workers {
    node: Arc<Node>,
    tracker: TaskTracker,
    running: std::sync::Mutex<HashMap<NodeId, CancellationToken>>,
    shutdown: CancellationToken,
}

impl Workers {
    pub fn new(node: Arc<Node>, shutdown: CancellationToken) -> Arc<Workers> {
        Arc::new(Workers {
            node,
            tracker: TaskTracker::new(),
            running: std::sync::Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    /// Starts workers for enabled peers without one and stops those of
    /// peers removed or disabled. Call at start and after every reload.
    pub fn sync(&self) {
        let peers = self.node.peers();
        let mut running = match self.running.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        running.retain(|id, token| {
            let keep = peers.get(id).is_some_and(|p| p.config.enabled);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (id, peer) in peers.iter() {
            if peer.config.enabled && !running.contains_key(id) {
                let token = self.shutdown.child_token();
                running.insert(id.clone(), token.clone());
                let node = self.node.clone();
                let id = id.clone();
                self.tracker
                    .spawn(async move { worker(node, id, token).await });
            }
        }
    }

    /// Stops every worker and waits for them (each finishes its request).
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Why one delivery attempt failed.
struct Failure {
    message: String,
    /// The peer said the stream is broken: stop until an admin acts.
    halt: bool,
    /// The peer is healing after a restore (SPEC §22): try again in a few
    /// seconds, without growing the backoff.
    healing: bool,
}

impl Failure {
    fn retry(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            halt: false,
            healing: false,
        }
    }
}

async fn worker(node: Arc<Node>, peer: NodeId, cancel: CancellationToken) {
    // A node healing after a restore sends nothing (SPEC §22).
    tokio::select! {
        _ = node.healing.wait() => {}
        _ = cancel.cancelled() => return,
    }
    let wake = node.waker(&peer);
    tracing::info!(%peer, "delivery worker started");
    // The delivery state lives here; the store holds its last committed copy
    // (receipts are committed behind the next request: a crash in between
    // only means those envelopes are sent again and answered as duplicates).
    let mut state = WorkerState {
        node: node.clone(),
        peer: peer.clone(),
        delivery: None,
        alerted: false,
        failed_at: 0,
        commit_failed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    // The receipts of the last request, verified while the next one travels.
    let mut verifying: Option<(u64, tokio::task::JoinHandle<Outcome>)> = None;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        if node.peer(&peer).is_none() {
            break;
        }
        if state
            .commit_failed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // Receipts we counted as delivered were not stored: start again
            // from what the store holds (the peer answers the resent
            // envelopes with the same receipts).
            verifying = None;
            state.delivery = None;
        }
        // While the database cannot be written, receipts could not be
        // stored: wait for it (the writer logged the cause once).
        if node.engine.storage_failed() {
            wait(&cancel, &wake, Some(2_000)).await;
            continue;
        }
        let resume = wake.resume.swap(false, std::sync::atomic::Ordering::SeqCst);
        let pause = wake.pause.swap(false, std::sync::atomic::Ordering::SeqCst);
        if resume || pause {
            if let Some((_, task)) = verifying.take() {
                state
                    .settle(task.await.unwrap_or_else(|e| {
                        Outcome::failed(Vec::new(), Failure::retry(e.to_string()))
                    }))
                    .await;
            }
            state.set_paused(pause).await;
            wake.acknowledged.notify_waiters();
        }
        let current = match state.current() {
            Ok(d) => d,
            Err(e) => {
                if !node.engine.storage_failed() {
                    tracing::error!(%peer, "cannot read the delivery state: {e}");
                }
                wait(&cancel, &wake, Some(5_000)).await;
                continue;
            }
        };
        if let Some(why) = &current.halted {
            tracing::error!(%peer, "delivery halted: {why}; see `guanxi peers`");
            wait(&cancel, &wake, None).await;
            continue;
        }
        if current.paused {
            if let Some((_, task)) = verifying.take() {
                state
                    .settle(task.await.unwrap_or_else(|e| {
                        Outcome::failed(Vec::new(), Failure::retry(e.to_string()))
                    }))
                    .await;
            }
            wait(&cancel, &wake, None).await;
            continue;
        }
        let sent_through = verifying
            .as_ref()
            .map_or(current.delivered_seq, |(last, _)| *last);
        let batch = (node.config().federation.max_batch as usize).clamp(1, MAX_BATCH);
        let pending = match node
            .store
            .read()
            .and_then(|r| r.out_envelopes(peer.as_str(), sent_through + 1, batch))
        {
            Ok(p) => p,
            Err(e) => {
                if !node.engine.storage_failed() {
                    tracing::error!(%peer, "cannot read the outbox: {e}");
                }
                wait(&cancel, &wake, Some(5_000)).await;
                continue;
            }
        };
        if pending.is_empty() {
            if let Some((_, task)) = verifying.take() {
                state
                    .settle(task.await.unwrap_or_else(|e| {
                        Outcome::failed(Vec::new(), Failure::retry(e.to_string()))
                    }))
                    .await;
                continue;
            }
            wait(&cancel, &wake, None).await;
            continue;
        }
        let now = now_ms();
        if verifying.is_none() && current.next_attempt_at > now {
            // Back off; a sign of life from the peer or an admin's resume
            // ends the wait at once, new work does not (SPEC §8).
            back_off(&cancel, &wake, current.next_attempt_at, state.failed_at).await;
            if cancel.is_cancelled() {
                break;
            }
            if wake.resume.load(std::sync::atomic::Ordering::SeqCst)
                || wake.pause.load(std::sync::atomic::Ordering::SeqCst)
            {
                continue;
            }
        }
        let last = pending.last().map_or(sent_through, |(seq, _)| *seq);
        // The peer as configured now (a reload may have moved it meanwhile).
        let Some(rt) = node.peer(&peer) else { break };
        let posted = post_pending(&rt, pending).await;
        // The previous request's receipts were verified meanwhile: settle them first.
        if let Some((_, task)) = verifying.take() {
            let outcome = task
                .await
                .unwrap_or_else(|e| Outcome::failed(Vec::new(), Failure::retry(e.to_string())));
            if !state.settle(outcome).await {
                // Something was wrong with those receipts: start again from
                // what is delivered; this answer is dropped (a resend gets
                // the same receipts back as duplicates).
                continue;
            }
        }
        match posted {
            Ok((answered, clean)) => {
                let task = tokio::spawn(verify_answered(
                    rt.clone(),
                    node.identity.id.clone(),
                    answered,
                ));
                if clean {
                    // Every envelope got a receipt that keeps the stream
                    // going: send the next ones while these are checked.
                    verifying = Some((last, task));
                } else {
                    // Something was refused or not processed: settle before
                    // sending anything further, strictly in seq order.
                    state
                        .settle(task.await.unwrap_or_else(|e| {
                            Outcome::failed(Vec::new(), Failure::retry(e.to_string()))
                        }))
                        .await;
                }
            }
            Err(failure) => {
                state.settle(Outcome::failed(Vec::new(), failure)).await;
            }
        }
    }
    tracing::info!(%peer, "delivery worker stopped");
}

/// A worker's view of its stream's delivery state.
struct WorkerState {
    node: Arc<Node>,
    peer: NodeId,
    delivery: Option<Delivery>,
    alerted: bool,
    /// When the last attempt failed (UTC ms): only a sign of life after it
    /// ends a backoff.
    failed_at: i64,
    /// Set when a commit of receipts failed after the worker counted them.
    commit_failed: Arc<std::sync::atomic::AtomicBool>,
}

impl WorkerState {
    /// The delivery state; read from the store at first and while halted (an
    /// admin may have resumed it).
    fn current(&mut self) -> Result<Delivery, guanxi_adapters::store::StoreError> {
        match &self.delivery {
            Some(d) if d.halted.is_none() => Ok(d.clone()),
            _ => {
                let d = self.node.store.read()?.delivery(self.peer.as_str())?;
                self.delivery = Some(d.clone());
                Ok(d)
            }
        }
    }

    /// An admin's pause (`paused`) or resume (clears a halt, a pause and any
    /// backoff), on the worker's own (newest) state, stored.
    async fn set_paused(&mut self, paused: bool) {
        let Ok(mut next) = self.current() else {
            return;
        };
        next.paused = paused;
        if !paused {
            next.halted = None;
            next.attempts = 0;
            next.next_attempt_at = 0;
            next.last_error = None;
            next.failing_since = None;
            self.alerted = false;
        }
        self.delivery = Some(next.clone());
        if let Err(e) = self
            .node
            .engine
            .save_delivery(self.peer.clone(), next)
            .await
        {
            if !self.node.engine.storage_failed() {
                tracing::error!(peer = %self.peer, "cannot store the delivery state: {e}");
            }
            self.delivery = None;
        }
    }

    /// Applies an attempt's outcome and stores it (receipts committed behind
    /// us, in order). Returns whether the attempt fully succeeded.
    async fn settle(&mut self, outcome: Outcome) -> bool {
        let Ok(current) = self.current() else {
            return false;
        };
        let peer = &self.peer.clone();
        let alert_after = i64::from(self.node.config().federation.alert_after_seconds) * 1000;
        let mut next = current.clone();
        if let Some(last) = outcome.delivered.last() {
            next.delivered_seq = last.seq;
        }
        let success = outcome.failure.is_none();
        match &outcome.failure {
            None => {
                if current.failing_since.is_some() {
                    tracing::info!(%peer, "deliveries succeed again");
                }
                next.attempts = 0;
                next.next_attempt_at = 0;
                next.last_error = None;
                next.failing_since = None;
                self.alerted = false;
            }
            Some(f) if f.halt => {
                tracing::error!(%peer, "peer reports a broken stream, delivery halted: {}", f.message);
                next.halted = Some(f.message.clone());
                next.last_error = Some(f.message.clone());
            }
            Some(f) if f.healing => {
                if next.last_error.as_deref() != Some(f.message.as_str()) {
                    tracing::info!(%peer, "peer is healing after a restore; delivering when it is done");
                }
                next.next_attempt_at = now_ms() + HEALING_RETRY_MS;
                next.last_error = Some(f.message.clone());
            }
            Some(f) => {
                next.attempts = next.attempts.saturating_add(1);
                let now = now_ms();
                let since = *next.failing_since.get_or_insert(now);
                let delay = jitter(backoff_ms(next.attempts)).min(outage_cap_ms(now - since));
                self.failed_at = now;
                next.next_attempt_at = now + delay;
                // One line when the failure starts or changes, not one per attempt.
                if next.last_error.as_deref() != Some(f.message.as_str()) {
                    tracing::warn!(%peer, attempts = next.attempts, retry_in_ms = delay, "delivery failed: {}", f.message);
                } else {
                    tracing::debug!(%peer, attempts = next.attempts, retry_in_ms = delay, "delivery failed again: {}", f.message);
                }
                next.last_error = Some(f.message.clone());
                if now - since > alert_after && !self.alerted {
                    self.alerted = true;
                    tracing::error!(%peer, failing_for_ms = now - since, "peer has been failing for too long; messages are kept and retried");
                }
            }
        }
        self.delivery = Some(next.clone());
        if outcome.delivered.is_empty() {
            if let Err(e) = self.node.engine.save_delivery(peer.clone(), next).await {
                if !self.node.engine.storage_failed() {
                    tracing::error!(%peer, "cannot store the delivery state: {e}");
                }
                self.delivery = None;
                return false;
            }
            return success;
        }
        match self
            .node
            .engine
            .enqueue_delivered(peer.clone(), outcome.delivered, next)
            .await
        {
            Ok(committed) => {
                let node = self.node.clone();
                let peer = peer.clone();
                let failed = self.commit_failed.clone();
                tokio::spawn(async move {
                    let error = match committed.await {
                        Ok(Ok(())) => {
                            node.receipts_stored.notify_waiters();
                            return;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "the engine stopped".to_string(),
                    };
                    if !node.engine.storage_failed() {
                        tracing::error!(%peer, "cannot store receipts, sending again from the last stored: {error}");
                    }
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    node.wake(&peer);
                });
                success
            }
            Err(e) => {
                if !self.node.engine.storage_failed() {
                    tracing::error!(%peer, "cannot store receipts: {e}");
                }
                self.delivery = None;
                false
            }
        }
    }
}

/// Waits for a wake-up, cancellation, or `timeout_ms` if given.
async fn wait(cancel: &CancellationToken, wake: &PeerSignal, timeout_ms: Option<i64>) {
    let sleep = async {
        match timeout_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        () = wake.notify.notified() => {}
        () = sleep => {}
    }
}

/// Waits until `until` (UTC ms), cancellation, an admin's resume or pause, or a sign
/// of life from the peer after `failed_at`. New work queued meanwhile does
/// not end the wait.
async fn back_off(cancel: &CancellationToken, wake: &PeerSignal, until: i64, failed_at: i64) {
    use std::sync::atomic::Ordering;
    loop {
        let now = now_ms();
        if now >= until
            || cancel.is_cancelled()
            || wake.resume.load(Ordering::SeqCst)
            || wake.pause.load(Ordering::SeqCst)
            || wake.heard_at.load(Ordering::SeqCst) > failed_at
        {
            return;
        }
        wait(cancel, wake, Some(until - now)).await;
    }
}

type Delivered = Vec<ReturnedReceipt>;

/// A receipt's exact bytes, with its parsed value when it came in a batch.
type ReceiptBytes = (Vec<u8>, Option<serde_json::Value>);

/// A sent envelope (seq, exact bytes) with what came back for it.
type Answered = (u64, Vec<u8>, Result<ReceiptBytes, String>);

/// Outgoing envelopes waiting, as (seq, exact bytes), in seq order.
type Pending = Vec<(u64, Vec<u8>)>;

/// Sends `pending` (consecutive seqs) and pairs each envelope with what came
/// back for it (not yet verified). Also says whether the answer is clean:
/// every envelope got a receipt that lets the stream go on (so the next
/// request may be sent before these receipts are verified).
async fn post_pending(
    rt: &PeerRuntime,
    pending: Pending,
) -> Result<(Vec<Answered>, bool), Failure> {
    let started = std::time::Instant::now();
    let answer = if pending.len() == 1 {
        rt.client
            .post("/fed/v1/envelope", pending[0].1.clone())
            .await
    } else {
        let mut body =
            Vec::with_capacity(pending.iter().map(|(_, b)| b.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, (_, bytes)) in pending.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(bytes);
        }
        body.push(b']');
        rt.client.post("/fed/v1/batch", body).await
    };
    let answer = answer.map_err(|e| Failure::retry(e.to_string()))?;
    crate::metrics::delivery(rt.config.id.as_str(), started.elapsed());
    // One result per envelope sent: the receipt bytes, or the error.
    let (results, clean): (Vec<Result<ReceiptBytes, String>>, bool) = if pending.len() == 1 {
        match answer.status {
            200 => (vec![Ok((answer.body, None))], true),
            // A stream rejection, with a signed receipt.
            409 => (vec![Ok((answer.body, None))], false),
            status => return Err(versions_told(rt, answer_failure(status, &answer.body)).await),
        }
    } else if answer.status == 200 {
        batch_answer(&answer.body, pending.len()).map_err(Failure::retry)?
    } else {
        return Err(versions_told(rt, answer_failure(answer.status, &answer.body)).await);
    };
    if let Some(Err(message)) = results.first()
        && message.contains(UNSUPPORTED)
    {
        return Err(versions_told(rt, Failure::retry(message.clone())).await);
    }
    Ok((
        pending
            .into_iter()
            .zip(results)
            .map(|((seq, bytes), r)| (seq, bytes, r))
            .collect(),
        clean,
    ))
}

/// Verifies the receipts on two threads (signature checks dominate) and
/// takes them in order up to the first problem.
async fn verify_answered(rt: Arc<PeerRuntime>, me: NodeId, items: Vec<Answered>) -> Outcome {
    let mut halves = Vec::new();
    let mut rest = items;
    let second = rest.split_off(rest.len() / 2);
    for half in [rest, second] {
        let rt = rt.clone();
        let me = me.clone();
        halves.push(tokio::task::spawn_blocking(move || {
            half.into_iter()
                .map(|(seq, sent, result)| match result {
                    Ok(receipt) => check_receipt(&rt, &me, seq, &sent, receipt),
                    Err(message) => Err(Failure::retry(format!("seq {seq}: {message}"))),
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut delivered = Vec::new();
    for half in halves {
        let checked = match half.await {
            Ok(c) => c,
            Err(e) => {
                return Outcome::failed(
                    delivered,
                    Failure::retry(format!("receipt check failed: {e}")),
                );
            }
        };
        for c in checked {
            match c {
                Ok(returned) => delivered.push(returned),
                Err(failure) => return Outcome::failed(delivered, failure),
            }
        }
    }
    Outcome {
        delivered,
        failure: None,
    }
}

/// What one delivery attempt produced: receipts for a prefix of what was
/// sent, and the failure that ended it, if any.
struct Outcome {
    delivered: Delivered,
    failure: Option<Failure>,
}

impl Outcome {
    fn failed(delivered: Delivered, failure: Failure) -> Self {
        Outcome {
            delivered,
            failure: Some(failure),
        }
    }
}

const UNSUPPORTED: &str = "unsupported_version";

/// A peer that does not read this node's envelope version (SPEC §9): the
/// failure says which versions it reads (from its key document) and that
/// nothing is sent until one of the two is upgraded; it is retried with
/// backoff, so an upgrade resumes the stream. Other failures pass as they
/// are.
async fn versions_told(rt: &PeerRuntime, failure: Failure) -> Failure {
    if !failure.message.contains(UNSUPPORTED) {
        return failure;
    }
    let theirs = match rt.client.get("/fed/v1/keys").await {
        Ok(a) if a.status == 200 => serde_json::from_slice::<serde_json::Value>(&a.body)
            .ok()
            .map(|doc| match doc.get("versions").and_then(|v| v.as_array()) {
                Some(list) => list.iter().filter_map(|v| v.as_u64()).collect::<Vec<_>>(),
                // A document without the list is version 1's.
                None => vec![1],
            }),
        _ => None,
    };
    let theirs = theirs.map_or_else(
        || "versions it did not say".into(),
        |v| format!("versions {v:?}"),
    );
    Failure::retry(format!(
        "the peer reads protocol {theirs} and this node writes version {}: nothing is sent until one of them is upgraded ({})",
        guanxi_protocol::envelope::PROTOCOL_VERSION,
        failure.message
    ))
}

/// A failure for an error answer; `503 healing` is retried soon.
fn answer_failure(status: u16, body: &[u8]) -> Failure {
    let healing = status == 503
        && serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|v| v.get("code").and_then(|c| c.as_str()) == Some("healing"));
    Failure {
        message: error_text(status, body),
        halt: false,
        healing,
    }
}

fn error_text(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.get("code").is_some() => format!(
            "HTTP {status} {}: {}",
            v["code"].as_str().unwrap_or("?"),
            v["message"].as_str().unwrap_or("")
        ),
        _ => format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    }
}

/// The results of a batch answer for `sent` envelopes, and whether the
/// answer is clean (every envelope got a receipt that keeps the stream
/// going). An answer with another number of results is refused whole.
fn batch_answer(
    body: &[u8],
    sent: usize,
) -> Result<(Vec<Result<ReceiptBytes, String>>, bool), String> {
    let results = batch_results(body)?;
    if results.len() != sent {
        return Err(format!(
            "the batch answer has {} results for {sent} envelopes",
            results.len()
        ));
    }
    let clean = results.iter().all(|r| match r {
        Ok((_, Some(v))) => !matches!(
            v["reason"]["code"].as_str(),
            Some("seq_gap" | "chain_broken" | "id_conflict")
        ),
        Ok((_, None)) => true,
        Err(_) => false,
    });
    Ok((results, clean))
}

fn batch_results(body: &[u8]) -> Result<Vec<Result<ReceiptBytes, String>>, String> {
    let value = canonical::parse_strict(body)
        .map_err(|e| format!("batch answer is not strict JSON: {e}"))?;
    let Some(serde_json::Value::Array(results)) =
        value.as_object().and_then(|o| o.get("results")).cloned()
    else {
        return Err("batch answer has no results array".into());
    };
    results
        .into_iter()
        .map(|mut r| {
            if let Some(receipt) = r.as_object_mut().and_then(|o| o.remove("receipt")) {
                // Receipts are canonical: canonicalizing recovers their exact bytes.
                canonical::canonicalize(&receipt)
                    .map(|bytes| Ok((bytes, Some(receipt))))
                    .map_err(|e| format!("receipt in batch answer: {e}"))
            } else if let Some(error) = r.get("error") {
                Ok(Err(format!(
                    "{}: {}",
                    error["code"].as_str().unwrap_or("?"),
                    error["message"].as_str().unwrap_or("")
                )))
            } else {
                Err("batch result is neither a receipt nor an error".into())
            }
        })
        .collect()
}

/// [`check_receipt`] for a receipt given back while healing (SPEC §22):
/// a stream rejection is refused like any other mismatch.
pub fn verified_receipt(
    rt: &PeerRuntime,
    me: &NodeId,
    seq: u64,
    sent: &[u8],
    receipt: Vec<u8>,
) -> Result<ReturnedReceipt, String> {
    check_receipt(rt, me, seq, sent, (receipt, None)).map_err(|f| f.message)
}

/// Verifies a receipt against the envelope it answers (by hash), with the peer's key.
fn check_receipt(
    rt: &PeerRuntime,
    me: &NodeId,
    seq: u64,
    sent: &[u8],
    receipt: ReceiptBytes,
) -> Result<ReturnedReceipt, Failure> {
    let decoded = match receipt {
        (bytes, Some(value)) => SignedReceipt::decode_parsed(bytes, value),
        (bytes, None) => SignedReceipt::decode(&bytes),
    };
    let r = decoded.map_err(|e| Failure::retry(format!("receipt refused: {e}")))?;
    let kid = &r.receipt.sig.kid;
    let key = rt
        .config
        .keys
        .iter()
        .find(|k| &k.kid == kid && k.valid_at(r.receipt.fields.received))
        .ok_or_else(|| {
            Failure::retry(format!(
                "receipt signed with key {kid}, not a valid key of peer {}",
                rt.config.id
            ))
        })?;
    r.verify(&key.public_key)
        .map_err(|e| Failure::retry(format!("receipt signature: {e}")))?;
    r.matches_sent(&Sha256Hash::of(sent), seq, me, &rt.config.id)
        .map_err(|e| Failure::retry(format!("receipt mismatch: {e}")))?;
    let fields = &r.receipt.fields;
    match (fields.status, &fields.reason) {
        (ReceiptStatus::Accepted, _) => Ok(ReturnedReceipt {
            seq,
            record_version: fields.record_version,
            rejected: None,
            bytes: r.bytes,
        }),
        (ReceiptStatus::Rejected, Some(reason))
            if !matches!(
                reason.code,
                ReasonCode::IdConflict | ReasonCode::SeqGap | ReasonCode::ChainBroken
            ) =>
        {
            tracing::warn!(peer = %rt.config.id, seq, code = %reason.code, "peer rejected envelope: {}", reason.message);
            Ok(ReturnedReceipt {
                seq,
                record_version: None,
                rejected: Some((reason.code, format!("{}: {}", reason.code, reason.message))),
                bytes: r.bytes,
            })
        }
        (_, reason) => {
            let text = reason
                .as_ref()
                .map(|r| {
                    format!(
                        "{} (expected seq {:?}): {}",
                        r.code, r.expected_seq, r.message
                    )
                })
                .unwrap_or_else(|| "rejected without a reason".into());
            Err(Failure {
                message: format!("seq {seq}: {text}"),
                halt: true,
                healing: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_an_hour() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(13), MAX_DELAY_MS);
        assert_eq!(backoff_ms(1000), MAX_DELAY_MS);
        for _ in 0..200 {
            let d = jitter(10_000);
            assert!((8_000..=14_000).contains(&d), "{d}");
        }
        assert_eq!(jitter(MAX_DELAY_MS).max(MAX_DELAY_MS), MAX_DELAY_MS);
    }

    #[test]
    fn the_wait_grows_with_the_outage_not_with_the_attempts() {
        // Ten minutes down, many attempts: the next try within a minute.
        let ten_minutes = 600_000;
        assert_eq!(
            jitter(backoff_ms(12)).min(outage_cap_ms(ten_minutes)),
            60_000
        );
        // A day down: at most a tenth of it, and never over the hour.
        let day = 86_400_000;
        assert!(jitter(backoff_ms(30)).min(outage_cap_ms(day)) <= MAX_DELAY_MS);
        // Early in an outage the doubling from 1 s is what counts.
        assert!(jitter(backoff_ms(1)).min(outage_cap_ms(0)) <= 1_400);
    }

    #[test]
    fn a_batch_answer_must_have_one_result_per_envelope() {
        let receipt = r#"{"receipt":{"status":"accepted","reason":null}}"#;
        let two = format!(r#"{{"results":[{receipt},{receipt}]}}"#);
        let err = batch_answer(two.as_bytes(), 3).expect_err("short answer");
        assert!(err.contains("2 results for 3"), "{err}");
        let (results, clean) = batch_answer(two.as_bytes(), 2).expect("whole answer");
        assert_eq!((results.len(), clean), (2, true));
        // An error or a stream rejection in the answer: settle before sending on.
        let refused =
            r#"{"results":[{"receipt":{"status":"rejected","reason":{"code":"seq_gap"}}}]}"#;
        assert!(!batch_answer(refused.as_bytes(), 1).expect("answer").1);
        let error = r#"{"results":[{"error":{"code":"not_processed","message":""}}]}"#;
        assert!(!batch_answer(error.as_bytes(), 1).expect("answer").1);
    }

    /// New work queued during a backoff does not end it; a sign of life from
    /// the peer after the failure, or an admin's resume, does.
    #[tokio::test]
    async fn only_a_sign_of_life_or_a_resume_ends_a_backoff() {
        use std::sync::atomic::Ordering;
        for end_by_resume in [false, true] {
            let signal = Arc::new(PeerSignal::default());
            let failed_at = now_ms();
            let until = failed_at + 3_600_000;
            let cancel = CancellationToken::new();
            let task = {
                let (signal, cancel) = (signal.clone(), cancel.clone());
                tokio::spawn(async move { back_off(&cancel, &signal, until, failed_at).await })
            };
            // New messages queued for the peer: the worker is woken ...
            for _ in 0..5 {
                signal.notify.notify_one();
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
            }
            // ... and keeps waiting. So does an old sign of life.
            signal.heard_at.store(failed_at - 1, Ordering::SeqCst);
            signal.notify.notify_one();
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(!task.is_finished(), "the backoff ended without a reason");
            if end_by_resume {
                signal.resume.store(true, Ordering::SeqCst);
                signal.notify.notify_one();
            } else {
                signal.heard_at.store(failed_at + 1, Ordering::SeqCst);
                signal.notify.notify_one();
            }
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the backoff ends")
                .expect("join");
        }
    }
}
