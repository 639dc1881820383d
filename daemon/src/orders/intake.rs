//! Order and catalog input typed by people: order lines as CSV
//! (`sku,quantity`), products and prices as CSV, percentages as basis
//! points. All or nothing: every problem is reported with its row, and
//! nothing is taken unless all rows are right.

use super::LineRequest;
use guanxi_protocol::messages::{Price, Product};
use guanxi_protocol::money::{Currency, Money};

/// A problem in typed input: its row (1 = first line) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    pub row: u64,
    /// What is wrong, as a message catalog key (`rows.quantity`).
    #[serde(skip)]
    pub key: &'static str,
    /// The value the message names (`{value}` in the catalog), if any.
    #[serde(skip)]
    pub value: String,
    /// The problem in English (API answers).
    pub message: String,
}

impl RowError {
    fn new(
        row: u64,
        key: &'static str,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> RowError {
        RowError {
            row,
            key,
            value: value.into(),
            message: message.into(),
        }
    }
}

fn rows(text: &str) -> Vec<(u64, Result<csv::StringRecord, String>)> {
    let body = text.trim_start_matches('\u{feff}');
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body.as_bytes());
    reader
        .records()
        .enumerate()
        .map(|(i, r)| {
            // A row is the line of the text it starts on (blank lines
            // count), as the person sees it in the box.
            let start = match &r {
                Ok(r) => r.position().map(|p| p.byte()),
                Err(e) => e.position().map(|p| p.byte()),
            };
            // The reader's position is where it began reading the record,
            // before any blank lines it skipped.
            let line = start.map(|b| {
                let (before, after) = body.split_at_checked(b as usize).unwrap_or((body, ""));
                let blank = after
                    .bytes()
                    .take_while(|c| c.is_ascii_whitespace())
                    .filter(|&c| c == b'\n')
                    .count();
                (before.bytes().filter(|&c| c == b'\n').count() + blank) as u64 + 1
            });
            (line.unwrap_or(i as u64 + 1), r.map_err(|e| e.to_string()))
        })
        .filter(|(_, r)| r.as_ref().map_or(true, |r| r.iter().any(|f| !f.is_empty())))
        .collect()
}

fn is_header(record: &csv::StringRecord, first: &str) -> bool {
    record.get(0).is_some_and(|f| f.eq_ignore_ascii_case(first))
}

/// Order lines as typed: the well-formed lines, the row each came from,
/// and the rows that could not be read. The well-formed lines are checked
/// against the catalog in the same round, so every problem shows at once.
#[derive(Debug, Default)]
pub struct TypedLines {
    pub lines: Vec<LineRequest>,
    /// `rows[i]` is the row of `lines[i]`.
    pub rows: Vec<u64>,
    pub errors: Vec<RowError>,
}

impl TypedLines {
    /// The row a line number came from (0 for the whole order).
    pub fn row_of(&self, line: u32) -> u64 {
        self.lines
            .iter()
            .position(|l| l.line == line)
            .and_then(|i| self.rows.get(i).copied())
            .unwrap_or(0)
    }
}

/// Order lines, one per row: `sku,quantity` (a header row `sku,quantity` is
/// allowed). Lines are numbered from 1 in order.
pub fn order_lines(text: &str) -> TypedLines {
    let mut lines = Vec::new();
    let mut at = Vec::new();
    let mut errors = Vec::new();
    for (row, record) in rows(text) {
        let record = match record {
            Ok(r) => r,
            Err(message) => {
                errors.push(RowError::new(row, "rows.unreadable", "", message));
                continue;
            }
        };
        if row == 1 && is_header(&record, "sku") {
            continue;
        }
        let sku = record.get(0).unwrap_or("").to_string();
        let quantity = record.get(1).unwrap_or("");
        if sku.is_empty() || record.len() != 2 {
            errors.push(RowError::new(
                row,
                "rows.order_line",
                "",
                "write one line per row: SKU, quantity",
            ));
            continue;
        }
        match quantity.parse::<i64>() {
            Ok(q) => {
                lines.push(LineRequest {
                    line: lines.len() as u32 + 1,
                    sku,
                    quantity: q,
                    unit_price: None,
                });
                at.push(row);
            }
            Err(_) => errors.push(RowError::new(
                row,
                "rows.quantity",
                quantity,
                format!("quantity {quantity:?} is not a whole number"),
            )),
        }
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(RowError::new(
            1,
            "rows.no_lines",
            "",
            "no lines: write one per row, SKU, quantity",
        ));
    }
    TypedLines {
        lines,
        rows: at,
        errors,
    }
}

fn yes_no(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Products, one per row: `sku,name_en,name_zh,unit,warranty_months,active`
/// (a header row starting with `sku` is allowed).
pub fn products(text: &str) -> Result<Vec<Product>, Vec<RowError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (row, record) in rows(text) {
        let record = match record {
            Ok(r) => r,
            Err(message) => {
                errors.push(RowError::new(row, "rows.unreadable", "", message));
                continue;
            }
        };
        if row == 1 && is_header(&record, "sku") {
            continue;
        }
        if record.len() != 6 {
            errors.push(RowError::new(
                row,
                "rows.product_fields",
                record.len().to_string(),
                format!(
                    "{} fields; write sku, name (English), name (中文), unit, warranty months, active (yes/no)",
                    record.len()
                ),
            ));
            continue;
        }
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        let Ok(warranty_months) = field(4).parse::<i64>() else {
            errors.push(RowError::new(
                row,
                "rows.warranty",
                field(4),
                format!("warranty months {:?} is not a whole number", field(4)),
            ));
            continue;
        };
        let Some(active) = yes_no(&field(5)) else {
            errors.push(RowError::new(
                row,
                "rows.active",
                field(5),
                format!("active {:?}: write yes or no", field(5)),
            ));
            continue;
        };
        out.push(Product {
            sku: field(0),
            name_en: field(1),
            name_zh: field(2),
            unit: field(3),
            warranty_months,
            active,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Prices, one per row: `sku,unit_price` with the price as a decimal in
/// `currency` (a header row starting with `sku` is allowed).
pub fn prices(text: &str, currency: &Currency) -> Result<Vec<Price>, Vec<RowError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (row, record) in rows(text) {
        let record = match record {
            Ok(r) => r,
            Err(message) => {
                errors.push(RowError::new(row, "rows.unreadable", "", message));
                continue;
            }
        };
        if row == 1 && is_header(&record, "sku") {
            continue;
        }
        let (Some(sku), Some(price), 2) = (record.get(0), record.get(1), record.len()) else {
            errors.push(RowError::new(
                row,
                "rows.price_line",
                "",
                "write one price per row: SKU, unit price",
            ));
            continue;
        };
        match Money::parse_decimal(price, currency.clone()) {
            Ok(m) => out.push(Price {
                sku: sku.to_string(),
                unit_price: m.amount,
            }),
            Err(message) => errors.push(RowError::new(row, "rows.price", price, message)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A percentage like `5`, `5.5` or `12.25` in basis points (0–10000).
pub fn basis_points(text: &str) -> Result<i64, String> {
    let t = text.trim().trim_end_matches('%').trim();
    let t = if t.is_empty() { "0" } else { t };
    let two: Currency = "EUR".parse().map_err(|e: String| e)?;
    let bp = Money::parse_decimal(t, two)
        .map_err(|_| format!("{text:?} is not a percentage like 5 or 12.25"))?
        .amount;
    if (0..=10_000).contains(&bp) {
        Ok(bp)
    } else {
        Err(format!("{text:?} must be between 0 and 100 %"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Order lines, products and prices from any text: read or refused
        /// row by row, never a panic.
        #[test]
        fn any_text_is_read_or_refused_by_row(text in "[a-zA-Z0-9,;.%\"\n 好-]{0,300}") {
            let eur: Currency = "EUR".parse().expect("currency");
            let _ = order_lines(&text);
            let _ = products(&text);
            let _ = prices(&text, &eur);
            let _ = basis_points(&text);
        }
    }

    #[test]
    fn lines_products_and_prices_report_every_bad_row() {
        let typed = order_lines("sku,quantity\nCNC-5X, 2\n\nSVC,1\n");
        assert!(typed.errors.is_empty());
        assert_eq!(typed.rows, vec![2, 4]);
        assert_eq!(typed.row_of(2), 4);
        assert_eq!(
            typed
                .lines
                .iter()
                .map(|l| (l.line, l.sku.as_str(), l.quantity))
                .collect::<Vec<_>>(),
            vec![(1, "CNC-5X", 2), (2, "SVC", 1)]
        );
        let bad = order_lines("CNC-5X,two\nSVC\nSVC,3\n");
        assert_eq!(
            bad.errors.iter().map(|e| e.row).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!((bad.lines.len(), bad.rows.as_slice()), (1, &[3][..]));
        assert!(!order_lines("  \n").errors.is_empty());

        let p = products("sku,name_en,name_zh,unit,warranty_months,active\nCNC-5X,5-axis CNC,五軸加工機,pcs,24,yes\n")
            .expect("products");
        assert_eq!(
            (p[0].name_zh.as_str(), p[0].warranty_months, p[0].active),
            ("五軸加工機", 24, true)
        );
        let bad = products("A,a,,pcs,twelve,yes\nB,b,,pcs,12,maybe\nC,c\n").expect_err("bad");
        assert_eq!(bad.iter().map(|e| e.row).collect::<Vec<_>>(), vec![1, 2, 3]);

        let twd: Currency = "TWD".parse().expect("code");
        let prices_ok = prices("sku,unit_price\nCNC-5X,\"1,000,000.50\"\n", &twd).expect("prices");
        assert_eq!(prices_ok[0].unit_price, 100_000_050);
        assert_eq!(
            prices("CNC-5X,1.005\n", &twd).expect_err("3 decimals")[0].row,
            1
        );

        assert_eq!(basis_points("5"), Ok(500));
        assert_eq!(basis_points("12.25 %"), Ok(1225));
        assert_eq!(basis_points(""), Ok(0));
        assert!(basis_points("101").is_err());
        assert!(basis_points("-1").is_err());
    }
}
