//! When a job is due: 5-field cron and its presets (`@hourly`, `@daily`, …)
//! in a time zone (UTC by default), or `@every <duration>`. Pure
//! computation over instants; owns no clock.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// A cron pattern, evaluated in `tz` (daylight saving included).
    Cron {
        cron: Box<Cron>,
        tz: Tz,
        text: String,
    },
    /// A fixed period, counted from the Unix epoch so that slots are stable
    /// across restarts.
    Every(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{0:?} is not a schedule: {1}; use 5-field cron (\"0 1 * * *\"), @hourly, @daily, @weekly, @monthly, @yearly or @every 30s"
    )]
    Invalid(String, String),
    #[error("{0:?} is not a time zone; use an IANA name such as Europe/Paris")]
    TimeZone(String),
}

/// The longest `@every` period: a year, leap day included.
const MAX_EVERY: Duration = Duration::from_secs(366 * 86_400);

impl Schedule {
    pub fn parse(text: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        if let Some(every) = text.strip_prefix("@every") {
            let d = humantime::parse_duration(every.trim())
                .map_err(|e| ScheduleError::Invalid(text.into(), e.to_string()))?;
            if d < Duration::from_secs(1) {
                return Err(ScheduleError::Invalid(
                    text.into(),
                    "shorter than 1s".into(),
                ));
            }
            if d > MAX_EVERY {
                return Err(ScheduleError::Invalid(
                    text.into(),
                    "longer than 366 days (a cron expression says \"once a year\": @yearly)".into(),
                ));
            }
            return Ok(Schedule::Every(d));
        }
        if text.split_whitespace().count() != 5 && !text.starts_with('@') {
            return Err(ScheduleError::Invalid(
                text.into(),
                "cron needs exactly 5 fields (minute hour day month weekday)".into(),
            ));
        }
        let cron =
            Cron::from_str(text).map_err(|e| ScheduleError::Invalid(text.into(), e.to_string()))?;
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.into()))?,
        };
        let schedule = Schedule::Cron {
            cron: Box::new(cron),
            tz,
            text: text.into(),
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Invalid(
                text.into(),
                "it never comes (a day no month has, such as 31 February)".into(),
            ));
        }
        Ok(schedule)
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz, .. } => cron
                .find_next_occurrence(&tz.from_utc_datetime(&whole_second(after)), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Schedule::Every(period) => {
                let p = period.as_millis() as i64;
                let now = after.timestamp_millis();
                Utc.timestamp_millis_opt((now.div_euclid(p) + 1) * p)
                    .single()
            }
        }
    }

    /// The latest slot at or before `at` (the one a run after downtime is
    /// for, without catch-up).
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz, .. } => cron
                .find_previous_occurrence(&tz.from_utc_datetime(&whole_second(at)), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Schedule::Every(period) => {
                let p = period.as_millis() as i64;
                Utc.timestamp_millis_opt(at.timestamp_millis().div_euclid(p) * p)
                    .single()
            }
        }
    }

    /// `at` as a person reads it in the schedule's time zone, to the second
    /// (`2026-11-30 01:00:00 CET`; UTC for `@every`).
    pub fn local_time(&self, at: DateTime<Utc>) -> String {
        match self {
            Schedule::Cron { tz, .. } => at.with_timezone(tz).format("%Y-%m-%d %H:%M:%S %Z"),
            Schedule::Every(_) => at.format("%Y-%m-%d %H:%M:%S UTC"),
        }
        .to_string()
    }

    /// Every slot in `(from, to]`, for an explicit backfill, one at a time
    /// (a wide range of a fast schedule has billions).
    pub fn slots_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut t = from;
        std::iter::from_fn(move || {
            let next = self.next_after(t).filter(|next| *next <= to)?;
            t = next;
            Some(next)
        })
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron { text, tz, .. } if *tz == Tz::UTC => write!(f, "{text}"),
            Schedule::Cron { text, tz, .. } => write!(f, "{text} ({tz})"),
            Schedule::Every(d) => write!(f, "@every {}", humantime::format_duration(*d)),
        }
    }
}

/// `at` without its fraction of a second. The cron search keeps the fraction
/// of the time it starts from, and a slot is a whole second: 03:00:00, never
/// 03:00:00.437 because the clock was read then.
fn whole_second(at: DateTime<Utc>) -> chrono::NaiveDateTime {
    let t = at.naive_utc();
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_at_one_utc_like_the_seed_dag() {
        let s = Schedule::parse("0 1 * * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-23T00:30:00Z")),
            Some(utc("2026-11-23T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-11-23T01:00:00Z")),
            Some(utc("2026-11-24T01:00:00Z"))
        );
    }

    #[test]
    fn slots_are_whole_seconds_whatever_the_clock_reads() {
        let s = Schedule::parse("0 3 * * *", None).unwrap();
        let read = utc("2030-01-01T03:00:00.437Z");
        assert_eq!(s.next_after(read), Some(utc("2030-01-02T03:00:00Z")));
        assert_eq!(
            s.latest_at_or_before(read),
            Some(utc("2030-01-01T03:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2030-01-01T02:59:59.999Z")),
            Some(utc("2030-01-01T03:00:00Z"))
        );
    }

    #[test]
    fn presets() {
        let at = utc("2026-11-23T10:15:00Z");
        let next = |p: &str| Schedule::parse(p, None).unwrap().next_after(at).unwrap();
        assert_eq!(next("@hourly"), utc("2026-11-23T11:00:00Z"));
        assert_eq!(next("@daily"), utc("2026-11-24T00:00:00Z"));
        assert_eq!(next("@monthly"), utc("2026-12-01T00:00:00Z"));
        assert_eq!(next("@yearly"), utc("2027-01-01T00:00:00Z"));
        // 2026-11-23 is a Monday; @weekly is Sunday midnight.
        assert_eq!(next("@weekly"), utc("2026-11-29T00:00:00Z"));
    }

    #[test]
    fn month_ends() {
        // The 31st skips months without one.
        let s = Schedule::parse("0 0 31 * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-31T12:00:00Z")),
            Some(utc("2026-03-31T00:00:00Z"))
        );
        // February 29th only in leap years.
        let never = Schedule::parse("0 0 31 2 *", None).unwrap_err().to_string();
        assert!(never.contains("never comes"), "{never}");
        let s = Schedule::parse("0 0 29 2 *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-03-01T00:00:00Z")),
            Some(utc("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn named_time_zone_follows_daylight_saving() {
        let s = Schedule::parse("0 1 * * *", Some("Europe/Paris")).unwrap();
        // Winter: 01:00 Paris is 00:00 UTC; summer: 23:00 UTC the day before.
        assert_eq!(
            s.next_after(utc("2026-01-10T12:00:00Z")),
            Some(utc("2026-01-11T00:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-07-10T12:00:00Z")),
            Some(utc("2026-07-10T23:00:00Z"))
        );
        let utc_s = Schedule::parse("0 1 * * *", None).unwrap();
        assert_eq!(
            utc_s.next_after(utc("2026-07-10T12:00:00Z")),
            Some(utc("2026-07-11T01:00:00Z"))
        );
    }

    #[test]
    fn every_is_aligned_and_stable() {
        let s = Schedule::parse("@every 30s", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-23T10:00:10Z")),
            Some(utc("2026-11-23T10:00:30Z"))
        );
        assert_eq!(
            s.latest_at_or_before(utc("2026-11-23T10:00:59Z")),
            Some(utc("2026-11-23T10:00:30Z"))
        );
    }

    #[test]
    fn no_catch_up_means_the_latest_missed_slot_only() {
        let s = Schedule::parse("@hourly", None).unwrap();
        // Down from 02:10 to 07:40: the run after restart is for 07:00.
        assert_eq!(
            s.latest_at_or_before(utc("2026-11-23T07:40:00Z")),
            Some(utc("2026-11-23T07:00:00Z"))
        );
        // A backfill names every slot.
        let slots: Vec<_> = s
            .slots_between(utc("2026-11-23T02:10:00Z"), utc("2026-11-23T07:40:00Z"))
            .collect();
        assert_eq!(slots.len(), 5);
        assert_eq!(slots[0], utc("2026-11-23T03:00:00Z"));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "every minute",
            "0 1 * *",
            "61 * * * *",
            "@every 0s",
            "@every soon",
            "@every 367days",
            "@every 1000000000years",
        ] {
            let err = Schedule::parse(bad, None).unwrap_err();
            assert!(matches!(err, ScheduleError::Invalid(..)), "{bad}: {err}");
        }
        assert!(Schedule::parse("@every 366days", None).is_ok());
        assert!(matches!(
            Schedule::parse("@daily", Some("Mars/Olympus")),
            Err(ScheduleError::TimeZone(_))
        ));
    }
}
