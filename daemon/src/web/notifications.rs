//! The signed-in user's notifications: newest first, a page at a time,
//! each said in words with a link to its record. Opening the list marks
//! everything read (the unread count in the menu goes back to zero).

use super::access::{Member, Page};
use super::{Frame, LIST_PAGE};
use crate::node::Node;
use crate::notify;
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// The notification routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new().route("/notifications", get(list))
}

/// One notification as shown.
pub struct Row {
    pub when: String,
    pub title: String,
    pub label: String,
    pub link: String,
    pub new: bool,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    f: Frame,
    rows: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
struct After {
    after: Option<String>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<After>, m: Member) -> Page {
    let name = m.user.username.clone();
    let read = node.store.read()?;
    // A cursor is a key of this user's own list, or ignored.
    let cursor = q
        .after
        .filter(|c| c.starts_with(&format!("n\u{1f}{name}\u{1f}")));
    let (notices, next) = notify::page(&read, &name, cursor.as_deref(), LIST_PAGE)?;
    let seen = notify::last_seen(&read, &name)?;
    let config = node.config();
    let loc = m.loc();
    let rows = notices
        .iter()
        .map(|n| Row {
            when: loc.when(n.at),
            title: crate::mailer::title(&read, &config, loc, n),
            label: n.label.clone(),
            link: n.link.clone(),
            new: n.at > seen,
        })
        .collect();
    drop(read);
    if cursor.is_none() && m.frame().unread > 0 {
        let now = crate::clock::now_ms();
        node.engine
            .local(move |t| notify::mark_seen(t, &name, now).map_err(Into::into))
            .await?;
    }
    let next = next.map(|k| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        url.append_pair("after", &k);
        format!("/notifications?{}", url.finish())
    });
    Ok(m.page(
        StatusCode::OK,
        NotificationsPage {
            f: m.frame(),
            rows,
            next,
        }
        .render(),
    ))
}
