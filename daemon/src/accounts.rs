//! Accounts of people who use the web view: the company's own staff (roles
//! admin and staff) and partner users (each belonging to one partner
//! organization). Passwords are hashed with argon2id; generated passwords
//! and session tokens come from the OS's random source. Nothing here logs a
//! password or token.

use crate::engine::{Engine, EngineError};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::Millis;
use guanxi_protocol::crypto::b64url;
use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Staff who also manage accounts.
    Admin,
    /// The company's own staff.
    Staff,
    /// A user of one partner organization.
    Partner,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "staff" => Ok(Role::Staff),
            "partner" => Ok(Role::Partner),
            other => Err(format!("role {other:?} is not admin, staff or partner")),
        }
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// The partner organization, for partner users.
    pub partner: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
    pub created: Millis,
    /// The password is a generated one-time password: the user must choose
    /// their own at the next sign-in before anything else.
    #[serde(default)]
    pub must_change_password: bool,
    /// Where notifications are mailed; empty: none are mailed.
    #[serde(default)]
    pub email: String,
    /// The IANA time zone the user sees times in; empty: the
    /// organization's, then the node's default.
    #[serde(default)]
    pub time_zone: String,
    /// The language of the user's mail (`en`, `zh-TW`); empty: the node's
    /// default. Pages follow the browser's choice.
    #[serde(default)]
    pub language: String,
    /// How the user wants to be told by mail.
    #[serde(default)]
    pub mail: MailChoice,
}

/// How a user is told by mail of what needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailChoice {
    /// A mail for each notification, as it happens.
    #[default]
    Immediate,
    /// One mail a day listing the day's notifications.
    Digest,
    /// No mail; notifications only in the web view.
    Off,
}

impl MailChoice {
    /// The wire name (and form value).
    pub fn name(self) -> &'static str {
        match self {
            MailChoice::Immediate => "immediate",
            MailChoice::Digest => "digest",
            MailChoice::Off => "off",
        }
    }

    /// The choice for a form value.
    pub fn from_name(name: &str) -> Option<MailChoice> {
        [MailChoice::Immediate, MailChoice::Digest, MailChoice::Off]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// Why a password someone chose is refused: the message key of the web
/// view, or `None` when it will do. At least 12 characters, at most 128,
/// and not easy to guess by zxcvbn's estimate (score 3 of 4: common words,
/// names, the username, keyboard walks, repeats and sequences score low).
pub fn password_weakness(
    password: &str,
    username: &str,
    display_name: &str,
) -> Option<&'static str> {
    let n = password.chars().count();
    if n < 12 {
        return Some("password.short");
    }
    if n > 128 {
        return Some("password.long");
    }
    // zxcvbn's work grows with length; the first 100 characters say enough.
    let head: String = password.chars().take(100).collect();
    let score = zxcvbn::zxcvbn(&head, &[username, display_name, "guanxi"]).score();
    (score < zxcvbn::Score::Three).then_some("password.weak")
}

/// [`hash_password`] on a blocking thread (argon2 takes tens of
/// milliseconds of CPU: never on the async threads).
pub async fn hash_password_off_thread(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?
}

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("username {0:?} must be 1 to 64 characters of letters, digits, '.', '_', '-' and '@'")]
    BadUsername(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error("a partner user needs --partner ORG; staff users must not have one")]
    PartnerMismatch,
    #[error("no partner organization {0}")]
    NoSuchPartner(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("no randomness available: {0}")]
    Random(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `n` random bytes as unpadded base64url.
pub fn random_token(n: usize) -> Result<String, AccountError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| AccountError::Random(e.to_string()))?;
    Ok(b64url(&bytes))
}

/// A generated password: 18 random bytes, 24 characters.
pub fn generate_password() -> Result<String, AccountError> {
    random_token(18)
}

/// The argon2id hash (PHC string) of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let hash: PasswordHash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` opens `user`'s account. An unknown or disabled
/// account is checked against a dummy hash all the same, so the time taken
/// says nothing about which usernames exist. Slow on purpose (argon2id):
/// call it off the async threads ([`tokio::task::spawn_blocking`]).
pub fn verify_login(user: Option<&User>, password: &str) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match user {
        Some(u) if !u.disabled => verify_password(&u.password_hash, password),
        _ => {
            let dummy = DUMMY
                .get_or_init(|| hash_password("no account has this password").unwrap_or_default());
            let _ = verify_password(dummy, password);
            false
        }
    }
}

/// Whether `password` matches the stored `hash` (constant time in argon2).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn check_username(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AccountError::BadUsername(name.into()))
    }
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|e| EngineError::Failed(e.to_string()))
}

/// Reads one user.
pub fn load_user(read: &Read, username: &str) -> Result<Option<User>, StoreError> {
    Ok(read
        .doc(Doc::User, username)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The index of partner users (`Doc::PartnerUser`, `PARTNER␟USERNAME` →
/// `1` enabled or `0` disabled), kept with every change of a user, so that
/// a partner's users and whether anyone can answer for a partner are read
/// by prefix, never from every account.
fn partner_user_key(partner: &str, username: &str) -> String {
    format!("{partner}\u{1f}{username}")
}

/// The organization a user is indexed under: its partner's id, or ""
/// for the company's own staff (partner ids are never empty).
fn org_of(user: &User) -> &str {
    match user.role {
        Role::Partner => user.partner.as_deref().unwrap_or(""),
        Role::Admin | Role::Staff => "",
    }
}

/// Puts `user`'s index entry, after removing the one `before` had.
fn index_user(t: &mut Tables<'_>, before: Option<&User>, user: &User) -> Result<(), StoreError> {
    if let Some(before) = before {
        t.delete_doc(
            Doc::PartnerUser,
            &partner_user_key(org_of(before), &before.username),
        )?;
    }
    let on: &[u8] = if user.disabled { b"0" } else { b"1" };
    t.put_doc(
        Doc::PartnerUser,
        &partner_user_key(org_of(user), &user.username),
        on,
    )?;
    Ok(())
}

/// The enabled users of `partner` (or, for "", the company's own staff)
/// inside a transaction: a bounded read of the index, then each account.
pub fn enabled_members(t: &Tables<'_>, partner: &str) -> Result<Vec<User>, StoreError> {
    let mut names = Vec::new();
    t.each_with_prefix(Doc::PartnerUser, &format!("{partner}\u{1f}"), |name, on| {
        if on == b"1" {
            names.push(name.to_string())
        }
    })?;
    let mut users = Vec::with_capacity(names.len());
    for name in names {
        if let Some(bytes) = t.doc(Doc::User, &name)?
            && let Ok(user) = serde_json::from_slice::<User>(&bytes)
        {
            users.push(user);
        }
    }
    Ok(users)
}

/// Whether `partner` has at least one enabled user (a bounded read).
pub fn has_enabled_user(t: &Tables<'_>, partner: &str) -> Result<bool, StoreError> {
    let mut any = false;
    t.each_with_prefix(Doc::PartnerUser, &format!("{partner}\u{1f}"), |_, on| {
        any |= on == b"1"
    })?;
    Ok(any)
}

/// The users of one partner organization, by username (a bounded read).
pub fn users_of(read: &Read, partner: &str) -> Result<Vec<User>, StoreError> {
    let mut names = Vec::new();
    read.each_with_prefix(Doc::PartnerUser, &format!("{partner}\u{1f}"), |name, _| {
        names.push(name.to_string())
    })?;
    let mut users = Vec::with_capacity(names.len());
    for name in names {
        users.extend(load_user(read, &name)?);
    }
    Ok(users)
}

const INDEX_BUILT_KEY: &str = "index:partner_users";
/// 2: the company's own staff are indexed too (under "").
const INDEX_VERSION: &[u8] = b"2";

/// Builds the partner-user index unless this store has it (a migration:
/// accounts are few, so one transaction). Answers how many users it indexed.
pub fn ensure_indexed(store: &guanxi_adapters::store::Store) -> Result<usize, EngineError> {
    if store.read()?.doc(Doc::Setting, INDEX_BUILT_KEY)?.as_deref() == Some(INDEX_VERSION) {
        return Ok(0);
    }
    reindex(store)
}

/// Rebuilds the partner-user index from every account.
pub fn reindex(store: &guanxi_adapters::store::Store) -> Result<usize, EngineError> {
    store.transact(|t| -> Result<usize, EngineError> {
        let mut stale = Vec::new();
        t.each_with_prefix(Doc::PartnerUser, "", |key, _| stale.push(key.to_string()))?;
        for key in stale {
            t.delete_doc(Doc::PartnerUser, &key)?;
        }
        let mut n = 0;
        for (_, bytes) in t.docs(Doc::User)? {
            if let Ok(user) = serde_json::from_slice::<User>(&bytes) {
                index_user(t, None, &user)?;
                n += 1;
            }
        }
        t.put_doc(Doc::Setting, INDEX_BUILT_KEY, INDEX_VERSION)?;
        Ok(n)
    })
}

/// Every user, by username (the admin's account list).
pub fn list_users(read: &Read) -> Result<Vec<User>, StoreError> {
    Ok(read
        .docs(Doc::User)?
        .into_iter()
        .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
        .collect())
}

/// Reads one user inside a transaction.
pub fn load_user_in(t: &Tables<'_>, username: &str) -> Result<Option<User>, EngineError> {
    Ok(t.doc(Doc::User, username)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Creates a user with a generated password, which is returned (shown once).
pub async fn add_user(
    engine: &Engine,
    username: &str,
    display_name: &str,
    role: Role,
    partner: Option<String>,
    now: Millis,
) -> Result<String, AccountError> {
    check_username(username)?;
    if (role == Role::Partner) != partner.is_some() {
        return Err(AccountError::PartnerMismatch);
    }
    let password = generate_password()?;
    let user = User {
        username: username.to_string(),
        display_name: if display_name.is_empty() {
            username.to_string()
        } else {
            display_name.to_string()
        },
        role,
        partner,
        password_hash: hash_password_off_thread(password.clone()).await?,
        disabled: false,
        created: now,
        must_change_password: true,
        email: String::new(),
        time_zone: String::new(),
        language: String::new(),
        mail: MailChoice::default(),
    };
    let outcome = engine
        .local(move |t| {
            if t.doc(Doc::User, &user.username)?.is_some() {
                return Ok(Err(AccountError::Exists(user.username.clone())));
            }
            if let Some(org) = &user.partner
                && t.doc(Doc::Partner, org)?.is_none()
            {
                return Ok(Err(AccountError::NoSuchPartner(org.clone())));
            }
            t.put_doc(Doc::User, &user.username, &json(&user)?)?;
            index_user(t, None, &user)?;
            Ok(Ok(()))
        })
        .await?;
    outcome.map(|()| password)
}

/// Changes a user's fields through `change`; fails when the user is unknown.
pub async fn update_user(
    engine: &Engine,
    username: &str,
    change: impl Fn(&mut User) + Send + 'static,
) -> Result<User, AccountError> {
    let name = username.to_string();
    engine
        .local(move |t| {
            let Some(mut user) = load_user_in(t, &name)? else {
                return Ok(Err(AccountError::NoSuchUser(name.clone())));
            };
            let before = user.clone();
            change(&mut user);
            t.put_doc(Doc::User, &name, &json(&user)?)?;
            if before.partner != user.partner || before.disabled != user.disabled {
                index_user(t, Some(&before), &user)?;
            }
            Ok(Ok(user))
        })
        .await?
}

/// Sets a new generated password, returned once.
pub async fn reset_password(engine: &Engine, username: &str) -> Result<String, AccountError> {
    let password = generate_password()?;
    let hash = hash_password_off_thread(password.clone()).await?;
    update_user(engine, username, move |u| {
        u.password_hash = hash.clone();
        u.must_change_password = true;
    })
    .await?;
    Ok(password)
}

/// Creates the first admin when the store has no user at all; returns its
/// generated password (to print once), or `None` when users exist.
pub async fn ensure_first_admin(
    engine: &Engine,
    read: &Read,
    now: Millis,
) -> Result<Option<String>, AccountError> {
    if read.doc_count(Doc::User)? > 0 {
        return Ok(None);
    }
    add_user(engine, "admin", "Administrator", Role::Admin, None, now)
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_repetitive_and_personal_passwords_are_refused() {
        let weak = |p: &str| password_weakness(p, "lin.mei", "Lin Mei");
        assert_eq!(weak("short"), Some("password.short"));
        assert_eq!(weak(&"x".repeat(129)), Some("password.long"));
        for p in [
            "aaaaaaaaaaaaaaaa",
            "password123456",
            "qwertyuiopasdfgh",
            "123456789012",
            "lin.mei12345",
            "linmeilinmei",
            "abcdefghijklmnop",
            "guanxiguanxi",
        ] {
            assert_eq!(weak(p), Some("password.weak"), "{p}");
        }
        for p in [
            "kumquat ferry lantern drizzle",
            "Tz9#qLm2$vB7wXe",
            "窗外的雨下了三天都沒停過",
        ] {
            assert_eq!(weak(p), None, "{p}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert_ne!(
            hash_password("correct horse").expect("hash"),
            hash,
            "fresh salt each time"
        );
    }

    #[test]
    fn usernames_and_roles_are_checked() {
        assert!(check_username("lin.mei@globex").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a b").is_err());
        assert_eq!("staff".parse::<Role>(), Ok(Role::Staff));
        assert!("boss".parse::<Role>().is_err());
        assert_eq!(generate_password().expect("password").len(), 24);
    }
}
