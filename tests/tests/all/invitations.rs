//! Invitations between fresh nodes (no `[[peers]]` copied by hand):
//! `guanxi invite` on one, `guanxi connect CODE` on the other, then signed
//! pings both ways; a changed code, a used code and an expired code are
//! refused with a clear message and change no config file.

use crate::web::{Browser, all_in_chinese, create_partner};
use guanxi_tests::{NodeSetup, run};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");
const MINUTE: i64 = 60_000;

fn invite(node: &NodeSetup, args: &[&str]) -> String {
    let mut all = vec!["invite"];
    all.extend(args);
    let out = node.cli(Path::new(BIN), &all);
    let code = out.trim().to_string();
    assert!(code.starts_with("guanxi-invite-1."), "{out}");
    code
}

/// Runs `guanxi connect CODE` on `node`: (succeeded, output).
fn connect(node: &NodeSetup, code: &str) -> (bool, String) {
    let (status, out, err) = run(
        Path::new(BIN),
        &node.dir,
        &["connect", code, "--config", "guanxi.toml"],
    );
    (status == Some(0), format!("{out}{err}"))
}

fn config_of(node: &NodeSetup) -> String {
    std::fs::read_to_string(node.config_file()).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_nodes_connect_by_invitation_and_a_bad_code_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = |id: &str| {
        std::fs::create_dir(dir.path().join(id)).expect("dir");
        NodeSetup::init(Path::new(BIN), &dir.path().join(id), id).expect("init")
    };
    let (acme, globex, initech) = (setup("acme"), setup("globex"), setup("initech"));
    let a = acme.start(Path::new(BIN)).expect("acme starts");
    let _g = globex.start(Path::new(BIN)).expect("globex starts");
    let i = initech.start(Path::new(BIN)).expect("initech starts");
    let before = (config_of(&acme), config_of(&globex));

    let code = invite(&acme, &["--expires", "2d"]);
    // One character changed: refused before anything is sent.
    let mut chars: Vec<char> = code.chars().collect();
    let at = code.len() / 2;
    chars[at] = if chars[at] == 'x' { 'y' } else { 'x' };
    let altered: String = chars.into_iter().collect();
    let (ok, out) = connect(&globex, &altered);
    assert!(!ok, "{out}");
    assert!(out.contains("changed or mistyped"), "{out}");
    assert_eq!((config_of(&acme), config_of(&globex)), before);

    // The real code: each node adds the other, comments and layout kept.
    let (ok, out) = connect(&globex, &code);
    assert!(ok, "{out}");
    assert!(out.contains("connected to acme"), "{out}");
    let (acme_config, globex_config) = (config_of(&acme), config_of(&globex));
    assert!(
        acme_config.starts_with(&before.0),
        "acme's text stays as it was"
    );
    assert!(globex_config.starts_with(&before.1));
    assert!(acme_config.contains("id = \"globex\""), "{acme_config}");
    assert!(globex_config.contains("id = \"acme\""), "{globex_config}");
    assert!(globex_config.contains("# Added by connecting with an invitation from acme"));
    assert!(globex_config.contains(&acme.public_key));
    assert!(acme_config.contains(&globex.public_key));
    for (from, to) in [(&globex, "acme"), (&acme, "globex")] {
        let out = from.cli(Path::new(BIN), &["ping", to]);
        assert!(out.contains("accepted"), "ping {to}: {out}");
    }

    // The same code again, from a third node: used.
    let initech_before = config_of(&initech);
    let (ok, out) = connect(&initech, &code);
    assert!(!ok);
    assert!(out.contains("already used"), "{out}");
    assert_eq!(config_of(&initech), initech_before);
    // Expired: acme's clock moves past the code's hour.
    let short = invite(&acme, &["--expires", "60m"]);
    acme.set_clock_offset(61 * MINUTE);
    let (ok, out) = connect(&initech, &short);
    assert!(!ok);
    assert!(out.contains("expired"), "{out}");
    assert_eq!(config_of(&initech), initech_before);
    assert!(!config_of(&acme).contains("initech"));
    // A fresh code from the partner's page in the web view (an admin's
    // button) works, and the new peer answers.
    let mut admin = Browser::new(&acme, &a);
    let password = a.first_admin_password().expect("first admin");
    assert_eq!(admin.login("admin", &password).await.status, 303);
    create_partner(&mut admin, "initech", "Initech 資訊").await;
    let page = admin.get("/partners/initech").await;
    assert!(
        page.body.contains("id=\"invite-node\""),
        "an admin may invite"
    );
    all_in_chinese(&mut admin, &["/partners/initech"]).await;
    admin.accept_language = None;
    let csrf = Browser::csrf(&page);
    let bad = admin
        .post(
            "/partners/initech/invite",
            &[("csrf", &csrf), ("days", "90")],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let made = admin
        .post(
            "/partners/initech/invite",
            &[("csrf", &csrf), ("days", "3")],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let fresh = made
        .body
        .split("id=\"invite-code\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the code on the page")
        .to_string();
    let (ok, out) = connect(&initech, &fresh);
    assert!(ok, "{out}");
    let out = initech.cli(Path::new(BIN), &["ping", "acme"]);
    assert!(out.contains("accepted"), "{out}");
    drop(i);
}
