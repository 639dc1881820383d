//! `guanxi demo`: three companies on loopback — a manufacturer, a
//! distributor and a reseller — each a real daemon (this same binary, as a
//! child process with its own data directory, key and certificate). The
//! first run sets them up and connects them with invitations, then puts
//! work in flight through their JSON APIs: the manufacturer's catalog and
//! an MDF budget for the distributor, leads offered down the chain, an
//! order placed with the manufacturer. Then it prints each web URL with
//! its sign-in and waits; Ctrl-C (or SIGTERM) stops all three cleanly. A
//! second run in the same directory starts the same network again.

use anyhow::{Context, anyhow, bail};
use guanxi_adapters::peer_client::{PeerClient, Trust};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The three companies: node id, display name, role.
const COMPANIES: [(&str, &str, &str); 3] = [
    ("acme-machinery", "Acme Machinery 精密機械", "manufacturer"),
    (
        "formosa-dist",
        "Formosa Distribution 福爾摩沙經銷",
        "distributor",
    ),
    ("taipei-auto", "Taipei Automation 台北自動化", "reseller"),
];

/// Written once the network has its sample work, with the first sign-ins.
const SEEDED: &str = "demo-logins.txt";

/// How long a daemon may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One running company.
struct Company {
    id: &'static str,
    name: &'static str,
    role: &'static str,
    dir: PathBuf,
    child: Child,
    url: String,
    /// The first admin's one-time password, when this start created it.
    password: Option<String>,
}

impl Company {
    fn socket(&self) -> PathBuf {
        self.dir.join("guanxi-data").join(crate::admin::SOCKET_FILE)
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, v) = crate::admin::request(&self.socket(), method, path, body)
            .await
            .map_err(|e| anyhow!("{}: {e}", self.id))?;
        if !(200..300).contains(&status) {
            bail!("{}: {method} {path}: {status} {v}", self.id);
        }
        Ok(v)
    }
}

/// Stops every child on drop (SIGTERM, then waits), whatever happened.
struct Network(Vec<Company>);

impl Drop for Network {
    fn drop(&mut self) {
        for c in &self.0 {
            let pid = rustix::process::Pid::from_child(&c.child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        for c in &mut self.0 {
            let _ = c.child.wait();
        }
    }
}

/// Runs the demo in `dir` until Ctrl-C.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this program")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fresh = !dir.join(SEEDED).exists();
    if fresh && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty and holds no finished demo: remove it or pass --dir",
            dir.display()
        );
    }
    let mut network = Network(Vec::new());
    for (id, name, role) in COMPANIES {
        let home = dir.join(id);
        if !home.join("guanxi.toml").exists() {
            std::fs::create_dir_all(&home)?;
            let out = Command::new(&exe)
                .args([
                    "init",
                    "--node-id",
                    id,
                    "--name",
                    name,
                    "--listen",
                    "127.0.0.1:0",
                ])
                .current_dir(&home)
                .output()
                .context("running init")?;
            if !out.status.success() {
                bail!("init {id}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        network.0.push(start(&exe, id, name, role, &home)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        if !fresh {
            // The daemons listen on new ports: each tells its peers.
            for c in &network.0 {
                for other in &network.0 {
                    if other.id == c.id {
                        continue;
                    }
                    let file = other.dir.join("guanxi.toml");
                    let known = guanxi_config::Config::load(&file)
                        .map(|cfg| cfg.peers.iter().any(|p| p.id.as_str() == c.id))
                        .unwrap_or(false);
                    if known {
                        guanxi_config::edit::set_peer_url(&file, c.id, &c.url)
                            .map_err(|e| anyhow!("{e}"))?;
                    }
                }
            }
            for c in &network.0 {
                c.admin("POST", "/admin/v1/reload", None).await?;
            }
        }
        if fresh {
            println!("setting up the network (invitations, catalog, leads, an order, MDF)...");
            seed(&network.0)
                .await
                .context("putting sample work in flight")?;
            let mut logins =
                String::from("First sign-ins of the Guanxi demo (each password works once):\n");
            for c in &network.0 {
                logins.push_str(&format!(
                    "{} ({}): {}/  user admin, one-time password {}\n",
                    c.name,
                    c.role,
                    c.url,
                    c.password.as_deref().unwrap_or("(already chosen)")
                ));
            }
            let mut f = std::fs::File::create(dir.join(SEEDED))?;
            f.write_all(logins.as_bytes())?;
        }
        println!();
        println!("Guanxi demo: three companies on this machine, talking over HTTPS");
        for c in &network.0 {
            println!("  {:<13} {}  {}/", c.role, c.name, c.url);
            match &c.password {
                Some(p) => println!(
                    "                sign in: admin / {p} (one-time: you choose a new one)"
                ),
                None => println!(
                    "                sign in: admin / the password you chose (first ones: {})",
                    dir.join(SEEDED).display()
                ),
            }
        }
        println!("  (self-signed certificates: your browser asks you to accept each once)");
        println!("demo ready; Ctrl-C stops all three");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        println!("stopping the three daemons...");
        anyhow::Ok(())
    })?;
    drop(network);
    println!("stopped; the data stays in {}", dir.display());
    Ok(())
}

/// Starts one company's daemon and reads its banner.
fn start(
    exe: &Path,
    id: &'static str,
    name: &'static str,
    role: &'static str,
    home: &Path,
) -> anyhow::Result<Company> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("daemon.log"))?;
    let mut child = Command::new(exe)
        .args(["serve", "--config", "guanxi.toml"])
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {id}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{id}: no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut password = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            bail!(
                "{id} did not start; see {}",
                home.join("daemon.log").display()
            );
        };
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("first admin") {
            password = rest.rsplit(' ').next().map(str::to_string);
        }
        if let Some(addr) = line.strip_prefix("listening") {
            return Ok(Company {
                id,
                name,
                role,
                dir: home.to_path_buf(),
                child,
                url: addr.trim().to_string(),
                password,
            });
        }
    }
}

/// A client of a company's JSON API, with an admin token.
struct Api {
    client: PeerClient,
    token: String,
}

impl Api {
    async fn of(c: &Company) -> anyhow::Result<Api> {
        let cert = c.dir.join("guanxi-data/tls/cert.pem");
        let pin = crate::tls::fingerprint(&cert).map_err(|e| anyhow!("{e}"))?;
        let client = PeerClient::new(
            &c.url,
            &Trust::Pinned(pin),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
        .map_err(|e| anyhow!("{e}"))?;
        let v = c
            .admin(
                "POST",
                "/admin/v1/tokens",
                Some(json!({"name": "demo", "username": "admin"})),
            )
            .await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| anyhow!("no token: {v}"))?
            .to_string();
        Ok(Api { client, token })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string().into_bytes());
        let answer = self
            .client
            .call(method, path, &self.token, body)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if !(200..300).contains(&answer.status) {
            bail!("{method} {path}: {} {v}", answer.status);
        }
        Ok(v)
    }

    /// Waits (up to 30 s) until `path` answers something `ready` accepts.
    async fn until(&self, path: &str, ready: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        for _ in 0..150 {
            let v = self.call("GET", path, None).await?;
            if ready(&v) {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("{path} did not show the expected work in 30 s")
    }
}

/// Connects the chain with invitations and puts sample work in flight.
async fn seed(c: &[Company]) -> anyhow::Result<()> {
    let (maker, dist, shop) = (&c[0], &c[1], &c[2]);
    for (inviter, invited) in [(maker, dist), (dist, shop)] {
        let v = inviter
            .admin(
                "POST",
                "/admin/v1/invitations",
                Some(json!({"partner": null, "expires_ms": 3_600_000})),
            )
            .await?;
        let code = v["code"].as_str().ok_or_else(|| anyhow!("no code: {v}"))?;
        invited
            .admin("POST", "/admin/v1/connect", Some(json!({"code": code})))
            .await?;
    }
    let (m, d, s) = (
        Api::of(maker).await?,
        Api::of(dist).await?,
        Api::of(shop).await?,
    );
    let partner = |id: &str, name: &str, kind: &str, tier: &str| {
        json!({"id": id, "name": name, "type": kind, "tier": tier, "country": "TW", "region": "",
               "stage": "active", "peer": id})
    };
    m.call(
        "POST",
        "/api/v1/partners",
        Some(partner(dist.id, dist.name, "distributor", "gold")),
    )
    .await?;
    d.call(
        "POST",
        "/api/v1/partners",
        Some(partner(shop.id, shop.name, "reseller", "silver")),
    )
    .await?;

    // The manufacturer's catalog, with the distributor's price list.
    m.call("PUT", "/api/v1/catalog", Some(json!({
        "products": [
            {"sku": "CNC-5X", "name_en": "5-axis CNC machining centre", "name_zh": "五軸加工中心", "unit": "pcs", "warranty_months": 24, "active": true},
            {"sku": "SPINDLE-12K", "name_en": "12,000 rpm spindle", "name_zh": "一萬二千轉主軸", "unit": "pcs", "warranty_months": 12, "active": true},
            {"sku": "SVC-INSTALL", "name_en": "Installation and training", "name_zh": "安裝與教育訓練", "unit": "day", "warranty_months": 0, "active": true}],
        "price_lists": [
            {"id": "tw-gold-2027", "tier": "gold", "currency": "TWD", "valid_from": "2026-01-01", "valid_to": null,
             "discount_bp": 500, "tax_rate_bp": 500,
             "prices": [{"sku": "CNC-5X", "unit_price": 380_000_000}, {"sku": "SPINDLE-12K", "unit_price": 9_600_000},
                        {"sku": "SVC-INSTALL", "unit_price": 1_800_000}]}]
    }))).await?;
    // Leads: the manufacturer's go to the distributor, the distributor's to the reseller.
    let lead = |company: &str, contact: &str, value: i64| {
        json!({"customer": {"company": company, "contact": contact, "email": "", "phone": "+886 2 2345 6789"},
               "country": "TW", "region": "Taipei", "product_lines": ["cnc"],
               "estimated_value": {"amount": value, "currency": "TWD"},
               "source": "trade-show", "campaign": "TIMTOS 2027", "consent": true, "notes": "asked for a visit"})
    };
    for (company, contact, value) in [
        ("台灣精密工業股份有限公司", "林小姐", 760_000_000),
        ("Kaohsiung Precision Parts", "Mr. Chen", 380_000_000),
        ("新竹模具有限公司", "王先生", 96_000_000),
    ] {
        m.call("POST", "/api/v1/leads", Some(lead(company, contact, value)))
            .await?;
    }
    d.call(
        "POST",
        "/api/v1/leads",
        Some(lead("台中自動化設備行", "張經理", 190_000_000)),
    )
    .await?;
    // The distributor orders from the manufacturer once the catalog is there.
    d.until("/api/v1/catalogs", |v| {
        v["catalogs"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await?;
    d.call("POST", "/api/v1/orders", Some(json!({
        "vendor": maker.id, "reference": "PO-2027-0001", "currency": "TWD",
        "lines": [{"line": 1, "sku": "CNC-5X", "quantity": 2, "unit_price": null},
                  {"line": 2, "sku": "SVC-INSTALL", "quantity": 3, "unit_price": null}],
        "requested_date": "2027-03-01",
        "ship_to": {"name": dist.name, "street": "1 Harbor Rd", "city": "Kaohsiung", "postal_code": "806",
                    "region": "", "country": "TW"},
        "lead": null}))).await?;
    // Marketing funds for the distributor.
    m.call(
        "POST",
        "/api/v1/mdf",
        Some(json!({"partner": dist.id, "budget": "2027-h1", "body": {
        "action": "allocate", "amount": 50_000_000, "currency": "TWD", "period": "2027-H1",
        "allow_overdraw": false, "expires_on": null, "note": "trade shows and seminars"}})),
    )
    .await?;
    // Wait until the work reached the other side.
    s.until("/api/v1/offers", |v| {
        v["offers"].as_array().is_some_and(|o| !o.is_empty())
    })
    .await?;
    m.until("/api/v1/orders", |v| v.to_string().contains("PO-2027-0001"))
        .await?;
    Ok(())
}
