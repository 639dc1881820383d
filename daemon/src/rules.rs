//! This node's business rules on incoming messages, beyond the state
//! machines (the engine's `InboundRule`, SPEC §7 step 9): the vendor's
//! price-list check of `order.place` and the serial check of
//! `warranty.claim`.

use crate::engine::EngineError;
use guanxi_adapters::store::Tables;
use guanxi_protocol::Message;
use guanxi_protocol::state::{Context, StateError};

/// Checks an incoming message after its state machine accepted it.
pub fn inbound(
    t: &Tables<'_>,
    ctx: &Context,
    message: &Message,
) -> Result<Result<(), StateError>, EngineError> {
    match message {
        Message::OrderPlace(_) => crate::orders::inbound_rule(t, ctx, message),
        Message::WarrantyClaim(_) => crate::service::check_incoming_claim(t, ctx, message),
        _ => Ok(Ok(())),
    }
}
