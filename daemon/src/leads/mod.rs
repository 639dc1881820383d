//! Leads: the vendor's leads and their distribution to partners, the
//! partner's answers and progress, deal registrations, and the conversion
//! analysis.
//!
//! A lead is a local document of the vendor ([`LeadDoc`]: the end customer,
//! consent, the offers made, the rule trace of every distribution round). Each
//! offer to a partner is a shared record driven by the protocol's lead state
//! machine: with a connected partner it lives between the two daemons (subject
//! `<lead id>.<n>`, messages over federation); with a partner that has no
//! daemon it is kept under `web:<partner id>` and the partner's users act on
//! it in the vendor's web view — the same state machine, no envelopes. So a
//! lead works the same on both channels and keeps its whole history on one
//! document: re-offers add offers, never copies.
//!
//! Timers are data: each offer carries its `accept_by`; [`sweep`] (run every
//! second by [`run_sweeper`]) expires offers past `accept_by` + grace and
//! re-offers declined or expired leads to the next eligible partner, so a
//! restart loses nothing.

pub mod aggregates;
pub mod analysis;
pub mod conflicts;
pub mod distribution;
pub mod export;
pub mod index;
pub mod intake;

use crate::accounts::{Role, User};
use crate::directory::Partner;
use crate::engine::{Act, EngineError};
use crate::node::Node;
use crate::records::parse_record;
pub use crate::records::web_key;
use distribution::{Candidate, RuleState, Rules, TraceStep};
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::messages::{LeadExpire, LeadOffer, LeadRegister, Message};
use guanxi_protocol::state::{Lead, LeadStatus, Record, Registration, StateError};
use guanxi_protocol::{Millis, NodeId, ReasonCode, RecordId};
use intake::LeadInput;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// An offer is expired no earlier than this long after its `accept_by`, so
/// that an acceptance created in time but delayed in transit still counts.
pub const EXPIRY_GRACE_MS: Millis = 5 * 60 * 1000;
/// How often the sweeper looks for offers to expire and leads to re-offer.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Settings keys.
const RULES_KEY: &str = "lead_rules";
const RULE_STATE_KEY: &str = "lead_rule_state";

/// Why a lead waits for staff instead of being offered automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// The end customer did not consent to sharing.
    NoConsent,
    /// No partner is eligible under the rules.
    Nobody,
    /// Staff took the lead back.
    Withdrawn,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::NoConsent => "no_consent",
            Hold::Nobody => "nobody",
            Hold::Withdrawn => "withdrawn",
        }
    }
}

/// One offer of the lead to one partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRef {
    /// The partner's directory id.
    pub partner: String,
    /// Where the shared record is kept: the peer id, or `web:<partner id>`.
    pub key: String,
    pub subject: String,
    pub offered_at: Millis,
    pub accept_by: Millis,
    /// Assigned by hand (`by` names who), not by the rules.
    pub manual: bool,
    pub by: String,
}

/// One distribution round: why the lead went where it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub at: Millis,
    /// `rules`, or the staff member who assigned by hand.
    pub by: String,
    pub trace: Vec<TraceStep>,
    pub partner: Option<String>,
}

/// The vendor's lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadDoc {
    pub id: String,
    pub input: LeadInput,
    pub created: Millis,
    pub created_by: String,
    pub offers: Vec<OfferRef>,
    pub rounds: Vec<Round>,
    pub hold: Option<Hold>,
}

/// A refusal of a lead action, with the reason code every channel reports.
pub type Refusal = StateError;

fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    StateError {
        code,
        message: message.into(),
    }
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::Corrupt(format!("{what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|e| EngineError::Corrupt(e.to_string()))
}

// ---------------------------------------------------------------- reading

/// The lead `id`, if it exists.
pub fn load(read: &Read, id: &str) -> Result<Option<LeadDoc>, StoreError> {
    Ok(read
        .doc(Doc::Lead, id)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Most leads on one page of a list.
pub const MAX_PAGE: usize = 500;

/// One page of leads, newest first (all, or those at `stage`), after the
/// lead `after` of the previous page; and the id to continue after when
/// more follow. Reads the page, never every lead.
pub fn page(
    read: &Read,
    stage: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<LeadView>, Option<String>), StoreError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let (ids, more) = index::page(read, stage, after, limit)?;
    let mut views = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(doc) = load(read, id)? {
            views.push(LeadView::load(read, doc));
        }
    }
    let next = if more { ids.last().cloned() } else { None };
    Ok((views, next))
}

/// Every lead, newest first (whole-family read: analysis and exports).
pub fn list(read: &Read) -> Result<Vec<LeadDoc>, StoreError> {
    let mut leads: Vec<LeadDoc> = read
        .docs(Doc::Lead)?
        .into_iter()
        .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
        .collect();
    leads.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    Ok(leads)
}

/// The distribution rules in force.
pub fn rules(read: &Read) -> Result<Rules, StoreError> {
    Ok(read
        .doc(Doc::Setting, RULES_KEY)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// The shared lead record of an offer.
pub fn offer_record(read: &Read, offer: &OfferRef) -> Option<Lead> {
    let bytes = read.record(&offer.key, &offer.subject).ok()??;
    match parse_record(&offer.key, &offer.subject, &bytes)? {
        Record::Lead(l) => Some(l),
        _ => None,
    }
}

/// A lead with the current state of each of its offers.
pub struct LeadView {
    pub doc: LeadDoc,
    pub offers: Vec<(OfferRef, Option<Lead>)>,
}

impl LeadView {
    pub fn load(read: &Read, doc: LeadDoc) -> LeadView {
        let offers = doc
            .offers
            .iter()
            .map(|o| (o.clone(), offer_record(read, o)))
            .collect();
        LeadView { doc, offers }
    }

    /// The lead's stage for the vendor: the current offer's status, or
    /// `unassigned`.
    pub fn stage(&self) -> &'static str {
        match self.offers.last() {
            Some((_, Some(l))) => l.status.as_str(),
            Some((_, None)) => "unknown",
            None => "unassigned",
        }
    }

    /// The partner holding or last offered the lead.
    pub fn partner(&self) -> Option<&str> {
        self.offers.last().map(|(o, _)| o.partner.as_str())
    }
}

/// A lead record as the partner sees it: where it is kept and the record.
pub struct Incoming {
    pub key: String,
    pub subject: String,
    pub lead: Lead,
}

/// Leads offered to the user's organization, one page, from the record
/// index: for a partner user, the web offers to its organization; for
/// staff, the offers other vendors' daemons sent to this node. A partner user's
/// offers newest first; for staff, the offers of other vendors' daemons,
/// by vendor and newest first within each. `before` is the previous page's
/// `next`.
pub fn incoming_page(
    read: &Read,
    user: &User,
    me: &NodeId,
    before: Option<&crate::record_index::Place>,
    limit: usize,
) -> Result<(Vec<Incoming>, Option<crate::record_index::Place>), StoreError> {
    use crate::record_index::{self as index, Side};
    let (places, more) = match (&user.role, &user.partner) {
        (Role::Partner, Some(org)) => index::by_key(
            read,
            "lead",
            Side::Own,
            &index::key_of(&web_key(org)),
            before,
            limit,
        )?,
        (Role::Partner, None) => (Vec::new(), false),
        _ => index::by_key(read, "lead", Side::Peer, "", before, limit)?,
    };
    let next = if more { places.last().cloned() } else { None };
    let list = index::load(read, places)
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Lead(lead) if visible_incoming(user, me, &key, &lead) => {
                Some(Incoming { key, subject, lead })
            }
            _ => None,
        })
        .collect();
    Ok((list, next))
}

fn visible_incoming(user: &User, me: &NodeId, key: &str, lead: &Lead) -> bool {
    match (&user.role, &user.partner) {
        (Role::Partner, Some(org)) => key == web_key(org) && &lead.vendor == me,
        (Role::Partner, None) => false,
        _ => !key.starts_with("web:") && &lead.partner == me,
    }
}

/// Where the user's record for vendor `vendor` is kept, or `None` when the
/// user may not act there.
fn incoming_key(user: &User, me: &NodeId, vendor: &str) -> Option<String> {
    match (&user.role, &user.partner) {
        (Role::Partner, Some(org)) if vendor == me.as_str() => Some(web_key(org)),
        (Role::Partner, _) => None,
        _ if vendor != me.as_str() && !vendor.starts_with("web:") => Some(vendor.to_string()),
        _ => None,
    }
}

/// One incoming lead, if the user may see it.
pub fn incoming_one(
    read: &Read,
    user: &User,
    me: &NodeId,
    vendor: &str,
    subject: &str,
) -> Result<Option<Incoming>, StoreError> {
    let Some(key) = incoming_key(user, me, vendor) else {
        return Ok(None);
    };
    let Some(bytes) = read.record(&key, subject)? else {
        return Ok(None);
    };
    Ok(match parse_record(&key, subject, &bytes) {
        Some(Record::Lead(lead)) if visible_incoming(user, me, &key, &lead) => Some(Incoming {
            key,
            subject: subject.to_string(),
            lead,
        }),
        _ => None,
    })
}

// ---------------------------------------------------------- distribution

/// What distribution needs to know, read once per transaction.
struct World {
    /// The directory, by id; `reachable` and `open` are aligned with it
    /// (a distribution round reads them by position, never by search).
    partners: Vec<Partner>,
    reachable: Vec<bool>,
    /// Leads offered to or worked by each partner now.
    open: Vec<u32>,
    rules: Rules,
    state: RuleState,
    /// Enabled peers (from the configuration).
    peers: BTreeSet<String>,
    /// The rules' fixed checks per territory, for every lead of the
    /// transaction (the partners, their reachability and the rules do not
    /// change within one).
    screens: distribution::Screens,
}

fn docs_of<T: DeserializeOwned>(t: &Tables<'_>, kind: Doc) -> Result<Vec<T>, EngineError> {
    Ok(t.docs(kind)?
        .into_iter()
        .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
        .collect())
}

fn setting<T: DeserializeOwned + Default>(t: &Tables<'_>, key: &str) -> Result<T, EngineError> {
    match t.doc(Doc::Setting, key)? {
        Some(b) => decode(key, &b),
        None => Ok(T::default()),
    }
}

impl World {
    fn read(a: &Act<'_, '_>, peers: BTreeSet<String>) -> Result<World, EngineError> {
        let mut partners: Vec<Partner> = docs_of(a.tables, Doc::Partner)?;
        partners.sort_by(|a, b| a.id.cmp(&b.id));
        // Reachable: an enabled peer daemon, else an enabled web user (by
        // the partner-user index, never every account).
        let mut reachable = Vec::with_capacity(partners.len());
        for p in &partners {
            reachable.push(
                p.peer.as_ref().is_some_and(|peer| peers.contains(peer))
                    || crate::accounts::has_enabled_user(a.tables, &p.id)?,
            );
        }
        // Open offers per partner, from the index (never every record).
        let by_partner = index::open_by_partner(a.tables)?;
        let open = partners
            .iter()
            .map(|p| by_partner.get(&p.id).copied().unwrap_or(0))
            .collect();
        Ok(World {
            partners,
            reachable,
            open,
            rules: setting(a.tables, RULES_KEY)?,
            state: setting(a.tables, RULE_STATE_KEY)?,
            peers,
            screens: distribution::Screens::default(),
        })
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.partners
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
    }

    fn partner(&self, id: &str) -> Option<&Partner> {
        self.position(id).map(|i| &self.partners[i])
    }

    fn is_reachable(&self, id: &str) -> bool {
        self.position(id).is_some_and(|i| self.reachable[i])
    }

    /// Changes the number of open leads of `id` by one up or down.
    fn count_open(&mut self, id: &str, up: bool) {
        if let Some(i) = self.position(id) {
            self.open[i] = if up {
                self.open[i].saturating_add(1)
            } else {
                self.open[i].saturating_sub(1)
            };
        }
    }

    /// The peer to send to, if the partner has an enabled daemon.
    fn peer_of(&self, p: &Partner) -> Option<String> {
        p.peer.clone().filter(|peer| self.peers.contains(peer))
    }
}

/// Sends the offer of `doc` to `partner` (checked by the caller) and
/// records it on the document.
fn offer_to(
    a: &mut Act<'_, '_>,
    world: &mut World,
    doc: &mut LeadDoc,
    partner: &str,
    manual: bool,
    by: &str,
) -> Result<Result<(), Refusal>, EngineError> {
    let Some(p) = world.partner(partner).cloned() else {
        return Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            format!("no partner {partner:?} in the directory"),
        )));
    };
    let accept_by = a.now + i64::from(world.rules.offer_hours) * 3_600_000;
    let subject = format!("{}.{}", doc.id, doc.offers.len() + 1);
    let Ok(record_id) = subject.parse::<RecordId>() else {
        return Err(EngineError::Corrupt(format!("lead subject {subject:?}")));
    };
    let i = &doc.input;
    let message = Message::LeadOffer(LeadOffer {
        customer: i.customer.clone(),
        country: i.country.clone(),
        region: i.region.clone(),
        product_lines: i.product_lines.clone(),
        estimated_value: i.estimated_value.clone(),
        source: i.source.clone(),
        campaign: i.campaign.clone(),
        notes: i.notes.clone(),
        accept_by,
    });
    let key = match world.peer_of(&p) {
        Some(peer) => {
            let Ok(node) = peer.parse::<NodeId>() else {
                return Err(EngineError::Corrupt(format!("peer id {peer:?}")));
            };
            if let Err(refused) = a.send(&node, &record_id, &message)? {
                return Ok(Err(refused));
            }
            peer
        }
        None => {
            let Ok(node) = p.id.parse::<NodeId>() else {
                return Err(EngineError::Corrupt(format!("partner id {:?}", p.id)));
            };
            let key = web_key(&p.id);
            let me = a.me().clone();
            if let Err(refused) = a.apply_local(&key, &subject, &me, &node, &message)? {
                return Ok(Err(refused));
            }
            key
        }
    };
    doc.offers.push(OfferRef {
        partner: p.id.clone(),
        key,
        subject,
        offered_at: a.now,
        accept_by,
        manual,
        by: by.to_string(),
    });
    world.count_open(&p.id, true);
    doc.hold = None;
    Ok(Ok(()))
}

/// Runs the rules for `doc` and offers it to the chosen partner, or puts it
/// on hold. Records the round either way.
fn distribute(
    a: &mut Act<'_, '_>,
    world: &mut World,
    doc: &mut LeadDoc,
) -> Result<(), EngineError> {
    let exclude: BTreeSet<String> = doc.offers.iter().map(|o| o.partner.clone()).collect();
    let candidates: Vec<Candidate<'_>> = world
        .partners
        .iter()
        .zip(&world.open)
        .zip(&world.reachable)
        .map(|((p, open), reachable)| Candidate {
            partner: p,
            open_leads: *open,
            reachable: *reachable,
        })
        .collect();
    let choice = distribution::choose(
        &doc.input,
        &candidates,
        &world.rules,
        &world.state,
        &exclude,
        &mut world.screens,
    );
    doc.rounds.push(Round {
        at: a.now,
        by: "rules".into(),
        trace: choice.trace,
        partner: choice.chosen.as_ref().map(|(p, _)| p.clone()),
    });
    match choice.chosen {
        Some((partner, rule)) => {
            if let Err(refused) = offer_to(a, world, doc, &partner, false, "rules")? {
                // Only an envelope over 1 MiB gets here; keep the lead for staff.
                tracing::warn!(lead = %doc.id, "offer to {partner} refused: {refused}");
                doc.hold = Some(Hold::Nobody);
            } else {
                world.state.chose(&rule, &partner);
            }
        }
        None => {
            doc.hold = Some(if doc.input.consent {
                Hold::Nobody
            } else {
                Hold::NoConsent
            })
        }
    }
    Ok(())
}

fn save(a: &mut Act<'_, '_>, doc: &LeadDoc) -> Result<(), EngineError> {
    a.tables.put_doc(Doc::Lead, &doc.id, &encode(doc)?)?;
    index::refresh_doc(a.tables, &doc.id, Some(doc))
}

fn save_state(a: &mut Act<'_, '_>, world: &World) -> Result<(), EngineError> {
    a.tables
        .put_doc(Doc::Setting, RULE_STATE_KEY, &encode(&world.state)?)?;
    Ok(())
}

/// Stores new leads (already checked) and distributes each, in one
/// transaction. Returns their ids.
pub async fn create(
    node: &Node,
    inputs: Vec<LeadInput>,
    by: &str,
) -> Result<Vec<String>, EngineError> {
    let peers = node
        .enabled_peers()
        .into_iter()
        .collect::<BTreeSet<String>>();
    let by = by.to_string();
    node.engine
        .act(move |a| {
            let mut world = World::read(a, peers.clone())?;
            let mut ids = Vec::with_capacity(inputs.len());
            for input in inputs.clone() {
                let mut doc = LeadDoc {
                    id: uuid::Uuid::now_v7().hyphenated().to_string(),
                    input,
                    created: a.now,
                    created_by: by.clone(),
                    offers: Vec::new(),
                    rounds: Vec::new(),
                    hold: None,
                };
                distribute(a, &mut world, &mut doc)?;
                save(a, &doc)?;
                ids.push(doc.id);
            }
            save_state(a, &world)?;
            Ok(ids)
        })
        .await
}

fn current_offer(a: &Act<'_, '_>, doc: &LeadDoc) -> Result<Option<(OfferRef, Lead)>, EngineError> {
    let Some(offer) = doc.offers.last() else {
        return Ok(None);
    };
    match a.record(&offer.key, &offer.subject)? {
        Some(Record::Lead(l)) => Ok(Some((offer.clone(), l))),
        _ => Ok(None),
    }
}

/// The offer `subject` is now kept under `to` instead of `from` (a web
/// partner's record handed to its node, SPEC §25): the lead's document
/// follows, so its offers still name where each record is.
pub fn offer_moved(
    t: &mut Tables<'_>,
    subject: &str,
    from: &str,
    to: &str,
) -> Result<(), EngineError> {
    let Some((id, _)) = subject.rsplit_once('.') else {
        return Ok(());
    };
    let Some(mut doc) = t
        .doc(Doc::Lead, id)?
        .map(|b| decode::<LeadDoc>("lead", &b))
        .transpose()?
    else {
        return Ok(());
    };
    let mut moved = false;
    for offer in doc
        .offers
        .iter_mut()
        .filter(|o| o.key == from && o.subject == subject)
    {
        offer.key = to.to_string();
        moved = true;
    }
    if moved {
        t.put_doc(Doc::Lead, &doc.id, &encode(&doc)?)?;
        index::refresh_doc(t, &doc.id, Some(&doc))?;
    }
    Ok(())
}

fn load_doc(a: &Act<'_, '_>, id: &str) -> Result<Option<LeadDoc>, EngineError> {
    match a.tables.doc(Doc::Lead, id)? {
        Some(b) => decode("lead", &b).map(Some),
        None => Ok(None),
    }
}

fn no_lead(id: &str) -> Refusal {
    refuse(ReasonCode::UnknownRecord, format!("no lead {id}"))
}

/// Sends a vendor message (`lead.expire`, `lead.withdraw`) on an offer.
fn vendor_message(
    a: &mut Act<'_, '_>,
    offer: &OfferRef,
    message: &Message,
) -> Result<Result<(), Refusal>, EngineError> {
    let me = a.me().clone();
    let done = match offer.key.strip_prefix("web:") {
        Some(partner) => {
            let Ok(to) = partner.parse::<NodeId>() else {
                return Err(EngineError::Corrupt(format!("partner id {partner:?}")));
            };
            a.apply_local(&offer.key, &offer.subject, &me, &to, message)?
                .map(|_| ())
        }
        None => {
            let (Ok(to), Ok(subject)) = (
                offer.key.parse::<NodeId>(),
                offer.subject.parse::<RecordId>(),
            ) else {
                return Err(EngineError::Corrupt(format!("offer {}", offer.subject)));
            };
            a.send(&to, &subject, message)?.map(|_| ())
        }
    };
    Ok(done)
}

/// Offers the lead to `partner` by hand, overriding the rules (not consent,
/// and not an offer still open: withdraw it first).
pub async fn assign(
    node: &Node,
    id: &str,
    partner: &str,
    by: &str,
) -> Result<Result<(), Refusal>, EngineError> {
    let peers = node
        .enabled_peers()
        .into_iter()
        .collect::<BTreeSet<String>>();
    let (id, partner, by) = (id.to_string(), partner.to_string(), by.to_string());
    node.engine
        .act(move |a| {
            let Some(mut doc) = load_doc(a, &id)? else {
                return Ok(Err(no_lead(&id)));
            };
            if !doc.input.consent {
                return Ok(Err(refuse(
                    ReasonCode::NotAllowed,
                    "the end customer did not consent to sharing; the lead cannot be offered",
                )));
            }
            if let Some((_, l)) = current_offer(a, &doc)?
                && l.status.is_open()
            {
                return Ok(Err(refuse(
                    ReasonCode::IllegalTransition,
                    format!(
                        "the lead is {} with {}; withdraw it before offering it again",
                        l.status.as_str(),
                        doc.offers.last().map_or("", |o| o.partner.as_str())
                    ),
                )));
            }
            let mut world = World::read(a, peers.clone())?;
            if !world.is_reachable(&partner) {
                return Ok(Err(refuse(
                    ReasonCode::NotAllowed,
                    format!(
                        "partner {partner:?} cannot receive leads: it needs a connected daemon or a web user"
                    ),
                )));
            }
            let step = TraceStep {
                code: "manual".into(),
                partner: Some(partner.clone()),
                detail: by.clone(),
            };
            if let Err(refused) = offer_to(a, &mut world, &mut doc, &partner, true, &by)? {
                return Ok(Err(refused));
            }
            doc.rounds.push(Round {
                at: a.now,
                by: by.clone(),
                trace: vec![step],
                partner: Some(partner.clone()),
            });
            save(a, &doc)?;
            Ok(Ok(()))
        })
        .await
}

/// Takes the lead back from the partner holding it; the partner is told.
pub async fn withdraw(
    node: &Node,
    id: &str,
    reason: &str,
    by: &str,
) -> Result<Result<(), Refusal>, EngineError> {
    let (id, reason, by) = (id.to_string(), reason.trim().to_string(), by.to_string());
    node.engine
        .act(move |a| {
            let Some(mut doc) = load_doc(a, &id)? else {
                return Ok(Err(no_lead(&id)));
            };
            let Some((offer, l)) = current_offer(a, &doc)? else {
                return Ok(Err(refuse(
                    ReasonCode::IllegalTransition,
                    "the lead is not with any partner",
                )));
            };
            if !l.status.is_open() {
                return Ok(Err(refuse(
                    ReasonCode::IllegalTransition,
                    format!(
                        "the lead is {}; only an open lead can be withdrawn",
                        l.status.as_str()
                    ),
                )));
            }
            let reason = if reason.is_empty() {
                "withdrawn by the vendor".to_string()
            } else {
                reason.clone()
            };
            let message = match message(
                "lead.withdraw",
                serde_json::json!({"reason": reason, "note": format!("by {by}")}),
            ) {
                Ok(m) => m,
                Err(refused) => return Ok(Err(refused)),
            };
            if let Err(refused) = vendor_message(a, &offer, &message)? {
                return Ok(Err(refused));
            }
            doc.hold = Some(Hold::Withdrawn);
            save(a, &doc)?;
            Ok(Ok(()))
        })
        .await
}

/// Leads whose current offer needs the sweeper now (lapsed, declined or
/// expired, and not on hold), and the earliest time after which another
/// offer will have lapsed. A read-only pre-check, repeated in the
/// transaction.
/// Leads the sweeper handles in one transaction at most.
const SWEEP_BATCH: usize = 1000;

fn needs_sweep(l: &Lead, now: Millis) -> bool {
    match l.status {
        LeadStatus::Offered => now > l.offer.accept_by + EXPIRY_GRACE_MS,
        LeadStatus::Declined | LeadStatus::Expired => true,
        _ => false,
    }
}

/// Expires lapsed offers and re-offers declined or expired leads to the next
/// eligible partner. Returns how many leads it moved and the time after
/// which the next open offer lapses (nothing to do before then unless a lead
/// record changes).
pub async fn sweep(node: &Node) -> Result<(usize, Option<Millis>), EngineError> {
    let (ids, next) = index::due(&node.store.read()?, crate::clock::now_ms(), SWEEP_BATCH)?;
    if ids.is_empty() {
        return Ok((0, next));
    }
    let peers = node
        .enabled_peers()
        .into_iter()
        .collect::<BTreeSet<String>>();
    node.engine
        .act(move |a| {
            let mut world = World::read(a, peers.clone())?;
            let mut moved = 0;
            for id in ids.clone() {
                let Some(mut doc) = load_doc(a, &id)? else {
                    continue;
                };
                let Some((offer, l)) = current_offer(a, &doc)? else {
                    continue;
                };
                if doc.hold.is_some() || !needs_sweep(&l, a.now) {
                    continue;
                }
                if l.status == LeadStatus::Offered {
                    let expire = Message::LeadExpire(LeadExpire {
                        note: "not accepted in time".into(),
                    });
                    if let Err(refused) = vendor_message(a, &offer, &expire)? {
                        tracing::warn!(lead = %id, "expiry refused: {refused}");
                        continue;
                    }
                    world.count_open(&offer.partner, false);
                }
                distribute(a, &mut world, &mut doc)?;
                save(a, &doc)?;
                moved += 1;
            }
            save_state(a, &world)?;
            Ok(moved)
        })
        .await
        // Offers just made lapse later; the next scan (their records
        // changed) finds the new earliest deadline.
        .map(|moved| (moved, Some(Millis::MIN)))
}

/// Runs [`sweep`] until the node stops: each second it checks, cheaply,
/// whether a lead record changed or the earliest open offer lapsed, and only
/// then scans the leads; after a full batch it goes on at once.
pub async fn run_sweeper(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let mut scanned_at_version = None;
    let mut quiet_until = Millis::MIN;
    let mut more = false;
    loop {
        if more {
            if stop.is_cancelled() {
                return;
            }
            tokio::task::yield_now().await;
        } else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
        more = false;
        // The previous round is finished.
        node.ticks
            .lead_sweeper
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version = node.engine.records_version("lead");
        if scanned_at_version == Some(version) && crate::clock::now_ms() <= quiet_until {
            continue;
        }
        scanned_at_version = Some(version);
        match sweep(&node).await {
            Ok((moved, next)) => {
                quiet_until = next.unwrap_or(Millis::MAX);
                more = moved >= SWEEP_BATCH;
                if moved > 0 {
                    tracing::info!("lead sweeper: {moved} lead(s) expired or re-offered");
                }
            }
            Err(e) => {
                scanned_at_version = None;
                if !node.engine.storage_failed() {
                    tracing::error!("lead sweeper: {e}");
                }
            }
        }
    }
}

/// Stores new distribution rules (checked by the caller).
pub async fn save_rules(node: &Node, rules: Rules) -> Result<(), EngineError> {
    node.engine
        .local(move |t| {
            t.put_doc(Doc::Setting, RULES_KEY, &encode(&rules)?)?;
            Ok(())
        })
        .await
}

// ------------------------------------------------------ partner answers

/// Builds a message from a kind and a JSON body with the wire's own checks,
/// so every channel reports a bad field the same way.
pub fn message(kind: &str, body: serde_json::Value) -> Result<Message, Refusal> {
    crate::engine::decode_message(kind, &body)
}

/// Sends the partner's answer or progress (`lead.accept`, `lead.decline`,
/// `lead.update`) on an incoming lead: over federation to the vendor's
/// daemon, or applied here for a partner user of this node.
pub async fn respond(
    node: &Node,
    user: &User,
    vendor: &str,
    subject: &str,
    message: Message,
) -> Result<Result<(), Refusal>, EngineError> {
    if !matches!(
        message,
        Message::LeadAccept(_) | Message::LeadDecline(_) | Message::LeadUpdate(_)
    ) {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("{} is not a partner's answer to a lead", message.kind()),
        )));
    }
    let me = node.identity.id.clone();
    let found = incoming_one(&node.store.read()?, user, &me, vendor, subject)?;
    let Some(found) = found else {
        return Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            "no such lead offered to you",
        )));
    };
    send_as_partner(node, user, &found.key, subject, message).await
}

/// Sends `message` as the partner on the record (`key`, `subject`).
async fn send_as_partner(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    message: Message,
) -> Result<Result<(), Refusal>, EngineError> {
    match (&user.role, &user.partner) {
        (Role::Partner, Some(org)) => {
            let Ok(from) = org.parse::<NodeId>() else {
                return Ok(Err(refuse(ReasonCode::NotAllowed, "organization id")));
            };
            let (key, subject) = (key.to_string(), subject.to_string());
            node.engine
                .act(move |a| {
                    let me = a.me().clone();
                    Ok(a.apply_local(&key, &subject, &from, &me, &message)?
                        .map(|_| ()))
                })
                .await
        }
        (Role::Partner, None) => Ok(Err(refuse(ReasonCode::NotAllowed, "no organization"))),
        _ => node.send_to_peer(key, subject, message).await,
    }
}

// -------------------------------------------------- deal registrations

/// A registration with where it is kept.
pub struct RegistrationView {
    pub key: String,
    pub subject: String,
    pub reg: Registration,
}

fn registration_visible(
    user: &User,
    me: &NodeId,
    key: &str,
    reg: &Registration,
    as_vendor: bool,
) -> bool {
    match (as_vendor, &user.role, &user.partner) {
        (true, Role::Partner, _) => false,
        (true, _, _) => &reg.vendor == me,
        (false, Role::Partner, Some(org)) => key == web_key(org),
        (false, Role::Partner, None) => false,
        (false, _, _) => !key.starts_with("web:") && &reg.partner == me,
    }
}

/// One page of registrations, newest first: those this node decides as the
/// vendor (`as_vendor`), or those the user's organization filed (partner
/// users: on this node; staff: with other vendors' daemons).
pub fn registrations_page(
    read: &Read,
    user: &User,
    me: &NodeId,
    as_vendor: bool,
    before: Option<&crate::record_index::Cursor>,
    limit: usize,
) -> Result<crate::records::Page<RegistrationView>, StoreError> {
    let direction = if as_vendor {
        crate::records::Direction::Received
    } else {
        crate::records::Direction::Placed
    };
    let (records, next) =
        crate::records::page(read, user, "registration", direction, before, limit)?;
    let list = records
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Registration(reg) if registration_visible(user, me, &key, &reg, as_vendor) => {
                Some(RegistrationView { key, subject, reg })
            }
            _ => None,
        })
        .collect();
    Ok((list, next))
}

/// One registration (as in [`registrations_page`]), if the user may see it.
pub fn registration(
    read: &Read,
    user: &User,
    me: &NodeId,
    as_vendor: bool,
    key: &str,
    subject: &str,
) -> Result<Option<RegistrationView>, StoreError> {
    Ok(match crate::records::read_one(read, key, subject)? {
        Some(Record::Registration(reg)) if registration_visible(user, me, key, &reg, as_vendor) => {
            Some(RegistrationView {
                key: key.to_string(),
                subject: subject.to_string(),
                reg,
            })
        }
        _ => None,
    })
}

/// Files a deal registration with `vendor` (a peer id for staff; this node
/// for a partner user). Returns the record's subject.
pub async fn register(
    node: &Node,
    user: &User,
    vendor: &str,
    deal: LeadRegister,
) -> Result<Result<String, Refusal>, EngineError> {
    let message = Message::LeadRegister(deal);
    let checked = message
        .body()
        .map_err(|e| refuse(ReasonCode::BadBody, e.to_string()))
        .and_then(|b| {
            Message::decode("lead.register", &b)
                .map_err(|e| refuse(ReasonCode::BadBody, e.to_string()))
        });
    if let Err(r) = checked {
        return Ok(Err(r));
    }
    let me = node.identity.id.clone();
    let Some(key) = incoming_key(user, &me, vendor) else {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("you cannot register deals with {vendor}"),
        )));
    };
    let subject = format!("reg-{}", uuid::Uuid::now_v7().hyphenated());
    Ok(send_as_partner(node, user, &key, &subject, message)
        .await?
        .map(|()| subject))
}

/// The vendor's decision on a registration (`key` is the peer id or
/// `web:<partner>`): approve until a date, or reject with a reason.
pub async fn decide_registration(
    node: &Node,
    key: &str,
    subject: &str,
    approve: bool,
    exclusive_until: Option<String>,
    reason: Option<String>,
    note: String,
) -> Result<Result<(), Refusal>, EngineError> {
    let read = node.store.read()?;
    let reg = match read
        .record(key, subject)?
        .and_then(|b| parse_record(key, subject, &b))
    {
        Some(Record::Registration(r)) if r.vendor == node.identity.id => r,
        _ => {
            return Ok(Err(refuse(
                ReasonCode::UnknownRecord,
                "no such registration",
            )));
        }
    };
    drop(read);
    let body = serde_json::json!({
        "decision": if approve { "approved" } else { "rejected" },
        "registered_at": reg.registered_at,
        "exclusive_until": if approve { exclusive_until.map(|d| d.trim().to_string()) } else { None },
        "reason": if approve { None } else { reason.map(|r| r.trim().to_string()) },
        "note": note,
    });
    let message = match message("lead.registration", body) {
        Ok(m) => m,
        Err(r) => return Ok(Err(r)),
    };
    let offer = OfferRef {
        partner: reg.partner.to_string(),
        key: key.to_string(),
        subject: subject.to_string(),
        offered_at: 0,
        accept_by: 0,
        manual: false,
        by: String::new(),
    };
    node.engine
        .act(move |a| vendor_message(a, &offer, &message))
        .await
}

/// How many deals sharing one match key a conflict check compares (the
/// first ones, in key order).
const CONFLICT_CANDIDATES: usize = 500;

/// The other deals a registration may clash with: the vendor's open leads
/// and other approved (still exclusive) or pending registrations.
pub fn registration_conflicts(
    read: &Read,
    me: &NodeId,
    key: &str,
    subject: &str,
    reg: &Registration,
    today: &str,
) -> Result<Vec<conflicts::Conflict>, StoreError> {
    // Only deals that share a match key with this customer can clash.
    let leads: Vec<LeadView> = index::matching(read, &reg.deal.customer, CONFLICT_CANDIDATES)?
        .iter()
        .filter_map(|id| load(read, id).ok().flatten())
        .map(|d| LeadView::load(read, d))
        .collect();
    let mut others = Vec::new();
    for v in &leads {
        let open = match v.offers.last() {
            Some((_, Some(l))) => l.status.is_open() || l.status == LeadStatus::Won,
            Some((_, None)) => false,
            None => true,
        } && v.doc.hold != Some(Hold::Withdrawn);
        if open {
            others.push(conflicts::Other {
                what: "lead",
                link: format!("/leads/{}", v.doc.id),
                label: v.doc.input.customer.company.clone(),
                customer: &v.doc.input.customer,
                product_lines: &v.doc.input.product_lines,
            });
        }
    }
    let places =
        crate::record_index::registrations_matching(read, &reg.deal.customer, CONFLICT_CANDIDATES)?;
    let regs: Vec<(String, String, Registration)> = crate::record_index::load(read, places)
        .into_iter()
        .filter_map(|(k, s, r)| match r {
            Record::Registration(r) => Some((k, s, r)),
            _ => None,
        })
        .collect();
    for (k, s, r) in &regs {
        if (k == key && s == subject) || &r.vendor != me {
            continue;
        }
        let live = match r.status {
            guanxi_protocol::state::RegistrationStatus::Approved => r
                .exclusive_until
                .as_ref()
                .is_some_and(|d| d.as_str() >= today),
            guanxi_protocol::state::RegistrationStatus::Submitted => {
                r.registered_at < reg.registered_at
            }
            guanxi_protocol::state::RegistrationStatus::Rejected => false,
        };
        if live {
            others.push(conflicts::Other {
                what: "registration",
                link: format!("/registrations/{k}/{s}"),
                label: format!("{} ({})", r.deal.customer.company, r.partner),
                customer: &r.deal.customer,
                product_lines: &r.deal.product_lines,
            });
        }
    }
    Ok(conflicts::find(
        &reg.deal.customer,
        &reg.deal.product_lines,
        &others,
    ))
}

/// Every offer as analysis counts it.
pub fn offer_facts(read: &Read) -> Result<Vec<analysis::OfferFact>, StoreError> {
    let mut facts = Vec::new();
    for doc in list(read)? {
        for offer in &doc.offers {
            if let Some(l) = offer_record(read, offer) {
                facts.push(index::offer_fact(&doc, offer, &l));
            }
        }
    }
    Ok(facts)
}
