//! What a `.wasm` file is, read from its bytes without compiling it.

use serde::Serialize;
use wasmparser::{Parser, Payload};

use phase_protocol::Cid;
use phase_protocol::unixfs;

use super::ExecError;

/// Core module or component, from the header of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    /// A core WebAssembly module: run as a WASI preview 1 command.
    CoreModule,
    /// A component: run as a WASI preview 2 `wasi:cli/command`.
    Component,
}

impl ModuleKind {
    /// Tells modules and components apart by their preamble.
    ///
    /// # Errors
    /// [`ExecError::NotWasm`] for anything else.
    pub fn detect(bytes: &[u8]) -> Result<Self, ExecError> {
        if Parser::is_component(bytes) {
            Ok(Self::Component)
        } else if Parser::is_core_wasm(bytes) {
            Ok(Self::CoreModule)
        } else {
            Err(ExecError::NotWasm)
        }
    }
}

/// One import of the outermost module or component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportInfo {
    /// Module the import comes from (empty for a component import).
    pub module: String,
    /// Name of the item, or the interface name for a component.
    pub name: String,
    /// `func`, `memory`, `instance`, …
    pub kind: String,
}

/// One export of the outermost module or component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportInfo {
    /// Exported name.
    pub name: String,
    /// `func`, `memory`, `instance`, …
    pub kind: String,
}

/// The facts `phase-node inspect` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleInfo {
    /// Module or component.
    pub kind: ModuleKind,
    /// WASI version the imports name: `preview1`, `preview2 (0.2.x)`, or none.
    pub wasi: Option<String>,
    /// Size of the file in bytes.
    pub size: u64,
    /// CID of the bytes as a UnixFS file (what `phase-node add` would print).
    #[serde(serialize_with = "serialize_cid")]
    pub cid: Cid,
    /// Imports of the outermost module or component.
    pub imports: Vec<ImportInfo>,
    /// Exports of the outermost module or component.
    pub exports: Vec<ExportInfo>,
}

impl ModuleInfo {
    /// Whether it imports phase-node's host API: the `phase` module of a
    /// core module, or an interface of `phase:host` for a component.
    #[must_use]
    pub fn uses_phase(&self) -> bool {
        self.imports
            .iter()
            .any(|i| i.module == "phase" || i.name.starts_with("phase:host/"))
    }
}

fn serialize_cid<S: serde::Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(cid)
}

/// `Func(3)` -> `func`: the variant name of a wasmparser kind.
fn kind_name(debug: &impl std::fmt::Debug) -> String {
    let text = format!("{debug:?}");
    let end = text.find(['(', ' ', '{']).unwrap_or(text.len());
    text[..end].to_ascii_lowercase()
}

/// Reads kind, imports and exports of a module or component.
///
/// # Errors
/// [`ExecError::NotWasm`] for bytes that are neither, [`ExecError::Malformed`]
/// when a section does not parse.
pub fn inspect(bytes: &[u8]) -> Result<ModuleInfo, ExecError> {
    let kind = ModuleKind::detect(bytes)?;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components repeat Version..End; only depth 1 is ours.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(ExecError::Malformed)?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(reader) if depth == 1 => {
                for import in reader.into_imports() {
                    let import = import.map_err(ExecError::Malformed)?;
                    imports.push(ImportInfo {
                        module: import.module.to_owned(),
                        name: import.name.to_owned(),
                        kind: kind_name(&import.ty),
                    });
                }
            }
            Payload::ExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(ExecError::Malformed)?;
                    exports.push(ExportInfo {
                        name: export.name.to_owned(),
                        kind: kind_name(&export.kind),
                    });
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(ExecError::Malformed)?;
                    imports.push(ImportInfo {
                        module: String::new(),
                        name: import.name.name.to_owned(),
                        kind: kind_name(&import.ty),
                    });
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(ExecError::Malformed)?;
                    exports.push(ExportInfo {
                        name: export.name.name.to_owned(),
                        kind: kind_name(&export.kind),
                    });
                }
            }
            _ => {}
        }
    }
    let wasi = wasi_version(kind, &imports);
    Ok(ModuleInfo {
        kind,
        wasi,
        size: bytes.len() as u64,
        cid: unixfs::file_cid(bytes),
        imports,
        exports,
    })
}

fn wasi_version(kind: ModuleKind, imports: &[ImportInfo]) -> Option<String> {
    match kind {
        ModuleKind::CoreModule => imports.iter().find_map(|i| match i.module.as_str() {
            "wasi_snapshot_preview1" => Some("preview1".to_owned()),
            "wasi_unstable" => Some("preview0".to_owned()),
            _ => None,
        }),
        ModuleKind::Component => imports.iter().find_map(|i| {
            let (_, version) = i.name.strip_prefix("wasi:")?.split_once('@')?;
            Some(format!("preview2 ({version})"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wasi_command() {
        let wasm = wat::parse_str(
            r#"(module
                 (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                 (memory (export "memory") 1)
                 (func (export "_start")))"#,
        )
        .unwrap();
        let info = inspect(&wasm).unwrap();
        assert_eq!(info.kind, ModuleKind::CoreModule);
        assert_eq!(info.wasi.as_deref(), Some("preview1"));
        assert_eq!(info.imports[0].name, "proc_exit");
        assert_eq!(info.imports[0].kind, "func");
        let names: Vec<_> = info.exports.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["memory", "_start"]);
        assert_eq!(info.cid, unixfs::file_cid(&wasm));
    }

    #[test]
    fn garbage_is_not_wasm() {
        assert!(matches!(inspect(b"hello"), Err(ExecError::NotWasm)));
        assert!(matches!(
            inspect(b"\0asm\x01\0\0\0\x01\xff"),
            Err(ExecError::Malformed(_))
        ));
    }
}
