//! The quiz attempt record: one person's answers to a course's quiz, sent
//! by the learner's node to the course's publisher, and the grade.
//!
//! ```text
//! quiz.submit (learner) → submitted ─quiz.grade (publisher)→ passed | failed
//! ```
//! The publisher (the record's recipient) grades and is the authority: the
//! learner's submission is a request it places, its grade the answer. The
//! answer key stays with the publisher; a passed grade carries the signed
//! certification.

use super::{Context, StateError, require_sender};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{Message, QuizGrade, QuizSubmit};
use serde::{Deserialize, Serialize};

/// An attempt as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuizAttempt {
    /// The learner's organization (node or web partner) and the grader.
    pub learner: NodeId,
    pub publisher: NodeId,
    pub submit: QuizSubmit,
    pub submitted_at: Millis,
    pub grade: Option<QuizGrade>,
    pub graded_at: Option<Millis>,
}

impl QuizAttempt {
    /// `submitted`, `passed` or `failed`.
    pub fn status(&self) -> &'static str {
        match &self.grade {
            None => "submitted",
            Some(g) if g.passed => "passed",
            Some(_) => "failed",
        }
    }
}

pub(super) fn apply(
    current: Option<&QuizAttempt>,
    ctx: &Context,
    message: &Message,
) -> Result<QuizAttempt, StateError> {
    match (message, current) {
        (Message::QuizSubmit(s), None) => Ok(QuizAttempt {
            learner: ctx.from.clone(),
            publisher: ctx.to.clone(),
            submit: s.clone(),
            submitted_at: ctx.at,
            grade: None,
            graded_at: None,
        }),
        (Message::QuizSubmit(_), Some(_)) => Err(super::record_exists(message.kind())),
        (Message::QuizGrade(_), None) => Err(super::unknown_record(message.kind())),
        (Message::QuizGrade(g), Some(a)) => {
            require_sender(ctx, &a.publisher, "publisher", message.kind())?;
            if a.grade.is_some() {
                return Err(StateError::illegal("the attempt is already graded"));
            }
            let mut next = a.clone();
            next.grade = Some(g.clone());
            next.graded_at = Some(ctx.at);
            Ok(next)
        }
        _ => Err(StateError::illegal(format!(
            "{} does not apply to a quiz attempt",
            message.kind()
        ))),
    }
}
