//! CAR v1 framing (the IPFS interchange format), pure: a varint-prefixed
//! DAG-CBOR header `{roots, version: 1}`, then per block a varint length
//! followed by the CID bytes and the block. [`CarReader`] reads sections
//! from any `Read`, every length checked against a cap before a byte is
//! allocated; checking each block against its CID is the store's business.

use std::io::{ErrorKind, Read};

use serde::{Deserialize, Serialize};

use crate::Cid;
use crate::wire::MAX_BLOCK_SIZE;

/// Largest CAR header read: a version and a few root CIDs.
pub const MAX_HEADER: usize = 64 * 1024;
/// Largest section (CID + block) read.
pub const MAX_SECTION: usize = MAX_BLOCK_SIZE + 128;

/// The header of a CAR v1.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

/// Why bytes are not a CAR v1.
#[derive(Debug, thiserror::Error)]
pub enum CarFormatError {
    /// Nothing at all.
    #[error("empty file")]
    Empty,
    /// The header's length is not a varint.
    #[error("header length")]
    HeaderLength(#[source] std::io::Error),
    /// The header's length is over [`MAX_HEADER`].
    #[error("header of {0} bytes (at most {MAX_HEADER})")]
    HeaderTooLarge(u64),
    /// The header ends early.
    #[error("header cut short")]
    HeaderTruncated(#[source] std::io::Error),
    /// The header is not DAG-CBOR of roots and a version.
    #[error("header is not a CAR header")]
    HeaderDecode(#[source] serde_ipld_dagcbor::DecodeError<std::convert::Infallible>),
    /// The header's version is not 1.
    #[error("header version {0} (only 1 is supported)")]
    Version(u64),
    /// A section's length is not a varint.
    #[error("section length")]
    SectionLength(#[source] std::io::Error),
    /// A section's length is over [`MAX_SECTION`].
    #[error("section of {0} bytes (at most {MAX_SECTION})")]
    SectionTooLarge(u64),
    /// A section ends early.
    #[error("truncated block")]
    Truncated(#[source] std::io::Error),
    /// A section's CID does not parse.
    #[error("block CID")]
    Cid(#[source] cid::Error),
    /// Reading failed.
    #[error(transparent)]
    Io(std::io::Error),
}

/// The header of a CAR v1 over `roots`, with its varint length before it.
#[must_use]
pub fn header(roots: &[Cid]) -> Vec<u8> {
    let header = serde_ipld_dagcbor::to_vec(&Header {
        roots: roots.to_vec(),
        version: 1,
    })
    .expect("a header of CIDs always encodes");
    let mut out = Vec::with_capacity(header.len() + 4);
    put_varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    out
}

/// The varint length that starts the section of `cid` and `data`.
#[must_use]
pub fn section_prefix(cid: &Cid, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    put_varint(&mut out, (cid.encoded_len() + data.len()) as u64);
    out
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(unsigned_varint::encode::u64(
        v,
        &mut unsigned_varint::encode::u64_buffer(),
    ));
}

/// Reads a varint; `Ok(None)` at a clean end of input.
fn read_varint(r: &mut impl Read) -> std::io::Result<Option<u64>> {
    let mut first = [0u8];
    match r.read_exact(&mut first) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    // The first byte read, then the rest through the crate's reader.
    let mut chained = std::io::Read::chain(&first[..], r);
    match unsigned_varint::io::read_u64(&mut chained) {
        Ok(v) => Ok(Some(v)),
        Err(unsigned_varint::io::ReadError::Io(e)) => Err(e),
        Err(e) => Err(std::io::Error::new(ErrorKind::InvalidData, e)),
    }
}

/// Reads a CAR v1 section by section.
#[derive(Debug)]
pub struct CarReader<R> {
    r: R,
    roots: Vec<Cid>,
    section: Vec<u8>,
}

impl<R: Read> CarReader<R> {
    /// Reads the header.
    ///
    /// # Errors
    /// Empty input, or a header that is damaged, over [`MAX_HEADER`] or not
    /// version 1.
    pub fn new(mut r: R) -> Result<Self, CarFormatError> {
        let len = match read_varint(&mut r) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(CarFormatError::Empty),
            Err(e) => return Err(CarFormatError::HeaderLength(e)),
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|n| *n <= MAX_HEADER)
            .ok_or(CarFormatError::HeaderTooLarge(len))?;
        let mut header = vec![0u8; len];
        r.read_exact(&mut header)
            .map_err(CarFormatError::HeaderTruncated)?;
        let header: Header =
            serde_ipld_dagcbor::from_slice(&header).map_err(CarFormatError::HeaderDecode)?;
        if header.version != 1 {
            return Err(CarFormatError::Version(header.version));
        }
        Ok(Self {
            r,
            roots: header.roots,
            section: Vec::new(),
        })
    }

    /// The roots the header names.
    #[must_use]
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block: its CID and bytes (valid until the next call), or
    /// `None` at a clean end.
    ///
    /// # Errors
    /// A damaged or oversized length, a truncated section, a bad CID.
    pub fn next_block(&mut self) -> Result<Option<(Cid, &[u8])>, CarFormatError> {
        let len = match read_varint(&mut self.r) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(None),
            Err(e) => return Err(CarFormatError::SectionLength(e)),
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|n| *n <= MAX_SECTION)
            .ok_or(CarFormatError::SectionTooLarge(len))?;
        self.section.resize(len, 0);
        self.r
            .read_exact(&mut self.section)
            .map_err(CarFormatError::Truncated)?;
        let mut cursor = &self.section[..];
        let cid = Cid::read_bytes(&mut cursor).map_err(CarFormatError::Cid)?;
        Ok(Some((cid, cursor)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::raw_cid;

    #[test]
    fn a_car_reads_back_and_damage_is_named() {
        let cid = raw_cid(b"block");
        let mut car = header(&[cid]);
        car.extend(section_prefix(&cid, b"block"));
        car.extend(cid.to_bytes());
        car.extend(b"block");
        let mut reader = CarReader::new(&car[..]).unwrap();
        assert_eq!(reader.roots(), &[cid]);
        let (got, data) = reader.next_block().unwrap().unwrap();
        assert_eq!((got, data), (cid, &b"block"[..]));
        assert!(reader.next_block().unwrap().is_none());
        let cut = &car[..car.len() - 2];
        let mut reader = CarReader::new(cut).unwrap();
        assert!(matches!(
            reader.next_block(),
            Err(CarFormatError::Truncated(_))
        ));
        assert!(matches!(
            CarReader::new(&[][..]),
            Err(CarFormatError::Empty)
        ));
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            CarReader::new(&huge[..]),
            Err(CarFormatError::HeaderTooLarge(_))
        ));
    }
}
