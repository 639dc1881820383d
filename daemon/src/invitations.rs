//! Invitations (SPEC §21): `guanxi invite` makes a one-time code for
//! another company's admin; `guanxi connect CODE` on their node introduces
//! it to this one over HTTPS pinned to the code's certificate; each node
//! proves possession of its key with a signed introduction, and each adds
//! the other to its config file as a peer (comments and layout kept) and
//! reloads it as SIGHUP does.
//!
//! The inviting node keeps only the SHA-256 of each secret, in the
//! settings table under `invite␟<hash>`, with its expiry, the partner it
//! was made for and, once used, by whom and when. A code works once: the
//! use is recorded in one transaction before the config is written (two
//! nodes racing with one code cannot both get in), and undone if writing
//! the config fails.

use crate::clock::now_ms;
use crate::engine::EngineError;
use crate::node::Node;
use guanxi_adapters::peer_client::{PeerClient, Trust};
use guanxi_adapters::store::Doc;
use guanxi_config::edit::NewPeer;
use guanxi_protocol::crypto::{Sha256Hash, b64url};
use guanxi_protocol::envelope::Millis;
use guanxi_protocol::invitation::{
    CodeError, IntroductionFields, Invitation, SECRET_BYTES, SignedIntroduction,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

const SEP: char = '\u{241f}';

/// The longest an invitation may stay open.
pub const MAX_VALID_MS: Millis = 30 * 86_400_000;

/// What the inviting node keeps of one invitation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    created: Millis,
    expires: Millis,
    #[serde(default)]
    partner: Option<String>,
    #[serde(default)]
    used_by: Option<String>,
    #[serde(default)]
    used_at: Option<Millis>,
}

/// Why an invitation could not be made, used or answered.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error(
        "this node runs on embedded defaults without a config file; invitations add peers to \
         the config file, so start it with one (`guanxi init`)"
    )]
    NoConfigFile,
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error("the invitation expired at {0}; ask for a new one")]
    Expired(String),
    #[error("the invitation was already used; ask for a new one")]
    Used,
    #[error("no such invitation here (it was never made by this node, or was changed)")]
    Unknown,
    #[error("the introduction is not valid: {0}")]
    BadIntroduction(String),
    #[error("{0} is already a peer of this node")]
    AlreadyPeer(String),
    #[error("a node cannot connect to itself")]
    Itself,
    #[error("the inviting node refused: {0}")]
    Refused(String),
    #[error("cannot reach the inviting node: {0}")]
    Unreachable(String),
    #[error("the config file could not be changed: {0}")]
    Config(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Internal(String),
}

impl InviteError {
    /// The HTTP status of this refusal on `/fed/v1/introduce`.
    pub fn status(&self) -> u16 {
        match self {
            InviteError::Code(_) | InviteError::BadIntroduction(_) | InviteError::Itself => 400,
            InviteError::Unknown => 403,
            InviteError::Used | InviteError::AlreadyPeer(_) => 409,
            InviteError::Expired(_) => 410,
            _ => 503,
        }
    }

    /// A stable code for answers.
    pub fn code(&self) -> &'static str {
        match self {
            InviteError::NoConfigFile => "no_config_file",
            InviteError::Code(_) => "bad_code",
            InviteError::Expired(_) => "expired",
            InviteError::Used => "used",
            InviteError::Unknown => "unknown_invitation",
            InviteError::BadIntroduction(_) => "bad_introduction",
            InviteError::AlreadyPeer(_) => "already_peer",
            InviteError::Itself => "itself",
            InviteError::Refused(_) => "refused",
            InviteError::Unreachable(_) => "unreachable",
            InviteError::Config(_) => "config",
            InviteError::Engine(_) | InviteError::Internal(_) => "internal",
        }
    }
}

fn key_of(secret_sha256: &str) -> String {
    format!("invite{SEP}{secret_sha256}")
}

fn when(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// A member of this node's key document (its URL as bound at start, its
/// TLS certificate fingerprint).
fn published(node: &Node, member: &str) -> Result<String, InviteError> {
    serde_json::from_slice::<serde_json::Value>(&node.key_document())
        .ok()
        .and_then(|v| v[member].as_str().map(str::to_string))
        .ok_or_else(|| InviteError::Internal(format!("the key document has no {member}")))
}

/// This node's introduction to `to` with the invitation's `secret`
/// (unsigned): who it is, where and with which key and certificate.
fn own_introduction(
    node: &Node,
    to: guanxi_protocol::NodeId,
    secret: String,
) -> Result<IntroductionFields, InviteError> {
    let config = node.config();
    Ok(IntroductionFields {
        v: 1,
        from: node.identity.id.clone(),
        name: config.node_name.clone(),
        url: published(node, "public_url")?,
        tls_cert_sha256: published(node, "tls_cert_sha256")?,
        pinned: config.tls.self_signed,
        public_key: node.identity.key().public().to_string(),
        to,
        secret,
        at: now_ms(),
    })
}

/// Makes an invitation valid for `valid_ms` (at most [`MAX_VALID_MS`]),
/// optionally for the directory entry `partner`; answers the code and
/// when it expires.
pub async fn create(
    node: &Arc<Node>,
    partner: Option<String>,
    valid_ms: Millis,
) -> Result<(String, Millis), InviteError> {
    let config = node.config();
    if config.source.is_none() {
        return Err(InviteError::NoConfigFile);
    }
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| InviteError::Internal(e.to_string()))?;
    let now = now_ms();
    let expires = now + valid_ms.clamp(60_000, MAX_VALID_MS);
    let invitation = Invitation {
        v: 1,
        node: node.identity.id.clone(),
        name: config.node_name.clone(),
        url: published(node, "public_url")?,
        tls_cert_sha256: published(node, "tls_cert_sha256")?,
        pinned: config.tls.self_signed,
        public_key: node.identity.key().public().to_string(),
        secret: b64url(&secret),
        expires,
    };
    let code = invitation
        .code()
        .map_err(|e| InviteError::Internal(e.to_string()))?;
    let kept = Kept {
        created: now,
        expires,
        partner,
        used_by: None,
        used_at: None,
    };
    let key = key_of(&Invitation::secret_sha256(&invitation.secret));
    let bytes = serde_json::to_vec(&kept).map_err(|e| InviteError::Internal(e.to_string()))?;
    node.engine
        .local(move |t| Ok(t.put_doc(Doc::Setting, &key, &bytes)?))
        .await?;
    Ok((code, expires))
}

/// Adds a peer to the config file and reloads it.
async fn add_peer(node: &Arc<Node>, peer: NewPeer) -> Result<(), InviteError> {
    let file = node
        .config()
        .source
        .clone()
        .ok_or(InviteError::NoConfigFile)?;
    tokio::task::spawn_blocking(move || guanxi_config::edit::add_peer(&file, &peer))
        .await
        .map_err(|e| InviteError::Internal(e.to_string()))?
        .map_err(|e| InviteError::Config(e.to_string()))?;
    match node.reloader.get().map(|r| r()) {
        Some(Ok(what)) => {
            tracing::info!("reload after an invitation: {what}");
            Ok(())
        }
        Some(Err(e)) => Err(InviteError::Config(e)),
        None => Err(InviteError::Internal("the daemon is still starting".into())),
    }
}

/// The inviting side: takes an introduction (`POST /fed/v1/introduce`),
/// uses the invitation, adds the sender as a peer and answers this node's
/// own signed introduction.
pub async fn introduced(node: &Arc<Node>, bytes: &[u8]) -> Result<Vec<u8>, InviteError> {
    let intro = SignedIntroduction::decode(bytes)
        .map_err(|e| InviteError::BadIntroduction(e.to_string()))?;
    intro
        .verify_self()
        .map_err(|e| InviteError::BadIntroduction(format!("its signature: {e}")))?;
    let f = intro.fields.clone();
    if f.to != node.identity.id {
        return Err(InviteError::BadIntroduction(format!(
            "it is addressed to {}, this node is {}",
            f.to, node.identity.id
        )));
    }
    if f.from == node.identity.id {
        return Err(InviteError::Itself);
    }
    if f.tls_cert_sha256.parse::<Sha256Hash>().is_err() || !f.url.starts_with("https://") {
        return Err(InviteError::BadIntroduction(
            "its URL must be https:// and its certificate fingerprint 64 hex digits".into(),
        ));
    }
    if node.config().peer(&f.from).is_some() {
        return Err(InviteError::AlreadyPeer(f.from.to_string()));
    }
    let key = key_of(&Invitation::secret_sha256(&f.secret));
    let now = now_ms();
    let from = f.from.to_string();
    let used = {
        let key = key.clone();
        node.engine
            .local(move |t| {
                let Some(raw) = t.doc(Doc::Setting, &key)? else {
                    return Ok(Err(InviteError::Unknown));
                };
                let Ok(mut kept) = serde_json::from_slice::<Kept>(&raw) else {
                    return Ok(Err(InviteError::Unknown));
                };
                if kept.used_by.is_some() {
                    return Ok(Err(InviteError::Used));
                }
                if now >= kept.expires {
                    return Ok(Err(InviteError::Expired(when(kept.expires))));
                }
                let before = raw.clone();
                kept.used_by = Some(from.clone());
                kept.used_at = Some(now);
                let bytes =
                    serde_json::to_vec(&kept).map_err(|e| EngineError::Corrupt(e.to_string()))?;
                t.put_doc(Doc::Setting, &key, &bytes)?;
                Ok(Ok((before, kept.partner)))
            })
            .await??
    };
    let (before, partner) = used;
    let peer = NewPeer {
        id: f.from.to_string(),
        name: f.name.clone(),
        url: f.url.clone(),
        tls_cert_sha256: f.pinned.then(|| f.tls_cert_sha256.clone()),
        public_key: f.public_key.clone(),
        comment: format!(
            "Added by an invitation ({}) on {}{}.",
            node.identity.id,
            when(now),
            partner
                .as_ref()
                .map(|p| format!(", for directory entry {p}"))
                .unwrap_or_default()
        ),
    };
    if let Err(e) = add_peer(node, peer).await {
        // The config was not changed: the invitation may be used again.
        let undo = node
            .engine
            .local(move |t| Ok(t.put_doc(Doc::Setting, &key, &before)?))
            .await;
        if let Err(u) = undo {
            tracing::warn!("could not reopen the invitation after a failure: {u}");
        }
        return Err(e);
    }
    tracing::info!(peer = %f.from, "a node connected by invitation");
    if let Some(partner) = partner {
        // The partner may have worked in the web view until now: its
        // records go to its node (SPEC §25), after this answer.
        let (node, peer) = (node.clone(), f.from.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::handover::run(&node, &partner, Some(peer)).await {
                tracing::warn!(partner, "no hand-over after the invitation: {e}");
            }
        });
    }
    let answer = own_introduction(node, f.from, f.secret)?
        .sign(&node.identity.key())
        .map_err(|e| InviteError::Internal(e.to_string()))?;
    Ok(answer.bytes)
}

/// The invited side (`guanxi connect CODE`): introduces this node to the
/// inviting one, checks its signed answer and adds it as a peer; answers
/// the new peer's id and URL.
pub async fn connect(node: &Arc<Node>, code: &str) -> Result<(String, String), InviteError> {
    let invitation = Invitation::from_code(code)?;
    let config = node.config();
    if config.source.is_none() {
        return Err(InviteError::NoConfigFile);
    }
    if invitation.node == node.identity.id {
        return Err(InviteError::Itself);
    }
    if now_ms() >= invitation.expires {
        return Err(InviteError::Expired(when(invitation.expires)));
    }
    if config.peer(&invitation.node).is_some() {
        return Err(InviteError::AlreadyPeer(invitation.node.to_string()));
    }
    let intro = own_introduction(node, invitation.node.clone(), invitation.secret.clone())?
        .sign(&node.identity.key())
        .map_err(|e| InviteError::Internal(e.to_string()))?;
    let pin: Sha256Hash = invitation
        .tls_cert_sha256
        .parse()
        .map_err(|_| InviteError::Code(CodeError::Altered))?;
    let client = PeerClient::new(
        &invitation.url,
        &Trust::Pinned(pin),
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .map_err(|e| InviteError::Unreachable(e.to_string()))?;
    let answer = client
        .post("/fed/v1/introduce", intro.bytes)
        .await
        .map_err(|e| InviteError::Unreachable(e.to_string()))?;
    if answer.status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {}", answer.status));
        return Err(InviteError::Refused(message));
    }
    let theirs = SignedIntroduction::decode(&answer.body)
        .map_err(|e| InviteError::BadIntroduction(e.to_string()))?;
    let key = theirs
        .verify_self()
        .map_err(|e| InviteError::BadIntroduction(format!("its signature: {e}")))?;
    let t = &theirs.fields;
    if key.to_string() != invitation.public_key
        || t.from != invitation.node
        || t.to != node.identity.id
        || t.secret != invitation.secret
    {
        return Err(InviteError::BadIntroduction(
            "the answer is not from the node the code names".into(),
        ));
    }
    let peer = NewPeer {
        id: invitation.node.to_string(),
        name: t.name.clone(),
        url: invitation.url.clone(),
        tls_cert_sha256: invitation
            .pinned
            .then(|| invitation.tls_cert_sha256.clone()),
        public_key: invitation.public_key.clone(),
        comment: format!(
            "Added by connecting with an invitation from {} on {}.",
            invitation.node,
            when(now_ms())
        ),
    };
    add_peer(node, peer).await?;
    Ok((invitation.node.to_string(), invitation.url))
}
