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

/// Before the engine forgets the request kept under (`key`, `subject`).
pub fn request_removed(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    request: &ServiceRequest,
) -> Result<(), EngineError> {
    for clock in ["runf", "runr"] {
        t.delete_doc(Doc::RecordIndex, &entry(clock, request, key, subject))?;
    }
    Ok(())
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

/// Which clock an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    FirstResponse,
    Resolution,
}

/// Calls `each` with every late entry (clock, opened, key, subject),
/// priority by priority, most overdue first, until it answers `false`.
fn scan_late(
    read: &Read,
    targets: &Targets,
    now: Millis,
    mut each: impl FnMut(Clock, Millis, &str, &str) -> bool,
) -> Result<(), StoreError> {
    for p in PRIORITIES {
        let t = targets.for_priority(p);
        for (clock, tag, minutes) in [
            (Clock::FirstResponse, "runf", t.first_response_minutes),
            (Clock::Resolution, "runr", t.resolution_minutes),
        ] {
            let prefix = format!("{tag}{SEP}{}{SEP}", name(p));
            let due_before = format!("{:016}", (now - minutes * 60_000).max(0));
            let mut cursor: Option<String> = None;
            'pages: loop {
                let page = read.docs_page(
                    Doc::RecordIndex,
                    &prefix,
                    cursor.as_deref(),
                    Order::Forward,
                    500,
                )?;
                let full = page.len() == 500;
                for (k, _) in &page {
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
                        break 'pages;
                    }
                    if !each(clock, opened.parse().unwrap_or(0), key, subject) {
                        return Ok(());
                    }
                }
                cursor = page.last().map(|(k, _)| k.clone());
                if !full {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Every late clock: (which, where the request is kept, when it opened).
/// The work is the late requests, not every request.
pub fn every_late(
    read: &Read,
    targets: &Targets,
    now: Millis,
) -> Result<Vec<(Clock, String, Millis)>, StoreError> {
    let mut out = Vec::new();
    scan_late(read, targets, now, |clock, opened, key, _| {
        out.push((clock, key.to_string(), opened));
        true
    })?;
    Ok(out)
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
    scan_late(read, targets, now, |_, _, key, subject| {
        let place = (key.to_string(), subject.to_string());
        if out.contains(&place) {
            return true;
        }
        if out.len() == limit {
            more = true;
            return false;
        }
        out.push(place);
        true
    })?;
    Ok((out, more))
}
