//! Web pages for service requests and warranty claims: queues sorted by
//! service level urgency with the clock on each request and breaches
//! highlighted, the request page (history, comments, status changes), the
//! claim page (the vendor's validity view, decision, fulfilment, forwarding
//! up the chain), forms to open requests and file claims, and downloads of
//! attachments for who may see them.

use super::access::{Member, Page, Refusal, WebError};
use super::form::{Fields, field};
use super::form::{Posted, attach};
use super::format::Locale;
use super::{Frame, LIST_PAGE, ListQuery, next_link, redirect_with_flash};
use crate::accounts::{Role, User};
use crate::clock::now_ms;
use crate::engine::decode_message;
use crate::library;
use crate::node::Node;
use crate::records::Direction;
use crate::service::{self, ClaimView, RequestView, Validity};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use guanxi_protocol::ReasonCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// The service routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/service", get(requests).post(open_request))
        .route(
            "/service/{key}/{subject}",
            get(request_page).post(update_request),
        )
        .route("/claims", get(claims).post(file_claim))
        .route(
            "/claims/{key}/{subject}",
            get(claim_page).post(act_on_claim),
        )
        .route("/files/{sha256}", get(download))
        .layer(axum::extract::DefaultBodyLimit::max(
            super::form::BODY_LIMIT,
        ))
}

/// Time left for people, in words (`2 d 3 h`); overdue as `−2 d 3 h`.
fn span(loc: &Locale, ms: i64) -> String {
    let sign = if ms < 0 { "−" } else { "" };
    format!("{sign}{}", loc.duration(ms.saturating_abs()))
}

/// The vendors the user can open requests and claims with.
fn vendors_for(node: &Node, user: &User) -> Vec<String> {
    match user.role {
        Role::Partner => vec![node.identity.id.to_string()],
        _ => node
            .config()
            .peers
            .iter()
            .filter(|p| p.enabled)
            .map(|p| p.id.to_string())
            .collect(),
    }
}

// ------------------------------------------------------------ requests

pub struct RequestRow {
    pub link: String,
    pub partner: String,
    pub vendor: String,
    pub company: String,
    pub priority: String,
    pub status: &'static str,
    pub opened: String,
    pub due: String,
    pub remaining: String,
    pub breached: bool,
}

fn request_row(loc: &Locale, v: &RequestView, now: i64) -> RequestRow {
    let c = &v.clock;
    let due = if v.request.first_response_at.is_none() {
        c.first_response_due
    } else {
        c.resolution_due
    };
    RequestRow {
        link: format!("/service/{}/{}", v.key, v.subject),
        partner: v.partner(),
        vendor: v.request.vendor.to_string(),
        company: v.request.request.customer.company.clone(),
        priority: serde_json::to_value(v.request.request.priority)
            .ok()
            .and_then(|p| p.as_str().map(str::to_string))
            .unwrap_or_default(),
        status: v.request.status.as_str(),
        opened: loc.when(v.request.opened_at),
        due: if c.remaining.is_some() {
            loc.when(due)
        } else {
            String::new()
        },
        remaining: c.remaining.map(|r| span(loc, r)).unwrap_or_default(),
        breached: c.first_response_breached
            || c.resolution_breached
            || c.remaining.is_some_and(|r| r < 0) && now > due,
    }
}

#[derive(Template)]
#[template(path = "service.html")]
struct RequestsPage {
    f: Frame,
    path: &'static str,
    placed: bool,
    next: Option<String>,
    rows: Vec<RequestRow>,
    breaches: usize,
    vendors: Vec<String>,
    metrics: Vec<(String, u64, String, String, u64, u64)>,
    /// Library resources the user may cite (place, title).
    citable: Vec<(String, String)>,
}

/// The library resources `user` may cite in a service message: what its
/// library shows (staff: this node's own and those received), newest first.
fn citable(node: &Node, user: &User) -> Result<Vec<(String, String)>, WebError> {
    let read = node.store.read()?;
    let me = &node.identity.id;
    let mut shelves = vec![library::Shelf::Own];
    if user.partner.is_none() {
        shelves.push(library::Shelf::Received);
    }
    let mut out = Vec::new();
    for shelf in shelves {
        let (items, _) = library::page(&read, me, user, shelf, None, 30)?;
        for i in items.into_iter().filter(|i| !i.withdrawn) {
            out.push((library::place(&i.key, &i.subject), i.resource.title));
        }
    }
    Ok(out)
}

/// The resources a form cites (its `resource` field, a library place), as
/// subjects, each one the user may see; the refusal names the field.
fn cited_in(
    node: &Node,
    user: &User,
    f: &Fields,
) -> Result<Result<Vec<String>, Refusal>, WebError> {
    let place = field(f, "resource");
    if place.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let me = &node.identity.id;
    let refused = || {
        Ok(Err(Refusal {
            code: guanxi_protocol::ReasonCode::BadBody,
            message: "resource: there is no such resource in your library".into(),
        }))
    };
    let Some(subject) = library::subject_at(me, place) else {
        return refused();
    };
    match library::cited(&node.store.read()?, me, user, &subject)? {
        Some(_) => Ok(Ok(vec![subject])),
        None => refused(),
    }
}

/// The cited resources of an event for the reader: (its library page or
/// empty when the reader may not see it, its title or subject).
fn cited_for(
    node: &Node,
    user: &User,
    subjects: &[guanxi_protocol::RecordId],
) -> Vec<(String, String)> {
    let Ok(read) = node.store.read() else {
        return Vec::new();
    };
    subjects
        .iter()
        .map(
            |s| match library::cited(&read, &node.identity.id, user, s.as_str()) {
                Ok(Some(item)) => (item.link(), item.resource.title),
                _ => (String::new(), s.to_string()),
            },
        )
        .collect()
}

async fn requests(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, m: Member) -> Page {
    let user = &m.user;
    let now = now_ms();
    let direction = q.direction();
    let (who, me, cursor) = (user.clone(), node.identity.id.clone(), q.cursor());
    let staff = user.role != Role::Partner;
    let read = node
        .reading(move |r| {
            let (list, next) =
                service::requests_page(r, &who, &me, now, direction, cursor.as_ref(), LIST_PAGE)?;
            let metrics = if staff && direction == Direction::Received {
                service::metrics(r, &who, now, None, None)?
            } else {
                Vec::new()
            };
            Ok((list, next, metrics))
        })
        .await;
    let (mut views, next, metrics) = read?;
    // Most urgent first on the page (overdue, then by the time left;
    // stopped clocks last).
    views.sort_by_key(|v| (v.clock.remaining.is_none(), v.clock.remaining.unwrap_or(0)));
    let rows: Vec<RequestRow> = views.iter().map(|v| request_row(m.loc(), v, now)).collect();
    let loc = m.loc();
    let metrics = metrics
        .into_iter()
        .map(|x| {
            (
                x.partner,
                x.requests,
                x.median_first_response_ms
                    .map(|ms| span(loc, ms))
                    .unwrap_or_default(),
                x.median_resolution_ms
                    .map(|ms| span(loc, ms))
                    .unwrap_or_default(),
                x.first_response_breaches,
                x.resolution_breaches,
            )
        })
        .collect();
    let page = RequestsPage {
        f: m.frame(),
        path: "/service",
        placed: staff && direction == Direction::Placed,
        next: next_link("/service", direction, next),
        breaches: rows.iter().filter(|r| r.breached).count(),
        rows,
        vendors: vendors_for(&node, user),
        metrics,
        citable: citable(&node, user)?,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

fn customer(f: &Fields) -> Value {
    json!({"company": field(f, "company"), "contact": field(f, "contact"), "email": field(f, "email"), "phone": field(f, "phone")})
}

async fn open_request(State(node): State<Arc<Node>>, m: Member, Posted(f, files): Posted) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let user = &m.user;
    let attachments = match attach(&node, user, files).await? {
        Ok(a) => a,
        Err(r) => return Ok(m.refused(&r, "/service".into())),
    };
    let resources = match cited_in(&node, user, &f)? {
        Ok(r) => r,
        Err(r) => return Ok(m.refused(&r, "/service".into())),
    };
    let serial = field(&f, "serial");
    let body = json!({"customer": customer(&f), "sku": field(&f, "sku"), "serial": if serial.is_empty() { Value::Null } else { json!(serial) },
        "problem": field(&f, "problem"), "priority": field(&f, "priority"), "attachments": attachments, "resources": resources});
    let message = match decode_message("service.open", &body) {
        Ok(message) => message,
        Err(r) => return Ok(m.refused(&r, "/service".into())),
    };
    match service::open(&node, user, field(&f, "vendor"), message).await {
        Ok(Ok((key, subject))) => Ok(redirect_with_flash(
            &format!("/service/{key}/{subject}"),
            "service.opened_flash",
        )),
        Ok(Err(r)) => Ok(m.refused(&r, "/service".into())),
        Err(e) => Err(e.into()),
    }
}

pub struct EventRow {
    pub at: String,
    pub by: String,
    pub status: &'static str,
    pub comment: String,
    pub files: Vec<(String, String)>,
    /// Cited library resources: (page or empty, title).
    pub resources: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "service_request.html")]
struct RequestPage {
    f: Frame,
    /// This node's updates the vendor has not confirmed yet.
    pending: usize,
    action: String,
    row: RequestRow,
    view: RequestView,
    events: Vec<EventRow>,
    first_response_due: String,
    resolution_due: String,
    as_vendor: bool,
    citable: Vec<(String, String)>,
}

async fn request_page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let loc = m.loc();
    let user = &m.user;
    let now = now_ms();
    let Some(view) = node
        .store
        .read()
        .and_then(|r| service::request(&r, user, &node.identity.id, &key, &subject, now))?
    else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let events = view
        .request
        .events
        .iter()
        .map(|e| EventRow {
            at: loc.when(e.at),
            by: e.by.to_string(),
            status: e.status.as_str(),
            comment: e.comment.clone(),
            files: e
                .attachments
                .iter()
                .map(|a| (format!("/files/{}", a.sha256), a.name.clone()))
                .collect(),
            resources: cited_for(&node, user, &e.resources),
        })
        .collect();
    let page = RequestPage {
        citable: citable(&node, user)?,
        f: m.frame(),
        pending: super::pending_of(&node, &key, &subject),
        action: format!("/service/{key}/{subject}"),
        row: request_row(loc, &view, now),
        events,
        first_response_due: loc.when(view.clock.first_response_due),
        resolution_due: loc.when(view.clock.resolution_due),
        as_vendor: user.role != Role::Partner && view.request.vendor == node.identity.id,
        view,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn update_request(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Posted(f, files): Posted,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let user = &m.user;
    let back = format!("/service/{key}/{subject}");
    let attachments = match attach(&node, user, files).await? {
        Ok(a) => a,
        Err(r) => return Ok(m.refused(&r, back)),
    };
    let resources = match cited_in(&node, user, &f)? {
        Ok(r) => r,
        Err(r) => return Ok(m.refused(&r, back)),
    };
    let status = field(&f, "status");
    let body = json!({"status": if status.is_empty() { Value::Null } else { json!(status) }, "comment": field(&f, "comment"), "attachments": attachments, "resources": resources});
    let message = match decode_message("service.update", &body) {
        Ok(message) => message,
        Err(r) => return Ok(m.refused(&r, back)),
    };
    let flash = super::access::done_flash(message.kind());
    let result = service::act(&node, user, &key, &subject, message).await;
    m.outcome(result, back, flash)
}

// --------------------------------------------------------------- claims

pub struct ClaimRow {
    pub link: String,
    pub partner: String,
    pub vendor: String,
    pub sku: String,
    pub serial: String,
    pub status: &'static str,
    pub submitted: String,
    pub validity: String,
}

fn claim_row(
    loc: &Locale,
    node: &Node,
    user: &User,
    v: &ClaimView,
    validity: Option<&Validity>,
) -> ClaimRow {
    let _ = node;
    let _ = user;
    ClaimRow {
        link: format!("/claims/{}/{}", v.key, v.subject),
        partner: v.partner(),
        vendor: v.claim.vendor.to_string(),
        sku: v.claim.claim.sku.clone(),
        serial: v.claim.claim.serial.clone(),
        status: v.claim.status.as_str(),
        submitted: loc.when(v.claim.submitted_at),
        validity: validity.map(|x| x.status.to_string()).unwrap_or_default(),
    }
}

fn validity_of(node: &Node, user: &User, v: &ClaimView) -> Option<Validity> {
    validity_in(&node.store.read().ok()?, &node.identity.id, user, v)
}

/// The claim's validity, for the vendor's staff only.
fn validity_in(
    read: &guanxi_adapters::store::Read,
    me: &guanxi_protocol::NodeId,
    user: &User,
    v: &ClaimView,
) -> Option<Validity> {
    if user.role == Role::Partner || &v.claim.vendor != me {
        return None;
    }
    let day = crate::orders::day_of(v.claim.submitted_at)?;
    service::validity(read, &v.claim.claim, &day).ok()
}

#[derive(Template)]
#[template(path = "claims.html")]
struct ClaimsPage {
    f: Frame,
    path: &'static str,
    placed: bool,
    next: Option<String>,
    rows: Vec<ClaimRow>,
    vendors: Vec<String>,
}

async fn claims(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, m: Member) -> Page {
    let user = &m.user;
    let direction = q.direction();
    let (who, me, cursor) = (user.clone(), node.identity.id.clone(), q.cursor());
    let read = node
        .reading(move |r| {
            let (list, next) =
                service::claims_page(r, &who, &me, direction, cursor.as_ref(), LIST_PAGE)?;
            let validity: Vec<Option<Validity>> =
                list.iter().map(|v| validity_in(r, &me, &who, v)).collect();
            Ok((list, validity, next))
        })
        .await;
    let (list, validity, next) = read?;
    let rows = list
        .iter()
        .zip(validity)
        .map(|(v, validity)| claim_row(m.loc(), &node, user, v, validity.as_ref()))
        .collect();
    Ok(m.page(
        StatusCode::OK,
        ClaimsPage {
            f: m.frame(),
            path: "/claims",
            placed: user.role != Role::Partner && direction == Direction::Placed,
            next: next_link("/claims", direction, next),
            rows,
            vendors: vendors_for(&node, user),
        }
        .render(),
    ))
}

async fn file_claim(State(node): State<Arc<Node>>, m: Member, Posted(f, files): Posted) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let user = &m.user;
    let attachments = match attach(&node, user, files).await? {
        Ok(a) => a,
        Err(r) => return Ok(m.refused(&r, "/claims".into())),
    };
    let body = json!({"sku": field(&f, "sku"), "serial": field(&f, "serial"), "purchase_date": field(&f, "purchase_date"),
        "description": field(&f, "description"), "customer": customer(&f), "attachments": attachments, "forwarded": null});
    let message = match decode_message("warranty.claim", &body) {
        Ok(message) => message,
        Err(r) => return Ok(m.refused(&r, "/claims".into())),
    };
    match service::open(&node, user, field(&f, "vendor"), message).await {
        Ok(Ok((key, subject))) => Ok(redirect_with_flash(
            &format!("/claims/{key}/{subject}"),
            "claims.filed",
        )),
        Ok(Err(r)) => Ok(m.refused(&r, "/claims".into())),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "claim.html")]
struct ClaimPage {
    f: Frame,
    /// This node's amendments the vendor has not confirmed yet.
    pending: usize,
    action: String,
    row: ClaimRow,
    view: ClaimView,
    validity: Option<Validity>,
    history: Vec<(String, String, String, &'static str, String)>,
    files: Vec<(String, String)>,
    as_vendor: bool,
    upstreams: Vec<String>,
    forwarded: bool,
}

async fn claim_page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let loc = m.loc();
    let user = &m.user;
    let read = node.store.read()?;
    let found = service::claim(&read, user, &node.identity.id, &key, &subject)
        .ok()
        .flatten();
    let Some(view) = found else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let forwarded = service::forwards(&read)
        .unwrap_or_default()
        .iter()
        .any(|f| f.downstream_key == key && f.downstream_subject == subject);
    drop(read);
    let validity = validity_of(&node, user, &view);
    let as_vendor = user.role != Role::Partner && view.claim.vendor == node.identity.id;
    let page = ClaimPage {
        f: m.frame(),
        pending: super::pending_of(&node, &key, &subject),
        action: format!("/claims/{key}/{subject}"),
        row: claim_row(loc, &node, user, &view, validity.as_ref()),
        history: view
            .claim
            .history
            .iter()
            .map(|e| {
                (
                    loc.when(e.at),
                    e.by.to_string(),
                    e.kind.clone(),
                    e.status.as_str(),
                    e.note.clone(),
                )
            })
            .collect(),
        files: view
            .claim
            .claim
            .attachments
            .iter()
            .map(|a| (format!("/files/{}", a.sha256), a.name.clone()))
            .collect(),
        upstreams: if as_vendor {
            vendors_for(&node, user)
                .into_iter()
                .filter(|p| p != view.claim.partner.as_str())
                .collect()
        } else {
            Vec::new()
        },
        validity,
        as_vendor,
        forwarded,
        view,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn act_on_claim(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Posted(f, files): Posted,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let user = &m.user;
    let back = format!("/claims/{key}/{subject}");
    let (kind, body) = match field(&f, "action") {
        // The partner answers `need_info`: the claim again, as amended.
        "amend" => {
            let found = node
                .store
                .read()
                .and_then(|r| service::claim(&r, user, &node.identity.id, &key, &subject))?;
            let Some(view) = found else {
                return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
            };
            let mut claim = view.claim.claim;
            match attach(&node, user, files).await? {
                Ok(more) => claim.attachments.extend(more),
                Err(r) => return Ok(m.refused(&r, back)),
            }
            claim.serial = field(&f, "serial").to_string();
            claim.description = field(&f, "description").to_string();
            let mut body = serde_json::to_value(&claim).unwrap_or(Value::Null);
            // Checked with the rest of the message (a bad date names its field).
            body["purchase_date"] = json!(field(&f, "purchase_date"));
            ("warranty.claim", body)
        }
        "decide" => {
            let decision = field(&f, "decision");
            let credit = if decision == "credit" {
                match (
                    field(&f, "credit_currency").to_ascii_uppercase().parse(),
                    field(&f, "credit_amount"),
                ) {
                    (Ok(c), amount) => {
                        match guanxi_protocol::money::Money::parse_decimal(amount, c) {
                            Ok(credit) => {
                                json!({"amount": credit.amount, "currency": credit.currency})
                            }
                            Err(e) => {
                                return Ok(m.refused(
                                    &crate::service::Refusal {
                                        code: ReasonCode::BadBody,
                                        message: format!("credit: {e}"),
                                    },
                                    back,
                                ));
                            }
                        }
                    }
                    (Err(e), _) => {
                        return Ok(m.refused(
                            &crate::service::Refusal {
                                code: ReasonCode::BadBody,
                                message: format!("credit currency: {e}"),
                            },
                            back,
                        ));
                    }
                }
            } else {
                Value::Null
            };
            (
                "warranty.decision",
                json!({"decision": decision, "credit": credit, "note": field(&f, "note")}),
            )
        }
        "fulfil" => (
            "warranty.fulfil",
            json!({"reference": field(&f, "reference"), "note": field(&f, "note")}),
        ),
        "forward" => {
            let result = service::forward(&node, &key, &subject, field(&f, "upstream"))
                .await
                .map(|r| r.map(|_| ()));
            return m.outcome(result, back, "claims.forwarded");
        }
        other => {
            let r = crate::service::Refusal {
                code: ReasonCode::BadBody,
                message: format!("action {other:?}"),
            };
            return Ok(m.refused(&r, back));
        }
    };
    let message = match decode_message(kind, &body) {
        Ok(message) => message,
        Err(r) => return Ok(m.refused(&r, back)),
    };
    let flash = super::access::done_flash(message.kind());
    let result = service::act(&node, user, &key, &subject, message).await;
    m.outcome(result, back, flash)
}

async fn download(State(node): State<Arc<Node>>, Path(sha): Path<String>, m: Member) -> Page {
    let user = &m.user;
    let Some(meta) = node
        .store
        .read()
        .and_then(|r| service::attachment_for(&r, user, &node.identity.id, &sha))?
    else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let Some(bytes) = crate::attachments::load(&node.config().data_dir, &sha) else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    Ok(file_response(&meta.content_type, bytes))
}

/// A file download: its content type, as an attachment, never sniffed.
pub fn file_response(content_type: &str, bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// What the service part of the inbox shows: breached or overdue requests
/// and claims to decide (staff of the vendor).
pub fn inbox_items(
    read: &guanxi_adapters::store::Read,
    user: &User,
    _me: &guanxi_protocol::NodeId,
) -> Vec<super::format::InboxItem> {
    use super::format::linked;
    use crate::record_index::{self as index, SHOWN, Side};
    use guanxi_protocol::state::Record;
    if user.role == Role::Partner {
        // Claims the vendor asked this partner more about.
        let Some(org) = &user.partner else {
            return Vec::new();
        };
        let key = crate::records::web_key(org);
        let (found, more) = index::find(
            read,
            "warranty",
            Side::Own,
            "need_info",
            Some(&key),
            None,
            SHOWN,
        )
        .unwrap_or_default();
        let asked: Vec<(String, String)> = index::load(read, found)
            .into_iter()
            .filter_map(|(key, subject, r)| match r {
                Record::Warranty(c) => Some((
                    format!("{} {}", c.claim.sku, c.claim.serial),
                    format!("/claims/{key}/{subject}"),
                )),
                _ => None,
            })
            .collect();
        return if asked.is_empty() {
            Vec::new()
        } else {
            vec![linked("home.claims_need_info", asked, more)]
        };
    }
    let now = now_ms();
    let mut items = Vec::new();
    // Late requests, from the index of running clocks by deadline: only
    // the late ones are read.
    let targets = service::targets(read).unwrap_or_default();
    let (found, more) = service::overdue::late(read, &targets, now, SHOWN).unwrap_or_default();
    let late: Vec<(String, String)> = index::load(read, found)
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Service(request) => {
                let partner = key
                    .strip_prefix("web:")
                    .map_or_else(|| request.partner.to_string(), str::to_string);
                Some((
                    format!("{} ({partner})", request.request.customer.company),
                    format!("/service/{key}/{subject}"),
                ))
            }
            _ => None,
        })
        .collect();
    if !late.is_empty() {
        items.push(linked("home.service_breached", late, more));
    }
    let (found, more) = index::find(read, "warranty", Side::Own, "submitted", None, None, SHOWN)
        .unwrap_or_default();
    let to_decide: Vec<(String, String)> = index::load(read, found)
        .into_iter()
        .filter_map(|(key, subject, r)| match r {
            Record::Warranty(claim) => {
                let partner = key
                    .strip_prefix("web:")
                    .map_or_else(|| claim.partner.to_string(), str::to_string);
                Some((
                    format!("{} {} ({partner})", claim.claim.sku, claim.claim.serial),
                    format!("/claims/{key}/{subject}"),
                ))
            }
            _ => None,
        })
        .collect();
    if !to_decide.is_empty() {
        items.push(linked("home.claims_waiting", to_decide, more));
    }
    items
}
