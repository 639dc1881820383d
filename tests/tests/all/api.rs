//! The admin JSON API over real HTTPS: bearer tokens (created and revoked by
//! the CLI), errors as JSON naming the field, the same authorization as the
//! web view, and an OpenAPI document that matches the served routes.

use guanxi_tests::{Api, NodeSetup, client_trusting, token_from};
use serde_json::json;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

fn partner(id: &str, name: &str) -> String {
    json!({"id": id, "name": name, "type": "reseller", "country": "TW", "stage": "active", "notes": "private",
           "contacts": [{"name": "Lin Mei", "email": "mei@example.tw", "phone": "+886 2 1234"}, {"name": "Chen Wei"}]})
    .to_string()
}

#[tokio::test]
async fn tokens_authorization_errors_and_the_openapi_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let api = Api {
        client: client_trusting(&node.data_dir().join("tls/cert.pem")).expect("client"),
        base: daemon.url(),
    };
    let admin = token_from(&node.cli(
        Path::new(BIN),
        &["token", "create", "ci", "--user", "admin"],
    ));

    let (status, v) = api.call("get", "/api/v1/me", None, None).await;
    assert_eq!((status, v["code"].as_str()), (401, Some("unauthorized")));
    let (status, v) = api.call("get", "/api/v1/me", Some("gxt_guess"), None).await;
    assert_eq!(status, 401, "{v}");
    let (status, v) = api.call("get", "/api/v1/me", Some(&admin), None).await;
    assert_eq!(
        (status, v["username"].as_str(), v["role"].as_str()),
        (200, Some("admin"), Some("admin"))
    );

    // Bad input: a clear error naming what is wrong, and nothing stored.
    let cases: &[(&str, u16, &str, &str)] = &[
        ("{not json", 400, "bad_json", ""),
        (
            r#"{"name":"A","name":"B","type":"agent","country":"TW","stage":"active"}"#,
            400,
            "bad_json",
            "duplicate",
        ),
        (
            r#"{"id":"x","type":"agent","country":"TW","stage":"active"}"#,
            422,
            "bad_field",
            "name",
        ),
        (
            r#"{"id":"x","name":"X","type":"agent","country":"TW","stage":"active","colour":"red"}"#,
            422,
            "bad_field",
            "colour",
        ),
        (
            r#"{"id":"x","name":"X","type":"agent","country":"Taiwan","stage":"active"}"#,
            422,
            "bad_field",
            "country",
        ),
        (
            r#"{"id":"x","name":"X","type":"wholesaler","country":"TW","stage":"active"}"#,
            422,
            "bad_field",
            "type",
        ),
        (
            r#"{"id":"x","name":"X","type":"agent","country":"TW","stage":"active","contacts":[{"name":"a;b"}]}"#,
            422,
            "bad_field",
            "contacts",
        ),
        (
            r#"{"id":"x","name":"X","type":"agent","country":"TW","stage":"active","contacts":[{"email":"a@b"}]}"#,
            422,
            "bad_field",
            "contacts",
        ),
    ];
    for (body, want_status, want_code, mention) in cases {
        let (status, v) = api
            .call("post", "/api/v1/partners", Some(&admin), Some(body))
            .await;
        assert_eq!(
            (status, v["code"].as_str()),
            (*want_status, Some(*want_code)),
            "{body}: {v}"
        );
        assert!(
            v["message"].as_str().unwrap_or("").contains(mention),
            "{body}: {v}"
        );
    }
    let (_, list) = api
        .call("get", "/api/v1/partners", Some(&admin), None)
        .await;
    assert_eq!(
        list["partners"].as_array().map(Vec::len),
        Some(0),
        "nothing half-stored"
    );

    let (status, v) = api
        .call(
            "post",
            "/api/v1/partners",
            Some(&admin),
            Some(&partner("globex", "Globex")),
        )
        .await;
    assert_eq!((status, v["id"].as_str()), (201, Some("globex")), "{v}");
    assert_eq!(v["contacts"][0]["email"], "mei@example.tw");
    assert_eq!(
        (
            v["contacts"][1]["name"].as_str(),
            v["contacts"].as_array().map(Vec::len)
        ),
        (Some("Chen Wei"), Some(2))
    );
    let (status, _) = api
        .call(
            "post",
            "/api/v1/partners",
            Some(&admin),
            Some(&partner("globex", "Globex")),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = api
        .call(
            "post",
            "/api/v1/partners",
            Some(&admin),
            Some(&partner("initech", "Initech")),
        )
        .await;
    assert_eq!(status, 201);
    let (status, v) = api
        .call(
            "put",
            "/api/v1/partners/globex",
            Some(&admin),
            Some(&partner("globex", "Globex Taiwan")),
        )
        .await;
    assert_eq!(
        (status, v["name"].as_str()),
        (200, Some("Globex Taiwan")),
        "{v}"
    );
    let (status, _) = api
        .call(
            "put",
            "/api/v1/partners/nobody",
            Some(&admin),
            Some(&partner("nobody", "N")),
        )
        .await;
    assert_eq!(status, 404);

    // A partner user's token: its own organization only, no staff routes.
    node.cli(
        Path::new(BIN),
        &[
            "user",
            "add",
            "ina",
            "--role",
            "partner",
            "--partner",
            "initech",
        ],
    );
    let ina = token_from(&node.cli(
        Path::new(BIN),
        &["token", "create", "ina-erp", "--user", "ina"],
    ));
    let (status, _) = api.call("get", "/api/v1/partners", Some(&ina), None).await;
    assert_eq!(status, 403);
    let (status, _) = api
        .call(
            "post",
            "/api/v1/partners",
            Some(&ina),
            Some(&partner("evil", "Evil")),
        )
        .await;
    assert_eq!(status, 403);
    let (other, _) = api
        .call("get", "/api/v1/partners/globex", Some(&ina), None)
        .await;
    let (missing, _) = api
        .call("get", "/api/v1/partners/nobody", Some(&ina), None)
        .await;
    assert_eq!((other, missing), (404, 404));
    let (status, own) = api
        .call("get", "/api/v1/partners/initech", Some(&ina), None)
        .await;
    assert_eq!((status, own["name"].as_str()), (200, Some("Initech")));
    assert!(
        own.get("notes").is_none(),
        "staff notes are not shown to partners: {own}"
    );

    // The OpenAPI document is served and every route it lists answers.
    let (status, doc) = api.call("get", "/api/v1/openapi.json", None, None).await;
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.0.3")));
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("ops").keys() {
            let concrete = path
                .replace("{id}", "globex")
                .replace("{key}", "globex")
                .replace("{vendor}", "globex")
                .replace("{subject}", "s1");
            let body = match (method.as_str(), path.ends_with("/users")) {
                ("get", _) => None,
                (_, true) => Some(r#"{"username":"route-check"}"#.to_string()),
                _ if path.starts_with("/api/v1/partners") => Some(partner("globex-2", "Globex 2")),
                _ => Some("{}".to_string()),
            };
            let (status, v) = api
                .call(method, &concrete, Some(&admin), body.as_deref())
                .await;
            // A missing route is 404/405 without a JSON error; a missing
            // record is a JSON error with its code.
            assert!(
                status != 405 && (status != 404 || v["code"].is_string()),
                "{method} {path}: {status} {v}"
            );
        }
    }

    // A revoked token stops working at once.
    node.cli(Path::new(BIN), &["token", "revoke", "ci"]);
    let (status, _) = api.call("get", "/api/v1/me", Some(&admin), None).await;
    assert_eq!(status, 401);
    let out = node.cli(Path::new(BIN), &["token", "list"]);
    assert!(
        out.contains("\"revoked\": true") && !out.contains("gxt_"),
        "{out}"
    );
    drop(daemon);
}

/// A call that creates something, retried with the same `Idempotency-Key`,
/// creates it once and answers the first answer again; the key with another
/// body is refused; the same key at once from two clients creates one lead;
/// the admin socket's `send` (and `guanxi send --idempotency-key`) queues
/// one message however often it is retried; answers holding a secret are
/// never kept.
#[tokio::test]
async fn retried_calls_with_an_idempotency_key_create_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let client = client_trusting(&node.data_dir().join("tls/cert.pem")).expect("client");
    let admin = token_from(&node.cli(
        Path::new(BIN),
        &["token", "create", "ci", "--user", "admin"],
    ));
    let lead = |company: &str| {
        json!({"customer": {"company": company, "contact": "Lin Mei", "email": "", "phone": ""},
               "country": "TW", "region": "", "product_lines": ["cnc"],
               "estimated_value": {"amount": 1000, "currency": "TWD"},
               "source": "web", "campaign": "", "consent": false, "notes": ""})
        .to_string()
    };
    let post = |key: &str, body: String| {
        client
            .post(format!("{}/api/v1/leads", daemon.url()))
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let count = || async {
        let r = client
            .get(format!("{}/api/v1/leads", daemon.url()))
            .header("authorization", format!("Bearer {admin}"))
            .send()
            .await
            .expect("list");
        let v: serde_json::Value = r.json().await.expect("json");
        v["leads"].as_array().map_or(0, Vec::len)
    };

    let first = post("order-7f3a", lead("Contoso")).await.expect("first");
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.expect("json");
    let again = post("order-7f3a", lead("Contoso")).await.expect("again");
    assert_eq!(again.status(), 201, "the first answer again");
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let again: serde_json::Value = again.json().await.expect("json");
    assert_eq!(again, first, "the same lead, the same answer");
    assert_eq!(count().await, 1, "one lead");

    let other = post("order-7f3a", lead("Initech")).await.expect("other");
    assert_eq!(other.status(), 422);
    let other: serde_json::Value = other.json().await.expect("json");
    assert_eq!(other["code"], "idempotency_key_reused");
    let bad = post("", lead("Initech")).await.expect("bad");
    assert_eq!(bad.status(), 400);
    assert_eq!(count().await, 1, "still one lead");

    // Two clients racing with one key: one lead, and every answer is either
    // the lead or "in progress".
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = client
            .post(format!("{}/api/v1/leads", daemon.url()))
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "race-1")
            .body(lead("Globex"));
        racing.spawn(async move {
            let r = request.send().await.expect("answer");
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.expect("json");
            (status, v)
        });
    }
    let mut created = std::collections::BTreeSet::new();
    while let Some(answer) = racing.join_next().await {
        let (status, v) = answer.expect("join");
        match status {
            201 => {
                created.insert(v["id"].as_str().unwrap_or("").to_string());
            }
            409 => assert_eq!(v["code"], "idempotency_in_progress", "{v}"),
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(count().await, 2);

    // Without a key, a retry is a second call (as before).
    let plain = |body: String| {
        client
            .post(format!("{}/api/v1/leads", daemon.url()))
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(plain(lead("Umbrella")).await.expect("1").status(), 201);
    assert_eq!(plain(lead("Umbrella")).await.expect("2").status(), 201);
    assert_eq!(count().await, 4);

    // The admin socket: `send` with a key queues one message.
    let socket = node.data_dir().join(guanxi::admin::SOCKET_FILE);
    let other_dir = tempfile::tempdir().expect("tempdir");
    let globex = NodeSetup::init(Path::new(BIN), other_dir.path(), "globex").expect("init");
    node.append_config(&globex.peer_block(false)).expect("peer");
    let (status, _) = node.admin("POST", "/admin/v1/reload", None).await;
    assert_eq!(status, 200);
    let ping =
        json!({"peer": "globex", "kind": "ping", "subject": "p-1", "body": {"note": "once"}});
    let (s1, a1) = guanxi::admin::request_keyed(
        &socket,
        "POST",
        "/admin/v1/send",
        Some(ping.clone()),
        Some("k1"),
    )
    .await
    .expect("send");
    let (s2, a2) =
        guanxi::admin::request_keyed(&socket, "POST", "/admin/v1/send", Some(ping), Some("k1"))
            .await
            .expect("send again");
    assert_eq!((s1, s2), (200, 200), "{a1} {a2}");
    assert_eq!(a1, a2);
    let out = node.cli(
        Path::new(BIN),
        &[
            "send",
            "--idempotency-key",
            "k1",
            "globex",
            "ping",
            "p-1",
            r#"{"note":"once"}"#,
        ],
    );
    assert!(
        out.contains(&format!("\"seq\": {}", a1["seq"]))
            || out.contains(&format!("\"seq\":{}", a1["seq"])),
        "{out}"
    );
    let (_, outbox) = node.admin("GET", "/admin/v1/outbox", None).await;
    assert!(outbox.to_string().contains("\"seq\":1"), "{outbox}");
    assert!(
        !outbox.to_string().contains("\"seq\":2"),
        "one message: {outbox}"
    );

    // A one-time password is never kept: the retry is told the call was done.
    let user = json!({"username": "mei", "role": "staff"});
    let (s1, a1) = guanxi::admin::request_keyed(
        &socket,
        "POST",
        "/admin/v1/users",
        Some(user.clone()),
        Some("u1"),
    )
    .await
    .expect("add");
    assert_eq!(s1, 200, "{a1}");
    let (s2, a2) =
        guanxi::admin::request_keyed(&socket, "POST", "/admin/v1/users", Some(user), Some("u1"))
            .await
            .expect("add again");
    assert_eq!(
        (s2, a2["code"].as_str()),
        (409, Some("idempotency_answer_withheld")),
        "{a2}"
    );
    let password = a1["password"].as_str().expect("password");
    let db = std::fs::read(node.data_dir().join("guanxi.redb")).unwrap_or_default();
    assert!(
        !db.windows(password.len()).any(|w| w == password.as_bytes()),
        "the one-time password is not in the store in clear"
    );
}
