//! Choosing partners (the seed's 選擇合適的伙伴): applications from the
//! public page, evaluated by staff with a due-diligence checklist and a
//! weighted fit score, then approved — the directory entry at stage
//! onboarding and its first web user, whose password is shown once — or
//! declined with a reason.
//!
//! Keys: `apl␟<id>` → JSON of an [`Application`] and `aplo␟<time>␟<id>`
//! (newest last) in the `library` table; `apply_settings` (settings) the
//! [`Settings`]; `apply:<address>` (throttle) how many applications came
//! from one address in the current hour.

use crate::directory::{Partner, PartnerType};
use crate::engine::EngineError;
use crate::node::Node;
use guanxi_adapters::store::{Doc, Read, StoreError};
use guanxi_protocol::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';
/// Applications one address may send in an hour.
pub const PER_HOUR: u32 = 5;
const HOUR: Millis = 3_600_000;

/// What an applicant tells about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applicant {
    pub company: String,
    pub contact: String,
    pub email: String,
    pub phone: String,
    pub country: String,
    pub region: String,
    pub territory: String,
    pub capabilities: String,
    pub references: String,
    pub website: String,
}

/// An application and where staff are with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Application {
    pub id: String,
    pub applicant: Applicant,
    pub submitted_at: Millis,
    /// `new`, `approved` or `declined`.
    pub status: String,
    /// Checklist items done; fit criteria scored 0–5.
    pub checks: Vec<String>,
    pub scores: BTreeMap<String, i64>,
    pub decided_at: Option<Millis>,
    pub decided_by: String,
    pub reason: String,
    /// The directory id it became.
    pub partner: Option<String>,
}

/// The due-diligence checklist (one item per line) and the fit criteria
/// (`<weight> <name>` per line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub checklist: String,
    pub criteria: String,
}

impl Settings {
    pub fn items(&self) -> Vec<String> {
        self.checklist
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The criteria as (weight, name); lines that are not `<weight> <name>`
    /// are refused when saved ([`parse_criteria`]).
    pub fn criteria(&self) -> Vec<(i64, String)> {
        parse_criteria(&self.criteria).unwrap_or_default()
    }
}

/// Reads criteria lines `<weight 1–100> <name>`; the error names the line.
pub fn parse_criteria(text: &str) -> Result<Vec<(i64, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (w, name) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("line {}: write the weight, then the criterion", i + 1))?;
        let w: i64 = w
            .parse()
            .ok()
            .filter(|w| (1..=100).contains(w))
            .ok_or_else(|| format!("line {}: the weight must be 1 to 100", i + 1))?;
        out.push((w, name.trim().to_string()));
    }
    Ok(out)
}

/// The weighted fit score 0–100 of `scores` (each 0–5) under `criteria`;
/// `None` without criteria.
pub fn fit(criteria: &[(i64, String)], scores: &BTreeMap<String, i64>) -> Option<i64> {
    let total: i64 = criteria.iter().map(|(w, _)| w * 5).sum();
    (total > 0).then(|| {
        let got: i64 = criteria
            .iter()
            .map(|(w, n)| w * scores.get(n).copied().unwrap_or(0).clamp(0, 5))
            .sum();
        got * 100 / total
    })
}

const SETTINGS: &str = "apply_settings";

pub fn settings(read: &Read) -> Result<Settings, StoreError> {
    Ok(read
        .doc(Doc::Setting, SETTINGS)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

pub async fn set_settings(node: &Node, s: Settings) -> Result<(), EngineError> {
    node.engine
        .local(move |t| {
            t.put_doc(Doc::Setting, SETTINGS, &json(&s)?)?;
            Ok(())
        })
        .await
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(v).map_err(|e| EngineError::Failed(e.to_string()))
}

/// Checks an application's fields: the first wrong one and why.
pub fn check(a: &Applicant) -> Result<(), (&'static str, &'static str)> {
    let long = |s: &str, max: usize| s.chars().count() > max;
    if a.company.trim().is_empty() || long(&a.company, 200) {
        return Err(("company", "apply.need_company"));
    }
    if a.contact.trim().is_empty() || long(&a.contact, 200) {
        return Err(("contact", "apply.need_contact"));
    }
    let email = a.email.trim();
    if !email.contains('@') || email.contains(char::is_whitespace) || long(email, 200) {
        return Err(("email", "apply.need_email"));
    }
    let country = a.country.trim();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(("country", "apply.need_country"));
    }
    for (name, v) in [
        ("phone", &a.phone),
        ("region", &a.region),
        ("website", &a.website),
    ] {
        if long(v, 200) {
            return Err((name, "apply.too_long"));
        }
    }
    for (name, v) in [
        ("territory", &a.territory),
        ("capabilities", &a.capabilities),
        ("references", &a.references),
    ] {
        if long(v, 5_000) {
            return Err((name, "apply.too_long"));
        }
    }
    Ok(())
}

/// Stores an application from `address` unless that address already sent
/// [`PER_HOUR`] this hour (`Ok(None)`); answers its id.
pub async fn submit(
    node: &Node,
    applicant: Applicant,
    address: String,
) -> Result<Option<String>, EngineError> {
    node.engine
        .local(move |t| {
            let now = crate::clock::now_ms();
            let key = format!("apply:{address}");
            let (start, count): (Millis, u32) = t
                .doc(Doc::Throttle, &key)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .filter(|(start, _): &(Millis, u32)| now - start < HOUR)
                .unwrap_or((now, 0));
            if count >= PER_HOUR {
                return Ok(None);
            }
            t.put_doc(Doc::Throttle, &key, &json(&(start, count + 1))?)?;
            let id = format!("A{}", &uuid::Uuid::now_v7().simple().to_string()[..16]);
            let mut a = applicant.clone();
            a.country = a.country.trim().to_ascii_uppercase();
            let app = Application {
                id: id.clone(),
                applicant: a,
                submitted_at: now,
                status: "new".into(),
                checks: Vec::new(),
                scores: BTreeMap::new(),
                decided_at: None,
                decided_by: String::new(),
                reason: String::new(),
                partner: None,
            };
            t.put_doc(Doc::Library, &format!("apl{SEP}{id}"), &json(&app)?)?;
            t.put_doc(
                Doc::Library,
                &format!("aplo{SEP}{:016}{SEP}{id}", now.max(0)),
                b"",
            )?;
            Ok(Some(id))
        })
        .await
}

pub fn load(read: &Read, id: &str) -> Result<Option<Application>, StoreError> {
    Ok(read
        .doc(Doc::Library, &format!("apl{SEP}{id}"))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Up to `limit` applications, newest first, continuing at `cursor`;
/// and the cursor of the next page.
pub fn page(
    read: &Read,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Application>, Option<String>), StoreError> {
    let (entries, next) = crate::library::newest_in(read, &[format!("aplo{SEP}")], cursor, limit)?;
    let mut out = Vec::new();
    for entry in entries {
        if let Some((_, id)) = entry.split_once(SEP)
            && let Some(a) = load(read, id)?
        {
            out.push(a);
        }
    }
    Ok((out, next))
}

async fn change(
    node: &Node,
    id: &str,
    f: impl FnOnce(&mut Application) -> Result<(), String> + Send + 'static,
) -> Result<Result<Application, String>, EngineError> {
    let id = id.to_string();
    let mut f = Some(f);
    node.engine
        .local(move |t| {
            let key = format!("apl{SEP}{id}");
            let Some(mut a): Option<Application> = t
                .doc(Doc::Library, &key)?
                .and_then(|b| serde_json::from_slice(&b).ok())
            else {
                return Ok(Err(format!("there is no application {id}")));
            };
            let Some(f) = f.take() else {
                return Ok(Err("already done".into()));
            };
            if let Err(e) = f(&mut a) {
                return Ok(Err(e));
            }
            t.put_doc(Doc::Library, &key, &json(&a)?)?;
            Ok(Ok(a))
        })
        .await
}

/// Records the checklist items done and the criteria scores.
pub async fn evaluate(
    node: &Node,
    id: &str,
    checks: Vec<String>,
    scores: BTreeMap<String, i64>,
) -> Result<Result<Application, String>, EngineError> {
    change(node, id, move |a| {
        if a.status != "new" {
            return Err(format!("the application is already {}", a.status));
        }
        a.checks = checks;
        a.scores = scores;
        Ok(())
    })
    .await
}

/// Declines an open application with a reason.
pub async fn decline(
    node: &Node,
    id: &str,
    by: &str,
    reason: &str,
) -> Result<Result<Application, String>, EngineError> {
    let (by, reason) = (by.to_string(), reason.trim().to_string());
    if reason.is_empty() {
        return Ok(Err("reason: say why".into()));
    }
    change(node, id, move |a| {
        if a.status != "new" {
            return Err(format!("the application is already {}", a.status));
        }
        a.status = "declined".into();
        a.reason = reason;
        a.decided_by = by;
        a.decided_at = Some(crate::clock::now_ms());
        Ok(())
    })
    .await
}

/// What an approval made: the partner and its first user's one-time
/// password.
pub struct Approved {
    pub partner: String,
    pub username: String,
    pub password: String,
}

/// Approves an open application: the directory entry `partner_id` (of
/// `kind` and `tier`) at stage onboarding with the applicant's contact,
/// and its first web user `username`.
pub async fn approve(
    node: &Node,
    id: &str,
    by: &str,
    partner_id: &str,
    kind: PartnerType,
    tier: &str,
    username: &str,
) -> Result<Result<Approved, String>, EngineError> {
    let Some(app) = load(&node.store.read()?, id)? else {
        return Ok(Err(format!("there is no application {id}")));
    };
    if app.status != "new" {
        return Ok(Err(format!("the application is already {}", app.status)));
    }
    let a = &app.applicant;
    let form = crate::directory::PartnerForm {
        id: partner_id.trim().to_string(),
        name: a.company.trim().to_string(),
        kind: crate::directory::TYPES
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("reseller", |(_, n)| n)
            .to_string(),
        tier: tier.trim().to_string(),
        country: a.country.clone(),
        region: a.region.trim().to_string(),
        stage: "onboarding".into(),
        peer: String::new(),
        contacts: format!(
            "{}; {}; {}",
            a.contact.trim(),
            a.email.trim(),
            a.phone.trim()
        ),
        notes: format!(
            "{}\n\n{}\n\n{}",
            a.territory.trim(),
            a.capabilities.trim(),
            a.references.trim()
        )
        .trim()
        .to_string(),
        time_zone: String::new(),
    };
    let partner: Partner = match form.validate(&node.identity.id) {
        Ok(p) => p,
        Err(errors) => {
            let e = &errors[0];
            return Ok(Err(format!(
                "{}: {}",
                e.field,
                crate::web::i18n::catalog(crate::web::i18n::Lang::En).get(e.message)
            )));
        }
    };
    let now = crate::clock::now_ms();
    if !crate::directory::save(&node.engine, partner, true, now, by).await? {
        return Ok(Err(format!("partner {partner_id} exists already")));
    }
    let password = match crate::accounts::add_user(
        &node.engine,
        username.trim(),
        a.contact.trim(),
        crate::accounts::Role::Partner,
        Some(partner_id.trim().to_string()),
        now,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("username: {e}"))),
    };
    let (pid, by) = (partner_id.trim().to_string(), by.to_string());
    let p2 = pid.clone();
    let done = change(node, id, move |a| {
        a.status = "approved".into();
        a.partner = Some(p2);
        a.decided_by = by;
        a.decided_at = Some(now);
        Ok(())
    })
    .await?;
    Ok(done.map(|_| Approved {
        partner: pid,
        username: username.trim().to_string(),
        password,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_score_weighs_each_criterion() {
        let c = parse_criteria("3 coverage\n1 references").expect("criteria");
        let scores = BTreeMap::from([("coverage".to_string(), 5), ("references".to_string(), 1)]);
        // (3 × 5 + 1 × 1) ÷ (4 × 5) = 16 ÷ 20 = 80 %.
        assert_eq!(fit(&c, &scores), Some(80));
        assert_eq!(fit(&[], &scores), None);
        assert!(parse_criteria("x coverage").unwrap_err().contains("line 1"));
    }
}
