//! Crossing messages between two real daemons (SPEC §12.1): the link is cut
//! (`guanxi pause` on both sides), both companies act on the same record,
//! the link comes back, and both nodes hold byte-identical records —
//! histories included, at the same version, nothing pending — and still do
//! after both restart. Orders (ship vs cancel, acknowledge part vs cancel
//! part), MDF (claim vs top-up, claim vs payment, then a checkpoint from
//! each side), service requests (comment vs comment, close vs reopen).

use guanxi_protocol::canonical;
use guanxi_tests::{Api, Pair, eventually, expect, two_nodes};
use serde_json::{Value, json};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

struct Link {
    p: Pair,
    va: Api,
    pa: Api,
    vt: String,
    pt: String,
}

fn act(kind: &str, body: Value) -> String {
    json!({"kind": kind, "body": body}).to_string()
}

impl Link {
    async fn new() -> Link {
        let p = two_nodes(Path::new(BIN)).await;
        let (va, pa, vt, pt) = p.apis(Path::new(BIN));
        expect(
            &va,
            "post",
            "/api/v1/partners",
            &vt,
            Some(
                &json!({"id": "globex", "name": "Globex", "type": "reseller", "tier": "gold",
                    "country": "TW", "region": "", "stage": "active", "peer": "globex"})
                .to_string(),
            ),
            201,
        )
        .await;
        Link { p, va, pa, vt, pt }
    }

    /// Both daemons stop sending to each other (what is queued stays queued).
    fn cut(&self) {
        self.p.vendor.cli(Path::new(BIN), &["pause", "globex"]);
        self.p.partner.cli(Path::new(BIN), &["pause", "acme"]);
    }

    /// The link comes back: both deliver what waited.
    fn heal(&self) {
        self.p.vendor.cli(Path::new(BIN), &["resume", "globex"]);
        self.p.partner.cli(Path::new(BIN), &["resume", "acme"]);
    }

    /// Waits until both nodes hold the same settled record `subject` (the
    /// same canonical bytes, at the same version, nothing pending) and
    /// returns it.
    async fn converged(&self, subject: &str) -> Value {
        let p = &self.p;
        eventually("the same record on both nodes", || async {
            let (_, v) = p
                .vendor
                .admin(
                    "GET",
                    &format!("/admin/v1/records/globex/{subject}/sync"),
                    None,
                )
                .await;
            let (_, w) = p
                .partner
                .admin(
                    "GET",
                    &format!("/admin/v1/records/acme/{subject}/sync"),
                    None,
                )
                .await;
            let settled = |x: &Value| {
                x["pending"] == 0 && x["early"] == 0 && x["version"].as_u64().unwrap_or(0) > 0
            };
            let bytes = |x: &Value| canonical::canonicalize(x).ok();
            (settled(&v)
                && settled(&w)
                && v["version"] == w["version"]
                && bytes(&v["record"]) == bytes(&w["record"])
                && bytes(&w["record"]) == bytes(&w["confirmed"]))
            .then(|| v["record"].clone())
        })
        .await
    }

    /// Restarts both daemons; the record must be the same afterwards.
    async fn restart_and_compare(&mut self, subject: &str, before: &Value) {
        self.p.restart_both(Path::new(BIN)).await;
        self.va = Api::of(&self.p.vendor, &self.p.vendor_daemon);
        self.pa = Api::of(&self.p.partner, &self.p.partner_daemon);
        let after = self.converged(subject).await;
        assert_eq!(&after, before, "the same record after restarting both");
    }

    /// The kinds of the rejections one node received for what it sent.
    async fn refused_kinds(&self, vendor: bool) -> Vec<(String, String)> {
        let node = if vendor {
            &self.p.vendor
        } else {
            &self.p.partner
        };
        let (_, v) = node.admin("GET", "/admin/v1/rejected", None).await;
        v["outgoing"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or("").to_string(),
                    e["reason"]["code"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

fn catalog() -> String {
    json!({
        "products": [{"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true}],
        "price_lists": [{"id": "tw-gold", "tier": "gold", "currency": "TWD", "valid_from": "2020-01-01", "valid_to": null,
             "discount_bp": 500, "tax_rate_bp": 500, "prices": [{"sku": "CNC-5X", "unit_price": 1_050_000}]}]
    })
    .to_string()
}

/// Places an order for 10 and waits until the vendor has it.
async fn order_of_ten(l: &Link) -> String {
    expect(
        &l.va,
        "put",
        "/api/v1/catalog",
        &l.vt,
        Some(&catalog()),
        200,
    )
    .await;
    eventually("the catalog at globex", || async {
        let (_, v) =
            l.pa.call("get", "/api/v1/catalogs", Some(&l.pt), None)
                .await;
        v["catalogs"].as_array().and_then(|c| c.first().cloned())
    })
    .await;
    let order = json!({"vendor": "acme", "reference": "PO-1", "currency": "TWD",
        "lines": [{"line": 1, "sku": "CNC-5X", "quantity": 10, "unit_price": null}], "requested_date": null,
        "ship_to": {"name": "Globex", "street": "1 Harbor Rd", "city": "Kaohsiung", "postal_code": "806", "region": "", "country": "TW"},
        "lead": null})
    .to_string();
    let placed = expect(&l.pa, "post", "/api/v1/orders", &l.pt, Some(&order), 201).await;
    let subject = placed["subject"].as_str().expect("subject").to_string();
    l.converged(&subject).await;
    subject
}

fn ack(accepted: i64) -> String {
    act(
        "order.ack",
        json!({"lines": [{"line": 1, "accepted": accepted, "confirmed_date": null, "reason": null}], "note": ""}),
    )
}

fn cancel(quantity: i64) -> String {
    act(
        "order.cancel",
        json!({"lines": [{"line": 1, "quantity": quantity}], "reason": "changed plans"}),
    )
}

#[tokio::test]
async fn orders_ship_crossing_cancel_and_part_acknowledgement_crossing_cancel() {
    let mut l = Link::new().await;

    // Shipped 10 at the vendor while the partner cancelled 5.
    let subject = order_of_ten(&l).await;
    let vendor_path = format!("/api/v1/orders/globex/{subject}/messages");
    let partner_path = format!("/api/v1/orders/acme/{subject}/messages");
    expect(&l.va, "post", &vendor_path, &l.vt, Some(&ack(10)), 200).await;
    l.converged(&subject).await;
    l.cut();
    let ship = act(
        "order.ship",
        json!({"shipment": "S1", "carrier": "DHL", "tracking": "1Z", "lines": [{"line": 1, "quantity": 10, "serials": []}]}),
    );
    expect(&l.va, "post", &vendor_path, &l.vt, Some(&ship), 200).await;
    let mine = expect(&l.pa, "post", &partner_path, &l.pt, Some(&cancel(5)), 200).await;
    assert_eq!(
        mine["status"], "acknowledged",
        "the partner's own view: {mine}"
    );
    l.heal();
    let order = l.converged(&subject).await;
    let (_, mine) =
        l.pa.call(
            "get",
            &format!("/api/v1/orders/acme/{subject}"),
            Some(&l.pt),
            None,
        )
        .await;
    assert_eq!(mine["pending_requests"], 0, "{mine}");
    assert_eq!(order["status"], "shipped", "{order}");
    assert_eq!(order["lines"][0]["shipped"], 10, "{order}");
    assert_eq!(order["lines"][0]["cancelled"], 0, "{order}");
    assert!(
        l.refused_kinds(false)
            .await
            .contains(&("order.cancel".into(), "illegal_transition".into())),
        "the partner sees its cancel refused"
    );
    // The invoice that was refused before now applies on both sides.
    let invoice = act(
        "order.invoice",
        json!({"invoice": "INV-1", "issued_on": "2027-01-31", "due_on": null, "lines": [{"line": 1, "quantity": 10}]}),
    );
    expect(&l.va, "post", &vendor_path, &l.vt, Some(&invoice), 200).await;
    let order = l.converged(&subject).await;
    assert_eq!(
        order["invoices"].as_array().map(Vec::len),
        Some(1),
        "{order}"
    );
    l.restart_and_compare(&subject, &order).await;

    // Acknowledged 8 of 10 at the vendor while the partner cancelled 2: the
    // vendor's order is the record's order — the cancel lands after the ack.
    let subject = order_of_ten(&l).await;
    let vendor_path = format!("/api/v1/orders/globex/{subject}/messages");
    let partner_path = format!("/api/v1/orders/acme/{subject}/messages");
    l.cut();
    expect(&l.va, "post", &vendor_path, &l.vt, Some(&ack(8)), 200).await;
    expect(&l.pa, "post", &partner_path, &l.pt, Some(&cancel(2)), 200).await;
    l.heal();
    let order = l.converged(&subject).await;
    let line = &order["lines"][0];
    assert_eq!(
        (
            line["accepted"].as_i64(),
            line["cancelled"].as_i64(),
            order["status"].as_str()
        ),
        (Some(8), Some(2), Some("acknowledged")),
        "{order}"
    );
    let (_, at_vendor) =
        l.va.call(
            "get",
            &format!("/api/v1/orders/globex/{subject}"),
            Some(&l.vt),
            None,
        )
        .await;
    let (_, at_partner) =
        l.pa.call(
            "get",
            &format!("/api/v1/orders/acme/{subject}"),
            Some(&l.pt),
            None,
        )
        .await;
    assert_eq!(at_vendor["totals"], at_partner["totals"], "the same totals");
    l.restart_and_compare(&subject, &order).await;
}

#[tokio::test]
async fn mdf_claims_crossing_a_top_up_and_a_payment_then_checkpoints_from_both_sides() {
    let mut l = Link::new().await;
    let allocate = json!({"partner": "globex", "budget": "q1", "body": {"action": "allocate", "amount": 10_000_000, "currency": "TWD",
        "period": "2027-Q1", "allow_overdraw": false, "expires_on": null, "note": ""}})
    .to_string();
    expect(&l.va, "post", "/api/v1/mdf", &l.vt, Some(&allocate), 201).await;
    let subject = "mdf-q1";
    l.converged(subject).await;
    let at_vendor = format!("/api/v1/mdf/globex/{subject}/messages");
    let at_partner = format!("/api/v1/mdf/acme/{subject}/messages");
    for (id, cost) in [("booth", 6_000_000), ("ads", 2_000_000)] {
        expect(&l.pa, "post", &at_partner, &l.pt, Some(&act("mdf.request", json!({"request": id, "activity": id,
            "starts_on": "2027-02-01", "ends_on": "2027-02-03", "expected_cost": {"amount": cost, "currency": "TWD"}, "expected_leads": 10,
            "expected_revenue": null, "campaign": "spring"}))), 200).await;
        l.converged(subject).await;
        expect(
            &l.va,
            "post",
            &at_vendor,
            &l.vt,
            Some(&act(
                "mdf.decision",
                json!({"request": id, "decision": "approved", "amount": cost, "reason": "ok"}),
            )),
            200,
        )
        .await;
        l.converged(subject).await;
    }
    let claim = |id: &str, request: &str, amount: i64| {
        act(
            "mdf.claim",
            json!({"claim": id, "request": request, "amount": {"amount": amount, "currency": "TWD"},
                "invoice_number": format!("INV-{id}"), "invoice_date": "2027-02-10", "proofs": []}),
        )
    };

    // A claim crossing a top-up.
    l.cut();
    expect(
        &l.pa,
        "post",
        &at_partner,
        &l.pt,
        Some(&claim("c1", "booth", 4_000_000)),
        200,
    )
    .await;
    expect(
        &l.va,
        "post",
        &at_vendor,
        &l.vt,
        Some(&act(
            "mdf.budget",
            json!({"action": "top_up", "amount": 1_000_000, "currency": "TWD",
        "period": "2027-Q1", "allow_overdraw": false, "expires_on": null, "note": "bonus"}),
        )),
        200,
    )
    .await;
    l.heal();
    l.converged(subject).await;
    expect(
        &l.va,
        "post",
        &at_vendor,
        &l.vt,
        Some(&act(
            "mdf.claim_decision",
            json!({"claim": "c1", "decision": "approved", "amount": 4_000_000, "reason": "ok"}),
        )),
        200,
    )
    .await;
    l.converged(subject).await;

    // A claim crossing a payment.
    l.cut();
    expect(&l.va, "post", &at_vendor, &l.vt, Some(&act("mdf.paid", json!({"claim": "c1", "amount": 4_000_000, "reference": "TT-1", "paid_on": "2027-03-01"}))), 200).await;
    expect(
        &l.pa,
        "post",
        &at_partner,
        &l.pt,
        Some(&claim("c2", "ads", 1_500_000)),
        200,
    )
    .await;
    l.heal();
    let budget = l.converged(subject).await;
    let kinds: Vec<&str> = budget["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.len(),
        8,
        "allocate, 2 approvals, top-up, claim, approval, payment, claim: {budget}"
    );
    let sum: i64 = budget["balances"]
        .as_object()
        .expect("balances")
        .values()
        .filter_map(Value::as_i64)
        .sum();
    assert_eq!(sum, 0, "money is never created or destroyed");

    // A checkpoint from each side, one of them while a claim is in flight:
    // no false alarm either way.
    l.cut();
    expect(
        &l.pa,
        "post",
        &at_partner,
        &l.pt,
        Some(&claim("c3", "ads", 500_000)),
        200,
    )
    .await;
    let path = format!("/api/v1/mdf/globex/{subject}/checkpoint");
    expect(&l.va, "post", &path, &l.vt, None, 200).await;
    let path = format!("/api/v1/mdf/acme/{subject}/checkpoint");
    expect(&l.pa, "post", &path, &l.pt, None, 200).await;
    l.heal();
    let budget = l.converged(subject).await;
    assert_eq!(
        budget["claims"].as_array().map(Vec::len),
        Some(3),
        "{budget}"
    );
    for vendor in [true, false] {
        let refused = l.refused_kinds(vendor).await;
        assert!(
            !refused.iter().any(|(_, code)| code == "ledger_mismatch"),
            "no false ledger mismatch: {refused:?}"
        );
    }
    let (_, verify) =
        l.p.vendor
            .admin("GET", "/admin/v1/ledger/verify", None)
            .await;
    assert_eq!(verify["problems"], json!([]), "{verify}");
    l.restart_and_compare(subject, &budget).await;
}

#[tokio::test]
async fn service_comments_crossing_and_a_close_crossing_a_reopen() {
    let mut l = Link::new().await;
    let open = json!({"vendor": "acme", "body": {"customer": {"company": "Contoso", "contact": "", "email": "", "phone": ""},
        "sku": "CNC-5X", "serial": null, "problem": "alarm 41", "priority": "high", "attachments": []}})
    .to_string();
    let opened = expect(&l.pa, "post", "/api/v1/service", &l.pt, Some(&open), 201).await;
    let subject = opened["subject"].as_str().expect("subject").to_string();
    l.converged(&subject).await;
    let at_vendor = format!("/api/v1/service/globex/{subject}/messages");
    let at_partner = format!("/api/v1/service/acme/{subject}/messages");
    let say = |status: Option<&str>, comment: &str| {
        act(
            "service.update",
            json!({"status": status, "comment": comment, "attachments": []}),
        )
    };

    // Two comments at once: one order on both sides, the vendor's.
    l.cut();
    expect(
        &l.va,
        "post",
        &at_vendor,
        &l.vt,
        Some(&say(None, "which firmware?")),
        200,
    )
    .await;
    expect(
        &l.pa,
        "post",
        &at_partner,
        &l.pt,
        Some(&say(None, "it is v2.3")),
        200,
    )
    .await;
    l.heal();
    let request = l.converged(&subject).await;
    let comments: Vec<&str> = request["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["comment"].as_str())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        comments.len(),
        3,
        "the problem and both comments: {request}"
    );

    // A close crossing a reopen.
    expect(
        &l.va,
        "post",
        &at_vendor,
        &l.vt,
        Some(&say(Some("resolved"), "update to v2.4")),
        200,
    )
    .await;
    l.converged(&subject).await;
    l.cut();
    expect(
        &l.va,
        "post",
        &at_vendor,
        &l.vt,
        Some(&say(Some("closed"), "closing")),
        200,
    )
    .await;
    expect(
        &l.pa,
        "post",
        &at_partner,
        &l.pt,
        Some(&say(Some("reopened"), "still failing")),
        200,
    )
    .await;
    l.heal();
    let request = l.converged(&subject).await;
    // The vendor closed first; the partner's reopen of a closed request then
    // applies in its turn.
    assert_eq!(request["status"], "open", "{request}");
    l.restart_and_compare(&subject, &request).await;
}
