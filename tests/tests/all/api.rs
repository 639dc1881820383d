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
