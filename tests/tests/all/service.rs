//! Service requests and warranty claims on real daemons: a claim passed up a
//! chain of three (reseller → distributor → manufacturer) and the decision
//! and fulfilment relayed back down; warranty validity for shipped,
//! registered, expired and unknown serials and a claim on another partner's
//! serial; service level breaches with a moved clock across a restart.

use guanxi_tests::{Api, NodeSetup, eventually, expect};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");
const HOUR: i64 = 3_600_000;

fn customer() -> Value {
    json!({"company": "Contoso", "contact": "Lin", "email": "", "phone": ""})
}

fn claim(serial: &str) -> Value {
    json!({"sku": "CNC-5X", "serial": serial, "purchase_date": "2026-03-01", "description": "spindle noise",
           "customer": customer(), "attachments": [], "forwarded": null})
}

fn partner(id: &str, peer: Option<&str>) -> String {
    json!({"id": id, "name": id, "type": "distributor", "tier": "gold", "country": "TW", "region": "", "stage": "active", "peer": peer})
        .to_string()
}

fn catalog() -> String {
    json!({"products": [{"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true}],
           "price_lists": [{"id": "tw", "tier": "gold", "currency": "TWD", "valid_from": "2020-01-01", "valid_to": null,
                            "discount_bp": 0, "tax_rate_bp": 0, "prices": [{"sku": "CNC-5X", "unit_price": 100}]}]})
    .to_string()
}

#[tokio::test]
async fn a_claim_goes_up_the_chain_and_the_decision_comes_back_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, daemons) =
        guanxi_tests::chain_of_three(Path::new(BIN), dir.path(), ["mfr", "dist", "res"]).await;
    let (mfr, dist, res) = (&nodes[0], &nodes[1], &nodes[2]);
    let (dm, dd, dr) = (&daemons[0], &daemons[1], &daemons[2]);
    let (am, ad, ar) = (Api::of(mfr, dm), Api::of(dist, dd), Api::of(res, dr));
    let (tm, td, tr) = (
        mfr.token(Path::new(BIN), "ci", "admin"),
        dist.token(Path::new(BIN), "ci", "admin"),
        res.token(Path::new(BIN), "ci", "admin"),
    );
    // The manufacturer knows the serial: registered as sold through dist.
    expect(&am, "put", "/api/v1/catalog", &tm, Some(&catalog()), 200).await;
    expect(
        &am,
        "post",
        "/api/v1/partners",
        &tm,
        Some(&partner("dist", Some("dist"))),
        201,
    )
    .await;
    expect(
        &am,
        "post",
        "/api/v1/serials",
        &tm,
        Some(r#"[{"serial": "SN-9", "sku": "CNC-5X", "date": "2026-02-01", "partner": "dist"}]"#),
        200,
    )
    .await;

    // The reseller claims with its distributor.
    let filed = expect(
        &ar,
        "post",
        "/api/v1/claims",
        &tr,
        Some(&json!({"vendor": "dist", "body": claim("SN-9")}).to_string()),
        201,
    )
    .await;
    let down_subject = filed["subject"].as_str().expect("subject").to_string();
    eventually("the claim at dist", || async {
        let (_, v) = ad
            .call(
                "get",
                &format!("/api/v1/claims/res/{down_subject}"),
                Some(&td),
                None,
            )
            .await;
        (v["status"] == "submitted").then_some(())
    })
    .await;
    let fwd = expect(
        &ad,
        "post",
        &format!("/api/v1/claims/res/{down_subject}/forward"),
        &td,
        Some(r#"{"upstream": "mfr"}"#),
        200,
    )
    .await;
    let up_subject = fwd["subject"].as_str().expect("subject").to_string();
    let v = expect(
        &ad,
        "post",
        &format!("/api/v1/claims/res/{down_subject}/forward"),
        &td,
        Some(r#"{"upstream": "mfr"}"#),
        409,
    )
    .await;
    assert_eq!(v["code"], "illegal_transition", "forwarded once: {v}");

    // The manufacturer sees where it came from, with the original signed
    // claim, and that the serial is in warranty.
    let at_mfr = eventually("the claim at mfr", || async {
        let (_, v) = am
            .call(
                "get",
                &format!("/api/v1/claims/dist/{up_subject}"),
                Some(&tm),
                None,
            )
            .await;
        (v["status"] == "submitted").then_some(v)
    })
    .await;
    let forwarded = &at_mfr["claim"]["claim"]["forwarded"];
    assert_eq!(
        (forwarded["from"].as_str(), forwarded["subject"].as_str()),
        (Some("res"), Some(down_subject.as_str())),
        "{at_mfr}"
    );
    assert!(
        forwarded["envelope"].as_str().unwrap_or("").len() > 100,
        "the original envelope travels: {at_mfr}"
    );
    assert_eq!(at_mfr["validity"]["status"], "in_warranty", "{at_mfr}");
    assert_eq!(at_mfr["validity"]["basis"], "registration");
    let path = format!("/api/v1/claims/dist/{up_subject}/messages");
    // The manufacturer needs more information: it reaches the reseller, whose
    // amendment goes back up, once, and the claim is decided.
    expect(&am, "post", &path, &tm,
        Some(r#"{"kind": "warranty.decision", "body": {"decision": "need_info", "credit": null, "note": "photo of the plate"}}"#), 200).await;
    let res_claim = format!("/api/v1/claims/dist/{down_subject}");
    eventually("need_info at res", || async {
        let (_, v) = ar.call("get", &res_claim, Some(&tr), None).await;
        (v["status"] == "need_info").then_some(())
    })
    .await;
    let mut amended = claim("SN-9");
    amended["description"] = json!("spindle noise; plate photo attached");
    expect(
        &ar,
        "post",
        &format!("{res_claim}/messages"),
        &tr,
        Some(&json!({"kind": "warranty.claim", "body": amended}).to_string()),
        200,
    )
    .await;
    let again = eventually("the amendment at mfr", || async {
        let (_, v) = am
            .call(
                "get",
                &format!("/api/v1/claims/dist/{up_subject}"),
                Some(&tm),
                None,
            )
            .await;
        (v["status"] == "submitted" && v["claim"]["amendments"] == 1).then_some(v)
    })
    .await;
    assert_eq!(
        again["claim"]["claim"]["description"], "spindle noise; plate photo attached",
        "{again}"
    );
    expect(&am, "post", &path, &tm,
        Some(r#"{"kind": "warranty.decision", "body": {"decision": "replacement", "credit": null, "note": "new spindle"}}"#), 200).await;
    expect(
        &am,
        "post",
        &path,
        &tm,
        Some(r#"{"kind": "warranty.fulfil", "body": {"reference": "RMA-77", "note": "shipped"}}"#),
        200,
    )
    .await;

    // Down at the reseller: approved, then fulfilled; nothing lost on the way.
    let at_res = eventually("the fulfilment at res", || async {
        let (_, v) = ar
            .call(
                "get",
                &format!("/api/v1/claims/dist/{down_subject}"),
                Some(&tr),
                None,
            )
            .await;
        (v["status"] == "fulfilled").then_some(v)
    })
    .await;
    let kinds: Vec<&str> = at_res["claim"]["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "warranty.claim",
            "warranty.decision",
            "warranty.claim",
            "warranty.decision",
            "warranty.fulfil"
        ],
        "{at_res}"
    );
    // Nothing was relayed twice: the manufacturer's copy has one amendment.
    let (_, up) = am
        .call(
            "get",
            &format!("/api/v1/claims/dist/{up_subject}"),
            Some(&tm),
            None,
        )
        .await;
    assert_eq!(up["claim"]["amendments"], 1, "{up}");
    assert_eq!(
        up["claim"]["history"].as_array().map(Vec::len),
        Some(5),
        "{up}"
    );
    assert_eq!(at_res["claim"]["decision"]["decision"], "replacement");
    assert!(
        at_res["claim"]["decision"]["note"]
            .as_str()
            .unwrap_or("")
            .contains("decided by mfr"),
        "{at_res}"
    );
    assert_eq!(at_res["claim"]["fulfilment"], "RMA-77");
    drop(daemons);
}

#[tokio::test]
async fn warranty_validity_and_a_claim_on_another_partners_serial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    expect(
        &api,
        "put",
        "/api/v1/catalog",
        &admin,
        Some(&catalog()),
        200,
    )
    .await;
    for (org, user) in [("globex", "mei"), ("initech", "ina")] {
        expect(
            &api,
            "post",
            "/api/v1/partners",
            &admin,
            Some(&partner(org, None)),
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
    let mei = node.token(Path::new(BIN), "mei-t", "mei");
    let ina = node.token(Path::new(BIN), "ina-t", "ina");

    // Globex buys two machines; they ship with serials.
    let order = json!({"vendor": "acme", "reference": "PO-1", "currency": "TWD", "requested_date": null, "lead": null,
        "lines": [{"line": 1, "sku": "CNC-5X", "quantity": 2, "unit_price": null}],
        "ship_to": {"name": "Globex", "street": "", "city": "", "postal_code": "", "region": "", "country": "TW"}}).to_string();
    let placed = expect(&api, "post", "/api/v1/orders", &mei, Some(&order), 201).await;
    let path = format!(
        "/api/v1/orders/web:globex/{}/messages",
        placed["subject"].as_str().unwrap_or("")
    );
    expect(&api, "post", &path, &admin, Some(r#"{"kind": "order.ack", "body": {"lines": [{"line": 1, "accepted": 2, "confirmed_date": null, "reason": null}], "note": ""}}"#), 200).await;
    expect(&api, "post", &path, &admin, Some(r#"{"kind": "order.ship", "body": {"shipment": "S1", "carrier": "", "tracking": "", "lines": [{"line": 1, "quantity": 2, "serials": ["SN-A", "SN-B"]}]}}"#), 200).await;
    // An old machine registered by staff, and nothing known of SN-X.
    expect(
        &api,
        "post",
        "/api/v1/serials",
        &admin,
        Some(r#"[{"serial": "SN-OLD", "sku": "CNC-5X", "date": "2019-01-01", "partner": null}]"#),
        200,
    )
    .await;

    let file = |token: &str, serial: &str| {
        let (api, token, body) = (
            &api,
            token.to_string(),
            json!({"vendor": "acme", "body": claim(serial)}).to_string(),
        );
        async move {
            api.call("post", "/api/v1/claims", Some(&token), Some(&body))
                .await
        }
    };
    // Initech claims Globex's machine: refused, nothing stored.
    let (status, v) = file(&ina, "SN-A").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("not_allowed")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("another partner"),
        "{v}"
    );
    let (_, v) = api.call("get", "/api/v1/claims", Some(&ina), None).await;
    assert_eq!(v["claims"].as_array().map(Vec::len), Some(0), "{v}");

    let mut seen = Vec::new();
    for (serial, token) in [("SN-A", &mei), ("SN-OLD", &ina), ("SN-X", &ina)] {
        let (status, v) = file(token, serial).await;
        assert_eq!(status, 201, "{v}");
        let (_, c) = api
            .call(
                "get",
                &format!(
                    "/api/v1/claims/{}/{}",
                    v["key"].as_str().unwrap_or(""),
                    v["subject"].as_str().unwrap_or("")
                ),
                Some(&admin),
                None,
            )
            .await;
        seen.push((
            serial,
            c["validity"]["status"].as_str().unwrap_or("").to_string(),
            c["validity"]["basis"].as_str().unwrap_or("").to_string(),
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("SN-A", "in_warranty".to_string(), "shipment".to_string()),
            ("SN-OLD", "expired".to_string(), "registration".to_string()),
            ("SN-X", "unknown_serial".to_string(), String::new()),
        ]
    );
    // The partner sees its claim but not the vendor's validity view.
    let (_, v) = api.call("get", "/api/v1/claims", Some(&mei), None).await;
    assert!(v["claims"][0].get("validity").is_none(), "{v}");
    drop(daemon);
}

#[tokio::test]
async fn service_level_breaches_are_detected_with_a_moved_clock_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    expect(
        &api,
        "post",
        "/api/v1/partners",
        &admin,
        Some(&partner("globex", None)),
        201,
    )
    .await;
    expect(
        &api,
        "post",
        "/api/v1/partners/globex/users",
        &admin,
        Some(r#"{"username": "mei"}"#),
        201,
    )
    .await;
    let mei = node.token(Path::new(BIN), "mei-t", "mei");
    let bad = r#"{"urgent": {"first_response_minutes": 60, "resolution_minutes": 30}, "high": {"first_response_minutes": 240, "resolution_minutes": 1440},
        "normal": {"first_response_minutes": 480, "resolution_minutes": 4320}, "low": {"first_response_minutes": 1440, "resolution_minutes": 10080}}"#;
    let v = expect(&api, "put", "/api/v1/service/sla", &admin, Some(bad), 422).await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("urgent.resolution_minutes"),
        "{v}"
    );

    let open = |priority: &str, problem: &str| {
        json!({"vendor": "acme", "body": {"customer": customer(), "sku": "CNC-5X", "serial": null, "problem": problem,
               "priority": priority, "attachments": []}}).to_string()
    };
    let low = expect(
        &api,
        "post",
        "/api/v1/service",
        &mei,
        Some(&open("low", "manual request")),
        201,
    )
    .await;
    let urgent = expect(
        &api,
        "post",
        "/api/v1/service",
        &mei,
        Some(&open("urgent", "line stopped")),
        201,
    )
    .await;
    assert_eq!(urgent["sla"]["first_response_breached"], false, "{urgent}");
    let (_, queue) = api.call("get", "/api/v1/service", Some(&admin), None).await;
    assert_eq!(
        queue["requests"][0]["subject"], urgent["subject"],
        "most urgent first: {queue}"
    );
    let path = format!(
        "/api/v1/service/web:globex/{}",
        urgent["subject"].as_str().unwrap_or("")
    );

    // Nothing is late yet: the staff inbox says so by saying nothing.
    let admin_password = daemon.first_admin_password().expect("first admin");
    let mut staff = crate::web::Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    let home = staff.get("/").await;
    assert!(
        !home.body.contains("breached their service level"),
        "{}",
        home.body
    );

    // Two hours pass while the daemon is down.
    daemon.terminate(Duration::from_secs(10)).expect("stops");
    node.set_clock_offset(2 * HOUR);
    let daemon = node.start(Path::new(BIN)).expect("restarts");
    let api = Api::of(&node, &daemon);
    let v = expect(&api, "get", &path, &admin, None, 200).await;
    assert_eq!(
        (
            v["sla"]["first_response_breached"].as_bool(),
            v["sla"]["resolution_breached"].as_bool()
        ),
        (Some(true), Some(false)),
        "{v}"
    );
    // The inbox names the late request (from the index of running clocks).
    let mut staff = crate::web::Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    let home = staff.get("/").await;
    assert!(
        home.body.contains("breached their service level") && home.body.contains("(globex)"),
        "{}",
        home.body
    );
    let (_, low_now) = api
        .call(
            "get",
            &format!(
                "/api/v1/service/web:globex/{}",
                low["subject"].as_str().unwrap_or("")
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        low_now["sla"]["first_response_breached"], false,
        "a low priority request has a day: {low_now}"
    );

    // A late answer stays a breach; resolve, close; no comments once closed.
    let say = |status: Option<&str>, comment: &str| {
        json!({"kind": "service.update", "body": {"status": status, "comment": comment, "attachments": []}}).to_string()
    };
    let messages = format!("{path}/messages");
    expect(
        &api,
        "post",
        &messages,
        &admin,
        Some(&say(Some("in_progress"), "on our way")),
        200,
    )
    .await;
    expect(
        &api,
        "post",
        &messages,
        &mei,
        Some(&say(None, "thank you")),
        200,
    )
    .await;
    let v = expect(
        &api,
        "post",
        &messages,
        &mei,
        Some(&say(Some("resolved"), "")),
        409,
    )
    .await;
    assert_eq!(
        v["code"], "illegal_transition",
        "only the vendor resolves: {v}"
    );
    expect(
        &api,
        "post",
        &messages,
        &admin,
        Some(&say(Some("resolved"), "replaced the board")),
        200,
    )
    .await;
    let closed = expect(
        &api,
        "post",
        &messages,
        &mei,
        Some(&say(Some("closed"), "")),
        200,
    )
    .await;
    assert_eq!(
        (
            closed["status"].as_str(),
            closed["sla"]["first_response_breached"].as_bool()
        ),
        (Some("closed"), Some(true)),
        "{closed}"
    );
    let v = expect(
        &api,
        "post",
        &messages,
        &admin,
        Some(&say(None, "one more thing")),
        409,
    )
    .await;
    assert_eq!(v["code"], "illegal_transition", "{v}");
    let comments: Vec<&str> = closed["request"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["comment"].as_str())
        .collect();
    assert_eq!(
        comments,
        vec![
            "line stopped",
            "on our way",
            "thank you",
            "replaced the board",
            ""
        ]
    );

    let m = expect(&api, "get", "/api/v1/service/metrics", &admin, None, 200).await;
    let g = &m["partners"][0];
    assert_eq!(
        (
            g["partner"].as_str(),
            g["requests"].as_u64(),
            g["first_response_breaches"].as_u64(),
            g["resolution_breaches"].as_u64()
        ),
        (Some("globex"), Some(2), Some(1), Some(0)),
        "{m}"
    );
    // Medians are the middle of a bucket about 6 % wide.
    assert!(
        g["median_first_response_ms"].as_i64().unwrap_or(0) >= 2 * HOUR * 97 / 100,
        "{m}"
    );
    let out = node.cli(Path::new(BIN), &["ledger", "verify"]);
    assert!(out.contains("equals a recomputation"), "{out}");
    drop(daemon);
}

#[tokio::test]
async fn attachments_are_checked_stored_and_shown_only_to_who_sees_the_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api::of(&node, &daemon);
    let admin = node.token(Path::new(BIN), "ci", "admin");
    for (org, user) in [("globex", "mei"), ("initech", "ina")] {
        expect(
            &api,
            "post",
            "/api/v1/partners",
            &admin,
            Some(&partner(org, None)),
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
    let mei = node.token(Path::new(BIN), "mei-t", "mei");
    let ina = node.token(Path::new(BIN), "ina-t", "ina");
    let upload = |ct: &'static str, body: Vec<u8>| {
        let client = api.client.clone();
        let url = format!("{}/api/v1/attachments?name=photo", api.base);
        let token = mei.clone();
        async move {
            let r = client
                .post(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, v) = upload("application/x-msdownload", b"MZ...".to_vec()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (415, Some("refused_type")),
        "{v}"
    );
    let (status, v) = upload("image/png", b"GIF89a".to_vec()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (415, Some("refused_type")),
        "{v}"
    );
    let (status, v) = upload("text/plain", vec![b'a'; 512 * 1024 + 1]).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (413, Some("too_large")),
        "{v}"
    );
    let (status, attachment) =
        upload("image/png", b"\x89PNG\r\n\x1a\nrest-of-image".to_vec()).await;
    assert_eq!(status, 201, "{attachment}");
    assert!(
        std::fs::read_dir(node.data_dir().join("attachments"))
            .expect("dir")
            .count()
            == 1
    );

    let body =
        json!({"vendor": "acme", "body": {"customer": customer(), "sku": "CNC-5X", "serial": null,
        "problem": "see photo", "priority": "normal", "attachments": [attachment]}})
        .to_string();
    expect(&api, "post", "/api/v1/service", &mei, Some(&body), 201).await;
    let sha = attachment["sha256"].as_str().expect("sha");
    // Another organization that learnt the hash cannot cite it (and so can
    // never download it), nor can anyone cite a file never uploaded here.
    let mut unknown = attachment.clone();
    unknown["sha256"] = json!("ab".repeat(32));
    for cited in [&attachment, &unknown] {
        let body = json!({"vendor": "acme", "body": {"customer": customer(), "sku": "CNC-5X", "serial": null,
            "problem": "mine too", "priority": "normal", "attachments": [cited]}})
        .to_string();
        let v = expect(&api, "post", "/api/v1/service", &ina, Some(&body), 422).await;
        assert_eq!(v["code"], "bad_body", "{v}");
    }
    for (token, status) in [(&mei, 200), (&admin, 200), (&ina, 404)] {
        let (got, _) = api
            .call(
                "get",
                &format!("/api/v1/attachments/{sha}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(got, status);
    }
    let r = api
        .client
        .get(format!("{}/api/v1/attachments/{sha}", api.base))
        .header("authorization", format!("Bearer {mei}"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert_eq!(
        r.bytes().await.expect("bytes").as_ref(),
        b"\x89PNG\r\n\x1a\nrest-of-image"
    );
    drop(daemon);
}

/// Waits until the request at `path` has `status`; returns it.
async fn wait_status(api: &Api, token: &str, path: &str, status: &'static str) -> Value {
    eventually(status, || async {
        let (_, v) = api.call("get", path, Some(token), None).await;
        (v["status"] == status).then_some(v)
    })
    .await
}

/// A service request between two daemons: opened by the partner's Guanxi,
/// comments both ways, resolved by the vendor, closed by the partner; both
/// hold the same request and history.
#[tokio::test]
async fn a_service_request_between_two_daemons() {
    let p = guanxi_tests::two_nodes(Path::new(BIN)).await;
    let (va, pa, vt, pt) = p.apis(Path::new(BIN));
    let open = json!({"vendor": "acme", "body": {"customer": customer(), "sku": "CNC-5X", "serial": "SN-1",
        "problem": "alarm 41", "priority": "high", "attachments": []}}).to_string();
    let opened = expect(&pa, "post", "/api/v1/service", &pt, Some(&open), 201).await;
    let subject = opened["subject"].as_str().expect("subject").to_string();
    let say = |status: Option<&str>, comment: &str| {
        json!({"kind": "service.update", "body": {"status": status, "comment": comment, "attachments": []}}).to_string()
    };
    let at_vendor = format!("/api/v1/service/globex/{subject}");
    let at_partner = format!("/api/v1/service/acme/{subject}");
    wait_status(&va, &vt, &at_vendor, "open").await;
    expect(
        &va,
        "post",
        &format!("{at_vendor}/messages"),
        &vt,
        Some(&say(Some("waiting_on_partner"), "which firmware?")),
        200,
    )
    .await;
    wait_status(&pa, &pt, &at_partner, "waiting_on_partner").await;
    // The partner answers with a photo: its bytes travel before the comment.
    let r = pa
        .client
        .post(format!("{}/api/v1/attachments?name=screen.png", pa.base))
        .header("authorization", format!("Bearer {pt}"))
        .header("content-type", "image/png")
        .body(b"\x89PNG\r\n\x1a\nscreen".to_vec())
        .send()
        .await
        .expect("upload");
    let attachment: Value = r.json().await.expect("json");
    let with_photo = json!({"kind": "service.update", "body": {"status": "in_progress", "comment": "v2.3", "attachments": [attachment]}}).to_string();
    expect(
        &pa,
        "post",
        &format!("{at_partner}/messages"),
        &pt,
        Some(&with_photo),
        200,
    )
    .await;
    wait_status(&va, &vt, &at_vendor, "in_progress").await;
    expect(
        &va,
        "post",
        &format!("{at_vendor}/messages"),
        &vt,
        Some(&say(Some("resolved"), "update to v2.4")),
        200,
    )
    .await;
    wait_status(&pa, &pt, &at_partner, "resolved").await;
    expect(
        &pa,
        "post",
        &format!("{at_partner}/messages"),
        &pt,
        Some(&say(Some("closed"), "works")),
        200,
    )
    .await;
    let v = wait_status(&va, &vt, &at_vendor, "closed").await;
    let (_, w) = pa.call("get", &at_partner, Some(&pt), None).await;
    assert_eq!(
        v["request"], w["request"],
        "both daemons hold the same request"
    );
    let comments: Vec<&str> = v["request"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["comment"].as_str())
        .collect();
    assert_eq!(
        comments,
        vec![
            "alarm 41",
            "which firmware?",
            "v2.3",
            "update to v2.4",
            "works"
        ]
    );
    // The vendor has the photo's bytes, checked against the signed hash.
    let sha = attachment["sha256"].as_str().expect("sha");
    let r = va
        .client
        .get(format!("{}/api/v1/attachments/{sha}", va.base))
        .header("authorization", format!("Bearer {vt}"))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.bytes().await.expect("bytes").as_ref(),
        b"\x89PNG\r\n\x1a\nscreen"
    );
}
