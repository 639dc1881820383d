//! The partner journey on a real daemon: a partner applied by hand moves
//! to onboarding when it gets a web user, to first deal when it wins a
//! lead, to growing with enough activity, to at risk when activity falls
//! and to dormant when it stops (the clock moved months ahead); every
//! change is on its timeline with its reason, and the overview counts the
//! partners per stage.

use crate::web::{Browser, add_partner_user};
use guanxi_tests::{Api, eventually, expect};
use serde_json::json;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");
const DAY: i64 = 86_400_000;

async fn stage_of(staff: &mut Browser, id: &str) -> String {
    let page = staff.get(&format!("/partners/{id}")).await;
    page.body
        .split("id=\"journey-stage\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or("")
        .to_string()
}

async fn wait_for_stage(pair: &guanxi_tests::Pair, pw: &str, id: &str, want: &str) {
    eventually(&format!("{id} at {want}"), || async {
        let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
        assert_eq!(staff.login("admin", pw).await.status, 303);
        (stage_of(&mut staff, id).await == want).then_some(())
    })
    .await;
}

fn lead(company: &str) -> String {
    json!({
        "customer": {"company": company, "contact": "Lin Mei", "email": "it@example.tw", "phone": ""},
        "country": "TW", "region": "", "product_lines": ["cnc"],
        "estimated_value": {"amount": 1_250_000, "currency": "TWD"},
        "source": "web", "campaign": "", "consent": true, "notes": ""
    })
    .to_string()
}

#[tokio::test]
async fn a_partner_moves_along_its_journey_as_events_arrive() {
    let bin = Path::new(BIN);
    let pair = guanxi_tests::two_nodes(bin).await;
    let va = Api::of(&pair.vendor, &pair.vendor_daemon);
    let vt = pair.vendor.token(bin, "journey", "admin");
    let p = json!({"id": "webco", "name": "Webco", "type": "reseller", "tier": "gold", "country": "TW",
        "region": "", "stage": "applied", "peer": null});
    expect(
        &va,
        "post",
        "/api/v1/partners",
        &vt,
        Some(&p.to_string()),
        201,
    )
    .await;
    let rules = json!({"offer_hours": 48, "rules": [{"name": "tw", "countries": ["TW"], "product_lines": [],
        "tiers": ["gold"], "capacity": 0, "strategy": "round_robin", "weights": {}}]});
    expect(
        &va,
        "put",
        "/api/v1/lead-rules",
        &vt,
        Some(&rules.to_string()),
        200,
    )
    .await;
    let pw = pair.vendor_daemon.first_admin_password().expect("pw");
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(staff.login("admin", &pw).await.status, 303);
    assert_eq!(stage_of(&mut staff, "webco").await, "Applied");
    // Growing takes two pieces of activity here; the stage's checklist.
    let form = staff.get("/journey/settings").await;
    let saved = staff
        .post(
            "/journey/settings",
            &[
                ("csrf", &Browser::csrf(&form)),
                ("growing_min", "2"),
                ("at_risk_percent", "50"),
                ("checklist_onboarding", "入口導覽\n首份價目表"),
                ("owner_onboarding", "Mei"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);

    // A web user: onboarding (the journey looks again within an hour).
    let wen_pw = add_partner_user(&mut staff, "webco", "wen", "Wen").await;
    let _ = wen_pw;
    pair.vendor.set_clock_offset(2 * 3_600_000);
    wait_for_stage(&pair, &pw, "webco", "Onboarding").await;
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(staff.login("admin", &pw).await.status, 303);
    let page = staff.get("/partners/webco").await;
    assert!(
        page.body.contains("入口導覽") && page.body.contains("Owner: Mei"),
        "{}",
        page.body
    );
    let done = staff
        .post(
            "/partners/webco/journey",
            &[("csrf", &Browser::csrf(&page)), ("item1", "yes")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = staff.get("/partners/webco").await;
    assert!(
        page.body.contains("name=\"item1\" value=\"yes\" checked")
            && !page.body.contains("name=\"item0\" value=\"yes\" checked"),
        "{}",
        page.body
    );

    // A lead won: first deal; another answered: growing.
    let wen = pair.vendor.token(bin, "wen-script", "wen");
    for company in ["Contoso", "Fabrikam"] {
        expect(&va, "post", "/api/v1/leads", &vt, Some(&lead(company)), 201).await;
    }
    let offers = eventually("two offers", || async {
        let (_, v) = va.call("get", "/api/v1/offers", Some(&wen), None).await;
        v["offers"].as_array().filter(|o| o.len() == 2).cloned()
    })
    .await;
    let path = |o: &serde_json::Value| {
        format!(
            "/api/v1/offers/acme/{}/messages",
            o["subject"].as_str().unwrap_or("")
        )
    };
    let (first, second) = (&offers[0], &offers[1]);
    expect(
        &va,
        "post",
        &path(first),
        &wen,
        Some(r#"{"kind":"lead.accept","body":{"note":""}}"#),
        200,
    )
    .await;
    let won = json!({"kind": "lead.update", "body": {"status": "won", "won_value": {"amount": 900_000, "currency": "TWD"},
        "won_on": "2026-12-01", "lost_reason": null, "note": ""}});
    expect(&va, "post", &path(first), &wen, Some(&won.to_string()), 200).await;
    wait_for_stage(&pair, &pw, "webco", "First deal").await;
    let decline = json!({"kind": "lead.decline", "body": {"reason": "no_capacity", "note": ""}});
    expect(
        &va,
        "post",
        &path(second),
        &wen,
        Some(&decline.to_string()),
        200,
    )
    .await;
    wait_for_stage(&pair, &pw, "webco", "Growing").await;

    // Four months on with nothing done: at risk; seven: dormant.
    pair.vendor.set_clock_offset(120 * DAY);
    wait_for_stage(&pair, &pw, "webco", "At risk").await;
    pair.vendor.set_clock_offset(220 * DAY);
    wait_for_stage(&pair, &pw, "webco", "Dormant").await;

    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(staff.login("admin", &pw).await.status, 303);
    let page = staff.get("/partners/webco").await;
    let timeline = page
        .body
        .split("id=\"journey-timeline\">")
        .nth(1)
        .and_then(|r| r.split("</ol>").next())
        .unwrap_or("")
        .to_string();
    for step in [
        "Applied → Onboarding · Guanxi (automatic) — a web user or a daemon",
        "Onboarding → First deal · Guanxi (automatic) — a lead won or an order invoiced",
        "First deal → Growing · Guanxi (automatic) — activity in the last three months",
        "Growing → At risk · Guanxi (automatic) — activity fell",
        "At risk → Dormant · Guanxi (automatic) — no activity in six months",
        "Applied · <code>admin</code> — set by hand",
    ] {
        assert!(timeline.contains(step), "{step}: {timeline}");
    }
    let overview = staff.get("/journey").await;
    let row = |stage: &str| {
        overview
            .body
            .split(&format!("{stage}</th><td>"))
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap_or("")
            .to_string()
    };
    assert!(
        row("Dormant") == "1"
            && row("Applied") == "0"
            && overview
                .body
                .contains("Growing <strong id=\"journey-stall\">"),
        "one partner, dormant; it stayed longest at growing: {}",
        overview.body
    );
    crate::web::all_in_chinese(
        &mut staff,
        &["/journey", "/journey/settings", "/partners/webco"],
    )
    .await;
}
