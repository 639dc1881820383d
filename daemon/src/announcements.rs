//! Announcements: news this node posts to its partners, targeted like
//! library resources, perhaps asking to be acknowledged; and those its
//! vendors post to it. Who read and acknowledged, and how long it took,
//! is the seed's "speed and accuracy of information delivery" figure.
//!
//! An own announcement is a local document (`an␟<id>` in the `library`
//! table) with a [`Target`]. Posting it sends `announcement.post` (subject
//! `announcement.<this node>.<id>`) to every enabled peer the target
//! covers, in the same transaction. A partner without a daemon finds it
//! through the target index (`ant␟<dimension>␟<time>␟<id>`); opening it
//! applies the post and a read `announcement.ack` to the record kept under
//! `web:<partner>` — the same state machine as a peer's copy — and the
//! acknowledge button applies the acknowledging one.
//!
//! Other keys: `ano␟<time>␟<id>` own announcements newest first, `anof␟<id>`
//! the index entries one holds, `anr␟<time>␟<peer>␟<subject>` those received
//! from peers, `ans␟<id>␟<key>` who read or acknowledged an own one (peer id
//! or `web:<partner>`), `anstat␟<key>` a partner's delivery figures. The
//! figures count from the announcement's first posting to the read and to
//! the acknowledgement, so a web partner's copy (created when first opened)
//! and a peer's (created when delivered) are measured alike.

use crate::accounts::User;
use crate::directory::Partner;
use crate::engine::{Applied, EngineError, decode_message};
use crate::library::{self, Reader, SEP, Target, time16};
use crate::node::Node;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::messages::{AnnouncementAck, AnnouncementPost, Message};
use guanxi_protocol::state::announcement::AnnouncementRecord;
use guanxi_protocol::state::{Record, StateError};
use guanxi_protocol::{Millis, NodeId, ReasonCode};
use serde::{Deserialize, Serialize};

/// A refused action, with the reason code every channel reports.
pub type Refusal = StateError;

fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    StateError {
        code,
        message: message.into(),
    }
}

/// One of this node's own announcements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnAnnouncement {
    pub id: String,
    pub post: AnnouncementPost,
    pub target: Target,
    pub created_at: Millis,
    pub by: String,
    /// Peers it was posted to.
    pub sent_to: Vec<String>,
}

/// Who read or acknowledged an own announcement, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    pub read_at: Option<Millis>,
    pub acknowledged_at: Option<Millis>,
    pub by: String,
}

/// A partner's delivery figures over every announcement it read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub read: u64,
    /// Sum of the times from posting to reading (ms).
    pub read_ms: i64,
    pub acknowledged: u64,
    pub acknowledged_ms: i64,
}

impl Figures {
    /// Mean time from posting to reading (ms).
    pub fn mean_read(&self) -> Option<i64> {
        (self.read > 0).then(|| self.read_ms / self.read as i64)
    }

    /// Mean time from posting to acknowledging (ms).
    pub fn mean_acknowledged(&self) -> Option<i64> {
        (self.acknowledged > 0).then(|| self.acknowledged_ms / self.acknowledged as i64)
    }
}

fn own_key(id: &str) -> String {
    format!("an{SEP}{id}")
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|e| EngineError::Corrupt(e.to_string()))
}

/// The record subject of own announcement `id`.
pub fn subject_of(me: &NodeId, id: &str) -> String {
    format!("announcement.{me}.{id}")
}

/// The own id in a subject this node made (`announcement.<me>.<id>`).
fn id_in<'a>(me: &NodeId, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix("announcement.")?
        .strip_prefix(me.as_str())?
        .strip_prefix('.')
}

/// This node's announcement `id`.
pub fn own(read: &Read, id: &str) -> Result<Option<OwnAnnouncement>, StoreError> {
    Ok(read
        .doc(Doc::Library, &own_key(id))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn own_in(t: &Tables<'_>, id: &str) -> Result<Option<OwnAnnouncement>, EngineError> {
    Ok(t.doc(Doc::Library, &own_key(id))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Posts a new announcement to every enabled peer its target covers (and
/// makes it readable to the web partners it covers) — one transaction.
/// Bad text is refused whole, naming the field.
pub async fn post(
    node: &Node,
    user: &User,
    post: AnnouncementPost,
    target: Target,
) -> Result<Result<String, Refusal>, EngineError> {
    let peers = node.enabled_peers();
    let by = user.username.clone();
    node.engine
        .act(move |a| {
            let body =
                serde_json::to_value(&post).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            if let Err(refused) = decode_message("announcement.post", &body) {
                return Ok(Err(refused));
            }
            let id = format!("A{}", &uuid::Uuid::now_v7().simple().to_string()[..16]);
            let subject = subject_of(a.me(), &id)
                .parse()
                .map_err(|e| EngineError::Corrupt(format!("announcement subject: {e}")))?;
            let directory = library::partners_by_peer(a.tables)?;
            let mut sent_to = Vec::new();
            for peer in &peers {
                let Ok(node) = peer.parse::<NodeId>() else {
                    continue;
                };
                let covered =
                    target.names(peer) || directory.get(peer).is_some_and(|p| target.covers(p));
                if !covered {
                    continue;
                }
                match a.send(&node, &subject, &Message::AnnouncementPost(post.clone()))? {
                    Ok(_) => sent_to.push(peer.clone()),
                    Err(e) => tracing::warn!(%peer, error = %e, "announcement refused"),
                }
            }
            let doc = OwnAnnouncement {
                id: id.clone(),
                post: post.clone(),
                target: target.clone(),
                created_at: a.now,
                by: by.clone(),
                sent_to,
            };
            a.tables
                .put_doc(Doc::Library, &own_key(&id), &json(&doc)?)?;
            let time = time16(doc.created_at);
            let mut keys = vec![format!("ano{SEP}{time}{SEP}{id}")];
            for d in doc.target.dimensions() {
                keys.push(format!("ant{SEP}{d}{SEP}{time}{SEP}{id}"));
            }
            library::reindex(a.tables, &format!("anof{SEP}{id}"), &keys)?;
            Ok(Ok(id))
        })
        .await
}

/// An announcement as a list or its page shows it.
#[derive(Debug, Clone)]
pub struct Item {
    /// `own` or the peer it came from.
    pub key: String,
    /// The own id, or the record's subject.
    pub subject: String,
    pub publisher: String,
    pub post: AnnouncementPost,
    pub posted_at: Millis,
    /// The reader's copy, when it has one (a received announcement, or a
    /// web partner's).
    pub record: Option<AnnouncementRecord>,
}

impl Item {
    /// The announcement's page.
    pub fn link(&self) -> String {
        format!("/announcements/{}/{}", self.key, self.subject)
    }

    /// `posted`, `read` or `acknowledged` for the reader (staff looking at
    /// their own: `posted`).
    pub fn status(&self) -> &'static str {
        self.record.as_ref().map_or("posted", |r| r.status())
    }
}

fn web_record(
    read: &Read,
    me: &NodeId,
    org: &str,
    id: &str,
) -> Result<Option<AnnouncementRecord>, StoreError> {
    let subject = subject_of(me, id);
    Ok(read
        .record(&crate::records::web_key(org), &subject)?
        .and_then(|b| match crate::records::parse_record(org, &subject, &b) {
            Some(Record::Announcement(r)) => Some(r),
            _ => None,
        }))
}

/// The announcement received from `peer` as `subject`.
pub fn received(
    read: &Read,
    peer: &str,
    subject: &str,
) -> Result<Option<AnnouncementRecord>, StoreError> {
    Ok(read.record(peer, subject)?.and_then(|b| {
        match crate::records::parse_record(peer, subject, &b) {
            Some(Record::Announcement(r)) => Some(r),
            _ => None,
        }
    }))
}

fn of_own(me: &NodeId, doc: OwnAnnouncement, record: Option<AnnouncementRecord>) -> Item {
    Item {
        key: "own".into(),
        subject: doc.id,
        publisher: me.to_string(),
        post: doc.post,
        posted_at: doc.created_at,
        record,
    }
}

fn of_received(key: &str, subject: &str, r: AnnouncementRecord) -> Item {
    Item {
        key: key.into(),
        subject: subject.into(),
        publisher: r.publisher.to_string(),
        post: r.post.clone(),
        posted_at: r.posted_at,
        record: Some(r),
    }
}

/// The announcement at (`key`, `subject`) if `user` may see it: staff see
/// every own and received one; a partner user the own ones that target
/// its organization (with its copy, if it opened it before).
pub fn item(
    read: &Read,
    me: &NodeId,
    user: &User,
    key: &str,
    subject: &str,
) -> Result<Option<Item>, StoreError> {
    let who = library::reader(read, user)?;
    match (who, key) {
        (Reader::Staff, "own") => Ok(own(read, subject)?.map(|d| of_own(me, d, None))),
        (Reader::Staff, peer) => {
            Ok(received(read, peer, subject)?.map(|r| of_received(peer, subject, r)))
        }
        (Reader::Partner(p), "own") => {
            let Some(doc) = own(read, subject)? else {
                return Ok(None);
            };
            if !doc.target.covers(&p) {
                return Ok(None);
            }
            let record = web_record(read, me, &p.id, subject)?;
            Ok(Some(of_own(me, doc, record)))
        }
        _ => Ok(None),
    }
}

/// Which list a staff member looks at: own or received (as the library's).
pub use crate::library::Shelf;

/// One page of announcements for `user`, newest first, after `cursor`:
/// staff read their own or the received ones, a partner user those that
/// target its organization. Reads index ranges only.
pub fn page(
    read: &Read,
    me: &NodeId,
    user: &User,
    shelf: Shelf,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    match library::reader(read, user)? {
        Reader::Nobody => Ok((Vec::new(), None)),
        Reader::Staff if shelf == Shelf::Received => received_page(read, cursor, limit),
        Reader::Staff => {
            let (entries, next) = library::newest_in(read, &[format!("ano{SEP}")], cursor, limit)?;
            let mut items = Vec::new();
            for e in entries {
                if let Some((_, id)) = e.split_once(SEP)
                    && let Some(doc) = own(read, id)?
                {
                    items.push(of_own(me, doc, None));
                }
            }
            Ok((items, next))
        }
        Reader::Partner(p) => partner_page(read, me, &p, cursor, limit),
    }
}

fn partner_page(
    read: &Read,
    me: &NodeId,
    p: &Partner,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    let prefixes: Vec<String> = Target::dimensions_of(p)
        .into_iter()
        .map(|d| format!("ant{SEP}{d}{SEP}"))
        .collect();
    let (entries, next) = library::newest_in(read, &prefixes, cursor, limit)?;
    let mut items = Vec::new();
    for e in entries {
        let Some((_, id)) = e.split_once(SEP) else {
            continue;
        };
        let Some(doc) = own(read, id)? else {
            continue;
        };
        if !doc.target.covers(p) {
            continue;
        }
        let record = web_record(read, me, &p.id, id)?;
        items.push(of_own(me, doc, record));
    }
    Ok((items, next))
}

fn received_page(
    read: &Read,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    let prefix = format!("anr{SEP}");
    let from = cursor.map(|c| format!("{prefix}{}", c.replace('/', &SEP.to_string())));
    let rows = read.docs_page(
        Doc::Library,
        &prefix,
        from.as_deref(),
        Order::Backward,
        limit + 1,
    )?;
    let more = rows.len() > limit;
    let mut items = Vec::new();
    let mut last = None;
    for (k, _) in rows.into_iter().take(limit) {
        let rest = k.strip_prefix(&prefix).unwrap_or_default().to_string();
        let mut parts = rest.splitn(3, SEP);
        let (Some(_), Some(peer), Some(subject)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(r) = received(read, peer, subject)? {
            items.push(of_received(peer, subject, r));
        }
        last = Some(rest.replace(SEP, "/"));
    }
    Ok((items, if more { last } else { None }))
}

/// Who read or acknowledged own announcement `id` (peer id or
/// `web:<partner>`, and when), at most `limit`.
pub fn reached(read: &Read, id: &str, limit: usize) -> Result<Vec<(String, Reached)>, StoreError> {
    let prefix = format!("ans{SEP}{id}{SEP}");
    Ok(read
        .docs_page(Doc::Library, &prefix, None, Order::Forward, limit)?
        .into_iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(&prefix)?.to_string();
            Some((key, serde_json::from_slice(&v).ok()?))
        })
        .collect())
}

/// A partner's delivery figures (`key`: its peer id or `web:<partner>`).
pub fn figures(read: &Read, key: &str) -> Result<Figures, StoreError> {
    Ok(read
        .doc(Doc::Library, &format!("anstat{SEP}{key}"))?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Opens an announcement for `user`: a received one is marked read (an
/// `announcement.ack` to its publisher), a web partner's copy is made and
/// marked read; `acknowledge` acknowledges it instead. Staff opening their
/// own change nothing. Answers the item as it stands after.
pub async fn open(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    acknowledge: bool,
) -> Result<Result<Item, Refusal>, EngineError> {
    let me = node.identity.id.clone();
    let (key, subject, user) = (key.to_string(), subject.to_string(), user.clone());
    let current = {
        let (me, user, k, s) = (me.clone(), user.clone(), key.clone(), subject.clone());
        node.reading(move |r| item(r, &me, &user, &k, &s)).await?
    };
    let Some(current) = current else {
        return Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            "there is no such announcement",
        )));
    };
    let record = current.record.as_ref();
    let read_before = record.is_some_and(|r| r.read.is_some());
    let acked_before = record.is_some_and(|r| r.acknowledged.is_some());
    let up_to_date = record.is_some_and(|r| r.post.version >= current.post.version);
    let wanted = if acknowledge {
        if !current.post.requires_ack {
            return Ok(Err(refuse(
                ReasonCode::IllegalTransition,
                "the announcement does not ask to be acknowledged",
            )));
        }
        (!acked_before).then_some(true)
    } else {
        (!read_before).then_some(false)
    };
    let by = if user.display_name.trim().is_empty() {
        user.username.clone()
    } else {
        user.display_name.clone()
    };
    match (&user.partner, key.as_str()) {
        (None, "own") => Ok(Ok(current)),
        (None, peer) => {
            let Some(acknowledged) = wanted else {
                return Ok(Ok(current));
            };
            let ack = Message::AnnouncementAck(AnnouncementAck { acknowledged, by });
            if let Err(r) = node.send_to_peer(peer, &subject, ack).await? {
                return Ok(Err(r));
            }
            let answer = node
                .reading(move |r| item(r, &me, &user, &key, &subject))
                .await?;
            Ok(answer.ok_or_else(|| refuse(ReasonCode::UnknownRecord, "gone")))
        }
        (Some(org), "own") => {
            if wanted.is_none() && up_to_date {
                return Ok(Ok(current));
            }
            let Ok(partner) = org.parse::<NodeId>() else {
                return Ok(Err(refuse(ReasonCode::NotAllowed, "organization id")));
            };
            let web = crate::records::web_key(org);
            let full = subject_of(&me, &subject);
            let post = Message::AnnouncementPost(current.post.clone());
            let vendor = me.clone();
            let done = node
                .engine
                .act(move |a| {
                    if !up_to_date
                        && let Err(r) = a.apply_local(&web, &full, &vendor, &partner, &post)?
                    {
                        return Ok(Err(r));
                    }
                    if let Some(acknowledged) = wanted {
                        let ack = Message::AnnouncementAck(AnnouncementAck {
                            acknowledged,
                            by: by.clone(),
                        });
                        if let Err(r) = a.apply_local(&web, &full, &partner, &vendor, &ack)? {
                            return Ok(Err(r));
                        }
                    }
                    Ok(Ok(()))
                })
                .await?;
            if let Err(r) = done {
                return Ok(Err(r));
            }
            let answer = node
                .reading(move |r| item(r, &me, &user, &key, &subject))
                .await?;
            Ok(answer.ok_or_else(|| refuse(ReasonCode::UnknownRecord, "gone")))
        }
        _ => Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            "there is no such announcement",
        ))),
    }
}

/// The engine's hook for applied announcement messages: indexes those
/// received from peers, and records who read and acknowledged this node's
/// own (from peers and web partners) with the partner's figures.
pub fn on_applied(t: &mut Tables<'_>, a: &Applied<'_>) -> Result<(), EngineError> {
    let Record::Announcement(record) = a.record else {
        return Ok(());
    };
    match a.message {
        Message::AnnouncementPost(_) if !a.key.starts_with("web:") => {
            t.put_doc(
                Doc::Library,
                &format!(
                    "anr{SEP}{}{SEP}{}{SEP}{}",
                    time16(record.posted_at),
                    a.key,
                    a.subject
                ),
                b"",
            )?;
        }
        Message::AnnouncementAck(ack) => {
            let Some(id) = id_in(&record.publisher, a.subject) else {
                return Ok(());
            };
            let Some(doc) = own_in(t, id)? else {
                return Ok(());
            };
            let reached_key = format!("ans{SEP}{id}{SEP}{}", a.key);
            let mut reached: Reached = t
                .doc(Doc::Library, &reached_key)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let stat_key = format!("anstat{SEP}{}", a.key);
            let mut figures: Figures = t
                .doc(Doc::Library, &stat_key)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            // The record's times are the acks' `created`, as the partner
            // stamped them.
            if let (None, Some(seen)) = (reached.read_at, &record.read) {
                reached.read_at = Some(seen.at);
                figures.read += 1;
                figures.read_ms += (seen.at - doc.created_at).max(0);
            }
            if let (None, Some(seen)) = (reached.acknowledged_at, &record.acknowledged) {
                reached.acknowledged_at = Some(seen.at);
                figures.acknowledged += 1;
                figures.acknowledged_ms += (seen.at - doc.created_at).max(0);
            }
            reached.by = ack.by.clone();
            t.put_doc(Doc::Library, &reached_key, &json(&reached)?)?;
            t.put_doc(Doc::Library, &stat_key, &json(&figures)?)?;
        }
        _ => {}
    }
    Ok(())
}
