//! The `guanxi` command line: parsing, and each command's work. This is the
//! binary's edge: errors become messages on standard error and exit codes.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error (clap),
//! 78 configuration error (EX_CONFIG).

use crate::admin;
use crate::delivery::Workers;
use crate::engine::Engine;
use crate::identity;
use crate::logging::{self, LogFormat};
use crate::node::Node;
use crate::server;
use crate::tls;
use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use guanxi_adapters::store::Store;
use guanxi_config::{Config, keyfile};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration error (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Exit status when the store is damaged (EX_DATAERR): restore a backup.
pub const EXIT_DAMAGED: u8 = 65;

#[derive(Debug, Parser)]
#[command(
    name = "guanxi",
    version,
    about = "Guanxi: federated partner relationship management"
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented config, a node signing key (mode 0600) and a
    /// self-signed certificate into a directory.
    Init {
        /// Directory to set up.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// This node's id (lowercase letters, digits, '-' and '.').
        #[arg(long)]
        node_id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// HTTPS listen address.
        #[arg(long, default_value = guanxi_config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The URL peers and browsers use (default: https://LISTEN), e.g.
        /// https://acme.example:8443 or a container's host name.
        #[arg(long)]
        public_url: Option<String>,
    },
    /// Generate a new Ed25519 signing key file (mode 0600; never overwrites).
    Keygen {
        /// Where to write the key.
        file: PathBuf,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the daemon. Without --config, runs on embedded defaults in the
    /// current directory (./guanxi-data, https://127.0.0.1:8443).
    Serve {
        /// The config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on this address instead of the configured one (port 0:
        /// any free port; the banner's "listening" line names it).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Per peer: enabled, last delivered seq, backlog, last error, next retry.
    Peers {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Envelopes waiting for delivery; with PEER and --seq, one envelope
    /// with its receipt.
    Outbox {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Only this peer.
        peer: Option<String>,
        /// Show this seq in full (needs PEER).
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Envelopes rejected by peers, and envelopes this node rejected.
    Rejected {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Resume delivery to PEER after it halted on a broken stream (once the
    /// cause is fixed) or was paused; also retries a backed-off peer at once.
    Resume {
        #[command(flatten)]
        daemon: DaemonArgs,
        peer: String,
    },
    /// Re-read the config file of the running daemon and apply it (as
    /// SIGHUP does), answering whether it was taken.
    Reload {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Pause delivery to PEER (maintenance): messages stay queued until
    /// `guanxi resume PEER`; what PEER sends still arrives.
    Pause {
        #[command(flatten)]
        daemon: DaemonArgs,
        peer: String,
    },
    /// Web-view accounts: add, reset-password, disable, list.
    User {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API bearer tokens: create, revoke, list.
    Token {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Checks the store: every envelope and receipt against its signature,
    /// every stream's hash chain, every record (exit status 65 on damage).
    /// Asks the running daemon, or opens the store when none runs.
    Verify {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Only each stream's last envelope (as at every start).
        #[arg(long)]
        quick: bool,
    },
    /// Writes a backup of the node to FILE (never overwriting one): the
    /// database in one consistent snapshot and the attachment and library
    /// files, with a manifest and a checksum. Through the running daemon
    /// (which keeps working), or from the store when none runs. Keys and
    /// config are not in it: keep them apart.
    Backup {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Where to write the backup.
        file: PathBuf,
    },
    /// Restores the backup FILE as a new data directory (checked whole
    /// before anything is written; nothing is left on failure).
    Restore {
        /// The backup.
        file: PathBuf,
        /// The data directory to create (absent or empty).
        #[arg(long)]
        dir: PathBuf,
    },
    /// After losing the whole database (the key file kept): makes an empty
    /// store that heals from every enabled peer when `serve` starts (SPEC
    /// §22), rebuilding every record shared with a peer daemon. The
    /// daemon must be stopped, and data_dir must hold no database.
    Recover {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Rebuilds the secondary indexes from the records (the daemon must be
    /// stopped): after a restore, or if a check finds an index wrong.
    Reindex {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// MDF ledgers: `verify` recomputes every balance from the entries and
    /// reports any difference (exit status 1 when there is one).
    Ledger {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Certifications: `verify FILE` checks one offline with its issuer's
    /// public key (exit status 1 when it is not valid or no longer counts).
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Make a one-time invitation code for another company's node (give
    /// it to their admin, who runs `guanxi connect CODE`).
    Invite {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// The directory entry (partner id) it is for, if any: a partner
        /// that used the web view gets its records handed to its new node
        /// when the code is used.
        #[arg(long)]
        partner: Option<String>,
        /// How long it works: minutes, hours or days (`30m`, `12h`, `7d`;
        /// at most 30d).
        #[arg(long, default_value = "7d")]
        expires: String,
    },
    /// Hand every record kept with web partner PARTNER to the node it now
    /// runs (SPEC §25), then retire its web users; safe to run again.
    Handover {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// The partner's directory id.
        partner: String,
        /// The peer id of its node, when its directory entry names none.
        #[arg(long)]
        peer: Option<String>,
    },
    /// Three companies on this machine — a manufacturer, a distributor and
    /// a reseller, each a real daemon — connected, with leads, an order,
    /// a catalog and marketing funds in flight; prints their web addresses
    /// and sign-ins. Ctrl-C stops them; run it again to come back.
    Demo {
        /// Where the three companies keep their data.
        #[arg(long, default_value = "guanxi-demo")]
        dir: PathBuf,
    },
    /// This node's TLS certificate (SPEC §24).
    #[command(subcommand)]
    Tls(TlsCommand),
    /// This node's signing key (SPEC §23).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Connect to the node that made the invitation CODE: both nodes add
    /// each other as peers.
    Connect {
        #[command(flatten)]
        daemon: DaemonArgs,
        code: String,
    },
    /// Send a ping to PEER and print its verified receipt.
    Ping {
        #[command(flatten)]
        daemon: DaemonArgs,
        peer: String,
        /// How long to wait for the receipt, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Send a message of KIND about SUBJECT to PEER (BODY is the JSON body).
    Send {
        #[command(flatten)]
        daemon: DaemonArgs,
        peer: String,
        kind: String,
        subject: String,
        body: String,
        /// Makes a retry safe: a second `send` with the same key (within 24
        /// hours) prints the first one's answer instead of sending again.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account; prints its one-time password.
    Add {
        username: String,
        /// admin, staff or partner.
        #[arg(long, default_value = "staff")]
        role: String,
        /// The partner organization (partner users only).
        #[arg(long)]
        partner: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Set a new one-time password and print it.
    ResetPassword { username: String },
    /// Disable an account (it can no longer log in).
    Disable { username: String },
    /// List accounts.
    List,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Verify the certification document FILE.
    Verify {
        file: PathBuf,
        /// The issuer's public key (unpadded base64url).
        #[arg(
            long,
            conflicts_with = "key_document",
            required_unless_present = "key_document"
        )]
        key: Option<String>,
        /// The issuer's key document (as its /fed/v1/keys serves it).
        #[arg(long)]
        key_document: Option<PathBuf>,
        /// Judge it at this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every MDF balance from its entries and report differences.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token acting as USER; prints the secret once.
    Create {
        name: String,
        #[arg(long)]
        user: String,
    },
    /// Revoke every active token called NAME.
    Revoke { name: String },
    /// List tokens (never their secrets).
    List,
}

/// How the CLI finds a running daemon: through the admin socket in its data
/// directory, named by the config file (or the default ./guanxi-data).
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The running daemon's config file.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// A new self-signed certificate: its fingerprint is announced to every
    /// peer in its stream first, and the node presents it once every
    /// enabled peer has the announcement (pinned peers never break).
    Rotate {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// How long to wait for the peers' receipts: `30m`, `1h`...; if
        /// some are missing the new certificate waits, and running the
        /// command again finishes.
        #[arg(long, default_value = "1m")]
        wait: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// A new signing key, announced to every peer in its stream (signed by
    /// the old key, with the new key's proof); the old key stays valid for
    /// what is made until `--retire-in` later, and everything signed
    /// before keeps verifying.
    Rotate {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// How long peers still accept the old key: `30m`, `12h`, `7d`
        /// (at most 90d).
        #[arg(long, default_value = "7d", conflicts_with = "revoke")]
        retire_in: String,
        /// The old key leaked: peers refuse it for anything made after the
        /// announcement.
        #[arg(long)]
        revoke: bool,
    },
    /// The key leaked: a new key, and peers refuse the old one for
    /// anything made after the announcement (`rotate --revoke`).
    Revoke {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate a config file; print what it configures.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { code: 1, error }
    }
}

/// A store that cannot be opened; damage gets its own exit status.
fn store_failure(e: guanxi_adapters::store::StoreError) -> Failure {
    let code = match e {
        guanxi_adapters::store::StoreError::Damaged { .. } => EXIT_DAMAGED,
        _ => 1,
    };
    Failure {
        code,
        error: anyhow!(e).context("opening the store"),
    }
}

/// The store opened, but what it holds is damaged.
fn damaged_failure(store: &Store, report: &crate::verify::Report) -> Failure {
    Failure {
        code: EXIT_DAMAGED,
        error: anyhow!(
            "database {} is damaged: {}. Nothing was changed. Stop here and restore the data \
             directory from a backup; `guanxi verify` lists every problem",
            store.path().display(),
            report.summary()
        ),
    }
}

/// `guanxi reindex`: on the store itself, with the daemon stopped.
fn reindex_command(daemon: &DaemonArgs) -> Result<(), Failure> {
    let config = match &daemon.config {
        Some(file) => Config::load(file).map_err(config_failure)?,
        None => {
            Config::defaults(&std::env::current_dir().context("reading the current directory")?)
        }
    };
    let store = Store::open_with(&config.data_dir, config.cache_mib as usize * 1024 * 1024)
        .map_err(store_failure)?;
    for line in crate::migrate::reindex(&store).context("reindexing")? {
        println!("{line}");
    }
    Ok(())
}

/// `guanxi recover`: an empty store marked to heal from the peers.
fn recover_command(daemon: &DaemonArgs) -> Result<(), Failure> {
    let config = match &daemon.config {
        Some(file) => Config::load(file).map_err(config_failure)?,
        None => {
            Config::defaults(&std::env::current_dir().context("reading the current directory")?)
        }
    };
    let dir = &config.data_dir;
    for held in [
        guanxi_adapters::store::DB_FILE,
        guanxi_adapters::store::STORE_MARKER,
    ] {
        if dir.join(held).exists() {
            return Err(anyhow!(
                "{} holds a store ({held}); recover starts from nothing: move the data \
                 directory away first, or restore a backup (guanxi restore) and let it heal",
                dir.display()
            )
            .into());
        }
    }
    let store =
        Store::open_with(dir, config.cache_mib as usize * 1024 * 1024).map_err(store_failure)?;
    store.mark_healing().map_err(store_failure)?;
    println!(
        "an empty store in {} will heal from every enabled peer when the daemon starts \
         (guanxi serve): it gets back every envelope and receipt it exchanged with them and \
         rebuilds the records shared with them. Accounts, web partners' records and settings \
         are not held by any peer: create the accounts again, or restore a backup instead.",
        dir.display()
    );
    Ok(())
}

/// `guanxi backup FILE`: written to `FILE.part`, checked whole, then renamed.
fn backup_command(daemon: &DaemonArgs, file: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let config = match &daemon.config {
        Some(f) => Config::load(f).map_err(config_failure)?,
        None => {
            Config::defaults(&std::env::current_dir().context("reading the current directory")?)
        }
    };
    if file.exists() {
        return Err(anyhow!(
            "{} exists; a backup never overwrites a file (choose another name)",
            file.display()
        )
        .into());
    }
    let mut part = file.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&part)
        .with_context(|| format!("creating {}", part.display()))?;
    let written = (|| -> Result<(), Failure> {
        let socket = config.data_dir.join(admin::SOCKET_FILE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        if runtime.block_on(admin::reachable(&socket)) {
            runtime
                .block_on(admin::download(&socket, "/admin/v1/backup", &mut out))
                .map_err(|e| anyhow!(e))?;
        } else {
            let store = Store::open_with(&config.data_dir, config.cache_mib as usize * 1024 * 1024)
                .map_err(store_failure)?;
            crate::backup::write(&store, config.node_id.as_str(), &config.data_dir, &mut out)
                .map_err(|e| anyhow!(e))?;
        }
        out.sync_all().context("writing the backup")?;
        Ok(())
    })();
    let checked = written.and_then(|()| {
        guanxi_adapters::store::snapshot::check(&part)
            .map_err(|e| Failure::from(anyhow!("the backup written is not sound: {e}")))
    });
    let summary = match checked {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, file).with_context(|| format!("renaming to {}", file.display()))?;
    print_backup(&file.display().to_string(), &summary);
    Ok(())
}

/// A span like `30m`, `12h` or `7d`, in milliseconds.
fn parse_span(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit = match text.chars().last()? {
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    let n: i64 = text[..text.len() - 1].parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(unit)
}

/// A list of names in an admin answer, comma-separated.
fn names(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A UTC time (ms) in an admin answer, as RFC 3339.
fn utc(v: &serde_json::Value) -> String {
    v.as_i64()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `guanxi restore FILE --dir D`.
fn restore_command(file: &Path, dir: &Path) -> Result<(), Failure> {
    let summary = guanxi_adapters::store::snapshot::restore(file, dir).map_err(|e| anyhow!(e))?;
    print_backup(&dir.display().to_string(), &summary);
    println!(
        "restored. Point data_dir at it, with the node's own key and certificate. \
         The node is behind its peers by what it sent and received after the backup: when \
         the daemon starts it heals from them before it sends or accepts anything (SPEC §22)."
    );
    Ok(())
}

fn print_backup(place: &str, s: &guanxi_adapters::store::snapshot::Summary) {
    let taken = jiff::Timestamp::from_millisecond(s.manifest.taken_at_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    println!("{place}");
    println!("  node      {}", s.manifest.node);
    println!("  taken     {taken}");
    println!("  schema    {}", s.manifest.schema);
    println!("  rows      {}", s.tables.values().sum::<u64>());
    println!("  files     {}", s.files.values().sum::<u64>());
    println!("  bytes     {}", s.bytes);
    println!("  sha256    {}", s.sha256);
}

/// `guanxi verify`: through the running daemon, or on the store itself.
fn verify_command(daemon: &DaemonArgs, quick: bool) -> Result<(), Failure> {
    let config = match &daemon.config {
        Some(file) => Config::load(file).map_err(config_failure)?,
        None => {
            Config::defaults(&std::env::current_dir().context("reading the current directory")?)
        }
    };
    let depth = if quick {
        crate::verify::Depth::Quick
    } else {
        crate::verify::Depth::Full
    };
    let socket = config.data_dir.join(admin::SOCKET_FILE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let path = if quick {
        "/admin/v1/verify?quick=true"
    } else {
        "/admin/v1/verify"
    };
    let report: serde_json::Value = match runtime
        .block_on(admin::request(&socket, "GET", path, None))
    {
        Ok((200, v)) => v,
        Ok((status, v)) => return Err(anyhow!("the daemon answered {status}: {v}").into()),
        Err(_) => {
            // No daemon runs: open the store (which checks every page).
            let db = config.data_dir.join(guanxi_adapters::store::DB_FILE);
            let marker = config.data_dir.join(guanxi_adapters::store::STORE_MARKER);
            if !db.exists() && !marker.exists() {
                return Err(anyhow!(
                    "no database in {} (is this the node's data directory?)",
                    config.data_dir.display()
                )
                .into());
            }
            let (key, _) = identity::load_or_create_key(&config.signing_key_file, false)
                .map_err(config_failure)?;
            let store = Store::open_with(&config.data_dir, config.cache_mib as usize * 1024 * 1024)
                .map_err(store_failure)?;
            let me = crate::keys::identity(config.node_id.clone(), key, &config.signing_key_file)
                .map_err(|e| anyhow!(e))?;
            let read = store.read().map_err(store_failure)?;
            let report = crate::verify::check(&read, &me, &config.peers, depth);
            serde_json::to_value(&report).context("the report")?
        }
    };
    for note in report["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or_default());
    }
    let damage: Vec<&str> = report["damage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .collect();
    for d in &damage {
        println!("damaged: {d}");
    }
    println!(
        "{} envelope(s), {} receipt(s), {} record(s) checked: {}",
        report["envelopes"],
        report["receipts"],
        report["records"],
        if damage.is_empty() {
            "no damage".to_string()
        } else {
            format!(
                "{} problem(s); restore the data directory from a backup",
                damage.len()
            )
        }
    );
    if damage.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: EXIT_DAMAGED,
            error: anyhow!("the store is damaged"),
        })
    }
}

fn config_failure(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_CONFIG,
        error: error.into(),
    }
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    tls::install_crypto_provider();
    let result = match cli.command {
        Command::Init {
            dir,
            node_id,
            name,
            listen,
            public_url,
        } => init(
            &dir,
            &node_id,
            name.as_deref(),
            listen,
            public_url.as_deref(),
        ),
        Command::Keygen { file } => keygen(&file),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Serve { config, listen } => serve(config.as_deref(), listen),
        Command::Peers { daemon } => {
            admin_call(&daemon, "GET", "/admin/v1/peers", None, print_peers)
        }
        Command::Outbox { daemon, peer, seq } => match (peer, seq) {
            (Some(p), Some(n)) => admin_call(
                &daemon,
                "GET",
                &format!("/admin/v1/outbox/{p}/{n}"),
                None,
                print_json,
            ),
            (Some(p), None) => admin_call(
                &daemon,
                "GET",
                &format!("/admin/v1/outbox?peer={p}"),
                None,
                print_outbox,
            ),
            (None, None) => admin_call(&daemon, "GET", "/admin/v1/outbox", None, print_outbox),
            (None, Some(_)) => Err(config_failure(anyhow!("--seq needs a PEER"))),
        },
        Command::Resume { daemon, peer } => admin_call(
            &daemon,
            "POST",
            &format!("/admin/v1/peers/{peer}/resume"),
            None,
            print_json,
        ),
        Command::Reload { daemon } => {
            admin_call(&daemon, "POST", "/admin/v1/reload", None, print_json)
        }
        Command::Pause { daemon, peer } => admin_call(
            &daemon,
            "POST",
            &format!("/admin/v1/peers/{peer}/pause"),
            None,
            print_json,
        ),
        Command::User { daemon, command } => match command {
            UserCommand::Add {
                username,
                role,
                partner,
                name,
            } => {
                let body = serde_json::json!({"username": username, "role": role, "partner": partner, "display_name": name});
                admin_call(
                    &daemon,
                    "POST",
                    "/admin/v1/users",
                    Some(body),
                    print_password,
                )
            }
            UserCommand::ResetPassword { username } => admin_call(
                &daemon,
                "POST",
                &format!("/admin/v1/users/{username}/reset-password"),
                None,
                print_password,
            ),
            UserCommand::Disable { username } => admin_call(
                &daemon,
                "POST",
                &format!("/admin/v1/users/{username}/disable"),
                None,
                print_json,
            ),
            UserCommand::List => admin_call(&daemon, "GET", "/admin/v1/users", None, print_users),
        },
        Command::Token { daemon, command } => match command {
            TokenCommand::Create { name, user } => {
                let body = serde_json::json!({"name": name, "username": user});
                admin_call(&daemon, "POST", "/admin/v1/tokens", Some(body), print_token)
            }
            TokenCommand::Revoke { name } => admin_call(
                &daemon,
                "POST",
                &format!("/admin/v1/tokens/{name}/revoke"),
                None,
                print_json,
            ),
            TokenCommand::List => admin_call(&daemon, "GET", "/admin/v1/tokens", None, print_json),
        },
        Command::Verify { daemon, quick } => verify_command(&daemon, quick),
        Command::Cert {
            command:
                CertCommand::Verify {
                    file,
                    key,
                    key_document,
                    at,
                },
        } => cert_verify(&file, key, key_document.as_deref(), at.as_deref()),
        Command::Reindex { daemon } => reindex_command(&daemon),
        Command::Recover { daemon } => recover_command(&daemon),
        Command::Backup { daemon, file } => backup_command(&daemon, &file),
        Command::Demo { dir } => crate::demo::run(&dir).map_err(Failure::from),
        Command::Tls(TlsCommand::Rotate { daemon, wait }) => match parse_span(&wait) {
            None => Err(anyhow!("--wait {wait:?}: write minutes or hours, like 1m or 1h").into()),
            Some(ms) => admin_call(
                &daemon,
                "POST",
                "/admin/v1/tls/rotate",
                Some(serde_json::json!({"wait_ms": ms})),
                |v| {
                    if v["switched"] == true {
                        println!(
                            "presenting the new certificate {} (was {}); every peer was told first",
                            v["new"].as_str().unwrap_or("?"),
                            v["previous"].as_str().unwrap_or("?")
                        );
                    } else {
                        println!(
                            "announced {}; still waiting for: {}. Run `guanxi tls rotate` again to finish.",
                            v["new"].as_str().unwrap_or("?"),
                            names(&v["waiting_for"])
                        );
                    }
                },
            ),
        },
        Command::Handover {
            daemon,
            partner,
            peer,
        } => admin_call(
            &daemon,
            "POST",
            "/admin/v1/handover",
            Some(serde_json::json!({"partner": partner, "peer": peer})),
            |v| {
                println!(
                    "{} records handed to {}; {} web users retired",
                    v["handed"],
                    v["peer"].as_str().unwrap_or("?"),
                    v["users_retired"]
                );
                if let Some(kept) = v["kept"].as_array().filter(|k| !k.is_empty()) {
                    println!("kept under the web view:");
                    for k in kept {
                        println!(
                            "  {}: {}",
                            k[0].as_str().unwrap_or("?"),
                            k[1].as_str().unwrap_or("?")
                        );
                    }
                }
            },
        ),
        Command::Key(KeyCommand::Revoke { daemon }) => admin_call(
            &daemon,
            "POST",
            "/admin/v1/key/rotate",
            Some(serde_json::json!({"retire_after_ms": 0})),
            |v| {
                println!(
                    "signing with {} now; {} is revoked",
                    v["new_kid"].as_str().unwrap_or("?"),
                    v["old_kid"].as_str().unwrap_or("?")
                );
                println!("announced to: {}", names(&v["announced_to"]));
            },
        ),
        Command::Key(KeyCommand::Rotate {
            daemon,
            retire_in,
            revoke,
        }) => match (revoke, parse_span(&retire_in)) {
            (false, None) => Err(anyhow!(
                "--retire-in {retire_in:?}: write minutes, hours or days, like 30m, 12h or 7d"
            )
            .into()),
            (revoke, ms) => admin_call(
                &daemon,
                "POST",
                "/admin/v1/key/rotate",
                Some(
                    serde_json::json!({"retire_after_ms": if revoke { 0 } else { ms.unwrap_or(0) }}),
                ),
                |v| {
                    let retire = utc(&v["retire_at"]);
                    println!(
                        "signing with {} now; {} is accepted by peers until {retire}",
                        v["new_kid"].as_str().unwrap_or("?"),
                        v["old_kid"].as_str().unwrap_or("?")
                    );
                    println!("announced to: {}", names(&v["announced_to"]));
                },
            ),
        },
        Command::Invite {
            daemon,
            partner,
            expires,
        } => match parse_span(&expires) {
            None => Err(anyhow!(
                "--expires {expires:?}: write minutes, hours or days, like 30m, 12h or 7d"
            )
            .into()),
            Some(ms) => admin_call(
                &daemon,
                "POST",
                "/admin/v1/invitations",
                Some(serde_json::json!({"partner": partner, "expires_ms": ms})),
                |v| {
                    println!("{}", v["code"].as_str().unwrap_or("?"));
                    let expires = utc(&v["expires"]);
                    eprintln!(
                        "(one use, until {expires}: the other company's admin runs `guanxi connect CODE`)"
                    );
                },
            ),
        },
        Command::Connect { daemon, code } => {
            let body = serde_json::json!({"code": code});
            admin_call(&daemon, "POST", "/admin/v1/connect", Some(body), |v| {
                println!(
                    "connected to {} at {}: each node now has the other as a peer",
                    v["peer"].as_str().unwrap_or("?"),
                    v["url"].as_str().unwrap_or("?")
                );
            })
        }
        Command::Restore { file, dir } => restore_command(&file, &dir),
        Command::Ledger {
            daemon,
            command: LedgerCommand::Verify,
        } => admin_call(&daemon, "GET", "/admin/v1/ledger/verify", None, |v| {
            println!(
                "{} budget(s) checked: every balance matches its entries, and they sum to zero",
                v["budgets"]
            );
            println!(
                "lead analysis, revenue and service metrics checked: every kept count and sum equals a recomputation"
            );
        }),
        Command::Rejected { daemon } => {
            admin_call(&daemon, "GET", "/admin/v1/rejected", None, print_rejected)
        }
        Command::Ping {
            daemon,
            peer,
            timeout,
        } => {
            let body =
                serde_json::json!({"peer": peer, "timeout_ms": timeout.saturating_mul(1000)});
            admin_call(&daemon, "POST", "/admin/v1/ping", Some(body), print_json)
        }
        Command::Send {
            daemon,
            peer,
            kind,
            subject,
            body,
            idempotency_key,
        } => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(body) => {
                let request = serde_json::json!({"peer": peer, "kind": kind, "subject": subject, "body": body});
                admin_call_keyed(
                    &daemon,
                    "POST",
                    "/admin/v1/send",
                    Some(request),
                    idempotency_key.as_deref(),
                    print_json,
                )
            }
            Err(e) => Err(config_failure(anyhow!("BODY is not JSON: {e}"))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn init(
    dir: &Path,
    node_id: &str,
    name: Option<&str>,
    listen: SocketAddr,
    public_url: Option<&str>,
) -> Result<(), Failure> {
    let id: guanxi_protocol::NodeId = node_id.parse().map_err(config_failure)?;
    let config_file = dir.join("guanxi.toml");
    if config_file.exists() {
        return Err(config_failure(anyhow!(
            "{} already exists; not overwriting it",
            config_file.display()
        )));
    }
    let name = name.unwrap_or(node_id);
    let url = public_url
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://{listen}"));
    if !url.starts_with("https://") || url.contains('"') {
        return Err(config_failure(anyhow!(
            "--public-url {url:?}: write an https:// URL, like https://acme.example:8443"
        )));
    }
    let text = guanxi_config::commented_config_at(
        id.as_str(),
        &name.replace('"', "'"),
        &listen.to_string(),
        &url,
    );
    let data_dir = dir.join(guanxi_config::DEFAULT_DATA_DIR);
    identity::create_data_dir(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let key_file = data_dir.join("node.key");
    let key = identity::generate_key().map_err(|e| anyhow!("no randomness for a key: {e}"))?;
    keyfile::write_node_key(&key_file, &key).context("writing the signing key")?;
    let cert = data_dir.join("tls/cert.pem");
    tls::generate_self_signed(
        &cert,
        &data_dir.join("tls/key.pem"),
        &certificate_names(listen, Some(&url)),
    )
    .context("generating the TLS certificate")?;
    std::fs::write(&config_file, text)
        .with_context(|| format!("writing {}", config_file.display()))?;
    let fingerprint = tls::fingerprint(&cert).context("reading the new certificate")?;
    println!("Wrote {}", config_file.display());
    println!("Wrote {} (mode 0600)", key_file.display());
    println!("Wrote {} (self-signed)", cert.display());
    println!();
    println!("Give your peers' admins these lines for their [[peers]] block:");
    println!("  id = \"{id}\"");
    println!("  url = \"{url}\"");
    println!("  tls_cert_sha256 = \"{fingerprint}\"");
    println!("  [[peers.keys]]");
    println!("  public_key = \"{}\"   # kid {}", key.public(), key.kid());
    Ok(())
}

fn cert_verify(
    file: &Path,
    key: Option<String>,
    key_document: Option<&Path>,
    at: Option<&str>,
) -> Result<(), Failure> {
    use crate::certifications::{self, IssuerKey};
    use guanxi_protocol::certification::Standing;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let issuer = match (key, key_document) {
        (Some(k), _) => IssuerKey::Key(k),
        (None, Some(doc)) => IssuerKey::Document(
            std::fs::read(doc).with_context(|| format!("reading {}", doc.display()))?,
        ),
        (None, None) => return Err(config_failure(anyhow!("give --key or --key-document"))),
    };
    let at = match at {
        Some(text) => text
            .parse::<jiff::Timestamp>()
            .map_err(|e| config_failure(anyhow!("--at {text:?}: {e}")))?
            .as_millisecond(),
        None => crate::clock::now_ms(),
    };
    let v = certifications::verify(&bytes, &issuer, at)
        .map_err(|why| anyhow!("{}: not valid: {why}", file.display()))?;
    let f = &v.certification.fields;
    let when = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    println!("issuer        {}", f.issuer);
    println!("holder        {} ({})", f.holder, f.organization);
    println!(
        "course        {} ({}), level {}",
        f.title, f.course, f.level
    );
    println!("issued        {}", when(f.issued));
    println!(
        "expires       {}",
        f.expires.map_or_else(|| "never".to_string(), when)
    );
    match v.standing {
        Standing::Valid => {
            println!("valid: the signature verifies and it counts");
            Ok(())
        }
        Standing::Expired => {
            Err(anyhow!("{}: expired (the signature verifies)", file.display()).into())
        }
        Standing::NotYetIssued => {
            Err(anyhow!("{}: not issued yet at that time", file.display()).into())
        }
    }
}

fn keygen(file: &Path) -> Result<(), Failure> {
    let key = identity::generate_key().map_err(|e| anyhow!("no randomness for a key: {e}"))?;
    keyfile::write_node_key(file, &key).context("writing the signing key")?;
    println!("Wrote {} (mode 0600)", file.display());
    println!("public key  {}", key.public());
    println!("key id      {}", key.kid());
    Ok(())
}

fn config_check(file: &Path) -> Result<(), Failure> {
    let config = Config::load(file).map_err(config_failure)?;
    println!("{}: ok", file.display());
    println!("node        {} ({})", config.node_id, config.node_name);
    println!("listen      {}", config.listen);
    println!("public url  {}", config.public_url);
    println!("data dir    {}", config.data_dir.display());
    println!("peers       {}", config.peers.len());
    for p in &config.peers {
        let state = if p.enabled { "enabled" } else { "disabled" };
        println!("  {} {} {} ({} key(s))", p.id, p.url, state, p.keys.len());
    }
    Ok(())
}

/// DNS names and addresses a generated certificate covers.
pub(crate) fn certificate_names(listen: SocketAddr, public_url: Option<&str>) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ip = listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    if let Some(host) = public_url
        .and_then(|u| u.strip_prefix("https://"))
        .map(|rest| rest.split(['/', ':']).next().unwrap_or(""))
        .filter(|h| !h.is_empty() && !h.starts_with('['))
    {
        names.push(host.to_string());
    }
    names.sort();
    names.dedup();
    names
}

fn serve(config_file: Option<&Path>, listen: Option<std::net::SocketAddr>) -> Result<(), Failure> {
    // Validate everything before binding a port.
    let mut config = match config_file {
        Some(path) => Config::load(path).map_err(config_failure)?,
        None => {
            Config::defaults(&std::env::current_dir().context("reading the current directory")?)
        }
    };
    if let Some(addr) = listen {
        if config.public_url == format!("https://{}", config.listen) {
            config.public_url = format!("https://{addr}");
        }
        config.listen = addr;
    }
    identity::create_data_dir(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let (_, created_key) =
        identity::load_or_create_key(&config.signing_key_file, config.source.is_none())
            .map_err(config_failure)?;
    let mut generated_cert = false;
    if config.tls.self_signed && !(config.tls.cert_file.exists() && config.tls.key_file.exists()) {
        tls::generate_self_signed(
            &config.tls.cert_file,
            &config.tls.key_file,
            &certificate_names(config.listen, Some(&config.public_url)),
        )
        .map_err(config_failure)?;
        generated_cert = true;
    }
    let tls_config = axum_server::tls_rustls::RustlsConfig::from_config(
        tls::server_config(&config.tls.cert_file, &config.tls.key_file).map_err(config_failure)?,
    );
    let fingerprint = tls::fingerprint(&config.tls.cert_file).map_err(config_failure)?;
    let store = Store::open_with(&config.data_dir, config.cache_mib as usize * 1024 * 1024)
        .map_err(store_failure)?;
    for line in store.migrated() {
        tracing::warn!("store schema migration: {line}");
    }
    // A key rotation cut short by a stop is finished or dropped (SPEC §23).
    crate::keys::settle(&config.signing_key_file, &store)
        .map_err(|e| anyhow!("settling a key rotation: {e}"))?;
    let key =
        guanxi_config::keyfile::read_node_key(&config.signing_key_file).map_err(|e| anyhow!(e))?;
    // The quick check of what the store holds (each stream's head); the
    // full one runs on demand (`guanxi verify`) and daily.
    {
        let me = crate::keys::identity(
            config.node_id.clone(),
            key.clone(),
            &config.signing_key_file,
        )
        .map_err(|e| anyhow!(e))?;
        let read = store.read().map_err(store_failure)?;
        let report = crate::verify::check(&read, &me, &config.peers, crate::verify::Depth::Quick);
        if !report.is_clean() {
            return Err(damaged_failure(&store, &report));
        }
    }
    // A store from an older build is brought to this layout once.
    for line in crate::migrate::run(&store).context("migrating the store")? {
        tracing::info!("store migration: {line}");
    }

    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    // A configured port of 0 means "any free port": the URL names the real one.
    let public_url =
        if config.listen.port() == 0 && config.public_url == format!("https://{}", config.listen) {
            format!("https://{bound}")
        } else {
            config.public_url.clone()
        };
    // Links in mail name the real address too.
    config.public_url = public_url.clone();
    let key_document = identity::key_document(
        &config.node_id,
        &config.node_name,
        &public_url,
        &key,
        &fingerprint,
    )
    .context("building the key document")?;

    let data_dir = config.data_dir.clone();
    let source = config.source.clone();
    let node_id = config.node_id.clone();
    let store = Arc::new(store);
    let identity = Arc::new(
        crate::keys::identity(
            config.node_id.clone(),
            key.clone(),
            &config.signing_key_file,
        )
        .map_err(|e| anyhow!(e))?,
    );
    // A peer's new key is written into the config file; the reload that
    // applies it runs on the async runtime.
    let reload_asked = Arc::new(tokio::sync::Notify::new());
    let hooks = crate::engine::Hooks {
        repinned: {
            let file = config.source.clone();
            let reload = reload_asked.clone();
            Arc::new(move |from, pin| {
                crate::keys::peer_repinned(file.as_deref(), from, pin, &reload)
            })
        },
        rotated: {
            let file = config.source.clone();
            let reload = reload_asked.clone();
            Arc::new(move |from, signer, created, rotate| {
                crate::keys::peer_rotated(file.as_deref(), from, signer, created, rotate, &reload)
            })
        },
        rule: crate::rules::for_node(config.data_dir.clone()),
        applied: {
            let notify = crate::notify::hook(crate::notify::MailSettings::of(&config));
            std::sync::Arc::new(
                move |t: &mut guanxi_adapters::store::Tables<'_>,
                      a: &crate::engine::Applied<'_>| {
                    crate::library::on_applied(t, a)?;
                    crate::announcements::on_applied(t, a)?;
                    crate::courses::on_applied(t, a)?;
                    notify(t, a)
                },
            )
        },
    };
    let (engine, writer) = Engine::start(store.clone(), identity.clone(), hooks);
    let node = Arc::new(
        Node::new(identity, engine, store.clone(), key_document, config)
            .context("building peer clients")?,
    );
    let healing = store.healing().map_err(store_failure)?;
    node.healing.begin(healing);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = handle_signals(shutdown.clone()).context("installing signal handlers")?;
        let workers = Workers::new(node.clone(), shutdown.child_token());
        workers.sync();
        // Behind its peers after a restore or a recovery: heal first (SPEC §22).
        let heal_task = healing.then(|| {
            tracing::warn!("this store was restored or recovered: healing from the peers before anything is sent");
            tokio::spawn(crate::heal::run(node.clone(), shutdown.child_token()))
        });
        let socket = data_dir.join(admin::SOCKET_FILE);
        let admin_listener =
            admin::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
        let admin_task = tokio::spawn(
            axum::serve(admin_listener, admin::routes(node.clone()))
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );
        let mut metrics_bound = None;
        let metrics_task = match node.config().metrics_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding metrics_listen {addr}"))?;
                metrics_bound = listener.local_addr().ok();
                Some(tokio::spawn(
                    axum::serve(listener, admin::metrics_routes(node.clone()))
                        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                        .into_future(),
                ))
            }
            None => None,
        };
        // Timers that send wait until a restored node has healed (SPEC
        // §22: it sends nothing before).
        let healed = |task| once_healed(node.clone(), shutdown.child_token(), task);
        let sweeper_task = tokio::spawn(healed(Box::pin(crate::leads::run_sweeper(
            node.clone(),
            shutdown.child_token(),
        ))));
        let relay_task = tokio::spawn(healed(Box::pin(crate::service::run_relay(
            node.clone(),
            shutdown.child_token(),
        ))));
        let fetch_task = tokio::spawn(crate::library::files::run_fetcher(
            node.clone(),
            shutdown.child_token(),
        ));
        let grader_task = tokio::spawn(healed(Box::pin(crate::courses::run_grader(
            node.clone(),
            shutdown.child_token(),
        ))));
        let journey_task = tokio::spawn(healed(Box::pin(crate::journey::run(
            node.clone(),
            shutdown.child_token(),
        ))));
        let reconcile_task = tokio::spawn(healed(Box::pin(crate::mdf::run_reconciliation(
            node.clone(),
            Duration::from_secs(3600),
            shutdown.child_token(),
        ))));
        let expiry_task = tokio::spawn(healed(Box::pin(crate::mdf::run_expiry(
            node.clone(),
            shutdown.child_token(),
        ))));
        let mail_task = tokio::spawn(crate::mailer::run(node.clone(), shutdown.child_token()));
        let purge_task = tokio::spawn(crate::web::session::run_purge(
            node.clone(),
            shutdown.child_token(),
        ));
        let storage_task = tokio::spawn(crate::engine::watch_storage(
            node.engine.clone(),
            shutdown.child_token(),
        ));
        let verify_task = tokio::spawn(crate::verify::run_daily(
            node.clone(),
            shutdown.child_token(),
        ));
        {
            // Weak: the node must not keep itself (and the engine) alive.
            let weak = Arc::downgrade(&node);
            let workers = Arc::downgrade(&workers);
            let tls = tls_config.clone();
            let reloader: crate::node::Reloader =
                Box::new(move || match (weak.upgrade(), workers.upgrade()) {
                    (Some(node), Some(workers)) => {
                        reload(&node, &workers, source.as_deref(), &tls)
                    }
                    _ => Err("the node is stopping".into()),
                });
            let _ = node.reloader.set(reloader);
        }
        let reload_task = tokio::spawn(reload_on_hangup(signals, node.clone()));
        let rotation_task = tokio::spawn(reload_when_asked(reload_asked, node.clone()));
        let first_admin = match node.store.read() {
            Ok(read) => {
                crate::accounts::ensure_first_admin(&node.engine, &read, crate::clock::now_ms())
                    .await
                    .context("creating the first admin account")?
            }
            Err(e) => return Err(anyhow!("reading accounts: {e}")),
        };
        println!("Guanxi node {} ({})", node_id, node.config().node_name);
        if let Some(password) = first_admin {
            // Shown once, on the terminal only (never logged).
            println!("  first admin  user \"admin\", one-time password {password}");
        }
        println!("  public key   {}", key.public());
        let generated = |yes: bool, what: &'static str| if yes { what } else { "" };
        println!(
            "  key id       {}{}",
            key.kid(),
            generated(created_key, " (generated now)")
        );
        println!(
            "  TLS cert     sha256 {fingerprint}{}",
            generated(generated_cert, " (self-signed, generated now)")
        );
        println!("  data         {}", store.path().display());
        let source = node
            .config()
            .source
            .as_deref()
            .map_or("embedded defaults".into(), |p| p.display().to_string());
        println!("  config       {source}");
        println!("  admin        {}", socket.display());
        println!("  web          {public_url}/");
        if let Some(addr) = metrics_bound {
            println!("  metrics      http://{addr}/metrics");
        }
        let federation = &node.config().federation;
        let soft_limit = server::open_file_limit();
        let outgoing = node.config().peers.len() as u64 * u64::from(federation.max_concurrent_per_peer);
        let max_connections = server::connection_cap(federation.max_connections, soft_limit, outgoing);
        if max_connections < federation.max_connections as usize {
            tracing::warn!(
                configured = federation.max_connections,
                open_file_limit = soft_limit,
                used = max_connections,
                "max_connections lowered to leave descriptors for the node itself; raise LimitNOFILE to allow more"
            );
        }
        node.connections.set_cap(max_connections);
        // Printed last, once signals are handled: scripts and tests wait for it.
        println!("  listening    https://{bound}");
        tracing::info!(node = %node_id, addr = %bound, "serving");
        let served = server::run(
            listener,
            tls_config,
            server::router(node.clone()),
            shutdown.clone().cancelled_owned(),
            server::Limits {
                grace: Duration::from_secs(10),
                header_read_timeout: Duration::from_secs(u64::from(
                    node.config().federation.header_read_timeout_seconds,
                )),
                connections: node.connections.clone(),
            },
        )
        .await
        .context("HTTPS server");
        // Teardown: HTTP has stopped; then the workers and the admin socket.
        shutdown.cancel();
        workers.stop().await;
        let _ = sweeper_task.await;
        if let Some(task) = heal_task {
            let _ = task.await;
        }
        let _ = relay_task.await;
        let _ = fetch_task.await;
        let _ = grader_task.await;
        let _ = journey_task.await;
        let _ = reconcile_task.await;
        let _ = expiry_task.await;
        let _ = purge_task.await;
        let _ = mail_task.await;
        let _ = storage_task.await;
        let _ = verify_task.await;
        let _ = admin_task.await;
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
        reload_task.abort();
        rotation_task.abort();
        let _ = std::fs::remove_file(&socket);
        served
    })?;
    // Last, the engine drains its queue and the database closes.
    drop(node);
    if writer.join().is_err() {
        tracing::error!("the writer thread panicked");
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// Registers SIGINT, SIGTERM and SIGHUP handlers now (so a signal that
/// arrives at once is not lost to the default action). SIGINT and SIGTERM
/// cancel `shutdown`; the SIGHUP stream is returned for the reloader.
fn handle_signals(shutdown: CancellationToken) -> std::io::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        shutdown.cancel();
    });
    Ok(hangup)
}

/// Re-reads the config file and applies it: peers added, removed,
/// re-keyed; a bad file is refused and the old configuration stays.
fn reload(
    node: &Node,
    workers: &Workers,
    source: Option<&Path>,
    tls: &axum_server::tls_rustls::RustlsConfig,
) -> Result<String, String> {
    let Some(path) = source else {
        return Err("running on embedded defaults, there is no config file to reload".into());
    };
    let new = Config::load(path).map_err(|e| e.to_string())?;
    // The certificate files are read again too (a renewed certificate is
    // served from the next connection on); a pair that does not load is
    // refused with the whole file.
    let server = tls::server_config(&new.tls.cert_file, &new.tls.key_file)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    let fingerprint = tls::fingerprint(&new.tls.cert_file).map_err(|e| e.to_string())?;
    node.replace_config(new)?;
    let config = node.config();
    let document = identity::key_document(
        &config.node_id,
        &config.node_name,
        &config.public_url,
        &node.identity.key(),
        &fingerprint,
    )
    .map_err(|e| e.to_string())?;
    if *node.key_document() != document {
        tracing::info!(tls_cert_sha256 = %fingerprint, "the key document changed (certificate or name)");
        node.set_key_document(document);
    }
    tls.reload_from_config(server);
    workers.sync();
    // A new configuration is a new chance: workers backing off try again.
    for peer in config.peers.iter().filter(|p| p.enabled) {
        node.heard_from(&peer.id);
    }
    let enabled = config.peers.iter().filter(|p| p.enabled).count();
    Ok(format!(
        "configuration reloaded from {}: {} peer(s), {enabled} enabled",
        path.display(),
        config.peers.len()
    ))
}

/// Reloads the configuration when the engine recorded a peer's new key
/// (SPEC §23).
async fn reload_when_asked(asked: Arc<tokio::sync::Notify>, node: Arc<Node>) {
    loop {
        asked.notified().await;
        match node.reloader.get().map(|r| r()) {
            Some(Ok(what)) => tracing::info!("a peer's new key: {what}"),
            Some(Err(e)) => tracing::error!("a peer's new key was recorded but not applied: {e}"),
            None => tracing::warn!("a peer's new key is applied at the next reload"),
        }
    }
}

/// A timer's task, started once the node has healed after a restore (at
/// once when it is not healing), or never when the daemon stops first.
async fn once_healed(
    node: Arc<Node>,
    cancel: tokio_util::sync::CancellationToken,
    task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) {
    tokio::select! {
        _ = node.healing.wait() => task.await,
        _ = cancel.cancelled() => {}
    }
}

/// On SIGHUP, reloads the configuration (see [`Node::reloader`]).
async fn reload_on_hangup(mut hangup: tokio::signal::unix::Signal, node: Arc<Node>) {
    while hangup.recv().await.is_some() {
        match node.reloader.get().map(|r| r()) {
            Some(Ok(what)) => tracing::info!("SIGHUP: {what}"),
            Some(Err(e)) => tracing::error!("SIGHUP: {e}; keeping the configuration in force"),
            None => tracing::warn!("SIGHUP: not ready to reload yet"),
        }
    }
}

/// Runs one admin request against the daemon named by `daemon` and prints the answer.
fn admin_call(
    daemon: &DaemonArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    print: fn(&serde_json::Value),
) -> Result<(), Failure> {
    admin_call_keyed(daemon, method, path, body, None, print)
}

/// [`admin_call`] with an optional `Idempotency-Key`.
fn admin_call_keyed(
    daemon: &DaemonArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    idempotency_key: Option<&str>,
    print: fn(&serde_json::Value),
) -> Result<(), Failure> {
    let data_dir = match &daemon.config {
        Some(file) => Config::load(file).map_err(config_failure)?.data_dir,
        None => std::env::current_dir()
            .context("reading the current directory")?
            .join(guanxi_config::DEFAULT_DATA_DIR),
    };
    let socket = data_dir.join(admin::SOCKET_FILE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (status, value) = runtime
        .block_on(admin::request_keyed(
            &socket,
            method,
            path,
            body,
            idempotency_key,
        ))
        .map_err(|e| anyhow!(e))?;
    if status >= 400 {
        return Err(anyhow!(
            "{} ({})",
            value["message"].as_str().unwrap_or("request failed"),
            value["code"].as_str().unwrap_or("error")
        )
        .into());
    }
    print(&value);
    Ok(())
}

fn print_password(value: &serde_json::Value) {
    println!("user      {}", value["username"].as_str().unwrap_or("?"));
    println!("password  {}", value["password"].as_str().unwrap_or("?"));
    println!("(shown once: give it to the user, who should change it after logging in)");
}

fn print_token(value: &serde_json::Value) {
    println!("token     {}", value["token"].as_str().unwrap_or("?"));
    println!("(shown once: use it as `Authorization: Bearer <token>` on /api/v1)");
}

fn print_users(value: &serde_json::Value) {
    println!(
        "{:<24} {:<8} {:<20} {:<9} NAME",
        "USERNAME", "ROLE", "PARTNER", "STATE"
    );
    for u in value["users"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<8} {:<20} {:<9} {}",
            u["username"].as_str().unwrap_or("?"),
            u["role"].as_str().unwrap_or("?"),
            u["partner"].as_str().unwrap_or("-"),
            if u["disabled"].as_bool() == Some(true) {
                "disabled"
            } else {
                "active"
            },
            u["display_name"].as_str().unwrap_or("")
        );
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_peers(value: &serde_json::Value) {
    println!(
        "{:<20} {:<8} {:>9} {:>8} {:>9} {:<20} {:<10} LAST ERROR",
        "PEER", "ENABLED", "DELIVERED", "BACKLOG", "RECEIVED", "NEXT RETRY", "STATE"
    );
    for p in value["peers"].as_array().into_iter().flatten() {
        let state = if p["halted"].is_string() {
            "HALTED"
        } else if p["paused"].as_bool() == Some(true) {
            "paused"
        } else if p["failing_too_long"].as_bool() == Some(true) {
            "FAILING"
        } else if p["failing_since"].is_i64() {
            "retrying"
        } else {
            "ok"
        };
        println!(
            "{:<20} {:<8} {:>9} {:>8} {:>9} {:<20} {:<10} {}",
            p["id"].as_str().unwrap_or("?"),
            if p["enabled"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            p["last_delivered_seq"],
            p["backlog"],
            p["last_received_seq"],
            when(p["next_retry_at"].as_i64()),
            state,
            p["halted"]
                .as_str()
                .or(p["last_error"].as_str())
                .unwrap_or("")
        );
    }
}

fn print_outbox(value: &serde_json::Value) {
    let pending = value["pending"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<20} {:>8} {:<20} {:<40} CREATED",
        "TO", "SEQ", "KIND", "SUBJECT"
    );
    for e in &pending {
        println!(
            "{:<20} {:>8} {:<20} {:<40} {}",
            e["to"].as_str().unwrap_or("?"),
            e["seq"],
            e["kind"].as_str().unwrap_or("?"),
            e["subject"].as_str().unwrap_or("?"),
            when(e["created"].as_i64())
        );
    }
    println!("{} envelope(s) waiting", pending.len());
}

fn print_rejected(value: &serde_json::Value) {
    for (title, key, party) in [
        ("Rejected by peers", "outgoing", "to"),
        ("Rejected by this node", "incoming", "from"),
    ] {
        let list = value[key].as_array().cloned().unwrap_or_default();
        println!("{title}: {}", list.len());
        for e in &list {
            println!(
                "  {} seq {} {} {}: {} — {}",
                e[party].as_str().unwrap_or("?"),
                e["seq"],
                e["kind"].as_str().unwrap_or("?"),
                e["subject"].as_str().unwrap_or("?"),
                e["reason"]["code"].as_str().unwrap_or("?"),
                e["reason"]["message"].as_str().unwrap_or("")
            );
        }
    }
}
