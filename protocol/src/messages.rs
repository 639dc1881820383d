//! The request kinds and their typed bodies.
//!
//! [`Message::decode`] turns an envelope's `kind` and `body` into a typed
//! message: an unknown kind is [`BodyError::UnknownKind`], a body that does not
//! fit its kind is [`BodyError::Field`] naming the field. Every body member is
//! required (optional ones are present as `null`) and unknown members are
//! refused, so each message has exactly one wire spelling.

use crate::canonical::{self, DecodeError};
use crate::envelope::Millis;
use crate::ids::{NodeId, RecordId};
use crate::money::{Currency, Date, Money};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    #[error("body field {path}: {message}")]
    Field { path: String, message: String },
}

/// The first day of a budget period written `YYYY`, `YYYY-Hn`, `YYYY-Qn`
/// or `YYYY-MM`; `None` for any other form (a period is free text).
pub fn period_start(period: &str) -> Option<Date> {
    let p = period.trim();
    let year = p
        .get(..4)
        .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))?;
    let month = match p.get(4..) {
        Some("") => 1,
        Some(rest) => {
            let rest = rest.strip_prefix('-')?;
            match (
                rest.get(..1),
                rest.get(1..).and_then(|n| n.parse::<u32>().ok()),
            ) {
                (Some("Q" | "q"), Some(n @ 1..=4)) => (n - 1) * 3 + 1,
                (Some("H" | "h"), Some(n @ 1..=2)) => (n - 1) * 6 + 1,
                _ => rest
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (1..=12).contains(m) && rest.len() == 2)?,
            }
        }
        None => return None,
    };
    format!("{year}-{month:02}-01").parse().ok()
}

fn field_error(path: impl Into<String>, message: impl Into<String>) -> BodyError {
    BodyError::Field {
        path: path.into(),
        message: message.into(),
    }
}

fn text(path: &str, value: &str, max_chars: usize, required: bool) -> Result<(), BodyError> {
    if required && value.trim().is_empty() {
        return Err(field_error(path, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(field_error(
            path,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Ok(())
}

/// Longest short text (names, references), in characters.
pub const SHORT_TEXT: usize = 200;
/// Longest long text (notes, descriptions), in characters.
pub const LONG_TEXT: usize = 10_000;
/// Most lines in an order, acknowledgement, shipment or cancellation.
pub const MAX_LINES: usize = 1_000;

/// The end customer a lead, claim or request is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub company: String,
    pub contact: String,
    pub email: String,
    pub phone: String,
}

impl Customer {
    fn validate(&self, path: &str) -> Result<(), BodyError> {
        text(&format!("{path}.company"), &self.company, SHORT_TEXT, true)?;
        text(&format!("{path}.contact"), &self.contact, SHORT_TEXT, false)?;
        text(&format!("{path}.email"), &self.email, SHORT_TEXT, false)?;
        text(&format!("{path}.phone"), &self.phone, SHORT_TEXT, false)
    }
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub region: String,
    /// ISO 3166-1 alpha-2, uppercase.
    pub country: String,
}

fn country(path: &str, value: &str) -> Result<(), BodyError> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(field_error(
            path,
            "must be an ISO 3166-1 alpha-2 code like \"TW\"",
        ))
    }
}

fn money(path: &str, m: &Money, positive: bool) -> Result<(), BodyError> {
    if m.amount < 0 || (positive && m.amount == 0) {
        return Err(field_error(
            format!("{path}.amount"),
            if positive {
                "must be greater than 0"
            } else {
                "must not be negative"
            },
        ));
    }
    Ok(())
}

/// `ping`: checks that the peer is there and answers. Changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    pub note: String,
}

/// `key.rotate`, either way (SPEC §23): the sender's new signing key,
/// proved by a signature of that key (`crate::rotation`); the key that
/// signs the envelope is valid until `retire_at` (UTC ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotate {
    pub public_key: String,
    pub proof: String,
    pub retire_at: Millis,
}

/// `tls.pin`, either way (SPEC §24): the sender presents the certificate
/// `tls_cert_sha256` from now on (or soon), and presented `previous`
/// until now; a receiver that pins the sender accepts both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPin {
    pub tls_cert_sha256: String,
    pub previous: String,
}

/// `record.handover`, a record's authority → its counterpart (SPEC §25):
/// a record the sender kept with a partner that had no node, as it stands,
/// its history included; `was` is the id the partner had there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordHandover {
    pub record: crate::state::Record,
    pub was: NodeId,
}

/// `lead.offer`, vendor → partner: a lead offered for acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadOffer {
    pub customer: Customer,
    pub country: String,
    pub region: String,
    pub product_lines: Vec<String>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub estimated_value: Option<Money>,
    pub source: String,
    pub campaign: String,
    pub notes: String,
    /// The offer lapses if not accepted by this time (UTC milliseconds).
    pub accept_by: Millis,
}

/// `lead.accept`, partner → vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadAccept {
    pub note: String,
}

/// Why a partner declines a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    NoCapacity,
    OutOfTerritory,
    NotAFit,
    Duplicate,
    Other,
}

/// `lead.decline`, partner → vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadDecline {
    pub reason: DeclineReason,
    pub note: String,
}

/// The progress a partner reports on an accepted lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadProgress {
    Contacted,
    Qualified,
    Won,
    Lost,
}

/// `lead.update`, partner → vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadUpdate {
    pub status: LeadProgress,
    /// Required when won, null otherwise.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub won_value: Option<Money>,
    /// Required when won, null otherwise.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub won_on: Option<Date>,
    /// Required when lost, null otherwise.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub lost_reason: Option<String>,
    pub note: String,
}

/// `lead.expire`, vendor → partner: the offer lapsed unanswered; the vendor
/// takes the lead back (and may offer it to someone else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadExpire {
    pub note: String,
}

/// `lead.withdraw`, vendor → partner: the vendor takes the lead back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadWithdraw {
    pub reason: String,
    pub note: String,
}

/// `lead.register`, partner → vendor: deal registration of the partner's own
/// opportunity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadRegister {
    pub customer: Customer,
    pub country: String,
    pub region: String,
    pub product_lines: Vec<String>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub estimated_value: Option<Money>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub expected_close: Option<Date>,
    pub notes: String,
}

/// The vendor's answer to a deal registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationDecision {
    Approved,
    Rejected,
}

/// `lead.registration`, vendor → partner: the decision on a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadRegistration {
    pub decision: RegistrationDecision,
    /// The `created` time of the `lead.register` envelope it answers: with
    /// the vendor's signature it proves when the partner registered.
    pub registered_at: Millis,
    /// Required when approved: the registration is exclusive until this date.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub exclusive_until: Option<Date>,
    /// Required (non-empty) when rejected, null when approved.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub reason: Option<String>,
    pub note: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    /// Line number, unique within the order, from 1.
    pub line: u32,
    pub sku: String,
    pub quantity: i64,
    /// Agreed unit price in the order currency's minor units.
    pub unit_price: i64,
}

/// `order.place`, partner → vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlace {
    /// The partner's own order reference.
    pub reference: String,
    pub currency: Currency,
    /// The id of the vendor's price list the prices come from.
    pub price_list: String,
    /// Order discount in basis points (0–10,000), from the price list.
    pub discount_bp: i64,
    /// Tax rate in basis points (0–10,000), from the price list.
    pub tax_rate_bp: i64,
    pub lines: Vec<OrderLine>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub requested_date: Option<Date>,
    pub ship_to: Address,
    /// The lead this order fulfils, if any.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub lead: Option<RecordId>,
}

/// The vendor's answer for one order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckLine {
    pub line: u32,
    /// Quantity accepted, 0 to the quantity ordered; 0 rejects the line.
    pub accepted: i64,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub confirmed_date: Option<Date>,
    /// Why the line is not (fully) accepted; null when fully accepted.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub reason: Option<String>,
}

/// `order.ack`, vendor → partner: answers every line of the order once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderAck {
    pub lines: Vec<AckLine>,
    pub note: String,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceLine {
    pub line: u32,
    pub quantity: i64,
}

/// `order.invoice`, vendor → partner: bills shipped quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInvoice {
    /// The vendor's invoice number, unique within the order.
    pub invoice: String,
    pub issued_on: Date,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub due_on: Option<Date>,
    pub lines: Vec<InvoiceLine>,
}

/// A product of the vendor's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    pub name_en: String,
    pub name_zh: String,
    /// Unit of sale, like `pcs` or `set`.
    pub unit: String,
    pub warranty_months: i64,
    pub active: bool,
}

/// One price of a price list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub sku: String,
    /// Minor units of the list's currency, net of tax.
    pub unit_price: i64,
}

/// A price list: for one partner tier and currency, valid for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    pub id: String,
    pub tier: String,
    pub currency: Currency,
    pub valid_from: Date,
    /// Last valid day, inclusive; null: open-ended.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub valid_to: Option<Date>,
    pub discount_bp: i64,
    pub tax_rate_bp: i64,
    pub prices: Vec<Price>,
}

/// `catalog.publish`, vendor → partner: the vendor's current catalog and the
/// price lists of the partner's tier. Replaces the previous version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPublish {
    /// Increases with every publication.
    pub version: i64,
    pub products: Vec<Product>,
    pub price_lists: Vec<PriceList>,
}

/// Most products in a catalog, and prices in a price list.
pub const MAX_PRODUCTS: usize = 5_000;

fn basis_points(path: &str, value: i64) -> Result<(), BodyError> {
    if (0..=10_000).contains(&value) {
        Ok(())
    } else {
        Err(field_error(path, "must be 0 to 10000 basis points"))
    }
}

/// One line of a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipLine {
    pub line: u32,
    pub quantity: i64,
    /// Serial numbers shipped: empty, or exactly `quantity` of them.
    pub serials: Vec<String>,
}

/// `order.ship`, vendor → partner: one (possibly partial) shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderShip {
    /// Shipment id, unique within the order.
    pub shipment: String,
    pub carrier: String,
    pub tracking: String,
    pub lines: Vec<ShipLine>,
}

/// A quantity of one order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineQuantity {
    pub line: u32,
    pub quantity: i64,
}

/// `order.cancel`, partner → vendor: cancels quantities not yet shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCancel {
    pub lines: Vec<LineQuantity>,
    pub reason: String,
}

/// `warranty.claim`, partner → vendor; sent again to answer `need_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarrantyClaim {
    pub sku: String,
    pub serial: String,
    pub purchase_date: Date,
    pub description: String,
    pub customer: Customer,
    pub attachments: Vec<Attachment>,
    /// Set when a distributor forwards its partner's claim up the chain.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub forwarded: Option<Forwarded>,
}

/// A file referenced by a message: its SHA-256 (lowercase hex), name, type
/// and size. The bytes travel separately; the hash binds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub sha256: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
}

/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 10;

fn attachments(path: &str, list: &[Attachment]) -> Result<(), BodyError> {
    if list.len() > MAX_ATTACHMENTS {
        return Err(field_error(
            path,
            format!("must have at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    for (i, a) in list.iter().enumerate() {
        let at = |f: &str| format!("{path}[{i}].{f}");
        sha256_hex(&at("sha256"), &a.sha256)?;
        text(&at("name"), &a.name, SHORT_TEXT, true)?;
        text(&at("content_type"), &a.content_type, SHORT_TEXT, true)?;
        if a.size < 0 {
            return Err(field_error(at("size"), "must not be negative"));
        }
    }
    Ok(())
}

/// Where a forwarded claim came from: the original claimant's node, the
/// subject there, and the original signed envelope's exact bytes
/// (base64url), so the claim keeps its history up the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forwarded {
    pub from: crate::ids::NodeId,
    pub subject: RecordId,
    pub envelope: String,
}

/// Largest attachment that travels in `attachment.put`, in bytes (its
/// base64url form must fit an envelope).
pub const MAX_ATTACHMENT_BYTES: usize = 512 * 1024;

/// `attachment.put`, either party: the bytes of a file a following message
/// references by SHA-256. Concerns no record; sent on the same stream before
/// the message that references it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentPut {
    pub sha256: String,
    pub content_type: String,
    /// The file, unpadded base64url.
    pub data: String,
}

impl AttachmentPut {
    /// The file's bytes, checked against the SHA-256.
    pub fn bytes(&self) -> Result<Vec<u8>, BodyError> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.data)
            .map_err(|_| field_error("body.data", "must be unpadded base64url"))?;
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(field_error(
                "body.data",
                format!("must be at most {MAX_ATTACHMENT_BYTES} bytes"),
            ));
        }
        if crate::crypto::Sha256Hash::of(&bytes).to_string() != self.sha256 {
            return Err(field_error("body.sha256", "does not match the data"));
        }
        Ok(bytes)
    }

    /// The message for `bytes`.
    pub fn of(content_type: &str, bytes: &[u8]) -> AttachmentPut {
        use base64::Engine;
        AttachmentPut {
            sha256: crate::crypto::Sha256Hash::of(bytes).to_string(),
            content_type: content_type.to_string(),
            data: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        }
    }
}

/// What a `mdf.budget` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetAction {
    /// Opens the budget with its first allocation.
    Allocate,
    TopUp,
    /// Moves what is still available (unreserved) to expired.
    Expire,
}

/// `mdf.budget`, vendor → partner: allocate, top up or expire a budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdfBudget {
    pub action: BudgetAction,
    /// Positive for allocate and top_up; ignored (0) for expire.
    pub amount: i64,
    pub currency: Currency,
    /// The period the budget covers, like `2027-Q1` or `2027`.
    pub period: String,
    /// Whether approvals may take the available balance below zero.
    pub allow_overdraw: bool,
    /// After this day the vendor's node expires what is unused; null: only
    /// by hand. Set by allocate, changed by top_up.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub expires_on: Option<Date>,
    pub note: String,
}

/// `mdf.request`, partner → vendor: an activity to pre-approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdfRequest {
    /// The partner's id for the request, unique within the budget.
    pub request: String,
    pub activity: String,
    pub starts_on: Date,
    pub ends_on: Date,
    pub expected_cost: Money,
    pub expected_leads: i64,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub expected_revenue: Option<Money>,
    pub campaign: String,
}

/// A vendor's yes or no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MdfVerdict {
    Approved,
    Rejected,
}

/// `mdf.decision`, vendor → partner: pre-approval (possibly of a lower
/// amount, reserving it) or rejection of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdfDecision {
    pub request: String,
    pub decision: MdfVerdict,
    /// The amount approved (≤ the expected cost); 0 when rejected.
    pub amount: i64,
    pub reason: String,
}

/// `mdf.claim`, partner → vendor: the partner's expense invoice against an
/// approved request, with proof of performance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdfClaim {
    pub claim: String,
    pub request: String,
    pub amount: Money,
    pub invoice_number: String,
    pub invoice_date: Date,
    pub proofs: Vec<Attachment>,
}

/// The vendor's answer to an MDF claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MdfClaimVerdict {
    Approved,
    Partial,
    Rejected,
}

/// `mdf.claim_decision`, vendor → partner: approve fully, partly (with a
/// reason) or reject. The signed approval is the partner's proof it will be
/// paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdfClaimDecision {
    pub claim: String,
    pub decision: MdfClaimVerdict,
    pub amount: i64,
    pub reason: String,
}

/// `mdf.paid`, vendor → partner: payment of an approved claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdfPaid {
    pub claim: String,
    pub amount: i64,
    pub reference: String,
    pub paid_on: Date,
}

/// `mdf.checkpoint`, either party: what the sender's ledger of the budget
/// (the subject) holds: entry count, the hash of every entry in order and
/// the balances. The receiver compares with its own ledger and rejects a
/// checkpoint that differs, naming the first differing entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdfCheckpoint {
    pub entries: i64,
    pub entry_hashes: Vec<String>,
    pub balances: std::collections::BTreeMap<String, i64>,
}

/// `warranty.fulfil`, vendor → partner: the approved remedy was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarrantyFulfil {
    /// RMA, shipment or credit note reference.
    pub reference: String,
    pub note: String,
}

/// The vendor's decision on a warranty claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarrantyOutcome {
    Repair,
    Replacement,
    Credit,
    NeedInfo,
    Reject,
}

/// `warranty.decision`, vendor → partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarrantyDecision {
    pub decision: WarrantyOutcome,
    /// Required for `credit` (greater than 0), null otherwise.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub credit: Option<Money>,
    /// Required for `need_info` and `reject`.
    pub note: String,
}

/// How urgent a service request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

/// `service.open`, partner → vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceOpen {
    pub customer: Customer,
    pub sku: String,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub serial: Option<String>,
    pub problem: String,
    pub priority: Priority,
    pub attachments: Vec<Attachment>,
    /// Library resources cited (`resource.<publisher>.<id>`, ≤ 10); a body
    /// without the member reads as none.
    #[serde(default)]
    pub resources: Vec<RecordId>,
}

/// A status change carried by `service.update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceChange {
    InProgress,
    WaitingOnPartner,
    Resolved,
    Closed,
    Reopened,
}

/// `service.update`, either direction: a comment, a status change, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUpdate {
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub status: Option<ServiceChange>,
    pub comment: String,
    pub attachments: Vec<Attachment>,
    /// Library resources cited, as in `service.open`: staff answer with one.
    #[serde(default)]
    pub resources: Vec<RecordId>,
}

/// Most resources one service message cites.
pub const MAX_CITED: usize = 10;

fn cited(path: &str, resources: &[RecordId]) -> Result<(), BodyError> {
    if resources.len() > MAX_CITED {
        return Err(field_error(
            path,
            format!("must cite at most {MAX_CITED} resources"),
        ));
    }
    for (i, r) in resources.iter().enumerate() {
        if !r.as_str().starts_with("resource.") {
            return Err(field_error(
                format!("{path}[{i}]"),
                "must be a resource's subject",
            ));
        }
    }
    Ok(())
}

/// Largest file a resource may carry, in bytes (200 MiB). Its bytes are
/// fetched from the publisher, never sent in an envelope.
pub const MAX_RESOURCE_BYTES: i64 = 200 * 1024 * 1024;
/// Longest article of a resource, in characters (Markdown).
pub const MAX_ARTICLE: usize = 100_000;
/// Most tags on a resource.
pub const MAX_TAGS: usize = 20;
/// Longest link, in characters.
pub const MAX_LINK: usize = 2_000;

/// `resource.publish`, publisher → recipient: one resource of the shared
/// library (a file, a link or an article) in its current version. Any node
/// may publish to any of its peers; the publisher is the record's
/// authority. Sent again with a higher version to replace it (or to publish
/// a withdrawn one again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePublish {
    /// Increases with every publication of the resource.
    pub version: i64,
    pub title: String,
    pub summary: String,
    pub folder: String,
    pub tags: Vec<String>,
    /// The content's language (`en`, `zh-TW`, ...); empty: any.
    pub language: String,
    /// The days it is meant for (inclusive); null: open.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub valid_from: Option<Date>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub valid_to: Option<Date>,
    /// Exactly one of `file`, `link` and `article` is set.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub file: Option<Attachment>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub link: Option<String>,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub article: Option<String>,
    /// Set when the publisher passes on a resource it received: the first
    /// publisher's node, subject and signed `resource.publish` envelope.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub origin: Option<Forwarded>,
    /// A course (lessons and a quiz) instead of a file, link or article.
    /// Always written (null when absent); a body without the member reads
    /// as null, so resources published before courses existed still read.
    #[serde(default)]
    pub course: Option<Box<Course>>,
}

/// A course: lessons to study and a quiz the publisher grades. The answer
/// key never leaves the publisher; passing earns a certification it signs
/// (SPEC §16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Course {
    /// A short code tier requirements name (`cnc-basics`).
    pub code: String,
    /// The level a certification states (`basic`, `advanced`, ...).
    pub level: String,
    pub lessons: Vec<Lesson>,
    pub quiz: Quiz,
    /// How many days a certification counts; null: it does not expire.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub valid_days: Option<i64>,
    /// The course assigned to the recipient (personalised training): by
    /// when, and to whom there (empty: anyone); null: not assigned.
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub assigned: Option<Assignment>,
}

/// A course assigned to an organization, or one person there, with a due
/// date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    pub person: String,
    pub due: Date,
}

/// One lesson: Markdown text, perhaps with a link to study.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub title: String,
    pub text: String,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub link: Option<String>,
}

/// A quiz: each attempt draws `draw` questions from the pool (SPEC §16.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quiz {
    /// The percentage of drawn questions answered right needed to pass.
    pub pass_percent: i64,
    /// Attempts a person has; 0: no limit.
    pub attempts: i64,
    pub draw: i64,
    pub questions: Vec<Question>,
}

/// A question with its choices (never which are right).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub id: String,
    pub text: String,
    pub choices: Vec<String>,
    /// Several choices may be right (the answer must name exactly those).
    pub multiple: bool,
}

/// Most lessons in a course, questions in a pool, choices in a question.
pub const MAX_LESSONS: usize = 50;
pub const MAX_QUESTIONS: usize = 200;
pub const MAX_CHOICES: usize = 10;

impl Course {
    fn validate(&self, path: &str) -> Result<(), BodyError> {
        text(&format!("{path}.code"), &self.code, 50, true)?;
        if !self
            .code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(field_error(
                format!("{path}.code"),
                "must be letters, digits, - and _",
            ));
        }
        text(&format!("{path}.level"), &self.level, 50, true)?;
        if self.lessons.len() > MAX_LESSONS {
            return Err(field_error(
                format!("{path}.lessons"),
                format!("must have at most {MAX_LESSONS} lessons"),
            ));
        }
        for (i, l) in self.lessons.iter().enumerate() {
            text(
                &format!("{path}.lessons[{i}].title"),
                &l.title,
                SHORT_TEXT,
                true,
            )?;
            text(
                &format!("{path}.lessons[{i}].text"),
                &l.text,
                MAX_ARTICLE,
                false,
            )?;
            if let Some(link) = &l.link {
                web_link(&format!("{path}.lessons[{i}].link"), link)?;
            }
        }
        if let Some(a) = &self.assigned {
            text(
                &format!("{path}.assigned.person"),
                &a.person,
                SHORT_TEXT,
                false,
            )?;
        }
        if let Some(days) = self.valid_days
            && !(1..=36_600).contains(&days)
        {
            return Err(field_error(
                format!("{path}.valid_days"),
                "must be 1 to 36600 days, or null",
            ));
        }
        let q = &self.quiz;
        let qp = format!("{path}.quiz");
        if !(1..=100).contains(&q.pass_percent) {
            return Err(field_error(
                format!("{qp}.pass_percent"),
                "must be 1 to 100",
            ));
        }
        if !(0..=100).contains(&q.attempts) {
            return Err(field_error(format!("{qp}.attempts"), "must be 0 to 100"));
        }
        if q.questions.is_empty() || q.questions.len() > MAX_QUESTIONS {
            return Err(field_error(
                format!("{qp}.questions"),
                format!("must have 1 to {MAX_QUESTIONS} questions"),
            ));
        }
        if q.draw < 1 || q.draw as usize > q.questions.len() {
            return Err(field_error(
                format!("{qp}.draw"),
                "must be 1 to the number of questions",
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, question) in q.questions.iter().enumerate() {
            let at = format!("{qp}.questions[{i}]");
            text(&format!("{at}.id"), &question.id, 50, true)?;
            if !ids.insert(question.id.as_str()) {
                return Err(field_error(format!("{at}.id"), "is used twice"));
            }
            text(&format!("{at}.text"), &question.text, LONG_TEXT, true)?;
            if !(2..=MAX_CHOICES).contains(&question.choices.len()) {
                return Err(field_error(
                    format!("{at}.choices"),
                    format!("must have 2 to {MAX_CHOICES} choices"),
                ));
            }
            for (j, c) in question.choices.iter().enumerate() {
                text(&format!("{at}.choices[{j}]"), c, SHORT_TEXT * 5, true)?;
            }
        }
        Ok(())
    }
}

/// `quiz.submit`, learner → the course's publisher: a person's answers to
/// the questions drawn for this attempt (the record's subject seeds the
/// draw, SPEC §16.2). The publisher grades it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuizSubmit {
    /// The course's subject (`resource.<publisher>.<id>`) and version.
    pub course: RecordId,
    pub version: i64,
    /// The person taking it, as the learner's organization names them.
    pub learner: String,
    pub answers: Vec<QuizAnswer>,
}

/// The choices (indexes into the question's choices) picked for a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuizAnswer {
    pub question: String,
    pub choices: Vec<i64>,
}

/// `quiz.grade`, publisher → learner: the result, and the certification
/// document (base64url of its exact bytes) when passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuizGrade {
    pub correct: i64,
    pub total: i64,
    pub passed: bool,
    pub note: String,
    #[serde(deserialize_with = "canonical::required_nullable")]
    pub certification: Option<String>,
}

/// `scorecard.share`, vendor → partner: the partner's scorecard for a
/// period as the vendor computed it (SPEC §18.1); the partner's node
/// computes its own from its copies and shows whether they agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorecardShare {
    pub period: crate::scorecard::Period,
    pub figures: crate::scorecard::Scorecard,
}

/// `goal.propose`, either side: a joint goal for a period — a scorecard
/// figure and its target — naming the record's vendor (its authority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalPropose {
    pub vendor: crate::ids::NodeId,
    pub period: crate::scorecard::Period,
    pub metric: String,
    pub target: i64,
    pub owner: String,
    pub note: String,
}

/// `goal.counter`, the side that did not make the current proposal: other
/// terms for the same figure and period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalCounter {
    pub target: i64,
    pub owner: String,
    pub note: String,
}

/// `goal.accept`, the side that did not make the current proposal: agrees
/// to the terms it names (the current target, or it is refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalAccept {
    pub target: i64,
    pub note: String,
}

/// `goal.decline`, the side that did not make the current proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalDecline {
    pub note: String,
}

/// A period as a body carries it: one of SPEC §18 whose bounds match its
/// name.
fn period(path: &str, p: &crate::scorecard::Period) -> Result<(), BodyError> {
    match crate::scorecard::Period::parse(&p.name) {
        Ok(read) if read == *p => Ok(()),
        _ => Err(field_error(
            path,
            "must be a period (SPEC §18) whose from and to match its name",
        )),
    }
}

/// One question of a survey: its id (unique in the survey), its kind,
/// its text in both languages, and its choices (choice questions only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyQuestion {
    pub id: String,
    /// `nps` (0–10), `rating` (1–5), `single`, `multiple` or `text`.
    pub kind: String,
    pub text_en: String,
    pub text_zh: String,
    pub choices: Vec<SurveyChoice>,
    pub required: bool,
}

/// A choice of a `single` or `multiple` question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyChoice {
    pub id: String,
    pub en: String,
    pub zh: String,
}

/// `survey.send`, surveyor → recipient: a survey for the recipient's
/// people, answered until `closes_at`. `series` names the surveys whose
/// rounds are compared (a trend); `anonymous` asks the recipient's node to
/// send a pseudonym for each person, never a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveySend {
    pub series: String,
    pub round: String,
    pub title_en: String,
    pub title_zh: String,
    pub questions: Vec<SurveyQuestion>,
    pub closes_at: Millis,
    pub anonymous: bool,
}

/// One answer: the question's id and, by its kind, a score (`nps`,
/// `rating`), choice ids (`single`: one, `multiple`: any) or text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyAnswerItem {
    pub question: String,
    pub score: Option<i64>,
    pub choices: Vec<String>,
    pub text: String,
}

/// `survey.answer`, recipient → surveyor: one person's answers, once per
/// respondent (a name, or the pseudonym of an anonymous survey).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyAnswer {
    pub respondent: String,
    pub answers: Vec<SurveyAnswerItem>,
}

/// Questions a survey holds at most.
pub const MAX_SURVEY_QUESTIONS: usize = 50;
/// Choices a survey question offers at most.
pub const MAX_SURVEY_CHOICES: usize = 20;

/// A question's or choice's id: 1–40 ASCII letters, digits, `-` or `_`.
fn short_id(path: &str, id: &str) -> Result<(), BodyError> {
    if id.is_empty()
        || id.len() > 40
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(field_error(
            path,
            "must be 1–40 ASCII letters, digits, - or _",
        ));
    }
    Ok(())
}

fn survey_send(b: &SurveySend) -> Result<(), BodyError> {
    text("body.series", &b.series, SHORT_TEXT, true)?;
    text("body.round", &b.round, SHORT_TEXT, true)?;
    text("body.title_en", &b.title_en, SHORT_TEXT, true)?;
    text("body.title_zh", &b.title_zh, SHORT_TEXT, true)?;
    if b.questions.is_empty() || b.questions.len() > MAX_SURVEY_QUESTIONS {
        return Err(field_error(
            "body.questions",
            format!("1 to {MAX_SURVEY_QUESTIONS} questions"),
        ));
    }
    if b.closes_at <= 0 {
        return Err(field_error(
            "body.closes_at",
            "must be a time (ms) after 1970",
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, q) in b.questions.iter().enumerate() {
        let at = format!("body.questions[{i}]");
        short_id(&format!("{at}.id"), &q.id)?;
        if !ids.insert(q.id.as_str()) {
            return Err(field_error(
                format!("{at}.id"),
                "repeats another question's id",
            ));
        }
        text(&format!("{at}.text_en"), &q.text_en, SHORT_TEXT * 5, true)?;
        text(&format!("{at}.text_zh"), &q.text_zh, SHORT_TEXT * 5, true)?;
        let choice = matches!(q.kind.as_str(), "single" | "multiple");
        if !choice && !matches!(q.kind.as_str(), "nps" | "rating" | "text") {
            return Err(field_error(
                format!("{at}.kind"),
                "must be nps, rating, single, multiple or text",
            ));
        }
        if choice && (q.choices.len() < 2 || q.choices.len() > MAX_SURVEY_CHOICES) {
            return Err(field_error(
                format!("{at}.choices"),
                format!("2 to {MAX_SURVEY_CHOICES} choices"),
            ));
        }
        if !choice && !q.choices.is_empty() {
            return Err(field_error(
                format!("{at}.choices"),
                "only choice questions have choices",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, c) in q.choices.iter().enumerate() {
            short_id(&format!("{at}.choices[{j}].id"), &c.id)?;
            if !seen.insert(c.id.as_str()) {
                return Err(field_error(
                    format!("{at}.choices[{j}].id"),
                    "repeats another choice's id",
                ));
            }
            text(&format!("{at}.choices[{j}].en"), &c.en, SHORT_TEXT, true)?;
            text(&format!("{at}.choices[{j}].zh"), &c.zh, SHORT_TEXT, true)?;
        }
    }
    Ok(())
}

fn survey_answer(b: &SurveyAnswer) -> Result<(), BodyError> {
    text("body.respondent", &b.respondent, SHORT_TEXT, true)?;
    if b.answers.len() > MAX_SURVEY_QUESTIONS {
        return Err(field_error(
            "body.answers",
            format!("at most {MAX_SURVEY_QUESTIONS} answers"),
        ));
    }
    for (i, a) in b.answers.iter().enumerate() {
        short_id(&format!("body.answers[{i}].question"), &a.question)?;
        text(
            &format!("body.answers[{i}].text"),
            &a.text,
            LONG_TEXT,
            false,
        )?;
        if a.choices.len() > MAX_SURVEY_CHOICES {
            return Err(field_error(
                format!("body.answers[{i}].choices"),
                "too many choices",
            ));
        }
    }
    Ok(())
}

fn web_link(path: &str, link: &str) -> Result<(), BodyError> {
    let web = link.starts_with("https://") || link.starts_with("http://");
    if !web || link.chars().count() > MAX_LINK || link.chars().any(char::is_whitespace) {
        return Err(field_error(
            path,
            format!("must be an http(s) address without spaces, at most {MAX_LINK} characters"),
        ));
    }
    Ok(())
}

impl ResourcePublish {
    /// The content's form: `file`, `link`, `article` or `course`.
    pub fn format(&self) -> &'static str {
        if self.file.is_some() {
            "file"
        } else if self.link.is_some() {
            "link"
        } else if self.course.is_some() {
            "course"
        } else {
            "article"
        }
    }
}

/// `resource.withdraw`, publisher → recipient: the resource is no longer
/// offered (its history stays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceWithdraw {
    pub note: String,
}

/// Longest announcement text, in characters (Markdown).
pub const MAX_ANNOUNCEMENT: usize = 20_000;

/// `announcement.post`, publisher → recipient: an announcement, perhaps
/// asking to be acknowledged. Sent again with a higher version to correct
/// it; what the recipient already read or acknowledged stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementPost {
    pub version: i64,
    pub title: String,
    pub text: String,
    pub language: String,
    pub requires_ack: bool,
}

/// `announcement.ack`, recipient → publisher: someone at the recipient read
/// the announcement (`acknowledged` false) or acknowledged it (true).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementAck {
    pub acknowledged: bool,
    /// Who, as the recipient knows them (a name).
    pub by: String,
}

fn sha256_hex(path: &str, value: &str) -> Result<(), BodyError> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(field_error(path, "must be 64 lowercase hex digits"))
    }
}

fn forwarded(path: &str, f: &Forwarded) -> Result<(), BodyError> {
    if f.envelope.is_empty() || f.envelope.len() > 700_000 {
        return Err(field_error(
            format!("{path}.envelope"),
            "must be the original envelope, base64url, at most 700,000 characters",
        ));
    }
    Ok(())
}

impl ResourcePublish {
    fn validate(&self) -> Result<(), BodyError> {
        if self.version < 1 {
            return Err(field_error("body.version", "must be 1 or more"));
        }
        text("body.title", &self.title, SHORT_TEXT, true)?;
        text("body.summary", &self.summary, LONG_TEXT, false)?;
        text("body.folder", &self.folder, SHORT_TEXT, false)?;
        text("body.language", &self.language, 35, false)?;
        if self.tags.len() > MAX_TAGS {
            return Err(field_error(
                "body.tags",
                format!("must have at most {MAX_TAGS} tags"),
            ));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            text(&format!("body.tags[{i}]"), tag, 50, true)?;
        }
        if let (Some(from), Some(to)) = (&self.valid_from, &self.valid_to)
            && to < from
        {
            return Err(field_error("body.valid_to", "is before valid_from"));
        }
        let set = [
            self.file.is_some(),
            self.link.is_some(),
            self.article.is_some(),
            self.course.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(field_error(
                "body.file",
                "exactly one of file, link, article and course must be set",
            ));
        }
        if let Some(c) = &self.course {
            c.validate("body.course")?;
        }
        if let Some(f) = &self.file {
            sha256_hex("body.file.sha256", &f.sha256)?;
            text("body.file.name", &f.name, SHORT_TEXT, true)?;
            text("body.file.content_type", &f.content_type, SHORT_TEXT, true)?;
            if !(1..=MAX_RESOURCE_BYTES).contains(&f.size) {
                return Err(field_error(
                    "body.file.size",
                    format!("must be 1 to {MAX_RESOURCE_BYTES} bytes"),
                ));
            }
        }
        if let Some(link) = &self.link {
            web_link("body.link", link)?;
        }
        if let Some(article) = &self.article {
            text("body.article", article, MAX_ARTICLE, true)?;
        }
        if let Some(o) = &self.origin {
            forwarded("body.origin", o)?;
        }
        Ok(())
    }
}

macro_rules! messages {
    ($($variant:ident($body:ty) = $kind:literal,)*) => {
        /// A typed message: one variant per kind.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $($variant($body),)*
        }

        /// Every kind of protocol version 1, in SPEC.md order.
        pub const KINDS: &[&str] = &[$($kind,)*];

        impl Message {
            /// The kind's wire name.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Message::$variant(_) => $kind,)*
                }
            }

            /// Decodes and validates `body` as a message of `kind`.
            pub fn decode(kind: &str, body: &Value) -> Result<Message, BodyError> {
                let message = match kind {
                    $($kind => Message::$variant(decode_body::<$body>(body)?),)*
                    other => return Err(BodyError::UnknownKind(other.chars().take(64).collect())),
                };
                message.validate()?;
                Ok(message)
            }

            /// The body as a JSON value.
            pub fn body(&self) -> Result<Value, canonical::CanonicalError> {
                let value = match self {
                    $(Message::$variant(b) => serde_json::to_value(b),)*
                };
                value.map_err(|e| canonical::CanonicalError::Unrepresentable(e.to_string()))
            }
        }
    };
}

messages! {
    Ping(Ping) = "ping",
    KeyRotate(KeyRotate) = "key.rotate",
    TlsPin(TlsPin) = "tls.pin",
    LeadOffer(LeadOffer) = "lead.offer",
    LeadAccept(LeadAccept) = "lead.accept",
    LeadDecline(LeadDecline) = "lead.decline",
    LeadUpdate(LeadUpdate) = "lead.update",
    LeadExpire(LeadExpire) = "lead.expire",
    LeadWithdraw(LeadWithdraw) = "lead.withdraw",
    LeadRegister(LeadRegister) = "lead.register",
    LeadRegistration(LeadRegistration) = "lead.registration",
    OrderPlace(OrderPlace) = "order.place",
    OrderAck(OrderAck) = "order.ack",
    OrderShip(OrderShip) = "order.ship",
    OrderCancel(OrderCancel) = "order.cancel",
    OrderInvoice(OrderInvoice) = "order.invoice",
    CatalogPublish(CatalogPublish) = "catalog.publish",
    WarrantyClaim(WarrantyClaim) = "warranty.claim",
    WarrantyDecision(WarrantyDecision) = "warranty.decision",
    WarrantyFulfil(WarrantyFulfil) = "warranty.fulfil",
    ServiceOpen(ServiceOpen) = "service.open",
    ServiceUpdate(ServiceUpdate) = "service.update",
    AttachmentPut(AttachmentPut) = "attachment.put",
    MdfBudget(MdfBudget) = "mdf.budget",
    MdfRequest(MdfRequest) = "mdf.request",
    MdfDecision(MdfDecision) = "mdf.decision",
    MdfClaim(MdfClaim) = "mdf.claim",
    MdfClaimDecision(MdfClaimDecision) = "mdf.claim_decision",
    MdfPaid(MdfPaid) = "mdf.paid",
    MdfCheckpoint(MdfCheckpoint) = "mdf.checkpoint",
    ResourcePublish(ResourcePublish) = "resource.publish",
    ResourceWithdraw(ResourceWithdraw) = "resource.withdraw",
    AnnouncementPost(AnnouncementPost) = "announcement.post",
    AnnouncementAck(AnnouncementAck) = "announcement.ack",
    QuizSubmit(QuizSubmit) = "quiz.submit",
    QuizGrade(QuizGrade) = "quiz.grade",
    ScorecardShare(ScorecardShare) = "scorecard.share",
    GoalPropose(GoalPropose) = "goal.propose",
    GoalCounter(GoalCounter) = "goal.counter",
    GoalAccept(GoalAccept) = "goal.accept",
    GoalDecline(GoalDecline) = "goal.decline",
    SurveySend(SurveySend) = "survey.send",
    SurveyAnswer(SurveyAnswer) = "survey.answer",
    RecordHandover(RecordHandover) = "record.handover",
}

fn decode_body<T: DeserializeOwned>(body: &Value) -> Result<T, BodyError> {
    canonical::from_value_ref(body).map_err(|e| match e {
        DecodeError::Field { path, message } => BodyError::Field {
            path: path.replacen('$', "body", 1),
            message,
        },
        DecodeError::Syntax(e) => field_error("body", e.to_string()),
    })
}

fn unique_lines(lines: impl Iterator<Item = u32>) -> Result<(), BodyError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, line) in lines.enumerate() {
        if line == 0 {
            return Err(field_error(
                format!("body.lines[{i}].line"),
                "line numbers start at 1",
            ));
        }
        if !seen.insert(line) {
            return Err(field_error(
                format!("body.lines[{i}].line"),
                format!("line {line} appears twice"),
            ));
        }
    }
    if seen.is_empty() {
        return Err(field_error("body.lines", "must have at least one line"));
    }
    if seen.len() > MAX_LINES {
        return Err(field_error(
            "body.lines",
            format!("must have at most {MAX_LINES} lines"),
        ));
    }
    Ok(())
}

fn positive(path: String, quantity: i64) -> Result<(), BodyError> {
    if quantity <= 0 {
        return Err(field_error(path, "must be greater than 0"));
    }
    Ok(())
}

impl Message {
    /// Whether the message changes a record (`ping` and `attachment.put` do
    /// not).
    pub fn concerns_record(&self) -> bool {
        Self::kind_concerns_record(self.kind())
    }

    /// Whether messages of `kind` are about a shared record (all but `ping`
    /// and `attachment.put`).
    pub fn kind_concerns_record(kind: &str) -> bool {
        !matches!(kind, "ping" | "attachment.put" | "key.rotate" | "tls.pin")
    }

    /// Checks the rules a body must meet on its own (the state machines check
    /// the rules that depend on the record).
    fn validate(&self) -> Result<(), BodyError> {
        match self {
            Message::Ping(b) => text("body.note", &b.note, SHORT_TEXT, false),
            // The record is its authority's own, as it stands there; the
            // state machine checks who sends it to whom.
            Message::RecordHandover(_) => Ok(()),
            Message::TlsPin(b) => {
                for (path, hex) in [
                    ("body.tls_cert_sha256", &b.tls_cert_sha256),
                    ("body.previous", &b.previous),
                ] {
                    if hex.parse::<crate::Sha256Hash>().is_err() {
                        return Err(field_error(path, "must be 64 lowercase hex digits"));
                    }
                }
                Ok(())
            }
            Message::KeyRotate(b) => {
                if b.public_key.parse::<crate::PublicKey>().is_err() {
                    return Err(field_error(
                        "body.public_key",
                        "not a valid Ed25519 public key",
                    ));
                }
                if b.proof.parse::<crate::crypto::SignatureBytes>().is_err() {
                    return Err(field_error(
                        "body.proof",
                        "not a 64-byte signature in base64url",
                    ));
                }
                Ok(())
            }
            Message::LeadOffer(b) => {
                b.customer.validate("body.customer")?;
                country("body.country", &b.country)?;
                text("body.region", &b.region, SHORT_TEXT, false)?;
                for (i, line) in b.product_lines.iter().enumerate() {
                    text(&format!("body.product_lines[{i}]"), line, SHORT_TEXT, true)?;
                }
                if let Some(v) = &b.estimated_value {
                    money("body.estimated_value", v, false)?;
                }
                text("body.source", &b.source, SHORT_TEXT, false)?;
                text("body.campaign", &b.campaign, SHORT_TEXT, false)?;
                text("body.notes", &b.notes, LONG_TEXT, false)?;
                if b.accept_by < 0 {
                    return Err(field_error(
                        "body.accept_by",
                        "must be a UTC millisecond count",
                    ));
                }
                Ok(())
            }
            Message::LeadAccept(b) => text("body.note", &b.note, LONG_TEXT, false),
            Message::LeadDecline(b) => text("body.note", &b.note, LONG_TEXT, false),
            Message::LeadUpdate(b) => {
                text("body.note", &b.note, LONG_TEXT, false)?;
                let won = b.status == LeadProgress::Won;
                let lost = b.status == LeadProgress::Lost;
                match (&b.won_value, won) {
                    (Some(v), true) => money("body.won_value", v, false)?,
                    (None, true) => {
                        return Err(field_error(
                            "body.won_value",
                            "is required when status is won",
                        ));
                    }
                    (Some(_), false) => {
                        return Err(field_error(
                            "body.won_value",
                            "must be null unless status is won",
                        ));
                    }
                    (None, false) => {}
                }
                if b.won_on.is_some() != won {
                    return Err(field_error(
                        "body.won_on",
                        "is required when status is won, null otherwise",
                    ));
                }
                match (&b.lost_reason, lost) {
                    (Some(r), true) => text("body.lost_reason", r, SHORT_TEXT, true),
                    (None, false) => Ok(()),
                    _ => Err(field_error(
                        "body.lost_reason",
                        "is required when status is lost, null otherwise",
                    )),
                }
            }
            Message::LeadExpire(b) => text("body.note", &b.note, LONG_TEXT, false),
            Message::LeadWithdraw(b) => {
                text("body.reason", &b.reason, SHORT_TEXT, true)?;
                text("body.note", &b.note, LONG_TEXT, false)
            }
            Message::LeadRegister(b) => {
                b.customer.validate("body.customer")?;
                country("body.country", &b.country)?;
                text("body.region", &b.region, SHORT_TEXT, false)?;
                if b.product_lines.is_empty() {
                    return Err(field_error(
                        "body.product_lines",
                        "must name at least one product line",
                    ));
                }
                for (i, line) in b.product_lines.iter().enumerate() {
                    text(&format!("body.product_lines[{i}]"), line, SHORT_TEXT, true)?;
                }
                if let Some(v) = &b.estimated_value {
                    money("body.estimated_value", v, false)?;
                }
                text("body.notes", &b.notes, LONG_TEXT, false)
            }
            Message::LeadRegistration(b) => {
                text("body.note", &b.note, LONG_TEXT, false)?;
                let approved = b.decision == RegistrationDecision::Approved;
                if b.exclusive_until.is_some() != approved {
                    return Err(field_error(
                        "body.exclusive_until",
                        "is required when approved, null when rejected",
                    ));
                }
                match (&b.reason, approved) {
                    (None, true) => Ok(()),
                    (Some(r), false) => text("body.reason", r, SHORT_TEXT, true),
                    _ => Err(field_error(
                        "body.reason",
                        "is required when rejected, null when approved",
                    )),
                }
            }
            Message::OrderPlace(b) => {
                text("body.reference", &b.reference, SHORT_TEXT, false)?;
                text("body.price_list", &b.price_list, SHORT_TEXT, true)?;
                basis_points("body.discount_bp", b.discount_bp)?;
                basis_points("body.tax_rate_bp", b.tax_rate_bp)?;
                unique_lines(b.lines.iter().map(|l| l.line))?;
                for (i, l) in b.lines.iter().enumerate() {
                    text(&format!("body.lines[{i}].sku"), &l.sku, SHORT_TEXT, true)?;
                    positive(format!("body.lines[{i}].quantity"), l.quantity)?;
                    if l.unit_price < 0 {
                        return Err(field_error(
                            format!("body.lines[{i}].unit_price"),
                            "must not be negative",
                        ));
                    }
                }
                text("body.ship_to.name", &b.ship_to.name, SHORT_TEXT, true)?;
                country("body.ship_to.country", &b.ship_to.country)
            }
            Message::OrderAck(b) => {
                unique_lines(b.lines.iter().map(|l| l.line))?;
                for (i, l) in b.lines.iter().enumerate() {
                    if l.accepted < 0 {
                        return Err(field_error(
                            format!("body.lines[{i}].accepted"),
                            "must not be negative",
                        ));
                    }
                }
                text("body.note", &b.note, LONG_TEXT, false)
            }
            Message::OrderShip(b) => {
                text("body.shipment", &b.shipment, SHORT_TEXT, true)?;
                unique_lines(b.lines.iter().map(|l| l.line))?;
                for (i, l) in b.lines.iter().enumerate() {
                    positive(format!("body.lines[{i}].quantity"), l.quantity)?;
                    if !l.serials.is_empty() && l.serials.len() as i64 != l.quantity {
                        return Err(field_error(
                            format!("body.lines[{i}].serials"),
                            "must be empty or list exactly `quantity` serial numbers",
                        ));
                    }
                }
                Ok(())
            }
            Message::OrderInvoice(b) => {
                text("body.invoice", &b.invoice, SHORT_TEXT, true)?;
                unique_lines(b.lines.iter().map(|l| l.line))?;
                for (i, l) in b.lines.iter().enumerate() {
                    positive(format!("body.lines[{i}].quantity"), l.quantity)?;
                }
                Ok(())
            }
            Message::CatalogPublish(b) => {
                if b.version < 1 {
                    return Err(field_error("body.version", "must be 1 or more"));
                }
                if b.products.len() > MAX_PRODUCTS {
                    return Err(field_error(
                        "body.products",
                        format!("must have at most {MAX_PRODUCTS} products"),
                    ));
                }
                let mut skus = std::collections::BTreeSet::new();
                for (i, p) in b.products.iter().enumerate() {
                    let at = |f: &str| format!("body.products[{i}].{f}");
                    text(&at("sku"), &p.sku, SHORT_TEXT, true)?;
                    text(&at("name_en"), &p.name_en, SHORT_TEXT, true)?;
                    text(&at("name_zh"), &p.name_zh, SHORT_TEXT, false)?;
                    text(&at("unit"), &p.unit, SHORT_TEXT, true)?;
                    if !(0..=600).contains(&p.warranty_months) {
                        return Err(field_error(at("warranty_months"), "must be 0 to 600"));
                    }
                    if !skus.insert(p.sku.as_str()) {
                        return Err(field_error(
                            at("sku"),
                            format!("SKU {:?} appears twice", p.sku),
                        ));
                    }
                }
                let mut ids = std::collections::BTreeSet::new();
                for (i, l) in b.price_lists.iter().enumerate() {
                    let at = |f: &str| format!("body.price_lists[{i}].{f}");
                    text(&at("id"), &l.id, SHORT_TEXT, true)?;
                    if !ids.insert(l.id.as_str()) {
                        return Err(field_error(
                            at("id"),
                            format!("price list {:?} appears twice", l.id),
                        ));
                    }
                    text(&at("tier"), &l.tier, SHORT_TEXT, false)?;
                    basis_points(&at("discount_bp"), l.discount_bp)?;
                    basis_points(&at("tax_rate_bp"), l.tax_rate_bp)?;
                    if l.valid_to.as_ref().is_some_and(|to| to < &l.valid_from) {
                        return Err(field_error(at("valid_to"), "is before valid_from"));
                    }
                    if l.prices.len() > MAX_PRODUCTS {
                        return Err(field_error(
                            at("prices"),
                            format!("must have at most {MAX_PRODUCTS} prices"),
                        ));
                    }
                    let mut priced = std::collections::BTreeSet::new();
                    for (j, p) in l.prices.iter().enumerate() {
                        if !skus.contains(p.sku.as_str()) {
                            return Err(field_error(
                                format!("body.price_lists[{i}].prices[{j}].sku"),
                                format!("SKU {:?} is not in the catalog", p.sku),
                            ));
                        }
                        if !priced.insert(p.sku.as_str()) {
                            return Err(field_error(
                                format!("body.price_lists[{i}].prices[{j}].sku"),
                                format!("SKU {:?} is priced twice", p.sku),
                            ));
                        }
                        if p.unit_price < 0 {
                            return Err(field_error(
                                format!("body.price_lists[{i}].prices[{j}].unit_price"),
                                "must not be negative",
                            ));
                        }
                    }
                }
                Ok(())
            }
            Message::OrderCancel(b) => {
                unique_lines(b.lines.iter().map(|l| l.line))?;
                for (i, l) in b.lines.iter().enumerate() {
                    positive(format!("body.lines[{i}].quantity"), l.quantity)?;
                }
                text("body.reason", &b.reason, LONG_TEXT, false)
            }
            Message::WarrantyClaim(b) => {
                text("body.sku", &b.sku, SHORT_TEXT, true)?;
                text("body.serial", &b.serial, SHORT_TEXT, true)?;
                text("body.description", &b.description, LONG_TEXT, true)?;
                attachments("body.attachments", &b.attachments)?;
                if let Some(f) = &b.forwarded {
                    forwarded("body.forwarded", f)?;
                }
                b.customer.validate("body.customer")
            }
            Message::MdfBudget(b) => {
                text("body.period", &b.period, SHORT_TEXT, true)?;
                text("body.note", &b.note, LONG_TEXT, false)?;
                if let (Some(expires), Some(starts)) = (&b.expires_on, period_start(&b.period))
                    && expires.as_str() < starts.as_str()
                {
                    return Err(field_error(
                        "body.expires_on",
                        format!("is before the period {} starts ({starts})", b.period),
                    ));
                }
                match b.action {
                    BudgetAction::Expire if b.amount != 0 => {
                        Err(field_error("body.amount", "must be 0 for expire"))
                    }
                    BudgetAction::Allocate | BudgetAction::TopUp if b.amount <= 0 => {
                        Err(field_error("body.amount", "must be greater than 0"))
                    }
                    _ => Ok(()),
                }
            }
            Message::MdfRequest(b) => {
                text("body.request", &b.request, SHORT_TEXT, true)?;
                text("body.activity", &b.activity, LONG_TEXT, true)?;
                text("body.campaign", &b.campaign, SHORT_TEXT, false)?;
                money("body.expected_cost", &b.expected_cost, true)?;
                if b.ends_on < b.starts_on {
                    return Err(field_error("body.ends_on", "is before starts_on"));
                }
                if b.expected_leads < 0 {
                    return Err(field_error("body.expected_leads", "must not be negative"));
                }
                if let Some(r) = &b.expected_revenue {
                    money("body.expected_revenue", r, false)?;
                }
                Ok(())
            }
            Message::MdfDecision(b) => {
                text("body.request", &b.request, SHORT_TEXT, true)?;
                text(
                    "body.reason",
                    &b.reason,
                    LONG_TEXT,
                    b.decision == MdfVerdict::Rejected,
                )?;
                match b.decision {
                    MdfVerdict::Approved if b.amount <= 0 => Err(field_error(
                        "body.amount",
                        "must be greater than 0 when approved",
                    )),
                    MdfVerdict::Rejected if b.amount != 0 => {
                        Err(field_error("body.amount", "must be 0 when rejected"))
                    }
                    _ => Ok(()),
                }
            }
            Message::MdfClaim(b) => {
                text("body.claim", &b.claim, SHORT_TEXT, true)?;
                text("body.request", &b.request, SHORT_TEXT, true)?;
                text("body.invoice_number", &b.invoice_number, SHORT_TEXT, true)?;
                money("body.amount", &b.amount, true)?;
                attachments("body.proofs", &b.proofs)
            }
            Message::MdfClaimDecision(b) => {
                text("body.claim", &b.claim, SHORT_TEXT, true)?;
                let needs_reason = b.decision != MdfClaimVerdict::Approved;
                text("body.reason", &b.reason, LONG_TEXT, needs_reason)?;
                match b.decision {
                    MdfClaimVerdict::Rejected if b.amount != 0 => {
                        Err(field_error("body.amount", "must be 0 when rejected"))
                    }
                    MdfClaimVerdict::Approved | MdfClaimVerdict::Partial if b.amount <= 0 => {
                        Err(field_error("body.amount", "must be greater than 0"))
                    }
                    _ => Ok(()),
                }
            }
            Message::MdfPaid(b) => {
                text("body.claim", &b.claim, SHORT_TEXT, true)?;
                text("body.reference", &b.reference, SHORT_TEXT, true)?;
                positive("body.amount".into(), b.amount)
            }
            Message::MdfCheckpoint(b) => {
                if b.entries < 0 || b.entry_hashes.len() as i64 != b.entries {
                    return Err(field_error(
                        "body.entry_hashes",
                        "must list one hash per entry",
                    ));
                }
                Ok(())
            }
            Message::AttachmentPut(b) => {
                text("body.content_type", &b.content_type, SHORT_TEXT, true)?;
                b.bytes().map(|_| ())
            }
            Message::ResourcePublish(b) => b.validate(),
            Message::ResourceWithdraw(b) => text("body.note", &b.note, LONG_TEXT, false),
            Message::AnnouncementPost(b) => {
                if b.version < 1 {
                    return Err(field_error("body.version", "must be 1 or more"));
                }
                text("body.title", &b.title, SHORT_TEXT, true)?;
                text("body.text", &b.text, MAX_ANNOUNCEMENT, true)?;
                text("body.language", &b.language, 35, false)
            }
            Message::AnnouncementAck(b) => text("body.by", &b.by, SHORT_TEXT, true),
            Message::QuizSubmit(b) => {
                if b.version < 1 {
                    return Err(field_error("body.version", "must be 1 or more"));
                }
                text("body.learner", &b.learner, SHORT_TEXT, true)?;
                if b.answers.len() > MAX_QUESTIONS {
                    return Err(field_error(
                        "body.answers",
                        format!("must have at most {MAX_QUESTIONS} answers"),
                    ));
                }
                for (i, a) in b.answers.iter().enumerate() {
                    text(
                        &format!("body.answers[{i}].question"),
                        &a.question,
                        50,
                        true,
                    )?;
                    if a.choices.len() > MAX_CHOICES
                        || a.choices
                            .iter()
                            .any(|c| !(0..MAX_CHOICES as i64).contains(c))
                    {
                        return Err(field_error(
                            format!("body.answers[{i}].choices"),
                            format!(
                                "must be at most {MAX_CHOICES} choices, each 0 to {}",
                                MAX_CHOICES - 1
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Message::GoalPropose(b) => {
                period("body.period", &b.period)?;
                crate::scorecard::check_figure(&b.metric)
                    .map_err(|m| field_error("body.metric", m))?;
                positive("body.target".into(), b.target)?;
                text("body.owner", &b.owner, SHORT_TEXT, false)?;
                text("body.note", &b.note, LONG_TEXT, false)
            }
            Message::GoalCounter(b) => {
                positive("body.target".into(), b.target)?;
                text("body.owner", &b.owner, SHORT_TEXT, false)?;
                text("body.note", &b.note, LONG_TEXT, false)
            }
            Message::GoalAccept(b) => {
                positive("body.target".into(), b.target)?;
                text("body.note", &b.note, LONG_TEXT, false)
            }
            Message::GoalDecline(b) => text("body.note", &b.note, LONG_TEXT, false),
            Message::SurveySend(b) => survey_send(b),
            Message::SurveyAnswer(b) => survey_answer(b),
            Message::ScorecardShare(b) => {
                period("body.period", &b.period)?;
                b.figures
                    .validate()
                    .map_err(|m| field_error("body.figures", m))
            }
            Message::QuizGrade(b) => {
                if b.total < 0
                    || b.total > MAX_QUESTIONS as i64
                    || !(0..=b.total).contains(&b.correct)
                {
                    return Err(field_error(
                        "body.correct",
                        "must be 0 to total, total at most the pool's size",
                    ));
                }
                text("body.note", &b.note, LONG_TEXT, false)?;
                match &b.certification {
                    Some(_) if !b.passed => Err(field_error(
                        "body.certification",
                        "must be null unless passed",
                    )),
                    Some(c)
                        if c.len() > crate::certification::MAX_CERTIFICATION_BYTES * 4 / 3 + 4 =>
                    {
                        Err(field_error("body.certification", "is too long"))
                    }
                    _ => Ok(()),
                }
            }
            Message::WarrantyFulfil(b) => {
                text("body.reference", &b.reference, SHORT_TEXT, true)?;
                text("body.note", &b.note, LONG_TEXT, false)
            }
            Message::WarrantyDecision(b) => {
                match (b.decision, &b.credit) {
                    (WarrantyOutcome::Credit, Some(m)) => money("body.credit", m, true)?,
                    (WarrantyOutcome::Credit, None) => {
                        return Err(field_error(
                            "body.credit",
                            "is required for a credit decision",
                        ));
                    }
                    (_, Some(_)) => {
                        return Err(field_error(
                            "body.credit",
                            "must be null unless the decision is credit",
                        ));
                    }
                    _ => {}
                }
                let needs_note = matches!(
                    b.decision,
                    WarrantyOutcome::NeedInfo | WarrantyOutcome::Reject
                );
                text("body.note", &b.note, LONG_TEXT, needs_note)
            }
            Message::ServiceOpen(b) => {
                b.customer.validate("body.customer")?;
                text("body.sku", &b.sku, SHORT_TEXT, true)?;
                attachments("body.attachments", &b.attachments)?;
                cited("body.resources", &b.resources)?;
                text("body.problem", &b.problem, LONG_TEXT, true)
            }
            Message::ServiceUpdate(b) => {
                attachments("body.attachments", &b.attachments)?;
                cited("body.resources", &b.resources)?;
                text(
                    "body.comment",
                    &b.comment,
                    LONG_TEXT,
                    b.status.is_none() && b.attachments.is_empty() && b.resources.is_empty(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_budget_period_starts_on_its_first_day() {
        let start = |p: &str| super::period_start(p).map(|d| d.to_string());
        assert_eq!(start("2027"), Some("2027-01-01".into()));
        assert_eq!(start("2027-Q3"), Some("2027-07-01".into()));
        assert_eq!(start("2027-H2"), Some("2027-07-01".into()));
        assert_eq!(start("2027-11"), Some("2027-11-01".into()));
        for free in ["spring", "2027-Q5", "2027-13", "27-Q1", "2027-1", "2027 Q1"] {
            assert_eq!(start(free), None, "{free}");
        }
    }

    #[test]
    fn a_budget_may_not_expire_before_its_period_starts() {
        let budget = |expires: &str| {
            serde_json::json!({"action": "allocate", "amount": 1000, "currency": "TWD", "period": "2027-Q2",
                "allow_overdraw": false, "expires_on": expires, "note": ""})
        };
        let refused = Message::decode("mdf.budget", &budget("2027-03-31"));
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("body.expires_on")),
            "{refused:?}"
        );
        assert!(Message::decode("mdf.budget", &budget("2027-04-01")).is_ok());
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kind_is_a_typed_error() {
        assert_eq!(
            Message::decode("lead.teleport", &json!({})),
            Err(BodyError::UnknownKind("lead.teleport".into()))
        );
    }

    #[test]
    fn body_errors_name_the_field() {
        let body = json!({"reference": "PO-1", "currency": "TWD", "requested_date": null,
            "price_list": "tw", "discount_bp": 0, "tax_rate_bp": 500,
            "ship_to": {"name": "A", "street": "", "city": "", "postal_code": "", "region": "", "country": "TW"},
            "lead": null,
            "lines": [{"line": 1, "sku": "X", "quantity": 2, "unit_price": 100},
                      {"line": 2, "sku": "Y", "quantity": -1, "unit_price": 100}]});
        match Message::decode("order.place", &body) {
            Err(BodyError::Field { path, .. }) => assert_eq!(path, "body.lines[1].quantity"),
            other => panic!("expected a field error, got {other:?}"),
        }
        let mut missing = body.clone();
        missing.as_object_mut().map(|m| m.remove("lead"));
        match Message::decode("order.place", &missing) {
            Err(BodyError::Field { message, .. }) => assert!(message.contains("lead"), "{message}"),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn won_update_needs_value_and_date() {
        let body = json!({"status": "won", "won_value": null, "won_on": null, "lost_reason": null, "note": ""});
        assert!(matches!(
            Message::decode("lead.update", &body),
            Err(BodyError::Field { path, .. }) if path == "body.won_value"
        ));
    }

    #[test]
    fn every_kind_is_listed_once() {
        let mut kinds = KINDS.to_vec();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), 44);
    }
}
