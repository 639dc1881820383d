//! Joint goals in the web view (SPEC §19): proposed from the scorecard
//! page, each on its own page with its progress (value so far, forecast
//! at the current pace, on track or at risk), the terms on the table,
//! every step of the negotiation, and — for the side whose turn it is —
//! accept, counter-propose or decline. Staff act for this node, a
//! partner user for its organization.

use super::access::{Member, Page};
use super::form::{Fields, field};
use super::format::Locale;
use super::{Frame, redirect_with_flash};
use crate::goals::{self, Shown};
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use guanxi_protocol::Message;
use guanxi_protocol::messages::{GoalAccept, GoalCounter, GoalDecline, GoalPropose};
use guanxi_protocol::money::{Currency, Money};
use guanxi_protocol::state::StateError;
use std::sync::Arc;

/// The goal routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/goals", post(propose))
        .route("/goals/{key}/{subject}", get(page).post(answer))
}

/// A target as people type it for `metric`: money in the currency's units
/// (`1200000.50`), a time in minutes, a rate in percent, a count as is.
/// Answers the figure's own integer (minor units, milliseconds, per mille).
pub fn parse_target(metric: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    let whole = |t: &str| -> Result<i64, String> {
        t.replace(',', "")
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("target: {t:?} is not a whole number above 0"))
    };
    match metric.split_once(':') {
        Some((_, currency)) => {
            let currency: Currency = currency.parse().map_err(|e| format!("target: {e}"))?;
            let m = Money::parse_decimal(text, currency).map_err(|e| format!("target: {e}"))?;
            if m.amount <= 0 {
                return Err("target: an amount above 0".into());
            }
            Ok(m.amount)
        }
        None if metric.ends_with("_ms") => Ok(whole(text)?.saturating_mul(60_000)),
        None if metric.ends_with("_permille") => {
            let p = whole(text)?;
            if p > 100 {
                return Err("target: a percentage up to 100".into());
            }
            Ok(p * 10)
        }
        None => whole(text),
    }
}

/// A target as the form shows it back (the inverse of [`parse_target`]).
fn target_input(metric: &str, v: i64) -> String {
    match metric.split_once(':') {
        Some((_, c)) => match c.parse::<Currency>() {
            Ok(currency) => Money {
                amount: v,
                currency,
            }
            .decimal(),
            Err(_) => v.to_string(),
        },
        None if metric.ends_with("_ms") => (v / 60_000).to_string(),
        None if metric.ends_with("_permille") => (v / 10).to_string(),
        None => v.to_string(),
    }
}

/// A goal as a row of the scorecard page.
pub struct GoalRow {
    pub link: String,
    /// The figure's catalog key and its currency, if money.
    pub label: String,
    pub currency: String,
    pub period: String,
    pub target: String,
    pub value: String,
    pub forecast: String,
    pub state: &'static str,
    pub status: &'static str,
    /// Catalog keys of the state and the status.
    pub state_key: String,
    pub status_key: String,
    pub owner: String,
}

fn status_of(goal: &guanxi_protocol::state::goal::GoalRecord) -> &'static str {
    match goal.status {
        guanxi_protocol::state::goal::GoalStatus::Proposed => "proposed",
        guanxi_protocol::state::goal::GoalStatus::Agreed => "agreed",
        guanxi_protocol::state::goal::GoalStatus::Declined => "declined",
    }
}

impl GoalRow {
    pub fn of(loc: &Locale, s: &Shown) -> GoalRow {
        let metric = &s.goal.proposal.metric;
        let (name, currency) = metric.split_once(':').unwrap_or((metric, ""));
        GoalRow {
            link: format!("/goals/{}/{}", s.key, s.subject),
            label: format!("score.{name}"),
            currency: currency.to_string(),
            period: s.goal.proposal.period.name.clone(),
            target: super::scorecards::value_text(loc, metric, Some(s.goal.target)),
            value: super::scorecards::value_text(loc, metric, s.progress.value),
            forecast: super::scorecards::value_text(loc, metric, s.progress.forecast),
            state: s.progress.state,
            status: status_of(&s.goal),
            state_key: format!("goal.state_{}", s.progress.state),
            status_key: format!("goal.status_{}", status_of(&s.goal)),
            owner: s.goal.owner.clone(),
        }
    }
}

/// One step of a goal's history, for people.
pub struct Step {
    pub when: String,
    pub by: String,
    pub kind: String,
    pub target: String,
    pub note: String,
}

#[derive(Template)]
#[template(path = "goal.html")]
struct GoalPage {
    f: Frame,
    row: GoalRow,
    vendor: String,
    partner: String,
    proposed_by: String,
    note: String,
    history: Vec<Step>,
    /// The reader's turn: the forms to accept, counter or decline.
    may_answer: bool,
    /// The target on the table as the form shows it, and as the figure's
    /// integer (what an acceptance names).
    target_input: String,
    row_target_raw: i64,
    action: String,
}

async fn page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let me = node.identity.id.clone();
    let user = m.user.clone();
    let now = crate::clock::now_ms();
    let found = node
        .reading(move |r| goals::one(r, &me, &user, &key, &subject, now))
        .await?;
    let (shown, party) = m.found(found)?;
    let loc = m.loc();
    let metric = shown.goal.proposal.metric.clone();
    let history = shown
        .goal
        .history
        .iter()
        .map(|e| Step {
            when: loc.when(e.at),
            by: e.by.to_string(),
            kind: format!("goal.step_{}", e.kind.trim_start_matches("goal.")),
            target: e
                .target
                .map(|t| super::scorecards::value_text(loc, &metric, Some(t)))
                .unwrap_or_default(),
            note: e.note.clone(),
        })
        .collect();
    let page = GoalPage {
        f: m.frame(),
        vendor: shown.goal.vendor.to_string(),
        partner: shown.goal.partner.to_string(),
        proposed_by: shown.goal.proposed_by.to_string(),
        note: shown.goal.proposal.note.clone(),
        history,
        may_answer: goals::may_answer(&shown.goal, &party),
        target_input: target_input(&metric, shown.goal.target),
        row_target_raw: shown.goal.target,
        action: format!("/goals/{}/{}", shown.key, shown.subject),
        row: GoalRow::of(loc, &shown),
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

fn bad_body(message: String) -> StateError {
    StateError {
        code: guanxi_protocol::ReasonCode::BadBody,
        message,
    }
}

/// `POST /goals/{key}/{subject}`: accept, counter-propose or decline.
async fn answer(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Form(f): Form<Fields>,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let back = format!("/goals/{key}/{subject}");
    let me = node.identity.id.clone();
    let (user, k, s) = (m.user.clone(), key.clone(), subject.clone());
    let now = crate::clock::now_ms();
    let found = node
        .reading(move |r| goals::one(r, &me, &user, &k, &s, now))
        .await?;
    let (shown, party) = m.found(found)?;
    let note = field(&f, "note").trim().to_string();
    let metric = &shown.goal.proposal.metric;
    let message = match field(&f, "action") {
        "accept" => Message::GoalAccept(GoalAccept {
            // The terms this page showed: if they changed meanwhile, the
            // state machine refuses the acceptance.
            target: field(&f, "shown_target").parse().unwrap_or(-1),
            note,
        }),
        "counter" => match parse_target(metric, field(&f, "target")) {
            Ok(target) => Message::GoalCounter(GoalCounter {
                target,
                owner: field(&f, "owner").trim().to_string(),
                note,
            }),
            Err(e) => return Ok(m.refused(&bad_body(e), back)),
        },
        "decline" => Message::GoalDecline(GoalDecline { note }),
        _ => return Ok(m.refused(&bad_body("action: accept, counter or decline".into()), back)),
    };
    let result = goals::act(&node, &party, &subject, message).await;
    m.outcome(result, back, "done.goal_answered")
}

/// `POST /goals`: proposes a goal in the relationship the scorecard page
/// showed (`partner` or `vendor`, as there).
async fn propose(State(node): State<Arc<Node>>, m: Member, Form(f): Form<Fields>) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let (partner, vendor) = (
        Some(field(&f, "partner").to_string()).filter(|s| !s.is_empty()),
        Some(field(&f, "vendor").to_string()).filter(|s| !s.is_empty()),
    );
    let back = {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        if let Some(p) = &partner {
            url.append_pair("partner", p);
        }
        if let Some(v) = &vendor {
            url.append_pair("vendor", v);
        }
        format!("/scorecard?{}", url.finish())
    };
    let me = node.identity.id.clone();
    let user = m.user.clone();
    let found = node
        .reading(move |r| {
            let Some(s) =
                crate::scorecards::subject(r, &me, &user, partner.as_deref(), vendor.as_deref())?
            else {
                return Ok(None);
            };
            Ok(goals::party_of(r, &me, &user, &s)?.map(|p| (s, p)))
        })
        .await?;
    let (s, party) = m.found(found)?;
    let body = match proposal(&f, &s.vendor) {
        Ok(b) => b,
        Err(e) => return Ok(m.refused(&bad_body(e), back)),
    };
    match goals::propose(&node, &party, body).await? {
        Ok(subject) => Ok(redirect_with_flash(
            &format!("/goals/{}/{subject}", party.key),
            "done.goal_proposed",
        )),
        Err(r) => Ok(m.refused(&r, back)),
    }
}

/// The proposal a form describes; the error names the field.
fn proposal(f: &Fields, vendor: &guanxi_protocol::NodeId) -> Result<GoalPropose, String> {
    let metric = field(f, "metric").trim().to_string();
    guanxi_protocol::scorecard::check_figure(&metric).map_err(|e| format!("metric: {e}"))?;
    let period = guanxi_protocol::scorecard::Period::parse(field(f, "period"))
        .map_err(|e| format!("period: {e}"))?;
    let target = parse_target(&metric, field(f, "target"))?;
    Ok(GoalPropose {
        vendor: vendor.clone(),
        period,
        metric,
        target,
        owner: field(f, "owner").trim().to_string(),
        note: field(f, "note").trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_people_type_them() {
        assert_eq!(parse_target("won_value:TWD", "1,200,000"), Ok(120_000_000));
        assert_eq!(
            parse_target("first_response_median_ms", "90"),
            Ok(5_400_000)
        );
        assert_eq!(parse_target("win_rate_permille", "45"), Ok(450));
        assert_eq!(parse_target("leads_won", "12"), Ok(12));
        for (metric, bad) in [
            ("leads_won", "0"),
            ("leads_won", "1.5"),
            ("win_rate_permille", "120"),
            ("won_value:TWD", "-5"),
            ("won_value:JPY", "1.5"),
        ] {
            assert!(parse_target(metric, bad).is_err(), "{metric} {bad}");
        }
        assert_eq!(target_input("won_value:TWD", 120_000_000), "1200000.00");
        assert_eq!(target_input("first_response_median_ms", 5_400_000), "90");
    }
}
