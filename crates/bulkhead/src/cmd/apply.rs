//! `bulkhead apply -f`: make the server hold what the files say.
//!
//! Everything is loaded and validated locally first; if any document is invalid, every
//! error is printed and nothing is sent. Then each object is compared with the stored
//! one (server metadata ignored) and created, replaced, or left alone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_api::{Kind, Loaded, Resource, ResourceKey, load_paths};
use bulkhead_client::{Client, Error};
use serde_json::Value;

use super::get::{emit, kind_word};
use super::login::ServerArgs;

/// `-f FILE|DIR|-`, repeatable.
#[derive(clap::Args, Debug, Clone)]
pub struct FileArgs {
    /// A file, a directory (its *.yaml, *.yml, *.json) or `-` for standard input.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<PathBuf>,
}

/// Arguments of `bulkhead apply`.
#[derive(clap::Args)]
#[command(
    after_help = "Every document is validated before anything is sent: one invalid document\n\
and nothing is applied (exit code 1). Then each object prints\n\
<kind>/<name> created|configured|unchanged, and a warning (on standard\n\
error) for each field that is accepted but not enforced, such as a rule's http match.\n\
Namespaces and tiers are applied first, the rest in file order.\n\n\
Examples:\n  bulkhead apply -f policy.yaml\n  bulkhead apply -f ./policies/\n  \
bulkhead get gnp -o yaml | bulkhead apply -f -"
)]
pub struct Args {
    #[command(flatten)]
    files: FileArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It existed and differed; it was replaced.
    Configured,
    /// It existed with the same content.
    Unchanged,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Applies the files.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = match load_files(&args.files.files) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let client = args.server.connect()?;
    let mut failed = false;
    for l in in_apply_order(loaded) {
        let r = &l.resource;
        let label = format!("{}/{}", kind_word(r.kind()), r.meta().name);
        match apply_one(&client, r) {
            Ok(outcome) => {
                emit(&format!("{label} {}\n", outcome.word()));
                for advisory in bulkhead_api::advisories(r) {
                    eprintln!("Warning: {label} ({}): {advisory}", l.origin);
                }
            }
            // The server is unreachable: the rest would fail the same way.
            Err(e @ Error::Transport { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("error: {label} ({}): {e}", l.origin);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Creates, replaces, or leaves one object.
pub fn apply_one(client: &Client, r: &Resource) -> Result<Outcome, Error> {
    let key = r.key();
    match client.get(key.kind, key.namespace.as_deref(), &key.name) {
        Ok(stored) if same_content(&stored, r) => Ok(Outcome::Unchanged),
        Ok(_) => client.replace(r).map(|(_, created)| {
            if created {
                Outcome::Created
            } else {
                Outcome::Configured
            }
        }),
        Err(e) if e.is_not_found() => match client.create(r) {
            Ok(_) => Ok(Outcome::Created),
            // Created by someone else in between: replace it.
            Err(e) if e.code() == Some(409) => client.replace(r).map(|_| Outcome::Configured),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Loads and validates every path; on any error prints them all and returns exit code 1.
/// The same object defined twice is an error too.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<Loaded>, ExitCode> {
    let loaded = match load_paths(paths) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!(
                "nothing was sent to the server: {} error{} (fix them and run again)",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            return Err(ExitCode::from(1));
        }
    };
    let mut first: HashMap<ResourceKey, &Loaded> = HashMap::new();
    let mut duplicates = Vec::new();
    for l in &loaded {
        if let Some(prev) = first.insert(l.resource.key(), l) {
            duplicates.push(format!(
                "error: {}: {} is defined twice (also in {})",
                l.origin,
                l.resource.key(),
                prev.origin
            ));
        }
    }
    if !duplicates.is_empty() {
        for d in &duplicates {
            eprintln!("{d}");
        }
        eprintln!("nothing was sent to the server");
        return Err(ExitCode::from(1));
    }
    if loaded.is_empty() {
        eprintln!("error: no resources found in {}", display_paths(paths));
        return Err(ExitCode::from(1));
    }
    Ok(loaded)
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Namespaces, then tiers, then everything else in file order (a policy's tier exists
/// before the policy).
pub fn in_apply_order(mut loaded: Vec<Loaded>) -> Vec<Loaded> {
    loaded.sort_by_key(|l| rank(l.resource.kind()));
    loaded
}

fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::Namespace => 0,
        Kind::Tier => 1,
        _ => 2,
    }
}

/// Metadata the server sets; ignored when comparing and shown nowhere in diffs.
const SERVER_METADATA: [&str; 9] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// The document without server-set metadata: what a user controls.
pub fn user_document(r: &Resource) -> Value {
    let mut doc = r.to_document();
    if let Some(Value::Object(meta)) = doc.get_mut("metadata") {
        for field in SERVER_METADATA {
            meta.remove(field);
        }
    }
    doc
}

/// True if two objects have the same content apart from server metadata.
pub fn same_content(a: &Resource, b: &Resource) -> bool {
    user_document(a) == user_document(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::load_str;

    fn one(text: &str) -> Resource {
        load_str("t", text).expect("loads").remove(0).resource
    }

    #[test]
    fn server_metadata_does_not_count_as_a_change() {
        let mine = one(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a, labels: {x: y}}\nspec: {selector: all()}\n",
        );
        let stored = one(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a, labels: {x: y}, uid: u1, resourceVersion: '7', creationTimestamp: '2026-01-01T00:00:00Z'}\nspec: {selector: all()}\n",
        );
        assert!(same_content(&mine, &stored));
        let relabelled = one(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a, labels: {x: z}}\nspec: {selector: all()}\n",
        );
        assert!(!same_content(&mine, &relabelled));
        let respecced = one(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a, labels: {x: y}}\nspec: {selector: has(b)}\n",
        );
        assert!(!same_content(&mine, &respecced));
    }

    #[test]
    fn namespaces_and_tiers_go_first() {
        let loaded = load_str(
            "t",
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {tier: app}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: app}\nspec: {order: 1}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .expect("loads");
        let kinds: Vec<Kind> = in_apply_order(loaded)
            .iter()
            .map(|l| l.resource.kind())
            .collect();
        assert_eq!(kinds, [Kind::Namespace, Kind::Tier, Kind::NetworkPolicy]);
    }
}
