//! The partner directory ("centralized information"): one entry per partner
//! organization — type, tier, territory, lifecycle stage, contacts, how it is
//! connected (a peer daemon from the TOML, or web users), notes. Local data:
//! stored in the `partners` table, never sent to peers.

use crate::engine::{Engine, EngineError};
use guanxi_adapters::store::{Doc, Read, StoreError};
use guanxi_protocol::Millis;
use serde::{Deserialize, Serialize};

/// What kind of partner an organization is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerType {
    Reseller,
    Distributor,
    Agent,
    Supplier,
}

/// Where the relationship stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Prospect,
    Applied,
    Onboarding,
    Enabled,
    FirstDeal,
    Growing,
    /// Set by hand before the journey had its steps (reads as growing).
    Active,
    Strategic,
    AtRisk,
    Dormant,
    Ended,
}

/// Every type, in display order, with its wire name.
pub const TYPES: &[(PartnerType, &str)] = &[
    (PartnerType::Reseller, "reseller"),
    (PartnerType::Distributor, "distributor"),
    (PartnerType::Agent, "agent"),
    (PartnerType::Supplier, "supplier"),
];

/// Every stage, in display order, with its wire name.
pub const STAGES: &[(Stage, &str)] = &[
    (Stage::Prospect, "prospect"),
    (Stage::Applied, "applied"),
    (Stage::Onboarding, "onboarding"),
    (Stage::Enabled, "enabled"),
    (Stage::FirstDeal, "first_deal"),
    (Stage::Growing, "growing"),
    (Stage::Active, "active"),
    (Stage::Strategic, "strategic"),
    (Stage::AtRisk, "at_risk"),
    (Stage::Dormant, "dormant"),
    (Stage::Ended, "ended"),
];

/// A contact person at a partner.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub email: String,
    pub phone: String,
}

/// One partner organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    /// Stable id, like `globex-tw` (same grammar as node ids).
    pub id: String,
    pub name: String,
    pub kind: PartnerType,
    pub tier: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub region: String,
    pub stage: Stage,
    /// The peer id from the TOML when the partner runs its own daemon.
    pub peer: Option<String>,
    /// Contact people, in the order given.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    pub notes: String,
    /// The IANA time zone the organization's users see times in by
    /// default; empty: the node's.
    #[serde(default)]
    pub time_zone: String,
    pub created: Millis,
    pub updated: Millis,
}

impl Partner {
    /// The type's wire name.
    pub fn kind_name(&self) -> &'static str {
        TYPES
            .iter()
            .find(|(k, _)| *k == self.kind)
            .map_or("", |(_, n)| n)
    }

    /// The stage's wire name.
    pub fn stage_name(&self) -> &'static str {
        STAGES
            .iter()
            .find(|(s, _)| *s == self.stage)
            .map_or("", |(_, n)| n)
    }
}

/// A form field that is wrong, and why (a message key and the field name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: &'static str,
}

/// The fields a person fills in for a partner.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PartnerForm {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub peer: String,
    /// One contact per line: `name; email; phone` (email and phone optional).
    #[serde(default)]
    pub contacts: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub time_zone: String,
}

impl PartnerForm {
    /// Checks the form for this node `me`; on success the partner it
    /// describes (times unset). A partner is never this node itself (by id
    /// or as its peer): it would pass the vendor's own role checks.
    pub fn validate(&self, me: &guanxi_protocol::NodeId) -> Result<Partner, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad = |field, message| errors.push(FieldError { field, message });
        let id = self.id.trim();
        if id.parse::<guanxi_protocol::NodeId>().is_err() {
            bad("id", "error.partner_id");
        } else if id == me.as_str() {
            bad("id", "error.partner_is_self");
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            bad("name", "error.required");
        }
        let kind = TYPES.iter().find(|(_, n)| *n == self.kind).map(|(k, _)| *k);
        if kind.is_none() {
            bad("kind", "error.choose");
        }
        let stage = STAGES
            .iter()
            .find(|(_, n)| *n == self.stage)
            .map(|(s, _)| *s);
        if stage.is_none() {
            bad("stage", "error.choose");
        }
        let country = self.country.trim().to_uppercase();
        if !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase())) {
            bad("country", "error.country");
        }
        let peer = self.peer.trim();
        if !peer.is_empty() && peer.parse::<guanxi_protocol::NodeId>().is_err() {
            bad("peer", "error.partner_id");
        } else if peer == me.as_str() {
            bad("peer", "error.partner_is_self");
        }
        let contacts = parse_contacts(&self.contacts);
        if contacts.is_none() {
            bad("contacts", "error.contacts");
        }
        let contacts = contacts.unwrap_or_default();
        let long = |s: &str| s.chars().count() > 10_000;
        if long(&self.notes) {
            bad("notes", "error.too_long");
        }
        let time_zone = self.time_zone.trim();
        if !time_zone.is_empty() && jiff::tz::TimeZone::get(time_zone).is_err() {
            bad("time_zone", "error.time_zone");
        }
        match (kind, stage, errors.is_empty()) {
            (Some(kind), Some(stage), true) => Ok(Partner {
                id: id.to_string(),
                name: self.name.trim().to_string(),
                kind,
                tier: self.tier.trim().to_string(),
                country,
                region: self.region.trim().to_string(),
                stage,
                peer: (!peer.is_empty()).then(|| peer.to_string()),
                contacts,
                notes: self.notes.clone(),
                time_zone: time_zone.to_string(),
                created: 0,
                updated: 0,
            }),
            _ => Err(errors),
        }
    }

    /// The form filled from an existing partner.
    pub fn from_partner(p: &Partner) -> PartnerForm {
        PartnerForm {
            id: p.id.clone(),
            name: p.name.clone(),
            kind: p.kind_name().to_string(),
            tier: p.tier.clone(),
            country: p.country.clone(),
            region: p.region.clone(),
            stage: p.stage_name().to_string(),
            peer: p.peer.clone().unwrap_or_default(),
            contacts: contacts_text(&p.contacts),
            notes: p.notes.clone(),
            time_zone: p.time_zone.clone(),
        }
    }
}

/// Parses contact lines (`name; email; phone`); `None` when a line has no
/// name, more than three parts, or there are more than 20 contacts.
pub fn parse_contacts(text: &str) -> Option<Vec<Contact>> {
    let mut contacts = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split(';').map(str::trim).collect();
        if parts.len() > 3 || parts[0].is_empty() || line.chars().count() > 300 {
            return None;
        }
        contacts.push(Contact {
            name: parts[0].to_string(),
            email: parts.get(1).unwrap_or(&"").to_string(),
            phone: parts.get(2).unwrap_or(&"").to_string(),
        });
    }
    (contacts.len() <= 20).then_some(contacts)
}

/// Contacts as the form's lines.
pub fn contacts_text(contacts: &[Contact]) -> String {
    contacts
        .iter()
        .map(|c| format!("{}; {}; {}", c.name, c.email, c.phone))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An organization's name for people: this node's own name, a partner's
/// from the directory, a peer's from the config, else its id (and a
/// `web:` key names its partner).
pub fn org_name(read: &Read, config: &guanxi_config::Config, id: &str) -> String {
    let id = id.strip_prefix("web:").unwrap_or(id);
    if id == config.node_id.as_str() {
        return config.node_name.clone();
    }
    if let Ok(Some(p)) = load(read, id) {
        return p.name;
    }
    config
        .peers
        .iter()
        .find(|p| p.id.as_str() == id && !p.name.is_empty())
        .map_or_else(|| id.to_string(), |p| p.name.clone())
}

/// Every partner, inside an engine job (publishing the catalog or a
/// library resource matches peers to their entries; the inbound order
/// check finds the ordering peer's tier).
pub fn all_in(t: &guanxi_adapters::store::Tables<'_>) -> Result<Vec<Partner>, StoreError> {
    Ok(t.docs(Doc::Partner)?
        .into_iter()
        .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
        .collect())
}

/// Reads one partner.
pub fn load(read: &Read, id: &str) -> Result<Option<Partner>, StoreError> {
    Ok(read
        .doc(Doc::Partner, id)?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Up to `limit` partners in id order after `after`, and the id the next
/// page starts after when more follow.
pub fn page(
    read: &Read,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Partner>, Option<String>), StoreError> {
    let rows = read.docs_page(
        Doc::Partner,
        "",
        after,
        guanxi_adapters::store::Order::Forward,
        limit + 1,
    )?;
    let more = rows.len() > limit;
    let list: Vec<Partner> = rows
        .into_iter()
        .take(limit)
        .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
        .collect();
    let next = if more {
        list.last().map(|p| p.id.clone())
    } else {
        None
    };
    Ok((list, next))
}

/// Creates (`create`) or replaces a partner, as `by` (a username). Returns
/// `false` when creating an id that exists, or replacing one that does
/// not. A new partner, or a new stage, goes on the journey's timeline.
pub async fn save(
    engine: &Engine,
    mut partner: Partner,
    create: bool,
    now: Millis,
    by: &str,
) -> Result<bool, EngineError> {
    let by = by.to_string();
    engine
        .local(move |t| {
            let existing: Option<Partner> = t
                .doc(Doc::Partner, &partner.id)?
                .and_then(|b| serde_json::from_slice(&b).ok());
            match (&existing, create) {
                (Some(_), true) | (None, false) => return Ok(false),
                (Some(old), false) => partner.created = old.created,
                (None, true) => partner.created = now,
            }
            partner.updated = now;
            let before = existing.as_ref().map(|p| p.stage);
            crate::journey::record_change(
                t,
                &partner.id,
                before,
                partner.stage,
                now,
                &by,
                "journey.by_hand",
            )?;
            let json =
                serde_json::to_vec(&partner).map_err(|e| EngineError::Failed(e.to_string()))?;
            t.put_doc(Doc::Partner, &partner.id, &json)?;
            Ok(true)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_names_every_wrong_field() {
        let form = PartnerForm {
            id: "Globex TW".into(),
            country: "Taiwan".into(),
            kind: "wholesaler".into(),
            ..PartnerForm::default()
        };
        let me: guanxi_protocol::NodeId = "acme".parse().expect("id");
        let fields: Vec<&str> = form
            .validate(&me)
            .expect_err("invalid")
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["id", "name", "kind", "stage", "country"]);
        let ok = PartnerForm {
            id: "globex-tw".into(),
            name: "Globex".into(),
            kind: "distributor".into(),
            stage: "active".into(),
            country: "tw".into(),
            ..PartnerForm::default()
        };
        let p = ok.validate(&me).expect("valid");
        // This node cannot be its own partner, by id or as the peer.
        for (id, peer) in [("acme", ""), ("globex", "acme")] {
            let own = PartnerForm {
                id: id.into(),
                peer: peer.into(),
                ..ok.clone()
            };
            let errors = own.validate(&me).expect_err("this node itself");
            assert_eq!(errors[0].message, "error.partner_is_self");
        }
        assert_eq!(
            (p.country.as_str(), p.kind_name(), p.peer),
            ("TW", "distributor", None)
        );
    }
}
