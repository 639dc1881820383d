//! This node's business rules on incoming messages, beyond the state
//! machines (the engine's `InboundRule`, SPEC §7 step 9): the vendor's
//! price-list check of `order.place`, the serial check of `warranty.claim`,
//! whether a `quiz.submit` can be graded,
//! and keeping the file an `attachment.put` carries (written before the
//! commit; content-addressed, so a failed commit leaves only an unused file).

use crate::engine::{EngineError, InboundRule};
use guanxi_adapters::store::Tables;
use guanxi_protocol::Message;
use guanxi_protocol::state::{Context, StateError};
use std::path::PathBuf;
use std::sync::Arc;

/// The rule for a node whose data directory is `data_dir`.
pub fn for_node(data_dir: PathBuf) -> InboundRule {
    Arc::new(move |t, ctx, subject, message| inbound(&data_dir, t, ctx, subject, message))
}

/// Checks an incoming message after its state machine accepted it.
pub fn inbound(
    data_dir: &std::path::Path,
    t: &Tables<'_>,
    ctx: &Context,
    subject: &str,
    message: &Message,
) -> Result<Result<(), StateError>, EngineError> {
    match message {
        Message::AttachmentPut(put) => {
            let bytes = match put.bytes() {
                Ok(b) => b,
                Err(e) => {
                    return Ok(Err(StateError {
                        code: guanxi_protocol::ReasonCode::BadBody,
                        message: e.to_string(),
                    }));
                }
            };
            crate::attachments::keep(data_dir, &bytes)
                .map_err(|e| EngineError::Failed(format!("storing an attachment: {e}")))?;
            Ok(Ok(()))
        }
        Message::OrderPlace(_) => crate::orders::inbound_rule(t, ctx, message),
        Message::WarrantyClaim(_) => crate::service::check_incoming_claim(t, ctx, message),
        Message::QuizSubmit(_) => crate::courses::inbound_rule(t, ctx, subject, message),
        _ => Ok(Ok(())),
    }
}
