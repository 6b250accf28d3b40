//! The Patch Tuesday calendar: Microsoft's monthly security release falls on
//! the second Tuesday of the month; the factory builds a configurable number of
//! days and an hour later (Marketplace base images are refreshed some days after
//! the release), in a configured time zone. Pure: the clock is an argument.

use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// The second Tuesday of `month` in `year`.
pub fn patch_tuesday(year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Tue, 2)
}

/// A year and month, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// The month, 1-12.
    pub month: u32,
}

impl Month {
    /// The month `at` falls in, in `zone`.
    pub fn of(at: DateTime<Utc>, zone: Tz) -> Month {
        let local = at.with_timezone(&zone);
        Month {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The month before.
    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// When the monthly rebuild happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildCalendar {
    /// The time zone the day and hour are in.
    pub zone: Tz,
    /// Days after Patch Tuesday (0-20).
    pub offset_days: u32,
    /// Hour of the day (0-23).
    pub hour: u32,
}

/// A calendar that cannot be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    /// Offset beyond three weeks would reach the next Patch Tuesday.
    #[error("the Patch Tuesday offset must be 0-20 days, not {0}")]
    Offset(u32),
    /// Not an hour.
    #[error("the Patch Tuesday build hour must be 0-23, not {0}")]
    Hour(u32),
    /// Unknown time zone.
    #[error("`{0}` is not an IANA time zone name (e.g. Europe/Paris, UTC)")]
    Zone(String),
}

impl BuildCalendar {
    /// A calendar, checked.
    pub fn new(zone: &str, offset_days: u32, hour: u32) -> Result<BuildCalendar, CalendarError> {
        let zone: Tz = zone
            .parse()
            .map_err(|_| CalendarError::Zone(zone.to_string()))?;
        if offset_days > 20 {
            return Err(CalendarError::Offset(offset_days));
        }
        if hour > 23 {
            return Err(CalendarError::Hour(hour));
        }
        Ok(BuildCalendar {
            zone,
            offset_days,
            hour,
        })
    }

    /// When the rebuild of `month` is due. An hour that does not exist that
    /// day (clocks jump forward) moves to the first instant after the gap.
    pub fn build_time(&self, month: Month) -> DateTime<Utc> {
        let day = patch_tuesday(month.year, month.month)
            .and_then(|d| d.checked_add_days(Days::new(u64::from(self.offset_days))))
            .unwrap_or(NaiveDate::MIN);
        let mut local = day.and_hms_opt(self.hour, 0, 0).unwrap_or_default();
        for _ in 0..4 {
            match self.zone.from_local_datetime(&local) {
                LocalResult::Single(t) => return t.with_timezone(&Utc),
                LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
                LocalResult::None => local += chrono::Duration::minutes(30),
            }
        }
        local.and_utc()
    }

    /// The latest month whose rebuild is due at `now`.
    pub fn due_month(&self, now: DateTime<Utc>) -> Month {
        // With an offset of up to 20 days a month's build can fall in the
        // next month, so this looks back at most two months.
        let mut month = Month::of(now, self.zone);
        for _ in 0..2 {
            if self.build_time(month) <= now {
                break;
            }
            month = month.previous();
        }
        month
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn patch_tuesdays_of_2027_are_the_second_tuesdays() {
        let days: Vec<String> = (1..=12)
            .map(|m| patch_tuesday(2027, m).unwrap().format("%m-%d").to_string())
            .collect();
        assert_eq!(
            days,
            [
                "01-12", "02-09", "03-09", "04-13", "05-11", "06-08", "07-13", "08-10", "09-14",
                "10-12", "11-09", "12-14"
            ]
        );
    }

    #[test]
    fn the_build_time_is_patch_tuesday_plus_the_offset_in_the_zone() {
        let paris = BuildCalendar::new("Europe/Paris", 1, 6).unwrap();
        // 2026-12-08 is Patch Tuesday; Paris is UTC+1 in winter.
        assert_eq!(
            paris.build_time(Month {
                year: 2026,
                month: 12
            }),
            utc(2026, 12, 9, 5)
        );
        let utc_cal = BuildCalendar::new("UTC", 0, 18).unwrap();
        assert_eq!(
            utc_cal.build_time(Month {
                year: 2027,
                month: 7
            }),
            utc(2027, 7, 13, 18)
        );
    }

    #[test]
    fn an_hour_skipped_by_daylight_saving_moves_past_the_gap() {
        // 2027-03-14 (Patch Tuesday 03-09 + 5 days) is the US spring-forward day: 02:00 does not exist.
        let ny = BuildCalendar::new("America/New_York", 5, 2).unwrap();
        let t = ny.build_time(Month {
            year: 2027,
            month: 3,
        });
        assert_eq!(
            t.with_timezone(&ny.zone)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            "2027-03-14 03:00"
        );
    }

    #[test]
    fn the_due_month_turns_at_the_build_time() {
        let cal = BuildCalendar::new("UTC", 1, 6).unwrap();
        let build = cal.build_time(Month {
            year: 2026,
            month: 12,
        });
        assert_eq!(
            cal.due_month(build),
            Month {
                year: 2026,
                month: 12
            }
        );
        assert_eq!(
            cal.due_month(build - chrono::Duration::seconds(1)),
            Month {
                year: 2026,
                month: 11
            }
        );
        assert_eq!(
            cal.due_month(utc(2027, 1, 1, 0)),
            Month {
                year: 2026,
                month: 12
            }
        );
    }

    #[test]
    fn bad_calendars_are_refused() {
        assert_eq!(
            BuildCalendar::new("UTC", 21, 0),
            Err(CalendarError::Offset(21))
        );
        assert_eq!(
            BuildCalendar::new("UTC", 0, 24),
            Err(CalendarError::Hour(24))
        );
        assert!(matches!(
            BuildCalendar::new("Mars/Olympus", 0, 0),
            Err(CalendarError::Zone(_))
        ));
    }

    proptest! {
        #[test]
        fn every_patch_tuesday_is_the_tuesday_between_the_8th_and_the_14th(y in 1900i32..2200, m in 1u32..=12) {
            let d = patch_tuesday(y, m).unwrap();
            prop_assert_eq!(d.weekday(), Weekday::Tue);
            prop_assert!((8..=14).contains(&d.day()));
        }

        #[test]
        fn build_times_increase_and_the_due_month_is_the_latest_passed(
            y in 1990i32..2100, m in 1u32..=12, offset in 0u32..=20, hour in 0u32..24, zone in 0usize..4,
            secs in 0i64..(40 * 86_400),
        ) {
            let zones = ["UTC", "Europe/Paris", "America/Los_Angeles", "Australia/Sydney"];
            let cal = BuildCalendar::new(zones[zone], offset, hour).unwrap();
            let month = Month { year: y, month: m };
            let next = if m == 12 { Month { year: y + 1, month: 1 } } else { Month { year: y, month: m + 1 } };
            prop_assert!(cal.build_time(month) < cal.build_time(next));
            let now = cal.build_time(month) + chrono::Duration::seconds(secs);
            let due = cal.due_month(now);
            prop_assert!(cal.build_time(due) <= now);
            let after_due = if due.month == 12 { Month { year: due.year + 1, month: 1 } } else { Month { year: due.year, month: due.month + 1 } };
            prop_assert!(cal.build_time(after_due) > now);
        }
    }
}
