//! The conformance corpus format and its runner.
//!
//! A corpus is a tree of YAML case files (`netpol-case/v1`, `selector-cases/v1`; see the
//! corpus's FORMAT.md). [`run`] finds every case under the given paths, runs each against a
//! [`Backend`] and writes one line per case, a summary per tag, and last the line
//! `N passed, N failed, N skipped`.
//!
//! The runner accepts any case file in the format: nothing here knows particular cases.
//! Backends plug in through [`Backend`]: [`EvalBackend`] evaluates in memory with the
//! engine; a dataplane backend builds namespaces and probes with real packets.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod case;
pub mod fixture;
pub mod runner;
mod selectors;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use runner::{Backend, CaseResult, EvalBackend, ProbeRequest, run_case};

use case::{NetpolCase, SelectorCases};

/// Which cases to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only cases carrying one of these tags (empty: all).
    pub tags: Vec<String>,
    /// Run only cases whose id contains this text.
    pub filter: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Each case: id, tags, result.
    pub cases: Vec<(String, Vec<String>, CaseResult)>,
}

impl Report {
    /// (passed, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for (_, _, r) in &self.cases {
            match r {
                CaseResult::Pass => c.0 += 1,
                CaseResult::Fail(_) => c.1 += 1,
                CaseResult::Skip(_) => c.2 += 1,
            }
        }
        c
    }
}

/// A case file, parsed.
enum CaseFile {
    Netpol(Box<NetpolCase>),
    Selector(Box<SelectorCases>),
}

/// Every `*.yaml`/`*.yml` file under `paths` (files are taken as given), sorted.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_dir() {
        for entry in std::fs::read_dir(p)? {
            walk(&entry?.path(), out)?;
        }
    } else if p.is_file() {
        let yaml = matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        if yaml {
            out.push(p.to_path_buf());
        }
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no such file or directory", p.display()),
        ));
    }
    Ok(())
}

fn parse_case(path: &Path) -> Result<CaseFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let value: serde_json::Value =
        bulkhead_api::yaml::from_str(&text).map_err(|e| format!("not YAML: {e}"))?;
    let schema = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    match schema {
        "netpol-case/v1" => serde_json::from_value(value)
            .map(|c| CaseFile::Netpol(Box::new(c)))
            .map_err(|e| format!("invalid netpol-case/v1: {e}")),
        "selector-cases/v1" => serde_json::from_value(value)
            .map(|c| CaseFile::Selector(Box::new(c)))
            .map_err(|e| format!("invalid selector-cases/v1: {e}")),
        other => Err(format!(
            "unknown schema {other:?}: expected netpol-case/v1 or selector-cases/v1"
        )),
    }
}

/// Runs every case under `paths` against `backend`, writing the report to `out`.
pub fn run(
    paths: &[PathBuf],
    backend: &mut dyn Backend,
    options: &RunOptions,
    out: &mut dyn Write,
) -> std::io::Result<Report> {
    let mut report = Report::default();
    for path in discover(paths)? {
        let (id, tags, result) = match parse_case(&path) {
            Ok(CaseFile::Netpol(case)) => {
                if !selected(&case.id, &case.tags, options) {
                    continue;
                }
                let result = run_case(&case, backend);
                (case.id.clone(), case.tags.clone(), result)
            }
            Ok(CaseFile::Selector(cases)) => {
                if !selected(&cases.id, &cases.tags, options) {
                    continue;
                }
                let result = selectors::run(&cases);
                (cases.id.clone(), cases.tags.clone(), result)
            }
            Err(e) => {
                let id = path.display().to_string();
                if options
                    .filter
                    .as_ref()
                    .is_some_and(|f| !id.contains(f.as_str()))
                {
                    continue;
                }
                (id, Vec::new(), CaseResult::Fail(e))
            }
        };
        match &result {
            CaseResult::Pass => writeln!(out, "PASS {id}")?,
            CaseResult::Fail(m) => writeln!(out, "FAIL {id}: {m}")?,
            CaseResult::Skip(m) => writeln!(out, "SKIP {id}: {m}")?,
        }
        report.cases.push((id, tags, result));
    }
    write_summary(&report, backend.name(), out)?;
    Ok(report)
}

fn selected(id: &str, tags: &[String], options: &RunOptions) -> bool {
    options
        .filter
        .as_ref()
        .is_none_or(|f| id.contains(f.as_str()))
        && (options.tags.is_empty() || tags.iter().any(|t| options.tags.contains(t)))
}

fn write_summary(report: &Report, mode: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let mut by_tag: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (_, tags, result) in &report.cases {
        for t in tags {
            let e = by_tag.entry(t.as_str()).or_default();
            match result {
                CaseResult::Pass => e.0 += 1,
                CaseResult::Fail(_) => e.1 += 1,
                CaseResult::Skip(_) => e.2 += 1,
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "By tag ({mode} mode):")?;
    for (tag, (p, f, s)) in by_tag {
        let total = p + f;
        let skipped = if s > 0 {
            format!(" ({s} skipped)")
        } else {
            String::new()
        };
        writeln!(out, "  {tag:<22} {p}/{total} passed{skipped}")?;
    }
    let (p, f, s) = report.counts();
    writeln!(out)?;
    if s > 0 {
        writeln!(out, "{p} passed, {f} failed, {s} skipped")
    } else {
        writeln!(out, "{p} passed, {f} failed")
    }
}
