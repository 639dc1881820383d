//! Federation benchmarks against real daemon processes on loopback TLS.
//!
//! Build and run (release, from the workspace root):
//!
//! ```sh
//! cargo build --release -p guanxi-tests --bins
//! target/release/guanxi-bench all --runs 3
//! ```
//!
//! - `ingest`: pre-signed envelopes from 8 peers, each its own stream posted
//!   in batches of 100 on its own connection, to one daemon; reports
//!   verified, committed, receipted messages per second.
//! - `e2e`: two daemons; the sender holds a backlog (default 100,000) queued
//!   while the receiver was down; reports delivered-and-receipted messages
//!   per second, receipts stored at the sender.
//! - `latency`: one ping at a time on an idle pair, from the admin call that
//!   creates it to the receipt stored at the sender; p50 and p99.
//!
//! - `leads`: one daemon with 50 partners (web users) and a distribution
//!   rule; leads imported by CSV (chunks of 5,000, default 20,000 leads) and
//!   distributed; then the clock is moved past every deadline and the
//!   sweeper expires and re-offers them all. Reports leads per second for
//!   each phase.
//!
//! - `fetch`: two daemons; the publisher uploads a 200 MiB file to its
//!   library (the web form, streamed to disk) for the other, whose node
//!   fetches it with signed, ranged requests and checks its SHA-256.
//!   Reports MB/s from publication to the file complete at the receiver,
//!   and the peak RSS of both daemons during the transfer (sampled every
//!   20 ms).
//!
//! - `scorecards`: one daemon, `--partners` web partners (500 for the
//!   issue's figure) and two years of their work built through the API
//!   month by month (the clock moved); the ranking of every partner for a
//!   year against the year before, and one partner's two-year scorecard.
//!
//! - `heal`: two daemons exchange `--messages` pings each way (default
//!   100,000); the sender's store is backed up (`guanxi backup`), then lost
//!   whole and recovered from the receiver (`guanxi recover`, SPEC §22).
//!   Reports the backup's MB/s and the envelopes per second healed (its
//!   own envelopes with their receipts and the peer's envelopes with its
//!   receipts, verified and replayed).
//!
//! Each benchmark reports the median of `--runs` runs, each on fresh daemons
//! and fresh databases in a temporary directory.

use guanxi_protocol::envelope::{EnvelopeFields, PROTOCOL_VERSION};
use guanxi_protocol::{NodeKey, Sha256Hash};
use guanxi_tests::{Api, NodeSetup, client_trusting};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Args {
    what: String,
    runs: usize,
    messages: u64,
    partners: usize,
    /// `[node] cache_mib` for the scale bench's daemon (0: the default).
    cache_mib: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        what: "all".into(),
        runs: 3,
        messages: 0,
        partners: 50,
        cache_mib: 0,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "ingest" | "e2e" | "latency" | "leads" | "scale" | "hub" | "fetch" | "scorecards"
            | "heal" | "handover" | "all" => parsed.what = a,
            "--runs" => {
                parsed.runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--runs needs a number")?
            }
            "--messages" => {
                parsed.messages = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--messages needs a number")?
            }
            "--partners" => {
                parsed.partners = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 4)
                    .ok_or("--partners needs a number of at least 4")?
            }
            "--cache-mib" => {
                parsed.cache_mib = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--cache-mib needs a number")?
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: guanxi-bench [ingest|e2e|latency|leads|scale|hub|fetch|scorecards|heal|handover|all] [--runs N] [--messages N] [--partners N (scale, hub, scorecards)] [--cache-mib N (scale)]"
                ));
            }
        }
    }
    Ok(parsed)
}

fn daemon_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name("guanxi-test-node");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build with `cargo build --release -p guanxi-tests --bins`",
            path.display()
        ))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let bin = match daemon_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "guanxi-bench: {} run(s) each, daemon {}",
        args.runs,
        bin.display()
    );
    let n = if args.messages > 0 {
        args.messages
    } else {
        100_000
    };
    if matches!(args.what.as_str(), "ingest" | "all") {
        let rates = repeat("ingest", args.runs, || ingest(&bin, n)).await;
        if !rates.is_empty() {
            println!(
                "ingest: median {:.0} msg/s ({n} messages, 8 streams on 8 connections, batches of 100)",
                median(rates)
            );
        }
    }
    if matches!(args.what.as_str(), "e2e" | "all") {
        let rates = repeat("e2e", args.runs, || end_to_end(&bin, n)).await;
        if !rates.is_empty() {
            println!(
                "end to end: median {:.0} msg/s (backlog of {n})",
                median(rates)
            );
        }
    }
    if matches!(args.what.as_str(), "latency" | "all") {
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for run in 1..=args.runs {
            match latency(&bin, 300).await {
                Ok((p50, p99)) => {
                    println!("  latency run {run}: p50 {p50:.2} ms, p99 {p99:.2} ms");
                    p50s.push(p50);
                    p99s.push(p99);
                }
                Err(e) => eprintln!("  latency run {run} failed: {e}"),
            }
        }
        if !p50s.is_empty() {
            println!(
                "latency: median p50 {:.2} ms, median p99 {:.2} ms (300 pings)",
                median(p50s),
                median(p99s)
            );
        }
    }
    if args.what == "handover" {
        let rates = repeat("handover", args.runs, || handover(&bin, n)).await;
        if !rates.is_empty() {
            println!(
                "handover: median {:.0} records/s handed to the partner's new node and receipted ({n} leads)",
                median(rates)
            );
        }
    }
    if args.what == "heal" {
        let rates = repeat("heal", args.runs, || heal(&bin, n)).await;
        if !rates.is_empty() {
            println!(
                "heal: median {:.0} envelopes/s recovered from the peer ({n} each way)",
                median(rates)
            );
        }
    }
    if args.what == "fetch" {
        let mib = if args.messages > 0 {
            args.messages
        } else {
            200
        };
        for run in 1..=args.runs {
            match fetch(&bin, mib).await {
                Ok(line) => println!("  fetch run {run}: {line}"),
                Err(e) => eprintln!("  fetch run {run} failed: {e}"),
            }
        }
    }
    if args.what == "scorecards" {
        println!("scorecards: {} partners", args.partners);
        if let Err(e) = scorecards(&bin, args.partners, args.runs).await {
            eprintln!("  scorecards failed: {e}");
        }
    }
    if args.what == "hub" {
        println!("hub: {} peers", args.partners);
        if let Err(e) = hub(&bin, args.partners).await {
            eprintln!("  hub failed: {e}");
        }
    }
    if args.what == "scale" {
        let total = if args.messages > 0 {
            args.messages
        } else {
            100_000
        };
        println!("scale: {total} leads, {} partners", args.partners);
        if let Err(e) = scale(&bin, total, args.partners, args.cache_mib).await {
            eprintln!("  scale failed: {e}");
        }
    }
    if matches!(args.what.as_str(), "leads" | "all") {
        let total = if args.messages > 0 {
            args.messages
        } else {
            20_000
        };
        let mut imports = Vec::new();
        let mut sweeps = Vec::new();
        for run in 1..=args.runs {
            match leads(&bin, total).await {
                Ok((import, sweep)) => {
                    println!(
                        "  leads run {run}: import+distribute {import:.0} leads/s, expire+re-offer {sweep:.0} leads/s"
                    );
                    imports.push(import);
                    sweeps.push(sweep);
                }
                Err(e) => eprintln!("  leads run {run} failed: {e}"),
            }
        }
        if !imports.is_empty() {
            println!(
                "leads: median import+distribute {:.0} leads/s, expire+re-offer {:.0} leads/s ({total} leads, 50 partners)",
                median(imports),
                median(sweeps)
            );
        }
    }
}

/// A vendor holding many leads: pages and API reads under 20 concurrent
/// users (p50/p95), the daemon's memory and the database's size. Leads go
/// in through the API's CSV import (the real path); 50 web partners, half
/// the leads offered by the rules, half held (no consent).
async fn scale(bin: &Path, total: u64, partners: usize, cache_mib: u32) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let node = NodeSetup::init(bin, dir.path(), "acme")?;
    if cache_mib > 0 {
        let config = std::fs::read_to_string(node.config_file()).map_err(|e| e.to_string())?;
        let changed = config
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("cache_mib") {
                    format!("cache_mib = {cache_mib}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        if !config.contains("cache_mib") {
            return Err("no cache_mib line in the generated config".into());
        }
        std::fs::write(node.config_file(), changed).map_err(|e| e.to_string())?;
        println!("  [node] cache_mib = {cache_mib}");
    }
    let daemon = node.start(bin)?;
    let admin_password = daemon
        .first_admin_password()
        .ok_or("no first admin password in the banner")?;
    let api = Api::of(&node, &daemon);
    let token = node.token(bin, "bench", "admin");
    let call = |method: &'static str, path: String, body: Option<String>| {
        let (api, token) = (&api, token.clone());
        async move { api_ok(api, &token, method, &path, body.as_deref()).await }
    };
    let start = Instant::now();
    vendor_with_partners(&api, &token, 48, partners).await?;
    println!(
        "  {partners} partners with a web user each in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let chunk = (total - done).min(5_000);
        let mut csv = String::from(
            "company,email,country,region,product_lines,estimated_value,currency,campaign,consent\n",
        );
        for i in done..done + chunk {
            let consent = if i % 2 == 0 { "yes" } else { "no" };
            csv.push_str(&format!(
                "Customer {i},buyer@c{i}.example,TW,Taipei,cnc;laser,1000.00,TWD,bench,{consent}\n"
            ));
        }
        call("post", "/api/v1/leads/import".into(), Some(csv)).await?;
        done += chunk;
    }
    println!(
        "  imported {total} leads in {:.1} s ({:.0} leads/s); daemon RSS {}",
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64(),
        rss_of(daemon.pid())
    );
    let start = Instant::now();
    let counts = other_families(bin, &node, &daemon, &token, total, partners).await?;
    println!(
        "  built {counts} in {:.1} s through the API; daemon RSS {}",
        start.elapsed().as_secs_f64(),
        rss_of(daemon.pid())
    );
    let some_lead = call("get", "/api/v1/leads?limit=1".into(), None).await?["leads"][0]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // A signed-in staff browser (the first admin chooses its password).
    let cookie = web_login(&daemon, &node, &admin_password).await?;
    let client = client_trusting(&guanxi_tests::cert_in(&node.data_dir()))?;
    let base = daemon.url();
    let targets: Vec<(&str, String, bool)> = vec![
        ("web /", format!("{base}/"), true),
        ("web /leads", format!("{base}/leads"), true),
        (
            "web /leads?stage=offered",
            format!("{base}/leads?stage=offered"),
            true,
        ),
        ("web /leads/<id>", format!("{base}/leads/{some_lead}"), true),
        (
            "web /leads/analysis",
            format!("{base}/leads/analysis?group=partner"),
            true,
        ),
        (
            "web /leads/analysis (by month, a year)",
            format!("{base}/leads/analysis?group=month&from=2026-01-01&to=2026-12-31"),
            true,
        ),
        ("web /orders", format!("{base}/orders"), true),
        ("web /service", format!("{base}/service"), true),
        ("web /claims", format!("{base}/claims"), true),
        ("web /mdf", format!("{base}/mdf"), true),
        ("web /registrations", format!("{base}/registrations"), true),
        ("web /partners", format!("{base}/partners"), true),
        (
            "GET /api/v1/leads",
            format!("{base}/api/v1/leads?limit=100"),
            false,
        ),
        (
            "GET /api/v1/leads?stage=unassigned",
            format!("{base}/api/v1/leads?stage=unassigned&limit=100"),
            false,
        ),
        (
            "GET /api/v1/leads/<id>",
            format!("{base}/api/v1/leads/{some_lead}"),
            false,
        ),
        (
            "GET /api/v1/orders",
            format!("{base}/api/v1/orders?limit=100"),
            false,
        ),
        (
            "GET /api/v1/service",
            format!("{base}/api/v1/service?limit=100"),
            false,
        ),
        (
            "GET /api/v1/claims",
            format!("{base}/api/v1/claims?limit=100"),
            false,
        ),
        (
            "GET /api/v1/mdf",
            format!("{base}/api/v1/mdf?limit=100"),
            false,
        ),
        (
            "GET /api/v1/orders/revenue",
            format!("{base}/api/v1/orders/revenue"),
            false,
        ),
    ];
    println!("  | request | p50 ms | p95 ms | requests |");
    println!("  |---|---|---|---|");
    for (name, url, web) in targets {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (client, url, cookie, token) =
                (client.clone(), url.clone(), cookie.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..10 {
                    let request = if web {
                        client.get(&url).header("cookie", &cookie)
                    } else {
                        client
                            .get(&url)
                            .header("authorization", format!("Bearer {token}"))
                    };
                    let t = Instant::now();
                    let r = request.send().await.map_err(|e| e.to_string())?;
                    let status = r.status();
                    let _ = r.bytes().await.map_err(|e| e.to_string())?;
                    if !status.is_success() {
                        return Err(format!("{url}: {status}"));
                    }
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, String>(times)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(|e| e.to_string())??);
        }
        all.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
        println!(
            "  | {name} | {:.1} | {:.1} | {} |",
            p(0.5),
            p(0.95),
            all.len()
        );
    }
    // The largest answer: every lead as CSV, streamed.
    let t = Instant::now();
    let long = guanxi_tests::client_trusting_for(
        &guanxi_tests::cert_in(&node.data_dir()),
        Duration::from_secs(3600),
    )?;
    let mut r = long
        .get(format!("{base}/api/v1/leads/export"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let (mut bytes, mut rows, mut peak) = (0usize, 0usize, String::new());
    let mut chunks = 0u64;
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        bytes += chunk.len();
        rows += chunk.iter().filter(|b| **b == b'\n').count();
        chunks += 1;
        if chunks.is_multiple_of(200) {
            peak = rss_of(daemon.pid());
        }
    }
    println!(
        "  export: {} rows, {:.1} MB in {:.1} s; daemon RSS while streaming {peak}",
        rows.saturating_sub(1),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let rss = rss_of(daemon.pid());
    let db = std::fs::metadata(node.data_dir().join("guanxi.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  daemon RSS {rss}; database file {:.1} MiB ({:.0} bytes per lead)",
        db as f64 / 1048576.0,
        db as f64 / total as f64
    );
    // Idle: no requests for 20 s (timers run as they would).
    let before = cpu_ticks(daemon.pid());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle = cpu_ticks(daemon.pid()).saturating_sub(before);
    // Clock ticks are 1/100 s on Linux: ticks / 20 s is the percent.
    println!(
        "  idle CPU: {:.2} % of a core over 20 s",
        idle as f64 / 20.0
    );
    let (_, stats) = node.admin("GET", "/admin/v1/store", None).await;
    let n = |k: &str| stats[k].as_u64().unwrap_or(0) as f64;
    println!(
        "  in use: {:.1} MiB in pages ({:.0} bytes per lead), of which {:.1} MiB keys and values, {:.1} MiB metadata; {:.1} MiB free in the file",
        n("allocated_bytes") / 1048576.0,
        n("allocated_bytes") / total as f64,
        n("stored_bytes") / 1048576.0,
        n("metadata_bytes") / 1048576.0,
        n("fragmented_bytes") / 1048576.0
    );
    let (_, metrics) = node.admin("GET", "/metrics", None).await;
    for line in metrics.as_str().unwrap_or("").lines() {
        if line.starts_with("guanxi_store_full_scans_total{") {
            println!("  {line}");
        }
    }
    daemon.terminate(Duration::from_secs(30))?;
    Ok(())
}

/// A process's resident memory, as Linux reports it (`VmRSS`).
/// CPU time (user + system) the process used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Resident memory of `pid` in KiB (0 when unreadable).
fn rss_kib(pid: u32) -> u64 {
    rss_of(pid)
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or(0)
}

fn rss_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_default()
}

/// Signs the first admin in through the login form (choosing its own
/// password, as the first sign-in asks) and answers the session cookie.
async fn web_login(
    daemon: &guanxi_tests::Daemon,
    node: &NodeSetup,
    password: &str,
) -> Result<String, String> {
    let pem = std::fs::read(guanxi_tests::cert_in(&node.data_dir())).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let base = daemon.url();
    let csrf_in = |body: &str| {
        body.rsplit("name=\"csrf\" value=\"")
            .next()
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
    };
    let page = client
        .get(format!("{base}/login"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let login_cookie = cookie_of(&page, "gx_login").unwrap_or_default();
    let csrf = csrf_in(&page.text().await.map_err(|e| e.to_string())?);
    let body = form(&[
        ("csrf", csrf.as_str()),
        ("username", "admin"),
        ("password", password),
    ]);
    let r = client
        .post(format!("{base}/login"))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let session = cookie_of(&r, "gx_session").ok_or("no session after login")?;
    let page = client
        .get(format!("{base}/account/password"))
        .header("cookie", &session)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let csrf = csrf_in(&page.text().await.map_err(|e| e.to_string())?);
    let chosen = format!("{password} kumquat ferry lantern");
    let body = form(&[
        ("csrf", csrf.as_str()),
        ("current", password),
        ("new", chosen.as_str()),
        ("confirm", chosen.as_str()),
    ]);
    let r = client
        .post(format!("{base}/account/password"))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 303 {
        return Err(format!("password change: {}", r.status()));
    }
    Ok(session)
}

/// A library file of `mib` MiB published by one daemon to another: the
/// upload's time, then MB/s from publication until the receiver holds
/// the whole file, and the peak RSS of both daemons meanwhile.
async fn fetch(bin: &Path, mib: u64) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (a, b) = pair(bin, dir.path())?;
    let da = a.start_for(bin, &[&b]).await?;
    let db = b.start_for(bin, &[&a]).await?;
    a.point_at(&b).await;
    let api = Api::of(&a, &da);
    let token = a.token(bin, "bench", "admin");
    let partner = json!({"id": "receiver", "name": "Receiver", "type": "distributor", "tier": "gold",
        "country": "TW", "region": "", "stage": "active", "peer": "receiver"});
    api_ok(
        &api,
        &token,
        "post",
        "/api/v1/partners",
        Some(&partner.to_string()),
    )
    .await?;
    let password = da.first_admin_password().ok_or("no admin password")?;
    let session = web_login(&da, &a, &password).await?;
    let pem = std::fs::read(guanxi_tests::cert_in(&a.data_dir())).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let base = da.url();
    let page = client
        .get(format!("{base}/library/new"))
        .header("cookie", &session)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let csrf = page
        .rsplit("name=\"csrf\" value=\"")
        .next()
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string();
    // The file: incompressible-looking bytes, known in advance.
    let size = (mib * 1024 * 1024) as usize;
    let mut bytes = Vec::with_capacity(size);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(size);
    let sha = Sha256Hash::of(&bytes).to_string();
    let boundary = "guanxibenchboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::with_capacity(size + 4096);
    for (k, v) in [
        ("csrf", csrf.as_str()),
        ("title", "Factory tour video"),
        ("format", "file"),
        ("everyone", "yes"),
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tour.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    drop(bytes);
    let (pa, pb) = (da.pid(), db.pid());
    let peak = std::sync::Arc::new(std::sync::Mutex::new((rss_kib(pa), rss_kib(pb))));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut p) = peak.lock() {
                    p.0 = p.0.max(rss_kib(pa));
                    p.1 = p.1.max(rss_kib(pb));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let upload = Instant::now();
    let r = client
        .post(format!("{base}/library/new"))
        .header("cookie", &session)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 303 {
        return Err(format!(
            "publish: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    let uploaded = upload.elapsed();
    let start = Instant::now();
    let target = b.data_dir().join("library").join(&sha);
    while !target.is_file() {
        if start.elapsed() > Duration::from_secs(600) {
            return Err("the file never arrived in 600 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;
    let (peak_a, peak_b) = *peak.lock().map_err(|e| e.to_string())?;
    let received = std::fs::read(&target).map_err(|e| e.to_string())?;
    if Sha256Hash::of(&received).to_string() != sha {
        return Err("the received file differs".into());
    }
    let _ = db.terminate(Duration::from_secs(30));
    let _ = da.terminate(Duration::from_secs(30));
    Ok(format!(
        "{mib} MiB: upload {:.1} s; publication to file complete at the receiver {:.1} s = {:.0} MB/s; peak RSS publisher {} MiB, receiver {} MiB",
        uploaded.as_secs_f64(),
        elapsed.as_secs_f64(),
        (mib * 1024 * 1024) as f64 / 1e6 / elapsed.as_secs_f64(),
        peak_a / 1024,
        peak_b / 1024
    ))
}

/// An `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k, v);
    }
    body.finish()
}

/// One API call that must succeed (2xx): its JSON, or what went wrong.
async fn api_ok(
    api: &Api,
    token: &str,
    method: &'static str,
    path: &str,
    body: Option<&str>,
) -> Result<serde_json::Value, String> {
    let (status, v) = api.call(method, path, Some(token), body).await;
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        Err(format!("{method} {path}: {status} {v}"))
    }
}

/// A hub: one node configured with `peers` peer daemons, simulated by a
/// load generator speaking the real protocol (`answering_peers`: each peer
/// checks the envelopes addressed to it and signs receipts with its own
/// key): the time from start to listening, memory and idle CPU with every
/// delivery worker running, then a catalog published to a partner behind
/// each peer: the time to queue it for all, and until every peer has it
/// and the hub holds every peer's verified receipt.
async fn hub(bin: &Path, peers: usize) -> Result<(), String> {
    use guanxi_tests::answering_peers::AnsweringPeers;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let node = NodeSetup::init(bin, dir.path(), "hub")?;
    let sender = node
        .public_key
        .parse()
        .map_err(|e| format!("hub key: {e}"))?;
    let answering = AnsweringPeers::start(dir.path(), peers, sender).await?;
    let text: String = (0..peers).map(|i| answering.peer_block(i)).collect();
    node.append_config(&text)?;
    let t = Instant::now();
    let daemon = node.start(bin)?;
    println!(
        "  start to listening with {peers} peers: {:.2} s; RSS {}",
        t.elapsed().as_secs_f64(),
        rss_of(daemon.pid())
    );
    let before = cpu_ticks(daemon.pid());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle = cpu_ticks(daemon.pid()).saturating_sub(before);
    println!(
        "  idle CPU: {:.2} % of a core over 20 s; RSS {}",
        idle as f64 / 20.0,
        rss_of(daemon.pid())
    );
    let api = Api::of(&node, &daemon);
    let token = node.token(bin, "bench", "admin");
    for i in 0..peers {
        let partner = json!({"id": format!("p{i:04}"), "name": format!("P{i}"), "type": "reseller", "tier": "gold",
            "country": "TW", "region": "", "stage": "active", "peer": format!("h{i:04}")});
        api_ok(
            &api,
            &token,
            "post",
            "/api/v1/partners",
            Some(&partner.to_string()),
        )
        .await?;
    }
    let catalog = json!({
        "products": [{"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true}],
        "price_lists": [{"id": "tw-gold", "tier": "gold", "currency": "TWD", "valid_from": "2020-01-01", "valid_to": null,
            "discount_bp": 500, "tax_rate_bp": 500, "prices": [{"sku": "CNC-5X", "unit_price": 100_000_000}]}]});
    let t = Instant::now();
    let v = api_ok(
        &api,
        &token,
        "put",
        "/api/v1/catalog",
        Some(&catalog.to_string()),
    )
    .await?;
    let queued = v["published"]
        .as_array()
        .map_or(0, |l| l.iter().filter(|p| p["refused"].is_null()).count());
    println!(
        "  catalog publication queued for {queued} peers in {:.2} s (one transaction); RSS {}",
        t.elapsed().as_secs_f64(),
        rss_of(daemon.pid())
    );
    let mut peak_rss = 0;
    let mut all_answered = None;
    let want = queued as u64;
    loop {
        peak_rss = peak_rss.max(rss_kib(daemon.pid()));
        if all_answered.is_none() && answering.accepted() >= want {
            all_answered = Some(t.elapsed());
        }
        let (_, v) = node.admin("GET", "/admin/v1/peers", None).await;
        let pending = v["peers"].as_array().map_or(usize::MAX, |ps| {
            ps.iter().filter(|p| p["backlog"] != 0).count()
        });
        if pending == 0 && all_answered.is_some() {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "after 10 minutes {pending} peers still wait; {} envelopes accepted, {} refused",
                answering.accepted(),
                answering.refused()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  every peer had it {:.2} s after the publication; every receipt verified and stored by {:.2} s; {} refused; peak RSS {} MiB, after {}",
        all_answered.map_or(0.0, |d| d.as_secs_f64()),
        t.elapsed().as_secs_f64(),
        answering.refused(),
        peak_rss / 1024,
        rss_of(daemon.pid())
    );
    let before = cpu_ticks(daemon.pid());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle = cpu_ticks(daemon.pid()).saturating_sub(before);
    println!(
        "  idle CPU after delivery: {:.2} % of a core over 20 s; RSS {}",
        idle as f64 / 20.0,
        rss_of(daemon.pid())
    );
    Ok(())
}

/// The rest of the scale dataset beside `leads` leads, built through the
/// API as partners and staff would: orders (a fifth of the leads), service
/// requests and warranty claims (a twentieth each), deal registrations (a
/// hundredth) from four web partners, and MDF budgets (one per 200 leads,
/// at most 5,000) across the 50 partners. Answers what was built.
async fn other_families(
    bin: &Path,
    node: &NodeSetup,
    daemon: &guanxi_tests::Daemon,
    token: &str,
    leads: u64,
    partners: usize,
) -> Result<String, String> {
    let catalog = json!({
        "products": [{"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true}],
        "price_lists": [{"id": "tw-gold", "tier": "gold", "currency": "TWD", "valid_from": "2020-01-01", "valid_to": null,
            "discount_bp": 500, "tax_rate_bp": 500, "prices": [{"sku": "CNC-5X", "unit_price": 100_000_000}]}]});
    let api = Api::of(node, daemon);
    api_ok(
        &api,
        token,
        "put",
        "/api/v1/catalog",
        Some(&catalog.to_string()),
    )
    .await?;
    let (orders, requests, claims, deals) = (leads / 5, leads / 20, leads / 20, leads / 100);
    let budgets = (leads / 200).min(5_000);
    let partner_tokens: Vec<String> = (0..4)
        .map(|i| node.token(bin, &format!("bench-u{i:02}"), &format!("u{i:02}")))
        .collect();
    let customer = json!({"company": "Contoso", "contact": "Lin", "email": "lin@contoso.example", "phone": ""});
    // Eight callers at once, each a share of every kind.
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let api = Api::of(node, daemon);
        let (staff, partner) = (token.to_string(), partner_tokens[(w % 4) as usize].clone());
        let customer = customer.clone();
        tasks.push(tokio::spawn(async move {
            let mine = |n: u64| (0..n).filter(move |i| i % 8 == w);
            for i in mine(orders) {
                let body = json!({"vendor": "acme", "reference": format!("PO-{i}"), "currency": "TWD",
                    "lines": [{"line": 1, "sku": "CNC-5X", "quantity": 1, "unit_price": null}], "requested_date": null,
                    "ship_to": {"name": "Contoso", "street": "1 Harbor Rd", "city": "Kaohsiung", "postal_code": "806", "region": "", "country": "TW"},
                    "lead": null});
                api_ok(&api, &partner, "post", "/api/v1/orders", Some(&body.to_string())).await?;
            }
            for i in mine(requests) {
                let body = json!({"vendor": "acme", "body": {"customer": customer, "sku": "CNC-5X", "serial": format!("SN-{i}"),
                    "problem": "spindle noise", "priority": "normal", "attachments": []}});
                api_ok(&api, &partner, "post", "/api/v1/service", Some(&body.to_string())).await?;
            }
            for i in mine(claims) {
                let body = json!({"vendor": "acme", "body": {"sku": "CNC-5X", "serial": format!("SN-{i}"), "purchase_date": "2026-01-15",
                    "description": "spindle failed", "customer": customer, "attachments": [], "forwarded": null}});
                api_ok(&api, &partner, "post", "/api/v1/claims", Some(&body.to_string())).await?;
            }
            for i in mine(deals) {
                let body = json!({"vendor": "acme", "deal": {"customer": {"company": format!("Deal {i}"), "contact": "", "email": format!("x@d{i}.example"), "phone": ""},
                    "country": "TW", "region": "", "product_lines": ["cnc"], "estimated_value": null,
                    "expected_close": null, "notes": ""}});
                api_ok(&api, &partner, "post", "/api/v1/deals", Some(&body.to_string())).await?;
            }
            for i in mine(budgets) {
                let body = json!({"partner": format!("p{:02}", i % partners as u64), "budget": format!("b{i}"), "body": {"action": "allocate",
                    "amount": 10_000_000, "currency": "TWD", "period": "2027-Q1", "allow_overdraw": false, "expires_on": null, "note": ""}});
                api_ok(&api, &staff, "post", "/api/v1/mdf", Some(&body.to_string())).await?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(format!(
        "{orders} orders, {requests} service requests, {claims} claims, {deals} deal registrations, {budgets} MDF budgets"
    ))
}

/// The benchmarks' vendor: 50 gold partners in Taiwan, each with a web
/// user, and one round-robin rule giving offers `offer_hours` to answer.
async fn vendor_with_partners(
    api: &Api,
    token: &str,
    offer_hours: u32,
    count: usize,
) -> Result<(), String> {
    for i in 0..count {
        let id = format!("p{i:02}");
        let partner = json!({"id": id, "name": id, "type": "reseller", "tier": "gold",
            "country": "TW", "region": "", "stage": "active", "peer": null});
        api_ok(
            api,
            token,
            "post",
            "/api/v1/partners",
            Some(&partner.to_string()),
        )
        .await?;
        let user = json!({"username": format!("u{i:02}")});
        api_ok(
            api,
            token,
            "post",
            &format!("/api/v1/partners/{id}/users"),
            Some(&user.to_string()),
        )
        .await?;
    }
    let rules = json!({"offer_hours": offer_hours, "rules": [{"name": "tw", "countries": ["TW"],
        "product_lines": [], "tiers": ["gold"], "capacity": 0, "strategy": "round_robin", "weights": {}}]});
    api_ok(
        api,
        token,
        "put",
        "/api/v1/lead-rules",
        Some(&rules.to_string()),
    )
    .await?;
    Ok(())
}

/// Imports `total` consenting Taiwanese leads, 5,000 per CSV request.
async fn import_leads(api: &Api, token: &str, total: u64) -> Result<(), String> {
    let mut done = 0;
    while done < total {
        let chunk = (total - done).min(5_000);
        let mut csv = String::from(
            "company,email,country,region,product_lines,estimated_value,currency,campaign,consent\n",
        );
        for i in done..done + chunk {
            csv.push_str(&format!(
                "Customer {i},buyer@c{i}.example,TW,Taipei,cnc;laser,1000.00,TWD,bench,yes\n"
            ));
        }
        api_ok(api, token, "post", "/api/v1/leads/import", Some(&csv)).await?;
        done += chunk;
    }
    Ok(())
}

/// Lead intake, distribution and the expiry sweep on one daemon.
async fn leads(bin: &Path, total: u64) -> Result<(f64, f64), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let node = NodeSetup::init(bin, dir.path(), "acme")?;
    let daemon = node.start(bin)?;
    let api = Api::of(&node, &daemon);
    let token = node.token(bin, "bench", "admin");
    let call = |method: &'static str, path: String, body: String| {
        let (api, token) = (&api, token.clone());
        async move { api_ok(api, &token, method, &path, Some(&body)).await }
    };
    vendor_with_partners(&api, &token, 1, 50).await?;
    let start = Instant::now();
    import_leads(&api, &token, total).await?;
    let import = total as f64 / start.elapsed().as_secs_f64();
    // What the idle sweeper costs with this many open offers: CPU seconds
    // the daemon used over 10 s of wall time with nothing to do.
    // (After 3 s, once the sweeper's scan of the new offers is done.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_seconds(daemon.pid())?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = (cpu_seconds(daemon.pid())? - before) / 10.0;
    println!(
        "    idle daemon with {total} open offers: {:.1} % of one core",
        idle * 100.0
    );
    node.set_clock_offset(2 * 3_600_000);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(600);
    loop {
        let v = call("get", "/api/v1/leads/analysis".into(), String::new()).await?;
        if v["total"]["expired"].as_u64() == Some(total) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("expiry did not finish: {}", v["total"]));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sweep = total as f64 / start.elapsed().as_secs_f64();
    daemon.terminate(Duration::from_secs(30))?;
    Ok((import, sweep))
}

/// User plus system CPU time of a process, in seconds (Linux /proc).
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or("bad stat")
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Runs a throughput benchmark `runs` times, printing each rate.
async fn repeat<F, Fut>(name: &str, runs: usize, mut run: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<f64, String>>,
{
    let mut rates = Vec::new();
    for i in 1..=runs {
        match run().await {
            Ok(rate) => {
                println!("  {name} run {i}: {rate:.0} msg/s");
                rates.push(rate);
            }
            Err(e) => eprintln!("  {name} run {i} failed: {e}"),
        }
    }
    rates
}

async fn ingest(bin: &Path, total: u64) -> Result<f64, String> {
    const STREAMS: u64 = 8;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let node = NodeSetup::init(bin, dir.path(), "bench-target")?;
    let keys: Vec<NodeKey> = (0..STREAMS)
        .map(|i| NodeKey::from_seed(&[0x40 + i as u8; 32]))
        .collect();
    // The 8 simulated peers all come from 127.0.0.1: let them in at once.
    let config = std::fs::read_to_string(node.config_file()).map_err(|e| e.to_string())?;
    std::fs::write(
        node.config_file(),
        config.replace(
            "max_unchecked_per_address = 4",
            "max_unchecked_per_address = 16",
        ),
    )
    .map_err(|e| e.to_string())?;
    for (i, key) in keys.iter().enumerate() {
        node.append_config(&format!(
            "\n[[peers]]\nid = \"load-{i}\"\nurl = \"https://127.0.0.1:0\"\n[[peers.keys]]\npublic_key = \"{}\"\n",
            key.public()
        ))?;
    }
    let daemon = node.start(bin)?;
    let client = client_trusting(&node.data_dir().join("tls/cert.pem"))?;
    let url = format!("{}/fed/v1/batch", daemon.url());

    // Pre-sign every stream's envelopes, grouped in batch bodies of 100.
    let per_stream = total / STREAMS;
    let created = guanxi::clock::now_ms();
    let mut bodies: Vec<Vec<Vec<u8>>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut prev: Option<Sha256Hash> = None;
        let mut stream = Vec::new();
        let mut body = Vec::new();
        for seq in 1..=per_stream {
            let signed = EnvelopeFields {
                v: PROTOCOL_VERSION,
                id: uuid::Uuid::now_v7().hyphenated().to_string(),
                from: format!("load-{i}").parse().map_err(|e| format!("{e}"))?,
                to: "bench-target".parse().map_err(|e| format!("{e}"))?,
                seq,
                prev,
                created,
                kind: "ping".into(),
                subject: format!("bench-{seq}").parse().map_err(|e| format!("{e}"))?,
                body: json!({"note": "bench"}),
                record_version: None,
            }
            .sign(key)
            .map_err(|e| e.to_string())?;
            prev = Some(signed.hash);
            body.push(if body.is_empty() { b'[' } else { b',' });
            body.extend_from_slice(&signed.bytes);
            if seq % 100 == 0 || seq == per_stream {
                body.push(b']');
                stream.push(std::mem::take(&mut body));
            }
        }
        bodies.push(stream);
    }

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for stream in bodies {
        let client = client.clone();
        let url = url.clone();
        tasks.spawn(async move {
            let mut accepted = 0u64;
            for body in stream {
                let r = client
                    .post(&url)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status() != 200 {
                    return Err(format!("HTTP {}", r.status()));
                }
                let text = r.text().await.map_err(|e| e.to_string())?;
                accepted += text.matches("\"status\":\"accepted\"").count() as u64;
            }
            Ok::<u64, String>(accepted)
        });
    }
    let mut accepted = 0;
    while let Some(r) = tasks.join_next().await {
        accepted += r.map_err(|e| e.to_string())??;
    }
    let elapsed = start.elapsed();
    let _ = daemon.terminate(Duration::from_secs(30));
    if accepted != per_stream * STREAMS {
        return Err(format!("{accepted} of {} accepted", per_stream * STREAMS));
    }
    Ok(accepted as f64 / elapsed.as_secs_f64())
}

fn pair(bin: &Path, dir: &Path) -> Result<(NodeSetup, NodeSetup), String> {
    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&b_dir).map_err(|e| e.to_string())?;
    let a = NodeSetup::init(bin, &a_dir, "sender")?;
    let b = NodeSetup::init(bin, &b_dir, "receiver")?;
    a.append_config(&b.peer_block(true))?;
    b.append_config(&a.peer_block(true))?;
    Ok((a, b))
}

async fn end_to_end(bin: &Path, total: u64) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (a, b) = pair(bin, dir.path())?;
    let da = a.start_for(bin, &[&b]).await?;
    // Queue the backlog while the receiver is down (32 concurrent admin callers).
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32u64 {
        let a = a.clone();
        tasks.spawn(async move {
            for i in (t..total).step_by(32) {
                let body = json!({"peer": "receiver", "kind": "ping", "subject": format!("m-{i}"), "body": {"note": ""}});
                let (status, v) = a.admin("POST", "/admin/v1/send", Some(body)).await;
                if status != 200 {
                    return Err(format!("send: {status} {v}"));
                }
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    let db = b.start_for(bin, &[&a]).await?;
    let start = Instant::now();
    let (status, v) = b
        .admin(
            "POST",
            "/admin/v1/send",
            Some(
                json!({"peer": "sender", "kind": "ping", "subject": "wake", "body": {"note": ""}}),
            ),
        )
        .await;
    if status != 200 {
        return Err(format!("wake-up ping: {v}"));
    }
    loop {
        let delivered = a.peer_status("receiver").await["last_delivered_seq"]
            .as_u64()
            .unwrap_or(0);
        if delivered >= total {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {delivered} delivered in 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    let _ = db.terminate(Duration::from_secs(30));
    let _ = da.terminate(Duration::from_secs(30));
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Sends `total` pings from `from` to `to` (32 concurrent admin callers).
async fn pings(from: &NodeSetup, to: &str, total: u64, tag: &str) -> Result<(), String> {
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32u64 {
        let from = from.clone();
        let (to, tag) = (to.to_string(), tag.to_string());
        tasks.spawn(async move {
            for i in (t..total).step_by(32) {
                let body = json!({"peer": to, "kind": "ping", "subject": format!("{tag}-{i}"), "body": {"note": ""}});
                let (status, v) = from.admin("POST", "/admin/v1/send", Some(body)).await;
                if status != 200 {
                    return Err(format!("send: {status} {v}"));
                }
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Waits until `node` has a receipt for everything it queued for `peer`.
async fn all_delivered(node: &NodeSetup, peer: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let s = node.peer_status(peer).await;
        if s["last_queued_seq"] == s["last_delivered_seq"] {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(900) {
            return Err(format!("{} did not deliver to {peer}: {s}", node.id));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn heal(bin: &Path, total: u64) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (a, b) = pair(bin, dir.path())?;
    let mut da = a.start_for(bin, &[&b]).await?;
    let db = b.start_for(bin, &[&a]).await?;
    pings(&a, "receiver", total, "a").await?;
    pings(&b, "sender", total, "b").await?;
    all_delivered(&a, "receiver").await?;
    all_delivered(&b, "sender").await?;

    let started = Instant::now();
    let (code, out, err) =
        guanxi_tests::run(bin, &a.dir, &["backup", "a.gxb", "--config", "guanxi.toml"]);
    if code != Some(0) {
        return Err(format!("backup: {out}{err}"));
    }
    let bytes = std::fs::metadata(a.dir.join("a.gxb"))
        .map_err(|e| e.to_string())?
        .len();
    println!(
        "  backup of {:.0} MB while running: {:.1} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / started.elapsed().as_secs_f64()
    );

    da.stop(Duration::from_secs(30))?;
    for f in ["guanxi.redb", "store-id"] {
        std::fs::remove_file(a.data_dir().join(f)).map_err(|e| e.to_string())?;
    }
    a.cli(bin, &["recover"]);
    let started = Instant::now();
    let da = a.start_for(bin, &[&b]).await?;
    loop {
        let (status, v) = a.admin("GET", "/admin/v1/peers", None).await;
        if status == 200 && v["healing"].is_null() {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(format!("not healed in 30 min: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let s = a.peer_status("receiver").await;
    let healed =
        s["last_queued_seq"].as_u64().unwrap_or(0) + s["last_received_seq"].as_u64().unwrap_or(0);
    if healed < 2 * total {
        return Err(format!("only {healed} envelopes back: {s}"));
    }
    let _ = db.terminate(Duration::from_secs(30));
    let _ = da.terminate(Duration::from_secs(30));
    Ok(healed as f64 / elapsed.as_secs_f64())
}

/// A web partner with `total` leads offered in the vendor's web view
/// installs its own node and connects with the vendor's invitation for its
/// directory entry: from `guanxi connect` until every lead was handed over
/// (SPEC §25) and the new node's receipt for each is back. Prints when the
/// vendor had queued them all.
async fn handover(bin: &Path, total: u64) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (v_dir, p_dir) = (dir.path().join("v"), dir.path().join("p"));
    std::fs::create_dir_all(&v_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&p_dir).map_err(|e| e.to_string())?;
    let vendor = NodeSetup::init(bin, &v_dir, "acme")?;
    let partner = NodeSetup::init(bin, &p_dir, "p00-node")?;
    let dv = vendor.start(bin)?;
    let dp = partner.start(bin)?;
    let api = Api::of(&vendor, &dv);
    let token = vendor.token(bin, "bench", "admin");
    vendor_with_partners(&api, &token, 24 * 90, 1).await?;
    import_leads(&api, &token, total).await?;
    let code = vendor.cli(bin, &["invite", "--partner", "p00"]);
    let started = Instant::now();
    let (status, out, err) = guanxi_tests::run(
        bin,
        &partner.dir,
        &["connect", code.trim(), "--config", "guanxi.toml"],
    );
    if status != Some(0) {
        return Err(format!("connect: {out}{err}"));
    }
    let mut queued_at = None;
    loop {
        let s = vendor.peer_status("p00-node").await;
        let queued = s["last_queued_seq"].as_u64().unwrap_or(0);
        if queued >= total && queued_at.is_none() {
            queued_at = Some(started.elapsed());
        }
        if queued >= total && s["last_delivered_seq"].as_u64().unwrap_or(0) >= queued {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(format!("not handed over in 30 min: {s}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    if let Some(q) = queued_at {
        println!(
            "    all {total} queued at the vendor after {:.1} s, receipted after {:.1} s",
            q.as_secs_f64(),
            elapsed.as_secs_f64()
        );
    }
    let _ = dp.terminate(Duration::from_secs(30));
    let _ = dv.terminate(Duration::from_secs(30));
    Ok(total as f64 / elapsed.as_secs_f64())
}

async fn latency(bin: &Path, pings: usize) -> Result<(f64, f64), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (a, b) = pair(bin, dir.path())?;
    let da = a.start_for(bin, &[&b]).await?;
    let db = b.start_for(bin, &[&a]).await?;
    let mut samples = Vec::with_capacity(pings);
    for i in 0..pings + 10 {
        let start = Instant::now();
        let (status, v) = a
            .admin("POST", "/admin/v1/ping", Some(json!({"peer": "receiver"})))
            .await;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if status != 200 {
            return Err(format!("ping {i}: {status} {v}"));
        }
        if i >= 10 {
            samples.push(ms); // the first ten warm up connections
        }
    }
    samples.sort_by(|x, y| x.total_cmp(y));
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let _ = db.terminate(Duration::from_secs(30));
    let _ = da.terminate(Duration::from_secs(30));
    Ok((pick(0.5), pick(0.99)))
}

/// Two years of a vendor's work with `partners` web partners, built month
/// by month through the API with the daemon's clock moved to each month:
/// leads imported and offered (4 per partner a month), every offer
/// accepted and one a month won, an order a month from each partner (the
/// catalog's price), a service request from every second partner and a
/// warranty claim from every fifth. Then the ranking of every partner for
/// the last twelve whole months against the twelve before (two scorecards
/// each), timed through `GET /api/v1/scorecards`, and one partner's
/// scorecard for a two-year period whose ends cut months (day cells).
async fn scorecards(bin: &Path, partners: usize, runs: usize) -> Result<(), String> {
    const MONTH: i64 = 30 * 86_400_000;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let node = NodeSetup::init(bin, dir.path(), "acme")?;
    // Day zero of the data: 24 months of 30 days before now.
    node.set_clock_offset(-24 * MONTH);
    let daemon = node.start(bin)?;
    let api = Api::of(&node, &daemon);
    let token = node.token(bin, "bench", "admin");
    let start = Instant::now();
    vendor_with_partners(&api, &token, 24 * 90, partners).await?;
    let catalog = json!({
        "products": [{"sku": "CNC-5X", "name_en": "5-axis CNC", "name_zh": "五軸加工機", "unit": "pcs", "warranty_months": 24, "active": true}],
        "price_lists": [{"id": "tw-gold", "tier": "gold", "currency": "TWD", "valid_from": "2020-01-01", "valid_to": null,
            "discount_bp": 500, "tax_rate_bp": 500, "prices": [{"sku": "CNC-5X", "unit_price": 100_000_000}]}]});
    api_ok(
        &api,
        &token,
        "put",
        "/api/v1/catalog",
        Some(&catalog.to_string()),
    )
    .await?;
    let tokens: Vec<String> = (0..partners)
        .map(|i| node.token(bin, &format!("bench-u{i:02}"), &format!("u{i:02}")))
        .collect();
    println!(
        "  {partners} partners, users and tokens in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let customer = json!({"company": "Contoso", "contact": "Lin", "email": "lin@contoso.example", "phone": ""});
    let start = Instant::now();
    for month in 0..24i64 {
        node.set_clock_offset((month - 24) * MONTH);
        let mut csv = String::from(
            "company,email,country,region,product_lines,estimated_value,currency,campaign,consent\n",
        );
        for i in 0..partners * 4 {
            csv.push_str(&format!(
                "Customer {month}-{i},buyer@c{month}x{i}.example,TW,Taipei,cnc,1000.00,TWD,bench,yes\n"
            ));
        }
        api_ok(&api, &token, "post", "/api/v1/leads/import", Some(&csv)).await?;
        let mut tasks = Vec::new();
        for w in 0..8usize {
            let api = Api::of(&node, &daemon);
            let tokens = tokens.clone();
            let customer = customer.clone();
            tasks.push(tokio::spawn(async move {
                for p in (0..partners).filter(|p| p % 8 == w) {
                    let t = &tokens[p];
                    let list = api_ok(&api, t, "get", "/api/v1/offers?limit=20", None).await?;
                    let open: Vec<String> = list["offers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|o| o["status"] == "offered")
                        .filter_map(|o| o["subject"].as_str().map(str::to_string))
                        .collect();
                    for (k, subject) in open.iter().enumerate() {
                        let path = format!("/api/v1/offers/acme/{subject}/messages");
                        let accept = r#"{"kind":"lead.accept","body":{"note":""}}"#;
                        api_ok(&api, t, "post", &path, Some(accept)).await?;
                        if k == 0 {
                            let won = json!({"kind": "lead.update", "body": {"status": "won", "won_value": {"amount": 100_000_000 + p as i64, "currency": "TWD"},
                                "won_on": "2026-01-01", "lost_reason": null, "note": ""}});
                            api_ok(&api, t, "post", &path, Some(&won.to_string())).await?;
                        }
                    }
                    let order = json!({"vendor": "acme", "reference": format!("PO-{month}-{p}"), "currency": "TWD",
                        "lines": [{"line": 1, "sku": "CNC-5X", "quantity": 1, "unit_price": null}], "requested_date": null,
                        "ship_to": {"name": "Contoso", "street": "1 Harbor Rd", "city": "Kaohsiung", "postal_code": "806", "region": "", "country": "TW"},
                        "lead": null});
                    api_ok(&api, t, "post", "/api/v1/orders", Some(&order.to_string())).await?;
                    if p % 2 == 0 {
                        let body = json!({"vendor": "acme", "body": {"customer": customer, "sku": "CNC-5X", "serial": format!("SN-{month}-{p}"),
                            "problem": "spindle noise", "priority": "normal", "attachments": []}});
                        api_ok(&api, t, "post", "/api/v1/service", Some(&body.to_string())).await?;
                    }
                    if p % 5 == 0 {
                        let body = json!({"vendor": "acme", "body": {"sku": "CNC-5X", "serial": format!("SN-{month}-{p}"), "purchase_date": "2024-01-15",
                            "description": "spindle failed", "customer": customer, "attachments": [], "forwarded": null}});
                        api_ok(&api, t, "post", "/api/v1/claims", Some(&body.to_string())).await?;
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
    }
    node.set_clock_offset(0);
    let p = partners as u64;
    println!(
        "  two years built in {:.0} s: {} leads offered and accepted, {} won, {} orders, {} service requests, {} claims",
        start.elapsed().as_secs_f64(),
        p * 4 * 24,
        p * 24,
        p * 24,
        p.div_ceil(2) * 24,
        p.div_ceil(5) * 24
    );
    let now = jiff::Timestamp::now();
    let month = |back: i64| -> Result<String, String> {
        let t = jiff::tz::Offset::UTC
            .to_datetime(now)
            .date()
            .first_of_month()
            .checked_sub(jiff::Span::new().months(back))
            .map_err(|e| e.to_string())?;
        Ok(t.to_string())
    };
    let day_before = |date: String| -> Result<String, String> {
        let d: jiff::civil::Date = date.parse().map_err(|e: jiff::Error| e.to_string())?;
        Ok(d.yesterday().map_err(|e| e.to_string())?.to_string())
    };
    // The last twelve whole months, and the twelve before.
    let period = format!("{}..{}", month(12)?, day_before(month(0)?)?);
    let compare = format!("{}..{}", month(24)?, day_before(month(12)?)?);
    let path =
        format!("/api/v1/scorecards?period={period}&compare={compare}&sort=won_value:TWD&limit=10");
    let mut times = Vec::new();
    for run in 1..=runs {
        let t = Instant::now();
        let v = api_ok(&api, &token, "get", &path, None).await?;
        let secs = t.elapsed().as_secs_f64();
        let first = &v["partners"][0];
        println!(
            "  ranking run {run}: {secs:.3} s for {} partners × 2 periods (first: {} with {} leads won, {} orders)",
            v["total"],
            first["partner"],
            first["scorecard"]["leads_won"],
            first["scorecard"]["orders"]
        );
        times.push(secs);
    }
    // One partner, two years cut mid-month: day cells at both ends.
    let cut = format!("{}..{}", day_before(month(23)?)?, month(0)?);
    let one = format!("/api/v1/scorecard?partner=p01&period={cut}");
    let mut singles = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        api_ok(&api, &token, "get", &one, None).await?;
        singles.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let size = std::fs::metadata(node.data_dir().join("guanxi.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "scorecards: ranking median {:.3} s ({partners} partners, {period} vs {compare}); one partner over {cut}: median {:.1} ms; database {:.0} MiB",
        median(times),
        median(singles),
        size as f64 / 1_048_576.0
    );
    daemon.terminate(Duration::from_secs(30))?;
    Ok(())
}
