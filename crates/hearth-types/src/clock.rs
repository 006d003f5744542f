//! The one clock: unix time now, and UTC calendar dates (on the `time` crate).

use time::{Date, Month, OffsetDateTime};

/// Whole seconds since 1970-01-01 UTC (0 if the system clock is before it).
pub fn unix_now() -> u64 {
    unix_now_f64() as u64
}

/// Seconds since 1970-01-01 UTC, with the fraction (0 if the system clock is before it).
pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The UTC calendar date (year, month 1–12, day 1–31) of unix time `secs`.
pub fn utc_date(secs: i64) -> (i32, u8, u8) {
    let at = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (at.year(), at.month() as u8, at.day())
}

/// Unix time of midnight UTC starting `year-month-day`, or `None` if there is no such date
/// (month 13, February 30th …).
pub fn utc_midnight(year: i32, month: u8, day: u8) -> Option<i64> {
    let month = Month::try_from(month).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

/// Unix times of the first midnight of the UTC month containing `secs` and of the next one.
pub fn utc_month_bounds(secs: i64) -> (i64, i64) {
    let (y, m, _) = utc_date(secs);
    let start = utc_midnight(y, m, 1).unwrap_or(0);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, utc_midnight(ny, nm, 1).unwrap_or(i64::MAX))
}

/// The English name of month 1–12 ("" for any other number).
pub fn month_name(month: u8) -> String {
    Month::try_from(month)
        .map(|m| m.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(20_419 * 86_400 + 3_600), (2025, 11, 27));
        assert_eq!(utc_midnight(2025, 11, 27), Some(20_419 * 86_400));
        assert_eq!(utc_midnight(2024, 2, 29), Some(19_782 * 86_400));
        assert_eq!(utc_midnight(2025, 2, 29), None);
        assert_eq!(utc_midnight(2025, 13, 1), None);
        assert_eq!(utc_midnight(2025, 4, 31), None);
    }

    #[test]
    fn months_have_their_bounds() {
        let mid_dec = utc_midnight(2026, 12, 15).unwrap() + 5;
        assert_eq!(
            utc_month_bounds(mid_dec),
            (
                utc_midnight(2026, 12, 1).unwrap(),
                utc_midnight(2027, 1, 1).unwrap()
            )
        );
        let (start, end) = utc_month_bounds(utc_midnight(2024, 2, 10).unwrap());
        assert_eq!((end - start) / 86_400, 29);
        assert_eq!(month_name(2), "February");
        assert_eq!(month_name(0), "");
    }

    #[test]
    fn now_is_after_the_epoch() {
        assert!(unix_now() > 1_700_000_000);
        assert!((unix_now_f64() - unix_now() as f64).abs() < 2.0);
    }
}
