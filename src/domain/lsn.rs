//! `Lsn`: a WAL position. Parses and prints PostgreSQL's `X/Y` form, and the
//! difference of two is a byte count.

use std::fmt;
use std::str::FromStr;

/// A write-ahead-log position (`pg_lsn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Lsn(pub u64);

impl Lsn {
    /// Bytes from `other` up to `self`, or `None` when `other` is ahead
    /// (a negative lag is not a lag we can report).
    pub(crate) fn bytes_since(self, other: Lsn) -> Option<u64> {
        self.0.checked_sub(other.0)
    }
}

impl FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (hi, lo) = s.split_once('/').ok_or_else(|| format!("`{s}` is not an LSN (expected X/Y)"))?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| format!("`{s}` is not an LSN"))?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| format!("`{s}` is not an LSN"))?;
        Ok(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_postgres_form() {
        for s in ["0/0", "0/3000148", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(s.parse::<Lsn>().unwrap().to_string(), s);
            let json = serde_json::to_string(&s.parse::<Lsn>().unwrap()).unwrap();
            assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap().to_string(), s);
        }
    }

    #[test]
    fn difference_is_bytes() {
        let a: Lsn = "1/0".parse().unwrap();
        let b: Lsn = "0/FFFFFF00".parse().unwrap();
        assert_eq!(a.bytes_since(b), Some(256));
        assert_eq!(b.bytes_since(a), None);
    }

    #[test]
    fn garbage_is_rejected_not_zero() {
        assert!("".parse::<Lsn>().is_err());
        assert!("0-1".parse::<Lsn>().is_err());
        assert!("G/1".parse::<Lsn>().is_err());
    }
}
