//! The library, announcements and certifications in the JSON API, read as
//! the web view shows them: a partner user sees exactly what targets its
//! organization (and its own certifications); staff see everything this
//! node publishes, received resources and announcements, and every
//! certification kept here. A course is shown without its answer key.

use super::{ApiError, ApiUser, internal, not_found, page_json, page_limit, read_json};
use crate::library::{self, Shelf, files};
use crate::node::Node;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guanxi_protocol::Millis;
use guanxi_protocol::messages::{AnnouncementPost, ResourcePublish};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `?q=&shelf=&after=&limit=` of the library and announcement lists.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    shelf: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

impl ListQuery {
    /// Staff choose `own` (the default) or `received`.
    fn received(&self) -> Result<bool, ApiError> {
        match self.shelf.as_deref() {
            None | Some("own") => Ok(false),
            Some("received") => Ok(true),
            Some(_) => Err(super::bad_field("shelf", "shelf: own or received".into())),
        }
    }
}

/// A resource as the API shows it.
#[derive(Serialize)]
struct ResourceOut<'a> {
    key: &'a str,
    subject: &'a str,
    publisher: &'a str,
    updated_at: Millis,
    withdrawn: bool,
    resource: &'a ResourcePublish,
}

fn resource_out(i: &library::Item) -> ResourceOut<'_> {
    ResourceOut {
        key: &i.key,
        subject: &i.subject,
        publisher: &i.publisher,
        updated_at: i.updated_at,
        withdrawn: i.withdrawn,
        resource: &i.resource,
    }
}

/// `GET /api/v1/library`: one page of the library, newest first, or the
/// resources matching `q` (every word).
pub async fn list(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let shelf = if q.received()? && user.partner.is_none() {
        Shelf::Received
    } else {
        Shelf::Own
    };
    let me = node.identity.id.clone();
    read_json(&node, move |r| {
        let (items, next) = match q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(words) => (library::search(r, &me, &user, words, limit)?, None),
            None => library::page(r, &me, &user, shelf, q.after.as_deref(), limit)?,
        };
        let out: Vec<ResourceOut<'_>> = items.iter().map(resource_out).collect();
        page_json("resources", &out, next)
    })
    .await
}

/// `GET /api/v1/library/{key}/{subject}`: one resource (`key` is `own` or
/// the peer it came from).
pub async fn one(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((key, subject)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let me = node.identity.id.clone();
    let found = node
        .reading(move |r| library::item(r, &me, &user, &key, &subject))
        .await
        .map_err(internal)?;
    let item = found.ok_or_else(not_found)?;
    let bytes = serde_json::to_vec(&resource_out(&item)).map_err(internal)?;
    Ok(super::json_bytes(bytes))
}

/// `GET /api/v1/library/{key}/{subject}/file/{sha256}`: a resource's file
/// (`Range` answered with 206).
pub async fn file(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((key, subject, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let me = node.identity.id.clone();
    let h = sha.clone();
    let found = node
        .reading(move |r| library::downloadable(r, &me, &user, &key, &subject, &h))
        .await
        .map_err(internal)?;
    let attachment = found.ok_or_else(not_found)?;
    let path = files::path(&node.config().data_dir, &sha)
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_record",
                "the file is still being fetched from its publisher",
            )
        })?;
    Ok(
        files::serve(path, &attachment.content_type, &attachment.name, &headers)
            .await
            .into_response(),
    )
}

/// An announcement as the API shows it (with the reader's copy, when it
/// has one).
#[derive(Serialize)]
struct AnnouncementOut<'a> {
    key: &'a str,
    subject: &'a str,
    publisher: &'a str,
    posted_at: Millis,
    status: &'static str,
    post: &'a AnnouncementPost,
}

/// `GET /api/v1/announcements`: one page, newest first (staff: `shelf`
/// own or received).
pub async fn announcements(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let shelf = if q.received()? && user.partner.is_none() {
        crate::announcements::Shelf::Received
    } else {
        crate::announcements::Shelf::Own
    };
    let me = node.identity.id.clone();
    read_json(&node, move |r| {
        let (items, next) =
            crate::announcements::page(r, &me, &user, shelf, q.after.as_deref(), limit)?;
        let out: Vec<AnnouncementOut<'_>> = items
            .iter()
            .map(|i| AnnouncementOut {
                key: &i.key,
                subject: &i.subject,
                publisher: &i.publisher,
                posted_at: i.posted_at,
                status: i.status(),
                post: &i.post,
            })
            .collect();
        page_json("announcements", &out, next)
    })
    .await
}

/// A certification in a list: its fields and where the document is.
#[derive(Serialize)]
struct CertificationOut<'a> {
    fields: &'a guanxi_protocol::certification::CertificationFields,
    document: String,
}

/// `GET /api/v1/certifications`: staff every certification kept here
/// (issued and received), a partner user its organization's; newest first.
pub async fn certifications(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    read_json(&node, move |r| {
        let (certs, next) =
            crate::courses::page(r, user.partner.as_deref(), q.after.as_deref(), limit)?;
        let out: Vec<CertificationOut<'_>> = certs
            .iter()
            .map(|c| CertificationOut {
                fields: &c.fields,
                document: format!("/api/v1/certifications/{}", c.fields.id),
            })
            .collect();
        page_json("certifications", &out, next)
    })
    .await
}

/// `GET /api/v1/certifications/{id}`: the signed certification document,
/// byte for byte (verify it with `guanxi cert verify`).
pub async fn certification(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let found = node
        .reading(move |r| crate::courses::certification(r, &id))
        .await
        .map_err(internal)?;
    let kept = found
        .filter(|k| crate::courses::may_see(&user, k))
        .ok_or_else(not_found)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], kept.document).into_response())
}
