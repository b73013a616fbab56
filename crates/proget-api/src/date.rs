//! Dates as the API reads them: a date alone, a date-time with or without an
//! offset, or `YYYY/MM/DD` as written by humans in the documentation.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// A date that is not in any accepted form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDate(pub String);

impl fmt::Display for InvalidDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid date \"{}\", expected YYYY-MM-DD, YYYY/MM/DD or an ISO 8601 date-time",
            self.0
        )
    }
}

impl std::error::Error for InvalidDate {}

/// Parses `2024-08-01`, `2024/08/01`, `2024-08-01T10:00:00Z`,
/// `2024-08-01T10:00:00+02:00` or `2024-08-01T10:00:00` (read as UTC).
pub fn parse_date(text: &str) -> Result<OffsetDateTime, InvalidDate> {
    let s = text.trim();
    let invalid = || InvalidDate(text.to_owned());
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let naive = format_description!(
        version = 2,
        "[year]-[month]-[day][first [T] [ ]][hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
    );
    if let Ok(t) = PrimitiveDateTime::parse(s, &naive) {
        return Ok(t.assume_utc());
    }
    let dash = format_description!("[year]-[month]-[day]");
    let slash = format_description!("[year]/[month]/[day]");
    Date::parse(s, &dash)
        .or_else(|_| Date::parse(s, &slash))
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| invalid())
}

/// A key's expiration: a point in time, written as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiration(pub OffsetDateTime);

impl Expiration {
    /// The date part as `YYYY-MM-DD`, as lists show it.
    pub fn date_string(&self) -> String {
        let d = self.0.date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }
}

impl Serialize for Expiration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl Expiration {
    /// Reads an expiration as it is stored: in UTC, to the whole second
    /// (sub-seconds dropped), and within the years 0000 to 9999 (what RFC
    /// 3339 can write: a signed year such as `-0001-01-01` parses, but could
    /// not be written back).
    pub fn parse(text: &str) -> Result<Expiration, String> {
        let t = parse_date(text).map_err(|e| e.to_string())?;
        let utc = t
            .checked_to_offset(time::UtcOffset::UTC)
            .filter(|u| (0..=9999).contains(&u.year()))
            .ok_or_else(|| {
                format!("\"{text}\" is not between 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the expirations that can be stored")
            })?;
        // ok: 0 is always a valid nanosecond
        let whole = utc.replace_nanosecond(0).unwrap_or(utc);
        Ok(Expiration(whole))
    }
}

impl<'de> Deserialize<'de> for Expiration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Expiration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn accepts_every_documented_form() {
        let midnight = datetime!(2024-08-01 0:00 UTC);
        assert_eq!(parse_date("2024-08-01"), Ok(midnight));
        assert_eq!(parse_date("2024/08/01"), Ok(midnight));
        assert_eq!(parse_date("2024-08-01T00:00:00Z"), Ok(midnight));
        assert_eq!(parse_date("2024-08-01T02:00:00+02:00"), Ok(midnight));
        assert_eq!(parse_date("2024-08-01T00:00:00"), Ok(midnight));
        assert_eq!(parse_date("2024-08-01T00:00:00.000"), Ok(midnight));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "tomorrow",
            "2024-13-01",
            "01/08/2024",
            "2024-08-01T25:00:00Z",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expirations_are_read_as_stored_or_refused() {
        let e: Expiration = serde_json::from_str("\"2030-01-01T10:00:00.999+02:00\"").unwrap();
        assert_eq!(e.0, datetime!(2030-01-01 8:00 UTC));
        assert_eq!(e.0.offset(), time::UtcOffset::UTC);
        assert!(Expiration::parse("9999-12-31T23:59:59Z").is_ok());
        let err = Expiration::parse("9999-12-31T23:59:59-23:59").unwrap_err();
        assert!(err.contains("9999-12-31T23:59:59Z"), "{err}");
    }

    /// Found with the `apikey_info` fuzz target's round-trip check: a signed
    /// year parsed, but the expiration could not be written as JSON again.
    #[test]
    fn expirations_before_year_zero_are_refused_as_they_cannot_be_written() {
        for text in [
            "-0001-01-01",
            "-9999-12-31T00:00",
            "0000-01-01T00:00:00+23:59",
        ] {
            let err = Expiration::parse(text).unwrap_err();
            assert!(err.contains("0000-01-01T00:00:00Z"), "{text}: {err}");
        }
        let first = Expiration::parse("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(
            serde_json::to_string(&first).unwrap(),
            "\"0000-01-01T00:00:00Z\""
        );
    }

    #[test]
    fn shows_the_date_part() {
        assert_eq!(
            Expiration(datetime!(2027-08-01 13:00 UTC)).date_string(),
            "2027-08-01"
        );
    }
}
