//! `guanxi demo`: three real daemons (manufacturer, distributor, reseller)
//! connected by invitations, with work in flight; each web view answers;
//! SIGINT stops all three cleanly; a second start brings the same network
//! back, with its streams following the new ports.

use guanxi_tests::{cert_in, client_trusting};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

/// Starts the demo in `dir` and answers the process and its (role, URL)
/// lines once it says it is ready.
fn start(
    dir: &Path,
) -> (
    Child,
    Vec<(String, String)>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut urls = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let status = child.wait();
            panic!("the demo never got ready ({status:?}); so far {urls:?}");
        };
        if line.starts_with("demo ready") {
            return (child, urls, rx);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let (Some(role), Some(url)) = (
            words.first(),
            words.iter().find(|w| w.starts_with("https://")),
        ) {
            urls.push((role.to_string(), url.trim_end_matches('/').to_string()));
        }
    }
}

/// SIGINT (Ctrl-C), then the demo must stop by itself and say so.
fn interrupt(mut child: Child, rx: std::sync::mpsc::Receiver<String>) {
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("signal");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "the demo stops cleanly: {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let said: Vec<String> = rx.try_iter().collect();
    assert!(said.iter().any(|l| l.starts_with("stopped")), "{said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_starts_three_companies_whose_web_views_answer_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let (child, urls, rx) = start(&dir);
    let roles: Vec<&str> = urls.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["manufacturer", "distributor", "reseller"]);
    for ((role, url), id) in urls
        .iter()
        .zip(["acme-machinery", "formosa-dist", "taipei-auto"])
    {
        let client = client_trusting(&cert_in(&dir.join(id).join("guanxi-data"))).expect("client");
        let page = client
            .get(format!("{url}/login"))
            .send()
            .await
            .expect("answers");
        assert_eq!(page.status().as_u16(), 200, "{role}");
        let text = page.text().await.expect("page");
        assert!(text.contains("<form"), "{role}: a sign-in form");
    }
    let logins = std::fs::read_to_string(dir.join("demo-logins.txt")).expect("logins");
    assert_eq!(logins.matches("one-time password").count(), 3, "{logins}");
    interrupt(child, rx);
    for id in ["acme-machinery", "formosa-dist", "taipei-auto"] {
        assert!(
            !dir.join(id)
                .join("guanxi-data")
                .join(guanxi::admin::SOCKET_FILE)
                .exists(),
            "{id} stopped and removed its admin socket"
        );
    }

    // Again: the same three, on new ports, still connected.
    let (child, urls, rx) = start(&dir);
    assert_eq!(urls.len(), 3);
    let socket = dir
        .join("acme-machinery/guanxi-data")
        .join(guanxi::admin::SOCKET_FILE);
    let (_, body) = guanxi::admin::request(
        &socket,
        "POST",
        "/admin/v1/ping",
        Some(serde_json::json!({"peer": "formosa-dist"})),
    )
    .await
    .expect("admin socket");
    assert_eq!(body["receipt"]["status"], "accepted", "{body}");
    interrupt(child, rx);
}
