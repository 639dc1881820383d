//! Leads across real daemons: a lead offered over federation, accepted and
//! won at the partner's daemon and counted by the vendor's analysis; deal
//! registration with conflicts; offer expiry and re-offer with a shifted
//! clock across a restart; and illegal transitions refused with their reason
//! on the federation, API and web-partner channels.

use guanxi_tests::{Api, NodeSetup, eventually, expect, two_nodes};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");
const HOUR: i64 = 3_600_000;

fn lead_body(company: &str, email: &str, consent: bool) -> String {
    json!({
        "customer": {"company": company, "contact": "Lin Mei", "email": email, "phone": "+886 2 2345 6789"},
        "country": "TW", "region": "Taipei", "product_lines": ["cnc", "laser"],
        "estimated_value": {"amount": 1_250_000, "currency": "TWD"},
        "source": "trade-show", "campaign": "spring-2027", "consent": consent, "notes": "wants a demo"
    })
    .to_string()
}

fn partner_body(id: &str, peer: Option<&str>) -> String {
    json!({"id": id, "name": id, "type": "reseller", "tier": "gold", "country": "TW", "region": "",
           "stage": "active", "peer": peer})
    .to_string()
}

#[tokio::test]
async fn a_lead_offered_over_federation_is_accepted_won_and_counted() {
    let p = two_nodes(Path::new(BIN)).await;
    let (va, pa, vt, pt) = p.apis(Path::new(BIN));

    expect(
        &va,
        "post",
        "/api/v1/partners",
        &vt,
        Some(&partner_body("globex", Some("globex"))),
        201,
    )
    .await;
    let rules = json!({"offer_hours": 48, "rules": [{"name": "taiwan", "countries": ["TW"], "product_lines": [],
        "tiers": ["gold"], "capacity": 5, "strategy": "round_robin", "weights": {}}]});
    expect(
        &va,
        "put",
        "/api/v1/lead-rules",
        &vt,
        Some(&rules.to_string()),
        200,
    )
    .await;

    // A lead without consent is never sent.
    let held = expect(
        &va,
        "post",
        "/api/v1/leads",
        &vt,
        Some(&lead_body("Fabrikam", "", false)),
        201,
    )
    .await;
    assert_eq!(
        (held["status"].as_str(), held["hold"].as_str()),
        (Some("unassigned"), Some("no_consent")),
        "{held}"
    );
    let v = expect(
        &va,
        "post",
        &format!("/api/v1/leads/{}/assign", held["id"].as_str().unwrap_or("")),
        &vt,
        Some(r#"{"partner":"globex"}"#),
        403,
    )
    .await;
    assert_eq!(v["code"], "not_allowed");

    // With consent it goes to globex by the rule, and the trace says why.
    let lead = expect(
        &va,
        "post",
        "/api/v1/leads",
        &vt,
        Some(&lead_body("Contoso Ltd.", "it@contoso.tw", true)),
        201,
    )
    .await;
    let id = lead["id"].as_str().expect("id").to_string();
    assert_eq!(lead["offers"][0]["partner"], "globex", "{lead}");
    assert_eq!(lead["offers"][0]["record"]["status"], "offered");
    let trace: Vec<&str> = lead["rounds"][0]["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .filter_map(|s| s["code"].as_str())
        .collect();
    assert_eq!(trace, vec!["rule", "eligible", "round_robin"], "{lead}");

    // It arrives in globex's own Guanxi as an incoming lead.
    let offer = eventually("the offer at globex", || async {
        let (_, v) = pa.call("get", "/api/v1/offers", Some(&pt), None).await;
        v["offers"].as_array().and_then(|o| o.first().cloned())
    })
    .await;
    let subject = offer["subject"].as_str().expect("subject").to_string();
    assert_eq!(
        (offer["status"].as_str(), offer["vendor"].as_str()),
        (Some("offered"), Some("acme"))
    );
    let path = format!("/api/v1/offers/acme/{subject}/messages");
    let won = json!({"kind": "lead.update", "body": {"status": "won", "won_value": {"amount": 1_200_000, "currency": "TWD"},
        "won_on": "2026-12-01", "lost_reason": null, "note": "signed"}}).to_string();

    // Won before accepted: refused with its reason, nothing sent.
    let v = expect(&pa, "post", &path, &pt, Some(&won), 409).await;
    assert_eq!(v["code"], "illegal_transition", "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("accepted"),
        "{v}"
    );
    // A bad body names the field.
    let v = expect(
        &pa,
        "post",
        &path,
        &pt,
        Some(r#"{"kind":"lead.decline","body":{"reason":"bored","note":""}}"#),
        422,
    )
    .await;
    assert_eq!(v["code"], "bad_body", "{v}");

    let accepted = expect(
        &pa,
        "post",
        &path,
        &pt,
        Some(r#"{"kind":"lead.accept","body":{"note":"on it"}}"#),
        200,
    )
    .await;
    assert_eq!(accepted["status"], "accepted");
    let v = expect(
        &pa,
        "post",
        &path,
        &pt,
        Some(r#"{"kind":"lead.accept","body":{"note":""}}"#),
        409,
    )
    .await;
    assert_eq!(v["code"], "illegal_transition");
    expect(&pa, "post", &path, &pt, Some(&won), 200).await;

    // The vendor sees the same state and history, and counts the win.
    let at_vendor = eventually("won at the vendor", || async {
        let (_, v) = va
            .call("get", &format!("/api/v1/leads/{id}"), Some(&vt), None)
            .await;
        (v["status"] == "won").then_some(v)
    })
    .await;
    let (_, at_partner) = pa.call("get", "/api/v1/offers", Some(&pt), None).await;
    let mut partner_record = at_partner["offers"][0].clone();
    partner_record.as_object_mut().map(|m| m.remove("subject"));
    assert_eq!(
        at_vendor["offers"][0]["record"], partner_record,
        "both daemons hold the same record"
    );
    let kinds: Vec<&str> = partner_record["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["lead.offer", "lead.accept", "lead.update"]);

    let a = expect(
        &va,
        "get",
        "/api/v1/leads/analysis?group=partner",
        &vt,
        None,
        200,
    )
    .await;
    let row = &a["rows"][0];
    assert_eq!(
        (
            row["key"].as_str(),
            row["offered"].as_u64(),
            row["accepted"].as_u64(),
            row["won"].as_u64(),
            row["win_rate_permille"].as_u64(),
            row["won_value"]["TWD"].as_i64()
        ),
        (
            Some("globex"),
            Some(1),
            Some(1),
            Some(1),
            Some(1000),
            Some(1_200_000)
        ),
        "{a}"
    );
    let a = expect(
        &va,
        "get",
        "/api/v1/leads/analysis?group=campaign&from=2000-01-01&to=2999-12-31",
        &vt,
        None,
        200,
    )
    .await;
    assert_eq!(a["rows"][0]["key"], "spring-2027", "{a}");
    let v = expect(
        &va,
        "get",
        "/api/v1/leads/analysis?group=colour",
        &vt,
        None,
        422,
    )
    .await;
    assert_eq!(v["field"], "group");

    // Deal registration: globex registers the same customer; acme sees the
    // conflict, approves; the signed answer arrives back at globex.
    let deal = json!({"vendor": "acme", "deal": {"customer": {"company": "CONTOSO LTD", "contact": "", "email": "buyer@contoso.tw", "phone": ""},
        "country": "TW", "region": "", "product_lines": ["CNC"], "estimated_value": null, "expected_close": "2027-03-31", "notes": ""}}).to_string();
    let filed = expect(&pa, "post", "/api/v1/deals", &pt, Some(&deal), 201).await;
    assert_eq!(filed["status"], "submitted");
    let other = json!({"vendor": "acme", "deal": {"customer": {"company": "Initech", "contact": "", "email": "", "phone": ""},
        "country": "TW", "region": "", "product_lines": ["cnc"], "estimated_value": null, "expected_close": null, "notes": ""}}).to_string();
    expect(&pa, "post", "/api/v1/deals", &pt, Some(&other), 201).await;
    let regs = eventually("registrations at acme", || async {
        let (_, v) = va
            .call("get", "/api/v1/registrations", Some(&vt), None)
            .await;
        v["registrations"]
            .as_array()
            .filter(|r| r.len() == 2)
            .cloned()
    })
    .await;
    let contoso = regs
        .iter()
        .find(|r| r["deal"]["customer"]["company"] == "CONTOSO LTD")
        .expect("contoso");
    let initech = regs
        .iter()
        .find(|r| r["deal"]["customer"]["company"] == "Initech")
        .expect("initech");
    assert_eq!(
        initech["conflicts"].as_array().map(Vec::len),
        Some(0),
        "{initech}"
    );
    let conflict = &contoso["conflicts"][0];
    assert_eq!(conflict["link"], format!("/leads/{id}"), "{contoso}");
    assert_eq!(conflict["matched_on"], json!(["company", "email_domain"]));
    let decision = format!(
        "/api/v1/registrations/{}/{}/decision",
        contoso["key"].as_str().unwrap_or(""),
        contoso["subject"].as_str().unwrap_or("")
    );
    let v = expect(
        &va,
        "post",
        &decision,
        &vt,
        Some(r#"{"decision":"approved","exclusive_until":null,"reason":null,"note":""}"#),
        422,
    )
    .await;
    assert_eq!(v["code"], "bad_body", "approval needs a date: {v}");
    expect(&va, "post", &decision, &vt, Some(r#"{"decision":"approved","exclusive_until":"2027-06-30","reason":null,"note":"yours"}"#), 200).await;
    let v = expect(
        &va,
        "post",
        &decision,
        &vt,
        Some(r#"{"decision":"rejected","exclusive_until":null,"reason":"late","note":""}"#),
        409,
    )
    .await;
    assert_eq!(v["code"], "illegal_transition");
    eventually("the approval at globex", || async {
        let (_, v) = pa.call("get", "/api/v1/deals", Some(&pt), None).await;
        v["deals"]
            .as_array()?
            .iter()
            .find(|d| d["status"] == "approved" && d["exclusive_until"] == "2027-06-30")
            .cloned()
    })
    .await;

    // Withdrawing a won lead is refused at the vendor.
    let v = expect(
        &va,
        "post",
        &format!("/api/v1/leads/{id}/withdraw"),
        &vt,
        Some(r#"{"reason":"oops"}"#),
        409,
    )
    .await;
    assert_eq!(v["code"], "illegal_transition");
}

#[tokio::test]
async fn an_unanswered_offer_expires_and_goes_to_the_next_partner_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    for (org, user) in [("alpha", "alice"), ("beta", "bob")] {
        expect(
            &api,
            "post",
            "/api/v1/partners",
            &admin,
            Some(&partner_body(org, None)),
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
    let alice = node.token(Path::new(BIN), "alice-t", "alice");
    let bob = node.token(Path::new(BIN), "bob-t", "bob");
    expect(
        &api,
        "put",
        "/api/v1/lead-rules",
        &admin,
        Some(r#"{"offer_hours":1,"rules":[]}"#),
        200,
    )
    .await;

    let lead = expect(
        &api,
        "post",
        "/api/v1/leads",
        &admin,
        Some(&lead_body("Contoso", "", true)),
        201,
    )
    .await;
    let id = lead["id"].as_str().expect("id").to_string();
    assert_eq!(lead["offers"][0]["partner"], "alpha", "{lead}");
    let first = lead["offers"][0]["subject"]
        .as_str()
        .expect("subject")
        .to_string();

    // Each partner sees only its own offers; bob cannot act on alpha's.
    let (_, v) = api.call("get", "/api/v1/offers", Some(&alice), None).await;
    assert_eq!(v["offers"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = api.call("get", "/api/v1/offers", Some(&bob), None).await;
    assert_eq!(v["offers"].as_array().map(Vec::len), Some(0), "{v}");
    let accept = r#"{"kind":"lead.accept","body":{"note":""}}"#;
    let v = expect(
        &api,
        "post",
        &format!("/api/v1/offers/acme/{first}/messages"),
        &bob,
        Some(accept),
        404,
    )
    .await;
    assert_eq!(v["code"], "unknown_record", "{v}");
    // Staff cannot answer on behalf of a web partner either.
    expect(
        &api,
        "post",
        &format!("/api/v1/offers/acme/{first}/messages"),
        &admin,
        Some(accept),
        404,
    )
    .await;

    // Stop, move the clock past the deadline and its grace, start again.
    daemon.terminate(Duration::from_secs(10)).expect("stops");
    node.set_clock_offset(2 * HOUR);
    let daemon = node.start(Path::new(BIN)).expect("restarts");
    let api = Api::of(&node, &daemon);
    let moved = eventually("the expiry and re-offer", || async {
        let (_, v) = api
            .call("get", &format!("/api/v1/leads/{id}"), Some(&admin), None)
            .await;
        (v["offers"].as_array().map(Vec::len) == Some(2)).then_some(v)
    })
    .await;
    assert_eq!(moved["offers"][0]["record"]["status"], "expired", "{moved}");
    assert_eq!(moved["offers"][1]["partner"], "beta");
    assert_eq!(moved["offers"][1]["record"]["status"], "offered");
    let second_trace: Vec<(&str, &str)> = moved["rounds"][1]["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .map(|s| {
            (
                s["code"].as_str().unwrap_or(""),
                s["partner"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        second_trace.contains(&("already_offered", "alpha")),
        "{second_trace:?}"
    );
    let second = moved["offers"][1]["subject"]
        .as_str()
        .expect("subject")
        .to_string();

    // Accept after expiry: refused as expired.
    let v = expect(
        &api,
        "post",
        &format!("/api/v1/offers/acme/{first}/messages"),
        &alice,
        Some(accept),
        409,
    )
    .await;
    assert_eq!(v["code"], "expired", "{v}");
    expect(
        &api,
        "post",
        &format!("/api/v1/offers/acme/{second}/messages"),
        &bob,
        Some(accept),
        200,
    )
    .await;

    // Withdrawn by the vendor: bob is told and can no longer report progress.
    expect(
        &api,
        "post",
        &format!("/api/v1/leads/{id}/withdraw"),
        &admin,
        Some(r#"{"reason":"customer bought direct"}"#),
        200,
    )
    .await;
    let (_, v) = api.call("get", "/api/v1/offers", Some(&bob), None).await;
    assert_eq!(v["offers"][0]["status"], "withdrawn", "{v}");
    let contacted = r#"{"kind":"lead.update","body":{"status":"contacted","won_value":null,"won_on":null,"lost_reason":null,"note":""}}"#;
    let v = expect(
        &api,
        "post",
        &format!("/api/v1/offers/acme/{second}/messages"),
        &bob,
        Some(contacted),
        409,
    )
    .await;
    assert_eq!(v["code"], "expired", "{v}");
    // A withdrawn lead is not re-offered by the sweeper (a whole round of it
    // runs after the withdrawal).
    node.full_timer_round("lead_sweeper").await;
    let (_, v) = api
        .call("get", &format!("/api/v1/leads/{id}"), Some(&admin), None)
        .await;
    assert_eq!(
        (v["offers"].as_array().map(Vec::len), v["hold"].as_str()),
        (Some(2), Some("withdrawn")),
        "{v}"
    );

    // A decline, with its reason, sends the next lead on at once: a new lead
    // goes to alpha (round robin after beta), alpha declines, beta gets it.
    let next = expect(
        &api,
        "post",
        "/api/v1/leads",
        &admin,
        Some(&lead_body("Initech", "", true)),
        201,
    )
    .await;
    let next_id = next["id"].as_str().expect("id").to_string();
    assert_eq!(next["offers"][0]["partner"], "alpha", "{next}");
    let subject = next["offers"][0]["subject"]
        .as_str()
        .expect("subject")
        .to_string();
    let decline =
        r#"{"kind":"lead.decline","body":{"reason":"no_capacity","note":"busy this month"}}"#;
    expect(
        &api,
        "post",
        &format!("/api/v1/offers/acme/{subject}/messages"),
        &alice,
        Some(decline),
        200,
    )
    .await;
    let moved = eventually("the re-offer after a decline", || async {
        let (_, v) = api
            .call(
                "get",
                &format!("/api/v1/leads/{next_id}"),
                Some(&admin),
                None,
            )
            .await;
        (v["offers"].as_array().map(Vec::len) == Some(2)).then_some(v)
    })
    .await;
    assert_eq!(
        (
            moved["offers"][0]["record"]["decline_reason"].as_str(),
            moved["offers"][1]["partner"].as_str()
        ),
        (Some("no_capacity"), Some("beta")),
        "{moved}"
    );

    // The analysis counts one expired and one declined offer to alpha.
    let a = expect(&api, "get", "/api/v1/leads/analysis", &admin, None, 200).await;
    let alpha = a["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["key"] == "alpha"))
        .expect("alpha row");
    assert_eq!(
        (
            alpha["offered"].as_u64(),
            alpha["expired"].as_u64(),
            alpha["declined"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{a}"
    );
    // The kept analysis equals a recomputation from the leads.
    let out = node.cli(Path::new(BIN), &["ledger", "verify"]);
    assert!(out.contains("equals a recomputation"), "{out}");
    drop(daemon);
}

#[tokio::test]
async fn csv_import_is_all_or_nothing_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    let bad = "company,country,product_lines,consent\nContoso,TW,cnc,yes\nInitech,Taiwan,cnc,yes\n";
    let (status, v) = api
        .call("post", "/api/v1/leads/import", Some(&admin), Some(bad))
        .await;
    assert_eq!((status, v["code"].as_str()), (422, Some("bad_csv")), "{v}");
    assert_eq!(
        (v["rows"][0]["row"].as_u64(), v["rows"][0]["field"].as_str()),
        (Some(3), Some("country")),
        "{v}"
    );
    let (_, all) = api.call("get", "/api/v1/leads", Some(&admin), None).await;
    assert_eq!(
        all["leads"].as_array().map(Vec::len),
        Some(0),
        "nothing imported: {all}"
    );
    let good =
        "company,country,product_lines,consent\nContoso,TW,cnc,yes\nInitech,TW,cnc;laser,no\n";
    let (status, v) = api
        .call("post", "/api/v1/leads/import", Some(&admin), Some(good))
        .await;
    assert_eq!(status, 201, "{v}");
    let (_, all) = api.call("get", "/api/v1/leads", Some(&admin), None).await;
    let holds: Vec<Option<&str>> = all["leads"]
        .as_array()
        .expect("leads")
        .iter()
        .map(|l| l["hold"].as_str())
        .collect();
    // No partners yet: the consenting lead waits for a partner, the other for consent.
    assert_eq!(holds.len(), 2);
    assert!(
        holds.contains(&Some("nobody")) && holds.contains(&Some("no_consent")),
        "{holds:?}"
    );
    drop(daemon);
}

/// The vendor withdraws while its stream to the partner is cut; the
/// partner, not yet told, accepts. The vendor's daemon rejects the
/// acceptance over federation with `expired`, and once the stream is back
/// the withdrawal reaches the partner: both end withdrawn, with one history.
#[tokio::test]
async fn an_acceptance_crossing_a_withdrawal_is_rejected_over_federation_and_both_converge() {
    let p = two_nodes(Path::new(BIN)).await;
    let (va, pa, vt, pt) = p.apis(Path::new(BIN));
    expect(
        &va,
        "post",
        "/api/v1/partners",
        &vt,
        Some(&partner_body("globex", Some("globex"))),
        201,
    )
    .await;
    let lead = expect(
        &va,
        "post",
        "/api/v1/leads",
        &vt,
        Some(&lead_body("Contoso", "", true)),
        201,
    )
    .await;
    let id = lead["id"].as_str().expect("id").to_string();
    let offer = eventually("the offer at globex", || async {
        let (_, v) = pa.call("get", "/api/v1/offers", Some(&pt), None).await;
        v["offers"].as_array().and_then(|o| o.first().cloned())
    })
    .await;
    let subject = offer["subject"].as_str().expect("subject").to_string();

    // Cut the vendor → partner stream (the partner moved, as far as the
    // vendor knows), then withdraw: the withdrawal waits in the outbox.
    let good = std::fs::read_to_string(p.vendor.config_file()).expect("config");
    let dead = "https://127.0.0.1:0".to_string();
    let live = p.partner.url();
    std::fs::write(p.vendor.config_file(), good.replace(&live, &dead)).expect("write");
    p.vendor_daemon.hangup().expect("hup");
    eventually("the vendor to use the dead address", || async {
        (p.vendor.peer_status("globex").await["url"] == dead.as_str()).then_some(())
    })
    .await;
    expect(
        &va,
        "post",
        &format!("/api/v1/leads/{id}/withdraw"),
        &vt,
        Some(r#"{"reason":"customer bought direct"}"#),
        200,
    )
    .await;

    // The partner accepts; its daemon sends the acceptance, the vendor's
    // daemon rejects it with the reason.
    let path = format!("/api/v1/offers/acme/{subject}/messages");
    let v = expect(
        &pa,
        "post",
        &path,
        &pt,
        Some(r#"{"kind":"lead.accept","body":{"note":""}}"#),
        200,
    )
    .await;
    assert_eq!(v["status"], "accepted");
    let rejection = eventually("the rejection at the partner", || async {
        let (_, v) = p.partner.admin("GET", "/admin/v1/rejected", None).await;
        v["outgoing"]
            .as_array()?
            .iter()
            .find(|e| e["kind"] == "lead.accept")
            .cloned()
    })
    .await;
    assert_eq!(rejection["reason"]["code"], "expired", "{rejection}");
    assert!(
        rejection["reason"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("withdrawn"),
        "{rejection}"
    );
    let (_, v) = va
        .call("get", &format!("/api/v1/leads/{id}"), Some(&vt), None)
        .await;
    assert_eq!(v["offers"][0]["record"]["status"], "withdrawn", "{v}");

    // The stream comes back; the withdrawal arrives and wins.
    std::fs::write(p.vendor.config_file(), &good).expect("write");
    p.vendor_daemon.hangup().expect("hup");
    eventually("the vendor to use the live address", || async {
        (p.vendor.peer_status("globex").await["url"] == live.as_str()).then_some(())
    })
    .await;
    p.vendor.cli(Path::new(BIN), &["resume", "globex"]);
    let converged = eventually("the withdrawal at globex", || async {
        let (_, v) = pa.call("get", "/api/v1/offers", Some(&pt), None).await;
        let o = v["offers"].as_array()?.first()?.clone();
        (o["status"] == "withdrawn").then_some(o)
    })
    .await;
    let (_, v) = va
        .call("get", &format!("/api/v1/leads/{id}"), Some(&vt), None)
        .await;
    let mut at_partner = converged.clone();
    at_partner.as_object_mut().map(|m| m.remove("subject"));
    // The vendor is the lead's authority (SPEC §12.1): the refused acceptance
    // drops out of the partner's copy, and both hold the same history.
    assert_eq!(v["offers"][0]["record"]["status"], at_partner["status"]);
    let kinds = |history: &serde_json::Value| -> Vec<String> {
        history
            .as_array()
            .expect("history")
            .iter()
            .filter_map(|e| e["kind"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        kinds(&at_partner["history"]),
        vec!["lead.offer", "lead.withdraw"]
    );
    assert_eq!(
        at_partner["history"], v["offers"][0]["record"]["history"],
        "identical histories"
    );
}

/// The export streams every lead as CSV, a page at a time (more leads than
/// a page), newest first, in the import's columns after id, created, stage
/// and partner; partner users may not export.
#[tokio::test]
async fn every_lead_exports_as_streamed_csv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    let mut csv =
        String::from("company,country,product_lines,estimated_value,currency,campaign,consent\n");
    for i in 0..1_201 {
        csv.push_str(&format!(
            "\"Company {i:04}, Ltd.\",TW,cnc;laser,1200.50,TWD,spring,no\n"
        ));
    }
    let (status, v) = api
        .call("post", "/api/v1/leads/import", Some(&admin), Some(&csv))
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, body) = api
        .call("get", "/api/v1/leads/export", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("CSV text").to_string();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        &header[..5],
        &["id", "created", "stage", "partner", "company"],
        "{header:?}"
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1_201, "every lead once, across pages");
    let ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 1_201, "no repeats");
    sorted.reverse();
    assert_eq!(ids, sorted, "newest first");
    let newest = &rows[0];
    assert_eq!(
        (
            &newest[4],
            &newest[10],
            &newest[11],
            &newest[12],
            &newest[15]
        ),
        ("Company 1200, Ltd.", "cnc;laser", "1200.50", "TWD", "no"),
        "{newest:?}"
    );
    // A partner user may not.
    let partner = json!({"id": "p1", "name": "P1", "type": "reseller", "tier": "gold",
        "country": "TW", "region": "", "stage": "active", "peer": null});
    expect(
        &api,
        "post",
        "/api/v1/partners",
        &admin,
        Some(&partner.to_string()),
        201,
    )
    .await;
    let _ = node.cli(
        Path::new(BIN),
        &["user", "add", "ina", "--role", "partner", "--partner", "p1"],
    );
    let ina = node.token(Path::new(BIN), "ina-ci", "ina");
    let (status, _) = api
        .call("get", "/api/v1/leads/export", Some(&ina), None)
        .await;
    assert_eq!(status, 403);
    drop(daemon);
}

/// A web partner is offered leads while it has an enabled user and not
/// once its only user is disabled (the rules say it is unreachable): the
/// partner-user index follows the account's change.
#[tokio::test]
async fn a_partner_whose_only_user_is_disabled_is_not_offered_leads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("start");
    let api = Api::of(&node, &daemon);
    let token = node.token(Path::new(BIN), "staff-token", "admin");
    expect(
        &api,
        "post",
        "/api/v1/partners",
        &token,
        Some(&partner_body("initech", None)),
        201,
    )
    .await;
    expect(
        &api,
        "post",
        "/api/v1/partners/initech/users",
        &token,
        Some(r#"{"username":"mei"}"#),
        201,
    )
    .await;
    let offered = expect(
        &api,
        "post",
        "/api/v1/leads",
        &token,
        Some(&lead_body("Fabrikam", "", true)),
        201,
    )
    .await;
    assert_eq!(offered["status"], "offered", "{offered}");

    let (status, v) = node
        .admin("POST", "/admin/v1/users/mei/disable", None)
        .await;
    assert_eq!(status, 200, "{v}");
    let held = expect(
        &api,
        "post",
        "/api/v1/leads",
        &token,
        Some(&lead_body("Contoso", "", true)),
        201,
    )
    .await;
    assert_eq!(
        (held["status"].as_str(), held["hold"].as_str()),
        (Some("unassigned"), Some("nobody")),
        "{held}"
    );
    let trace = held["rounds"][0]["trace"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        trace
            .iter()
            .any(|s| s["code"] == "unreachable" && s["partner"] == "initech"),
        "{held}"
    );
}
