//! The partner journey in the web view (`crate::journey`): a partner's
//! stage, time at it, the stage's checklist and owner, and its timeline on
//! the partner page; the overview of every stage (a funnel, the mean time
//! partners stay, where they stall); and the journey's settings.

use super::access::{Page, Staff};
use super::form::{Fields, field};
use super::format::Locale;
use super::{Frame, redirect_with_flash};
use crate::directory::{Partner, STAGES};
use crate::journey;
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use guanxi_adapters::store::{Read, StoreError};
use guanxi_protocol::Millis;
use std::sync::Arc;

/// The journey routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/journey", get(overview))
        .route("/journey/settings", get(settings_form).post(save_settings))
        .route("/partners/{id}/journey", post(save_checklist))
}

/// One change on a partner's timeline, for people.
pub struct Step {
    pub when: String,
    pub from: String,
    pub to: String,
    pub by: String,
    pub why: String,
}

/// The journey section of a partner page.
pub struct JourneyView {
    pub stage: String,
    /// How long it has been at its stage, in words.
    pub for_how_long: String,
    pub owner: String,
    /// (item, done)
    pub checklist: Vec<(String, bool)>,
    pub timeline: Vec<Step>,
}

/// The journey of partner `p` at `now`.
pub fn view(
    read: &Read,
    loc: &Locale,
    p: &Partner,
    now: Millis,
) -> Result<JourneyView, StoreError> {
    let s = journey::settings(read)?;
    let stage = journey::name(p.stage);
    let done = journey::done(read, &p.id, stage)?;
    let checklist = s
        .checklists
        .get(stage)
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| (l.to_string(), done.iter().any(|d| d == l)))
                .collect()
        })
        .unwrap_or_default();
    let timeline = journey::timeline(read, &p.id, 20)?
        .into_iter()
        .map(|c| Step {
            when: loc.when(c.at),
            from: if c.from.is_empty() {
                String::new()
            } else {
                format!("stage.{}", c.from)
            },
            to: format!("stage.{}", c.to),
            by: c.by,
            why: c.reason,
        })
        .collect();
    Ok(JourneyView {
        stage: format!("stage.{stage}"),
        for_how_long: journey::since(read, &p.id)?
            .map(|at| loc.duration((now - at).max(0)))
            .unwrap_or_default(),
        owner: s.owners.get(stage).cloned().unwrap_or_default(),
        checklist,
        timeline,
    })
}

/// `POST /partners/{id}/journey`: the checklist items done at its stage.
async fn save_checklist(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    s: Staff,
    Form(f): Form<Fields>,
) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let i = id.clone();
    let found = node
        .reading(move |r| {
            let Some(p) = crate::directory::load(r, &i)? else {
                return Ok(None);
            };
            let stage = journey::name(p.stage).to_string();
            let items: Vec<String> = journey::settings(r)?
                .checklists
                .get(&stage)
                .map(|t| {
                    t.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Ok(Some((stage, items)))
        })
        .await?;
    let (stage, items) = s.found(found)?;
    let done: Vec<String> = items
        .into_iter()
        .enumerate()
        .filter(|(n, _)| field(&f, &format!("item{n}")) == "yes")
        .map(|(_, item)| item)
        .collect();
    journey::set_done(&node, id.clone(), stage, done).await?;
    Ok(redirect_with_flash(
        &format!("/partners/{id}"),
        "done.checklist_saved",
    ))
}

/// A stage's line in the overview.
pub struct StageLine {
    pub key: String,
    pub partners: i64,
    pub mean_stay: String,
    pub stays: i64,
    pub stall: bool,
}

#[derive(Template)]
#[template(path = "journey.html")]
struct OverviewPage {
    f: Frame,
    lines: Vec<StageLine>,
    chart: super::chart::Chart,
}

async fn overview(State(node): State<Arc<Node>>, s: Staff) -> Page {
    let figures = node.reading(journey::overview).await?;
    let loc = s.loc();
    // Where partners stall: the main-path stage with the longest mean stay.
    let stall = figures
        .iter()
        .filter(|x| journey::PATH.iter().any(|p| journey::name(*p) == x.stage))
        .filter_map(|x| x.mean_stay_ms.map(|m| (m, x.stage)))
        .max()
        .map(|(_, s)| s);
    let lines = figures
        .iter()
        .map(|x| StageLine {
            key: format!("stage.{}", x.stage),
            partners: x.partners,
            mean_stay: x
                .mean_stay_ms
                .map(|m| loc.duration(m))
                .unwrap_or_else(|| "–".into()),
            stays: x.stays,
            stall: stall == Some(x.stage),
        })
        .collect();
    let chart = super::chart::bars(
        loc.t().get("journey.funnel"),
        figures
            .iter()
            .map(|x| {
                (
                    loc.t().get(format!("stage.{}", x.stage)),
                    x.partners,
                    loc.number(x.partners),
                )
            })
            .collect(),
    );
    let page = OverviewPage {
        f: s.frame(),
        lines,
        chart,
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "journey_settings.html")]
struct SettingsPage {
    f: Frame,
    growing_min: i64,
    at_risk_percent: i64,
    /// (stage name, its catalog key, checklist text, owner)
    stages: Vec<(&'static str, String, String, String)>,
}

async fn settings_form(State(node): State<Arc<Node>>, s: Staff) -> Page {
    let set = node.reading(journey::settings).await?;
    let page = SettingsPage {
        f: s.frame(),
        growing_min: set.growing_min,
        at_risk_percent: set.at_risk_percent,
        stages: STAGES
            .iter()
            .map(|(_, n)| {
                (
                    *n,
                    format!("stage.{n}"),
                    set.checklists.get(*n).cloned().unwrap_or_default(),
                    set.owners.get(*n).cloned().unwrap_or_default(),
                )
            })
            .collect(),
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

async fn save_settings(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let back = "/journey/settings".to_string();
    let number = |name: &str, lo: i64, hi: i64| -> Result<i64, String> {
        field(&f, name)
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("{name}: a whole number from {lo} to {hi}"))
    };
    let (growing_min, at_risk_percent) = match (
        number("growing_min", 1, 100_000),
        number("at_risk_percent", 1, 100),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return Ok(s.refused(
                &guanxi_protocol::state::StateError {
                    code: guanxi_protocol::ReasonCode::BadBody,
                    message: e,
                },
                back,
            ));
        }
    };
    let mut set = journey::Settings {
        growing_min,
        at_risk_percent,
        ..Default::default()
    };
    for (_, n) in STAGES {
        let list = field(&f, &format!("checklist_{n}")).trim();
        if !list.is_empty() {
            set.checklists.insert(n.to_string(), list.to_string());
        }
        let owner = field(&f, &format!("owner_{n}")).trim();
        if !owner.is_empty() {
            set.owners.insert(n.to_string(), owner.to_string());
        }
    }
    journey::set_settings(&node, set).await?;
    Ok(redirect_with_flash(&back, "done.journey_saved"))
}
