//! A partner that worked in the vendor's web view installs its own node
//! (SPEC §25): the vendor's invitation names its directory entry, the
//! partner's admin pastes the code into its own node's web view, and once
//! the code is used every record kept with the web partner — leads, an
//! MDF budget with its request, a service request with a photo — is handed
//! into the new stream with its history (the photo's bytes follow); the partner goes on with them in its own node,
//! the vendor's kept counts still match a recomputation, and the web users
//! are retired with a notice at sign-in.

use crate::web::Browser;
use guanxi_tests::{Api, NodeSetup, eventually, expect};
use serde_json::json;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

fn lead_body(company: &str) -> String {
    json!({
        "customer": {"company": company, "contact": "Lin Mei", "email": "it@example.tw", "phone": ""},
        "country": "TW", "region": "Taipei", "product_lines": ["cnc"],
        "estimated_value": {"amount": 500_000, "currency": "TWD"},
        "source": "web", "campaign": "", "consent": true, "notes": ""
    })
    .to_string()
}

/// acme keeps the service request and the lead's offer with taipei's
/// node, no longer with the web partner; answers the lead.
async fn kept_with_the_peer(
    api: &Api,
    token: &str,
    service: &str,
    lead: &str,
) -> serde_json::Value {
    let at = |key: &str| format!("/api/v1/service/{key}/{service}");
    expect(api, "get", &at("web:taipei"), token, None, 404).await;
    expect(api, "get", &at("taipei-auto"), token, None, 200).await;
    let lead = expect(
        api,
        "get",
        &format!("/api/v1/leads/{lead}"),
        token,
        None,
        200,
    )
    .await;
    assert_eq!(lead["offers"][0]["channel"], "peer", "{lead}");
    lead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_partners_records_follow_it_to_its_own_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = |id: &str| {
        std::fs::create_dir(dir.path().join(id)).expect("dir");
        NodeSetup::init(Path::new(BIN), &dir.path().join(id), id).expect("init")
    };
    let acme = setup("acme");
    let a = acme.start(Path::new(BIN)).expect("acme starts");
    let va = Api::of(&acme, &a);
    let vt = acme.token(Path::new(BIN), "staff", "admin");

    // Taipei Automation works in acme's web view as `taipei`.
    let partner = json!({"id": "taipei", "name": "Taipei Automation", "type": "reseller", "tier": "gold",
        "country": "TW", "region": "", "stage": "active", "peer": null});
    expect(
        &va,
        "post",
        "/api/v1/partners",
        &vt,
        Some(&partner.to_string()),
        201,
    )
    .await;
    let user = expect(
        &va,
        "post",
        "/api/v1/partners/taipei/users",
        &vt,
        Some(r#"{"username": "mei"}"#),
        201,
    )
    .await;
    let mei_password = user["password"].as_str().expect("password").to_string();
    let mei = acme.token(Path::new(BIN), "mei-t", "mei");
    let rules = json!({"offer_hours": 48, "rules": [{"name": "tw", "countries": ["TW"], "product_lines": [],
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
    let mut leads = Vec::new();
    for company in ["Contoso", "Fabrikam"] {
        let lead = expect(
            &va,
            "post",
            "/api/v1/leads",
            &vt,
            Some(&lead_body(company)),
            201,
        )
        .await;
        assert_eq!(lead["offers"][0]["channel"], "web", "{lead}");
        leads.push((
            lead["id"].as_str().expect("id").to_string(),
            lead["offers"][0]["subject"]
                .as_str()
                .expect("subject")
                .to_string(),
        ));
    }
    // Mei accepts the first in the web view.
    expect(
        &va,
        "post",
        &format!("/api/v1/offers/acme/{}/messages", leads[0].1),
        &mei,
        Some(r#"{"kind":"lead.accept","body":{"note":"ours"}}"#),
        200,
    )
    .await;
    let today = guanxi::orders::day_of(guanxi::clock::now_ms())
        .expect("today")
        .to_string();
    let allocate = json!({"partner": "taipei", "budget": "fy", "body": {"action": "allocate", "amount": 1_000_000,
        "currency": "TWD", "period": "FY", "allow_overdraw": false, "expires_on": today, "note": ""}});
    expect(
        &va,
        "post",
        "/api/v1/mdf",
        &vt,
        Some(&allocate.to_string()),
        201,
    )
    .await;
    let request = json!({"kind": "mdf.request", "body": {"request": "r1", "activity": "mailing",
        "starts_on": "2027-01-01", "ends_on": "2027-01-31", "expected_cost": {"amount": 300_000, "currency": "TWD"},
        "expected_leads": 5, "expected_revenue": null, "campaign": ""}});
    expect(
        &va,
        "post",
        "/api/v1/mdf/web:taipei/mdf-fy/messages",
        &mei,
        Some(&request.to_string()),
        200,
    )
    .await;
    let photo = b"\x89PNG\r\n\x1a\nalarm-41".to_vec();
    let attachment: serde_json::Value = va
        .client
        .post(format!("{}/api/v1/attachments?name=alarm.png", va.base))
        .header("authorization", format!("Bearer {mei}"))
        .header("content-type", "image/png")
        .body(photo.clone())
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let sha = attachment["sha256"].as_str().expect("sha256").to_string();
    let open = json!({"vendor": "acme", "body": {"customer": {"company": "Contoso", "contact": "", "email": "", "phone": ""},
        "sku": "CNC-5X", "serial": null, "problem": "alarm 41", "priority": "high", "attachments": [attachment]}});
    let opened = expect(
        &va,
        "post",
        "/api/v1/service",
        &mei,
        Some(&open.to_string()),
        201,
    )
    .await;
    let service = opened["subject"].as_str().expect("subject").to_string();

    // Taipei installs its own node, with its own id, and connects with
    // acme's invitation for the directory entry.
    let taipei = setup("taipei-auto");
    let t = taipei.start(Path::new(BIN)).expect("taipei starts");
    let ta = Api::of(&taipei, &t);
    let tt = taipei.token(Path::new(BIN), "staff", "admin");
    // A backup from before the hand-over (restored at the end).
    acme.cli(Path::new(BIN), &["backup", "acme.gxb"]);
    let code = acme.cli(Path::new(BIN), &["invite", "--partner", "taipei"]);
    // Its admin pastes the code into its own web view.
    let mut own_admin = Browser::new(&taipei, &t);
    let password = t.first_admin_password().expect("first admin");
    assert_eq!(own_admin.login("admin", &password).await.status, 303);
    let list = own_admin.get("/partners").await;
    assert!(list.body.contains("id=\"connect-link\""), "{}", list.body);
    crate::web::all_in_chinese(&mut own_admin, &["/connect", "/partners"]).await;
    own_admin.accept_language = None;
    let form = own_admin.get("/connect").await;
    let csrf = Browser::csrf(&form);
    let bad = own_admin
        .post(
            "/connect",
            &[("csrf", &csrf), ("code", "guanxi-invite-1.nonsense")],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.contains("not a valid invitation code"),
        "{}",
        bad.body
    );
    let done = own_admin
        .post("/connect", &[("csrf", &csrf), ("code", code.trim())])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("id=\"connected\"") && done.body.contains("<code>acme</code>"),
        "{}",
        done.body
    );

    // Every record arrives, with its history, the partner named by its
    // node's id.
    let offers = eventually("both offers at taipei-auto", || async {
        let (_, v) = ta.call("get", "/api/v1/offers", Some(&tt), None).await;
        v["offers"].as_array().filter(|o| o.len() == 2).cloned()
    })
    .await;
    let accepted = offers
        .iter()
        .find(|o| o["subject"] == leads[0].1.as_str())
        .expect("the accepted lead");
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    assert_eq!(accepted["vendor"], "acme");
    assert_eq!(accepted["partner"], "taipei-auto", "{accepted}");
    let history = accepted["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{accepted}");
    assert_eq!(history[1]["by"], "taipei-auto", "{accepted}");
    let budget = expect(&ta, "get", "/api/v1/mdf/acme/mdf-fy", &tt, None, 200).await;
    assert_eq!(
        budget["budget"]["requests"][0]["request"]["request"], "r1",
        "{budget}"
    );
    let request_there = expect(
        &ta,
        "get",
        &format!("/api/v1/service/acme/{service}"),
        &tt,
        None,
        200,
    )
    .await;
    assert_eq!(
        request_there["request"]["partner"], "taipei-auto",
        "{request_there}"
    );
    // Its photo follows it.
    let bytes = eventually("the photo at taipei-auto", || async {
        let r = ta
            .client
            .get(format!("{}/api/v1/attachments/{sha}", ta.base))
            .header("authorization", format!("Bearer {tt}"))
            .send()
            .await
            .ok()?;
        if r.status().as_u16() != 200 {
            return None;
        }
        r.bytes().await.ok()
    })
    .await;
    assert_eq!(bytes.as_ref(), photo.as_slice());

    // At acme they are kept with the peer now, not with the web partner.
    let lead = kept_with_the_peer(&va, &vt, &service, &leads[0].0).await;
    assert_eq!(
        lead["offers"][0]["record"]["partner"], "taipei-auto",
        "{lead}"
    );
    // Revenue, service metrics and lead analysis count each record once.
    let (_, verify) = acme.admin("GET", "/admin/v1/ledger/verify", None).await;
    assert_eq!(verify["problems"], json!([]), "{verify}");

    // Taipei goes on in its own node: a win reaches acme's lead.
    let won = json!({"kind": "lead.update", "body": {"status": "won", "won_value": {"amount": 480_000, "currency": "TWD"},
        "won_on": "2026-12-01", "lost_reason": null, "note": "signed"}});
    expect(
        &ta,
        "post",
        &format!("/api/v1/offers/acme/{}/messages", leads[0].1),
        &tt,
        Some(&won.to_string()),
        200,
    )
    .await;
    eventually("the win at acme", || async {
        let (_, v) = va
            .call(
                "get",
                &format!("/api/v1/leads/{}", leads[0].0),
                Some(&vt),
                None,
            )
            .await;
        (v["status"] == "won").then_some(())
    })
    .await;

    // The web sign-in is retired, with a notice for whoever proves the
    // password; its token no longer works.
    let (status, _) = va.call("get", "/api/v1/offers", Some(&mei), None).await;
    assert_eq!(status, 401);
    let mut browser = Browser::new(&acme, &a);
    let page = browser.login("mei", &mei_password).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("runs its own Guanxi node"),
        "{}",
        page.body
    );
    let wrong = browser.login("mei", "not her password at all").await;
    assert_eq!(wrong.status, 401, "no notice without the password");

    // Staff see on the partner's page what went where.
    let mut staff = Browser::new(&acme, &a);
    let password = a.first_admin_password().expect("first admin");
    assert_eq!(staff.login("admin", &password).await.status, 303);
    let page = staff.get("/partners/taipei").await;
    let line = page
        .body
        .split("id=\"handover\">")
        .nth(1)
        .and_then(|r| r.split("</p>").next())
        .expect("the hand-over on the partner's page");
    assert!(
        line.contains("taipei-auto") && line.contains("records: 4") && line.contains("retired: 1"),
        "{line}"
    );

    assert!(
        !page.body.contains("id=\"hand-over\""),
        "nothing left to hand over"
    );
    // A web user added afterwards (by habit) is what the page's button
    // hands over: it is retired.
    crate::web::add_partner_user(&mut staff, "taipei", "wen", "Wen").await;
    let page = staff.get("/partners/taipei").await;
    assert!(page.body.contains("id=\"hand-over\""), "{}", page.body);
    let csrf = Browser::csrf(&page);
    let done = staff
        .post("/partners/taipei/handover", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = staff.get("/partners/taipei").await;
    assert!(!page.body.contains("id=\"hand-over\""), "{}", page.body);
    assert!(page.body.contains("retired: 2"), "{}", page.body);

    // Running it again finds nothing left to hand over.
    let again = acme.cli(Path::new(BIN), &["handover", "taipei"]);
    assert!(again.contains("0 records handed to taipei-auto"), "{again}");

    // acme loses its disk and restores the backup from before the
    // hand-over: healing replays its record.handover envelopes, so the web
    // copies go again and every record is counted once.
    a.kill();
    acme.restore_backup(Path::new(BIN), "acme.gxb");
    let a = acme.start_healed(Path::new(BIN), &[&taipei]).await;
    let va = Api::of(&acme, &a);
    let lead = kept_with_the_peer(&va, &vt, &service, &leads[0].0).await;
    assert_eq!(lead["status"], "won", "{lead}");
    let (_, verify) = acme.admin("GET", "/admin/v1/ledger/verify", None).await;
    assert_eq!(verify["problems"], json!([]), "{verify}");
    drop(t);
}
