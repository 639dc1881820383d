//! Customer service requests and warranty claims: opening and updating
//! them from either channel, service level clocks and metrics, the vendor's
//! view of a claim's validity (serials known from shipments or
//! registrations, within the product's warranty months), the check that a
//! claimant sold that serial, and forwarding claims up a chain
//! (reseller → distributor → manufacturer) with the decision relayed back.

pub mod aggregates;
pub mod overdue;
pub mod sla;

use crate::accounts::{Role, User};
use crate::engine::{Act, EngineError, decode_message};
use crate::node::Node;
use crate::orders;
use crate::records::{parse_record, web_key};
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::messages::{Forwarded, Message, WarrantyClaim};
use guanxi_protocol::money::Date;
use guanxi_protocol::state::{
    Context, Record, ServiceRequest, StateError, WarrantyRecord, WarrantyStatus,
};
use guanxi_protocol::{Millis, NodeId, ReasonCode, RecordId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const SLA_KEY: &str = "sla";
const FORWARDS_KEY: &str = "forwards";

/// A refused action, with the reason code every channel reports.
pub type Refusal = StateError;

fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    StateError {
        code,
        message: message.into(),
    }
}

fn setting<T: for<'de> Deserialize<'de> + Default>(
    read: &Read,
    key: &str,
) -> Result<T, StoreError> {
    Ok(read
        .doc(Doc::Setting, key)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

fn setting_in<T: for<'de> Deserialize<'de> + Default>(
    t: &Tables<'_>,
    key: &str,
) -> Result<T, EngineError> {
    Ok(t.doc(Doc::Setting, key)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

async fn put_setting<T: Serialize + Send + 'static>(
    node: &Node,
    key: &'static str,
    value: T,
) -> Result<(), EngineError> {
    node.engine
        .local(move |t| {
            let json =
                serde_json::to_vec(&value).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            t.put_doc(Doc::Setting, key, &json)?;
            Ok(())
        })
        .await
}

use crate::records::visible;

/// Where a user opens a request or claim with `vendor`: the record key
/// (a partner user: its organization on this node; staff: an enabled peer).
fn key_for(node: &Node, user: &User, vendor: &str) -> Option<String> {
    let me = node.identity.id.as_str();
    match (&user.role, &user.partner) {
        (Role::Partner, Some(org)) if vendor == me => Some(web_key(org)),
        (Role::Partner, _) => None,
        _ if vendor != me
            && node
                .config()
                .peers
                .iter()
                .any(|p| p.enabled && p.id.as_str() == vendor) =>
        {
            Some(vendor.to_string())
        }
        _ => None,
    }
}

// ------------------------------------------------------------ requests

/// The service level targets in force.
pub fn targets(read: &Read) -> Result<sla::Targets, StoreError> {
    setting(read, SLA_KEY)
}

/// Replaces the service level targets (checked by the caller).
pub async fn save_targets(node: &Node, targets: sla::Targets) -> Result<(), EngineError> {
    put_setting(node, SLA_KEY, targets).await
}

/// A service request with where it is kept and its clock.
pub struct RequestView {
    pub key: String,
    pub subject: String,
    pub request: ServiceRequest,
    pub clock: sla::Clock,
}

impl RequestView {
    /// The partner's name for people.
    pub fn partner(&self) -> String {
        self.key
            .strip_prefix("web:")
            .map_or_else(|| self.request.partner.to_string(), str::to_string)
    }
}

/// One page of the requests the user may see, newest first (staff: those
/// received as vendor, or placed with other vendors), each with its clock.
pub fn requests_page(
    read: &Read,
    user: &User,
    me: &NodeId,
    now: Millis,
    direction: crate::records::Direction,
    before: Option<&crate::record_index::Cursor>,
    limit: usize,
) -> Result<(Vec<RequestView>, Option<crate::record_index::Cursor>), StoreError> {
    let targets = targets(read)?;
    let (records, next) = crate::records::page(read, user, "service", direction, before, limit)?;
    let list = records
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Service(request)
                if visible(user, me, &key, &request.vendor, &request.partner) =>
            {
                let clock = sla::clock(&request, &targets, now);
                Some(RequestView {
                    key,
                    subject,
                    request,
                    clock,
                })
            }
            _ => None,
        })
        .collect();
    Ok((list, next))
}

/// One request, if the user may see it.
pub fn request(
    read: &Read,
    user: &User,
    me: &NodeId,
    key: &str,
    subject: &str,
    now: Millis,
) -> Result<Option<RequestView>, StoreError> {
    let Some(Record::Service(request)) = crate::records::read_one(read, key, subject)? else {
        return Ok(None);
    };
    if !visible(user, me, key, &request.vendor, &request.partner) {
        return Ok(None);
    }
    let clock = sla::clock(&request, &targets(read)?, now);
    Ok(Some(RequestView {
        key: key.to_string(),
        subject: subject.to_string(),
        request,
        clock,
    }))
}

/// Opens a service request (or files a claim) with `vendor`: `message` is
/// `service.open` or `warranty.claim`. Returns (key, subject).
pub async fn open(
    node: &Node,
    user: &User,
    vendor: &str,
    message: Message,
) -> Result<Result<(String, String), Refusal>, EngineError> {
    let Some(key) = key_for(node, user, vendor) else {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("you cannot open requests with {vendor:?}"),
        )));
    };
    let prefix = match &message {
        Message::ServiceOpen(_) => "req",
        Message::WarrantyClaim(claim) => {
            // A web partner's claim is checked here as the vendor's daemon
            // checks a federated one.
            if let Some(org) = key.strip_prefix("web:") {
                let read = node.store.read()?;
                if let Err(r) = check_claimant(
                    crate::serials::shipped(&read, &claim.serial)?,
                    claim,
                    &web_key(org),
                ) {
                    return Ok(Err(r));
                }
            }
            "claim"
        }
        other => {
            return Ok(Err(refuse(
                ReasonCode::NotAllowed,
                format!("{} does not open a request", other.kind()),
            )));
        }
    };
    let subject = format!("{prefix}-{}", uuid::Uuid::now_v7().hyphenated());
    if let Err(r) = check_references(node, user, &key, &subject, &message)? {
        return Ok(Err(r));
    }
    if let Err(r) = send_attachments(node, &key, &message).await? {
        return Ok(Err(r));
    }
    Ok(orders::send_as(node, user, &key, &subject, message)
        .await?
        .map(|()| (key, subject)))
}

/// The attachments a message references.
fn referenced(message: &Message) -> Vec<guanxi_protocol::messages::Attachment> {
    match message {
        Message::ServiceOpen(m) => m.attachments.clone(),
        Message::ServiceUpdate(m) => m.attachments.clone(),
        Message::WarrantyClaim(m) => m.attachments.clone(),
        Message::MdfClaim(m) => m.proofs.clone(),
        _ => Vec::new(),
    }
}

/// The files a record references already (any may be cited again on it).
fn on_record(record: &Record) -> Vec<String> {
    match record {
        Record::Service(r) => r
            .request
            .attachments
            .iter()
            .chain(r.events.iter().flat_map(|e| e.attachments.iter()))
            .map(|a| a.sha256.clone())
            .collect(),
        Record::Warranty(w) => w
            .claim
            .attachments
            .iter()
            .map(|a| a.sha256.clone())
            .collect(),
        Record::Mdf(b) => b
            .claims
            .iter()
            .flat_map(|c| c.claim.proofs.iter())
            .map(|a| a.sha256.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Refuses a message of `user` on the record (`key`, `subject`) that cites
/// a file its organization did not upload and that is not on the record
/// already (a hash learnt elsewhere, or one never uploaded here).
pub(crate) fn check_references(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    message: &Message,
) -> Result<Result<(), Refusal>, EngineError> {
    let cited = referenced(message);
    if cited.is_empty() {
        return Ok(Ok(()));
    }
    let read = node.store.read()?;
    let known = read
        .record(key, subject)?
        .and_then(|b| parse_record(key, subject, &b))
        .map(|r| on_record(&r))
        .unwrap_or_default();
    let owner = crate::attachments::owner_of(user);
    for a in cited {
        if !known.contains(&a.sha256) && !crate::attachments::uploaded_by(&read, &a.sha256, &owner)?
        {
            return Ok(Err(refuse(
                ReasonCode::BadBody,
                format!(
                    "attachment {} ({}) is not a file your organization uploaded",
                    a.name, a.sha256
                ),
            )));
        }
    }
    Ok(Ok(()))
}

/// Before a message that references attachments goes to peer `key`, sends
/// their bytes (`attachment.put`) on the same stream, so they arrive first.
/// For a web partner (`web:` key) the files are already here.
pub(crate) async fn send_attachments(
    node: &Node,
    key: &str,
    message: &Message,
) -> Result<Result<(), Refusal>, EngineError> {
    if key.starts_with("web:") {
        return Ok(Ok(()));
    }
    for a in referenced(message) {
        let Some(bytes) = crate::attachments::load(&node.config().data_dir, &a.sha256) else {
            return Ok(Err(refuse(
                ReasonCode::BadBody,
                format!(
                    "attachment {} ({}) was not uploaded to this node",
                    a.name, a.sha256
                ),
            )));
        };
        let put = Message::AttachmentPut(guanxi_protocol::messages::AttachmentPut::of(
            &a.content_type,
            &bytes,
        ));
        if let Err(r) = node
            .send_to_peer(key, &format!("att-{}", a.sha256), put)
            .await?
        {
            return Ok(Err(r));
        }
    }
    Ok(Ok(()))
}

/// Sends an update, decision or fulfilment on a request or claim the user
/// may see, as the user's side.
pub async fn act(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    message: Message,
) -> Result<Result<(), Refusal>, EngineError> {
    if !matches!(
        message,
        Message::ServiceUpdate(_)
            | Message::WarrantyClaim(_)
            | Message::WarrantyDecision(_)
            | Message::WarrantyFulfil(_)
    ) {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("{} is not a service action", message.kind()),
        )));
    }
    let read = node.store.read()?;
    let me = &node.identity.id;
    let seen = match read
        .record(key, subject)?
        .and_then(|b| parse_record(key, subject, &b))
    {
        Some(Record::Service(r)) => visible(user, me, key, &r.vendor, &r.partner),
        Some(Record::Warranty(w)) => visible(user, me, key, &w.vendor, &w.partner),
        _ => false,
    };
    drop(read);
    if !seen {
        return Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            "no such request or claim",
        )));
    }
    if let Err(r) = check_references(node, user, key, subject, &message)? {
        return Ok(Err(r));
    }
    if let Err(r) = send_attachments(node, key, &message).await? {
        return Ok(Err(r));
    }
    orders::send_as(node, user, key, subject, message).await
}

/// Median first response and resolution (milliseconds) and breach counts
/// per partner, for requests opened in [from, to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    pub partner: String,
    pub requests: u64,
    pub median_first_response_ms: Option<i64>,
    pub median_resolution_ms: Option<i64>,
    pub first_response_breaches: u64,
    pub resolution_breaches: u64,
}

/// How far back service metrics look when no start is given.
pub const METRICS_DAYS: i64 = 90;

/// Service metrics of requests this node received as vendor, opened in
/// [`from`, `to`) — `from` defaults to [`METRICS_DAYS`] before `now` —
/// from the kept counts and the late running clocks (`aggregates.rs`),
/// never every request. Staff only.
pub fn metrics(
    read: &Read,
    user: &User,
    now: Millis,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<Vec<Metrics>, StoreError> {
    if user.role == Role::Partner {
        return Ok(Vec::new());
    }
    let from = from.unwrap_or(now - METRICS_DAYS * 86_400_000);
    let to = to.unwrap_or(i64::MAX);
    aggregates::metrics(read, &targets(read)?, now, from, to)
}

// -------------------------------------------------------------- claims

pub use crate::serials::SerialRegistration;

/// Adds or replaces serial registrations (by serial).
pub async fn register_serials(
    node: &Node,
    new: Vec<SerialRegistration>,
) -> Result<usize, EngineError> {
    node.engine
        .local(move |t| crate::serials::register(t, &new))
        .await
}

/// Refuses a claim on a serial this node shipped to another buyer.
fn check_claimant(
    shipped: Option<crate::serials::Shipped>,
    claim: &WarrantyClaim,
    claimant_key: &str,
) -> Result<(), Refusal> {
    match shipped {
        Some(s) if s.key != claimant_key && claim.forwarded.is_none() => Err(refuse(
            ReasonCode::NotAllowed,
            format!(
                "serial {} was shipped to another partner; only its buyer can claim it",
                claim.serial
            ),
        )),
        _ => Ok(()),
    }
}

/// The vendor's business rule on an incoming claim (part of the inbound
/// rule): the serial, if this node shipped it, must have gone to the
/// claimant (a forwarded claim names its original buyer instead).
pub fn check_incoming_claim(
    t: &Tables<'_>,
    ctx: &Context,
    message: &Message,
) -> Result<Result<(), StateError>, EngineError> {
    let Message::WarrantyClaim(claim) = message else {
        return Ok(Ok(()));
    };
    let shipped = crate::serials::shipped_in(t, &claim.serial)?;
    Ok(check_claimant(shipped, claim, ctx.from.as_str()))
}

/// Whether a claimed serial is covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validity {
    /// `in_warranty`, `expired` or `unknown_serial`.
    pub status: &'static str,
    /// `shipment` or `registration`.
    pub basis: Option<&'static str>,
    pub since: Option<String>,
    pub until: Option<String>,
}

fn add_months(day: &Date, months: i64) -> Option<String> {
    let d: jiff::civil::Date = day.as_str().parse().ok()?;
    let span = jiff::Span::new().try_months(months).ok()?;
    Some(d.checked_add(span).ok()?.to_string())
}

/// The validity of `claim` on day `on`, from this node's shipments and
/// registrations and the catalog's warranty months.
pub fn validity(read: &Read, claim: &WarrantyClaim, on: &Date) -> Result<Validity, StoreError> {
    let serial = claim.serial.trim();
    let (basis, sku, since) = if let Some(s) = crate::serials::shipped(read, serial)? {
        ("shipment", s.sku, s.day)
    } else if let Some(r) = crate::serials::registered(read, serial)? {
        ("registration", r.sku, r.date)
    } else {
        return Ok(Validity {
            status: "unknown_serial",
            basis: None,
            since: None,
            until: None,
        });
    };
    let months = orders::own_catalog(read)?
        .and_then(|c| c.products.into_iter().find(|p| p.sku == sku))
        .map_or(0, |p| p.warranty_months);
    let until = add_months(&since, months);
    let covered = until.as_deref().is_some_and(|u| on.as_str() <= u);
    Ok(Validity {
        status: if covered { "in_warranty" } else { "expired" },
        basis: Some(basis),
        since: Some(since.to_string()),
        until,
    })
}

/// A claim with where it is kept.
pub struct ClaimView {
    pub key: String,
    pub subject: String,
    pub claim: WarrantyRecord,
}

impl ClaimView {
    pub fn partner(&self) -> String {
        self.key
            .strip_prefix("web:")
            .map_or_else(|| self.claim.partner.to_string(), str::to_string)
    }
}

/// The claims the user may see, newest first.
/// One claim, if the user may see it (one record read).
pub fn claim(
    read: &Read,
    user: &User,
    me: &NodeId,
    key: &str,
    subject: &str,
) -> Result<Option<ClaimView>, StoreError> {
    Ok(match crate::records::read_one(read, key, subject)? {
        Some(Record::Warranty(claim)) if visible(user, me, key, &claim.vendor, &claim.partner) => {
            Some(ClaimView {
                key: key.to_string(),
                subject: subject.to_string(),
                claim,
            })
        }
        _ => None,
    })
}

/// One page of the claims the user may see, newest first (staff: those
/// received as vendor, or filed with other vendors).
pub fn claims_page(
    read: &Read,
    user: &User,
    me: &NodeId,
    direction: crate::records::Direction,
    before: Option<&crate::record_index::Cursor>,
    limit: usize,
) -> Result<(Vec<ClaimView>, Option<crate::record_index::Cursor>), StoreError> {
    let (records, next) = crate::records::page(read, user, "warranty", direction, before, limit)?;
    let list = records
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Warranty(claim) if visible(user, me, &key, &claim.vendor, &claim.partner) => {
                Some(ClaimView {
                    key,
                    subject,
                    claim,
                })
            }
            _ => None,
        })
        .collect();
    Ok((list, next))
}

// ------------------------------------------------------------- the chain

/// A claim forwarded up the chain: the upstream claim and the downstream
/// one it carries, and how far the relay between them has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub upstream_key: String,
    pub upstream_subject: String,
    pub downstream_key: String,
    pub downstream_subject: String,
    /// Upstream decisions passed down so far.
    #[serde(default)]
    pub decisions_down: u32,
    /// Downstream amendments passed up so far.
    #[serde(default)]
    pub amendments_up: u32,
    /// Whether the upstream fulfilment was passed down.
    #[serde(default)]
    pub fulfilment_down: bool,
}

/// The forwards this node made.
pub fn forwards(read: &Read) -> Result<Vec<Forward>, StoreError> {
    setting(read, FORWARDS_KEY)
}

fn warranty_in(
    a: &Act<'_, '_>,
    key: &str,
    subject: &str,
) -> Result<Option<WarrantyRecord>, EngineError> {
    Ok(match a.record(key, subject)? {
        Some(Record::Warranty(w)) => Some(w),
        _ => None,
    })
}

fn save_forwards(a: &mut Act<'_, '_>, all: &[Forward]) -> Result<(), EngineError> {
    let json = serde_json::to_vec(all).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    a.tables.put_doc(Doc::Setting, FORWARDS_KEY, &json)?;
    Ok(())
}

/// The claim as it goes upstream: the downstream claim's content, naming the
/// original claimant, subject and signed envelope.
fn upstream_claim(
    a: &Act<'_, '_>,
    key: &str,
    subject: &str,
    claim: &WarrantyRecord,
) -> Result<Result<Message, Refusal>, EngineError> {
    // The original claim's exact signed bytes (a web partner's claim has none).
    let original = if key.starts_with("web:") {
        None
    } else {
        a.opening_envelope(key, subject)?
    };
    let Ok(down_subject) = subject.parse::<RecordId>() else {
        return Ok(Err(refuse(ReasonCode::UnknownRecord, "subject")));
    };
    let mut up = claim.claim.clone();
    up.forwarded = Some(Forwarded {
        from: claim.partner.clone(),
        subject: down_subject,
        envelope: original
            .map(|b| guanxi_protocol::crypto::b64url(&b))
            .unwrap_or_else(|| "-".into()),
    });
    Ok(decode_message(
        "warranty.claim",
        &serde_json::to_value(&up).map_err(|e| EngineError::Corrupt(e.to_string()))?,
    ))
}

/// Forwards the claim (`key`, `subject`) this node received from a partner
/// to `upstream` (an enabled peer: the manufacturer), carrying the original
/// signed claim. The claim, the link between the two and the message are
/// written in one transaction, so a double click or a crash can neither
/// send it twice nor lose the link. The upstream decision comes back down,
/// and a downstream amendment goes up, by [`relay`].
pub async fn forward(
    node: &Node,
    key: &str,
    subject: &str,
    upstream: &str,
) -> Result<Result<String, Refusal>, EngineError> {
    let me = node.identity.id.clone();
    let Ok(up_peer) = upstream.parse::<NodeId>() else {
        return Ok(Err(refuse(ReasonCode::NotAllowed, "no such peer")));
    };
    if !node
        .config()
        .peers
        .iter()
        .any(|p| p.enabled && p.id == up_peer)
    {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("{up_peer} is not an enabled peer in the configuration"),
        )));
    }
    // The files the claim references travel first (content-addressed: a
    // second copy is harmless).
    let read = node.store.read()?;
    let claim = match read
        .record(key, subject)?
        .and_then(|b| parse_record(key, subject, &b))
    {
        Some(Record::Warranty(w)) if w.vendor == me => w,
        _ => {
            return Ok(Err(refuse(
                ReasonCode::UnknownRecord,
                "no such claim to forward",
            )));
        }
    };
    drop(read);
    if let Err(r) = send_attachments(node, upstream, &Message::WarrantyClaim(claim.claim)).await? {
        return Ok(Err(r));
    }
    let (key, subject) = (key.to_string(), subject.to_string());
    node.engine
        .act(move |a| {
            let Some(claim) = warranty_in(a, &key, &subject)?.filter(|w| w.vendor == me) else {
                return Ok(Err(refuse(
                    ReasonCode::UnknownRecord,
                    "no such claim to forward",
                )));
            };
            let mut all: Vec<Forward> = setting_in(a.tables, FORWARDS_KEY)?;
            if all
                .iter()
                .any(|f| f.downstream_key == key && f.downstream_subject == subject)
            {
                return Ok(Err(refuse(
                    ReasonCode::IllegalTransition,
                    "this claim was already forwarded",
                )));
            }
            let message = match upstream_claim(a, &key, &subject, &claim)? {
                Ok(m) => m,
                Err(r) => return Ok(Err(r)),
            };
            let up_subject = format!("claim-{}", uuid::Uuid::now_v7().hyphenated());
            let Ok(up_id) = up_subject.parse::<RecordId>() else {
                return Ok(Err(refuse(ReasonCode::UnknownRecord, "subject")));
            };
            if let Err(r) = a.send(&up_peer, &up_id, &message)? {
                return Ok(Err(r));
            }
            all.push(Forward {
                upstream_key: up_peer.to_string(),
                upstream_subject: up_subject.clone(),
                downstream_key: key.clone(),
                downstream_subject: subject.clone(),
                decisions_down: 0,
                amendments_up: claim.amendments,
                fulfilment_down: false,
            });
            save_forwards(a, &all)?;
            Ok(Ok(up_subject))
        })
        .await
}

/// What the relay does next on one forward.
enum Relay {
    /// Pass the upstream decision down (and count it).
    Down(Message),
    /// Pass the downstream amendment up (and count it).
    Up,
    /// Pass the upstream fulfilment down.
    Fulfil(Message),
}

fn next_relay(f: &Forward, up: &WarrantyRecord, down: &WarrantyRecord) -> Option<Relay> {
    let decisions = up
        .history
        .iter()
        .filter(|e| e.kind == "warranty.decision")
        .count() as u32;
    if decisions > f.decisions_down && down.status == WarrantyStatus::Submitted {
        return up.decision.clone().map(|mut d| {
            d.note = format!("{} (decided by {})", d.note, up.vendor)
                .trim()
                .to_string();
            Relay::Down(Message::WarrantyDecision(d))
        });
    }
    if down.amendments > f.amendments_up
        && down.status == WarrantyStatus::Submitted
        && up.status == WarrantyStatus::NeedInfo
    {
        return Some(Relay::Up);
    }
    if up.status == WarrantyStatus::Fulfilled
        && !f.fulfilment_down
        && down.status == WarrantyStatus::Approved
    {
        return up.fulfilment.clone().map(|reference| {
            Relay::Fulfil(Message::WarrantyFulfil(
                guanxi_protocol::messages::WarrantyFulfil {
                    reference,
                    note: format!("fulfilled by {}", up.vendor),
                },
            ))
        });
    }
    None
}

/// One relay step on the forward of (`down_key`, `down_subject`), in one
/// transaction: the message and the forward's counters change together, so
/// nothing is passed twice and nothing is lost. Returns whether it sent.
fn relay_one(
    a: &mut Act<'_, '_>,
    down_key: &str,
    down_subject: &str,
) -> Result<Result<bool, Refusal>, EngineError> {
    let mut all: Vec<Forward> = setting_in(a.tables, FORWARDS_KEY)?;
    let Some(i) = all
        .iter()
        .position(|f| f.downstream_key == down_key && f.downstream_subject == down_subject)
    else {
        return Ok(Ok(false));
    };
    let f = all[i].clone();
    let (Some(up), Some(down)) = (
        warranty_in(a, &f.upstream_key, &f.upstream_subject)?,
        warranty_in(a, &f.downstream_key, &f.downstream_subject)?,
    ) else {
        return Ok(Ok(false));
    };
    let Some(step) = next_relay(&f, &up, &down) else {
        return Ok(Ok(false));
    };
    let me = a.me().clone();
    let to_downstream =
        |a: &mut Act<'_, '_>, message: &Message| -> Result<Result<(), Refusal>, EngineError> {
            match f.downstream_key.strip_prefix("web:") {
                Some(org) => {
                    let Ok(to) = org.parse::<NodeId>() else {
                        return Ok(Err(refuse(ReasonCode::UnknownRecord, "partner")));
                    };
                    Ok(
                        a.apply_local(&f.downstream_key, &f.downstream_subject, &me, &to, message)?
                            .map(|_| ()),
                    )
                }
                None => {
                    let (Ok(peer), Ok(subject)) = (
                        f.downstream_key.parse::<NodeId>(),
                        f.downstream_subject.parse::<RecordId>(),
                    ) else {
                        return Ok(Err(refuse(ReasonCode::UnknownRecord, "claim")));
                    };
                    Ok(a.send(&peer, &subject, message)?.map(|_| ()))
                }
            }
        };
    let result = match step {
        Relay::Down(message) => to_downstream(a, &message)?.map(|()| {
            all[i].decisions_down = up
                .history
                .iter()
                .filter(|e| e.kind == "warranty.decision")
                .count() as u32;
        }),
        Relay::Fulfil(message) => to_downstream(a, &message)?.map(|()| {
            all[i].fulfilment_down = true;
        }),
        Relay::Up => {
            let message = match upstream_claim(a, &f.downstream_key, &f.downstream_subject, &down)?
            {
                Ok(m) => m,
                Err(r) => return Ok(Err(r)),
            };
            let (Ok(peer), Ok(subject)) = (
                f.upstream_key.parse::<NodeId>(),
                f.upstream_subject.parse::<RecordId>(),
            ) else {
                return Ok(Err(refuse(ReasonCode::UnknownRecord, "claim")));
            };
            a.send(&peer, &subject, &message)?.map(|_| {
                all[i].amendments_up = down.amendments;
            })
        }
    };
    match result {
        Ok(()) => {
            save_forwards(a, &all)?;
            Ok(Ok(true))
        }
        Err(r) => Ok(Err(r)),
    }
}

/// Relays along every forward: upstream decisions and fulfilments down,
/// downstream amendments up, each exactly once. Returns how many messages it
/// sent.
pub async fn relay(node: &Node) -> Result<usize, EngineError> {
    let read = node.store.read()?;
    let links = forwards(&read)?;
    drop(read);
    let mut sent = 0;
    for f in links {
        // Each step changes what the next one sees; a forward moves at most
        // a few steps per round.
        for _ in 0..3 {
            let (key, subject) = (f.downstream_key.clone(), f.downstream_subject.clone());
            match node
                .engine
                .act(move |a| relay_one(a, &key, &subject))
                .await?
            {
                Ok(true) => sent += 1,
                Ok(false) => break,
                Err(r) => {
                    tracing::warn!("relaying {} along the chain: {r}", f.upstream_subject);
                    break;
                }
            }
        }
    }
    Ok(sent)
}

/// Runs [`relay`] whenever a warranty record changed, until the node stops.
pub async fn run_relay(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let mut seen = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // The previous round is finished.
        node.ticks
            .warranty_relay
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version = node.engine.records_version("warranty");
        if seen == Some(version) {
            continue;
        }
        seen = Some(version);
        match relay(&node).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("warranty relay: {n} decision(s) passed down the chain"),
            Err(e) => {
                seen = None;
                if !node.engine.storage_failed() {
                    tracing::error!("warranty relay: {e}");
                }
            }
        }
    }
}

/// The attachment `sha256` as referenced by a request or claim the user may
/// see (its name and type), if any.
pub fn attachment_for(
    read: &Read,
    user: &User,
    me: &NodeId,
    sha256: &str,
) -> Result<Option<guanxi_protocol::messages::Attachment>, StoreError> {
    let places = crate::record_index::referencing(read, sha256, 1000)?;
    for (key, _, record) in crate::record_index::load(read, places) {
        let found = match &record {
            Record::Service(r) if visible(user, me, &key, &r.vendor, &r.partner) => r
                .events
                .iter()
                .flat_map(|e| e.attachments.iter())
                .find(|a| a.sha256 == sha256),
            Record::Warranty(c) if visible(user, me, &key, &c.vendor, &c.partner) => {
                c.claim.attachments.iter().find(|a| a.sha256 == sha256)
            }
            _ => None,
        };
        if let Some(a) = found {
            return Ok(Some(a.clone()));
        }
    }
    Ok(None)
}
