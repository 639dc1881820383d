//! Guanxi's configuration: the TOML schema, loading and validation, and the
//! embedded defaults that let `guanxi serve` run with no file at all.
//!
//! Loading is all-or-nothing: the whole file is parsed and checked (unknown
//! keys, node and peer ids, addresses, URLs, keys, key validity windows, files
//! that must exist) before anything uses it, and every error names the file,
//! line and column and what was expected. Relative paths are resolved against
//! the directory of the config file (or the current directory for defaults).

#![forbid(unsafe_code)]

pub mod edit;
pub mod keyfile;
mod template;

pub use template::{commented_config, commented_config_at};

use guanxi_protocol::{KeyId, Millis, NodeId, PublicKey};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Default HTTPS listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default data directory, relative to the config file or the current directory.
/// The database's page cache when the config does not say (MiB): enough
/// for a small server; redb's own default (1 GiB) fills with a large
/// database and stays.
pub const DEFAULT_CACHE_MIB: u32 = 64;

pub const DEFAULT_DATA_DIR: &str = "guanxi-data";
/// Default node id when running on embedded defaults.
pub const DEFAULT_NODE_ID: &str = "guanxi-local";

/// A configuration error with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// How the daemon gets its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Generate a self-signed pair at these paths when they do not exist.
    pub self_signed: bool,
}

/// One public key of a peer, with its validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKey {
    pub kid: KeyId,
    pub public_key: PublicKey,
    pub not_before: Option<Millis>,
    pub not_after: Option<Millis>,
}

impl PeerKey {
    /// Whether the key may sign something created at `at`.
    pub fn valid_at(&self, at: Millis) -> bool {
        self.not_before.is_none_or(|nb| at >= nb) && self.not_after.is_none_or(|na| at <= na)
    }
}

/// A peer daemon: a company this node exchanges signed requests with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: NodeId,
    pub name: String,
    pub url: String,
    pub enabled: bool,
    pub keys: Vec<PeerKey>,
    /// SHA-256 of the peer's self-signed TLS certificate (DER), lowercase hex.
    pub tls_cert_sha256: Option<String>,
    /// A second certificate accepted from the peer (the one it presented
    /// before it announced a new one, SPEC §24), lowercase hex.
    pub tls_cert_sha256_also: Option<String>,
}

/// Web view settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub enabled: bool,
    pub session_idle_seconds: u32,
    pub session_absolute_seconds: u32,
    /// `en` or `zh-TW`.
    pub default_language: String,
    /// The time zone people see times in when neither they nor their
    /// organization chose one (an IANA name like `Asia/Taipei`); empty:
    /// Asia/Taipei for readers of Traditional Chinese, UTC for the rest.
    pub time_zone: String,
    /// Reverse proxies whose `X-Forwarded-For` names the real client (for
    /// login throttling); from anyone else the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// Federation (peer exchange) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationConfig {
    /// A peer failing to take deliveries for longer than this is flagged.
    pub alert_after_seconds: u32,
    /// Connect timeout for requests to peers.
    pub connect_timeout_seconds: u32,
    /// Whole-request timeout, for requests to peers and from them.
    pub request_timeout_seconds: u32,
    /// Requests from one peer processed at the same time; more wait.
    pub max_concurrent_per_peer: u32,
    /// Most envelopes sent to a peer in one batch request (1–100).
    pub max_batch: u32,
    /// How long any client (peer, browser, API) may take to send a
    /// request's headers before its connection is closed (slowloris).
    pub header_read_timeout_seconds: u32,
    /// Federation requests read and checked at once, before their sender is
    /// known (each may hold up to 16 MiB): more are answered 503.
    pub max_unchecked_requests: u32,
    /// The same, from one client address.
    pub max_unchecked_per_address: u32,
    /// HTTPS connections (peers, browsers, API clients) open at once; more
    /// are closed as soon as they are accepted. Lowered at start-up when the
    /// process's open-file limit would leave too few descriptors free.
    pub max_connections: u32,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            alert_after_seconds: 3600,
            connect_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_concurrent_per_peer: 4,
            max_batch: 100,
            header_read_timeout_seconds: 10,
            max_unchecked_requests: 16,
            max_unchecked_per_address: 4,
            max_connections: 4096,
        }
    }
}

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (usually port 587).
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
    /// No encryption: only to a relay on this machine (loopback).
    None,
}

/// The mail server notifications are sent through (`[smtp]`; off when the
/// section is absent or `enabled = false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// The user to authenticate as; empty: no authentication.
    pub user: String,
    /// A file holding the password (read at each connection, so it can be
    /// replaced without a restart); never in guanxi.toml itself.
    pub password_file: Option<PathBuf>,
    /// The sender address, e.g. `Guanxi <prm@acme.example>`.
    pub from: String,
    /// The hour of the recipient's day (in their time zone) daily digests
    /// are mailed at, 0–23.
    pub digest_hour: u8,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from; `None` for embedded defaults.
    pub source: Option<PathBuf>,
    pub node_id: NodeId,
    pub node_name: String,
    pub listen: SocketAddr,
    /// Plain-HTTP Prometheus endpoint (`/metrics`), off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    pub public_url: String,
    pub data_dir: PathBuf,
    /// The database's page cache, MiB (8 to 65536; default 64).
    pub cache_mib: u32,
    pub signing_key_file: PathBuf,
    pub tls: TlsConfig,
    pub web: WebConfig,
    pub federation: FederationConfig,
    pub peers: Vec<PeerConfig>,
    /// Where notifications are mailed through; `None`: no mail is sent.
    pub smtp: Option<SmtpConfig>,
}

impl Config {
    /// The embedded defaults, with paths relative to `base` (normally the
    /// current directory): node `guanxi-local` on https://127.0.0.1:8443,
    /// data in `guanxi-data/`, key and self-signed certificate generated there.
    pub fn defaults(base: &Path) -> Config {
        let data_dir = base.join(DEFAULT_DATA_DIR);
        let listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443)));
        Config {
            source: None,
            node_id: DEFAULT_NODE_ID
                .parse()
                .unwrap_or_else(|_| unreachable!("default node id is valid")),
            node_name: "Guanxi (local)".into(),
            listen,
            metrics_listen: None,
            public_url: format!("https://{listen}"),
            signing_key_file: data_dir.join("node.key"),
            tls: TlsConfig {
                cert_file: data_dir.join("tls").join("cert.pem"),
                key_file: data_dir.join("tls").join("key.pem"),
                self_signed: true,
            },
            data_dir,
            cache_mib: DEFAULT_CACHE_MIB,
            web: WebConfig::default(),
            federation: FederationConfig::default(),
            peers: Vec::new(),
            smtp: None,
        }
    }

    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            position: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, path, &base)
    }

    /// Validates config `text` that came from `file`, resolving relative
    /// paths against `base`.
    pub fn parse(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
        let ctx = Ctx { text, file };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ctx.err(e.span().map(|s| s.start), e.message().to_string()))?;
        ctx.validate(raw, base)
    }

    /// The peer with this id, if configured (enabled or not).
    pub fn peer(&self, id: &NodeId) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| &p.id == id)
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            session_idle_seconds: 1800,
            session_absolute_seconds: 43200,
            default_language: "en".into(),
            time_zone: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Spanned<RawNode>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    web: Option<RawWeb>,
    #[serde(default)]
    federation: Option<RawFederation>,
    #[serde(default)]
    peers: Vec<Spanned<RawPeer>>,
    #[serde(default)]
    smtp: Option<Spanned<RawSmtp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    enabled: Option<bool>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    security: Option<Spanned<String>>,
    #[serde(default)]
    user: String,
    password_file: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    digest_hour: Option<Spanned<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<String>,
    name: Option<String>,
    listen: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    data_dir: Option<String>,
    cache_mib: Option<Spanned<u32>>,
    signing_key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    #[serde(default = "yes")]
    self_signed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    enabled: Option<bool>,
    session_idle_seconds: Option<Spanned<u32>>,
    session_absolute_seconds: Option<Spanned<u32>>,
    default_language: Option<Spanned<String>>,
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    alert_after_seconds: Option<Spanned<u32>>,
    connect_timeout_seconds: Option<Spanned<u32>>,
    request_timeout_seconds: Option<Spanned<u32>>,
    max_concurrent_per_peer: Option<Spanned<u32>>,
    max_batch: Option<Spanned<u32>>,
    header_read_timeout_seconds: Option<Spanned<u32>>,
    max_unchecked_requests: Option<Spanned<u32>>,
    max_unchecked_per_address: Option<Spanned<u32>>,
    max_connections: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: Spanned<String>,
    name: Option<String>,
    url: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    tls_cert_sha256: Option<Spanned<String>>,
    tls_cert_sha256_also: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<RawPeerKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeerKey {
    kid: Option<Spanned<String>>,
    public_key: Spanned<String>,
    not_before: Option<Spanned<String>>,
    not_after: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, offset: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            position: offset.map(|o| guanxi_protocol::canonical::line_column(self.text, o)),
            message: message.into(),
        }
    }

    fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.err(Some(spanned.span().start), message)
    }

    fn path(&self, base: &Path, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_absolute() { p } else { base.join(p) }
    }

    fn https_url(&self, spanned: &Spanned<String>, what: &str) -> Result<String, ConfigError> {
        let url = spanned.get_ref().trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| self.at(spanned, format!("{what} must start with https://")))?;
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(self.at(spanned, format!("{what} {url:?} has no valid host")));
        }
        Ok(url.to_string())
    }

    fn timestamp(&self, spanned: &Option<Spanned<String>>) -> Result<Option<Millis>, ConfigError> {
        let Some(s) = spanned else { return Ok(None) };
        let ts: jiff::Timestamp = s.get_ref().parse().map_err(|e| {
            self.at(
                s,
                format!("expected an RFC 3339 UTC time like \"2026-01-01T00:00:00Z\": {e}"),
            )
        })?;
        Ok(Some(ts.as_millisecond()))
    }

    fn validate(&self, raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let node_span = raw.node.span().start;
        let node = raw.node.into_inner();
        let node_id: NodeId = node
            .id
            .get_ref()
            .parse()
            .map_err(|e| self.at(&node.id, format!("{e}")))?;
        let listen = match &node.listen {
            Some(l) => l.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.at(
                    l,
                    format!("listen must be an IP address and port like \"{DEFAULT_LISTEN}\""),
                )
            })?,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| self.err(None, "bad default listen address"))?,
        };
        let metrics_listen = match &node.metrics_listen {
            Some(l) => Some(l.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.at(
                    l,
                    "metrics_listen must be an IP address and port like \"127.0.0.1:9464\"",
                )
            })?),
            None => None,
        };
        let public_url = match &node.public_url {
            Some(u) => self.https_url(u, "public_url")?,
            None => format!("https://{listen}"),
        };
        let data_dir = self.path(base, node.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR));
        let cache_mib = match &node.cache_mib {
            Some(c) if !(8..=65536).contains(c.get_ref()) => {
                return Err(self.at(c, "cache_mib must be 8 to 65536 (MiB)"));
            }
            Some(c) => *c.get_ref(),
            None => DEFAULT_CACHE_MIB,
        };
        let signing_key_file = match &node.signing_key_file {
            Some(k) => self.path(base, k.get_ref()),
            None => data_dir.join("node.key"),
        };
        keyfile::read_node_key(&signing_key_file).map_err(|e| {
            let place = node
                .signing_key_file
                .as_ref()
                .map(|k| k.span().start)
                .unwrap_or(node_span);
            self.err(Some(place), format!("signing_key_file: {e}"))
        })?;

        let tls = match raw.tls {
            None => TlsConfig {
                cert_file: data_dir.join("tls").join("cert.pem"),
                key_file: data_dir.join("tls").join("key.pem"),
                self_signed: true,
            },
            Some(t) => {
                let resolve = |f: &Option<Spanned<String>>, default: &str| {
                    f.as_ref()
                        .map(|s| self.path(base, s.get_ref()))
                        .unwrap_or_else(|| data_dir.join("tls").join(default))
                };
                let tls = TlsConfig {
                    cert_file: resolve(&t.cert_file, "cert.pem"),
                    key_file: resolve(&t.key_file, "key.pem"),
                    self_signed: t.self_signed,
                };
                if !tls.self_signed {
                    for (spanned, path, what) in [
                        (&t.cert_file, &tls.cert_file, "certificate"),
                        (&t.key_file, &tls.key_file, "TLS key"),
                    ] {
                        if !path.is_file() {
                            let message = format!(
                                "{what} file {} does not exist (set self_signed = true to generate one)",
                                path.display()
                            );
                            return Err(match spanned {
                                Some(s) => self.at(s, message),
                                None => self.err(None, message),
                            });
                        }
                    }
                }
                tls
            }
        };

        let mut web = WebConfig::default();
        if let Some(w) = raw.web {
            if let Some(e) = w.enabled {
                web.enabled = e;
            }
            for (field, target) in [
                (&w.session_idle_seconds, &mut web.session_idle_seconds),
                (
                    &w.session_absolute_seconds,
                    &mut web.session_absolute_seconds,
                ),
            ] {
                if let Some(v) = field {
                    if *v.get_ref() == 0 {
                        return Err(self.at(v, "must be at least 1"));
                    }
                    *target = *v.get_ref();
                }
            }
            if let Some(lang) = &w.default_language {
                if !["en", "zh-TW"].contains(&lang.get_ref().as_str()) {
                    return Err(self.at(lang, "default_language must be \"en\" or \"zh-TW\""));
                }
                web.default_language = lang.get_ref().clone();
            }
            if let Some(zone) = &w.time_zone {
                if !zone.get_ref().is_empty() && jiff::tz::TimeZone::get(zone.get_ref()).is_err() {
                    return Err(self.at(
                        zone,
                        format!(
                            "time_zone: {:?} is not a time zone; write an IANA name like \"Asia/Taipei\" or \"UTC\"",
                            zone.get_ref()
                        ),
                    ));
                }
                web.time_zone = zone.get_ref().clone();
            }
            for proxy in &w.trusted_proxies {
                let ip = proxy.get_ref().parse().map_err(|_| {
                    self.at(
                        proxy,
                        format!(
                            "trusted_proxies: {:?} is not an IP address like \"127.0.0.1\"",
                            proxy.get_ref()
                        ),
                    )
                })?;
                web.trusted_proxies.push(ip);
            }
        }

        let mut federation = FederationConfig::default();
        if let Some(f) = raw.federation {
            for (field, target) in [
                (&f.alert_after_seconds, &mut federation.alert_after_seconds),
                (
                    &f.connect_timeout_seconds,
                    &mut federation.connect_timeout_seconds,
                ),
                (
                    &f.request_timeout_seconds,
                    &mut federation.request_timeout_seconds,
                ),
                (
                    &f.max_concurrent_per_peer,
                    &mut federation.max_concurrent_per_peer,
                ),
                (&f.max_batch, &mut federation.max_batch),
                (
                    &f.header_read_timeout_seconds,
                    &mut federation.header_read_timeout_seconds,
                ),
                (
                    &f.max_unchecked_requests,
                    &mut federation.max_unchecked_requests,
                ),
                (
                    &f.max_unchecked_per_address,
                    &mut federation.max_unchecked_per_address,
                ),
                (&f.max_connections, &mut federation.max_connections),
            ] {
                if let Some(v) = field {
                    if *v.get_ref() == 0 {
                        return Err(self.at(v, "must be at least 1"));
                    }
                    *target = *v.get_ref();
                }
            }
            if let Some(v) = &f.max_batch
                && *v.get_ref() > 100
            {
                return Err(self.at(
                    v,
                    "max_batch must be at most 100 (the protocol's batch limit)",
                ));
            }
        }

        let mut seen = BTreeSet::new();
        let mut peers = Vec::new();
        for spanned_peer in raw.peers {
            let peer_span = spanned_peer.span().start;
            let p = spanned_peer.into_inner();
            let id: NodeId =
                p.id.get_ref()
                    .parse()
                    .map_err(|e| self.at(&p.id, format!("{e}")))?;
            if id == node_id {
                return Err(self.at(&p.id, format!("peer id {id} is this node's own id")));
            }
            if !seen.insert(id.clone()) {
                return Err(self.at(&p.id, format!("duplicate peer id {id}")));
            }
            let url = self.https_url(&p.url, "peer url")?;
            let pin = |field: &Option<Spanned<String>>, name: &str| match field {
                None => Ok(None),
                Some(s) => {
                    let hex: String = s
                        .get_ref()
                        .chars()
                        .filter(|c| *c != ':')
                        .collect::<String>()
                        .to_lowercase();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(
                            self.at(s, format!("{name} must be 64 hex digits (colons allowed)"))
                        );
                    }
                    Ok(Some(hex))
                }
            };
            let tls_cert_sha256 = pin(&p.tls_cert_sha256, "tls_cert_sha256")?;
            let tls_cert_sha256_also = pin(&p.tls_cert_sha256_also, "tls_cert_sha256_also")?;
            if let (None, Some(also)) = (&tls_cert_sha256, &p.tls_cert_sha256_also) {
                return Err(self.at(
                    also,
                    "tls_cert_sha256_also needs tls_cert_sha256 (a second pin for a pinned peer)",
                ));
            }
            if p.keys.is_empty() {
                return Err(self.err(
                    Some(peer_span),
                    format!("peer {id} has no [[peers.keys]]: add its public key"),
                ));
            }
            let mut keys = Vec::new();
            for k in &p.keys {
                let k = k.get_ref();
                let public_key: PublicKey = k
                    .public_key
                    .get_ref()
                    .parse()
                    .map_err(|e| self.at(&k.public_key, format!("public_key: {e}")))?;
                let kid = public_key.kid();
                if let Some(given) = &k.kid
                    && given.get_ref() != &kid.0
                {
                    return Err(self.at(
                        given,
                        format!(
                            "kid {:?} does not match the public key (its kid is {kid})",
                            given.get_ref()
                        ),
                    ));
                }
                let not_before = self.timestamp(&k.not_before)?;
                let not_after = self.timestamp(&k.not_after)?;
                if let (Some(nb), Some(na), Some(span)) = (not_before, not_after, &k.not_after)
                    && na < nb
                {
                    return Err(self.at(span, "not_after is before not_before"));
                }
                if keys.iter().any(|existing: &PeerKey| existing.kid == kid) {
                    return Err(self.at(
                        &k.public_key,
                        format!("key {kid} is listed twice for peer {id}"),
                    ));
                }
                keys.push(PeerKey {
                    kid,
                    public_key,
                    not_before,
                    not_after,
                });
            }
            peers.push(PeerConfig {
                name: p.name.unwrap_or_else(|| id.to_string()),
                id,
                url,
                enabled: p.enabled,
                keys,
                tls_cert_sha256,
                tls_cert_sha256_also,
            });
        }

        let smtp = match raw.smtp {
            Some(s) => self.smtp(&s, base)?,
            None => None,
        };

        Ok(Config {
            source: Some(self.file.to_path_buf()),
            node_name: node.name.unwrap_or_else(|| node_id.to_string()),
            node_id,
            listen,
            metrics_listen,
            public_url,
            data_dir,
            cache_mib,
            signing_key_file,
            tls,
            web,
            federation,
            peers,
            smtp,
        })
    }

    /// The `[smtp]` section, checked: `None` when it is turned off.
    fn smtp(&self, s: &Spanned<RawSmtp>, base: &Path) -> Result<Option<SmtpConfig>, ConfigError> {
        let raw = s.get_ref();
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let host = match &raw.host {
            Some(h) if !h.get_ref().trim().is_empty() => h.get_ref().trim().to_string(),
            Some(h) => return Err(self.at(h, "host must name the mail server")),
            None => return Err(self.at(s, "[smtp] needs host, the mail server's name")),
        };
        let security = match &raw.security {
            None => SmtpSecurity::StartTls,
            Some(v) => match v.get_ref().as_str() {
                "starttls" => SmtpSecurity::StartTls,
                "tls" => SmtpSecurity::Tls,
                "none" => SmtpSecurity::None,
                _ => {
                    return Err(self.at(v, "security must be \"starttls\", \"tls\" or \"none\""));
                }
            },
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if security == SmtpSecurity::None && !loopback {
            let place = raw
                .security
                .as_ref()
                .map_or(s.span().start, |v| v.span().start);
            return Err(self.err(
                Some(place),
                "security = \"none\" sends mail and passwords in clear text; it is allowed only to a relay on this machine (localhost)",
            ));
        }
        let port = match &raw.port {
            Some(p) if *p.get_ref() == 0 => return Err(self.at(p, "port must be 1 to 65535")),
            Some(p) => *p.get_ref(),
            None => match security {
                SmtpSecurity::Tls => 465,
                SmtpSecurity::StartTls => 587,
                SmtpSecurity::None => 25,
            },
        };
        let from = match &raw.from {
            Some(f) if f.get_ref().contains('@') => f.get_ref().trim().to_string(),
            Some(f) => {
                return Err(self.at(
                    f,
                    "from must be an address like \"Guanxi <prm@acme.example>\"",
                ));
            }
            None => return Err(self.at(s, "[smtp] needs from, the sender address")),
        };
        let password_file = match &raw.password_file {
            Some(f) => {
                let path = self.path(base, f.get_ref());
                if !path.is_file() {
                    return Err(self.at(
                        f,
                        format!("password_file {} does not exist", path.display()),
                    ));
                }
                // A secret: readable by this daemon's user only, like the
                // signing key.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&path)
                        .map(|m| m.permissions().mode() & 0o777)
                        .unwrap_or(0);
                    if mode & 0o077 != 0 {
                        return Err(self.at(
                            f,
                            format!(
                                "password_file {} is readable by others (mode {mode:o}); run chmod 600 on it",
                                path.display()
                            ),
                        ));
                    }
                }
                Some(path)
            }
            None => None,
        };
        if raw.user.is_empty() != password_file.is_none() {
            return Err(self.at(
                s,
                "[smtp] user and password_file go together: give both or neither",
            ));
        }
        let digest_hour = match &raw.digest_hour {
            Some(h) if *h.get_ref() > 23 => return Err(self.at(h, "digest_hour must be 0 to 23")),
            Some(h) => *h.get_ref(),
            None => 8,
        };
        Ok(Some(SmtpConfig {
            host,
            port,
            security,
            user: raw.user.clone(),
            password_file,
            from,
            digest_hour,
        }))
    }
}
