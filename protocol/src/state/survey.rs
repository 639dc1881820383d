//! The survey record: a survey one node sends one peer (or a web
//! partner) for its people, and their answers (SPEC §20).
//!
//! ```text
//! survey.send (surveyor) → open ─survey.answer (recipient, until closes_at)→ open, one more response
//! ```
//! The surveyor is the record's authority; each answer is a request the
//! recipient places, refused after the closing time (the envelope's
//! `created`), for a respondent who already answered, or when it does not
//! fit the questions. An anonymous survey's respondents are pseudonyms
//! chosen by the recipient's node.

use super::{Context, StateError, require_sender};
use crate::envelope::Millis;
use crate::ids::NodeId;
use crate::messages::{Message, SurveyAnswer, SurveyAnswerItem, SurveyQuestion, SurveySend};
use serde::{Deserialize, Serialize};

/// One person's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyResponse {
    pub at: Millis,
    pub respondent: String,
    pub answers: Vec<SurveyAnswerItem>,
}

/// A survey as both nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyRecord {
    pub surveyor: NodeId,
    pub recipient: NodeId,
    pub survey: SurveySend,
    pub sent_at: Millis,
    pub responses: Vec<SurveyResponse>,
}

impl SurveyRecord {
    /// `open` until the closing time, `closed` after (at `now`).
    pub fn status_at(&self, now: Millis) -> &'static str {
        if now > self.survey.closes_at {
            "closed"
        } else {
            "open"
        }
    }

    /// Whether `respondent` already answered.
    pub fn answered_by(&self, respondent: &str) -> bool {
        self.responses.iter().any(|r| r.respondent == respondent)
    }
}

/// Checks answers against the questions: each question at most once,
/// every required one answered, scores in range, known choices (one for a
/// `single` question), text only for `text` questions.
pub fn check_answers(
    questions: &[SurveyQuestion],
    answers: &[SurveyAnswerItem],
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for a in answers {
        let Some(q) = questions.iter().find(|q| q.id == a.question) else {
            return Err(format!("there is no question {:?}", a.question));
        };
        if !seen.insert(a.question.as_str()) {
            return Err(format!("question {:?} is answered twice", a.question));
        }
        let fits = match q.kind.as_str() {
            "nps" => a.score.is_some_and(|s| (0..=10).contains(&s)) && a.choices.is_empty(),
            "rating" => a.score.is_some_and(|s| (1..=5).contains(&s)) && a.choices.is_empty(),
            "single" => {
                a.score.is_none()
                    && a.choices.len() == 1
                    && q.choices.iter().any(|c| c.id == a.choices[0])
            }
            "multiple" => {
                let mut ids = std::collections::BTreeSet::new();
                a.score.is_none()
                    && !a.choices.is_empty()
                    && a.choices
                        .iter()
                        .all(|id| ids.insert(id.as_str()) && q.choices.iter().any(|c| &c.id == id))
            }
            _ => a.score.is_none() && a.choices.is_empty(),
        };
        let texted = q.kind == "text" || a.text.is_empty();
        if !fits || !texted {
            return Err(format!(
                "the answer to {:?} does not fit a {} question",
                a.question, q.kind
            ));
        }
    }
    if let Some(q) = questions
        .iter()
        .find(|q| q.required && !seen.contains(q.id.as_str()))
    {
        return Err(format!("question {:?} must be answered", q.id));
    }
    Ok(())
}

pub(super) fn apply(
    current: Option<&SurveyRecord>,
    ctx: &Context,
    message: &Message,
) -> Result<SurveyRecord, StateError> {
    match (message, current) {
        (Message::SurveySend(s), None) => Ok(SurveyRecord {
            surveyor: ctx.from.clone(),
            recipient: ctx.to.clone(),
            survey: s.clone(),
            sent_at: ctx.at,
            responses: Vec::new(),
        }),
        (Message::SurveySend(_), Some(_)) => Err(super::record_exists(message.kind())),
        (Message::SurveyAnswer(_), None) => Err(super::unknown_record(message.kind())),
        (Message::SurveyAnswer(a), Some(r)) => answer(r, ctx, a),
        _ => Err(StateError::illegal(format!(
            "{} does not apply to a survey",
            message.kind()
        ))),
    }
}

fn answer(r: &SurveyRecord, ctx: &Context, a: &SurveyAnswer) -> Result<SurveyRecord, StateError> {
    require_sender(ctx, &r.recipient, "recipient", "survey.answer")?;
    if ctx.at > r.survey.closes_at {
        return Err(StateError::illegal("survey.answer: the survey is closed"));
    }
    if r.answered_by(&a.respondent) {
        return Err(StateError::illegal(format!(
            "survey.answer: {} already answered",
            a.respondent
        )));
    }
    check_answers(&r.survey.questions, &a.answers)
        .map_err(|m| StateError::illegal(format!("survey.answer: {m}")))?;
    let mut next = r.clone();
    next.responses.push(SurveyResponse {
        at: ctx.at,
        respondent: a.respondent.clone(),
        answers: a.answers.clone(),
    });
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::SurveyChoice;

    fn question(id: &str, kind: &str, choices: &[&str], required: bool) -> SurveyQuestion {
        SurveyQuestion {
            id: id.into(),
            kind: kind.into(),
            text_en: id.into(),
            text_zh: id.into(),
            choices: choices
                .iter()
                .map(|c| SurveyChoice {
                    id: (*c).into(),
                    en: (*c).into(),
                    zh: (*c).into(),
                })
                .collect(),
            required,
        }
    }

    fn item(q: &str, score: Option<i64>, choices: &[&str], text: &str) -> SurveyAnswerItem {
        SurveyAnswerItem {
            question: q.into(),
            score,
            choices: choices.iter().map(|c| (*c).to_string()).collect(),
            text: text.into(),
        }
    }

    #[test]
    fn answers_must_fit_their_questions() {
        let qs = vec![
            question("nps", "nps", &[], true),
            question("pick", "single", &["a", "b"], false),
            question("many", "multiple", &["a", "b"], false),
            question("why", "text", &[], false),
        ];
        assert!(check_answers(&qs, &[item("nps", Some(9), &[], "")]).is_ok());
        assert!(
            check_answers(
                &qs,
                &[
                    item("nps", Some(0), &[], ""),
                    item("pick", None, &["b"], ""),
                    item("many", None, &["a", "b"], ""),
                    item("why", None, &[], "slow replies"),
                ]
            )
            .is_ok()
        );
        for (bad, says) in [
            (vec![], "must be answered"),
            (vec![item("nps", Some(11), &[], "")], "does not fit"),
            (
                vec![item("nps", Some(5), &[], ""), item("nps", Some(5), &[], "")],
                "twice",
            ),
            (
                vec![
                    item("nps", Some(5), &[], ""),
                    item("pick", None, &["a", "b"], ""),
                ],
                "does not fit",
            ),
            (
                vec![
                    item("nps", Some(5), &[], ""),
                    item("many", None, &["a", "a"], ""),
                ],
                "does not fit",
            ),
            (
                vec![
                    item("nps", Some(5), &[], ""),
                    item("pick", None, &["c"], ""),
                ],
                "does not fit",
            ),
            (vec![item("nps", Some(5), &[], "words")], "does not fit"),
            (vec![item("who", Some(5), &[], "")], "no question"),
        ] {
            let e = check_answers(&qs, &bad).expect_err(says);
            assert!(e.contains(says), "{e}");
        }
    }
}
