//! The two UTC formats the sign-ins meet: SigV4's `20261206T100000Z` and
//! the ISO 8601 expirations AWS's credential sources return.

/// (`YYYYMMDD`, `YYYYMMDDTHHMMSSZ`) of a Unix time in seconds.
pub fn amz_date(unix_s: i64) -> (String, String) {
    let (days, secs) = (unix_s.div_euclid(86_400), unix_s.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let time = format!("{date}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60);
    (date, time)
}

/// Unix ms of `2026-12-06T10:00:00Z` (fractions and a `+00:00` offset
/// allowed); None if it is not that shape.
pub fn parse_iso8601_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let separators_ok = text.get(4..5) == Some("-") && text.get(7..8) == Some("-") && text.get(13..14) == Some(":");
    if !separators_ok || !matches!(text.get(10..11), Some("T" | "t" | " ")) {
        return None;
    }
    let (y, mo, d, h, mi, s) = (number(0..4)?, number(5..7)?, number(8..10)?, number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = text.get(19..)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let first3: String = fraction[..digits].chars().chain("000".chars()).take(3).collect();
        millis = first3.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let hh: i64 = rest.get(1..3)?.parse().ok()?;
            let mm: i64 = rest.get(rest.len() - 2..)?.parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    Some(seconds * 1000 + millis)
}

/// Howard Hinnant's days-from-civil, for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        assert_eq!(amz_date(1_796_551_200), ("20261206".into(), "20261206T100000Z".into()));
        assert_eq!(amz_date(951_782_400), ("20000229".into(), "20000229T000000Z".into()));
        assert_eq!(parse_iso8601_ms("2026-12-06T10:00:00Z"), Some(1_796_551_200_000));
        assert_eq!(parse_iso8601_ms("2026-12-06T10:00:00.250Z"), Some(1_796_551_200_250));
        assert_eq!(parse_iso8601_ms("2026-12-06T11:00:00+01:00"), Some(1_796_551_200_000));
        assert_eq!(parse_iso8601_ms("tomorrow"), None);
        assert_eq!(parse_iso8601_ms("2026-13-06T10:00:00Z"), None);
    }
}
