//! Orders against catalogs: the total rule (exact, property-tested against
//! 128-bit arithmetic), invoices, the price list in force, line-level
//! problems, and the catalog record.

use guanxi_protocol::messages::Message;
use guanxi_protocol::money::Date;
use guanxi_protocol::pricing::{self, Totals};
use guanxi_protocol::state::{self, Context, OrderStatus, Record};
use guanxi_protocol::{NodeId, ReasonCode};
use proptest::prelude::*;
use serde_json::{Value, json};

const T0: i64 = 1_795_651_200_000;

fn ctx(from: &str, to: &str, at: i64) -> Context {
    Context {
        from: from.parse::<NodeId>().expect("node"),
        to: to.parse::<NodeId>().expect("node"),
        at,
    }
}

fn msg(kind: &str, body: Value) -> Message {
    Message::decode(kind, &body).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn step(r: Option<&Record>, c: &Context, m: &Message) -> Result<Record, (ReasonCode, String)> {
    match state::apply(r, c, m) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => panic!("no record"),
        Err(e) => Err((e.code, e.message)),
    }
}

fn order_of(r: &Record) -> &state::Order {
    match r {
        Record::Order(o) => o,
        other => panic!("not an order: {other:?}"),
    }
}

fn catalog(version: i64) -> Value {
    json!({"version": version,
        "products": [
            {"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true},
            {"sku": "OLD-1", "name_en": "Old lathe", "name_zh": "舊車床", "unit": "pcs", "warranty_months": 12, "active": false},
            {"sku": "SVC", "name_en": "Installation", "name_zh": "安裝", "unit": "job", "warranty_months": 0, "active": true}],
        "price_lists": [
            {"id": "tw-2026", "tier": "gold", "currency": "TWD", "valid_from": "2026-01-01", "valid_to": "2026-12-31",
             "discount_bp": 500, "tax_rate_bp": 500, "prices": [{"sku": "CNC-5X", "unit_price": 100_000_000}, {"sku": "OLD-1", "unit_price": 1}]},
            {"id": "tw-2027", "tier": "gold", "currency": "TWD", "valid_from": "2027-01-01", "valid_to": null,
             "discount_bp": 500, "tax_rate_bp": 500, "prices": [{"sku": "CNC-5X", "unit_price": 110_000_000}, {"sku": "SVC", "unit_price": 2_000_000}]}]})
}

fn place(price_list: &str, currency: &str, lines: &[(u32, &str, i64, i64)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, sku, q, p)| json!({"line": line, "sku": sku, "quantity": q, "unit_price": p}))
        .collect();
    json!({"reference": "PO-9", "currency": currency, "price_list": price_list, "discount_bp": 500, "tax_rate_bp": 500,
           "lines": lines, "requested_date": null, "lead": null,
           "ship_to": {"name": "Globex", "street": "", "city": "", "postal_code": "", "region": "", "country": "TW"}})
}

fn problems(order: Value, day: &str) -> Vec<(u32, String)> {
    let Message::CatalogPublish(c) = msg("catalog.publish", catalog(1)) else {
        panic!("catalog")
    };
    let Message::OrderPlace(o) = msg("order.place", order) else {
        panic!("order")
    };
    let day: Date = day.parse().expect("date");
    pricing::check_order(&c, &o, &day)
        .into_iter()
        .map(|p| (p.line, p.code))
        .collect()
}

#[test]
fn lines_are_checked_against_the_list_in_force_that_day() {
    let good = place("tw-2026", "TWD", &[(1, "CNC-5X", 2, 100_000_000)]);
    assert_eq!(problems(good.clone(), "2026-11-26"), vec![]);
    // On 2027-01-01 another list is in force, with another price.
    assert_eq!(
        problems(good, "2027-01-01"),
        vec![(0, "price_list".into()), (1, "wrong_price".into())]
    );
    let bad = place(
        "tw-2026",
        "TWD",
        &[
            (1, "CNC-9Z", 1, 5),
            (2, "OLD-1", 1, 1),
            (3, "SVC", 1, 2_000_000),
            (4, "CNC-5X", 1, 99),
        ],
    );
    assert_eq!(
        problems(bad, "2026-11-26"),
        vec![
            (1, "unknown_sku".into()),
            (2, "inactive".into()),
            (3, "not_in_price_list".into()),
            (4, "wrong_price".into())
        ]
    );
    assert_eq!(
        problems(
            place("tw-2026", "EUR", &[(1, "CNC-5X", 1, 1)]),
            "2026-11-26"
        ),
        vec![(0, "no_price_list".into())]
    );
}

#[test]
fn invoices_bill_shipped_quantities_with_the_order_rates() {
    let order = msg(
        "order.place",
        place("tw-2026", "TWD", &[(1, "CNC-5X", 3, 100_000_000)]),
    );
    let o = step(None, &ctx("globex", "acme", T0), &order).expect("placed");
    assert_eq!(
        order_of(&o).ordered_totals(),
        Ok(Totals {
            subtotal: 300_000_000,
            discount: 15_000_000,
            tax: 14_250_000,
            total: 299_250_000
        })
    );
    let ack = msg(
        "order.ack",
        json!({"lines": [{"line": 1, "accepted": 3, "confirmed_date": null, "reason": null}], "note": ""}),
    );
    let o = step(Some(&o), &ctx("acme", "globex", T0 + 1), &ack).expect("ack");
    let invoice = |id: &str, q: i64| {
        msg(
            "order.invoice",
            json!({"invoice": id, "issued_on": "2026-11-30", "due_on": null, "lines": [{"line": 1, "quantity": q}]}),
        )
    };
    let (code, _) = step(
        Some(&o),
        &ctx("acme", "globex", T0 + 2),
        &invoice("INV-1", 1),
    )
    .expect_err("nothing shipped");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let ship = msg(
        "order.ship",
        json!({"shipment": "S1", "carrier": "", "tracking": "", "lines": [{"line": 1, "quantity": 2, "serials": ["A", "B"]}]}),
    );
    let o = step(Some(&o), &ctx("acme", "globex", T0 + 3), &ship).expect("ship");
    let (code, _) = step(
        Some(&o),
        &ctx("globex", "acme", T0 + 4),
        &invoice("INV-1", 1),
    )
    .expect_err("partner invoices");
    assert_eq!(code, ReasonCode::NotAllowed);
    let o = step(
        Some(&o),
        &ctx("acme", "globex", T0 + 4),
        &invoice("INV-1", 2),
    )
    .expect("invoice");
    let inv = &order_of(&o).invoices[0];
    assert_eq!(inv.totals.total, 199_500_000);
    let (code, _) = step(
        Some(&o),
        &ctx("acme", "globex", T0 + 5),
        &invoice("INV-1", 1),
    )
    .expect_err("same number");
    assert_eq!(code, ReasonCode::BadBody);
    // Cancelling more than what is left open (shipped goods) is refused.
    let cancel = msg(
        "order.cancel",
        json!({"lines": [{"line": 1, "quantity": 2}], "reason": ""}),
    );
    let (code, message) =
        step(Some(&o), &ctx("globex", "acme", T0 + 6), &cancel).expect_err("shipped");
    assert_eq!(code, ReasonCode::IllegalTransition);
    assert!(message.contains("only 1"), "{message}");

    // A refused order takes nothing further.
    let refused = Record::Order(state::order_refused(
        order_of(&o),
        "line 1: wrong price",
        T0 + 7,
    ));
    assert_eq!(order_of(&refused).status, OrderStatus::Refused);
    assert!(step(Some(&refused), &ctx("globex", "acme", T0 + 8), &cancel).is_err());
}

#[test]
fn a_catalog_is_replaced_only_by_a_newer_version_from_its_vendor() {
    let c1 = step(
        None,
        &ctx("acme", "globex", T0),
        &msg("catalog.publish", catalog(1)),
    )
    .expect("v1");
    let c2 = step(
        Some(&c1),
        &ctx("acme", "globex", T0 + 1),
        &msg("catalog.publish", catalog(2)),
    )
    .expect("v2");
    let (code, _) = step(
        Some(&c2),
        &ctx("acme", "globex", T0 + 2),
        &msg("catalog.publish", catalog(2)),
    )
    .expect_err("old");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let (code, _) = step(
        Some(&c2),
        &ctx("globex", "acme", T0 + 2),
        &msg("catalog.publish", catalog(3)),
    )
    .expect_err("partner");
    assert_eq!(code, ReasonCode::NotAllowed);
    let mut dup = catalog(1);
    dup["price_lists"][0]["prices"][0]["sku"] = json!("NOPE");
    assert!(Message::decode("catalog.publish", &dup).is_err());
}

#[test]
fn catalog_body_errors_name_the_field() {
    let mut bad = catalog(1);
    bad["price_lists"][1]["tax_rate_bp"] = json!(20_000);
    match Message::decode("catalog.publish", &bad) {
        Err(guanxi_protocol::BodyError::Field { path, .. }) => {
            assert_eq!(path, "body.price_lists[1].tax_rate_bp")
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    /// Totals equal the rule computed in 128-bit arithmetic, and beyond
    /// ±(2^53−1) the answer is an error, never a wrong number.
    #[test]
    fn totals_are_exact_or_refused(
        lines in prop::collection::vec((1i64..=1_000_000, 0i64..=5_000_000_000_000), 0..20),
        discount in 0i64..=10_000,
        tax in 0i64..=10_000,
    ) {
        const MAX: i128 = 9_007_199_254_740_991;
        let mut sub: i128 = 0;
        let mut overflow = false;
        for (q, p) in &lines {
            let line = i128::from(*q) * i128::from(*p);
            overflow |= line > MAX;
            sub += line;
            overflow |= sub > MAX;
        }
        let discount_v = (sub * i128::from(discount) + 5_000) / 10_000;
        let net = sub - discount_v;
        let tax_v = (net * i128::from(tax) + 5_000) / 10_000;
        let total = net + tax_v;
        overflow |= total > MAX;
        match pricing::totals(lines.iter().copied(), discount, tax) {
            Ok(t) => {
                prop_assert!(!overflow);
                prop_assert_eq!(
                    (i128::from(t.subtotal), i128::from(t.discount), i128::from(t.tax), i128::from(t.total)),
                    (sub, discount_v, tax_v, total)
                );
            }
            Err(_) => prop_assert!(overflow, "refused though {total} fits"),
        }
    }
}

#[test]
fn order_place_requires_the_price_list_and_rates() {
    // Every member is required: price_list, discount_bp and tax_rate_bp included.
    let mut body = place("tw-2026", "TWD", &[(1, "CNC-5X", 1, 1)]);
    body.as_object_mut().map(|m| m.remove("tax_rate_bp"));
    assert!(Message::decode("order.place", &body).is_err());
}
