//! Marketing development funds: budgets a vendor allocates to a partner,
//! activity requests and their pre-approval, claims with proof, approvals
//! and payments — all messages on one budget record whose double-entry
//! ledger both nodes compute the same way. Reconciliation sends signed
//! checkpoints (entry hashes and balances) that the peer compares entry by
//! entry; `guanxi ledger verify` recomputes every balance from the entries;
//! ROI relates spend to the won value of leads and orders of the activity's
//! campaign.

use crate::accounts::{Role, User};
use crate::engine::{EngineError, decode_message};
use crate::node::Node;
use crate::orders;
use crate::records::{parse_record, web_key};
use guanxi_adapters::store::{Read, StoreError};
use guanxi_protocol::messages::{BudgetAction, MdfCheckpoint, Message};
use guanxi_protocol::state::mdf::{ClaimStatus, MdfBudgetRecord};
use guanxi_protocol::state::{LeadStatus, Record, StateError};
use guanxi_protocol::{NodeId, ReasonCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A refused action, with the reason code every channel reports.
pub type Refusal = StateError;

fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    StateError {
        code,
        message: message.into(),
    }
}

/// The record subject of budget `id`.
pub fn subject_of(id: &str) -> String {
    format!("mdf-{id}")
}

/// A budget with where it is kept.
pub struct BudgetView {
    pub key: String,
    pub subject: String,
    pub budget: MdfBudgetRecord,
}

impl BudgetView {
    pub fn partner(&self) -> String {
        self.key
            .strip_prefix("web:")
            .map_or_else(|| self.budget.partner.to_string(), str::to_string)
    }
}

fn visible(user: &User, me: &NodeId, key: &str, b: &MdfBudgetRecord) -> bool {
    crate::records::visible(user, me, key, &b.vendor, &b.partner)
}

/// Every budget on `side` (for verification and reconciliation), through
/// the record index: the budgets are read, never the other records.
fn all_on(read: &Read, side: crate::record_index::Side) -> Result<Vec<BudgetView>, StoreError> {
    use crate::record_index as index;
    Ok(index::load(read, index::every(read, "mdf", side)?)
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Mdf(budget) => Some(BudgetView {
                key,
                subject,
                budget,
            }),
            _ => None,
        })
        .collect())
}

/// Every budget in the store (for verification).
fn all(read: &Read) -> Result<Vec<BudgetView>, StoreError> {
    let mut out = all_on(read, crate::record_index::Side::Own)?;
    out.extend(all_on(read, crate::record_index::Side::Peer)?);
    Ok(out)
}

/// One page of the budgets the user may see (staff: those granted as
/// vendor, or received from other vendors), by where they are kept.
pub fn budgets_page(
    read: &Read,
    user: &User,
    me: &NodeId,
    direction: crate::records::Direction,
    before: Option<&crate::record_index::Cursor>,
    limit: usize,
) -> Result<crate::records::Page<BudgetView>, StoreError> {
    let (records, next) = crate::records::page(read, user, "mdf", direction, before, limit)?;
    let list = records
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Mdf(budget) if visible(user, me, &key, &budget) => Some(BudgetView {
                key,
                subject,
                budget,
            }),
            _ => None,
        })
        .collect();
    Ok((list, next))
}

/// One budget, if the user may see it.
pub fn budget_view(
    read: &Read,
    user: &User,
    me: &NodeId,
    key: &str,
    subject: &str,
) -> Result<Option<BudgetView>, StoreError> {
    Ok(match crate::records::read_one(read, key, subject)? {
        Some(Record::Mdf(budget)) if visible(user, me, key, &budget) => Some(BudgetView {
            key: key.to_string(),
            subject: subject.to_string(),
            budget,
        }),
        _ => None,
    })
}

/// Allocates (opens), tops up or expires budget `id` for directory partner
/// `partner` (its peer daemon, or its web users).
pub async fn budget(
    node: &Node,
    partner: &str,
    id: &str,
    body: serde_json::Value,
) -> Result<Result<(String, String), Refusal>, EngineError> {
    let message = match decode_message("mdf.budget", &body) {
        Ok(m) => m,
        Err(r) => return Ok(Err(r)),
    };
    // A budget that would expire before today is a typing mistake: its
    // funds would be gone at the next sweep.
    if let Message::MdfBudget(b) = &message
        && b.action != BudgetAction::Expire
        && let (Some(expires), Some(today)) =
            (&b.expires_on, crate::orders::day_of(crate::clock::now_ms()))
        && expires.as_str() < today.as_str()
    {
        return Ok(Err(refuse(
            ReasonCode::BadBody,
            format!("body.expires_on: {expires} is in the past (today is {today})"),
        )));
    }
    let read = node.store.read()?;
    let Some(p) = crate::directory::load(&read, partner)? else {
        return Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            format!("no partner {partner:?}"),
        )));
    };
    drop(read);
    let enabled = |peer: &str| {
        node.config()
            .peers
            .iter()
            .any(|c| c.enabled && c.id.as_str() == peer)
    };
    let key = match &p.peer {
        Some(peer) if enabled(peer) => peer.clone(),
        _ => web_key(&p.id),
    };
    let subject = subject_of(id);
    Ok(
        orders::send_as(node, &node_itself(), &key, &subject, message)
            .await?
            .map(|()| (key, subject)),
    )
}

/// This node acting on its own (timers): staff rights, no person.
fn node_itself() -> User {
    User {
        username: String::new(),
        display_name: String::new(),
        role: Role::Staff,
        partner: None,
        password_hash: String::new(),
        disabled: false,
        created: 0,
        must_change_password: false,
        email: String::new(),
        time_zone: String::new(),
        language: String::new(),
        mail: crate::accounts::MailChoice::Off,
    }
}

/// Expires, at the end of their `expires_on` day (UTC), what is unused in
/// the budgets this node granted. Returns how many it expired and the
/// earliest day a budget still waits for.
pub async fn expire_due(node: &Node) -> Result<(usize, Option<String>), EngineError> {
    let Some(today) = orders::day_of(crate::clock::now_ms()) else {
        return Ok((0, None));
    };
    let list = all(&node.store.read()?)?;
    let mut expired = 0;
    let mut next: Option<String> = None;
    for v in list {
        let b = &v.budget;
        let Some(until) = &b.expires_on else { continue };
        if b.expired || b.vendor != node.identity.id {
            continue;
        }
        if until.as_str() >= today.as_str() {
            next = Some(next.map_or(until.to_string(), |n: String| n.min(until.to_string())));
            continue;
        }
        let body = serde_json::json!({"action": "expire", "amount": 0, "currency": b.currency, "period": b.period,
            "allow_overdraw": b.allow_overdraw, "expires_on": null, "note": format!("unused after {until}")});
        let message = match decode_message("mdf.budget", &body) {
            Ok(m) => m,
            Err(r) => {
                tracing::warn!("expiring {}: {r}", v.subject);
                continue;
            }
        };
        match orders::send_as(node, &node_itself(), &v.key, &v.subject, message).await? {
            Ok(()) => expired += 1,
            Err(r) => tracing::warn!("expiring {}: {r}", v.subject),
        }
    }
    Ok((expired, next))
}

/// Runs [`expire_due`] until the node stops: each second it checks, cheaply,
/// whether an MDF record changed or the day passed the earliest expiry.
pub async fn run_expiry(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let mut seen = None;
    let mut waiting_for: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // The previous round is finished.
        node.ticks
            .mdf_expiry
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version = node.engine.records_version("mdf");
        let today = orders::day_of(crate::clock::now_ms()).map(|d| d.to_string());
        let day_passed = match (&waiting_for, &today) {
            (Some(w), Some(t)) => t > w,
            _ => false,
        };
        if seen == Some(version) && !day_passed {
            continue;
        }
        seen = Some(version);
        match expire_due(&node).await {
            Ok((n, next)) => {
                waiting_for = next;
                if n > 0 {
                    tracing::info!("MDF: {n} budget(s) expired at the end of their period");
                }
            }
            Err(e) => {
                seen = None;
                if !node.engine.storage_failed() {
                    tracing::error!("MDF expiry: {e}");
                }
            }
        }
    }
}

/// Sends an MDF message on a budget the user may see, as the user's side.
pub async fn act(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    message: Message,
) -> Result<Result<(), Refusal>, EngineError> {
    if !message.kind().starts_with("mdf.") || matches!(message, Message::MdfCheckpoint(_)) {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("{} is not an MDF action", message.kind()),
        )));
    }
    let read = node.store.read()?;
    let seen = match read
        .record(key, subject)?
        .and_then(|b| parse_record(key, subject, &b))
    {
        Some(Record::Mdf(b)) => visible(user, &node.identity.id, key, &b),
        _ => false,
    };
    drop(read);
    if !seen {
        return Ok(Err(refuse(ReasonCode::UnknownRecord, "no such budget")));
    }
    if let Err(r) = crate::service::check_references(node, user, key, subject, &message)? {
        return Ok(Err(r));
    }
    if let Err(r) = crate::service::send_attachments(node, key, &message).await? {
        return Ok(Err(r));
    }
    orders::send_as(node, user, key, subject, message).await
}

/// Sends our checkpoint of the budget (`key` a peer) to the peer, which
/// compares it with its ledger; a difference comes back as a signed
/// `ledger_mismatch` naming the first differing entry.
pub async fn checkpoint(
    node: &Node,
    key: &str,
    subject: &str,
) -> Result<Result<(), Refusal>, EngineError> {
    if key.starts_with("web:") {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            "a web partner's budget lives only here; nothing to reconcile",
        )));
    }
    let (Ok(peer), Ok(id)) = (
        key.parse::<NodeId>(),
        subject.parse::<guanxi_protocol::RecordId>(),
    ) else {
        return Ok(Err(refuse(ReasonCode::UnknownRecord, "no such budget")));
    };
    if !node
        .config()
        .peers
        .iter()
        .any(|p| p.enabled && p.id == peer)
    {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("{peer} is not an enabled peer in the configuration"),
        )));
    }
    // The ledger as the authority confirmed it (SPEC §12.1): a follower's
    // own unanswered requests are not in the peer's ledger yet. Read and
    // sent in one transaction.
    node.engine
        .act(move |a| {
            let Some(Record::Mdf(b)) = a.confirmed(peer.as_str(), id.as_str())? else {
                return Ok(Err(refuse(ReasonCode::UnknownRecord, "no such budget")));
            };
            let hashes = b.entry_hashes();
            let message = Message::MdfCheckpoint(MdfCheckpoint {
                entries: hashes.len() as i64,
                entry_hashes: hashes,
                balances: b.balances.clone(),
            });
            Ok(a.send(&peer, &id, &message)?.map(|_| ()))
        })
        .await
}

/// What a ledger check found: how many budgets it read, and each one whose
/// balances differ from a recomputation from its entries.
pub type LedgerCheck = (usize, Vec<(String, String, Vec<String>)>);

/// Recomputes every budget's balances from its entries: how many budgets
/// were checked and (key, subject, problems) of each unsound one.
pub fn verify(read: &Read) -> Result<LedgerCheck, StoreError> {
    let all = all(read)?;
    let count = all.len();
    Ok((
        count,
        all.into_iter()
            .filter_map(|v| {
                let problems = v.budget.verify();
                (!problems.is_empty()).then_some((v.key, v.subject, problems))
            })
            .collect(),
    ))
}

/// Sends checkpoints of every federated budget whose ledger changed since
/// the last round, every `every`, until the node stops.
pub async fn run_reconciliation(
    node: Arc<Node>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut sent: BTreeMap<(String, String), usize> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Ok(read) = node.store.read() else {
            continue;
        };
        let Ok(list) = all_on(&read, crate::record_index::Side::Own) else {
            continue;
        };
        drop(read);
        for v in list {
            if v.key.starts_with("web:") || v.budget.vendor != node.identity.id {
                continue;
            }
            let id = (v.key.clone(), v.subject.clone());
            if sent.get(&id) == Some(&v.budget.entries.len()) {
                continue;
            }
            match checkpoint(&node, &v.key, &v.subject).await {
                Ok(Ok(())) => {
                    sent.insert(id, v.budget.entries.len());
                }
                Ok(Err(r)) => tracing::warn!("reconciling {}: {r}", v.subject),
                Err(e) if !node.engine.storage_failed() => {
                    tracing::error!("reconciling {}: {e}", v.subject)
                }
                Err(_) => {}
            }
        }
    }
}

/// Return on one activity: what was spent (approved claims) against the
/// won value of leads offered to the partner with the activity's campaign
/// and of orders that fulfil them, per currency.
#[derive(Debug, Clone, Serialize)]
pub struct Roi {
    pub partner: String,
    pub budget: String,
    pub request: String,
    pub campaign: String,
    pub currency: String,
    pub spend: i64,
    pub won_leads: BTreeMap<String, i64>,
    pub orders: BTreeMap<String, i64>,
}

/// The leads of `campaign` (none for an activity without one).
fn campaign_leads(read: &Read, campaign: &str) -> Result<Vec<crate::leads::LeadDoc>, StoreError> {
    let mut out = Vec::new();
    if campaign.is_empty() {
        return Ok(out);
    }
    let mut after: Option<String> = None;
    loop {
        let ids = crate::leads::index::of_campaign(read, campaign, after.as_deref(), 1000)?;
        for id in &ids {
            if let Some(d) = crate::leads::load(read, id)? {
                out.push(d);
            }
        }
        if ids.len() < 1000 {
            return Ok(out);
        }
        after = ids.last().cloned();
    }
}

/// Adds `amount` to the sum for `currency`; a sum beyond ±(2^53−1) is
/// left out with a warning (ROI is informational; the ledger is exact).
fn add_to(sums: &mut BTreeMap<String, i64>, currency: &str, amount: i64) {
    let e = sums.entry(currency.to_string()).or_insert(0);
    match guanxi_protocol::money::add(*e, amount) {
        Ok(v) => *e = v,
        Err(err) => tracing::warn!("ROI sum in {currency}: {err}"),
    }
}

/// ROI per activity of `budgets` (those this node granted): the work is
/// the leads of each activity's campaign, read through the campaign index.
pub fn roi(read: &Read, me: &NodeId, budgets: &[BudgetView]) -> Result<Vec<Roi>, StoreError> {
    let mut out = Vec::new();
    for v in budgets {
        if &v.budget.vendor != me {
            continue;
        }
        let partner = v.partner();
        for r in &v.budget.requests {
            let campaign = r.request.campaign.clone();
            let spend: i64 = v
                .budget
                .claims
                .iter()
                .filter(|c| c.claim.request == r.request.request)
                .filter(|c| {
                    matches!(
                        c.status,
                        ClaimStatus::Approved | ClaimStatus::Partial | ClaimStatus::Paid
                    )
                })
                .map(|c| c.approved)
                .sum();
            let mut won_leads: BTreeMap<String, i64> = BTreeMap::new();
            let mut subjects = Vec::new();
            for d in campaign_leads(read, &campaign)?
                .iter()
                .filter(|d| d.input.campaign == campaign)
            {
                for o in d.offers.iter().filter(|o| o.partner == partner) {
                    subjects.push(o.subject.clone());
                    if let Some(l) = crate::leads::offer_record(read, o)
                        && l.status == LeadStatus::Won
                        && let Some(m) = l.won_value
                    {
                        add_to(&mut won_leads, m.currency.as_str(), m.amount);
                    }
                }
            }
            let mut orders_value: BTreeMap<String, i64> = BTreeMap::new();
            for o in orders::lead_orders(read, me, &subjects)? {
                if let Ok(t) = o.order.committed_totals() {
                    add_to(&mut orders_value, o.order.currency.as_str(), t.total);
                }
            }
            out.push(Roi {
                partner: partner.clone(),
                budget: v.subject.trim_start_matches("mdf-").to_string(),
                request: r.request.request.clone(),
                campaign,
                currency: v.budget.currency.to_string(),
                spend,
                won_leads,
                orders: orders_value,
            });
        }
    }
    Ok(out)
}

/// What one budget this node granted adds to the MDF sums.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FundsCounted {
    currency: String,
    /// Everything granted: what left the funding account.
    allocated: i64,
    /// Claims approved or paid.
    used: i64,
}

fn funds_of(budget: &guanxi_protocol::state::mdf::MdfBudgetRecord) -> FundsCounted {
    use guanxi_protocol::state::mdf::Account;
    FundsCounted {
        currency: budget.currency.to_string(),
        allocated: budget.balance(Account::Funding).saturating_neg(),
        used: budget
            .balance(Account::Approved)
            .saturating_add(budget.balance(Account::Paid)),
    }
}

/// After the engine saved a budget this node granted: the sums of funds
/// allocated and used per currency (`mdfs␟<currency>` → JSON), moved by
/// what the budget counted before (`mdfc␟<key>␟<subject>`), so that the
/// dashboard reads one entry per currency, never every budget. `None`:
/// the budget is no longer kept there (handed over, SPEC §25).
pub fn budget_saved(
    t: &mut guanxi_adapters::store::Tables<'_>,
    key: &str,
    subject: &str,
    budget: Option<&guanxi_protocol::state::mdf::MdfBudgetRecord>,
) -> Result<(), EngineError> {
    use guanxi_adapters::store::Doc;
    let entry = format!("mdfc\u{1f}{key}\u{1f}{subject}");
    let before: Option<FundsCounted> = t
        .doc(Doc::RecordIndex, &entry)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let now = budget.map(funds_of);
    if before == now {
        return Ok(());
    }
    for (c, sign) in before
        .iter()
        .map(|b| (b, -1i64))
        .chain(now.iter().map(|n| (n, 1i64)))
    {
        let sum_key = format!("mdfs\u{1f}{}", c.currency);
        let mut sum: FundsCounted = t
            .doc(Doc::RecordIndex, &sum_key)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        sum.currency = c.currency.clone();
        sum.allocated = sum.allocated.saturating_add(sign * c.allocated);
        sum.used = sum.used.saturating_add(sign * c.used);
        let bytes = serde_json::to_vec(&sum).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        t.put_doc_later(Doc::RecordIndex, &sum_key, Some(bytes));
    }
    match &now {
        Some(now) => {
            let bytes = serde_json::to_vec(now).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            t.put_doc(Doc::RecordIndex, &entry, &bytes)?;
        }
        None => {
            t.delete_doc(Doc::RecordIndex, &entry)?;
        }
    }
    Ok(())
}

/// Marketing funds this node granted, per currency: (allocated, used).
pub fn funds(read: &Read) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let mut out = Vec::new();
    read.each_with_prefix(
        guanxi_adapters::store::Doc::RecordIndex,
        "mdfs\u{1f}",
        |_, bytes| {
            if let Ok(s) = serde_json::from_slice::<FundsCounted>(bytes) {
                out.push((s.currency, s.allocated, s.used));
            }
        },
    )?;
    Ok(out)
}
