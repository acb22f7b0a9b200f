//! Batch schedules: cron expressions or fixed intervals.
//!
//! The text operators write in `batch_cron` is one of:
//!
//! | form | example | meaning |
//! |---|---|---|
//! | classic 5-field cron | `*/5 * * * *` | minute hour day-of-month month day-of-week; day-of-week `0`–`7`, `0` and `7` = Sunday (as in crontab) |
//! | 6-field cron with seconds | `*/10 * * * * *` | second minute hour day-of-month month day-of-week; day-of-week `1`–`7`, `1` = Sunday (Quartz style) |
//! | 7-field cron with year | `0 30 2 * * * 2027` | as 6-field, plus a year |
//! | shorthand | `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` | |
//! | fixed interval | `@every 30s`, `@every 5m`, `@every 1h30m`, `@every 250ms` | from the moment the schedule starts, then every interval |
//!
//! Day and month names (`MON-FRI`, `JAN`) work in every cron form. Cron
//! expressions are evaluated in UTC unless prefixed with a timezone:
//! `CRON_TZ=Asia/Shanghai 0 30 2 * * *` (any IANA name).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed batch schedule.
#[derive(Clone)]
pub struct Schedule {
    source: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron {
        schedule: Box<cron::Schedule>,
        tz: Tz,
    },
    Every(Duration),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.source).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a schedule did not parse; the message is meant for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Schedule {
    /// Parses a schedule: a 5-field cron (`*/5 * * * *`), a 6-field cron
    /// with seconds (`*/10 * * * * *`), a 7-field cron with a year, a
    /// shorthand (`@hourly`, `@daily`, …) or a fixed interval (`@every
    /// 30s`, `@every 1h30m`); cron forms take an optional `CRON_TZ=<IANA
    /// name>` prefix and are evaluated in UTC otherwise (see
    /// docs/config-tables.md, "Schedules").
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let source = text.trim().to_string();
        if source.is_empty() {
            return Err(ScheduleError("the schedule is empty".into()));
        }
        let (tz, expr) = split_timezone(&source)?;
        if let Some(rest) = expr.strip_prefix("@every") {
            if tz.is_some() {
                return Err(ScheduleError(
                    "a timezone makes no sense for a fixed interval (@every)".into(),
                ));
            }
            let interval = parse_interval(rest.trim())?;
            return Ok(Schedule {
                source,
                kind: Kind::Every(interval),
            });
        }
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let normalized = if expr.starts_with('@') {
            expr.to_string()
        } else {
            match fields.len() {
                5 => {
                    let dow = classic_day_of_week(fields[4])?;
                    format!(
                        "0 {} {} {} {} {}",
                        fields[0], fields[1], fields[2], fields[3], dow
                    )
                }
                6 | 7 => fields.join(" "),
                n => {
                    return Err(ScheduleError(format!(
                        "`{expr}` has {n} fields; expected 5 (min hour dom month dow), \
                         6 (with seconds first) or 7 (with a year), or `@every <interval>`"
                    )))
                }
            }
        };
        let schedule = cron::Schedule::from_str(&normalized)
            .map_err(|e| ScheduleError(format!("`{expr}` is not a valid cron expression: {e}")))?;
        let tz = tz.unwrap_or(Tz::UTC);
        if schedule
            .after(&Utc::now().with_timezone(&tz))
            .next()
            .is_none()
        {
            return Err(ScheduleError(format!("`{expr}` never fires again")));
        }
        Ok(Schedule {
            source,
            kind: Kind::Cron {
                schedule: Box::new(schedule),
                tz,
            },
        })
    }

    /// The text the schedule was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The fixed interval, for `@every` schedules.
    pub fn interval(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Every(d) => Some(*d),
            Kind::Cron { .. } => None,
        }
    }

    /// The first firing strictly after `after`.
    ///
    /// For `@every` schedules that is `after + interval`: the caller passes
    /// the previous firing (or the start time) to get a fixed cadence.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Kind::Cron { schedule, tz } => schedule
                .after(&tz.from_utc_datetime(&after.naive_utc()))
                .next()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

fn split_timezone(source: &str) -> Result<(Option<Tz>, &str), ScheduleError> {
    let Some(rest) = source
        .strip_prefix("CRON_TZ=")
        .or_else(|| source.strip_prefix("TZ="))
    else {
        return Ok((None, source));
    };
    let (name, expr) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| ScheduleError("a timezone prefix must be followed by a schedule".into()))?;
    let tz = Tz::from_str(name).map_err(|_| {
        ScheduleError(format!(
            "unknown timezone `{name}` (use an IANA name such as Asia/Shanghai or UTC)"
        ))
    })?;
    Ok((Some(tz), expr.trim()))
}

/// Parses `1h30m`, `45s`, `250ms`, `2d`.
fn parse_interval(text: &str) -> Result<Duration, ScheduleError> {
    let bad = || {
        ScheduleError(format!(
            "`@every {text}` is not a valid interval; write e.g. `@every 30s`, `@every 5m`, `@every 1h30m`"
        ))
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    if total < Duration::from_millis(10) {
        return Err(ScheduleError(format!(
            "`@every {text}` is shorter than the 10 ms minimum"
        )));
    }
    Ok(total)
}

/// Translates a crontab day-of-week field (0–7, 0 and 7 = Sunday) to the
/// cron crate's numbering (1–7, 1 = Sunday). Names pass through unchanged.
fn classic_day_of_week(field: &str) -> Result<String, ScheduleError> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let has_digit = field.chars().any(|c| c.is_ascii_digit());
    let has_alpha = field.chars().any(|c| c.is_ascii_alphabetic());
    if !has_digit {
        return Ok(field.to_string());
    }
    let bad = |why: &str| ScheduleError(format!("day-of-week field `{field}`: {why}"));
    if has_alpha {
        // `MON-FRI/2` is fine, but `MON-5` mixes two numberings.
        let all_alpha_bases = field.split(',').all(|item| {
            item.split('/')
                .next()
                .is_some_and(|b| !b.chars().any(|c| c.is_ascii_digit()))
        });
        if all_alpha_bases {
            return Ok(field.to_string());
        }
        return Err(bad("do not mix day names and numbers"));
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, s.parse::<usize>().map_err(|_| bad("bad step"))?),
            None => (item, 1),
        };
        if step == 0 {
            return Err(bad("a step must be at least 1"));
        }
        let (lo, hi) = match base {
            "*" => (0, 6),
            _ => match base.split_once('-') {
                Some((a, b)) => (parse_day(a, field)?, parse_day(b, field)?),
                None => {
                    let d = parse_day(base, field)?;
                    (d, if item.contains('/') { 6 } else { d })
                }
            },
        };
        if lo > hi {
            return Err(bad("a range must go from low to high"));
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(days
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(d, _)| (d + 1).to_string())
        .collect::<Vec<_>>()
        .join(","))
}

fn parse_day(text: &str, field: &str) -> Result<usize, ScheduleError> {
    match text.parse::<usize>() {
        Ok(d) if d <= 7 => Ok(d),
        _ => Err(ScheduleError(format!(
            "day-of-week field `{field}`: `{text}` is not a day number 0-7"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn classic_five_fields_fire_on_the_minute() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let next = s.next_after(at("2026-01-01T10:02:30Z")).unwrap();
        assert_eq!(next, at("2026-01-01T10:05:00Z"));
    }

    #[test]
    fn six_fields_have_seconds() {
        let s = Schedule::parse("*/10 * * * * *").unwrap();
        let next = s.next_after(at("2026-01-01T10:02:31Z")).unwrap();
        assert_eq!(next, at("2026-01-01T10:02:40Z"));
    }

    #[test]
    fn classic_weekdays_use_crontab_numbering() {
        // 2026-01-03 is a Saturday; "1-5" in crontab means Monday to Friday.
        let s = Schedule::parse("0 9 * * 1-5").unwrap();
        let next = s.next_after(at("2026-01-03T12:00:00Z")).unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        assert_eq!(next.hour(), 9);
        let sunday = Schedule::parse("0 9 * * 0").unwrap();
        assert_eq!(
            sunday
                .next_after(at("2026-01-03T12:00:00Z"))
                .unwrap()
                .weekday(),
            Weekday::Sun
        );
        let sunday7 = Schedule::parse("0 9 * * 7").unwrap();
        assert_eq!(
            sunday7
                .next_after(at("2026-01-03T12:00:00Z"))
                .unwrap()
                .weekday(),
            Weekday::Sun
        );
        let names = Schedule::parse("0 9 * * MON-FRI").unwrap();
        assert_eq!(
            names
                .next_after(at("2026-01-03T12:00:00Z"))
                .unwrap()
                .weekday(),
            Weekday::Mon
        );
        assert!(Schedule::parse("0 9 * * MON-5").is_err());
        assert!(Schedule::parse("0 9 * * 8").is_err());
    }

    #[test]
    fn timezone_prefix_shifts_the_firing() {
        let s = Schedule::parse("CRON_TZ=Asia/Shanghai 0 30 2 * * *").unwrap();
        // 02:30 in Shanghai is 18:30 UTC the day before.
        let next = s.next_after(at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(next, at("2026-01-01T18:30:00Z"));
        let err = Schedule::parse("CRON_TZ=Mars/Olympus 0 * * * * *").unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }

    #[test]
    fn fixed_intervals() {
        let s = Schedule::parse("@every 1h30m").unwrap();
        assert_eq!(s.interval(), Some(Duration::from_secs(5400)));
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z")).unwrap(),
            at("2026-01-01T01:30:00Z")
        );
        assert_eq!(
            Schedule::parse("@every 250ms").unwrap().interval(),
            Some(Duration::from_millis(250))
        );
        for bad in ["@every", "@every 5", "@every 5x", "@every s", "@every 1ms"] {
            assert!(Schedule::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn garbage_is_rejected_with_the_expression() {
        let err = Schedule::parse("every day at noon").unwrap_err();
        assert!(err.to_string().contains("every day at noon"), "{err}");
        let err = Schedule::parse("61 * * * *").unwrap_err();
        assert!(err.to_string().contains("not a valid cron"), "{err}");
        assert!(Schedule::parse("   ").is_err());
        assert!(Schedule::parse("@daily").is_ok());
        assert!(Schedule::parse("0 0 0 1 1 * 2001").is_err(), "past-only");
    }

    #[test]
    fn seconds_resolution_is_kept() {
        let s = Schedule::parse("15 * * * * *").unwrap();
        let next = s.next_after(at("2026-01-01T10:00:00Z")).unwrap();
        assert_eq!(next.second(), 15);
    }
}
