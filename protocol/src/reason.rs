//! Machine-readable reason codes: why a receiver refused or rejected an
//! envelope. The same codes appear in signed receipts and in plain HTTP error
//! bodies; SPEC.md lists them with the HTTP status each one travels with.

use crate::canonical::ParseErrorKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every reason code of protocol version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    // Transport and syntax: answered without a receipt.
    TooLarge,
    BadJson,
    DuplicateKey,
    NotAnInteger,
    NumberOutOfRange,
    NotCanonical,
    BadEnvelope,
    UnsupportedVersion,
    BatchTooLarge,
    /// In a batch: not looked at, because an earlier element failed.
    NotProcessed,
    // Authentication: answered without a receipt.
    UnknownSender,
    SenderDisabled,
    WrongRecipient,
    UnknownKey,
    KeyNotValid,
    BadSignature,
    FromTheFuture,
    // Stream: a signed rejection that does not consume the seq.
    IdConflict,
    SeqGap,
    ChainBroken,
    // Business: a signed rejection that consumes the seq.
    UnknownKind,
    BadBody,
    UnknownRecord,
    RecordExists,
    IllegalTransition,
    NotAllowed,
    Expired,
    InvalidAmount,
    InvalidLines,
    LedgerMismatch,
    /// A `record_version` that does not fit the record (§12.1).
    VersionConflict,
    /// A code this version does not know, read from a peer's receipt: a
    /// business rejection (§10). Never sent.
    #[serde(other)]
    Unrecognized,
}

impl ReasonCode {
    /// The code's wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::TooLarge => "too_large",
            ReasonCode::BadJson => "bad_json",
            ReasonCode::DuplicateKey => "duplicate_key",
            ReasonCode::NotAnInteger => "not_an_integer",
            ReasonCode::NumberOutOfRange => "number_out_of_range",
            ReasonCode::NotCanonical => "not_canonical",
            ReasonCode::BadEnvelope => "bad_envelope",
            ReasonCode::UnsupportedVersion => "unsupported_version",
            ReasonCode::BatchTooLarge => "batch_too_large",
            ReasonCode::NotProcessed => "not_processed",
            ReasonCode::UnknownSender => "unknown_sender",
            ReasonCode::SenderDisabled => "sender_disabled",
            ReasonCode::WrongRecipient => "wrong_recipient",
            ReasonCode::UnknownKey => "unknown_key",
            ReasonCode::KeyNotValid => "key_not_valid",
            ReasonCode::BadSignature => "bad_signature",
            ReasonCode::FromTheFuture => "from_the_future",
            ReasonCode::IdConflict => "id_conflict",
            ReasonCode::SeqGap => "seq_gap",
            ReasonCode::ChainBroken => "chain_broken",
            ReasonCode::UnknownKind => "unknown_kind",
            ReasonCode::BadBody => "bad_body",
            ReasonCode::UnknownRecord => "unknown_record",
            ReasonCode::RecordExists => "record_exists",
            ReasonCode::IllegalTransition => "illegal_transition",
            ReasonCode::NotAllowed => "not_allowed",
            ReasonCode::Expired => "expired",
            ReasonCode::InvalidAmount => "invalid_amount",
            ReasonCode::InvalidLines => "invalid_lines",
            ReasonCode::LedgerMismatch => "ledger_mismatch",
            ReasonCode::VersionConflict => "version_conflict",
            ReasonCode::Unrecognized => "unrecognized",
        }
    }

    /// The HTTP status this code travels with (SPEC §10). Business
    /// rejections are 200: the envelope was consumed.
    pub fn http_status(self) -> u16 {
        use ReasonCode::*;
        match self {
            TooLarge => 413,
            BadJson | DuplicateKey | NotAnInteger | NumberOutOfRange | NotCanonical
            | BadEnvelope | UnsupportedVersion | BatchTooLarge | FromTheFuture => 400,
            NotProcessed => 400,
            UnknownSender | SenderDisabled => 403,
            WrongRecipient => 421,
            UnknownKey | KeyNotValid | BadSignature => 401,
            IdConflict | SeqGap | ChainBroken => 409,
            UnknownKind | BadBody | UnknownRecord | RecordExists | IllegalTransition
            | NotAllowed | Expired | InvalidAmount | InvalidLines | LedgerMismatch
            | VersionConflict | Unrecognized => 200,
        }
    }

    /// The code for a strict-parser error.
    pub fn from_parse_error(kind: &ParseErrorKind) -> Self {
        match kind {
            ParseErrorKind::DuplicateKey(_) => ReasonCode::DuplicateKey,
            ParseErrorKind::NotAnInteger => ReasonCode::NotAnInteger,
            ParseErrorKind::OutOfRange => ReasonCode::NumberOutOfRange,
            _ => ReasonCode::BadJson,
        }
    }

    /// Whether a rejection with this code consumes the envelope's seq
    /// (business rejections do; stream rejections do not).
    pub fn consumes_seq(self) -> bool {
        matches!(
            self,
            ReasonCode::UnknownKind
                | ReasonCode::BadBody
                | ReasonCode::UnknownRecord
                | ReasonCode::RecordExists
                | ReasonCode::IllegalTransition
                | ReasonCode::NotAllowed
                | ReasonCode::Expired
                | ReasonCode::InvalidAmount
                | ReasonCode::InvalidLines
                | ReasonCode::LedgerMismatch
                | ReasonCode::VersionConflict
                | ReasonCode::Unrecognized
        )
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spelling_matches_serde() {
        for code in [
            ReasonCode::TooLarge,
            ReasonCode::FromTheFuture,
            ReasonCode::IllegalTransition,
            ReasonCode::SeqGap,
        ] {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn an_unknown_code_reads_as_a_business_rejection() {
        let code: ReasonCode = serde_json::from_str("\"quota_exceeded\"").expect("reads");
        assert_eq!(code, ReasonCode::Unrecognized);
        assert!(code.consumes_seq());
        assert_eq!(code.http_status(), 200);
    }
}
