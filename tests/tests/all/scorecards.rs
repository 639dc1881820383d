//! Scorecards on real daemons: after a scripted stretch of work between a
//! vendor and a connected partner (leads offered, accepted, won and
//! declined; a service request answered and resolved; an announcement
//! acknowledged), the vendor's node and the partner's node compute the
//! same scorecard from their own copies of the records, figure for figure;
//! a partner user reads only its own organization's.

use crate::web::{Browser, add_partner_user};
use guanxi_tests::{Api, eventually, expect};
use serde_json::{Value, json};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

/// Every period the test's records can fall in, whatever today is.
const ALL: &str = "2000-01-01..2999-12-31";

fn lead_body(company: &str) -> String {
    json!({
        "customer": {"company": company, "contact": "Lin Mei", "email": "it@example.tw", "phone": ""},
        "country": "TW", "region": "Taipei", "product_lines": ["cnc"],
        "estimated_value": {"amount": 1_250_000, "currency": "TWD"},
        "source": "trade-show", "campaign": "spring", "consent": true, "notes": ""
    })
    .to_string()
}

async fn offers(api: &Api, token: &str, n: usize) -> Vec<Value> {
    eventually("the offers at globex", || async {
        let (_, v) = api.call("get", "/api/v1/offers", Some(token), None).await;
        v["offers"].as_array().filter(|o| o.len() == n).cloned()
    })
    .await
}

#[tokio::test]
async fn vendor_and_partner_compute_the_same_scorecard() {
    let bin = Path::new(BIN);
    let mut pair = guanxi_tests::two_nodes(bin).await;
    let (va, pa, vt, pt) = pair.apis(bin);
    for p in [
        json!({"id": "globex", "name": "Globex", "type": "reseller", "tier": "gold", "country": "TW", "region": "", "stage": "active", "peer": "globex"}),
        json!({"id": "webco", "name": "Webco", "type": "reseller", "tier": "gold", "country": "JP", "region": "", "stage": "active", "peer": null}),
    ] {
        expect(
            &va,
            "post",
            "/api/v1/partners",
            &vt,
            Some(&p.to_string()),
            201,
        )
        .await;
    }
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

    // Two leads: one accepted and won, one declined.
    for company in ["Contoso", "Fabrikam"] {
        expect(
            &va,
            "post",
            "/api/v1/leads",
            &vt,
            Some(&lead_body(company)),
            201,
        )
        .await;
    }
    let list = offers(&pa, &pt, 2).await;
    for offer in &list {
        let path = format!(
            "/api/v1/offers/acme/{}/messages",
            offer["subject"].as_str().expect("subject")
        );
        if offer["offer"]["customer"]["company"] == "Contoso" {
            expect(
                &pa,
                "post",
                &path,
                &pt,
                Some(r#"{"kind":"lead.accept","body":{"note":""}}"#),
                200,
            )
            .await;
            let won = json!({"kind": "lead.update", "body": {"status": "won", "won_value": {"amount": 1_200_000, "currency": "TWD"},
                "won_on": "2026-12-01", "lost_reason": null, "note": ""}});
            expect(&pa, "post", &path, &pt, Some(&won.to_string()), 200).await;
        } else {
            let decline =
                json!({"kind": "lead.decline", "body": {"reason": "no_capacity", "note": ""}});
            expect(&pa, "post", &path, &pt, Some(&decline.to_string()), 200).await;
        }
    }
    // A service request answered and resolved.
    let open = json!({"vendor": "acme", "body": {"customer": {"company": "Contoso", "contact": "", "email": "", "phone": ""},
        "sku": "CNC-5X", "serial": null, "problem": "alarm 41", "priority": "high", "attachments": []}});
    let opened = expect(
        &pa,
        "post",
        "/api/v1/service",
        &pt,
        Some(&open.to_string()),
        201,
    )
    .await;
    let at_vendor = format!(
        "/api/v1/service/globex/{}/messages",
        opened["subject"].as_str().expect("subject")
    );
    let say = |status: &str| {
        json!({"kind": "service.update", "body": {"status": status, "comment": "done", "attachments": []}}).to_string()
    };
    eventually("the request at acme", || async {
        let (status, _) = va
            .call("post", &at_vendor, Some(&vt), Some(&say("in_progress")))
            .await;
        (status == 200).then_some(())
    })
    .await;
    expect(&va, "post", &at_vendor, &vt, Some(&say("resolved")), 200).await;

    // Both nodes compute the same figures once the records settled.
    let at_acme = format!("/api/v1/scorecard?partner=globex&period={ALL}");
    let at_globex = format!("/api/v1/scorecard?vendor=acme&period={ALL}");
    let card = eventually("the same scorecard on both nodes", || async {
        let (_, a) = va.call("get", &at_acme, Some(&vt), None).await;
        let (_, b) = pa.call("get", &at_globex, Some(&pt), None).await;
        let settled = a["scorecard"]["service_resolved"] == 1 && a["scorecard"]["leads_won"] == 1;
        (settled && a["scorecard"] == b["scorecard"]).then_some(a)
    })
    .await;
    let s = &card["scorecard"];
    assert_eq!(
        (
            s["leads_offered"].as_u64(),
            s["leads_accepted"].as_u64(),
            s["leads_declined"].as_u64(),
            s["leads_won"].as_u64(),
            s["win_rate_permille"].as_i64(),
            s["won_value"]["TWD"].as_i64(),
            s["service_requests"].as_u64(),
            s["service_resolved"].as_u64(),
        ),
        (
            Some(2),
            Some(1),
            Some(1),
            Some(1),
            Some(1000),
            Some(1_200_000),
            Some(1),
            Some(1)
        ),
        "{card}"
    );
    assert!(s["first_response_median_ms"].as_i64().is_some(), "{card}");
    assert_eq!(
        card["compare"]["to"], card["period"]["from"],
        "the period before"
    );

    // Bad periods name the field; a partner user reads only its own.
    let v = expect(
        &va,
        "get",
        "/api/v1/scorecard?partner=globex&period=2026-Q5",
        &vt,
        None,
        422,
    )
    .await;
    assert_eq!(v["field"], "period", "{v}");
    expect(
        &va,
        "get",
        "/api/v1/scorecard?partner=nobody",
        &vt,
        None,
        404,
    )
    .await;
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    let pw = pair.vendor_daemon.first_admin_password().expect("pw");
    assert_eq!(staff.login("admin", &pw).await.status, 303);
    let wen_pw = add_partner_user(&mut staff, "webco", "wen", "Wen").await;
    // The page shows the same figures, in both languages.
    let page = staff
        .get(&format!("/scorecard?partner=globex&period={ALL}"))
        .await;
    assert!(
        page.body
            .contains("<th scope=\"row\">Leads won</th><td>1</td>")
            && page
                .body
                .contains("<th scope=\"row\">Win rate</th><td>100.0 %</td>"),
        "{}",
        page.body
    );
    let mut theirs = Browser::new(&pair.partner, &pair.partner_daemon);
    let ppw = pair.partner_daemon.first_admin_password().expect("pw");
    assert_eq!(theirs.login("admin", &ppw).await.status, 303);
    let page = theirs
        .get(&format!("/scorecard?vendor=acme&period={ALL}"))
        .await;
    assert!(
        page.body
            .contains("<th scope=\"row\">Leads won</th><td>1</td>"),
        "{}",
        page.body
    );
    // The vendor's weights give globex (gold) a score and a suggestion.
    let form = staff.get("/scorecard/weights").await;
    let csrf = Browser::csrf(&form);
    let refused = staff
        .post(
            "/scorecard/weights",
            &[
                ("csrf", &csrf),
                ("weights", "gold leads_won 50 2\ngold wins 50 1"),
            ],
        )
        .await;
    assert!(
        refused.status == 422 && refused.body.contains("line 2"),
        "{}",
        refused.body
    );
    let saved = staff
        .post(
            "/scorecard/weights",
            &[
                ("csrf", &csrf),
                (
                    "weights",
                    "gold leads_won 50 2\ngold win_rate_permille 50 1000\n* leads_won 1 100",
                ),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let page = staff
        .get(&format!("/scorecard?partner=globex&period={ALL}"))
        .await;
    assert!(
        page.body.contains("Score: 75 / 100") && page.body.contains("keep the tier"),
        "{}",
        page.body
    );
    // The ranking: by the score once weights are set, by any figure asked.
    let ranking = staff.get(&format!("/scorecard/ranking?period={ALL}")).await;
    let (g, w) = (
        ranking
            .body
            .find("id=\"rank-globex\"")
            .expect("globex ranked"),
        ranking
            .body
            .find("id=\"rank-webco\"")
            .expect("webco ranked"),
    );
    assert!(
        g < w
            && ranking.body[g..w].contains("<td>75</td>")
            && ranking.body.contains("keep the tier"),
        "{}",
        ranking.body
    );
    let ranked = expect(
        &va,
        "get",
        &format!("/api/v1/scorecards?period={ALL}&sort=leads_declined"),
        &vt,
        None,
        200,
    )
    .await;
    assert_eq!(
        (
            ranked["total"].as_u64(),
            ranked["partners"][0]["partner"].as_str(),
            ranked["partners"][0]["value"].as_i64(),
            ranked["partners"][1]["value"].as_i64(),
            ranked["partners"][0]["score"].as_i64(),
        ),
        (Some(2), Some("globex"), Some(1), Some(0), Some(75)),
        "{ranked}"
    );
    let by_time = expect(
        &va,
        "get",
        &format!("/api/v1/scorecards?period={ALL}&sort=first_response_median_ms&limit=1"),
        &vt,
        None,
        200,
    )
    .await;
    assert!(
        by_time["partners"][0]["partner"] == "globex" && by_time["next"] == "1",
        "a measured time before none: {by_time}"
    );
    let v = expect(&va, "get", "/api/v1/scorecards?sort=wins", &vt, None, 422).await;
    assert_eq!(v["field"], "sort", "{v}");
    expect(&pa, "get", "/api/v1/scorecards", &pt, None, 200).await;
    // Twelve months of leads won, the won lead in one of them.
    let trend = expect(
        &va,
        "get",
        "/api/v1/scorecard?partner=globex&trend=leads_won",
        &vt,
        None,
        200,
    )
    .await;
    let months = trend["trend"].as_array().expect("trend");
    assert_eq!(months.len(), 12, "{trend}");
    assert_eq!(
        months
            .iter()
            .filter_map(|m| m["value"].as_i64())
            .sum::<i64>(),
        1,
        "{trend}"
    );
    let page = staff.get("/scorecard?partner=globex&trend=leads_won").await;
    assert!(
        page.body.contains("class=\"trend\"") && page.body.contains("<polyline"),
        "{}",
        page.body
    );
    let csv = staff
        .get(&format!("/scorecard.csv?partner=globex&period={ALL}"))
        .await;
    assert!(
        csv.status == 200
            && csv.body.starts_with(&format!("figure,{ALL},"))
            && csv.body.contains("\nleads_won,1,0\n")
            && csv.body.contains("\nwon_value,TWD 1200000,\n"),
        "{}",
        csv.body
    );
    let bad = staff.get("/scorecard?partner=globex&period=2026-Q5").await;
    assert!(
        bad.status == 422 && bad.body.contains("id=\"scorecard-error\""),
        "{}",
        bad.body
    );
    let mut wen_web = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(wen_web.login("wen", &wen_pw).await.status, 303);
    assert_eq!(wen_web.get("/scorecard?partner=globex").await.status, 404);
    assert_eq!(wen_web.get("/scorecard/ranking").await.status, 403);
    let own_page = wen_web.get("/scorecard").await;
    assert!(
        own_page.body.contains("id=\"scorecard\""),
        "{}",
        own_page.body
    );
    crate::web::all_in_chinese(&mut wen_web, &["/scorecard"]).await;
    crate::web::all_in_chinese(
        &mut staff,
        &[
            &format!("/scorecard/ranking?period={ALL}"),
            "/scorecard?partner=globex&trend=won_value:TWD",
        ],
    )
    .await;
    staff.accept_language = None;

    // The vendor sends globex its scorecard, signed; globex's node finds
    // every figure equal to its own.
    let page = staff
        .get(&format!("/scorecard?partner=globex&period={ALL}"))
        .await;
    let sent = staff
        .post(
            "/scorecard/share",
            &[
                ("csrf", &Browser::csrf(&page)),
                ("partner", "globex"),
                ("period", ALL),
            ],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let web_only = staff
        .post(
            "/scorecard/share",
            &[
                ("csrf", &Browser::csrf(&page)),
                ("partner", "webco"),
                ("period", ALL),
            ],
        )
        .await;
    assert_eq!(
        web_only.status, 403,
        "a web partner reads its scorecard in the web view"
    );
    eventually("the shared scorecard agrees at globex", || {
        let mut theirs = theirs.clone();
        async move {
            let page = theirs
                .get(&format!("/scorecard?vendor=acme&period={ALL}"))
                .await;
            page.body.contains("id=\"scorecard-agrees\"").then_some(())
        }
    })
    .await;
    // A record altered on globex's side is named as the first difference.
    let contoso = list
        .iter()
        .find(|o| o["offer"]["customer"]["company"] == "Contoso")
        .and_then(|o| o["subject"].as_str())
        .expect("the won lead")
        .to_string();
    pair.with_partner_stopped(bin, |partner| {
        let store = guanxi_adapters::store::Store::open(&partner.data_dir()).expect("store");
        store
            .transact(|w| -> Result<(), guanxi_adapters::store::StoreError> {
                let bytes = w.record("acme", &contoso)?.expect("lead");
                let mut record: Value = serde_json::from_slice(&bytes).expect("record");
                record["won_value"]["amount"] = json!(999);
                w.put_record(
                    "acme",
                    &contoso,
                    &serde_json::to_vec(&record).expect("json"),
                )
            })
            .expect("alter");
        drop(store);
        // Its node counts what it holds: the cells are built again from
        // the records (and so from the altered one).
        let out = partner.cli(bin, &["reindex"]);
        assert!(out.contains("record(s) indexed"), "{out}");
    })
    .await;
    let mut theirs = Browser::new(&pair.partner, &pair.partner_daemon);
    assert_eq!(theirs.login("admin", &ppw).await.status, 303);
    let page = theirs
        .get(&format!("/scorecard?vendor=acme&period={ALL}"))
        .await;
    assert!(
        page.body.contains("id=\"scorecard-differs\"")
            && page.body.contains("<strong>Won value</strong>")
            && page.body.contains("{&#34;TWD&#34;:1200000}")
            && page.body.contains("{&#34;TWD&#34;:999}"),
        "{}",
        page.body
    );
    crate::web::all_in_chinese(
        &mut staff,
        &[&format!("/scorecard?partner=globex&period={ALL}")],
    )
    .await;
    let wen = pair.vendor.token(bin, "wen-script", "wen");
    expect(
        &va,
        "get",
        "/api/v1/scorecard?partner=globex",
        &wen,
        None,
        404,
    )
    .await;
    let own = expect(
        &va,
        "get",
        &format!("/api/v1/scorecard?period={ALL}"),
        &wen,
        None,
        200,
    )
    .await;
    assert_eq!(
        (
            own["partner"].as_str(),
            own["scorecard"]["leads_offered"].as_u64()
        ),
        (Some("webco"), Some(0)),
        "{own}"
    );

    // Joint goals: globex proposes one from its own node, acme accepts it;
    // both nodes show the same progress.
    let pa = Api::of(&pair.partner, &pair.partner_daemon);
    let pt = pair.partner.token(bin, "goals", "admin");
    let month = expect(
        &va,
        "get",
        "/api/v1/scorecard?partner=globex",
        &vt,
        None,
        200,
    )
    .await["period"]["name"]
        .as_str()
        .expect("this month")
        .to_string();
    let proposal = json!({"vendor": "acme", "period": month, "metric": "leads_won", "target": 1,
        "owner": "Globex sales", "note": "one deal this month"});
    let proposed = expect(
        &pa,
        "post",
        "/api/v1/goals",
        &pt,
        Some(&proposal.to_string()),
        201,
    )
    .await;
    let subject = proposed["subject"].as_str().expect("subject").to_string();
    assert_eq!(proposed["goal"]["status"], "proposed", "{proposed}");
    let bad = json!({"vendor": "acme", "period": "2026-Q5", "metric": "leads_won", "target": 1});
    let v = expect(
        &pa,
        "post",
        "/api/v1/goals",
        &pt,
        Some(&bad.to_string()),
        422,
    )
    .await;
    assert_eq!(v["field"], "period", "{v}");
    let at_acme = format!("/api/v1/goals/globex/{subject}");
    eventually("the proposal at acme", || async {
        let (status, _) = va.call("get", &at_acme, Some(&vt), None).await;
        (status == 200).then_some(())
    })
    .await;
    // An acceptance must name the target on the table.
    let wrong = json!({"kind": "goal.accept", "body": {"target": 2, "note": ""}});
    expect(
        &va,
        "post",
        &format!("{at_acme}/messages"),
        &vt,
        Some(&wrong.to_string()),
        409,
    )
    .await;
    // globex cannot answer its own proposal.
    let own_answer = json!({"kind": "goal.accept", "body": {"target": 1, "note": ""}});
    expect(
        &pa,
        "post",
        &format!("/api/v1/goals/acme/{subject}/messages"),
        &pt,
        Some(&own_answer.to_string()),
        409,
    )
    .await;
    let agreed = expect(
        &va,
        "post",
        &format!("{at_acme}/messages"),
        &vt,
        Some(&own_answer.to_string()),
        200,
    )
    .await;
    assert_eq!(agreed["goal"]["status"], "agreed", "{agreed}");
    let theirs_now = eventually("the agreement at globex", || async {
        let (_, v) = pa
            .call(
                "get",
                &format!("/api/v1/goals/acme/{subject}"),
                Some(&pt),
                None,
            )
            .await;
        (v["goal"]["status"] == "agreed").then_some(v)
    })
    .await;
    let ours_now = expect(&va, "get", &at_acme, &vt, None, 200).await;
    assert_eq!(
        (
            &ours_now["progress"]["value"],
            &ours_now["progress"]["state"]
        ),
        (&json!(1), &json!("achieved")),
        "{ours_now}"
    );
    assert_eq!(
        (
            &theirs_now["progress"]["value"],
            &theirs_now["progress"]["state"],
            &theirs_now["goal"]["history"]
        ),
        (
            &ours_now["progress"]["value"],
            &ours_now["progress"]["state"],
            &ours_now["goal"]["history"]
        ),
        "the same goal and progress on both nodes"
    );
    let listed = expect(&pa, "get", "/api/v1/goals?vendor=acme", &pt, None, 200).await;
    assert_eq!(listed["goals"][0]["subject"], subject.as_str(), "{listed}");

    // With a web partner, in the web view: staff propose, its user counters,
    // staff accept the counter-proposal.
    wen_web.accept_language = None;
    let page = staff.get("/scorecard?partner=webco").await;
    assert!(page.body.contains("id=\"goal-propose\""), "{}", page.body);
    let sent = staff
        .post(
            "/goals",
            &[
                ("csrf", &Browser::csrf(&page)),
                ("partner", "webco"),
                ("metric", "won_value:TWD"),
                ("period", &month),
                ("target", "1,000,000"),
                ("owner", "Wen"),
                ("note", ""),
            ],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let goal_page = sent
        .location
        .clone()
        .map(|l| l.split('?').next().unwrap_or("").to_string())
        .expect("the goal's page");
    assert!(
        goal_page.starts_with("/goals/web:webco/goal."),
        "{goal_page}"
    );
    let page = wen_web.get(&goal_page).await;
    assert!(
        page.body.contains("id=\"goal-counter\"") && page.body.contains("TWD 1,000,000.00"),
        "{}",
        page.body
    );
    let countered = wen_web
        .post(
            &goal_page,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "counter"),
                ("target", "500000"),
                ("owner", "Wen"),
                ("note", "50%"),
            ],
        )
        .await;
    assert_eq!(countered.status, 303, "{}", countered.body);
    let mine = wen_web.get(&goal_page).await;
    assert!(
        !mine.body.contains("id=\"goal-accept\""),
        "not its turn: {}",
        mine.body
    );
    let page = staff.get(&goal_page).await;
    assert!(page.body.contains("TWD 500,000.00"), "{}", page.body);
    let accepted = staff
        .post(
            &goal_page,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "accept"),
                ("shown_target", "50000000"),
                ("note", "OK"),
            ],
        )
        .await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    let page = wen_web.get(&goal_page).await;
    assert!(
        page.body.contains("id=\"goal-status\">agreed") && page.body.matches("<li>").count() >= 3,
        "{}",
        page.body
    );
    assert_eq!(
        staff.get(&goal_page.replace("webco", "other")).await.status,
        404
    );
    assert_eq!(
        wen_web.get(&format!("/goals/acme/{subject}")).await.status,
        404,
        "another organization's goal"
    );
    crate::web::all_in_chinese(&mut wen_web, &[goal_page.as_str(), "/scorecard"]).await;
}
