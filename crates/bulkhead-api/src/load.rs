//! Loading resources from multi-document YAML or JSON: files, directories, stdin, strings.
//!
//! Loading is all-or-nothing: every document is parsed, defaulted and validated, every
//! error is collected (with file, document index and line, field path and what was
//! expected), and if there is any error nothing from the load is returned.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::calico::{
    FelixConfigurationSpec, GlobalNetworkPolicySpec, HostEndpointSpec, NetworkPolicySpec,
    NetworkSetSpec, NodeSpec, ProfileSpec, TierSpec, WorkloadEndpointSpec,
};
use crate::k8s::{K8sNetworkPolicySpec, PodSpec, PodStatus};
use crate::meta::ObjectMeta;
use crate::resource::{Kind, Object, PodObject, Resource};
use crate::validate::{FieldError, validate};

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// File path, or `<stdin>`, or the name given to [`load_str`].
    pub source: String,
    /// 1-based index of the document in its source.
    pub document: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    /// Path of the object inside a `List` (`items[3]`), if it came from one.
    pub item: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {} (line {})",
            self.source, self.document, self.line
        )
    }
}

/// One problem found while loading, positioned as precisely as it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The document (file, index, starting line) the error is in.
    pub origin: Origin,
    /// The line of the offending field or token, when known.
    pub line: Option<usize>,
    /// The field path (`spec.ingress[0].source.selector`), when the error is in a field.
    pub field: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {}",
            self.origin.source, self.origin.document
        )?;
        match self.line {
            Some(l) => write!(f, " (line {l})")?,
            None => write!(f, " (starting at line {})", self.origin.line)?,
        }
        write!(f, ": ")?;
        let item = self.origin.item.as_deref();
        match (item, self.field.as_deref()) {
            (Some(i), Some(p)) => write!(f, "{i}.{p}: ")?,
            (Some(i), None) => write!(f, "{i}: ")?,
            (None, Some(p)) => write!(f, "{p}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// Every error of a failed load (at least one). Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A resource together with where it was loaded from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The defaulted, validated resource.
    pub resource: Resource,
    /// Where it came from.
    pub origin: Origin,
}

/// Loads every path: `-` is stdin, a directory means its `*.yaml`, `*.yml` and `*.json`
/// files (sorted by name, not recursive), anything else is a file.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Loaded>, LoadErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let path = path.as_ref();
        match read_sources(path) {
            Ok(sources) => {
                for (name, text) in sources {
                    match load_str(&name, &text) {
                        Ok(mut loaded) => out.append(&mut loaded),
                        Err(LoadErrors(mut e)) => errors.append(&mut e),
                    }
                }
            }
            Err(message) => errors.push(LoadError {
                origin: Origin {
                    source: path.display().to_string(),
                    document: 0,
                    line: 0,
                    item: None,
                },
                line: None,
                field: None,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(LoadErrors(errors))
    }
}

/// JSON text that this loader (a YAML reader) reads as the same document. YAML may not
/// hold some characters JSON strings may (DEL, the C1 controls but NEL, U+FFFE, U+FFFF);
/// they are written as `\uXXXX` escapes, which both read alike. In valid JSON such
/// characters only stand inside strings, so the text stays the same JSON.
pub fn yaml_readable_json(json: &str) -> std::borrow::Cow<'_, str> {
    let unprintable =
        |c: char| matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}');
    if !json.contains(unprintable) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unprintable(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn read_sources(path: &Path) -> Result<Vec<(String, String)>, String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(vec![("<stdin>".into(), text)]);
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot list directory: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
            let text = if f.extension().is_some_and(|e| e == "json") {
                yaml_readable_json(&text).into_owned()
            } else {
                text
            };
            Ok((f.display().to_string(), text))
        })
        .collect()
}

/// Loads every document of `text`; `source` names it in errors.
pub fn load_str(source: &str, text: &str) -> Result<Vec<Loaded>, LoadErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (index, chunk) in split_documents(text).into_iter().enumerate() {
        let origin = Origin {
            source: source.to_string(),
            document: index + 1,
            line: chunk.line,
            item: None,
        };
        match parse_document(chunk.text) {
            Ok(value) => load_value(value, chunk.text, &origin, &mut out, &mut errors),
            Err((line, message)) => errors.push(LoadError {
                line: line.map(|l| l + chunk.line - 1),
                origin,
                field: None,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(LoadErrors(errors))
    }
}

/// One YAML document of a stream, with the line it starts on.
struct Chunk<'a> {
    text: &'a str,
    line: usize,
}

/// Splits a YAML stream at `---` lines, dropping documents that hold only comments or
/// blanks (as kubectl does).
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_marker = trimmed == "---"
            || trimmed.starts_with("--- #")
            || trimmed == "..."
            || (trimmed.starts_with("---") && trimmed[3..].trim().is_empty());
        if is_marker {
            chunks.push(Chunk {
                text: &text[start..offset],
                line: start_line,
            });
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        line: start_line,
    });
    chunks
        .into_iter()
        .filter(|c| {
            c.text.lines().any(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
            })
        })
        .collect()
}

/// Parses one document into a JSON value; on error returns the line within the chunk.
fn parse_document(chunk: &str) -> Result<Value, (Option<usize>, String)> {
    crate::yaml::value_from_str(chunk).map_err(|e| {
        let line = e.location().map(|l| l.line() as usize);
        (line, plain_message(&e))
    })
}

/// The message of a YAML error without the snippet and position (we print our own).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default().to_string();
    strip_position(&first)
}

/// Removes a leading `line N column M:` or `error: line N column M:` prefix.
fn strip_position(message: &str) -> String {
    let m = message.trim_start_matches("error: ");
    if let Some(rest) = m.strip_prefix("line ")
        && let Some(idx) = rest.find(": ")
        && rest[..idx].contains("column")
    {
        return rest[idx + 2..].to_string();
    }
    m.to_string()
}

fn load_value(
    value: Value,
    chunk: &str,
    origin: &Origin,
    out: &mut Vec<Loaded>,
    errors: &mut Vec<LoadError>,
) {
    let err = |field: Option<&str>, message: String| LoadError {
        origin: origin.clone(),
        line: None,
        field: field.map(str::to_string),
        message,
    };
    let Value::Object(map) = &value else {
        errors.push(err(
            None,
            "expected an object with apiVersion, kind and metadata".into(),
        ));
        return;
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        let missing = if api_version.is_none() {
            "apiVersion"
        } else {
            "kind"
        };
        errors.push(err(
            Some(missing),
            "required: every document needs apiVersion and kind (strings)".into(),
        ));
        return;
    };
    if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
        load_list(value, chunk, origin, out, errors);
        return;
    }
    let Some(kind) = Kind::from_api(api_version, kind) else {
        errors.push(err(Some("kind"), unknown_kind_message(api_version, kind)));
        return;
    };
    match decode(kind, value) {
        Ok(mut resource) => {
            let field_errors = validate(&mut resource);
            if field_errors.is_empty() {
                out.push(Loaded {
                    resource,
                    origin: origin.clone(),
                });
            } else {
                errors.extend(
                    field_errors
                        .into_iter()
                        .map(|FieldError { path, message }| LoadError {
                            origin: origin.clone(),
                            line: field_line(chunk, &path).map(|l| l + origin.line - 1),
                            field: Some(path),
                            message,
                        }),
                );
            }
        }
        Err(DecodeError { path, message }) => errors.push(LoadError {
            origin: origin.clone(),
            line: if origin.item.is_none() {
                typed_error_line(kind, chunk).map(|l| l + origin.line - 1)
            } else {
                None
            },
            field: (!path.is_empty() && path != ".").then_some(path),
            message,
        }),
    }
}

fn load_list(
    value: Value,
    chunk: &str,
    origin: &Origin,
    out: &mut Vec<Loaded>,
    errors: &mut Vec<LoadError>,
) {
    // Take the items out of the document rather than copying them.
    let items = match value {
        Value::Object(mut map) => map.remove("items"),
        _ => None,
    };
    let Some(Value::Array(items)) = items else {
        errors.push(LoadError {
            origin: origin.clone(),
            line: None,
            field: Some("items".into()),
            message: "expected a list of objects".into(),
        });
        return;
    };
    for (i, item) in items.into_iter().enumerate() {
        let item_origin = Origin {
            item: Some(format!("items[{i}]")),
            ..origin.clone()
        };
        load_value(item, chunk, &item_origin, out, errors);
    }
}

fn unknown_kind_message(api_version: &str, kind: &str) -> String {
    let known: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{}/{}", k.api_version(), k.kind_name()))
        .collect();
    match Kind::ALL.iter().find(|k| k.kind_name() == kind) {
        Some(k) => format!(
            "kind {kind} is not served by apiVersion {api_version:?}: expected apiVersion {:?}",
            k.api_version()
        ),
        None => format!(
            "unknown kind {api_version}/{kind}: expected one of {}",
            known.join(", ")
        ),
    }
}

/// A typed decoding error with its field path.
struct DecodeError {
    path: String,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default = "Option::default")]
    spec: Option<S>,
}

/// Pod and Node: a `status` beside the spec. A Pod's holds its addresses; a Node's is what
/// Calico's `calico-node` reports (WireGuard keys, pod CIDRs), which `calicoctl get nodes
/// -o yaml` prints: accepted and ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusEnvelope<S, T> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(default)]
    status: T,
}

type PodEnvelope = StatusEnvelope<PodSpec, PodStatus>;
type NodeEnvelope = StatusEnvelope<NodeSpec, Option<Value>>;

/// Namespace and ServiceAccount: metadata is what matters; their other top-level fields
/// (finalizers, secrets, …) are accepted and ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetaOnlyEnvelope {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, rename = "spec")]
    _spec: Option<Value>,
    #[serde(default, rename = "status")]
    _status: Option<Value>,
    #[serde(default, rename = "secrets")]
    _secrets: Option<Value>,
    #[serde(default, rename = "imagePullSecrets")]
    _image_pull_secrets: Option<Value>,
    #[serde(default, rename = "automountServiceAccountToken")]
    _automount: Option<Value>,
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    if let Ok(typed) = T::deserialize(&value) {
        return Ok(typed);
    }
    serde_path_to_error::deserialize(value).map_err(|e| DecodeError {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

fn object<S: DeserializeOwned + Default>(value: Value) -> Result<Object<S>, DecodeError> {
    let env: Envelope<S> = typed(value)?;
    Ok(Object {
        metadata: env.metadata,
        spec: env.spec.unwrap_or_default(),
    })
}

fn decode(kind: Kind, value: Value) -> Result<Resource, DecodeError> {
    Ok(match kind {
        Kind::Tier => Resource::Tier(object::<TierSpec>(value)?),
        Kind::GlobalNetworkPolicy => {
            Resource::GlobalNetworkPolicy(object::<GlobalNetworkPolicySpec>(value)?)
        }
        Kind::NetworkPolicy => Resource::NetworkPolicy(object::<NetworkPolicySpec>(value)?),
        Kind::StagedGlobalNetworkPolicy => {
            Resource::StagedGlobalNetworkPolicy(object::<GlobalNetworkPolicySpec>(value)?)
        }
        Kind::StagedNetworkPolicy => {
            Resource::StagedNetworkPolicy(object::<NetworkPolicySpec>(value)?)
        }
        Kind::StagedKubernetesNetworkPolicy => {
            Resource::StagedKubernetesNetworkPolicy(object::<K8sNetworkPolicySpec>(value)?)
        }
        Kind::KubernetesNetworkPolicy => {
            Resource::KubernetesNetworkPolicy(object::<K8sNetworkPolicySpec>(value)?)
        }
        Kind::GlobalNetworkSet => Resource::GlobalNetworkSet(object::<NetworkSetSpec>(value)?),
        Kind::NetworkSet => Resource::NetworkSet(object::<NetworkSetSpec>(value)?),
        Kind::HostEndpoint => Resource::HostEndpoint(object::<HostEndpointSpec>(value)?),
        Kind::WorkloadEndpoint => {
            Resource::WorkloadEndpoint(object::<WorkloadEndpointSpec>(value)?)
        }
        Kind::Profile => Resource::Profile(object::<ProfileSpec>(value)?),
        Kind::Pod => {
            let env: PodEnvelope = typed(value)?;
            Resource::Pod(PodObject {
                metadata: env.metadata,
                spec: env.spec,
                status: env.status,
            })
        }
        Kind::Namespace => Resource::Namespace(typed::<MetaOnlyEnvelope>(value)?.metadata),
        Kind::ServiceAccount => {
            Resource::ServiceAccount(typed::<MetaOnlyEnvelope>(value)?.metadata)
        }
        Kind::FelixConfiguration => {
            Resource::FelixConfiguration(object::<FelixConfigurationSpec>(value)?)
        }
        Kind::Node => {
            let env: NodeEnvelope = typed(value)?;
            Resource::Node(Object {
                metadata: env.metadata,
                spec: env.spec,
            })
        }
    })
}

/// Re-parses a document that failed typed decoding straight from YAML, to learn the line of
/// the offending field (only on the error path).
fn typed_error_line(kind: Kind, chunk: &str) -> Option<usize> {
    fn line_of<T: DeserializeOwned>(chunk: &str) -> Option<usize> {
        crate::yaml::from_str::<T>(chunk)
            .err()
            .and_then(|e| e.location())
            .map(|l| l.line() as usize)
    }
    match kind {
        Kind::Tier => line_of::<Envelope<TierSpec>>(chunk),
        Kind::GlobalNetworkPolicy | Kind::StagedGlobalNetworkPolicy => {
            line_of::<Envelope<GlobalNetworkPolicySpec>>(chunk)
        }
        Kind::NetworkPolicy | Kind::StagedNetworkPolicy => {
            line_of::<Envelope<NetworkPolicySpec>>(chunk)
        }
        Kind::StagedKubernetesNetworkPolicy | Kind::KubernetesNetworkPolicy => {
            line_of::<Envelope<K8sNetworkPolicySpec>>(chunk)
        }
        Kind::GlobalNetworkSet | Kind::NetworkSet => line_of::<Envelope<NetworkSetSpec>>(chunk),
        Kind::HostEndpoint => line_of::<Envelope<HostEndpointSpec>>(chunk),
        Kind::WorkloadEndpoint => line_of::<Envelope<WorkloadEndpointSpec>>(chunk),
        Kind::Profile => line_of::<Envelope<ProfileSpec>>(chunk),
        Kind::Pod => line_of::<PodEnvelope>(chunk),
        Kind::Namespace | Kind::ServiceAccount => line_of::<MetaOnlyEnvelope>(chunk),
        Kind::FelixConfiguration => line_of::<Envelope<FelixConfigurationSpec>>(chunk),
        Kind::Node => line_of::<NodeEnvelope>(chunk),
    }
}

/// Best-effort line of a field path in a block-style YAML document: follows the path's
/// keys and list indexes through the indentation. `None` when it cannot tell.
fn field_line(chunk: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = chunk.lines().collect();
    let mut from = 0usize;
    let mut to = lines.len();
    let mut indent: Option<usize> = None;
    let mut found = None;
    for segment in path.split('.') {
        let (key, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let want = format!("{key}:");
        let hit = (from..to).find(|&i| {
            let l = lines[i];
            let ind = l.len() - l.trim_start().len();
            let body = l.trim_start().trim_start_matches("- ");
            indent.is_none_or(|min| ind > min || (ind == min && l.trim_start().starts_with("- ")))
                && (body.starts_with(&want) || body.starts_with(&format!("\"{key}\":")))
        })?;
        let key_line = lines[hit];
        let key_indent = key_line.len() - key_line.trim_start().len();
        found = Some(hit + 1);
        from = hit + 1;
        to = (from..lines.len())
            .find(|&i| {
                let l = lines[i];
                let t = l.trim_start();
                !t.is_empty()
                    && !t.starts_with('#')
                    && (l.len() - t.len() < key_indent
                        || (l.len() - t.len() == key_indent && !t.starts_with("- ")))
            })
            .unwrap_or(lines.len());
        indent = Some(key_indent);
        for idx in indexes
            .split(']')
            .filter_map(|s| s.strip_prefix('[')?.parse::<usize>().ok())
        {
            let items: Vec<usize> = (from..to)
                .filter(|&i| lines[i].trim_start().starts_with("- "))
                .collect();
            let item_indent = items
                .first()
                .map(|&i| lines[i].len() - lines[i].trim_start().len())?;
            let items: Vec<usize> = items
                .into_iter()
                .filter(|&i| lines[i].len() - lines[i].trim_start().len() == item_indent)
                .collect();
            let start = *items.get(idx)?;
            let end = items.get(idx + 1).copied().unwrap_or(to);
            found = Some(start + 1);
            from = start;
            to = end;
            indent = Some(item_indent);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_their_lines() {
        let text = "# c\n---\na: 1\n---\n# only a comment\n---\nb: 2\n";
        let chunks = split_documents(text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].line, 3);
        assert_eq!(chunks[0].text, "a: 1\n");
        assert_eq!(chunks[1].line, 7);
    }

    #[test]
    fn field_lines_follow_keys_and_indexes() {
        let doc = "kind: X\nspec:\n  ingress:\n    - action: Allow\n    - action: Bogus\n      protocol: TCP\n";
        assert_eq!(field_line(doc, "spec"), Some(2));
        assert_eq!(field_line(doc, "spec.ingress[1].action"), Some(5));
        assert_eq!(field_line(doc, "spec.ingress[1].protocol"), Some(6));
        assert_eq!(field_line(doc, "spec.egress"), None);
    }

    #[test]
    fn strips_positions_from_yaml_messages() {
        assert_eq!(strip_position("line 2 column 7: unclosed"), "unclosed");
        assert_eq!(strip_position("other"), "other");
    }
}
