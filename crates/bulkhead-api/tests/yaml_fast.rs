//! The fast YAML path against serde-saphyr: whenever the fast path gives a value, it is the
//! value serde-saphyr gives for the same text. Inputs: hand-written edge cases, the
//! repository's examples, the loader bench's documents, the shared conformance corpus (read
//! in place when it exists), and random documents (proptest).

use std::path::{Path, PathBuf};

use bulkhead_api::yaml::{fast_value, from_str, value_from_str};
use proptest::prelude::*;
use serde_json::{Value, json};

#[path = "../benches/support/policies.rs"]
mod policies;

/// serde-saphyr's reading of `text`, the reference.
fn slow(text: &str) -> Result<Value, String> {
    from_str::<Value>(text).map_err(|e| e.to_string())
}

/// Runs the fast path on `text`; when it answers, the answer must be serde-saphyr's.
fn check(text: &str) -> Option<Value> {
    let fast = fast_value(text);
    if let Some(v) = &fast {
        assert_eq!(slow(text).as_ref(), Ok(v), "fast path differs on {text:?}");
    }
    fast
}

/// `text` is taken by the fast path and reads as `expected`.
fn fast(text: &str, expected: Value) {
    assert_eq!(check(text), Some(expected), "fast path on {text:?}");
}

/// `text` is left to serde-saphyr.
fn falls_back(text: &str) {
    assert_eq!(check(text), None, "fast path should decline {text:?}");
}

#[test]
fn block_structure() {
    fast("a: 1\nb: x\n", json!({"a": 1, "b": "x"}));
    fast("---\na: 1\n", json!({"a": 1}));
    fast("--- # start\na: 1\n", json!({"a": 1}));
    fast(
        "a:\n  b:\n    c: d\n  e: f\n",
        json!({"a": {"b": {"c": "d"}, "e": "f"}}),
    );
    fast("a:\n- x\n- y\nb: z\n", json!({"a": ["x", "y"], "b": "z"}));
    fast("a:\n  - x\n  - y\n", json!({"a": ["x", "y"]}));
    fast("- a: 1\n  b: 2\n- c\n", json!([{"a": 1, "b": 2}, "c"]));
    fast("- - x\n  - y\n- z\n", json!([["x", "y"], "z"]));
    fast("- - - x\n", json!([[["x"]]]));
    fast("-\n  a: 1\n-\n- x\n", json!([{"a": 1}, null, "x"]));
    fast("- a:\n  - x\n  b: 1\n", json!([{"a": ["x"], "b": 1}]));
    fast("- a:\n    b: 1\n", json!([{"a": {"b": 1}}]));
    fast("a:\nb:\n  c:\n", json!({"a": null, "b": {"c": null}}));
    fast("a: # c\n  b: 1\n", json!({"a": {"b": 1}}));
    fast("a:\n  x\n", json!({"a": "x"}));
    fast("  a: 1\n  b: 2\n", json!({"a": 1, "b": 2}));
    fast("a: 1\n\n\n# c\n   # c\nb: 2\n", json!({"a": 1, "b": 2}));
    fast("a: 1   \nb: 2  \n", json!({"a": 1, "b": 2}));
    fast("a: 1\r\nb:\r\n  - x\r\n", json!({"a": 1, "b": ["x"]}));
    fast("a: 1", json!({"a": 1}));
    fast("x\n", json!("x"));
    fast("- # c\n  a: 1\n", json!([{"a": 1}]));
    fast("a : 1\n", json!({"a": 1}));
    fast("a:b: c\n", json!({"a:b": "c"}));
    fast("a b: c d\n", json!({"a b": "c d"}));
}

#[test]
fn block_structure_left_to_serde_saphyr() {
    for text in [
        "a: b: c\n",
        "a: - x\n",
        "a: b\n  c\n",
        "a: 'b\n  c'\n",
        "a: \"b\n  c\"\n",
        "a: [b,\n  c]\n",
        "a: |\n  x\n",
        "a: >-\n  x\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "? a\n: b\n",
        "%YAML 1.2\n---\na: 1\n",
        "a:\n\tb: 1\n",
        "a: 1\na: 2\n",
        "a: {b: 1, b: 2}\n",
        "<<: {a: 1}\n",
        "'<<': a\n",
        "a: 1\n b: 2\n",
        "a:\n    b: 1\n  c: 2\n",
        "- a\nb: 1\n",
        "a: 1\n- b\n",
        "a: 1\n---\nb: 2\n",
        // Found by the fuzzer: two document starts before any content.
        "\n\n---\n\n---\n6 #b5#bb5\n",
        "---\n---\na: 1\n",
        "a: 1\n...\n",
        "\u{feff}a: 1\n",
        "a: 1\rb: 2\n",
        "",
        "# only a comment\n",
        "a: 'x'y\n",
        "a: [x]y\n",
        "a: [x]#c\n",
        "a: {b}\n",
        "a: {b: }\n",
        "a: [b: c]\n",
        "a: [, b]\n",
        "a: @x\n",
        "a: `x\n",
        "a: %x\n",
        "1: a\n",
        "true: a\n",
        "null: a\n",
        "~: a\n",
        "[a]: b\n",
        "a:\n- x\n - y\n",
    ] {
        falls_back(text);
    }
    let comments = "# c\n".repeat(40);
    falls_back(&format!("a: 1\n{comments}b: 2\n"));
    let deep = (0..60).fold(String::from("x"), |inner, _| format!("[{inner}]"));
    falls_back(&format!("a: {deep}\n"));
    let long_key = "k".repeat(2000);
    falls_back(&format!("{long_key}: 1\n"));
    falls_back(&format!("'{long_key}': 1\n"));
    falls_back(&format!("a: {{{long_key}: 1}}\n"));
    let spaces = " ".repeat(2000);
    falls_back(&format!("a{spaces}: 1\n"));
    falls_back(&format!("a: {{b{spaces}: 1}}\n"));
}

#[test]
fn long_scalars() {
    let long = "v".repeat(5000);
    for text in [
        format!("a: {long}\n"),
        format!("a: '{long}'\n"),
        format!("a: \"{long}\"\n"),
        format!("- {long}\n"),
        format!("a: [{long}, {long}]\n"),
        format!("a: {{b: {long}}}\n"),
        format!("{long}\n"),
    ] {
        check(&text);
    }
    fast(&format!("a: {long}\n"), json!({ "a": long }));
}

#[test]
fn scalars() {
    fast("a: b # c\n", json!({"a": "b"}));
    fast("a: b#c\n", json!({"a": "b#c"}));
    fast("a: 'b # c'\n", json!({"a": "b # c"}));
    fast("a: \"b # c\"\n", json!({"a": "b # c"}));
    fast("a: 'it''s'\n", json!({"a": "it's"}));
    fast("a: \"a\\\"b\"\n", json!({"a": "a\"b"}));
    fast(
        "a: \"\\u00e9\\x41\\U0001F600\\t\\n\\\\\\/\"\n",
        json!({"a": "éA😀\t\n\\/"}),
    );
    fast(
        "a: \"\\0\\a\\b\\v\\f\\r\\e\\ \\N\\_\\L\\P\"\n",
        json!({"a": "\0\x07\x08\x0b\x0c\r\x1b \u{85}\u{a0}\u{2028}\u{2029}"}),
    );
    fast("\"a:b\": c\n", json!({"a:b": "c"}));
    fast("'a b' : c\n", json!({"a b": "c"}));
    fast("\"\": c\n", json!({"": "c"}));
    fast("a: ''\nb: \"\"\n", json!({"a": "", "b": ""}));
    fast("a: []\nb: {}\n", json!({"a": [], "b": {}}));
    fast(
        "a: [x, 'y', \"z\", [1, {b: c}], {d: [e]}]\n",
        json!({"a": ["x", "y", "z", [1, {"b": "c"}], {"d": ["e"]}]}),
    );
    fast("a: [ x , y , ]\n", json!({"a": ["x", "y"]}));
    fast(
        "a: {b: c, 'd': \"e\"} # c\n",
        json!({"a": {"b": "c", "d": "e"}}),
    );
    fast("a: [a#b, c]\n", json!({"a": ["a#b", "c"]}));
    fast("a: [x] # c\n", json!({"a": ["x"]}));
    fast(
        "a: héllo wörld ✓\nclé: 値\n",
        json!({"a": "héllo wörld ✓", "clé": "値"}),
    );
    fast(
        "a: app == 'x' && v in {'1', '2'}\n",
        json!({"a": "app == 'x' && v in {'1', '2'}"}),
    );
    fast("a: b, c [d] {e}\n", json!({"a": "b, c [d] {e}"}));
    fast("a: b \"c\" 'd'\n", json!({"a": "b \"c\" 'd'"}));
    fast(
        "a: -x\nb: --- \nc: x:y\n",
        json!({"a": "-x", "b": "---", "c": "x:y"}),
    );
    fast(
        "a: 192.168.0.0/16\nb: 10.0.0.1\nc: fd00::/8\nd: 1.2.3\n",
        json!({"a": "192.168.0.0/16", "b": "10.0.0.1", "c": "fd00::/8", "d": "1.2.3"}),
    );
    fast(
        "a: [192.168.1.0/24, 172.16.0.0/12]\n",
        json!({"a": ["192.168.1.0/24", "172.16.0.0/12"]}),
    );
    fast(
        "a: 1z\nb: 80/tcp\nc: 3 apples\n",
        json!({"a": "1z", "b": "80/tcp", "c": "3 apples"}),
    );
    fast("a: -\\x\n", json!({"a": "-\\x"}));
}

#[test]
fn plain_scalar_resolution() {
    let cases = [
        ("true", json!(true)),
        ("True", json!(true)),
        ("TRUE", json!(true)),
        ("false", json!(false)),
        ("False", json!(false)),
        ("FALSE", json!(false)),
        ("null", json!(null)),
        ("Null", json!(null)),
        ("NULL", json!(null)),
        ("~", json!(null)),
        ("", json!(null)),
        ("0", json!(0)),
        ("7", json!(7)),
        ("-7", json!(-7)),
        ("18446744073709551615", json!(18446744073709551615u64)),
        ("-9223372036854775808", json!(-9223372036854775808i64)),
        ("yes", json!("yes")),
        ("no", json!("no")),
        ("on", json!("on")),
        ("y", json!("y")),
        ("tRUE", json!("tRUE")),
        ("nULL", json!("nULL")),
        ("none", json!("none")),
        ("inf", json!("inf")),
        ("-inf", json!("-inf")),
        ("nan", json!("nan")),
        ("infinity", json!("infinity")),
        ("+", json!("+")),
        ("-a", json!("-a")),
        ("+a", json!("+a")),
        ("1.2.3.4", json!("1.2.3.4")),
        ("0xZZ", json!("0xZZ")),
        ("_1", json!("_1")),
    ];
    for (plain, expected) in cases {
        fast(&format!("a: {plain}\n"), json!({ "a": expected.clone() }));
        fast(&format!("- {plain}\n"), json!([expected.clone()]));
        if !plain.is_empty() {
            fast(&format!("a: [{plain}]\n"), json!({ "a": [expected] }));
        }
    }
    for plain in [
        "1.5",
        "-1.5",
        "+1",
        "+0",
        "-0",
        "010",
        "-010",
        "0x1F",
        "0o17",
        "0b101",
        "1_000",
        "1e3",
        "1E3",
        "-1e-3",
        "1.",
        ".5",
        "-.5",
        ".inf",
        "-.inf",
        "+.inf",
        ".Inf",
        ".INF",
        ".nan",
        ".NaN",
        ".NAN",
        "1e999",
        "18446744073709551616",
        "-9223372036854775809",
        "12:30",
        "1:2:3",
        "0x",
        "1__0",
        "1a",
        "0xdeadbeef",
    ] {
        falls_back(&format!("a: {plain}\n"));
        falls_back(&format!("a: [{plain}]\n"));
        falls_back(&format!("{plain}: a\n"));
    }
}

#[test]
fn errors_still_come_from_serde_saphyr() {
    let text = "a: 1\nb: [x,\n";
    let fast_error = value_from_str(text).expect_err("invalid YAML");
    let slow_error = from_str::<Value>(text).expect_err("invalid YAML");
    assert_eq!(fast_error.to_string(), slow_error.to_string());
}

/// Every `*.yaml`, `*.yml` and `*.json` file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
}

/// The documents of a stream (split at `---` lines), each checked; then every multi-line
/// string of the value (policies embedded in test cases as block scalars) as a stream of
/// its own. Returns how many documents the fast path took.
fn check_stream(text: &str, taken: &mut usize, total: &mut usize) {
    let mut documents = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else if let Some(last) = documents.last_mut() {
            last.push_str(line);
        }
    }
    for document in documents.iter().filter(|d| !d.trim().is_empty()) {
        *total += 1;
        if check(document).is_some() {
            *taken += 1;
        }
        if let Ok(value) = slow(document) {
            for embedded in multi_line_strings(&value) {
                check_stream(embedded, taken, total);
            }
        }
    }
}

fn multi_line_strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) if s.contains('\n') => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(multi_line_strings).collect(),
        Value::Object(map) => map.values().flat_map(multi_line_strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn examples_and_conformance_corpus() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, required) in [
        (crate_dir.join("../../examples"), true),
        (crate_dir.join("../../../shared/conformance"), false),
    ] {
        let mut paths = Vec::new();
        files(&dir, &mut paths);
        if paths.is_empty() {
            assert!(!required, "no YAML under {}", dir.display());
            continue;
        }
        let (mut taken, mut total) = (0, 0);
        for path in &paths {
            let text = std::fs::read_to_string(path).expect("readable file");
            check_stream(&text, &mut taken, &mut total);
        }
        eprintln!(
            "{}: fast path took {taken} of {total} documents",
            dir.display()
        );
        assert!(
            taken * 2 > total,
            "the fast path should take most documents"
        );
    }
}

#[test]
fn bench_documents_all_take_the_fast_path() {
    let text = policies::policies_yaml(500);
    for document in text.split("---\n").filter(|d| !d.is_empty()) {
        assert!(check(document).is_some(), "declined: {document}");
    }
}

/// A string that renders plain and reads back as itself (and that the fast path takes):
/// starts with a letter, no indicator sequence, not a special word; in keys and flow
/// collections, no flow indicator either.
fn plain_safe(s: &str, tight: bool) -> bool {
    let words = [
        "true", "false", "null", "True", "False", "Null", "TRUE", "FALSE", "NULL",
    ];
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !words.contains(&s)
        && !(tight && s.contains(['[', ']', '{', '}', ',', ':', '#']))
}

/// How a generated value is written.
#[derive(Debug, Clone, Copy)]
struct Style {
    /// Spaces per nesting level (2 or 4).
    indent: usize,
    /// Sequences under a key start at the key's column (`a:\n- x`).
    flush_sequences: bool,
    /// Strings: plain when safe; else double (`true`) or single (`false`) quotes.
    double_quotes: bool,
    /// Small collections of scalars are written as flow collections.
    flow: bool,
    /// A trailing comment after scalars.
    comments: bool,
}

/// A scalar; `tight` for keys and flow collections.
fn scalar(value: &Value, style: Style, tight: bool) -> String {
    match value {
        Value::String(s) if plain_safe(s, tight) => s.clone(),
        Value::String(s) if style.double_quotes => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::String(s) if !s.contains(|c: char| c.is_control()) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        Value::String(s) => serde_json::to_string(s).expect("a string serializes"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// A flow rendering, when the style asks for it and every member is a scalar.
fn flow(value: &Value, style: Style) -> Option<String> {
    match value {
        Value::Array(items) if items.is_empty() => Some("[]".into()),
        Value::Object(map) if map.is_empty() => Some("{}".into()),
        Value::Array(items) if style.flow && items.iter().all(is_scalar) => {
            let items: Vec<String> = items.iter().map(|v| scalar(v, style, true)).collect();
            Some(format!("[{}]", items.join(", ")))
        }
        Value::Object(map) if style.flow && map.values().all(is_scalar) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let key = scalar(&Value::String(k.clone()), style, true);
                    format!("{key}: {}", scalar(v, style, true))
                })
                .collect();
            Some(format!("{{{}}}", entries.join(", ")))
        }
        _ => None,
    }
}

/// Writes `value` (a collection) as block YAML at column `col`.
fn block(value: &Value, col: usize, style: Style, out: &mut String) {
    let pad = " ".repeat(col);
    let comment = if style.comments { " # note" } else { "" };
    match value {
        Value::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match flow(item, style) {
                    _ if is_scalar(item) => {
                        out.push_str(&format!(" {}{comment}\n", scalar(item, style, false)))
                    }
                    Some(f) => out.push_str(&format!(" {f}\n")),
                    None => {
                        out.push('\n');
                        block(item, col + style.indent, style, out);
                    }
                }
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                out.push_str(&pad);
                out.push_str(&scalar(&Value::String(key.clone()), style, true));
                out.push(':');
                match flow(item, style) {
                    _ if is_scalar(item) => {
                        out.push_str(&format!(" {}{comment}\n", scalar(item, style, false)))
                    }
                    Some(f) => out.push_str(&format!(" {f}\n")),
                    None => {
                        out.push('\n');
                        let inner = match item {
                            Value::Array(_) if style.flush_sequences => col,
                            _ => col + style.indent,
                        };
                        block(item, inner, style, out);
                    }
                }
            }
        }
        _ => unreachable!("block() takes collections"),
    }
}

fn string_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9./-]{0,10}",
        "[ -~]{0,12}",
        "[a-zé😀:#'\" -]{0,8}",
        prop::sample::select(vec![
            "true", "false", "null", "~", "", "1", "-1", "1.5", "0x1F", "010", ".inf", "yes",
            "a: b", "- x", "#c", "a #b", "&a", "*a", "!t", "|", ">", "?", "%", "@", "`", "[x]",
            "{x}", "--- x", "...", "x:", " x", "x ", "'", "\"", "\\",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Keys: any string but the merge key, which the fast path leaves to serde-saphyr.
fn key_strategy() -> impl Strategy<Value = String> {
    string_strategy().prop_filter("merge key", |k| k != "<<")
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        string_strategy().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key_strategy(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn style_strategy() -> impl Strategy<Value = Style> {
    (
        prop::sample::select(vec![2usize, 4]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(indent, flush_sequences, double_quotes, flow, comments)| Style {
                indent,
                flush_sequences,
                double_quotes,
                flow,
                comments,
            },
        )
}

/// Pieces of YAML syntax for random, mostly invalid, documents.
const TOKENS: &[&str] = &[
    " ", "  ", "\n", "\r\n", "- ", "-", ":", ": ", "a", "b", "1", "0", ".", "#", " #", "'", "\"",
    "[", "]", "{", "}", ", ", ",", "\\", "\\u00", "x", "e", "&", "*", "!", "|", ">", "?", "%", "~",
    "true", "null", "---", "\t", "é", "<<",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_documents_read_back(
        map in prop::collection::btree_map(key_strategy(), value_strategy(), 1..6),
        style in style_strategy(),
    ) {
        let value = Value::Object(map.into_iter().collect());
        let mut text = String::new();
        block(&value, 0, style, &mut text);
        prop_assert_eq!(slow(&text), Ok(value.clone()), "serde-saphyr on {:?}", text);
        prop_assert_eq!(fast_value(&text), Some(value), "fast path on {:?}", text);
    }

    #[test]
    fn mutated_documents_agree_or_decline(
        map in prop::collection::btree_map(key_strategy(), value_strategy(), 1..6),
        style in style_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(TOKENS), any::<bool>()), 1..4),
    ) {
        let mut text = String::new();
        block(&Value::Object(map.into_iter().collect()), 0, style, &mut text);
        for (at, token, insert) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            if insert {
                text.insert_str(i, token);
            } else if let Some(c) = text[i..].chars().next() {
                text.replace_range(i..i + c.len_utf8(), "");
            }
        }
        if let Some(v) = fast_value(&text) {
            prop_assert_eq!(slow(&text), Ok(v), "fast path differs on {:?}", text);
        }
    }

    #[test]
    fn random_text_agrees_or_declines(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..40)
    ) {
        let text = tokens.concat();
        if let Some(v) = fast_value(&text) {
            prop_assert_eq!(slow(&text), Ok(v), "fast path differs on {:?}", text);
        }
    }
}
