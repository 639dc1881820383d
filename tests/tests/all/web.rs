//! The web view over real HTTPS against a real daemon: login, CSRF, sessions
//! (logout, idle expiry), throttling, staff-only pages, cross-organization
//! access, and the language switch.

use guanxi_tests::{Daemon, NodeSetup};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

/// A minimal browser: keeps cookies, does not follow redirects.
#[derive(Clone)]
pub(crate) struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
    pub(crate) accept_language: Option<&'static str>,
    /// An `X-Forwarded-For` header to send (a client behind a proxy).
    forwarded_for: Option<&'static str>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    pub(crate) fn new(node: &NodeSetup, daemon: &Daemon) -> Browser {
        let pem = std::fs::read(node.data_dir().join("tls/cert.pem")).expect("cert");
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser {
            client,
            base: daemon.url(),
            cookies: HashMap::new(),
            accept_language: None,
            forwarded_for: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut request = request.header("cookie", cookie.join("; "));
        if let Some(lang) = self.accept_language {
            request = request.header("accept-language", lang);
        }
        if let Some(client) = self.forwarded_for {
            request = request.header("x-forwarded-for", client);
        }
        let r = request.send().await.expect("request");
        for set in r.headers().get_all("set-cookie") {
            let set = set.to_str().expect("ascii");
            assert!(
                set.contains("Secure") && set.contains("SameSite=Strict"),
                "{set}"
            );
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (k, v) = pair.split_once('=').expect("cookie");
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Page {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_string),
            body: r.text().await.expect("body"),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// GETs `path` asking for a byte range (`bytes=N-M`).
    pub(crate) async fn get_range(&mut self, path: &str, range: &str) -> Page {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("range", range);
        self.send(request).await
    }

    pub(crate) async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(pairs));
        self.send(request).await
    }

    /// Posts a form with one file (`multipart/form-data`).
    async fn post_file(&mut self, path: &str, csrf: &str, file: &[u8]) -> Page {
        let boundary = "guanxi-test-boundary-7f3a";
        let mut body = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"leads.csv\"\r\n\
             content-type: text/csv\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(request).await
    }

    /// Posts a `multipart/form-data` form: text fields and files given as
    /// (file name, content type, bytes) in `file` inputs.
    pub(crate) async fn post_multipart(
        &mut self,
        path: &str,
        pairs: &[(&str, &str)],
        files: &[(&str, &str, &[u8])],
    ) -> Page {
        let boundary = "guanxi-test-boundary-9c1e";
        let mut body = Vec::new();
        for (name, value) in pairs {
            body.extend_from_slice(
                format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        for (file_name, content_type, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\ncontent-type: {content_type}\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(request).await
    }

    /// The CSRF token in the last form of `page`.
    pub(crate) fn csrf(page: &Page) -> String {
        let at = page
            .body
            .rfind("name=\"csrf\" value=\"")
            .expect("a form with a csrf token");
        page.body[at + 19..]
            .split('"')
            .next()
            .expect("token")
            .to_string()
    }

    /// Signs in; at the first sign-in with a one-time password, chooses the
    /// user's own (as a person must) and answers the change's redirect.
    pub(crate) async fn login(&mut self, user: &str, password: &str) -> Page {
        let password = guanxi_tests::current_password(password);
        let page = self.login_raw(user, &password).await;
        if page.location.as_deref() != Some("/account/password") {
            return page;
        }
        let form = self.get("/account/password").await;
        let csrf = Self::csrf(&form);
        let chosen = guanxi_tests::choose_password(&password);
        let changed = self
            .post(
                "/account/password",
                &[
                    ("csrf", &csrf),
                    ("current", &password),
                    ("new", &chosen),
                    ("confirm", &chosen),
                ],
            )
            .await;
        assert_eq!(
            changed.status, 303,
            "first password change: {}",
            changed.body
        );
        changed
    }

    /// Signs in, nothing more.
    async fn login_raw(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        let csrf = Self::csrf(&form);
        self.post(
            "/login",
            &[("csrf", &csrf), ("username", user), ("password", password)],
        )
        .await
    }
}

fn start(dir: &Path, extra_config: &str) -> (NodeSetup, Daemon, String) {
    let node = NodeSetup::init(Path::new(BIN), dir, "acme").expect("init");
    if !extra_config.is_empty() {
        let config = std::fs::read_to_string(node.config_file()).expect("read");
        std::fs::write(
            node.config_file(),
            config.replace("session_idle_seconds = 1800", extra_config),
        )
        .expect("write");
    }
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let password = daemon.first_admin_password().expect("first admin");
    (node, daemon, password)
}

pub(crate) fn password_from(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("password"))
        .map(|p| p.trim().to_string())
        .expect("password line")
}

pub(crate) async fn create_partner(b: &mut Browser, id: &str, name: &str) {
    let form = b.get("/partners/new").await;
    assert_eq!(form.status, 200);
    let csrf = Browser::csrf(&form);
    let done = b
        .post(
            "/partners",
            &[
                ("csrf", &csrf),
                ("id", id),
                ("name", name),
                ("kind", "distributor"),
                ("tier", "gold"),
                ("country", "tw"),
                ("region", "Taipei"),
                ("stage", "active"),
            ],
        )
        .await;
    assert_eq!(
        (done.status, done.location.as_deref()),
        (303, Some(format!("/partners/{id}").as_str())),
        "{}",
        done.body
    );
    let shown = b.get(&format!("/partners/{id}")).await;
    assert!(
        shown.body.contains("Partner added.") && shown.body.contains(name),
        "{}",
        shown.body
    );
}

/// Staff create a partner user in the web view; returns the one-time
/// password the page shows once.
pub(crate) async fn add_partner_user(
    b: &mut Browser,
    org: &str,
    username: &str,
    name: &str,
) -> String {
    let page = b.get(&format!("/partners/{org}")).await;
    let csrf = Browser::csrf(&page);
    let created = b
        .post(
            &format!("/partners/{org}/users"),
            &[
                ("csrf", &csrf),
                ("username", username),
                ("display_name", name),
            ],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let at = created
        .body
        .find("id=\"new-password\">")
        .expect("password shown once")
        + 18;
    let password = created.body[at..]
        .split('<')
        .next()
        .expect("password")
        .to_string();
    assert_eq!(password.len(), 24, "{}", created.body);
    password
}

#[tokio::test]
async fn staff_and_partner_users_see_what_they_may_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "");
    let mut staff = Browser::new(&node, &daemon);

    // Not logged in: every page sends to the login page.
    for path in ["/", "/partners", "/partners/globex", "/account/password"] {
        let page = staff.get(path).await;
        assert_eq!(
            (page.status, page.location.as_deref()),
            (303, Some("/login")),
            "{path}"
        );
    }
    let wrong = staff.login("admin", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("Wrong username or password."),
        "{}",
        wrong.body
    );
    let ok = staff.login("admin", &admin_password).await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/")));
    let home = staff.get("/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("Inbox") && home.body.contains("Administrator"),
        "{}",
        home.body
    );

    // A form without (or with a wrong) CSRF token changes nothing.
    let refused = staff
        .post(
            "/partners",
            &[
                ("id", "evil"),
                ("name", "Evil"),
                ("kind", "agent"),
                ("country", "TW"),
                ("stage", "active"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    let refused = staff
        .post(
            "/partners",
            &[
                ("csrf", "guess"),
                ("id", "evil"),
                ("name", "Evil"),
                ("kind", "agent"),
                ("country", "TW"),
                ("stage", "active"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(staff.get("/partners/evil").await.status, 404);

    // Bad input names the field and keeps what was typed.
    let form = staff.get("/partners/new").await;
    let csrf = Browser::csrf(&form);
    let bad = staff
        .post(
            "/partners",
            &[
                ("csrf", &csrf),
                ("id", "Globex TW"),
                ("name", "Globex 台灣"),
                ("kind", "distributor"),
                ("country", "Taiwan"),
                ("stage", "active"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(
        bad.body.contains("Use a two-letter country code") && bad.body.contains("Globex 台灣"),
        "{}",
        bad.body
    );

    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    create_partner(&mut staff, "initech", "Initech").await;
    let list = staff.get("/partners").await;
    assert!(
        list.body.contains("Globex Taiwan") && list.body.contains("Initech"),
        "{}",
        list.body
    );
    let page = staff.get("/partners/globex").await;
    assert!(
        !page.body.contains("Partner added.") && page.body.contains("Distributor"),
        "{}",
        page.body
    );

    // A partner user of Initech, created by staff in the web view.
    let ina_password = add_partner_user(&mut staff, "initech", "ina", "Ina Wang").await;
    let csrf = Browser::csrf(&staff.get("/partners/initech").await);
    let again = staff
        .post(
            "/partners/initech/users",
            &[("csrf", &csrf), ("username", "ina"), ("display_name", "")],
        )
        .await;
    assert_eq!(again.status, 409);
    assert!(
        staff
            .get("/partners/initech")
            .await
            .body
            .contains("Ina Wang")
    );
    let mut partner = Browser::new(&node, &daemon);
    assert_eq!(partner.login("ina", &ina_password).await.status, 303);
    let home = partner.get("/").await;
    assert!(
        home.body.contains("/partners/initech") && !home.body.contains("href=\"/partners\""),
        "{}",
        home.body
    );
    assert_eq!(partner.get("/partners/initech").await.status, 200);
    // Another organization's record looks exactly like one that does not exist.
    let other = partner.get("/partners/globex").await;
    let missing = partner.get("/partners/no-such-org").await;
    assert_eq!((other.status, missing.status), (404, 404));
    assert!(!other.body.contains("Globex"), "leaked: {}", other.body);
    // Staff pages refuse partner users.
    for path in ["/partners", "/partners/new", "/partners/initech/edit"] {
        assert_eq!(partner.get(path).await.status, 403, "{path}");
    }
    let csrf = Browser::csrf(&partner.get("/").await);
    let change = partner
        .post(
            "/partners/initech",
            &[
                ("csrf", &csrf),
                ("name", "Hacked"),
                ("kind", "agent"),
                ("country", "TW"),
                ("stage", "active"),
            ],
        )
        .await;
    assert_eq!(change.status, 403);
    assert!(
        staff
            .get("/partners/initech")
            .await
            .body
            .contains("Initech")
    );
    // Every staff form refuses a partner user with a valid session and
    // token, and nothing changes.
    for (path, fields) in [
        (
            "/partners",
            vec![
                ("id", "evil"),
                ("name", "Evil"),
                ("kind", "agent"),
                ("country", "TW"),
                ("stage", "active"),
            ],
        ),
        (
            "/partners/initech/users",
            vec![("username", "intruder"), ("display_name", "")],
        ),
        (
            "/catalog/products",
            vec![(
                "products",
                "sku,name_en,name_zh,unit,warranty_months,active\nX,X,X,pcs,12,yes",
            )],
        ),
        ("/catalog/publish", vec![]),
        ("/leads", vec![("company", "Evil"), ("country", "TW")]),
        ("/leads/rules", vec![("offer_hours", "1")]),
        (
            "/mdf",
            vec![
                ("partner", "initech"),
                ("budget", "b1"),
                ("amount", "1000"),
                ("currency", "TWD"),
            ],
        ),
    ] {
        let mut with_csrf = vec![("csrf", csrf.as_str())];
        with_csrf.extend(fields);
        let refused = partner.post(path, &with_csrf).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
    }
    assert_eq!(staff.get("/partners/evil").await.status, 404);
    assert!(
        !staff
            .get("/partners/initech")
            .await
            .body
            .contains("intruder")
    );

    // Logout ends the session for good.
    let csrf = Browser::csrf(&partner.get("/").await);
    let session = partner
        .cookies
        .get("gx_session")
        .cloned()
        .expect("session cookie");
    let out = partner.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location.as_deref()), (303, Some("/login")));
    partner.cookies.insert("gx_session".into(), session);
    assert_eq!(partner.get("/").await.location.as_deref(), Some("/login"));
    drop(daemon);
}

#[tokio::test]
async fn throttling_idle_expiry_and_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "session_idle_seconds = 2");
    let out = node.cli(Path::new(BIN), &["user", "add", "mei", "--role", "staff"]);
    let mei_password = password_from(&out);

    // Three wrong passwords: the next attempt for this account from this
    // address must wait (growing delays, not a lock), even with the right one.
    let mut b = Browser::new(&node, &daemon);
    for _ in 0..3 {
        assert_eq!(b.login("mei", "wrong").await.status, 401);
    }
    let delayed = b.login("mei", &mei_password).await;
    assert_eq!(delayed.status, 429);
    assert!(
        delayed.body.contains("Too many failed attempts"),
        "{}",
        delayed.body
    );
    // Nobody else is held up from the same address (one office, one NAT).
    let mut colleague = Browser::new(&node, &daemon);
    assert_eq!(colleague.login("admin", &admin_password).await.status, 303);
    // Once the wait has passed, the right password works.
    node.set_clock_offset(2_000);
    let mut later = Browser::new(&node, &daemon);
    assert_eq!(later.login("mei", &mei_password).await.status, 303);
    let _ = node.cli(Path::new(BIN), &["user", "disable", "mei"]);

    // Idle expiry (5 s here): the session ends and says so.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (node2, daemon2, admin2) = start(dir2.path(), "session_idle_seconds = 5");
    let mut a = Browser::new(&node2, &daemon2);
    assert_eq!(a.login("admin", &admin2).await.status, 303);
    assert_eq!(a.get("/").await.status, 200);
    node2.set_clock_offset(5_500);
    let expired = a.get("/").await;
    assert_eq!(expired.location.as_deref(), Some("/login"));
    assert!(
        a.get("/login").await.body.contains("Your session ended"),
        "flash shown"
    );

    // Language: Accept-Language, then the kept switch.
    let mut zh = Browser::new(&node2, &daemon2);
    zh.accept_language = Some("zh-TW,zh;q=0.9,en;q=0.5");
    let login = zh.get("/login").await;
    assert!(
        login.body.contains("lang=\"zh-TW\"") && login.body.contains("登入"),
        "{}",
        login.body
    );
    let switched = zh.get("/lang/en?next=/login").await;
    assert_eq!(
        (switched.status, switched.location.as_deref()),
        (303, Some("/login"))
    );
    let login = zh.get("/login").await;
    assert!(
        login.body.contains("Log in") && login.body.contains("lang=\"en\""),
        "switch kept over Accept-Language"
    );
    // Off-site in every spelling a browser resolves as another host: home.
    for next in [
        "//evil.example",
        "/%5Cevil.example/",
        "/%09/evil.example/",
        "https://evil.example/",
    ] {
        let offsite = zh.get(&format!("/lang/en?next={next}")).await;
        assert_eq!(
            (offsite.status, offsite.location.as_deref()),
            (303, Some("/")),
            "no open redirect: {next}"
        );
    }
    // A line break cannot split the answer's headers: a clean redirect.
    let broken = zh.get("/lang/en?next=/x%0d%0aSet-Cookie:%20a=b").await;
    assert_eq!(broken.status, 303, "no 500 on a line break");
    assert!(
        broken
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with('/') && !l.contains('\n')),
        "{:?}",
        broken.location
    );
    drop((daemon, daemon2));
}

#[tokio::test]
async fn the_staff_inbox_shows_a_peer_that_keeps_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let config = std::fs::read_to_string(node.config_file()).expect("read");
    std::fs::write(
        node.config_file(),
        config.replace("alert_after_seconds = 3600", "alert_after_seconds = 1"),
    )
    .expect("write");
    // A peer nobody answers for (port 0: nothing can listen there).
    let key = guanxi_protocol::NodeKey::from_seed(&[0x55; 32]);
    node.append_config(&format!(
        "\n[[peers]]\nid = \"ghost\"\nurl = \"https://127.0.0.1:0\"\n[[peers.keys]]\npublic_key = \"{}\"\n",
        key.public()
    ))
    .expect("peer");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let password = daemon.first_admin_password().expect("password");
    let (status, v) = node
        .admin("POST", "/admin/v1/send", Some(serde_json::json!({"peer": "ghost", "kind": "ping", "subject": "p-1", "body": {"note": ""}})))
        .await;
    assert_eq!(status, 200, "{v}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node.peer_status("ghost").await["failing_too_long"] != true {
        assert!(std::time::Instant::now() < deadline, "never flagged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut b = Browser::new(&node, &daemon);
    assert_eq!(b.login("admin", &password).await.status, 303);
    let home = b.get("/").await;
    assert!(
        home.body
            .contains("Deliveries to a peer have been failing for too long")
            && home.body.contains("ghost"),
        "{}",
        home.body
    );
    assert!(
        !home.body.contains("Nothing needs your action"),
        "{}",
        home.body
    );
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_limit_even_when_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let config = std::fs::read_to_string(node.config_file()).expect("read");
    assert!(config.contains("session_absolute_seconds = 43200"));
    std::fs::write(
        node.config_file(),
        config.replace(
            "session_absolute_seconds = 43200",
            "session_absolute_seconds = 60",
        ),
    )
    .expect("write");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let password = daemon.first_admin_password().expect("password");
    let mut b = Browser::new(&node, &daemon);
    assert_eq!(b.login("admin", &password).await.status, 303);
    // In use every 10 s (of the daemon's clock), within the limit; real
    // time adds to the clock too, so the last use keeps 20 s of slack.
    for offset in [10_000, 20_000, 30_000, 40_000] {
        node.set_clock_offset(offset);
        assert_eq!(b.get("/").await.status, 200, "in use, within the limit");
    }
    node.set_clock_offset(61_000);
    assert_eq!(
        b.get("/").await.location.as_deref(),
        Some("/login"),
        "ended after 60 s of use"
    );
}

/// Borrowed pairs for `Browser::post`.
fn refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The first link on `page` that starts with `prefix`.
pub(crate) fn link(page: &Page, prefix: &str) -> String {
    let at = page
        .body
        .find(&format!("href=\"{prefix}"))
        .unwrap_or_else(|| panic!("no link {prefix} in {}", page.body))
        + 6;
    page.body[at..].split('"').next().expect("link").to_string()
}

#[tokio::test]
async fn leads_on_the_web_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "");
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    create_partner(&mut staff, "initech", "Initech").await;
    let mei_password = add_partner_user(&mut staff, "globex", "mei", "Mei").await;
    let ina_password = add_partner_user(&mut staff, "initech", "ina", "Ina").await;

    // Rules: Taiwan, gold tier, one open lead per partner.
    let rules = staff.get("/leads/rules").await;
    let csrf = Browser::csrf(&rules);
    let bad = staff
        .post(
            "/leads/rules",
            &[("csrf", &csrf), ("offer_hours", "0"), ("name_0", "tw")],
        )
        .await;
    assert!(
        bad.status == 422 && bad.body.contains("offer_hours"),
        "{}",
        bad.body
    );
    let saved = staff
        .post(
            "/leads/rules",
            &[
                ("csrf", &csrf),
                ("offer_hours", "24"),
                ("name_0", "tw"),
                ("countries_0", "tw"),
                ("product_lines_0", ""),
                ("tiers_0", "gold"),
                ("capacity_0", "1"),
                ("strategy_0", "round_robin"),
                ("weights_0", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);

    // A new lead: bad input names the field and keeps what was typed.
    let form = staff.get("/leads/new").await;
    let csrf = Browser::csrf(&form);
    let lead = |company: &'static str, country: &'static str| {
        vec![
            ("company", company),
            ("email", "it@contoso.tw"),
            ("country", country),
            ("region", "Taipei"),
            ("product_lines", "cnc; laser"),
            ("estimated_value", "125000.50"),
            ("currency", "TWD"),
            ("source", "web"),
            ("campaign", "spring"),
            ("consent", "yes"),
        ]
    };
    let mut fields = lead("Contoso", "Taiwan");
    fields.push(("csrf", &csrf));
    let bad = staff.post("/leads", &fields).await;
    assert!(
        bad.status == 422
            && bad.body.contains("Use a two-letter country code")
            && bad.body.contains("Contoso"),
        "{}",
        bad.body
    );
    let mut fields = lead("Contoso", "tw");
    fields.push(("csrf", &csrf));
    let created = staff.post("/leads", &fields).await;
    assert_eq!(created.status, 303, "{}", created.body);
    let lead_path = created.location.expect("to the lead");
    let page = staff.get(&lead_path).await;
    assert!(
        page.body.contains("id=\"lead-stage\">offered")
            && page.body.contains("Globex Taiwan")
            && page.body.contains("TWD 125,000.50"),
        "{}",
        page.body
    );

    // The second goes to initech: globex is at capacity; the trace says so.
    let mut fields = lead("Fabrikam", "TW");
    fields.push(("csrf", &csrf));
    let second = staff.post("/leads", &fields).await;
    let second_path = second.location.expect("to the lead");
    let page = staff.get(&second_path).await;
    assert!(
        page.body.contains("skipped: at capacity (open leads)")
            && page.body.contains("<strong>Initech</strong>"),
        "{}",
        page.body
    );
    // Withdrawing an offer needs its confirmation box; without it the
    // offer stays.
    let unconfirmed = staff
        .post(
            &format!("{second_path}/withdraw"),
            &[("csrf", &csrf), ("reason", "oops")],
        )
        .await;
    assert_eq!(unconfirmed.status, 422, "{}", unconfirmed.body);
    assert!(
        page.body
            .contains("name=\"confirm\" value=\"yes\" required")
            && !staff.get(&second_path).await.body.contains("withdrawn"),
        "{}",
        page.body
    );

    // The partner user answers in the web view.
    let mut mei = Browser::new(&node, &daemon);
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    let home = mei.get("/").await;
    assert!(
        home.body.contains("Leads offered to you wait"),
        "{}",
        home.body
    );
    let offers = mei.get("/offers").await;
    assert!(
        offers.body.contains("Contoso") && !offers.body.contains("Fabrikam"),
        "{}",
        offers.body
    );
    let offer_path = link(&offers, "/offers/");
    let offer = mei.get(&offer_path).await;
    let csrf = Browser::csrf(&offer);
    // Won before accepted: refused with the reason.
    let refused = mei
        .post(
            &offer_path,
            &[
                ("csrf", &csrf),
                ("action", "progress"),
                ("status", "won"),
                ("won_amount", "100"),
                ("won_currency", "TWD"),
                ("won_on", "2026-12-01"),
            ],
        )
        .await;
    assert!(
        refused.status == 409 && refused.body.contains("illegal_transition"),
        "{}",
        refused.body
    );
    // Without the CSRF token nothing happens.
    assert_eq!(
        mei.post(&offer_path, &[("action", "accept")]).await.status,
        403
    );
    // Another organization's user sees nothing and can do nothing.
    let mut ina = Browser::new(&node, &daemon);
    assert_eq!(ina.login("ina", &ina_password).await.status, 303);
    assert_eq!(ina.get(&offer_path).await.status, 404);
    let ina_csrf = Browser::csrf(&ina.get("/offers").await);
    let other = ina
        .post(&offer_path, &[("csrf", &ina_csrf), ("action", "accept")])
        .await;
    assert!(
        other.status == 404 && other.body.contains("unknown_record"),
        "{}",
        other.body
    );
    assert_eq!(ina.get(&lead_path).await.status, 403);

    let accepted = mei
        .post(
            &offer_path,
            &[("csrf", &csrf), ("action", "accept"), ("note", "on it")],
        )
        .await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    let offer = mei.get(&offer_path).await;
    assert!(
        offer.body.contains("id=\"offer-status\">accepted"),
        "{}",
        offer.body
    );
    let again = mei
        .post(&offer_path, &[("csrf", &csrf), ("action", "accept")])
        .await;
    assert!(
        again.status == 409 && again.body.contains("illegal_transition"),
        "{}",
        again.body
    );
    let won = mei
        .post(
            &offer_path,
            &[
                ("csrf", &csrf),
                ("action", "progress"),
                ("status", "won"),
                ("won_amount", "120000"),
                ("won_currency", "twd"),
                ("won_on", "2026-12-01"),
            ],
        )
        .await;
    assert_eq!(won.status, 303, "{}", won.body);
    // The staff dashboard counts leads by stage, from kept counts.
    let home = staff.get("/").await;
    assert!(
        home.body.contains("Leads by stage") && home.body.contains("<title>won: 1</title>"),
        "{}",
        home.body
    );
    let page = staff.get(&lead_path).await;
    assert!(
        page.body.contains("id=\"lead-stage\">won") && page.body.contains("TWD 120,000.00"),
        "{}",
        page.body
    );

    // The analysis shows the win, in a table and a chart.
    let analysis = staff.get("/leads/analysis?group=partner").await;
    assert!(
        analysis.body.contains("<svg")
            && analysis.body.contains("<td>Globex Taiwan</td>")
            && analysis.body.contains("100.0 %"),
        "{}",
        analysis.body
    );

    // CSV import: all or nothing, errors by row and field.
    let csrf = Browser::csrf(&staff.get("/leads/import").await);
    let bad = staff
        .post_file(
            "/leads/import",
            &csrf,
            b"company,country,product_lines,consent\nA,TW,cnc,yes\nB,XX1,cnc,yes\n",
        )
        .await;
    assert!(
        bad.status == 422 && bad.body.contains("<td>3</td>") && bad.body.contains("country"),
        "{}",
        bad.body
    );
    let good = staff
        .post_file(
            "/leads/import",
            &csrf,
            b"company,country,product_lines,consent\nUmbrella,TW,cnc,no\n",
        )
        .await;
    assert_eq!(
        (good.status, good.location.as_deref()),
        (303, Some("/leads")),
        "{}",
        good.body
    );
    let list = staff.get("/leads").await;
    assert!(
        list.body.contains("Umbrella") && list.body.contains("waiting: no consent to share"),
        "{}",
        list.body
    );

    // Deal registration by the partner user; staff see the conflict and approve.
    let deals = mei.get("/deals").await;
    let csrf = Browser::csrf(&deals);
    let filed = mei
        .post(
            "/deals",
            &[
                ("csrf", &csrf),
                ("vendor", "acme"),
                ("company", "Contoso Ltd"),
                ("country", "TW"),
                ("product_lines", "CNC"),
                ("expected_close", "2027-03-31"),
            ],
        )
        .await;
    assert_eq!(filed.status, 303, "{}", filed.body);
    let regs = staff.get("/registrations").await;
    let reg_path = link(&regs, "/registrations/web:globex/");
    let reg = staff.get(&reg_path).await;
    assert!(
        reg.body.contains("id=\"conflicts\"") && reg.body.contains("same company name"),
        "{}",
        reg.body
    );
    let csrf = Browser::csrf(&reg);
    let approved = staff
        .post(
            &reg_path,
            &[
                ("csrf", &csrf),
                ("decision", "approve"),
                ("exclusive_until", "2027-06-30"),
            ],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let deals = mei.get("/deals").await;
    assert!(
        deals.body.contains("approved") && deals.body.contains("2027-06-30"),
        "{}",
        deals.body
    );
    // In Chinese, nothing left in English but what people typed.
    all_in_chinese(
        &mut staff,
        &[
            "/",
            "/leads",
            "/leads/new",
            "/leads/rules",
            "/leads/analysis",
            "/leads/import",
            "/registrations",
            &lead_path,
        ],
    )
    .await;
    all_in_chinese(&mut mei, &["/", "/offers", "/deals"]).await;
    drop(daemon);
}

#[tokio::test]
async fn ordering_on_the_web_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "");
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    let mei_password = add_partner_user(&mut staff, "globex", "mei", "Mei").await;

    // The catalog from CSV: bad rows are named and nothing is saved.
    let page = staff.get("/catalog").await;
    let csrf = Browser::csrf(&page);
    let bad = staff
        .post(
            "/catalog/products",
            &[
                ("csrf", &csrf),
                (
                    "products",
                    "CNC-5X,5-axis CNC,五軸加工機,pcs,24,yes\nSPINDLE,Spindle,,pcs,twelve,yes\n",
                ),
            ],
        )
        .await;
    assert!(
        bad.status == 422 && bad.body.contains("Row 2: warranty months “twelve”"),
        "{}",
        bad.body
    );
    let saved = staff
        .post("/catalog/products", &[("csrf", &csrf), ("products", "sku,name_en,name_zh,unit,warranty_months,active\nCNC-5X,5-axis CNC,五軸加工機,pcs,24,yes\nSPINDLE,Spindle,主軸,pcs,12,yes\n")])
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    // A price list with several mistakes: every one is shown next to its
    // field at once, and what was typed stays in the form.
    let bad = staff
        .post(
            "/catalog/lists",
            &[
                ("csrf", &csrf),
                ("id", "tw-gold"),
                ("tier", "gold"),
                ("currency", "tw"),
                ("valid_from", "2020-02-30"),
                ("valid_to", ""),
                ("discount", "five"),
                ("tax", "5"),
                ("prices", "CNC-5X,abc\nSPINDLE,25000.50\n"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    for shown in [
        "name=\"id\" value=\"tw-gold\"",
        "name=\"discount\" value=\"five\"",
        "SPINDLE,25000.50",
    ] {
        assert!(bad.body.contains(shown), "{shown}: {}", bad.body);
    }
    assert_eq!(
        bad.body.matches("<span class=\"error\">").count(),
        4,
        "{}",
        bad.body
    );
    for said in [
        "Use a three-letter currency code like TWD.",
        "Write a real date like 2027-01-31.",
        "Write a percentage from 0 to 100, like 5 or 12.25.",
    ] {
        assert!(bad.body.contains(said), "{said}: {}", bad.body);
    }
    let list = staff
        .post(
            "/catalog/lists",
            &[
                ("csrf", &csrf),
                ("id", "tw-gold"),
                ("tier", "gold"),
                ("currency", "twd"),
                ("valid_from", "2020-01-01"),
                ("valid_to", ""),
                ("discount", "5"),
                ("tax", "5"),
                ("prices", "CNC-5X,\"1,000,000.00\"\nSPINDLE,25000.50\n"),
            ],
        )
        .await;
    assert_eq!(list.status, 303, "{}", list.body);
    let page = staff.get("/catalog").await;
    assert!(
        page.body.contains("TWD 1,000,000.00") && page.body.contains("5 %"),
        "{}",
        page.body
    );

    // The partner user orders in the vendor's web view.
    let mut mei = Browser::new(&node, &daemon);
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    let shop = mei.get("/shop/acme").await;
    assert!(
        shop.body.contains("TWD 25,000.50") && shop.body.contains("5-axis CNC"),
        "{}",
        shop.body
    );
    let csrf = Browser::csrf(&shop);
    // Ordering like a shop: the partner's price (the list less its 5 %),
    // quantities typed in the table, and the running total recalculated by
    // the server before placing.
    assert!(
        shop.body.contains("<strong>TWD 950,000.00</strong>"),
        "{}",
        shop.body
    );
    let table = [
        ("csrf", csrf.as_str()),
        ("currency", "TWD"),
        ("qty_CNC-5X", "2"),
        ("qty_SPINDLE", "1"),
        ("reference", "PO-T"),
        ("ship_name", "Globex"),
        ("ship_country", "TW"),
    ];
    let mut recalc = table.to_vec();
    recalc.push(("action", "recalculate"));
    let totalled = mei.post("/shop/acme", &recalc).await;
    assert!(
        totalled.status == 200
            && totalled
                .body
                .contains("<strong id=\"order-total\">TWD 2,019,937.99</strong>")
            && totalled.body.contains("value=\"2\""),
        "{}",
        totalled.body
    );
    let mut place = table.to_vec();
    place.push(("action", "place"));
    let placed = mei.post("/shop/acme", &place).await;
    assert_eq!(placed.status, 303, "{}", placed.body);
    let page = mei.get(&placed.location.expect("to the order")).await;
    assert!(
        page.body.contains("PO-T") && page.body.contains("TWD 2,019,937.99"),
        "{}",
        page.body
    );
    let order = |lines: &'static str| {
        vec![
            ("reference", "PO-1"),
            ("currency", "TWD"),
            ("lines", lines),
            ("ship_name", "Globex"),
            ("ship_country", "tw"),
        ]
    };
    // Every problem of the lines shows in one round, by row: the row that
    // cannot be read and the catalog's refusals of the others together.
    let mut fields = order("CNC-9Z, 1\nSPINDLE, 0\nSPINDLE, two\n");
    fields.push(("csrf", &csrf));
    let refused = mei.post("/shop/acme", &fields).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let problems: Vec<String> = refused
        .body
        .split("<ul id=\"problems\">")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .unwrap_or("")
        .split("<li>")
        .skip(1)
        .map(|li| li.trim_end_matches("</li>").to_string())
        .collect();
    assert_eq!(
        problems,
        vec![
            "Row 1: CNC-9Z is not in the catalog",
            "Row 2: the quantity of SPINDLE must be greater than 0",
            "Row 3: quantity “two” is not a whole number",
        ],
        "{}",
        refused.body
    );
    // The order fulfils a lead offered to globex.
    let form = staff.get("/leads/new").await;
    let lead_csrf = Browser::csrf(&form);
    let lead = staff
        .post(
            "/leads",
            &[
                ("csrf", &lead_csrf),
                ("company", "Contoso"),
                ("country", "TW"),
                ("product_lines", "cnc"),
                ("consent", "yes"),
            ],
        )
        .await;
    let lead_path = lead.location.expect("to the lead");
    let offers = mei.get("/offers").await;
    let subject = link(&offers, "/offers/acme/")
        .rsplit('/')
        .next()
        .expect("subject")
        .to_string();
    let mut fields = order("CNC-5X, 5\nSPINDLE, 2\n");
    fields.push(("csrf", &csrf));
    fields.push(("lead", &subject));
    let placed = mei.post("/shop/acme", &fields).await;
    assert_eq!(placed.status, 303, "{}", placed.body);
    let order_path = placed.location.expect("to the order");
    let page = mei.get(&order_path).await;
    assert!(
        page.body.contains("id=\"order-status\">placed") && page.body.contains("TWD 5,037,376.00"),
        "{}",
        page.body
    );
    // The partner's dashboard lists the order in flight and the offer it
    // has not answered yet.
    let home = mei.get("/").await;
    assert!(
        home.body.contains("Orders in flight")
            && home
                .body
                .contains(&format!("<a href=\"{order_path}\">PO-1</a>"))
            && home.body.contains("Leads waiting for your answer")
            && home.body.contains("answer by "),
        "{}",
        home.body
    );

    // Staff acknowledge part, ship, invoice; the partner cancels the rest.
    let home = staff.get("/").await;
    assert!(home.body.contains("Orders wait for you"), "{}", home.body);
    let page = staff.get(&order_path).await;
    let csrf = Browser::csrf(&page);
    let step = |mut pairs: Vec<(&'static str, &'static str)>| -> Vec<(String, String)> {
        pairs.push(("csrf", ""));
        pairs
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    if k == "csrf" {
                        csrf.clone()
                    } else {
                        v.to_string()
                    },
                )
            })
            .collect()
    };
    let done = staff
        .post(
            &order_path,
            &refs(&step(vec![
                ("action", "ack"),
                ("accepted_1", "3"),
                ("reason_1", "2 next quarter"),
                ("accepted_2", "2"),
            ])),
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let done = staff
        .post(
            &order_path,
            &refs(&step(vec![
                ("action", "ship"),
                ("shipment", "S1"),
                ("qty_1", "3"),
                ("serials_1", "A1, A2, A3"),
                ("qty_2", "1"),
            ])),
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let again = staff
        .post(
            &order_path,
            &refs(&step(vec![
                ("action", "ship"),
                ("shipment", "S1"),
                ("qty_2", "1"),
            ])),
        )
        .await;
    assert!(
        again.status == 422 && again.body.contains("already recorded"),
        "{}",
        again.body
    );
    // Invoiced today, so that this month's revenue shows on the dashboard.
    let today: &'static str = jiff::Timestamp::now()
        .strftime("%Y-%m-%d")
        .to_string()
        .leak();
    let done = staff
        .post(
            &order_path,
            &refs(&step(vec![
                ("action", "invoice"),
                ("invoice", "INV-1"),
                ("issued_on", today),
                ("qty_1", "3"),
                ("qty_2", "1"),
            ])),
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let home = staff.get("/").await;
    let month = &today[..7];
    assert!(
        home.body.contains("Revenue invoiced by month")
            && home.body.contains(&format!("<title>{month}: TWD 3,"))
            && !home.body.contains(&format!("<title>{month}: TWD 0.00")),
        "{}",
        home.body
    );
    let page = mei.get(&order_path).await;
    let csrf_mei = Browser::csrf(&page);
    let too_much = mei
        .post(
            &order_path,
            &[
                ("csrf", &csrf_mei),
                ("action", "cancel"),
                ("qty_1", "1"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert!(
        too_much.status == 409 && too_much.body.contains("illegal_transition"),
        "{}",
        too_much.body
    );
    // Cancelling needs its confirmation box ticked; without it nothing
    // changes.
    let unconfirmed = mei
        .post(
            &order_path,
            &[
                ("csrf", &csrf_mei),
                ("action", "cancel"),
                ("qty_2", "1"),
                ("reason", "enough"),
            ],
        )
        .await;
    assert!(
        unconfirmed.status == 422 && unconfirmed.body.contains("Tick the confirmation box"),
        "{}",
        unconfirmed.body
    );
    let cancelled = mei
        .post(
            &order_path,
            &[
                ("csrf", &csrf_mei),
                ("action", "cancel"),
                ("qty_2", "1"),
                ("reason", "enough"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(cancelled.status, 303, "{}", cancelled.body);
    // The answer says what was done and who was told.
    let told = mei.get(&order_path).await;
    assert!(
        told.body
            .contains("Quantities cancelled; the vendor has been told."),
        "{}",
        told.body
    );
    let page = staff.get(&order_path).await;
    assert!(
        page.body.contains("id=\"order-status\">shipped")
            && page.body.contains("INV-1")
            && page.body.contains("TWD 3,017,437.99"),
        "{}",
        page.body
    );
    // The order and the lead link to each other at the vendor.
    assert!(
        page.body
            .contains(&format!("href=\"{lead_path}\" id=\"order-lead\"")),
        "{}",
        page.body
    );
    let lead_page = staff.get(&lead_path).await;
    assert!(
        lead_page.body.contains("id=\"lead-orders\"") && lead_page.body.contains("PO-1"),
        "{}",
        lead_page.body
    );
    // The partner's list shows it.
    let list = mei.get("/orders").await;
    assert!(list.body.contains("PO-1"), "{}", list.body);

    // In Chinese nothing on these pages is left in English but what
    // people typed (names, references) and codes.
    all_in_chinese(
        &mut staff,
        &[
            "/",
            "/catalog",
            "/orders",
            &order_path,
            "/partners",
            "/partners/globex",
            "/notifications",
            "/account",
            "/leads",
            &lead_path,
        ],
    )
    .await;
    all_in_chinese(
        &mut mei,
        &[
            "/",
            "/shop",
            "/shop/acme",
            "/orders",
            &order_path,
            "/offers",
            "/notifications",
            "/account",
        ],
    )
    .await;
    drop(daemon);
}

/// English words left on a page shown in Chinese: words of four letters
/// or more in its text, outside tags, `<code>`, elements marked
/// `lang="en"` and the page title, that are not among `typed` (what the
/// test's people typed: names, references).
pub(crate) fn untranslated(body: &str, typed: &[&str]) -> Vec<String> {
    let mut text = String::new();
    let mut rest = body;
    // Drop <code>…</code>, <title>…</title> and any element marked lang="en".
    while let Some(start) = rest.find('<') {
        text.push_str(&rest[..start]);
        rest = &rest[start..];
        let tag_end = rest.find('>').map_or(rest.len(), |i| i + 1);
        let tag = &rest[..tag_end];
        let name: String = tag[1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let skip =
            name == "code" || name == "title" || name == "style" || tag.contains("lang=\"en\"");
        rest = &rest[tag_end..];
        if skip && !name.is_empty() {
            let close = format!("</{name}>");
            rest = rest.find(&close).map_or("", |i| &rest[i + close.len()..]);
        }
        text.push(' ');
    }
    text.push_str(rest);
    // Tokens with digits are ids, dates and amounts, not words.
    let mut left: Vec<String> = text
        .split_whitespace()
        .filter(|token| !token.chars().any(|c| c.is_ascii_digit()))
        .flat_map(|token| token.split(|c: char| !c.is_ascii_alphabetic()))
        .filter(|w| w.len() >= 4)
        .filter(|w| !typed.iter().any(|t| t.eq_ignore_ascii_case(w)))
        .map(str::to_string)
        .collect();
    left.sort();
    left.dedup();
    left
}

#[tokio::test]
async fn service_requests_and_claims_on_the_web_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "");
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    create_partner(&mut staff, "initech", "Initech").await;
    let mei_password = add_partner_user(&mut staff, "globex", "mei", "Mei").await;
    let ina_password = add_partner_user(&mut staff, "initech", "ina", "Ina").await;

    // The partner user opens an urgent request in the web view.
    let mut mei = Browser::new(&node, &daemon);
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    let csrf = Browser::csrf(&mei.get("/service").await);
    let bad = mei
        .post(
            "/service",
            &[
                ("csrf", &csrf),
                ("vendor", "acme"),
                ("company", "Contoso"),
                ("sku", "CNC-5X"),
                ("problem", ""),
                ("priority", "urgent"),
            ],
        )
        .await;
    assert!(
        bad.status == 422 && bad.body.contains("body.problem"),
        "{}",
        bad.body
    );
    let opened = mei
        .post(
            "/service",
            &[
                ("csrf", &csrf),
                ("vendor", "acme"),
                ("company", "Contoso"),
                ("sku", "CNC-5X"),
                ("problem", "line stopped"),
                ("priority", "urgent"),
            ],
        )
        .await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    let path = opened.location.expect("to the request");
    let page = mei.get(&path).await;
    assert!(
        page.body.contains("id=\"request-status\">open")
            && page.body.contains("First response due"),
        "{}",
        page.body
    );

    // Another organization cannot see it; staff see it in the queue and answer.
    let mut ina = Browser::new(&node, &daemon);
    assert_eq!(ina.login("ina", &ina_password).await.status, 303);
    assert_eq!(ina.get(&path).await.status, 404);
    let queue = staff.get("/service").await;
    assert!(
        queue.body.contains("Contoso") && queue.body.contains("urgent"),
        "{}",
        queue.body
    );
    let csrf_staff = Browser::csrf(&staff.get(&path).await);
    let answered = staff
        .post(
            &path,
            &[
                ("csrf", &csrf_staff),
                ("status", "in_progress"),
                ("comment", "engineer on the way"),
            ],
        )
        .await;
    assert_eq!(answered.status, 303, "{}", answered.body);
    let page = mei.get(&path).await;
    assert!(
        page.body.contains("engineer on the way")
            && page.body.contains("id=\"request-status\">in progress"),
        "{}",
        page.body
    );
    let refused = mei
        .post(
            &path,
            &[("csrf", &csrf), ("status", "resolved"), ("comment", "")],
        )
        .await;
    assert!(
        refused.status == 409 && refused.body.contains("illegal_transition"),
        "{}",
        refused.body
    );

    // A claim on an unknown serial, with a photo: staff see its validity
    // and the photo, and reject it. A file of a refused type files nothing.
    let csrf = Browser::csrf(&mei.get("/claims").await);
    let claim_fields = [
        ("csrf", csrf.as_str()),
        ("vendor", "acme"),
        ("sku", "CNC-5X"),
        ("serial", "SN-X"),
        ("purchase_date", "2026-03-01"),
        ("description", "noise"),
        ("company", "Contoso"),
    ];
    let refused = mei
        .post_multipart(
            "/claims",
            &claim_fields,
            &[("setup.exe", "application/x-msdownload", b"MZ\x90\x00")],
        )
        .await;
    assert!(
        refused.status == 422 && refused.body.contains("setup.exe"),
        "{}",
        refused.body
    );
    assert!(!mei.get("/claims").await.body.contains("SN-X"));
    let photo: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR spindle photo";
    let filed = mei
        .post_multipart(
            "/claims",
            &claim_fields,
            &[("spindle.png", "image/png", photo)],
        )
        .await;
    assert_eq!(filed.status, 303, "{}", filed.body);
    let claim_path = filed.location.expect("to the claim");
    let page = staff.get(&claim_path).await;
    assert!(page.body.contains("unknown serial"), "{}", page.body);
    let link = page
        .body
        .split("href=\"/files/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|sha| format!("/files/{sha}"))
        .expect("a link to the photo");
    assert!(page.body.contains(">spindle.png</a>"), "{}", page.body);
    let download = staff.get(&link).await;
    // (The test's page body is text: the PNG signature's first byte reads
    // back as U+FFFD; the rest is the file.)
    assert_eq!(download.status, 200);
    assert_eq!(
        download.body.as_bytes()[3..],
        photo[1..],
        "the photo as uploaded"
    );
    let csrf_staff = Browser::csrf(&page);
    // Staff first ask for more: the partner sees it in its inbox and on the
    // claim, amends the claim there, and it waits for a decision again.
    let asked = staff
        .post(
            &claim_path,
            &[
                ("csrf", &csrf_staff),
                ("action", "decide"),
                ("decision", "need_info"),
                ("note", "which serial is on the spindle?"),
            ],
        )
        .await;
    assert_eq!(asked.status, 303, "{}", asked.body);
    let home = mei.get("/").await;
    assert!(
        home.body
            .contains("Warranty claims wait for more information from you.")
            && home
                .body
                .contains(&format!("<a href=\"{claim_path}\">CNC-5X SN-X</a>")),
        "{}",
        home.body
    );
    let page = mei.get(&claim_path).await;
    assert!(
        page.body.contains("id=\"amend\"") && page.body.contains("which serial is on the spindle?"),
        "{}",
        page.body
    );
    assert!(!staff.get(&claim_path).await.body.contains("id=\"amend\""));
    let bad = mei
        .post(
            &claim_path,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "amend"),
                ("serial", "SN-X2"),
                ("purchase_date", "2026-02-30"),
                ("description", "noise from the spindle"),
            ],
        )
        .await;
    assert!(
        bad.status == 422 && bad.body.contains("purchase_date"),
        "{}",
        bad.body
    );
    let amended = mei
        .post(
            &claim_path,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "amend"),
                ("serial", "SN-X2"),
                ("purchase_date", "2026-03-01"),
                ("description", "noise from the spindle"),
            ],
        )
        .await;
    assert_eq!(amended.status, 303, "{}", amended.body);
    let page = staff.get(&claim_path).await;
    assert!(
        page.body.contains("id=\"claim-status\">submitted")
            && page.body.contains("noise from the spindle")
            && page.body.contains("SN-X2"),
        "{}",
        page.body
    );
    assert!(
        !mei.get("/")
            .await
            .body
            .contains("more information from you"),
        "the inbox item stays after the answer"
    );
    let decided = staff
        .post(
            &claim_path,
            &[
                ("csrf", &csrf_staff),
                ("action", "decide"),
                ("decision", "reject"),
                ("note", "not our serial"),
            ],
        )
        .await;
    assert_eq!(decided.status, 303, "{}", decided.body);
    let page = mei.get(&claim_path).await;
    assert!(
        page.body.contains("id=\"claim-status\">rejected") && !page.body.contains("unknown serial"),
        "{}",
        page.body
    );
    // In Chinese, nothing left in English but what people typed.
    all_in_chinese(&mut staff, &["/service", &path, "/claims", &claim_path]).await;
    all_in_chinese(&mut mei, &["/", "/service", &path, "/claims", &claim_path]).await;
    drop(daemon);
}

/// Visits `pages` (in Chinese) and fails on any English left on them.
pub(crate) async fn all_in_chinese(b: &mut Browser, pages: &[&str]) {
    b.accept_language = Some("zh-TW");
    for page in pages {
        let shown = b.get(page).await;
        assert_eq!(shown.status, 200, "{page}");
        let left = untranslated(&shown.body, TYPED);
        assert!(left.is_empty(), "{page}: English left: {left:?}");
    }
}

/// What stays as it is on a page in any language: what the tests' people
/// type (names, notes), names of formats and of the product.
const TYPED: &[&str] = &[
    "Faster",
    "replies",
    "satisfaction",
    "silver",
    "enough",
    "next",
    "quarter",
    "laser",
    "Initech",
    "Globex",
    "webco",
    "JSON",
    "Chen",
    "basics",
    "basic",
    "Taiwan",
    "Contoso",
    "Spindle",
    "axis",
    "acme",
    "Guanxi",
    "English",
    "Asia",
    "Taipei",
    "Administrator",
    "gold",
    "spring",
    "engineer",
    "line",
    "stopped",
    "JPEG",
    "invoice",
    "Fabrikam",
    "trade",
    "show",
    "from",
    "noise",
    "serial",
    "which",
    "Umbrella",
    "maintenance",
    "video",
    "Service",
    "How",
    "service",
    "the",
    "spindle",
    "Ltd",
    "mp4",
    "MiB",
    "dist",
    "mfr",
    "HTML",
    "Markdown",
    "https",
];

#[tokio::test]
async fn marketing_funds_on_the_web_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "");
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    let mei_password = add_partner_user(&mut staff, "globex", "mei", "Mei").await;
    let csrf = Browser::csrf(&staff.get("/mdf").await);
    // Dates that make no sense are refused, naming the field: expiring
    // before the period starts, or before today.
    for (period, expires) in [("2027-Q1", "2026-12-31"), ("2019", "2020-01-01")] {
        let refused = staff
            .post(
                "/mdf",
                &[
                    ("csrf", &csrf),
                    ("partner", "globex"),
                    ("budget", "bad"),
                    ("period", period),
                    ("amount", "100000"),
                    ("currency", "TWD"),
                    ("action", "allocate"),
                    ("expires_on", expires),
                ],
            )
            .await;
        assert!(
            refused.status == 422 && refused.body.contains("expires_on"),
            "{period} {expires}: {} {}",
            refused.status,
            refused.body
        );
    }
    let made = staff
        .post(
            "/mdf",
            &[
                ("csrf", &csrf),
                ("partner", "globex"),
                ("budget", "q1"),
                ("period", "2027-Q1"),
                ("amount", "100000"),
                ("currency", "TWD"),
                ("action", "allocate"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let path = made.location.expect("to the budget");

    let mut mei = Browser::new(&node, &daemon);
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    let page = mei.get(&path).await;
    assert!(
        page.body
            .contains("id=\"balance-available\">TWD 100,000.00"),
        "{}",
        page.body
    );
    let csrf_mei = Browser::csrf(&page);
    let requested = mei
        .post(
            &path,
            &[
                ("csrf", &csrf_mei),
                ("action", "request"),
                ("currency", "TWD"),
                ("activity", "trade show"),
                ("starts_on", "2027-02-01"),
                ("ends_on", "2027-02-03"),
                ("expected_cost", "60000"),
                ("expected_leads", "40"),
                ("campaign", "spring"),
            ],
        )
        .await;
    assert_eq!(requested.status, 303, "{}", requested.body);
    // The request waits for staff: their inbox links the budget.
    let home = staff.get("/").await;
    assert!(
        home.body.contains("wait for your decision or payment")
            && home.body.contains(&format!("href=\"{path}\"")),
        "{}",
        home.body
    );
    // The request got its id from the node; staff decide it from its own
    // row, whose amount starts at the whole expected cost.
    let page = staff.get(&path).await;
    assert!(
        page.body.contains("id=\"request-R-1\"")
            && page.body.contains("name=\"request\" value=\"R-1\"")
            && page
                .body
                .contains("name=\"amount\" inputmode=\"decimal\" value=\"60000.00\"")
            && page.body.contains("id=\"decide-R-1\""),
        "{}",
        page.body
    );
    let csrf_staff = Browser::csrf(&page);
    let approved = staff
        .post(
            &path,
            &[
                ("csrf", &csrf_staff),
                ("action", "decide"),
                ("currency", "TWD"),
                ("request", "R-1"),
                ("decision", "approved"),
                ("amount", "50000"),
            ],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    // Approved and not claimed yet: now it waits for the partner.
    let home = mei.get("/").await;
    assert!(
        home.body.contains("wait for your claim")
            && home.body.contains(&format!("href=\"{path}\"")),
        "{}",
        home.body
    );
    let home = staff.get("/").await;
    assert!(
        !home.body.contains("wait for your decision or payment"),
        "{}",
        home.body
    );
    let over = mei
        .post(
            &path,
            &[
                ("csrf", &csrf_mei),
                ("action", "claim"),
                ("currency", "TWD"),
                ("request", "R-1"),
                ("amount", "50000.01"),
                ("invoice_number", "INV-1"),
                ("invoice_date", "2027-02-10"),
            ],
        )
        .await;
    assert!(
        over.status == 422 && over.body.contains("invalid_amount"),
        "{}",
        over.body
    );
    // The partner claims against an approved request it picks from a list.
    let page = mei.get(&path).await;
    assert!(
        page.body.contains("<option value=\"R-1\">R-1</option>")
            && !page.body.contains("id=\"decide-R-1\""),
        "{}",
        page.body
    );
    let claimed = mei
        .post_multipart(
            &path,
            &[
                ("csrf", &csrf_mei),
                ("action", "claim"),
                ("currency", "TWD"),
                ("request", "R-1"),
                ("amount", "40000"),
                ("invoice_number", "INV-1"),
                ("invoice_date", "2027-02-10"),
            ],
            &[("invoice.pdf", "application/pdf", b"%PDF-1.4 booth invoice")],
        )
        .await;
    assert_eq!(claimed.status, 303, "{}", claimed.body);
    // The first claim is C-1 (the refused over-claim took no id), with its
    // proof; staff decide and pay it from its row.
    let page = staff.get(&path).await;
    assert!(
        page.body.contains("id=\"decide-C-1\"") && page.body.contains(">invoice.pdf</a>"),
        "{}",
        page.body
    );
    for (action, decision, amount, shows) in [
        ("claim_decision", "approved", "40000", "id=\"pay-C-1\""),
        ("paid", "approved", "40000", "TWD 40,000.00 / TWD 40,000.00"),
    ] {
        let done = staff
            .post(
                &path,
                &[
                    ("csrf", &csrf_staff),
                    ("action", action),
                    ("currency", "TWD"),
                    ("claim", "C-1"),
                    ("decision", decision),
                    ("amount", amount),
                    ("reference", "TT-1"),
                    ("paid_on", "2027-03-01"),
                ],
            )
            .await;
        assert_eq!(done.status, 303, "{action}: {}", done.body);
        let page = staff.get(&path).await;
        assert!(page.body.contains(shows), "{action}: {}", page.body);
    }
    let page = staff.get(&path).await;
    assert!(!page.body.contains("id=\"pay-C-1\""), "{}", page.body);
    let page = mei.get(&path).await;
    assert!(
        page.body.contains("id=\"balance-paid\">TWD 40,000.00")
            && page.body.contains("id=\"balance-reserved\">TWD 10,000.00")
            && page.body.contains("id=\"balance-available\">TWD 50,000.00"),
        "{}",
        page.body
    );
    let list = staff.get("/mdf").await;
    assert!(
        list.body.contains("id=\"roi\"") && list.body.contains("spring"),
        "{}",
        list.body
    );
    // In Chinese, nothing left in English but what people typed.
    all_in_chinese(&mut staff, &["/", "/mdf", &path]).await;
    all_in_chinese(&mut mei, &["/", "/mdf", &path]).await;
    drop(daemon);
}

/// Every response carries the security headers, whoever answered it: a
/// page, a redirect, an error, the stylesheet, the API, federation.
#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, _) = start(dir.path(), "");
    let b = Browser::new(&node, &daemon);
    for (path, status) in [
        ("/login", 200),
        ("/", 303),
        ("/no-such-page", 404),
        ("/static/app.css", 200),
        ("/api/v1/partners", 401),
        ("/fed/v1/keys", 200),
        ("/lang/zh-TW?next=/login", 303),
    ] {
        let r = b
            .client
            .get(format!("{}{path}", b.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), status, "{path}");
        let h = r.headers();
        for name in [
            "strict-transport-security",
            "x-content-type-options",
            "referrer-policy",
            "permissions-policy",
            "content-security-policy",
            "x-frame-options",
        ] {
            assert!(h.contains_key(name), "{path} lacks {name}");
        }
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        if path != "/static/app.css" {
            assert_eq!(h["cache-control"], "no-store", "{path}");
        }
    }
}

/// Expired sessions and failure counters do not pile up: a timer deletes
/// them once they are due.
#[tokio::test]
async fn expired_sessions_and_failure_counters_are_purged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, mut daemon, password) = start(dir.path(), "session_idle_seconds = 60");
    let mut b = Browser::new(&node, &daemon);
    assert_eq!(b.login("admin", "not the password").await.status, 401);
    assert_eq!(b.login("admin", &password).await.status, 303);
    let mut other = Browser::new(&node, &daemon);
    assert_eq!(other.login("nobody", "whatever").await.status, 401);
    // Past the idle limit and the failure window (15 minutes).
    node.set_clock_offset(20 * 60 * 1000);
    node.full_timer_round("session_purge").await;
    daemon.stop(Duration::from_secs(15)).expect("stops");
    let store = guanxi_adapters::store::Store::open(&node.data_dir()).expect("store");
    let read = store.read().expect("read");
    use guanxi_adapters::store::Doc;
    assert_eq!(
        read.docs(Doc::Session).expect("sessions").len(),
        0,
        "sessions purged"
    );
    assert_eq!(
        read.docs(Doc::Throttle).expect("throttle").len(),
        0,
        "counters purged"
    );
}

/// Behind a trusted reverse proxy, login throttling counts the client named
/// in `X-Forwarded-For`; from anyone else that header changes nothing.
#[tokio::test]
async fn throttling_sees_clients_through_trusted_proxies_only() {
    for trusted in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
        if trusted {
            let config = std::fs::read_to_string(node.config_file()).expect("read");
            assert!(config.contains("trusted_proxies = []"));
            std::fs::write(
                node.config_file(),
                config.replace("trusted_proxies = []", "trusted_proxies = [\"127.0.0.1\"]"),
            )
            .expect("write");
        }
        let daemon = node.start(Path::new(BIN)).expect("starts");
        let password = daemon.first_admin_password().expect("first admin");
        let mut first = Browser::new(&node, &daemon);
        first.forwarded_for = Some("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(first.login("admin", "wrong").await.status, 401);
        }
        let mut second = Browser::new(&node, &daemon);
        second.forwarded_for = Some("10.0.0.2");
        let status = second.login("admin", &password).await.status;
        if trusted {
            assert_eq!(
                status, 303,
                "another client behind the proxy is not held up"
            );
        } else {
            assert_eq!(status, 429, "an untrusted X-Forwarded-For changes nothing");
        }
    }
}

/// The largest file the daemon `pid` may write (`None`: no limit), as a
/// full disk would leave it: a write past it fails (EFBIG; SIGXFSZ is
/// ignored by the start script).
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    prlimit(
        Some(pid),
        Resource::Fsize,
        Rlimit {
            current: bytes,
            maximum: None,
        },
    )
    .expect("prlimit");
}

/// A full disk: the write that fails is refused to its caller and nothing
/// acknowledged is lost; the node says so once in the log, in `/readyz`
/// and in the staff inbox, keeps answering reads, and once there is room
/// again it writes again by itself — no restart, no admin.
#[tokio::test]
async fn a_full_disk_is_reported_once_and_the_node_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let other = tempfile::tempdir().expect("tempdir");
    let globex = NodeSetup::init(Path::new(BIN), other.path(), "globex").expect("init");
    node.append_config(&globex.peer_block(false)).expect("peer");
    let daemon = node
        .start_after(Path::new(BIN), "trap '' XFSZ")
        .expect("starts");
    let admin_password = daemon.first_admin_password().expect("first admin");
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    let client =
        guanxi_tests::client_trusting(&node.data_dir().join("tls/cert.pem")).expect("client");
    let readyz = || async {
        let r = client
            .get(format!("{}/readyz", daemon.url()))
            .send()
            .await
            .expect("readyz");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    assert_eq!(readyz().await.0, 200);
    let send = |n: u32| {
        let body = serde_json::json!({"peer": "globex", "kind": "ping", "subject": format!("p-{n}"), "body": {"note": "still here"}});
        node.admin("POST", "/admin/v1/send", Some(body))
    };
    let token = node.token(Path::new(BIN), "ci", "admin");
    let api = guanxi_tests::Api {
        client: client.clone(),
        base: daemon.url(),
    };
    let import = |batch: u32| {
        let mut csv = String::from("company,country,product_lines,consent,notes\n");
        for i in 0..500 {
            csv.push_str(&format!(
                "Company {batch}-{i},TW,cnc,no,{}\n",
                "n".repeat(300)
            ));
        }
        let (api, token) = (&api, &token);
        async move {
            api.call("post", "/api/v1/leads/import", Some(token), Some(&csv))
                .await
        }
    };

    // The disk fills up: the database file may not grow any more.
    let mut acknowledged = Vec::new();
    for n in 0..3 {
        let (status, v) = send(n).await;
        assert_eq!(status, 200, "{v}");
        acknowledged.push(v["seq"].as_u64().expect("seq"));
    }
    let db = node.data_dir().join("guanxi.redb");
    let size = std::fs::metadata(&db).expect("db").len();
    limit_file_size(daemon.pid(), Some(size));
    let mut refused = None;
    for batch in 0..200 {
        let (status, v) = import(batch).await;
        if status != 201 {
            refused = Some((status, v));
            break;
        }
    }
    let (status, v) = refused.expect("an import was refused once the file could not grow");
    assert!(status >= 500, "{status} {v}");
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"storage\""), "{body}");
    // More attempts fail at once and log nothing more.
    for n in 1000..1005 {
        assert!(send(n).await.0 >= 500);
    }
    let logged = |needle: &str| {
        daemon
            .stderr_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    assert_eq!(logged("the database cannot be written"), 1);
    // Reads go on; the staff inbox says what is wrong.
    let (status, _) = node.admin("GET", "/admin/v1/outbox", None).await;
    assert_eq!(status, 200, "the outbox can be read");
    let home = staff.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(
        home.body.contains("The database cannot be written"),
        "{}",
        home.body
    );

    // Room again: the node finds out by itself and takes work again.
    limit_file_size(daemon.pid(), None);
    guanxi_tests::eventually("the node is ready again", || async {
        (readyz().await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(logged("the database can be written again"), 1);
    let (status, v) = send(2000).await;
    assert_eq!(status, 200, "{v}");
    let next = v["seq"].as_u64().expect("seq");
    assert_eq!(
        next,
        acknowledged.last().copied().unwrap_or(0) + 1,
        "refused sends took no place in the stream"
    );
    for seq in acknowledged.iter().copied().chain([next]) {
        let (status, v) = node
            .admin("GET", &format!("/admin/v1/outbox/globex/{seq}"), None)
            .await;
        assert_eq!(status, 200, "envelope {seq} is kept: {v}");
    }
    assert!(
        !staff
            .get("/")
            .await
            .body
            .contains("The database cannot be written")
    );
}

/// Whole-table reads of `table` since the daemon started (its metrics).
async fn full_scans(node: &NodeSetup, table: &str) -> u64 {
    let (_, m) = node.admin("GET", "/metrics", None).await;
    let needle = format!("guanxi_store_full_scans_total{{table=\"{table}\"}} ");
    m.as_str()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix(&needle)?.parse().ok())
        .unwrap_or(0)
}

/// The leads list — API and web page — reads one page through the stage
/// index, newest first, never every lead: pages follow each other without
/// gaps or repeats, the stage filter follows the partner's answers, and no
/// request reads the whole leads or records table.
#[tokio::test]
async fn the_leads_list_reads_a_page_never_every_lead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "");
    let token = node.token(Path::new(BIN), "ci", "admin");
    let api = guanxi_tests::Api::of(&node, &daemon);
    let partner = serde_json::json!({"id": "p1", "name": "P1", "type": "reseller", "tier": "gold",
        "country": "TW", "region": "", "stage": "active", "peer": null});
    let (status, v) = api
        .call(
            "post",
            "/api/v1/partners",
            Some(&token),
            Some(&partner.to_string()),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let mut csv = String::from("company,country,product_lines,consent\n");
    for i in 0..120 {
        csv.push_str(&format!("Company {i:03},TW,cnc,yes\n"));
    }
    let (status, v) = api
        .call("post", "/api/v1/leads/import", Some(&token), Some(&csv))
        .await;
    assert_eq!(status, 201, "{v}");

    let scans_before = (
        full_scans(&node, "leads").await,
        full_scans(&node, "records").await,
        full_scans(&node, "partners").await,
    );
    // Every lead once, newest first, 50 at a time.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/leads?limit=50&after={a}"),
            None => "/api/v1/leads?limit=50".to_string(),
        };
        let (status, v) = api.call("get", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{v}");
        let page = v["leads"].as_array().expect("leads");
        assert!(page.len() <= 50);
        seen.extend(
            page.iter()
                .map(|l| l["id"].as_str().unwrap_or("").to_string()),
        );
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 120);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 120, "no repeats");
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first");
    let (status, v) = api
        .call("get", "/api/v1/leads?limit=501", Some(&token), None)
        .await;
    assert_eq!((status, v["field"].as_str()), (422, Some("limit")));
    let scans = || async {
        (
            full_scans(&node, "leads").await,
            full_scans(&node, "records").await,
            full_scans(&node, "partners").await,
        )
    };
    assert_eq!(
        scans().await,
        scans_before,
        "the API pages read no whole table"
    );

    // Three leads offered to the partner (a web user): the filter follows.
    let _ = node.cli(
        Path::new(BIN),
        &["user", "add", "ina", "--role", "partner", "--partner", "p1"],
    );
    for id in &seen[..3] {
        let (status, v) = api
            .call(
                "post",
                &format!("/api/v1/leads/{id}/assign"),
                Some(&token),
                Some(r#"{"partner":"p1"}"#),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let (_, offered) = api
        .call("get", "/api/v1/leads?stage=offered", Some(&token), None)
        .await;
    let offered: Vec<&str> = offered["leads"]
        .as_array()
        .expect("leads")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(
        offered,
        seen[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let (_, unassigned) = api
        .call(
            "get",
            "/api/v1/leads?stage=unassigned&limit=500",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(unassigned["leads"].as_array().map(Vec::len), Some(117));

    // The partner (a web user) accepts one: its stage moves with the record.
    let ina_token = node.token(Path::new(BIN), "ina-ci", "ina");
    // The partner's offers, a page at a time, newest first.
    let mut offered_to_ina = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/offers?limit=2&after={a}"),
            None => "/api/v1/offers?limit=2".to_string(),
        };
        let (status, v) = api.call("get", &path, Some(&ina_token), None).await;
        assert_eq!(status, 200, "{v}");
        offered_to_ina.extend(
            v["offers"]
                .as_array()
                .expect("offers")
                .iter()
                .filter_map(|o| o["subject"].as_str())
                .map(|s| s.split('.').next().unwrap_or("").to_string()),
        );
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(
        offered_to_ina,
        seen[..3].to_vec(),
        "every offer once, newest first"
    );
    let (_, lead) = api
        .call(
            "get",
            &format!("/api/v1/leads/{}", seen[1]),
            Some(&token),
            None,
        )
        .await;
    let subject = lead["offers"][0]["subject"]
        .as_str()
        .expect("subject")
        .to_string();
    let (status, v) = api
        .call(
            "post",
            &format!("/api/v1/offers/acme/{subject}/messages"),
            Some(&ina_token),
            Some(r#"{"kind":"lead.accept","body":{"note":""}}"#),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, accepted) = api
        .call("get", "/api/v1/leads?stage=accepted", Some(&token), None)
        .await;
    assert_eq!(
        accepted["leads"][0]["id"].as_str(),
        Some(seen[1].as_str()),
        "{accepted}"
    );

    // The web list: a page, a link to the next, the filter.
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    let scans_before = scans().await;
    let first = staff.get("/leads").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.matches("<tr><td>").count(), 50, "one page");
    let next = first
        .body
        .split("id=\"next-page\"")
        .next()
        .and_then(|b| b.rsplit("href=\"").next())
        .and_then(|h| h.split('"').next())
        .expect("a next link")
        .replace("&amp;", "&");
    let second = staff.get(&next).await;
    assert_eq!(second.status, 200);
    assert!(
        second.body.contains(&format!("/leads/{}", seen[50])),
        "continues"
    );
    let offered_page = staff.get("/leads?stage=offered").await;
    assert_eq!(offered_page.body.matches("<tr><td>").count(), 2);
    // The home page's inbox comes from the indexes too.
    let home = staff.get("/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("Company 000</a>") && home.body.contains(", <code>…</code>"),
        "the first of the held leads, and more: {}",
        home.body
    );

    // Every other list, the analysis and the record lists of the API read
    // pages and kept counts too.
    for path in [
        "/partners",
        &format!("/leads/{}", seen[0]),
        "/orders",
        "/orders?direction=placed",
        "/service",
        "/claims?direction=placed",
        "/mdf",
        "/registrations",
        "/deals",
        "/leads/analysis?group=partner",
        "/leads/analysis?group=month&from=2020-01-01&to=2999-12-31",
    ] {
        let page = staff.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
    }
    for path in [
        "/api/v1/orders",
        "/api/v1/service?direction=placed",
        "/api/v1/claims",
        "/api/v1/mdf",
        "/api/v1/mdf/roi",
        "/api/v1/registrations",
        "/api/v1/deals",
        "/api/v1/serials",
        "/api/v1/partners",
    ] {
        let (status, v) = api.call("get", path, Some(&token), None).await;
        assert_eq!(
            (status, &v["next"]),
            (200, &serde_json::Value::Null),
            "{path}: {v}"
        );
    }
    let (_, a) = api
        .call(
            "get",
            "/api/v1/leads/analysis?group=partner",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (
            a["rows"][0]["key"].as_str(),
            a["rows"][0]["offered"].as_u64(),
            a["rows"][0]["accepted"].as_u64(),
            a["total"]["offered"].as_u64()
        ),
        (Some("p1"), Some(3), Some(1), Some(3)),
        "{a}"
    );
    for bad in [
        "/api/v1/orders?after=nonsense",
        "/api/v1/claims?direction=sideways",
    ] {
        let (status, v) = api.call("get", bad, Some(&token), None).await;
        assert_eq!(status, 422, "{bad}: {v}");
    }
    assert_eq!(
        scans().await,
        scans_before,
        "the web pages, filters, lists and analysis read no whole table"
    );
}

/// First sign-in with a one-time password: only the page to choose one's
/// own opens; weak choices are refused with the reason; then the new one
/// works, the one-time one no longer does, the user's other sessions end,
/// and a reset starts over.
#[tokio::test]
async fn a_one_time_password_must_be_replaced_by_a_strong_one_of_ones_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, _) = start(dir.path(), "");
    // First sign-in with a one-time password: only the page to choose
    // one's own opens; weak choices are refused with the reason; then the
    // new one works, the one-time one no longer does, and the user's other
    // sessions end.
    let out = node.cli(
        Path::new(BIN),
        &["user", "add", "lin", "--role", "staff", "--name", "Lin Mei"],
    );
    let lin_once = password_from(&out);
    let mut p = Browser::new(&node, &daemon);
    let first = p.login_raw("lin", &lin_once).await;
    assert_eq!(
        (first.status, first.location.as_deref()),
        (303, Some("/account/password"))
    );
    for path in ["/", "/partners", "/leads"] {
        assert_eq!(
            p.get(path).await.location.as_deref(),
            Some("/account/password"),
            "{path} waits for the change"
        );
    }
    let mut elsewhere = Browser::new(&node, &daemon);
    assert_eq!(elsewhere.login_raw("lin", &lin_once).await.status, 303);
    let form = p.get("/account/password").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("one-time password"), "{}", form.body);
    let csrf = Browser::csrf(&form);
    let attempt = |current: String, new: &'static str| {
        let csrf = csrf.clone();
        (current, new, csrf)
    };
    let cases = [
        (
            attempt("nope".into(), "kumquat ferry lantern drizzle"),
            "The current password is wrong.",
        ),
        (
            attempt(lin_once.clone(), "aaaaaaaaaaaaaaaa"),
            "too easy to guess",
        ),
        (
            attempt(lin_once.clone(), "password123456"),
            "too easy to guess",
        ),
        (
            attempt(lin_once.clone(), "qwertyuiopasdf"),
            "too easy to guess",
        ),
        (
            attempt(lin_once.clone(), "linlinlinlinlin"),
            "too easy to guess",
        ),
        (attempt(lin_once.clone(), "short"), "at least 12 characters"),
    ];
    for ((current, new, csrf), expected) in cases {
        let refused = p
            .post(
                "/account/password",
                &[
                    ("csrf", &csrf),
                    ("current", &current),
                    ("new", new),
                    ("confirm", new),
                ],
            )
            .await;
        assert_eq!(refused.status, 422, "{new}");
        assert!(refused.body.contains(expected), "{new}: {}", refused.body);
    }
    let same = p
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", &lin_once),
                ("new", &lin_once),
                ("confirm", &lin_once),
            ],
        )
        .await;
    assert_eq!(same.status, 422, "the one-time password cannot stay");
    let ok = p
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", &lin_once),
                ("new", "kumquat ferry lantern drizzle"),
                ("confirm", "kumquat ferry lantern drizzle"),
            ],
        )
        .await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/")));
    assert_eq!(
        p.get("/").await.status,
        200,
        "the session that changed it stays, now free to go anywhere"
    );
    assert_eq!(
        elsewhere.get("/").await.location.as_deref(),
        Some("/login"),
        "another session of the user ends"
    );
    let mut fresh = Browser::new(&node, &daemon);
    assert_eq!(fresh.login_raw("lin", &lin_once).await.status, 401);
    let again = fresh
        .login_raw("lin", "kumquat ferry lantern drizzle")
        .await;
    assert_eq!((again.status, again.location.as_deref()), (303, Some("/")));
    // A reset gives a new one-time password, which must be changed again.
    let out = node.cli(Path::new(BIN), &["user", "reset-password", "lin"]);
    let reset = password_from(&out);
    let mut after_reset = Browser::new(&node, &daemon);
    assert_eq!(
        after_reset
            .login_raw("lin", &reset)
            .await
            .location
            .as_deref(),
        Some("/account/password")
    );
}

/// Staff save one distribution rule: leads in Taiwan go round robin to
/// its partners (up to 10 open each), answered within `hours`.
pub(crate) async fn offer_leads_in_taiwan(staff: &mut Browser, hours: &str) {
    let rules = staff.get("/leads/rules").await;
    let csrf = Browser::csrf(&rules);
    let saved = staff
        .post(
            "/leads/rules",
            &[
                ("csrf", &csrf),
                ("offer_hours", hours),
                ("name_0", "tw"),
                ("countries_0", "tw"),
                ("capacity_0", "10"),
                ("strategy_0", "round_robin"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
}

/// Staff create a lead of `company` in Taiwan (consent given), which the
/// rules offer at once.
pub(crate) async fn new_lead(staff: &mut Browser, company: &str) {
    let form = staff.get("/leads/new").await;
    let csrf = Browser::csrf(&form);
    let lead = staff
        .post(
            "/leads",
            &[
                ("csrf", &csrf),
                ("company", company),
                ("country", "tw"),
                ("product_lines", "cnc"),
                ("consent", "yes"),
            ],
        )
        .await;
    assert_eq!(lead.status, 303, "{}", lead.body);
}

/// The time a page shows in `zone`, as `YYYY-MM-DD HH:MM` minutes since
/// the epoch (no zone arithmetic: the test compares two readings).
fn shown_minutes(body: &str, zone: &str) -> i64 {
    let at = body
        .find(&format!(" {zone}<"))
        .unwrap_or_else(|| panic!("no time in {zone}: {body}"));
    let text = &body[at - 16..at];
    let date: jiff::civil::DateTime = text.parse().expect("a time");
    date.in_tz("UTC").expect("in range").timestamp().as_second() / 60
}

#[tokio::test]
async fn times_are_shown_in_each_readers_time_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, daemon, admin_password) = start(dir.path(), "");
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    let mei_password = add_partner_user(&mut staff, "globex", "mei", "Mei").await;
    offer_leads_in_taiwan(&mut staff, "24").await;
    new_lead(&mut staff, "Contoso").await;

    let mut mei = Browser::new(&node, &daemon);
    mei.accept_language = Some("zh-TW");
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    let offers = mei.get("/offers").await;
    let path = link(&offers, "/offers/acme/");
    // A reader of Chinese with no zone chosen anywhere: Asia/Taipei, eight
    // hours ahead of the UTC an English reader of the same record sees.
    let taipei = shown_minutes(&mei.get(&path).await.body, "Asia/Taipei");
    mei.accept_language = Some("en");
    let utc = shown_minutes(&mei.get(&path).await.body, "UTC");
    assert_eq!(taipei - utc, 8 * 60);

    // The organization's zone comes before the language's default.
    let edit = staff.get("/partners/globex/edit").await;
    let csrf = Browser::csrf(&edit);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("id", "globex"),
        ("name", "Globex Taiwan"),
        ("kind", "distributor"),
        ("tier", "gold"),
        ("country", "tw"),
        ("region", "Taipei"),
        ("stage", "active"),
        ("time_zone", "Asia/Tokio"),
    ];
    let bad = staff.post("/partners/globex", &fields).await;
    assert!(
        bad.status == 422
            && bad.body.contains("Not a time zone")
            && bad.body.contains("Asia/Tokio"),
        "{}",
        bad.body
    );
    fields.pop();
    fields.push(("time_zone", "Asia/Tokyo"));
    assert_eq!(staff.post("/partners/globex", &fields).await.status, 303);
    let tokyo = shown_minutes(&mei.get(&path).await.body, "Asia/Tokyo");
    assert_eq!(tokyo - utc, 9 * 60);

    // The user's own choice comes first; a wrong one is refused, kept in
    // the form, and changes nothing.
    let settings = mei.get("/account").await;
    assert!(settings.body.contains("Asia/Tokyo"), "{}", settings.body);
    let csrf = Browser::csrf(&settings);
    let bad = mei
        .post(
            "/account",
            &[
                ("csrf", &csrf),
                ("email", "mei@globex"),
                ("time_zone", "Mars/Olympus"),
                ("mail", "digest"),
            ],
        )
        .await;
    assert!(
        bad.status == 422
            && bad.body.contains("Mars/Olympus")
            && bad.body.contains("Not a time zone")
            && bad.body.contains("This is not an e-mail address"),
        "{}",
        bad.body
    );
    assert_eq!(
        shown_minutes(&mei.get(&path).await.body, "Asia/Tokyo"),
        tokyo
    );
    let saved = mei
        .post(
            "/account",
            &[
                ("csrf", &csrf),
                ("email", "mei@globex.example"),
                ("time_zone", "Asia/Kolkata"),
                ("mail", "digest"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let kolkata = shown_minutes(&mei.get(&path).await.body, "Asia/Kolkata");
    assert_eq!(kolkata - utc, 5 * 60 + 30);
    let settings = mei.get("/account").await;
    assert!(
        settings.body.contains("mei@globex.example")
            && settings.body.contains("value=\"digest\" checked"),
        "{}",
        settings.body
    );
}
