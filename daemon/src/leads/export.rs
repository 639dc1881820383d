//! The vendor's leads as CSV, a page at a time, so that an export of any
//! size is streamed with bounded memory: the header, then each page of
//! rows as it is read (`GET /api/v1/leads/export`). The columns are the
//! import's ([`super::intake::CSV_COLUMNS`]) after the lead's id, creation
//! time (UTC, RFC 3339), stage and partner.

use super::LeadView;
use super::intake::CSV_COLUMNS;

/// Leads per page of an export.
pub const PAGE: usize = 500;

/// The header row.
pub fn header() -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut columns = vec!["id", "created", "stage", "partner"];
    columns.extend_from_slice(CSV_COLUMNS);
    // Writing to memory cannot fail.
    let _ = w.write_record(&columns);
    w.into_inner().unwrap_or_default()
}

/// The rows of `views`, in order.
pub fn rows(views: &[LeadView]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for v in views {
        let i = &v.doc.input;
        let created = jiff::Timestamp::from_millisecond(v.doc.created)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let (value, currency) = match &i.estimated_value {
            Some(m) => (m.decimal(), m.currency.to_string()),
            None => (String::new(), String::new()),
        };
        let _ = w.write_record([
            v.doc.id.as_str(),
            created.as_str(),
            v.stage(),
            v.partner().unwrap_or(""),
            i.customer.company.as_str(),
            i.customer.contact.as_str(),
            i.customer.email.as_str(),
            i.customer.phone.as_str(),
            i.country.as_str(),
            i.region.as_str(),
            i.product_lines.join(";").as_str(),
            value.as_str(),
            currency.as_str(),
            i.source.as_str(),
            i.campaign.as_str(),
            if i.consent { "yes" } else { "no" },
            i.notes.as_str(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}
