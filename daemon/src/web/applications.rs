//! Partner applications in the web view (`crate::applications`): the
//! public page anyone may use without an account — a CSRF token in a
//! cookie and the form, a field people never see that bots fill in, a
//! minimum time between showing the form and sending it, and at most
//! [`crate::applications::PER_HOUR`] applications an hour from one
//! address, all without JavaScript — and the staff pages to evaluate,
//! approve or decline them.

use super::access::{Page, Staff};
use super::form::{Fields, field};
use super::{Ctx, Frame, add_cookie, client_ip, cookie_header, redirect_with_flash, session};
use crate::applications::{self, Applicant, Application};
use crate::directory::TYPES;
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The cookie holding the public form's token and when it was shown.
const APPLY_COOKIE: &str = "gx_apply";
/// A form sent sooner after it was shown is a bot's.
const MIN_FILL_MS: i64 = 3_000;

/// The application routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/apply", get(apply_page).post(apply))
        .route("/applications", get(list))
        .route(
            "/applications/settings",
            get(settings_form).post(save_settings),
        )
        .route("/applications/{id}", get(one).post(act))
}

#[derive(Template)]
#[template(path = "apply.html")]
struct ApplyPage {
    f: Frame,
    v: Applicant,
    /// The field that was wrong and why (a catalog key).
    error: Option<(&'static str, &'static str)>,
    done: bool,
}

fn apply_form(
    ctx: &Ctx,
    status: StatusCode,
    v: Applicant,
    error: Option<(&'static str, &'static str)>,
) -> Response {
    let Ok(token) = crate::accounts::random_token(24) else {
        return super::internal("no randomness");
    };
    let page = ApplyPage {
        f: ctx.frame(token.clone()),
        v,
        error,
        done: false,
    };
    let mut response = ctx.page(status, page.render());
    let value = format!("{token}~{}", crate::clock::now_ms());
    add_cookie(
        &mut response,
        &session::set_cookie(APPLY_COOKIE, &value, 3600),
    );
    response
}

async fn apply_page(State(node): State<Arc<Node>>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::read(&node, &headers, &uri);
    apply_form(&ctx, StatusCode::OK, Applicant::default(), None)
}

async fn apply(
    State(node): State<Arc<Node>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<Fields>,
) -> Response {
    let ctx = Ctx::read(&node, &headers, &uri);
    let cookies = cookie_header(&headers);
    let (token, shown) = session::cookie(&cookies, APPLY_COOKIE)
        .and_then(|c| c.split_once('~'))
        .map(|(t, at)| (t.to_string(), at.parse::<i64>().unwrap_or(i64::MAX)))
        .unwrap_or_default();
    if token.is_empty() || !session::same(&token, field(&f, "csrf")) {
        return ctx.error(StatusCode::FORBIDDEN, "error.csrf");
    }
    let v = Applicant {
        company: field(&f, "company").to_string(),
        contact: field(&f, "contact").to_string(),
        email: field(&f, "email").to_string(),
        phone: field(&f, "phone").to_string(),
        country: field(&f, "country").to_string(),
        region: field(&f, "region").to_string(),
        territory: field(&f, "territory").to_string(),
        capabilities: field(&f, "capabilities").to_string(),
        references: field(&f, "references").to_string(),
        website: field(&f, "website").to_string(),
    };
    // A bot: it filled the field people never see, or sent at once.
    if !field(&f, "homepage").is_empty() || crate::clock::now_ms() - shown < MIN_FILL_MS {
        tracing::info!("application refused as automated");
        return apply_form(
            &ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            v,
            Some(("", "apply.too_fast")),
        );
    }
    if let Err(e) = applications::check(&v) {
        return apply_form(&ctx, StatusCode::UNPROCESSABLE_ENTITY, v, Some(e));
    }
    let ip = client_ip(&node.config().web.trusted_proxies, addr, &headers).to_string();
    match applications::submit(&node, v, ip).await {
        Ok(Some(id)) => {
            tracing::info!(application = %id, "partner application received");
            let page = ApplyPage {
                f: ctx.frame(String::new()),
                v: Applicant::default(),
                error: None,
                done: true,
            };
            let mut response = ctx.page(StatusCode::OK, page.render());
            add_cookie(&mut response, &session::set_cookie(APPLY_COOKIE, "", 0));
            response
        }
        Ok(None) => apply_form(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            Applicant::default(),
            Some(("", "apply.throttled")),
        ),
        Err(e) => super::internal(e),
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    before: Option<String>,
}

/// An application as a row.
pub struct Row {
    pub id: String,
    pub company: String,
    pub country: String,
    pub when: String,
    pub status: String,
    pub fit: String,
}

#[derive(Template)]
#[template(path = "applications.html")]
struct ListPage {
    f: Frame,
    rows: Vec<Row>,
    next: Option<String>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, s: Staff) -> Page {
    let before = q.before.clone();
    let (apps, next, settings) = node
        .reading(move |r| {
            let (apps, next) = applications::page(r, before.as_deref(), 50)?;
            Ok((apps, next, applications::settings(r)?))
        })
        .await?;
    let criteria = settings.criteria();
    let rows = apps
        .iter()
        .map(|a| Row {
            id: a.id.clone(),
            company: a.applicant.company.clone(),
            country: a.applicant.country.clone(),
            when: s.loc().when(a.submitted_at),
            status: format!("apply.status_{}", a.status),
            fit: applications::fit(&criteria, &a.scores)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "–".into()),
        })
        .collect();
    let page = ListPage {
        f: s.frame(),
        rows,
        next: next.map(|n| {
            let mut u = url::form_urlencoded::Serializer::new(String::new());
            u.append_pair("before", &n);
            format!("/applications?{}", u.finish())
        }),
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "application.html")]
struct OnePage {
    f: Frame,
    a: Application,
    when: String,
    decided: String,
    /// (item, done)
    checks: Vec<(String, bool)>,
    /// (criterion, weight, score)
    criteria: Vec<(String, i64, i64)>,
    fit: String,
    types: Vec<&'static str>,
    suggested_id: String,
}

/// A directory id from a company name: lowercase letters and digits
/// joined by `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(40).collect()
}

async fn one(State(node): State<Arc<Node>>, Path(id): Path<String>, s: Staff) -> Page {
    let found = node
        .reading(move |r| Ok(applications::load(r, &id)?.map(|a| (a, applications::settings(r)))))
        .await?;
    let (a, settings) = s.found(found)?;
    let settings = settings?;
    let criteria = settings.criteria();
    let page = OnePage {
        f: s.frame(),
        when: s.loc().when(a.submitted_at),
        decided: a.decided_at.map(|t| s.loc().when(t)).unwrap_or_default(),
        checks: settings
            .items()
            .into_iter()
            .map(|i| {
                let done = a.checks.contains(&i);
                (i, done)
            })
            .collect(),
        criteria: criteria
            .iter()
            .map(|(w, n)| (n.clone(), *w, a.scores.get(n).copied().unwrap_or(0)))
            .collect(),
        fit: applications::fit(&criteria, &a.scores)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "–".into()),
        types: TYPES.iter().map(|(_, n)| *n).collect(),
        suggested_id: slug(&a.applicant.company),
        a,
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "user_created.html")]
struct CreatedPage {
    f: Frame,
    username: String,
    password: String,
    partner: String,
}

fn refused(s: &Staff, message: String, back: String) -> Response {
    s.refused(
        &guanxi_protocol::state::StateError {
            code: guanxi_protocol::ReasonCode::BadBody,
            message,
        },
        back,
    )
}

/// `POST /applications/{id}`: `evaluate`, `approve` or `decline`.
async fn act(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    s: Staff,
    Form(f): Form<Fields>,
) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let back = format!("/applications/{id}");
    match field(&f, "action") {
        "evaluate" => {
            let settings = node.reading(applications::settings).await?;
            let checks = settings
                .items()
                .into_iter()
                .enumerate()
                .filter(|(n, _)| field(&f, &format!("check{n}")) == "yes")
                .map(|(_, i)| i)
                .collect();
            let mut scores = BTreeMap::new();
            for (n, (_, name)) in settings.criteria().iter().enumerate() {
                let v = field(&f, &format!("score{n}")).trim();
                if v.is_empty() {
                    continue;
                }
                match v.parse::<i64>().ok().filter(|x| (0..=5).contains(x)) {
                    Some(x) => {
                        scores.insert(name.clone(), x);
                    }
                    None => return Ok(refused(&s, format!("{name}: a score from 0 to 5"), back)),
                }
            }
            match applications::evaluate(&node, &id, checks, scores).await? {
                Ok(_) => Ok(redirect_with_flash(&back, "done.application_evaluated")),
                Err(e) => Ok(refused(&s, e, back)),
            }
        }
        "decline" => {
            match applications::decline(&node, &id, &s.user.username, field(&f, "reason")).await? {
                Ok(_) => Ok(redirect_with_flash(&back, "done.application_declined")),
                Err(e) => Ok(refused(&s, e, back)),
            }
        }
        "approve" => {
            let kind = TYPES
                .iter()
                .find(|(_, n)| *n == field(&f, "kind"))
                .map(|(k, _)| *k)
                .unwrap_or(crate::directory::PartnerType::Reseller);
            match applications::approve(
                &node,
                &id,
                &s.user.username,
                field(&f, "partner"),
                kind,
                field(&f, "tier"),
                field(&f, "username"),
            )
            .await?
            {
                Ok(done) => {
                    tracing::info!(partner = %done.partner, user = %done.username, "application approved");
                    let page = CreatedPage {
                        f: s.frame(),
                        username: done.username,
                        password: done.password,
                        partner: done.partner,
                    };
                    Ok(s.page(StatusCode::CREATED, page.render()))
                }
                Err(e) => Ok(refused(&s, e, back)),
            }
        }
        _ => Ok(refused(
            &s,
            "action: evaluate, approve or decline".into(),
            back,
        )),
    }
}

#[derive(Template)]
#[template(path = "application_settings.html")]
struct SettingsPage {
    f: Frame,
    checklist: String,
    criteria: String,
}

async fn settings_form(State(node): State<Arc<Node>>, s: Staff) -> Page {
    let set = node.reading(applications::settings).await?;
    let page = SettingsPage {
        f: s.frame(),
        checklist: set.checklist,
        criteria: set.criteria,
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

async fn save_settings(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let back = "/applications/settings".to_string();
    if let Err(e) = applications::parse_criteria(field(&f, "criteria")) {
        return Ok(refused(&s, format!("criteria: {e}"), back));
    }
    let set = applications::Settings {
        checklist: field(&f, "checklist").trim().to_string(),
        criteria: field(&f, "criteria").trim().to_string(),
    };
    applications::set_settings(&node, set).await?;
    Ok(redirect_with_flash(
        &back,
        "done.application_settings_saved",
    ))
}
