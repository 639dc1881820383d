//! Loading configuration files: the commented template, and bad input that
//! must give one clear error naming file, line and column.

use guanxi_config::{Config, commented_config, keyfile};
use guanxi_protocol::NodeKey;
use guanxi_protocol::crypto::b64url;
use std::path::Path;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        keyfile::write_node_key(
            &dir.path().join("guanxi-data/node.key"),
            &NodeKey::from_seed(&[1u8; 32]),
        )
        .expect("key");
        Fixture { dir }
    }

    fn load(&self, text: &str) -> Result<Config, String> {
        let path = self.dir.path().join("guanxi.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(&path).map_err(|e| e.to_string())
    }

    fn err(&self, text: &str) -> String {
        match self.load(text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e
                .strip_prefix(&self.dir.path().join("guanxi.toml").display().to_string())
                .map(str::to_string)
                .unwrap_or(e),
        }
    }
}

fn peer_key(seed: u8) -> String {
    NodeKey::from_seed(&[seed; 32]).public().to_string()
}

const NODE: &str = "[node]\nid = \"acme\"\n";

#[test]
fn template_loads_with_its_defaults() {
    let f = Fixture::new();
    let c = f
        .load(&commented_config("acme", "Acme Ltd", "127.0.0.1:9443"))
        .expect("template is valid");
    assert_eq!(c.node_id.as_str(), "acme");
    assert_eq!(c.public_url, "https://127.0.0.1:9443");
    assert_eq!(c.data_dir, f.dir.path().join("guanxi-data"));
    assert_eq!(c.cache_mib, guanxi_config::DEFAULT_CACHE_MIB);
    assert!(c.tls.self_signed);
    assert!(c.peers.is_empty());
}

#[test]
fn peers_load_with_keys_and_windows() {
    let f = Fixture::new();
    let kid = NodeKey::from_seed(&[2u8; 32]).kid();
    let text = format!(
        "{NODE}[[peers]]\nid = \"globex\"\nurl = \"https://globex.example:8443/\"\ntls_cert_sha256 = \"{}\"\n\
         [[peers.keys]]\nkid = \"{kid}\"\npublic_key = \"{}\"\nnot_before = \"2026-01-01T00:00:00Z\"\n",
        "AB:".repeat(31) + "AB",
        peer_key(2)
    );
    let c = f.load(&text).expect("valid");
    let p = &c.peers[0];
    assert_eq!(
        (p.url.as_str(), p.enabled),
        ("https://globex.example:8443", true)
    );
    assert_eq!(p.tls_cert_sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(p.keys[0].kid, kid);
    assert!(!p.keys[0].valid_at(1_767_225_599_999));
    assert!(p.keys[0].valid_at(1_767_225_600_000));
}

#[test]
fn bad_input_names_file_line_and_column() {
    let f = Fixture::new();
    let peer = |extra: &str, key: &str| {
        format!(
            "{NODE}[[peers]]\nid = \"globex\"\nurl = \"https://g.example\"\n{extra}[[peers.keys]]\npublic_key = \"{key}\"\n"
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        ("[node\nid = 1".into(), ":1:6:", "unclosed table"),
        (
            format!("{NODE}colour = \"red\"\n"),
            ":3:1:",
            "unknown field `colour`",
        ),
        ("[node]\nid = \"Acme Corp\"\n".into(), ":2:6:", "node id"),
        (
            format!("{NODE}\n[web]\ntrusted_proxies = [\"127.0.0.1\", \"proxy.lan\"]\n"),
            ":5:33:",
            "not an IP address",
        ),
        (
            format!("{NODE}listen = \"localhost\"\n"),
            ":3:10:",
            "IP address and port",
        ),
        (
            format!("{NODE}cache_mib = 4\n"),
            ":3:13:",
            "cache_mib must be 8 to 65536",
        ),
        (
            peer("", &b64url(&[7u8; 31])),
            ":7:14:",
            "expected 32 bytes, got 31",
        ),
        (
            peer("", &{
                let mut w = [0u8; 32];
                w[0] = 1;
                b64url(&w)
            }),
            ":7:14:",
            "weak",
        ),
        (
            format!(
                "{}[[peers]]\nid = \"globex\"\nurl = \"https://h.example\"\n[[peers.keys]]\npublic_key = \"{}\"\n",
                peer("", &peer_key(2)),
                peer_key(3)
            ),
            ":9:6:",
            "duplicate peer id globex",
        ),
        (
            peer("", &peer_key(2)).replace("https://g.example", "http://g.example"),
            ":5:7:",
            "must start with https://",
        ),
        (
            peer("tls_cert_sha256 = \"abc\"\n", &peer_key(2)),
            ":6:19:",
            "64 hex digits",
        ),
        (
            peer("kid = \"nope\"\n", &peer_key(2)),
            ":6:",
            "unknown field `kid`",
        ),
        (
            format!("{NODE}[[peers]]\nid = \"globex\"\nurl = \"https://g.example\"\n"),
            ":3:1:",
            "no [[peers.keys]]",
        ),
        (
            peer("", &peer_key(2)).replace("public_key", "not_before = \"yesterday\"\npublic_key"),
            ":7:14:",
            "RFC 3339",
        ),
        (
            format!("{NODE}[tls]\nself_signed = false\ncert_file = \"missing.pem\"\n"),
            ":5:13:",
            "certificate file",
        ),
        (
            format!("{NODE}signing_key_file = \"nokey\"\n"),
            ":3:20:",
            "does not exist",
        ),
        (
            format!("{NODE}[web]\ndefault_language = \"fr\"\n"),
            ":4:20:",
            "zh-TW",
        ),
        (
            format!(
                "{NODE}[smtp]\nhost = \"mail.example\"\nsecurity = \"none\"\nfrom = \"a@b.example\"\n"
            ),
            ":5:12:",
            "only to a relay on this machine",
        ),
        (
            format!("{NODE}[smtp]\nhost = \"mail.example\"\nfrom = \"nobody\"\n"),
            ":5:8:",
            "from must be an address",
        ),
        (
            format!(
                "{NODE}[smtp]\nhost = \"mail.example\"\nfrom = \"a@b.example\"\nuser = \"a\"\n"
            ),
            ":3:1:",
            "user and password_file go together",
        ),
        (
            format!("{NODE}[web]\ntime_zone = \"Asia/Taipeh\"\n"),
            ":4:13:",
            "not a time zone",
        ),
        (
            "[node]\nid = \"acme\"\n[[peers]]\nid = \"acme\"\nurl = \"https://a.example\"\n".into(),
            ":4:6:",
            "own id",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, place, words) in cases {
        let e = f.err(&text);
        if !(e.starts_with(place) && e.contains(words)) {
            wrong.push(format!(
                "for\n{text}\ngot {e:?}, expected {place} … {words}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn missing_file_is_a_clear_error() {
    let e = Config::load(Path::new("/nonexistent/guanxi.toml")).expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/guanxi.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn defaults_need_no_file() {
    let c = Config::defaults(Path::new("/srv"));
    assert_eq!(c.data_dir, Path::new("/srv/guanxi-data"));
    assert_eq!(c.public_url, "https://127.0.0.1:8443");
    assert!(c.source.is_none() && c.tls.self_signed);
}

#[test]
fn deploy_examples_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("deploy/examples") {
        let source = entry.expect("entry").path().join("guanxi.toml");
        let f = Fixture::new();
        let mut text = std::fs::read_to_string(&source).expect("example");
        // CA-signed examples name system paths; point them at files that exist here.
        let cert = f.dir.path().join("fullchain.pem");
        std::fs::write(&cert, "placeholder").expect("write");
        text = text
            .replace("/etc/guanxi/tls/fullchain.pem", &cert.display().to_string())
            .replace("/etc/guanxi/tls/privkey.pem", &cert.display().to_string());
        let c = f
            .load(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert_eq!(c.peers.len(), 1, "{}", source.display());
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn the_smtp_password_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let secret = f.dir.path().join("smtp-password");
    std::fs::write(&secret, "hunter2\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let text = format!(
        "{NODE}[smtp]\nhost = \"mail.example\"\nuser = \"prm\"\npassword_file = \"smtp-password\"\nfrom = \"prm@acme.example\"\n"
    );
    let e = f.err(&text);
    assert!(
        e.starts_with(":6:17:") && e.contains("readable by others") && e.contains("chmod 600"),
        "{e}"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let c = f.load(&text).expect("loads");
    let smtp = c.smtp.expect("smtp on");
    assert_eq!(
        (smtp.port, smtp.security, smtp.digest_hour),
        (587, guanxi_config::SmtpSecurity::StartTls, 8)
    );
    assert_eq!(smtp.password_file, Some(secret));
}
