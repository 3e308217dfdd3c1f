//! The local store as a source of a job's guest-state blocks
//! ([`phase_protocol::guest_state`]), and what `state` commands and
//! `/api/v1/state/` read from it.

use phase_protocol::Cid;
use phase_protocol::guest_state::{self, BlockSource, GuestState, StateError, Value};
use serde::Serialize;

use super::BlockStore;

/// The block a state asks for, when the store has it.
#[derive(Debug, thiserror::Error)]
#[error("not in the local store")]
struct NotHere;

impl BlockSource for BlockStore {
    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        match self.get_blocking(cid)? {
            Some(data) => Ok(data.to_vec()),
            None => Err(Box::new(NotHere)),
        }
    }
}

/// Bytes as `state` commands and the API show them: printable UTF-8 as it
/// is, anything else (or text that starts with `hex:`) as `hex:…`.
#[must_use]
pub fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.starts_with("hex:") && !text.chars().any(char::is_control) => {
            text.to_owned()
        }
        _ => format!("hex:{}", hex::encode(bytes)),
    }
}

/// The bytes of a key or value as typed: `hex:…`, else its UTF-8.
///
/// # Errors
/// `hex:` followed by something that is not hex.
pub fn parse(s: &str) -> Result<Vec<u8>, String> {
    match s.strip_prefix("hex:") {
        Some(digits) => hex::decode(digits).map_err(|e| format!("`{s}` is not hex: {e}")),
        None => Ok(s.as_bytes().to_vec()),
    }
}

/// A state's keys, as `state ls --json` and `GET /api/v1/state/{root}` give
/// them.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    /// The state.
    #[serde(serialize_with = "as_string")]
    pub root: Cid,
    /// Keys in it.
    pub count: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Every key, in key order, with its value's size.
    pub entries: Vec<ListedKey>,
}

/// One key of a [`Listing`].
#[derive(Clone, Debug, Serialize)]
pub struct ListedKey {
    /// The key, as [`show`] writes it.
    pub key: String,
    /// Its value's length.
    pub size: u64,
}

/// One changed key, as `state diff --json` and the API give it.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The key, as [`show`] writes it.
    pub key: String,
    /// `added`, `removed` or `changed`.
    pub change: ChangeKind,
    /// The value before, as [`show`] writes it.
    pub before: Option<String>,
    /// The value after.
    pub after: Option<String>,
}

/// How a key changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Not there before.
    Added,
    /// Not there after.
    Removed,
    /// Another value.
    Changed,
}

fn as_string<S: serde::Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(cid)
}

impl BlockStore {
    /// The value of `key` in the state at `root` (blocking).
    ///
    /// # Errors
    /// A block of the state missing or invalid.
    pub fn state_value_blocking(
        &self,
        root: &Cid,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        GuestState::open(self.clone(), root)?.get(key)
    }

    /// Every key of the state at `root` (blocking; reads the whole state).
    ///
    /// # Errors
    /// A block of the state missing or invalid.
    pub fn state_listing_blocking(&self, root: &Cid) -> Result<Listing, StateError> {
        let mut state = GuestState::open(self.clone(), root)?;
        let entries = state
            .entries()?
            .into_iter()
            .map(|(k, v)| ListedKey {
                key: show(&k),
                size: v.len(),
            })
            .collect();
        Ok(Listing {
            root: *root,
            count: state.count(),
            bytes: state.bytes(),
            entries,
        })
    }

    /// What changed from state `a` to state `b`, with the values (blocking).
    ///
    /// # Errors
    /// A block of either state missing or invalid.
    pub fn state_diff_blocking(&self, a: &Cid, b: &Cid) -> Result<Vec<Change>, StateError> {
        let mut source = self.clone();
        let changes = guest_state::diff(&mut source, a, b)?;
        let mut read = |v: &Option<Value>| -> Result<Option<String>, StateError> {
            Ok(match v {
                None => None,
                Some(Value::Inline(bytes)) => Some(show(bytes)),
                Some(Value::Link(cid, len)) => {
                    Some(show(&guest_state::value_block(&mut source, cid, *len)?))
                }
            })
        };
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            let change = match (&c.before, &c.after) {
                (None, _) => ChangeKind::Added,
                (_, None) => ChangeKind::Removed,
                _ => ChangeKind::Changed,
            };
            out.push(Change {
                key: show(&c.key),
                change,
                before: read(&c.before)?,
                after: read(&c.after)?,
            });
        }
        Ok(out)
    }
}
