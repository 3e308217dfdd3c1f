//! The local store as a source of a job's guest-state blocks
//! ([`phase_protocol::guest_state`]).

use phase_protocol::Cid;
use phase_protocol::guest_state::BlockSource;

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
