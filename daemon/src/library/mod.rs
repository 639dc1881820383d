//! The shared library ("shared services"): resources — files, links and
//! articles — that a node publishes to its partners, and that partners
//! publish to it or pass on to their own partners.
//!
//! This node's own resources are local documents (`r␟<id>` in the
//! `library` table) with a target: everyone in the directory, partners of
//! some types, tiers or countries (all of the dimensions given), and named
//! partners or peers. Each publication goes, in the same transaction as the
//! document, as `resource.publish` to every enabled peer the target covers
//! (subject `resource.<this node>.<id>`), and as `resource.withdraw` to a
//! peer it no longer covers; partners without a daemon read the document
//! itself, found through the target index (`t␟<dimension>␟<time>␟<id>`), so
//! a partner sees exactly what targets it. Resources received from peers
//! are shared records (`resource` family); their files are fetched from the
//! publisher (`files`). A received resource can be passed on: it becomes
//! one of this node's own, with its first publisher's signed envelope as
//! `origin`.
//!
//! Other keys of the `library` table: `ro␟<time>␟<id>` own resources by
//! last change, `rof␟<id>` the index entries one holds, `w␟…`/`wof␟…`
//! search words (`search`), `need␟<peer>␟<subject>` received files still
//! to fetch, `src␟<peer>␟<subject>` the seq of the envelope that brought a
//! received resource's current version, `rf␟<sha256>␟<peer>␟<subject>`
//! files this node offers a peer (who may fetch them), `seen␟<user>` when
//! a user last looked at the library.

pub mod files;
pub mod markdown;
pub mod search;

use crate::accounts::User;
use crate::directory::Partner;
use crate::engine::{Act, Applied, EngineError, decode_message};
use crate::node::Node;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::messages::{
    Attachment, Course, Forwarded, Message, ResourcePublish, ResourceWithdraw,
};
use guanxi_protocol::money::Date;
use guanxi_protocol::quiz::AnswerKey;
use guanxi_protocol::state::resource::{ResourceRecord, ResourceVersion, keep_version};
use guanxi_protocol::state::{Record, StateError};
use guanxi_protocol::{Millis, NodeId, ReasonCode, RecordId};
use serde::{Deserialize, Serialize};

pub(crate) const SEP: char = '\u{1f}';

/// A refused library action, with the reason code every channel reports.
pub type Refusal = StateError;

fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    StateError {
        code,
        message: message.into(),
    }
}

/// Who a resource is for. A partner is covered when it is named (by its
/// directory id or its peer id), or when `everyone` is set, or when at
/// least one of types, tiers and countries is given and it matches every
/// one given. Peers that are not in the directory (a vendor of this node)
/// are covered only when named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub everyone: bool,
    pub types: Vec<String>,
    pub tiers: Vec<String>,
    pub countries: Vec<String>,
    pub partners: Vec<String>,
}

impl Target {
    fn filtered(&self) -> bool {
        !self.types.is_empty() || !self.tiers.is_empty() || !self.countries.is_empty()
    }

    /// Whether the target names `id` (a partner or peer id).
    pub fn names(&self, id: &str) -> bool {
        self.partners.iter().any(|p| p == id)
    }

    /// Whether the target covers partner `p`.
    pub fn covers(&self, p: &Partner) -> bool {
        if self.names(&p.id) || p.peer.as_deref().is_some_and(|peer| self.names(peer)) {
            return true;
        }
        if self.everyone {
            return true;
        }
        self.filtered()
            && (self.types.is_empty() || self.types.iter().any(|t| t == p.kind_name()))
            && (self.tiers.is_empty()
                || self
                    .tiers
                    .iter()
                    .any(|t| t.trim().eq_ignore_ascii_case(p.tier.trim())))
            && (self.countries.is_empty()
                || self
                    .countries
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&p.country)))
    }

    /// The index dimensions a resource with this target is listed under
    /// (one per named partner, and one set of the first dimension given;
    /// a reader checks the whole target).
    pub(crate) fn dimensions(&self) -> Vec<String> {
        let mut d: Vec<String> = self.partners.iter().map(|p| format!("p:{p}")).collect();
        if self.everyone {
            d.push("all".into());
        } else if !self.types.is_empty() {
            d.extend(self.types.iter().map(|t| format!("type:{t}")));
        } else if !self.tiers.is_empty() {
            d.extend(
                self.tiers
                    .iter()
                    .map(|t| format!("tier:{}", t.trim().to_lowercase())),
            );
        } else if !self.countries.is_empty() {
            d.extend(
                self.countries
                    .iter()
                    .map(|c| format!("c:{}", c.to_ascii_uppercase())),
            );
        }
        d.sort();
        d.dedup();
        d
    }

    /// The dimensions a partner reads: every one that could cover it.
    pub(crate) fn dimensions_of(p: &Partner) -> Vec<String> {
        vec![
            "all".into(),
            format!("p:{}", p.id),
            format!("type:{}", p.kind_name()),
            format!("tier:{}", p.tier.trim().to_lowercase()),
            format!("c:{}", p.country.to_ascii_uppercase()),
        ]
    }

    /// Reads a target from form words: `everyone`, or lists separated by
    /// commas or spaces. Unknown partner types are refused.
    pub fn parse(
        everyone: bool,
        types: &str,
        tiers: &str,
        countries: &str,
        partners: &str,
    ) -> Result<Target, Refusal> {
        let list = |s: &str| -> Vec<String> {
            s.split([',', ' ', '\n', '、', '，'])
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        let types = list(types);
        for t in &types {
            if !crate::directory::TYPES.iter().any(|(_, name)| name == t) {
                return Err(refuse(
                    ReasonCode::BadBody,
                    format!(
                        "types: {t:?} is not a partner type (reseller, distributor, agent, supplier)"
                    ),
                ));
            }
        }
        let countries = list(countries);
        for c in &countries {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(refuse(
                    ReasonCode::BadBody,
                    format!("countries: {c:?} is not a two-letter country code"),
                ));
            }
        }
        let target = Target {
            everyone,
            types,
            tiers: list(tiers),
            countries: countries.iter().map(|c| c.to_ascii_uppercase()).collect(),
            partners: list(partners),
        };
        if !target.everyone && !target.filtered() && target.partners.is_empty() {
            return Err(refuse(
                ReasonCode::BadBody,
                "target: choose everyone, types, tiers, countries or named partners",
            ));
        }
        if target
            .dimensions()
            .iter()
            .any(|d| d.contains(SEP) || d.len() > 200)
        {
            return Err(refuse(ReasonCode::BadBody, "target: a value is too long"));
        }
        Ok(target)
    }
}

/// One of this node's own resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnResource {
    pub id: String,
    /// The current version, as sent to peers.
    pub resource: ResourcePublish,
    pub target: Target,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Earlier versions, oldest first (the newest [`guanxi_protocol::state::resource::MAX_HISTORY`]).
    pub history: Vec<ResourceVersion>,
    pub withdrawn: Option<Millis>,
    /// The user who published the current version.
    pub by: String,
    /// Peers holding it published (they get `resource.withdraw` when the
    /// target no longer covers them).
    pub sent_to: Vec<String>,
    /// A course's answer key (never sent).
    #[serde(default)]
    pub answers: AnswerKey,
    /// A course's assignments, one per partner (each peer's copy carries
    /// its own).
    #[serde(default)]
    pub assignments: Vec<Assigned>,
}

/// A course assigned to a partner (its directory id), or to one person
/// there, by a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    pub partner: String,
    pub person: String,
    pub due: Date,
}

impl OwnResource {
    /// The assignment of partner `p` (by its directory id or peer id).
    pub fn assignment_of(&self, id: &str, peer: Option<&str>) -> Option<&Assigned> {
        self.assignments
            .iter()
            .find(|a| a.partner == id || peer.is_some_and(|p| a.partner == p))
    }

    /// The resource as `peer` (a directory partner `p`, if known) receives
    /// it: a course carries that partner's own assignment.
    fn for_peer(&self, peer: &str, p: Option<&Partner>) -> ResourcePublish {
        let mut r = self.resource.clone();
        if let Some(c) = r.course.as_mut() {
            let id = p.map_or(peer, |p| p.id.as_str());
            c.assigned =
                self.assignment_of(id, Some(peer))
                    .map(|a| guanxi_protocol::messages::Assignment {
                        person: a.person.clone(),
                        due: a.due.clone(),
                    });
        }
        r
    }
}

/// What a new version says; `content` `None` keeps the current content.
#[derive(Debug, Clone)]
pub struct Draft {
    pub title: String,
    pub summary: String,
    pub folder: String,
    pub tags: Vec<String>,
    pub language: String,
    pub valid_from: Option<Date>,
    pub valid_to: Option<Date>,
    pub content: Option<Content>,
    pub target: Target,
}

/// A resource's content.
#[derive(Debug, Clone)]
pub enum Content {
    File(Attachment),
    Link(String),
    Article(String),
    /// A course and its answer key.
    Course(Box<Course>, AnswerKey),
}

impl Content {
    /// The content of a resource as published (a course without its key,
    /// which only its own document holds).
    fn of(r: &ResourcePublish, answers: &AnswerKey) -> Option<Content> {
        match (&r.file, &r.link, &r.article, &r.course) {
            (Some(f), _, _, _) => Some(Content::File(f.clone())),
            (_, Some(l), _, _) => Some(Content::Link(l.clone())),
            (_, _, Some(t), _) => Some(Content::Article(t.clone())),
            (_, _, _, Some(c)) => Some(Content::Course(c.clone(), answers.clone())),
            _ => None,
        }
    }
}

pub(crate) fn time16(ms: Millis) -> String {
    format!("{:016}", ms.max(0))
}

fn own_key(id: &str) -> String {
    format!("r{SEP}{id}")
}

/// The subject of this node's resource `id` between it and a peer.
pub fn subject_of(me: &NodeId, id: &str) -> Result<RecordId, EngineError> {
    format!("resource.{me}.{id}")
        .parse()
        .map_err(|e| EngineError::Corrupt(format!("resource subject: {e}")))
}

/// The place of a resource in search results and links: `own|<id>` or
/// `<peer>|<subject>`.
pub fn place(key: &str, subject: &str) -> String {
    format!("{key}|{subject}")
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|e| EngineError::Corrupt(e.to_string()))
}

/// This node's resource `id` (staff pages: target, history, peers).
pub fn own(read: &Read, id: &str) -> Result<Option<OwnResource>, StoreError> {
    Ok(read
        .doc(Doc::Library, &own_key(id))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn own_in(t: &Tables<'_>, id: &str) -> Result<Option<OwnResource>, EngineError> {
    Ok(t.doc(Doc::Library, &own_key(id))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn searchable(r: &ResourcePublish) -> String {
    let mut text = format!(
        "{} {} {} {}",
        r.title,
        r.summary,
        r.folder,
        r.tags.join(" ")
    );
    if let Some(a) = &r.article {
        text.push(' ');
        text.push_str(a);
    }
    if let Some(f) = &r.file {
        text.push(' ');
        text.push_str(&f.name);
    }
    text
}

/// Replaces the index entries a document holds: the keys listed under
/// `of` are deleted, `keys` written (empty values) and listed there.
pub(crate) fn reindex(t: &mut Tables<'_>, of: &str, keys: &[String]) -> Result<(), EngineError> {
    if let Some(old) = t.doc(Doc::Library, of)? {
        for k in String::from_utf8_lossy(&old).split('\n') {
            if !k.is_empty() {
                t.delete_doc(Doc::Library, k)?;
            }
        }
    }
    for k in keys {
        t.put_doc(Doc::Library, k, b"")?;
    }
    t.put_doc(Doc::Library, of, keys.join("\n").as_bytes())?;
    Ok(())
}

/// Writes the index entries of an own resource (replacing the old ones).
fn index_own(t: &mut Tables<'_>, doc: &OwnResource) -> Result<(), EngineError> {
    let time = time16(doc.updated_at);
    let mut keys = vec![format!("ro{SEP}{time}{SEP}{}", doc.id)];
    if doc.withdrawn.is_none() {
        for d in doc.target.dimensions() {
            keys.push(format!("t{SEP}{d}{SEP}{time}{SEP}{}", doc.id));
        }
    }
    reindex(t, &format!("rof{SEP}{}", doc.id), &keys)?;
    let text = doc.withdrawn.is_none().then(|| searchable(&doc.resource));
    search::index(t, &place("own", &doc.id), text.as_deref())
}

/// Every directory partner with a peer daemon, by peer id. Reads the
/// directory once per publication (as publishing the catalog does).
pub(crate) fn partners_by_peer(
    t: &Tables<'_>,
) -> Result<std::collections::HashMap<String, Partner>, EngineError> {
    Ok(crate::directory::all_in(t)?
        .into_iter()
        .filter_map(|p| p.peer.clone().map(|peer| (peer, p)))
        .collect())
}

/// What a publication did for one peer.
#[derive(Debug, Clone, Serialize)]
pub struct Delivered {
    pub peer: String,
    /// `publish` or `withdraw`.
    pub action: &'static str,
    /// `None` when queued; the refusal otherwise.
    pub refused: Option<String>,
}

/// Sends the document's current state to every enabled peer: the version
/// to the peers its target covers, a withdrawal to those it no longer
/// covers (or to all, once withdrawn).
fn distribute(
    a: &mut Act<'_, '_>,
    doc: &mut OwnResource,
    peers: &[String],
) -> Result<Vec<Delivered>, EngineError> {
    let subject = subject_of(a.me(), &doc.id)?;
    let directory = partners_by_peer(a.tables)?;
    let mut out = Vec::new();
    for peer in peers {
        let Ok(node) = peer.parse::<NodeId>() else {
            continue;
        };
        let covered = doc.withdrawn.is_none()
            && (doc.target.names(peer)
                || directory.get(peer).is_some_and(|p| doc.target.covers(p)));
        let holds = doc.sent_to.iter().any(|p| p == peer);
        let (action, message) = if covered {
            (
                "publish",
                Message::ResourcePublish(doc.for_peer(peer, directory.get(peer))),
            )
        } else if holds {
            (
                "withdraw",
                Message::ResourceWithdraw(ResourceWithdraw {
                    note: String::new(),
                }),
            )
        } else {
            continue;
        };
        let refused = a
            .send(&node, &subject, &message)?
            .err()
            .map(|e| e.to_string());
        if refused.is_none() {
            doc.sent_to.retain(|p| p != peer);
            if covered {
                doc.sent_to.push(peer.clone());
                if let Some(f) = &doc.resource.file {
                    a.tables.put_doc(
                        Doc::Library,
                        &format!("rf{SEP}{}{SEP}{peer}{SEP}{subject}", f.sha256),
                        b"",
                    )?;
                }
            }
        }
        out.push(Delivered {
            peer: peer.clone(),
            action,
            refused,
        });
    }
    Ok(out)
}

/// A new resource id: time-ordered, unique.
fn new_id() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("R{}", &id[..16])
}

/// Publishes a new resource (`id` `None`) or a new version of this node's
/// resource `id`, and sends it where its target says — one transaction.
/// Bad content is refused whole, naming the field.
pub async fn publish(
    node: &Node,
    user: &User,
    id: Option<String>,
    draft: Draft,
    origin: Option<Forwarded>,
) -> Result<Result<(String, Vec<Delivered>), Refusal>, EngineError> {
    let peers = node.enabled_peers();
    let by = user.username.clone();
    let data_dir = node.config().data_dir.clone();
    if let Some(Content::File(f)) = &draft.content
        && !files::has(&data_dir, &f.sha256)
    {
        return Ok(Err(refuse(
            ReasonCode::BadBody,
            "file: the file has not been received",
        )));
    }
    node.engine
        .act(move |a| {
            let current = match &id {
                Some(id) => match own_in(a.tables, id)? {
                    Some(doc) => Some(doc),
                    None => {
                        return Ok(Err(refuse(
                            ReasonCode::UnknownRecord,
                            format!("there is no resource {id}"),
                        )));
                    }
                },
                None => None,
            };
            let content = match (&draft.content, &current) {
                (Some(c), _) => c.clone(),
                (None, Some(doc)) => match Content::of(&doc.resource, &doc.answers) {
                    Some(c) => c,
                    None => return Ok(Err(refuse(ReasonCode::BadBody, "file: no content"))),
                },
                (None, None) => {
                    return Ok(Err(refuse(
                        ReasonCode::BadBody,
                        "file: give a file, a link or an article",
                    )));
                }
            };
            let (mut file, mut link, mut article, mut course) = (None, None, None, None);
            let mut answers = AnswerKey::new();
            match content {
                Content::File(f) => file = Some(f),
                Content::Link(l) => link = Some(l),
                Content::Article(t) => article = Some(t),
                Content::Course(c, key) => {
                    course = Some(c);
                    answers = key;
                }
            }
            let version = current.as_ref().map_or(0, |d| d.resource.version) + 1;
            let resource = ResourcePublish {
                version,
                title: draft.title.clone(),
                summary: draft.summary.clone(),
                folder: draft.folder.clone(),
                tags: draft.tags.clone(),
                language: draft.language.clone(),
                valid_from: draft.valid_from.clone(),
                valid_to: draft.valid_to.clone(),
                file,
                link,
                article,
                course,
                origin: match (&origin, &current) {
                    (Some(o), _) => Some(o.clone()),
                    (None, Some(doc)) => doc.resource.origin.clone(),
                    (None, None) => None,
                },
            };
            let body =
                serde_json::to_value(&resource).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            if let Err(refused) = decode_message("resource.publish", &body) {
                return Ok(Err(refused));
            }
            let now = a.now;
            let mut doc = match current {
                Some(mut doc) => {
                    let earlier = ResourceVersion {
                        version: doc.resource.version,
                        title: doc.resource.title.clone(),
                        published_at: doc.updated_at,
                        file: doc.resource.file.clone(),
                    };
                    keep_version(&mut doc.history, earlier);
                    doc.resource = resource;
                    doc.target = draft.target.clone();
                    doc.updated_at = now;
                    doc.withdrawn = None;
                    doc.by = by.clone();
                    doc.answers = answers;
                    doc
                }
                None => OwnResource {
                    id: new_id(),
                    resource,
                    target: draft.target.clone(),
                    created_at: now,
                    updated_at: now,
                    history: Vec::new(),
                    withdrawn: None,
                    by: by.clone(),
                    sent_to: Vec::new(),
                    answers,
                    assignments: Vec::new(),
                },
            };
            let delivered = distribute(a, &mut doc, &peers)?;
            a.tables
                .put_doc(Doc::Library, &own_key(&doc.id), &json(&doc)?)?;
            index_own(a.tables, &doc)?;
            Ok(Ok((doc.id, delivered)))
        })
        .await
}

/// Assigns this node's course `id` to a partner (or one person there) by
/// a date, or ends the assignment (`due` `None`): a new version goes to
/// every peer the course is published to, each with its own assignment.
pub async fn assign(
    node: &Node,
    id: &str,
    partner: &str,
    person: &str,
    due: Option<Date>,
) -> Result<Result<(), Refusal>, EngineError> {
    let peers = node.enabled_peers();
    let (id, partner, person) = (id.to_string(), partner.to_string(), person.to_string());
    node.engine
        .act(move |a| {
            let Some(mut doc) = own_in(a.tables, &id)? else {
                return Ok(Err(refuse(
                    ReasonCode::UnknownRecord,
                    format!("there is no resource {id}"),
                )));
            };
            if doc.resource.course.is_none() || doc.withdrawn.is_some() {
                return Ok(Err(refuse(
                    ReasonCode::IllegalTransition,
                    "only a published course can be assigned",
                )));
            }
            let known = t_partner(a.tables, &partner)?;
            if known.is_none() && !peers.contains(&partner) {
                return Ok(Err(refuse(
                    ReasonCode::BadBody,
                    format!("partner: there is no partner {partner:?}"),
                )));
            }
            if let Some(p) = &known
                && !doc.target.covers(p)
            {
                return Ok(Err(refuse(
                    ReasonCode::BadBody,
                    format!(
                        "partner: the course is not published to {partner}; widen its target first"
                    ),
                )));
            }
            doc.assignments.retain(|x| x.partner != partner);
            let index = format!("asg{SEP}{partner}{SEP}{id}");
            match due.clone() {
                Some(due) => {
                    doc.assignments.push(Assigned {
                        partner: partner.clone(),
                        person: person.trim().to_string(),
                        due,
                    });
                    a.tables.put_doc(Doc::Library, &index, b"")?;
                }
                None => {
                    a.tables.delete_doc(Doc::Library, &index)?;
                }
            }
            let earlier = ResourceVersion {
                version: doc.resource.version,
                title: doc.resource.title.clone(),
                published_at: doc.updated_at,
                file: doc.resource.file.clone(),
            };
            keep_version(&mut doc.history, earlier);
            doc.resource.version += 1;
            doc.updated_at = a.now;
            distribute(a, &mut doc, &peers)?;
            a.tables
                .put_doc(Doc::Library, &own_key(&doc.id), &json(&doc)?)?;
            index_own(a.tables, &doc)?;
            Ok(Ok(()))
        })
        .await
}

/// A directory partner, inside an engine job.
fn t_partner(t: &Tables<'_>, id: &str) -> Result<Option<Partner>, EngineError> {
    Ok(t.doc(Doc::Partner, id)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The own courses assigned to partner `id` (its directory id or peer id):
/// (course, its assignment), at most `limit`.
pub fn assigned_to(
    read: &Read,
    ids: &[&str],
    limit: usize,
) -> Result<Vec<(OwnResource, Assigned)>, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        let prefix = format!("asg{SEP}{id}{SEP}");
        for (k, _) in read.docs_page(Doc::Library, &prefix, None, Order::Forward, limit)? {
            let Some(course) = k.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(doc) = own(read, course)?
                && doc.withdrawn.is_none()
                && let Some(a) = doc.assignments.iter().find(|a| a.partner == *id).cloned()
            {
                out.push((doc, a));
            }
        }
    }
    Ok(out)
}

/// Withdraws this node's resource `id` from everyone (its history stays;
/// a new version publishes it again).
pub async fn withdraw(
    node: &Node,
    id: &str,
    note: &str,
) -> Result<Result<(), Refusal>, EngineError> {
    let (id, note) = (id.to_string(), note.to_string());
    node.engine
        .act(move |a| {
            let Some(mut doc) = own_in(a.tables, &id)? else {
                return Ok(Err(refuse(
                    ReasonCode::UnknownRecord,
                    format!("there is no resource {id}"),
                )));
            };
            if doc.withdrawn.is_some() {
                return Ok(Err(refuse(
                    ReasonCode::IllegalTransition,
                    "the resource is already withdrawn",
                )));
            }
            let subject = subject_of(a.me(), &doc.id)?;
            for peer in std::mem::take(&mut doc.sent_to) {
                let Ok(node) = peer.parse::<NodeId>() else {
                    continue;
                };
                let message = Message::ResourceWithdraw(ResourceWithdraw { note: note.clone() });
                if let Err(e) = a.send(&node, &subject, &message)? {
                    tracing::warn!(%peer, error = %e, "resource withdrawal refused");
                }
            }
            doc.withdrawn = Some(a.now);
            doc.updated_at = a.now;
            a.tables
                .put_doc(Doc::Library, &own_key(&doc.id), &json(&doc)?)?;
            index_own(a.tables, &doc)?;
            Ok(Ok(()))
        })
        .await
}

/// The resource record shared with `peer` (received from it, or this
/// node's own as sent to it), as it is kept.
pub fn shared(
    read: &Read,
    peer: &str,
    subject: &str,
) -> Result<Option<ResourceRecord>, StoreError> {
    Ok(read.record(peer, subject)?.and_then(|b| {
        match crate::records::parse_record(peer, subject, &b) {
            Some(Record::Resource(r)) => Some(r),
            _ => None,
        }
    }))
}

/// Passes on the resource received from `peer` as one of this node's own,
/// to `target`, with its first publisher's signed envelope as origin.
pub async fn pass_on(
    node: &Node,
    user: &User,
    peer: &str,
    subject: &str,
    target: Target,
) -> Result<Result<(String, Vec<Delivered>), Refusal>, EngineError> {
    let (p, s) = (peer.to_string(), subject.to_string());
    let found = node
        .reading(move |r| {
            let record = shared(r, &p, &s)?;
            let seq = r
                .doc(Doc::Library, &format!("src{SEP}{p}{SEP}{s}"))?
                .and_then(|b| String::from_utf8_lossy(&b).parse::<u64>().ok());
            let envelope = match seq {
                Some(seq) => r.in_entry(&p, seq)?.map(|(envelope, _)| envelope),
                None => None,
            };
            Ok((record, envelope))
        })
        .await?;
    let (Some(record), envelope) = found else {
        return Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            "there is no such resource",
        )));
    };
    if record.withdrawn.is_some() {
        return Ok(Err(refuse(
            ReasonCode::IllegalTransition,
            "the resource was withdrawn by its publisher",
        )));
    }
    let r = &record.resource;
    let origin = match (&r.origin, envelope) {
        (Some(o), _) => o.clone(),
        (None, Some(bytes)) => Forwarded {
            from: record.publisher.clone(),
            subject: subject
                .parse()
                .map_err(|e| EngineError::Corrupt(format!("{e}")))?,
            envelope: guanxi_protocol::crypto::b64url(&bytes),
        },
        (None, None) => {
            return Ok(Err(refuse(
                ReasonCode::UnknownRecord,
                "the publisher's envelope is not kept here",
            )));
        }
    };
    if r.course.is_some() {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            "a course is graded by its publisher and cannot be passed on",
        )));
    }
    let Some(content) = Content::of(r, &AnswerKey::new()) else {
        return Ok(Err(refuse(
            ReasonCode::BadBody,
            "the resource has no content",
        )));
    };
    if let Content::File(f) = &content
        && !files::has(&node.config().data_dir, &f.sha256)
    {
        return Ok(Err(refuse(
            ReasonCode::IllegalTransition,
            "the file is still being fetched from its publisher; try again shortly",
        )));
    }
    let draft = Draft {
        title: r.title.clone(),
        summary: r.summary.clone(),
        folder: r.folder.clone(),
        tags: r.tags.clone(),
        language: r.language.clone(),
        valid_from: r.valid_from.clone(),
        valid_to: r.valid_to.clone(),
        content: Some(content),
        target,
    };
    publish(node, user, None, draft, Some(origin)).await
}

/// The engine's hook for messages applied from peers: keeps the search
/// words of received resources, the envelope of their current version, and
/// what is still to fetch.
pub fn on_applied(t: &mut Tables<'_>, a: &Applied<'_>) -> Result<(), EngineError> {
    if a.key.starts_with("web:") {
        return Ok(());
    }
    let Record::Resource(record) = a.record else {
        return Ok(());
    };
    let here = place(a.key, a.subject);
    let need = format!("need{SEP}{}{SEP}{}", a.key, a.subject);
    match a.message {
        Message::ResourcePublish(_) => {
            if let Some(seq) = a.seq {
                t.put_doc(
                    Doc::Library,
                    &format!("src{SEP}{}{SEP}{}", a.key, a.subject),
                    seq.to_string().as_bytes(),
                )?;
            }
            match &record.resource.file {
                Some(f) => t.put_doc(Doc::Library, &need, f.sha256.as_bytes())?,
                None => {
                    t.delete_doc(Doc::Library, &need)?;
                }
            }
            search::index(t, &here, Some(&searchable(&record.resource)))?;
        }
        Message::ResourceWithdraw(_) => {
            t.delete_doc(Doc::Library, &need)?;
            search::index(t, &here, None)?;
        }
        _ => {}
    }
    Ok(())
}

/// A resource as a list shows it.
#[derive(Debug, Clone)]
pub struct Item {
    /// `own` or the peer it came from.
    pub key: String,
    /// The own id, or the record's subject.
    pub subject: String,
    pub publisher: String,
    pub resource: ResourcePublish,
    pub updated_at: Millis,
    pub withdrawn: bool,
}

impl Item {
    fn of_own(me: &NodeId, doc: OwnResource) -> Item {
        Item {
            key: "own".into(),
            subject: doc.id,
            publisher: me.to_string(),
            resource: doc.resource,
            updated_at: doc.updated_at,
            withdrawn: doc.withdrawn.is_some(),
        }
    }

    fn of_received(key: &str, subject: &str, r: ResourceRecord) -> Item {
        Item {
            key: key.into(),
            subject: subject.into(),
            publisher: r.publisher.to_string(),
            resource: r.resource,
            updated_at: r.published_at,
            withdrawn: r.withdrawn.is_some(),
        }
    }

    /// The resource's page.
    pub fn link(&self) -> String {
        format!("/library/{}/{}", self.key, self.subject)
    }
}

/// Who is reading: staff see everything this node holds; a partner user
/// sees this node's resources that target its organization.
pub(crate) enum Reader {
    Staff,
    Partner(Box<Partner>),
    Nobody,
}

pub(crate) fn reader(read: &Read, user: &User) -> Result<Reader, StoreError> {
    Ok(match &user.partner {
        None => Reader::Staff,
        Some(id) => match crate::directory::load(read, id)? {
            Some(p) => Reader::Partner(Box::new(p)),
            None => Reader::Nobody,
        },
    })
}

/// The item at (`key`, `subject`) if `user` may see it: `own` resources
/// that are not withdrawn and target the user's organization (staff: all),
/// received ones for staff only.
pub fn item(
    read: &Read,
    me: &NodeId,
    user: &User,
    key: &str,
    subject: &str,
) -> Result<Option<Item>, StoreError> {
    let who = reader(read, user)?;
    if key == "own" {
        let Some(doc) = own(read, subject)? else {
            return Ok(None);
        };
        return Ok(match who {
            Reader::Staff => Some(Item::of_own(me, doc)),
            Reader::Partner(p) if doc.withdrawn.is_none() && doc.target.covers(&p) => {
                Some(Item::of_own(me, doc))
            }
            _ => None,
        });
    }
    if !matches!(who, Reader::Staff) {
        return Ok(None);
    }
    Ok(shared(read, key, subject)?.map(|r| Item::of_received(key, subject, r)))
}

/// The resource a service message cites (`resource.<publisher>.<id>`), if
/// `user` may see it here: this node's own when it published it, else the
/// one received from its publisher.
pub fn cited(
    read: &Read,
    me: &NodeId,
    user: &User,
    subject: &str,
) -> Result<Option<Item>, StoreError> {
    let Some(rest) = subject.strip_prefix("resource.") else {
        return Ok(None);
    };
    match rest
        .strip_prefix(me.as_str())
        .and_then(|r| r.strip_prefix('.'))
    {
        Some(id) => item(read, me, user, "own", id),
        None => {
            // The publisher is the node id before the last dot.
            let Some((publisher, _)) = rest.rsplit_once('.') else {
                return Ok(None);
            };
            item(read, me, user, publisher, subject)
        }
    }
}

/// The subject a library place (`own|<id>` or `<peer>|<subject>`) has
/// in messages.
pub fn subject_at(me: &NodeId, place: &str) -> Option<String> {
    match place.split_once('|')? {
        ("own", id) => Some(format!("resource.{me}.{id}")),
        (_, subject) => Some(subject.to_string()),
    }
}

/// Which list a staff member looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shelf {
    /// This node's own resources.
    Own,
    /// Resources received from peers.
    Received,
}

/// One page of the library for `user`, newest first, after `cursor`
/// (`time/key/subject`): staff read one shelf, a partner user the
/// resources that target its organization. Reads index ranges only.
pub fn page(
    read: &Read,
    me: &NodeId,
    user: &User,
    shelf: Shelf,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    match reader(read, user)? {
        Reader::Nobody => Ok((Vec::new(), None)),
        Reader::Staff if shelf == Shelf::Received => {
            let before = cursor.and_then(crate::record_index::Cursor::parse);
            let (places, next) = crate::record_index::newest(
                read,
                "resource",
                &crate::record_index::Scope::Side(crate::record_index::Side::Peer),
                before.as_ref(),
                limit,
            )?;
            let mut items = Vec::new();
            for (key, subject) in places {
                if let Some(r) = shared(read, &key, &subject)? {
                    items.push(Item::of_received(&key, &subject, r));
                }
            }
            Ok((items, next.map(|c| c.text())))
        }
        Reader::Staff => {
            let prefixes = vec![format!("ro{SEP}")];
            own_page(read, me, &prefixes, None, cursor, limit)
        }
        Reader::Partner(p) => {
            let prefixes: Vec<String> = Target::dimensions_of(&p)
                .into_iter()
                .map(|d| format!("t{SEP}{d}{SEP}"))
                .collect();
            own_page(read, me, &prefixes, Some(&p), cursor, limit)
        }
    }
}

/// Whether the first entry `<prefix><time>␟…` of the library table is due
/// at `now` (one read): for reminder queues.
pub(crate) fn first_due(read: &Read, prefix: &str, now: Millis) -> Result<bool, StoreError> {
    Ok(read
        .docs_page(Doc::Library, prefix, None, Order::Forward, 1)?
        .first()
        .and_then(|(k, _)| {
            k.strip_prefix(prefix)?
                .split(SEP)
                .next()?
                .parse::<Millis>()
                .ok()
        })
        .is_some_and(|at| at <= now))
}

/// The entries `<prefix><time>␟…` of the library table due at `now`, oldest
/// first, at most `limit` (whole keys): a reminder queue's work.
pub(crate) fn due_entries(
    t: &guanxi_adapters::store::Tables<'_>,
    prefix: &str,
    now: Millis,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    Ok(
        t.docs_page(Doc::Library, prefix, None, Order::Forward, limit)?
            .into_iter()
            .map(|(k, _)| k)
            .take_while(|k| {
                k.strip_prefix(prefix)
                    .and_then(|rest| rest.split(SEP).next()?.parse::<Millis>().ok())
                    .is_some_and(|at| at <= now)
            })
            .collect(),
    )
}

/// Merges index ranges (`<prefix><time>␟<id>`) newest first, each read
/// backwards from the cursor (`time/own/id`): up to `limit` entries
/// (`time␟id`) and the cursor of the next page.
pub(crate) fn newest_in(
    read: &Read,
    prefixes: &[String],
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    let after = cursor.and_then(|c| {
        let mut p = c.splitn(3, '/');
        let (time, key, id) = (p.next()?, p.next()?, p.next()?);
        (time.len() == 16 && key == "own" && !id.contains(SEP)).then(|| format!("{time}{SEP}{id}"))
    });
    let mut merged: Vec<String> = Vec::new();
    for prefix in prefixes {
        let from = after.as_ref().map(|a| format!("{prefix}{a}"));
        for (k, _) in read.docs_page(
            Doc::Library,
            prefix,
            from.as_deref(),
            Order::Backward,
            limit + 1,
        )? {
            if let Some(rest) = k.strip_prefix(prefix.as_str()) {
                merged.push(rest.to_string());
            }
        }
    }
    merged.sort_by(|a, b| b.cmp(a));
    merged.dedup();
    let more = merged.len() > limit;
    merged.truncate(limit);
    let next = if more {
        merged
            .last()
            .and_then(|e| e.split_once(SEP))
            .map(|(t, id)| format!("{t}/own/{id}"))
    } else {
        None
    };
    Ok((merged, next))
}

/// One page of own resources from index ranges (see [`newest_in`]); for a
/// partner, only those whose whole target covers it.
fn own_page(
    read: &Read,
    me: &NodeId,
    prefixes: &[String],
    partner: Option<&Partner>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    let (merged, next) = newest_in(read, prefixes, cursor, limit)?;
    let mut items = Vec::new();
    for entry in &merged {
        let Some((_, id)) = entry.split_once(SEP) else {
            continue;
        };
        let Some(doc) = own(read, id)? else {
            continue;
        };
        // The index lists a dimension; the whole target decides.
        if partner.is_some_and(|p| doc.withdrawn.is_some() || !doc.target.covers(p)) {
            continue;
        }
        items.push(Item::of_own(me, doc));
    }
    Ok((items, next))
}

/// Resources whose words hold every word of `query` that `user` may see,
/// newest first (at most `limit`).
pub fn search(
    read: &Read,
    me: &NodeId,
    user: &User,
    query: &str,
    limit: usize,
) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    for place in search::find(read, query)? {
        let Some((key, subject)) = place.split_once('|') else {
            continue;
        };
        if let Some(item) = item(read, me, user, key, subject)? {
            items.push(item);
        }
    }
    items.sort_by_key(|i| std::cmp::Reverse(i.updated_at));
    items.truncate(limit);
    Ok(items)
}

/// When `user` looked at the library before (ms; 0: never).
pub fn last_seen(read: &Read, user: &str) -> Result<Millis, StoreError> {
    Ok(read
        .doc(Doc::Library, &format!("seen{SEP}{user}"))?
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        .unwrap_or(0))
}

/// Notes that `user` looked at the library now.
pub async fn seen(node: &Node, user: &str) -> Result<(), EngineError> {
    let key = format!("seen{SEP}{user}");
    node.engine
        .act(move |a| {
            let now = a.now.to_string();
            a.tables.put_doc(Doc::Library, &key, now.as_bytes())?;
            Ok(())
        })
        .await
}

/// Whether `peer` may fetch the file `sha256` from this node: a resource
/// this node publishes to it, not withdrawn, whose current version has that
/// file.
pub fn may_fetch(read: &Read, me: &NodeId, peer: &str, sha256: &str) -> Result<bool, StoreError> {
    let prefix = format!("rf{SEP}{sha256}{SEP}{peer}{SEP}");
    for (k, _) in read.docs_page(Doc::Library, &prefix, None, Order::Forward, 100)? {
        let Some(subject) = k.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(r) = shared(read, peer, subject)?
            && &r.publisher == me
            && r.withdrawn.is_none()
            && r.resource.file.as_ref().is_some_and(|f| f.sha256 == sha256)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The file `sha256` of the resource at (`key`, `subject`) if `user` may
/// download it: the current version's to whoever sees the resource, an
/// earlier version's to staff only.
pub fn downloadable(
    read: &Read,
    me: &NodeId,
    user: &User,
    key: &str,
    subject: &str,
    sha256: &str,
) -> Result<Option<Attachment>, StoreError> {
    let Some(item) = item(read, me, user, key, subject)? else {
        return Ok(None);
    };
    if let Some(f) = item.resource.file.filter(|f| f.sha256 == sha256) {
        return Ok(Some(f));
    }
    if user.partner.is_some() {
        return Ok(None);
    }
    let history = if key == "own" {
        own(read, subject)?.map(|d| d.history)
    } else {
        shared(read, key, subject)?.map(|r| r.history)
    };
    Ok(history
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.file)
        .find(|f| f.sha256 == sha256))
}
