//! `job.json`: the human form of a job spec.
//!
//! ```json
//! {
//!   "module": {"path": "hello.wasm"},
//!   "stdin": {"text": "Hello, World"},
//!   "args": ["--verbose"],
//!   "env": {"LANG": "C"},
//!   "limits": {"fuel": 1000000000, "memory": "64MiB", "timeout": "30s", "max_output": "1MiB"},
//!   "deterministic": true,
//!   "capabilities": ["wasi-p1"]
//! }
//! ```
//!
//! `module`, `stdin` and `input` are each a CID string or `{"path": "…"}`
//! (relative to the job file); `stdin` may also be `{"text": "…"}`. Every
//! field but `module` is optional. Unknown fields are errors. Parsing yields a
//! [`JobFile`] whose paths the node imports, then [`JobFile::into_spec`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use phase_protocol::cid::{self, Cid};
use phase_protocol::job::{Capability, JobSpec, LimitError, Limits, Permissions, SpecError};
use phase_protocol::units::ByteSize;

/// Where a job's module, stdin or input comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Already content-addressed.
    Cid(Cid),
    /// A local file or directory, still to import.
    Path(PathBuf),
    /// Inline text (stdin only).
    Text(String),
}

/// A parsed `job.json`, its local paths not yet imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFile {
    /// The module or component.
    pub module: Source,
    /// stdin.
    pub stdin: Option<Source>,
    /// The directory mounted at `/input`.
    pub input: Option<Source>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Limits (defaults for those not given).
    pub limits: Limits,
    /// Deterministic run.
    pub deterministic: bool,
    /// Required capabilities.
    pub capabilities: BTreeSet<Capability>,
    /// What the run may reach (folders, hosts).
    pub permissions: Permissions,
    /// The guest state the run starts from (`None`: the empty state).
    pub state: Option<Cid>,
}

/// A problem in `job.json`: which field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct JobFileError {
    /// Dotted path of the field, e.g. `limits.fuel`; `job` for the whole file.
    pub field: String,
    /// What is wrong, one line.
    pub message: String,
}

impl JobFileError {
    fn new(field: &str, message: impl fmt::Display) -> Self {
        Self {
            field: field.to_owned(),
            message: message.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    module: Source,
    #[serde(default)]
    stdin: Option<Source>,
    #[serde(default)]
    input: Option<Source>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    deterministic: bool,
    #[serde(default)]
    capabilities: BTreeSet<Capability>,
    #[serde(default)]
    permissions: Permissions,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    memory: Option<ByteSize>,
    timeout: Option<HumanDuration>,
    max_output: Option<ByteSize>,
}

struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration `{text}` ({e}); use e.g. \"30s\" or \"500ms\""
                ))
            })
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SourceVisitor;
        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = Source;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a CID string, {"path": "..."} or {"text": "..."}"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Source, E> {
                Cid::from_str(v).map(Source::Cid).map_err(|e| {
                    E::custom(format!(
                        r#"`{v}` is not a CID ({e}); for a local file write {{"path": "{v}"}}"#
                    ))
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Source, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        r#"empty object; expected {"path": "..."} or {"text": "..."}"#,
                    ));
                };
                let value: String = map.next_value()?;
                let source = match key.as_str() {
                    "path" if value.is_empty() => return Err(de::Error::custom("empty path")),
                    "path" => Source::Path(PathBuf::from(value)),
                    "text" => Source::Text(value),
                    other => {
                        return Err(de::Error::custom(format!(
                            r#"unknown key `{other}`; expected {{"path": "..."}} or {{"text": "..."}}"#
                        )));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected second key `{extra}`"
                    )));
                }
                Ok(source)
            }
        }
        d.deserialize_any(SourceVisitor)
    }
}

/// Largest `job.json` accepted: job files are small; a larger one is a
/// mistake (an input inlined by accident).
pub const MAX_JOB_FILE: usize = 1024 * 1024;

impl JobFile {
    /// Parses and checks `job.json` text.
    ///
    /// # Errors
    /// The first problem, naming its field.
    pub fn parse(text: &str) -> Result<Self, JobFileError> {
        if text.len() > MAX_JOB_FILE {
            return Err(JobFileError::new(
                "job",
                format!("file is larger than {}", ByteSize(MAX_JOB_FILE as u64)),
            ));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: Raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "job".to_owned() } else { path };
            JobFileError::new(&field, e.into_inner())
        })?;
        for (field, source) in [("module", Some(&raw.module)), ("input", raw.input.as_ref())] {
            if matches!(source, Some(Source::Text(_))) {
                return Err(JobFileError::new(
                    field,
                    "inline text is only allowed for stdin",
                ));
            }
        }
        let defaults = Limits::default();
        let file = Self {
            module: raw.module,
            stdin: raw.stdin,
            input: raw.input,
            args: raw.args,
            env: raw.env,
            limits: Limits {
                fuel: raw.limits.fuel.unwrap_or(defaults.fuel),
                memory: raw.limits.memory.unwrap_or(defaults.memory),
                timeout: raw.limits.timeout.map_or(defaults.timeout, |d| d.0),
                max_output: raw.limits.max_output.unwrap_or(defaults.max_output),
            },
            deterministic: raw.deterministic,
            capabilities: raw.capabilities,
            permissions: raw.permissions,
            state: raw
                .state
                .as_deref()
                .map(|s| {
                    Cid::try_from(s)
                        .map_err(|e| JobFileError::new("state", format!("`{s}` is not a CID: {e}")))
                })
                .transpose()?,
        };
        // Everything but the CIDs can be checked now, before any import.
        let placeholder = cid::raw_cid(b"");
        let input = file.input.as_ref().map(|_| placeholder);
        file.spec_with(placeholder, None, input, 0)
            .validate()
            .map_err(spec_error)?;
        Ok(file)
    }

    /// Makes relative paths relative to `base` (the job file's folder).
    #[must_use]
    pub fn with_base_dir(mut self, base: &Path) -> Self {
        for source in [
            Some(&mut self.module),
            self.stdin.as_mut(),
            self.input.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let Source::Path(p) = source
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
        self
    }

    /// The spec, once the node has imported the paths and knows every CID.
    ///
    /// # Errors
    /// When the result does not validate (it did when parsed, so only if
    /// the caller changed fields since).
    pub fn into_spec(
        self,
        module: Cid,
        stdin: Option<Cid>,
        input: Option<Cid>,
        nonce: u64,
    ) -> Result<JobSpec, JobFileError> {
        let spec = self.spec_with(module, stdin, input, nonce);
        spec.validate().map_err(spec_error)?;
        Ok(spec)
    }

    /// Whether the spec these CIDs would make is valid, without making it.
    pub fn check(
        &self,
        module: Cid,
        stdin: Option<Cid>,
        input: Option<Cid>,
    ) -> Result<(), JobFileError> {
        self.spec_with(module, stdin, input, 0)
            .validate()
            .map_err(spec_error)
    }

    fn spec_with(
        &self,
        module: Cid,
        stdin: Option<Cid>,
        input: Option<Cid>,
        nonce: u64,
    ) -> JobSpec {
        JobSpec {
            module,
            stdin,
            input,
            args: self.args.clone(),
            env: self.env.clone(),
            limits: self.limits,
            deterministic: self.deterministic,
            capabilities: self.capabilities.clone(),
            nonce,
            state: self.state,
            permissions: self.permissions.clone(),
        }
    }
}

fn spec_error(e: SpecError) -> JobFileError {
    match e {
        SpecError::Limits(l) => {
            let field = match l {
                LimitError::Fuel(_) => "limits.fuel",
                LimitError::Memory(_) => "limits.memory",
                LimitError::Timeout(_) => "limits.timeout",
                LimitError::Output(_) => "limits.max_output",
            };
            JobFileError::new(field, l)
        }
        SpecError::TooMuch(m) => JobFileError::new("args", m),
        SpecError::EnvName(name) => {
            JobFileError::new("env", format!("`{name}` is not a valid variable name"))
        }
        SpecError::Capabilities => JobFileError::new("capabilities", "too many"),
        SpecError::Permissions(p) => JobFileError::new(&format!("permissions.{}", p.field()), p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "bafkreidweoqec4mcsoskb3civ3tajfbvobbi3uprjqlmnigapkw2nfam7y";

    #[test]
    fn parses_the_full_form() {
        let file = JobFile::parse(
            r#"{
              "module": {"path": "hello.wasm"},
              "stdin": {"text": "Hello, World"},
              "input": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
              "args": ["-v"],
              "env": {"LANG": "C"},
              "limits": {"fuel": 1000, "memory": "64MiB", "timeout": "30s", "max_output": 4096},
              "deterministic": true,
              "capabilities": ["wasi-p1"]
            }"#,
        )
        .unwrap();
        assert_eq!(file.module, Source::Path("hello.wasm".into()));
        assert_eq!(file.stdin, Some(Source::Text("Hello, World".into())));
        assert!(matches!(file.input, Some(Source::Cid(_))));
        assert_eq!(file.limits.memory, ByteSize(64 << 20));
        assert_eq!(file.limits.timeout, Duration::from_secs(30));
        assert_eq!(file.limits.max_output, ByteSize(4096));
        let file = file.with_base_dir(Path::new("/jobs"));
        assert_eq!(file.module, Source::Path("/jobs/hello.wasm".into()));
        let spec = file
            .into_spec(Cid::from_str(HELLO).unwrap(), None, None, 7)
            .unwrap();
        assert_eq!(spec.nonce, 7);
        assert!(spec.deterministic);
    }

    #[test]
    fn the_minimal_form_takes_defaults() {
        let file = JobFile::parse(&format!(r#"{{"module": "{HELLO}"}}"#)).unwrap();
        assert_eq!(file.limits, Limits::default());
        assert!(file.args.is_empty() && file.stdin.is_none());
        assert!(file.permissions.is_default());
    }

    #[test]
    fn permissions_reach_the_spec() {
        let file = JobFile::parse(&format!(
            r#"{{"module": "{HELLO}", "permissions": {{"fs": "read", "net": ["127.0.0.1:8080"]}}}}"#
        ))
        .unwrap();
        let spec = file.into_spec(cid::raw_cid(b"m"), None, None, 0).unwrap();
        assert_eq!(spec.permissions.fs, phase_protocol::job::FsAccess::Read);
        assert_eq!(spec.permissions.net, ["127.0.0.1:8080"]);
    }

    fn error(json: &str) -> JobFileError {
        JobFile::parse(json).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let m = format!(r#""module": "{HELLO}""#);
        let cases = [
            (r#"{}"#.to_owned(), "job", "missing field `module`"),
            (
                format!(r#"{{{m}, "colour": 1}}"#),
                "colour",
                "unknown field `colour`",
            ),
            (
                format!(r#"{{{m}, "limits": {{"fuel": "lots"}}}}"#),
                "limits.fuel",
                "invalid type",
            ),
            (
                format!(r#"{{{m}, "limits": {{"fuel": -1}}}}"#),
                "limits.fuel",
                "invalid value",
            ),
            (
                format!(r#"{{{m}, "limits": {{"fuel": 99999999999999999}}}}"#),
                "limits.fuel",
                "above the maximum",
            ),
            (
                format!(r#"{{{m}, "limits": {{"memory": "12 parsecs"}}}}"#),
                "limits.memory",
                "unknown unit",
            ),
            (
                format!(r#"{{{m}, "limits": {{"memory": "1TiB"}}}}"#),
                "limits.memory",
                "above the maximum",
            ),
            (
                format!(r#"{{{m}, "limits": {{"timeout": "soon"}}}}"#),
                "limits.timeout",
                "invalid duration",
            ),
            (
                format!(r#"{{{m}, "limits": {{"cpu": 1}}}}"#),
                "limits.cpu",
                "unknown field `cpu`",
            ),
            (
                r#"{"module": "hello.wasm"}"#.to_owned(),
                "module",
                "is not a CID",
            ),
            (
                r#"{"module": {"text": "x"}}"#.to_owned(),
                "module",
                "only allowed for stdin",
            ),
            (
                r#"{"module": {"url": "x"}}"#.to_owned(),
                "module",
                "unknown key `url`",
            ),
            (format!(r#"{{{m}, "args": "-v"}}"#), "args", "invalid type"),
            (
                format!(r#"{{{m}, "permissions": {{"fs": "all"}}}}"#),
                "permissions.fs",
                "unknown variant `all`",
            ),
            (
                format!(r#"{{{m}, "permissions": {{"net": ["example.org"]}}}}"#),
                "permissions.net",
                "is not host:port",
            ),
            (
                format!(r#"{{{m}, "input": "{HELLO}", "permissions": {{"fs": "none"}}}}"#),
                "permissions.fs",
                "`none` mounts nothing",
            ),
            (
                format!(
                    r#"{{{m}, "deterministic": true, "permissions": {{"net": ["127.0.0.1:80"]}}}}"#
                ),
                "permissions.net",
                "cannot be deterministic",
            ),
            (
                format!(r#"{{{m}, "permissions": {{"disk": "all"}}}}"#),
                "permissions.disk",
                "unknown field `disk`",
            ),
            (
                format!(r#"{{{m}, "env": {{"A=B": "c"}}}}"#),
                "env",
                "not a valid variable name",
            ),
            (
                format!(r#"{{{m}, "capabilities": ["GPU!"]}}"#),
                "capabilities[0]",
                "must be 1 to 64",
            ),
            ("not json".to_owned(), "job", "expected"),
        ];
        for (json, field, message) in cases {
            let e = error(&json);
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.message.contains(message), "{json}: {e}");
        }
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let file = JobFile::parse(include_str!("../../examples/hello.job.json")).unwrap();
        assert_eq!(
            file.module,
            Source::Path("../wasm-examples/out/hello.wasm".into())
        );
        assert_eq!(file.stdin, Some(Source::Text("Hello, World".into())));
        assert!(file.deterministic);
    }

    #[test]
    fn every_shipped_example_parses() {
        for (name, text) in [
            (
                "hello-component",
                include_str!("../../examples/hello-component.job.json"),
            ),
            (
                "wordcount",
                include_str!("../../examples/wordcount.job.json"),
            ),
            ("sha256", include_str!("../../examples/sha256.job.json")),
            (
                "deterministic",
                include_str!("../../examples/deterministic.job.json"),
            ),
            ("counter", include_str!("../../examples/counter.job.json")),
            (
                "kv-component",
                include_str!("../../examples/kv-component.job.json"),
            ),
            (
                "fetch-url",
                include_str!("../../examples/fetch-url.job.json"),
            ),
        ] {
            let file = JobFile::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(matches!(file.module, Source::Path(_)), "{name}");
        }
    }

    proptest::proptest! {
        /// Parsing arbitrary text never panics (it was a fuzz target while
        /// the parser lived in the protocol crate).
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = JobFile::parse(&text);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            fields in proptest::collection::btree_map("[a-z_]{1,12}", "[0-9a-zA-Z\" {}:,]{0,20}", 0..6)
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            let _ = JobFile::parse(&format!("{{{}}}", body.join(",")));
        }
    }
}
