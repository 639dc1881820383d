//! Marketing development funds: one record per budget between a vendor and a
//! partner, holding the requests, the claims and an append-only,
//! double-entry ledger. Every amount moves between two accounts, so money is
//! never created or destroyed (the balances always sum to zero):
//!
//! ```text
//! funding → available   allocate, top up           (mdf.budget)
//! available → reserved  request approved           (mdf.decision)
//! reserved → claimed    claim filed                (mdf.claim)
//! claimed → approved    claim approved (in part)   (mdf.claim_decision)
//! claimed → reserved    the part not approved goes back to the reservation
//! approved → paid       payment                    (mdf.paid)
//! available → expired   end of period              (mdf.budget expire)
//! ```
//! Balances are derived from the entries; `mdf.checkpoint` compares a peer's
//! entry hashes with the same prefix of ours and is refused at the first
//! difference.

use super::{Context, StateError, record_exists, require_sender, unknown_record};
use crate::crypto::Sha256Hash;
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{BudgetAction, MdfClaim, MdfClaimVerdict, MdfRequest, MdfVerdict, Message};
use crate::money::{self, Currency};
use crate::reason::ReasonCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A ledger account of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    Funding,
    Available,
    Reserved,
    Claimed,
    Approved,
    Paid,
    Expired,
}

impl Account {
    pub const ALL: [Account; 7] = [
        Account::Funding,
        Account::Available,
        Account::Reserved,
        Account::Claimed,
        Account::Approved,
        Account::Paid,
        Account::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Account::Funding => "funding",
            Account::Available => "available",
            Account::Reserved => "reserved",
            Account::Claimed => "claimed",
            Account::Approved => "approved",
            Account::Paid => "paid",
            Account::Expired => "expired",
        }
    }
}

/// One ledger entry: `amount` (> 0, minor units) moves `from` → `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, ... in order.
    pub n: i64,
    pub at: Millis,
    pub kind: String,
    /// The request or claim id it concerns, or the period.
    pub reference: String,
    pub from: Account,
    pub to: Account,
    pub amount: i64,
}

impl Entry {
    /// SHA-256 of the entry's canonical JSON (lowercase hex).
    pub fn hash(&self) -> String {
        crate::canonical::to_canonical(self)
            .map(|bytes| Sha256Hash::of(&bytes).to_string())
            .unwrap_or_default()
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Submitted,
    Approved,
    Rejected,
}

/// A request and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    pub request: MdfRequest,
    pub status: RequestStatus,
    pub approved: i64,
    pub reason: String,
}

/// Where a claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Submitted,
    Approved,
    Partial,
    Rejected,
    Paid,
}

/// A claim and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimState {
    pub claim: MdfClaim,
    pub status: ClaimStatus,
    pub approved: i64,
    pub paid: i64,
    pub reason: String,
}

/// A budget as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdfBudgetRecord {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub currency: Currency,
    pub period: String,
    pub allow_overdraw: bool,
    pub expires_on: Option<crate::money::Date>,
    pub expired: bool,
    pub requests: Vec<RequestState>,
    pub claims: Vec<ClaimState>,
    pub entries: Vec<Entry>,
    /// Per account, derived from the entries (kept for reading; checked by
    /// [`MdfBudgetRecord::verify`]).
    pub balances: BTreeMap<String, i64>,
}

/// Balances computed from `entries`; an error when a sum leaves ±(2^53−1).
pub fn balances_of(entries: &[Entry]) -> Result<BTreeMap<String, i64>, money::Overflow> {
    let mut b: BTreeMap<String, i64> = Account::ALL
        .iter()
        .map(|a| (a.as_str().to_string(), 0))
        .collect();
    for e in entries {
        let from = b.entry(e.from.as_str().to_string()).or_insert(0);
        *from = money::add(*from, -e.amount)?;
        let to = b.entry(e.to.as_str().to_string()).or_insert(0);
        *to = money::add(*to, e.amount)?;
    }
    Ok(b)
}

impl MdfBudgetRecord {
    /// Who the budget waits for, if anyone: `vendor` while a request or a
    /// claim waits for its decision or an approved claim for its payment;
    /// else `partner` while an approved request has no claim yet.
    pub fn waiting_for(&self) -> Option<&'static str> {
        let vendor = self
            .requests
            .iter()
            .any(|r| r.status == RequestStatus::Submitted)
            || self.claims.iter().any(|c| {
                c.status == ClaimStatus::Submitted
                    || matches!(c.status, ClaimStatus::Approved | ClaimStatus::Partial)
                        && c.paid < c.approved
            });
        if vendor {
            return Some("vendor");
        }
        let partner = self.requests.iter().any(|r| {
            r.status == RequestStatus::Approved
                && !self
                    .claims
                    .iter()
                    .any(|c| c.claim.request == r.request.request)
        });
        partner.then_some("partner")
    }

    pub fn balance(&self, a: Account) -> i64 {
        self.balances.get(a.as_str()).copied().unwrap_or(0)
    }

    /// Differences between the stored balances and those recomputed from the
    /// entries, and whether the entries keep money whole (sum zero, amounts
    /// positive, numbered in order). Empty when the ledger is sound.
    pub fn verify(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.n != i as i64 + 1 {
                problems.push(format!("entry {} is numbered {}", i + 1, e.n));
            }
            if e.amount <= 0 {
                problems.push(format!("entry {} moves {}", e.n, e.amount));
            }
        }
        match balances_of(&self.entries) {
            Ok(computed) => {
                for a in Account::ALL {
                    let stored = self.balance(a);
                    let derived = computed.get(a.as_str()).copied().unwrap_or(0);
                    if stored != derived {
                        problems.push(format!(
                            "{}: stored {stored}, entries give {derived}",
                            a.as_str()
                        ));
                    }
                }
                let sum: i128 = computed.values().map(|v| i128::from(*v)).sum();
                if sum != 0 {
                    problems.push(format!("the balances sum to {sum}, not 0"));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        problems
    }

    /// The hashes of the entries, in order.
    pub fn entry_hashes(&self) -> Vec<String> {
        self.entries.iter().map(Entry::hash).collect()
    }

    fn post(
        &mut self,
        at: Millis,
        kind: &str,
        reference: &str,
        from: Account,
        to: Account,
        amount: i64,
    ) -> Result<(), StateError> {
        if amount == 0 {
            return Ok(());
        }
        self.entries.push(Entry {
            n: self.entries.len() as i64 + 1,
            at,
            kind: kind.to_string(),
            reference: reference.to_string(),
            from,
            to,
            amount,
        });
        self.balances = balances_of(&self.entries).map_err(|_| {
            StateError::new(
                ReasonCode::InvalidAmount,
                format!("{kind}: a balance would leave ±(2^53−1)"),
            )
        })?;
        Ok(())
    }
}

fn bad(message: String) -> StateError {
    StateError::new(ReasonCode::BadBody, message)
}

pub(super) fn apply(
    current: Option<&MdfBudgetRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<MdfBudgetRecord, StateError> {
    let kind = message.kind();
    let Some(budget) = current else {
        return match message {
            Message::MdfBudget(b) if b.action == BudgetAction::Allocate => {
                let mut r = MdfBudgetRecord {
                    vendor: ctx.from.clone(),
                    partner: ctx.to.clone(),
                    currency: b.currency.clone(),
                    period: b.period.clone(),
                    allow_overdraw: b.allow_overdraw,
                    expires_on: b.expires_on.clone(),
                    expired: false,
                    requests: Vec::new(),
                    claims: Vec::new(),
                    entries: Vec::new(),
                    balances: BTreeMap::new(),
                };
                r.post(
                    ctx.at,
                    kind,
                    &b.period,
                    Account::Funding,
                    Account::Available,
                    b.amount,
                )?;
                Ok(r)
            }
            Message::MdfBudget(_) => Err(StateError::illegal(
                "mdf.budget: a budget opens with allocate",
            )),
            _ => Err(unknown_record(kind)),
        };
    };
    let mut next = budget.clone();
    let closed =
        |what: &str| StateError::illegal(format!("{kind}: the budget has expired; {what}"));
    match message {
        Message::MdfBudget(b) => {
            require_sender(ctx, &budget.vendor, "vendor", kind)?;
            if b.currency != budget.currency {
                return Err(bad(format!(
                    "{kind}: the budget is in {}, not {}",
                    budget.currency, b.currency
                )));
            }
            match b.action {
                BudgetAction::Allocate => return Err(record_exists(kind)),
                BudgetAction::TopUp => {
                    if budget.expired {
                        return Err(closed("it cannot be topped up"));
                    }
                    next.allow_overdraw = b.allow_overdraw;
                    if b.expires_on.is_some() {
                        next.expires_on = b.expires_on.clone();
                    }
                    next.post(
                        ctx.at,
                        kind,
                        &b.period,
                        Account::Funding,
                        Account::Available,
                        b.amount,
                    )?;
                }
                BudgetAction::Expire => {
                    if budget.expired {
                        return Err(StateError::illegal(
                            "mdf.budget: the budget has already expired",
                        ));
                    }
                    next.expired = true;
                    let left = budget.balance(Account::Available).max(0);
                    next.post(
                        ctx.at,
                        kind,
                        &b.period,
                        Account::Available,
                        Account::Expired,
                        left,
                    )?;
                }
            }
        }
        Message::MdfRequest(r) => {
            require_sender(ctx, &budget.partner, "partner", kind)?;
            if budget.expired {
                return Err(closed("no new requests"));
            }
            if budget
                .requests
                .iter()
                .any(|x| x.request.request == r.request)
            {
                return Err(bad(format!(
                    "{kind}: request {:?} already exists",
                    r.request
                )));
            }
            if r.expected_cost.currency != budget.currency {
                return Err(bad(format!(
                    "{kind}: the budget is in {}, the request in {}",
                    budget.currency, r.expected_cost.currency
                )));
            }
            next.requests.push(RequestState {
                request: r.clone(),
                status: RequestStatus::Submitted,
                approved: 0,
                reason: String::new(),
            });
        }
        Message::MdfDecision(d) => {
            require_sender(ctx, &budget.vendor, "vendor", kind)?;
            let Some(i) = budget
                .requests
                .iter()
                .position(|x| x.request.request == d.request)
            else {
                return Err(unknown_record(kind));
            };
            let req = &budget.requests[i];
            if req.status != RequestStatus::Submitted {
                return Err(StateError::illegal(format!(
                    "{kind}: request {:?} was already decided",
                    d.request
                )));
            }
            if d.decision == MdfVerdict::Approved {
                if budget.expired {
                    return Err(closed("nothing more can be reserved"));
                }
                if d.amount > req.request.expected_cost.amount {
                    return Err(bad(format!(
                        "{kind}: approves {}, more than the expected cost {}",
                        d.amount, req.request.expected_cost.amount
                    )));
                }
                if !budget.allow_overdraw && d.amount > budget.balance(Account::Available) {
                    return Err(StateError::new(
                        ReasonCode::InvalidAmount,
                        format!(
                            "{kind}: approving {} would overdraw the budget ({} available)",
                            d.amount,
                            budget.balance(Account::Available)
                        ),
                    ));
                }
                next.post(
                    ctx.at,
                    kind,
                    &d.request,
                    Account::Available,
                    Account::Reserved,
                    d.amount,
                )?;
            }
            let r = &mut next.requests[i];
            r.status = match d.decision {
                MdfVerdict::Approved => RequestStatus::Approved,
                MdfVerdict::Rejected => RequestStatus::Rejected,
            };
            r.approved = d.amount;
            r.reason = d.reason.clone();
        }
        Message::MdfClaim(c) => {
            require_sender(ctx, &budget.partner, "partner", kind)?;
            let Some(req) = budget
                .requests
                .iter()
                .find(|x| x.request.request == c.request)
            else {
                return Err(bad(format!(
                    "{kind}: no request {:?} in this budget",
                    c.request
                )));
            };
            if req.status != RequestStatus::Approved {
                return Err(StateError::illegal(format!(
                    "{kind}: request {:?} is not approved",
                    c.request
                )));
            }
            if c.amount.currency != budget.currency {
                return Err(bad(format!(
                    "{kind}: the budget is in {}, the claim in {}",
                    budget.currency, c.amount.currency
                )));
            }
            if budget.claims.iter().any(|x| x.claim.claim == c.claim) {
                return Err(bad(format!("{kind}: claim {:?} already exists", c.claim)));
            }
            if budget
                .claims
                .iter()
                .any(|x| x.claim.invoice_number == c.invoice_number)
            {
                return Err(bad(format!(
                    "{kind}: invoice {:?} was already claimed",
                    c.invoice_number
                )));
            }
            let open_claims: i64 = budget
                .claims
                .iter()
                .filter(|x| x.claim.request == c.request)
                .map(|x| match x.status {
                    ClaimStatus::Submitted => x.claim.amount.amount,
                    ClaimStatus::Rejected => 0,
                    _ => x.approved,
                })
                .sum();
            let left = req.approved - open_claims;
            if c.amount.amount > left {
                return Err(StateError::new(
                    ReasonCode::InvalidAmount,
                    format!(
                        "{kind}: claims {}, only {left} of the approved {} is left to claim",
                        c.amount.amount, req.approved
                    ),
                ));
            }
            next.post(
                ctx.at,
                kind,
                &c.claim,
                Account::Reserved,
                Account::Claimed,
                c.amount.amount,
            )?;
            next.claims.push(ClaimState {
                claim: c.clone(),
                status: ClaimStatus::Submitted,
                approved: 0,
                paid: 0,
                reason: String::new(),
            });
        }
        Message::MdfClaimDecision(d) => {
            require_sender(ctx, &budget.vendor, "vendor", kind)?;
            let Some(i) = budget.claims.iter().position(|x| x.claim.claim == d.claim) else {
                return Err(unknown_record(kind));
            };
            let claim = &budget.claims[i];
            if claim.status != ClaimStatus::Submitted {
                return Err(StateError::illegal(format!(
                    "{kind}: claim {:?} was already decided",
                    d.claim
                )));
            }
            let claimed = claim.claim.amount.amount;
            let ok = match d.decision {
                MdfClaimVerdict::Approved => d.amount == claimed,
                MdfClaimVerdict::Partial => d.amount < claimed,
                MdfClaimVerdict::Rejected => d.amount == 0,
            };
            if !ok {
                return Err(bad(format!(
                    "{kind}: {:?} of a claim of {claimed} cannot be {}",
                    d.decision, d.amount
                )));
            }
            next.post(
                ctx.at,
                kind,
                &d.claim,
                Account::Claimed,
                Account::Approved,
                d.amount,
            )?;
            next.post(
                ctx.at,
                kind,
                &d.claim,
                Account::Claimed,
                Account::Reserved,
                claimed - d.amount,
            )?;
            let c = &mut next.claims[i];
            c.status = match d.decision {
                MdfClaimVerdict::Approved => ClaimStatus::Approved,
                MdfClaimVerdict::Partial => ClaimStatus::Partial,
                MdfClaimVerdict::Rejected => ClaimStatus::Rejected,
            };
            c.approved = d.amount;
            c.reason = d.reason.clone();
        }
        Message::MdfPaid(p) => {
            require_sender(ctx, &budget.vendor, "vendor", kind)?;
            let Some(i) = budget.claims.iter().position(|x| x.claim.claim == p.claim) else {
                return Err(unknown_record(kind));
            };
            let claim = &budget.claims[i];
            if !matches!(claim.status, ClaimStatus::Approved | ClaimStatus::Partial) {
                return Err(StateError::illegal(format!(
                    "{kind}: claim {:?} is not approved and unpaid",
                    p.claim
                )));
            }
            if p.amount > claim.approved - claim.paid {
                return Err(StateError::new(
                    ReasonCode::InvalidAmount,
                    format!(
                        "{kind}: pays {}, only {} is approved and unpaid",
                        p.amount,
                        claim.approved - claim.paid
                    ),
                ));
            }
            next.post(
                ctx.at,
                kind,
                &p.claim,
                Account::Approved,
                Account::Paid,
                p.amount,
            )?;
            let c = &mut next.claims[i];
            c.paid += p.amount;
            if c.paid == c.approved {
                c.status = ClaimStatus::Paid;
            }
        }
        Message::MdfCheckpoint(cp) => {
            if ctx.from != budget.vendor && ctx.from != budget.partner {
                return Err(StateError::new(
                    ReasonCode::NotAllowed,
                    "mdf.checkpoint from a node that is not a party",
                ));
            }
            // The ledger is append-only and both nodes hold it in the
            // authority's order (§12.1), so a checkpoint describes a prefix
            // of the receiver's ledger: compared entry by entry up to its
            // length, with the balances of that prefix.
            let ours = budget.entry_hashes();
            let theirs = &cp.entry_hashes;
            let first = (0..theirs.len()).find(|&i| ours.get(i) != theirs.get(i));
            if let Some(i) = first {
                return Err(StateError::new(
                    ReasonCode::LedgerMismatch,
                    format!(
                        "ledgers differ from entry {}: ours {} ({} entries), theirs {} ({} entries)",
                        i + 1,
                        ours.get(i).map_or("none", String::as_str),
                        ours.len(),
                        theirs.get(i).map_or("none", String::as_str),
                        theirs.len()
                    ),
                ));
            }
            let prefix = balances_of(&budget.entries[..theirs.len()]).map_err(|_| {
                StateError::new(ReasonCode::InvalidAmount, "ledger balances overflow")
            })?;
            if cp.balances != prefix {
                return Err(StateError::new(
                    ReasonCode::LedgerMismatch,
                    format!(
                        "ledgers agree on the first {} entries but the balances differ",
                        theirs.len()
                    ),
                ));
            }
        }
        _ => {
            return Err(StateError::illegal(format!(
                "{kind} does not apply to an MDF budget"
            )));
        }
    }
    Ok(next)
}
