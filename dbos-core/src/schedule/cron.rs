//! Cron expressions and their ticks: parsing and time zones are the `croner` and
//! `chrono-tz` crates' (DST included); this file only fixes DBOS's dialect (5 fields, or 6
//! with seconds first) and its tick ids.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::error::{Error, Result};

/// A parsed schedule: the cron expression and the zone its wall-clock times are in.
#[derive(Debug, Clone)]
pub(crate) struct CronSpec {
    cron: Cron,
    zone: Tz,
}

/// The time zone of a schedule without `cron_timezone`.
const DEFAULT_ZONE: Tz = chrono_tz::UTC;

impl CronSpec {
    /// Parses `expr` (5 fields, or 6 with seconds first, as DBOS's `croniter(...,
    /// second_at_beginning=True)`) in the IANA zone `zone` (UTC when `None`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming what is wrong.
    pub(crate) fn parse(expr: &str, zone: Option<&str>) -> Result<CronSpec> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) && !expr.trim_start().starts_with('@') {
            return Err(Error::invalid(format!(
                "cron schedule `{expr}` has {fields} field(s): give 5 (minute hour day-of-month month day-of-week) \
                 or 6 (with seconds first, e.g. `*/10 * * * * *` for every 10 seconds)"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| Error::invalid(format!("cron schedule `{expr}` is not valid: {e}")))?;
        let zone = match zone {
            None => DEFAULT_ZONE,
            Some(name) => Tz::from_str(name).map_err(|_| {
                Error::invalid(format!(
                    "time zone `{name}` is not an IANA time zone name (e.g. `Europe/Paris`, `America/New_York`, `UTC`)"
                ))
            })?,
        };
        Ok(CronSpec { cron, zone })
    }

    /// The first tick strictly after `after`, in the schedule's zone; `None` when the
    /// expression never matches again.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
    }

    /// The ticks strictly after `start` and strictly before `end` (DBOS's backfill window).
    pub(crate) fn ticks_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<DateTime<Tz>> {
        let mut ticks = Vec::new();
        let mut at = start;
        while let Some(next) = self.next_after(at) {
            if next.with_timezone(&Utc) >= end {
                break;
            }
            at = next.with_timezone(&Utc);
            ticks.push(next);
        }
        ticks
    }
}

/// A tick's time as DBOS Python writes it (`datetime.isoformat()` of the zoned time: the
/// zone's offset, `+00:00` for UTC; no fraction for whole seconds): the text in tick ids and
/// `last_fired_at`.
pub(crate) fn iso(t: &DateTime<Tz>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// The workflow id of a schedule's tick: `sched-<schedule_name>-<iso time>`, DBOS Python's
/// id, so every executor (in any language writing Python's form) fires one run per tick.
pub(crate) fn tick_id(schedule: &str, t: &DateTime<Tz>) -> String {
    format!("sched-{schedule}-{}", iso(t))
}

/// The workflow id of a manual trigger: `sched-<schedule_name>-trigger-<iso now>`.
pub(crate) fn trigger_id(schedule: &str, now: &DateTime<Utc>) -> String {
    format!(
        "sched-{schedule}-trigger-{}",
        now.with_timezone(&DEFAULT_ZONE)
            .to_rfc3339_opts(SecondsFormat::Micros, false)
    )
}

/// Parses a `last_fired_at` text (any RFC 3339 / ISO time with an offset).
pub(crate) fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_pythons_isoformat() {
        let spec = CronSpec::parse("*/5 * * * * *", None).unwrap();
        let after = DateTime::parse_from_rfc3339("2026-12-06T20:10:02.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = spec.next_after(after).unwrap();
        assert_eq!(tick_id("s", &next), "sched-s-2026-12-06T20:10:05+00:00");
        let paris = CronSpec::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        let next = paris.next_after(after).unwrap();
        assert_eq!(iso(&next), "2026-12-07T09:00:00+01:00");
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        for bad in ["* * * *", "61 * * * *", "* * * * * * *", "hello", ""] {
            assert!(CronSpec::parse(bad, None).is_err(), "{bad}");
        }
        assert!(CronSpec::parse("* * * * *", Some("Mars/Olympus")).is_err());
    }
}
