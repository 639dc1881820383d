//! Who may call a web handler, and how a handler answers.
//!
//! A handler takes [`Member`] (anyone signed in), [`Staff`] (the company's
//! own staff) or [`PartnerUser`] (a user of one partner organization) as an
//! argument. Each extracts the signed-in context or answers in the
//! handler's place: the login page for nobody, a 403 page in the user's
//! language for the wrong role, the password page while a one-time
//! password is in force. Handlers return [`Page`] and use `?` on store and
//! engine errors (a 503 page), on a wrong CSRF token ([`Member::csrf`]) and
//! on any early answer made with [`Member::error`].

use super::session::{self, Session};
use super::{Ctx, Frame, internal, redirect_with_flash};
use crate::accounts::{Role, User};
use crate::node::Node;
use askama::Template;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use guanxi_protocol::ReasonCode;
use std::sync::Arc;

/// What a handler answers instead of its page: already a whole response
/// (an error page in the user's language, a redirect, a 503).
pub(crate) struct WebError(Response);

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<Response> for WebError {
    fn from(r: Response) -> Self {
        WebError(r)
    }
}

impl From<guanxi_adapters::store::StoreError> for WebError {
    fn from(e: guanxi_adapters::store::StoreError) -> Self {
        WebError(internal(e))
    }
}

impl From<crate::accounts::AccountError> for WebError {
    fn from(e: crate::accounts::AccountError) -> Self {
        WebError(internal(e))
    }
}

impl From<tokio::task::JoinError> for WebError {
    fn from(e: tokio::task::JoinError) -> Self {
        WebError(internal(e))
    }
}

impl From<crate::engine::EngineError> for WebError {
    fn from(e: crate::engine::EngineError) -> Self {
        WebError(internal(e))
    }
}

/// A handler's answer.
pub(crate) type Page = Result<Response, WebError>;

/// Anyone signed in: the request's context, session and user.
pub(crate) struct Member {
    pub(super) ctx: Ctx,
    pub(super) session: Session,
    pub(super) user: User,
}

impl axum::extract::FromRequestParts<Arc<Node>> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, Response> {
        let ctx = super::signed_in(node, &parts.headers, &parts.uri).await?;
        let (session, user) = ctx.require().map(|(s, u, _)| (s.clone(), u.clone()))?;
        Ok(Member { ctx, session, user })
    }
}

impl Member {
    /// The company's own staff (not a partner user).
    pub fn staff(&self) -> bool {
        self.user.role != Role::Partner
    }

    /// The reader's language and time zone.
    pub fn loc(&self) -> &super::format::Locale {
        &self.ctx.loc
    }

    /// What every page shows around its content.
    pub fn frame(&self) -> Frame {
        self.ctx.frame(self.session.csrf.clone())
    }

    /// A rendered page with `status`.
    pub fn page(&self, status: StatusCode, body: Result<String, askama::Error>) -> Response {
        self.ctx.page(status, body)
    }

    /// An error page (message key `key`) to answer with.
    pub fn error(&self, status: StatusCode, key: &'static str) -> WebError {
        WebError(self.ctx.error(status, key))
    }

    /// The record a page is about, or the 404 page (it does not exist, or
    /// this user may not see it: both look the same).
    pub fn found<T>(&self, record: Option<T>) -> Result<T, WebError> {
        record.ok_or_else(|| self.error(StatusCode::NOT_FOUND, "error.not_found"))
    }

    /// Refuses a destructive action whose form's confirmation box (a
    /// `confirm` field of `yes`) was not ticked: nothing is undone on one
    /// click, and no JavaScript is needed.
    pub fn confirmed(&self, confirm: &str) -> Result<(), WebError> {
        if confirm == "yes" {
            Ok(())
        } else {
            Err(self.error(StatusCode::UNPROCESSABLE_ENTITY, "error.confirm"))
        }
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn csrf(&self, given: &str) -> Result<(), WebError> {
        if session::same(&self.session.csrf, given) {
            Ok(())
        } else {
            Err(self.error(StatusCode::FORBIDDEN, "error.csrf"))
        }
    }

    /// The page for an action the rules refused: the reason code and its
    /// explanation, with the HTTP status every channel uses for it.
    pub fn refused(&self, refusal: &Refusal, back: String) -> Response {
        self.page(
            status_of(refusal.code),
            RefusedPage {
                f: self.frame(),
                code: refusal.code.as_str(),
                message: refusal.message.clone(),
                back,
            }
            .render(),
        )
    }

    /// The answer to an action: back to `back` with `flash`, or the refusal.
    pub fn outcome(
        &self,
        result: Result<Result<(), Refusal>, crate::engine::EngineError>,
        back: String,
        flash: &str,
    ) -> Page {
        Ok(match result? {
            Ok(()) => redirect_with_flash(&back, flash),
            Err(r) => self.refused(&r, back),
        })
    }
}

/// The company's own staff (admins and staff).
pub(crate) struct Staff(pub Member);

impl std::ops::Deref for Staff {
    type Target = Member;
    fn deref(&self) -> &Member {
        &self.0
    }
}

impl axum::extract::FromRequestParts<Arc<Node>> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, Response> {
        let m = Member::from_request_parts(parts, node).await?;
        if m.staff() {
            Ok(Staff(m))
        } else {
            Err(m.ctx.error(StatusCode::FORBIDDEN, "error.forbidden"))
        }
    }
}

/// The flash message (catalog key) that says what an action of `kind`
/// did and who has been told, instead of a bare "done".
pub fn done_flash(kind: &str) -> &'static str {
    match kind {
        "order.ack" => "done.order_ack",
        "order.ship" => "done.order_ship",
        "order.invoice" => "done.order_invoice",
        "order.cancel" => "done.order_cancel",
        "service.update" => "done.service_update",
        "warranty.claim" => "done.claim_amended",
        "warranty.decision" => "done.claim_decision",
        "warranty.fulfil" => "done.claim_fulfil",
        "mdf.request" => "done.mdf_request",
        "mdf.decision" => "done.mdf_decision",
        "mdf.claim" => "done.mdf_claim",
        "mdf.claim_decision" => "done.mdf_claim_decision",
        "mdf.paid" => "done.mdf_paid",
        "mdf.budget" => "done.mdf_budget",
        _ => "orders.done",
    }
}

/// A refusal by the rules (the engine's, for every family).
pub(crate) type Refusal = guanxi_protocol::state::StateError;

#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage {
    f: Frame,
    code: &'static str,
    message: String,
    back: String,
}

/// The reason codes a person meets in the web view, said in words; the
/// rules' own detail follows in English (marked so), as signed receipts
/// carry it.
const REASONS: [&str; 11] = [
    "unknown_kind",
    "bad_body",
    "unknown_record",
    "record_exists",
    "illegal_transition",
    "not_allowed",
    "expired",
    "invalid_amount",
    "invalid_lines",
    "ledger_mismatch",
    "version_conflict",
];

impl RefusedPage {
    fn reason_key(&self) -> String {
        reason_key(self.code)
    }
}

/// The catalog key that says what a refusal with `code` means.
pub fn reason_key(code: &str) -> String {
    if REASONS.contains(&code) {
        format!("reason.{code}")
    } else {
        "reason.other".to_string()
    }
}

/// The HTTP status of a refused action (web and API alike).
pub fn status_of(code: ReasonCode) -> StatusCode {
    match code {
        ReasonCode::UnknownRecord => StatusCode::NOT_FOUND,
        ReasonCode::NotAllowed => StatusCode::FORBIDDEN,
        ReasonCode::BadBody | ReasonCode::InvalidAmount | ReasonCode::InvalidLines => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::CONFLICT,
    }
}
