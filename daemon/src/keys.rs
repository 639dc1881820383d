//! Key rotation (SPEC §23), both ways. This node's own (`guanxi key
//! rotate`): a new key is written beside the key file, a `key.rotate` is
//! queued to every configured peer in one transaction (signed by the key
//! it replaces, with the new key's proof), and from the commit on the node
//! signs with the new key; the key file is then replaced and the old public
//! key listed in `<key file>.retired`, so verification and healing still
//! know it. A peer's: a received `key.rotate` whose proof holds is written
//! into the config file (the new key, the old key's end) and the config is
//! reloaded.

use crate::engine::{EngineError, Identity};
use crate::node::Node;
use guanxi_adapters::store::{Doc, Store};
use guanxi_protocol::envelope::Millis;
use guanxi_protocol::messages::KeyRotate;
use guanxi_protocol::state::StateError;
use guanxi_protocol::{KeyId, Message, NodeId, NodeKey, PublicKey, ReasonCode};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The settings document naming the key of the rotation last committed.
const ROTATION_DOC: &str = "key_rotation";

fn with_suffix(key_file: &Path, suffix: &str) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where the new key waits while a rotation commits.
pub fn next_file(key_file: &Path) -> PathBuf {
    with_suffix(key_file, ".next")
}

/// The public keys this node signed with before (one per line).
pub fn retired_file(key_file: &Path) -> PathBuf {
    with_suffix(key_file, ".retired")
}

/// The public keys listed in [`retired_file`] (none when it is missing).
pub fn read_retired(key_file: &Path) -> Result<Vec<PublicKey>, String> {
    let path = retired_file(key_file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            l.parse()
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn append_retired(key_file: &Path, key: &PublicKey) -> std::io::Result<()> {
    let path = retired_file(key_file);
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    if new {
        writeln!(
            f,
            "# Public keys this node signed with before a rotation (SPEC §23). Keep this\n\
             # file with the key file: healing and verification need these keys."
        )?;
    }
    writeln!(f, "{key}")?;
    f.sync_all()
}

/// At start, before the key is loaded: a rotation whose transaction
/// committed (the store names the new key) but whose files were not
/// swapped is finished; one that did not commit is dropped.
pub fn settle(key_file: &Path, store: &Store) -> Result<(), String> {
    let next = next_file(key_file);
    if !next.exists() {
        return Ok(());
    }
    let new = guanxi_config::keyfile::read_node_key(&next).map_err(|e| e.to_string())?;
    let committed = store
        .read()
        .and_then(|r| r.doc(Doc::Setting, ROTATION_DOC))
        .map_err(|e| e.to_string())?
        .is_some_and(|kid| kid == new.kid().0.as_bytes());
    if committed {
        let old = guanxi_config::keyfile::read_node_key(key_file).map_err(|e| e.to_string())?;
        if old.kid() != new.kid() {
            swap_files(key_file, &old).map_err(|e| e.to_string())?;
            tracing::warn!("finished the key rotation to {} found at start", new.kid());
        }
    } else {
        std::fs::remove_file(&next).map_err(|e| format!("{}: {e}", next.display()))?;
        tracing::warn!("dropped a key rotation that did not commit");
    }
    Ok(())
}

/// Lists `old` as retired, keeps its file as `<key file>.retired-<kid>`
/// and moves the next key into the key file.
fn swap_files(key_file: &Path, old: &NodeKey) -> std::io::Result<()> {
    append_retired(key_file, &old.public())?;
    std::fs::rename(
        key_file,
        with_suffix(key_file, &format!(".retired-{}", old.kid())),
    )?;
    std::fs::rename(next_file(key_file), key_file)
}

/// What a rotation did.
#[derive(Debug, serde::Serialize)]
pub struct Rotated {
    pub old_kid: String,
    pub new_kid: String,
    pub retire_at: Millis,
    pub announced_to: Vec<String>,
}

/// Why a rotation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// `guanxi key rotate`: a new key announced to every configured peer,
/// the old one valid until `retire_after_ms` after the announcement (0:
/// revoked at once).
pub async fn rotate(node: &Arc<Node>, retire_after_ms: Millis) -> Result<Rotated, RotateError> {
    let config = node.config();
    let key_file = config.signing_key_file.clone();
    let next = next_file(&key_file);
    let new = crate::identity::generate_key()
        .map_err(|e| RotateError::Refused(format!("no randomness for a new key: {e}")))?;
    guanxi_config::keyfile::write_node_key(&next, &new).map_err(|e| {
        RotateError::Refused(format!(
            "{e} (a rotation is unfinished; restart the daemon to settle it)"
        ))
    })?;
    let peers: Vec<NodeId> = config.peers.iter().map(|p| p.id.clone()).collect();
    let old = node.identity.key();
    let old_key = old.clone();
    let me = node.identity.id.clone();
    let subject: guanxi_protocol::RecordId = format!("key-{}", new.kid())
        .parse()
        .map_err(|e| RotateError::Refused(format!("subject: {e}")))?;
    let new_key = new.clone();
    let result = node
        .engine
        .act(move |act| {
            let mut retire_at = act.now;
            let mut announced = Vec::new();
            for peer in &peers {
                // Not before the announcement's own time (a stream's
                // times never go back).
                let created = act.now.max(act.tables.out_stream(peer.as_str())?.created);
                let at = created + retire_after_ms;
                retire_at = retire_at.max(at);
                let message = Message::KeyRotate(guanxi_protocol::rotation::announce(
                    &me,
                    &old.kid(),
                    &new_key,
                    at,
                ));
                match act.send(peer, &subject, &message)? {
                    Ok(_) => announced.push(peer.to_string()),
                    Err(refused) => {
                        return Err(EngineError::Failed(format!(
                            "announcing to {peer}: {}",
                            refused.message
                        )));
                    }
                }
            }
            act.tables
                .put_doc(Doc::Setting, ROTATION_DOC, new_key.kid().0.as_bytes())?;
            act.rotate_key(new_key.clone());
            Ok((retire_at, announced))
        })
        .await;
    let (retire_at, announced_to) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&next);
            return Err(e.into());
        }
    };
    let old = old_key;
    if let Err(e) = swap_files(&key_file, &old) {
        tracing::error!(
            "the rotation committed but the key files could not be swapped ({e}); \
             the daemon finishes it at its next start"
        );
    }
    // The key document names the new key (a reload rebuilds it).
    if let Some(Err(e)) = node.reloader.get().map(|r| r()) {
        tracing::warn!("the key document still names the old key until a reload works: {e}");
    }
    tracing::warn!(old = %old.kid(), new = %new.kid(), "signing key rotated");
    Ok(Rotated {
        old_kid: old.kid().0,
        new_kid: new.kid().0,
        retire_at,
        announced_to,
    })
}

/// A peer's `key.rotate`, received in its stream signed by key `signer`:
/// checked (SPEC §23), then written into the config file `config_file`
/// (none: this node runs on defaults and cannot record it). `reload` is
/// asked to apply the file afterwards.
pub fn peer_rotated(
    config_file: Option<&Path>,
    from: &NodeId,
    signer: &KeyId,
    created: Millis,
    rotate: &KeyRotate,
    reload: &tokio::sync::Notify,
) -> Result<Result<(), StateError>, EngineError> {
    let key = match guanxi_protocol::rotation::check(from, signer, created, rotate) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let Some(file) = config_file else {
        return Ok(Err(StateError {
            code: ReasonCode::NotAllowed,
            message: "this node runs without a config file and cannot record a new key".into(),
        }));
    };
    guanxi_config::edit::rotate_peer_key(
        file,
        from.as_str(),
        &signer.0,
        &key.to_string(),
        created,
        rotate.retire_at,
    )
    .map_err(|e| EngineError::Failed(format!("recording {from}'s new key: {e}")))?;
    tracing::warn!(peer = %from, old = %signer, new = %key.kid(), retire_at = rotate.retire_at, "peer rotated its signing key");
    reload.notify_one();
    Ok(Ok(()))
}

/// The identity at start: the key file's key and the retired keys.
pub fn identity(id: NodeId, key: NodeKey, key_file: &Path) -> Result<Identity, String> {
    Ok(Identity::new(id, key, read_retired(key_file)?))
}
