//! `bulkhead diff -f`: what `apply` would change, as unified diffs of the YAML.

use std::process::ExitCode;

use bulkhead_api::Resource;

use super::apply::{FileArgs, in_apply_order, load_files, user_document};
use super::get::{emit, kind_word, to_yaml};
use super::login::ServerArgs;

/// Arguments of `bulkhead diff`.
#[derive(clap::Args)]
#[command(
    after_help = "Prints, per object, a unified diff from the stored object to the file's\n\
(server metadata left out), or `<kind>/<name> unchanged`. Sends nothing.\n\
Exit code (as kubectl diff): 0 nothing would change, 1 something would, 2 error.\n\n\
Example:\n  bulkhead diff -f policies/"
)]
pub struct Args {
    #[command(flatten)]
    files: FileArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// Prints the differences.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = match load_files(&args.files.files) {
        Ok(l) => l,
        // Invalid files: an error, not a difference.
        Err(_) => return Ok(ExitCode::from(2)),
    };
    let client = args.server.connect()?;
    let mut changed = false;
    let mut failed = false;
    for l in in_apply_order(loaded) {
        let r = &l.resource;
        let key = r.key();
        let label = format!("{}/{}", kind_word(key.kind), key.name);
        let before = match client.get(key.kind, key.namespace.as_deref(), &key.name) {
            Ok(stored) => Some(stored),
            Err(e) if e.is_not_found() => None,
            Err(e @ bulkhead_client::Error::Transport { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("error: {label}: {e}");
                failed = true;
                continue;
            }
        };
        match object_diff(&label, before.as_ref(), r) {
            None => emit(&format!("{label} unchanged\n")),
            Some(d) => {
                changed = true;
                emit(&d);
            }
        }
    }
    Ok(ExitCode::from(if failed {
        2
    } else if changed {
        1
    } else {
        0
    }))
}

/// The unified diff from `before` (absent: a creation) to `after`, or `None` if equal.
pub fn object_diff(label: &str, before: Option<&Resource>, after: &Resource) -> Option<String> {
    let old = before
        .map(|b| to_yaml(&user_document(b)))
        .unwrap_or_default();
    let new = to_yaml(&user_document(after));
    if old == new {
        return None;
    }
    let old_name = if before.is_some() {
        format!("{label} (server)")
    } else {
        "/dev/null".to_string()
    };
    Some(unified(
        &old_name,
        &format!("{label} (file)"),
        &old,
        &new,
        3,
    ))
}

/// A unified diff of two texts, line by line, with `context` lines around changes.
pub fn unified(old_name: &str, new_name: &str, old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = line_ops(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Group operations into hunks: changes closer than 2*context share a hunk.
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changes.len() {
        let start = changes[i].saturating_sub(context);
        let mut end = changes[i];
        while i + 1 < changes.len() && changes[i + 1] <= end + 2 * context + 1 {
            i += 1;
            end = changes[i];
        }
        let end = (end + context + 1).min(ops.len());
        // Line numbers at the hunk's start.
        let (mut a_line, mut b_line) = (1, 1);
        for op in &ops[..start] {
            match op {
                Op::Same(..) => {
                    a_line += 1;
                    b_line += 1;
                }
                Op::Del(_) => a_line += 1,
                Op::Add(_) => b_line += 1,
            }
        }
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let b_len = hunk.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        let range = |line: usize, len: usize| match len {
            0 => format!("{},0", line - 1),
            1 => format!("{line}"),
            n => format!("{line},{n}"),
        };
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(a_line, a_len),
            range(b_line, b_len)
        ));
        for op in hunk {
            match op {
                Op::Same(l, _) => out.push_str(&format!(" {l}\n")),
                Op::Del(l) => out.push_str(&format!("-{l}\n")),
                Op::Add(l) => out.push_str(&format!("+{l}\n")),
            }
        }
        i += 1;
    }
    out
}

#[derive(Debug, PartialEq)]
enum Op<'a> {
    Same(&'a str, &'a str),
    Del(&'a str),
    Add(&'a str),
}

/// Line edit script by longest common subsequence (documents are small; beyond a size
/// bound it degrades to "replace everything", still a correct diff).
fn line_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    // Common prefix and suffix are cheap and keep the table small.
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op<'a>> = a[..prefix].iter().map(|l| Op::Same(l, l)).collect();
    if am.len().saturating_mul(bm.len()) > 4_000_000 {
        ops.extend(am.iter().map(|l| Op::Del(l)));
        ops.extend(bm.iter().map(|l| Op::Add(l)));
    } else {
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if am[i] == bm[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if am[i] == bm[j] {
                ops.push(Op::Same(am[i], bm[j]));
                i += 1;
                j += 1;
            } else if lcs[at(i + 1, j)] >= lcs[at(i, j + 1)] {
                ops.push(Op::Del(am[i]));
                i += 1;
            } else {
                ops.push(Op::Add(bm[j]));
                j += 1;
            }
        }
        ops.extend(am[i..].iter().map(|l| Op::Del(l)));
        ops.extend(bm[j..].iter().map(|l| Op::Add(l)));
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| Op::Same(l, l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::load_str;

    #[test]
    fn unified_diff_hunks() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let new = "a\nb\nC\nd\ne\nf\ng\nh\ni\nj\nk\n";
        let d = unified("old", "new", old, new, 1);
        assert_eq!(
            d,
            "--- old\n+++ new\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n@@ -10 +10,2 @@\n j\n+k\n"
        );
        let d = unified("/dev/null", "new", "", "x\ny\n", 3);
        assert_eq!(d, "--- /dev/null\n+++ new\n@@ -0,0 +1,2 @@\n+x\n+y\n");
    }

    #[test]
    fn object_diffs() {
        let load = |t: &str| load_str("t", t).expect("loads").remove(0).resource;
        let stored = load(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a, resourceVersion: '9', uid: x}\nspec: {order: 1, selector: all()}\n",
        );
        let same = load(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\nspec: {order: 1, selector: all()}\n",
        );
        assert_eq!(object_diff("gnp/a", Some(&stored), &same), None);
        let changed = load(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\nspec: {order: 2, selector: all()}\n",
        );
        let d = object_diff("gnp/a", Some(&stored), &changed).expect("a diff");
        assert!(d.contains("-  order: 1\n+  order: 2\n"), "{d}");
        assert!(d.contains("@@ -3,7 +3,7 @@\n metadata:\n"), "{d}");
        assert!(!d.contains("resourceVersion"), "{d}");
        let d = object_diff("gnp/a", None, &changed).expect("a diff");
        assert!(
            d.starts_with("--- /dev/null\n+++ gnp/a (file)\n@@ -0,0 +1,"),
            "{d}"
        );
    }
}
