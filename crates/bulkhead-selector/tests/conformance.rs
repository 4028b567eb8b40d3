//! Golden vectors from the shared conformance corpus (`selector-cases/v1`).
//!
//! The vectors are third-party data (translated from Calico's tests) and live
//! outside this repository, in `../shared/conformance/selectors/` next to the
//! checkout. They are read at test time; when the directory is missing the
//! test says so and passes, so a bare checkout still builds and tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bulkhead_selector::Selector;
use serde::Deserialize;

type LabelMap = BTreeMap<String, String>;

/// One `selector-cases/v1` file.
#[derive(Debug, Deserialize)]
struct CaseFile {
    schema: String,
    id: String,
    #[serde(default)]
    cases: Vec<Case>,
    #[serde(default)]
    invalid: Vec<String>,
    #[serde(default)]
    canonical: Vec<Canonical>,
}

#[derive(Debug, Deserialize)]
struct Case {
    selector: String,
    #[serde(default)]
    matches: Vec<LabelMap>,
    #[serde(default, rename = "nonMatches")]
    non_matches: Vec<LabelMap>,
}

#[derive(Debug, Deserialize)]
struct Canonical {
    input: String,
    output: String,
    #[serde(default)]
    uid: Option<String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/selectors")
}

fn load_corpus() -> Option<Vec<(PathBuf, CaseFile)>> {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "NOTICE: selector conformance corpus not found at {}; skipping golden vectors",
            dir.display()
        );
        return None;
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no *.yaml files in {}", dir.display());
    let files = paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable vector file");
            let file: CaseFile =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(file.schema, "selector-cases/v1", "{}", path.display());
            (path, file)
        })
        .collect();
    Some(files)
}

/// Collects failures instead of stopping at the first, so one run shows
/// every vector that disagrees.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn assert_none(self, total: usize) {
        assert!(
            self.0.is_empty(),
            "{} of {total} checks failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

#[test]
fn golden_vectors() {
    let Some(files) = load_corpus() else {
        return;
    };
    let mut failures = Failures::default();
    let mut checks = 0;
    for (path, file) in &files {
        let name = format!("{} ({})", file.id, path.display());

        for case in &file.cases {
            let sel = match Selector::parse(&case.selector) {
                Ok(s) => s,
                Err(e) => {
                    failures
                        .0
                        .push(format!("{name}: {:?} must parse: {e}", case.selector));
                    continue;
                }
            };
            // Upstream re-parses the canonical form and expects the same
            // results; we also expect the same canonical form and tree.
            let canonical = sel.canonical();
            let reparsed = match Selector::parse(&canonical) {
                Ok(s) => s,
                Err(e) => {
                    failures.0.push(format!(
                        "{name}: canonical {canonical:?} of {:?} must parse: {e}",
                        case.selector
                    ));
                    continue;
                }
            };
            checks += 2;
            failures.check(reparsed.canonical() == canonical, || {
                format!("{name}: {canonical:?} is not a fixed point")
            });
            failures.check(reparsed == sel, || {
                format!("{name}: {canonical:?} re-parses to a different tree")
            });
            let expectations = case
                .matches
                .iter()
                .map(|l| (l, true))
                .chain(case.non_matches.iter().map(|l| (l, false)));
            for (labels, expected) in expectations {
                checks += 2;
                failures.check(sel.matches(labels) == expected, || {
                    format!(
                        "{name}: {:?} on {labels:?} should be {expected}",
                        case.selector
                    )
                });
                failures.check(reparsed.matches(labels) == expected, || {
                    format!("{name}: re-parsed {canonical:?} on {labels:?} should be {expected}")
                });
            }
        }

        for input in &file.invalid {
            checks += 1;
            let result = Selector::parse(input);
            failures.check(result.is_err(), || {
                format!("{name}: {input:?} must be rejected, parsed as {result:?}")
            });
        }

        for c in &file.canonical {
            let sel = match Selector::parse(&c.input) {
                Ok(s) => s,
                Err(e) => {
                    failures
                        .0
                        .push(format!("{name}: {:?} must parse: {e}", c.input));
                    continue;
                }
            };
            checks += 2;
            failures.check(sel.canonical() == c.output, || {
                format!(
                    "{name}: {:?} canonicalises to {:?}, want {:?}",
                    c.input,
                    sel.canonical(),
                    c.output
                )
            });
            let again = Selector::parse(&c.output).map(|s| s.canonical());
            failures.check(again.as_deref() == Ok(c.output.as_str()), || {
                format!("{name}: {:?} re-canonicalises to {again:?}", c.output)
            });
            if let Some(uid) = &c.uid {
                checks += 1;
                failures.check(&sel.unique_id() == uid, || {
                    format!(
                        "{name}: uid of {:?} is {}, want {uid}",
                        c.input,
                        sel.unique_id()
                    )
                });
            }
        }
        eprintln!(
            "{name}: {} cases, {} invalid, {} canonical",
            file.cases.len(),
            file.invalid.len(),
            file.canonical.len()
        );
    }
    assert!(checks > 0, "the corpus held no checks");
    failures.assert_none(checks);
}

/// The harness itself must be able to fail: a wrong expectation is caught.
#[test]
fn harness_detects_a_wrong_expectation() {
    let mut failures = Failures::default();
    let sel = Selector::parse("a == 'b'").unwrap();
    let labels: LabelMap = [("a".to_string(), "c".to_string())].into();
    failures.check(sel.matches(&labels), || "a == 'b' on {a: c}".into());
    let result = std::panic::catch_unwind(move || failures.assert_none(1));
    assert!(result.is_err());
}
