//! [`Timestamp`]: a UTC instant stored so that SQL comparisons and ordering are right on both backends.
//!
//! PostgreSQL stores `TIMESTAMPTZ` natively. SQLite has no time type: sqlx writes `OffsetDateTime` as
//! RFC 3339 text whose fraction has a variable number of digits (`…:01Z`, `…:01.5Z`), so comparing two
//! such strings can give the wrong answer. `Timestamp` always writes UTC with exactly six fractional
//! digits (`2026-11-25T10:36:01.500000Z`), which sorts as text in time order. Precision is the
//! microsecond on both backends, so a value reads back equal to what was written.

use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

const SQLITE_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

const DISPLAY_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute] UTC");

/// A UTC instant with microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    /// The instant as an `OffsetDateTime` in UTC.
    pub fn into_inner(self) -> OffsetDateTime {
        self.0
    }

    /// For people: `2026-11-25 10:36 UTC`.
    pub fn display(self) -> String {
        self.0
            .format(DISPLAY_FORMAT)
            .unwrap_or_else(|_| self.0.to_string())
    }

    /// Seconds since 1970 (for compact encodings such as signed cookies).
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// The instant `seconds` after 1970, when it is a representable date.
    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .map(Self::from)
    }

    /// Whole seconds from `self` until `later` (0 when `later` is not after `self`), rounded up.
    pub fn seconds_until(self, later: Timestamp) -> u64 {
        let diff = later.0 - self.0;
        if diff.is_positive() {
            let micros = diff.whole_microseconds();
            u64::try_from((micros + 999_999) / 1_000_000).unwrap_or(u64::MAX)
        } else {
            0
        }
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(value: OffsetDateTime) -> Self {
        let utc = value.to_offset(time::UtcOffset::UTC);
        let micros = utc.microsecond();
        // replace_microsecond only fails above 999_999, which microsecond() never returns.
        Self(utc.replace_microsecond(micros).unwrap_or(utc))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Self::Output {
        Self::from(self.0 + rhs)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Self::Output {
        Self::from(self.0 - rhs)
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <OffsetDateTime as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        let text = self.0.format(SQLITE_FORMAT)?;
        <String as Encode<'q, Sqlite>>::encode(text, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        <OffsetDateTime as Decode<'r, Sqlite>>::decode(value).map(Self::from)
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <OffsetDateTime as Decode<'r, Postgres>>::decode(value).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn sqlite_text_sorts_in_time_order() {
        let whole = Timestamp::from(datetime!(2026-11-25 10:36:01 UTC));
        let half = whole + Duration::from_millis(500);
        let a = whole.0.format(SQLITE_FORMAT).expect("test setup is valid");
        let b = half.0.format(SQLITE_FORMAT).expect("test setup is valid");
        assert_eq!(a, "2026-11-25T10:36:01.000000Z");
        assert_eq!(b, "2026-11-25T10:36:01.500000Z");
        assert!(a < b);
    }

    #[test]
    fn other_offsets_are_converted_to_utc_and_nanoseconds_dropped() {
        let local = datetime!(2026-11-25 12:00:00.123456789 +02:00);
        let stamp = Timestamp::from(local);
        assert_eq!(
            stamp.into_inner(),
            datetime!(2026-11-25 10:00:00.123456 UTC)
        );
    }

    #[test]
    fn seconds_until_rounds_up_and_never_goes_negative() {
        let now = Timestamp::from(datetime!(2026-11-25 10:00:00 UTC));
        assert_eq!(now.seconds_until(now + Duration::from_millis(1500)), 2);
        assert_eq!(now.seconds_until(now - Duration::from_secs(5)), 0);
    }
}
