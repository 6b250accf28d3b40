//! Azure Functions timer trigger schedules: parsing the `schedule` string and
//! computing when it fires next.
//!
//! This module owns the meaning of a timer trigger's `schedule` text. It is pure:
//! no I/O, no clock, no time zones. Every instant is a local wall-clock
//! [`NaiveDateTime`] in the zone the schedule runs in (UTC unless the app sets a
//! time zone); converting to and from real instants, including daylight-saving
//! gaps and overlaps, is the caller's job.
//!
//! The reference semantics are those of the NCrontab library
//! (`CrontabSchedule.TryGetNextOccurrence`), which the Functions host uses:
//!
//! * Six fields `{second} {minute} {hour} {day} {month} {day-of-week}`. The host
//!   also accepts exactly five fields (no seconds), which fire at second 0.
//! * Day-of-month and day-of-week are **both** required to match (AND), unlike
//!   Vixie cron's OR: `0 0 18 8-14 * Tue` is the second Tuesday of each month.
//! * Day-of-week is 0-6 with Sunday 0; 7 is out of range.
//! * Names are English month and day names, case-insensitive, and any prefix of
//!   the full name is accepted (`Jan`, `janu`, `January`, even `J`); when a
//!   prefix is ambiguous the earliest name wins (`T` is Tuesday, `Ma` is March).
//! * `a/n` means `a-max/n`.
//! * The next occurrence is strictly after the base time, at whole seconds.
//! * Nothing fires after the last second of year 9999 (.NET's `DateTime.MaxValue`,
//!   the library's search bound), so a schedule that can never fire, such as
//!   `0 0 0 30 Feb *`, has no next occurrence.
//!
//! Two inputs NCrontab quietly rewrites are rejected here as mistakes: a reversed
//! range such as `22-2` (NCrontab swaps it to `2-22`) and a step of 0 (NCrontab
//! treats it as 1).
//!
//! The host's other form, a .NET `TimeSpan` interval such as `01:00:00` (allowed
//! only outside the Consumption plan), parses to a fixed interval: the next firing
//! is the base time plus the interval.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};

/// Last year in which a schedule can fire, matching .NET's `DateTime.MaxValue`.
const MAX_YEAR: i32 = 9999;

/// Largest step, the largest .NET `int`.
const MAX_STEP: u64 = 2_147_483_647;

/// Largest number of days a .NET `TimeSpan` can hold.
const MAX_TIMESPAN_DAYS: u64 = 10_675_199;

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// One of the six fields of an NCRONTAB expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `{second}`, 0-59; absent from the five-field form, where it is 0.
    Second,
    /// `{minute}`, 0-59.
    Minute,
    /// `{hour}`, 0-23.
    Hour,
    /// `{day}` of the month, 1-31.
    Day,
    /// `{month}`, 1-12 or `Jan`-`Dec`.
    Month,
    /// `{day-of-week}`, 0-6 with Sunday 0, or `Sun`-`Sat`.
    DayOfWeek,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::Day,
        Field::Month,
        Field::DayOfWeek,
    ];

    /// The name the Functions documentation uses for this field.
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::Day => "day",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// Smallest allowed value.
    pub fn min(self) -> u32 {
        match self {
            Field::Day | Field::Month => 1,
            _ => 0,
        }
    }

    /// Largest allowed value.
    pub fn max(self) -> u32 {
        match self {
            Field::Second | Field::Minute => 59,
            Field::Hour => 23,
            Field::Day => 31,
            Field::Month => 12,
            Field::DayOfWeek => 6,
        }
    }

    fn names(self) -> Option<&'static [&'static str]> {
        match self {
            Field::Month => Some(&MONTH_NAMES),
            Field::DayOfWeek => Some(&DAY_NAMES),
            _ => None,
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            Field::Month => "1-12 or Jan-Dec",
            Field::DayOfWeek => "0-6 (Sunday is 0) or Sun-Sat",
            _ => "",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with one field of an NCRONTAB expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// A list element or a range end is missing, as in `1,,2`, `1-` or `/5`.
    MissingValue,
    /// Not a number, and this field takes no names.
    NotANumber(String),
    /// Not a prefix of any month or day name.
    UnknownName(String),
    /// A number outside the field's range (kept as written, it may not fit an integer).
    OutOfRange(String),
    /// A range whose start is after its end, such as `17-9`.
    ReversedRange {
        /// The range's first value.
        start: u32,
        /// The range's last value.
        end: u32,
    },
    /// A step of zero, as in `*/0`.
    ZeroStep,
    /// A step that is not a whole number up to 2147483647, as in `*/x` or `*/-1`.
    InvalidStep(String),
}

/// Why a TimeSpan interval could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntervalProblem {
    /// Not one of the accepted shapes.
    Malformed,
    /// A component is larger than it may be.
    OutOfRange {
        /// Which component: `days`, `hours`, `minutes` or `seconds`.
        component: &'static str,
        /// The component as written.
        value: String,
        /// Its largest allowed value.
        max: u64,
    },
    /// The interval is zero, which would fire continuously.
    Zero,
}

/// Why a schedule string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// The string is empty or only spaces.
    Empty,
    /// Neither five nor six space-separated fields.
    FieldCount(usize),
    /// One field of an NCRONTAB expression is invalid.
    Field {
        /// 1-based position of the field in the text as written.
        position: usize,
        /// Which field that position holds.
        field: Field,
        /// The field's text.
        text: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// A TimeSpan interval is invalid.
    Interval {
        /// The interval's text.
        text: String,
        /// What is wrong with it.
        problem: IntervalProblem,
    },
}

const EXPECTED_FORMS: &str = "expected six fields `{second} {minute} {hour} {day} {month} {day-of-week}`, \
     five fields without {second}, or a TimeSpan interval such as `01:00:00`";

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Empty => write!(f, "schedule is empty; {EXPECTED_FORMS}"),
            ScheduleError::FieldCount(1) => {
                write!(f, "schedule has 1 field; {EXPECTED_FORMS}")
            }
            ScheduleError::FieldCount(n) => {
                write!(f, "schedule has {n} fields; {EXPECTED_FORMS}")
            }
            ScheduleError::Field {
                position,
                field,
                text,
                problem,
            } => {
                let (min, max) = (field.min(), field.max());
                write!(f, "field {position} ({field}) ")?;
                match problem {
                    FieldProblem::MissingValue => write!(
                        f,
                        "`{text}` has an empty value; each comma-separated part must be \
                         `*`, a value, a range `a-b`, optionally followed by a step `/n`"
                    ),
                    FieldProblem::NotANumber(v) => {
                        write!(f, "value `{v}` is not a number; allowed {min}-{max}")
                    }
                    FieldProblem::UnknownName(v) => {
                        write!(
                            f,
                            "value `{v}` is not a known name; allowed {}",
                            field.allowed()
                        )
                    }
                    FieldProblem::OutOfRange(v) => {
                        write!(f, "value {v} is out of range {min}-{max}")
                    }
                    FieldProblem::ReversedRange { start, end } => write!(
                        f,
                        "range {start}-{end} is reversed; write the smaller value first \
                         (allowed {min}-{max}, ranges do not wrap around)"
                    ),
                    FieldProblem::ZeroStep => {
                        write!(f, "`{text}` has step 0; a step must be at least 1")
                    }
                    FieldProblem::InvalidStep(s) => {
                        write!(f, "step `{s}` is not a whole number from 1 to {MAX_STEP}")
                    }
                }
            }
            ScheduleError::Interval { text, problem } => {
                write!(f, "TimeSpan interval `{text}` ")?;
                match problem {
                    IntervalProblem::Malformed => f.write_str(
                        "is not valid; expected `hh:mm:ss`, `hh:mm`, `d.hh:mm:ss`, `d.hh:mm`, \
                         `d:hh:mm:ss`, or `dd:hh:mm` when the first number is 24 or more",
                    ),
                    IntervalProblem::OutOfRange {
                        component,
                        value,
                        max,
                    } => write!(f, "has {component} {value}, more than the maximum {max}"),
                    IntervalProblem::Zero => f.write_str("is zero; an interval must be positive"),
                }
            }
        }
    }
}

impl std::error::Error for ScheduleError {}

/// Set of allowed values of one field: bit `v` is set when value `v` is allowed.
type Bits = u64;

fn has(bits: Bits, value: u32) -> bool {
    value < 64 && bits & (1 << value) != 0
}

/// Smallest allowed value in `lo..=hi`, if any.
fn next_bit(bits: Bits, lo: u32, hi: u32) -> Option<u32> {
    if lo > hi || hi > 63 {
        return None;
    }
    let window = (bits >> lo) << lo;
    let window = if hi == 63 {
        window
    } else {
        window & ((1 << (hi + 1)) - 1)
    };
    (window != 0).then(|| window.trailing_zeros())
}

/// A parsed NCRONTAB expression.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cron {
    seconds: Bits,
    minutes: Bits,
    hours: Bits,
    days: Bits,
    months: Bits,
    weekdays: Bits,
    /// Whether some allowed day exists in some allowed month (29 February counts).
    satisfiable: bool,
}

impl Cron {
    fn parse(tokens: &[&str]) -> Result<Cron, ScheduleError> {
        let offset = match tokens.len() {
            6 => 0,
            5 => 1,
            n => return Err(ScheduleError::FieldCount(n)),
        };
        let mut bits = [1 as Bits; 6]; // the five-field form fires at second 0
        for (i, token) in tokens.iter().enumerate() {
            let field = Field::ALL[i + offset];
            bits[i + offset] =
                parse_field(field, token).map_err(|problem| ScheduleError::Field {
                    position: i + 1,
                    field,
                    text: (*token).to_string(),
                    problem,
                })?;
        }
        let [seconds, minutes, hours, days, months, weekdays] = bits;
        let satisfiable = (1..=12u32).any(|m| {
            let longest = match m {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            has(months, m) && next_bit(days, 1, longest).is_some()
        });
        Ok(Cron {
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            satisfiable,
        })
    }

    /// Earliest allowed time of day at or after `h0:m0:s0`.
    fn first_time_from(&self, h0: u32, m0: u32, s0: u32) -> Option<(u32, u32, u32)> {
        let mut hour = next_bit(self.hours, h0, 23)?;
        loop {
            let minute_lo = if hour == h0 { m0 } else { 0 };
            let mut minute = next_bit(self.minutes, minute_lo, 59);
            while let Some(m) = minute {
                let second_lo = if hour == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, second_lo, 59) {
                    return Some((hour, m, s));
                }
                minute = next_bit(self.minutes, m + 1, 59);
            }
            hour = next_bit(self.hours, hour + 1, 23)?;
        }
    }

    /// Earliest firing at or after `start`, which has whole seconds.
    fn first_from(&self, start: NaiveDateTime) -> Option<NaiveDateTime> {
        if !self.satisfiable {
            return None;
        }
        let mut date = start.date();
        let mut from = (start.hour(), start.minute(), start.second());
        loop {
            if date.year() > MAX_YEAR {
                return None;
            }
            let month = date.month();
            if !has(self.months, month) {
                date = match next_bit(self.months, month + 1, 12) {
                    Some(m) => NaiveDate::from_ymd_opt(date.year(), m, 1)?,
                    None => NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)?,
                };
                from = (0, 0, 0);
                continue;
            }
            let day = match next_bit(self.days, date.day(), days_in_month(date)) {
                Some(day) => day,
                None => {
                    date = first_of_next_month(date)?;
                    from = (0, 0, 0);
                    continue;
                }
            };
            if day != date.day() {
                date = date.with_day(day)?;
                from = (0, 0, 0);
            }
            let time = if has(self.weekdays, date.weekday().num_days_from_sunday()) {
                self.first_time_from(from.0, from.1, from.2)
            } else {
                None
            };
            if let Some((h, m, s)) = time {
                return date.and_hms_opt(h, m, s);
            }
            date = date.succ_opt()?;
            from = (0, 0, 0);
        }
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

fn days_in_month(date: NaiveDate) -> u32 {
    first_of_next_month(date)
        .and_then(|next| next.pred_opt())
        .map_or(31, |last| last.day())
}

/// Parses one field into its set of allowed values.
fn parse_field(field: Field, text: &str) -> Result<Bits, FieldProblem> {
    let (min, max) = (field.min(), field.max());
    let mut bits: Bits = 0;
    for part in text.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((base, step)) => (base, Some(parse_step(step)?)),
            None => (part, None),
        };
        let (start, end) = if base == "*" {
            (min, max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (start, end) = (parse_value(field, a)?, parse_value(field, b)?);
            if start > end {
                return Err(FieldProblem::ReversedRange { start, end });
            }
            (start, end)
        } else {
            let value = parse_value(field, base)?;
            (value, if step.is_some() { max } else { value })
        };
        let mut value = start;
        while value <= end {
            bits |= 1 << value;
            value = value.saturating_add(step.unwrap_or(1));
        }
    }
    Ok(bits)
}

fn parse_step(text: &str) -> Result<u32, FieldProblem> {
    // NCrontab reads the step as a .NET `int`, so larger steps do not parse there.
    match parse_digits(text) {
        Some(0) => Err(FieldProblem::ZeroStep),
        Some(n) if n <= MAX_STEP => {
            u32::try_from(n).map_err(|_| FieldProblem::InvalidStep(text.to_string()))
        }
        _ => Err(FieldProblem::InvalidStep(text.to_string())),
    }
}

/// Parses a number or a name and checks it is within the field's range.
fn parse_value(field: Field, text: &str) -> Result<u32, FieldProblem> {
    let Some(first) = text.chars().next() else {
        return Err(FieldProblem::MissingValue);
    };
    if first.is_ascii_digit() {
        return match parse_digits(text) {
            Some(v) if (u64::from(field.min())..=u64::from(field.max())).contains(&v) => {
                u32::try_from(v).map_err(|_| FieldProblem::OutOfRange(text.to_string()))
            }
            Some(_) => Err(FieldProblem::OutOfRange(text.to_string())),
            None => Err(FieldProblem::NotANumber(text.to_string())),
        };
    }
    let Some(names) = field.names() else {
        return Err(FieldProblem::NotANumber(text.to_string()));
    };
    names
        .iter()
        .zip(field.min()..)
        .find(|(name, _)| {
            let name = name.as_bytes();
            text.len() <= name.len() && name[..text.len()].eq_ignore_ascii_case(text.as_bytes())
        })
        .map(|(_, value)| value)
        .ok_or_else(|| FieldProblem::UnknownName(text.to_string()))
}

/// Parses a non-empty run of ASCII digits; `Some(u64::MAX)` stands for anything larger.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Parses the .NET `TimeSpan` shapes the Functions documentation describes:
/// `hh:mm`, `hh:mm:ss`, `d.hh:mm`, `d.hh:mm:ss`, `d:hh:mm:ss`, and `dd:hh:mm` when
/// the first of three numbers is 24 or more (so `24:00:00` is 24 days, as in .NET).
fn parse_interval(text: &str) -> Result<TimeDelta, IntervalProblem> {
    let (days, clock) = match text.split_once('.') {
        Some((days, clock)) => (Some(days), clock),
        None => (None, text),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    // Components as (days, hours, minutes, seconds), each as written.
    let (d, h, m, s) = match (days, parts.as_slice()) {
        (days, [h, m]) => (days, *h, *m, None),
        (Some(days), [h, m, s]) => (Some(days), *h, *m, Some(*s)),
        (None, [a, b, c]) if parse_digits(a).is_some_and(|a| a >= 24) => (Some(*a), *b, *c, None),
        (None, [h, m, s]) => (None, *h, *m, Some(*s)),
        (None, [d, h, m, s]) => (Some(*d), *h, *m, Some(*s)),
        _ => return Err(IntervalProblem::Malformed),
    };
    let component = |name: &'static str, text: Option<&str>, max: u64| match text {
        None => Ok(0),
        Some(text) => match parse_digits(text) {
            None => Err(IntervalProblem::Malformed),
            Some(value) if value > max => Err(IntervalProblem::OutOfRange {
                component: name,
                value: text.to_string(),
                max,
            }),
            Some(value) => Ok(value),
        },
    };
    let days = component("days", d, MAX_TIMESPAN_DAYS)?;
    let hours = component("hours", Some(h), 23)?;
    let minutes = component("minutes", Some(m), 59)?;
    let seconds = component("seconds", s, 59)?;
    let total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
    if total == 0 {
        return Err(IntervalProblem::Zero);
    }
    i64::try_from(total)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .ok_or(IntervalProblem::Malformed)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron(Cron),
    Interval(TimeDelta),
}

/// A parsed Azure Functions timer `schedule`: an NCRONTAB expression or a
/// fixed TimeSpan interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

impl Schedule {
    /// Parses a `schedule` string as the Functions host does: six NCRONTAB
    /// fields, five fields (no seconds), or, for a single token containing `:`,
    /// a TimeSpan interval. Fields are separated by one or more ASCII spaces.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let tokens: Vec<&str> = text.split(' ').filter(|t| !t.is_empty()).collect();
        let kind = match tokens.as_slice() {
            [] => return Err(ScheduleError::Empty),
            [single] if single.contains(':') => {
                Kind::Interval(parse_interval(single).map_err(|problem| {
                    ScheduleError::Interval {
                        text: (*single).to_string(),
                        problem,
                    }
                })?)
            }
            _ => Kind::Cron(Cron::parse(&tokens)?),
        };
        Ok(Schedule {
            text: text.to_string(),
            kind,
        })
    }

    /// The fixed interval, when the schedule is a TimeSpan rather than NCRONTAB.
    /// The host accepts TimeSpan schedules only outside the Consumption plan.
    pub fn interval(&self) -> Option<TimeDelta> {
        match &self.kind {
            Kind::Interval(interval) => Some(*interval),
            Kind::Cron(_) => None,
        }
    }

    /// The first firing strictly after `after`, in the same local wall-clock time.
    ///
    /// NCRONTAB firings fall on whole seconds; fractions of a second in `after`
    /// are ignored, as NCrontab does. A TimeSpan schedule fires at `after` plus
    /// the interval. Returns `None` when there is no firing up to the end of year
    /// 9999, which is always the case for a schedule that can never fire, such as
    /// `0 0 0 30 Feb *`.
    pub fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let next = match &self.kind {
            Kind::Cron(cron) => {
                let start = after
                    .with_nanosecond(0)?
                    .checked_add_signed(TimeDelta::seconds(1))?;
                cron.first_from(start)?
            }
            Kind::Interval(interval) => after.checked_add_signed(*interval)?,
        };
        (next.year() <= MAX_YEAR).then_some(next)
    }

    /// Up to `n` successive firings after `after`; fewer when the schedule runs out.
    pub fn upcoming(&self, after: NaiveDateTime, n: usize) -> Vec<NaiveDateTime> {
        let mut firings = Vec::with_capacity(n.min(1024));
        let mut current = after;
        while firings.len() < n {
            match self.next_after(current) {
                Some(next) => {
                    firings.push(next);
                    current = next;
                }
                None => break,
            }
        }
        firings
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse(text)
    }
}

impl fmt::Display for Schedule {
    /// Writes the schedule exactly as it was parsed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .unwrap_or_else(|e| panic!("bad test instant {text}: {e}"))
    }

    fn sched(text: &str) -> Schedule {
        Schedule::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn cron_of(schedule: &Schedule) -> &Cron {
        match &schedule.kind {
            Kind::Cron(cron) => cron,
            Kind::Interval(_) => panic!("{schedule} is not NCRONTAB"),
        }
    }

    fn firings(text: &str, after: &str, n: usize) -> Vec<NaiveDateTime> {
        sched(text).upcoming(at(after), n)
    }

    fn instants(texts: &[&str]) -> Vec<NaiveDateTime> {
        texts.iter().map(|t| at(t)).collect()
    }

    fn matches_date(cron: &Cron, date: NaiveDate) -> bool {
        has(cron.months, date.month())
            && has(cron.days, date.day())
            && has(cron.weekdays, date.weekday().num_days_from_sunday())
    }

    fn matches(cron: &Cron, t: NaiveDateTime) -> bool {
        t.nanosecond() == 0
            && matches_date(cron, t.date())
            && has(cron.hours, t.hour())
            && has(cron.minutes, t.minute())
            && has(cron.seconds, t.second())
    }

    // ---- the example: day-of-month AND day-of-week ----

    #[test]
    fn second_tuesday_of_the_month() {
        let got = firings("0 0 18 8-14 * Tue", "2026-11-25T00:00:00", 5);
        let want = instants(&[
            "2026-12-08T18:00:00",
            "2027-01-12T18:00:00",
            "2027-02-09T18:00:00",
            "2027-03-09T18:00:00",
            "2027-04-13T18:00:00",
        ]);
        assert_eq!(got, want);
        for t in got {
            assert_eq!(t.weekday(), chrono::Weekday::Tue);
            assert!((8..=14).contains(&t.day()));
        }
    }

    #[test]
    fn friday_the_thirteenth_is_and_not_or() {
        let got = firings("0 0 0 13 * Fri", "2026-01-01T00:00:00", 4);
        let want = instants(&[
            "2026-02-13T00:00:00",
            "2026-03-13T00:00:00",
            "2026-11-13T00:00:00",
            "2027-08-13T00:00:00",
        ]);
        assert_eq!(got, want);
    }

    // ---- the Functions documentation's examples ----

    #[test]
    fn every_five_minutes() {
        let got = firings("0 */5 * * * *", "2026-11-25T00:00:00", 3);
        let want = instants(&[
            "2026-11-25T00:05:00",
            "2026-11-25T00:10:00",
            "2026-11-25T00:15:00",
        ]);
        assert_eq!(got, want);
        let got = firings("0 */5 * * * *", "2026-11-25T23:57:31", 1);
        assert_eq!(got, instants(&["2026-11-26T00:00:00"]));
    }

    #[test]
    fn top_of_every_hour() {
        let got = firings("0 0 * * * *", "2026-11-25T00:00:00", 2);
        assert_eq!(
            got,
            instants(&["2026-11-25T01:00:00", "2026-11-25T02:00:00"])
        );
    }

    #[test]
    fn every_two_hours() {
        let got = firings("0 0 */2 * * *", "2026-11-25T00:00:00", 2);
        assert_eq!(
            got,
            instants(&["2026-11-25T02:00:00", "2026-11-25T04:00:00"])
        );
        let got = firings("0 0 */2 * * *", "2026-11-25T22:00:00", 1);
        assert_eq!(got, instants(&["2026-11-26T00:00:00"]));
    }

    #[test]
    fn every_hour_from_nine_to_five() {
        let got = firings("0 0 9-17 * * *", "2026-11-25T00:00:00", 10);
        let mut want: Vec<NaiveDateTime> = (9..=17)
            .map(|h| at(&format!("2026-11-25T{h:02}:00:00")))
            .collect();
        want.push(at("2026-11-26T09:00:00"));
        assert_eq!(got, want);
    }

    #[test]
    fn half_past_nine_every_day() {
        let got = firings("0 30 9 * * *", "2026-11-25T00:00:00", 2);
        assert_eq!(
            got,
            instants(&["2026-11-25T09:30:00", "2026-11-26T09:30:00"])
        );
    }

    #[test]
    fn half_past_nine_every_weekday() {
        // 2026-11-25 is a Wednesday.
        let got = firings("0 30 9 * * 1-5", "2026-11-25T00:00:00", 5);
        let want = instants(&[
            "2026-11-25T09:30:00",
            "2026-11-26T09:30:00",
            "2026-11-27T09:30:00",
            "2026-11-30T09:30:00",
            "2026-12-01T09:30:00",
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn half_past_nine_every_monday_in_january() {
        let got = firings("0 30 9 * Jan Mon", "2026-11-25T00:00:00", 5);
        let want = instants(&[
            "2027-01-04T09:30:00",
            "2027-01-11T09:30:00",
            "2027-01-18T09:30:00",
            "2027-01-25T09:30:00",
            "2028-01-03T09:30:00",
        ]);
        assert_eq!(got, want);
    }

    // ---- forms and syntax ----

    #[test]
    fn five_fields_fire_at_second_zero() {
        let five = firings("30 9 * * 1-5", "2026-11-25T00:00:00", 5);
        let six = firings("0 30 9 * * 1-5", "2026-11-25T00:00:00", 5);
        assert_eq!(five, six);
        let got = firings("*/5 * * * *", "2026-11-25T00:00:01", 2);
        assert_eq!(
            got,
            instants(&["2026-11-25T00:05:00", "2026-11-25T00:10:00"])
        );
    }

    #[test]
    fn strictly_after_and_whole_seconds() {
        let s = sched("* * * * * *");
        assert_eq!(
            s.next_after(at("2026-11-25T10:00:00")),
            Some(at("2026-11-25T10:00:01"))
        );
        assert_eq!(
            s.next_after(at("2026-11-25T10:00:00.5")),
            Some(at("2026-11-25T10:00:01"))
        );
        let hourly = sched("0 0 * * * *");
        assert_eq!(
            hourly.next_after(at("2026-11-25T01:00:00")),
            Some(at("2026-11-25T02:00:00"))
        );
        assert_eq!(
            hourly.next_after(at("2026-11-25T00:59:59.999")),
            Some(at("2026-11-25T01:00:00"))
        );
    }

    #[test]
    fn steps_lists_and_single_value_steps() {
        let c = cron_of(&sched("5/15 1-10/3,50 */6 1,15 * *")).clone();
        assert_eq!(c.seconds, 1 << 5 | 1 << 20 | 1 << 35 | 1 << 50);
        assert_eq!(c.minutes, 1 << 1 | 1 << 4 | 1 << 7 | 1 << 10 | 1 << 50);
        assert_eq!(c.hours, 1 | 1 << 6 | 1 << 12 | 1 << 18);
        assert_eq!(c.days, 1 << 1 | 1 << 15);
        // A step larger than the range keeps only the start, as NCrontab does.
        assert_eq!(cron_of(&sched("*/100 0 0 * * *")).seconds, 1);
    }

    #[test]
    fn names_are_case_insensitive_prefixes() {
        let weekdays = |text: &str| cron_of(&sched(&format!("0 0 0 * * {text}"))).weekdays;
        let months = |text: &str| cron_of(&sched(&format!("0 0 0 * {text} *"))).months;
        assert_eq!(weekdays("Mon-Fri"), weekdays("1-5"));
        assert_eq!(weekdays("mon-FRI"), weekdays("1-5"));
        assert_eq!(weekdays("SUNDAY,saturday"), weekdays("0,6"));
        assert_eq!(weekdays("T"), weekdays("2")); // Tuesday comes before Thursday
        assert_eq!(weekdays("Th"), weekdays("4"));
        assert_eq!(weekdays("Mond"), weekdays("1"));
        assert_eq!(months("Jan"), months("1"));
        assert_eq!(months("Sept"), months("9"));
        assert_eq!(months("ma"), months("3")); // March comes before May
        assert_eq!(months("dec"), months("12"));
        assert_eq!(months("Jan/3"), months("1,4,7,10"));
        assert_eq!(months("Oct-Dec"), months("10-12"));
    }

    #[test]
    fn extra_spaces_are_ignored_and_display_is_verbatim() {
        let text = "  0  0   9 * *  Mon ";
        let s = sched(text);
        assert_eq!(s.to_string(), text);
        assert_eq!(
            s.next_after(at("2026-11-25T00:00:00")),
            Some(at("2026-11-30T09:00:00"))
        );
        let parsed: Schedule = "0 0 18 8-14 * Tue".parse().expect("valid");
        assert_eq!(parsed.to_string(), "0 0 18 8-14 * Tue");
        assert_eq!(parsed.interval(), None);
    }

    // ---- calendar edges and the search bound ----

    #[test]
    fn leap_day() {
        let got = firings("0 0 0 29 Feb *", "2026-11-25T00:00:00", 3);
        let want = instants(&[
            "2028-02-29T00:00:00",
            "2032-02-29T00:00:00",
            "2036-02-29T00:00:00",
        ]);
        assert_eq!(got, want);
        // 2100 is not a leap year.
        let got = firings("0 0 0 29 Feb *", "2096-03-01T00:00:00", 1);
        assert_eq!(got, instants(&["2104-02-29T00:00:00"]));
    }

    #[test]
    fn day_31_skips_short_months() {
        let got = firings("0 0 0 15,31 * *", "2026-01-31T00:00:00", 4);
        let want = instants(&[
            "2026-02-15T00:00:00",
            "2026-03-15T00:00:00",
            "2026-03-31T00:00:00",
            "2026-04-15T00:00:00",
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn impossible_schedules_never_fire() {
        for text in [
            "0 0 0 30 Feb *",
            "0 0 0 31 Apr,Jun,Sep,Nov *",
            "0 0 0 30-31 2 *",
            "0 0 30 2 *",
        ] {
            let s = sched(text);
            assert_eq!(s.next_after(at("2026-11-25T00:00:00")), None, "{text}");
            assert!(s.upcoming(at("2026-11-25T00:00:00"), 3).is_empty());
        }
    }

    #[test]
    fn nothing_fires_after_year_9999() {
        let yearly = sched("0 0 0 1 1 *");
        assert_eq!(yearly.next_after(at("9999-06-01T00:00:00")), None);
        assert_eq!(yearly.next_after(at("+12000-01-01T00:00:00")), None);
        let last = sched("59 59 23 31 12 *");
        assert_eq!(
            last.next_after(at("9999-12-31T00:00:00")),
            Some(at("9999-12-31T23:59:59"))
        );
        assert_eq!(last.next_after(at("9999-12-31T23:59:59")), None);
        assert_eq!(
            sched("01:00:00").next_after(at("9999-12-31T23:30:00")),
            None
        );
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        for text in ["* * * * * *", "0 0 0 29 Feb Mon", "00:00:01"] {
            let s = sched(text);
            assert_eq!(s.next_after(NaiveDateTime::MAX), None);
            assert!(s.next_after(NaiveDateTime::MIN).is_some());
        }
    }

    // ---- TimeSpan intervals ----

    #[test]
    fn timespan_intervals() {
        let cases = [
            ("01:00:00", TimeDelta::hours(1)),
            ("00:01:00", TimeDelta::minutes(1)),
            ("00:00:30", TimeDelta::seconds(30)),
            ("1:2:3", TimeDelta::seconds(3723)),
            ("10:30", TimeDelta::minutes(630)),
            ("1.00:00:00", TimeDelta::days(1)),
            ("2.12:00", TimeDelta::hours(60)),
            ("24:00:00", TimeDelta::days(24)),
            (
                "25:06:07",
                TimeDelta::days(25) + TimeDelta::minutes(6 * 60 + 7),
            ),
            ("25:00:00:00", TimeDelta::days(25)),
        ];
        for (text, want) in cases {
            let s = sched(text);
            assert_eq!(s.interval(), Some(want), "{text}");
            let after = at("2026-11-25T10:00:00.25");
            assert_eq!(s.next_after(after), Some(after + want), "{text}");
            assert_eq!(s.to_string(), text);
        }
        let got = sched("06:00:00").upcoming(at("2026-11-25T01:02:03"), 3);
        assert_eq!(
            got,
            instants(&[
                "2026-11-25T07:02:03",
                "2026-11-25T13:02:03",
                "2026-11-25T19:02:03",
            ])
        );
    }

    // ---- malformed input ----

    #[test]
    fn malformed_inputs_are_errors() {
        let bad = [
            "",
            "   ",
            "*",
            "5",
            "* * * *",
            "* * * * * * *",
            "0 0 0 0 0 0 0 0",
            "60 * * * * *",
            "* 60 * * * *",
            "* * 24 * * *",
            "* * * 0 * *",
            "* * * 32 * *",
            "* * * * 0 *",
            "* * * * 13 *",
            "* * * * * 7",
            "* * * * 7",
            "* * 17-9 * * *",
            "* * * * * Fri-Mon",
            "* * * * Dec-Jan *",
            "*/0 * * * * *",
            "1-5/0 * * * * *",
            "*/x * * * * *",
            "*/-1 * * * * *",
            "*/+2 * * * * *",
            "*/1.5 * * * * *",
            "*/99999999999999999999 * * * * *",
            "*/5/2 * * * * *",
            "/5 * * * * *",
            "5/ * * * * *",
            "1,,2 * * * * *",
            ",1 * * * * *",
            "1, * * * * *",
            "-1 * * * * *",
            "1- * * * * *",
            "1-2-3 * * * * *",
            "*-5 * * * * *",
            "** * * * * *",
            "a * * * * *",
            "5a * * * * *",
            "99999999999999999999 * * * * *",
            "0 0 Jan * * *",
            "0 0 0 Mon * *",
            "0 0 0 * Foo *",
            "0 0 0 * * Funday",
            "0 0 0 * * Mondays",
            "0 0 0 * * Janu",
            "0 0 0 * 1 0x1",
            "0 0 12:30 * * *",
            "0\t0 * * * *",
            "0 0 ? * * *",
            "0 0 0 L * *",
            "0 0 0 * * 1#2",
            "@daily",
            "0 0 0 * * Mon ",
            "00:00:00",
            "0:0",
            "-01:00:00",
            "01:00:00.5",
            "01:60:00",
            "01:00:60",
            "24:24:00",
            "1.24:00:00",
            "1.2.3:00",
            "1.",
            ":10",
            "10:",
            "10::00",
            "1:2:3:4:5",
            "aa:bb",
            "99999999:00:00",
            "ü:00",
        ];
        for text in bad {
            // "0 0 0 * * Mon " is valid: keep the list honest by re-checking it below.
            if text == "0 0 0 * * Mon " {
                assert!(Schedule::parse(text).is_ok());
                continue;
            }
            match Schedule::parse(text) {
                Ok(s) => panic!("{text:?} should be rejected, parsed as {s:?}"),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn error_messages_name_the_field_and_the_allowed_values() {
        let msg = |text: &str| match Schedule::parse(text) {
            Ok(_) => panic!("{text:?} should be rejected"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            msg("0 0 25 * * *"),
            "field 3 (hour) value 25 is out of range 0-23"
        );
        assert_eq!(
            msg("0 25 * * *"),
            "field 2 (hour) value 25 is out of range 0-23"
        );
        assert_eq!(
            msg("0 0 0 * * 7"),
            "field 6 (day-of-week) value 7 is out of range 0-6"
        );
        assert_eq!(
            msg("0 0 0 32 * *"),
            "field 4 (day) value 32 is out of range 1-31"
        );
        assert!(msg("0 0 22-2 * * *").starts_with("field 3 (hour) range 22-2 is reversed"));
        assert!(msg("*/0 * * * * *").starts_with("field 1 (second) `*/0` has step 0"));
        assert!(msg("0 0 0 * * Funday").contains("allowed 0-6 (Sunday is 0) or Sun-Sat"));
        assert!(msg("0 0 0 * Foo *").contains("allowed 1-12 or Jan-Dec"));
        assert!(msg("0 0 x * * *").contains("value `x` is not a number; allowed 0-23"));
        assert!(msg("* * * *").starts_with("schedule has 4 fields; expected six fields"));
        assert!(msg("").starts_with("schedule is empty"));
        assert!(msg("5").starts_with("schedule has 1 field; expected six fields"));
        assert!(msg("00:61:00").contains("minutes 61"));
        assert!(msg("00:00:00").contains("is zero"));
        assert_eq!(
            Schedule::parse("0 0 25 * * *"),
            Err(ScheduleError::Field {
                position: 3,
                field: Field::Hour,
                text: "25".to_string(),
                problem: FieldProblem::OutOfRange("25".to_string()),
            })
        );
    }

    // ---- reference: a line-by-line port of NCrontab's TryGetNextOccurrence ----

    /// NCrontab's `CrontabField.Next`: smallest allowed value >= start, or -1.
    fn nc_next(bits: Bits, start: i64) -> i64 {
        (start.max(0)..64)
            .find(|&v| bits & (1u64 << v) != 0)
            .unwrap_or(-1)
    }

    fn nc_first(bits: Bits) -> i64 {
        nc_next(bits, 0)
    }

    /// `GetNextOccurrence(baseTime)` with the default end, `DateTime.MaxValue`;
    /// `None` where NCrontab returns the end time.
    fn ncrontab_next(c: &Cron, base: NaiveDateTime) -> Option<NaiveDateTime> {
        const NIL: i64 = -1;
        let mut base = base;
        loop {
            let (base_year, base_month, base_day) = (
                i64::from(base.year()),
                i64::from(base.month()),
                i64::from(base.day()),
            );
            let (base_hour, base_minute, base_second) = (
                i64::from(base.hour()),
                i64::from(base.minute()),
                i64::from(base.second()),
            );
            let (mut year, mut month, mut day) = (base_year, base_month, base_day);
            let (mut hour, mut minute) = (base_hour, base_minute);

            let mut second = nc_next(c.seconds, base_second + 1);
            if second == NIL {
                second = nc_first(c.seconds);
                minute += 1;
            }
            minute = nc_next(c.minutes, minute);
            if minute == NIL {
                second = nc_first(c.seconds);
                minute = nc_first(c.minutes);
                hour += 1;
            } else if minute > base_minute {
                second = nc_first(c.seconds);
            }
            hour = nc_next(c.hours, hour);
            if hour == NIL {
                minute = nc_first(c.minutes);
                hour = nc_first(c.hours);
                day += 1;
            } else if hour > base_hour {
                second = nc_first(c.seconds);
                minute = nc_first(c.minutes);
            }
            day = nc_next(c.days, day);
            loop {
                if day == NIL {
                    second = nc_first(c.seconds);
                    minute = nc_first(c.minutes);
                    hour = nc_first(c.hours);
                    day = nc_first(c.days);
                    month += 1;
                } else if day > base_day {
                    second = nc_first(c.seconds);
                    minute = nc_first(c.minutes);
                    hour = nc_first(c.hours);
                }
                month = nc_next(c.months, month);
                if month == NIL {
                    second = nc_first(c.seconds);
                    minute = nc_first(c.minutes);
                    hour = nc_first(c.hours);
                    day = nc_first(c.days);
                    month = nc_first(c.months);
                    year += 1;
                } else if month > base_month {
                    second = nc_first(c.seconds);
                    minute = nc_first(c.minutes);
                    hour = nc_first(c.hours);
                    day = nc_first(c.days);
                }
                if year > i64::from(MAX_YEAR) {
                    return None;
                }
                let date_changed = day != base_day || month != base_month || year != base_year;
                let first = NaiveDate::from_ymd_opt(year as i32, month as u32, 1)?;
                if day > 28 && date_changed && day > i64::from(days_in_month(first)) {
                    day = NIL;
                    continue;
                }
                break;
            }
            let date = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
            let next = date.and_hms_opt(hour as u32, minute as u32, second as u32)?;
            if has(c.weekdays, date.weekday().num_days_from_sunday()) {
                return Some(next);
            }
            base = date.and_hms_opt(23, 59, 59)?;
        }
    }

    // ---- brute force ----

    /// First matching second in `[from, until)`, visiting every second except
    /// those in a day, hour or minute that cannot match as a whole.
    fn brute_first(c: &Cron, from: NaiveDateTime, until: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = from;
        while t < until {
            let skip = if !matches_date(c, t.date()) {
                TimeDelta::seconds(86_400 - i64::from(t.num_seconds_from_midnight()))
            } else if !has(c.hours, t.hour()) {
                TimeDelta::seconds(3600 - i64::from(t.minute() * 60 + t.second()))
            } else if !has(c.minutes, t.minute()) {
                TimeDelta::seconds(60 - i64::from(t.second()))
            } else if has(c.seconds, t.second()) {
                return Some(t);
            } else {
                TimeDelta::seconds(1)
            };
            t += skip;
        }
        None
    }

    /// First matching second in `[from, until)`, checking every single second.
    fn brute_first_every_second(
        c: &Cron,
        from: NaiveDateTime,
        until: NaiveDateTime,
    ) -> Option<NaiveDateTime> {
        let mut t = from;
        while t < until {
            if matches(c, t) {
                return Some(t);
            }
            t += TimeDelta::seconds(1);
        }
        None
    }

    // ---- generators ----

    fn render(field: Field, value: u32, as_name: bool, upper: bool) -> String {
        match field.names() {
            Some(names) if as_name => {
                let name = &names[(value - field.min()) as usize][..3];
                if upper {
                    name.to_ascii_uppercase()
                } else {
                    name.to_string()
                }
            }
            _ => value.to_string(),
        }
    }

    fn field_text(field: Field) -> impl Strategy<Value = String> {
        let (min, max) = (field.min(), field.max());
        let part = (
            0u8..7,
            min..=max,
            min..=max,
            1..=(max - min + 2),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(shape, a, b, step, as_name, upper)| {
                let (lo, hi) = (a.min(b), a.max(b));
                let v = |x| render(field, x, as_name, upper);
                match shape {
                    0 | 1 => "*".to_string(),
                    2 => format!("*/{step}"),
                    3 => v(a),
                    4 => format!("{}-{}", v(lo), v(hi)),
                    5 => format!("{}-{}/{step}", v(lo), v(hi)),
                    _ => format!("{}/{step}", v(a)),
                }
            });
        prop::collection::vec(part, 1..=3).prop_map(|parts| parts.join(","))
    }

    fn schedule_text() -> impl Strategy<Value = String> {
        (
            field_text(Field::Second),
            field_text(Field::Minute),
            field_text(Field::Hour),
            field_text(Field::Day),
            field_text(Field::Month),
            field_text(Field::DayOfWeek),
            any::<bool>(),
        )
            .prop_map(|(s, mi, h, d, mo, w, five)| {
                if five {
                    format!("{mi} {h} {d} {mo} {w}")
                } else {
                    format!("{s} {mi} {h} {d} {mo} {w}")
                }
            })
    }

    /// Schedules that fire at least once a day: only the time fields vary.
    fn daily_schedule_text() -> impl Strategy<Value = String> {
        (
            field_text(Field::Second),
            field_text(Field::Minute),
            field_text(Field::Hour),
        )
            .prop_map(|(s, mi, h)| format!("{s} {mi} {h} * * *"))
    }

    fn instant() -> impl Strategy<Value = NaiveDateTime> {
        let lo = at("1990-01-01T00:00:00").and_utc().timestamp();
        let hi = at("2100-12-31T23:59:59").and_utc().timestamp();
        (lo..=hi, prop_oneof![Just(0u32), 0u32..1_000_000_000]).prop_map(|(secs, nanos)| {
            chrono::DateTime::from_timestamp(secs, nanos)
                .map(|t| t.naive_utc())
                .unwrap_or_else(|| panic!("timestamp {secs} in range"))
        })
    }

    proptest! {
        #[test]
        fn agrees_with_ncrontab(text in schedule_text(), t in instant()) {
            // Successive firings also exercise base times that are themselves firings.
            let s = sched(&text);
            let mut base = t;
            for _ in 0..4 {
                let want = ncrontab_next(cron_of(&s), base.with_nanosecond(0).unwrap_or(base));
                prop_assert_eq!(s.next_after(base), want, "{} after {}", text, base);
                match want {
                    Some(next) => base = next,
                    None => break,
                }
            }
        }

        #[test]
        fn next_is_the_first_match_after(text in schedule_text(), t in instant()) {
            let s = sched(&text);
            let c = cron_of(&s);
            let mut base = t;
            for _ in 0..3 {
                let from = base.with_nanosecond(0).unwrap_or(base) + TimeDelta::seconds(1);
                match s.next_after(base) {
                    Some(next) => {
                        prop_assert!(next > base);
                        prop_assert!(matches(c, next), "{} does not match {}", next, text);
                        prop_assert_eq!(brute_first(c, from, next), None, "{}", text);
                        base = next;
                    }
                    None => {
                        prop_assert!(!c.satisfiable, "{} should fire after {}", text, base);
                        let until = from + TimeDelta::days(4 * 366);
                        prop_assert_eq!(brute_first(c, from, until), None, "{}", text);
                        break;
                    }
                }
            }
        }

        #[test]
        fn upcoming_is_increasing(text in schedule_text(), t in instant()) {
            let got = sched(&text).upcoming(t, 5);
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(got.first().is_none_or(|first| *first > t));
        }

        #[test]
        fn parse_never_panics(text in ".{0,40}") {
            let _ = Schedule::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_cron_like_text(
            text in "[0-9*/,: .Ja-nMoFri-]{0,30}( [0-9*/,JaMoT-]{0,6}){0,7}"
        ) {
            if let Ok(s) = Schedule::parse(&text) {
                let _ = s.next_after(at("2026-11-25T00:00:00"));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn no_second_is_skipped(text in daily_schedule_text(), t in instant()) {
            let s = sched(&text);
            let c = cron_of(&s);
            let from = t.with_nanosecond(0).unwrap_or(t) + TimeDelta::seconds(1);
            let next = s.next_after(t);
            prop_assert!(next.is_some_and(|n| n - from <= TimeDelta::days(1)));
            let window = from + TimeDelta::days(1) + TimeDelta::seconds(1);
            prop_assert_eq!(brute_first_every_second(c, from, window), next, "{}", text);
        }
    }
}
