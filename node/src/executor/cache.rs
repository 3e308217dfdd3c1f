//! Compiled modules by CID: a bounded in-memory LRU of linked modules, and
//! an on-disk folder of serialized ones.
//!
//! The disk folder is `<cache_dir>/<engine hash>/<cid>.cwasm`, where the hash
//! is wasmtime's `precompile_compatibility_hash` of the engine: a new wasmtime
//! version or engine setting gets a fresh folder instead of artifacts it
//! cannot load. Files are written to a temporary name and renamed, so a
//! reader never maps a torn file. A file that fails to load is deleted and
//! the module compiled again: the cache can only make things faster.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{debug, warn};
use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

use phase_protocol::Cid;

use super::{CacheSource, EngineError, ExecError};

pub(crate) struct ModuleCache<T> {
    dir: Option<PathBuf>,
    capacity: usize,
    memory: Mutex<Lru<T>>,
}

impl<T> fmt::Debug for ModuleCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleCache")
            .field("dir", &self.dir)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

struct Lru<T> {
    map: HashMap<Cid, Arc<T>>,
    order: VecDeque<Cid>,
}

impl<T> ModuleCache<T> {
    pub(crate) fn new(engine: &Engine, cache_dir: Option<PathBuf>, capacity: usize) -> Self {
        let dir = cache_dir.map(|d| {
            let mut h = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            d.join(format!("{:016x}", h.finish()))
        });
        Self {
            dir,
            capacity: capacity.max(1),
            memory: Mutex::new(Lru {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Whether `<dir>/<cid>.cwasm` exists.
    pub(crate) fn on_disk(&self, cid: &Cid) -> bool {
        self.dir
            .as_ref()
            .is_some_and(|d| d.join(format!("{cid}.cwasm")).exists())
    }

    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<T>> {
        // Every critical section leaves the map and order consistent.
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get_memory(&self, cid: &Cid) -> Option<Arc<T>> {
        let mut lru = self.lock();
        let hit = lru.map.get(cid).cloned()?;
        if let Some(pos) = lru.order.iter().position(|c| c == cid) {
            lru.order.remove(pos);
        }
        lru.order.push_back(*cid);
        Some(hit)
    }

    /// Inserts (or returns what a concurrent load inserted first), evicting
    /// the least recently used entries beyond the capacity.
    pub(crate) fn insert_memory(&self, cid: Cid, value: T) -> Arc<T> {
        let mut lru = self.lock();
        if let Some(existing) = lru.map.get(&cid) {
            return Arc::clone(existing);
        }
        let value = Arc::new(value);
        lru.map.insert(cid, Arc::clone(&value));
        lru.order.push_back(cid);
        while lru.order.len() > self.capacity {
            if let Some(old) = lru.order.pop_front() {
                lru.map.remove(&old);
            }
        }
        value
    }

    pub(crate) fn core_module(
        &self,
        engine: &Engine,
        cid: &Cid,
        bytes: &[u8],
    ) -> Result<(Module, CacheSource), ExecError> {
        self.load_or_compile(
            cid,
            Precompiled::Module,
            // SAFETY: see `load_or_compile`: only files this cache wrote.
            |path| unsafe { Module::deserialize_file(engine, path) },
            || Module::new(engine, bytes),
            Module::serialize,
        )
    }

    pub(crate) fn component(
        &self,
        engine: &Engine,
        cid: &Cid,
        bytes: &[u8],
    ) -> Result<(Component, CacheSource), ExecError> {
        self.load_or_compile(
            cid,
            Precompiled::Component,
            // SAFETY: see `load_or_compile`: only files this cache wrote.
            |path| unsafe { Component::deserialize_file(engine, path) },
            || Component::new(engine, bytes),
            Component::serialize,
        )
    }

    /// Deserializes `<dir>/<cid>.cwasm` if present and valid, else compiles
    /// and writes it.
    ///
    /// Deserializing runs the file's machine code, so it is only done for
    /// files under the node's own data directory that this cache wrote
    /// (temp file + rename) and that wasmtime recognises as an artifact of
    /// the expected kind for this very engine (checked by its header before
    /// mapping, and by the folder name).
    fn load_or_compile<M>(
        &self,
        cid: &Cid,
        kind: Precompiled,
        deserialize: impl FnOnce(&Path) -> wasmtime::Result<M>,
        compile: impl FnOnce() -> wasmtime::Result<M>,
        serialize: impl FnOnce(&M) -> wasmtime::Result<Vec<u8>>,
    ) -> Result<(M, CacheSource), ExecError> {
        let path = self.dir.as_ref().map(|d| d.join(format!("{cid}.cwasm")));
        if let Some(path) = path.as_deref().filter(|p| p.exists()) {
            match Engine::detect_precompiled_file(path) {
                Ok(Some(found)) if found == kind => match deserialize(path) {
                    Ok(m) => return Ok((m, CacheSource::Disk)),
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "dropping unusable cached module")
                    }
                },
                _ => warn!(path = %path.display(), "dropping cached file of the wrong kind"),
            }
            let _ = std::fs::remove_file(path);
        }
        let module = compile().map_err(|e| ExecError::Invalid(EngineError(e)))?;
        if let Some(path) = path {
            match serialize(&module) {
                Ok(bytes) => match write_atomically(&path, &bytes) {
                    Ok(()) => {
                        debug!(path = %path.display(), bytes = bytes.len(), "cached compiled module")
                    }
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "cannot write module cache")
                    }
                },
                Err(e) => warn!(error = %e, "cannot serialize compiled module"),
            }
        }
        Ok((module, CacheSource::Compiled))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths are <dir>/<cid>.cwasm");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;

    #[test]
    fn lru_evicts_least_recently_used() {
        let engine = Engine::default();
        let cache = ModuleCache::new(&engine, None, 2);
        let (a, b, c) = (raw_cid(b"a"), raw_cid(b"b"), raw_cid(b"c"));
        cache.insert_memory(a, 1);
        cache.insert_memory(b, 2);
        assert!(cache.get_memory(&a).is_some()); // a is now the most recent
        cache.insert_memory(c, 3);
        assert!(cache.get_memory(&b).is_none());
        assert_eq!(*cache.get_memory(&a).unwrap(), 1);
        assert_eq!(*cache.get_memory(&c).unwrap(), 3);
    }
}
