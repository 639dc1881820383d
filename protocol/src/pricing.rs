//! Prices and totals: which price list is in force, whether an order's lines
//! match it, and the order total rule. Pure integer arithmetic on minor units;
//! every step checked against ±(2^53−1).
//!
//! The total rule (SPEC §13):
//!
//! ```text
//! line total = quantity × unit price
//! subtotal   = Σ line totals
//! discount   = round_half_up(subtotal × discount_bp / 10000)
//! net        = subtotal − discount
//! tax        = round_half_up(net × tax_rate_bp / 10000)
//! total      = net + tax
//! ```
//! Discount and tax apply to the order (or invoice) as a whole, once, so line
//! rounding never accumulates.

use crate::messages::{CatalogPublish, OrderPlace, PriceList};
use crate::money::{self, Currency, Date, Overflow};
use serde::{Deserialize, Serialize};

/// The totals of a set of lines, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub total: i64,
}

/// `round_half_up(value × bp / 10000)` for value ≥ 0, exactly.
fn share(value: i64, bp: i64) -> Result<i64, Overflow> {
    if value < 0 || !(0..=10_000).contains(&bp) {
        return Err(Overflow);
    }
    let exact = i128::from(value) * i128::from(bp);
    let rounded = (exact + 5_000) / 10_000;
    i64::try_from(rounded).map_err(|_| Overflow)
}

/// The totals of (quantity, unit price) lines with an order's rates.
pub fn totals(
    lines: impl IntoIterator<Item = (i64, i64)>,
    discount_bp: i64,
    tax_rate_bp: i64,
) -> Result<Totals, Overflow> {
    let mut subtotal = 0i64;
    for (quantity, price) in lines {
        subtotal = money::add(subtotal, money::mul(quantity, price)?)?;
    }
    if subtotal < 0 {
        return Err(Overflow);
    }
    let discount = share(subtotal, discount_bp)?;
    let net = money::add(subtotal, -discount)?;
    let tax = share(net, tax_rate_bp)?;
    Ok(Totals {
        subtotal,
        discount,
        tax,
        total: money::add(net, tax)?,
    })
}

/// The price list in force on `day` for `currency`: valid that day; among
/// several, the one that started last (then the greatest id).
pub fn in_force<'a>(
    lists: &'a [PriceList],
    currency: &Currency,
    day: &Date,
) -> Option<&'a PriceList> {
    lists
        .iter()
        .filter(|l| &l.currency == currency && &l.valid_from <= day)
        .filter(|l| l.valid_to.as_ref().is_none_or(|to| day <= to))
        .max_by(|a, b| a.valid_from.cmp(&b.valid_from).then(a.id.cmp(&b.id)))
}

/// What is wrong with an order against a catalog: `line` 0 for the whole
/// order (currency, price list), else the line number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineProblem {
    pub line: u32,
    /// `no_price_list`, `price_list`, `rates`, `unknown_sku`, `inactive`,
    /// `not_in_price_list`, `wrong_price`.
    pub code: String,
    pub message: String,
}

impl LineProblem {
    fn new(line: u32, code: &str, message: String) -> LineProblem {
        LineProblem {
            line,
            code: code.into(),
            message,
        }
    }
}

/// Checks `order` against `catalog` (with the price lists the ordering
/// partner may use) on `day`. Empty when every line is right.
pub fn check_order(catalog: &CatalogPublish, order: &OrderPlace, day: &Date) -> Vec<LineProblem> {
    let mut problems = Vec::new();
    let Some(list) = in_force(&catalog.price_lists, &order.currency, day) else {
        problems.push(LineProblem::new(
            0,
            "no_price_list",
            format!("no price list in {} is in force on {day}", order.currency),
        ));
        return problems;
    };
    if list.id != order.price_list {
        problems.push(LineProblem::new(
            0,
            "price_list",
            format!(
                "the price list in force on {day} is {:?}, not {:?}",
                list.id, order.price_list
            ),
        ));
    }
    if list.discount_bp != order.discount_bp || list.tax_rate_bp != order.tax_rate_bp {
        problems.push(LineProblem::new(
            0,
            "rates",
            format!(
                "discount and tax are {} and {} basis points in {:?}, not {} and {}",
                list.discount_bp, list.tax_rate_bp, list.id, order.discount_bp, order.tax_rate_bp
            ),
        ));
    }
    problems.extend(
        order
            .lines
            .iter()
            .filter_map(|l| check_line(catalog, list, l.line, &l.sku, Some(l.unit_price))),
    );
    problems
}

/// Checks one line against the catalog and the price list in force: the
/// SKU is known, still sold and priced in `list`, and `unit_price` (when
/// the buyer gave one) is the list's.
pub fn check_line(
    catalog: &CatalogPublish,
    list: &PriceList,
    line: u32,
    sku: &str,
    unit_price: Option<i64>,
) -> Option<LineProblem> {
    let Some(product) = catalog.products.iter().find(|p| p.sku == sku) else {
        return Some(LineProblem::new(
            line,
            "unknown_sku",
            format!("line {line}: unknown SKU {sku:?}"),
        ));
    };
    if !product.active {
        return Some(LineProblem::new(
            line,
            "inactive",
            format!("line {line}: {sku} is no longer sold"),
        ));
    }
    match list.prices.iter().find(|p| p.sku == sku) {
        None => Some(LineProblem::new(
            line,
            "not_in_price_list",
            format!("line {line}: {sku} has no price in {:?}", list.id),
        )),
        Some(p) if unit_price.is_some_and(|u| u != p.unit_price) => Some(LineProblem::new(
            line,
            "wrong_price",
            format!(
                "line {line}: unit price {} differs from the list price {} of {sku}",
                unit_price.unwrap_or_default(),
                p.unit_price
            ),
        )),
        Some(_) => None,
    }
}

/// The problems as one message, for a signed rejection.
pub fn describe(problems: &[LineProblem]) -> String {
    problems
        .iter()
        .map(|p| p.message.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_up_rounding_on_the_whole_order() {
        // 3 × 333 = 999; 10 % discount = 99.9 → 100; net 899; 5 % tax = 44.95 → 45.
        let t = totals([(3, 333)], 1_000, 500).expect("fits");
        assert_eq!(
            t,
            Totals {
                subtotal: 999,
                discount: 100,
                tax: 45,
                total: 944
            }
        );
        assert_eq!(totals([], 0, 0).expect("empty"), Totals::default());
        assert!(totals([(9_007_199_254_740_991, 2)], 0, 0).is_err());
        assert!(totals([(9_007_199_254_740_991, 1)], 0, 10_000).is_err());
    }
}
