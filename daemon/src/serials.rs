//! Serial numbers this node sold, looked up one serial at a time: those
//! shipped on its orders as vendor (index entries `ser␟<serial>` in
//! `record_index`, written by the engine with every order it saves) and
//! those staff registered for sales outside orders (the `serials` table).
//! A warranty claim's checks read one serial, never every order.

use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Order as ScanOrder, Read, Store, StoreError, Tables};
use guanxi_protocol::Millis;
use guanxi_protocol::money::Date;
use guanxi_protocol::state::Order;
use serde::{Deserialize, Serialize};

const SEP: char = '\u{1f}';

fn shipped_key(serial: &str) -> String {
    format!("ser{SEP}{serial}")
}

/// A serial shipped by this node: SKU, ship day, the buyer's record key,
/// and when (the latest shipment of a serial counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    pub sku: String,
    pub day: Date,
    pub key: String,
    pub at: Millis,
}

/// After the engine saved `order` (this node its vendor) under `key`:
/// records the serials of its shipments, unless a later shipment of the
/// same serial is already recorded.
pub fn order_saved(t: &mut Tables<'_>, key: &str, order: &Order) -> Result<(), EngineError> {
    for shipment in &order.shipments {
        let Some(day) = crate::orders::day_of(shipment.at) else {
            continue;
        };
        for (line, _, serials) in &shipment.lines {
            let sku = order
                .lines
                .iter()
                .find(|l| l.line == *line)
                .map(|l| l.sku.clone())
                .unwrap_or_default();
            for serial in serials {
                let entry = shipped_key(serial.trim());
                let known: Option<Shipped> = t
                    .doc(Doc::RecordIndex, &entry)?
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if known
                    .as_ref()
                    .is_some_and(|k| (k.at, k.key.as_str()) > (shipment.at, key))
                {
                    continue;
                }
                let now = Shipped {
                    sku: sku.clone(),
                    day: day.clone(),
                    key: key.to_string(),
                    at: shipment.at,
                };
                if known.as_ref() != Some(&now) {
                    let json = serde_json::to_vec(&now)
                        .map_err(|e| EngineError::Corrupt(e.to_string()))?;
                    t.put_doc(Doc::RecordIndex, &entry, &json)?;
                }
            }
        }
    }
    Ok(())
}

/// Before the engine forgets `order` kept under `key` (handed over, SPEC
/// §25): the serials whose latest shipment it holds are no longer known
/// there (the order saved under its new key records them again).
pub fn order_removed(t: &mut Tables<'_>, key: &str, order: &Order) -> Result<(), EngineError> {
    for shipment in &order.shipments {
        for (_, _, serials) in &shipment.lines {
            for serial in serials {
                let entry = shipped_key(serial.trim());
                let known: Option<Shipped> = parse(t.doc(Doc::RecordIndex, &entry)?);
                if known.is_some_and(|k| k.key == key) {
                    t.delete_doc(Doc::RecordIndex, &entry)?;
                }
            }
        }
    }
    Ok(())
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: Option<Vec<u8>>) -> Option<T> {
    bytes.and_then(|b| serde_json::from_slice(&b).ok())
}

/// Where and when this node last shipped `serial`, if it did.
pub fn shipped(read: &Read, serial: &str) -> Result<Option<Shipped>, StoreError> {
    Ok(parse(
        read.doc(Doc::RecordIndex, &shipped_key(serial.trim()))?,
    ))
}

/// [`shipped`] inside the engine's write transaction.
pub fn shipped_in(t: &Tables<'_>, serial: &str) -> Result<Option<Shipped>, EngineError> {
    Ok(parse(t.doc(Doc::RecordIndex, &shipped_key(serial.trim()))?))
}

/// A serial sold outside this node's orders, registered by staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialRegistration {
    pub serial: String,
    pub sku: String,
    /// The sale or installation date the warranty runs from.
    pub date: Date,
    /// The partner's directory id, if sold through one.
    pub partner: Option<String>,
}

/// The registration of `serial`, if staff registered it.
pub fn registered(read: &Read, serial: &str) -> Result<Option<SerialRegistration>, StoreError> {
    Ok(parse(read.doc(Doc::Serial, serial.trim())?))
}

/// Up to `limit` registrations in serial order after `after`, and the
/// serial the next page starts after when more follow.
pub fn registered_page(
    read: &Read,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<SerialRegistration>, Option<String>), StoreError> {
    let page = read.docs_page(Doc::Serial, "", after, ScanOrder::Forward, limit + 1)?;
    let more = page.len() > limit;
    let list: Vec<SerialRegistration> = page
        .into_iter()
        .take(limit)
        .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
        .collect();
    let next = if more {
        list.last().map(|r| r.serial.clone())
    } else {
        None
    };
    Ok((list, next))
}

/// Adds or replaces registrations (by serial), each one key: the cost is
/// the number registered, not the number already known.
pub fn register(t: &mut Tables<'_>, new: &[SerialRegistration]) -> Result<usize, EngineError> {
    for r in new {
        let mut r = r.clone();
        r.serial = r.serial.trim().to_string();
        let json = serde_json::to_vec(&r).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        t.put_doc(Doc::Serial, &r.serial, &json)?;
    }
    Ok(new.len())
}

/// The settings document older stores kept every registration in.
const OLD_KEY: &str = "serials";

/// Moves registrations from an older store's single settings document to
/// one entry per serial (a migration; nothing to do on a current store).
/// Answers how many moved.
pub fn migrate(store: &Store) -> Result<usize, EngineError> {
    let Some(bytes) = store.read()?.doc(Doc::Setting, OLD_KEY)? else {
        return Ok(0);
    };
    let old: Vec<SerialRegistration> = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Corrupt(format!("settings/{OLD_KEY}: {e}")))?;
    store.transact(|t| -> Result<usize, EngineError> {
        let n = register(t, &old)?;
        t.delete_doc(Doc::Setting, OLD_KEY)?;
        Ok(n)
    })
}
