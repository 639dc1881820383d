//! Surveys in the JSON API (SPEC §20): staff send one and read its
//! results; people list the surveys sent to them and answer, once each.

use super::{ApiError, ApiUser, internal, not_found, refusal};
use crate::node::Node;
use crate::record_index::{Scope, Side};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use guanxi_protocol::messages::{SurveyAnswerItem, SurveySend};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// `GET /api/v1/surveys`: the surveys this node sent (staff) and those the
/// reader has to answer, newest first (50 each), with whether it did.
pub async fn list(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, ApiError> {
    let page = node
        .reading(move |r| {
            let sent: Vec<Value> = if user.partner.is_none() {
                crate::surveys::own_page(r, None, 50)?
                    .0
                    .iter()
                    .map(|o| json!({"id": o.id, "survey": o.survey, "sent_to": o.sent_to, "created_at": o.created_at}))
                    .collect()
            } else {
                Vec::new()
            };
            let scope = match &user.partner {
                Some(org) => Scope::Key(crate::records::web_key(org)),
                None => Scope::Side(Side::Peer),
            };
            let salt = crate::surveys::salt_in(r)?;
            let (places, _) = crate::record_index::newest(r, "survey", &scope, None, 50)?;
            let received: Vec<Value> = crate::record_index::load(r, places)
                .into_iter()
                .filter_map(|(k, s, rec)| match rec {
                    guanxi_protocol::state::Record::Survey(x) => Some(json!({
                        "key": k, "subject": s, "surveyor": x.surveyor, "survey": x.survey,
                        "answered": crate::surveys::has_answered(&salt, &x, &s, &user),
                    })),
                    _ => None,
                })
                .collect();
            Ok(json!({"sent": sent, "received": received}))
        })
        .await
        .map_err(internal)?;
    Ok(Json(page))
}

/// A survey to send: the survey (SPEC §20 `survey.send`) and its target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSurvey {
    pub survey: SurveySend,
    pub target: crate::library::Target,
}

/// `POST /api/v1/surveys` (staff): sends a survey; 201 with its id and
/// where it went.
pub async fn send(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    super::staff(&user)?;
    let b: NewSurvey = super::strict_body(&bytes)?;
    let id = crate::surveys::send(&node, &user, b.survey, b.target)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    let found = node
        .reading(move |r| crate::surveys::own(r, &id))
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": found.id, "sent_to": found.sent_to})),
    )
        .into_response())
}

/// `GET /api/v1/surveys/own/{id}` (staff): the survey's results.
pub async fn results(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::staff(&user)?;
    let me = node.identity.id.clone();
    node.reading(move |r| {
        let Some(own) = crate::surveys::own(r, &id)? else {
            return Ok(None);
        };
        let results = crate::surveys::results(r, &me, &own)?;
        let trend = crate::surveys::trend(r, &me, &own.survey.series)?;
        Ok(Some(
            json!({"id": own.id, "survey": own.survey, "results": results, "trend": trend}),
        ))
    })
    .await
    .map_err(internal)?
    .map(Json)
    .ok_or_else(not_found)
}

/// One person's answers.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    pub answers: Vec<SurveyAnswerItem>,
}

/// `POST /api/v1/surveys/{key}/{subject}/answers`: the reader's answers
/// (a partner user for its organization; staff to a vendor's survey).
pub async fn answer(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((key, subject)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: Answers = super::strict_body(&bytes)?;
    crate::surveys::answer(&node, &user, &key, &subject, b.answers)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(Json(json!({"answered": true})))
}
