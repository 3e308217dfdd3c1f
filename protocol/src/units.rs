//! Human sizes: `64MiB`, `512 KiB`, `1GB`, `4096`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte count that parses and prints the way people write it.
///
/// Binary suffixes (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024, decimal
/// ones (`kB`/`KB`, `MB`, `GB`, `TB`) powers of 1000; a bare number or `B`
/// is bytes. Serialized as a plain integer, deserialized from an integer or
/// a string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// Why a size string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No digits where the number should be.
    #[error("size `{0}` does not start with a number")]
    NoNumber(String),
    /// An unknown unit.
    #[error(
        "size `{input}` has unknown unit `{unit}` (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
    )]
    Unit {
        /// The whole input.
        input: String,
        /// The unit that was not recognised.
        unit: String,
    },
    /// More than `u64::MAX` bytes.
    #[error("size `{0}` is too large")]
    Overflow(String),
}

const UNITS: [(&str, u64); 14] = [
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("m", 1 << 20),
    ("gib", 1 << 30),
    ("g", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("t", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, SizeError> {
        let input = s.trim();
        let digits = input.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(SizeError::NoNumber(s.to_owned()));
        }
        let number: u64 = input[..digits]
            .parse()
            .map_err(|_| SizeError::Overflow(s.to_owned()))?;
        let unit = input[digits..].trim().to_ascii_lowercase();
        let factor = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| SizeError::Unit {
                input: s.to_owned(),
                unit: input[digits..].trim().to_owned(),
            })?;
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| SizeError::Overflow(s.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly: `64 MiB`, `1000 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, factor) in NAMES {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{} {name}", self.0 / factor);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count such as 1048576 or \"64MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        let p = |s: &str| s.parse::<ByteSize>().unwrap().0;
        assert_eq!(p("64MiB"), 64 << 20);
        assert_eq!(p("64 mib"), 64 << 20);
        assert_eq!(p("1GiB"), 1 << 30);
        assert_eq!(p("2k"), 2048);
        assert_eq!(p("1MB"), 1_000_000);
        assert_eq!(p("4096"), 4096);
        assert_eq!(p("10B"), 10);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(matches!(
            "MiB".parse::<ByteSize>(),
            Err(SizeError::NoNumber(_))
        ));
        assert!(matches!(
            "-1".parse::<ByteSize>(),
            Err(SizeError::NoNumber(_))
        ));
        assert!(matches!(
            "12 parsecs".parse::<ByteSize>(),
            Err(SizeError::Unit { .. })
        ));
        assert!(matches!(
            "99999999TiB".parse::<ByteSize>(),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn displays_exact_units() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(ByteSize(1 << 20).to_string(), "1 MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 B");
        assert_eq!(ByteSize(0).to_string(), "0 B");
    }
}
