//! The web view: server-rendered HTML (askama templates compiled into the
//! binary, one stylesheet, no JavaScript) for the company's staff and for
//! partner users without a daemon, in English and Traditional Chinese.
//!
//! Every page but the login page needs a session; every form carries a CSRF
//! token; staff pages refuse partner users (403), and a partner user asking
//! for another organization's record gets the same 404 as for a record that
//! does not exist.

// Handlers answer early with a whole `Response` (a redirect to the login
// page, a 403, a 404); it is large, and that is fine on this path.
#![allow(clippy::result_large_err)]

pub mod access;
pub mod account;
pub mod announcements;
pub mod applications;
pub mod chart;
pub mod courses;
pub mod dashboard;
pub mod form;
pub mod format;
pub mod goals;
pub mod i18n;
pub mod journey;
pub mod leads;
pub mod library;
pub mod mdf;
pub mod notifications;
pub mod orders;
pub mod scorecards;
pub mod service;
pub mod session;
pub mod surveys;

use crate::accounts::{self, Role, User};
use crate::clock::now_ms;
use crate::directory::{self, Partner, PartnerForm};
use crate::node::Node;
use access::{Member, Page, Staff};
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use guanxi_adapters::store::Receipted;
use guanxi_protocol::envelope::SignedEnvelope;
use i18n::{Catalog, Lang};
use serde::Deserialize;
use session::{Found, LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE, Session};
use std::net::SocketAddr;
use std::sync::Arc;

/// Cookie carrying a flash message key to the next page.
const FLASH_COOKIE: &str = "gx_flash";
/// Exchanges shown per page on a partner's page.
const PAGE_SIZE: usize = 20;

/// The web routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(home))
        .route("/static/app.css", get(stylesheet))
        .route("/lang/{code}", get(switch_language))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/partners", get(partners).post(create_partner))
        .route("/partners/new", get(new_partner))
        .route("/partners/{id}", get(partner_page).post(update_partner))
        .route("/partners/{id}/edit", get(edit_partner))
        .route(
            "/partners/{id}/users",
            axum::routing::post(add_partner_user),
        )
        .route(
            "/partners/{id}/invite",
            axum::routing::post(invite_partner_node),
        )
        .route("/connect", get(connect_page).post(connect_node))
        .route(
            "/partners/{id}/handover",
            axum::routing::post(hand_over_partner),
        )
        .route(
            "/account/password",
            get(password_page).post(change_password),
        )
        .merge(account::routes())
        .merge(notifications::routes())
        .merge(leads::routes())
        .merge(orders::routes())
        .merge(service::routes())
        .merge(mdf::routes())
        .merge(library::routes())
        .merge(announcements::routes())
        .merge(courses::routes())
        .merge(scorecards::routes())
        .merge(goals::routes())
        .merge(applications::routes())
        .merge(journey::routes())
        .merge(surveys::routes())
}

/// What every page shows around its content.
pub struct Frame {
    pub t: &'static Catalog,
    /// The reader's language and time zone: how values are written.
    pub loc: format::Locale,
    pub lang: &'static str,
    pub user: Option<String>,
    pub staff: bool,
    pub csrf: String,
    pub flash: Option<String>,
    pub path: String,
    /// The signed-in user's unread notifications.
    pub unread: u64,
    /// This node is connected to other daemons: its staff also see the
    /// partner side of the work (offers to us, our deals, ordering from
    /// vendors) in the menu.
    pub buys: bool,
    names: Names,
}

/// Looks organizations up by id for the page (one point read each).
#[derive(Clone)]
struct Names {
    store: Arc<guanxi_adapters::store::Store>,
    config: Arc<guanxi_config::Config>,
}

impl Frame {
    /// An organization's name for people (`acme`, `web:globex` → its name).
    pub fn org(&self, id: &str) -> String {
        match self.names.store.read() {
            Ok(read) => directory::org_name(&read, &self.names.config, id),
            Err(_) => id.strip_prefix("web:").unwrap_or(id).to_string(),
        }
    }

    /// What a message of `kind` sent by `by` did, in words ("Globex
    /// accepted a lead"), never the raw kind.
    pub fn said(&self, kind: &str, by: &str) -> String {
        let org = self.org(by);
        self.t.fill(&format!("kind.{kind}"), &[("org", &org)])
    }

    /// Every time zone name, for the zone fields' suggestions.
    pub fn zones(&self) -> &'static [String] {
        static ZONES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
            let mut all: Vec<String> = jiff::tz::db()
                .available()
                .map(|n| n.as_str().to_string())
                .collect();
            all.sort();
            all
        });
        &ZONES
    }
}

/// One request's context: language, time zone, session, flash.
struct Ctx {
    lang: Lang,
    loc: format::Locale,
    unread: u64,
    names: Names,
    token: Option<String>,
    found: Found,
    flash: Option<String>,
    path: String,
}

impl Ctx {
    fn read(node: &Node, headers: &HeaderMap, uri: &Uri) -> Ctx {
        let all = cookie_header(headers);
        let cookies = all.as_str();
        let config = node.config();
        let lang = session::cookie(cookies, LANG_COOKIE)
            .and_then(Lang::from_code)
            .or_else(|| {
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Lang::from_accept_language)
            })
            .or_else(|| Lang::from_code(&config.web.default_language))
            .unwrap_or(Lang::En);
        let token = session::cookie(cookies, SESSION_COOKIE).map(str::to_string);
        // One read transaction for the session, the unread count and the
        // organization's time zone.
        let read = node.store.read().ok();
        let found = match (&token, &read) {
            (Some(t), Some(read)) => session::find(
                read,
                t,
                now_ms(),
                i64::from(config.web.session_idle_seconds) * 1000,
                i64::from(config.web.session_absolute_seconds) * 1000,
            )
            .unwrap_or(Found::None),
            _ => Found::None,
        };
        let unread = match (&found, &read) {
            (Found::Valid(_, user), Some(read)) => {
                crate::notify::unread(read, &user.username).unwrap_or(0)
            }
            _ => 0,
        };
        let loc = match &found {
            Found::Valid(_, user) => {
                let org = match (&user.partner, &read) {
                    (Some(p), Some(read)) => directory::load(read, p)
                        .ok()
                        .flatten()
                        .map(|p| p.time_zone)
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                format::Locale::new(lang, &[&user.time_zone, &org, &config.web.time_zone])
            }
            _ => format::Locale::new(lang, &[&config.web.time_zone]),
        };
        let flash = session::cookie(cookies, FLASH_COOKIE)
            .filter(|k| {
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
            })
            .map(|k| i18n::catalog(lang).get(k));
        Ctx {
            lang,
            loc,
            unread,
            names: Names {
                store: node.store.clone(),
                config: config.clone(),
            },
            token,
            found,
            flash,
            path: uri.path().to_string(),
        }
    }

    fn frame(&self, csrf: String) -> Frame {
        let (user, staff) = match &self.found {
            Found::Valid(_, u) => (Some(u.display_name.clone()), u.role != Role::Partner),
            _ => (None, false),
        };
        Frame {
            t: i18n::catalog(self.lang),
            loc: self.loc.clone(),
            lang: self.lang.code(),
            user,
            staff,
            csrf,
            flash: self.flash.clone(),
            path: self.path.clone(),
            unread: self.unread,
            buys: !self.names.config.peers.is_empty(),
            names: self.names.clone(),
        }
    }

    /// The signed-in user and session, or the response that sends the
    /// visitor to the login page.
    fn require(&self) -> Result<(&Session, &User, &str), Response> {
        match (&self.found, &self.token) {
            (Found::Valid(s, u), Some(t)) => Ok((s, &**u, t.as_str())),
            (Found::Expired, _) => Err(redirect_with_flash("/login", "login.expired")),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }

    fn page(&self, status: StatusCode, body: Result<String, askama::Error>) -> Response {
        let mut response = match body {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!("template: {e}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
        if self.flash.is_some() {
            add_cookie(&mut response, &session::set_cookie(FLASH_COOKIE, "", 0));
        }
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
        response
    }

    fn error(&self, status: StatusCode, message: &'static str) -> Response {
        let csrf = match &self.found {
            Found::Valid(s, _) => s.csrf.clone(),
            _ => String::new(),
        };
        self.page(
            status,
            ErrorPage {
                f: self.frame(csrf),
                message,
            }
            .render(),
        )
    }
}

/// Every Cookie header joined: over HTTP/2 browsers send each cookie in a
/// header of its own.
fn cookie_header(headers: &HeaderMap) -> String {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

fn add_cookie(response: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn redirect_with_flash(to: &str, key: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    add_cookie(&mut response, &session::set_cookie(FLASH_COOKIE, key, 60));
    response
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("web: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The service could not complete the request; please retry.",
    )
        .into_response()
}

/// Rows on one page of a web list.
pub(crate) const LIST_PAGE: usize = 50;

/// A list's place in links: `after` continues it (a
/// [`crate::record_index::Cursor`]); `direction=placed` shows staff what
/// this node sent to other vendors instead of what it received.
#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    after: Option<String>,
    direction: Option<String>,
}

impl ListQuery {
    pub(crate) fn direction(&self) -> crate::records::Direction {
        self.direction
            .as_deref()
            .and_then(crate::records::Direction::parse)
            .unwrap_or_default()
    }

    /// Where the page starts (the first page when absent or malformed).
    pub(crate) fn cursor(&self) -> Option<crate::record_index::Cursor> {
        self.after
            .as_deref()
            .and_then(crate::record_index::Cursor::parse)
    }
}

/// The link to the page after `next` of the list at `path`.
pub(crate) fn next_link(
    path: &str,
    direction: crate::records::Direction,
    next: Option<crate::record_index::Cursor>,
) -> Option<String> {
    let next = next?;
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    if direction == crate::records::Direction::Placed {
        url.append_pair("direction", "placed");
    }
    url.append_pair("after", &next.text());
    Some(format!("{path}?{}", url.finish()))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    f: Frame,
    message: &'static str,
}

async fn stylesheet() -> Response {
    let mut r = include_str!("../../static/app.css").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// The client's address: the connection's, or — when that is a trusted
/// reverse proxy — the last address in `X-Forwarded-For` that is not itself
/// a trusted proxy. From anyone else the header is ignored (it is the
/// client's to write).
fn client_ip(
    trusted: &[std::net::IpAddr],
    addr: SocketAddr,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    if !trusted.contains(&addr.ip()) {
        return addr.ip();
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(addr.ip())
}

/// `next` as a path on this site, or `None` when it would lead anywhere
/// else. Parsed the way a browser resolves it (WHATWG URL: `\` is `/`,
/// tabs and line breaks are dropped), never pattern-matched; the answer is
/// the parsed path and query, so no control character survives.
fn same_origin_path(next: &str) -> Option<String> {
    const BASE: &str = "https://guanxi.invalid/";
    let base = url::Url::parse(BASE).ok()?;
    let resolved = base.join(next).ok()?;
    if resolved.origin() != base.origin() || !next.starts_with('/') {
        return None;
    }
    Some(match resolved.query() {
        Some(q) => format!("{}?{q}", resolved.path()),
        None => resolved.path().to_string(),
    })
}

/// Keeps the chosen language in a cookie and goes back where the user was
/// (a path on this site only).
async fn switch_language(Path(code): Path<String>, Query(q): Query<Next>) -> Response {
    let next = q
        .next
        .as_deref()
        .and_then(same_origin_path)
        .unwrap_or_else(|| "/".into());
    let mut response = Redirect::to(&next).into_response();
    if let Some(lang) = Lang::from_code(&code) {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=31536000",
            lang.code()
        );
        add_cookie(&mut response, &cookie);
    }
    response
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    f: Frame,
    error: Option<&'static str>,
    username: String,
}

async fn login_page(State(node): State<Arc<Node>>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::read(&node, &headers, &uri);
    if matches!(ctx.found, Found::Valid(..)) {
        return Redirect::to("/").into_response();
    }
    login_form(&ctx, StatusCode::OK, None, String::new())
}

fn login_form(
    ctx: &Ctx,
    status: StatusCode,
    error: Option<&'static str>,
    username: String,
) -> Response {
    let Ok(token) = accounts::random_token(24) else {
        return internal("no randomness");
    };
    let page = LoginPage {
        f: ctx.frame(token.clone()),
        error,
        username,
    };
    let mut response = ctx.page(status, page.render());
    add_cookie(
        &mut response,
        &session::set_cookie(LOGIN_COOKIE, &token, 3600),
    );
    response
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(node): State<Arc<Node>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Response {
    let ctx = Ctx::read(&node, &headers, &uri);
    let cookies = cookie_header(&headers);
    let expected = session::cookie(&cookies, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !session::same(expected, &form.csrf) {
        return ctx.error(StatusCode::FORBIDDEN, "error.csrf");
    }
    let now = now_ms();
    let username = form.username.trim().to_string();
    let ip = client_ip(&node.config().web.trusted_proxies, addr, &headers).to_string();
    let read = match node.store.read() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    match session::wait_ms(&read, &username, &ip, now) {
        Ok(0) => {}
        Ok(wait) => {
            tracing::info!(user = %username, addr = %ip, wait_ms = wait, "login delayed: failures");
            let mut page = login_form(
                &ctx,
                StatusCode::TOO_MANY_REQUESTS,
                Some("login.throttled"),
                username,
            );
            let seconds = (wait + 999) / 1000;
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                page.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return page;
        }
        Err(e) => return internal(e),
    }
    let user = accounts::load_user(&read, &username).ok().flatten();
    let must_change = user.as_ref().is_some_and(|u| u.must_change_password);
    drop(read);
    let password = form.password.clone();
    let (valid, retired) = tokio::task::spawn_blocking(move || {
        let valid = accounts::verify_login(user.as_ref(), &password);
        // A web user retired because its organization now runs its own
        // node (SPEC §25) is told so, once it proves its password.
        let retired = user
            .filter(|u| !valid && u.disabled && u.role == accounts::Role::Partner)
            .filter(|u| accounts::verify_password(&u.password_hash, &password))
            .and_then(|u| u.partner);
        (valid, retired)
    })
    .await
    .unwrap_or((false, None));
    let handed_over = retired.and_then(|org| {
        node.store
            .read()
            .ok()
            .and_then(|r| crate::handover::load(&r, &org).ok().flatten())
    });
    if handed_over.is_some() {
        tracing::info!(user = %username, "login refused: the organization runs its own node");
        return login_form(
            &ctx,
            StatusCode::FORBIDDEN,
            Some("login.handed_over"),
            username,
        );
    }
    if !valid {
        tracing::info!(user = %username, addr = %addr.ip(), "login failed");
        if let Err(e) = session::record_failure(&node.engine, &username, &ip, now).await {
            return internal(e);
        }
        return login_form(
            &ctx,
            StatusCode::UNAUTHORIZED,
            Some("login.failed"),
            username,
        );
    }
    if let Err(e) = session::clear_failures(&node.engine, &username, &ip).await {
        return internal(e);
    }
    let token = match session::start(&node.engine, &username, now).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    tracing::info!(user = %username, "logged in");
    // A one-time password leads straight to choosing one's own.
    let home = if must_change {
        "/account/password"
    } else {
        "/"
    };
    let mut response = Redirect::to(home).into_response();
    add_cookie(
        &mut response,
        &session::set_cookie(
            SESSION_COOKIE,
            &token,
            i64::from(node.config().web.session_absolute_seconds),
        ),
    );
    add_cookie(&mut response, &session::set_cookie(LOGIN_COOKIE, "", 0));
    response
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let ctx = Ctx::read(&node, &headers, &uri);
    let (session, _, token) = match ctx.require() {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !session::same(&session.csrf, &form.csrf) {
        return ctx.error(StatusCode::FORBIDDEN, "error.csrf");
    }
    if let Err(e) = session::end(&node.engine, token).await {
        return internal(e);
    }
    let mut response = redirect_with_flash("/login", "login.logged_out");
    add_cookie(&mut response, &session::set_cookie(SESSION_COOKIE, "", 0));
    response
}

/// Loads the signed-in context and records the request on the session.
async fn signed_in(node: &Node, headers: &HeaderMap, uri: &Uri) -> Result<Ctx, Response> {
    let ctx = Ctx::read(node, headers, uri);
    if let Found::Valid(s, _) = &ctx.found
        && let Some(t) = &ctx.token
        && let Err(e) = session::touch(&node.engine, t, s, now_ms()).await
    {
        // With the database refusing writes (a full disk) pages that only
        // read still open; the session's last use is recorded later.
        let storage = matches!(&e, crate::engine::EngineError::Store(s) if s.is_io());
        if !storage {
            return Err(internal(e));
        }
    }
    ctx.require()?;
    // A one-time password opens only the page to choose one's own.
    if let Some((_, user)) = user_of(&ctx)
        && user.must_change_password
        && uri.path() != "/account/password"
    {
        return Err(Redirect::to("/account/password").into_response());
    }
    Ok(ctx)
}

fn user_of(ctx: &Ctx) -> Option<(&Session, &User)> {
    match &ctx.found {
        Found::Valid(s, u) => Some((s, &**u)),
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    f: Frame,
    partners: usize,
    peers: usize,
    backlog: u64,
    organization: Option<Partner>,
    /// Things that need a staff member's action, as (message key, detail).
    items: Vec<format::InboxItem>,
    dash: dashboard::Dashboard,
}

async fn home(State(node): State<Arc<Node>>, m: Member) -> Page {
    let loc = m.loc();
    let user = &m.user;
    let read = node.store.read()?;
    let config = node.config();
    let mut backlog = 0;
    let mut items = Vec::new();
    let alert_ms = i64::from(config.federation.alert_after_seconds) * 1000;
    let now = now_ms();
    for p in &config.peers {
        let queued = read.out_stream(p.id.as_str()).map(|s| s.seq).unwrap_or(0);
        let delivery = read.delivery(p.id.as_str()).unwrap_or_default();
        backlog += queued.saturating_sub(delivery.delivered_seq);
        if user.role != Role::Partner {
            if let Some(why) = &delivery.halted {
                items.push(format::plain(
                    "home.peer_halted",
                    format!("{}: {why}", p.id),
                ));
            } else if delivery.failing_since.is_some_and(|s| now - s > alert_ms) {
                let error = delivery.last_error.clone().unwrap_or_default();
                items.push(format::plain(
                    "home.peer_failing",
                    format!("{}: {error}", p.id),
                ));
            }
        }
    }
    if user.role != Role::Partner
        && let Some(fault) = node.engine.storage_fault()
    {
        let since = loc.when(fault.since);
        items.push(format::plain(
            "home.storage_failing",
            format!("{since}: {}", fault.message),
        ));
    }
    if user.role != Role::Partner
        && let Some(damage) = node.damage()
    {
        items.push(format::plain("home.store_damaged", damage));
    }
    if user.role != Role::Partner {
        let (retrying, error) = crate::notify::retrying(&read, 100).unwrap_or_default();
        if retrying > 0 {
            items.push(format::plain(
                "home.mail_retrying",
                format!("{retrying} · {}", error.unwrap_or_default()),
            ));
        }
        if let Ok(Some(failed)) = crate::notify::failures(&read) {
            items.push(format::plain(
                "home.mail_failed",
                format!(
                    "{} · {} · {}",
                    failed.count,
                    loc.when(failed.at),
                    failed.last_error
                ),
            ));
        }
        for (peer, seq, code) in read.out_rejected().unwrap_or_default() {
            items.push(format::plain(
                "home.rejected_out",
                format!("{peer} #{seq}: {code}"),
            ));
        }
    }
    items.extend(leads::inbox_items(loc, &read, user, &node.identity.id));
    items.extend(orders::inbox_items(&m.frame(), &read, user));
    items.extend(service::inbox_items(&read, user, &node.identity.id));
    items.extend(mdf::inbox_items(&read, user));
    let organization = match &user.partner {
        Some(org) => directory::load(&read, org).ok().flatten(),
        None => None,
    };
    let dash = match &user.partner {
        Some(org) if user.role == Role::Partner => {
            dashboard::partner(&read, loc, &crate::records::web_key(org))?
        }
        _ => dashboard::vendor(&read, loc)?,
    };
    let page = HomePage {
        dash,
        f: m.frame(),
        partners: read
            .doc_count(guanxi_adapters::store::Doc::Partner)
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        peers: config.peers.iter().filter(|p| p.enabled).count(),
        backlog,
        organization,
        items,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "partners.html")]
struct PartnersPage {
    f: Frame,
    partners: Vec<Partner>,
    next: Option<String>,
    /// An admin may connect to another company's node with its code.
    admin: bool,
}

#[derive(Deserialize)]
struct AfterQuery {
    after: Option<String>,
}

async fn partners(
    State(node): State<Arc<Node>>,
    Query(q): Query<AfterQuery>,
    Staff(m): Staff,
) -> Page {
    let page = node
        .reading(move |r| directory::page(r, q.after.as_deref(), LIST_PAGE))
        .await;
    let (list, next) = match page {
        Ok(l) => l,
        Err(e) => return Err(e.into()),
    };
    let next = next.map(|id| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        url.append_pair("after", &id);
        format!("/partners?{}", url.finish())
    });
    Ok(m.page(
        StatusCode::OK,
        PartnersPage {
            f: m.frame(),
            partners: list,
            next,
            admin: m.user.role == Role::Admin,
        }
        .render(),
    ))
}

#[derive(Template)]
#[template(path = "partner_form.html")]
struct PartnerFormPage {
    f: Frame,
    heading: &'static str,
    action: String,
    creating: bool,
    form: PartnerForm,
    errors: Vec<directory::FieldError>,
    kinds: Vec<&'static str>,
    stages: Vec<&'static str>,
}

impl PartnerFormPage {
    fn error_for(&self, field: &str) -> Option<&'static str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message)
    }
}

fn partner_form(
    m: &Member,
    status: StatusCode,
    form: PartnerForm,
    errors: Vec<directory::FieldError>,
    creating: bool,
) -> Page {
    let page = PartnerFormPage {
        f: m.frame(),
        heading: if creating {
            "partners.new"
        } else {
            "partners.edit"
        },
        action: if creating {
            "/partners".into()
        } else {
            format!("/partners/{}", form.id)
        },
        creating,
        form,
        errors,
        kinds: directory::TYPES.iter().map(|(_, n)| *n).collect(),
        stages: directory::STAGES.iter().map(|(_, n)| *n).collect(),
    };
    Ok(m.page(status, page.render()))
}

async fn new_partner(Staff(m): Staff) -> Page {
    let form = PartnerForm {
        kind: "reseller".into(),
        stage: "prospect".into(),
        ..PartnerForm::default()
    };
    partner_form(&m, StatusCode::OK, form, Vec::new(), true)
}

#[derive(Deserialize)]
struct PartnerSubmit {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: PartnerForm,
}

async fn save_partner(
    node: Arc<Node>,
    m: Member,
    submit: PartnerSubmit,
    id: Option<String>,
) -> Page {
    m.csrf(&submit.csrf)?;
    let creating = id.is_none();
    let mut form = submit.form;
    if let Some(id) = id {
        form.id = id;
    }
    let partner = match form.validate(&node.identity.id) {
        Ok(p) => p,
        Err(errors) => {
            return partner_form(&m, StatusCode::UNPROCESSABLE_ENTITY, form, errors, creating);
        }
    };
    let id = partner.id.clone();
    if directory::save(&node.engine, partner, creating, now_ms(), &m.user.username).await? {
        Ok(redirect_with_flash(
            &format!("/partners/{id}"),
            if creating {
                "partners.created"
            } else {
                "partners.updated"
            },
        ))
    } else if creating {
        let errors = vec![directory::FieldError {
            field: "id",
            message: "error.exists",
        }];
        partner_form(&m, StatusCode::CONFLICT, form, errors, true)
    } else {
        Err(m.error(StatusCode::NOT_FOUND, "error.not_found"))
    }
}

async fn create_partner(
    State(node): State<Arc<Node>>,
    Staff(m): Staff,
    Form(submit): Form<PartnerSubmit>,
) -> Page {
    save_partner(node, m, submit, None).await
}

async fn update_partner(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Staff(m): Staff,
    Form(submit): Form<PartnerSubmit>,
) -> Page {
    save_partner(node, m, submit, Some(id)).await
}

async fn edit_partner(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Staff(m): Staff,
) -> Page {
    let Some(p) = node.store.read().and_then(|r| directory::load(&r, &id))? else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    partner_form(
        &m,
        StatusCode::OK,
        PartnerForm::from_partner(&p),
        Vec::new(),
        false,
    )
}

/// One exchange on a partner's page.
pub struct ExchangeRow {
    pub created: String,
    pub direction: &'static str,
    pub kind: String,
    /// The node that sent it.
    pub by: String,
    pub subject: String,
    pub seq: u64,
    pub status: &'static str,
    at: i64,
}

#[derive(Template)]
#[template(path = "partner.html")]
struct PartnerPage {
    f: Frame,
    partner: Partner,
    users: Vec<User>,
    exchanges: Vec<ExchangeRow>,
    page: usize,
    more: bool,
    /// How fast announcements reach the partner, in words (empty: none yet).
    delivery: String,
    /// Its tier's certification requirements and its certifications.
    requirements: Vec<courses::RequirementLine>,
    assigned: Vec<courses::AssignedLine>,
    rows: Vec<courses::CertLine>,
    /// Its open support requests: (page, what, status).
    support: Vec<(String, String, String)>,
    /// Staff: where it stands on the journey.
    journey: Option<journey::JourneyView>,
    /// An admin may invite the partner's own node (when it has none yet).
    admin: bool,
    /// Staff: its web records handed to its node (SPEC §25): when, how
    /// many, and how many web users were retired.
    handover: Option<(String, crate::handover::Handover)>,
    /// An admin may hand its web records to its node: it has a node, and
    /// records or enabled users in the web view.
    may_hand_over: bool,
}

/// A partner's open service requests (its node's and its web users'), at
/// most 20 per status: read from the status index, never every request.
fn open_support(
    read: &guanxi_adapters::store::Read,
    partner: &Partner,
    staff: bool,
) -> Result<Vec<(String, String, String)>, guanxi_adapters::store::StoreError> {
    let mut keys = vec![crate::records::web_key(&partner.id)];
    // A partner's own users see what they filed here, as the lists show.
    if staff {
        keys.extend(partner.peer.clone());
    }
    let mut places = Vec::new();
    for key in &keys {
        for status in ["open", "in_progress", "waiting_on_partner"] {
            let (found, _) = crate::record_index::find(
                read,
                "service",
                crate::record_index::Side::Own,
                status,
                Some(key),
                None,
                20,
            )?;
            places.extend(found);
        }
    }
    Ok(crate::record_index::load(read, places)
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            guanxi_protocol::state::Record::Service(s) => Some((
                format!("/service/{key}/{subject}"),
                format!("{} · {}", s.request.customer.company, s.request.sku),
                s.status.as_str().to_string(),
            )),
            _ => None,
        })
        .collect())
}

/// A partner's announcement figures in words (its node's and its web
/// users' together), empty when it has read none.
fn delivery_words(
    read: &guanxi_adapters::store::Read,
    loc: &format::Locale,
    partner: &Partner,
) -> Result<String, guanxi_adapters::store::StoreError> {
    let mut f = crate::announcements::figures(read, &crate::records::web_key(&partner.id))?;
    if let Some(peer) = &partner.peer {
        let p = crate::announcements::figures(read, peer)?;
        f.read += p.read;
        f.read_ms += p.read_ms;
        f.acknowledged += p.acknowledged;
        f.acknowledged_ms += p.acknowledged_ms;
    }
    if f.read == 0 {
        return Ok(String::new());
    }
    let time = |ms: Option<i64>| ms.map(|ms| loc.duration(ms)).unwrap_or_else(|| "–".into());
    Ok(loc.t().fill(
        "announcements.figures_line",
        &[
            ("read", &loc.number(f.read as i64)),
            ("read_time", &time(f.mean_read())),
            ("acknowledged", &loc.number(f.acknowledged as i64)),
            ("ack_time", &time(f.mean_acknowledged())),
        ],
    ))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

fn rows(
    loc: &format::Locale,
    list: Vec<(u64, Vec<u8>, Receipted)>,
    direction: &'static str,
) -> Vec<ExchangeRow> {
    list.into_iter()
        .filter_map(|(seq, bytes, status)| {
            let e = SignedEnvelope::decode(&bytes).ok()?;
            let f = e.fields();
            Some(ExchangeRow {
                created: loc.when(f.created),
                direction,
                kind: f.kind.clone(),
                by: f.from.to_string(),
                subject: f.subject.to_string(),
                seq,
                status: match status {
                    Receipted::Accepted => "exchange.accepted",
                    Receipted::Rejected => "exchange.rejected",
                    Receipted::Waiting => "exchange.pending",
                },
                at: f.created,
            })
        })
        .collect()
}

async fn partner_page(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    m: Member,
) -> Page {
    let user = &m.user;
    // A partner user sees only its own organization; anything else is "not found".
    if user.role == Role::Partner && user.partner.as_deref() != Some(id.as_str()) {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    }
    let read = node.store.read()?;
    let Some(partner) = directory::load(&read, &id)? else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let page = q.page.unwrap_or(1).clamp(1, 10_000);
    let want = page * PAGE_SIZE + 1;
    let mut exchanges = Vec::new();
    if let Some(peer) = &partner.peer {
        exchanges.extend(rows(
            m.loc(),
            read.out_recent(peer, want).unwrap_or_default(),
            "exchange.out",
        ));
        exchanges.extend(rows(
            m.loc(),
            read.in_recent(peer, want).unwrap_or_default(),
            "exchange.in",
        ));
    }
    exchanges.sort_by_key(|e| std::cmp::Reverse(e.at));
    let delivery = delivery_words(&read, m.loc(), &partner)?;
    let (requirements, assigned, rows) = courses::partner_training(&read, &m, &partner)?;
    let support = open_support(&read, &partner, m.staff())?;
    let journey = if m.staff() {
        Some(journey::view(&read, m.loc(), &partner, now_ms())?)
    } else {
        None
    };
    let users = accounts::users_of(&read, &id).unwrap_or_default();
    let may_hand_over = m.user.role == Role::Admin
        && partner.peer.is_some()
        && (read.any_record_under(&crate::records::web_key(&id))?
            || users.iter().any(|u| !u.disabled));
    let more = exchanges.len() > page * PAGE_SIZE;
    let exchanges: Vec<ExchangeRow> = exchanges
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    Ok(m.page(
        StatusCode::OK,
        PartnerPage {
            f: m.frame(),
            users,
            partner,
            exchanges,
            page,
            more,
            delivery,
            requirements,
            assigned,
            rows,
            support,
            journey,
            admin: m.user.role == Role::Admin,
            handover: crate::handover::load(&read, &id)?
                .filter(|_| m.staff())
                .map(|h| (m.loc().when(h.at), h)),
            may_hand_over,
        }
        .render(),
    ))
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    f: Frame,
    error: Option<&'static str>,
    /// Signed in with a one-time password: the change comes first.
    first: bool,
}

async fn password_page(m: Member) -> Page {
    let user = &m.user;
    Ok(m.page(
        StatusCode::OK,
        PasswordPage {
            f: m.frame(),
            error: None,
            first: user.must_change_password,
        }
        .render(),
    ))
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

async fn change_password(
    State(node): State<Arc<Node>>,
    m: Member,
    Form(form): Form<PasswordForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    let user = &m.user;
    let refuse = |key| {
        Ok(m.page(
            StatusCode::UNPROCESSABLE_ENTITY,
            PasswordPage {
                f: m.frame(),
                error: Some(key),
                first: user.must_change_password,
            }
            .render(),
        ))
    };
    if form.new != form.confirm {
        return refuse("password.mismatch");
    }
    if form.new == form.current {
        return refuse("password.same");
    }
    // argon2 and the strength estimate off the async threads: check the
    // current password, judge the new one, hash it.
    let (stored, current, new) = (
        user.password_hash.clone(),
        form.current.clone(),
        form.new.clone(),
    );
    let (username, display_name) = (user.username.clone(), user.display_name.clone());
    let checked = tokio::task::spawn_blocking(move || {
        if !accounts::verify_password(&stored, &current) {
            return Err("password.wrong");
        }
        if let Some(weakness) = accounts::password_weakness(&new, &username, &display_name) {
            return Err(weakness);
        }
        Ok(accounts::hash_password(&new))
    })
    .await;
    let hash = match checked? {
        Ok(hash) => hash?,
        Err(key) => return refuse(key),
    };
    accounts::update_user(&node.engine, &user.username, move |u| {
        u.password_hash = hash.clone();
        u.must_change_password = false;
    })
    .await?;
    // Whoever else is signed in as this user (another device, or someone
    // who knew the old password) is signed out.
    let keep = m.ctx.token.clone().unwrap_or_default();
    session::end_others(&node.engine, &user.username, &keep).await?;
    Ok(redirect_with_flash("/", "password.changed"))
}

#[derive(Template)]
#[template(path = "user_created.html")]
struct UserCreatedPage {
    f: Frame,
    username: String,
    password: String,
    partner: String,
}

#[derive(Deserialize)]
struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
}

/// Staff create a partner user; its one-time password is shown once.
async fn add_partner_user(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Staff(m): Staff,
    Form(form): Form<NewUserForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    let username = form.username.trim().to_string();
    match accounts::add_user(
        &node.engine,
        &username,
        form.display_name.trim(),
        Role::Partner,
        Some(id.clone()),
        now_ms(),
    )
    .await
    {
        Ok(password) => {
            tracing::info!(user = %username, partner = %id, "partner user created");
            let page = UserCreatedPage {
                f: m.frame(),
                username,
                password,
                partner: id,
            };
            Ok(m.page(StatusCode::CREATED, page.render()))
        }
        Err(accounts::AccountError::NoSuchPartner(_)) => {
            Err(m.error(StatusCode::NOT_FOUND, "error.not_found"))
        }
        Err(accounts::AccountError::Exists(_)) => {
            Err(m.error(StatusCode::CONFLICT, "error.user_exists"))
        }
        Err(accounts::AccountError::BadUsername(_)) => {
            Err(m.error(StatusCode::UNPROCESSABLE_ENTITY, "error.username"))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "invite_created.html")]
struct InviteCreatedPage {
    f: Frame,
    code: String,
    expires: String,
    partner: String,
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    days: String,
}

/// An admin makes a one-time invitation for the partner's own node (see
/// [`crate::invitations`]); the code is shown once.
async fn invite_partner_node(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Staff(m): Staff,
    Form(form): Form<InviteForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    if m.user.role != Role::Admin {
        return Err(m.error(StatusCode::FORBIDDEN, "error.forbidden"));
    }
    let read = node
        .store
        .read()
        .map_err(crate::engine::EngineError::from)?;
    m.found(crate::directory::load(&read, &id).map_err(crate::engine::EngineError::from)?)?;
    drop(read);
    let days: i64 = match form.days.trim().parse() {
        Ok(d) if (1..=30).contains(&d) => d,
        _ => return Err(m.error(StatusCode::UNPROCESSABLE_ENTITY, "invite.bad_days")),
    };
    match crate::invitations::create(&node, Some(id.clone()), days * 86_400_000).await {
        Ok((code, expires)) => {
            tracing::info!(partner = %id, "invitation made in the web view");
            let page = InviteCreatedPage {
                f: m.frame(),
                code,
                expires: m.loc().when(expires),
                partner: id,
            };
            Ok(m.page(StatusCode::CREATED, page.render()))
        }
        Err(crate::invitations::InviteError::NoConfigFile) => {
            Err(m.error(StatusCode::UNPROCESSABLE_ENTITY, "invite.no_config"))
        }
        Err(e) => {
            tracing::warn!("invitation failed: {e}");
            Err(m.error(StatusCode::SERVICE_UNAVAILABLE, "error.unavailable"))
        }
    }
}

/// An admin hands a web partner's records to the node it now runs (SPEC
/// §25; what an invitation for its entry does when used).
async fn hand_over_partner(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Staff(m): Staff,
    Form(form): Form<CsrfOnly>,
) -> Page {
    m.csrf(&form.csrf)?;
    if m.user.role != Role::Admin {
        return Err(m.error(StatusCode::FORBIDDEN, "error.forbidden"));
    }
    match crate::handover::run(&node, &id, None).await {
        Ok(_) => Ok(Redirect::to(&format!("/partners/{id}")).into_response()),
        Err(crate::handover::HandoverError::NoPartner(_)) => {
            Err(m.error(StatusCode::NOT_FOUND, "error.not_found"))
        }
        Err(e) => {
            tracing::warn!(partner = %id, "hand-over failed: {e}");
            Err(m.error(StatusCode::CONFLICT, "handover.failed"))
        }
    }
}

#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectPage {
    f: Frame,
    code: String,
    /// The i18n key of what went wrong, and the details.
    error: Option<(String, String)>,
    /// The new peer and its URL.
    connected: Option<(String, String)>,
}

#[derive(Deserialize)]
struct ConnectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// An admin pastes another company's invitation code (the web view's
/// `guanxi connect`).
async fn connect_page(Staff(m): Staff) -> Page {
    if m.user.role != Role::Admin {
        return Err(m.error(StatusCode::FORBIDDEN, "error.forbidden"));
    }
    let page = ConnectPage {
        f: m.frame(),
        code: String::new(),
        error: None,
        connected: None,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn connect_node(
    State(node): State<Arc<Node>>,
    Staff(m): Staff,
    Form(form): Form<ConnectForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    if m.user.role != Role::Admin {
        return Err(m.error(StatusCode::FORBIDDEN, "error.forbidden"));
    }
    let (status, error, connected) = match crate::invitations::connect(&node, &form.code).await {
        Ok((peer, url)) => {
            tracing::info!(%peer, "connected by an invitation pasted in the web view");
            (StatusCode::OK, None, Some((peer, url)))
        }
        Err(e) => {
            tracing::info!("connecting by invitation failed: {e}");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                Some((format!("connect.err_{}", e.code()), e.to_string())),
                None,
            )
        }
    };
    let page = ConnectPage {
        f: m.frame(),
        code: form.code,
        error,
        connected,
    };
    Ok(m.page(status, page.render()))
}

/// How many of this node's changes to the record (`key`, `subject`) wait for
/// the record's authority to confirm them (SPEC §12.1), shown as pending.
pub(crate) fn pending_of(node: &Node, key: &str, subject: &str) -> usize {
    node.store
        .read()
        .map_err(crate::engine::EngineError::from)
        .and_then(|r| crate::engine::unconfirmed(&r, key, subject))
        .map_or(0, |u| u.pending_requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invitation_failure_is_worded_for_people_in_both_languages() {
        use crate::invitations::InviteError as E;
        let s = || String::from("x");
        let errors = [
            E::NoConfigFile,
            E::Code(guanxi_protocol::invitation::CodeError::Altered),
            E::Expired(s()),
            E::Used,
            E::Unknown,
            E::BadIntroduction(s()),
            E::AlreadyPeer(s()),
            E::Itself,
            E::Refused(s()),
            E::Unreachable(s()),
            E::Config(s()),
            E::Internal(s()),
        ];
        for lang in [i18n::Lang::En, i18n::Lang::ZhTw] {
            for e in &errors {
                let key = format!("connect.err_{}", e.code());
                assert_ne!(i18n::catalog(lang).get(&key), key, "{lang:?}");
            }
        }
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
        let addr = SocketAddr::new(proxy, 5000);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.7"),
        );
        // Not behind a trusted proxy: the header is the client's own claim.
        assert_eq!(client_ip(&[], addr, &headers), proxy);
        // Behind one: the last address the proxy saw.
        assert_eq!(
            client_ip(&[proxy], addr, &headers),
            "10.0.0.7".parse::<std::net::IpAddr>().expect("ip")
        );
        // A chain of trusted proxies is skipped.
        let inner: std::net::IpAddr = "10.0.0.7".parse().expect("ip");
        assert_eq!(
            client_ip(&[proxy, inner], addr, &headers),
            "6.6.6.6".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(client_ip(&[proxy], addr, &HeaderMap::new()), proxy);
    }

    #[test]
    fn only_paths_on_this_site_are_followed() {
        for bad in [
            "//evil.example/",
            "/\\evil.example/",
            "/\t/evil.example/",
            "https://evil.example/",
            "/\r\n/evil.example",
            "evil",
            "javascript:alert(1)",
        ] {
            assert_eq!(same_origin_path(bad), None, "{bad:?}");
        }
        assert_eq!(
            same_origin_path("/leads?status=won").as_deref(),
            Some("/leads?status=won")
        );
        assert_eq!(same_origin_path("/a/../b").as_deref(), Some("/b"));
        assert!(
            same_origin_path("/x\r\nSet-Cookie: a=b")
                .is_some_and(|p| !p.contains('\r') && !p.contains('\n'))
        );
    }
}
