//! Quizzes (SPEC §16.2): which questions an attempt draws from a course's
//! pool, and grading an attempt's answers against the publisher's answer
//! key. Both nodes compute the same draw from the attempt's subject, so the
//! learner's node shows exactly the questions the publisher will grade.

use crate::crypto::Sha256Hash;
use crate::messages::{Question, Quiz, QuizAnswer};
use std::collections::{BTreeMap, BTreeSet};

/// The right choices of every question, by question id (kept by the
/// publisher only).
pub type AnswerKey = BTreeMap<String, Vec<i64>>;

/// The questions attempt `subject` draws: the pool ordered by
/// SHA-256(`guanxi/v1/draw\0` ‖ subject ‖ `\0` ‖ question id), the first
/// `draw` of them.
pub fn draw<'a>(quiz: &'a Quiz, subject: &str) -> Vec<&'a Question> {
    let mut ranked: Vec<(Sha256Hash, &Question)> = quiz
        .questions
        .iter()
        .map(|q| {
            let mut input = b"guanxi/v1/draw\0".to_vec();
            input.extend_from_slice(subject.as_bytes());
            input.push(0);
            input.extend_from_slice(q.id.as_bytes());
            (Sha256Hash::of(&input), q)
        })
        .collect();
    ranked.sort_by_key(|(hash, _)| hash.0);
    ranked
        .into_iter()
        .take(quiz.draw.max(0) as usize)
        .map(|(_, q)| q)
        .collect()
}

/// A graded attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    pub correct: i64,
    pub total: i64,
    pub passed: bool,
}

/// Why answers cannot be graded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GradeError {
    #[error("answers[{0}]: question {1:?} was not drawn for this attempt")]
    NotDrawn(usize, String),
    #[error("answers[{0}]: question {1:?} is answered twice")]
    Twice(usize, String),
    #[error("answers[{0}]: choice {1} is not one of the question's choices")]
    NoSuchChoice(usize, i64),
    #[error("answers[{0}]: a single-choice question takes one choice")]
    OneChoice(usize),
}

/// Grades `answers` to attempt `subject`: an answer is right when it names
/// exactly the key's choices; a drawn question left unanswered is wrong.
pub fn grade(
    quiz: &Quiz,
    key: &AnswerKey,
    subject: &str,
    answers: &[QuizAnswer],
) -> Result<Score, GradeError> {
    let drawn = draw(quiz, subject);
    let mut seen = BTreeSet::new();
    let mut correct = 0;
    for (i, a) in answers.iter().enumerate() {
        let Some(q) = drawn.iter().find(|q| q.id == a.question) else {
            return Err(GradeError::NotDrawn(i, a.question.clone()));
        };
        if !seen.insert(a.question.as_str()) {
            return Err(GradeError::Twice(i, a.question.clone()));
        }
        if let Some(c) = a
            .choices
            .iter()
            .find(|c| **c < 0 || **c as usize >= q.choices.len())
        {
            return Err(GradeError::NoSuchChoice(i, *c));
        }
        if !q.multiple && a.choices.len() > 1 {
            return Err(GradeError::OneChoice(i));
        }
        let given: BTreeSet<i64> = a.choices.iter().copied().collect();
        let right: BTreeSet<i64> = key
            .get(&q.id)
            .map(|k| k.iter().copied().collect())
            .unwrap_or_default();
        if !right.is_empty() && given == right {
            correct += 1;
        }
    }
    let total = drawn.len() as i64;
    Ok(Score {
        correct,
        total,
        passed: total > 0 && correct * 100 >= quiz.pass_percent * total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiz(n: usize, draw: i64) -> Quiz {
        Quiz {
            pass_percent: 75,
            attempts: 3,
            draw,
            questions: (0..n)
                .map(|i| Question {
                    id: format!("q{i}"),
                    text: format!("Question {i}"),
                    choices: vec!["a".into(), "b".into(), "c".into()],
                    multiple: i == 0,
                })
                .collect(),
        }
    }

    fn key(n: usize) -> AnswerKey {
        (0..n)
            .map(|i| {
                let right = if i == 0 {
                    vec![0, 2]
                } else {
                    vec![(i % 3) as i64]
                };
                (format!("q{i}"), right)
            })
            .collect()
    }

    fn answer(q: &Question, key: &AnswerKey) -> QuizAnswer {
        QuizAnswer {
            question: q.id.clone(),
            choices: key[&q.id].clone(),
        }
    }

    #[test]
    fn the_draw_depends_on_the_attempt_only() {
        let q = quiz(20, 5);
        let a: Vec<&str> = draw(&q, "attempt.x.1")
            .iter()
            .map(|q| q.id.as_str())
            .collect();
        let again: Vec<&str> = draw(&q, "attempt.x.1")
            .iter()
            .map(|q| q.id.as_str())
            .collect();
        let other: Vec<&str> = draw(&q, "attempt.x.2")
            .iter()
            .map(|q| q.id.as_str())
            .collect();
        assert_eq!(a.len(), 5);
        assert_eq!(a, again);
        assert_ne!(a, other, "another attempt draws other questions");
        let unique: BTreeSet<&str> = a.iter().copied().collect();
        assert_eq!(unique.len(), 5);
    }

    #[test]
    fn grading_counts_exact_answers_and_refuses_strangers() {
        let (q, k) = (quiz(8, 4), key(8));
        let subject = "attempt.x.7";
        let drawn = draw(&q, subject);
        let all: Vec<QuizAnswer> = drawn.iter().map(|d| answer(d, &k)).collect();
        assert_eq!(
            grade(&q, &k, subject, &all),
            Ok(Score {
                correct: 4,
                total: 4,
                passed: true
            })
        );
        // One wrong: 3 of 4 is exactly 75 %.
        let mut one_wrong = all.clone();
        one_wrong[0].choices = vec![1];
        let s = grade(&q, &k, subject, &one_wrong).expect("graded");
        assert_eq!((s.correct, s.passed), (3, true));
        // Two unanswered: 2 of 4 fails.
        let s = grade(&q, &k, subject, &all[..2]).expect("graded");
        assert_eq!((s.correct, s.total, s.passed), (2, 4, false));
        let stranger = q
            .questions
            .iter()
            .find(|x| !drawn.iter().any(|d| d.id == x.id))
            .expect("an undrawn question");
        let mut bad = all.clone();
        bad.push(answer(stranger, &k));
        assert!(matches!(
            grade(&q, &k, subject, &bad),
            Err(GradeError::NotDrawn(4, _))
        ));
        let mut twice = all.clone();
        twice.push(all[0].clone());
        assert!(matches!(
            grade(&q, &k, subject, &twice),
            Err(GradeError::Twice(4, _))
        ));
        let mut no_such = all.clone();
        no_such[1].choices = vec![3];
        assert_eq!(
            grade(&q, &k, subject, &no_such),
            Err(GradeError::NoSuchChoice(1, 3))
        );
    }

    #[test]
    fn multiple_choice_needs_exactly_the_right_set() {
        let (q, k) = (quiz(1, 1), key(1));
        let half = [QuizAnswer {
            question: "q0".into(),
            choices: vec![0],
        }];
        let s = grade(&q, &k, "attempt.x.1", &half).expect("graded");
        assert_eq!(s.correct, 0);
        let full = [QuizAnswer {
            question: "q0".into(),
            choices: vec![2, 0],
        }];
        assert_eq!(
            grade(&q, &k, "attempt.x.1", &full).expect("graded").correct,
            1
        );
    }
}
