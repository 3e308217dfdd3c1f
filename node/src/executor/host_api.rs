//! The `phase` host functions a core module may import, and the same calls
//! as the WIT package `phase:host@0.1.0` a component may import: its guest
//! state (read, set, delete), a log, and who asked for the run.
//!
//! All pointers and lengths are i32 offsets into the guest's exported
//! `memory`; one outside it traps the guest with a message naming the call,
//! never the host. Writes, deletes and log entries are buffered in the run
//! and kept only if the guest exits with code 0 ([`Effects`]); reads see the
//! run's own writes. Every call costs fuel: [`CALL_FUEL`], plus
//! [`BYTE_FUEL`] per byte moved across the boundary, plus [`BLOCK_FUEL`]
//! per state block read. The same calls on the same state cost the same
//! fuel on every worker.
//!
//! | import | returns |
//! | --- | --- |
//! | `state_get(key_ptr, key_len, val_ptr, val_cap) -> i64` | the value's length (written if it fits in `val_cap`; a longer value's block is not read), -1 if absent |
//! | `state_set(key_ptr, key_len, val_ptr, val_len) -> i32` | 0, or -1 over a limit (key 1 KiB, value 1 MiB, the state's size) |
//! | `state_delete(key_ptr, key_len) -> i32` | 1 if the key existed, 0 if not |
//! | `emit_log(ptr, len) -> i32` | 0, or -1 over a limit (64 KiB an entry, 1,000 entries, 1 MiB in all) |
//! | `caller(buf_ptr, buf_cap) -> i32` | the requester's PeerId length (written if it fits) |

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use phase_protocol::Cid;
use phase_protocol::guest_state::{self, BlockSource, GuestState, MAX_KEY, MAX_VALUE};
use serde::Serialize;
use wasmtime::component::{self, WasmList};
use wasmtime::{AsContextMut, Caller, Extern, Linker, StoreContextMut, Trap};

/// Fuel every `phase` call costs.
pub const CALL_FUEL: u64 = 10_000;
/// Fuel per byte a `phase` call copies in or out of the guest.
pub const BYTE_FUEL: u64 = 1;
/// Fuel per state block a call reads (a node or a value block).
pub const BLOCK_FUEL: u64 = 200_000;
/// Longest log entry.
pub const MAX_LOG_ENTRY: usize = 64 * 1024;
/// Most log entries a run keeps.
pub const MAX_LOG_ENTRIES: usize = 1000;
/// Most bytes of log entries a run keeps in all: the log is one block.
pub const MAX_LOG_BYTES: usize = 1024 * 1024;
/// Default most bytes (keys and values) a job's state may hold.
pub const DEFAULT_MAX_STATE: u64 = 256 * 1024 * 1024;

/// Where a run's state blocks come from. Cheap to clone.
#[derive(Clone)]
pub struct SharedSource(Arc<Mutex<Box<dyn BlockSource + Send>>>);

impl SharedSource {
    /// Wraps a block source.
    pub fn new(source: impl BlockSource + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(source))))
    }
}

impl fmt::Debug for SharedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSource")
    }
}

impl BlockSource for SharedSource {
    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .block(cid)
    }
}

/// The state a run starts from, and who asked for it.
#[derive(Clone, Debug)]
pub struct StateInput {
    /// The state's root.
    pub root: Cid,
    /// Where its blocks are read from.
    pub source: SharedSource,
    /// The requester's PeerId as bytes (`caller` returns it).
    pub caller: Vec<u8>,
    /// Most bytes of keys and values the state may hold after the run.
    pub max_bytes: u64,
}

impl StateInput {
    /// The empty state, read from memory, for a run that names none.
    #[must_use]
    pub fn empty(caller: Vec<u8>, max_bytes: u64) -> Self {
        let (root, bytes) = guest_state::empty();
        let blocks = std::collections::BTreeMap::from([(root, bytes)]);
        Self {
            root,
            source: SharedSource::new(blocks),
            caller,
            max_bytes,
        }
    }
}

/// What a run did to its state.
#[derive(Clone, Debug, Serialize)]
pub struct Effects {
    /// The state it started from.
    #[serde(serialize_with = "as_string")]
    pub state_before: Cid,
    /// The state it left: `state_before` unless it exited with code 0.
    #[serde(serialize_with = "as_string")]
    pub state_after: Cid,
    /// Keys in `state_after`.
    pub state_keys: u64,
    /// Bytes of keys and values in `state_after`.
    pub state_bytes: u64,
    /// Log entries (none unless it exited with code 0).
    #[serde(serialize_with = "lossy_entries")]
    pub log: Vec<Vec<u8>>,
    /// Fuel the `phase` calls cost (part of the run's fuel).
    pub host_fuel: u64,
    /// Blocks of `state_after` to store (none unless it changed).
    #[serde(skip)]
    pub blocks: Vec<(Cid, Vec<u8>)>,
}

fn as_string<S: serde::Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(cid)
}

fn lossy_entries<S: serde::Serializer>(log: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(log.iter().map(|e| String::from_utf8_lossy(e)))
}

/// The `phase` side of a run's host data.
pub(super) struct PhaseHost {
    before: Cid,
    /// Keys and bytes of the state as it was.
    before_size: (u64, u64),
    state: Result<GuestState<SharedSource>, String>,
    caller: Vec<u8>,
    max_bytes: u64,
    log: Vec<Vec<u8>>,
    log_bytes: usize,
    fuel: u64,
}

impl PhaseHost {
    /// Opens the input's state (its root block); one that cannot be read
    /// traps only a guest that calls `phase`.
    pub(super) fn new(input: StateInput) -> Self {
        let state = GuestState::open(input.source, &input.root).map_err(|e| e.to_string());
        let before_size = state.as_ref().map_or((0, 0), |s| (s.count(), s.bytes()));
        Self {
            before: input.root,
            before_size,
            state,
            caller: input.caller,
            max_bytes: input.max_bytes,
            log: Vec::new(),
            log_bytes: 0,
            fuel: 0,
        }
    }

    /// What the run leaves: its changes if it `succeeded`, else none.
    pub(super) fn finish(self, succeeded: bool) -> Effects {
        let mut effects = Effects {
            state_before: self.before,
            state_after: self.before,
            state_keys: self.before_size.0,
            state_bytes: self.before_size.1,
            log: Vec::new(),
            host_fuel: self.fuel,
            blocks: Vec::new(),
        };
        if let (Ok(state), true) = (self.state, succeeded) {
            let (summary, blocks) = state.commit();
            if summary.root != self.before {
                effects.blocks = blocks;
            }
            effects.state_after = summary.root;
            effects.state_keys = summary.count;
            effects.state_bytes = summary.bytes;
            effects.log = self.log;
        }
        effects
    }
}

/// Adds the `phase` imports to a core-module linker whose host data holds a
/// [`PhaseHost`] (reached with `get`).
pub(super) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut PhaseHost,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        "phase",
        "state_get",
        move |mut caller: Caller<'_, T>, key_ptr: i32, key_len: i32, val_ptr: i32, val_cap: i32| {
            // No key over the limit is ever stored.
            if key_len.max(0) as usize > MAX_KEY {
                charge(&mut caller, get, CALL_FUEL)?;
                return Ok(-1i64);
            }
            let key = read(&mut caller, "state_get", key_ptr, key_len)?;
            // A value longer than the buffer is not read, only measured.
            let cap = val_cap.max(0) as u64;
            let Some((len, value)) = state_get(&mut caller, get, &key, cap)? else {
                return Ok(-1);
            };
            if let Some(value) = value {
                charge(&mut caller, get, value.len() as u64 * BYTE_FUEL)?;
                write(&mut caller, "state_get", val_ptr, &value)?;
            }
            Ok(i64::try_from(len).expect("values are at most 1 MiB"))
        },
    )?;
    linker.func_wrap(
        "phase",
        "state_set",
        move |mut caller: Caller<'_, T>, key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32| {
            if key_len.max(0) as usize > MAX_KEY || val_len.max(0) as usize > MAX_VALUE {
                charge(&mut caller, get, CALL_FUEL)?;
                return Ok(-1i32);
            }
            let key = read(&mut caller, "state_set", key_ptr, key_len)?;
            let value = read(&mut caller, "state_set", val_ptr, val_len)?;
            Ok(if state_set(&mut caller, get, key, value)? {
                0
            } else {
                -1
            })
        },
    )?;
    linker.func_wrap(
        "phase",
        "state_delete",
        move |mut caller: Caller<'_, T>, key_ptr: i32, key_len: i32| {
            if key_len.max(0) as usize > MAX_KEY {
                charge(&mut caller, get, CALL_FUEL)?;
                return Ok(0i32);
            }
            let key = read(&mut caller, "state_delete", key_ptr, key_len)?;
            state_delete(&mut caller, get, &key).map(i32::from)
        },
    )?;
    linker.func_wrap(
        "phase",
        "emit_log",
        move |mut caller: Caller<'_, T>, ptr: i32, len: i32| {
            if !log_has_room(&mut caller, get, len.max(0) as usize)? {
                return Ok(-1i32);
            }
            let entry = read(&mut caller, "emit_log", ptr, len)?;
            emit_log(&mut caller, get, entry)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "phase",
        "caller",
        move |mut caller: Caller<'_, T>, buf_ptr: i32, buf_cap: i32| {
            let id = requester(&mut caller, get)?;
            if id.len() <= buf_cap.max(0) as usize {
                write(&mut caller, "caller", buf_ptr, &id)?;
            }
            Ok(i32::try_from(id.len()).expect("a PeerId is under 100 bytes"))
        },
    )?;
    Ok(())
}

/// Adds `phase:host@0.1.0` (interfaces `state`, `log`, `context`) to a
/// component linker whose host data holds a [`PhaseHost`]: the same calls,
/// limits and fuel as [`add_to_linker`]. The canonical ABI checks every
/// list against the guest's memory before a call runs.
pub(super) fn add_to_component_linker<T: 'static>(
    linker: &mut component::Linker<T>,
    get: fn(&mut T) -> &mut PhaseHost,
) -> wasmtime::Result<()> {
    let mut state = linker.instance(&format!("phase:host/state@{WIT_VERSION}"))?;
    state.func_wrap(
        "get",
        move |mut store: StoreContextMut<'_, T>, (key,): (WasmList<u8>,)| {
            if key.len() > MAX_KEY {
                charge(&mut store, get, CALL_FUEL)?;
                return Ok((None,));
            }
            let key = key.as_le_slice(&store).to_vec();
            let value = state_get(&mut store, get, &key, u64::MAX)?.and_then(|(_, v)| v);
            if let Some(value) = &value {
                charge(&mut store, get, value.len() as u64 * BYTE_FUEL)?;
            }
            Ok((value,))
        },
    )?;
    state.func_wrap(
        "set",
        move |mut store: StoreContextMut<'_, T>, (key, value): (WasmList<u8>, WasmList<u8>)| {
            if key.len() > MAX_KEY || value.len() > MAX_VALUE {
                charge(&mut store, get, CALL_FUEL)?;
                return Ok((false,));
            }
            let key = key.as_le_slice(&store).to_vec();
            let value = value.as_le_slice(&store).to_vec();
            Ok((state_set(&mut store, get, key, value)?,))
        },
    )?;
    state.func_wrap(
        "delete",
        move |mut store: StoreContextMut<'_, T>, (key,): (WasmList<u8>,)| {
            if key.len() > MAX_KEY {
                charge(&mut store, get, CALL_FUEL)?;
                return Ok((false,));
            }
            let key = key.as_le_slice(&store).to_vec();
            Ok((state_delete(&mut store, get, &key)?,))
        },
    )?;
    let mut log = linker.instance(&format!("phase:host/log@{WIT_VERSION}"))?;
    log.func_wrap(
        "emit",
        move |mut store: StoreContextMut<'_, T>, (entry,): (WasmList<u8>,)| {
            if !log_has_room(&mut store, get, entry.len())? {
                return Ok((false,));
            }
            let entry = entry.as_le_slice(&store).to_vec();
            emit_log(&mut store, get, entry)?;
            Ok((true,))
        },
    )?;
    let mut context = linker.instance(&format!("phase:host/context@{WIT_VERSION}"))?;
    context.func_wrap(
        "caller",
        move |mut store: StoreContextMut<'_, T>, (): ()| Ok((requester(&mut store, get)?,)),
    )?;
    Ok(())
}

/// The version of `phase:host` the component linker provides.
const WIT_VERSION: &str = "0.1.0";

/// `state_get` after the key's length was checked: the value's length, and
/// the value if it is at most `cap` bytes. Charges the call, the key and
/// the blocks read (the caller charges the bytes it copies out).
fn state_get<T: 'static>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
    key: &[u8],
    cap: u64,
) -> wasmtime::Result<Option<guest_state::Measured>> {
    charge(cx, get, CALL_FUEL + key.len() as u64 * BYTE_FUEL)?;
    with_state(cx, get, "state_get", |s| s.get_within(key, cap))
}

/// `state_set` after the lengths were checked: false if the state would
/// grow past its size limit (nothing changed).
fn state_set<T: 'static>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
    key: Vec<u8>,
    value: Vec<u8>,
) -> wasmtime::Result<bool> {
    charge(
        cx,
        get,
        CALL_FUEL + (key.len() + value.len()) as u64 * BYTE_FUEL,
    )?;
    let max = get(cx.as_context_mut().data_mut()).max_bytes;
    with_state(cx, get, "state_set", |s| {
        let old = s.value_len(&key)?.map_or(0, |v| key.len() as u64 + v);
        let new = (key.len() + value.len()) as u64;
        if s.bytes() - old + new > max {
            return Ok(false);
        }
        s.set(key, value).map(|()| true)
    })
}

/// `state_delete` after the key's length was checked: whether it existed.
fn state_delete<T: 'static>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
    key: &[u8],
) -> wasmtime::Result<bool> {
    charge(cx, get, CALL_FUEL + key.len() as u64 * BYTE_FUEL)?;
    with_state(cx, get, "state_delete", |s| s.delete(key))
}

/// Whether the log takes an entry of `len` bytes; a refusal costs the call.
fn log_has_room<T: 'static>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
    len: usize,
) -> wasmtime::Result<bool> {
    let mut store = cx.as_context_mut();
    let host = get(store.data_mut());
    if len > MAX_LOG_ENTRY
        || host.log.len() >= MAX_LOG_ENTRIES
        || host.log_bytes + len > MAX_LOG_BYTES
    {
        charge(cx, get, CALL_FUEL)?;
        return Ok(false);
    }
    Ok(true)
}

/// Appends an entry [`log_has_room`] accepted.
fn emit_log<T: 'static>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
    entry: Vec<u8>,
) -> wasmtime::Result<()> {
    charge(cx, get, CALL_FUEL + entry.len() as u64 * BYTE_FUEL)?;
    let mut store = cx.as_context_mut();
    let host = get(store.data_mut());
    host.log_bytes += entry.len();
    host.log.push(entry);
    Ok(())
}

/// The requester's PeerId, its bytes charged.
fn requester<T: 'static>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
) -> wasmtime::Result<Vec<u8>> {
    let id = get(cx.as_context_mut().data_mut()).caller.clone();
    charge(cx, get, CALL_FUEL + id.len() as u64 * BYTE_FUEL)?;
    Ok(id)
}

/// Runs `f` on the run's state, charging the blocks it read; a state that
/// cannot be read traps the guest with the reason.
fn with_state<T: 'static, R>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
    call: &str,
    f: impl FnOnce(&mut GuestState<SharedSource>) -> Result<R, guest_state::StateError>,
) -> wasmtime::Result<R> {
    let mut store = cx.as_context_mut();
    let host = get(store.data_mut());
    let state = host
        .state
        .as_mut()
        .map_err(|e| wasmtime::Error::msg(format!("phase.{call}: {e}")))?;
    let loaded = state.blocks_loaded();
    let result = f(state).map_err(|e| wasmtime::Error::msg(format!("phase.{call}: {e}")));
    let read = state.blocks_loaded() - loaded;
    charge(cx, get, read * BLOCK_FUEL)?;
    result
}

/// Takes the fuel a call costs; out of fuel ends the run as out of fuel.
fn charge<T: 'static>(
    cx: &mut impl AsContextMut<Data = T>,
    get: fn(&mut T) -> &mut PhaseHost,
    cost: u64,
) -> wasmtime::Result<()> {
    let mut store = cx.as_context_mut();
    get(store.data_mut()).fuel += cost;
    let left = store.get_fuel()?;
    if left < cost {
        store.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    store.set_fuel(left - cost)?;
    Ok(())
}

/// The guest's exported memory.
fn memory<T>(caller: &mut Caller<'_, T>, call: &str) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::Error::msg(format!(
            "phase.{call}: the module exports no memory named `memory`"
        ))),
    }
}

/// The range `ptr..ptr + len` of memory, or a trap naming the call.
fn range(call: &str, ptr: i32, len: i32, size: usize) -> wasmtime::Result<std::ops::Range<usize>> {
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(wasmtime::Error::msg(format!(
            "phase.{call}: {len} bytes at {start} are outside the guest's memory of {size} bytes"
        ))),
    }
}

fn read<T>(
    caller: &mut Caller<'_, T>,
    call: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    let memory = memory(caller, call)?;
    let data = memory.data(&*caller);
    let range = range(call, ptr, len, data.len())?;
    Ok(data[range].to_vec())
}

fn write<T>(
    caller: &mut Caller<'_, T>,
    call: &str,
    ptr: i32,
    bytes: &[u8],
) -> wasmtime::Result<()> {
    let memory = memory(caller, call)?;
    let data = memory.data_mut(&mut *caller);
    let len = i32::try_from(bytes.len()).expect("at most 1 MiB");
    let range = range(call, ptr, len, data.len())?;
    data[range].copy_from_slice(bytes);
    Ok(())
}
