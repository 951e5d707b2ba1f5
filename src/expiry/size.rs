//! Byte counts and percentages as buildbox-casd's quota flags take them.
//!
//! buildbox-casd reads `50G` as 50 * 10^9 bytes (K, M, G, T are powers of 1000) and silently
//! ignores what it cannot parse (`--quota-high=1.5G` then means "no quota"); rebox parses the same
//! forms and refuses anything else with an error naming the text.

use std::fmt;
use std::str::FromStr;

use super::error::ExpiryError;

/// A byte count: digits with an optional `K`, `M`, `G` or `T` suffix (powers of 1000, either case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ExpiryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ExpiryError::BadSize { text: text.to_owned(), reason };
        let (digits, multiplier) = match text.as_bytes().last() {
            Some(b'K' | b'k') => (&text[..text.len() - 1], 1_000),
            Some(b'M' | b'm') => (&text[..text.len() - 1], 1_000_000),
            Some(b'G' | b'g') => (&text[..text.len() - 1], 1_000_000_000),
            Some(b'T' | b't') => (&text[..text.len() - 1], 1_000_000_000_000),
            Some(_) => (text, 1),
            None => return Err(bad("is empty")),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("is not a whole number of bytes with an optional K, M, G or T suffix"));
        }
        let value: u64 = digits.parse().map_err(|_| bad("is too large"))?;
        value.checked_mul(multiplier).map(ByteSize).ok_or_else(|| bad("is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// A percentage from 0 to 100, written `N%` (`N` may have a fraction: `87.5%`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// The percentage as a fraction of 1.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl FromStr for Percent {
    type Err = ExpiryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ExpiryError::BadPercent { text: text.to_owned(), reason };
        let number = text.strip_suffix('%').ok_or_else(|| bad("does not end in %"))?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad("is not a number followed by %"));
        }
        let value: f64 = number.parse().map_err(|_| bad("is not a number followed by %"))?;
        if !(0.0..=100.0).contains(&value) {
            return Err(bad("is not between 0% and 100%"));
        }
        Ok(Percent(value))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// `--quota-low`: an absolute size, or a percentage of the (effective) high mark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LowMark {
    /// A byte count.
    Bytes(ByteSize),
    /// A percentage of the high mark.
    Percent(Percent),
}

impl FromStr for LowMark {
    type Err = ExpiryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.ends_with('%') {
            text.parse().map(LowMark::Percent)
        } else {
            text.parse().map(LowMark::Bytes)
        }
    }
}

impl fmt::Display for LowMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LowMark::Bytes(bytes) => bytes.fmt(f),
            LowMark::Percent(percent) => percent.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_powers_of_1000_like_buildbox_casd() {
        assert_eq!("0".parse::<ByteSize>().unwrap(), ByteSize(0));
        assert_eq!("1234".parse::<ByteSize>().unwrap(), ByteSize(1234));
        assert_eq!("10K".parse::<ByteSize>().unwrap(), ByteSize(10_000));
        assert_eq!("10k".parse::<ByteSize>().unwrap(), ByteSize(10_000));
        assert_eq!("3M".parse::<ByteSize>().unwrap(), ByteSize(3_000_000));
        assert_eq!("50G".parse::<ByteSize>().unwrap(), ByteSize(50_000_000_000));
        assert_eq!("2T".parse::<ByteSize>().unwrap(), ByteSize(2_000_000_000_000));
    }

    #[test]
    fn bad_sizes_are_refused_naming_the_text() {
        for text in ["", "G", "1.5G", "-1", "10KB", "abc", " 10", "99999999999999999999", "20000000T"] {
            let error = text.parse::<ByteSize>().unwrap_err().to_string();
            assert!(error.contains(&format!("{text:?}")), "{text:?}: {error}");
        }
    }

    #[test]
    fn percentages() {
        assert_eq!("65%".parse::<Percent>().unwrap(), Percent(65.0));
        assert_eq!("87.75%".parse::<Percent>().unwrap(), Percent(87.75));
        assert_eq!("0%".parse::<Percent>().unwrap().fraction(), 0.0);
        for text in ["150%", "65", "%", "-5%", "1e2%", "x%"] {
            assert!(text.parse::<Percent>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn low_mark_is_bytes_or_percent() {
        assert_eq!("50%".parse::<LowMark>().unwrap(), LowMark::Percent(Percent(50.0)));
        assert_eq!("50".parse::<LowMark>().unwrap(), LowMark::Bytes(ByteSize(50)));
        assert_eq!("100M".parse::<LowMark>().unwrap(), LowMark::Bytes(ByteSize(100_000_000)));
        assert!("50 %".parse::<LowMark>().is_err());
    }
}
