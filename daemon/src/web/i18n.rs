//! Message catalogs of the web view (English and Traditional Chinese), built
//! into the binary, and the choice of language for a request: the user's
//! kept switch (a cookie), else the browser's Accept-Language, else the
//! configured default. Templates contain no user-visible text of their own.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhTw,
}

impl Lang {
    /// The BCP 47 code, as in `lang="..."` and the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhTw => "zh-TW",
        }
    }

    /// The language for a code, if supported.
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "zh-TW" => Some(Lang::ZhTw),
            _ => None,
        }
    }

    /// The first supported language in an Accept-Language header (any
    /// Chinese maps to Traditional Chinese, the only one we have).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut tags: Vec<(f32, &str)> = header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, tag))
            })
            .collect();
        tags.sort_by(|a, b| b.0.total_cmp(&a.0));
        tags.into_iter().find_map(|(_, tag)| {
            let tag = tag.to_ascii_lowercase();
            if tag.starts_with("zh") {
                Some(Lang::ZhTw)
            } else if tag.starts_with("en") {
                Some(Lang::En)
            } else {
                None
            }
        })
    }
}

/// One language's messages, by dotted key (`login.title`).
pub struct Catalog {
    messages: HashMap<String, String>,
}

impl Catalog {
    /// The message for `key`; the key itself when missing (tests make sure
    /// none is).
    pub fn get<'a>(&'a self, key: impl AsRef<str> + 'a) -> String {
        let key = key.as_ref();
        self.messages
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }

    /// The message for `key` with each `{name}` replaced by its value.
    pub fn fill(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.get(key);
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    /// A typed-input row's problem: "Row 3: …" (row 0: from no row).
    pub fn row(&self, row: u64, key: &str, value: &str) -> String {
        let problem = self.fill(key, &[("value", value)]);
        if row == 0 {
            return problem;
        }
        self.fill(
            "rows.at",
            &[("row", &row.to_string()), ("problem", &problem)],
        )
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.messages.keys()
    }

    fn parse(text: &str) -> Result<Catalog, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut messages = HashMap::new();
        flatten("", &table, &mut messages)?;
        Ok(Catalog { messages })
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut HashMap<String, String>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&key, t, out)?,
            other => return Err(format!("{key}: expected text, found {}", other.type_str())),
        }
    }
    Ok(())
}

static EN: LazyLock<Result<Catalog, String>> =
    LazyLock::new(|| Catalog::parse(include_str!("../../i18n/en.toml")));
static ZH_TW: LazyLock<Result<Catalog, String>> =
    LazyLock::new(|| Catalog::parse(include_str!("../../i18n/zh-TW.toml")));
static EMPTY: LazyLock<Catalog> = LazyLock::new(|| Catalog {
    messages: HashMap::new(),
});

/// The catalog of `lang`.
pub fn catalog(lang: Lang) -> &'static Catalog {
    let parsed = match lang {
        Lang::En => &*EN,
        Lang::ZhTw => &*ZH_TW,
    };
    parsed.as_ref().unwrap_or(&EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogs_parse_and_have_the_same_keys() {
        let en = EN.as_ref().expect("en.toml parses");
        let zh = ZH_TW.as_ref().expect("zh-TW.toml parses");
        let mut a: Vec<_> = en.keys().collect();
        let mut b: Vec<_> = zh.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(catalog(Lang::ZhTw).get("login.title"), "登入");
    }

    #[test]
    fn every_key_used_by_a_template_exists() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let en = catalog(Lang::En);
        let mut used = 0;
        for entry in std::fs::read_dir(&dir).expect("templates") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("template");
            for piece in text.split("t.get(\"").skip(1) {
                let key = piece.split('"').next().unwrap_or("");
                used += 1;
                assert!(
                    en.messages.contains_key(key),
                    "{}: unknown key {key}",
                    path.display()
                );
            }
        }
        assert!(used > 50, "only {used} keys found in templates");
        // Every message kind is said in words, never shown raw.
        for kind in guanxi_protocol::messages::KINDS {
            let key = format!("kind.{kind}");
            assert!(en.messages.contains_key(&key), "{key}");
        }
        // Keys built at run time from the directory's types and stages.
        for name in crate::directory::TYPES
            .iter()
            .map(|(_, n)| format!("type.{n}"))
        {
            assert!(en.messages.contains_key(&name), "{name}");
        }
        for name in crate::directory::STAGES
            .iter()
            .map(|(_, n)| format!("stage.{n}"))
        {
            assert!(en.messages.contains_key(&name), "{name}");
        }
    }

    /// Every catalog key the code names (a literal like `"error.csrf"` or
    /// `"home.mail_failed"` whose first part is a catalog section) exists:
    /// no error path, status word or flash message falls back to its key.
    #[test]
    fn every_key_the_code_names_exists() {
        let en = catalog(Lang::En);
        let sections: std::collections::BTreeSet<&str> =
            en.keys().filter_map(|k| k.split('.').next()).collect();
        let mut files = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut checked = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("dir") {
                    files.push(entry.expect("entry").path());
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for literal in text.split('"').skip(1).step_by(2) {
                let Some((section, rest)) = literal.split_once('.') else {
                    continue;
                };
                let file_name = ["html", "toml", "css", "json", "pem", "csv", "key", "pdf"]
                    .contains(&rest)
                    || guanxi_protocol::messages::KINDS.contains(&literal);
                let key_like = !rest.is_empty()
                    && !file_name
                    && literal
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
                if key_like && sections.contains(section) && !rest.contains('.') {
                    checked += 1;
                    assert!(
                        en.messages.contains_key(literal),
                        "{}: {literal:?} is not in the catalogs",
                        path.display()
                    );
                }
            }
        }
        assert!(checked > 100, "only {checked} keys found in the code");
    }

    #[test]
    fn accept_language_picks_by_quality() {
        assert_eq!(
            Lang::from_accept_language("zh-TW,zh;q=0.9,en;q=0.8"),
            Some(Lang::ZhTw)
        );
        assert_eq!(
            Lang::from_accept_language("fr;q=1, en;q=0.5, zh;q=0.4"),
            Some(Lang::En)
        );
        assert_eq!(Lang::from_accept_language("fr"), None);
    }
}
