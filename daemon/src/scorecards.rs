//! Scorecards: a partner's figures with a vendor for a period, computed
//! from the shared records by the protocol's pure `scorecard` code, so
//! that the vendor's node and a connected partner's node compute the same
//! figures from their own copies. The records are found through the
//! per-key date index (`record_index::opened_between_for`) — the work is
//! the partner's records in the period, never a family; leads, which that
//! index does not hold, are read by key.

use guanxi_adapters::store::{Read, StoreError};
use guanxi_protocol::NodeId;
use guanxi_protocol::scorecard::{Builder, Period, Scorecard};

/// Families in the per-key date index that count in a scorecard.
const DATED: [&str; 7] = [
    "registration",
    "order",
    "warranty",
    "service",
    "announcement",
    "quiz",
    "mdf",
];

/// The scorecard, in `period`, of the records kept under `keys` (a
/// partner's peer id and `web:<id>` at its vendor; the vendor's peer id at
/// the partner) whose authority is `vendor`; `me` is this node.
pub fn compute(
    read: &Read,
    me: &NodeId,
    vendor: &NodeId,
    keys: &[String],
    period: &Period,
) -> Result<Scorecard, StoreError> {
    let mut builder = Builder::new(vendor.clone(), period.clone());
    let side = if vendor == me {
        crate::record_index::Side::Own
    } else {
        crate::record_index::Side::Peer
    };
    for key in keys {
        let mut places = Vec::new();
        for family in DATED {
            // MDF budgets have no opening time (indexed at 0): every budget
            // of the partner, whose entries in the period count.
            let (from, to) = if family == "mdf" {
                (0, 1)
            } else {
                (period.from, period.to)
            };
            for subject in crate::record_index::opened_between_for(read, family, key, from, to)? {
                places.push((key.clone(), subject));
            }
        }
        let mut before = None;
        loop {
            let (page, more) = crate::record_index::by_key(
                read,
                "lead",
                side,
                &crate::record_index::key_of(key),
                before.as_ref(),
                1000,
            )?;
            before = page.last().cloned();
            places.extend(page);
            if !more {
                break;
            }
        }
        for (_, _, record) in crate::record_index::load(read, places) {
            builder.add(&record);
        }
    }
    Ok(builder.finish())
}

/// Whose scorecard a reader asks for: staff name a partner of this node
/// (its directory id: this node is the vendor) or a vendor this node is a
/// partner of (its peer id); a partner user always reads its own.
pub struct Subject {
    /// The records' authority.
    pub vendor: NodeId,
    /// Where the records are kept here.
    pub keys: Vec<String>,
    /// The partner, for people (a directory id or this node's id).
    pub partner: String,
}

/// The scorecard `user` may read for `partner` or `vendor` (`None`: not
/// found or not theirs).
pub fn subject(
    read: &Read,
    me: &NodeId,
    user: &crate::accounts::User,
    partner: Option<&str>,
    vendor: Option<&str>,
) -> Result<Option<Subject>, StoreError> {
    if let Some(org) = &user.partner {
        // A partner user: its organization with this node, whatever it asked.
        if partner.is_some_and(|p| p != org) || vendor.is_some() {
            return Ok(None);
        }
        return Ok(Some(Subject {
            vendor: me.clone(),
            keys: vec![crate::records::web_key(org)],
            partner: org.clone(),
        }));
    }
    match (partner, vendor) {
        (Some(id), None) => {
            let Some(p) = crate::directory::load(read, id)? else {
                return Ok(None);
            };
            let mut keys = vec![crate::records::web_key(&p.id)];
            keys.extend(p.peer.clone());
            Ok(Some(Subject {
                vendor: me.clone(),
                keys,
                partner: p.id,
            }))
        }
        (None, Some(peer)) => Ok(peer.parse::<NodeId>().ok().map(|v| Subject {
            keys: vec![v.to_string()],
            vendor: v,
            partner: me.to_string(),
        })),
        _ => Ok(None),
    }
}

/// The subject of the scorecard `vendor` shares for `period`.
pub fn subject_of(vendor: &NodeId, period: &Period) -> String {
    format!("scorecard.{vendor}.{}", period.name)
}

/// The scorecard `vendor` shared with this node for `period`, if any.
pub fn received(
    read: &Read,
    vendor: &NodeId,
    period: &Period,
) -> Result<Option<guanxi_protocol::state::scorecard::ScorecardRecord>, StoreError> {
    let subject = subject_of(vendor, period);
    Ok(read.record(vendor.as_str(), &subject)?.and_then(|b| {
        match crate::records::parse_record(vendor.as_str(), &subject, &b) {
            Some(guanxi_protocol::state::Record::Scorecard(s)) => Some(s),
            _ => None,
        }
    }))
}

/// Sends partner `partner` (a directory id with a daemon) its scorecard
/// for `period` as this node computes it now, signed (`scorecard.share`).
pub async fn share(
    node: &crate::node::Node,
    partner: &str,
    period: Period,
) -> Result<Result<(), guanxi_protocol::state::StateError>, crate::engine::EngineError> {
    let me = node.identity.id.clone();
    let id = partner.to_string();
    let p = period.clone();
    let found = node
        .reading(move |r| {
            let Some(partner) = crate::directory::load(r, &id)? else {
                return Ok(None);
            };
            let Some(peer) = partner.peer.clone() else {
                return Ok(Some(Err(partner.id)));
            };
            // The records its node holds too: those with its daemon.
            let keys = vec![peer.clone()];
            Ok(Some(Ok((peer, compute(r, &me, &me, &keys, &p)?))))
        })
        .await?;
    let refuse =
        |code, message: String| Ok(Err(guanxi_protocol::state::StateError { code, message }));
    let (peer, figures) = match found {
        None => {
            return refuse(
                guanxi_protocol::ReasonCode::UnknownRecord,
                format!("there is no partner {partner}"),
            );
        }
        Some(Err(id)) => {
            return refuse(
                guanxi_protocol::ReasonCode::NotAllowed,
                format!(
                    "{id} has no Guanxi of its own: its users read their scorecard in the web view"
                ),
            );
        }
        Some(Ok(found)) => found,
    };
    let subject = subject_of(&node.identity.id, &period);
    let message =
        guanxi_protocol::Message::ScorecardShare(guanxi_protocol::messages::ScorecardShare {
            period,
            figures,
        });
    node.send_to_peer(&peer, &subject, message).await
}

const WEIGHTS_KEY: &str = "score_weights";

/// The vendor's score weights.
pub fn weights(read: &Read) -> Result<Vec<guanxi_protocol::scorecard::Weight>, StoreError> {
    Ok(read
        .doc(guanxi_adapters::store::Doc::Setting, WEIGHTS_KEY)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Replaces the score weights.
pub async fn set_weights(
    node: &crate::node::Node,
    list: Vec<guanxi_protocol::scorecard::Weight>,
) -> Result<(), crate::engine::EngineError> {
    node.engine
        .local(move |t| {
            let json = serde_json::to_vec(&list)
                .map_err(|e| crate::engine::EngineError::Failed(e.to_string()))?;
            t.put_doc(guanxi_adapters::store::Doc::Setting, WEIGHTS_KEY, &json)?;
            Ok(())
        })
        .await
}

/// What the score and the tier requirements suggest for a partner:
/// `promote` (score ≥ 85 and every requirement met), `review` (score
/// under 50, or a requirement not met), `keep` otherwise.
pub fn recommendation(score: i64, requirements_met: bool) -> &'static str {
    if !requirements_met || score < 50 {
        "review"
    } else if score >= 85 {
        "promote"
    } else {
        "keep"
    }
}
