//! Reading times and durations from the command line.

use std::time::{Duration, SystemTime};

use dbos_core::{Error, ErrorKind, Result};

fn bad_time(flag: &str, value: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "{flag} `{value}` is not a time: use ISO 8601, e.g. 2024-01-02, 2024-01-02T03:04:05Z or \
             2024-01-02T03:04:05+02:00 (a time without an offset is UTC)"
        ),
    )
}

/// An ISO 8601 time: a date (midnight UTC), or a date and time with `Z`, an offset
/// (`+02:00`) or none (UTC), with optional fractional seconds.
pub(crate) fn parse_time(flag: &str, value: &str) -> Result<SystemTime> {
    let v = value.trim();
    if v.len() == 10 {
        if !in_range(v, '-', &[(1000, 9999), (1, 12), (1, 31)]) {
            return Err(bad_time(flag, value));
        }
        return dbos_core::codec::parse_rfc3339(&format!("{v}T00:00:00Z"))
            .ok_or_else(|| bad_time(flag, value));
    }
    let (date, time) = v
        .split_once(['T', ' '])
        .ok_or_else(|| bad_time(flag, value))?;
    // The offset, if any, after the time of day.
    let (clock, offset_secs) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0i64)
    } else if let Some(pos) = time.rfind(['+', '-']) {
        let (clock, offset) = time.split_at(pos);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let digits = &offset[1..];
        let (h, m) = digits.split_once(':').unwrap_or((
            digits.get(..2).unwrap_or(""),
            digits.get(2..).unwrap_or("0"),
        ));
        let h: i64 = h.parse().map_err(|_| bad_time(flag, value))?;
        let m: i64 = if m.is_empty() {
            0
        } else {
            m.parse().map_err(|_| bad_time(flag, value))?
        };
        (clock, sign * (h * 3600 + m * 60))
    } else {
        (time, 0)
    };
    let clock = if clock.len() == 5 {
        format!("{clock}:00")
    } else {
        clock.to_owned()
    };
    if !in_range(date, '-', &[(1000, 9999), (1, 12), (1, 31)])
        || !in_range(
            clock.split('.').next().unwrap_or(""),
            ':',
            &[(0, 23), (0, 59), (0, 60)],
        )
    {
        return Err(bad_time(flag, value));
    }
    let utc = dbos_core::codec::parse_rfc3339(&format!("{date}T{clock}Z"))
        .ok_or_else(|| bad_time(flag, value))?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    Ok(if offset_secs >= 0 {
        utc - shift
    } else {
        utc + shift
    })
}

/// Whether `text` is numbers separated by `sep`, each within its range.
fn in_range(text: &str, sep: char, ranges: &[(u32, u32)]) -> bool {
    let parts: Vec<&str> = text.split(sep).collect();
    parts.len() == ranges.len()
        && parts.iter().zip(ranges).all(|(p, (lo, hi))| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| (*lo..=*hi).contains(&n))
        })
}

/// A duration such as `90s`, `30m`, `24h`, `7d` or `2w`.
pub(crate) fn parse_duration(flag: &str, value: &str) -> Result<Duration> {
    let v = value.trim();
    let bad = || {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{flag} `{value}` is not a duration: use a number and a unit, e.g. 90s, 30m, 24h, 7d, 2w"),
        )
    };
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: SystemTime) -> u128 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    }

    #[test]
    fn times_in_every_iso_form() {
        let z = ms(parse_time("-t", "2024-01-02T03:04:05Z").unwrap());
        assert_eq!(z, 1_704_164_645_000);
        assert_eq!(
            ms(parse_time("-t", "2024-01-02T05:04:05+02:00").unwrap()),
            z
        );
        assert_eq!(ms(parse_time("-t", "2024-01-02T01:04:05-0200").unwrap()), z);
        assert_eq!(ms(parse_time("-t", "2024-01-02T03:04:05").unwrap()), z);
        assert_eq!(ms(parse_time("-t", "2024-01-02 03:04:05.000Z").unwrap()), z);
        assert_eq!(ms(parse_time("-t", "2024-01-02T03:04Z").unwrap()), z - 5000);
        assert_eq!(
            ms(parse_time("-t", "2024-01-02").unwrap()),
            1_704_153_600_000
        );
        assert!(parse_time("-t", "yesterday").is_err());
        assert!(parse_time("-t", "2024-13-45").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("x", "7d").unwrap(),
            Duration::from_secs(604_800)
        );
        assert_eq!(parse_duration("x", "90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("x", "7").is_err());
        assert!(parse_duration("x", "d").is_err());
        assert!(parse_duration("x", "3y").is_err());
    }
}
