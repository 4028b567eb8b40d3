//! Property tests: round trips through the canonical form, soundness of label
//! restrictions, the prefix rewrite, and "the parser never panics".
//!
//! Selectors come from two generators: random *text* drawn from the grammar
//! (with random blanks, quote styles, keyword spellings such as `startswith`,
//! `!` runs, redundant parentheses and trailing commas), and random *trees*
//! built with the public builders.

use std::collections::BTreeMap;

use bulkhead_selector::{MAX_NESTING_DEPTH, Selector};
use proptest::prelude::*;
use proptest::test_runner::Config;

type LabelMap = BTreeMap<String, String>;

/// Label names the label maps also use, so selectors often see a hit.
const KEYS: &[&str] = &["a", "b", "c", "contains", "in", "x/y.z-1_"];
/// Values, including the empty string, both quotes and non-ASCII.
const VALUES: &[&str] = &["", "a", "b", "ab", "ba", "'", "\"", "a b", "é"];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9_./-]{1,6}",
    ]
}

/// A value that some string literal can hold (not both quote kinds).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(VALUES).prop_map(str::to_owned),
        1 => "[ab'\" é]{0,4}".prop_filter("needs one quote kind free", |v| {
            !(v.contains('"') && v.contains('\''))
        }),
    ]
}

fn label_map() -> impl Strategy<Value = LabelMap> {
    proptest::collection::btree_map(
        proptest::sample::select(KEYS).prop_map(str::to_owned),
        proptest::sample::select(VALUES).prop_map(str::to_owned),
        0..4,
    )
}

/// Optional blanks.
fn ws() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// At least one blank (between a label and a keyword operator).
fn ws1() -> impl Strategy<Value = String> {
    "[ \t]{1,2}"
}

/// `value` as a string literal with a quote it does not contain.
fn literal(value: String, prefer_single: bool) -> String {
    let quote = if value.contains('"') || (prefer_single && !value.contains('\'')) {
        '\''
    } else {
        '"'
    };
    format!("{quote}{value}{quote}")
}

fn literal_strategy() -> impl Strategy<Value = String> {
    (value(), any::<bool>()).prop_map(|(v, single)| literal(v, single))
}

/// A keyword operator spelled with random inner blanks (possibly none).
fn comparison_op() -> impl Strategy<Value = (String, bool)> {
    // (text, needs a blank before it)
    prop_oneof![
        Just(("==".to_owned(), false)),
        Just(("!=".to_owned(), false)),
        Just(("contains".to_owned(), true)),
        ws().prop_map(|w| (format!("starts{w}with"), true)),
        ws().prop_map(|w| (format!("ends{w}with"), true)),
    ]
}

fn leaf_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (ws(), key(), ws()).prop_map(|(a, k, b)| format!("has({a}{k}{b})")),
        ws().prop_map(|w| format!("all({w})")),
        ws().prop_map(|w| format!("global({w})")),
        (
            key(),
            ws(),
            ws1(),
            comparison_op(),
            ws(),
            literal_strategy()
        )
            .prop_map(|(k, w0, w1, (op, needs_blank), w2, lit)| {
                let before = if needs_blank { w1 } else { w0 };
                format!("{k}{before}{op}{w2}{lit}")
            }),
        (
            key(),
            ws1(),
            prop_oneof![
                Just("in".to_owned()),
                ws().prop_map(|w| format!("not{w}in"))
            ],
            ws(),
            proptest::collection::vec((literal_strategy(), ws(), ws()), 0..4),
            any::<bool>(),
            ws(),
        )
            .prop_map(|(k, w1, op, w2, members, trailing_comma, w3)| {
                let mut set = String::from("{");
                for (i, (lit, a, b)) in members.iter().enumerate() {
                    if i > 0 {
                        set.push_str(&format!("{a},{b}"));
                    }
                    set.push_str(lit);
                }
                if trailing_comma && !members.is_empty() {
                    set.push(',');
                }
                set.push_str(&w3);
                set.push('}');
                format!("{k}{w1}{op}{w2}{set}")
            }),
    ]
}

/// Selector text drawn from the grammar. Joining two valid expressions with
/// `&&` or `||`, or prefixing one with `!`, always gives a valid expression,
/// so every string generated here must parse.
fn selector_text() -> impl Strategy<Value = String> {
    let expr = leaf_text().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            (0..4usize, ws(), inner.clone(), ws())
                .prop_map(|(nots, w, e, w2)| format!("{}{w}({e}{w2})", "!".repeat(nots))),
            (1..4usize, ws(), inner.clone())
                .prop_map(|(nots, w, e)| format!("{}{w}{e}", "!".repeat(nots))),
            (
                inner.clone(),
                prop_oneof![Just("&&"), Just("||")],
                inner,
                ws(),
                ws()
            )
                .prop_map(|(a, op, b, w, w2)| format!("{a}{w}{op}{w2}{b}")),
        ]
    });
    prop_oneof![
        1 => ws(),
        20 => (ws(), expr, ws()).prop_map(|(a, e, b)| format!("{a}{e}{b}")),
    ]
}

/// Selectors built with the public builders, over expressible labels/values.
fn built_selector() -> impl Strategy<Value = Selector> {
    let leaf = prop_oneof![
        Just(Selector::all()),
        Just(Selector::global()),
        key().prop_map(|k| Selector::has(&k)),
        (key(), value()).prop_map(|(k, v)| Selector::equals(&k, &v)),
        (key(), proptest::collection::vec(value(), 0..4))
            .prop_map(|(k, vs)| Selector::in_set(&k, vs)),
    ];
    leaf.prop_recursive(5, 48, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or(b)),
            inner.prop_map(Selector::negate),
        ]
    })
}

/// The round-trip and soundness checks shared by both generators.
fn check_selector(sel: &Selector, maps: &[LabelMap]) -> Result<(), TestCaseError> {
    let canonical = sel.canonical();
    let reparsed = Selector::parse(&canonical)
        .map_err(|e| TestCaseError::fail(format!("canonical {canonical:?} does not parse: {e}")))?;
    prop_assert_eq!(reparsed.canonical(), canonical.clone());
    prop_assert_eq!(&reparsed, sel);
    prop_assert_eq!(reparsed.unique_id(), sel.unique_id());

    let restrictions = sel.label_restrictions();
    for labels in maps {
        let matched = sel.matches(labels);
        prop_assert_eq!(reparsed.matches(labels), matched, "labels {:?}", labels);
        if matched {
            prop_assert!(
                sel.possible_to_satisfy(),
                "{} matches {:?} but claims to be unsatisfiable",
                canonical,
                labels
            );
            for (label, r) in &restrictions {
                prop_assert!(
                    r.allows(labels.get(label).map(String::as_str)),
                    "{} matches {:?} but its restriction on {} is {:?}",
                    canonical,
                    labels,
                    label,
                    r
                );
            }
        }
        // The prefix rewrite matches exactly the correspondingly renamed labels.
        let prefixed_labels: LabelMap = labels
            .iter()
            .map(|(k, v)| (format!("p/{k}"), v.clone()))
            .collect();
        prop_assert_eq!(
            sel.with_label_prefix("p/").matches(&prefixed_labels),
            matched
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    #[test]
    fn grammar_text_parses_and_round_trips(
        text in selector_text(),
        maps in proptest::collection::vec(label_map(), 1..8),
    ) {
        let sel = Selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?} must parse: {e}")))?;
        check_selector(&sel, &maps)?;
    }

    #[test]
    fn built_selectors_round_trip(
        sel in built_selector(),
        maps in proptest::collection::vec(label_map(), 1..8),
    ) {
        check_selector(&sel, &maps)?;
    }

    #[test]
    fn builders_mean_what_they_say(
        a in built_selector(),
        b in built_selector(),
        labels in label_map(),
    ) {
        let (ma, mb) = (a.matches(&labels), b.matches(&labels));
        prop_assert_eq!(a.clone().and(b.clone()).matches(&labels), ma && mb);
        prop_assert_eq!(a.clone().or(b.clone()).matches(&labels), ma || mb);
        prop_assert_eq!(a.clone().negate().matches(&labels), !ma);
        prop_assert_eq!(a.clone().negate().negate(), a);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".*") {
        check_if_parses(&text)?;
    }

    #[test]
    fn grammar_soup_never_panics(
        pieces in proptest::collection::vec(
            proptest::sample::select(&[
                "(", ")", "{", "}", ",", "=", "==", "!", "!=", "&", "&&", "|", "||",
                "'", "\"", " ", "\t", "\n", "a", "has(", "all(", "global(", "contains",
                "starts", "with", "ends", "not", "in", "é", "'x'", "\"y\"", "-",
            ][..]),
            0..40,
        ),
    ) {
        check_if_parses(&pieces.concat())?;
    }

    #[test]
    fn byte_soup_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_if_parses(&String::from_utf8_lossy(&bytes))?;
    }
}

/// Parsing must not panic; what parses must round-trip.
fn check_if_parses(text: &str) -> Result<(), TestCaseError> {
    match Selector::parse(text) {
        Ok(sel) => check_selector(&sel, &[LabelMap::new()]),
        Err(e) => {
            prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1);
            prop_assert!(!e.message.is_empty());
            Ok(())
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for text in [
        "(".repeat(100_000),
        "!(".repeat(100_000),
        format!("{}has(a){}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}has(a)", "has(a) && (".repeat(100_000)),
    ] {
        let err = Selector::parse(&text).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
    }
    let ok = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING_DEPTH),
        ")".repeat(MAX_NESTING_DEPTH)
    );
    assert!(Selector::parse(&ok).is_ok());
}

#[test]
fn long_flat_inputs_are_fine() {
    let chain = vec!["has(a)"; 100_000].join(" && ");
    let sel = Selector::parse(&chain).unwrap();
    assert!(!sel.matches(&LabelMap::new()));
    assert_eq!(Selector::parse(&sel.canonical()).unwrap(), sel);
    let nots = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(Selector::parse(&nots).unwrap(), Selector::has("a").negate());
    let set = format!("a in {{{}}}", vec!["'x'"; 100_000].join(","));
    assert_eq!(Selector::parse(&set).unwrap().canonical(), r#"a in {"x"}"#);
}

/// The checks above must be able to fail: a selector with a broken canonical
/// form is reported.
#[test]
fn check_selector_detects_an_unparseable_canonical_form() {
    let bad = Selector::has("a b");
    assert!(check_selector(&bad, &[LabelMap::new()]).is_err());
}
