//! The mailer: sends the durable mail queue of [`crate::notify`] through
//! the `[smtp]` server, each mail in its reader's language with links to
//! the records, and daily digests at the hour of the reader's day.
//!
//! A mail leaves the queue only once the server took it. A failure is
//! retried with a growing delay (1 minute, doubling, at most 2 hours);
//! after [`MAX_ATTEMPTS`] the mail is set aside and counted, and the staff
//! inbox says so. Business messages never wait for mail: they committed
//! before the mail was tried.

use crate::accounts::{self, User};
use crate::directory;
use crate::engine::EngineError;
use crate::node::Node;
use crate::notify::{self, MailFailures, MailJob, Notice, keys};
use crate::web::format::Locale;
use crate::web::i18n::Lang;
use guanxi_adapters::store::{Doc, Order, Read};
use guanxi_config::{SmtpConfig, SmtpSecurity};
use guanxi_protocol::Millis;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;

/// Tries before a mail is set aside.
pub const MAX_ATTEMPTS: u32 = 10;
/// Mails taken from the queue per round.
const BATCH: usize = 20;
/// Notifications listed in one digest (the rest are on the web page).
const DIGEST_MAX: usize = 100;

/// Runs until `stop`: a round when the engine queued mail, and every
/// second for mail that became due (retries, digests).
pub async fn run(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let wakers = node.engine.wakers();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wakers.mail.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Err(e) = remind(&node).await
            && !node.engine.storage_failed()
        {
            tracing::error!("offer reminders: {e}");
        }
        if let Err(e) = remind_renewals(&node).await
            && !node.engine.storage_failed()
        {
            tracing::error!("renewal reminders: {e}");
        }
        if let Err(e) = remind_surveys(&node).await
            && !node.engine.storage_failed()
        {
            tracing::error!("survey reminders: {e}");
        }
        if let Some(smtp) = node.config().smtp.clone()
            && let Err(e) = send_due(&node, &smtp).await
            && !node.engine.storage_failed()
        {
            tracing::error!("mailer: {e}");
        }
        node.ticks
            .mailer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reminds people of offers whose deadline is near, when any is due (a
/// read first: no write transaction while nothing is).
async fn remind(node: &Node) -> Result<(), EngineError> {
    let now = crate::clock::now_ms();
    let due = node
        .store
        .read()?
        .docs_page(
            guanxi_adapters::store::Doc::RecordIndex,
            "soon\u{1f}",
            None,
            Order::Forward,
            1,
        )?
        .first()
        .and_then(|(k, _)| k.split('\u{1f}').nth(1)?.parse::<Millis>().ok())
        .is_some_and(|at| at <= now);
    if !due {
        return Ok(());
    }
    let settings = notify::MailSettings::of(&node.config());
    let (_, mail) = node
        .engine
        .act(move |a| notify::remind_due(a.tables, &settings, a.now, 100))
        .await?;
    if mail {
        node.engine.wakers().mail.notify_one();
    }
    Ok(())
}

/// Reminds people of certifications that expire soon, when any reminder
/// is due (a read first).
async fn remind_renewals(node: &Node) -> Result<(), EngineError> {
    let now = crate::clock::now_ms();
    if !crate::courses::renewal_due(&node.store.read()?, now)? {
        return Ok(());
    }
    let settings = notify::MailSettings::of(&node.config());
    let me = node.identity.id.clone();
    let mail = node
        .engine
        .act(move |a| crate::courses::remind_renewals(a.tables, &settings, &me, a.now, 100))
        .await?;
    if mail {
        node.engine.wakers().mail.notify_one();
    }
    Ok(())
}

/// Reminds people of surveys they have not answered, when any reminder
/// is due (a read first).
async fn remind_surveys(node: &Node) -> Result<(), EngineError> {
    let now = crate::clock::now_ms();
    if !crate::surveys::reminder_due(&node.store.read()?, now)? {
        return Ok(());
    }
    let settings = notify::MailSettings::of(&node.config());
    let mail = node
        .engine
        .act(move |a| crate::surveys::remind_due(a.tables, &settings, a.now, 100))
        .await?;
    if mail {
        node.engine.wakers().mail.notify_one();
    }
    Ok(())
}

/// The delay before try `attempts + 1`: one minute, doubling, at most two
/// hours.
pub fn backoff_ms(attempts: u32) -> Millis {
    let minutes = 1i64 << attempts.saturating_sub(1).min(7);
    minutes.min(120) * 60_000
}

/// Sends every queued mail that is due.
async fn send_due(node: &Node, smtp: &SmtpConfig) -> Result<(), EngineError> {
    let now = crate::clock::now_ms();
    let read = node.store.read()?;
    let due: Vec<(String, MailJob)> = read
        .docs_page(Doc::Mail, &keys::queued(), None, Order::Forward, BATCH)?
        .into_iter()
        .take_while(|(k, _)| keys::due_of(k).is_some_and(|d| d <= now))
        .filter_map(|(k, b)| Some((k, serde_json::from_slice(&b).ok()?)))
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let config = node.config();
    let transport = match transport(smtp, &config.public_url) {
        Ok(t) => t,
        Err(e) => {
            for (key, job) in due {
                failed(node, key, job, &e, now).await?;
            }
            return Ok(());
        }
    };
    for (key, job) in due {
        let Some(user) =
            accounts::load_user(&read, &job.user)?.filter(|u| !u.disabled && !u.email.is_empty())
        else {
            // Nobody to tell any more: the mail is dropped.
            done(node, key, &job, Vec::new()).await?;
            continue;
        };
        let (subject, body, included) = compose(&read, &config, &user, &job)?;
        if job.notice.is_none() && included.is_empty() {
            done(node, key, &job, included).await?;
            continue;
        }
        match deliver(&transport, smtp, &user, &subject, body).await {
            Ok(()) => done(node, key, &job, included).await?,
            Err(e) => failed(node, key, job, &e, now).await?,
        }
    }
    Ok(())
}

/// The SMTP connection settings (the password is read from its file now,
/// so a new one takes effect without a restart).
fn transport(
    smtp: &SmtpConfig,
    public_url: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match smtp.security {
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| format!("STARTTLS to {}: {e}", smtp.host))?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| format!("TLS to {}: {e}", smtp.host))?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let hello = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    let mut builder = builder
        .port(smtp.port)
        .hello_name(ClientId::Domain(hello))
        .timeout(Some(Duration::from_secs(30)));
    if let Some(file) = &smtp.password_file {
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the SMTP password file {}: {e}", file.display()))?;
        builder = builder.credentials(Credentials::new(
            smtp.user.clone(),
            password.trim_end_matches(['\r', '\n']).to_string(),
        ));
    }
    Ok(builder.build())
}

async fn deliver(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    smtp: &SmtpConfig,
    user: &User,
    subject: &str,
    body: String,
) -> Result<(), String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("from {:?}: {e}", smtp.from))?;
    let to: Mailbox = Mailbox::new(
        Some(user.display_name.clone()),
        user.email
            .parse()
            .map_err(|e| format!("the address of {}: {e}", user.username))?,
    );
    let mail = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())?;
    transport
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
}

/// The reader's locale for mail: their mail language, else the node's.
fn locale_of(config: &guanxi_config::Config, user: &User) -> Locale {
    let lang = Lang::from_code(&user.language)
        .or_else(|| Lang::from_code(&config.web.default_language))
        .unwrap_or(Lang::En);
    Locale::new(lang, &[&user.time_zone, &config.web.time_zone])
}

/// One notification in words: "Globex accepted the lead".
pub fn title(read: &Read, config: &guanxi_config::Config, loc: &Locale, n: &Notice) -> String {
    let org = directory::org_name(read, config, &n.org);
    loc.t().fill(&format!("kind.{}", n.kind), &[("org", &org)])
}

/// The subject, the body, and (for a digest) the keys of the
/// notifications it lists.
fn compose(
    read: &Read,
    config: &guanxi_config::Config,
    user: &User,
    job: &MailJob,
) -> Result<(String, String, Vec<String>), EngineError> {
    let loc = locale_of(config, user);
    let t = loc.t();
    let base = config.public_url.trim_end_matches('/');
    let footer = t.fill(
        "mail.footer",
        &[
            ("node", &config.node_name),
            ("settings", &format!("{base}/account")),
        ],
    );
    if let Some(n) = &job.notice {
        let title = title(read, config, &loc, n);
        let body = format!(
            "{title}\n{}\n\n{base}{}\n\n{}\n\n-- \n{footer}\n",
            n.label,
            n.link,
            loc.when(n.at)
        );
        return Ok((format!("[{}] {title}", config.node_name), body, Vec::new()));
    }
    let rows = read.docs_page(
        Doc::Mail,
        &keys::digest(&user.username),
        None,
        Order::Forward,
        DIGEST_MAX,
    )?;
    let mut lines = Vec::new();
    let mut included = Vec::new();
    for (key, bytes) in rows {
        if let Ok(n) = serde_json::from_slice::<Notice>(&bytes) {
            lines.push(format!(
                "- {} {}: {}\n  {base}{}",
                loc.when(n.at),
                title(read, config, &loc, &n),
                n.label,
                n.link
            ));
        }
        included.push(key);
    }
    let count = lines.len().to_string();
    let subject = format!(
        "[{}] {}",
        config.node_name,
        t.fill("mail.digest_subject", &[("n", &count)])
    );
    let body = format!(
        "{}\n\n{}\n\n{}\n\n-- \n{footer}\n",
        t.fill("mail.digest_intro", &[("n", &count)]),
        lines.join("\n"),
        t.fill("mail.all_at", &[("url", &format!("{base}/notifications"))]),
    );
    Ok((subject, body, included))
}

/// The mail was sent (or has nobody to go to): it leaves the queue with
/// the digest entries it listed. Entries that arrived meanwhile get a new
/// digest at the next hour.
async fn done(
    node: &Node,
    key: String,
    job: &MailJob,
    included: Vec<String>,
) -> Result<(), EngineError> {
    let digest = job.notice.is_none();
    let user = job.user.clone();
    let settings = notify::MailSettings::of(&node.config());
    node.engine
        .act(move |t| {
            t.tables.delete_doc(Doc::Mail, &key)?;
            if !digest {
                return Ok(());
            }
            for k in &included {
                t.tables.delete_doc(Doc::Mail, k)?;
            }
            let marker = keys::digest_marker(&user);
            t.tables.delete_doc(Doc::Mail, &marker)?;
            let left =
                t.tables
                    .docs_page(Doc::Mail, &keys::digest(&user), None, Order::Forward, 1)?;
            if let Some((_, first)) = left.first()
                && let Ok(n) = serde_json::from_slice::<Notice>(first)
                && let Some(u) = accounts::load_user_in(t.tables, &user)?
            {
                let due = notify::next_digest(&settings, &u, n.at.max(t.now));
                let next = keys::job(due, &uuid::Uuid::now_v7().simple().to_string());
                let job = MailJob {
                    user: user.clone(),
                    notice: None,
                    attempts: 0,
                    error: None,
                };
                let bytes =
                    serde_json::to_vec(&job).map_err(|e| EngineError::Failed(e.to_string()))?;
                t.tables.put_doc(Doc::Mail, &next, &bytes)?;
                t.tables.put_doc(Doc::Mail, &marker, next.as_bytes())?;
            }
            Ok(())
        })
        .await
}

/// The mail could not be sent: retried later, or set aside after the last
/// try. The error names the server, never the password.
async fn failed(
    node: &Node,
    key: String,
    mut job: MailJob,
    error: &str,
    now: Millis,
) -> Result<(), EngineError> {
    job.attempts += 1;
    job.error = Some(error.to_string());
    tracing::warn!(
        user = %job.user,
        attempt = job.attempts,
        "mail not sent: {error}"
    );
    let digest = job.notice.is_none();
    node.engine
        .act(move |t| {
            t.tables.delete_doc(Doc::Mail, &key)?;
            let id = keys::id_of(&key).to_string();
            let bytes = serde_json::to_vec(&job).map_err(|e| EngineError::Failed(e.to_string()))?;
            if job.attempts < MAX_ATTEMPTS {
                let next = keys::job(now + backoff_ms(job.attempts), &id);
                t.tables.put_doc(Doc::Mail, &next, &bytes)?;
                if digest {
                    t.tables.put_doc(
                        Doc::Mail,
                        &keys::digest_marker(&job.user),
                        next.as_bytes(),
                    )?;
                }
                return Ok(());
            }
            t.tables
                .put_doc(Doc::Mail, &keys::failed(now, &id), &bytes)?;
            if digest {
                // The digest's notifications stay listed on the web page;
                // the next ones start a new digest.
                t.tables
                    .delete_doc(Doc::Mail, &keys::digest_marker(&job.user))?;
                let mut stale = Vec::new();
                t.tables
                    .each_with_prefix(Doc::Mail, &keys::digest(&job.user), |k, _| {
                        stale.push(format!("{}{k}", keys::digest(&job.user)))
                    })?;
                for k in stale {
                    t.tables.delete_doc(Doc::Mail, &k)?;
                }
            }
            let mut failures: MailFailures = t
                .tables
                .doc(Doc::Mail, "failed")?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            failures.count += 1;
            failures.last_error = job.error.clone().unwrap_or_default();
            failures.at = now;
            let bytes =
                serde_json::to_vec(&failures).map_err(|e| EngineError::Failed(e.to_string()))?;
            t.tables
                .put_doc(Doc::Mail, "failed", &bytes)
                .map_err(EngineError::from)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn retries_wait_longer_each_time_up_to_two_hours() {
        let minutes: Vec<i64> = (1..=10).map(|a| backoff_ms(a) / 60_000).collect();
        assert_eq!(minutes, vec![1, 2, 4, 8, 16, 32, 64, 120, 120, 120]);
    }
}
