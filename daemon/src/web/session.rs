//! Sessions, CSRF tokens and login throttling for the web view.
//!
//! A session is a random token in a `Secure; HttpOnly; SameSite=Strict`
//! cookie; the store keeps only its SHA-256, with the user, a CSRF token, the
//! login time and the last request time. A session ends after
//! `session_idle_seconds` without a request or `session_absolute_seconds`
//! after login, on logout, and when its user is disabled. Every form carries
//! the session's CSRF token; the login form, before any session, carries a
//! token that must match a short-lived cookie. Failed logins are counted per
//! account and per client address: five within 15 minutes lock that account
//! or address for 15 minutes.

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

/// Failed logins allowed in a window before a lock.
pub const MAX_FAILURES: u32 = 5;
/// The counting window and the lock, in milliseconds.
pub const LOCK_MS: Millis = 15 * 60 * 1000;

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
    Valid(Session, User),
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
        Some(user) if !user.disabled => Ok(Found::Valid(session, user)),
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

/// Failed logins for one account or address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Failures {
    count: u32,
    window_start: Millis,
}

/// Whether `keys` (like `user:mei`, `addr:10.0.0.1`) are locked at `now`.
pub fn locked(read: &Read, keys: &[String], now: Millis) -> Result<bool, StoreError> {
    for key in keys {
        if let Some(f) = read
            .doc(Doc::Throttle, key)?
            .and_then(|b| serde_json::from_slice::<Failures>(&b).ok())
            && f.count >= MAX_FAILURES
            && now - f.window_start < LOCK_MS
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Counts a failed login against each of `keys`.
pub async fn record_failure(
    engine: &Engine,
    keys: Vec<String>,
    now: Millis,
) -> Result<(), EngineError> {
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
                    };
                }
                f.count += 1;
                let json =
                    serde_json::to_vec(&f).map_err(|e| EngineError::Failed(e.to_string()))?;
                t.put_doc(Doc::Throttle, &key, &json)?;
            }
            Ok(())
        })
        .await
}

/// Clears an account's failure count after a successful login.
pub async fn clear_failures(engine: &Engine, key: String) -> Result<(), EngineError> {
    engine
        .local(move |t| {
            t.delete_doc(Doc::Throttle, &key)
                .map(|_| ())
                .map_err(EngineError::from)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
