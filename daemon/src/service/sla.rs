//! Service level targets and clocks. Targets (first response, resolution)
//! are set per priority and kept in the store; a request's clock is computed
//! from its record's times and "now", so it survives restarts and needs no
//! timer. Integers only: minutes and milliseconds.

use guanxi_protocol::Millis;
use guanxi_protocol::messages::Priority;
use guanxi_protocol::state::{ServiceRequest, ServiceStatus};
use serde::{Deserialize, Serialize};

/// Targets for one priority, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub first_response_minutes: i64,
    pub resolution_minutes: i64,
}

/// Targets per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    pub urgent: Target,
    pub high: Target,
    pub normal: Target,
    pub low: Target,
}

impl Default for Targets {
    fn default() -> Self {
        let t = |first_response_minutes, resolution_minutes| Target {
            first_response_minutes,
            resolution_minutes,
        };
        Targets {
            urgent: t(60, 8 * 60),
            high: t(4 * 60, 24 * 60),
            normal: t(8 * 60, 3 * 24 * 60),
            low: t(24 * 60, 7 * 24 * 60),
        }
    }
}

impl Targets {
    pub fn for_priority(&self, p: Priority) -> Target {
        match p {
            Priority::Urgent => self.urgent,
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }

    /// Every problem, as (field, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (name, t) in [
            ("urgent", self.urgent),
            ("high", self.high),
            ("normal", self.normal),
            ("low", self.low),
        ] {
            for (field, v) in [
                ("first_response_minutes", t.first_response_minutes),
                ("resolution_minutes", t.resolution_minutes),
            ] {
                if !(1..=525_600).contains(&v) {
                    errors.push((
                        format!("{name}.{field}"),
                        "must be 1 to 525600 minutes".into(),
                    ));
                }
            }
            if t.resolution_minutes < t.first_response_minutes {
                errors.push((
                    format!("{name}.resolution_minutes"),
                    "must not be shorter than the first response".into(),
                ));
            }
        }
        errors
    }
}

/// A request's service level clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Clock {
    pub first_response_due: Millis,
    pub resolution_due: Millis,
    /// The first response came late, or is late now.
    pub first_response_breached: bool,
    /// Resolution came late, or is late now.
    pub resolution_breached: bool,
    /// Milliseconds to the next deadline still running (negative when
    /// overdue); `None` when both clocks stopped. Queues sort by it.
    pub remaining: Option<i64>,
}

/// The clock of `request` at `now`. The resolution clock stops at
/// `resolved`; reopening restarts it from the original opening.
pub fn clock(request: &ServiceRequest, targets: &Targets, now: Millis) -> Clock {
    let t = targets.for_priority(request.request.priority);
    let first_response_due = request.opened_at + t.first_response_minutes * 60_000;
    let resolution_due = request.opened_at + t.resolution_minutes * 60_000;
    let responded = request.first_response_at;
    let resolved = match request.status {
        ServiceStatus::Resolved | ServiceStatus::Closed => {
            request.resolved_at.or(request.closed_at)
        }
        _ => None,
    };
    let first_response_breached = responded.unwrap_or(now) > first_response_due;
    let resolution_breached = resolved.unwrap_or(now) > resolution_due;
    let remaining = match (responded, resolved) {
        (_, Some(_)) => None,
        (None, None) => Some(first_response_due.min(resolution_due) - now),
        (Some(_), None) => Some(resolution_due - now),
    };
    Clock {
        first_response_due,
        resolution_due,
        first_response_breached,
        resolution_breached,
        remaining,
    }
}
