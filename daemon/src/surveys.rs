//! Surveys (SPEC §20): staff write one (questions in both languages, a
//! closing time, perhaps anonymous), send it to the partners a target
//! covers — over the stream to a partner's daemon, as a record under
//! `web:<partner>` for a partner without one — and read the results: NPS,
//! rating averages, choice counts and free text, per partner and tier,
//! with the trend across a series' rounds. People answer once each: a web
//! partner's users in the web view, a connected partner's staff in their
//! own node (signed `survey.answer`). Responses count in the scorecard.
//!
//! Keys in the `library` table:
//! - `srv␟<id>` → JSON of an [`OwnSurvey`]; `srvo␟<time>␟<id>` the own
//!   surveys newest last; `srvs␟<series>␟<time>␟<id>` by series;
//! - `srvx␟<time>␟<key>␟<subject>` → a reminder due for the people who
//!   have not answered; `srvr␟<key>␟<subject>` marks it planned once;
//! - `survey_salt` (settings): what makes respondents' pseudonyms of
//!   anonymous surveys unguessable from names.

use crate::accounts::User;
use crate::engine::EngineError;
use crate::library::Target;
use crate::node::Node;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::messages::{
    SurveyAnswer, SurveyAnswerItem, SurveyChoice, SurveyQuestion, SurveySend,
};
use guanxi_protocol::state::survey::SurveyRecord;
use guanxi_protocol::state::{Record, StateError};
use guanxi_protocol::{Message, Millis, NodeId, ReasonCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SEP: char = '\u{1f}';
const DAY: Millis = 86_400_000;

/// A survey this node sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnSurvey {
    pub id: String,
    pub survey: SurveySend,
    pub target: Target,
    pub created_at: Millis,
    pub by: String,
    /// Where each recipient's record is kept (a peer id or `web:<id>`),
    /// and its directory id.
    pub sent_to: BTreeMap<String, String>,
}

/// The subject of this node's survey `id`.
pub fn subject_of(me: &NodeId, id: &str) -> String {
    format!("survey.{me}.{id}")
}

fn time16(ms: Millis) -> String {
    format!("{:016}", ms.max(0))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(v).map_err(|e| EngineError::Corrupt(e.to_string()))
}

fn refuse(message: impl Into<String>) -> StateError {
    StateError {
        code: ReasonCode::BadBody,
        message: message.into(),
    }
}

/// Reads questions written one per line: `<kind>: <English> | <中文>`,
/// kind `nps`, `rating`, `single`, `multiple` or `text` (`text?:` and the
/// like: the question may be left out), and under a choice question its
/// choices as `- <English> | <中文>`. The error names the line.
pub fn parse_questions(text: &str) -> Result<Vec<SurveyQuestion>, String> {
    let mut out: Vec<SurveyQuestion> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: &str| format!("line {}: {m}", i + 1);
        let both = |t: &str| -> Result<(String, String), String> {
            let (en, zh) = t
                .split_once('|')
                .ok_or_else(|| bad("write the English text, then | and the Chinese text"))?;
            let (en, zh) = (en.trim(), zh.trim());
            if en.is_empty() || zh.is_empty() {
                return Err(bad("both texts are needed"));
            }
            Ok((en.to_string(), zh.to_string()))
        };
        if let Some(choice) = line.strip_prefix("- ") {
            let Some(q) = out
                .last_mut()
                .filter(|q| matches!(q.kind.as_str(), "single" | "multiple"))
            else {
                return Err(bad("a choice belongs under a single or multiple question"));
            };
            let (en, zh) = both(choice)?;
            let id = format!("c{}", q.choices.len() + 1);
            q.choices.push(SurveyChoice { id, en, zh });
            continue;
        }
        let (kind, rest) = line
            .split_once(':')
            .ok_or_else(|| bad("start with nps:, rating:, single:, multiple: or text:"))?;
        let (kind, required) = match kind.trim().strip_suffix('?') {
            Some(k) => (k.trim(), false),
            None => (kind.trim(), true),
        };
        if !matches!(kind, "nps" | "rating" | "single" | "multiple" | "text") {
            return Err(bad("start with nps:, rating:, single:, multiple: or text:"));
        }
        let (text_en, text_zh) = both(rest)?;
        out.push(SurveyQuestion {
            id: format!("q{}", out.len() + 1),
            kind: kind.to_string(),
            text_en,
            text_zh,
            choices: Vec::new(),
            required,
        });
    }
    if let Some(q) = out
        .iter()
        .find(|q| matches!(q.kind.as_str(), "single" | "multiple") && q.choices.len() < 2)
    {
        return Err(format!(
            "{}: a choice question needs two choices or more",
            q.text_en
        ));
    }
    if out.is_empty() {
        return Err("write at least one question".into());
    }
    Ok(out)
}

/// The partners `target` covers: (directory id, peer id if it has a
/// daemon). Reads the directory a page at a time, outside any write.
pub fn recipients(
    read: &Read,
    target: &Target,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (list, next) = crate::directory::page(read, after.as_deref(), 500)?;
        out.extend(
            list.into_iter()
                .filter(|p| target.covers(p))
                .map(|p| (p.id, p.peer)),
        );
        match next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Sends a new survey to every partner `target` covers (connected ones
/// over the stream) in one transaction; answers its id. A survey the wire
/// would refuse is refused whole, naming the field.
pub async fn send(
    node: &Node,
    user: &User,
    survey: SurveySend,
    target: Target,
) -> Result<Result<String, StateError>, EngineError> {
    let body = serde_json::to_value(&survey).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    if let Err(refused) = crate::engine::decode_message("survey.send", &body) {
        return Ok(Err(refused));
    }
    let t = target.clone();
    let mut to = node.reading(move |r| recipients(r, &t)).await?;
    let peers: Vec<String> = node.enabled_peers();
    // A vendor of this node is no directory entry: it is surveyed when
    // named (every node is a vendor to some and a partner to others).
    for peer in &peers {
        if target.names(peer) && !to.iter().any(|(_, p)| p.as_deref() == Some(peer)) {
            to.push((peer.clone(), Some(peer.clone())));
        }
    }
    if to.is_empty() {
        return Ok(Err(refuse("target: no partner is covered")));
    }
    let by = user.username.clone();
    node.engine
        .act(move |a| {
            let id = format!("S{}", &uuid::Uuid::now_v7().simple().to_string()[..16]);
            let subject = subject_of(a.me(), &id);
            let message = Message::SurveySend(survey.clone());
            let me = a.me().clone();
            let mut sent_to = BTreeMap::new();
            for (partner, peer) in &to {
                let result = match peer {
                    Some(peer) if peers.contains(peer) => {
                        let (Ok(node), Ok(s)) = (peer.parse::<NodeId>(), subject.parse()) else {
                            continue;
                        };
                        a.send(&node, &s, &message)?.map(|_| peer.clone())
                    }
                    Some(_) => continue,
                    None => {
                        let Ok(to) = partner.parse::<NodeId>() else {
                            continue;
                        };
                        let key = crate::records::web_key(partner);
                        a.apply_local(&key, &subject, &me, &to, &message)?
                            .map(|_| key)
                    }
                };
                match result {
                    Ok(key) => {
                        sent_to.insert(key, partner.clone());
                    }
                    Err(e) => tracing::warn!(%partner, error = %e, "survey refused"),
                }
            }
            let doc = OwnSurvey {
                id: id.clone(),
                survey: survey.clone(),
                target: target.clone(),
                created_at: a.now,
                by: by.clone(),
                sent_to,
            };
            let time = time16(a.now);
            a.tables
                .put_doc(Doc::Library, &format!("srv{SEP}{id}"), &json(&doc)?)?;
            a.tables
                .put_doc(Doc::Library, &format!("srvo{SEP}{time}{SEP}{id}"), b"")?;
            a.tables.put_doc(
                Doc::Library,
                &format!("srvs{SEP}{}{SEP}{time}{SEP}{id}", survey.series),
                b"",
            )?;
            Ok(Ok(id))
        })
        .await
}

/// This node's survey `id`.
pub fn own(read: &Read, id: &str) -> Result<Option<OwnSurvey>, StoreError> {
    Ok(read
        .doc(Doc::Library, &format!("srv{SEP}{id}"))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Up to `limit` own surveys, newest first, continuing at `cursor`; and
/// the cursor of the next page.
pub fn own_page(
    read: &Read,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<OwnSurvey>, Option<String>), StoreError> {
    let (entries, next) = crate::library::newest_in(read, &[format!("srvo{SEP}")], cursor, limit)?;
    let mut out = Vec::new();
    for entry in entries {
        if let Some((_, id)) = entry.split_once(SEP)
            && let Some(s) = own(read, id)?
        {
            out.push(s);
        }
    }
    Ok((out, next))
}

/// The pseudonym or name `username` answers survey `subject` under.
pub fn respondent(salt: &str, anonymous: bool, subject: &str, username: &str) -> String {
    if !anonymous {
        return username.to_string();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{salt}{SEP}{subject}{SEP}{username}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("anon-{hex}")
}

const SALT: &str = "survey_salt";

/// This node's salt for pseudonyms (made on first use).
pub async fn salt(node: &Node) -> Result<String, EngineError> {
    if let Some(b) = node.store.read()?.doc(Doc::Setting, SALT)? {
        return Ok(String::from_utf8_lossy(&b).into_owned());
    }
    node.engine
        .local(|t| {
            if let Some(b) = t.doc(Doc::Setting, SALT)? {
                return Ok(String::from_utf8_lossy(&b).into_owned());
            }
            let made = crate::accounts::random_token(24)
                .map_err(|e| EngineError::Failed(e.to_string()))?;
            t.put_doc(Doc::Setting, SALT, made.as_bytes())?;
            Ok(made)
        })
        .await
}

/// Who answers a survey kept under `key`, and to whom: a partner user its
/// organization's (`web:<org>`), staff one received from a vendor's
/// daemon. `None`: not the reader's to answer.
fn answering(me: &NodeId, user: &User, key: &str) -> Option<(NodeId, NodeId, bool)> {
    match (&user.partner, key.strip_prefix("web:")) {
        (Some(org), Some(p)) if org == p => Some((p.parse().ok()?, me.clone(), false)),
        (None, None) => Some((me.clone(), key.parse().ok()?, true)),
        _ => None,
    }
}

/// The survey record `subject` under `key` if `user` may see it (its
/// recipient's people, or this node's staff for one it sent or got).
pub fn visible(
    read: &Read,
    me: &NodeId,
    user: &User,
    key: &str,
    subject: &str,
) -> Result<Option<SurveyRecord>, StoreError> {
    if user
        .partner
        .as_deref()
        .is_some_and(|org| key != crate::records::web_key(org))
    {
        return Ok(None);
    }
    Ok(match crate::records::read_one(read, key, subject)? {
        Some(Record::Survey(s))
            if user.partner.is_some() || &s.surveyor == me || &s.recipient == me =>
        {
            Some(s)
        }
        _ => None,
    })
}

/// Answers survey `subject` kept under `key` as `user`.
pub async fn answer(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    answers: Vec<SurveyAnswerItem>,
) -> Result<Result<(), StateError>, EngineError> {
    let me = node.identity.id.clone();
    let Some((from, to, peer)) = answering(&me, user, key) else {
        return Ok(Err(StateError {
            code: ReasonCode::NotAllowed,
            message: "this survey is not yours to answer".into(),
        }));
    };
    let (k, s, u) = (key.to_string(), subject.to_string(), user.clone());
    let Some(record) = node.reading(move |r| visible(r, &me, &u, &k, &s)).await? else {
        return Ok(Err(StateError {
            code: ReasonCode::UnknownRecord,
            message: "no such survey".into(),
        }));
    };
    let salt = salt(node).await?;
    let message = Message::SurveyAnswer(SurveyAnswer {
        respondent: respondent(&salt, record.survey.anonymous, subject, &user.username),
        answers,
    });
    if peer {
        return node.send_to_peer(to.as_str(), subject, message).await;
    }
    let (key, subject) = (key.to_string(), subject.to_string());
    node.engine
        .act(move |a| {
            Ok(a.apply_local(&key, &subject, &from, &to, &message)?
                .map(|_| ()))
        })
        .await
}

/// Whether `user` has answered `record` (under this node's salt).
pub fn has_answered(salt: &str, record: &SurveyRecord, subject: &str, user: &User) -> bool {
    record.answered_by(&respondent(
        salt,
        record.survey.anonymous,
        subject,
        &user.username,
    ))
}

/// The salt as a read sees it (empty before the first anonymous answer).
pub fn salt_in(read: &Read) -> Result<String, StoreError> {
    Ok(read
        .doc(Doc::Setting, SALT)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default())
}

/// After the engine saved a survey record: plans, once, a reminder for
/// the people who have to answer it here (a web partner's users at the
/// surveyor, this node's staff for one received) — two days before it
/// closes, or halfway for a shorter survey.
/// `received`: the surveyor is a peer (this node's staff answer).
pub fn record_saved(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    s: &SurveyRecord,
    received: bool,
) -> Result<(), EngineError> {
    let ours_to_answer = key.starts_with("web:") || received;
    let planned = format!("srvr{SEP}{key}{SEP}{subject}");
    if !ours_to_answer || t.doc(Doc::Library, &planned)?.is_some() {
        return Ok(());
    }
    let span = (s.survey.closes_at - s.sent_at).max(0);
    let at = s.survey.closes_at - (2 * DAY).min(span / 2);
    t.put_doc(Doc::Library, &planned, b"")?;
    t.put_doc(
        Doc::Library,
        &format!("srvx{SEP}{}{SEP}{key}{SEP}{subject}", time16(at)),
        b"",
    )?;
    Ok(())
}

/// Before the engine forgets the survey kept under (`key`, `subject`)
/// (handed over, SPEC §25): its planned reminder goes with it.
pub fn record_removed(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    s: &SurveyRecord,
) -> Result<(), EngineError> {
    let span = (s.survey.closes_at - s.sent_at).max(0);
    let at = s.survey.closes_at - (2 * DAY).min(span / 2);
    t.delete_doc(Doc::Library, &format!("srvr{SEP}{key}{SEP}{subject}"))?;
    t.delete_doc(
        Doc::Library,
        &format!("srvx{SEP}{}{SEP}{key}{SEP}{subject}", time16(at)),
    )?;
    Ok(())
}

/// Whether a survey reminder is due at `now` (a read first).
pub fn reminder_due(read: &Read, now: Millis) -> Result<bool, StoreError> {
    crate::library::first_due(read, &format!("srvx{SEP}"), now)
}

/// Gives the survey reminders due at `now` (at most `limit`), once each,
/// to the people who have not answered a still open survey: a
/// notification (and mail) of kind `survey.remind`. Answers whether mail
/// was queued.
pub fn remind_due(
    t: &mut Tables<'_>,
    s: &crate::notify::MailSettings,
    now: Millis,
    limit: usize,
) -> Result<bool, EngineError> {
    let prefix = format!("srvx{SEP}");
    let due = crate::library::due_entries(t, &prefix, now, limit)?;
    let salt = t
        .doc(Doc::Setting, SALT)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut mail = false;
    for entry in due {
        t.delete_doc(Doc::Library, &entry)?;
        let mut parts = entry
            .strip_prefix(&prefix)
            .unwrap_or("")
            .splitn(3, SEP)
            .skip(1);
        let (Some(key), Some(subject)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(Record::Survey(record)) = t
            .record(key, subject)?
            .and_then(|b| crate::records::parse_record(key, subject, &b))
        else {
            continue;
        };
        if now > record.survey.closes_at {
            continue;
        }
        let told = key.strip_prefix("web:").unwrap_or("");
        let notice = crate::notify::Notice {
            kind: "survey.remind".into(),
            org: record.surveyor.to_string(),
            label: record.survey.title_en.clone(),
            link: format!("/surveys/{key}/{subject}"),
            at: now,
        };
        for user in crate::accounts::enabled_members(t, told)? {
            if told.is_empty() && user.partner.is_some() {
                continue;
            }
            if !has_answered(&salt, &record, subject, &user) {
                mail |= crate::notify::add(t, s, &user, &notice)?;
            }
        }
    }
    Ok(mail)
}

/// What the answers to one question come to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuestionResult {
    pub id: String,
    pub kind: String,
    pub text_en: String,
    pub text_zh: String,
    pub answers: u64,
    /// `nps`: −100 to 100; `rating`: the mean × 100 (rounded down).
    pub nps: Option<i64>,
    pub mean_x100: Option<i64>,
    /// Choice id → how many chose it (choice questions); score → how many
    /// (nps, rating).
    pub counts: BTreeMap<String, u64>,
    /// Free text (a `text` question), with who wrote it unless anonymous.
    pub texts: Vec<(String, String)>,
}

/// A survey's results overall and per group (a partner, a tier).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub responses: u64,
    pub recipients: u64,
    /// `None` when anonymous and under three responses.
    pub overall: Option<Vec<QuestionResult>>,
    /// (group, responses, NPS of its first NPS question, its questions):
    /// groups of an anonymous survey with fewer than three responses show
    /// no figures.
    pub by_partner: Vec<(String, u64, Option<Vec<QuestionResult>>)>,
    pub by_tier: Vec<(String, u64, Option<Vec<QuestionResult>>)>,
}

/// The fewest responses an anonymous survey shows results for.
pub const ANONYMOUS_MIN: u64 = 3;

fn tally(
    questions: &[SurveyQuestion],
    responses: &[(String, &guanxi_protocol::state::survey::SurveyResponse)],
    anonymous: bool,
) -> Vec<QuestionResult> {
    questions
        .iter()
        .map(|q| {
            let mut r = QuestionResult {
                id: q.id.clone(),
                kind: q.kind.clone(),
                text_en: q.text_en.clone(),
                text_zh: q.text_zh.clone(),
                ..Default::default()
            };
            let (mut sum, mut promoters, mut detractors) = (0i64, 0i64, 0i64);
            for (who, resp) in responses {
                for a in resp.answers.iter().filter(|a| a.question == q.id) {
                    r.answers += 1;
                    if let Some(score) = a.score {
                        sum += score;
                        *r.counts.entry(score.to_string()).or_default() += 1;
                        promoters += i64::from(score >= 9);
                        detractors += i64::from(score <= 6);
                    }
                    for c in &a.choices {
                        *r.counts.entry(c.clone()).or_default() += 1;
                    }
                    if !a.text.is_empty() {
                        let by = if anonymous {
                            String::new()
                        } else {
                            who.clone()
                        };
                        r.texts.push((by, a.text.clone()));
                    }
                }
            }
            let n = r.answers as i64;
            if n > 0 && q.kind == "nps" {
                r.nps = Some((promoters - detractors) * 100 / n);
            }
            if n > 0 && q.kind == "rating" {
                r.mean_x100 = Some(sum * 100 / n);
            }
            r
        })
        .collect()
}

/// The results of this node's survey `own`, from its recipients' records
/// (one read each; the survey's own recipients, never a family).
pub fn results(read: &Read, me: &NodeId, own: &OwnSurvey) -> Result<Results, StoreError> {
    let subject = subject_of(me, &own.id);
    let anonymous = own.survey.anonymous;
    let mut all = Vec::new();
    let mut per_partner: BTreeMap<
        String,
        Vec<(String, guanxi_protocol::state::survey::SurveyResponse)>,
    > = BTreeMap::new();
    for (key, partner) in &own.sent_to {
        let Some(Record::Survey(r)) = crate::records::read_one(read, key, &subject)? else {
            continue;
        };
        for resp in r.responses {
            per_partner
                .entry(partner.clone())
                .or_default()
                .push((resp.respondent.clone(), resp));
        }
    }
    let mut tiers: BTreeMap<String, Vec<(String, guanxi_protocol::state::survey::SurveyResponse)>> =
        BTreeMap::new();
    let mut by_partner = Vec::new();
    for (partner, list) in &per_partner {
        let tier = crate::directory::load(read, partner)?
            .map(|p| p.tier)
            .unwrap_or_default();
        tiers.entry(tier).or_default().extend(list.iter().cloned());
        all.extend(list.iter().cloned());
        let refs: Vec<(String, &guanxi_protocol::state::survey::SurveyResponse)> =
            list.iter().map(|(w, r)| (w.clone(), r)).collect();
        let shown = (!anonymous || list.len() as u64 >= ANONYMOUS_MIN)
            .then(|| tally(&own.survey.questions, &refs, anonymous));
        by_partner.push((partner.clone(), list.len() as u64, shown));
    }
    let by_tier = tiers
        .iter()
        .map(|(tier, list)| {
            let refs: Vec<(String, &guanxi_protocol::state::survey::SurveyResponse)> =
                list.iter().map(|(w, r)| (w.clone(), r)).collect();
            let shown = (!anonymous || list.len() as u64 >= ANONYMOUS_MIN)
                .then(|| tally(&own.survey.questions, &refs, anonymous));
            (tier.clone(), list.len() as u64, shown)
        })
        .collect();
    let refs: Vec<(String, &guanxi_protocol::state::survey::SurveyResponse)> =
        all.iter().map(|(w, r)| (w.clone(), r)).collect();
    let responses = all.len() as u64;
    Ok(Results {
        responses,
        recipients: own.sent_to.len() as u64,
        overall: (!anonymous || responses >= ANONYMOUS_MIN)
            .then(|| tally(&own.survey.questions, &refs, anonymous)),
        by_partner,
        by_tier,
    })
}

/// The rounds of `series`, oldest first: (round, responses, overall NPS of
/// the first NPS question, when shown).
pub fn trend(
    read: &Read,
    me: &NodeId,
    series: &str,
) -> Result<Vec<(String, u64, Option<i64>)>, StoreError> {
    let prefix = format!("srvs{SEP}{series}{SEP}");
    let mut out = Vec::new();
    for (k, _) in read.docs_page(Doc::Library, &prefix, None, Order::Forward, 50)? {
        let Some(id) = k.rsplit(SEP).next() else {
            continue;
        };
        let Some(own) = own(read, id)? else { continue };
        let r = results(read, me, &own)?;
        let nps = r
            .overall
            .as_ref()
            .and_then(|qs| qs.iter().find_map(|q| q.nps));
        out.push((own.survey.round.clone(), r.responses, nps));
    }
    Ok(out)
}
