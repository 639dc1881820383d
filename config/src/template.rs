//! The commented configuration file `guanxi init` writes: every setting with
//! its default and a sentence on what it does.

/// A complete, commented config for node `node_id` listening on `listen`,
/// reached by peers and browsers at `https://<listen>`.
pub fn commented_config(node_id: &str, node_name: &str, listen: &str) -> String {
    commented_config_at(node_id, node_name, listen, &format!("https://{listen}"))
}

/// [`commented_config`] for a node reached at `public_url` (behind a host
/// name, a container network or a proxy).
pub fn commented_config_at(
    node_id: &str,
    node_name: &str,
    listen: &str,
    public_url: &str,
) -> String {
    format!(
        r#"# Guanxi node configuration.
# Relative paths are resolved against the directory of this file.
# Check it with `guanxi config check guanxi.toml`; send SIGHUP to a running daemon to reload it.

[node]
# This node's id, as its peers know it: lowercase letters, digits, '-' and '.'.
id = "{node_id}"
# A display name for people.
name = "{node_name}"
# The address the HTTPS server binds.
listen = "{listen}"
# Prometheus metrics over plain HTTP at /metrics; keep it on loopback or a
# private network. Remove the line to turn it off.
# metrics_listen = "127.0.0.1:9464"
# The URL peers and browsers use to reach this node (https:// only).
public_url = "{public_url}"
# Where the database, attachments and generated TLS files live.
data_dir = "guanxi-data"
# The database's page cache in MiB (8-65536). More speeds up large
# databases at the cost of memory.
cache_mib = 64
# The Ed25519 signing key (mode 0600). Create another with `guanxi keygen FILE`.
signing_key_file = "guanxi-data/node.key"

[tls]
# Certificate chain and private key, PEM.
cert_file = "guanxi-data/tls/cert.pem"
key_file = "guanxi-data/tls/key.pem"
# Generate a self-signed pair at those paths if they do not exist.
# Set to false when you bring your own certificate (e.g. from your CA).
self_signed = true

[web]
# The web view for staff and for partners without a daemon.
enabled = true
# Sessions end after this long without a request, and this long after login.
session_idle_seconds = 1800
session_absolute_seconds = 43200
# "en" or "zh-TW"; users can switch.
default_language = "en"
# Times are shown in each user's own time zone (set on their account page),
# else their organization's, else this one (an IANA name like "Asia/Taipei").
# Empty: Asia/Taipei for readers of Chinese, UTC for the rest.
time_zone = ""
# Reverse proxies in front of this node (their X-Forwarded-For names the
# client for login throttling), e.g. ["127.0.0.1"]. Empty: not behind one.
trusted_proxies = []

[federation]
# Flag a peer (in `guanxi peers`, logs and metrics) when deliveries to it have
# failed for this long. Messages are kept and retried regardless.
alert_after_seconds = 3600
connect_timeout_seconds = 10
request_timeout_seconds = 30
# Requests from one peer handled at once; more wait their turn.
max_concurrent_per_peer = 4
# Most envelopes sent to a peer in one request when a backlog builds (1-100).
max_batch = 100
# Any client (peer, browser, API) that has not sent a request's headers after
# this long is disconnected (slow clients cannot hold connections open).
header_read_timeout_seconds = 10
# Federation requests read at once before their sender is known (each up to
# 16 MiB), in all and from one address; more are answered 503 (retry later).
max_unchecked_requests = 16
max_unchecked_per_address = 4
# HTTPS connections open at once (peers, browsers, API); more are closed on
# arrival. Lowered at start-up if the open-file limit (LimitNOFILE) would not
# leave 128 descriptors, plus two per peer, free for the node itself.
max_connections = 4096

# Notifications by e-mail (a lead offered, an order shipped, a claim waiting,
# ...) go through this mail server. Off while the section stays commented.
# Users give their address, and choose immediate mail or a daily digest, on
# their settings page; mail that cannot be sent is kept and retried, and
# failures show in the staff inbox.
#
# [smtp]
# host = "smtp.example.com"
# # "starttls" (port 587), "tls" (port 465) or "none" (only to localhost)
# security = "starttls"
# port = 587
# user = "prm@example.com"
# # The password, alone in a file readable only by this daemon (chmod 600).
# password_file = "smtp-password"
# from = "Guanxi <prm@example.com>"
# # The hour of each user's day (in their time zone) digests are sent at.
# digest_hour = 8

# One [[peers]] block per company whose Guanxi daemon this node talks to.
# Ask the peer's admin for its node id, URL, public key (see `guanxi init` or
# the peer's https://.../fed/v1/keys) and, for a self-signed certificate, its SHA-256.
#
# [[peers]]
# id = "globex"
# name = "Globex Trading"
# url = "https://globex.example.com:8443"
# enabled = true
# tls_cert_sha256 = "<64 hex digits, only for a self-signed certificate>"
#
#   [[peers.keys]]
#   public_key = "<32 bytes, unpadded base64url>"
#   # optional validity window, RFC 3339 UTC:
#   not_before = "2026-01-01T00:00:00Z"
#   # not_after = "2027-01-01T00:00:00Z"
"#
    )
}
