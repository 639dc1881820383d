//! Support for integration tests that run real `guanxi` daemons as processes.
//!
//! The tests themselves live in `tests/tests/all/` (one test binary, a module per area); they find the daemon binary
//! with `env!("CARGO_BIN_EXE_guanxi-test-node")` and drive it through
//! [`Daemon`]: start with a config (or none) in a scratch directory, wait
//! for the address it listens on, talk HTTPS to it, stop it with SIGTERM or
//! kill it outright.

pub mod answering_peers;
pub mod smtp_sink;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running daemon process and what it printed at start.
pub struct Daemon {
    child: Child,
    /// Standard output lines printed up to "listening".
    pub banner: Vec<String>,
    /// The address from the "listening https://ADDR" line.
    pub addr: String,
    /// Lines printed to stderr, collected in the background.
    stderr: mpsc::Receiver<String>,
}

/// The file in a daemon's working directory whose content (milliseconds)
/// shifts the test daemon's clock; see `guanxi-test-node`.
pub const CLOCK_FILE: &str = "test-clock-offset";

/// How long a daemon may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Daemon {
    /// Starts `binary` with `args` in `dir`, waiting for its "listening" line.
    pub fn start(binary: &Path, dir: &Path, args: &[&str]) -> Result<Daemon, String> {
        let mut child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env("GUANXI_TEST_CLOCK_FILE", dir.join(CLOCK_FILE))
            // Heal answers in small pages: tests page through them.
            .env("GUANXI_TEST_HEAL_PAGE", "64")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (out_tx, out_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if err_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match out_rx.recv_timeout(left) {
                Ok(line) => {
                    let addr = line
                        .trim()
                        .strip_prefix("listening")
                        .map(|rest| rest.trim().trim_start_matches("https://").to_string());
                    banner.push(line);
                    if let Some(addr) = addr {
                        return Ok(Daemon {
                            child,
                            banner,
                            addr,
                            stderr: err_rx,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    // The process is gone: its stderr ends, and the reader
                    // thread sends every line before it stops (taking only
                    // the lines already read lost the error message when
                    // the process exited faster than they were read).
                    let mut errors = Vec::new();
                    let until = Instant::now() + Duration::from_secs(10);
                    while let Ok(line) =
                        err_rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                    {
                        errors.push(line);
                    }
                    return Err(format!(
                        "daemon did not report listening (exit {status:?}); stdout: {banner:?}; stderr: {errors:?}"
                    ));
                }
            }
        }
    }

    /// The value after `label` in the start banner (e.g. "key id").
    pub fn banner_value(&self, label: &str) -> Option<String> {
        self.banner.iter().find_map(|l| {
            l.trim()
                .strip_prefix(label)
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        })
    }

    /// The daemon's base URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Sends SIGTERM and waits for the exit, up to `timeout`.
    pub fn terminate(mut self, timeout: Duration) -> Result<(ExitStatus, Vec<String>), String> {
        self.stop(timeout)
    }

    /// Like [`Daemon::terminate`], keeping the handle (for a restart in place).
    pub fn stop(&mut self, timeout: Duration) -> Result<(ExitStatus, Vec<String>), String> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                std::thread::sleep(Duration::from_millis(50));
                return Ok((status, self.stderr.try_iter().collect()));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err("daemon did not stop after SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `binary` with `args` in `dir` to completion: (exit code, stdout, stderr).
pub fn run(binary: &Path, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    match Command::new(binary)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => (
            None,
            String::new(),
            format!("cannot run {}: {e}", binary.display()),
        ),
    }
}

/// An HTTPS client that trusts exactly the certificate in `cert_file`
/// (each request at most 10 s).
pub fn client_trusting(cert_file: &Path) -> Result<reqwest::Client, String> {
    client_trusting_for(cert_file, Duration::from_secs(10))
}

/// The same, with requests of at most `timeout` (a long streamed answer).
pub fn client_trusting_for(cert_file: &Path, timeout: Duration) -> Result<reqwest::Client, String> {
    let pem = std::fs::read(cert_file).map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// The self-signed certificate path inside a data directory.
pub fn cert_in(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("cert.pem")
}

/// `config` with the `url` of the `[[peers]]` entry whose id is `peer` set
/// to `url` (the first `url =` line after its `id =` line).
pub fn with_peer_url(config: &str, peer: &str, url: &str) -> String {
    let id_line = format!("id = \"{peer}\"");
    let mut in_peer = false;
    let mut out: Vec<String> = Vec::new();
    for line in config.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("[[peers]]") {
            in_peer = false;
        }
        if trimmed == id_line {
            in_peer = true;
        }
        if in_peer && trimmed.starts_with("url =") {
            out.push(format!("url = \"{url}\""));
            in_peer = false;
            continue;
        }
        out.push(line.to_string());
    }
    let mut text = out.join("\n");
    if config.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A node set up with `guanxi init` in its own directory. Its daemon listens
/// on a port the system picks (`127.0.0.1:0`) and reports it; peers learn it
/// through [`NodeSetup::point_at`] (a config edit and a reload), never from
/// a port picked and released beforehand.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub dir: PathBuf,
    pub id: String,
    /// The port of the running (or last run) daemon; 0 before it started.
    port: Arc<AtomicU16>,
    pub public_key: String,
    pub cert_sha256: String,
}

impl NodeSetup {
    /// Runs `init` for node `id` in `dir`, listening on any free port.
    pub fn init(binary: &Path, dir: &Path, id: &str) -> Result<NodeSetup, String> {
        let (code, out, err) = run(
            binary,
            dir,
            &["init", "--node-id", id, "--listen", "127.0.0.1:0"],
        );
        if code != Some(0) {
            return Err(format!("init failed: {out}{err}"));
        }
        let value_of = |key: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .and_then(|rest| rest.split('"').nth(1))
                .map(str::to_string)
                .ok_or_else(|| format!("no {key} in init output: {out}"))
        };
        Ok(NodeSetup {
            dir: dir.to_path_buf(),
            id: id.to_string(),
            port: Arc::new(AtomicU16::new(0)),
            public_key: value_of("public_key =")?,
            cert_sha256: value_of("tls_cert_sha256 =")?,
        })
    }

    /// The port its daemon listens on (0 before the first start: a peer
    /// pointed there finds nobody, as if the node were down).
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// Its URL as peers use it.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port())
    }

    /// Points this node's `[[peers]]` entry for `peer` at `peer`'s current
    /// URL and, if this node's daemon runs, reloads its configuration.
    pub async fn point_at(&self, peer: &NodeSetup) {
        let path = self.config_file();
        let config = std::fs::read_to_string(&path).expect("config");
        let updated = with_peer_url(&config, &peer.id, &peer.url());
        if updated != config {
            std::fs::write(&path, updated).expect("config");
        }
        if self.data_dir().join(guanxi::admin::SOCKET_FILE).exists() {
            let (status, v) = self.admin("POST", "/admin/v1/reload", None).await;
            assert!(status == 200 || status == 0, "reload of {}: {v}", self.id);
        }
    }

    /// Starts `serve` and points every node of `peers` at this one.
    pub async fn start_for(&self, binary: &Path, peers: &[&NodeSetup]) -> Result<Daemon, String> {
        let daemon = self.start(binary)?;
        for p in peers {
            p.point_at(self).await;
        }
        Ok(daemon)
    }

    /// The `[[peers]]` block another node needs to talk to this one.
    pub fn peer_block(&self, enabled: bool) -> String {
        format!(
            "\n[[peers]]\nid = \"{}\"\nurl = \"{}\"\nenabled = {enabled}\ntls_cert_sha256 = \"{}\"\n[[peers.keys]]\npublic_key = \"{}\"\n",
            self.id,
            self.url(),
            self.cert_sha256,
            self.public_key
        )
    }

    /// Appends `text` to this node's config file.
    pub fn append_config(&self, text: &str) -> Result<(), String> {
        let path = self.config_file();
        let mut config = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        config.push_str(text);
        std::fs::write(&path, config).map_err(|e| e.to_string())
    }

    /// This node's config file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("guanxi.toml")
    }

    /// This node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("guanxi-data")
    }

    /// Starts `serve` for this node and records the port it reports.
    pub fn start(&self, binary: &Path) -> Result<Daemon, String> {
        let daemon = Daemon::start(binary, &self.dir, &["serve", "--config", "guanxi.toml"])?;
        self.started(daemon)
    }

    /// Starts `serve` with the process's open-file limit set to `nofile`
    /// (as systemd's `LimitNOFILE` would), through `sh -c 'ulimit -n'`.
    pub fn start_with_open_file_limit(&self, binary: &Path, nofile: u32) -> Result<Daemon, String> {
        self.start_after(binary, &format!("ulimit -n {nofile}"))
    }

    /// Starts `serve` through `sh -c '<setup> && exec guanxi serve ...'`, so
    /// the daemon (same pid) inherits what `setup` sets: limits, ignored
    /// signals.
    pub fn start_after(&self, binary: &Path, setup: &str) -> Result<Daemon, String> {
        let script = format!("{setup} && exec \"$0\" serve --config guanxi.toml");
        let binary = binary.to_str().ok_or("binary path is not UTF-8")?;
        let daemon = Daemon::start(Path::new("/bin/sh"), &self.dir, &["-c", &script, binary])?;
        self.started(daemon)
    }

    fn started(&self, daemon: Daemon) -> Result<Daemon, String> {
        let port = daemon
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no port in {}", daemon.addr))?;
        self.port.store(port, Ordering::SeqCst);
        Ok(daemon)
    }

    /// One request to this node's admin socket: (status, JSON).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let socket = self.data_dir().join(guanxi::admin::SOCKET_FILE);
        match guanxi::admin::request(&socket, method, path, body).await {
            Ok(answer) => answer,
            Err(e) => (0, serde_json::json!({"error": e})),
        }
    }

    /// The disk is lost and `backup` (a file in the node's directory) comes
    /// back with `guanxi restore`; the node's key and certificate files,
    /// which a backup never holds, are put back from the lost directory
    /// (kept as `lost`). Answers what `restore` printed.
    pub fn restore_backup(&self, binary: &Path, backup: &str) -> String {
        let data = self.data_dir();
        let lost = self.dir.join("lost");
        std::fs::rename(&data, &lost).expect("move the lost store away");
        let (code, out, err) = run(
            binary,
            &self.dir,
            &["restore", backup, "--dir", "guanxi-data"],
        );
        assert_eq!(code, Some(0), "restore: {out}{err}");
        std::fs::copy(lost.join("node.key"), data.join("node.key")).expect("key");
        std::fs::create_dir_all(data.join("tls")).expect("tls");
        for f in ["cert.pem", "key.pem"] {
            std::fs::copy(lost.join("tls").join(f), data.join("tls").join(f)).expect("certificate");
        }
        out
    }

    /// Starts this node on what its data directory holds (pointing
    /// `peers` at it) and waits until it has healed (SPEC §22).
    pub async fn start_healed(&self, binary: &Path, peers: &[&NodeSetup]) -> Daemon {
        let daemon = self
            .start_for(binary, peers)
            .await
            .expect("the node starts on its restored store");
        eventually("the node healed", || async {
            let (status, v) = self.admin("GET", "/admin/v1/peers", None).await;
            (status == 200 && v["healing"].is_null()).then_some(())
        })
        .await;
        daemon
    }

    /// This node's key document (`GET /fed/v1/keys`), trusting the
    /// certificate in its data directory.
    pub async fn key_document(&self) -> serde_json::Value {
        let client = client_trusting(&cert_in(&self.data_dir())).expect("client");
        client
            .get(format!("{}/fed/v1/keys", self.url()))
            .send()
            .await
            .expect("keys")
            .json()
            .await
            .expect("json")
    }

    /// The peers table of this node's admin API, as (peer id → entry).
    pub async fn peer_status(&self, peer: &str) -> serde_json::Value {
        let (_, v) = self.admin("GET", "/admin/v1/peers", None).await;
        v["peers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["id"] == peer).cloned())
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Daemon {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process outright (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn hangup(&self) -> Result<(), String> {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err("kill -HUP failed".into())
        }
    }

    /// Stderr lines collected so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl NodeSetup {
    /// Runs a CLI command against this node's running daemon (`--config`
    /// added); panics with the output when it fails.
    pub fn cli(&self, binary: &Path, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--config", "guanxi.toml"]);
        let (code, out, err) = run(binary, &self.dir, &all);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
        out
    }
}

impl Daemon {
    /// The first admin's one-time password from the start banner.
    pub fn first_admin_password(&self) -> Option<String> {
        self.banner
            .iter()
            .find(|l| l.contains("first admin"))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    }
}

impl NodeSetup {
    /// Shifts this node's clock by `offset_ms`; when its daemon runs, waits
    /// until the daemon has the new offset in force.
    pub fn set_clock_offset(&self, offset_ms: i64) {
        std::fs::write(self.dir.join(CLOCK_FILE), offset_ms.to_string()).expect("clock file");
        if !self.data_dir().join(guanxi::admin::SOCKET_FILE).exists() {
            return;
        }
        let applied = self.dir.join(format!("{CLOCK_FILE}.applied"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&applied).ok().as_deref() != Some(&offset_ms.to_string()) {
            assert!(
                Instant::now() < deadline,
                "the daemon never took the clock offset"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How many rounds the daemon's timer `timer` (`lead_sweeper`,
    /// `mdf_expiry`, `warranty_relay`) has finished.
    pub async fn timer_rounds(&self, timer: &str) -> u64 {
        let (_, v) = self.admin("GET", "/metrics", None).await;
        let text = v.as_str().unwrap_or("");
        let prefix = format!("guanxi_timer_rounds_total{{timer=\"{timer}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the timer has run a whole round that started after this
    /// call: what it would have done by now, it has done.
    pub async fn full_timer_round(&self, timer: &str) {
        let start = self.timer_rounds(timer).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.timer_rounds(timer).await < start + 2 {
            assert!(Instant::now() < deadline, "the {timer} timer does not run");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates an API token for `user` with the CLI; returns its secret.
    pub fn token(&self, binary: &Path, name: &str, user: &str) -> String {
        token_from(&self.cli(binary, &["token", "create", name, "--user", user]))
    }
}

/// The secret from the output of `guanxi token create`.
pub fn token_from(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("token"))
        .map(|t| t.trim().to_string())
        .expect("token line")
}

/// A client of a node's JSON API.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    /// A client of `daemon`'s API trusting `node`'s certificate.
    pub fn of(node: &NodeSetup, daemon: &Daemon) -> Api {
        Api {
            client: client_trusting(&cert_in(&node.data_dir())).expect("client"),
            base: daemon.url(),
        }
    }

    /// One request: (status, JSON body, or the text as a JSON string).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "get" => self.client.get(&url),
            "post" => self.client.post(&url),
            "put" => self.client.put(&url),
            other => panic!("method {other}"),
        };
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            request = request
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = request.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }
}

/// Three running nodes in a chain (`ids[0]` ↔ `ids[1]` ↔ `ids[2]`: a
/// manufacturer, its distributor and the distributor's reseller), each in
/// its own directory under `dir`, peers of their neighbours only.
pub async fn chain_of_three(
    binary: &Path,
    dir: &Path,
    ids: [&str; 3],
) -> (Vec<NodeSetup>, Vec<Daemon>) {
    let mut nodes = Vec::new();
    for id in ids {
        std::fs::create_dir(dir.join(id)).expect("dir");
        nodes.push(NodeSetup::init(binary, &dir.join(id), id).expect("init"));
    }
    let daemons: Vec<Daemon> = nodes
        .iter()
        .map(|n| n.start(binary).expect("starts"))
        .collect();
    for (a, b) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
        nodes[a]
            .append_config(&nodes[b].peer_block(true))
            .expect("config");
    }
    for (a, b) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
        nodes[a].point_at(&nodes[b]).await;
    }
    (nodes, daemons)
}

/// Polls `probe` until it returns `Some`, or panics after 20 s naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One API call that must answer `status`; returns the JSON body.
pub async fn expect(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
    status: u16,
) -> serde_json::Value {
    let (got, v) = api.call(method, path, Some(token), body).await;
    assert_eq!(got, status, "{method} {path}: {v}");
    v
}

/// Two running nodes that know each other: `acme` (the vendor in the
/// tests) and `globex` (its partner).
pub struct Pair {
    _dir: tempfile::TempDir,
    pub vendor: NodeSetup,
    pub partner: NodeSetup,
    pub vendor_daemon: Daemon,
    pub partner_daemon: Daemon,
}

/// Starts `acme` and `globex`, each configured as the other's peer.
pub async fn two_nodes(binary: &Path) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("acme")).expect("dir");
    std::fs::create_dir(dir.path().join("globex")).expect("dir");
    let vendor = NodeSetup::init(binary, &dir.path().join("acme"), "acme").expect("init");
    let partner = NodeSetup::init(binary, &dir.path().join("globex"), "globex").expect("init");
    let vendor_daemon = vendor.start(binary).expect("vendor starts");
    let partner_daemon = partner.start(binary).expect("partner starts");
    vendor
        .append_config(&partner.peer_block(true))
        .expect("config");
    partner
        .append_config(&vendor.peer_block(true))
        .expect("config");
    vendor.point_at(&partner).await;
    partner.point_at(&vendor).await;
    Pair {
        _dir: dir,
        vendor,
        partner,
        vendor_daemon,
        partner_daemon,
    }
}

impl Pair {
    /// API clients of the vendor and the partner, and an admin token of each.
    pub fn apis(&self, binary: &Path) -> (Api, Api, String, String) {
        (
            Api::of(&self.vendor, &self.vendor_daemon),
            Api::of(&self.partner, &self.partner_daemon),
            self.vendor.token(binary, "ci", "admin"),
            self.partner.token(binary, "ci", "admin"),
        )
    }

    /// Stops the partner's daemon (SIGTERM), runs `f` while it is down (its
    /// store can be opened), and starts it again (the vendor learns its new
    /// address).
    pub async fn with_partner_stopped(&mut self, binary: &Path, f: impl FnOnce(&NodeSetup)) {
        self.partner_daemon
            .stop(Duration::from_secs(10))
            .expect("the partner stops");
        f(&self.partner);
        self.partner_daemon = self
            .partner
            .start_for(binary, &[&self.vendor])
            .await
            .expect("the partner restarts");
    }

    /// Restarts both daemons (SIGTERM, start), each learning the other's new
    /// address.
    pub async fn restart_both(&mut self, binary: &Path) {
        let timeout = Duration::from_secs(10);
        self.vendor_daemon.stop(timeout).expect("the vendor stops");
        self.partner_daemon
            .stop(timeout)
            .expect("the partner stops");
        self.vendor_daemon = self.vendor.start(binary).expect("the vendor restarts");
        self.partner_daemon = self
            .partner
            .start_for(binary, &[&self.vendor])
            .await
            .expect("the partner restarts");
        self.partner.point_at(&self.vendor).await;
    }
}

/// One-time passwords the test helpers replaced at first sign-in, and the
/// passwords chosen for them (a test keeps using the one-time password it
/// was given; the login helpers sign in with what replaced it).
static CHOSEN: std::sync::Mutex<Option<std::collections::HashMap<String, String>>> =
    std::sync::Mutex::new(None);

/// The password that now opens an account first given `one_time`.
pub fn current_password(one_time: &str) -> String {
    CHOSEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(one_time).cloned())
        .unwrap_or_else(|| one_time.to_string())
}

/// The password a test user chooses at the first sign-in with `one_time`
/// (strong enough for the daemon's estimate), remembered for later logins.
pub fn choose_password(one_time: &str) -> String {
    let chosen = format!("{one_time} kumquat ferry lantern");
    CHOSEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(Default::default)
        .insert(one_time.to_string(), chosen.clone());
    chosen
}
