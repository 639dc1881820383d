//! Handing a web partner's records to its own node (SPEC §25).
//!
//! A partner that worked in this node's web view and now runs its own node
//! (a configured peer) keeps its history: every record kept under
//! `web:<partner>` is sent into the new stream as `record.handover`, with
//! the partner's directory id replaced by the node's id, and is no longer
//! kept under the web key (its index entries and kept counts move with
//! it); the files they reference follow as `attachment.put`. Records go a
//! batch per engine job, each batch one transaction:
//! a failure leaves the records of that batch where they were, and running
//! the hand-over again goes on from there. The partner's web users are
//! disabled first (none of them opens a record while they move), and the
//! sign-in page tells them where their organization's records went. What happened is kept in the
//! settings table under `handover␟<partner>`.

use crate::engine::{Act, EngineError};
use crate::node::Node;
use crate::records::web_key;
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::messages::{Attachment, AttachmentPut, Message, RecordHandover};
use guanxi_protocol::state::{Record, handover};
use guanxi_protocol::{Millis, NodeId, RecordId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Records handed over per transaction.
const BATCH: usize = 100;

/// Why a hand-over cannot run.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("no partner {0} in the directory")]
    NoPartner(String),
    #[error("partner {0} is linked to no node: give the peer it now runs (--peer ID)")]
    NoPeer(String),
    #[error("partner {partner} is already linked to node {linked}, not {asked}")]
    OtherPeer {
        partner: String,
        linked: String,
        asked: String,
    },
    #[error("{0} is not an enabled peer in this node's configuration")]
    NotPeer(String),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a hand-over did: one run's figures (answered), or every run's
/// (kept under `handover␟<partner>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The node the partner now runs.
    pub peer: String,
    /// When the last run finished.
    pub at: Millis,
    /// Records handed over, over every run.
    pub handed: u64,
    /// Records left under the web key, with why (a subject that already
    /// names a record with the peer).
    pub kept: Vec<(String, String)>,
    /// Web users disabled.
    pub users_retired: u64,
}

fn doc_key(partner: &str) -> String {
    format!("handover\u{1f}{partner}")
}

/// The hand-over of `partner`, if one ran.
pub fn load(read: &Read, partner: &str) -> Result<Option<Handover>, StoreError> {
    Ok(read
        .doc(Doc::Setting, &doc_key(partner))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Hands every record kept with web partner `partner` to the node it now
/// runs: `peer`, or the one its directory entry names (which `peer` sets
/// when it names none). Runs again safely: what was handed over is gone
/// from the web key.
pub async fn run(
    node: &Arc<Node>,
    partner: &str,
    peer: Option<NodeId>,
) -> Result<Handover, HandoverError> {
    let read = node.store.read()?;
    let Some(mut entry) = crate::directory::load(&read, partner)? else {
        return Err(HandoverError::NoPartner(partner.to_string()));
    };
    let peer = match (&entry.peer, peer) {
        (Some(linked), Some(asked)) if linked != asked.as_str() => {
            return Err(HandoverError::OtherPeer {
                partner: partner.to_string(),
                linked: linked.clone(),
                asked: asked.to_string(),
            });
        }
        (_, Some(asked)) => asked,
        (Some(linked), None) => linked
            .parse()
            .map_err(|_| HandoverError::NotPeer(linked.clone()))?,
        (None, None) => return Err(HandoverError::NoPeer(partner.to_string())),
    };
    if !node.config().peer(&peer).is_some_and(|p| p.enabled) {
        return Err(HandoverError::NotPeer(peer.to_string()));
    }
    let was: NodeId = partner
        .parse()
        .map_err(|_| HandoverError::NoPartner(partner.to_string()))?;
    if entry.peer.is_none() {
        entry.peer = Some(peer.to_string());
        crate::directory::save(
            &node.engine,
            entry,
            false,
            crate::clock::now_ms(),
            "handover",
        )
        .await?;
    }
    // The web users go first, so none of them opens a record under the web
    // key while its records move.
    let users = crate::accounts::users_of(&node.store.read()?, partner)?;
    let mut retired = 0;
    for user in users.into_iter().filter(|u| !u.disabled) {
        crate::accounts::update_user(&node.engine, &user.username, |u| u.disabled = true)
            .await
            .map_err(|e| EngineError::Failed(e.to_string()))?;
        retired += 1;
    }
    // From here a retired user signing in is told where the records go.
    let started = Handover {
        peer: peer.to_string(),
        at: crate::clock::now_ms(),
        handed: 0,
        kept: Vec::new(),
        users_retired: retired,
    };
    note(node, partner, started).await?;
    let key = web_key(partner);
    let mut after = String::new();
    let mut handed = 0u64;
    let mut kept = Vec::new();
    let mut files_sent = BTreeSet::new();
    loop {
        let (key, to, was, from) = (key.clone(), peer.clone(), was.clone(), after.clone());
        let batch = node
            .engine
            .act(move |a| hand_over_batch(a, &key, &to, &was, &from))
            .await?;
        handed += batch.handed;
        kept.extend(batch.kept);
        // After the records (the receiver keeps a file whatever its order).
        send_files(node, &peer, batch.files, &mut files_sent).await?;
        match batch.last {
            Some(last) => after = last,
            None => break,
        }
    }
    let this_run = Handover {
        peer: peer.to_string(),
        at: crate::clock::now_ms(),
        handed,
        kept,
        users_retired: retired,
    };
    // The users were counted when they were retired.
    let finished = Handover {
        users_retired: 0,
        ..this_run.clone()
    };
    note(node, partner, finished).await?;
    tracing::info!(
        partner,
        peer = %peer,
        handed,
        kept = this_run.kept.len(),
        users_retired = retired,
        "web partner's records handed to its node"
    );
    Ok(this_run)
}

/// Forgets this node's copy under the web key `key` of the record
/// `subject` handed to `peer` (before the hand-over is saved under the
/// peer's key, and when healing replays a hand-over onto a store restored
/// from before it): its index entries and kept counts go with it, and a
/// lead's document points its offer at the peer.
pub fn forget_web_copy(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    peer: &str,
) -> Result<(), EngineError> {
    let Some(bytes) = t.record(key, subject)? else {
        return Ok(());
    };
    let record: Record = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Corrupt(format!("record ({key}, {subject}): {e}")))?;
    forget(t, key, subject, peer, &record)
}

/// [`forget_web_copy`] of a record already read.
fn forget(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    peer: &str,
    record: &Record,
) -> Result<(), EngineError> {
    crate::record_index::record_removed(t, key, subject, record)?;
    t.delete_record(key, subject)?;
    if let Record::Lead(_) = record {
        crate::leads::offer_moved(t, subject, key, peer)?;
    }
    Ok(())
}

/// Adds figures of a run to what `handover␟<partner>` keeps.
async fn note(node: &Node, partner: &str, run: Handover) -> Result<(), EngineError> {
    let key = doc_key(partner);
    node.engine
        .local(move |t| {
            let mut h: Handover = t
                .doc(Doc::Setting, &key)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            h.peer = run.peer.clone();
            h.at = run.at;
            h.handed += run.handed;
            h.kept = run.kept.clone();
            h.users_retired += run.users_retired;
            let json = serde_json::to_vec(&h).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            t.put_doc(Doc::Setting, &key, &json)?;
            Ok(())
        })
        .await
}

/// One batch's outcome: records handed over, records kept, the files the
/// handed records reference, and the last subject looked at (`None`:
/// nothing was left).
struct Batch {
    handed: u64,
    kept: Vec<(String, String)>,
    files: Vec<Attachment>,
    last: Option<String>,
}

/// The files a record references: a service request's, a claim's, an MDF
/// claim's proofs.
fn files_of(record: &Record) -> Vec<Attachment> {
    match record {
        Record::Service(r) => r
            .events
            .iter()
            .flat_map(|e| e.attachments.iter().cloned())
            .collect(),
        Record::Warranty(w) => w.claim.attachments.clone(),
        Record::Mdf(b) => b
            .claims
            .iter()
            .flat_map(|c| c.claim.proofs.iter().cloned())
            .collect(),
        _ => Vec::new(),
    }
}

/// Sends the bytes of `files` to `peer` (`attachment.put`), each once: the
/// partner's node had them only in this node's web view.
async fn send_files(
    node: &Node,
    peer: &NodeId,
    files: Vec<Attachment>,
    sent: &mut BTreeSet<String>,
) -> Result<(), HandoverError> {
    for a in files {
        if !sent.insert(a.sha256.clone()) {
            continue;
        }
        let Some(bytes) = crate::attachments::load(&node.config().data_dir, &a.sha256) else {
            tracing::warn!(sha256 = %a.sha256, "a handed-over record names a file this node lacks");
            continue;
        };
        let put = Message::AttachmentPut(AttachmentPut::of(&a.content_type, &bytes));
        if let Err(refused) = node
            .send_to_peer(peer.as_str(), &format!("att-{}", a.sha256), put)
            .await?
        {
            tracing::warn!(sha256 = %a.sha256, "a handed-over record's file was not sent: {refused}");
        }
    }
    Ok(())
}

/// Hands over up to [`BATCH`] records kept under `key` after subject
/// `after`, in one transaction.
fn hand_over_batch(
    a: &mut Act<'_, '_>,
    key: &str,
    peer: &NodeId,
    was: &NodeId,
    after: &str,
) -> Result<Batch, EngineError> {
    let start = (key.to_string(), after.to_string());
    let rows = a.tables.records_page(Some(&start), BATCH)?;
    let mut out = Batch {
        handed: 0,
        kept: Vec::new(),
        files: Vec::new(),
        last: None,
    };
    for (row_key, subject, bytes) in rows {
        if row_key != key {
            break;
        }
        out.last = Some(subject.clone());
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::Corrupt(format!("record ({key}, {subject}): {e}")))?;
        if record.authority() != a.me() {
            out.kept
                .push((subject, "this node is not its authority".into()));
            continue;
        }
        if a.record(peer.as_str(), &subject)?.is_some() {
            out.kept.push((
                subject,
                format!("the subject already names a record with {peer}"),
            ));
            continue;
        }
        let id: RecordId = subject
            .parse()
            .map_err(|_| EngineError::Corrupt(format!("record ({key}, {subject}): bad subject")))?;
        forget(a.tables, key, &subject, peer.as_str(), &record)?;
        let message = Message::RecordHandover(RecordHandover {
            record: handover::handed_over(&record, was, peer),
            was: was.clone(),
        });
        if let Err(refused) = a.send(peer, &id, &message)? {
            // Checked above; a refusal here undoes the whole batch.
            return Err(EngineError::Failed(format!(
                "record.handover of {subject} to {peer} was refused: {refused}"
            )));
        }
        out.files.extend(files_of(&record));
        out.handed += 1;
    }
    Ok(out)
}
