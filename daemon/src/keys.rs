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
        if !key_file.exists() {
            // Stopped between the two renames: the old key is already
            // kept and listed.
            std::fs::rename(&next, key_file).map_err(|e| format!("{}: {e}", next.display()))?;
        } else {
            let old = guanxi_config::keyfile::read_node_key(key_file).map_err(|e| e.to_string())?;
            if old.kid() != new.kid() {
                swap_files(key_file, &old).map_err(|e| e.to_string())?;
            }
        }
        tracing::warn!("finished the key rotation to {} found at start", new.kid());
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

/// A peer's `tls.pin` (SPEC §24): written into the config file (a pinned
/// peer's pins become the new certificate and the one before), then the
/// config is reloaded.
pub fn peer_repinned(
    config_file: Option<&Path>,
    from: &NodeId,
    pin: &guanxi_protocol::messages::TlsPin,
    reload: &tokio::sync::Notify,
) -> Result<Result<(), StateError>, EngineError> {
    let Some(file) = config_file else {
        return Ok(Err(StateError {
            code: ReasonCode::NotAllowed,
            message: "this node runs without a config file and cannot record a new pin".into(),
        }));
    };
    guanxi_config::edit::repin_peer(file, from.as_str(), &pin.tls_cert_sha256, &pin.previous)
        .map_err(|e| EngineError::Failed(format!("recording {from}'s new certificate: {e}")))?;
    tracing::warn!(peer = %from, new = %pin.tls_cert_sha256, previous = %pin.previous, "peer announced a new TLS certificate");
    reload.notify_one();
    Ok(Ok(()))
}

/// The identity at start: the key file's key and the retired keys.
pub fn identity(id: NodeId, key: NodeKey, key_file: &Path) -> Result<Identity, String> {
    Ok(Identity::new(id, key, read_retired(key_file)?))
}

/// What a certificate rotation did.
#[derive(Debug, serde::Serialize)]
pub struct TlsRotated {
    pub previous: String,
    pub new: String,
    /// Whether the node now presents the new certificate (every enabled
    /// peer has the announcement's receipt), or still waits for some.
    pub switched: bool,
    pub waiting_for: Vec<String>,
}

fn with_next(path: &Path) -> PathBuf {
    with_suffix(path, ".next")
}

/// `guanxi tls rotate` (SPEC §24): a new self-signed certificate, announced
/// to every peer in its stream (`tls.pin`, over the current certificate);
/// once every enabled peer has the announcement's receipt (waiting up to
/// `wait`), the new files replace the old and the config is reloaded, so
/// new connections get the new certificate. Otherwise the new files wait
/// beside the old (`.next`), and running it again finishes.
pub async fn rotate_tls(
    node: &Arc<Node>,
    wait: std::time::Duration,
) -> Result<TlsRotated, RotateError> {
    let config = node.config();
    if !config.tls.self_signed {
        return Err(RotateError::Refused(
            "this node's certificate files are managed outside Guanxi ([tls] self_signed = false); \
             a certificate from a CA is not pinned by peers and needs no announcement: replace \
             the files and reload"
                .into(),
        ));
    }
    let (cert, key) = (config.tls.cert_file.clone(), config.tls.key_file.clone());
    let (next_cert, next_key) = (with_next(&cert), with_next(&key));
    if !(next_cert.exists() && next_key.exists()) {
        crate::tls::generate_self_signed(
            &next_cert,
            &next_key,
            &crate::cli::certificate_names(config.listen, Some(&config.public_url)),
        )
        .map_err(|e| RotateError::Refused(format!("making the new certificate: {e}")))?;
    }
    let fingerprint = |p: &Path| {
        crate::tls::fingerprint(p)
            .map(|h| h.to_string())
            .map_err(|e| RotateError::Refused(format!("{}: {e}", p.display())))
    };
    let (previous, new) = (fingerprint(&cert)?, fingerprint(&next_cert)?);
    let subject: guanxi_protocol::RecordId = format!("tls-{}", &new[..16])
        .parse()
        .map_err(|e| RotateError::Refused(format!("subject: {e}")))?;
    let peers: Vec<NodeId> = config.peers.iter().map(|p| p.id.clone()).collect();
    let message = Message::TlsPin(guanxi_protocol::messages::TlsPin {
        tls_cert_sha256: new.clone(),
        previous: previous.clone(),
    });
    let sent = node
        .engine
        .act(move |act| {
            let mut sent = Vec::new();
            for peer in &peers {
                match act.send(peer, &subject, &message)? {
                    Ok(s) => sent.push((peer.clone(), s.seq)),
                    Err(refused) => {
                        return Err(EngineError::Failed(format!(
                            "announcing to {peer}: {}",
                            refused.message
                        )));
                    }
                }
            }
            Ok(sent)
        })
        .await?;
    let enabled: Vec<(NodeId, u64)> = sent
        .into_iter()
        .filter(|(p, _)| config.peers.iter().any(|c| &c.id == p && c.enabled))
        .collect();
    let deadline = tokio::time::Instant::now() + wait;
    let waiting_for = loop {
        let stored = node.receipts_stored.notified();
        let pending = {
            let list = enabled.clone();
            node.reading(move |r| {
                let mut pending = Vec::new();
                for (peer, seq) in &list {
                    if r.delivery(peer.as_str())?.delivered_seq < *seq {
                        pending.push(peer.to_string());
                    }
                }
                Ok(pending)
            })
            .await
            .map_err(|e| RotateError::Engine(e.into()))?
        };
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            break pending;
        }
        let _ = tokio::time::timeout_at(deadline, stored).await;
    };
    if !waiting_for.is_empty() {
        return Ok(TlsRotated {
            previous,
            new,
            switched: false,
            waiting_for,
        });
    }
    for (next, current) in [(&next_key, &key), (&next_cert, &cert)] {
        std::fs::rename(next, current).map_err(|e| {
            RotateError::Refused(format!("moving {} into place: {e}", next.display()))
        })?;
    }
    match node.reloader.get().map(|r| r()) {
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            return Err(RotateError::Refused(format!(
                "the new certificate is in place but the reload failed ({e}); restart the daemon"
            )));
        }
        None => {
            return Err(RotateError::Refused(
                "the new certificate is in place; restart the daemon to serve it".into(),
            ));
        }
    }
    tracing::warn!(%previous, %new, "TLS certificate rotated");
    Ok(TlsRotated {
        previous,
        new,
        switched: true,
        waiting_for,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, name: &str, seed: u8) -> (PathBuf, NodeKey) {
        let path = dir.join(name);
        let key = NodeKey::from_seed(&[seed; 32]);
        guanxi_config::keyfile::write_node_key(&path, &key).expect("write");
        (path, key)
    }

    fn committed(store: &Store, kid: &KeyId) {
        store
            .transact(|t| t.put_doc(Doc::Setting, ROTATION_DOC, kid.0.as_bytes()))
            .expect("write");
    }

    /// A rotation cut short at start: committed ones are finished wherever
    /// they stopped, others dropped; the old public key ends up listed.
    #[test]
    fn a_rotation_cut_short_is_finished_or_dropped_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("data")).expect("store");
        let (file, old) = key(dir.path(), "node.key", 1);
        // Not committed: the next key is dropped, the old one stays.
        let (_, new) = key(dir.path(), "node.key.next", 2);
        settle(&file, &store).expect("settles");
        assert!(!next_file(&file).exists());
        assert_eq!(
            guanxi_config::keyfile::read_node_key(&file)
                .expect("key")
                .kid(),
            old.kid()
        );
        // Committed, files not swapped: swapped now, the old key listed.
        key(dir.path(), "node.key.next", 2);
        committed(&store, &new.kid());
        settle(&file, &store).expect("settles");
        assert_eq!(
            guanxi_config::keyfile::read_node_key(&file)
                .expect("key")
                .kid(),
            new.kid()
        );
        assert_eq!(read_retired(&file).expect("retired"), vec![old.public()]);
        // Committed, stopped between the renames (the key file moved away).
        let (_, third) = key(dir.path(), "node.key.next", 3);
        committed(&store, &third.kid());
        append_retired(&file, &new.public()).expect("list");
        std::fs::rename(&file, dir.path().join("node.key.retired-x")).expect("move");
        settle(&file, &store).expect("settles");
        assert_eq!(
            guanxi_config::keyfile::read_node_key(&file)
                .expect("key")
                .kid(),
            third.kid()
        );
        assert_eq!(
            read_retired(&file).expect("retired"),
            vec![old.public(), new.public()]
        );
    }
}
