//! The partner journey (the seed's 夥伴關係旅程地圖): where each partner
//! stands on the way from first contact to long-term cooperation —
//! prospect → applied → onboarding → enabled → first deal → growing →
//! strategic, with the side states at risk, dormant and ended — what each
//! stage needs (a checklist and an owner, set by staff), a timeline of
//! every change, and an overview of how many partners are at each stage
//! and how long they stay.
//!
//! A round every second ([`run`]; it works only when records changed or an
//! hour passed) moves partners forward as the facts arrive, from the
//! scorecard cells and indexes (never the records):
//! - onboarding: the partner has a web user or a daemon;
//! - enabled: and holds a valid certification;
//! - first deal: a lead won or an order invoiced, ever;
//! - growing: and at least [`Settings::growing_min`] pieces of activity
//!   (orders, leads answered, service requests, claims, survey answers,
//!   quiz attempts) in the current and two previous calendar months;
//! - at risk: after a first deal, activity in those three months under
//!   [`Settings::at_risk_percent`] of the three before; dormant: none in
//!   six months. A partner whose activity recovers goes back to growing.
//!
//! Staff may set any stage by hand (the partner form); the journey never
//! moves a partner back along the main path, and never moves one that is
//! strategic (by hand) or ended except into and out of the side states.
//!
//! Keys in the `library` table:
//! - `jr␟<partner>␟<time>` → JSON of a [`Change`] (the timeline);
//! - `jsince␟<partner>` → when its current stage began;
//! - `jsc␟<stage>` → how many partners are at it; `jsd␟<stage>` → JSON of
//!   (total ms, stays) of the stays that ended;
//! - `jdeal␟<partner>` → when a first deal was seen (kept once true);
//! - `jck␟<partner>␟<stage>` → JSON list of the checklist items done;
//! - `journey_settings` (settings) → JSON of the [`Settings`].

use crate::directory::{Partner, STAGES, Stage};
use crate::engine::EngineError;
use crate::node::Node;
use guanxi_adapters::store::{Doc, Read, Store, StoreError, Tables};
use guanxi_protocol::Millis;
use guanxi_protocol::scorecard::{Period, Scorecard, month_after, month_of};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';
const HOUR: Millis = 3_600_000;

/// The stages on the main path, in order.
pub const PATH: [Stage; 7] = [
    Stage::Prospect,
    Stage::Applied,
    Stage::Onboarding,
    Stage::Enabled,
    Stage::FirstDeal,
    Stage::Growing,
    Stage::Strategic,
];

/// A stage's wire name.
pub fn name(stage: Stage) -> &'static str {
    STAGES
        .iter()
        .find(|(s, _)| *s == stage)
        .map_or("", |(_, n)| n)
}

fn rank(stage: Stage) -> Option<usize> {
    match stage {
        // Set by hand before the journey's steps: as growing.
        Stage::Active => Some(5),
        s => PATH.iter().position(|p| *p == s),
    }
}

/// One change of a partner's stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub at: Millis,
    pub from: String,
    pub to: String,
    /// A username, or `guanxi` for the journey's own moves.
    pub by: String,
    pub reason: String,
}

/// What staff set for the journey.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Activity in three months that makes a partner with a first deal
    /// growing.
    pub growing_min: i64,
    /// Activity under this share (percent) of the three months before
    /// makes it at risk.
    pub at_risk_percent: i64,
    /// Per stage name: the checklist (one item per line) and the owner.
    pub checklists: BTreeMap<String, String>,
    pub owners: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            growing_min: 3,
            at_risk_percent: 50,
            checklists: BTreeMap::new(),
            owners: BTreeMap::new(),
        }
    }
}

const SETTINGS: &str = "journey_settings";

/// The journey settings.
pub fn settings(read: &Read) -> Result<Settings, StoreError> {
    Ok(read
        .doc(Doc::Setting, SETTINGS)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Replaces the journey settings.
pub async fn set_settings(node: &Node, s: Settings) -> Result<(), EngineError> {
    node.engine
        .local(move |t| {
            let json = serde_json::to_vec(&s).map_err(|e| EngineError::Failed(e.to_string()))?;
            t.put_doc(Doc::Setting, SETTINGS, &json)?;
            Ok(())
        })
        .await
}

/// What the journey knows of a partner at a moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub onboarded: bool,
    pub certified: bool,
    pub first_deal: bool,
    /// Activity in the current and two previous calendar months, and in
    /// the three before.
    pub recent: i64,
    pub before: i64,
}

/// Orders, leads answered, service requests, claims, survey answers and
/// quiz attempts: what a partner did.
fn activity(c: &Scorecard) -> i64 {
    (c.orders
        + c.leads_accepted
        + c.leads_declined
        + c.service_requests
        + c.warranty_claims
        + c.survey_answers
        + c.quiz_attempts) as i64
}

fn months_back(at: Millis, n: usize) -> Millis {
    let mut m = month_of(at);
    for _ in 0..n {
        m = month_of(m - 1);
    }
    m
}

fn span(from: Millis, to: Millis) -> Period {
    Period {
        name: String::new(),
        from,
        to,
    }
}

/// The facts of partner `p` at `now`, from the scorecard cells of its
/// places, its users and certifications.
pub fn facts(
    read: &Read,
    me: &guanxi_protocol::NodeId,
    p: &Partner,
    now: Millis,
) -> Result<Facts, StoreError> {
    let keys = crate::scorecards::keys_of(p);
    let onboarded = p.peer.is_some() || !crate::accounts::users_of(read, &p.id)?.is_empty();
    let mut orgs = vec![p.id.as_str()];
    orgs.extend(p.peer.as_deref());
    let (_, held) = crate::courses::standing(read, &p.tier, &orgs, now)?;
    let certified = held
        .iter()
        .any(|c| c.standing(now) == guanxi_protocol::certification::Standing::Valid);
    let this = month_after(now);
    let (m3, m6) = (months_back(now, 2), months_back(now, 5));
    let recent = activity(&crate::scorecards::compute(
        read,
        me,
        &keys,
        &span(m3, this),
    )?);
    let before = activity(&crate::scorecards::compute(read, me, &keys, &span(m6, m3))?);
    let first_deal = read
        .doc(Doc::Library, &format!("jdeal{SEP}{}", p.id))?
        .is_some()
        || {
            let all =
                crate::scorecards::compute(read, me, &keys, &span(month_of(p.created), this))?;
            all.leads_won > 0 || !all.invoiced.is_empty()
        };
    Ok(Facts {
        onboarded,
        certified,
        first_deal,
        recent,
        before,
    })
}

/// Where the facts put a partner now at `current`, and why (`None`: it
/// stays).
pub fn next_stage(current: Stage, f: &Facts, s: &Settings) -> Option<(Stage, &'static str)> {
    let reached = if f.first_deal && f.recent >= s.growing_min {
        (Stage::Growing, "journey.why_growing")
    } else if f.first_deal {
        (Stage::FirstDeal, "journey.why_first_deal")
    } else if f.onboarded && f.certified {
        (Stage::Enabled, "journey.why_enabled")
    } else if f.onboarded {
        (Stage::Onboarding, "journey.why_onboarding")
    } else {
        (Stage::Prospect, "")
    };
    let side = if !f.first_deal {
        None
    } else if f.recent == 0 && f.before == 0 {
        Some((Stage::Dormant, "journey.why_dormant"))
    } else if f.before > 0 && f.recent * 100 < f.before * s.at_risk_percent {
        Some((Stage::AtRisk, "journey.why_at_risk"))
    } else {
        None
    };
    let to = match (current, side) {
        (Stage::Ended, _) => return None,
        (_, Some(side)) => side,
        // Recovered: back on the main path where the facts put it.
        (Stage::AtRisk | Stage::Dormant, None) => reached,
        (c, None) => match (rank(c), rank(reached.0)) {
            (Some(now), Some(r)) if r > now && c != Stage::Strategic => reached,
            _ => return None,
        },
    };
    (to.0 != current).then_some(to)
}

fn time16(ms: Millis) -> String {
    format!("{:016}", ms.max(0))
}

fn count(t: &mut Tables<'_>, stage: &str, by: i64) -> Result<(), EngineError> {
    let key = format!("jsc{SEP}{stage}");
    let n: i64 = t
        .doc(Doc::Library, &key)?
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
        .unwrap_or(0);
    t.put_doc(Doc::Library, &key, (n + by).max(0).to_string().as_bytes())?;
    Ok(())
}

/// Records that partner `id` entered `stage` at `at` (a new partner:
/// `from` is `None`): the timeline, the counts, and the time spent at the
/// stage it left. The caller saves the partner.
pub fn record_change(
    t: &mut Tables<'_>,
    id: &str,
    from: Option<Stage>,
    to: Stage,
    at: Millis,
    by: &str,
    reason: &str,
) -> Result<(), EngineError> {
    if from == Some(to) {
        return Ok(());
    }
    let since_key = format!("jsince{SEP}{id}");
    if let Some(old) = from {
        count(t, name(old), -1)?;
        let since: Option<Millis> = t
            .doc(Doc::Library, &since_key)?
            .and_then(|b| String::from_utf8_lossy(&b).parse().ok());
        if let Some(since) = since {
            let key = format!("jsd{SEP}{}", name(old));
            let (total, n): (i64, i64) = t
                .doc(Doc::Library, &key)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or((0, 0));
            let json = serde_json::to_vec(&(total + (at - since).max(0), n + 1))
                .map_err(|e| EngineError::Failed(e.to_string()))?;
            t.put_doc(Doc::Library, &key, &json)?;
        }
    }
    count(t, name(to), 1)?;
    t.put_doc(Doc::Library, &since_key, at.to_string().as_bytes())?;
    let change = Change {
        at,
        from: from.map(name).unwrap_or_default().to_string(),
        to: name(to).to_string(),
        by: by.to_string(),
        reason: reason.to_string(),
    };
    let json = serde_json::to_vec(&change).map_err(|e| EngineError::Failed(e.to_string()))?;
    t.put_doc(
        Doc::Library,
        &format!("jr{SEP}{id}{SEP}{}", time16(at)),
        &json,
    )?;
    Ok(())
}

/// A partner's timeline, newest first (at most `limit`).
pub fn timeline(read: &Read, id: &str, limit: usize) -> Result<Vec<Change>, StoreError> {
    Ok(read
        .docs_page(
            Doc::Library,
            &format!("jr{SEP}{id}{SEP}"),
            None,
            guanxi_adapters::store::Order::Backward,
            limit,
        )?
        .into_iter()
        .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
        .collect())
}

/// When partner `id`'s current stage began.
pub fn since(read: &Read, id: &str) -> Result<Option<Millis>, StoreError> {
    Ok(read
        .doc(Doc::Library, &format!("jsince{SEP}{id}"))?
        .and_then(|b| String::from_utf8_lossy(&b).parse().ok()))
}

/// One stage in the overview: partners at it now, and the mean time of
/// the stays that ended (ms).
#[derive(Debug, Clone, Serialize)]
pub struct StageFigures {
    pub stage: &'static str,
    pub partners: i64,
    pub mean_stay_ms: Option<i64>,
    pub stays: i64,
}

/// Every stage's figures (a few documents, never the directory).
pub fn overview(read: &Read) -> Result<Vec<StageFigures>, StoreError> {
    let mut out = Vec::new();
    for (_, stage) in STAGES {
        let partners = read
            .doc(Doc::Library, &format!("jsc{SEP}{stage}"))?
            .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
            .unwrap_or(0);
        let (total, n): (i64, i64) = read
            .doc(Doc::Library, &format!("jsd{SEP}{stage}"))?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or((0, 0));
        out.push(StageFigures {
            stage,
            partners,
            mean_stay_ms: (n > 0).then(|| total / n),
            stays: n,
        });
    }
    Ok(out)
}

/// The checklist items of `stage` done for partner `id`.
pub fn done(read: &Read, id: &str, stage: &str) -> Result<Vec<String>, StoreError> {
    Ok(read
        .doc(Doc::Library, &format!("jck{SEP}{id}{SEP}{stage}"))?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Replaces the checklist items of `stage` done for partner `id`.
pub async fn set_done(
    node: &Node,
    id: String,
    stage: String,
    items: Vec<String>,
) -> Result<(), EngineError> {
    node.engine
        .local(move |t| {
            let json =
                serde_json::to_vec(&items).map_err(|e| EngineError::Failed(e.to_string()))?;
            t.put_doc(Doc::Library, &format!("jck{SEP}{id}{SEP}{stage}"), &json)?;
            Ok(())
        })
        .await
}

/// One round: every partner whose facts put it elsewhere moves, with its
/// reason on the timeline. Reads the directory a page at a time and, per
/// partner, a few cells; writes only the partners that move.
pub async fn round(node: &Node) -> Result<usize, EngineError> {
    let now = crate::clock::now_ms();
    let me = node.identity.id.clone();
    let moves = node
        .reading(move |r| {
            let s = settings(r)?;
            let mut moves = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let (list, next) = crate::directory::page(r, after.as_deref(), 500)?;
                for p in list {
                    let f = facts(r, &me, &p, now)?;
                    // A first deal is written down once.
                    let deal = f.first_deal
                        && r.doc(Doc::Library, &format!("jdeal{SEP}{}", p.id))?
                            .is_none();
                    if let Some((to, why)) = next_stage(p.stage, &f, &s) {
                        moves.push((p.id.clone(), p.stage, to, why, deal));
                    } else if deal {
                        moves.push((p.id.clone(), p.stage, p.stage, "", deal));
                    }
                }
                match next {
                    Some(n) => after = Some(n),
                    None => return Ok(moves),
                }
            }
        })
        .await?;
    if moves.iter().all(|(_, from, to, ..)| from == to) && moves.iter().all(|m| !m.4) {
        return Ok(0);
    }
    let moved = moves.iter().filter(|(_, from, to, ..)| from != to).count();
    node.engine
        .local(move |t| {
            for (id, from, to, why, deal) in &moves {
                if *deal {
                    let key = format!("jdeal{SEP}{id}");
                    if t.doc(Doc::Library, &key)?.is_none() {
                        t.put_doc(Doc::Library, &key, now.to_string().as_bytes())?;
                    }
                }
                if from == to {
                    continue;
                }
                // The partner as it is now: staff may have changed it.
                let Some(mut p): Option<Partner> = t
                    .doc(Doc::Partner, id)?
                    .and_then(|b| serde_json::from_slice(&b).ok())
                else {
                    continue;
                };
                if p.stage != *from {
                    continue;
                }
                record_change(t, id, Some(*from), *to, now, "guanxi", why)?;
                p.stage = *to;
                p.updated = now;
                let json =
                    serde_json::to_vec(&p).map_err(|e| EngineError::Failed(e.to_string()))?;
                t.put_doc(Doc::Partner, id, &json)?;
            }
            Ok(())
        })
        .await?;
    Ok(moved)
}

/// Runs [`round`] until the node stops: each second it checks whether a
/// record changed or an hour passed on the node's clock, and only then
/// looks at the partners.
pub async fn run(node: std::sync::Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let families = ["lead", "order", "service", "warranty", "quiz", "survey"];
    let mut seen: Option<u64> = None;
    let mut last = Millis::MIN;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        node.ticks
            .journey
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version: u64 = families
            .iter()
            .map(|f| node.engine.records_version(f))
            .sum();
        let now = crate::clock::now_ms();
        if seen == Some(version) && now < last.saturating_add(HOUR) {
            continue;
        }
        seen = Some(version);
        last = now;
        match round(&node).await {
            Ok(n) if n > 0 => tracing::info!("journey: {n} partner(s) moved"),
            Ok(_) => {}
            Err(e) => {
                seen = None;
                if !node.engine.storage_failed() {
                    tracing::error!("journey: {e}");
                }
            }
        }
    }
}

const BUILT: &str = "index:journey";

/// Counts the partners of a store made before the journey at their
/// stages, once (`guanxi serve` runs it at start).
pub fn ensure_built(store: &Store) -> Result<usize, EngineError> {
    if store.read()?.doc(Doc::Setting, BUILT)?.is_some() {
        return Ok(0);
    }
    let mut after: Option<String> = None;
    let mut done = 0;
    loop {
        let (list, next) = crate::directory::page(&store.read()?, after.as_deref(), 500)?;
        let last = next.is_none();
        done += list.len();
        store.transact(|t| -> Result<(), EngineError> {
            for p in &list {
                if t.doc(Doc::Library, &format!("jsince{SEP}{}", p.id))?
                    .is_none()
                {
                    count(t, name(p.stage), 1)?;
                    t.put_doc(
                        Doc::Library,
                        &format!("jsince{SEP}{}", p.id),
                        p.updated.to_string().as_bytes(),
                    )?;
                }
            }
            if last {
                t.put_doc(Doc::Setting, BUILT, b"1")?;
            }
            Ok(())
        })?;
        match next {
            Some(n) => after = Some(n),
            None => return Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners_move_forward_as_facts_arrive_and_aside_when_activity_falls() {
        let s = Settings::default();
        let mut f = Facts::default();
        assert_eq!(next_stage(Stage::Prospect, &f, &s), None);
        f.onboarded = true;
        assert_eq!(
            next_stage(Stage::Applied, &f, &s).map(|x| x.0),
            Some(Stage::Onboarding)
        );
        f.certified = true;
        assert_eq!(
            next_stage(Stage::Onboarding, &f, &s).map(|x| x.0),
            Some(Stage::Enabled)
        );
        f.first_deal = true;
        f.recent = 1;
        assert_eq!(
            next_stage(Stage::Enabled, &f, &s).map(|x| x.0),
            Some(Stage::FirstDeal)
        );
        f.recent = 3;
        assert_eq!(
            next_stage(Stage::FirstDeal, &f, &s).map(|x| x.0),
            Some(Stage::Growing)
        );
        assert_eq!(next_stage(Stage::Growing, &f, &s), None);
        assert_eq!(
            next_stage(Stage::Strategic, &f, &s),
            None,
            "never back down the path"
        );
        // Activity under half of the three months before: at risk.
        f.before = 10;
        f.recent = 4;
        assert_eq!(
            next_stage(Stage::Growing, &f, &s).map(|x| x.0),
            Some(Stage::AtRisk)
        );
        assert_eq!(
            next_stage(Stage::Strategic, &f, &s).map(|x| x.0),
            Some(Stage::AtRisk)
        );
        f.recent = 6;
        assert_eq!(
            next_stage(Stage::AtRisk, &f, &s).map(|x| x.0),
            Some(Stage::Growing),
            "recovered"
        );
        f.recent = 0;
        f.before = 0;
        assert_eq!(
            next_stage(Stage::Growing, &f, &s).map(|x| x.0),
            Some(Stage::Dormant)
        );
        assert_eq!(next_stage(Stage::Ended, &f, &s), None);
    }
}
