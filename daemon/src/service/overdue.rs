//! Running service requests by deadline, so that the staff inbox finds the
//! late ones without reading every running request: the engine keeps, with
//! every request it saves as vendor, an entry per clock still running.
//!
//! Keys in the `record_index` table (`<opened>` 16 digits):
//! - `runf␟<priority>␟<opened>␟<key>␟<subject>` → nothing: no first
//!   response yet;
//! - `runr␟<priority>␟<opened>␟<key>␟<subject>` → nothing: not resolved.
//!
//! A clock's deadline is its opening plus the priority's target, so the
//! late requests of a priority are exactly a prefix of its entries: those
//! opened before now minus the target.

use super::sla::Targets;
use crate::engine::EngineError;
use crate::record_index::Place;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::Millis;
use guanxi_protocol::messages::Priority;
use guanxi_protocol::state::{ServiceRequest, ServiceStatus};

const SEP: char = '\u{1f}';
const PRIORITIES: [Priority; 4] = [
    Priority::Urgent,
    Priority::High,
    Priority::Normal,
    Priority::Low,
];

fn name(p: Priority) -> &'static str {
    match p {
        Priority::Urgent => "urgent",
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

fn entry(clock: &str, request: &ServiceRequest, key: &str, subject: &str) -> String {
    format!(
        "{clock}{SEP}{}{SEP}{:016}{SEP}{key}{SEP}{subject}",
        name(request.request.priority),
        request.opened_at.max(0)
    )
}

/// After the engine saved `request` (this node its vendor) under `key`:
/// an entry for each of its clocks still running, none for a stopped one.
pub fn request_saved(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    request: &ServiceRequest,
) -> Result<(), EngineError> {
    let unresolved = !matches!(
        request.status,
        ServiceStatus::Resolved | ServiceStatus::Closed
    );
    for (clock, running) in [
        ("runf", unresolved && request.first_response_at.is_none()),
        ("runr", unresolved),
    ] {
        let e = entry(clock, request, key, subject);
        if running {
            if t.doc(Doc::RecordIndex, &e)?.is_none() {
                t.put_doc(Doc::RecordIndex, &e, b"")?;
            }
        } else {
            t.delete_doc(Doc::RecordIndex, &e)?;
        }
    }
    Ok(())
}

/// Up to `limit` requests whose first response or resolution is late at
/// `now` (most overdue first within each priority, urgent first), and
/// whether more are late. Reads only late entries.
pub fn late(
    read: &Read,
    targets: &Targets,
    now: Millis,
    limit: usize,
) -> Result<(Vec<Place>, bool), StoreError> {
    let mut out: Vec<Place> = Vec::new();
    let mut more = false;
    for p in PRIORITIES {
        let t = targets.for_priority(p);
        for (clock, minutes) in [
            ("runf", t.first_response_minutes),
            ("runr", t.resolution_minutes),
        ] {
            let prefix = format!("{clock}{SEP}{}{SEP}", name(p));
            let due_before = format!("{:016}", (now - minutes * 60_000).max(0));
            let page =
                read.docs_page(Doc::RecordIndex, &prefix, None, Order::Forward, limit + 1)?;
            for (k, _) in page {
                let Some(rest) = k.strip_prefix(&prefix) else {
                    continue;
                };
                let mut parts = rest.splitn(3, SEP);
                let (Some(opened), Some(key), Some(subject)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                // Late when the deadline (opened + target) has passed.
                if opened >= due_before.as_str() {
                    break;
                }
                let place = (key.to_string(), subject.to_string());
                if out.contains(&place) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(place);
            }
        }
    }
    Ok((out, more))
}
