//! Search words of the library: titles, summaries, tags, folders and
//! article texts cut into words (Latin letters and digits as lowercase
//! words of two or more characters; Chinese, Japanese and Korean text as
//! overlapping pairs of characters, and single characters), kept as index
//! entries `w␟<word>␟<place>` so a search reads the entries of its words,
//! never every resource.

use super::SEP;
use crate::engine::EngineError;
use guanxi_adapters::store::{Doc, Order, Read, StoreError, Tables};
use std::collections::BTreeSet;

/// Most words indexed per resource (an article's first words count).
const MAX_WORDS: usize = 2_000;
/// Most places read per word of a query.
const PER_WORD: usize = 2_000;

fn cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// The words of `text`, lowercase, each once.
pub fn words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut latin = String::new();
    let mut prev_cjk: Option<char> = None;
    let flush = |latin: &mut String, out: &mut BTreeSet<String>| {
        if latin.chars().count() >= 2 {
            out.insert(std::mem::take(latin));
        } else {
            latin.clear();
        }
    };
    for c in text.chars() {
        if cjk(c) {
            flush(&mut latin, &mut out);
            out.insert(c.to_string());
            if let Some(p) = prev_cjk {
                out.insert(format!("{p}{c}"));
            }
            prev_cjk = Some(c);
        } else if c.is_alphanumeric() {
            prev_cjk = None;
            latin.extend(c.to_lowercase());
        } else {
            prev_cjk = None;
            flush(&mut latin, &mut out);
        }
        if out.len() >= MAX_WORDS {
            break;
        }
    }
    flush(&mut latin, &mut out);
    out
}

fn of_key(place: &str) -> String {
    format!("wof{SEP}{place}")
}

/// Replaces the words indexed for `place` with the words of `text` (none:
/// removes them).
pub fn index(t: &mut Tables<'_>, place: &str, text: Option<&str>) -> Result<(), EngineError> {
    let old: BTreeSet<String> = t
        .doc(Doc::Library, &of_key(place))?
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split(SEP)
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let new = text.map(words).unwrap_or_default();
    for w in old.difference(&new) {
        t.delete_doc(Doc::Library, &format!("w{SEP}{w}{SEP}{place}"))?;
    }
    for w in new.difference(&old) {
        t.put_doc(Doc::Library, &format!("w{SEP}{w}{SEP}{place}"), b"")?;
    }
    if new.is_empty() {
        t.delete_doc(Doc::Library, &of_key(place))?;
    } else if new != old {
        let joined: Vec<&str> = new.iter().map(String::as_str).collect();
        t.put_doc(
            Doc::Library,
            &of_key(place),
            joined.join(&SEP.to_string()).as_bytes(),
        )?;
    }
    Ok(())
}

/// The places whose text has every word of `query` (at most
/// [`PER_WORD`] places are read per word; the rarest word decides).
pub fn find(read: &Read, query: &str) -> Result<Vec<String>, StoreError> {
    let words = words(query);
    let mut result: Option<BTreeSet<String>> = None;
    for w in &words {
        let prefix = format!("w{SEP}{w}{SEP}");
        let places: BTreeSet<String> = read
            .docs_page(Doc::Library, &prefix, None, Order::Forward, PER_WORD)?
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        result = Some(match result {
            None => places,
            Some(r) => r.intersection(&places).cloned().collect(),
        });
        if result.as_ref().is_some_and(BTreeSet::is_empty) {
            break;
        }
    }
    Ok(result.unwrap_or_default().into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_words_and_chinese_pairs() {
        let w = words("CNC-200 Brochure: 數控機床 a");
        for expected in ["cnc", "200", "brochure", "數", "數控", "控機", "機床", "床"] {
            assert!(w.contains(expected), "{expected} in {w:?}");
        }
        assert!(!w.contains("a"), "one letter is no word");
        assert!(!w.contains("控床"));
    }
}
