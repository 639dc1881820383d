//! Web pages for marketing development funds: budgets with their balances,
//! the ledger of each, requests and claims with the forms each side may use
//! (a partner requests and claims; the vendor allocates, decides, pays and
//! reconciles), and ROI per activity for staff.

use super::access::{Member, Page, Staff};
use super::form::{Fields, field};
use super::form::{Posted, attach};
use super::format::Locale;
use super::{Frame, LIST_PAGE, ListQuery, next_link, redirect_with_flash};
use crate::accounts::Role;
use crate::engine::decode_message;
use crate::mdf::{self, BudgetView};
use crate::node::Node;
use crate::records::Direction;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use guanxi_protocol::ReasonCode;
use guanxi_protocol::money::{Currency, Money};
use guanxi_protocol::state::mdf::{Account, ClaimStatus, RequestStatus};
use serde_json::{Value, json};
use std::sync::Arc;

/// The MDF routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/mdf", get(list).post(allocate))
        .route("/mdf/{key}/{subject}", get(page).post(act))
        .layer(axum::extract::DefaultBodyLimit::max(
            super::form::BODY_LIMIT,
        ))
}

pub struct BudgetRow {
    pub link: String,
    pub partner: String,
    pub vendor: String,
    pub period: String,
    pub balances: Vec<(&'static str, String)>,
    pub sound: bool,
}

fn row(loc: &Locale, v: &BudgetView) -> BudgetRow {
    let c = &v.budget.currency;
    BudgetRow {
        link: format!("/mdf/{}/{}", v.key, v.subject),
        partner: v.partner(),
        vendor: v.budget.vendor.to_string(),
        period: v.budget.period.clone(),
        balances: [
            Account::Available,
            Account::Reserved,
            Account::Claimed,
            Account::Approved,
            Account::Paid,
            Account::Expired,
        ]
        .into_iter()
        .map(|a| (a.as_str(), loc.amount(v.budget.balance(a), c)))
        .collect(),
        sound: v.budget.verify().is_empty(),
    }
}

#[derive(Template)]
#[template(path = "mdf.html")]
struct ListPage {
    f: Frame,
    path: &'static str,
    placed: bool,
    next: Option<String>,
    rows: Vec<BudgetRow>,
    /// Staff who may allocate (the form asks for a partner id).
    allocate: bool,
    roi: Vec<mdf::Roi>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, m: Member) -> Page {
    let staff = m.staff();
    let direction = q.direction();
    let (who, me, cursor) = (m.user.clone(), node.identity.id.clone(), q.cursor());
    let (budgets, next, roi) = node
        .reading(move |r| {
            let (budgets, next) =
                mdf::budgets_page(r, &who, &me, direction, cursor.as_ref(), LIST_PAGE)?;
            // ROI of the budgets on this page (those granted by this node).
            let roi = if staff {
                mdf::roi(r, &me, &budgets)?
            } else {
                Vec::new()
            };
            Ok((budgets, next, roi))
        })
        .await?;
    let page = ListPage {
        f: m.frame(),
        path: "/mdf",
        placed: staff && direction == Direction::Placed,
        next: next_link("/mdf", direction, next),
        rows: budgets.iter().map(|v| row(m.loc(), v)).collect(),
        allocate: staff,
        roi,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// A status as its wire word (`submitted`, `approved`, …).
fn status_word(status: &impl serde::Serialize) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// An amount as a form field takes it back (`40000.00`, no currency).
fn plain_amount(minor: i64, c: &Currency) -> String {
    Money {
        amount: minor,
        currency: c.clone(),
    }
    .decimal()
}

fn money_field(f: &Fields, amount_name: &str, currency: &str) -> Result<Money, String> {
    let c: Currency = currency.to_ascii_uppercase().parse()?;
    Money::parse_decimal(field(f, amount_name), c).map_err(|e| format!("{amount_name}: {e}"))
}

async fn allocate(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let bad = |m: String| crate::mdf::Refusal {
        code: ReasonCode::BadBody,
        message: m,
    };
    let m = match money_field(&f, "amount", field(&f, "currency")) {
        Ok(m) => m,
        Err(e) => return Ok(s.refused(&bad(e), "/mdf".into())),
    };
    let action = if field(&f, "action").is_empty() {
        "allocate"
    } else {
        field(&f, "action")
    };
    let body = json!({"action": action, "amount": if action == "expire" { 0 } else { m.amount }, "currency": m.currency,
        "period": field(&f, "period"), "allow_overdraw": field(&f, "allow_overdraw") == "yes",
        "expires_on": if field(&f, "expires_on").is_empty() { Value::Null } else { json!(field(&f, "expires_on")) }, "note": field(&f, "note")});
    Ok(
        match mdf::budget(&node, field(&f, "partner"), field(&f, "budget"), body).await? {
            Ok((key, subject)) => {
                redirect_with_flash(&format!("/mdf/{key}/{subject}"), "done.mdf_budget")
            }
            Err(r) => s.refused(&r, "/mdf".into()),
        },
    )
}

/// A request for people, and whether the vendor still has to decide it.
pub struct RequestLine {
    pub id: String,
    pub activity: String,
    pub cost: String,
    /// The cost as the decision's amount field starts (all of it).
    pub cost_plain: String,
    pub status: String,
    pub approved: String,
    pub undecided: bool,
}

/// A claim for people, and what the vendor may still do with it.
pub struct ClaimLine {
    pub id: String,
    pub request: String,
    pub invoice: String,
    pub amount: String,
    /// The amount as the decision's amount field starts (all of it).
    pub amount_plain: String,
    pub status: String,
    pub approved_paid: String,
    pub files: Vec<(String, String)>,
    /// Submitted: to approve (in full or in part) or reject.
    pub undecided: bool,
    /// Approved and not paid yet: to pay, by default what is approved.
    pub payable: Option<String>,
}

/// The next id of a request (`R-<n>`) or claim (`C-<n>`) in a budget, in
/// the order they come: people never make one up. Two forms sent at the
/// same moment may meet the same id; the rules refuse the second (an id is
/// used once per budget) and nothing is counted twice.
fn next_id(prefix: &str, taken: usize) -> String {
    format!("{prefix}-{}", taken + 1)
}

#[derive(Template)]
#[template(path = "mdf_budget.html")]
struct BudgetPage {
    f: Frame,
    /// This node's requests and claims the vendor has not confirmed yet.
    pending: usize,
    action: String,
    row: BudgetRow,
    view: BudgetView,
    entries: Vec<(
        i64,
        String,
        String,
        String,
        &'static str,
        &'static str,
        String,
    )>,
    requests: Vec<RequestLine>,
    claims: Vec<ClaimLine>,
    /// Approved requests a partner may claim against (ids).
    claimable: Vec<String>,
    as_vendor: bool,
    problems: Vec<String>,
}

async fn page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let loc = m.loc();
    let found = node
        .store
        .read()
        .and_then(|r| mdf::budget_view(&r, &m.user, &node.identity.id, &key, &subject))?;
    let Some(view) = found else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let b = &view.budget;
    let c = &b.currency;
    let frame = m.frame();
    // Requests and claims are the partner's; every other entry the vendor's.
    let said = |kind: &str| {
        let actor = match kind {
            "mdf.request" | "mdf.claim" => b.partner.as_str(),
            _ => b.vendor.as_str(),
        };
        frame.said(kind, actor)
    };
    let page = BudgetPage {
        f: m.frame(),
        pending: super::pending_of(&node, &key, &subject),
        action: format!("/mdf/{key}/{subject}"),
        row: row(loc, &view),
        entries: b
            .entries
            .iter()
            .map(|e| {
                (
                    e.n,
                    loc.when(e.at),
                    said(&e.kind),
                    e.reference.clone(),
                    e.from.as_str(),
                    e.to.as_str(),
                    loc.amount(e.amount, c),
                )
            })
            .collect(),
        requests: b
            .requests
            .iter()
            .map(|r| RequestLine {
                id: r.request.request.clone(),
                activity: r.request.activity.clone(),
                cost: r.request.expected_cost.to_string(),
                cost_plain: plain_amount(
                    r.request.expected_cost.amount,
                    &r.request.expected_cost.currency,
                ),
                status: status_word(&r.status),
                approved: loc.amount(r.approved, c),
                undecided: r.status == RequestStatus::Submitted,
            })
            .collect(),
        claims: b
            .claims
            .iter()
            .map(|x| ClaimLine {
                id: x.claim.claim.clone(),
                request: x.claim.request.clone(),
                invoice: x.claim.invoice_number.clone(),
                amount: x.claim.amount.to_string(),
                amount_plain: plain_amount(x.claim.amount.amount, &x.claim.amount.currency),
                status: status_word(&x.status),
                approved_paid: format!("{} / {}", loc.amount(x.approved, c), loc.amount(x.paid, c)),
                files: x
                    .claim
                    .proofs
                    .iter()
                    .map(|a| (format!("/files/{}", a.sha256), a.name.clone()))
                    .collect(),
                undecided: x.status == ClaimStatus::Submitted,
                payable: matches!(x.status, ClaimStatus::Approved | ClaimStatus::Partial)
                    .then(|| plain_amount(x.approved - x.paid, c)),
            })
            .collect(),
        claimable: b
            .requests
            .iter()
            .filter(|r| r.status == RequestStatus::Approved)
            .map(|r| r.request.request.clone())
            .collect(),
        as_vendor: m.staff() && b.vendor == node.identity.id,
        problems: b.verify(),
        view,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn act(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Posted(f, files): Posted,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let back = format!("/mdf/{key}/{subject}");
    let bad = |m: String| crate::mdf::Refusal {
        code: ReasonCode::BadBody,
        message: m,
    };
    let currency = field(&f, "currency");
    let minor = |name: &str| money_field(&f, name, currency).map(|m| m.amount);
    // Ids of new requests and claims are made here, never typed (the
    // budget is read only for the actions that make one).
    let counts = if matches!(field(&f, "action"), "request" | "claim") {
        node.store
            .read()
            .and_then(|r| mdf::budget_view(&r, &m.user, &node.identity.id, &key, &subject))?
            .map_or((0, 0), |v| (v.budget.requests.len(), v.budget.claims.len()))
    } else {
        (0, 0)
    };
    let given = |name: &str, prefix: &str, taken: usize| match field(&f, name) {
        "" => next_id(prefix, taken),
        id => id.to_string(),
    };
    let (kind, body): (&str, Value) = match field(&f, "action") {
        "checkpoint" => {
            let result = mdf::checkpoint(&node, &key, &subject).await;
            return m.outcome(result, back, "mdf.checkpoint_sent");
        }
        "request" => match money_field(&f, "expected_cost", currency) {
            Ok(cost) => (
                "mdf.request",
                json!({"request": given("request", "R", counts.0), "activity": field(&f, "activity"),
                "starts_on": field(&f, "starts_on"), "ends_on": field(&f, "ends_on"), "expected_cost": cost,
                "expected_leads": field(&f, "expected_leads").parse::<i64>().unwrap_or(0), "expected_revenue": null, "campaign": field(&f, "campaign")}),
            ),
            Err(e) => return Ok(m.refused(&bad(e), back)),
        },
        "decide" => match minor("amount") {
            Ok(a) => {
                let approve = field(&f, "decision") == "approved";
                (
                    "mdf.decision",
                    json!({"request": field(&f, "request"), "decision": field(&f, "decision"), "amount": if approve { a } else { 0 }, "reason": field(&f, "reason")}),
                )
            }
            Err(e) => return Ok(m.refused(&bad(e), back)),
        },
        "claim" => {
            let proofs = match attach(&node, &m.user, files).await? {
                Ok(p) => p,
                Err(r) => return Ok(m.refused(&r, back)),
            };
            match money_field(&f, "amount", currency) {
                Ok(amount) => (
                    "mdf.claim",
                    json!({"claim": given("claim", "C", counts.1), "request": field(&f, "request"), "amount": amount,
                    "invoice_number": field(&f, "invoice_number"), "invoice_date": field(&f, "invoice_date"), "proofs": proofs}),
                ),
                Err(e) => return Ok(m.refused(&bad(e), back)),
            }
        }
        "claim_decision" => match minor("amount") {
            Ok(a) => (
                "mdf.claim_decision",
                json!({"claim": field(&f, "claim"), "decision": field(&f, "decision"),
                "amount": if field(&f, "decision") == "rejected" { 0 } else { a }, "reason": field(&f, "reason")}),
            ),
            Err(e) => return Ok(m.refused(&bad(e), back)),
        },
        "paid" => match minor("amount") {
            Ok(a) => (
                "mdf.paid",
                json!({"claim": field(&f, "claim"), "amount": a, "reference": field(&f, "reference"), "paid_on": field(&f, "paid_on")}),
            ),
            Err(e) => return Ok(m.refused(&bad(e), back)),
        },
        other => return Ok(m.refused(&bad(format!("action {other:?}")), back)),
    };
    let message = match decode_message(kind, &body) {
        Ok(message) => message,
        Err(r) => return Ok(m.refused(&r, back)),
    };
    let flash = super::access::done_flash(message.kind());
    let result = mdf::act(&node, &m.user, &key, &subject, message).await;
    m.outcome(result, back, flash)
}

/// What the MDF part of the inbox shows staff: ledgers that a peer's
/// checkpoint found different, in either direction.
pub fn inbox_items(
    read: &guanxi_adapters::store::Read,
    user: &crate::accounts::User,
) -> Vec<super::format::InboxItem> {
    use crate::record_index::{self as index, SHOWN, Side};
    // Budgets waiting for someone, from the index by status: the vendor's
    // decisions and payments, the partner's claims for approved requests.
    let waiting = |side: Side, status: &str, key: Option<&str>| {
        let (found, more) =
            index::find(read, "mdf", side, status, key, None, SHOWN).unwrap_or_default();
        let names = found
            .into_iter()
            .map(|(k, s)| {
                let label = k.strip_prefix("web:").unwrap_or(&k).to_string();
                (format!("{label} · {s}"), format!("/mdf/{k}/{s}"))
            })
            .collect::<Vec<_>>();
        (names, more)
    };
    let mut items = Vec::new();
    if user.role == Role::Partner {
        let key = user.partner.as_deref().map(crate::records::web_key);
        let (names, more) = waiting(Side::Own, "waiting_partner", key.as_deref());
        if !names.is_empty() {
            items.push(super::format::linked("home.mdf_to_claim", names, more));
        }
        return items;
    }
    let (names, more) = waiting(Side::Own, "waiting_vendor", None);
    if !names.is_empty() {
        items.push(super::format::linked("home.mdf_to_decide", names, more));
    }
    let (names, more) = waiting(Side::Peer, "waiting_partner", None);
    if !names.is_empty() {
        items.push(super::format::linked("home.mdf_to_claim", names, more));
    }
    let mut found: Vec<String> = Vec::new();
    for (peer, seq, code) in read
        .in_rejected()
        .unwrap_or_default()
        .into_iter()
        .chain(read.out_rejected().unwrap_or_default())
    {
        if code == "ledger_mismatch" {
            found.push(format!("{peer} #{seq}"));
        }
    }
    if !found.is_empty() {
        items.push(super::format::plain(
            "home.ledger_mismatch",
            found.join(", "),
        ));
    }
    items
}
