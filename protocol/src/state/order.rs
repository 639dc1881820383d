//! The order state machine.
//!
//! ```text
//! order.place → placed ─order.ack→ acknowledged ─order.ship→ partially_shipped ─order.ship→ shipped
//!                  └──ack accepting nothing→ rejected
//! order.cancel (partner): cancels quantities not yet shipped, in placed, acknowledged or partially_shipped;
//! when nothing is left open the order becomes cancelled (nothing shipped) or shipped.
//! order.invoice (vendor): bills shipped, not yet invoiced quantities (any state once something shipped).
//! refused: set at the sender only, when the vendor's signed receipt rejected order.place.
//! ```
//! Totals follow [`crate::pricing::totals`] with the order's discount and tax
//! rates.
//! The partner (sender of `order.place`) places and cancels; the vendor
//! acknowledges (once, answering every line) and ships. Quantities are
//! checked per line: nobody ships more than was accepted and not cancelled.

use super::{Context, StateError, record_exists, require_sender, unknown_record};
use crate::envelope::Millis;
use crate::ids::{NodeId, RecordId};
use crate::messages::{Address, Message};
use crate::money::{self, Currency, Date};
use crate::pricing::{self, Totals};
use crate::reason::ReasonCode;
use serde::{Deserialize, Serialize};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Acknowledged,
    Rejected,
    PartiallyShipped,
    Shipped,
    Cancelled,
    /// The vendor's daemon rejected `order.place` (signed receipt); only the
    /// sender holds this record.
    Refused,
}

impl OrderStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Acknowledged => "acknowledged",
            OrderStatus::Rejected => "rejected",
            OrderStatus::PartiallyShipped => "partially_shipped",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refused => "refused",
        }
    }
}

/// One order line and what has happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineState {
    pub line: u32,
    pub sku: String,
    pub ordered: i64,
    pub unit_price: i64,
    /// Set by the acknowledgement: the quantity the vendor accepted plus any
    /// quantity the partner had cancelled before it, so that
    /// open = accepted − shipped − cancelled holds before and after.
    pub accepted: Option<i64>,
    pub confirmed_date: Option<Date>,
    pub ack_reason: Option<String>,
    pub shipped: i64,
    pub cancelled: i64,
    /// Quantity billed by invoices.
    #[serde(default)]
    pub invoiced: i64,
}

impl OrderLineState {
    /// Quantity still to ship: accepted (or, before the acknowledgement,
    /// ordered) less what was shipped or cancelled.
    pub fn open(&self) -> i64 {
        self.accepted.unwrap_or(self.ordered) - self.shipped - self.cancelled
    }
}

/// One shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
    pub carrier: String,
    pub tracking: String,
    /// (line, quantity, serials)
    pub lines: Vec<(u32, i64, Vec<String>)>,
    pub at: Millis,
}

/// One invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub id: String,
    pub issued_on: Date,
    pub due_on: Option<Date>,
    /// (line, quantity)
    pub lines: Vec<(u32, i64)>,
    pub totals: Totals,
    pub at: Millis,
}

/// An order as both sides see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub vendor: NodeId,
    pub partner: NodeId,
    pub reference: String,
    pub currency: Currency,
    pub price_list: String,
    pub discount_bp: i64,
    pub tax_rate_bp: i64,
    pub lines: Vec<OrderLineState>,
    pub requested_date: Option<Date>,
    pub ship_to: Address,
    pub lead: Option<RecordId>,
    pub status: OrderStatus,
    pub shipments: Vec<Shipment>,
    pub invoices: Vec<Invoice>,
    /// Why the vendor's daemon refused the order (status refused).
    pub refusal: Option<String>,
    pub placed_at: Millis,
    pub updated_at: Millis,
}

impl Order {
    /// The totals of the quantities each line gives, with the order's rates.
    pub fn totals_of(
        &self,
        quantity: impl Fn(&OrderLineState) -> i64,
    ) -> Result<Totals, money::Overflow> {
        pricing::totals(
            self.lines.iter().map(|l| (quantity(l), l.unit_price)),
            self.discount_bp,
            self.tax_rate_bp,
        )
    }

    /// Totals as ordered.
    pub fn ordered_totals(&self) -> Result<Totals, money::Overflow> {
        self.totals_of(|l| l.ordered)
    }

    /// Totals of what is (or will be) delivered: accepted (or, before the
    /// acknowledgement, ordered) less cancelled.
    pub fn committed_totals(&self) -> Result<Totals, money::Overflow> {
        self.totals_of(|l| l.accepted.unwrap_or(l.ordered) - l.cancelled)
    }

    /// Totals invoiced so far.
    pub fn invoiced_totals(&self) -> Result<Totals, money::Overflow> {
        self.totals_of(|l| l.invoiced)
    }

    /// How far the order is billed: `fully_invoiced` when everything is
    /// shipped and every shipped unit invoiced, `partly_invoiced` when
    /// some units are, `None` before the first invoice.
    pub fn billing(&self) -> Option<&'static str> {
        let invoiced: i64 = self.lines.iter().map(|l| l.invoiced).sum();
        if invoiced == 0 {
            None
        } else if self.status == OrderStatus::Shipped
            && self.lines.iter().all(|l| l.invoiced >= l.shipped)
        {
            Some("fully_invoiced")
        } else {
            Some("partly_invoiced")
        }
    }

    fn line_index(&self, kind: &str, line: u32) -> Result<usize, StateError> {
        self.lines
            .iter()
            .position(|l| l.line == line)
            .ok_or_else(|| {
                StateError::new(
                    ReasonCode::BadBody,
                    format!("{kind}: the order has no line {line}"),
                )
            })
    }

    /// Recomputes the status after a shipment or cancellation.
    fn settle(&mut self) {
        let open: i64 = self.lines.iter().map(OrderLineState::open).sum();
        let shipped: i64 = self.lines.iter().map(|l| l.shipped).sum();
        let acknowledged = self.lines.iter().any(|l| l.accepted.is_some());
        self.status = match (open, shipped, acknowledged) {
            (0, 0, _) => OrderStatus::Cancelled,
            (0, _, _) => OrderStatus::Shipped,
            (_, 0, false) => OrderStatus::Placed,
            (_, 0, true) => OrderStatus::Acknowledged,
            _ => OrderStatus::PartiallyShipped,
        };
    }
}

pub(super) fn apply(
    current: Option<&Order>,
    ctx: &Context,
    message: &Message,
) -> Result<Order, StateError> {
    let kind = message.kind();
    let Some(order) = current else {
        let Message::OrderPlace(place) = message else {
            return Err(unknown_record(kind));
        };
        let order = Order {
            vendor: ctx.to.clone(),
            partner: ctx.from.clone(),
            reference: place.reference.clone(),
            currency: place.currency.clone(),
            price_list: place.price_list.clone(),
            discount_bp: place.discount_bp,
            tax_rate_bp: place.tax_rate_bp,
            lines: place
                .lines
                .iter()
                .map(|l| OrderLineState {
                    line: l.line,
                    sku: l.sku.clone(),
                    ordered: l.quantity,
                    unit_price: l.unit_price,
                    accepted: None,
                    confirmed_date: None,
                    ack_reason: None,
                    shipped: 0,
                    cancelled: 0,
                    invoiced: 0,
                })
                .collect(),
            requested_date: place.requested_date.clone(),
            ship_to: place.ship_to.clone(),
            lead: place.lead.clone(),
            status: OrderStatus::Placed,
            shipments: Vec::new(),
            invoices: Vec::new(),
            refusal: None,
            placed_at: ctx.at,
            updated_at: ctx.at,
        };
        if order.ordered_totals().is_err() {
            return Err(StateError::new(
                ReasonCode::InvalidAmount,
                "order.place: the order total exceeds ±(2^53−1) minor units",
            ));
        }
        return Ok(order);
    };
    if order.status == OrderStatus::Refused {
        return Err(StateError::illegal(format!(
            "{kind}: the vendor refused this order; it does not exist there"
        )));
    }
    let mut next = order.clone();
    next.updated_at = ctx.at;
    match message {
        Message::OrderPlace(_) => return Err(record_exists(kind)),
        Message::OrderAck(ack) => {
            require_sender(ctx, &order.vendor, "vendor", kind)?;
            if order.status != OrderStatus::Placed {
                return Err(StateError::illegal(format!(
                    "order.ack: the order is {:?}; only a placed order is acknowledged (once)",
                    order.status
                )));
            }
            if ack.lines.len() != order.lines.len() {
                return Err(StateError::new(
                    ReasonCode::BadBody,
                    format!(
                        "order.ack: answers {} lines, the order has {}; answer every line once",
                        ack.lines.len(),
                        order.lines.len()
                    ),
                ));
            }
            for a in &ack.lines {
                let i = next.line_index(kind, a.line)?;
                let line = &mut next.lines[i];
                let available = line.ordered - line.cancelled;
                if a.accepted > available {
                    return Err(StateError::new(
                        ReasonCode::BadBody,
                        format!(
                            "order.ack: line {} accepts {}, only {available} ordered and not cancelled",
                            a.line, a.accepted
                        ),
                    ));
                }
                line.accepted = Some(a.accepted + line.cancelled);
                line.confirmed_date = a.confirmed_date.clone();
                line.ack_reason = a.reason.clone();
            }
            if ack.lines.iter().all(|a| a.accepted == 0) {
                next.status = OrderStatus::Rejected;
            } else {
                next.settle();
            }
        }
        Message::OrderShip(ship) => {
            require_sender(ctx, &order.vendor, "vendor", kind)?;
            if !matches!(
                order.status,
                OrderStatus::Acknowledged | OrderStatus::PartiallyShipped
            ) {
                return Err(StateError::illegal(format!(
                    "order.ship: the order is {:?}; only an acknowledged order with open quantities ships",
                    order.status
                )));
            }
            if order.shipments.iter().any(|s| s.id == ship.shipment) {
                return Err(StateError::new(
                    ReasonCode::BadBody,
                    format!(
                        "order.ship: shipment {:?} was already recorded",
                        ship.shipment
                    ),
                ));
            }
            for s in &ship.lines {
                let i = next.line_index(kind, s.line)?;
                let line = &mut next.lines[i];
                if s.quantity > line.open() {
                    return Err(StateError::new(
                        ReasonCode::BadBody,
                        format!(
                            "order.ship: line {} ships {}, only {} open",
                            s.line,
                            s.quantity,
                            line.open()
                        ),
                    ));
                }
                line.shipped += s.quantity;
            }
            next.shipments.push(Shipment {
                id: ship.shipment.clone(),
                carrier: ship.carrier.clone(),
                tracking: ship.tracking.clone(),
                lines: ship
                    .lines
                    .iter()
                    .map(|l| (l.line, l.quantity, l.serials.clone()))
                    .collect(),
                at: ctx.at,
            });
            next.settle();
        }
        Message::OrderInvoice(inv) => {
            require_sender(ctx, &order.vendor, "vendor", kind)?;
            if order.invoices.iter().any(|i| i.id == inv.invoice) {
                return Err(StateError::new(
                    ReasonCode::BadBody,
                    format!(
                        "order.invoice: invoice {:?} was already recorded",
                        inv.invoice
                    ),
                ));
            }
            for l in &inv.lines {
                let i = next.line_index(kind, l.line)?;
                let line = &mut next.lines[i];
                let billable = line.shipped - line.invoiced;
                if l.quantity > billable {
                    return Err(StateError::illegal(format!(
                        "order.invoice: line {} bills {}, only {billable} shipped and not yet invoiced",
                        l.line, l.quantity
                    )));
                }
                line.invoiced += l.quantity;
            }
            let totals = pricing::totals(
                inv.lines.iter().map(|l| {
                    let price = order
                        .lines
                        .iter()
                        .find(|o| o.line == l.line)
                        .map_or(0, |o| o.unit_price);
                    (l.quantity, price)
                }),
                order.discount_bp,
                order.tax_rate_bp,
            )
            .map_err(|_| {
                StateError::new(
                    ReasonCode::InvalidAmount,
                    "order.invoice: the invoice total exceeds ±(2^53−1) minor units",
                )
            })?;
            next.invoices.push(Invoice {
                id: inv.invoice.clone(),
                issued_on: inv.issued_on.clone(),
                due_on: inv.due_on.clone(),
                lines: inv.lines.iter().map(|l| (l.line, l.quantity)).collect(),
                totals,
                at: ctx.at,
            });
        }
        Message::OrderCancel(cancel) => {
            require_sender(ctx, &order.partner, "partner", kind)?;
            if !matches!(
                order.status,
                OrderStatus::Placed | OrderStatus::Acknowledged | OrderStatus::PartiallyShipped
            ) {
                return Err(StateError::illegal(format!(
                    "order.cancel: the order is {:?}; nothing is left to cancel",
                    order.status
                )));
            }
            for c in &cancel.lines {
                let i = next.line_index(kind, c.line)?;
                let line = &mut next.lines[i];
                if c.quantity > line.open() {
                    return Err(StateError::illegal(format!(
                        "order.cancel: line {} cancels {}, only {} not yet shipped or cancelled",
                        c.line,
                        c.quantity,
                        line.open()
                    )));
                }
                line.cancelled += c.quantity;
            }
            next.settle();
        }
        _ => {
            return Err(StateError::illegal(format!(
                "{kind} does not apply to an order"
            )));
        }
    }
    Ok(next)
}

/// The sender's record of an order the vendor's daemon refused with a signed
/// receipt: it becomes `refused`, keeping the reason. (The vendor holds no
/// record; nothing else may follow.)
pub fn refused(order: &Order, reason: &str, at: Millis) -> Order {
    let mut next = order.clone();
    next.status = OrderStatus::Refused;
    next.refusal = Some(reason.to_string());
    next.updated_at = at;
    next
}
