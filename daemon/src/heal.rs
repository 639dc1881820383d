//! Healing after a restore (SPEC §22). A node whose store was restored from
//! a backup, or recovered empty (`guanxi recover`), is behind its peers: it
//! sends nothing and answers incoming envelopes `503 healing` until it has
//! asked every enabled peer for what the peer holds of both streams,
//! checked every item with the keys it trusts (its own for what it signed,
//! the peer's for what the peer signed), and replayed them through the
//! engine in the order it first made them. This module is both sides: the
//! healing node's task ([`run`]) and the peer's answer (`POST
//! /fed/v1/heal`, [`answer`]).

use crate::engine::{EngineError, HealStep};
use crate::inbox::FedError;
use crate::node::Node;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use guanxi_adapters::store::{OutEntry, Read, StoreError};
use guanxi_protocol::heal::{
    AnswerWriter, HealAnswer, HealItem, HealRequestFields, MAX_ANSWER_READ, ReplayKey,
    SignedHealRequest,
};
use guanxi_protocol::{NodeId, ReasonCode};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Steps replayed in one engine transaction.
const STEPS_PER_JOB: usize = 256;

/// Items per list in this node's heal answers (tests make pages small).
static PAGE_ITEMS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(guanxi_protocol::heal::MAX_ITEMS);

/// Answers heal requests in pages of at most `items` per list (the test
/// build, so that paging is exercised without a huge history).
#[doc(hidden)]
pub fn set_page_items(items: usize) {
    PAGE_ITEMS.store(items, Ordering::Relaxed);
}

/// Whether this node is healing, and how it goes.
#[derive(Default)]
pub struct Healing {
    active: AtomicBool,
    /// Notified when healing ends.
    healed: tokio::sync::Notify,
    /// What the healing is doing or waiting for (admins, `/readyz`).
    status: std::sync::Mutex<Option<String>>,
}

impl Healing {
    /// Whether the node is healing (it sends and accepts nothing).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Sets the state found in the store at start.
    pub fn begin(&self, active: bool) {
        self.active.store(active, Ordering::SeqCst);
        if active {
            self.set_status("starting".into());
        }
    }

    /// Waits until the node is not healing.
    pub async fn wait(&self) {
        loop {
            let notified = self.healed.notified();
            if !self.active() {
                return;
            }
            notified.await;
        }
    }

    /// What the healing is doing, while it heals.
    pub fn status(&self) -> Option<String> {
        if !self.active() {
            return None;
        }
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_status(&self, status: String) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    fn finish(&self) {
        self.active.store(false, Ordering::SeqCst);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.healed.notify_waiters();
    }
}

/// The `503 healing` answer to envelopes while healing.
pub fn refusal() -> Response {
    let body = serde_json::json!({
        "code": "healing",
        "message": "this node is healing after a restore (SPEC §22); retry later",
    });
    let mut r = (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(body),
    )
        .into_response();
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("5"),
    );
    r
}

/// `POST /fed/v1/heal`: what this node holds of both streams with the
/// asking peer, after the seqs it names.
pub async fn answer(State(node): State<Arc<Node>>, body: axum::body::Bytes) -> Response {
    let request = match SignedHealRequest::decode(&body) {
        Ok(r) => r,
        Err(e) => return FedError::from(e).into_response(),
    };
    let f = request.fields.clone();
    let key = match crate::inbox::sender_key(&node, &f.from, &f.to, &request.sig.kid, f.at) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = request.verify(&key) {
        return FedError::from(e).into_response();
    }
    if !request.timely(crate::clock::now_ms()) {
        return FedError::new(
            ReasonCode::BadSignature,
            "the heal request is more than 5 minutes from this node's clock",
        )
        .into_response();
    }
    let peer = f.from.to_string();
    match node
        .reading(move |r| held(r, &peer, f.sent_after, f.received_after))
        .await
    {
        Ok(bytes) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("heal answer: {e}");
            let body = serde_json::json!({"code": "internal", "message": "the store could not be read; retry later"});
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(body),
            )
                .into_response()
        }
    }
}

/// The answer's bytes: `peer`'s envelopes this node consumed after
/// `sent_after` with its receipts, and this node's envelopes to `peer`
/// after `received_after` that `peer` gave receipts for.
fn held(r: &Read, peer: &str, sent_after: u64, received_after: u64) -> Result<Vec<u8>, StoreError> {
    let sent_head = r.in_stream(peer)?.seq;
    let received_head = r.delivery(peer)?.delivered_seq;
    let mut out = AnswerWriter::with_max_items(PAGE_ITEMS.load(Ordering::Relaxed));
    let mut seq = sent_after.saturating_add(1);
    while seq <= sent_head && out.room(true) {
        let Some((envelope, receipt)) = r.in_entry(peer, seq)? else {
            break;
        };
        out.push(true, &envelope, &receipt);
        seq += 1;
    }
    let mut seq = received_after.saturating_add(1);
    while seq <= received_head && out.room(false) {
        let Some(OutEntry {
            envelope,
            receipt: Some(receipt),
            ..
        }) = r.out_entry(peer, seq)?
        else {
            break;
        };
        out.push(false, &envelope, &receipt);
        seq += 1;
    }
    Ok(out.finish(sent_head, received_head))
}

/// Why a round of healing ended early.
enum Stop {
    /// A peer could not be asked or answered with an error: ask again later.
    Retry(String),
    /// Something given back does not verify or does not replay: an
    /// administrator must look (nothing of it was applied).
    Halt(String),
}

/// Heals the node: asks every enabled peer until every stream is where the
/// peers have it, retrying unreachable peers with backoff. Ends when healed,
/// stopped, or halted by an item that cannot be replayed.
pub async fn run(node: Arc<Node>, cancel: CancellationToken) {
    let mut delay = Duration::from_secs(1);
    while node.healing.active() {
        let round = heal(&node);
        let outcome = tokio::select! {
            outcome = round => outcome,
            _ = cancel.cancelled() => return,
        };
        match outcome {
            Ok(()) => {
                tracing::info!("healed: every stream stands where its peer has it");
                node.healing.finish();
                for peer in node.peers().keys() {
                    node.waker(peer).notify.notify_one();
                }
                return;
            }
            Err(Stop::Retry(why)) => {
                tracing::warn!(
                    "healing waits: {why}; asking again in {} s",
                    delay.as_secs()
                );
                node.healing.set_status(format!("waiting: {why}"));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
            Err(Stop::Halt(why)) => {
                tracing::error!(
                    "healing stopped: {why}. Nothing was sent; restore another backup or \
                     recover (docs/OPERATIONS.md)"
                );
                node.healing.set_status(format!("stopped: {why}"));
                return;
            }
        }
    }
}

/// Where healing stands with one peer, and the items fetched but not yet
/// replayed.
struct Cursor {
    peer: NodeId,
    sent_after: u64,
    received_after: u64,
    sent_head: u64,
    received_head: u64,
    sent: VecDeque<HealItem>,
    received: VecDeque<HealItem>,
}

impl Cursor {
    fn sent_open(&self) -> bool {
        self.sent.is_empty() && self.sent_after < self.sent_head
    }

    fn received_open(&self) -> bool {
        self.received.is_empty() && self.received_after < self.received_head
    }
}

/// One round: asks every enabled peer, merges what they give back in this
/// node's original order and replays it, a transaction at a time; the last
/// transaction ends the healing.
async fn heal(node: &Arc<Node>) -> Result<(), Stop> {
    let me = node.identity.id.clone();
    let peers: Vec<NodeId> = node
        .peers()
        .iter()
        .filter(|(_, p)| p.config.enabled)
        .map(|(id, _)| id.clone())
        .collect();
    let mut cursors = Vec::with_capacity(peers.len());
    for peer in peers {
        let id = peer.to_string();
        let (sent_after, received_after) = node
            .reading(move |r| Ok((r.delivery(&id)?.delivered_seq, r.in_stream(&id)?.seq)))
            .await
            .map_err(|e| Stop::Retry(format!("reading the store: {e}")))?;
        let mut cursor = Cursor {
            peer,
            sent_after,
            received_after,
            sent_head: 0,
            received_head: 0,
            sent: VecDeque::new(),
            received: VecDeque::new(),
        };
        fetch(node, &mut cursor).await?;
        cursors.push(cursor);
    }
    let mut steps = Vec::new();
    let mut replayed = 0u64;
    loop {
        for c in cursors.iter_mut() {
            if c.sent_open() || c.received_open() {
                fetch(node, c).await?;
            }
        }
        // The next item in this node's order: the smallest key among the
        // lists' heads (each list is in seq order).
        let mut next: Option<(ReplayKey, usize, bool)> = None;
        for (i, c) in cursors.iter().enumerate() {
            let heads = [
                c.sent
                    .front()
                    .map(|h| (ReplayKey::sent(&h.envelope), false)),
                c.received.front().map(|h| (ReplayKey::received(h), true)),
            ];
            for (key, received) in heads.into_iter().flatten() {
                if next.as_ref().is_none_or(|(k, _, _)| &key < k) {
                    next = Some((key, i, received));
                }
            }
        }
        let Some((_, i, received)) = next else {
            break;
        };
        let c = &mut cursors[i];
        let item = if received {
            c.received.pop_front()
        } else {
            c.sent.pop_front()
        };
        let Some(item) = item else {
            break;
        };
        // Each list continues its stream without a gap.
        let seq = item.envelope.fields().seq;
        let (after, whose) = if received {
            (&mut c.received_after, "its envelope")
        } else {
            (&mut c.sent_after, "this node's envelope")
        };
        if seq != *after + 1 {
            return Err(Stop::Halt(format!(
                "{} gave back {whose} seq {seq} where seq {} was due",
                c.peer,
                *after + 1
            )));
        }
        *after = seq;
        let step = if received {
            received_step(node, &c.peer, item)?
        } else {
            sent_step(node, &me, &c.peer, item)?
        };
        steps.push(step);
        if steps.len() >= STEPS_PER_JOB {
            replayed += steps.len() as u64;
            replay(node, std::mem::take(&mut steps), false).await?;
            node.healing
                .set_status(format!("replayed {replayed} envelopes"));
        }
    }
    replay(node, steps, true).await
}

async fn replay(node: &Node, steps: Vec<HealStep>, healed: bool) -> Result<(), Stop> {
    match node.engine.heal(steps, healed).await {
        Ok(()) => Ok(()),
        Err(EngineError::Diverged(why)) => Err(Stop::Halt(why)),
        Err(e) => Err(Stop::Retry(format!("storing what was replayed: {e}"))),
    }
}

/// Where to ask a list to continue: after its last buffered item, or past
/// its head (nothing) while it already holds a page, so a list that waits
/// in the merge does not grow without bound.
fn continue_after(buffered: &VecDeque<HealItem>, consumed: u64, head: u64) -> u64 {
    match buffered.back() {
        Some(_) if buffered.len() >= guanxi_protocol::heal::MAX_ITEMS => head.max(consumed),
        Some(last) => last.envelope.fields().seq,
        None => consumed,
    }
}

/// Asks the cursor's peer for what comes after where it stands, and
/// appends what it gives to each list's buffer.
async fn fetch(node: &Node, c: &mut Cursor) -> Result<(), Stop> {
    let rt = node
        .peer(&c.peer)
        .ok_or_else(|| Stop::Retry(format!("{} is no longer configured", c.peer)))?;
    let request = HealRequestFields {
        v: 1,
        from: node.identity.id.clone(),
        to: c.peer.clone(),
        sent_after: continue_after(&c.sent, c.sent_after, c.sent_head),
        received_after: continue_after(&c.received, c.received_after, c.received_head),
        at: crate::clock::now_ms(),
    }
    .sign(&node.identity.key())
    .map_err(|e| Stop::Halt(format!("signing a heal request: {e}")))?;
    let answer = rt
        .client
        .post("/fed/v1/heal", request.bytes)
        .await
        .map_err(|e| Stop::Retry(format!("asking {}: {e}", c.peer)))?;
    if answer.status != 200 {
        return Err(Stop::Retry(format!(
            "{} answered {}: {}",
            c.peer,
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    if answer.body.len() > MAX_ANSWER_READ {
        return Err(Stop::Halt(format!(
            "{}'s heal answer is {} bytes, over the limit",
            c.peer,
            answer.body.len()
        )));
    }
    let got = HealAnswer::decode(&answer.body)
        .map_err(|e| Stop::Halt(format!("{}'s heal answer: {e}", c.peer)))?;
    let progress = !got.sent.is_empty() || !got.received.is_empty();
    c.sent_head = got.sent_head;
    c.received_head = got.received_head;
    c.sent.extend(got.sent);
    c.received.extend(got.received);
    if !progress && (c.sent_open() || c.received_open()) {
        return Err(Stop::Halt(format!(
            "{} says it holds seqs up to {} / {} but gave back none after {} / {}",
            c.peer, c.sent_head, c.received_head, c.sent_after, c.received_after
        )));
    }
    Ok(())
}

/// An own envelope given back: signed by this node's key, from it to the
/// peer, with the peer's receipt for exactly it.
fn sent_step(node: &Node, me: &NodeId, peer: &NodeId, item: HealItem) -> Result<HealStep, Stop> {
    let f = item.envelope.fields();
    let seq = f.seq;
    let bad = |what: String| {
        Stop::Halt(format!(
            "own envelope seq {seq} given back by {peer}: {what}"
        ))
    };
    if &f.from != me || &f.to != peer {
        return Err(bad(format!("it is from {} to {}", f.from, f.to)));
    }
    let own = node
        .identity
        .own_key(&item.envelope.envelope.sig.kid)
        .ok_or_else(|| bad("it is not signed by a key of this node".into()))?;
    item.envelope
        .verify(&own)
        .map_err(|e| bad(format!("it is not signed by this node's key: {e}")))?;
    let rt = node
        .peer(peer)
        .ok_or_else(|| Stop::Retry(format!("{peer} is no longer configured")))?;
    let receipt =
        crate::delivery::verified_receipt(&rt, me, seq, &item.envelope.bytes, item.receipt.bytes)
            .map_err(bad)?;
    Ok(HealStep::Sent {
        envelope: Box::new(item.envelope),
        receipt,
    })
}

/// A peer's envelope given back: it passes SPEC §7 steps 1–5 as if just
/// received, and the receipt is this node's own, for exactly it.
fn received_step(node: &Node, peer: &NodeId, item: HealItem) -> Result<HealStep, Stop> {
    let seq = item.envelope.fields().seq;
    let bad = |what: String| Stop::Halt(format!("{peer}'s envelope seq {seq}: {what}"));
    if &item.envelope.fields().from != peer {
        return Err(bad("it is from another node".into()));
    }
    let own = node
        .identity
        .own_key(&item.receipt.receipt.sig.kid)
        .ok_or_else(|| bad("the receipt is not signed by a key of this node".into()))?;
    item.receipt
        .verify(&own)
        .map_err(|e| bad(format!("the receipt is not signed by this node's key: {e}")))?;
    item.receipt
        .matches(&item.envelope)
        .map_err(|e| bad(format!("the receipt is for another envelope: {e}")))?;
    let mut inbound = crate::inbox::verified(node, item.envelope)
        .map_err(|e| bad(format!("{}: {}", e.code, e.message)))?;
    inbound.decided = Some(item.receipt);
    Ok(HealStep::Received(Box::new(inbound)))
}
