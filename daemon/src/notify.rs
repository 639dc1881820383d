//! Notifications: telling people what waits for them.
//!
//! Every message that changes a shared record is looked at in the engine's
//! write transaction ([`hook`]): when it needs a person (a lead offered, an
//! order shipped, a claim decided, …) each enabled user on the other side
//! of it gets a notification — this node's staff for what a partner did,
//! the users of a partner without a daemon for what this node did on its
//! records. In the same transaction the mail it causes is queued (at once,
//! or for the user's daily digest), so a notification is never lost and
//! never blocks the business message: the [`crate::mailer`] sends the
//! queue later and retries what fails.
//!
//! Storage (`Doc::Notice`): `n␟USER␟TIME␟ID` → [`Notice`], `u␟USER` → the
//! unread count, `s␟USER` → when the user last opened the list. The mail
//! queue is `Doc::Mail` (see [`MailJob`]).

use crate::accounts::{self, MailChoice, User};
use crate::engine::{Applied, AppliedHook, EngineError};
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use guanxi_protocol::Millis;
use guanxi_protocol::messages::Message;
use guanxi_protocol::state::Record;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The unit separator between the parts of a key.
const SEP: char = '\u{1f}';

/// One notification, as kept for its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The message kind that caused it (`order.ship`); shown in words.
    pub kind: String,
    /// The other organization (node or partner id).
    pub org: String,
    /// What the record is, for people (a customer, an order reference).
    pub label: String,
    /// The record's page on this node's web view (a path).
    pub link: String,
    pub at: Millis,
}

/// A mail waiting to be sent (`q␟DUE␟ID` in `Doc::Mail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailJob {
    pub user: String,
    /// The notification, for a mail of one; `None` for the user's digest.
    pub notice: Option<Notice>,
    /// Failed tries so far, and the last error.
    pub attempts: u32,
    pub error: Option<String>,
}

/// Mails that could not be sent after every retry (`failed` in
/// `Doc::Mail`): how many, and the last reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailFailures {
    pub count: u64,
    pub last_error: String,
    pub at: Millis,
}

/// How mail is sent from this node, as the hook needs it.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// An `[smtp]` server is configured: mail is queued.
    pub on: bool,
    /// The hour of the user's day digests go out.
    pub digest_hour: u8,
    /// The node's time zone (`[web] time_zone`), for users with none.
    pub default_zone: String,
}

impl MailSettings {
    /// The settings `config` gives (`[smtp]`, `[web] time_zone`).
    pub fn of(config: &guanxi_config::Config) -> MailSettings {
        MailSettings {
            on: config.smtp.is_some(),
            digest_hour: config.smtp.as_ref().map_or(8, |s| s.digest_hour),
            default_zone: config.web.time_zone.clone(),
        }
    }
}

/// Whether a message needs a person on the other side; not bookkeeping
/// (pings, checkpoints, attachments, the vendor's own lead updates and
/// expiries, which the partner sees on the record).
pub fn needs_person(message: &Message) -> bool {
    !matches!(
        message,
        Message::Ping(_)
            | Message::AttachmentPut(_)
            | Message::MdfCheckpoint(_)
            | Message::LeadUpdate(_)
            | Message::LeadExpire(_)
            | Message::AnnouncementAck(_)
            | Message::QuizSubmit(_)
            | Message::SurveyAnswer(_)
            // Many at once, the partner's own history: its lists show them.
            | Message::RecordHandover(_)
    )
}

/// What a record is, for people.
pub fn label_of(record: &Record) -> String {
    match record {
        Record::Lead(l) => l.offer.customer.company.clone(),
        Record::Registration(r) => r.deal.customer.company.clone(),
        Record::Order(o) => o.reference.clone(),
        Record::Catalog(c) => c.vendor.to_string(),
        Record::Mdf(m) => m.period.clone(),
        Record::Warranty(w) => format!("{} {}", w.claim.sku, w.claim.serial),
        Record::Service(s) => format!("{} · {}", s.request.customer.company, s.request.sku),
        Record::Resource(r) => r.resource.title.clone(),
        Record::Announcement(a) => a.post.title.clone(),
        Record::Quiz(q) => q.submit.learner.clone(),
        Record::Scorecard(s) => s.share.period.name.clone(),
        Record::Goal(g) => format!(
            "{} {} · {}",
            g.proposal.metric, g.target, g.proposal.period.name
        ),
        Record::Survey(s) => s.survey.title_en.clone(),
    }
}

/// The page of the record `subject` kept under `key`, as seen from the
/// side of `me` (this node, or the partner whose users are told).
pub fn link_of(record: &Record, key: &str, subject: &str, me: &str) -> String {
    match record {
        Record::Lead(l) if l.vendor.as_str() == me => {
            let lead = subject.rsplit_once('.').map_or(subject, |(id, _)| id);
            format!("/leads/{lead}")
        }
        Record::Lead(l) => format!("/offers/{}/{subject}", l.vendor),
        Record::Registration(r) if r.vendor.as_str() == me => {
            format!("/registrations/{key}/{subject}")
        }
        Record::Registration(_) => "/deals".to_string(),
        Record::Order(_) => format!("/orders/{key}/{subject}"),
        Record::Catalog(c) => format!("/shop/{}", c.vendor),
        Record::Mdf(_) => format!("/mdf/{key}/{subject}"),
        Record::Warranty(_) => format!("/claims/{key}/{subject}"),
        Record::Service(_) => format!("/service/{key}/{subject}"),
        Record::Resource(_) => format!("/library/{key}/{subject}"),
        Record::Announcement(_) => format!("/announcements/{key}/{subject}"),
        Record::Quiz(_) => format!("/quiz/{key}/{subject}"),
        Record::Goal(_) => format!("/goals/{key}/{subject}"),
        Record::Survey(_) => format!("/surveys/{key}/{subject}"),
        Record::Scorecard(s) => format!(
            "/scorecard?vendor={}&period={}",
            s.vendor, s.share.period.name
        ),
    }
}

/// Milliseconds as a key part that sorts by time.
fn time_key(ms: Millis) -> String {
    format!("{:020}", ms.max(0))
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|e| EngineError::Failed(e.to_string()))
}

fn count(t: &Tables<'_>, key: &str) -> Result<u64, StoreError> {
    Ok(t.doc(Doc::Notice, key)?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0))
}

/// The hook the engine runs on every applied message.
pub fn hook(settings: MailSettings) -> AppliedHook {
    Arc::new(move |t, applied| on_applied(t, &settings, applied))
}

fn on_applied(t: &mut Tables<'_>, s: &MailSettings, a: &Applied<'_>) -> Result<bool, EngineError> {
    if !needs_person(a.message) {
        return Ok(false);
    }
    // Who is told, from which side they see the record, and who acted: a
    // partner without a daemon hears what this node did on its records;
    // this node's staff hear what partners did.
    let (told, side, actor) = match a.key.strip_prefix("web:") {
        Some(partner) if a.from.as_str() != partner => (partner, partner, a.from.as_str()),
        Some(partner) => ("", a.to.as_str(), partner),
        None => ("", a.to.as_str(), a.from.as_str()),
    };
    let notice = Notice {
        kind: a.message.kind().to_string(),
        org: actor.to_string(),
        label: label_of(a.record),
        link: link_of(a.record, a.key, a.subject, side),
        at: a.at,
    };
    // A message replayed while healing was mailed when it first came: the
    // notification comes back, the mail is not sent twice.
    let quiet;
    let s = if a.replayed {
        quiet = MailSettings {
            on: false,
            ..s.clone()
        };
        &quiet
    } else {
        s
    };
    let mut mail = false;
    for user in accounts::enabled_members(t, told)? {
        mail |= add(t, s, &user, &notice)?;
    }
    Ok(mail)
}

/// Gives `user` the notification and queues its mail. Answers whether
/// mail was queued.
pub fn add(
    t: &mut Tables<'_>,
    s: &MailSettings,
    user: &User,
    notice: &Notice,
) -> Result<bool, EngineError> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let name = &user.username;
    t.put_doc(
        Doc::Notice,
        &format!("n{SEP}{name}{SEP}{}{SEP}{id}", time_key(notice.at)),
        &json(notice)?,
    )?;
    let unread = format!("u{SEP}{name}");
    let n = count(t, &unread)? + 1;
    t.put_doc(Doc::Notice, &unread, n.to_string().as_bytes())?;
    if !s.on || user.email.is_empty() {
        return Ok(false);
    }
    match user.mail {
        MailChoice::Off => Ok(false),
        MailChoice::Immediate => {
            let job = MailJob {
                user: name.clone(),
                notice: Some(notice.clone()),
                attempts: 0,
                error: None,
            };
            t.put_doc(
                Doc::Mail,
                &format!("q{SEP}{}{SEP}{id}", time_key(notice.at)),
                &json(&job)?,
            )?;
            Ok(true)
        }
        MailChoice::Digest => {
            t.put_doc(
                Doc::Mail,
                &format!("d{SEP}{name}{SEP}{}{SEP}{id}", time_key(notice.at)),
                &json(notice)?,
            )?;
            let marker = format!("dq{SEP}{name}");
            if t.doc(Doc::Mail, &marker)?.is_none() {
                let due = next_digest(s, user, notice.at);
                let key = format!("q{SEP}{}{SEP}{id}", time_key(due));
                let job = MailJob {
                    user: name.clone(),
                    notice: None,
                    attempts: 0,
                    error: None,
                };
                t.put_doc(Doc::Mail, &key, &json(&job)?)?;
                t.put_doc(Doc::Mail, &marker, key.as_bytes())?;
            }
            Ok(true)
        }
    }
}

/// The next time it is `digest_hour` o'clock in the user's zone after `at`.
pub fn next_digest(s: &MailSettings, user: &User, at: Millis) -> Millis {
    let zone = [user.time_zone.as_str(), s.default_zone.as_str()]
        .into_iter()
        .filter(|z| !z.is_empty())
        .find_map(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let next = jiff::Timestamp::from_millisecond(at).ok().and_then(|t| {
        let local = t.to_zoned_datetime(zone.clone());
        let today =
            local
                .date()
                .to_datetime(jiff::civil::Time::constant(s.digest_hour as i8, 0, 0, 0));
        let candidate = today.to_zoned_datetime(zone.clone()).ok()?;
        let due = if candidate.timestamp() > t {
            candidate
        } else {
            today
                .date()
                .tomorrow()
                .ok()?
                .to_datetime(today.time())
                .to_zoned_datetime(zone)
                .ok()?
        };
        Some(due.timestamp().as_millisecond())
    });
    next.unwrap_or(at + 24 * 3_600_000)
}

/// One page of a user's notifications, newest first, after `cursor` (the
/// key of the previous page's last one); and the cursor of the next page.
pub fn page(
    read: &Read,
    username: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Notice>, Option<String>), StoreError> {
    let prefix = format!("n{SEP}{username}{SEP}");
    let rows = read.docs_page(Doc::Notice, &prefix, cursor, Order::Backward, limit + 1)?;
    let next = (rows.len() > limit)
        .then(|| rows.get(limit - 1).map(|(k, _)| k.clone()))
        .flatten();
    let notices = rows
        .iter()
        .take(limit)
        .filter_map(|(_, b)| serde_json::from_slice(b).ok())
        .collect();
    Ok((notices, next))
}

/// How many of the user's notifications are unread.
pub fn unread(read: &Read, username: &str) -> Result<u64, StoreError> {
    Ok(read
        .doc(Doc::Notice, &format!("u{SEP}{username}"))?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0))
}

/// When the user last opened the notifications list (0: never).
pub fn last_seen(read: &Read, username: &str) -> Result<Millis, StoreError> {
    Ok(read
        .doc(Doc::Notice, &format!("s{SEP}{username}"))?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0))
}

/// The user has seen the list at `now`: nothing is unread any more.
pub fn mark_seen(t: &mut Tables<'_>, username: &str, now: Millis) -> Result<(), StoreError> {
    t.put_doc(Doc::Notice, &format!("u{SEP}{username}"), b"0")?;
    t.put_doc(
        Doc::Notice,
        &format!("s{SEP}{username}"),
        now.to_string().as_bytes(),
    )
}

/// Mails given up on, if any.
pub fn failures(read: &Read) -> Result<Option<MailFailures>, StoreError> {
    Ok(read
        .doc(Doc::Mail, "failed")?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Mails waiting for a retry after a failure: how many (of the first
/// `limit` queued) and the last error.
pub fn retrying(read: &Read, limit: usize) -> Result<(usize, Option<String>), StoreError> {
    let rows = read.docs_page(Doc::Mail, &format!("q{SEP}"), None, Order::Forward, limit)?;
    let mut n = 0;
    let mut last = None;
    for (_, b) in rows {
        if let Ok(job) = serde_json::from_slice::<MailJob>(&b)
            && job.attempts > 0
        {
            n += 1;
            last = job.error;
        }
    }
    Ok((n, last))
}

/// How long before an offer's deadline its partner is reminded: four
/// hours, or a quarter of the time it was given when that is shorter.
pub fn reminder_before(offered_at: Millis, accept_by: Millis) -> Millis {
    ((accept_by - offered_at) / 4).clamp(0, 4 * 3_600_000)
}

/// After the engine saved a lead offer: while it waits for an answer from
/// people of this node (a web partner's users here, or this node's staff
/// for an offer from a vendor's daemon), it is listed to be reminded of
/// (`soon␟TIME␟KEY␟SUBJECT` in the record index; `soonof␟KEY␟SUBJECT`
/// names the entry), and no longer once answered.
pub fn lead_saved(
    t: &mut Tables<'_>,
    key: &str,
    subject: &str,
    lead: &guanxi_protocol::state::Lead,
    ours: bool,
) -> Result<(), EngineError> {
    let of = format!("soonof{SEP}{key}{SEP}{subject}");
    let old = t
        .doc(Doc::RecordIndex, &of)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let new = (ours && lead.status == guanxi_protocol::state::LeadStatus::Offered).then(|| {
        let at = lead.offer.accept_by - reminder_before(lead.offered_at, lead.offer.accept_by);
        format!("soon{SEP}{}{SEP}{key}{SEP}{subject}", time_key(at))
    });
    if old == new {
        return Ok(());
    }
    if let Some(old) = &old {
        t.delete_doc(Doc::RecordIndex, old)?;
    }
    match &new {
        Some(entry) => {
            t.put_doc(Doc::RecordIndex, entry, b"")?;
            t.put_doc(Doc::RecordIndex, &of, entry.as_bytes())?;
        }
        None => {
            t.delete_doc(Doc::RecordIndex, &of)?;
        }
    }
    Ok(())
}

/// Reminds the people who must answer offers whose deadline is near (at
/// `now`, at most `limit` offers): a notification of kind `lead.deadline`
/// (and its mail) for each, once. Answers how many offers and whether
/// mail was queued.
pub fn remind_due(
    t: &mut Tables<'_>,
    s: &MailSettings,
    now: Millis,
    limit: usize,
) -> Result<(usize, bool), EngineError> {
    let prefix = format!("soon{SEP}");
    let due: Vec<String> = t
        .docs_page(Doc::RecordIndex, &prefix, None, Order::Forward, limit)?
        .into_iter()
        .map(|(k, _)| k)
        .take_while(|k| {
            k.split(SEP)
                .nth(1)
                .and_then(|at| at.parse::<Millis>().ok())
                .is_some_and(|at| at <= now)
        })
        .collect();
    let mut mail = false;
    for entry in &due {
        let mut parts = entry.splitn(4, SEP).skip(2);
        let (Some(key), Some(subject)) = (parts.next(), parts.next()) else {
            t.delete_doc(Doc::RecordIndex, entry)?;
            continue;
        };
        t.delete_doc(Doc::RecordIndex, entry)?;
        t.delete_doc(Doc::RecordIndex, &format!("soonof{SEP}{key}{SEP}{subject}"))?;
        let record = t
            .record(key, subject)?
            .and_then(|b| crate::records::parse_record(key, subject, &b));
        let Some(record @ Record::Lead(lead)) = &record else {
            continue;
        };
        if lead.status != guanxi_protocol::state::LeadStatus::Offered {
            continue;
        }
        let (told, side) = match key.strip_prefix("web:") {
            Some(partner) => (partner, partner),
            None => ("", lead.partner.as_str()),
        };
        let notice = Notice {
            kind: "lead.deadline".into(),
            org: lead.vendor.to_string(),
            label: label_of(record),
            link: link_of(record, key, subject, side),
            at: now,
        };
        for user in accounts::enabled_members(t, told)? {
            mail |= add(t, s, &user, &notice)?;
        }
    }
    Ok((due.len(), mail))
}

/// The queue's key layout, for the mailer.
pub mod keys {
    use super::{SEP, time_key};
    use guanxi_protocol::Millis;

    /// Prefix of queued mails.
    pub fn queued() -> String {
        format!("q{SEP}")
    }

    /// A queued mail due at `due`.
    pub fn job(due: Millis, id: &str) -> String {
        format!("q{SEP}{}{SEP}{id}", time_key(due))
    }

    /// When a queued mail's key says it is due.
    pub fn due_of(key: &str) -> Option<Millis> {
        key.split(SEP).nth(1)?.parse().ok()
    }

    /// The id part of a queued mail's key.
    pub fn id_of(key: &str) -> &str {
        key.rsplit(SEP).next().unwrap_or(key)
    }

    /// Prefix of a user's notifications waiting for the digest.
    pub fn digest(user: &str) -> String {
        format!("d{SEP}{user}{SEP}")
    }

    /// The marker naming a user's queued digest job.
    pub fn digest_marker(user: &str) -> String {
        format!("dq{SEP}{user}")
    }

    /// A mail given up on.
    pub fn failed(at: Millis, id: &str) -> String {
        format!("f{SEP}{}{SEP}{id}", time_key(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(zone: &str) -> User {
        User {
            username: "mei".into(),
            display_name: "Mei".into(),
            role: accounts::Role::Partner,
            partner: Some("globex".into()),
            password_hash: String::new(),
            disabled: false,
            created: 0,
            must_change_password: false,
            email: "mei@globex.example".into(),
            time_zone: zone.into(),
            language: String::new(),
            mail: MailChoice::Digest,
        }
    }

    /// What healing replays (SPEC §22) comes back as a notification but
    /// is not mailed again; the same message the first time is mailed.
    #[tokio::test]
    async fn a_replayed_message_is_not_mailed_twice() {
        use crate::engine::{Applied, Engine, Hooks};
        use guanxi_protocol::messages::Message;
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            std::sync::Arc::new(guanxi_adapters::store::Store::open(dir.path()).expect("store"));
        let identity = std::sync::Arc::new(crate::engine::Identity::new(
            "acme".parse().expect("id"),
            guanxi_protocol::NodeKey::from_seed(&[3u8; 32]),
            Vec::new(),
        ));
        let (engine, _writer) = Engine::start(store, identity, Hooks::none());
        let mut mei = user("Asia/Taipei");
        mei.mail = MailChoice::Immediate;
        let mei = json(&mei).expect("user");
        let mailed = engine
            .local(move |t| {
                t.put_doc(Doc::User, "mei", &mei)?;
                t.put_doc(Doc::PartnerUser, "globex\u{1f}mei", b"1")?;
                let offer = Message::decode(
                    "lead.offer",
                    &serde_json::json!({"customer": {"company": "Contoso", "contact": "", "email": "", "phone": ""},
                        "country": "TW", "region": "", "product_lines": ["cnc"], "estimated_value": null,
                        "source": "web", "campaign": "", "notes": "", "accept_by": 2_000_000_000_000i64}),
                )
                .map_err(|e| EngineError::Failed(e.to_string()))?;
                let (acme, globex) = ("acme".parse().expect("id"), "globex".parse().expect("id"));
                let ctx = guanxi_protocol::state::Context {
                    from: acme,
                    to: globex,
                    at: 1_000,
                };
                let record = guanxi_protocol::state::apply(None, &ctx, &offer)
                    .map_err(|e| EngineError::Failed(e.to_string()))?
                    .expect("a lead");
                let s = MailSettings {
                    on: true,
                    digest_hour: 8,
                    default_zone: String::new(),
                };
                let mut out = Vec::new();
                for replayed in [true, false] {
                    let applied = Applied {
                        key: "web:globex",
                        subject: "lead-1.1",
                        from: &ctx.from,
                        to: &ctx.to,
                        message: &offer,
                        record: &record,
                        at: 1_000,
                        seq: None,
                        replayed,
                    };
                    out.push(on_applied(t, &s, &applied)?);
                }
                Ok(out)
            })
            .await
            .expect("runs");
        assert_eq!(mailed, vec![false, true]);
    }

    #[test]
    fn digests_go_out_at_the_hour_of_the_users_own_day() {
        let s = MailSettings {
            on: true,
            digest_hour: 8,
            default_zone: String::new(),
        };
        let at = |text: &str| {
            text.parse::<jiff::Timestamp>()
                .expect("time")
                .as_millisecond()
        };
        // 01:30 in Taipei (17:30 UTC the day before): 08:00 the same day.
        assert_eq!(
            next_digest(&s, &user("Asia/Taipei"), at("2026-12-01T17:30:00Z")),
            at("2026-12-02T00:00:00Z")
        );
        // 09:00 in Taipei: 08:00 the next day.
        assert_eq!(
            next_digest(&s, &user("Asia/Taipei"), at("2026-12-02T01:00:00Z")),
            at("2026-12-03T00:00:00Z")
        );
        // No zone anywhere: UTC.
        assert_eq!(
            next_digest(&s, &user(""), at("2026-12-02T07:59:00Z")),
            at("2026-12-02T08:00:00Z")
        );
    }
}
