//! The ordering part of the JSON API: the vendor's catalog (read, replace,
//! publish), the catalogs a buyer can order from, orders (list, place, one,
//! act with protocol messages `{"kind", "body"}`) and revenue. A bad order
//! answers `invalid_lines` with every wrong line.

use super::{
    ApiError, MessageBody, PageQuery, internal, not_found, page_json, read_json, refusal,
    strict_body as body, with_unconfirmed,
};
use super::{ApiStaff, ApiUser};
use crate::node::Node;
use crate::orders::{self, OrderRequest, OrderView, PlaceError};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use guanxi_protocol::messages::{PriceList, Product};
use guanxi_protocol::pricing::Totals;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// An order as the API shows it: the shared record, where it is kept, what
/// the vendor has to do next, and its totals.
/// An order as the API shows it, serialized straight from the record.
#[derive(Serialize)]
pub struct OrderOut<'a> {
    key: &'a str,
    subject: &'a str,
    partner: String,
    awaiting: Option<&'static str>,
    status: &'static str,
    order: &'a guanxi_protocol::state::Order,
    totals: TotalsOut,
}

#[derive(Serialize)]
struct TotalsOut {
    ordered: Option<Totals>,
    committed: Option<Totals>,
    invoiced: Option<Totals>,
}

pub fn order_out(v: &OrderView) -> OrderOut<'_> {
    OrderOut {
        key: &v.key,
        subject: &v.subject,
        partner: v.partner(),
        awaiting: v.awaiting(),
        status: v.order.status.as_str(),
        order: &v.order,
        totals: TotalsOut {
            ordered: v.order.ordered_totals().ok(),
            committed: v.order.committed_totals().ok(),
            invoiced: v.order.invoiced_totals().ok(),
        },
    }
}

pub fn order_json(v: &OrderView) -> Value {
    serde_json::to_value(order_out(v)).unwrap_or(Value::Null)
}

pub async fn get_catalog(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
) -> Result<Json<Value>, ApiError> {
    let catalog = node
        .store
        .read()
        .and_then(|r| orders::own_catalog(&r))
        .map_err(internal)?;
    Ok(Json(json!({ "catalog": catalog })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogBody {
    products: Vec<Product>,
    price_lists: Vec<PriceList>,
}

fn published(result: (i64, Vec<orders::Published>)) -> Json<Value> {
    Json(json!({"version": result.0, "published": result.1}))
}

pub async fn put_catalog(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: CatalogBody = body(&bytes)?;
    let done = orders::save_catalog(&node, b.products, b.price_lists)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(published(done))
}

pub async fn publish(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
) -> Result<Json<Value>, ApiError> {
    let done = orders::republish(&node)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    Ok(published(done))
}

pub async fn catalogs(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, ApiError> {
    let read = node.store.read().map_err(internal)?;
    let shops = orders::shops(&node, &read, &user).map_err(internal)?;
    Ok(Json(json!({
        "catalogs": shops.iter().map(|s| json!({"vendor": s.vendor, "catalog": s.catalog})).collect::<Vec<_>>()
    })))
}

/// `GET /api/v1/orders?direction=&after=&limit=`: one page, newest first.
pub async fn list(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (direction, after, limit) = q.parts()?;
    let me = node.identity.id.clone();
    read_json(&node, move |r| {
        let (list, next) = orders::page(r, &user, &me, direction, after.as_ref(), limit)?;
        let out: Vec<OrderOut<'_>> = list.iter().map(order_out).collect();
        page_json("orders", &out, next.map(|c| c.text()))
    })
    .await
}

pub async fn place(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: OrderRequest = body(&bytes)?;
    match orders::place(&node, &user, req).await.map_err(internal)? {
        Ok((key, subject)) => {
            let read = node.store.read().map_err(internal)?;
            let view = orders::one(&read, &user, &node.identity.id, &key, &subject)
                .map_err(internal)?
                .ok_or_else(not_found)?;
            Ok((StatusCode::CREATED, Json(order_json(&view))).into_response())
        }
        Err(PlaceError::Lines(lines)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "code": "invalid_lines",
                "message": guanxi_protocol::pricing::describe(&lines),
                "lines": lines,
            })),
        )
            .into_response()),
        Err(PlaceError::Refused(r)) => Err(refusal(r)),
    }
}

pub async fn one(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((key, subject)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let read = node.store.read().map_err(internal)?;
    match orders::one(&read, &user, &node.identity.id, &key, &subject).map_err(internal)? {
        Some(v) => Ok(Json(with_unconfirmed(
            &node,
            &key,
            &subject,
            order_json(&v),
        ))),
        None => Err(not_found()),
    }
}

pub async fn act(
    State(node): State<Arc<Node>>,
    ApiUser(user): ApiUser,
    Path((key, subject)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: MessageBody = body(&bytes)?;
    let message = b.message()?;
    orders::act_on(&node, &user, &key, &subject, message)
        .await
        .map_err(internal)?
        .map_err(refusal)?;
    let read = node.store.read().map_err(internal)?;
    match orders::one(&read, &user, &node.identity.id, &key, &subject).map_err(internal)? {
        Some(v) => Ok(Json(with_unconfirmed(
            &node,
            &key,
            &subject,
            order_json(&v),
        ))),
        None => Err(not_found()),
    }
}

pub async fn revenue(
    State(node): State<Arc<Node>>,
    ApiStaff(_): ApiStaff,
) -> Result<Json<Value>, ApiError> {
    let read = node.store.read().map_err(internal)?;
    match orders::revenue(&read).map_err(internal)? {
        Ok(r) => Ok(Json(json!({ "revenue": r }))),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            e,
        )),
    }
}
