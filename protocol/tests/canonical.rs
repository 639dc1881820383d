//! Canonical JSON against the RFC 8785 reference data, the strict parser's
//! refusals, and property tests against an independent JCS implementation.

use guanxi_protocol::canonical::{ParseErrorKind, canonicalize, parse_strict};
use proptest::prelude::*;
use serde_json::Value;
use std::path::PathBuf;

fn jcs(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/jcs")
        .join(dir)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn reference_cases_canonicalize_exactly() {
    for name in ["arrays", "french", "structures", "unicode", "weird"] {
        let input = jcs("input", &format!("{name}.json"));
        let expected = jcs("output", &format!("{name}.json"));
        let value = parse_strict(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = canonicalize(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
        let outhex: String = String::from_utf8_lossy(&jcs("outhex", &format!("{name}.txt")))
            .split_whitespace()
            .collect();
        assert_eq!(hex(&got), outhex.to_lowercase(), "{name} (hex)");
    }
}

#[test]
fn reference_values_case_is_refused_for_its_fractions() {
    // values.json holds non-integers: the strict parser refuses it, naming the place.
    let err = parse_strict(&jcs("input", "values.json")).expect_err("fractions must be refused");
    assert_eq!(err.kind, ParseErrorKind::NotAnInteger);
    assert_eq!((err.line, err.path.as_str()), (2, "$.numbers[0]"));
    // The independent judge still reproduces it, so the reference data is sound.
    let lenient: Value = serde_json::from_slice(&jcs("input", "values.json")).expect("valid JSON");
    let judge = serde_json_canonicalizer::to_vec(&lenient).expect("canonicalizes");
    assert_eq!(judge, jcs("output", "values.json"));
}

#[test]
fn integral_literals_with_fraction_or_exponent_mean_the_integer() {
    for (text, canonical) in [
        ("56.0", "56"),
        ("1E3", "1000"),
        ("-0", "0"),
        ("0.1e1", "1"),
        ("2.50e1", "25"),
        ("9007199254740991", "9007199254740991"),
    ] {
        let v = parse_strict(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            canonicalize(&v).expect("canonical"),
            canonical.as_bytes(),
            "{text}"
        );
    }
}

fn refused(text: &[u8]) -> guanxi_protocol::canonical::ParseError {
    match parse_strict(text) {
        Ok(v) => panic!("{:?} was accepted as {v}", String::from_utf8_lossy(text)),
        Err(e) => e,
    }
}

#[test]
fn strict_parser_refusals_name_kind_and_place() {
    let e = refused(br#"{"a":1,"b":{"c":2,"c":3}}"#);
    assert_eq!(e.kind, ParseErrorKind::DuplicateKey("c".into()));
    assert_eq!((e.path.as_str(), e.offset), ("$.b", 18));

    let cases: &[(&[u8], ParseErrorKind)] = &[
        (br#"["\ud800"]"#, ParseErrorKind::LoneSurrogate),
        (br#"["\udc00"]"#, ParseErrorKind::LoneSurrogate),
        (br#"["\ud800\u0041"]"#, ParseErrorKind::LoneSurrogate),
        (b"1.5", ParseErrorKind::NotAnInteger),
        (b"1e-1", ParseErrorKind::NotAnInteger),
        (b"9007199254740992", ParseErrorKind::OutOfRange),
        (b"-9007199254740992", ParseErrorKind::OutOfRange),
        (b"1e16", ParseErrorKind::OutOfRange),
        (b"1e999999999999999999999", ParseErrorKind::OutOfRange),
        (b"1e-999999999999999999999", ParseErrorKind::NotAnInteger),
        (b"012", ParseErrorKind::MalformedNumber),
        (b"1.", ParseErrorKind::MalformedNumber),
        (b"-", ParseErrorKind::MalformedNumber),
        (b"{} x", ParseErrorKind::TrailingData),
        (b"\"a\x01\"", ParseErrorKind::ControlCharacter),
        (b"\"\xff\"", ParseErrorKind::InvalidUtf8),
        (b"[1,]", ParseErrorKind::UnexpectedChar(']')),
        (b"{\"a\" 1}", ParseErrorKind::UnexpectedChar('1')),
        (b"[1", ParseErrorKind::UnexpectedEnd),
        (br#""\x""#, ParseErrorKind::InvalidEscape),
        (b"NaN", ParseErrorKind::UnexpectedChar('N')),
    ];
    for (text, kind) in cases {
        let e = refused(text);
        assert_eq!(&e.kind, kind, "{:?}", String::from_utf8_lossy(text));
    }
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    assert_eq!(refused(deep.as_bytes()).kind, ParseErrorKind::TooDeep);
    let ok_deep = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(parse_strict(ok_deep.as_bytes()).is_ok());
}

#[test]
fn line_and_column_are_reported() {
    let e = refused(b"{\n  \"amount\": 12.5\n}");
    assert_eq!((e.line, e.column, e.path.as_str()), (2, 13, "$.amount"));
    assert!(e.to_string().contains("line 2, column 13"), "{e}");
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|n| Value::Number(n.into())),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_form_matches_an_independent_implementation(v in arb_value()) {
        let ours = canonicalize(&v).expect("integer-only values canonicalize");
        let theirs = serde_json_canonicalizer::to_vec(&v).expect("judge canonicalizes");
        prop_assert_eq!(&ours, &theirs);
    }

    #[test]
    fn parse_and_canonicalize_round_trip(v in arb_value()) {
        let canonical = canonicalize(&v).expect("canonical");
        let parsed = parse_strict(&canonical).expect("canonical text parses strictly");
        prop_assert_eq!(&parsed, &v);
        prop_assert_eq!(canonicalize(&parsed).expect("canonical"), canonical.clone());
        let pretty = serde_json::to_vec_pretty(&v).expect("pretty");
        let reparsed = parse_strict(&pretty).expect("pretty text parses strictly");
        prop_assert_eq!(canonicalize(&reparsed).expect("canonical"), canonical);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_strict(&bytes);
    }
}
