//! Web pages of announcements: the list (staff: this node's own, or those
//! received from vendors; a partner user: those that target its
//! organization), posting one (staff), and an announcement's page —
//! opening it marks it read, its button acknowledges it when asked; staff
//! see who read and acknowledged their own, and how long it took.

use super::access::{Member, Page, Staff};
use super::form::{Fields, field};
use super::{Frame, LIST_PAGE, redirect_with_flash};
use crate::announcements::{self, Item, Shelf};
use crate::library::Target;
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use guanxi_protocol::messages::AnnouncementPost;
use serde::Deserialize;
use std::sync::Arc;

/// The announcement routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/announcements", get(list))
        .route("/announcements/new", get(new_form).post(create))
        .route(
            "/announcements/{key}/{subject}",
            get(page).post(acknowledge),
        )
}

#[derive(Deserialize, Default)]
struct ListQuery {
    shelf: Option<String>,
    after: Option<String>,
}

/// An announcement as a list row.
pub struct Row {
    pub link: String,
    pub title: String,
    pub publisher: String,
    pub when: String,
    pub requires_ack: bool,
    /// The language of the text (marked up for readers and screen readers).
    pub language: String,
    /// `posted`, `read` or `acknowledged` for the reader.
    pub status: &'static str,
}

impl Row {
    fn of(m: &Member, item: &Item) -> Row {
        Row {
            link: item.link(),
            title: item.post.title.clone(),
            publisher: item.publisher.clone(),
            when: m.loc().when(item.posted_at),
            requires_ack: item.post.requires_ack,
            language: item.post.language.clone(),
            status: item.status(),
        }
    }

    /// The catalog key of the status.
    pub fn status_key(&self) -> String {
        format!("announcements.status_{}", self.status)
    }
}

#[derive(Template)]
#[template(path = "announcements.html")]
struct ListPage {
    f: Frame,
    received: bool,
    rows: Vec<Row>,
    next: Option<String>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, m: Member) -> Page {
    let shelf = match q.shelf.as_deref() {
        Some("received") if m.staff() => Shelf::Received,
        _ => Shelf::Own,
    };
    let (me, user) = (node.identity.id.clone(), m.user.clone());
    let (items, next) = node
        .reading(move |r| announcements::page(r, &me, &user, shelf, q.after.as_deref(), LIST_PAGE))
        .await?;
    let next = next.map(|n| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        if shelf == Shelf::Received {
            url.append_pair("shelf", "received");
        }
        url.append_pair("after", &n);
        format!("/announcements?{}", url.finish())
    });
    let page = ListPage {
        f: m.frame(),
        received: shelf == Shelf::Received,
        rows: items.iter().map(|i| Row::of(&m, i)).collect(),
        next,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// The values the form shows (the target fields are the library's).
#[derive(Default)]
pub struct FormValues {
    pub title: String,
    pub text: String,
    pub language: String,
    pub requires_ack: bool,
    pub everyone: bool,
    pub types: String,
    pub tiers: String,
    pub countries: String,
    pub partners: String,
}

#[derive(Template)]
#[template(path = "announcement_form.html")]
struct FormPage {
    f: Frame,
    v: FormValues,
}

async fn new_form(s: Staff) -> Page {
    let page = FormPage {
        f: s.frame(),
        v: FormValues {
            everyone: true,
            ..FormValues::default()
        },
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

async fn create(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let back = "/announcements/new".to_string();
    let target = match Target::parse(
        field(&f, "everyone") == "yes",
        field(&f, "types"),
        field(&f, "tiers"),
        field(&f, "countries"),
        field(&f, "partners"),
    ) {
        Ok(t) => t,
        Err(r) => return Ok(s.refused(&r, back)),
    };
    let post = AnnouncementPost {
        version: 1,
        title: field(&f, "title").to_string(),
        text: field(&f, "text").to_string(),
        language: field(&f, "language").to_string(),
        requires_ack: field(&f, "requires_ack") == "yes",
    };
    Ok(
        match announcements::post(&node, &s.user, post, target).await? {
            Ok(id) => redirect_with_flash(
                &format!("/announcements/own/{id}"),
                "done.announcement_posted",
            ),
            Err(r) => s.refused(&r, back),
        },
    )
}

/// Who read or acknowledged an own announcement, for people.
pub struct ReachedLine {
    pub who: String,
    pub read: String,
    pub acknowledged: String,
    pub by: String,
}

#[derive(Template)]
#[template(path = "announcement.html")]
struct ItemPage {
    f: Frame,
    action: String,
    row: Row,
    html: String,
    language: String,
    /// The reader's own read and acknowledgement times.
    read_at: String,
    acknowledged_at: String,
    /// The acknowledge button is shown.
    can_ack: bool,
    /// Staff looking at their own: who was reached, who not yet.
    own: bool,
    reached: Vec<ReachedLine>,
    waiting: Vec<String>,
}

async fn page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let item = announcements::open(&node, &m.user, &key, &subject, false).await?;
    let item = match item {
        Ok(i) => i,
        Err(_) => return Err(m.error(StatusCode::NOT_FOUND, "error.not_found")),
    };
    render(&node, &m, item).await
}

async fn render(node: &Node, m: &Member, item: Item) -> Page {
    let loc = m.loc();
    let own = m.staff() && item.key == "own";
    let (reached, waiting) = if own {
        let id = item.subject.clone();
        let (reached, doc) = node
            .reading(move |r| {
                Ok((
                    announcements::reached(r, &id, 1000)?,
                    announcements::own(r, &id)?,
                ))
            })
            .await?;
        let since = |at: Option<i64>| {
            at.map(|t| format!("{} (+{})", loc.when(t), loc.duration(t - item.posted_at)))
                .unwrap_or_default()
        };
        let waiting = doc
            .map(|d| d.sent_to)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !reached.iter().any(|(k, _)| k == p))
            .collect();
        let reached = reached
            .into_iter()
            .map(|(key, r)| ReachedLine {
                who: key.strip_prefix("web:").unwrap_or(&key).to_string(),
                read: since(r.read_at),
                acknowledged: since(r.acknowledged_at),
                by: r.by,
            })
            .collect();
        (reached, waiting)
    } else {
        (Vec::new(), Vec::new())
    };
    let seen = |s: &Option<guanxi_protocol::state::announcement::Seen>| {
        s.as_ref().map(|s| loc.when(s.at)).unwrap_or_default()
    };
    let record = item.record.as_ref();
    let page = ItemPage {
        f: m.frame(),
        action: item.link(),
        row: Row::of(m, &item),
        html: crate::library::markdown::to_html(&item.post.text),
        language: item.post.language.clone(),
        read_at: record.map(|r| seen(&r.read)).unwrap_or_default(),
        acknowledged_at: record.map(|r| seen(&r.acknowledged)).unwrap_or_default(),
        can_ack: !own && item.post.requires_ack && record.is_none_or(|r| r.acknowledged.is_none()),
        own,
        reached,
        waiting,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn acknowledge(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Form(f): Form<Fields>,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let back = format!("/announcements/{key}/{subject}");
    Ok(
        match announcements::open(&node, &m.user, &key, &subject, true).await? {
            Ok(_) => redirect_with_flash(&back, "done.announcement_acknowledged"),
            Err(r) => m.refused(&r, back),
        },
    )
}
