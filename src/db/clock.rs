//! [`DbClock`]: the database's time, read now and then and carried forward by this process's monotonic
//! clock, so that lease and liveness decisions of every instance use one clock.
//!
//! Why: instances on several hosts compare each other's heartbeats and leases. With each host's wall clock a
//! host whose clock jumps (an NTP step, a VM resumed) would think live leases lapsed, or keep dead ones. The
//! database's clock is the one all instances share; reading it for every decision would cost a round trip,
//! so the clock is read when the instance registers and at every heartbeat, and between readings advanced by
//! `Instant` (monotonic: a wall-clock jump on this host changes nothing). On SQLite the database's clock is
//! this host's, read the same way.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Db, Timestamp};

/// How far behind the time carried forward a new reading may be and still count as the round trip's noise.
pub const ROUND_TRIP_NOISE: Duration = Duration::from_millis(500);

/// The database's time as this process knows it.
#[derive(Debug)]
pub struct DbClock {
    /// The last reading of the database's clock and when (monotonically) it was taken.
    anchor: Mutex<(Instant, Timestamp)>,
}

impl DbClock {
    /// A clock set from one reading of the database's time.
    pub async fn read(db: &Db) -> Result<Self, sqlx::Error> {
        let (taken, now) = reading(db).await?;
        Ok(Self {
            anchor: Mutex::new((taken, now)),
        })
    }

    /// A clock that starts at `now` (tests and tools that have no database at hand).
    pub fn starting_at(now: Timestamp) -> Self {
        Self {
            anchor: Mutex::new((Instant::now(), now)),
        }
    }

    /// The database's time now.
    pub fn now(&self) -> Timestamp {
        let (taken, at) = *self
            .anchor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        at + taken.elapsed()
    }

    /// Reads the database's clock again (the heartbeat does, every few seconds). A reading at most
    /// `ROUND_TRIP_NOISE` behind the time carried forward does not move the clock back: a reading is placed
    /// half way through its round trip, and a slow, lopsided trip (a busy machine) puts it that far behind
    /// without the database's clock having gone back. A larger difference is a real correction and is taken.
    pub async fn resync(&self, db: &Db) -> Result<(), sqlx::Error> {
        let (taken, read) = reading(db).await?;
        let mut anchor = self
            .anchor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *anchor = (taken, next_time(*anchor, taken, read));
        Ok(())
    }
}

/// The time a clock anchored at `anchor` takes for a reading `read` taken at `taken` (see `resync`).
fn next_time(anchor: (Instant, Timestamp), taken: Instant, read: Timestamp) -> Timestamp {
    let carried = anchor.1 + taken.saturating_duration_since(anchor.0);
    if read < carried && read + ROUND_TRIP_NOISE >= carried {
        carried
    } else {
        read
    }
}

/// One reading: the database's time, taken half way through the round trip.
async fn reading(db: &Db) -> Result<(Instant, Timestamp), sqlx::Error> {
    let sent = Instant::now();
    let now: Timestamp = match db {
        // `clock_timestamp()`, not `now()`: the latter is the start of the transaction.
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(pool)
                .await?
        }
        // The fixed-width text `Timestamp` reads (milliseconds, padded to six digits).
        Db::Sqlite(pool) => {
            sqlx::query_scalar("SELECT strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')")
                .fetch_one(pool)
                .await?
        }
    };
    let half_trip = sent.elapsed() / 2;
    Ok((sent + half_trip.min(Duration::from_secs(1)), now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_clock_follows_the_database_and_moves_forward() {
        let (db, _dir, _, _) = crate::db::test_database().await;
        let clock = DbClock::read(&db).await.expect("a reading");
        let apart = (clock.now().into_inner() - Timestamp::now().into_inner()).abs();
        assert!(
            apart < time::Duration::seconds(5),
            "SQLite runs on this machine: its clock is ours ({apart})"
        );
        let read = clock.now();
        assert!(clock.now() >= read, "monotonic between readings");
        clock.resync(&db).await.expect("a second reading");
        // SQLite gives milliseconds, and a slow round trip places a reading early: neither steps back.
        assert!(clock.now() >= read, "no step back on resync");
    }

    #[test]
    fn a_reading_a_little_behind_keeps_the_time_and_a_real_correction_is_taken() {
        let start = Timestamp::from_unix_seconds(1_000_000).unwrap();
        let anchor = (Instant::now(), start);
        let taken = anchor.0 + Duration::from_secs(3);
        let carried = start + Duration::from_secs(3);
        let ms = Duration::from_millis;
        assert_eq!(next_time(anchor, taken, carried - ms(40)), carried, "noise");
        assert_eq!(
            next_time(anchor, taken, carried + ms(40)),
            carried + ms(40),
            "ahead: taken"
        );
        assert_eq!(
            next_time(anchor, taken, carried - Duration::from_secs(2)),
            carried - Duration::from_secs(2),
            "the database's clock went back: taken"
        );
    }

    #[test]
    fn a_clock_set_by_hand_starts_there() {
        let start = Timestamp::from_unix_seconds(1_000_000).unwrap();
        let clock = DbClock::starting_at(start);
        let now = clock.now();
        assert!(now >= start && now < start + Duration::from_secs(5));
    }
}
