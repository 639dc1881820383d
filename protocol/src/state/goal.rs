//! The joint goal record: a target for a scorecard figure over a period
//! that a vendor and a partner agree on (SPEC §19).
//!
//! ```text
//! goal.propose (either) → proposed ─goal.counter (the other side)→ proposed (by it)
//!                          proposed ─goal.accept (the other side, naming the target)→ agreed
//!                          proposed ─goal.decline (the other side)→ declined
//! ```
//! The proposal names the record's vendor, its authority (one of the two
//! nodes). Only the side that did not make the current proposal answers
//! it; an acceptance names the target it accepts, so an acceptance that
//! crosses a counter-proposal is refused instead of agreeing to terms its
//! sender never saw.

use super::{Context, StateError};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{GoalPropose, Message};
use serde::{Deserialize, Serialize};

/// Where a goal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalStatus {
    Proposed,
    Agreed,
    Declined,
}

/// One step of a goal's negotiation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalEvent {
    pub at: Millis,
    pub by: NodeId,
    pub kind: String,
    pub target: Option<i64>,
    pub note: String,
}

/// A goal as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalRecord {
    pub vendor: NodeId,
    pub partner: NodeId,
    /// The first proposal (its period and figure never change).
    pub proposal: GoalPropose,
    /// The terms on the table, and who put them there.
    pub target: i64,
    pub owner: String,
    pub proposed_by: NodeId,
    pub status: GoalStatus,
    pub opened_at: Millis,
    pub agreed_at: Option<Millis>,
    pub history: Vec<GoalEvent>,
}

fn event(ctx: &Context, kind: &str, target: Option<i64>, note: &str) -> GoalEvent {
    GoalEvent {
        at: ctx.at,
        by: ctx.from.clone(),
        kind: kind.to_string(),
        target,
        note: note.to_string(),
    }
}

pub(super) fn apply(
    current: Option<&GoalRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<GoalRecord, StateError> {
    let kind = message.kind();
    let Some(goal) = current else {
        let Message::GoalPropose(p) = message else {
            return Err(super::unknown_record(kind));
        };
        if p.vendor != ctx.from && p.vendor != ctx.to {
            return Err(StateError::new(
                crate::reason::ReasonCode::BadBody,
                "goal.propose: body.vendor must be one of the two nodes",
            ));
        }
        let partner = if p.vendor == ctx.from {
            ctx.to.clone()
        } else {
            ctx.from.clone()
        };
        return Ok(GoalRecord {
            vendor: p.vendor.clone(),
            partner,
            proposal: p.clone(),
            target: p.target,
            owner: p.owner.clone(),
            proposed_by: ctx.from.clone(),
            status: GoalStatus::Proposed,
            opened_at: ctx.at,
            agreed_at: None,
            history: vec![event(ctx, kind, Some(p.target), &p.note)],
        });
    };
    if matches!(message, Message::GoalPropose(_)) {
        return Err(super::record_exists(kind));
    }
    if ctx.from != goal.vendor && ctx.from != goal.partner {
        return Err(StateError::new(
            crate::reason::ReasonCode::NotAllowed,
            format!("{kind}: only the goal's two sides act on it"),
        ));
    }
    if goal.status != GoalStatus::Proposed {
        return Err(StateError::illegal(format!(
            "{kind}: the goal is already {}",
            if goal.status == GoalStatus::Agreed {
                "agreed"
            } else {
                "declined"
            }
        )));
    }
    if ctx.from == goal.proposed_by {
        return Err(StateError::illegal(format!(
            "{kind}: the other side answers a proposal, not the side that made it"
        )));
    }
    let mut next = goal.clone();
    match message {
        Message::GoalCounter(c) => {
            next.target = c.target;
            next.owner = c.owner.clone();
            next.proposed_by = ctx.from.clone();
            next.history.push(event(ctx, kind, Some(c.target), &c.note));
        }
        Message::GoalAccept(a) => {
            if a.target != goal.target {
                return Err(StateError::illegal(format!(
                    "goal.accept: the target on the table is {}, not {}",
                    goal.target, a.target
                )));
            }
            next.status = GoalStatus::Agreed;
            next.agreed_at = Some(ctx.at);
            next.history.push(event(ctx, kind, Some(a.target), &a.note));
        }
        Message::GoalDecline(d) => {
            next.status = GoalStatus::Declined;
            next.history.push(event(ctx, kind, None, &d.note));
        }
        _ => {
            return Err(StateError::illegal(format!(
                "{kind} does not apply to a goal"
            )));
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Record, apply as apply_any};

    fn ctx(from: &str, to: &str, at: Millis) -> Context {
        Context {
            from: from.parse().expect("id"),
            to: to.parse().expect("id"),
            at,
        }
    }

    fn decode(kind: &str, body: serde_json::Value) -> Message {
        Message::decode(kind, &body).expect("a valid body")
    }

    fn goal(r: Option<Record>) -> GoalRecord {
        match r {
            Some(Record::Goal(g)) => g,
            other => panic!("not a goal: {other:?}"),
        }
    }

    #[test]
    fn a_goal_is_negotiated_in_turns() {
        let period = crate::scorecard::Period::parse("2027-Q1").expect("period");
        let propose = decode(
            "goal.propose",
            serde_json::json!({"vendor": "acme", "period": period, "metric": "won_value:TWD",
                "target": 5_000_000, "owner": "Mei", "note": "Q1 push"}),
        );
        // The partner proposes; the vendor is the authority.
        let g = goal(apply_any(None, &ctx("globex", "acme", 1), &propose).expect("opens"));
        assert_eq!((g.vendor.as_str(), g.partner.as_str()), ("acme", "globex"));
        let again = decode(
            "goal.accept",
            serde_json::json!({"target": 5_000_000, "note": ""}),
        );
        let r = Some(Record::Goal(g.clone()));
        let own =
            apply_any(r.as_ref(), &ctx("globex", "acme", 2), &again).expect_err("own proposal");
        assert_eq!(own.code, crate::reason::ReasonCode::IllegalTransition);
        // The vendor counters; an acceptance of the old target is refused.
        let counter = decode(
            "goal.counter",
            serde_json::json!({"target": 4_000_000, "owner": "Mei", "note": "realistic"}),
        );
        let g = goal(apply_any(r.as_ref(), &ctx("acme", "globex", 3), &counter).expect("counter"));
        let r = Some(Record::Goal(g));
        let stale = apply_any(r.as_ref(), &ctx("globex", "acme", 4), &again).expect_err("stale");
        assert!(stale.message.contains("4000000"), "{}", stale.message);
        let accept = decode(
            "goal.accept",
            serde_json::json!({"target": 4_000_000, "note": "ok"}),
        );
        let g = goal(apply_any(r.as_ref(), &ctx("globex", "acme", 5), &accept).expect("agreed"));
        assert_eq!(
            (g.status, g.target, g.agreed_at),
            (GoalStatus::Agreed, 4_000_000, Some(5))
        );
        assert_eq!(g.history.len(), 3);
        let decline = decode("goal.decline", serde_json::json!({"note": ""}));
        let done = apply_any(Some(&Record::Goal(g)), &ctx("acme", "globex", 6), &decline)
            .expect_err("already agreed");
        assert_eq!(done.code, crate::reason::ReasonCode::IllegalTransition);
        // A proposal must name one of the two nodes as vendor, and a figure.
        let bad = serde_json::json!({"vendor": "initech", "period": period, "metric": "leads_won",
            "target": 3, "owner": "", "note": ""});
        let stranger = apply_any(
            None,
            &ctx("globex", "acme", 1),
            &decode("goal.propose", bad),
        )
        .expect_err("a third node");
        assert_eq!(stranger.code, crate::reason::ReasonCode::BadBody);
        let no_currency = serde_json::json!({"vendor": "acme", "period": period, "metric": "won_value",
            "target": 3, "owner": "", "note": ""});
        assert!(Message::decode("goal.propose", &no_currency).is_err());
    }
}
