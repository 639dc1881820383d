//! Training: courses (a library resource whose content is lessons and a
//! quiz), attempts, grading and the certifications passing earns.
//!
//! A course is published like any resource (`library`); its answer key
//! stays in this node's own document. A person takes the quiz where they
//! work: a web partner's user in this node's web view (the attempt is a
//! `quiz` record under `web:<partner>`, submitted and graded in one
//! transaction), a connected partner's person in their own node, which
//! sends `quiz.submit`; this node's inbound rule refuses a submission it
//! cannot grade (unknown or withdrawn course, another version, not
//! published to that peer, no attempts left, questions not drawn), and the
//! grader answers the rest with `quiz.grade`. Passing issues a
//! certification signed with this node's key, in the grading transaction.
//!
//! Keys in the `library` table: `qa␟<course subject>␟<key>␟<learner>␟<attempt>`
//! attempts (on both nodes), `grade␟<peer>␟<attempt>` submissions still to
//! grade, `cert␟<id>` a certification issued or received ([`Kept`]),
//! `certt␟<time>␟<id>` all by issue time, `certo␟<organization>␟<id>` by
//! holder organization (web partner id or peer node id), `certx␟<remind
//! at>␟<id>` renewal reminders still to give, `treq` tier requirements.

use crate::accounts::User;
use crate::engine::{Act, Applied, EngineError};
use crate::library::{self, OwnResource, SEP, time16};
use crate::node::Node;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::certification::{CertificationFields, SignedCertification, Standing};
use guanxi_protocol::messages::{Lesson, Message, Question, QuizAnswer, QuizGrade, QuizSubmit};
use guanxi_protocol::quiz::{self, AnswerKey};
use guanxi_protocol::state::quiz::QuizAttempt;
use guanxi_protocol::state::{Context, Record, StateError};
use guanxi_protocol::{Millis, NodeId, ReasonCode, RecordId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A refused action, with the reason code every channel reports.
pub type Refusal = StateError;

fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    StateError {
        code,
        message: message.into(),
    }
}

const DAY: Millis = 86_400_000;

/// Renewal reminders go 30 days before a certification expires, or a
/// quarter of its validity before when that is shorter.
fn remind_at(issued: Millis, expires: Millis) -> Millis {
    expires - (30 * DAY).min((expires - issued) / 4)
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|e| EngineError::Corrupt(e.to_string()))
}

// ------------------------------------------------------------ authoring

/// Reads lessons written as Markdown, each beginning with a `# ` heading
/// (text before the first heading is a lesson named `first`).
pub fn parse_lessons(text: &str, first: &str) -> Vec<Lesson> {
    let mut lessons: Vec<Lesson> = Vec::new();
    let mut current: Option<Lesson> = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("# ") {
            lessons.extend(current.take());
            current = Some(Lesson {
                title: title.trim().to_string(),
                text: String::new(),
                link: None,
            });
            continue;
        }
        let lesson = current.get_or_insert_with(|| Lesson {
            title: first.to_string(),
            text: String::new(),
            link: None,
        });
        lesson.text.push_str(line);
        lesson.text.push('\n');
    }
    lessons.extend(current);
    for l in &mut lessons {
        l.text = l.text.trim().to_string();
    }
    lessons.retain(|l| !(l.text.is_empty() && l.title.is_empty()));
    lessons
}

/// Reads a question pool written as blocks separated by blank lines: the
/// question on the first line, then one choice per line, `- ` for a wrong
/// one and `* ` for a right one (several right: a multiple-choice
/// question). Questions are numbered `q1`, `q2`, … in order.
pub fn parse_questions(text: &str) -> Result<(Vec<Question>, AnswerKey), Refusal> {
    let bad = |line: usize, message: &str| {
        refuse(
            ReasonCode::BadBody,
            format!("questions: line {line}: {message}"),
        )
    };
    let mut questions = Vec::new();
    let mut key = AnswerKey::new();
    let mut block: Vec<(usize, &str)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate().chain([(lines.len(), &"")]) {
        let line = line.trim();
        if !line.is_empty() {
            block.push((i + 1, line));
            continue;
        }
        if block.is_empty() {
            continue;
        }
        let (at, first) = block[0];
        if first.starts_with("- ") || first.starts_with("* ") {
            return Err(bad(at, "a question comes before its choices"));
        }
        let id = format!("q{}", questions.len() + 1);
        let mut choices = Vec::new();
        let mut right = Vec::new();
        for (n, line) in &block[1..] {
            let (is_right, choice) = match (line.strip_prefix("* "), line.strip_prefix("- ")) {
                (Some(c), _) => (true, c),
                (_, Some(c)) => (false, c),
                _ => {
                    return Err(bad(
                        *n,
                        "a choice begins with \"- \" (wrong) or \"* \" (right)",
                    ));
                }
            };
            if is_right {
                right.push(choices.len() as i64);
            }
            choices.push(choice.trim().to_string());
        }
        if choices.len() < 2 {
            return Err(bad(at, "a question needs at least two choices"));
        }
        if right.is_empty() {
            return Err(bad(at, "mark the right choice with \"* \""));
        }
        questions.push(Question {
            id: id.clone(),
            text: first.trim_start_matches("? ").to_string(),
            choices,
            multiple: right.len() > 1,
        });
        key.insert(id, right);
        block.clear();
    }
    if questions.is_empty() {
        return Err(refuse(
            ReasonCode::BadBody,
            "questions: write at least one question",
        ));
    }
    Ok((questions, key))
}

// ------------------------------------------------------------ attempts

/// A new attempt's subject for the organization `org` (this node's id, or
/// a web partner's): it seeds the question draw.
pub fn new_attempt(org: &str) -> String {
    format!("attempt.{org}.{}", uuid::Uuid::now_v7().simple())
}

fn attempts_prefix(course: &str, key: &str, learner: &str) -> String {
    format!("qa{SEP}{course}{SEP}{key}{SEP}{learner}{SEP}")
}

/// The attempts `learner` (kept under `key`) made at `course` (the
/// course's subject), oldest first, at most `limit`.
pub fn attempts(
    read: &Read,
    course: &str,
    key: &str,
    learner: &str,
    limit: usize,
) -> Result<Vec<(String, QuizAttempt)>, StoreError> {
    let prefix = attempts_prefix(course, key, learner);
    let mut out = Vec::new();
    for (k, _) in read.docs_page(Doc::Library, &prefix, None, Order::Forward, limit)? {
        let Some(subject) = k.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(a) = attempt(read, key, subject)? {
            out.push((subject.to_string(), a));
        }
    }
    out.sort_by_key(|(_, a)| a.submitted_at);
    Ok(out)
}

fn attempts_in(
    t: &Tables<'_>,
    course: &str,
    key: &str,
    learner: &str,
) -> Result<usize, EngineError> {
    Ok(t.docs_page(
        Doc::Library,
        &attempts_prefix(course, key, learner),
        None,
        Order::Forward,
        1000,
    )?
    .len())
}

/// The attempt `subject` kept under `key`.
pub fn attempt(read: &Read, key: &str, subject: &str) -> Result<Option<QuizAttempt>, StoreError> {
    Ok(read.record(key, subject)?.and_then(|b| {
        match crate::records::parse_record(key, subject, &b) {
            Some(Record::Quiz(q)) => Some(q),
            _ => None,
        }
    }))
}

/// The own course a subject names (`resource.<me>.<id>`).
fn own_course_id<'a>(me: &NodeId, course: &'a str) -> Option<&'a str> {
    course
        .strip_prefix("resource.")?
        .strip_prefix(me.as_str())?
        .strip_prefix('.')
}

/// Why this node will not grade `submit` from the learner kept under `key`
/// (a peer id or `web:<partner>`), or the course and the score.
fn gradeable(
    t: &Tables<'_>,
    me: &NodeId,
    key: &str,
    subject: &str,
    submit: &QuizSubmit,
) -> Result<Result<(OwnResource, quiz::Score), Refusal>, EngineError> {
    let missing = || {
        refuse(
            ReasonCode::UnknownRecord,
            format!("there is no course {}", submit.course),
        )
    };
    let Some(id) = own_course_id(me, submit.course.as_str()) else {
        return Ok(Err(missing()));
    };
    let Some(doc) = t
        .doc(Doc::Library, &format!("r{SEP}{id}"))?
        .and_then(|b| serde_json::from_slice::<OwnResource>(&b).ok())
    else {
        return Ok(Err(missing()));
    };
    let Some(course) = doc
        .resource
        .course
        .as_ref()
        .filter(|_| doc.withdrawn.is_none())
    else {
        return Ok(Err(missing()));
    };
    if !key.starts_with("web:") && !doc.sent_to.iter().any(|p| p == key) {
        return Ok(Err(missing()));
    }
    if submit.version != doc.resource.version {
        return Ok(Err(refuse(
            ReasonCode::IllegalTransition,
            format!(
                "the course changed (version {} is current); take the quiz again",
                doc.resource.version
            ),
        )));
    }
    let limit = course.quiz.attempts;
    if limit > 0 && attempts_in(t, submit.course.as_str(), key, &submit.learner)? >= limit as usize
    {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("{} has used all {limit} attempts", submit.learner),
        )));
    }
    match quiz::grade(&course.quiz, &doc.answers, subject, &submit.answers) {
        Ok(score) => Ok(Ok((doc, score))),
        Err(e) => Ok(Err(refuse(ReasonCode::BadBody, format!("body.{e}")))),
    }
}

/// The inbound rule for `quiz.submit` from a peer: refuses what cannot be
/// graded (see [`gradeable`]).
pub fn inbound_rule(
    t: &Tables<'_>,
    ctx: &Context,
    subject: &str,
    message: &Message,
) -> Result<Result<(), StateError>, EngineError> {
    let Message::QuizSubmit(submit) = message else {
        return Ok(Ok(()));
    };
    Ok(gradeable(t, &ctx.to, ctx.from.as_str(), subject, submit)?.map(|_| ()))
}

/// A certification as kept: its exact document, and where the attempt
/// that earned it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub document: String,
    pub key: String,
    pub attempt: String,
}

impl Kept {
    /// The signed certification.
    pub fn certification(&self) -> Option<SignedCertification> {
        SignedCertification::decode(self.document.as_bytes()).ok()
    }
}

/// Keeps a certification issued or received, with its indexes.
fn keep(
    t: &mut Tables<'_>,
    cert: &SignedCertification,
    key: &str,
    attempt: &str,
) -> Result<(), EngineError> {
    let f = &cert.fields;
    let kept = Kept {
        document: String::from_utf8_lossy(&cert.bytes).into_owned(),
        key: key.to_string(),
        attempt: attempt.to_string(),
    };
    t.put_doc(Doc::Library, &format!("cert{SEP}{}", f.id), &json(&kept)?)?;
    t.put_doc(
        Doc::Library,
        &format!("certt{SEP}{}{SEP}{}", time16(f.issued), f.id),
        b"",
    )?;
    t.put_doc(
        Doc::Library,
        &format!("certo{SEP}{}{SEP}{}", f.organization, f.id),
        b"",
    )?;
    if let Some(expires) = f.expires {
        t.put_doc(
            Doc::Library,
            &format!(
                "certx{SEP}{}{SEP}{}",
                time16(remind_at(f.issued, expires)),
                f.id
            ),
            b"",
        )?;
    }
    Ok(())
}

/// Grades `submit` (already found gradeable) and, when passed, issues and
/// keeps the certification: the `quiz.grade` to send.
fn issue(
    a: &mut Act<'_, '_>,
    doc: &OwnResource,
    score: quiz::Score,
    organization: &str,
    key: &str,
    attempt: &str,
    learner: &str,
) -> Result<QuizGrade, EngineError> {
    let course = doc.resource.course.as_ref();
    let certification = match (score.passed, course) {
        (true, Some(c)) => {
            let fields = CertificationFields {
                v: 1,
                id: format!("C{}", &uuid::Uuid::now_v7().simple().to_string()[..20]),
                issuer: a.me().clone(),
                holder: learner.to_string(),
                organization: organization.to_string(),
                course: c.code.clone(),
                title: doc.resource.title.clone(),
                level: c.level.clone(),
                issued: a.now,
                expires: c.valid_days.map(|d| a.now + d * DAY),
            };
            let signed = fields
                .sign(&a.signing_key())
                .map_err(|e| EngineError::Failed(format!("signing a certification: {e}")))?;
            keep(a.tables, &signed, key, attempt)?;
            Some(guanxi_protocol::crypto::b64url(&signed.bytes))
        }
        _ => None,
    };
    let pass = course.map_or(100, |c| c.quiz.pass_percent);
    Ok(QuizGrade {
        correct: score.correct,
        total: score.total,
        passed: score.passed,
        note: if score.passed {
            String::new()
        } else {
            format!("{pass} % of the answers must be right")
        },
        certification,
    })
}

/// What a quiz form sent: the attempt's subject and the answers.
pub struct Answers {
    pub attempt: String,
    pub answers: Vec<QuizAnswer>,
}

/// Submits a person's answers to the course at (`key`, `subject`) of the
/// library: a web partner's user is graded here at once; this node's staff
/// taking a course a vendor published send them to the vendor. Answers the
/// attempt's page.
pub async fn submit(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    given: Answers,
) -> Result<Result<String, Refusal>, EngineError> {
    let me = node.identity.id.clone();
    let learner = if user.display_name.trim().is_empty() {
        user.username.clone()
    } else {
        user.display_name.clone()
    };
    let item = {
        let (me, user, k, s) = (
            me.clone(),
            user.clone(),
            key.to_string(),
            subject.to_string(),
        );
        node.reading(move |r| library::item(r, &me, &user, &k, &s))
            .await?
    };
    let Some(item) = item.filter(|i| i.resource.course.is_some() && !i.withdrawn) else {
        return Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            "there is no such course",
        )));
    };
    let attempt_ok = |org: &str| {
        given
            .attempt
            .strip_prefix(&format!("attempt.{org}."))
            .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let attempt: RecordId = match given.attempt.parse() {
        Ok(a) => a,
        Err(_) => return Ok(Err(refuse(ReasonCode::BadBody, "attempt: not an attempt"))),
    };
    match (&user.partner, key) {
        (Some(org), "own") => {
            if !attempt_ok(org) {
                return Ok(Err(refuse(ReasonCode::BadBody, "attempt: not an attempt")));
            }
            let Ok(partner) = org.parse::<NodeId>() else {
                return Ok(Err(refuse(ReasonCode::NotAllowed, "organization id")));
            };
            let web = crate::records::web_key(org);
            let submit = QuizSubmit {
                course: library::subject_of(&me, subject)?,
                version: item.resource.version,
                learner: learner.clone(),
                answers: given.answers,
            };
            let org = org.clone();
            let done = node
                .engine
                .act(move |a| {
                    let s = attempt.as_str();
                    let (doc, score) = match gradeable(a.tables, &me, &web, s, &submit)? {
                        Ok(found) => found,
                        Err(r) => return Ok(Err(r)),
                    };
                    let message = Message::QuizSubmit(submit.clone());
                    if let Err(r) = a.apply_local(&web, s, &partner, &me, &message)? {
                        return Ok(Err(r));
                    }
                    let grade = issue(a, &doc, score, &org, &web, s, &learner)?;
                    if let Err(r) =
                        a.apply_local(&web, s, &me, &partner, &Message::QuizGrade(grade))?
                    {
                        return Ok(Err(r));
                    }
                    Ok(Ok(format!("/quiz/{web}/{s}")))
                })
                .await?;
            Ok(done)
        }
        (None, peer) if peer != "own" => {
            if !attempt_ok(me.as_str()) {
                return Ok(Err(refuse(ReasonCode::BadBody, "attempt: not an attempt")));
            }
            let Ok(vendor) = peer.parse::<NodeId>() else {
                return Ok(Err(refuse(ReasonCode::UnknownRecord, "no such course")));
            };
            let submit = QuizSubmit {
                course: subject
                    .parse()
                    .map_err(|e| EngineError::Corrupt(format!("course subject: {e}")))?,
                version: item.resource.version,
                learner,
                answers: given.answers,
            };
            let peer = peer.to_string();
            node.engine
                .act(move |a| {
                    let message = Message::QuizSubmit(submit.clone());
                    if let Err(r) = a.send(&vendor, &attempt, &message)? {
                        return Ok(Err(r));
                    }
                    a.tables.put_doc(
                        Doc::Library,
                        &format!(
                            "{}{}",
                            attempts_prefix(submit.course.as_str(), &peer, &submit.learner),
                            attempt
                        ),
                        b"",
                    )?;
                    Ok(Ok(format!("/quiz/{peer}/{attempt}")))
                })
                .await
        }
        _ => Ok(Err(refuse(
            ReasonCode::NotAllowed,
            "a course is taken by the partners it is published to",
        ))),
    }
}

/// The engine's hook for quiz messages: counts attempts, queues peers'
/// submissions for the grader, keeps certifications received from a
/// vendor.
pub fn on_applied(t: &mut Tables<'_>, a: &Applied<'_>) -> Result<(), EngineError> {
    let Record::Quiz(record) = a.record else {
        return Ok(());
    };
    match a.message {
        Message::QuizSubmit(s) => {
            t.put_doc(
                Doc::Library,
                &format!(
                    "{}{}",
                    attempts_prefix(s.course.as_str(), a.key, &s.learner),
                    a.subject
                ),
                b"",
            )?;
            if !a.key.starts_with("web:") {
                t.put_doc(
                    Doc::Library,
                    &format!("grade{SEP}{}{SEP}{}", a.key, a.subject),
                    b"",
                )?;
            }
        }
        Message::QuizGrade(g) if !a.key.starts_with("web:") => {
            let cert = g.certification.as_deref().and_then(|c| {
                let bytes = guanxi_protocol::crypto::b64url_decode(c).ok()?;
                SignedCertification::decode(&bytes).ok()
            });
            match cert {
                Some(cert) if cert.fields.issuer == record.publisher => {
                    keep(t, &cert, a.key, a.subject)?;
                }
                Some(_) => tracing::warn!(
                    peer = a.key,
                    "a certification names another issuer than its grader; not kept"
                ),
                None if g.certification.is_some() => {
                    tracing::warn!(peer = a.key, "an unreadable certification; not kept")
                }
                None => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// Grades the submissions queued by peers, at most `limit`; answers how
/// many were graded.
async fn grade_queued(node: &Node, limit: usize) -> Result<usize, EngineError> {
    node.engine
        .act(move |a| {
            let prefix = format!("grade{SEP}");
            let queued = a
                .tables
                .docs_page(Doc::Library, &prefix, None, Order::Forward, limit)?;
            let mut graded = 0;
            for (k, _) in queued {
                a.tables.delete_doc(Doc::Library, &k)?;
                let Some((peer, subject)) = k
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split_once(SEP))
                else {
                    continue;
                };
                let Some(Record::Quiz(record)) = a.record(peer, subject)? else {
                    continue;
                };
                if record.grade.is_some() {
                    continue;
                }
                let me = a.me().clone();
                let (doc, score) = match gradeable_again(a.tables, &me, subject, &record)? {
                    Some(found) => found,
                    None => continue,
                };
                let grade = issue(a, &doc, score, peer, peer, subject, &record.submit.learner)?;
                let (Ok(to), Ok(s)) = (peer.parse::<NodeId>(), subject.parse::<RecordId>()) else {
                    continue;
                };
                if let Err(e) = a.send(&to, &s, &Message::QuizGrade(grade))? {
                    tracing::warn!(%peer, error = %e, "a quiz grade was refused");
                }
                graded += 1;
            }
            Ok(graded)
        })
        .await
}

/// The course and score of an accepted submission (its attempt already
/// counted): graded as the rule checked it, without the attempts limit.
fn gradeable_again(
    t: &Tables<'_>,
    me: &NodeId,
    subject: &str,
    record: &QuizAttempt,
) -> Result<Option<(OwnResource, quiz::Score)>, EngineError> {
    let Some(id) = own_course_id(me, record.submit.course.as_str()) else {
        return Ok(None);
    };
    let Some(doc) = t
        .doc(Doc::Library, &format!("r{SEP}{id}"))?
        .and_then(|b| serde_json::from_slice::<OwnResource>(&b).ok())
    else {
        return Ok(None);
    };
    let Some(course) = doc.resource.course.as_ref() else {
        return Ok(None);
    };
    let score = quiz::grade(&course.quiz, &doc.answers, subject, &record.submit.answers).unwrap_or(
        quiz::Score {
            correct: 0,
            total: course.quiz.draw,
            passed: false,
        },
    );
    Ok(Some((doc, score)))
}

/// Grades what peers submit, woken by changes to quiz records.
pub async fn run_grader(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let mut seen = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let version = node.engine.records_version("quiz");
        if seen == Some(version) {
            continue;
        }
        seen = Some(version);
        match grade_queued(&node, 100).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("{n} quiz attempt(s) graded");
                seen = None; // more may wait
            }
            Err(e) => {
                seen = None;
                if !node.engine.storage_failed() {
                    tracing::error!("grading: {e}");
                }
            }
        }
    }
}

// ------------------------------------------------------ certifications

/// Whether a renewal reminder is due at `now` (one read of the first).
pub fn renewal_due(read: &Read, now: Millis) -> Result<bool, StoreError> {
    crate::library::first_due(read, &format!("certx{SEP}"), now)
}

/// Gives the renewal reminders due at `now` (at most `limit`), once each:
/// a notification (and its mail) of kind `certification.renew` to the
/// users of the web partner holding it, or to this node's staff for a
/// certification its own people received from a vendor. A vendor does not
/// remind a connected partner's people: their own node does. Answers
/// whether mail was queued.
pub fn remind_renewals(
    t: &mut Tables<'_>,
    s: &crate::notify::MailSettings,
    me: &NodeId,
    now: Millis,
    limit: usize,
) -> Result<bool, EngineError> {
    let due = crate::library::due_entries(t, &format!("certx{SEP}"), now, limit)?;
    let mut mail = false;
    for entry in due {
        t.delete_doc(Doc::Library, &entry)?;
        let Some(id) = entry.rsplit(SEP).next() else {
            continue;
        };
        let Some(kept) = t
            .doc(Doc::Library, &format!("cert{SEP}{id}"))?
            .and_then(|b| serde_json::from_slice::<Kept>(&b).ok())
        else {
            continue;
        };
        let Some(cert) = kept.certification() else {
            continue;
        };
        let told = match kept.key.strip_prefix("web:") {
            Some(org) => org.to_string(),
            None if &cert.fields.issuer != me => String::new(),
            None => continue,
        };
        let notice = crate::notify::Notice {
            kind: "certification.renew".into(),
            org: cert.fields.holder.clone(),
            label: cert.fields.title.clone(),
            link: format!("/certifications/{id}"),
            at: now,
        };
        for user in crate::accounts::enabled_members(t, &told)? {
            mail |= crate::notify::add(t, s, &user, &notice)?;
        }
    }
    Ok(mail)
}

/// A certification kept here, by id.
pub fn certification(read: &Read, id: &str) -> Result<Option<Kept>, StoreError> {
    Ok(read
        .doc(Doc::Library, &format!("cert{SEP}{id}"))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Whether `user` may see certification `kept`: staff all; a partner user
/// those of its organization earned in this web view.
pub fn may_see(user: &User, kept: &Kept) -> bool {
    match &user.partner {
        None => true,
        Some(org) => kept.key == crate::records::web_key(org),
    }
}

/// The certifications kept here newest first, after `cursor` (`time/own/id`):
/// all of them, or those of `organization`.
pub fn page(
    read: &Read,
    organization: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<SignedCertification>, Option<String>), StoreError> {
    let (entries, next) = match organization {
        None => library::newest_in(read, &[format!("certt{SEP}")], cursor, limit)?,
        Some(org) => {
            // By organization the index has no time: read it forward.
            let prefix = format!("certo{SEP}{org}{SEP}");
            let rows = read.docs_page(Doc::Library, &prefix, None, Order::Forward, limit)?;
            let ids = rows
                .into_iter()
                .filter_map(|(k, _)| k.strip_prefix(&prefix).map(|id| format!("0{SEP}{id}")))
                .collect();
            (ids, None)
        }
    };
    let mut out = Vec::new();
    for e in entries {
        let Some((_, id)) = e.split_once(SEP) else {
            continue;
        };
        if let Some(c) = certification(read, id)?.and_then(|k| k.certification()) {
            out.push(c);
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.fields.issued));
    Ok((out, next))
}

/// One tier requirement: `people` certified in course `course` for `tier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub tier: String,
    pub course: String,
    pub people: u32,
}

/// Reads requirements written one per line: `<tier> <course code> <people>`.
pub fn parse_requirements(text: &str) -> Result<Vec<Requirement>, Refusal> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let bad = |m: &str| {
            refuse(
                ReasonCode::BadBody,
                format!("requirements: line {}: {m}", i + 1),
            )
        };
        let [tier, course, people] = words[..] else {
            return Err(bad(
                "write the tier, the course code and the number of people",
            ));
        };
        let people: u32 = people
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("the number of people must be 1 to 1000"))?;
        out.push(Requirement {
            tier: tier.to_string(),
            course: course.to_string(),
            people,
        });
    }
    Ok(out)
}

/// The tier requirements staff set.
pub fn requirements(read: &Read) -> Result<Vec<Requirement>, StoreError> {
    Ok(read
        .doc(Doc::Library, "treq")?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Replaces the tier requirements.
pub async fn set_requirements(node: &Node, list: Vec<Requirement>) -> Result<(), EngineError> {
    node.engine
        .act(move |a| {
            a.tables.put_doc(Doc::Library, "treq", &json(&list)?)?;
            Ok(())
        })
        .await
}

/// Where a partner stands on one requirement of its tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub requirement: Requirement,
    /// The people holding a valid certification of the course.
    pub holders: Vec<String>,
}

/// The requirements of `tier` and who at the organizations `orgs` (a
/// partner's id and its peer id) meets them at `now`; expired
/// certifications do not count.
pub fn standing(
    read: &Read,
    tier: &str,
    orgs: &[&str],
    now: Millis,
) -> Result<(Vec<Progress>, Vec<SignedCertification>), StoreError> {
    let mut held = Vec::new();
    for org in orgs {
        held.extend(page(read, Some(org), None, 1000)?.0);
    }
    let mut out = Vec::new();
    for r in requirements(read)?
        .into_iter()
        .filter(|r| r.tier.trim().eq_ignore_ascii_case(tier.trim()))
    {
        let mut holders: Vec<String> = held
            .iter()
            .filter(|c| c.fields.course == r.course && c.standing(now) == Standing::Valid)
            .map(|c| c.fields.holder.clone())
            .collect();
        holders.sort();
        holders.dedup();
        out.push(Progress {
            requirement: r,
            holders,
        });
    }
    Ok((out, held))
}
