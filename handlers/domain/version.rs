//! Image versions as an Azure Compute Gallery accepts them: `Major.Minor.Patch`,
//! each part a non-negative 32-bit integer.
//!
//! The seed computed `YYYY.MM.DD.NN` with a random two-digit suffix: four parts
//! (the gallery refuses them) and a 1-in-90 chance of two runs colliding on a
//! day. Here a version is a strategy applied to a sequence number that the run
//! store hands out atomically per image and scope, so two runs never share one.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// A gallery image version, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageVersion {
    /// Major part.
    pub major: u32,
    /// Minor part.
    pub minor: u32,
    /// Patch part.
    pub patch: u32,
}

/// Largest value of one part: the gallery stores each as an int32.
pub const MAX_PART: u32 = i32::MAX as u32;

/// Why a version string or allocation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    /// Not three dot-separated decimal parts.
    #[error("`{0}` is not a gallery image version: write Major.Minor.Patch, e.g. 2026.1125.0")]
    Syntax(String),
    /// A part exceeds int32.
    #[error("`{0}` has a part larger than {MAX_PART}, the largest the gallery accepts")]
    Overflow(String),
    /// A semver strategy with parts out of range.
    #[error("the semver strategy's major and minor must be at most {MAX_PART}")]
    Strategy,
}

impl ImageVersion {
    /// A version from its parts, if each fits in an int32.
    pub fn new(major: u32, minor: u32, patch: u32) -> Result<ImageVersion, VersionError> {
        let v = ImageVersion {
            major,
            minor,
            patch,
        };
        if [major, minor, patch].iter().any(|p| *p > MAX_PART) {
            return Err(VersionError::Overflow(v.to_string()));
        }
        Ok(v)
    }
}

impl fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for ImageVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<ImageVersion, VersionError> {
        let parts: Vec<&str> = s.split('.').collect();
        let well_formed = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()));
        if !well_formed {
            return Err(VersionError::Syntax(s.to_string()));
        }
        let num = |p: &str| {
            p.parse::<u64>()
                .ok()
                .filter(|n| *n <= u64::from(MAX_PART))
                .map(|n| n as u32)
                .ok_or_else(|| VersionError::Overflow(s.to_string()))
        };
        ImageVersion::new(num(parts[0])?, num(parts[1])?, num(parts[2])?)
    }
}

impl Serialize for ImageVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ImageVersion, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How an image's versions are numbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "kebab-case")]
pub enum VersionStrategy {
    /// `YYYY.MMDD.N`: the build date, then the N-th run of that image that day.
    Date,
    /// `major.minor.N`: fixed major and minor, then the N-th run of that line.
    Semver {
        /// Major part.
        major: u32,
        /// Minor part.
        minor: u32,
    },
}

impl VersionStrategy {
    /// The scope within which the store counts runs: one per day for `date`,
    /// one per major.minor line for `semver`.
    pub fn scope(&self, today: NaiveDate) -> String {
        match self {
            VersionStrategy::Date => format!("date:{}", today.format("%Y-%m-%d")),
            VersionStrategy::Semver { major, minor } => format!("semver:{major}.{minor}"),
        }
    }

    /// The version for the `sequence`-th run (0-based) in the scope of `today`.
    pub fn version(&self, today: NaiveDate, sequence: u32) -> Result<ImageVersion, VersionError> {
        match self {
            VersionStrategy::Date => {
                // Years before 0 do not occur on a real clock.
                let year = u32::try_from(today.year()).map_err(|_| VersionError::Strategy)?;
                ImageVersion::new(year, today.month() * 100 + today.day(), sequence)
            }
            VersionStrategy::Semver { major, minor } => {
                if *major > MAX_PART || *minor > MAX_PART {
                    return Err(VersionError::Strategy);
                }
                ImageVersion::new(*major, *minor, sequence)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn date_versions_have_three_parts_and_sort_by_date_then_sequence() {
        let s = VersionStrategy::Date;
        let jan = s.version(day(2026, 1, 5), 0).unwrap();
        let nov = s.version(day(2026, 11, 25), 0).unwrap();
        let nov2 = s.version(day(2026, 11, 25), 1).unwrap();
        assert_eq!(nov.to_string(), "2026.1125.0");
        assert_eq!(jan.to_string(), "2026.105.0");
        assert!(jan < nov && nov < nov2);
        assert_eq!(s.scope(day(2026, 11, 25)), "date:2026-11-25");
    }

    #[test]
    fn semver_versions_count_within_their_line() {
        let s = VersionStrategy::Semver { major: 1, minor: 4 };
        assert_eq!(s.version(day(2026, 1, 1), 7).unwrap().to_string(), "1.4.7");
        assert_eq!(s.scope(day(2026, 1, 1)), "semver:1.4");
    }

    #[test]
    fn parts_beyond_int32_are_refused() {
        assert!(matches!(
            "1.2.2147483648".parse::<ImageVersion>(),
            Err(VersionError::Overflow(_))
        ));
        assert!("2147483647.0.2147483647".parse::<ImageVersion>().is_ok());
        let s = VersionStrategy::Semver {
            major: MAX_PART + 1,
            minor: 0,
        };
        assert_eq!(s.version(day(2026, 1, 1), 0), Err(VersionError::Strategy));
    }

    #[test]
    fn malformed_versions_are_refused() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "2025.12.01.42",
            "a.b.c",
            "1..2",
            "-1.0.0",
            "1.0.0 ",
            "+1.0.0",
        ] {
            assert!(bad.parse::<ImageVersion>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn every_version_round_trips_and_stays_in_int32(
            y in 1970i32..=9999, doy in 0u32..366, seq in 0u32..=MAX_PART,
            major in 0u32..=MAX_PART, minor in 0u32..=MAX_PART,
        ) {
            let date = NaiveDate::from_yo_opt(y, doy + 1).unwrap_or(day(y, 12, 31));
            for strategy in [VersionStrategy::Date, VersionStrategy::Semver { major, minor }] {
                let v = strategy.version(date, seq).unwrap();
                prop_assert!(v.major <= MAX_PART && v.minor <= MAX_PART && v.patch <= MAX_PART);
                prop_assert_eq!(v.to_string().parse::<ImageVersion>().unwrap(), v);
            }
        }

        #[test]
        fn distinct_sequences_or_days_never_collide(
            d1 in 0i64..20000, d2 in 0i64..20000, s1 in 0u32..1000, s2 in 0u32..1000,
        ) {
            let base = day(1990, 1, 1);
            let (a, b) = (base + chrono::Days::new(d1 as u64), base + chrono::Days::new(d2 as u64));
            let va = VersionStrategy::Date.version(a, s1).unwrap();
            let vb = VersionStrategy::Date.version(b, s2).unwrap();
            prop_assert_eq!(va == vb, a == b && s1 == s2);
            // Later day or later sequence on the same day gives a later version.
            if (a, s1) < (b, s2) { prop_assert!(va < vb); }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in ".{0,40}") {
            let _ = s.parse::<ImageVersion>();
        }
    }
}
