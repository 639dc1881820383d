//! Web pages of training: a course's quiz (the questions drawn for a new
//! attempt), an attempt's result, certifications (a printable page and the
//! signed JSON document), and the tier requirements staff set. A course's
//! lessons show on its library page ([`course_part`]).

use super::access::{Member, Page, Staff};
use super::form::{Fields, field};
use super::{Frame, LIST_PAGE, redirect_with_flash};
use crate::courses::{self, Answers};
use crate::library;
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use guanxi_protocol::certification::{SignedCertification, Standing};
use guanxi_protocol::messages::{Course, QuizAnswer};
use guanxi_protocol::state::quiz::QuizAttempt;
use serde::Deserialize;
use std::sync::Arc;

/// The training routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/library/{key}/{subject}/quiz", get(quiz).post(submit))
        .route("/quiz/{key}/{subject}", get(attempt))
        .route("/certifications", get(list))
        .route(
            "/certifications/requirements",
            get(requirements).post(set_requirements),
        )
        .route("/certifications/{id}", get(certificate))
        .route("/certifications/{id}/json", get(document))
}

/// The person's name as certifications and attempts carry it.
fn learner_of(user: &crate::accounts::User) -> String {
    if user.display_name.trim().is_empty() {
        user.username.clone()
    } else {
        user.display_name.clone()
    }
}

/// Where a reader's attempts at a course are kept: the course's subject
/// and the record key (a web partner's `web:<id>`, or the vendor peer).
fn attempt_place(node: &Node, m: &Member, key: &str, subject: &str) -> Option<(String, String)> {
    match (&m.user.partner, key) {
        (Some(org), "own") => Some((
            format!("resource.{}.{subject}", node.identity.id),
            crate::records::web_key(org),
        )),
        (None, peer) if peer != "own" => Some((subject.to_string(), peer.to_string())),
        _ => None,
    }
}

/// An attempt as a line.
pub struct AttemptLine {
    pub link: String,
    pub when: String,
    /// `submitted`, `passed` or `failed`.
    pub status: &'static str,
    pub score: String,
}

impl AttemptLine {
    fn of(m: &Member, key: &str, subject: &str, a: &QuizAttempt) -> AttemptLine {
        AttemptLine {
            link: format!("/quiz/{key}/{subject}"),
            when: m.loc().when(a.submitted_at),
            status: a.status(),
            score: a
                .grade
                .as_ref()
                .map(|g| format!("{} / {}", g.correct, g.total))
                .unwrap_or_default(),
        }
    }

    /// The catalog key of the status.
    pub fn status_key(&self) -> String {
        format!("courses.status_{}", self.status)
    }
}

/// A lesson for people.
pub struct LessonView {
    pub title: String,
    pub html: String,
    pub link: Option<String>,
}

/// What a course's library page shows beyond the resource.
pub struct CoursePart {
    pub level: String,
    pub valid_days: Option<i64>,
    pub lessons: Vec<LessonView>,
    /// The quiz's rules in words.
    pub rules: String,
    /// The quiz page, when the reader may take it.
    pub take: Option<String>,
    pub attempts: Vec<AttemptLine>,
    /// The course is assigned to the reader's organization: to whom
    /// (empty: anyone), by when, and whether that day has passed.
    pub assigned: Option<(String, String, bool)>,
    /// Staff on their own course: the assignments (partner, person, due).
    pub assignments: Vec<(String, String, String)>,
    pub can_assign: bool,
}

/// The course part of the library page of (`key`, `subject`).
pub(crate) async fn course_part(
    node: &Node,
    m: &Member,
    key: &str,
    subject: &str,
    course: &Course,
) -> Result<CoursePart, super::access::WebError> {
    let place = attempt_place(node, m, key, subject);
    let learner = learner_of(&m.user);
    // Assignments: a web partner's is in this node's own document, a
    // connected partner's in the copy its node received.
    let own = if key == "own" {
        let s = subject.to_string();
        node.reading(move |r| library::own(r, &s)).await?
    } else {
        None
    };
    let assignment = match (&m.user.partner, &own) {
        (Some(org), Some(doc)) => doc
            .assignment_of(org, None)
            .map(|a| (a.person.clone(), a.due.clone())),
        (None, None) => course
            .assigned
            .as_ref()
            .map(|a| (a.person.clone(), a.due.clone())),
        _ => None,
    };
    let assigned = assignment.map(|(person, due)| {
        let due = due.to_string();
        let late = due < today_in(&m.loc().tz);
        (person, due, late)
    });
    let assignments = match (&m.user.partner, &own) {
        (None, Some(doc)) => doc
            .assignments
            .iter()
            .map(|a| (a.partner.clone(), a.person.clone(), a.due.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    let found = match place.clone() {
        Some((course_subject, record_key)) => {
            node.reading(move |r| {
                courses::attempts(r, &course_subject, &record_key, &learner, 200)
                    .map(|list| (record_key, list))
            })
            .await?
        }
        None => (String::new(), Vec::new()),
    };
    let (record_key, list) = found;
    let used = list.len() as i64;
    let limit = course.quiz.attempts;
    let passed = list.iter().any(|(_, a)| a.status() == "passed");
    Ok(CoursePart {
        level: course.level.clone(),
        valid_days: course.valid_days,
        lessons: course
            .lessons
            .iter()
            .map(|l| LessonView {
                title: l.title.clone(),
                html: library::markdown::to_html_from(&l.text, (key != "own").then_some(key)),
                link: l.link.clone(),
            })
            .collect(),
        rules: {
            let t = m.loc().t();
            let mut rules = t.fill(
                "courses.quiz_rules",
                &[
                    ("n", &course.quiz.draw.to_string()),
                    ("pass", &course.quiz.pass_percent.to_string()),
                ],
            );
            if limit > 0 {
                rules.push_str(" · ");
                rules.push_str(&t.fill(
                    "courses.attempts_rule",
                    &[("n", &limit.to_string()), ("used", &used.to_string())],
                ));
            }
            rules
        },
        take: (place.is_some() && !passed && (limit == 0 || used < limit))
            .then(|| format!("/library/{key}/{subject}/quiz")),
        attempts: list
            .iter()
            .map(|(s, a)| AttemptLine::of(m, &record_key, s, a))
            .collect(),
        assigned,
        assignments,
        can_assign: m.user.partner.is_none() && own.is_some(),
    })
}

/// Today in the reader's zone as `YYYY-MM-DD` (due dates compare as text).
fn today_in(tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(crate::clock::now_ms())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(tz.clone())
        .date()
        .to_string()
}

/// A drawn question as the form shows it.
pub struct QuestionView {
    pub id: String,
    pub n: usize,
    pub text: String,
    pub multiple: bool,
    pub choices: Vec<(usize, String)>,
}

#[derive(Template)]
#[template(path = "quiz.html")]
struct QuizPage {
    f: Frame,
    title: String,
    action: String,
    attempt: String,
    language: String,
    help: String,
    questions: Vec<QuestionView>,
}

async fn course_item(
    node: &Node,
    m: &Member,
    key: &str,
    subject: &str,
) -> Result<(library::Item, Course), super::access::WebError> {
    let (me, user, k, s) = (
        node.identity.id.clone(),
        m.user.clone(),
        key.to_string(),
        subject.to_string(),
    );
    let item = node
        .reading(move |r| library::item(r, &me, &user, &k, &s))
        .await?;
    let item = m.found(item.filter(|i| !i.withdrawn))?;
    let course = m.found(item.resource.course.clone())?;
    Ok((item, *course))
}

async fn quiz(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let (item, course) = course_item(&node, &m, &key, &subject).await?;
    let org = match (&m.user.partner, key.as_str()) {
        (Some(org), "own") => org.clone(),
        (None, peer) if peer != "own" => node.identity.id.to_string(),
        _ => return Err(m.error(StatusCode::FORBIDDEN, "error.forbidden")),
    };
    let attempt = courses::new_attempt(&org);
    let questions = guanxi_protocol::quiz::draw(&course.quiz, &attempt)
        .into_iter()
        .enumerate()
        .map(|(i, q)| QuestionView {
            id: q.id.clone(),
            n: i + 1,
            text: q.text.clone(),
            multiple: q.multiple,
            choices: q.choices.iter().cloned().enumerate().collect(),
        })
        .collect::<Vec<_>>();
    let help = m.loc().t().fill(
        "courses.quiz_help",
        &[
            ("n", &questions.len().to_string()),
            ("pass", &course.quiz.pass_percent.to_string()),
        ],
    );
    let page = QuizPage {
        f: m.frame(),
        title: item.resource.title.clone(),
        action: format!("/library/{key}/{subject}/quiz"),
        attempt,
        language: item.resource.language.clone(),
        help,
        questions,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn submit(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Form(f): Form<Fields>,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let (_, course) = course_item(&node, &m, &key, &subject).await?;
    let attempt = field(&f, "attempt").to_string();
    // The questions this attempt drew, answered from the form: a radio
    // `a.<id>` = choice, or checkboxes `a.<id>.<choice>`.
    let answers = guanxi_protocol::quiz::draw(&course.quiz, &attempt)
        .into_iter()
        .filter_map(|q| {
            let choices: Vec<i64> = if q.multiple {
                (0..q.choices.len())
                    .filter(|i| f.contains_key(&format!("a.{}.{i}", q.id)))
                    .map(|i| i as i64)
                    .collect()
            } else {
                f.get(&format!("a.{}", q.id))
                    .and_then(|v| v.parse().ok())
                    .into_iter()
                    .collect()
            };
            (!choices.is_empty()).then(|| QuizAnswer {
                question: q.id.clone(),
                choices,
            })
        })
        .collect();
    let back = format!("/library/{key}/{subject}");
    Ok(
        match courses::submit(&node, &m.user, &key, &subject, Answers { attempt, answers }).await? {
            Ok(link) => redirect_with_flash(&link, "done.quiz_submitted"),
            Err(r) => m.refused(&r, back),
        },
    )
}

#[derive(Template)]
#[template(path = "quiz_attempt.html")]
struct AttemptPage {
    f: Frame,
    line: AttemptLine,
    learner: String,
    course_link: String,
    note: String,
    certification: Option<String>,
    retry: Option<String>,
}

async fn attempt(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let mine = match &m.user.partner {
        Some(org) => key == crate::records::web_key(org),
        None => true,
    };
    if !mine {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    }
    let (k, s) = (key.clone(), subject.clone());
    let found = node.reading(move |r| courses::attempt(r, &k, &s)).await?;
    let a = m.found(found)?;
    let me = node.identity.id.to_string();
    // The course's library page: this node's own (web partners), or the
    // vendor's as received.
    let course_link = match a
        .submit
        .course
        .as_str()
        .strip_prefix(&format!("resource.{me}."))
    {
        Some(id) => format!("/library/own/{id}"),
        None => format!("/library/{}/{}", a.publisher, a.submit.course),
    };
    let certification = a
        .grade
        .as_ref()
        .and_then(|g| g.certification.as_deref())
        .and_then(|c| guanxi_protocol::crypto::b64url_decode(c).ok())
        .and_then(|b| SignedCertification::decode(&b).ok())
        .map(|c| format!("/certifications/{}", c.fields.id));
    let page = AttemptPage {
        f: m.frame(),
        line: AttemptLine::of(&m, &key, &subject, &a),
        learner: a.submit.learner.clone(),
        retry: (a.status() == "failed").then(|| format!("{course_link}/quiz")),
        course_link,
        note: a.grade.as_ref().map(|g| g.note.clone()).unwrap_or_default(),
        certification,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// A certification for people.
pub struct CertLine {
    pub link: String,
    pub holder: String,
    pub organization: String,
    pub title: String,
    pub course: String,
    pub level: String,
    pub issued: String,
    pub expires: String,
    pub issuer: String,
    pub expired: bool,
}

impl CertLine {
    pub(crate) fn of(m: &Member, c: &SignedCertification) -> CertLine {
        let f = &c.fields;
        CertLine {
            link: format!("/certifications/{}", f.id),
            holder: f.holder.clone(),
            organization: f.organization.clone(),
            title: f.title.clone(),
            course: f.course.clone(),
            level: f.level.clone(),
            issued: m.loc().day(f.issued),
            expires: f.expires.map(|e| m.loc().day(e)).unwrap_or_default(),
            issuer: f.issuer.to_string(),
            expired: c.standing(crate::clock::now_ms()) == Standing::Expired,
        }
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "certifications.html")]
struct ListPage {
    f: Frame,
    rows: Vec<CertLine>,
    next: Option<String>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, m: Member) -> Page {
    let org = m.user.partner.clone();
    let (certs, next) = node
        .reading(move |r| courses::page(r, org.as_deref(), q.after.as_deref(), LIST_PAGE))
        .await?;
    let page = ListPage {
        f: m.frame(),
        rows: certs.iter().map(|c| CertLine::of(&m, c)).collect(),
        next: next.map(|n| format!("/certifications?after={n}")),
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn kept(
    node: &Node,
    m: &Member,
    id: &str,
) -> Result<(courses::Kept, SignedCertification), super::access::WebError> {
    let i = id.to_string();
    let found = node.reading(move |r| courses::certification(r, &i)).await?;
    let kept = m.found(found.filter(|k| courses::may_see(&m.user, k)))?;
    let cert = m.found(kept.certification())?;
    Ok((kept, cert))
}

#[derive(Template)]
#[template(path = "certificate.html")]
struct CertificatePage {
    f: Frame,
    c: CertLine,
    kid: String,
    json: String,
}

async fn certificate(State(node): State<Arc<Node>>, Path(id): Path<String>, m: Member) -> Page {
    let (_, cert) = kept(&node, &m, &id).await?;
    let page = CertificatePage {
        f: m.frame(),
        c: CertLine::of(&m, &cert),
        kid: cert.sig.kid.to_string(),
        json: format!("/certifications/{id}/json"),
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn document(State(node): State<Arc<Node>>, Path(id): Path<String>, m: Member) -> Page {
    let (kept, cert) = kept(&node, &m, &id).await?;
    let name = format!("certification-{}.json", cert.fields.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        kept.document,
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "requirements.html")]
struct RequirementsPage {
    f: Frame,
    text: String,
}

async fn requirements(State(node): State<Arc<Node>>, s: Staff) -> Page {
    let list = node.reading(courses::requirements).await?;
    let text = list
        .iter()
        .map(|r| format!("{} {} {}", r.tier, r.course, r.people))
        .collect::<Vec<_>>()
        .join("\n");
    let page = RequirementsPage { f: s.frame(), text };
    Ok(s.page(StatusCode::OK, page.render()))
}

async fn set_requirements(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let back = "/certifications/requirements".to_string();
    match courses::parse_requirements(field(&f, "requirements")) {
        Ok(list) => {
            courses::set_requirements(&node, list).await?;
            Ok(redirect_with_flash(&back, "done.requirements_saved"))
        }
        Err(r) => Ok(s.refused(&r, back)),
    }
}

/// One tier requirement on a partner's page.
pub struct RequirementLine {
    pub course: String,
    pub people: u32,
    pub holders: String,
    pub have: usize,
    pub lacks: usize,
}

/// A course assigned to a partner, on its page.
pub struct AssignedLine {
    pub link: String,
    pub title: String,
    pub person: String,
    pub due: String,
    pub late: bool,
    /// Who holds a valid certification of it (empty: nobody yet).
    pub passed_by: String,
}

/// A partner's training: where it stands on its tier's requirements, the
/// courses assigned to it, and its certifications (its web users' and its
/// node's together).
pub(crate) type Training = (Vec<RequirementLine>, Vec<AssignedLine>, Vec<CertLine>);

/// See [`Training`].
pub(crate) fn partner_training(
    read: &guanxi_adapters::store::Read,
    m: &Member,
    partner: &crate::directory::Partner,
) -> Result<Training, guanxi_adapters::store::StoreError> {
    let mut orgs = vec![partner.id.as_str()];
    if let Some(peer) = &partner.peer {
        orgs.push(peer.as_str());
    }
    let (progress, held) = courses::standing(read, &partner.tier, &orgs, crate::clock::now_ms())?;
    let lines = progress
        .into_iter()
        .map(|p| RequirementLine {
            course: p.requirement.course.clone(),
            people: p.requirement.people,
            have: p.holders.len(),
            lacks: (p.requirement.people as usize).saturating_sub(p.holders.len()),
            holders: p.holders.join(", "),
        })
        .collect();
    let now = crate::clock::now_ms();
    let today = today_in(&m.loc().tz);
    let assigned = library::assigned_to(read, &orgs, 100)?
        .into_iter()
        .map(|(doc, a)| {
            let code = doc
                .resource
                .course
                .as_ref()
                .map(|c| c.code.clone())
                .unwrap_or_default();
            let mut holders: Vec<String> = held
                .iter()
                .filter(|c| c.fields.course == code && c.standing(now) == Standing::Valid)
                .filter(|c| a.person.is_empty() || c.fields.holder == a.person)
                .map(|c| c.fields.holder.clone())
                .collect();
            holders.sort();
            holders.dedup();
            let due = a.due.to_string();
            AssignedLine {
                link: format!("/library/own/{}", doc.id),
                title: doc.resource.title.clone(),
                person: a.person.clone(),
                late: holders.is_empty() && due < today,
                due,
                passed_by: holders.join(", "),
            }
        })
        .collect();
    Ok((
        lines,
        assigned,
        held.iter().map(|c| CertLine::of(m, c)).collect(),
    ))
}
