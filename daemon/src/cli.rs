//! The `guanxi` command line: parsing, and each command's work. This is the
//! binary's edge: errors become messages on standard error and exit codes.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error (clap),
//! 78 configuration error (EX_CONFIG).

use crate::identity;
use crate::logging::{self, LogFormat};
use crate::server::{self, AppState};
use crate::tls;
use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use guanxi_adapters::store::Store;
use guanxi_config::{Config, commented_config, keyfile};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code for a configuration error (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

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
        } => init(&dir, &node_id, name.as_deref(), listen),
        Command::Keygen { file } => keygen(&file),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Serve { config } => serve(config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn init(dir: &Path, node_id: &str, name: Option<&str>, listen: SocketAddr) -> Result<(), Failure> {
    let id: guanxi_protocol::NodeId = node_id.parse().map_err(config_failure)?;
    let config_file = dir.join("guanxi.toml");
    if config_file.exists() {
        return Err(config_failure(anyhow!(
            "{} already exists; not overwriting it",
            config_file.display()
        )));
    }
    let name = name.unwrap_or(node_id);
    let text = commented_config(id.as_str(), &name.replace('"', "'"), &listen.to_string());
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
        &certificate_names(listen, None),
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
    println!("  url = \"https://{listen}\"");
    println!("  tls_cert_sha256 = \"{fingerprint}\"");
    println!("  [[peers.keys]]");
    println!("  public_key = \"{}\"   # kid {}", key.public(), key.kid());
    Ok(())
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
fn certificate_names(listen: SocketAddr, public_url: Option<&str>) -> Vec<String> {
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

fn serve(config_file: Option<&Path>) -> Result<(), Failure> {
    // Validate everything before binding a port.
    let config = match config_file {
        Some(path) => Config::load(path).map_err(config_failure)?,
        None => {
            Config::defaults(&std::env::current_dir().context("reading the current directory")?)
        }
    };
    identity::create_data_dir(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let (key, created_key) =
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
    let tls_config =
        tls::server_config(&config.tls.cert_file, &config.tls.key_file).map_err(config_failure)?;
    let fingerprint = tls::fingerprint(&config.tls.cert_file).map_err(config_failure)?;
    let store = Store::open(&config.data_dir).context("opening the store")?;

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
    let key_document = identity::key_document(
        &config.node_id,
        &config.node_name,
        &public_url,
        &key,
        &fingerprint,
    )
    .context("building the key document")?;

    let state = Arc::new(AppState {
        node_id: config.node_id.to_string(),
        node_name: config.node_name.clone(),
        key_document,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        println!("Guanxi node {} ({})", config.node_id, config.node_name);
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
        let source = config
            .source
            .as_deref()
            .map_or("embedded defaults".into(), |p| p.display().to_string());
        println!("  config       {source}");
        println!("  web          {public_url}/");
        // Printed last, once signals are handled: scripts and tests wait for it.
        println!("  listening    https://{bound}");
        tracing::info!(node = %config.node_id, addr = %bound, "serving");
        server::run(
            listener,
            tls_config,
            server::router(state),
            shutdown,
            Duration::from_secs(10),
        )
        .await
        .context("HTTPS server")
    })?;
    // Teardown order: HTTP has stopped; now the database closes.
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// Registers SIGINT and SIGTERM handlers now (so a signal that arrives at
/// once is not lost to the default action) and returns a future that
/// completes on the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    })
}
