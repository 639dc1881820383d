//! Surveys in the web view (SPEC §20): staff write and send one and read
//! its results (NPS, rating averages, choices, free text; per partner and
//! tier; the series' trend); people answer the surveys sent to them — a
//! web partner's users theirs, this node's staff those a vendor's daemon
//! sent — once each, in their language.

use super::access::{Member, Page, Staff};
use super::form::{Fields, field};
use super::{Frame, redirect_with_flash};
use crate::node::Node;
use crate::record_index::{Scope, Side};
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use guanxi_protocol::messages::{SurveyAnswerItem, SurveyQuestion, SurveySend};
use guanxi_protocol::state::StateError;
use guanxi_protocol::state::survey::SurveyRecord;
use std::sync::Arc;

/// The survey routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/surveys", get(list))
        .route("/surveys/new", get(new_form).post(create))
        .route("/surveys/own/{id}", get(results))
        .route("/surveys/{key}/{subject}", get(page).post(answer))
}

fn bad(message: String) -> StateError {
    StateError {
        code: guanxi_protocol::ReasonCode::BadBody,
        message,
    }
}

/// A survey in a list.
pub struct Row {
    pub link: String,
    pub title: String,
    pub closes: String,
    pub open: bool,
    /// Received ones: the reader answered.
    pub answered: bool,
    pub responses: usize,
}

#[derive(Template)]
#[template(path = "surveys.html")]
struct ListPage {
    f: Frame,
    sent: Vec<Row>,
    received: Vec<Row>,
}

fn title(lang: &str, s: &SurveySend) -> String {
    if lang == "en" {
        s.title_en.clone()
    } else {
        s.title_zh.clone()
    }
}

async fn list(State(node): State<Arc<Node>>, m: Member) -> Page {
    let me = node.identity.id.clone();
    let user = m.user.clone();
    let now = crate::clock::now_ms();
    let (own, received, salt) = node
        .reading(move |r| {
            let own = if user.partner.is_none() {
                crate::surveys::own_page(r, None, 50)?.0
            } else {
                Vec::new()
            };
            let scope = match &user.partner {
                Some(org) => Scope::Key(crate::records::web_key(org)),
                None => Scope::Side(Side::Peer),
            };
            let (places, _) = crate::record_index::newest(r, "survey", &scope, None, 50)?;
            let got: Vec<(String, String, SurveyRecord)> = crate::record_index::load(r, places)
                .into_iter()
                .filter_map(|(k, s, rec)| match rec {
                    guanxi_protocol::state::Record::Survey(x) => Some((k, s, x)),
                    _ => None,
                })
                .collect();
            let _ = &me;
            Ok((own, got, crate::surveys::salt_in(r)?))
        })
        .await?;
    let f = m.frame();
    let loc = m.loc();
    let sent = own
        .iter()
        .map(|o| Row {
            link: format!("/surveys/own/{}", o.id),
            title: title(f.lang, &o.survey),
            closes: loc.when(o.survey.closes_at),
            open: now <= o.survey.closes_at,
            answered: false,
            responses: 0,
        })
        .collect();
    let received = received
        .iter()
        .map(|(k, s, r)| Row {
            link: format!("/surveys/{k}/{s}"),
            title: title(f.lang, &r.survey),
            closes: loc.when(r.survey.closes_at),
            open: now <= r.survey.closes_at,
            answered: crate::surveys::has_answered(&salt, r, s, &m.user),
            responses: r.responses.len(),
        })
        .collect();
    let page = ListPage { f, sent, received };
    Ok(m.page(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "survey_form.html")]
struct FormPage {
    f: Frame,
    v: Values,
}

/// What the form holds (shown again with a refusal).
#[derive(Default)]
pub struct Values {
    pub series: String,
    pub round: String,
    pub title_en: String,
    pub title_zh: String,
    pub questions: String,
    pub closes: String,
    pub anonymous: bool,
}

async fn new_form(s: Staff) -> Page {
    let page = FormPage {
        f: s.frame(),
        v: Values::default(),
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

async fn create(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let back = "/surveys/new".to_string();
    let survey = (|| -> Result<SurveySend, String> {
        let questions = crate::surveys::parse_questions(field(&f, "questions"))
            .map_err(|e| format!("questions: {e}"))?;
        let closes_at = s.loc().end_of_day(field(&f, "closes")).ok_or_else(|| {
            format!(
                "closes: {:?} is not a date like 2027-01-31",
                field(&f, "closes")
            )
        })?;
        if closes_at <= crate::clock::now_ms() {
            return Err("closes: the closing day has passed".into());
        }
        Ok(SurveySend {
            series: field(&f, "series").trim().to_string(),
            round: field(&f, "round").trim().to_string(),
            title_en: field(&f, "title_en").trim().to_string(),
            title_zh: field(&f, "title_zh").trim().to_string(),
            questions,
            closes_at,
            anonymous: field(&f, "anonymous") == "yes",
        })
    })();
    let target = crate::library::Target::parse(
        field(&f, "everyone") == "yes",
        field(&f, "types"),
        field(&f, "tiers"),
        field(&f, "countries"),
        field(&f, "partners"),
    );
    let (survey, target) = match (survey, target) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) => return Ok(s.refused(&bad(e), back)),
        (_, Err(e)) => return Ok(s.refused(&e, back)),
    };
    match crate::surveys::send(&node, &s.user, survey, target).await? {
        Ok(id) => Ok(redirect_with_flash(
            &format!("/surveys/own/{id}"),
            "done.survey_sent",
        )),
        Err(e) => Ok(s.refused(&e, back)),
    }
}

/// One question's results for people.
pub struct QuestionView {
    pub text: String,
    pub kind: String,
    pub answers: u64,
    /// The headline: the NPS, or the mean rating.
    pub headline: String,
    /// (label, count) of choices or scores.
    pub counts: Vec<(String, u64)>,
    pub texts: Vec<(String, String)>,
}

/// A group's line (a partner or a tier).
pub struct GroupView {
    pub name: String,
    pub responses: u64,
    /// The group's NPS (first NPS question), "–" when none or hidden.
    pub nps: String,
    pub hidden: bool,
}

#[derive(Template)]
#[template(path = "survey_results.html")]
struct ResultsPage {
    f: Frame,
    title: String,
    series: String,
    round: String,
    closes: String,
    anonymous: bool,
    responses: u64,
    recipients: u64,
    hidden: bool,
    questions: Vec<QuestionView>,
    partners: Vec<GroupView>,
    tiers: Vec<GroupView>,
    /// (round, responses, NPS)
    trend: Vec<(String, u64, String)>,
}

fn question_text(lang: &str, q: &SurveyQuestion) -> String {
    if lang == "en" {
        q.text_en.clone()
    } else {
        q.text_zh.clone()
    }
}

fn views(
    lang: &str,
    loc: &super::format::Locale,
    questions: &[SurveyQuestion],
    results: &[crate::surveys::QuestionResult],
) -> Vec<QuestionView> {
    results
        .iter()
        .filter_map(|r| {
            let q = questions.iter().find(|q| q.id == r.id)?;
            let headline = match (r.nps, r.mean_x100) {
                (Some(n), _) => format!("NPS {}", loc.number(n)),
                (_, Some(m)) => format!("{}.{:02} / 5", m / 100, m % 100),
                _ => String::new(),
            };
            let counts = if q.choices.is_empty() {
                r.counts.iter().map(|(k, n)| (k.clone(), *n)).collect()
            } else {
                q.choices
                    .iter()
                    .map(|c| {
                        let label = if lang == "en" {
                            c.en.clone()
                        } else {
                            c.zh.clone()
                        };
                        (label, r.counts.get(&c.id).copied().unwrap_or(0))
                    })
                    .collect()
            };
            Some(QuestionView {
                text: question_text(lang, q),
                kind: format!("surveys.kind_{}", q.kind),
                answers: r.answers,
                headline,
                counts,
                texts: r.texts.clone(),
            })
        })
        .collect()
}

fn group_views(
    list: &[(String, u64, Option<Vec<crate::surveys::QuestionResult>>)],
) -> Vec<GroupView> {
    list.iter()
        .map(|(name, n, shown)| GroupView {
            name: name.clone(),
            responses: *n,
            nps: shown
                .as_ref()
                .and_then(|qs| qs.iter().find_map(|q| q.nps))
                .map(|n| n.to_string())
                .unwrap_or_else(|| "–".into()),
            hidden: shown.is_none(),
        })
        .collect()
}

async fn results(State(node): State<Arc<Node>>, Path(id): Path<String>, s: Staff) -> Page {
    let me = node.identity.id.clone();
    let found = node
        .reading(move |r| {
            let Some(own) = crate::surveys::own(r, &id)? else {
                return Ok(None);
            };
            let results = crate::surveys::results(r, &me, &own)?;
            let trend = crate::surveys::trend(r, &me, &own.survey.series)?;
            Ok(Some((own, results, trend)))
        })
        .await?;
    let (own, results, trend) = s.found(found)?;
    let f = s.frame();
    let loc = s.loc();
    let page = ResultsPage {
        title: title(f.lang, &own.survey),
        series: own.survey.series.clone(),
        round: own.survey.round.clone(),
        closes: loc.when(own.survey.closes_at),
        anonymous: own.survey.anonymous,
        responses: results.responses,
        recipients: results.recipients,
        hidden: results.overall.is_none(),
        questions: results
            .overall
            .as_ref()
            .map(|qs| views(f.lang, loc, &own.survey.questions, qs))
            .unwrap_or_default(),
        partners: group_views(&results.by_partner),
        tiers: group_views(&results.by_tier),
        trend: trend
            .into_iter()
            .map(|(round, n, nps)| {
                (
                    round,
                    n,
                    nps.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
                )
            })
            .collect(),
        f,
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

/// A question as the answer form shows it.
pub struct AskView {
    pub id: String,
    pub kind: String,
    pub text: String,
    pub required: bool,
    /// (choice id, label)
    pub choices: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "survey.html")]
struct AnswerPage {
    f: Frame,
    title: String,
    from: String,
    closes: String,
    anonymous: bool,
    open: bool,
    answered: bool,
    /// The reader answers it (its organization's or this node's to answer).
    may_answer: bool,
    responses: usize,
    action: String,
    questions: Vec<AskView>,
}

async fn page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let me = node.identity.id.clone();
    let (user, k, s) = (m.user.clone(), key.clone(), subject.clone());
    let found = node
        .reading(move |r| {
            let record = crate::surveys::visible(r, &me, &user, &k, &s)?;
            Ok(record.map(|x| (x, crate::surveys::salt_in(r).unwrap_or_default())))
        })
        .await?;
    let (record, salt) = m.found(found)?;
    let f = m.frame();
    let now = crate::clock::now_ms();
    // A partner user answers its organization's; staff answer what a
    // vendor's daemon sent this node.
    let may_answer = m.user.partner.is_some() || record.recipient == node.identity.id;
    let page = AnswerPage {
        title: title(f.lang, &record.survey),
        from: record.surveyor.to_string(),
        closes: m.loc().when(record.survey.closes_at),
        anonymous: record.survey.anonymous,
        open: now <= record.survey.closes_at,
        answered: crate::surveys::has_answered(&salt, &record, &subject, &m.user),
        may_answer,
        responses: record.responses.len(),
        action: format!("/surveys/{key}/{subject}"),
        questions: record
            .survey
            .questions
            .iter()
            .map(|q| AskView {
                id: q.id.clone(),
                kind: q.kind.clone(),
                text: question_text(f.lang, q),
                required: q.required,
                choices: q
                    .choices
                    .iter()
                    .map(|c| {
                        (
                            c.id.clone(),
                            if f.lang == "en" {
                                c.en.clone()
                            } else {
                                c.zh.clone()
                            },
                        )
                    })
                    .collect(),
            })
            .collect(),
        f,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// The answers a form gives for `questions`: `<id>` a score, a choice or a
/// text; `<id>.<choice>` = `yes` for each choice of a multiple question.
/// Unanswered questions are left out (the state machine refuses a missing
/// required one, naming it).
fn answers_of(f: &Fields, questions: &[SurveyQuestion]) -> Result<Vec<SurveyAnswerItem>, String> {
    let mut out = Vec::new();
    for q in questions {
        let v = field(f, &q.id).trim();
        let item = |score, choices, text: &str| SurveyAnswerItem {
            question: q.id.clone(),
            score,
            choices,
            text: text.to_string(),
        };
        match q.kind.as_str() {
            "nps" | "rating" if !v.is_empty() => {
                let score = v
                    .parse()
                    .map_err(|_| format!("{}: {v:?} is not a score", q.id))?;
                out.push(item(Some(score), Vec::new(), ""));
            }
            "single" if !v.is_empty() => out.push(item(None, vec![v.to_string()], "")),
            "multiple" => {
                let chosen: Vec<String> = q
                    .choices
                    .iter()
                    .filter(|c| field(f, &format!("{}.{}", q.id, c.id)) == "yes")
                    .map(|c| c.id.clone())
                    .collect();
                if !chosen.is_empty() {
                    out.push(item(None, chosen, ""));
                }
            }
            "text" if !v.is_empty() => out.push(item(None, Vec::new(), v)),
            _ => {}
        }
    }
    Ok(out)
}

async fn answer(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Form(f): Form<Fields>,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let back = format!("/surveys/{key}/{subject}");
    let me = node.identity.id.clone();
    let (user, k, s) = (m.user.clone(), key.clone(), subject.clone());
    let record = node
        .reading(move |r| crate::surveys::visible(r, &me, &user, &k, &s))
        .await?;
    let record = m.found(record)?;
    let answers = match answers_of(&f, &record.survey.questions) {
        Ok(a) => a,
        Err(e) => return Ok(m.refused(&bad(e), back)),
    };
    let result = crate::surveys::answer(&node, &m.user, &key, &subject, answers).await;
    m.outcome(result, back, "done.survey_answered")
}
