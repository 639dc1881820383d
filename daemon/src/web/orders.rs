//! Web pages for ordering: the vendor's catalog (products and price lists
//! from CSV, publication), the shops a buyer can order from with the order
//! form (lines as CSV), the order lists (the vendor's queue and the buyer's
//! orders) and the order page with the actions each side may take.

use super::access::{Member, Page, Staff};
use super::form::{Fields, field};
use super::format::Locale;
use super::i18n::Catalog;
use super::{Frame, LIST_PAGE, ListQuery, next_link, redirect_with_flash};
use crate::node::Node;
use crate::orders::{self, OrderRequest, OrderView, PlaceError, intake};
use crate::records::Direction;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use guanxi_protocol::ReasonCode;
use guanxi_protocol::messages::{Address, CatalogPublish, PriceList};
use guanxi_protocol::money::Currency;
use guanxi_protocol::pricing::{LineProblem, Totals};
use serde_json::{Value, json};
use std::sync::Arc;

/// The ordering routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/catalog", get(catalog_page))
        .route("/catalog/products", post(save_products))
        .route("/catalog/lists", post(save_list))
        .route("/catalog/lists/{id}/delete", post(delete_list))
        .route("/catalog/publish", post(publish))
        .route("/shop", get(shops))
        .route("/shop/{vendor}", get(shop_page).post(place))
        .route("/orders", get(list))
        .route("/orders/{key}/{subject}", get(order_page).post(act))
}

// ------------------------------------------------------------- catalog

pub struct ListView {
    pub list: PriceList,
    pub discount: String,
    pub tax: String,
    pub prices: Vec<(String, String)>,
}

fn list_view(loc: &Locale, list: &PriceList) -> ListView {
    ListView {
        discount: loc.percent_bp(list.discount_bp),
        tax: loc.percent_bp(list.tax_rate_bp),
        prices: list
            .prices
            .iter()
            .map(|p| (p.sku.clone(), loc.amount(p.unit_price, &list.currency)))
            .collect(),
        list: list.clone(),
    }
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    f: Frame,
    catalog: Option<CatalogPublish>,
    lists: Vec<ListView>,
    errors: Vec<String>,
    /// What was typed into the price-list form, shown again with its
    /// errors, each next to its field (field, message).
    typed: Fields,
    field_errors: Vec<(&'static str, String)>,
}

impl CatalogPage {
    fn typed(&self, name: &str) -> &str {
        field(&self.typed, name)
    }

    fn typed_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        match self.typed(name) {
            "" => default,
            v => v,
        }
    }

    fn errors_for(&self, name: &str) -> Vec<&str> {
        self.field_errors
            .iter()
            .filter(|(f, _)| *f == name)
            .map(|(_, e)| e.as_str())
            .collect()
    }
}

fn catalog_response(m: &Member, node: &Node, status: StatusCode, errors: Vec<String>) -> Page {
    list_form_response(m, node, status, errors, Fields::new(), Vec::new())
}

/// The catalog page with the price-list form as typed and its errors.
fn list_form_response(
    m: &Member,
    node: &Node,
    status: StatusCode,
    errors: Vec<String>,
    typed: Fields,
    field_errors: Vec<(&'static str, String)>,
) -> Page {
    let catalog = node.store.read().and_then(|r| orders::own_catalog(&r))?;
    let lists = catalog
        .as_ref()
        .map(|c| {
            c.price_lists
                .iter()
                .map(|l| list_view(m.loc(), l))
                .collect()
        })
        .unwrap_or_default();
    Ok(m.page(
        status,
        CatalogPage {
            f: m.frame(),
            catalog,
            lists,
            errors,
            typed,
            field_errors,
        }
        .render(),
    ))
}

async fn catalog_page(State(node): State<Arc<Node>>, s: Staff) -> Page {
    catalog_response(&s, &node, StatusCode::OK, Vec::new())
}

fn row_errors(t: &Catalog, errors: Vec<intake::RowError>) -> Vec<String> {
    errors
        .into_iter()
        .map(|e| t.row(e.row, e.key, &e.value))
        .collect()
}

/// Saves the catalog with `change` applied to the current one.
async fn change_catalog(node: &Node, m: &Member, change: impl FnOnce(&mut CatalogPublish)) -> Page {
    let mut next = node
        .store
        .read()
        .and_then(|r| orders::own_catalog(&r))?
        .unwrap_or(CatalogPublish {
            version: 0,
            products: Vec::new(),
            price_lists: Vec::new(),
        });
    change(&mut next);
    match orders::save_catalog(node, next.products, next.price_lists).await? {
        Ok(_) => Ok(redirect_with_flash("/catalog", "catalog.saved")),
        Err(r) => catalog_response(m, node, StatusCode::UNPROCESSABLE_ENTITY, vec![r.message]),
    }
}

async fn save_products(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    match intake::products(field(&f, "products")) {
        Ok(products) => change_catalog(&node, &s, |c| c.products = products).await,
        Err(errors) => catalog_response(
            &s,
            &node,
            StatusCode::UNPROCESSABLE_ENTITY,
            row_errors(s.frame().t, errors),
        ),
    }
}

/// `r`'s value, or `None` with its error noted against field `name`.
fn checked<T>(
    bad: &mut Vec<(&'static str, String)>,
    name: &'static str,
    r: Result<T, String>,
) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            bad.push((name, e));
            None
        }
    }
}

async fn save_list(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    // Every field is checked, and every problem shown next to its field,
    // in the reader's language.
    let t = s.frame().t;
    let mut bad: Vec<(&'static str, String)> = Vec::new();
    let id = checked(
        &mut bad,
        "id",
        Some(field(&f, "id"))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| t.get("error.required")),
    );
    let currency = checked(
        &mut bad,
        "currency",
        field(&f, "currency")
            .to_ascii_uppercase()
            .parse::<Currency>()
            .map_err(|_| t.get("error.currency_code")),
    );
    let valid_from = checked(
        &mut bad,
        "valid_from",
        field(&f, "valid_from")
            .parse()
            .map_err(|_: String| t.get("error.date")),
    );
    let valid_to = checked(
        &mut bad,
        "valid_to",
        match field(&f, "valid_to") {
            "" => Ok(None),
            to => to
                .parse()
                .map(Some)
                .map_err(|_: String| t.get("error.date")),
        },
    );
    let discount_bp = checked(
        &mut bad,
        "discount",
        intake::basis_points(field(&f, "discount")).map_err(|_| t.get("error.percent")),
    );
    let tax_rate_bp = checked(
        &mut bad,
        "tax",
        intake::basis_points(field(&f, "tax")).map_err(|_| t.get("error.percent")),
    );
    // Prices are read in the list's currency, or (while that is wrong) in
    // one with cents, so that their own mistakes show at once too.
    let fallback: Currency = "USD"
        .parse()
        .map_err(|e: String| crate::engine::EngineError::Failed(format!("currency USD: {e}")))?;
    let prices = match intake::prices(field(&f, "prices"), currency.as_ref().unwrap_or(&fallback)) {
        Ok(p) => Some(p),
        Err(rows) => {
            bad.extend(
                row_errors(s.frame().t, rows)
                    .into_iter()
                    .map(|e| ("prices", e)),
            );
            None
        }
    };
    if let (Some(from), Some(Some(to))) = (&valid_from, &valid_to)
        && to < from
    {
        bad.push(("valid_to", t.get("error.date_order")));
    }
    let (
        Some(id),
        Some(currency),
        Some(valid_from),
        Some(valid_to),
        Some(discount_bp),
        Some(tax_rate_bp),
        Some(prices),
        true,
    ) = (
        id,
        currency,
        valid_from,
        valid_to,
        discount_bp,
        tax_rate_bp,
        prices,
        bad.is_empty(),
    )
    else {
        return list_form_response(
            &s,
            &node,
            StatusCode::UNPROCESSABLE_ENTITY,
            Vec::new(),
            f,
            bad,
        );
    };
    let list = PriceList {
        id: id.to_string(),
        tier: field(&f, "tier").to_string(),
        currency,
        valid_from,
        valid_to,
        discount_bp,
        tax_rate_bp,
        prices,
    };
    change_catalog(&node, &s, |c| {
        c.price_lists.retain(|l| l.id != list.id);
        c.price_lists.push(list);
    })
    .await
}

async fn delete_list(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    s: Staff,
    Form(f): Form<Fields>,
) -> Page {
    s.csrf(field(&f, "csrf"))?;
    s.confirmed(field(&f, "confirm"))?;
    change_catalog(&node, &s, |c| c.price_lists.retain(|l| l.id != id)).await
}

async fn publish(State(node): State<Arc<Node>>, s: Staff, Form(f): Form<Fields>) -> Page {
    s.csrf(field(&f, "csrf"))?;
    let result = orders::republish(&node).await.map(|r| r.map(|_| ()));
    s.outcome(result, "/catalog".into(), "catalog.published")
}

// --------------------------------------------------------------- shop

#[derive(Template)]
#[template(path = "shops.html")]
struct ShopsPage {
    f: Frame,
    vendors: Vec<String>,
}

async fn shops(State(node): State<Arc<Node>>, m: Member) -> Page {
    let user = &m.user;
    let vendors = node
        .store
        .read()
        .and_then(|r| orders::shops(&node, &r, user))?
        .into_iter()
        .map(|s| s.vendor.to_string())
        .collect();
    Ok(m.page(
        StatusCode::OK,
        ShopsPage {
            f: m.frame(),
            vendors,
        }
        .render(),
    ))
}

pub struct ShopLine {
    pub sku: String,
    pub name: String,
    pub unit: String,
    pub warranty_months: i64,
    /// The list price in the chosen currency (empty: not priced in it).
    pub list_price: String,
    /// The partner's price: the list price less the discount of the price
    /// list published to it (its tier's).
    pub your_price: String,
    /// The quantity as typed in the table.
    pub qty: String,
    /// Quantity × list price, once recalculated.
    pub line_total: String,
}

#[derive(Template)]
#[template(path = "shop.html")]
struct ShopPage {
    f: Frame,
    vendor: String,
    products: Vec<ShopLine>,
    currencies: Vec<String>,
    /// The currency prices are shown in.
    currency: String,
    /// The discount of the list in force, as people read it.
    discount: String,
    /// The running total of the lines as typed (subtotal, discount, tax,
    /// total), when there are lines.
    totals: Option<[String; 4]>,
    form: Fields,
    problems: Vec<String>,
    /// A refusal: what it means in the reader's language, and the rules'
    /// English detail.
    error: Option<(String, String)>,
}

impl ShopPage {
    fn value(&self, name: &str) -> &str {
        field(&self.form, name)
    }
}

fn shop_response(
    m: &Member,
    node: &Node,
    vendor: &str,
    form: Fields,
    status: StatusCode,
    problems: Vec<String>,
    error: Option<(String, String)>,
) -> Page {
    let user = &m.user;
    let loc = m.loc();
    let shop = m.found(
        node.store
            .read()
            .and_then(|r| orders::shop_for(node, &r, user, vendor))?,
    )?;
    let today = orders::day_of(crate::clock::now_ms());
    let in_force: Vec<&PriceList> = shop
        .catalog
        .price_lists
        .iter()
        .filter(|l| {
            today.as_ref().is_some_and(|d| {
                guanxi_protocol::pricing::in_force(&shop.catalog.price_lists, &l.currency, d)
                    .is_some_and(|f| f.id == l.id)
            })
        })
        .collect();
    let chinese = m.frame().lang == "zh-TW";
    // Prices in the chosen currency, else the first with a list in force.
    let chosen = field(&form, "currency").to_ascii_uppercase();
    let list = in_force
        .iter()
        .find(|l| l.currency.as_str() == chosen)
        .or(in_force.first())
        .copied();
    let typed = shop_lines(&form);
    let mut priced: Vec<(i64, i64)> = Vec::new();
    let products = shop
        .catalog
        .products
        .iter()
        .filter(|p| p.active)
        .map(|p| {
            let price = list.and_then(|l| l.prices.iter().find(|x| x.sku == p.sku));
            let qty = field(&form, &format!("qty_{}", p.sku)).to_string();
            let line_total = match (price, list, qty.parse::<i64>()) {
                (Some(x), Some(l), Ok(q)) if q > 0 => guanxi_protocol::money::mul(q, x.unit_price)
                    .map(|v| loc.amount(v, &l.currency))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            ShopLine {
                sku: p.sku.clone(),
                name: if chinese && !p.name_zh.is_empty() {
                    p.name_zh.clone()
                } else {
                    p.name_en.clone()
                },
                unit: p.unit.clone(),
                warranty_months: p.warranty_months,
                list_price: match (price, list) {
                    (Some(x), Some(l)) => loc.amount(x.unit_price, &l.currency),
                    _ => String::new(),
                },
                your_price: match (price, list) {
                    (Some(x), Some(l)) => {
                        let cut = i128::from(x.unit_price) * i128::from(l.discount_bp);
                        let cut = i64::try_from((cut + 5_000) / 10_000).unwrap_or(0);
                        loc.amount(x.unit_price - cut, &l.currency)
                    }
                    _ => String::new(),
                },
                qty,
                line_total,
            }
        })
        .collect();
    // The running total of every line typed (table and box) that the
    // catalog prices; what it does not price is reported on placing.
    if let Some(l) = list {
        for line in &typed.lines {
            if let Some(x) = l.prices.iter().find(|x| x.sku == line.sku.trim())
                && line.quantity > 0
            {
                priced.push((line.quantity, x.unit_price));
            }
        }
    }
    let totals = match list {
        Some(l) if !priced.is_empty() => {
            guanxi_protocol::pricing::totals(priced, l.discount_bp, l.tax_rate_bp)
                .ok()
                .map(|t| {
                    [t.subtotal, t.discount, t.tax, t.total].map(|v| loc.amount(v, &l.currency))
                })
        }
        _ => None,
    };
    Ok(m.page(
        status,
        ShopPage {
            f: m.frame(),
            vendor: vendor.to_string(),
            products,
            currencies: in_force.iter().map(|l| l.currency.to_string()).collect(),
            currency: list.map(|l| l.currency.to_string()).unwrap_or_default(),
            discount: list
                .map(|l| loc.percent_bp(l.discount_bp))
                .unwrap_or_default(),
            totals,
            form,
            problems,
            error,
        }
        .render(),
    ))
}

/// The order lines of the shop form: the quantities typed in the product
/// table (`qty_<SKU>`, by SKU; row 0: they come from no row of the box)
/// and then the `SKU, quantity` box, numbered in that order.
fn shop_lines(form: &Fields) -> intake::TypedLines {
    let mut table: Vec<(&String, &String)> = form
        .iter()
        .filter(|(k, v)| k.starts_with("qty_") && !v.trim().is_empty())
        .collect();
    table.sort();
    let mut typed = intake::TypedLines::default();
    for (name, qty) in table {
        let sku = name.trim_start_matches("qty_").to_string();
        match qty.trim().parse::<i64>() {
            Ok(quantity) => {
                typed.lines.push(orders::LineRequest {
                    line: typed.lines.len() as u32 + 1,
                    sku,
                    quantity,
                    unit_price: None,
                });
                typed.rows.push(0);
            }
            Err(_) => typed.errors.push(intake::RowError {
                row: 0,
                key: "rows.table_quantity",
                value: sku,
                message: format!("quantity {qty:?} is not a whole number"),
            }),
        }
    }
    let boxed = field(form, "lines");
    if !boxed.is_empty() || typed.lines.is_empty() && typed.errors.is_empty() {
        let more = intake::order_lines(boxed);
        let base = typed.lines.len() as u32;
        for mut l in more.lines {
            l.line += base;
            typed.lines.push(l);
        }
        typed.rows.extend(more.rows);
        typed.errors.extend(more.errors);
    }
    typed
}

async fn shop_page(State(node): State<Arc<Node>>, Path(vendor): Path<String>, m: Member) -> Page {
    shop_response(
        &m,
        &node,
        &vendor,
        Fields::new(),
        StatusCode::OK,
        Vec::new(),
        None,
    )
}

/// The problems of typed order lines in the user's language, each by the
/// row it came from (the whole order's first), format and catalog problems
/// together, in row order.
fn by_row(
    t: &Catalog,
    typed: &intake::TypedLines,
    currency: &str,
    catalog: Vec<LineProblem>,
) -> Vec<String> {
    let mut all: Vec<(u64, String)> = typed
        .errors
        .iter()
        .map(|e| (e.row, t.row(e.row, e.key, &e.value)))
        .chain(catalog.into_iter().map(|p| {
            let row = typed.row_of(p.line);
            let key = format!("line.{}", p.code);
            let sku = typed
                .lines
                .iter()
                .find(|l| l.line == p.line)
                .map(|l| l.sku.as_str())
                .unwrap_or("");
            let problem = t.fill(&key, &[("sku", sku), ("currency", currency)]);
            if row == 0 {
                (0, problem)
            } else {
                (
                    row,
                    t.fill(
                        "rows.at",
                        &[("row", &row.to_string()), ("problem", &problem)],
                    ),
                )
            }
        }))
        .collect();
    all.sort_by_key(|(row, _)| *row);
    all.into_iter().map(|(_, text)| text).collect()
}

async fn place(
    State(node): State<Arc<Node>>,
    Path(vendor): Path<String>,
    m: Member,
    Form(f): Form<Fields>,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    let user = &m.user;
    let typed = shop_lines(&f);
    let recalculate = field(&f, "action") == "recalculate";
    if recalculate || !typed.errors.is_empty() {
        // The rows that could be read are checked against the catalog in
        // the same round, so the buyer fixes everything at once.
        let shop = node
            .store
            .read()
            .and_then(|r| orders::shop_for(&node, &r, user, &vendor))?;
        let catalog = match (shop, orders::day_of(crate::clock::now_ms())) {
            (Some(shop), Some(day)) => {
                orders::line_problems(&shop, field(&f, "currency"), &typed.lines, &day)
            }
            _ => Vec::new(),
        };
        let problems = by_row(m.frame().t, &typed, field(&f, "currency"), catalog);
        // A recalculation shows the running total and what is wrong so far;
        // a refused order says it was refused.
        let status = if recalculate {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return shop_response(&m, &node, &vendor, f, status, problems, None);
    }
    let lines = typed.lines.clone();
    let optional = |name: &str| Some(field(&f, name).to_string()).filter(|s| !s.is_empty());
    let req = OrderRequest {
        vendor: vendor.clone(),
        reference: field(&f, "reference").to_string(),
        currency: field(&f, "currency").to_string(),
        lines,
        requested_date: optional("requested_date"),
        ship_to: Address {
            name: field(&f, "ship_name").to_string(),
            street: field(&f, "ship_street").to_string(),
            city: field(&f, "ship_city").to_string(),
            postal_code: field(&f, "ship_postal_code").to_string(),
            region: field(&f, "ship_region").to_string(),
            country: field(&f, "ship_country").to_ascii_uppercase(),
        },
        lead: optional("lead"),
    };
    match orders::place(&node, user, req).await {
        Ok(Ok((key, subject))) => Ok(redirect_with_flash(
            &format!("/orders/{key}/{subject}"),
            "orders.placed_flash",
        )),
        Ok(Err(PlaceError::Lines(problems))) => {
            let problems = by_row(m.frame().t, &typed, field(&f, "currency"), problems);
            shop_response(
                &m,
                &node,
                &vendor,
                f,
                StatusCode::UNPROCESSABLE_ENTITY,
                problems,
                None,
            )
        }
        Ok(Err(PlaceError::Refused(r))) => {
            let status = super::access::status_of(r.code);
            shop_response(
                &m,
                &node,
                &vendor,
                f,
                status,
                Vec::new(),
                Some((
                    m.frame().t.get(super::access::reason_key(r.code.as_str())),
                    format!("{}: {}", r.code, r.message),
                )),
            )
        }
        Err(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------- orders

pub struct OrderRow {
    pub link: String,
    pub reference: String,
    pub partner: String,
    pub vendor: String,
    pub placed: String,
    pub status: &'static str,
    /// `fully_invoiced` or `partly_invoiced` once invoices came.
    pub billing: Option<&'static str>,
    pub awaiting: Option<&'static str>,
    pub total: String,
}

fn order_row(loc: &Locale, v: &OrderView) -> OrderRow {
    OrderRow {
        link: format!("/orders/{}/{}", v.key, v.subject),
        reference: v.order.reference.clone(),
        partner: v.partner(),
        vendor: v.order.vendor.to_string(),
        placed: loc.when(v.order.placed_at),
        status: v.order.status.as_str(),
        billing: v.order.billing(),
        awaiting: v.awaiting(),
        total: v
            .order
            .committed_totals()
            .map(|t| loc.amount(t.total, &v.order.currency))
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    f: Frame,
    /// Staff: whether this page lists the orders placed with other vendors
    /// (else those received as vendor).
    placed: bool,
    incoming: Vec<OrderRow>,
    outgoing: Vec<OrderRow>,
    next: Option<String>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, m: Member) -> Page {
    let user = &m.user;
    let direction = q.direction();
    let (who, me, cursor) = (user.clone(), node.identity.id.clone(), q.cursor());
    let page = node
        .reading(move |r| orders::page(r, &who, &me, direction, cursor.as_ref(), LIST_PAGE))
        .await;
    let (views, next) = page?;
    let staff = user.role != crate::accounts::Role::Partner;
    let placed = !staff || direction == Direction::Placed;
    let mut rows: Vec<OrderRow> = views.iter().map(|v| order_row(m.loc(), v)).collect();
    let (incoming, outgoing) = if placed {
        (Vec::new(), rows)
    } else {
        // What awaits the vendor first (on this page).
        rows.sort_by_key(|r| r.awaiting.is_none());
        (rows, Vec::new())
    };
    Ok(m.page(
        StatusCode::OK,
        OrdersPage {
            f: m.frame(),
            placed: staff && placed,
            incoming,
            outgoing,
            next: next_link("/orders", direction, next),
        }
        .render(),
    ))
}

pub struct LineRow {
    pub line: u32,
    pub sku: String,
    pub ordered: i64,
    pub price: String,
    pub accepted: String,
    pub confirmed: String,
    pub reason: String,
    pub shipped: i64,
    pub cancelled: i64,
    pub invoiced: i64,
    pub open: i64,
    pub billable: i64,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    f: Frame,
    action: String,
    view: OrderView,
    lines: Vec<LineRow>,
    totals: Vec<(&'static str, String, String, String, String)>,
    shipments: Vec<(String, String, String, String)>,
    invoices: Vec<(String, String, String, String)>,
    as_vendor: bool,
    as_partner: bool,
    /// The vendor's lead the order fulfils, when this node is the vendor.
    lead_link: Option<String>,
    /// This node's changes the vendor has not confirmed yet (SPEC §12.1).
    pending: usize,
}

fn totals_row(
    loc: &Locale,
    key: &'static str,
    t: Result<Totals, guanxi_protocol::money::Overflow>,
    c: &Currency,
) -> (&'static str, String, String, String, String) {
    match t {
        Ok(t) => (
            key,
            loc.amount(t.subtotal, c),
            loc.amount(t.discount, c),
            loc.amount(t.tax, c),
            loc.amount(t.total, c),
        ),
        Err(e) => (
            key,
            e.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ),
    }
}

async fn order_page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let loc = m.loc();
    let user = &m.user;
    let me = node.identity.id.clone();
    let read = node.store.read()?;
    let Some(view) = orders::one(&read, user, &me, &key, &subject)? else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let o = &view.order;
    let c = &o.currency;
    let staff = user.role != crate::accounts::Role::Partner;
    let lines = o
        .lines
        .iter()
        .map(|l| LineRow {
            line: l.line,
            sku: l.sku.clone(),
            ordered: l.ordered,
            price: loc.amount(l.unit_price, c),
            accepted: l
                .accepted
                .map(|a| (a - l.cancelled.min(a)).to_string())
                .unwrap_or_default(),
            confirmed: l
                .confirmed_date
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            reason: l.ack_reason.clone().unwrap_or_default(),
            shipped: l.shipped,
            cancelled: l.cancelled,
            invoiced: l.invoiced,
            open: l.open(),
            billable: l.shipped - l.invoiced,
        })
        .collect();
    let shipments = o
        .shipments
        .iter()
        .map(|s| {
            let lines = s.lines.iter().map(|(l, q, serials)| {
                if serials.is_empty() {
                    format!("#{l} × {q}")
                } else {
                    format!("#{l} × {q} ({})", serials.join(", "))
                }
            });
            (
                s.id.clone(),
                format!("{} {}", s.carrier, s.tracking),
                loc.when(s.at),
                lines.collect::<Vec<_>>().join("; "),
            )
        })
        .collect();
    let invoices = o
        .invoices
        .iter()
        .map(|i| {
            (
                i.id.clone(),
                i.issued_on.to_string(),
                i.due_on.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                loc.amount(i.totals.total, c),
            )
        })
        .collect();
    let page = OrderPage {
        f: m.frame(),
        action: format!("/orders/{key}/{subject}"),
        lines,
        totals: vec![
            totals_row(loc, "orders.ordered", o.ordered_totals(), c),
            totals_row(loc, "orders.committed", o.committed_totals(), c),
            totals_row(loc, "orders.invoiced", o.invoiced_totals(), c),
        ],
        shipments,
        invoices,
        as_vendor: staff && o.vendor == me,
        as_partner: !staff || (o.partner == me && !key.starts_with("web:")),
        lead_link: if staff && o.vendor == me {
            orders::lead_of(&read, o).map(|id| format!("/leads/{id}"))
        } else {
            None
        },
        pending: crate::engine::unconfirmed(&read, &key, &subject)
            .map(|u| u.pending_requests)
            .unwrap_or(0),
        view,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// Builds the message of an order form: `action` is ack, ship, invoice or
/// cancel; per line the fields end in `_<line>`.
pub fn action_message(
    f: &Fields,
    line_numbers: &[u32],
) -> Result<guanxi_protocol::Message, crate::orders::Refusal> {
    let bad = |m: String| crate::orders::Refusal {
        code: ReasonCode::BadBody,
        message: m,
    };
    let int = |name: String| -> Result<i64, crate::orders::Refusal> {
        let v = field(f, &name);
        if v.is_empty() {
            Ok(0)
        } else {
            v.parse()
                .map_err(|_| bad(format!("{name}: {v:?} is not a whole number")))
        }
    };
    let opt = |name: String| -> Value {
        let v = field(f, &name);
        if v.is_empty() { Value::Null } else { json!(v) }
    };
    let (kind, body) = match field(f, "action") {
        "ack" => {
            let mut lines = Vec::new();
            for n in line_numbers {
                lines.push(json!({"line": n, "accepted": int(format!("accepted_{n}"))?,
                    "confirmed_date": opt(format!("date_{n}")), "reason": opt(format!("reason_{n}"))}));
            }
            (
                "order.ack",
                json!({"lines": lines, "note": field(f, "note")}),
            )
        }
        "ship" => {
            let mut lines = Vec::new();
            for n in line_numbers {
                let q = int(format!("qty_{n}"))?;
                if q > 0 {
                    let serials: Vec<String> = field(f, &format!("serials_{n}"))
                        .split([',', ' ', '\n'])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    lines.push(json!({"line": n, "quantity": q, "serials": serials}));
                }
            }
            (
                "order.ship",
                json!({"shipment": field(f, "shipment"), "carrier": field(f, "carrier"), "tracking": field(f, "tracking"), "lines": lines}),
            )
        }
        "invoice" => {
            let mut lines = Vec::new();
            for n in line_numbers {
                let q = int(format!("qty_{n}"))?;
                if q > 0 {
                    lines.push(json!({"line": n, "quantity": q}));
                }
            }
            (
                "order.invoice",
                json!({"invoice": field(f, "invoice"), "issued_on": field(f, "issued_on"), "due_on": opt("due_on".into()), "lines": lines}),
            )
        }
        "cancel" => {
            let mut lines = Vec::new();
            for n in line_numbers {
                let q = int(format!("qty_{n}"))?;
                if q > 0 {
                    lines.push(json!({"line": n, "quantity": q}));
                }
            }
            (
                "order.cancel",
                json!({"lines": lines, "reason": field(f, "reason")}),
            )
        }
        other => {
            return Err(bad(format!(
                "action {other:?} is not ack, ship, invoice or cancel"
            )));
        }
    };
    crate::engine::decode_message(kind, &body)
}

async fn act(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
    Form(f): Form<Fields>,
) -> Page {
    m.csrf(field(&f, "csrf"))?;
    if field(&f, "action") == "cancel" {
        m.confirmed(field(&f, "confirm"))?;
    }
    let user = &m.user;
    let back = format!("/orders/{key}/{subject}");
    let view = m.found(
        node.store
            .read()
            .and_then(|r| orders::one(&r, user, &node.identity.id, &key, &subject))?,
    )?;
    let numbers: Vec<u32> = view.order.lines.iter().map(|l| l.line).collect();
    let message = match action_message(&f, &numbers) {
        Ok(message) => message,
        Err(r) => return Ok(m.refused(&r, back)),
    };
    let flash = super::access::done_flash(message.kind());
    let result = orders::act_on(&node, user, &key, &subject, message).await;
    m.outcome(result, back, flash)
}

/// What the ordering part of the inbox shows staff: orders awaiting them.
pub fn inbox_items(
    f: &Frame,
    read: &guanxi_adapters::store::Read,
    user: &crate::accounts::User,
) -> Vec<super::format::InboxItem> {
    use crate::record_index::{self as index, SHOWN, Side};
    use guanxi_protocol::state::Record;
    if user.role == crate::accounts::Role::Partner {
        return Vec::new();
    }
    // Orders to this node that wait for it, from the index: the first few
    // of each status that waits.
    let mut waiting = Vec::new();
    let mut more = false;
    for status in [
        "placed",
        "acknowledged",
        "partially_shipped",
        "shipped_uninvoiced",
    ] {
        let (found, m) =
            index::find(read, "order", Side::Own, status, None, None, SHOWN).unwrap_or_default();
        more |= m;
        for (key, subject, record) in index::load(read, found) {
            if let Record::Order(order) = record {
                let view = orders::OrderView {
                    key,
                    subject,
                    order,
                };
                if let Some(a) = view.awaiting() {
                    waiting.push((
                        format!(
                            "{} ({}: {})",
                            view.order.reference,
                            f.org(&view.partner()),
                            f.t.get(format!("awaiting.{a}"))
                        ),
                        format!("/orders/{}/{}", view.key, view.subject),
                    ));
                }
            }
        }
    }
    if waiting.is_empty() {
        Vec::new()
    } else {
        vec![super::format::linked("home.orders_waiting", waiting, more)]
    }
}
