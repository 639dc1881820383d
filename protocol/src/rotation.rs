//! Key rotation (SPEC §23): a node announces its new signing key to each
//! peer in its stream, in a `key.rotate` envelope signed by the key it
//! replaces, carrying a proof signed by the new key. The proof binds the
//! new key to the node and to the key it follows, so a key cannot be
//! announced by anyone who does not hold it, nor replayed for another node.

use crate::canonical;
use crate::crypto::{Domain, KeyId, NodeKey, PublicKey, SignatureBytes};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::KeyRotate;
use crate::reason::ReasonCode;
use crate::state::StateError;
use serde::Serialize;

/// What the new key signs.
#[derive(Serialize)]
struct Proof<'a> {
    node: &'a str,
    previous: &'a str,
    public_key: &'a str,
}

fn proof_bytes(node: &NodeId, previous: &KeyId, public_key: &str) -> Vec<u8> {
    canonical::to_canonical(&Proof {
        node: node.as_str(),
        previous: &previous.0,
        public_key,
    })
    .unwrap_or_default()
}

/// The announcement of `new` by `node`, whose current key is `previous`;
/// the old key is valid for what is created until `retire_at` (the
/// announcement's own time, for a revocation).
pub fn announce(node: &NodeId, previous: &KeyId, new: &NodeKey, retire_at: Millis) -> KeyRotate {
    let public_key = new.public().to_string();
    let proof = new.sign(Domain::Key, &proof_bytes(node, previous, &public_key));
    KeyRotate {
        public_key,
        proof: proof.to_string(),
        retire_at,
    }
}

/// Checks an announcement that `from` sent in an envelope signed with key
/// `previous` and created at `created`: the proof verifies with the new key
/// (strictly, and the key is not weak), the new key is another key, and
/// the old one is not retired before the announcement. Answers the new key.
pub fn check(
    from: &NodeId,
    previous: &KeyId,
    created: Millis,
    rotate: &KeyRotate,
) -> Result<PublicKey, StateError> {
    let bad = |m: &str| StateError::new(ReasonCode::BadBody, m.to_string());
    let key: PublicKey = rotate
        .public_key
        .parse()
        .map_err(|e| bad(&format!("body.public_key: {e}")))?;
    if &key.kid() == previous {
        return Err(bad(
            "body.public_key: the new key is the key that signed the announcement",
        ));
    }
    if rotate.retire_at < created {
        return Err(bad("body.retire_at: before the announcement itself"));
    }
    let proof: SignatureBytes = rotate
        .proof
        .parse()
        .map_err(|e| bad(&format!("body.proof: {e}")))?;
    key.verify(
        Domain::Key,
        &proof_bytes(from, previous, &rotate.public_key),
        &proof,
    )
    .map_err(|_| {
        bad("body.proof: not signed by the new key for this node and this previous key")
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_proves_the_new_key_for_this_node_and_previous_key_only() {
        let (old, new) = (
            NodeKey::from_seed(&[1u8; 32]),
            NodeKey::from_seed(&[2u8; 32]),
        );
        let acme: NodeId = "acme".parse().expect("id");
        let rotate = announce(&acme, &old.kid(), &new, 2_000);
        assert_eq!(
            check(&acme, &old.kid(), 1_000, &rotate)
                .expect("valid")
                .kid(),
            new.kid()
        );
        let globex: NodeId = "globex".parse().expect("id");
        assert!(
            check(&globex, &old.kid(), 1_000, &rotate).is_err(),
            "another node"
        );
        let other = NodeKey::from_seed(&[3u8; 32]).kid();
        assert!(
            check(&acme, &other, 1_000, &rotate).is_err(),
            "another previous key"
        );
        assert!(
            check(&acme, &old.kid(), 2_001, &rotate).is_err(),
            "retired before"
        );
        let mut swapped = rotate.clone();
        swapped.public_key = NodeKey::from_seed(&[4u8; 32]).public().to_string();
        assert!(
            check(&acme, &old.kid(), 1_000, &swapped).is_err(),
            "a key without its proof"
        );
        let same = announce(&acme, &old.kid(), &old, 2_000);
        assert!(
            check(&acme, &old.kid(), 1_000, &same).is_err(),
            "the same key again"
        );
    }
}
