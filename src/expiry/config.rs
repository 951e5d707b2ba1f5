//! Quota settings (`--quota-high`, `--quota-low`, `--cleanup-threshold`, `--reserved`, ...) and
//! the byte limits they give for a given usage and free disk space.

use super::error::ExpiryError;
use super::size::{ByteSize, LowMark, Percent};

/// buildbox-casd's default `--quota-low`: 65% of the high mark.
pub const DEFAULT_LOW: Percent = Percent(65.0);

/// buildbox-casd's default `--reserved`: 2 GB of disk kept free.
pub const DEFAULT_RESERVED: ByteSize = ByteSize(2_000_000_000);

/// Where between the low and the high mark cleanup starts by default (buildbox-casd: 65% of the
/// way), so that it usually frees space before any write has to wait.
const DEFAULT_THRESHOLD_OF_GAP: f64 = 0.65;

/// How the local cache is kept under its quota.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    /// `--quota-high`: the most bytes the objects may take.
    pub high: ByteSize,
    /// `--quota-low`: what cleanup brings the usage down to.
    pub low: LowMark,
    /// `--cleanup-threshold`: the usage (as a percentage of the high mark) at which cleanup
    /// starts; `None` for buildbox-casd's default, 65% of the way from low to high.
    pub cleanup_threshold: Option<Percent>,
    /// `--reserved`: disk space always left free; the high mark is lowered to keep it.
    pub reserved: ByteSize,
    /// `--protect-session-blobs`: never expire what this daemon stored or served.
    pub protect_session_blobs: bool,
    /// `--fail-fast-during-cleanup`: refuse a write that does not fit at once instead of waiting
    /// for cleanup to make room.
    pub fail_fast: bool,
}

/// The limits in bytes at one moment (the high mark depends on free disk space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// No write may take the usage above this.
    pub high: u64,
    /// Cleanup starts when the usage passes this.
    pub threshold: u64,
    /// Cleanup stops when the usage is down to this.
    pub low: u64,
}

impl Limits {
    /// Below this usage, halfway from the threshold to the high mark, cleanup gives way to writes
    /// in progress: there is still room for them. From there on it runs flat out.
    pub fn urgent(&self) -> u64 {
        self.threshold + self.high.saturating_sub(self.threshold) / 2
    }
}

impl QuotaConfig {
    /// A quota of `high` bytes with buildbox-casd's defaults for everything else.
    pub fn new(high: ByteSize) -> Self {
        Self {
            high,
            low: LowMark::Percent(DEFAULT_LOW),
            cleanup_threshold: None,
            reserved: DEFAULT_RESERVED,
            protect_session_blobs: false,
            fail_fast: false,
        }
    }

    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), ExpiryError> {
        let inconsistent = |message: String| Err(ExpiryError::Inconsistent(message));
        if self.high.0 == 0 {
            return inconsistent("--quota-high must be more than 0 bytes".to_owned());
        }
        if let LowMark::Bytes(low) = self.low
            && low > self.high
        {
            return inconsistent(format!("--quota-low ({low}) is above --quota-high ({})", self.high));
        }
        if let Some(threshold) = self.cleanup_threshold {
            let low = self.low_fraction() * 100.0;
            if threshold.0 <= low {
                return inconsistent(format!(
                    "--cleanup-threshold ({threshold}) must be above --quota-low ({low}% of --quota-high)"
                ));
            }
        }
        Ok(())
    }

    /// The low mark as a fraction of the high one.
    pub fn low_fraction(&self) -> f64 {
        match self.low {
            LowMark::Percent(percent) => percent.fraction(),
            LowMark::Bytes(bytes) => bytes.0 as f64 / self.high.0 as f64,
        }
    }

    /// The cleanup threshold as a fraction of the high mark.
    pub fn threshold_fraction(&self) -> f64 {
        match self.cleanup_threshold {
            Some(threshold) => threshold.fraction(),
            None => {
                let low = self.low_fraction();
                low + (1.0 - low) * DEFAULT_THRESHOLD_OF_GAP
            }
        }
    }

    /// The limits when the objects take `usage` bytes and the disk has `available` bytes free:
    /// the high mark is `--quota-high`, lowered so that `--reserved` bytes stay free
    /// (`usage + available - reserved`); low and threshold scale with it.
    pub fn limits(&self, usage: u64, available: u64) -> Limits {
        let disk_bound = usage.saturating_add(available).saturating_sub(self.reserved.0);
        let high = self.high.0.min(disk_bound);
        let scaled = |fraction: f64| ((high as f64 * fraction) as u64).min(high);
        Limits { high, threshold: scaled(self.threshold_fraction()), low: scaled(self.low_fraction()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLENTY: u64 = u64::MAX / 4;

    #[test]
    fn defaults_match_buildbox_casd() {
        // buildbox-casd logs "Low watermark: 65%" and "Cleanup threshold: 87.75%".
        let config = QuotaConfig::new(ByteSize(1_000_000));
        assert_eq!(config.limits(0, PLENTY), Limits { high: 1_000_000, threshold: 877_500, low: 650_000 });
        // "--quota-low=50%": threshold 82.5%; "--quota-low=100M" of 1G: 10%, threshold 68.5%.
        let config = QuotaConfig { low: "50%".parse().unwrap(), ..QuotaConfig::new(ByteSize(1000)) };
        assert_eq!(config.limits(0, PLENTY).threshold, 825);
        let config = QuotaConfig { low: "100M".parse().unwrap(), ..QuotaConfig::new("1G".parse().unwrap()) };
        assert_eq!(config.limits(0, PLENTY).threshold, 685_000_000);
        assert_eq!(config.limits(0, PLENTY).low, 100_000_000);
    }

    #[test]
    fn cleanup_is_urgent_halfway_from_the_threshold_to_the_high_mark() {
        let limits = QuotaConfig::new(ByteSize(1_000_000)).limits(0, PLENTY);
        assert_eq!(limits.urgent(), 938_750);
        let full = Limits { high: 1000, threshold: 1000, low: 650 };
        assert_eq!(full.urgent(), 1000);
    }

    #[test]
    fn reserved_space_lowers_the_high_mark() {
        let config = QuotaConfig { reserved: ByteSize(100), ..QuotaConfig::new(ByteSize(1000)) };
        // 300 used, 500 free: at most 300 + 500 - 100 = 700 may be used.
        assert_eq!(config.limits(300, 500), Limits { high: 700, threshold: 614, low: 455 });
        // Less free than reserved: the high mark drops below the usage, so cleanup frees the rest.
        assert_eq!(config.limits(300, 50).high, 250);
        assert_eq!(config.limits(30, 50).high, 0);
        // Plenty of disk: the quota itself is the limit.
        assert_eq!(config.limits(300, PLENTY).high, 1000);
    }

    #[test]
    fn contradictions_are_refused() {
        let high = ByteSize(1000);
        let low_above_high = QuotaConfig { low: LowMark::Bytes(ByteSize(2000)), ..QuotaConfig::new(high) };
        assert!(low_above_high.validate().unwrap_err().to_string().contains("--quota-low"));
        let threshold_below_low =
            QuotaConfig { cleanup_threshold: Some(Percent(50.0)), ..QuotaConfig::new(high) };
        assert!(threshold_below_low.validate().unwrap_err().to_string().contains("--cleanup-threshold"));
        assert!(QuotaConfig::new(ByteSize(0)).validate().is_err());
        assert!(QuotaConfig::new(high).validate().is_ok());
    }
}
