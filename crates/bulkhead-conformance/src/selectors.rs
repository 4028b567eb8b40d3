//! Running `selector-cases/v1` files: parse, match, reject, canonical form, unique IDs.

use bulkhead_selector::Selector;

use crate::case::SelectorCases;
use crate::runner::CaseResult;

/// Runs every vector of a selector-cases file; fails on the first mismatch.
pub fn run(cases: &SelectorCases) -> CaseResult {
    match check(cases) {
        Ok(()) => CaseResult::Pass,
        Err(m) => CaseResult::Fail(m),
    }
}

fn check(cases: &SelectorCases) -> Result<(), String> {
    for c in &cases.cases {
        let sel = Selector::parse(&c.selector)
            .map_err(|e| format!("selector {:?} does not parse: {e}", c.selector))?;
        let again = Selector::parse(&sel.canonical()).map_err(|e| {
            format!(
                "canonical form {:?} of {:?} does not parse: {e}",
                sel.canonical(),
                c.selector
            )
        })?;
        for (labels, want) in c
            .matches
            .iter()
            .map(|l| (l, true))
            .chain(c.non_matches.iter().map(|l| (l, false)))
        {
            for s in [&sel, &again] {
                if s.matches(labels) != want {
                    return Err(format!(
                        "selector {:?} on {labels:?}: expected {}",
                        s.canonical(),
                        if want { "a match" } else { "no match" }
                    ));
                }
            }
        }
    }
    for bad in &cases.invalid {
        if let Ok(sel) = Selector::parse(bad) {
            return Err(format!(
                "invalid selector {bad:?} was accepted as {:?}",
                sel.canonical()
            ));
        }
    }
    for c in &cases.canonical {
        let sel = Selector::parse(&c.input)
            .map_err(|e| format!("selector {:?} does not parse: {e}", c.input))?;
        if sel.canonical() != c.output {
            return Err(format!(
                "canonical form of {:?}: expected {:?}, got {:?}",
                c.input,
                c.output,
                sel.canonical()
            ));
        }
        if let Some(uid) = &c.uid
            && sel.unique_id() != *uid
        {
            return Err(format!(
                "unique id of {:?}: expected {uid}, got {}",
                c.input,
                sel.unique_id()
            ));
        }
    }
    Ok(())
}
