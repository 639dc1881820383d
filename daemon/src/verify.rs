//! `guanxi verify`: whether a node's store still holds what it signed and
//! received, byte for byte. The database's own page checksums are checked
//! every time it is opened (`Store::open`); this checks the content:
//!
//! - **quick** (every start): each stream's head — its last envelope is
//!   there, decodes, carries the stream's seq and hash;
//! - **full** (on demand, and daily while the node runs): every stored
//!   envelope decodes strictly, names the right parties and seq, is
//!   signed by its sender's key, and links to the one before it (hash
//!   chain); every receipt decodes, is signed by its signer and is about
//!   exactly that envelope; every incoming envelope's id is indexed where
//!   it is; every shared record and its authority bookkeeping parse.
//!
//! A signature that cannot be checked because the key is no longer
//! configured is reported as a note, not as damage. Local documents that no
//! signature covers (a lead's country, a note in the directory) cannot be
//! told from an edit; backups are the protection there.

use crate::engine::Identity;
use guanxi_adapters::store::{Read, StoreError};
use guanxi_config::PeerConfig;
use guanxi_protocol::envelope::SignedEnvelope;
use guanxi_protocol::receipt::SignedReceipt;
use guanxi_protocol::state::Record;
use guanxi_protocol::{NodeId, PublicKey, Sha256Hash};
use serde::Serialize;

/// How much to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Quick,
    Full,
}

/// What a check found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub envelopes: u64,
    pub receipts: u64,
    pub records: u64,
    /// Damage: where, and what is wrong.
    pub damage: Vec<String>,
    /// What could not be checked (a key no longer configured).
    pub notes: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }

    /// One line for people: what was checked and what is wrong.
    pub fn summary(&self) -> String {
        if self.is_clean() {
            format!(
                "no damage: {} envelope(s), {} receipt(s), {} record(s) checked",
                self.envelopes, self.receipts, self.records
            )
        } else {
            let shown: Vec<&str> = self.damage.iter().take(5).map(String::as_str).collect();
            let more = self.damage.len().saturating_sub(shown.len());
            let mut text = format!("{} problem(s): {}", self.damage.len(), shown.join("; "));
            if more > 0 {
                text.push_str(&format!("; and {more} more (`guanxi verify` lists them)"));
            }
            text
        }
    }
}

/// Where to find a sender's key by id: this node's own key, and each
/// configured peer's keys.
struct Keys<'a> {
    me: &'a Identity,
    peers: &'a [PeerConfig],
}

impl Keys<'_> {
    fn of(&self, node: &NodeId, kid: &guanxi_protocol::KeyId) -> Option<PublicKey> {
        if node == &self.me.id {
            return self.me.own_key(kid);
        }
        self.peers
            .iter()
            .find(|p| &p.id == node)?
            .keys
            .iter()
            .find(|k| &k.kid == kid)
            .map(|k| k.public_key)
    }
}

/// Checks the store seen through `read` (a snapshot).
pub fn check(read: &Read, me: &Identity, peers: &[PeerConfig], depth: Depth) -> Report {
    let mut report = Report::default();
    let keys = Keys { me, peers };
    let stream_peers = match read.stream_peers() {
        Ok(p) => p,
        Err(e) => {
            report
                .damage
                .push(format!("the streams cannot be read: {e}"));
            return report;
        }
    };
    for peer in stream_peers {
        let Ok(peer_id) = peer.parse::<NodeId>() else {
            report.damage.push(format!(
                "a stream is kept for {peer:?}, which is no node id"
            ));
            continue;
        };
        stream(read, &keys, &peer_id, Direction::In, depth, &mut report);
        stream(read, &keys, &peer_id, Direction::Out, depth, &mut report);
    }
    if depth == Depth::Full {
        records(read, &mut report);
    }
    report
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

fn stream(
    read: &Read,
    keys: &Keys<'_>,
    peer: &NodeId,
    direction: Direction,
    depth: Depth,
    report: &mut Report,
) {
    let (name, head) = match direction {
        Direction::In => ("from", read.in_stream(peer.as_str())),
        Direction::Out => ("to", read.out_stream(peer.as_str())),
    };
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            report
                .damage
                .push(format!("the stream {name} {peer} cannot be read: {e}"));
            return;
        }
    };
    if head.seq == 0 {
        return;
    }
    let first = match depth {
        Depth::Quick => head.seq,
        Depth::Full => 1,
    };
    let (sender, receiver) = match direction {
        Direction::In => (peer.clone(), keys.me.id.clone()),
        Direction::Out => (keys.me.id.clone(), peer.clone()),
    };
    let mut prev: Option<Sha256Hash> = None;
    for seq in first..=head.seq {
        let place = format!("envelope #{seq} {name} {peer}");
        let entry = match direction {
            Direction::In => read
                .in_entry(peer.as_str(), seq)
                .map(|e| e.map(|(env, r)| (env, Some(r)))),
            Direction::Out => read
                .out_entry(peer.as_str(), seq)
                .map(|e| e.map(|o| (o.envelope, o.receipt))),
        };
        let (bytes, receipt) = match entry {
            Ok(Some(e)) => e,
            Ok(None) => {
                report.damage.push(format!("{place} is missing"));
                prev = None;
                continue;
            }
            Err(e) => {
                report.damage.push(format!("{place} cannot be read: {e}"));
                prev = None;
                continue;
            }
        };
        report.envelopes += 1;
        let envelope = match SignedEnvelope::decode(&bytes) {
            Ok(e) => e,
            Err(e) => {
                report.damage.push(format!("{place} does not decode: {e}"));
                prev = None;
                continue;
            }
        };
        let f = envelope.fields();
        if f.seq != seq || f.from != sender || f.to != receiver {
            report.damage.push(format!(
                "{place} says it is #{} from {} to {}",
                f.seq, f.from, f.to
            ));
        }
        match keys.of(&f.from, &envelope.envelope.sig.kid) {
            Some(key) => {
                if let Err(e) = envelope.verify(&key) {
                    report
                        .damage
                        .push(format!("{place}: its signature does not verify ({e})"));
                }
            }
            None => report.notes.push(format!(
                "{place}: key {} is no longer configured; its signature was not checked",
                envelope.envelope.sig.kid
            )),
        }
        if depth == Depth::Full {
            let broken = match (seq, prev) {
                (1, _) => f.prev.is_some(),
                (_, Some(p)) => f.prev != Some(p),
                // The one before is damaged itself (reported there).
                (_, None) => false,
            };
            if broken {
                report
                    .damage
                    .push(format!("{place} does not link to the envelope before it"));
            }
        }
        if seq == head.seq && head.hash != Some(envelope.hash.0) {
            report.damage.push(format!(
                "{place} is not the stream's recorded last envelope (hash differs)"
            ));
        }
        if direction == Direction::In && depth == Depth::Full {
            match read.seen_id(&f.id) {
                Ok(Some(seen))
                    if seen.peer == peer.as_str()
                        && seen.seq == seq
                        && seen.hash == envelope.hash.0 => {}
                Ok(_) => report.damage.push(format!(
                    "{place}: its id {} is not indexed where it is",
                    f.id
                )),
                Err(e) => report
                    .damage
                    .push(format!("{place}: the id index cannot be read: {e}")),
            }
        }
        if let Some(receipt) = receipt {
            report.receipts += 1;
            check_receipt(keys, &place, &receipt, &envelope, report);
        }
        prev = Some(envelope.hash);
    }
}

fn check_receipt(
    keys: &Keys<'_>,
    place: &str,
    bytes: &[u8],
    envelope: &SignedEnvelope,
    report: &mut Report,
) {
    let receipt = match SignedReceipt::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            report
                .damage
                .push(format!("the receipt of {place} does not decode: {e}"));
            return;
        }
    };
    if let Err(e) = receipt.matches(envelope) {
        report.damage.push(format!(
            "the receipt of {place} is about another envelope ({e})"
        ));
    }
    let signer = &receipt.receipt.fields.from;
    match keys.of(signer, &receipt.receipt.sig.kid) {
        Some(key) => {
            if let Err(e) = receipt.verify(&key) {
                report.damage.push(format!(
                    "the receipt of {place}: its signature does not verify ({e})"
                ));
            }
        }
        None => report.notes.push(format!(
            "the receipt of {place}: key {} is no longer configured; its signature was not checked",
            receipt.receipt.sig.kid
        )),
    }
}

fn records(read: &Read, report: &mut Report) {
    let all = match read.records() {
        Ok(r) => r,
        Err(e) => {
            report
                .damage
                .push(format!("the records cannot be read: {e}"));
            return;
        }
    };
    for (key, subject, json) in all {
        report.records += 1;
        if let Err(e) = serde_json::from_slice::<Record>(&json) {
            report
                .damage
                .push(format!("record ({key}, {subject}) does not parse: {e}"));
        }
        match read.record_sync(&key, &subject) {
            Ok(Some(sync)) => {
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&sync) {
                    report.damage.push(format!(
                        "the version of record ({key}, {subject}) does not parse: {e}"
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => report.damage.push(format!(
                "the version of record ({key}, {subject}) cannot be read: {e}"
            )),
        }
    }
}

/// Checks on a blocking thread, from a fresh snapshot of `store`.
pub async fn check_store(
    store: std::sync::Arc<guanxi_adapters::store::Store>,
    me: std::sync::Arc<Identity>,
    peers: Vec<PeerConfig>,
    depth: Depth,
) -> Result<Report, StoreError> {
    tokio::task::spawn_blocking(move || {
        let read = store.read()?;
        Ok(check(&read, &me, &peers, depth))
    })
    .await
    .map_err(|e| StoreError::Db(format!("the check stopped: {e}")))?
}

/// How often the full check runs while the node runs.
pub const EVERY_MS: guanxi_protocol::Millis = 24 * 3600 * 1000;

/// Runs the full check at start and then daily (by the node's clock),
/// keeping what it found in `node.damage`: `/readyz` answers 503 and the
/// staff inbox names the damage until a check finds none.
pub async fn run_daily(
    node: std::sync::Arc<crate::node::Node>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut due = guanxi_protocol::Millis::MIN;
    loop {
        let now = crate::clock::now_ms();
        if now >= due {
            due = now + EVERY_MS;
            let report = check_store(
                node.store.clone(),
                node.identity.clone(),
                node.config().peers.clone(),
                Depth::Full,
            )
            .await;
            let found = match report {
                Ok(r) if r.is_clean() => {
                    tracing::info!("store check: {}", r.summary());
                    None
                }
                Ok(r) => {
                    tracing::error!(
                        "store check: the database is damaged: {}. Restore the data directory \
                         from a backup; `guanxi verify` lists every problem",
                        r.summary()
                    );
                    Some(r.summary())
                }
                Err(e) => {
                    if !node.engine.storage_failed() {
                        tracing::error!("store check could not run: {e}");
                    }
                    due = now + 60_000;
                    continue;
                }
            };
            *node.damage.lock().unwrap_or_else(|p| p.into_inner()) = found;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
    }
}
