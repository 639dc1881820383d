//! Indirect ordering: the vendor's catalog and price lists, publishing them
//! to connected partners, placing orders (from a partner's own daemon or as a
//! web user of the vendor's), the vendor's check of incoming orders against
//! the price list in force, order actions (acknowledge, ship, invoice,
//! cancel), the queues, and revenue per partner.
//!
//! Orders are shared records of the protocol's order state machine: between
//! two daemons (subject `ord-<uuid>`, messages over federation), or kept under
//! `web:<partner id>` for a partner without a daemon. Prices come from price
//! lists; totals follow `guanxi_protocol::pricing` (SPEC §13) on both sides.

pub mod intake;
pub mod revenue;

use crate::accounts::{Role, User};
use crate::engine::{Act, EngineError, decode_message};
use crate::node::Node;
use crate::records::web_key;
use guanxi_adapters::store::{Doc, Read, StoreError, Tables};
use guanxi_protocol::messages::{Address, CatalogPublish, Message, PriceList, Product};
use guanxi_protocol::money::Date;
use guanxi_protocol::pricing::{self, LineProblem};
use guanxi_protocol::state::{Context, Order, OrderStatus, Record, StateError};
use guanxi_protocol::{Millis, NodeId, ReasonCode, RecordId};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Settings key of the vendor's own catalog.
const CATALOG_KEY: &str = "catalog";

/// A refused order action, with the reason code every channel reports.
pub type Refusal = StateError;

fn refuse(code: ReasonCode, message: impl Into<String>) -> Refusal {
    StateError {
        code,
        message: message.into(),
    }
}

/// The subject of vendor `vendor`'s catalog record between two nodes.
pub fn catalog_subject(vendor: &NodeId) -> String {
    format!("catalog.{vendor}")
}

/// The UTC calendar day of a time.
pub fn day_of(at: Millis) -> Option<Date> {
    jiff::Timestamp::from_millisecond(at)
        .ok()?
        .strftime("%Y-%m-%d")
        .to_string()
        .parse()
        .ok()
}

// ------------------------------------------------------------- catalog

/// The vendor's own catalog (every price list), if one was saved.
pub fn own_catalog(read: &Read) -> Result<Option<CatalogPublish>, StoreError> {
    Ok(read
        .doc(Doc::Setting, CATALOG_KEY)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn own_catalog_in(t: &Tables<'_>) -> Result<Option<CatalogPublish>, EngineError> {
    Ok(t.doc(Doc::Setting, CATALOG_KEY)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The catalog as a partner of `tier` sees it: every product, only the price
/// lists of its tier (case-insensitive).
pub fn for_tier(catalog: &CatalogPublish, tier: &str) -> CatalogPublish {
    CatalogPublish {
        version: catalog.version,
        products: catalog.products.clone(),
        price_lists: catalog
            .price_lists
            .iter()
            .filter(|l| l.tier.trim().eq_ignore_ascii_case(tier.trim()))
            .cloned()
            .collect(),
    }
}

/// What a publication did for one partner.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub partner: String,
    pub peer: String,
    /// `None` when queued; the refusal otherwise (e.g. too large).
    pub refused: Option<String>,
}

/// Publishes `catalog` to every directory partner with an enabled peer,
/// each with the price lists of its tier.
fn publish_all(
    a: &mut Act<'_, '_>,
    catalog: &CatalogPublish,
    peers: &[String],
) -> Result<Vec<Published>, EngineError> {
    let subject: RecordId = catalog_subject(a.me())
        .parse()
        .map_err(|e| EngineError::Corrupt(format!("catalog subject: {e}")))?;
    let mut out = Vec::new();
    for p in crate::directory::all_in(a.tables)? {
        let Some(peer) = p.peer.clone().filter(|peer| peers.contains(peer)) else {
            continue;
        };
        let Ok(node) = peer.parse::<NodeId>() else {
            continue;
        };
        let message = Message::CatalogPublish(for_tier(catalog, &p.tier));
        let refused = a
            .send(&node, &subject, &message)?
            .err()
            .map(|e| e.to_string());
        out.push(Published {
            partner: p.id.clone(),
            peer,
            refused,
        });
    }
    Ok(out)
}

/// Replaces the vendor's catalog (the version increases) and publishes it to
/// connected partners, in one transaction. Bad content is refused whole,
/// naming the field.
pub async fn save_catalog(
    node: &Node,
    products: Vec<Product>,
    price_lists: Vec<PriceList>,
) -> Result<Result<(i64, Vec<Published>), Refusal>, EngineError> {
    let peers = node.enabled_peers();
    node.engine
        .act(move |a| {
            let version = own_catalog_in(a.tables)?.map_or(0, |c| c.version) + 1;
            let catalog = CatalogPublish {
                version,
                products: products.clone(),
                price_lists: price_lists.clone(),
            };
            let body =
                serde_json::to_value(&catalog).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            if let Err(refused) = decode_message("catalog.publish", &body) {
                return Ok(Err(refused));
            }
            let json =
                serde_json::to_vec(&catalog).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            a.tables.put_doc(Doc::Setting, CATALOG_KEY, &json)?;
            let published = publish_all(a, &catalog, &peers)?;
            Ok(Ok((version, published)))
        })
        .await
}

/// Publishes the current catalog again (a new version, same content): after
/// a partner was connected or changed tier.
pub async fn republish(node: &Node) -> Result<Result<(i64, Vec<Published>), Refusal>, EngineError> {
    let current = own_catalog(&node.store.read()?)?;
    match current {
        Some(c) => save_catalog(node, c.products, c.price_lists).await,
        None => Ok(Err(refuse(
            ReasonCode::UnknownRecord,
            "there is no catalog to publish yet",
        ))),
    }
}

/// Catalogs published to this node by vendors it is connected to:
/// (vendor, catalog).
pub fn received_catalogs(
    read: &Read,
    me: &NodeId,
) -> Result<Vec<(NodeId, CatalogPublish)>, StoreError> {
    // Through the index of catalogs other vendors keep: one per vendor.
    let places = crate::record_index::every(read, "catalog", crate::record_index::Side::Peer)?;
    let mut out = Vec::new();
    for (key, _, record) in crate::record_index::load(read, places) {
        if let Record::Catalog(c) = record
            && &c.partner == me
            && !key.starts_with("web:")
        {
            out.push((c.vendor, c.catalog));
        }
    }
    Ok(out)
}

// ------------------------------------------------- the vendor's order check

/// The vendor's check of an incoming `order.place` (the engine's inbound
/// rule): the lines must match the price list in force for the ordering
/// peer's tier on the envelope's day.
pub fn inbound_rule(
    t: &Tables<'_>,
    ctx: &Context,
    message: &Message,
) -> Result<Result<(), StateError>, EngineError> {
    let Message::OrderPlace(place) = message else {
        return Ok(Ok(()));
    };
    let partner = crate::directory::all_in(t)?
        .into_iter()
        .find(|p| p.peer.as_deref() == Some(ctx.from.as_str()));
    let catalog = own_catalog_in(t)?.unwrap_or(CatalogPublish {
        version: 0,
        products: Vec::new(),
        price_lists: Vec::new(),
    });
    let Some(partner) = partner else {
        return Ok(Err(refuse(
            ReasonCode::InvalidLines,
            format!(
                "{} is not a partner in the vendor's directory, so no price list applies",
                ctx.from
            ),
        )));
    };
    let Some(day) = day_of(ctx.at) else {
        return Ok(Err(refuse(
            ReasonCode::BadBody,
            "created is not a valid time",
        )));
    };
    let problems = pricing::check_order(&for_tier(&catalog, &partner.tier), place, &day);
    if problems.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(refuse(
            ReasonCode::InvalidLines,
            pricing::describe(&problems),
        )))
    }
}

// ------------------------------------------------------------ placing

/// Where the user orders from vendor `vendor`: the record key, who sends,
/// and the catalog the user may order from.
pub struct Shop {
    pub vendor: NodeId,
    pub key: String,
    pub catalog: CatalogPublish,
}

/// The shop of `vendor` for `user`, if the user may order there: a partner
/// user orders from this node with its organization's tier; staff order from
/// an enabled peer that published a catalog.
pub fn shop_for(
    node: &Node,
    read: &Read,
    user: &User,
    vendor: &str,
) -> Result<Option<Shop>, StoreError> {
    let me = &node.identity.id;
    match (&user.role, &user.partner) {
        (Role::Partner, Some(org)) if vendor == me.as_str() => {
            let Some(partner) = crate::directory::load(read, org)? else {
                return Ok(None);
            };
            let Some(catalog) = own_catalog(read)? else {
                return Ok(None);
            };
            Ok(Some(Shop {
                vendor: me.clone(),
                key: web_key(org),
                catalog: for_tier(&catalog, &partner.tier),
            }))
        }
        (Role::Partner, _) => Ok(None),
        _ => {
            if vendor == me.as_str() || !node.enabled_peers().iter().any(|p| p == vendor) {
                return Ok(None);
            }
            Ok(received_catalogs(read, me)?
                .into_iter()
                .find(|(v, _)| v.as_str() == vendor)
                .map(|(v, catalog)| Shop {
                    key: v.to_string(),
                    vendor: v,
                    catalog,
                }))
        }
    }
}

/// The vendors the user can order from, with their catalogs.
pub fn shops(node: &Node, read: &Read, user: &User) -> Result<Vec<Shop>, StoreError> {
    let mut vendors: Vec<String> = match user.role {
        Role::Partner => vec![node.identity.id.to_string()],
        _ => received_catalogs(read, &node.identity.id)?
            .into_iter()
            .map(|(v, _)| v.to_string())
            .collect(),
    };
    vendors.sort();
    let mut out = Vec::new();
    for v in vendors {
        if let Some(shop) = shop_for(node, read, user, &v)? {
            out.push(shop);
        }
    }
    Ok(out)
}

/// One line as the buyer gives it; the price is taken from the list in
/// force when not given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub line: u32,
    pub sku: String,
    pub quantity: i64,
    #[serde(deserialize_with = "guanxi_protocol::canonical::required_nullable")]
    pub unit_price: Option<i64>,
}

/// An order as the buyer gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub vendor: String,
    pub reference: String,
    pub currency: String,
    pub lines: Vec<LineRequest>,
    #[serde(deserialize_with = "guanxi_protocol::canonical::required_nullable")]
    pub requested_date: Option<String>,
    pub ship_to: Address,
    #[serde(deserialize_with = "guanxi_protocol::canonical::required_nullable")]
    pub lead: Option<String>,
}

/// Why an order was not placed.
#[derive(Debug, Clone)]
pub enum PlaceError {
    /// Not allowed, or a field is wrong.
    Refused(Refusal),
    /// Lines that do not match the price list in force (line 0: the order).
    Lines(Vec<LineProblem>),
}

impl PlaceError {
    /// The reason code and one message, for any channel.
    pub fn refusal(&self) -> Refusal {
        match self {
            PlaceError::Refused(r) => r.clone(),
            PlaceError::Lines(p) => refuse(ReasonCode::InvalidLines, pricing::describe(p)),
        }
    }
}

/// Every problem of the lines against the shop's catalog on `day`, in one
/// round: quantities, and each line's SKU and price against the price list
/// in force for the currency (line 0: no such list). Empty when all are
/// right.
pub fn line_problems(
    shop: &Shop,
    currency: &str,
    lines: &[LineRequest],
    day: &Date,
) -> Vec<LineProblem> {
    let currency = currency.trim().to_ascii_uppercase();
    let list = currency
        .parse()
        .ok()
        .and_then(|c| pricing::in_force(&shop.catalog.price_lists, &c, day));
    let mut problems = Vec::new();
    if list.is_none() {
        problems.push(LineProblem {
            line: 0,
            code: "no_price_list".into(),
            message: format!("no price list in {currency:?} is in force on {day}"),
        });
    }
    for l in lines {
        if l.quantity <= 0 {
            problems.push(LineProblem {
                line: l.line,
                code: "quantity".into(),
                message: format!(
                    "line {}: quantity must be greater than 0, not {}",
                    l.line, l.quantity
                ),
            });
        } else if let Some(list) = list {
            problems.extend(pricing::check_line(
                &shop.catalog,
                list,
                l.line,
                l.sku.trim(),
                l.unit_price,
            ));
        }
    }
    problems
}

/// Checks the order against the shop's catalog and builds `order.place`.
pub fn build_order(shop: &Shop, req: &OrderRequest, day: &Date) -> Result<Message, PlaceError> {
    let problems = line_problems(shop, &req.currency, &req.lines, day);
    if !problems.is_empty() {
        return Err(PlaceError::Lines(problems));
    }
    let currency = req.currency.trim().to_ascii_uppercase();
    let list = currency
        .parse()
        .ok()
        .and_then(|c| pricing::in_force(&shop.catalog.price_lists, &c, day));
    let Some(list) = list else {
        return Err(PlaceError::Lines(line_problems(shop, &currency, &[], day)));
    };
    let lines: Vec<serde_json::Value> = req
        .lines
        .iter()
        .map(|l| {
            let listed = list
                .prices
                .iter()
                .find(|p| p.sku == l.sku)
                .map(|p| p.unit_price);
            json!({"line": l.line, "sku": l.sku.trim(), "quantity": l.quantity,
                   "unit_price": l.unit_price.or(listed).unwrap_or(0)})
        })
        .collect();
    let body = json!({
        "reference": req.reference.trim(), "currency": currency, "price_list": list.id,
        "discount_bp": list.discount_bp, "tax_rate_bp": list.tax_rate_bp, "lines": lines,
        "requested_date": req.requested_date.as_ref().map(|d| d.trim()).filter(|d| !d.is_empty()),
        "ship_to": req.ship_to, "lead": req.lead.as_ref().map(|d| d.trim()).filter(|d| !d.is_empty()),
    });
    let message = decode_message("order.place", &body).map_err(PlaceError::Refused)?;
    let Message::OrderPlace(place) = &message else {
        return Err(PlaceError::Refused(refuse(
            ReasonCode::BadBody,
            "not an order",
        )));
    };
    let problems = pricing::check_order(&shop.catalog, place, day);
    if problems.is_empty() {
        Ok(message)
    } else {
        Err(PlaceError::Lines(problems))
    }
}

/// Places an order with `req.vendor` for the user. Returns the order's key
/// and subject.
pub async fn place(
    node: &Node,
    user: &User,
    req: OrderRequest,
) -> Result<Result<(String, String), PlaceError>, EngineError> {
    let read = node.store.read()?;
    let Some(shop) = shop_for(node, &read, user, req.vendor.trim())? else {
        return Ok(Err(PlaceError::Refused(refuse(
            ReasonCode::NotAllowed,
            format!(
                "you cannot order from {:?}: no catalog was published to you",
                req.vendor
            ),
        ))));
    };
    drop(read);
    let Some(day) = day_of(crate::clock::now_ms()) else {
        return Err(EngineError::Failed("the clock is out of range".into()));
    };
    let message = match build_order(&shop, &req, &day) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let subject = format!("ord-{}", uuid::Uuid::now_v7().hyphenated());
    let sent = send_as(node, user, &shop.key, &subject, message).await?;
    Ok(sent
        .map(|()| (shop.key, subject))
        .map_err(PlaceError::Refused))
}

/// Sends `message` on the order record (`key`, `subject`) as the user's
/// side: staff as this node (to the peer, or to a web partner), a partner
/// user as its organization.
pub(crate) async fn send_as(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    message: Message,
) -> Result<Result<(), Refusal>, EngineError> {
    let me = node.identity.id.clone();
    let web_org = key.strip_prefix("web:").map(str::to_string);
    match (&user.role, &user.partner, web_org) {
        (Role::Partner, Some(org), Some(key_org)) if *org == key_org => {
            let Ok(from) = org.parse::<NodeId>() else {
                return Ok(Err(refuse(ReasonCode::NotAllowed, "organization id")));
            };
            let (key, subject) = (key.to_string(), subject.to_string());
            node.engine
                .act(move |a| {
                    Ok(a.apply_local(&key, &subject, &from, &me, &message)?
                        .map(|_| ()))
                })
                .await
        }
        (Role::Partner, _, _) => Ok(Err(refuse(ReasonCode::UnknownRecord, "no such order"))),
        (_, _, Some(org)) => {
            let Ok(to) = org.parse::<NodeId>() else {
                return Ok(Err(refuse(ReasonCode::UnknownRecord, "no such order")));
            };
            let (key, subject) = (key.to_string(), subject.to_string());
            node.engine
                .act(move |a| {
                    Ok(a.apply_local(&key, &subject, &me, &to, &message)?
                        .map(|_| ()))
                })
                .await
        }
        (_, _, None) => node.send_to_peer(key, subject, message).await,
    }
}

// ------------------------------------------------------------- orders

/// An order with where it is kept.
pub struct OrderView {
    pub key: String,
    pub subject: String,
    pub order: Order,
}

impl OrderView {
    /// The partner's name for people: its directory id for web partners,
    /// its node id otherwise.
    pub fn partner(&self) -> String {
        self.key
            .strip_prefix("web:")
            .map_or_else(|| self.order.partner.to_string(), str::to_string)
    }

    /// What the vendor has to do next, if anything.
    pub fn awaiting(&self) -> Option<&'static str> {
        let o = &self.order;
        let uninvoiced = o.lines.iter().any(|l| l.shipped > l.invoiced);
        match o.status {
            OrderStatus::Placed => Some("acknowledge"),
            OrderStatus::Acknowledged | OrderStatus::PartiallyShipped => Some("ship"),
            OrderStatus::Shipped if uninvoiced => Some("invoice"),
            _ => None,
        }
    }
}

fn visible(user: &User, me: &NodeId, key: &str, order: &Order) -> bool {
    crate::records::visible(user, me, key, &order.vendor, &order.partner)
}

/// One page of the orders the user may see, newest first: staff see the
/// orders this node received as vendor or (`Direction::Placed`) those it
/// placed with other vendors; a partner user its organization's.
pub fn page(
    read: &Read,
    user: &User,
    me: &NodeId,
    direction: crate::records::Direction,
    before: Option<&crate::record_index::Cursor>,
    limit: usize,
) -> Result<(Vec<OrderView>, Option<crate::record_index::Cursor>), StoreError> {
    let (records, next) = crate::records::page(read, user, "order", direction, before, limit)?;
    let list = records
        .into_iter()
        .filter_map(|(key, subject, record)| match record {
            Record::Order(order) if visible(user, me, &key, &order) => Some(OrderView {
                key,
                subject,
                order,
            }),
            _ => None,
        })
        .collect();
    Ok((list, next))
}

/// One order, if the user may see it.
pub fn one(
    read: &Read,
    user: &User,
    me: &NodeId,
    key: &str,
    subject: &str,
) -> Result<Option<OrderView>, StoreError> {
    Ok(match crate::records::read_one(read, key, subject)? {
        Some(Record::Order(order)) if visible(user, me, key, &order) => Some(OrderView {
            key: key.to_string(),
            subject: subject.to_string(),
            order,
        }),
        _ => None,
    })
}

/// Acknowledges, ships, invoices or cancels: `message` on the order, as the
/// user's side. The state machine decides who may send what.
pub async fn act_on(
    node: &Node,
    user: &User,
    key: &str,
    subject: &str,
    message: Message,
) -> Result<Result<(), Refusal>, EngineError> {
    if !matches!(
        message,
        Message::OrderAck(_)
            | Message::OrderShip(_)
            | Message::OrderInvoice(_)
            | Message::OrderCancel(_)
    ) {
        return Ok(Err(refuse(
            ReasonCode::NotAllowed,
            format!("{} is not an action on an order", message.kind()),
        )));
    }
    if one(&node.store.read()?, user, &node.identity.id, key, subject)?.is_none() {
        return Ok(Err(refuse(ReasonCode::UnknownRecord, "no such order")));
    }
    send_as(node, user, key, subject, message).await
}

pub use revenue::{Revenue, revenue};

/// Orders to this node that name one of `subjects` (a lead's offers) as the
/// lead they fulfil.
pub fn lead_orders(
    read: &Read,
    me: &NodeId,
    subjects: &[String],
) -> Result<Vec<OrderView>, StoreError> {
    // From the index of orders by the lead offer they name.
    let mut out = Vec::new();
    for offer in subjects {
        let places = crate::record_index::orders_for_offer(read, offer)?;
        for (key, subject, record) in crate::record_index::load(read, places) {
            if let Record::Order(order) = record
                && &order.vendor == me
            {
                out.push(OrderView {
                    key,
                    subject,
                    order,
                });
            }
        }
    }
    Ok(out)
}

/// The same, for people: (link, reference, status, committed total).
pub fn for_lead(
    read: &Read,
    me: &NodeId,
    subjects: &[String],
) -> Result<Vec<(String, String, &'static str, String)>, StoreError> {
    Ok(lead_orders(read, me, subjects)?
        .into_iter()
        .map(|v| {
            let total = v
                .order
                .committed_totals()
                .map(|t| {
                    guanxi_protocol::money::Money {
                        amount: t.total,
                        currency: v.order.currency.clone(),
                    }
                    .to_string()
                })
                .unwrap_or_default();
            (
                format!("/orders/{}/{}", v.key, v.subject),
                v.order.reference.clone(),
                v.order.status.as_str(),
                total,
            )
        })
        .collect())
}

/// The vendor's lead an order names, when the order came to this node:
/// its offer subjects are `<lead id>.<n>`.
pub fn lead_of(read: &Read, order: &Order) -> Option<String> {
    let subject = order.lead.as_ref()?.to_string();
    let (id, _) = subject.rsplit_once('.')?;
    crate::leads::load(read, id).ok()?.map(|d| d.id)
}
