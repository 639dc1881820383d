//! Sessions, CSRF tokens and login throttling for the web view.
//!
//! A session is a random token in a `Secure; HttpOnly; SameSite=Strict`
//! cookie; the store keeps only its SHA-256, with the user, a CSRF token, the
//! login time and the last request time. A session ends after
//! `session_idle_seconds` without a request or `session_absolute_seconds`
//! after login, on logout, and when its user is disabled. Every form carries
//! the session's CSRF token; the login form, before any session, carries a
//! token that must match a short-lived cookie. Failed logins slow down
//! rather than lock out: per account *and* address, from the third failure
//! each attempt waits twice as long as the one before (1 s, 2 s, 4 s, ... at
//! most 15 minutes); per account from any address the same from the tenth;
//! and one address may fail at most 100 times in 15 minutes (an office
//! behind one NAT address stays usable). A stranger can therefore slow an
//! account down, never lock its owner out from elsewhere.

use crate::accounts::{self, User};
use crate::engine::{Engine, EngineError};
use guanxi_adapters::store::{Doc, Read, StoreError};
use guanxi_protocol::{Millis, Sha256Hash};
use serde::{Deserialize, Serialize};

/// Cookie holding the session token.
pub const SESSION_COOKIE: &str = "gx_session";
/// Cookie holding the login form's CSRF token.
pub const LOGIN_COOKIE: &str = "gx_login";
/// Cookie holding the chosen language.
pub const LANG_COOKIE: &str = "gx_lang";

/// The counting window of failed logins, in milliseconds.
pub const LOCK_MS: Millis = 15 * 60 * 1000;
/// Failures of one account from one address before attempts are delayed.
const PAIR_FREE: u32 = 2;
/// Failures of one account from all addresses before attempts are delayed.
const ACCOUNT_FREE: u32 = 9;
/// Failures from one address in a window before it must wait the window out.
const ADDRESS_CEILING: u32 = 100;

/// A stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub csrf: String,
    pub created: Millis,
    pub last_seen: Millis,
}

/// The key a session is stored under: the SHA-256 of its token.
pub fn session_key(token: &str) -> String {
    Sha256Hash::of(token.as_bytes()).to_string()
}

/// The value of cookie `name` in a Cookie header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A Set-Cookie value for a private cookie (`max_age` seconds; 0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

/// Equality in time independent of where the strings differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A valid session and its user, or why there is none.
pub enum Found {
    Valid(Session, Box<User>),
    Expired,
    None,
}

/// Looks up the session for `token` as of `now`, given the expiry settings.
pub fn find(
    read: &Read,
    token: &str,
    now: Millis,
    idle_ms: Millis,
    absolute_ms: Millis,
) -> Result<Found, StoreError> {
    let Some(bytes) = read.doc(Doc::Session, &session_key(token))? else {
        return Ok(Found::None);
    };
    let Ok(session) = serde_json::from_slice::<Session>(&bytes) else {
        return Ok(Found::None);
    };
    if now - session.last_seen > idle_ms || now - session.created > absolute_ms {
        return Ok(Found::Expired);
    }
    match accounts::load_user(read, &session.username)? {
        Some(user) if !user.disabled => Ok(Found::Valid(session, Box::new(user))),
        _ => Ok(Found::None),
    }
}

/// Starts a session for `username`; returns its token (for the cookie).
pub async fn start(engine: &Engine, username: &str, now: Millis) -> Result<String, EngineError> {
    let token = accounts::random_token(32).map_err(|e| EngineError::Failed(e.to_string()))?;
    let session = Session {
        username: username.to_string(),
        csrf: accounts::random_token(24).map_err(|e| EngineError::Failed(e.to_string()))?,
        created: now,
        last_seen: now,
    };
    let key = session_key(&token);
    let json = serde_json::to_vec(&session).map_err(|e| EngineError::Failed(e.to_string()))?;
    engine
        .local(move |t| {
            t.put_doc(Doc::Session, &key, &json)
                .map_err(EngineError::from)
        })
        .await?;
    Ok(token)
}

/// Records a request on a session (at most once a minute, to spare writes).
pub async fn touch(
    engine: &Engine,
    token: &str,
    session: &Session,
    now: Millis,
) -> Result<(), EngineError> {
    if now - session.last_seen < 60_000 {
        return Ok(());
    }
    let mut session = session.clone();
    session.last_seen = now;
    let key = session_key(token);
    let json = serde_json::to_vec(&session).map_err(|e| EngineError::Failed(e.to_string()))?;
    engine
        .local(move |t| {
            t.put_doc(Doc::Session, &key, &json)
                .map_err(EngineError::from)
        })
        .await
}

/// Ends a session.
pub async fn end(engine: &Engine, token: &str) -> Result<(), EngineError> {
    let key = session_key(token);
    engine
        .local(move |t| {
            t.delete_doc(Doc::Session, &key)
                .map(|_| ())
                .map_err(EngineError::from)
        })
        .await
}

/// Ends every session of `username` but the one of `keep` (a token).
pub async fn end_others(engine: &Engine, username: &str, keep: &str) -> Result<usize, EngineError> {
    let (username, keep) = (username.to_string(), session_key(keep));
    engine
        .local(move |t| {
            let mut ended = 0;
            for (key, bytes) in t.docs(Doc::Session)? {
                let Ok(s) = serde_json::from_slice::<Session>(&bytes) else {
                    continue;
                };
                if s.username == username && key != keep {
                    t.delete_doc(Doc::Session, &key)?;
                    ended += 1;
                }
            }
            Ok(ended)
        })
        .await
}

/// Failed logins for one key (account, address, or both) in a window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Failures {
    count: u32,
    window_start: Millis,
    /// The last failure.
    #[serde(default)]
    last: Millis,
}

/// The throttle keys of a login attempt.
fn keys(username: &str, addr: &str) -> [String; 3] {
    [
        format!("pair:{username}@{addr}"),
        format!("user:{username}"),
        format!("addr:{addr}"),
    ]
}

/// When the next attempt after `f` may come, past `free` failures: each
/// further failure doubles the wait from one second, at most the window.
fn delayed_until(f: &Failures, free: u32) -> Millis {
    if f.count <= free {
        return Millis::MIN;
    }
    let doublings = (f.count - free - 1).min(20);
    f.last.saturating_add((1000i64 << doublings).min(LOCK_MS))
}

/// How long (ms) a login for `username` from `addr` must still wait at
/// `now`; 0 when it may go ahead.
pub fn wait_ms(read: &Read, username: &str, addr: &str, now: Millis) -> Result<Millis, StoreError> {
    let [pair, user, address] = keys(username, addr);
    let load = |key: &str| -> Result<Option<Failures>, StoreError> {
        Ok(read
            .doc(Doc::Throttle, key)?
            .and_then(|b| serde_json::from_slice::<Failures>(&b).ok())
            .filter(|f| now - f.window_start < LOCK_MS))
    };
    let mut until = Millis::MIN;
    if let Some(f) = load(&pair)? {
        until = until.max(delayed_until(&f, PAIR_FREE));
    }
    if let Some(f) = load(&user)? {
        until = until.max(delayed_until(&f, ACCOUNT_FREE));
    }
    if let Some(f) = load(&address)?
        && f.count >= ADDRESS_CEILING
    {
        until = until.max(f.window_start + LOCK_MS);
    }
    Ok(until.saturating_sub(now).max(0))
}

/// Counts a failed login for `username` from `addr`.
pub async fn record_failure(
    engine: &Engine,
    username: &str,
    addr: &str,
    now: Millis,
) -> Result<(), EngineError> {
    let keys = keys(username, addr);
    engine
        .local(move |t| {
            for key in keys.clone() {
                let mut f: Failures = t
                    .doc(Doc::Throttle, &key)?
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if now - f.window_start >= LOCK_MS {
                    f = Failures {
                        count: 0,
                        window_start: now,
                        last: now,
                    };
                }
                f.count += 1;
                f.last = now;
                let json =
                    serde_json::to_vec(&f).map_err(|e| EngineError::Failed(e.to_string()))?;
                t.put_doc(Doc::Throttle, &key, &json)?;
            }
            Ok(())
        })
        .await
}

/// Deletes sessions that have expired (idle or absolute) and failure
/// counters whose window has passed, as of `now`. Returns how many it
/// deleted and when the next of what remains expires (or `None`).
pub async fn purge(
    engine: &Engine,
    now: Millis,
    idle_ms: Millis,
    absolute_ms: Millis,
) -> Result<(usize, Option<Millis>), EngineError> {
    engine
        .local(move |t| {
            let mut deleted = 0;
            let mut next: Option<Millis> = None;
            let mut soonest = |at: Millis| next = Some(next.map_or(at, |n| n.min(at)));
            for (key, bytes) in t.docs(Doc::Session)? {
                let expiry = serde_json::from_slice::<Session>(&bytes)
                    .map(|s| (s.last_seen + idle_ms).min(s.created + absolute_ms))
                    .unwrap_or(Millis::MIN);
                if expiry < now {
                    t.delete_doc(Doc::Session, &key)?;
                    deleted += 1;
                } else {
                    soonest(expiry);
                }
            }
            for (key, bytes) in t.docs(Doc::Throttle)? {
                let end = serde_json::from_slice::<Failures>(&bytes)
                    .map(|f| f.window_start + LOCK_MS)
                    .unwrap_or(Millis::MIN);
                if end <= now {
                    t.delete_doc(Doc::Throttle, &key)?;
                    deleted += 1;
                } else {
                    soonest(end);
                }
            }
            Ok((deleted, next))
        })
        .await
}

/// Purges expired sessions and failure counters (see [`purge`]) until the
/// node stops: a round every second looks at the clock, and the tables are
/// read only when something is due, or at least once per idle period (to
/// see sessions started since).
pub async fn run_purge(
    node: std::sync::Arc<crate::node::Node>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut due = Millis::MIN;
    let mut keys_due = Millis::MIN;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        // The previous round is finished.
        node.ticks
            .session_purge
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = crate::clock::now_ms();
        // Expired idempotency keys: a bounded batch a minute, or at once
        // again while a full batch went.
        if now >= keys_due {
            const BATCH: usize = 1000;
            match crate::idempotency::purge(&node.engine, now, BATCH).await {
                Ok(n) => keys_due = if n == BATCH { now } else { now + 60_000 },
                Err(e) if !node.engine.storage_failed() => {
                    tracing::error!("idempotency key purge: {e}")
                }
                Err(_) => {}
            }
        }
        if now < due {
            continue;
        }
        let web = &node.config().web;
        let idle = Millis::from(web.session_idle_seconds) * 1000;
        let absolute = Millis::from(web.session_absolute_seconds) * 1000;
        match purge(&node.engine, now, idle, absolute).await {
            Ok((n, next)) => {
                if n > 0 {
                    tracing::info!("purged {n} expired session(s) and failure counter(s)");
                }
                due = next.unwrap_or(Millis::MAX).min(now + idle);
            }
            Err(e) if !node.engine.storage_failed() => tracing::error!("session purge: {e}"),
            Err(_) => {}
        }
    }
}

/// Clears the failure counts of `username` (from `addr`, and in all) after
/// a successful login; the address keeps its own.
pub async fn clear_failures(
    engine: &Engine,
    username: &str,
    addr: &str,
) -> Result<(), EngineError> {
    let [pair, user, _] = keys(username, addr);
    engine
        .local(move |t| {
            t.delete_doc(Doc::Throttle, &pair)?;
            t.delete_doc(Doc::Throttle, &user)?;
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_and_never_lock_for_longer_than_the_window() {
        let at = |count| Failures {
            count,
            window_start: 0,
            last: 1_000_000,
        };
        assert_eq!(
            delayed_until(&at(2), PAIR_FREE),
            Millis::MIN,
            "two are free"
        );
        assert_eq!(delayed_until(&at(3), PAIR_FREE), 1_001_000);
        assert_eq!(delayed_until(&at(4), PAIR_FREE), 1_002_000);
        assert_eq!(delayed_until(&at(6), PAIR_FREE), 1_008_000);
        assert_eq!(delayed_until(&at(500), PAIR_FREE), 1_000_000 + LOCK_MS);
        assert_eq!(delayed_until(&at(9), ACCOUNT_FREE), Millis::MIN);
    }

    #[test]
    fn cookies_parse_and_compare() {
        let header = "a=1; gx_session=abc; gx_lang=zh-TW";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(header, LANG_COOKIE), Some("zh-TW"));
        assert_eq!(cookie(header, "missing"), None);
        assert!(same("token", "token") && !same("token", "tokeN") && !same("t", "token"));
        let c = set_cookie(SESSION_COOKIE, "x", 60);
        assert!(c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"));
    }
}
