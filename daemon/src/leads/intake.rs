//! What a lead is made of when it comes in — from the web form, the JSON API
//! or a CSV file — and the checks it must pass first. Errors name the field
//! (and for CSV the row) and carry a catalog key for the web view.

use guanxi_protocol::messages::Customer;
use guanxi_protocol::money::{Currency, Money};
use serde::{Deserialize, Serialize};

/// Longest short text, as on the wire.
const SHORT: usize = guanxi_protocol::messages::SHORT_TEXT;
/// Longest notes, as on the wire.
const LONG: usize = guanxi_protocol::messages::LONG_TEXT;
/// Most product lines on one lead.
const MAX_PRODUCT_LINES: usize = 20;
/// Most rows one CSV import takes.
pub const MAX_IMPORT_ROWS: usize = 5_000;

/// A lead's content, as the vendor keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadInput {
    pub customer: Customer,
    /// ISO 3166-1 alpha-2, uppercase.
    pub country: String,
    pub region: String,
    pub product_lines: Vec<String>,
    pub estimated_value: Option<Money>,
    pub source: String,
    pub campaign: String,
    /// The end customer agreed that its data may be shared with a partner.
    /// Without it the lead is never sent to anyone.
    pub consent: bool,
    pub notes: String,
}

/// A field that is wrong: its name, a catalog key, and English detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub key: &'static str,
    pub detail: String,
}

/// A CSV row that is wrong (row 1 is the header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub row: u64,
    pub field: String,
    pub key: &'static str,
    pub detail: String,
}

fn too_long(s: &str, max: usize) -> bool {
    s.chars().count() > max
}

impl LeadInput {
    /// Every problem with the lead; empty when it may be stored.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |field, key, detail: &str| {
            errors.push(FieldError {
                field,
                key,
                detail: detail.to_string(),
            })
        };
        let c = &self.customer;
        if c.company.trim().is_empty() {
            bad(
                "company",
                "error.required",
                "the end customer's company is required",
            );
        }
        for (field, value) in [
            ("company", &c.company),
            ("contact", &c.contact),
            ("email", &c.email),
            ("phone", &c.phone),
            ("region", &self.region),
            ("source", &self.source),
            ("campaign", &self.campaign),
        ] {
            if too_long(value, SHORT) {
                bad(field, "error.too_long", "at most 200 characters");
            }
        }
        if !c.email.is_empty() && !looks_like_email(&c.email) {
            bad("email", "error.email", "not an e-mail address");
        }
        if !(self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_uppercase())) {
            bad(
                "country",
                "error.country",
                "a two-letter ISO 3166 code like TW",
            );
        }
        if self.product_lines.is_empty() {
            bad(
                "product_lines",
                "error.required",
                "name at least one product line",
            );
        } else if self.product_lines.len() > MAX_PRODUCT_LINES
            || self
                .product_lines
                .iter()
                .any(|l| l.trim().is_empty() || too_long(l, SHORT))
        {
            bad(
                "product_lines",
                "error.product_lines",
                "1 to 20 product lines, none empty",
            );
        }
        if let Some(v) = &self.estimated_value
            && v.amount < 0
        {
            bad("estimated_value", "error.amount", "must not be negative");
        }
        if too_long(&self.notes, LONG) {
            bad("notes", "error.too_long", "at most 10,000 characters");
        }
        errors
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// The lead as typed into the web form or a CSV row: all text.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LeadForm {
    #[serde(default)]
    pub company: String,
    #[serde(default)]
    pub contact: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub region: String,
    /// Separated by `;`, `,` or new lines.
    #[serde(default)]
    pub product_lines: String,
    /// A decimal like `125000.00`, empty when unknown.
    #[serde(default)]
    pub estimated_value: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub campaign: String,
    /// `yes`/`no` (also `true`/`false`, `1`/`0`, `on` from a checkbox).
    #[serde(default)]
    pub consent: String,
    #[serde(default)]
    pub notes: String,
}

impl LeadForm {
    /// Reads the form into a lead, or every field that is wrong.
    pub fn parse(&self) -> Result<LeadInput, Vec<FieldError>> {
        let mut errors = Vec::new();
        let consent = match self.consent.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "1" | "on" => true,
            "no" | "n" | "false" | "0" | "" => false,
            _ => {
                errors.push(FieldError {
                    field: "consent",
                    key: "error.consent",
                    detail: "use yes or no".into(),
                });
                false
            }
        };
        let estimated_value = match (self.estimated_value.trim(), self.currency.trim()) {
            ("", _) => None,
            (_, "") => {
                errors.push(FieldError {
                    field: "currency",
                    key: "error.currency",
                    detail: "a currency code like TWD is needed with an amount".into(),
                });
                None
            }
            (amount, code) => match code.to_ascii_uppercase().parse::<Currency>() {
                Err(detail) => {
                    errors.push(FieldError {
                        field: "currency",
                        key: "error.currency",
                        detail,
                    });
                    None
                }
                Ok(currency) => match Money::parse_decimal(amount, currency) {
                    Ok(m) => Some(m),
                    Err(detail) => {
                        errors.push(FieldError {
                            field: "estimated_value",
                            key: "error.amount",
                            detail,
                        });
                        None
                    }
                },
            },
        };
        let input = LeadInput {
            customer: Customer {
                company: self.company.trim().to_string(),
                contact: self.contact.trim().to_string(),
                email: self.email.trim().to_string(),
                phone: self.phone.trim().to_string(),
            },
            country: self.country.trim().to_ascii_uppercase(),
            region: self.region.trim().to_string(),
            product_lines: split_list(&self.product_lines),
            estimated_value,
            source: self.source.trim().to_string(),
            campaign: self.campaign.trim().to_string(),
            consent,
            notes: self.notes.trim().to_string(),
        };
        errors.extend(input.check());
        if errors.is_empty() {
            Ok(input)
        } else {
            Err(errors)
        }
    }

    /// The form showing an existing lead (for re-display).
    pub fn from_input(input: &LeadInput) -> LeadForm {
        let (amount, currency) = match &input.estimated_value {
            Some(m) => (m.decimal(), m.currency.to_string()),
            None => (String::new(), String::new()),
        };
        LeadForm {
            company: input.customer.company.clone(),
            contact: input.customer.contact.clone(),
            email: input.customer.email.clone(),
            phone: input.customer.phone.clone(),
            country: input.country.clone(),
            region: input.region.clone(),
            product_lines: input.product_lines.join("; "),
            estimated_value: amount,
            currency,
            source: input.source.clone(),
            campaign: input.campaign.clone(),
            consent: if input.consent { "yes" } else { "no" }.into(),
            notes: input.notes.clone(),
        }
    }
}

/// Splits a list typed as text: `;`, `,` or new lines; trimmed, no empties,
/// first occurrence kept.
pub fn split_list(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in text.split([';', ',', '\n']) {
        let part = part.trim();
        if !part.is_empty() && !out.iter().any(|p| p.eq_ignore_ascii_case(part)) {
            out.push(part.to_string());
        }
    }
    out
}

/// The CSV columns, in the order a template lists them.
pub const CSV_COLUMNS: &[&str] = &[
    "company",
    "contact",
    "email",
    "phone",
    "country",
    "region",
    "product_lines",
    "estimated_value",
    "currency",
    "source",
    "campaign",
    "consent",
    "notes",
];

/// Columns a CSV file must have.
const CSV_REQUIRED: &[&str] = &["company", "country", "product_lines", "consent"];

/// Reads a CSV file (UTF-8, header row, comma separated; a UTF-8 BOM is
/// allowed). All or nothing: every row must be valid, or the answer lists
/// every wrong row and field and nothing is imported.
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<LeadInput>, Vec<RowError>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let file_error = |row: u64, detail: String| {
        vec![RowError {
            row,
            field: String::new(),
            key: "error.csv",
            detail,
        }]
    };
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_ascii_lowercase()).collect(),
        Err(e) => return Err(file_error(1, e.to_string())),
    };
    let mut errors = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            errors.push(RowError {
                row: 1,
                field: h.clone(),
                key: "error.csv_column",
                detail: format!(
                    "column {} ({h:?}) is not one of: {}",
                    i + 1,
                    CSV_COLUMNS.join(", ")
                ),
            });
        } else if headers[..i].contains(h) {
            errors.push(RowError {
                row: 1,
                field: h.clone(),
                key: "error.csv_column",
                detail: format!("column {h:?} appears twice"),
            });
        }
    }
    for required in CSV_REQUIRED {
        if !headers.iter().any(|h| h == required) {
            errors.push(RowError {
                row: 1,
                field: required.to_string(),
                key: "error.csv_column",
                detail: format!("the required column {required:?} is missing"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut leads = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i as u64 + 2;
        if leads.len() + errors.len() >= MAX_IMPORT_ROWS {
            errors.push(RowError {
                row,
                field: String::new(),
                key: "error.csv",
                detail: format!("at most {MAX_IMPORT_ROWS} rows per import"),
            });
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    row,
                    field: String::new(),
                    key: "error.csv",
                    detail: e.to_string(),
                });
                continue;
            }
        };
        let mut form = LeadForm::default();
        for (h, value) in headers.iter().zip(record.iter()) {
            let slot = match h.as_str() {
                "company" => &mut form.company,
                "contact" => &mut form.contact,
                "email" => &mut form.email,
                "phone" => &mut form.phone,
                "country" => &mut form.country,
                "region" => &mut form.region,
                "product_lines" => &mut form.product_lines,
                "estimated_value" => &mut form.estimated_value,
                "currency" => &mut form.currency,
                "source" => &mut form.source,
                "campaign" => &mut form.campaign,
                "consent" => &mut form.consent,
                _ => &mut form.notes,
            };
            *slot = value.to_string();
        }
        if form.consent.trim().is_empty() {
            errors.push(RowError {
                row,
                field: "consent".into(),
                key: "error.consent",
                detail: "say yes or no: may the customer's data be shared with a partner?".into(),
            });
            continue;
        }
        match form.parse() {
            Ok(lead) => leads.push(lead),
            Err(field_errors) => errors.extend(field_errors.into_iter().map(|e| RowError {
                row,
                field: e.field.to_string(),
                key: e.key,
                detail: e.detail,
            })),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if leads.is_empty() {
        return Err(file_error(
            2,
            "the file has no rows after the header".into(),
        ));
    }
    Ok(leads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Any upload answers with leads or with row errors, never a panic;
        /// a header line followed by junk as well.
        #[test]
        fn any_csv_is_read_or_refused_by_row(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            rows in "[a-zA-Z0-9,;\"\n 好-]{0,300}",
        ) {
            let _ = parse_csv(&bytes);
            let with_header = format!("company,country,product_lines,consent,estimated_value,currency,email\n{rows}");
            if let Err(errors) = parse_csv(with_header.as_bytes()) {
                prop_assert!(!errors.is_empty());
            }
        }
    }

    #[test]
    fn csv_is_all_or_nothing_and_names_row_and_field() {
        let good = "company,country,product_lines,consent,estimated_value,currency,email\n\
                    Contoso,tw,cnc;laser,yes,125000.50,TWD,it@contoso.tw\n\
                    \"Fabrikam, Ltd\",JP,cnc,no,,,\n";
        let leads = parse_csv(good.as_bytes()).expect("valid file");
        assert_eq!(leads.len(), 2);
        assert_eq!(leads[0].country, "TW");
        assert_eq!(leads[0].product_lines, vec!["cnc", "laser"]);
        assert_eq!(
            leads[0].estimated_value.as_ref().map(|m| m.amount),
            Some(12_500_050)
        );
        assert_eq!(leads[1].customer.company, "Fabrikam, Ltd");
        assert!(!leads[1].consent);

        let bad = "company,country,product_lines,consent,estimated_value,currency\n\
                   Contoso,TW,cnc,yes,12.345,TWD\n\
                   ,TW,cnc,yes,,\n\
                   Initech,Taiwan,,maybe,,\n";
        let errors = parse_csv(bad.as_bytes()).expect_err("bad rows");
        let found: Vec<(u64, &str)> = errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (2, "estimated_value"),
                (3, "company"),
                (4, "consent"),
                (4, "country"),
                (4, "product_lines")
            ]
        );
        let missing = parse_csv(b"company,colour\nX,red\n").expect_err("columns");
        assert!(missing.iter().any(|e| e.field == "colour"));
        assert!(missing.iter().any(|e| e.field == "consent"));
        assert!(parse_csv(b"company,country,product_lines,consent\n").is_err());
        assert!(parse_csv(b"company,country,product_lines,consent\nA,TW,x\n").is_err());
    }
}
