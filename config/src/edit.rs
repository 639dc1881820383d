//! Changes to a config file written by the daemon itself (a peer added by
//! an invitation), keeping the admin's comments and layout: the file is
//! edited as a TOML document (toml_edit), the result is validated as a
//! whole config before it replaces the file (temporary file, fsync,
//! rename), so a failure leaves the file as it was.

use crate::{Config, ConfigError};
use std::io::Write;
use std::path::Path;

/// A peer to add: what an invitation tells about the other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPeer {
    pub id: String,
    pub name: String,
    pub url: String,
    /// Pinned certificate (a self-signed one); `None`: the web PKI.
    pub tls_cert_sha256: Option<String>,
    pub public_key: String,
    /// A comment written above the entry (`# ` added to each line).
    pub comment: String,
}

fn err(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        position: None,
        message: message.into(),
    }
}

/// The file's text, the config it holds now (it must be valid: a
/// half-edited file is not ours to change) and its TOML document.
fn open(file: &Path) -> Result<(String, Config, toml_edit::DocumentMut), ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| err(file, format!("cannot read the config file: {e}")))?;
    let before = Config::load(file)?;
    let doc = text
        .parse()
        .map_err(|e: toml_edit::TomlError| err(file, e.to_string()))?;
    Ok((text, before, doc))
}

/// The `[[peers]]` table of `peer` in `doc`.
fn peer_table<'d>(
    doc: &'d mut toml_edit::DocumentMut,
    file: &Path,
    peer: &str,
) -> Result<&'d mut toml_edit::Table, ConfigError> {
    let Some(toml_edit::Item::ArrayOfTables(peers)) = doc.get_mut("peers") else {
        return Err(err(file, "`peers` is not written as [[peers]] tables"));
    };
    peers
        .iter_mut()
        .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(peer))
        .ok_or_else(|| {
            err(
                file,
                format!("peer {peer} is not written as a [[peers]] table"),
            )
        })
}

/// Validates `doc` as a whole config and, when it differs from `text`,
/// replaces the file with it; answers the config it holds.
fn save(
    file: &Path,
    text: &str,
    before: Config,
    doc: &toml_edit::DocumentMut,
) -> Result<Config, ConfigError> {
    let new_text = doc.to_string();
    if new_text == text {
        return Ok(before);
    }
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = Config::parse(&new_text, file, &base)?;
    replace(file, new_text.as_bytes())
        .map_err(|e| err(file, format!("cannot write the config file: {e}")))?;
    Ok(config)
}

/// Appends a `[[peers]]` entry for `peer` to the config file `file` and
/// answers the config it now holds. Refused, leaving the file untouched,
/// when a peer with that id is already configured or the result does not
/// validate.
pub fn add_peer(file: &Path, peer: &NewPeer) -> Result<Config, ConfigError> {
    let (text, before, mut doc) = open(file)?;
    if before.peers.iter().any(|p| p.id.as_str() == peer.id) {
        return Err(err(
            file,
            format!(
                "peer {} is already configured; nothing was changed",
                peer.id
            ),
        ));
    }
    let mut entry = toml_edit::Table::new();
    entry.insert("id", toml_edit::value(peer.id.as_str()));
    entry.insert("name", toml_edit::value(peer.name.as_str()));
    entry.insert("url", toml_edit::value(peer.url.as_str()));
    entry.insert("enabled", toml_edit::value(true));
    if let Some(pin) = &peer.tls_cert_sha256 {
        entry.insert("tls_cert_sha256", toml_edit::value(pin.as_str()));
    }
    let mut key = toml_edit::Table::new();
    key.insert("public_key", toml_edit::value(peer.public_key.as_str()));
    let mut keys = toml_edit::ArrayOfTables::new();
    keys.push(key);
    entry.insert("keys", toml_edit::Item::ArrayOfTables(keys));
    let comment: String = peer.comment.lines().map(|l| format!("# {l}\n")).collect();
    // Text after the last table (comments, like the commented example
    // of a peer) stays where it was: before the new entry.
    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
    doc.set_trailing("");
    entry
        .decor_mut()
        .set_prefix(format!("{trailing}\n{comment}"));
    match doc.get_mut("peers") {
        None => {
            let mut peers = toml_edit::ArrayOfTables::new();
            peers.push(entry);
            doc.insert("peers", toml_edit::Item::ArrayOfTables(peers));
        }
        Some(toml_edit::Item::ArrayOfTables(peers)) => peers.push(entry),
        Some(_) => {
            return Err(err(
                file,
                "`peers` is not written as [[peers]] tables; add the peer by hand",
            ));
        }
    }
    save(file, &text, before, &doc)
}

/// A peer's key rotation (SPEC §23) as the configuration records it: the
/// new key trusted from `not_before`, the key with id `old_kid` until
/// `not_after` (or the earlier time it already had). Adding a key the peer
/// already has changes nothing, so the same announcement applied twice
/// writes the same file. Answers the config the file now holds.
pub fn rotate_peer_key(
    file: &Path,
    peer: &str,
    old_kid: &str,
    new_public_key: &str,
    not_before: guanxi_protocol::envelope::Millis,
    not_after: guanxi_protocol::envelope::Millis,
) -> Result<Config, ConfigError> {
    let (text, before, mut doc) = open(file)?;
    let Some(configured) = before.peers.iter().find(|p| p.id.as_str() == peer) else {
        return Err(err(file, format!("peer {peer} is not configured")));
    };
    let time = |ms| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .map_err(|e| err(file, format!("time {ms}: {e}")))
    };
    let old_public = configured
        .keys
        .iter()
        .find(|k| k.kid.0 == old_kid)
        .map(|k| k.public_key.to_string());
    let already_after = configured
        .keys
        .iter()
        .find(|k| k.kid.0 == old_kid)
        .and_then(|k| k.not_after);
    let entry = peer_table(&mut doc, file, peer)?;
    let Some(toml_edit::Item::ArrayOfTables(keys)) = entry.get_mut("keys") else {
        return Err(err(
            file,
            format!("the keys of peer {peer} are not written as [[peers.keys]] tables"),
        ));
    };
    let public_of = |t: &toml_edit::Table| {
        t.get("public_key")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if let Some(old) = &old_public
        && already_after.is_none_or(|a| a > not_after)
        && let Some(t) = keys
            .iter_mut()
            .find(|t| public_of(t).as_deref() == Some(old.as_str()))
    {
        t.insert("not_after", toml_edit::value(time(not_after)?));
    }
    if !keys
        .iter()
        .any(|t| public_of(t).as_deref() == Some(new_public_key))
    {
        let mut key = toml_edit::Table::new();
        key.insert("public_key", toml_edit::value(new_public_key));
        key.insert("not_before", toml_edit::value(time(not_before)?));
        key.decor_mut()
            .set_prefix(format!("# announced by {peer} (key.rotate)\n"));
        keys.push(key);
    }
    save(file, &text, before, &doc)
}

/// A pinned peer's new certificate (SPEC §24): `new` becomes its pin and
/// `previous` the second certificate accepted, replacing older pins. A
/// peer trusted through the web PKI (no pin) is left as it is. Answers the
/// config the file now holds.
pub fn repin_peer(
    file: &Path,
    peer: &str,
    new: &str,
    previous: &str,
) -> Result<Config, ConfigError> {
    let (text, before, mut doc) = open(file)?;
    let Some(configured) = before.peers.iter().find(|p| p.id.as_str() == peer) else {
        return Err(err(file, format!("peer {peer} is not configured")));
    };
    let also = (previous != new).then_some(previous);
    if configured.tls_cert_sha256.is_none()
        || (configured.tls_cert_sha256.as_deref() == Some(new)
            && configured.tls_cert_sha256_also.as_deref() == also)
    {
        return Ok(before);
    }
    let entry = peer_table(&mut doc, file, peer)?;
    entry.insert("tls_cert_sha256", toml_edit::value(new));
    match also {
        Some(previous) => {
            entry.insert("tls_cert_sha256_also", toml_edit::value(previous));
        }
        None => {
            entry.remove("tls_cert_sha256_also");
        }
    }
    save(file, &text, before, &doc)
}

/// Sets the `url` of the configured peer `peer` (a peer that moved; the
/// demo's daemons get new ports at each start). Unchanged when it is
/// already that URL. Answers the config the file now holds.
pub fn set_peer_url(file: &Path, peer: &str, url: &str) -> Result<Config, ConfigError> {
    let (text, before, mut doc) = open(file)?;
    peer_table(&mut doc, file, peer)?.insert("url", toml_edit::value(url));
    save(file, &text, before, &doc)
}

/// Replaces `file` with `bytes` atomically, keeping its permissions.
fn replace(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let permissions = std::fs::metadata(file)?.permissions();
    let mut name = file.as_os_str().to_owned();
    name.push(".new");
    let tmp = std::path::PathBuf::from(name);
    let result = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        out.set_permissions(permissions)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn peer(id: &str) -> NewPeer {
        NewPeer {
            id: id.into(),
            name: "Globex 經銷".into(),
            url: "https://globex.example".into(),
            tls_cert_sha256: Some("ab".repeat(32)),
            public_key: KEY.into(),
            comment: "added by invitation\non 2026-12-02".into(),
        }
    }

    #[test]
    fn a_peer_is_added_keeping_comments_and_a_second_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("guanxi.toml");
        let original = "# my notes, keep them\n[node]\nid = \"acme\" # ours\nname = \"Acme\"\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://127.0.0.1:0\"\ndata_dir = \"data\"\n";
        std::fs::write(&file, original).expect("write");
        std::fs::create_dir(dir.path().join("data")).expect("dir");
        crate::keyfile::write_node_key(
            &dir.path().join("data/node.key"),
            &guanxi_protocol::crypto::NodeKey::from_seed(&[4; 32]),
        )
        .expect("key");
        let config = add_peer(&file, &peer("globex")).expect("added");
        assert_eq!(config.peers.len(), 1);
        assert_eq!(config.peers[0].id.as_str(), "globex");
        assert_eq!(config.peers[0].keys[0].public_key.to_string(), KEY);
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.starts_with(original), "the admin's text stays: {text}");
        assert!(
            text.contains("# added by invitation\n# on 2026-12-02\n[[peers]]"),
            "{text}"
        );
        assert_eq!(Config::load(&file).expect("loads").peers, config.peers);
        // The same id again: refused, the file unchanged.
        let e = add_peer(&file, &peer("globex")).expect_err("refused");
        assert!(e.message.contains("already configured"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), text);
        // A bad key makes the result invalid: refused, file unchanged.
        let mut bad = peer("initech");
        bad.public_key = "not-a-key".into();
        assert!(add_peer(&file, &bad).is_err());
        assert_eq!(std::fs::read_to_string(&file).expect("read"), text);
        // A second peer is added after the first.
        let config = add_peer(&file, &peer("initech")).expect("added");
        assert_eq!(config.peers.len(), 2);
    }
}
