//! Indirect ordering across real daemons: the vendor publishes its catalog;
//! the partner's daemon checks orders against it and places one; partial
//! acknowledgement, two partial shipments, an invoice, the rest cancelled —
//! both daemons agree on every state and total. Bad orders are refused line
//! by line on the partner's API, by the vendor's daemon over federation (a
//! signed `invalid_lines`, the sender's copy becomes refused), and for a web
//! partner ordering in the vendor's own view.

use guanxi_tests::{Api, eventually, expect, two_nodes};
use serde_json::{Value, json};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

fn catalog() -> String {
    json!({
        "products": [
            {"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true},
            {"sku": "SPINDLE", "name_en": "Spindle", "name_zh": "主軸", "unit": "pcs", "warranty_months": 12, "active": true},
            {"sku": "OLD-1", "name_en": "Old lathe", "name_zh": "舊車床", "unit": "pcs", "warranty_months": 12, "active": false}],
        "price_lists": [
            {"id": "tw-gold", "tier": "gold", "currency": "TWD", "valid_from": "2020-01-01", "valid_to": null,
             "discount_bp": 500, "tax_rate_bp": 500,
             "prices": [{"sku": "CNC-5X", "unit_price": 100_000_000}, {"sku": "SPINDLE", "unit_price": 2_500_050}, {"sku": "OLD-1", "unit_price": 100}]},
            {"id": "tw-silver", "tier": "silver", "currency": "TWD", "valid_from": "2020-01-01", "valid_to": null,
             "discount_bp": 0, "tax_rate_bp": 500,
             "prices": [{"sku": "CNC-5X", "unit_price": 110_000_000}]}]
    })
    .to_string()
}

fn order(vendor: &str, currency: &str, lines: &[(u32, &str, i64, Option<i64>)]) -> String {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, sku, q, p)| json!({"line": line, "sku": sku, "quantity": q, "unit_price": p}))
        .collect();
    json!({"vendor": vendor, "reference": "PO-77", "currency": currency, "lines": lines, "requested_date": "2027-01-15",
           "ship_to": {"name": "Globex Kaohsiung", "street": "1 Harbor Rd", "city": "Kaohsiung", "postal_code": "806", "region": "", "country": "TW"},
           "lead": null})
    .to_string()
}

fn partner(id: &str, tier: &str, peer: Option<&str>) -> String {
    json!({"id": id, "name": id, "type": "reseller", "tier": tier, "country": "TW", "region": "", "stage": "active", "peer": peer})
        .to_string()
}

fn codes(v: &Value) -> Vec<(u64, String)> {
    v["lines"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|p| {
                    (
                        p["line"].as_u64().unwrap_or(99),
                        p["code"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_order_is_placed_acknowledged_shipped_invoiced_and_the_rest_cancelled_across_two_daemons()
 {
    let p = two_nodes(Path::new(BIN)).await;
    let (va, pa, vt, pt) = p.apis(Path::new(BIN));
    expect(
        &va,
        "post",
        "/api/v1/partners",
        &vt,
        Some(&partner("globex", "Gold", Some("globex"))),
        201,
    )
    .await;

    // A bad catalog is refused whole, naming the field.
    let mut bad: Value = serde_json::from_str(&catalog()).expect("json");
    bad["price_lists"][0]["prices"][0]["sku"] = json!("NOPE");
    let v = expect(
        &va,
        "put",
        "/api/v1/catalog",
        &vt,
        Some(&bad.to_string()),
        422,
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("price_lists[0].prices[0].sku"),
        "{v}"
    );
    let v = expect(&va, "put", "/api/v1/catalog", &vt, Some(&catalog()), 200).await;
    assert_eq!(
        (v["version"].as_i64(), v["published"][0]["peer"].as_str()),
        (Some(1), Some("globex")),
        "{v}"
    );

    // Globex's daemon keeps the catalog, with its own tier's prices only.
    let published = eventually("the catalog at globex", || async {
        let (_, v) = pa.call("get", "/api/v1/catalogs", Some(&pt), None).await;
        v["catalogs"].as_array().and_then(|c| c.first().cloned())
    })
    .await;
    assert_eq!(published["vendor"], "acme");
    let lists: Vec<&str> = published["catalog"]["price_lists"]
        .as_array()
        .expect("lists")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(
        lists,
        vec!["tw-gold"],
        "silver prices are not shown to a gold partner"
    );

    // Bad orders are refused line by line before anything is sent.
    let v = expect(
        &pa,
        "post",
        "/api/v1/orders",
        &pt,
        Some(&order(
            "acme",
            "TWD",
            &[
                (1, "CNC-9Z", 1, None),
                (2, "OLD-1", 1, None),
                (3, "CNC-5X", 1, Some(90_000_000)),
            ],
        )),
        422,
    )
    .await;
    assert_eq!(
        codes(&v),
        vec![
            (1, "unknown_sku".into()),
            (2, "inactive".into()),
            (3, "wrong_price".into())
        ],
        "{v}"
    );
    let v = expect(
        &pa,
        "post",
        "/api/v1/orders",
        &pt,
        Some(&order("acme", "EUR", &[(1, "CNC-5X", 1, None)])),
        422,
    )
    .await;
    assert_eq!(codes(&v), vec![(0, "no_price_list".into())], "{v}");
    let v = expect(
        &pa,
        "post",
        "/api/v1/orders",
        &pt,
        Some(&order("acme", "TWD", &[(1, "CNC-5X", -2, None)])),
        422,
    )
    .await;
    assert_eq!(codes(&v), vec![(1, "quantity".into())], "{v}");
    let (_, v) = va.call("get", "/api/v1/orders", Some(&vt), None).await;
    assert_eq!(
        v["orders"].as_array().map(Vec::len),
        Some(0),
        "nothing reached the vendor: {v}"
    );

    // A good order: prices from the list.
    let placed = expect(
        &pa,
        "post",
        "/api/v1/orders",
        &pt,
        Some(&order(
            "acme",
            "TWD",
            &[(1, "CNC-5X", 5, None), (2, "SPINDLE", 2, None)],
        )),
        201,
    )
    .await;
    let subject = placed["subject"].as_str().expect("subject").to_string();
    // 5 × 1,000,000.00 + 2 × 25,000.50 = 5,050,001.00; −5 % = 252,500.05 → 252,500.05 (half up);
    // net 4,797,500.95; +5 % tax = 239,875.0475 → 239,875.05; total 5,037,376.00.
    assert_eq!(
        placed["totals"]["ordered"],
        json!({"subtotal": 505_000_100, "discount": 25_250_005, "tax": 23_987_505, "total": 503_737_600}),
        "{placed}"
    );

    // The vendor sees it in its queue, awaiting acknowledgement.
    let at_vendor = eventually("the order at acme", || async {
        let (_, v) = va.call("get", "/api/v1/orders", Some(&vt), None).await;
        v["orders"].as_array().and_then(|o| o.first().cloned())
    })
    .await;
    assert_eq!(
        (
            at_vendor["awaiting"].as_str(),
            at_vendor["partner"].as_str()
        ),
        (Some("acknowledge"), Some("globex"))
    );
    let path = format!("/api/v1/orders/globex/{subject}/messages");
    let act = |kind: &str, body: Value| json!({"kind": kind, "body": body}).to_string();

    // The partner may not acknowledge its own order.
    let ack = act(
        "order.ack",
        json!({"lines": [
        {"line": 1, "accepted": 3, "confirmed_date": "2027-01-20", "reason": "2 more next quarter"},
        {"line": 2, "accepted": 2, "confirmed_date": "2027-01-20", "reason": null}], "note": ""}),
    );
    let v = expect(
        &pa,
        "post",
        &format!("/api/v1/orders/acme/{subject}/messages"),
        &pt,
        Some(&ack),
        403,
    )
    .await;
    assert_eq!(v["code"], "not_allowed");
    expect(&va, "post", &path, &vt, Some(&ack), 200).await;
    let ship = |id: &str, lines: Value| {
        act(
            "order.ship",
            json!({"shipment": id, "carrier": "DHL", "tracking": format!("1Z-{id}"), "lines": lines}),
        )
    };
    expect(
        &va,
        "post",
        &path,
        &vt,
        Some(&ship(
            "S1",
            json!([{"line": 1, "quantity": 2, "serials": ["SN-1", "SN-2"]}]),
        )),
        200,
    )
    .await;
    // Shipping more than is open is refused with the line.
    let v = expect(
        &va,
        "post",
        &path,
        &vt,
        Some(&ship(
            "S2",
            json!([{"line": 1, "quantity": 2, "serials": []}]),
        )),
        422,
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("line 1 ships 2, only 1 open"),
        "{v}"
    );
    expect(&va, "post", &path, &vt, Some(&ship("S2", json!([{"line": 1, "quantity": 1, "serials": ["SN-3"]}, {"line": 2, "quantity": 1, "serials": []}]))), 200).await;
    let invoice = act(
        "order.invoice",
        json!({"invoice": "INV-2027-001", "issued_on": "2027-01-31", "due_on": "2027-03-02",
        "lines": [{"line": 1, "quantity": 3}, {"line": 2, "quantity": 1}]}),
    );
    let invoiced = expect(&va, "post", &path, &vt, Some(&invoice), 200).await;
    // 3 × 1,000,000.00 + 25,000.50 = 3,025,000.50; −5 % 151,250.03; net 2,873,750.47; +5 % 143,687.52 → 3,017,437.99.
    assert_eq!(
        invoiced["order"]["invoices"][0]["totals"]["total"], 301_743_799,
        "{invoiced}"
    );

    // The partner cancels what is left; cancelling shipped goods is refused.
    let partner_path = format!("/api/v1/orders/acme/{subject}/messages");
    let cancel = |line: u64, q: i64| {
        act(
            "order.cancel",
            json!({"lines": [{"line": line, "quantity": q}], "reason": "no longer needed"}),
        )
    };
    let shipped_state = eventually("the shipments at globex", || async {
        let (_, v) = pa
            .call(
                "get",
                &format!("/api/v1/orders/acme/{subject}"),
                Some(&pt),
                None,
            )
            .await;
        (v["order"]["invoices"].as_array().map(Vec::len) == Some(1)).then_some(v)
    })
    .await;
    assert_eq!(
        shipped_state["status"], "partially_shipped",
        "{shipped_state}"
    );
    let v = expect(&pa, "post", &partner_path, &pt, Some(&cancel(1, 1)), 409).await;
    assert_eq!(
        v["code"], "illegal_transition",
        "line 1 is all shipped: {v}"
    );
    let done = expect(&pa, "post", &partner_path, &pt, Some(&cancel(2, 1)), 200).await;
    assert_eq!(done["status"], "shipped", "nothing left open: {done}");

    // Both daemons hold the same order, states and totals.
    let at_vendor = eventually("the same order on both sides", || async {
        let (_, v) = va
            .call(
                "get",
                &format!("/api/v1/orders/globex/{subject}"),
                Some(&vt),
                None,
            )
            .await;
        let (_, w) = pa
            .call(
                "get",
                &format!("/api/v1/orders/acme/{subject}"),
                Some(&pt),
                None,
            )
            .await;
        (v["order"] == w["order"] && v["totals"] == w["totals"] && v["status"] == "shipped")
            .then_some(v)
    })
    .await;
    let lines: Vec<(i64, i64, i64, i64)> = at_vendor["order"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["accepted"].as_i64().unwrap_or(-1),
                l["shipped"].as_i64().unwrap_or(-1),
                l["cancelled"].as_i64().unwrap_or(-1),
                l["invoiced"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(lines, vec![(3, 3, 0, 3), (2, 1, 1, 1)], "{at_vendor}");
    assert_eq!(
        at_vendor["totals"]["committed"]["total"], 301_743_799,
        "what ships is what was invoiced: {at_vendor}"
    );

    let rev = expect(&va, "get", "/api/v1/orders/revenue", &vt, None, 200).await;
    assert_eq!(rev["revenue"]["globex"]["TWD"], 301_743_799, "{rev}");
    // The kept sums equal a recomputation from the orders.
    let out = p.vendor.cli(Path::new(BIN), &["ledger", "verify"]);
    assert!(out.contains("equals a recomputation"), "{out}");
}

/// An order that bypasses the partner's checks (sent raw from the admin
/// socket) is rejected by the vendor's daemon with a signed
/// `invalid_lines` naming the line; the partner's copy becomes refused and
/// takes no further action. The vendor holds nothing.
#[tokio::test]
async fn the_vendor_rejects_a_bad_order_over_federation_and_the_senders_copy_is_refused() {
    let p = two_nodes(Path::new(BIN)).await;
    let (va, pa, vt, pt) = p.apis(Path::new(BIN));
    expect(
        &va,
        "post",
        "/api/v1/partners",
        &vt,
        Some(&partner("globex", "gold", Some("globex"))),
        201,
    )
    .await;
    expect(&va, "put", "/api/v1/catalog", &vt, Some(&catalog()), 200).await;
    let raw = json!({"reference": "PO-RAW", "currency": "TWD", "price_list": "tw-gold", "discount_bp": 500, "tax_rate_bp": 500,
        "lines": [{"line": 1, "sku": "CNC-5X", "quantity": 1, "unit_price": 100_000_000},
                  {"line": 2, "sku": "SPINDLE", "quantity": 1, "unit_price": 1}],
        "requested_date": null, "lead": null,
        "ship_to": {"name": "Globex", "street": "", "city": "", "postal_code": "", "region": "", "country": "TW"}});
    let (status, v) = p
        .partner
        .admin(
            "POST",
            "/admin/v1/send",
            Some(json!({"peer": "acme", "kind": "order.place", "subject": "ord-raw", "body": raw})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let refused = eventually("the refusal at globex", || async {
        let (_, v) = pa
            .call("get", "/api/v1/orders/acme/ord-raw", Some(&pt), None)
            .await;
        (v["status"] == "refused").then_some(v)
    })
    .await;
    let reason = refused["order"]["refusal"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("invalid_lines")
            && reason.contains("line 2")
            && !reason.contains("line 1"),
        "{refused}"
    );
    let (_, rejected) = p.partner.admin("GET", "/admin/v1/rejected", None).await;
    assert_eq!(
        rejected["outgoing"][0]["reason"]["code"], "invalid_lines",
        "{rejected}"
    );
    // Nothing at the vendor; nothing more on the refused order.
    let (status, _) = va
        .call("get", "/api/v1/orders/globex/ord-raw", Some(&vt), None)
        .await;
    assert_eq!(status, 404);
    let cancel = json!({"kind": "order.cancel", "body": {"lines": [{"line": 1, "quantity": 1}], "reason": ""}}).to_string();
    let v = expect(
        &pa,
        "post",
        "/api/v1/orders/acme/ord-raw/messages",
        &pt,
        Some(&cancel),
        409,
    )
    .await;
    assert_eq!(v["code"], "illegal_transition", "{v}");
}

/// A partner without a daemon orders in the vendor's own Guanxi, from the
/// price list of its tier, and sees only its organization's orders.
#[tokio::test]
async fn a_web_partner_orders_from_its_tier_price_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = guanxi_tests::NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    for (org, tier, user) in [("initech", "silver", "ina"), ("umbrella", "gold", "uma")] {
        expect(
            &api,
            "post",
            "/api/v1/partners",
            &admin,
            Some(&partner(org, tier, None)),
            201,
        )
        .await;
        expect(
            &api,
            "post",
            &format!("/api/v1/partners/{org}/users"),
            &admin,
            Some(&json!({"username": user}).to_string()),
            201,
        )
        .await;
    }
    let ina = node.token(Path::new(BIN), "ina-t", "ina");
    let uma = node.token(Path::new(BIN), "uma-t", "uma");
    // No catalog yet: nothing to order from.
    let v = expect(
        &api,
        "post",
        "/api/v1/orders",
        &ina,
        Some(&order("acme", "TWD", &[(1, "CNC-5X", 1, None)])),
        403,
    )
    .await;
    assert_eq!(v["code"], "not_allowed");
    expect(
        &api,
        "put",
        "/api/v1/catalog",
        &admin,
        Some(&catalog()),
        200,
    )
    .await;

    let v = expect(&api, "get", "/api/v1/catalogs", &ina, None, 200).await;
    let lists: Vec<&str> = v["catalogs"][0]["catalog"]["price_lists"]
        .as_array()
        .expect("lists")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(lists, vec!["tw-silver"]);
    // The gold price is wrong for a silver partner; SPINDLE has no silver price.
    let v = expect(
        &api,
        "post",
        "/api/v1/orders",
        &ina,
        Some(&order(
            "acme",
            "TWD",
            &[(1, "CNC-5X", 1, Some(100_000_000)), (2, "SPINDLE", 1, None)],
        )),
        422,
    )
    .await;
    assert_eq!(
        codes(&v),
        vec![(1, "wrong_price".into()), (2, "not_in_price_list".into())],
        "{v}"
    );
    let placed = expect(
        &api,
        "post",
        "/api/v1/orders",
        &ina,
        Some(&order("acme", "TWD", &[(1, "CNC-5X", 1, None)])),
        201,
    )
    .await;
    assert_eq!(
        (
            placed["key"].as_str(),
            placed["order"]["price_list"].as_str()
        ),
        (Some("web:initech"), Some("tw-silver"))
    );
    let subject = placed["subject"].as_str().expect("subject").to_string();

    // Staff see it in the queue and acknowledge it; the partner sees that.
    let v = expect(&api, "get", "/api/v1/orders", &admin, None, 200).await;
    assert_eq!(v["orders"][0]["awaiting"], "acknowledge", "{v}");
    let ack = json!({"kind": "order.ack", "body": {"lines": [{"line": 1, "accepted": 1, "confirmed_date": null, "reason": null}], "note": ""}}).to_string();
    let path = format!("/api/v1/orders/web:initech/{subject}/messages");
    // A partner user cannot acknowledge; another organization cannot see it.
    let v = expect(&api, "post", &path, &ina, Some(&ack), 403).await;
    assert_eq!(v["code"], "not_allowed");
    expect(
        &api,
        "get",
        &format!("/api/v1/orders/web:initech/{subject}"),
        &uma,
        None,
        404,
    )
    .await;
    let (_, v) = api.call("get", "/api/v1/orders", Some(&uma), None).await;
    assert_eq!(v["orders"].as_array().map(Vec::len), Some(0), "{v}");
    expect(&api, "post", &path, &admin, Some(&ack), 200).await;
    let v = expect(
        &api,
        "get",
        &format!("/api/v1/orders/web:initech/{subject}"),
        &ina,
        None,
        200,
    )
    .await;
    assert_eq!(v["status"], "acknowledged", "{v}");
    drop(daemon);
}
