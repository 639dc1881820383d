//! The daemon as a real process: `serve` on embedded defaults and with a
//! config from `init`, the key document over real TLS, graceful shutdown on
//! SIGTERM, and clear refusals of bad configuration and mismatched stores.

use guanxi_tests::{Daemon, cert_in, client_trusting, run};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

fn bin() -> &'static Path {
    Path::new(BIN)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

async fn key_document(daemon: &Daemon, data_dir: &Path) -> Value {
    let client = client_trusting(&cert_in(data_dir)).expect("client");
    let response = client
        .get(format!("{}/fed/v1/keys", daemon.url()))
        .send()
        .await
        .expect("key document over HTTPS");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("body");
    // The key document is canonical JSON.
    let value = guanxi_protocol::canonical::parse_strict(&bytes).expect("strict JSON");
    assert_eq!(
        guanxi_protocol::canonical::canonicalize(&value).expect("canonical"),
        bytes.to_vec()
    );
    value
}

#[tokio::test]
async fn serve_runs_on_embedded_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No config file: embedded defaults (127.0.0.1:8443, checked in the
    // config crate's tests); the port is any free one here.
    let daemon = Daemon::start(bin(), dir.path(), &["serve", "--listen", "127.0.0.1:0"])
        .expect("daemon starts with no config");
    assert!(
        daemon.addr.starts_with("127.0.0.1:") && !daemon.addr.ends_with(":0"),
        "{}",
        daemon.addr
    );
    assert!(
        daemon.banner[0].contains("guanxi-local"),
        "{:?}",
        daemon.banner
    );
    let kid = daemon.banner_value("key id").expect("key id line");
    let public_key = daemon.banner_value("public key").expect("public key line");
    assert!(
        daemon
            .banner
            .iter()
            .any(|l| l.contains("web") && l.contains(&format!("https://{}/", daemon.addr)))
    );

    let data = dir.path().join("guanxi-data");
    let doc = key_document(&daemon, &data).await;
    assert_eq!(doc["node"], "guanxi-local");
    assert_eq!(doc["keys"][0]["kid"], kid.as_str());
    assert_eq!(doc["keys"][0]["public_key"], public_key.as_str());
    let pk: guanxi_protocol::PublicKey = public_key.parse().expect("valid key");
    assert_eq!(pk.kid().0, kid, "key id is derived from the key");
    #[cfg(unix)]
    {
        assert_eq!(mode(&data.join("node.key")), 0o600);
        assert_eq!(mode(&data.join("tls/key.pem")), 0o600);
        assert_eq!(mode(&data), 0o700);
    }
    assert!(data.join("guanxi.redb").is_file());

    let daemon_banner = daemon.banner.clone();
    let (status, stderr) = daemon.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success(), "exit {status:?}; stderr {stderr:?}");
    assert!(stderr.iter().any(|l| l.contains("SIGTERM")), "{stderr:?}");
    // The secret seed never appears in what the daemon prints.
    let key_text = std::fs::read_to_string(data.join("node.key")).expect("key file");
    let seed = key_text
        .lines()
        .find_map(|l| l.strip_prefix("ed25519-seed:"))
        .expect("seed line");
    assert!(
        !stderr
            .iter()
            .chain(daemon_banner.iter())
            .any(|l| l.contains(seed))
    );

    // A restart keeps the identity: same key, nothing regenerated.
    let again = Daemon::start(bin(), dir.path(), &["serve"]).expect("restarts");
    assert_eq!(again.banner_value("key id"), Some(kid));
    assert!(
        !again.banner.iter().any(|l| l.contains("generated now")),
        "{:?}",
        again.banner
    );
    let (status, _) = again.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success());
}

#[tokio::test]
async fn init_writes_a_config_that_checks_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(
        bin(),
        dir.path(),
        &[
            "init",
            "--node-id",
            "acme",
            "--name",
            "Acme Ltd",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let config = dir.path().join("guanxi.toml");
    assert!(config.is_file());
    let kid_line = out
        .lines()
        .find(|l| l.contains("public_key"))
        .expect("public key for peers");
    let kid = kid_line
        .rsplit("kid ")
        .next()
        .expect("kid")
        .trim()
        .to_string();
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("guanxi-data/node.key")), 0o600);

    let (code, out, err) = run(bin(), dir.path(), &["config", "check", "guanxi.toml"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ok") && out.contains("acme"), "{out}");

    // init never overwrites.
    let (code, _, err) = run(bin(), dir.path(), &["init", "--node-id", "acme"]);
    assert_eq!(code, Some(78));
    assert!(err.contains("already exists"), "{err}");

    // A node reached under another name (a container's host name) says so
    // in its config and in the lines for its peers; a URL that is not
    // https:// is refused.
    let behind = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(
        bin(),
        behind.path(),
        &[
            "init",
            "--node-id",
            "globex",
            "--listen",
            "0.0.0.0:8443",
            "--public-url",
            "https://globex:8443/",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("url = \"https://globex:8443\""), "{out}");
    let written = std::fs::read_to_string(behind.path().join("guanxi.toml")).expect("config");
    assert!(
        written.contains("public_url = \"https://globex:8443\""),
        "{written}"
    );
    let (code, out, err) = run(bin(), behind.path(), &["config", "check", "guanxi.toml"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let plain = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(
        bin(),
        plain.path(),
        &[
            "init",
            "--node-id",
            "initech",
            "--public-url",
            "http://initech",
        ],
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("https://"), "{err}");
    assert!(!plain.path().join("guanxi.toml").exists());

    let daemon =
        Daemon::start(bin(), dir.path(), &["serve", "--config", "guanxi.toml"]).expect("serves");
    assert_ne!(
        daemon.addr, "127.0.0.1:0",
        "port 0 resolves to the bound port"
    );
    let doc = key_document(&daemon, &dir.path().join("guanxi-data")).await;
    assert_eq!(doc["node"], "acme");
    assert_eq!(doc["name"], "Acme Ltd");
    assert_eq!(doc["keys"][0]["kid"], kid.as_str());
    assert_eq!(doc["public_url"], daemon.url().as_str());
    let (status, _) = daemon.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success());
}

#[test]
fn bad_config_is_refused_with_its_place_before_binding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(bin(), dir.path(), &["keygen", "guanxi-data/node.key"]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(
        dir.path().join("guanxi.toml"),
        "[node]\nid = \"acme\"\nlisten = \"127.0.0.1:0\"\n\n[[peers]]\nid = \"globex\"\nurl = \"https://g.example\"\ncolour = \"red\"\n",
    )
    .expect("write");
    for args in [
        &["config", "check", "guanxi.toml"][..],
        &["serve", "--config", "guanxi.toml"][..],
    ] {
        let (code, out, err) = run(bin(), dir.path(), args);
        assert_eq!(code, Some(78), "{args:?}: {out}{err}");
        assert!(
            err.contains("guanxi.toml:8:1: unknown field `colour`"),
            "{args:?}: {err}"
        );
        assert!(!out.contains("listening"), "{out}");
    }
    let (code, _, err) = run(bin(), dir.path(), &["config", "check", "missing.toml"]);
    assert_eq!(code, Some(78));
    assert!(err.contains("missing.toml: cannot read"), "{err}");
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(bin(), dir.path(), &["keygen", "k/node.key"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("key id"), "{out}");
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("k/node.key")), 0o600);
    let before = std::fs::read(dir.path().join("k/node.key")).expect("read");
    let (code, _, err) = run(bin(), dir.path(), &["keygen", "k/node.key"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("k/node.key")).expect("read"),
        before
    );
}

#[test]
fn a_store_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("guanxi-data");
    {
        let store = guanxi_adapters::store::Store::open(&data).expect("open");
        store
            .force_schema_version(guanxi_adapters::store::SCHEMA_VERSION + 7)
            .expect("force");
    }
    let (code, out, err) = run(bin(), dir.path(), &["serve"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("schema version") && err.contains("this build uses"),
        "{err}"
    );
    assert!(!out.contains("listening"), "{out}");
}

#[test]
fn the_first_admin_is_created_once_and_accounts_are_managed_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(
        bin(),
        dir.path(),
        &["init", "--node-id", "acme", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let daemon =
        Daemon::start(bin(), dir.path(), &["serve", "--config", "guanxi.toml"]).expect("serves");
    let first = daemon
        .banner
        .iter()
        .find(|l| l.contains("first admin"))
        .cloned()
        .expect("first start prints the first admin's password");
    let password = first.rsplit(' ').next().expect("password").to_string();
    assert_eq!(password.len(), 24, "{first}");
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", "guanxi.toml"]);
        run(bin(), dir.path(), &all)
    };
    let (code, out, err) = cli(&["user", "add", "mei", "--role", "staff", "--name", "Lin Mei"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("password") && out.contains("shown once"),
        "{out}"
    );
    let (code, _, err) = cli(&["user", "add", "mei"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = cli(&["user", "add", "ext", "--role", "partner"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--partner"), "{err}");
    let (code, _, err) = cli(&[
        "user",
        "add",
        "ext",
        "--role",
        "partner",
        "--partner",
        "no-such-org",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no partner organization"), "{err}");
    let (code, out, _) = cli(&["user", "reset-password", "mei"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("password"), "{out}");
    let (code, _, _) = cli(&["user", "disable", "mei"]);
    assert_eq!(code, Some(0));
    let (code, out, _) = cli(&["user", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.lines()
            .any(|l| l.starts_with("admin") && l.contains("admin") && l.contains("active")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("mei") && l.contains("disabled") && l.contains("Lin Mei")),
        "{out}"
    );
    let (status, stderr) = daemon.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success());
    assert!(
        !stderr.iter().any(|l| l.contains(&password)),
        "the password was logged"
    );
    // A restart creates no second admin.
    let again =
        Daemon::start(bin(), dir.path(), &["serve", "--config", "guanxi.toml"]).expect("serves");
    assert!(
        !again.banner.iter().any(|l| l.contains("first admin")),
        "{:?}",
        again.banner
    );
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(
        bin(),
        dir.path(),
        &["init", "--node-id", "acme", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let config = std::fs::read_to_string(dir.path().join("guanxi.toml")).expect("read");
    std::fs::write(
        dir.path().join("guanxi.toml"),
        config.replace(
            "# metrics_listen = \"127.0.0.1:9464\"",
            "metrics_listen = \"127.0.0.1:0\"",
        ),
    )
    .expect("write");
    let daemon =
        Daemon::start(bin(), dir.path(), &["serve", "--config", "guanxi.toml"]).expect("serves");
    // The banner names the port the metrics listener bound.
    let port = daemon
        .banner_value("metrics")
        .and_then(|url| url.strip_prefix("http://127.0.0.1:").map(str::to_string))
        .and_then(|rest| rest.split('/').next().map(str::to_string))
        .expect("metrics line");
    // One HTTPS request, counted by its route.
    let https =
        guanxi_tests::client_trusting(&guanxi_tests::cert_in(&dir.path().join("guanxi-data")))
            .expect("client");
    let health = https
        .get(format!("{}/healthz", daemon.url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let client = reqwest::Client::new();
    let metrics = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    for expected in [
        "guanxi_inbox_envelopes",
        "guanxi_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1",
        "guanxi_http_request_seconds_count{route=\"/healthz\"} 1",
        // The first admin account was written: one group commit at least.
        "guanxi_group_commit_jobs_count ",
        "guanxi_connections_refused_total 0",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    for (path, answer) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let r = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .expect(path);
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.expect("text"), answer);
    }
    // The admin operations live on the local socket only.
    for (method, path) in [
        ("GET", "/admin/v1/users"),
        ("POST", "/admin/v1/tokens"),
        ("GET", "/admin/v1/peers"),
    ] {
        let request = if method == "GET" {
            client.get(format!("http://127.0.0.1:{port}{path}"))
        } else {
            client
                .post(format!("http://127.0.0.1:{port}{path}"))
                .body("{}")
        };
        assert_eq!(
            request.send().await.expect("request").status(),
            404,
            "{method} {path}"
        );
    }
    let (status, _) = daemon.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success());
}

/// A raw TLS connection to a daemon (trusting only its certificate) that
/// has written `head` and flushed: for clients that misbehave on purpose.
type RawTls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A client connection to 127.0.0.1 trusting only `cert_pem`.
fn client_connection(cert_pem: &[u8]) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(cert_pem) {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("tls")
}

fn raw_tls(cert_pem: &[u8], addr: &str, head: &[u8]) -> RawTls {
    use std::io::Write;
    let conn = client_connection(cert_pem);
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(head).expect("write");
    tls.flush().expect("flush");
    tls
}

/// A TLS connection whose handshake is complete, or the error that ended it
/// (a connection closed on arrival by the connection cap).
fn try_tls(cert_pem: &[u8], addr: &str) -> std::io::Result<RawTls> {
    let mut conn = client_connection(cert_pem);
    let mut tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// A node at its open-file limit (here 256, as `LimitNOFILE` would set it)
/// caps its HTTPS connections below the limit, so hundreds of idle
/// connections leave it able to answer its admin and to deliver to its
/// peers; once they go, new clients are served again.
#[tokio::test]
async fn idle_connections_cannot_use_up_the_descriptors_a_node_needs() {
    let mut pair = guanxi_tests::two_nodes(bin()).await;
    pair.vendor_daemon
        .stop(Duration::from_secs(10))
        .expect("stops");
    let config = std::fs::read_to_string(pair.vendor.config_file()).expect("read");
    std::fs::write(
        pair.vendor.config_file(),
        config.replace(
            "header_read_timeout_seconds = 10",
            "header_read_timeout_seconds = 300",
        ),
    )
    .expect("write");
    pair.vendor_daemon = pair
        .vendor
        .start_with_open_file_limit(bin(), 256)
        .expect("starts");
    pair.partner.point_at(&pair.vendor).await;
    // 256 − 128 reserved − 2 × 4 for the one peer's connections.
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    let (_, m) = pair.vendor.admin("GET", "/metrics", None).await;
    let m = m.as_str().unwrap_or("").to_string();
    assert_eq!(metric(&m, "guanxi_connections_cap"), 120, "{m}");
    assert!(
        pair.vendor_daemon
            .stderr_lines()
            .iter()
            .any(|l| l.contains("max_connections lowered")),
        "the lowered cap is logged"
    );
    let cert = std::fs::read(cert_in(&pair.vendor.data_dir())).expect("cert");
    let addr = pair.vendor_daemon.addr.clone();
    let (held, refused) = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..240 {
            match try_tls(&cert, &addr) {
                Ok(c) => held.push(c),
                Err(_) => refused += 1,
            }
        }
        (held, refused)
    })
    .await
    .expect("join");
    assert!(held.len() <= 120, "{} held", held.len());
    assert!(refused >= 120, "{refused} refused");
    let (status, m) = pair.vendor.admin("GET", "/metrics", None).await;
    assert_eq!(status, 200, "the admin socket still answers");
    let m = m.as_str().unwrap_or("").to_string();
    assert!(metric(&m, "guanxi_connections_refused_total") >= 120, "{m}");
    // The node still reaches its peer: a message goes out and is receipted.
    let (status, v) = pair
        .vendor
        .admin(
            "POST",
            "/admin/v1/send",
            Some(serde_json::json!({"peer": "globex", "kind": "ping", "subject": "while-flooded", "body": {"note": "still here"}})),
        )
        .await;
    assert_eq!(status, 200, "send: {v}");
    let seq = v["seq"].as_u64().expect("seq");
    guanxi_tests::eventually("the ping is receipted while flooded", || async {
        let (_, v) = pair
            .vendor
            .admin("GET", &format!("/admin/v1/outbox/globex/{seq}"), None)
            .await;
        v["receipt"].is_object().then_some(())
    })
    .await;
    drop(held);
    let client = client_trusting(&cert_in(&pair.vendor.data_dir())).expect("client");
    let url = format!("{}/healthz", pair.vendor_daemon.url());
    guanxi_tests::eventually("new clients are served once the idle ones left", || {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(&url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await;
}

/// A client that opens a TLS connection and then sends its headers too
/// slowly (slowloris) is disconnected after `header_read_timeout_seconds`.
#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = guanxi_tests::NodeSetup::init(bin(), dir.path(), "acme").expect("init");
    let config = std::fs::read_to_string(node.config_file()).expect("read");
    assert!(config.contains("header_read_timeout_seconds = 10"));
    std::fs::write(
        node.config_file(),
        config.replace(
            "header_read_timeout_seconds = 10",
            "header_read_timeout_seconds = 1",
        ),
    )
    .expect("write");
    let daemon = node.start(bin()).expect("starts");
    let addr = daemon.addr.clone();
    let cert = std::fs::read(cert_in(&node.data_dir())).expect("cert");
    let closed = tokio::task::spawn_blocking(move || {
        // Half a request line, then nothing more.
        let mut tls = raw_tls(&cert, &addr, b"GET / HT");
        let mut buf = [0u8; 64];
        // The server closes the connection (end of stream, or a reset),
        // well before this client's own 20 s read timeout would fire.
        let closed = |r: std::io::Result<usize>| match r {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
        };
        let first = tls.read(&mut buf);
        match first {
            // Whatever it answered first (a 408, say), it then closes.
            Ok(n) if n > 0 => closed(tls.read(&mut buf)),
            other => closed(other),
        }
    })
    .await
    .expect("join");
    assert!(closed, "the slow client was disconnected");
    let (status, _) = daemon.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success());
}

/// Unauthenticated federation requests are admitted only up to
/// `max_unchecked_per_address` at once from one address (each may hold a
/// 16 MiB body until its sender is known); more are answered 503 at once,
/// and a batch declaring more than 16 MiB is refused before it is read.
#[tokio::test]
async fn federation_requests_before_authentication_are_bounded() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = guanxi_tests::NodeSetup::init(bin(), dir.path(), "acme").expect("init");
    let config = std::fs::read_to_string(node.config_file()).expect("read");
    std::fs::write(
        node.config_file(),
        config.replace(
            "max_unchecked_per_address = 4",
            "max_unchecked_per_address = 2",
        ),
    )
    .expect("write");
    let daemon = node.start(bin()).expect("starts");
    let cert = std::fs::read(cert_in(&node.data_dir())).expect("cert");
    let addr = daemon.addr.clone();
    let open = std::sync::Arc::new(move |head: String| raw_tls(&cert, &addr, head.as_bytes()));
    let head = |length: usize| {
        format!(
            "POST /fed/v1/batch HTTP/1.1\r\nhost: acme\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n["
        )
    };
    let status_of =
        |tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>| {
            // "503 busy" for a refusal by admission: status and code.
            let mut answer = Vec::new();
            let mut buf = vec![0u8; 512];
            while !String::from_utf8_lossy(&answer).contains("\"code\"") {
                let n = tls.read(&mut buf).expect("answer");
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&answer);
            let status = text.split_whitespace().nth(1).unwrap_or("").to_string();
            let code = text
                .split("\"code\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            format!("{status} {code}")
        };
    // Two slow uploads hold this address's two places ...
    let open_held = open.clone();
    let held = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|_| open_held(head(1_000_000)))
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = node.admin("GET", "/metrics", None).await;
        if m.as_str()
            .is_some_and(|t| t.contains("guanxi_fed_unchecked_requests 2"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two were never admitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... so a third is turned away at once, and a batch declaring more
    // than 16 MiB is refused before anything of it is read.
    let (refused, oversized) = tokio::task::spawn_blocking(move || {
        let mut third = open(head(1_000_000));
        let refused = status_of(&mut third);
        let mut big = open(head(17 * 1024 * 1024));
        (Some(refused), status_of(&mut big))
    })
    .await
    .expect("join");
    assert_eq!(
        refused.as_deref(),
        Some("503 busy"),
        "the third request is refused"
    );
    assert_eq!(
        oversized, "413 too_large",
        "a declared 17 MiB batch is refused before reading"
    );
    drop(held);
    // A body that visibly is no array of envelopes is refused on its first
    // bytes, without waiting for the megabyte it announced.
    let cert = std::fs::read(cert_in(&node.data_dir())).expect("cert");
    let addr = daemon.addr.clone();
    let not_a_batch = tokio::task::spawn_blocking(move || {
        let mut tls = raw_tls(
            &cert,
            &addr,
            b"POST /fed/v1/batch HTTP/1.1\r\nhost: acme\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n[\"",
        );
        status_of(&mut tls)
    })
    .await
    .expect("join");
    assert_eq!(not_a_batch, "400 bad_json", "refused on its first bytes");
    let (status, _) = daemon.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success());
}

/// A damaged store is refused with a message that says what to do, and
/// never taken for a new node: flipped bytes (the page checksums fail), an
/// empty file, a missing file in a used data directory. An edit that keeps
/// the file valid (a note changed in a sent envelope) passes the start's
/// quick check, but the full check — run at start and daily, and by
/// `guanxi verify` — names it, and `/readyz` says the node is not ready.
#[tokio::test]
async fn a_damaged_store_is_refused_and_verify_names_the_damage() {
    let mut pair = guanxi_tests::two_nodes(bin()).await;
    let mut seqs = Vec::new();
    for n in 0..3 {
        let (status, v) = pair
            .vendor
            .admin(
                "POST",
                "/admin/v1/send",
                Some(serde_json::json!({"peer": "globex", "kind": "ping", "subject": format!("p-{n}"), "body": {"note": format!("damage-probe-{n}")}})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        seqs.push(v["seq"].as_u64().expect("seq"));
    }
    for seq in &seqs {
        guanxi_tests::eventually("receipts", || async {
            let (_, v) = pair
                .vendor
                .admin("GET", &format!("/admin/v1/outbox/globex/{seq}"), None)
                .await;
            v["receipt"].is_object().then_some(())
        })
        .await;
    }
    pair.vendor_daemon
        .stop(Duration::from_secs(10))
        .expect("stops");
    let dir = pair
        .vendor
        .config_file()
        .parent()
        .expect("dir")
        .to_path_buf();
    let verify = || run(bin(), &dir, &["verify", "--config", "guanxi.toml"]);
    let (code, out, err) = verify();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("no damage"), "{out}");

    let db = pair.vendor.data_dir().join("guanxi.redb");
    let original = std::fs::read(&db).expect("db");
    let restore = || std::fs::write(&db, &original).expect("restore");

    // Flipped bytes: every copy of a note in the file.
    let mut flipped = original.clone();
    let needle = b"damage-probe-1";
    let mut hits = 0;
    let mut at = 0;
    while let Some(i) = flipped[at..]
        .windows(needle.len())
        .position(|w| w == needle)
    {
        flipped[at + i] ^= 0x20;
        hits += 1;
        at += i + needle.len();
    }
    assert!(hits > 0, "the note is in the file");
    std::fs::write(&db, &flipped).expect("write");
    let refused = pair
        .vendor
        .start(bin())
        .err()
        .expect("a damaged file is refused");
    assert!(refused.contains("is damaged"), "{refused}");
    assert!(refused.contains("backup"), "says what to do: {refused}");
    let (code, out, err) = verify();
    assert_eq!(code, Some(65), "{out}{err}");

    // An empty file, a missing file: never a new node.
    std::fs::write(&db, b"").expect("truncate");
    let refused = pair
        .vendor
        .start(bin())
        .err()
        .expect("an empty file is refused");
    assert!(refused.contains("empty"), "{refused}");
    std::fs::remove_file(&db).expect("remove");
    let refused = pair
        .vendor
        .start(bin())
        .err()
        .expect("a missing file is refused");
    assert!(refused.contains("missing"), "{refused}");
    assert!(!db.exists(), "no new database was made");

    // A valid-looking edit: the file's checksums hold, the signature not.
    restore();
    {
        const OUT: redb::TableDefinition<(&str, u64), &[u8]> =
            redb::TableDefinition::new("out_envelopes");
        use redb::ReadableTable;
        let database = redb::Database::open(&db).expect("open");
        let txn = database.begin_write().expect("txn");
        {
            let mut table = txn.open_table(OUT).expect("table");
            let bytes = table
                .get(("globex", seqs[0]))
                .expect("get")
                .expect("envelope")
                .value()
                .to_vec();
            let edited = String::from_utf8(bytes)
                .expect("utf8")
                .replace("damage-probe-0", "damage-probe-X");
            table
                .insert(("globex", seqs[0]), edited.as_bytes())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    pair.vendor_daemon = pair
        .vendor
        .start_for(bin(), &[&pair.partner])
        .await
        .expect("the quick check passes: the stream's last envelope is intact");
    let client = client_trusting(&cert_in(&pair.vendor.data_dir())).expect("client");
    let url = format!("{}/readyz", pair.vendor_daemon.url());
    let body = guanxi_tests::eventually("the full check finds the edit", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(&url).send().await.ok()?;
            (r.status() == 503).then_some(())?;
            r.text().await.ok()
        }
    })
    .await;
    assert!(body.contains("signature does not verify"), "{body}");
    let (code, out, err) = verify();
    assert_eq!(code, Some(65), "{out}{err}");
    assert!(
        out.contains(&format!(
            "envelope #{} to globex: its signature does not verify",
            seqs[0]
        )),
        "{out}"
    );
}

/// `guanxi cert verify`: the certification of the test vectors verifies
/// offline with its issuer's key (given as the key or as the issuer's key
/// document), counts until it expires, and a changed one or another key
/// is refused — each with its exit status.
#[test]
fn a_certification_is_verified_offline_with_its_issuers_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/testdata/vectors.json"),
        )
        .expect("vectors"),
    )
    .expect("json");
    let key_of = |node: &str| {
        vectors["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["node"].as_str() == Some(node))
            .expect("key")
            .clone()
    };
    let acme = key_of("acme");
    let cert = |name: &str| {
        vectors["certifications"]
            .as_array()
            .expect("certifications")
            .iter()
            .find(|c| c["name"].as_str() == Some(name))
            .and_then(|c| c["canonical"].as_str())
            .expect("certification")
            .to_string()
    };
    let file = dir.path().join("cert.json");
    std::fs::write(&file, cert("acme-certifies-mei")).expect("write");
    let pk = acme["public_key"].as_str().expect("pk");
    let path = file.to_str().expect("utf-8");
    let verify = |extra: &[&str]| {
        let mut args = vec!["cert", "verify", path];
        args.extend_from_slice(extra);
        run(Path::new(BIN), dir.path(), &args)
    };
    let (code, out, err) = verify(&["--key", pk, "--at", "2027-06-01T00:00:00Z"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("holder        Mei Lin 林美 (globex)") && out.contains("valid"),
        "{out}"
    );
    // The issuer's key document works as well as the key.
    let document = serde_json::json!({"v": 1, "node": "acme", "name": "Acme", "public_url": "https://acme.example",
        "keys": [{"alg": "ed25519", "kid": acme["kid"], "public_key": pk}], "tls_cert_sha256": "00"});
    let doc_file = dir.path().join("keys.json");
    std::fs::write(&doc_file, document.to_string()).expect("write");
    let (code, out, err) = verify(&[
        "--key-document",
        doc_file.to_str().expect("utf-8"),
        "--at",
        "2027-06-01T00:00:00Z",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    // After its expiry it no longer counts.
    let (code, _, err) = verify(&["--key", pk, "--at", "2028-01-01T00:00:00Z"]);
    assert!(code == Some(1) && err.contains("expired"), "{err}");
    // Another issuer's key, and a holder changed after signing: refused.
    let globex = key_of("globex-tw");
    let (code, _, err) = verify(&["--key", globex["public_key"].as_str().expect("pk")]);
    assert!(
        code == Some(1) && err.contains("not with the issuer's key"),
        "{err}"
    );
    std::fs::write(&file, cert("holder-changed-after-signing")).expect("write");
    let (code, _, err) = verify(&["--key", pk, "--at", "2027-06-01T00:00:00Z"]);
    assert!(code == Some(1) && err.contains("does not verify"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_after_a_reload_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = |id: &str| {
        std::fs::create_dir(dir.path().join(id)).expect("dir");
        guanxi_tests::NodeSetup::init(bin(), &dir.path().join(id), id).expect("init")
    };
    let (acme, spare) = (setup("acme"), setup("spare"));
    let daemon = acme.start(bin()).expect("acme serves");
    // A second node's first start makes another self-signed pair: the
    // "renewed" certificate.
    let spare_daemon = spare.start(bin()).expect("spare serves");
    drop(spare_daemon);
    let (old_cert, new_cert) = (cert_in(&acme.data_dir()), cert_in(&spare.data_dir()));
    let old_client = client_trusting(&old_cert).expect("client");
    let keys = |client: reqwest::Client| {
        let url = format!("{}/fed/v1/keys", daemon.url());
        async move {
            let answer = client.get(url).send().await.map_err(|e| e.to_string())?;
            answer.text().await.map_err(|e| e.to_string())
        }
    };
    let before = keys(old_client.clone())
        .await
        .expect("the old certificate is served");
    assert!(before.contains(&acme.cert_sha256), "{before}");
    let saved = dir.path().join("acme-cert.pem");
    std::fs::copy(&old_cert, &saved).expect("save");
    std::fs::copy(&new_cert, &old_cert).expect("cert");
    std::fs::copy(
        spare.data_dir().join("tls/key.pem"),
        acme.data_dir().join("tls/key.pem"),
    )
    .expect("key");
    let out = acme.cli(bin(), &["reload"]);
    assert!(out.contains("reloaded"), "{out}");
    // New connections get the new certificate; the key document names it.
    let new_client = client_trusting(&new_cert).expect("client");
    let after = keys(new_client)
        .await
        .expect("the new certificate is served");
    assert!(after.contains(&spare.cert_sha256), "{after}");
    let fresh_old = client_trusting(&saved).expect("client");
    assert!(
        keys(fresh_old).await.is_err(),
        "the old certificate is no longer served"
    );
    // A pair that does not load is refused whole; the served one stays.
    std::fs::write(acme.data_dir().join("tls/key.pem"), "not a key").expect("write");
    let (code, out, err) = run(bin(), &acme.dir, &["reload", "--config", "guanxi.toml"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        format!("{out}{err}").contains("TLS certificate"),
        "{out}{err}"
    );
    let still = client_trusting(&new_cert).expect("client");
    assert!(keys(still).await.is_ok());
    drop(daemon);
}
