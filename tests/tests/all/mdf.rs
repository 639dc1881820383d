//! MDF across two daemons: allocate → request → approve → claim → partial
//! approval → payment; both ledgers identical and sound (`guanxi ledger
//! verify`); a divergence injected into one store is caught by a
//! reconciliation checkpoint naming the first differing entry, on both
//! sides; bad claims refused with their reason.

use guanxi_adapters::store::Store;
use guanxi_protocol::state::Record;
use guanxi_protocol::state::mdf::balances_of;
use guanxi_tests::{Api, eventually, expect, two_nodes};
use serde_json::{Value, json};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

#[tokio::test]
async fn an_mdf_budget_is_worked_through_and_reconciled_across_two_daemons() {
    let mut p = two_nodes(Path::new(BIN)).await;
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
    let allocate = json!({"partner": "globex", "budget": "2027-q1", "body": {"action": "allocate", "amount": 10_000_000, "currency": "TWD",
        "period": "2027-Q1", "allow_overdraw": false, "expires_on": null, "note": ""}}).to_string();
    let b = expect(&va, "post", "/api/v1/mdf", &vt, Some(&allocate), 201).await;
    assert_eq!(
        (b["key"].as_str(), b["subject"].as_str()),
        (Some("globex"), Some("mdf-2027-q1"))
    );

    let at_partner = "/api/v1/mdf/acme/mdf-2027-q1";
    let at_vendor = "/api/v1/mdf/globex/mdf-2027-q1";
    async fn entries(api: &Api, token: &str, path: &str, n: usize) -> Value {
        eventually("the ledger", || async {
            let (_, v) = api.call("get", path, Some(token), None).await;
            (v["budget"]["entries"].as_array().map(Vec::len) == Some(n)).then_some(v)
        })
        .await
    }
    entries(&pa, &pt, at_partner, 1).await;
    let act = |kind: &str, body: Value| json!({"kind": kind, "body": body}).to_string();
    expect(&pa, "post", &format!("{at_partner}/messages"), &pt, Some(&act("mdf.request", json!({"request": "booth", "activity": "Taipei trade show booth",
        "starts_on": "2027-02-01", "ends_on": "2027-02-03", "expected_cost": {"amount": 6_000_000, "currency": "TWD"}, "expected_leads": 40,
        "expected_revenue": {"amount": 50_000_000, "currency": "TWD"}, "campaign": "spring"}))), 200).await;
    eventually("the request at acme", || async {
        let (_, v) = va.call("get", at_vendor, Some(&vt), None).await;
        (v["budget"]["requests"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    expect(&va, "post", &format!("{at_vendor}/messages"), &vt, Some(&act("mdf.decision", json!({"request": "booth", "decision": "approved", "amount": 5_000_000, "reason": "capped"}))), 200).await;
    entries(&pa, &pt, at_partner, 2).await;

    // Bad claims: over the approved amount, another currency, a duplicate invoice.
    let claim = |id: &str, amount: i64, currency: &str, invoice: &str| {
        act(
            "mdf.claim",
            json!({"claim": id, "request": "booth", "amount": {"amount": amount, "currency": currency},
            "invoice_number": invoice, "invoice_date": "2027-02-10", "proofs": []}),
        )
    };
    let v = expect(
        &pa,
        "post",
        &format!("{at_partner}/messages"),
        &pt,
        Some(&claim("c1", 5_000_001, "TWD", "INV-9")),
        422,
    )
    .await;
    assert_eq!(v["code"], "invalid_amount", "{v}");
    let v = expect(
        &pa,
        "post",
        &format!("{at_partner}/messages"),
        &pt,
        Some(&claim("c1", 100, "EUR", "INV-9")),
        422,
    )
    .await;
    assert_eq!(v["code"], "bad_body", "{v}");
    expect(
        &pa,
        "post",
        &format!("{at_partner}/messages"),
        &pt,
        Some(&claim("c1", 4_000_000, "TWD", "INV-9")),
        200,
    )
    .await;
    let v = expect(
        &pa,
        "post",
        &format!("{at_partner}/messages"),
        &pt,
        Some(&claim("c2", 500_000, "TWD", "INV-9")),
        422,
    )
    .await;
    assert!(v["message"].as_str().unwrap_or("").contains("INV-9"), "{v}");
    entries(&va, &vt, at_vendor, 3).await;
    expect(&va, "post", &format!("{at_vendor}/messages"), &vt, Some(&act("mdf.claim_decision", json!({"claim": "c1", "decision": "partial", "amount": 3_500_000, "reason": "one receipt missing"}))), 200).await;
    expect(&va, "post", &format!("{at_vendor}/messages"), &vt, Some(&act("mdf.paid", json!({"claim": "c1", "amount": 3_500_000, "reference": "TT-2027-88", "paid_on": "2027-03-01"}))), 200).await;

    // Both ledgers identical and sound.
    let ours = entries(&va, &vt, at_vendor, 6).await;
    let theirs = entries(&pa, &pt, at_partner, 6).await;
    assert_eq!(
        ours["budget"], theirs["budget"],
        "both daemons hold the same ledger"
    );
    let balances = &ours["budget"]["balances"];
    assert_eq!(
        (
            balances["available"].as_i64(),
            balances["reserved"].as_i64(),
            balances["paid"].as_i64(),
            balances["funding"].as_i64()
        ),
        (
            Some(5_000_000),
            Some(1_500_000),
            Some(3_500_000),
            Some(-10_000_000)
        ),
        "{balances}"
    );
    let roi = expect(&va, "get", "/api/v1/mdf/roi", &vt, None, 200).await;
    assert_eq!(
        (
            roi["activities"][0]["request"].as_str(),
            roi["activities"][0]["campaign"].as_str(),
            roi["activities"][0]["spend"].as_i64()
        ),
        (Some("booth"), Some("spring"), Some(3_500_000)),
        "{roi}"
    );
    for node in [&p.vendor, &p.partner] {
        let out = node.cli(Path::new(BIN), &["ledger", "verify"]);
        assert!(out.contains("1 budget(s) checked"), "{out}");
    }
    expect(
        &va,
        "post",
        &format!("{at_vendor}/checkpoint"),
        &vt,
        None,
        200,
    )
    .await;

    // Inject a divergence into the partner's store: entry 2 says 4,000,000
    // was reserved (balances adjusted, so its own ledger still adds up).
    p.with_partner_stopped(Path::new(BIN), |partner| {
        let store = Store::open(&partner.data_dir()).expect("store");
        store
            .transact(|w| -> Result<(), guanxi_adapters::store::StoreError> {
                let bytes = w.record("acme", "mdf-2027-q1")?.expect("budget");
                let mut record: Record = serde_json::from_slice(&bytes).expect("record");
                let Record::Mdf(b) = &mut record else {
                    panic!("not a budget")
                };
                b.entries[1].amount = 4_000_000;
                b.balances = balances_of(&b.entries).expect("fits");
                w.put_record(
                    "acme",
                    "mdf-2027-q1",
                    &serde_json::to_vec(&record).expect("json"),
                )
            })
            .expect("inject");
    })
    .await;
    let out = p.partner.cli(Path::new(BIN), &["ledger", "verify"]);
    assert!(
        out.contains("1 budget(s) checked"),
        "a consistent but different ledger passes its own check: {out}"
    );
    expect(
        &va,
        "post",
        &format!("{at_vendor}/checkpoint"),
        &vt,
        None,
        200,
    )
    .await;
    let mismatch = eventually("the mismatch at acme", || async {
        let (_, v) = p.vendor.admin("GET", "/admin/v1/rejected", None).await;
        v["outgoing"]
            .as_array()?
            .iter()
            .find(|e| e["reason"]["code"] == "ledger_mismatch")
            .cloned()
    })
    .await;
    assert!(
        mismatch["reason"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("from entry 2"),
        "{mismatch}"
    );
    let (_, at_globex) = p.partner.admin("GET", "/admin/v1/rejected", None).await;
    assert_eq!(
        at_globex["incoming"][0]["reason"]["code"], "ledger_mismatch",
        "shown on both sides: {at_globex}"
    );
}

/// What is unused at the end of a budget's period expires on its own, also
/// for a partner without a daemon; reserved money stays reserved.
#[tokio::test]
async fn unused_funds_expire_after_the_period_with_a_moved_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = guanxi_tests::NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    expect(
        &api,
        "post",
        "/api/v1/partners",
        &admin,
        Some(
            &json!({"id": "initech", "name": "Initech", "type": "agent", "tier": "",
        "country": "TW", "region": "", "stage": "active", "peer": null})
            .to_string(),
        ),
        201,
    )
    .await;
    expect(
        &api,
        "post",
        "/api/v1/partners/initech/users",
        &admin,
        Some(r#"{"username": "ina"}"#),
        201,
    )
    .await;
    let ina = node.token(Path::new(BIN), "ina-t", "ina");
    let today = guanxi::orders::day_of(guanxi::clock::now_ms())
        .expect("today")
        .to_string();
    let allocate = json!({"partner": "initech", "budget": "fy", "body": {"action": "allocate", "amount": 1_000_000, "currency": "TWD",
        "period": "FY", "allow_overdraw": false, "expires_on": today, "note": ""}}).to_string();
    expect(&api, "post", "/api/v1/mdf", &admin, Some(&allocate), 201).await;
    let path = "/api/v1/mdf/web:initech/mdf-fy";
    expect(&api, "post", &format!("{path}/messages"), &ina, Some(&json!({"kind": "mdf.request", "body": {"request": "r1", "activity": "mailing",
        "starts_on": "2027-01-01", "ends_on": "2027-01-31", "expected_cost": {"amount": 300_000, "currency": "TWD"}, "expected_leads": 5,
        "expected_revenue": null, "campaign": ""}}).to_string()), 200).await;
    expect(
        &api,
        "post",
        &format!("{path}/messages"),
        &admin,
        Some(
            &json!({"kind": "mdf.decision", "body": {"request": "r1",
        "decision": "approved", "amount": 300_000, "reason": ""}})
            .to_string(),
        ),
        200,
    )
    .await;
    // Still the same day: nothing expires (a whole round of the expiry timer
    // runs after the approval).
    node.full_timer_round("mdf_expiry").await;
    let v = expect(&api, "get", path, &ina, None, 200).await;
    assert_eq!(v["budget"]["expired"], false, "{v}");
    node.set_clock_offset(3 * 86_400_000);
    let v = eventually("the expiry", || async {
        let (_, v) = api.call("get", path, Some(&ina), None).await;
        (v["budget"]["expired"] == true).then_some(v)
    })
    .await;
    let b = &v["budget"]["balances"];
    assert_eq!(
        (
            b["available"].as_i64(),
            b["expired"].as_i64(),
            b["reserved"].as_i64()
        ),
        (Some(0), Some(700_000), Some(300_000)),
        "{v}"
    );
    node.cli(Path::new(BIN), &["ledger", "verify"]);
    drop(daemon);
}
